//! The `hdfs` source against the same rows in PostgreSQL, on a local `file://` directory
//! and on a real HDFS (MiniDFSCluster): every endpoint agrees with PostgreSQL. On HDFS,
//! with no copy of the newest rows, the newest-rows query reads a small fraction of the
//! table; on the local directory, pages of newest rows are cut from that copy.

mod common;

use std::sync::OnceLock;

use common::*;
use serde_json::Value;

const ROWS: u64 = 200_000;
const FILE_ROWS: u64 = 20_000;
/// Newest rows held by the local fixture (`parquet.newest_rows`).
const NEWEST_HELD: usize = 50_000;

struct Fixture {
    srv: TestServer,
    pg: String,
}

fn fixture(kind: &'static str) -> &'static Fixture {
    static LOCAL: OnceLock<Fixture> = OnceLock::new();
    static HDFS: OnceLock<Fixture> = OnceLock::new();
    let cell = if kind == "hdfs" { &HDFS } else { &LOCAL };
    cell.get_or_init(|| {
        let parquet = match kind {
            "hdfs" => format!("{}/fletch-test/{}/logs", hdfs_url(), std::process::id()),
            _ => {
                let dir = std::env::temp_dir().join(format!("fletch-test-parquet-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                format!("file://{}", dir.display())
            }
        };
        let pg = postgres_and_parquet(&format!("hdfsapi_{kind}"), ROWS, &parquet, FILE_ROWS);
        let mut cfg = pg_config(&pg);
        cfg.parquet.url = parquet;
        // Every request must reach the stores here (the scan metrics are checked).
        cfg.cache.ttl_ms = 0;
        // On HDFS every page reads the files (whose scans are measured); the local
        // directory holds a copy of the newest 50,000 of its 200,000 rows.
        cfg.parquet.newest_rows = if kind == "hdfs" { 0 } else { NEWEST_HELD };
        Fixture { srv: boot(cfg), pg }
    })
}

async fn ids(srv: &TestServer, path: &str) -> Vec<i64> {
    let (s, _, b) = get_json(&srv.url(path)).await;
    assert_eq!(s, 200, "{path}: {b}");
    b["data"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

async fn groups(srv: &TestServer, path: &str) -> Vec<(String, i64)> {
    let (s, _, b) = get_json(&srv.url(path)).await;
    assert_eq!(s, 200, "{path}: {b}");
    b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["key"].as_str().unwrap().to_string(), d["count"].as_i64().unwrap()))
        .collect()
}

/// The same aggregate answered by both sources is identical.
async fn same_groups(srv: &TestServer, path: &str) {
    let hdfs = groups(srv, &format!("/api/query/hdfs{path}")).await;
    assert_eq!(hdfs, groups(srv, &format!("/api/query/postgres{path}")).await, "{path}");
}

async fn agrees_with_postgres(f: &Fixture) {
    let srv = &f.srv;
    // stats from Parquet metadata
    let (s, _, st) = get_json(&srv.url("/api/query/hdfs/stats")).await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["source"], "hdfs");
    assert_eq!(st["logs_count"], ROWS);
    assert_eq!(st["files"], ROWS / FILE_ROWS);

    // pages: same rows as PostgreSQL, in the same order
    for q in [
        "limit=100",
        "limit=100&level=ERROR",
        "limit=20&offset=50&order_dir=asc",
        "limit=500&service=payment-service&host=worker-3",
        "limit=30&order_by=id&order_dir=asc&offset=10",
    ] {
        let h = ids(srv, &format!("/api/query/hdfs/logs?{q}")).await;
        let p = ids(srv, &format!("/api/query/postgres/logs?{q}")).await;
        assert!(!h.is_empty(), "{q}: no rows");
        assert_eq!(h, p, "hdfs and postgres disagree on {q}");
    }
    let (_, _, page) = get_json(&srv.url("/api/query/hdfs/logs?limit=3&count=exact&level=WARN")).await;
    assert_eq!(page["source"], "hdfs");
    assert_eq!(page["returned_count"], 3);
    assert_eq!(page["total_count"], sql_i64(&f.pg, "SELECT count(*) FROM logs WHERE level='WARN'").await);
    assert!(page["data"][0]["metadata"].is_object());

    // aggregates
    for g in ["level", "service", "host"] {
        for filter in ["", "&level=ERROR"] {
            same_groups(srv, &format!("/logs/aggregate?group_by={g}{filter}")).await;
        }
    }

    // time ranges that cut through files: whole files come from rollups, the two
    // straddling a bound are scanned, files outside are skipped
    let lo = sql_i64(&f.pg, "SELECT (percentile_disc(0.33) WITHIN GROUP (ORDER BY timestamp))::bigint FROM logs").await;
    let hi = sql_i64(&f.pg, "SELECT (percentile_disc(0.71) WITHIN GROUP (ORDER BY timestamp))::bigint FROM logs").await;
    for range in
        [format!("&start_time={lo}.5&end_time={hi}.25"), format!("&start_time={lo}"), format!("&end_time={hi}")]
    {
        for g in ["level", "host"] {
            same_groups(srv, &format!("/logs/aggregate?group_by={g}&service=api-gateway{range}")).await;
        }
        let q = format!("/logs?limit=1&count=exact&level=ERROR{range}");
        let (_, _, h) = get_json(&srv.url(&format!("/api/query/hdfs{q}"))).await;
        let (_, _, p) = get_json(&srv.url(&format!("/api/query/postgres{q}"))).await;
        assert_eq!(h["total_count"], p["total_count"], "{q}");
        assert!(h["total_count"].as_i64().unwrap() > 0, "{q}");
    }

    // compare runs both and their totals agree
    let (s, _, c) = get_json(&srv.url("/api/query/compare?level=ERROR&limit=100")).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["postgresql"]["total"], c["hdfs"]["total"]);
    assert_eq!(c["postgresql"]["count"], 100);
    assert_eq!(c["hdfs"]["count"], 100);
    assert!(c["comparison"]["faster"].is_string());

    // exports
    let text = reqwest::get(srv.url("/api/query/hdfs/logs/export?level=ERROR&format=ndjson"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len() as i64, sql_i64(&f.pg, "SELECT count(*) FROM logs WHERE level='ERROR'").await);
    let ts: Vec<f64> = rows.iter().map(|r| r["timestamp"].as_f64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "export not newest first");
    // Files written by `fletch load` declare their time order: exports stream row groups
    // in order without a sort, in both directions, and agree row for row with PostgreSQL.
    let (_, _, ready) = get_json(&srv.url("/ready")).await;
    assert_eq!(ready["sources"]["hdfs"]["detail"]["sorted_by_time"], true, "{ready}");
    for q in [
        format!("level=WARN&start_time={lo}.5&end_time={hi}"),
        "service=user-service&order_dir=asc&offset=7".to_string(),
    ] {
        let export_ids = |src: &'static str| {
            let url = srv.url(&format!("/api/query/{src}/logs/export?format=ndjson&{q}"));
            async move {
                let text = reqwest::get(url).await.unwrap().text().await.unwrap();
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_i64().unwrap())
                    .collect::<Vec<_>>()
            }
        };
        let h = export_ids("hdfs").await;
        assert!(h.len() > 1000, "{q}: {} rows", h.len());
        assert_eq!(h, export_ids("postgres").await, "{q}");
    }
    let bytes = reqwest::get(srv.url("/api/query/hdfs/logs/export?format=arrow&order_dir=asc"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>() as u64, ROWS);

    // bad input: same 400s as postgres
    let (s, _, b) = get_json(&srv.url("/api/query/hdfs/logs/aggregate?group_by=nope")).await;
    assert_eq!((s, b["parameter"].as_str()), (400, Some("group_by")));
    let (s, _, b) = get_json(&srv.url("/api/query/hdfs/logs?limit=99999")).await;
    assert_eq!((s, b["parameter"].as_str()), (400, Some("limit")));
}

/// Newest 100 rows read only the newest row groups: a top-k, not a sort of the table.
async fn newest_rows_are_pruned(f: &Fixture) {
    for q in ["limit=100", "limit=100&order_dir=asc", "limit=100&level=ERROR"] {
        let before = metric(&f.srv, "fletch_hdfs_rows_scanned_total").await;
        let (s, _, _) = get_json(&f.srv.url(&format!("/api/query/hdfs/logs?{q}&count=none"))).await;
        assert_eq!(s, 200);
        let scanned = metric(&f.srv, "fletch_hdfs_rows_scanned_total").await - before;
        assert!(scanned > 0.0, "{q}: scan metrics missing");
        assert!(scanned <= (3 * FILE_ROWS) as f64, "{q}: scanned {scanned} rows of {ROWS} (expected a few row groups)");
    }
}

/// A deep page with filters skips whole files by their rollups' counts: it reads about a
/// file, not every row up to its offset, and still gives PostgreSQL's rows.
async fn deep_filtered_pages_skip_counted_files(f: &Fixture) {
    let srv = &f.srv;
    let files = (ROWS / FILE_ROWS) as f64;
    for _ in 0..600 {
        if metric(srv, "fletch_hdfs_rollup_files").await >= files {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(metric(srv, "fletch_hdfs_rollup_files").await, files, "rollups not built in 60 s");
    let lo = sql_i64(&f.pg, "SELECT (percentile_disc(0.2) WITHIN GROUP (ORDER BY timestamp))::bigint FROM logs").await;
    for q in [
        "limit=100&offset=20000&level=WARN".to_string(),
        "limit=50&offset=15000&service=user-service&host=worker-2&order_dir=asc".to_string(),
        format!("limit=100&offset=60000&level=INFO&start_time={lo}.5"),
    ] {
        let before = metric(srv, "fletch_hdfs_rows_scanned_total").await;
        let h = ids(srv, &format!("/api/query/hdfs/logs?{q}&count=none")).await;
        let scanned = metric(srv, "fletch_hdfs_rows_scanned_total").await - before;
        assert!(!h.is_empty(), "{q}: no rows");
        assert_eq!(h, ids(srv, &format!("/api/query/postgres/logs?{q}")).await, "hdfs and postgres disagree on {q}");
        assert!(scanned <= (3 * FILE_ROWS) as f64, "{q}: read {scanned} rows of {ROWS} (expected a file or two)");
    }
}

/// Pages of newest rows cut from the copy of the newest rows are PostgreSQL's; pages the
/// copy cannot fill (deeper, ascending, too selective) read the files and are too.
async fn newest_rows_come_from_the_copy(f: &Fixture) {
    let srv = &f.srv;
    let held = newest_copy_of_the_current_listing(srv).await;
    assert_eq!(held["rows"].as_u64().map(|n| n <= NEWEST_HELD as u64 && n > 49_000), Some(true), "{held}");
    assert_eq!(held["whole_archive"], false, "{held}");
    let served = || metric(srv, "fletch_hdfs_newest_pages_total");
    let from_copy = [
        "limit=100",
        "limit=100&level=ERROR",
        "limit=500&service=payment-service&host=worker-3",
        "limit=200&offset=40000",
        "limit=100&offset=3000&level=WARN",
        "limit=1000&offset=48000",
    ];
    let from_files = ["limit=100&offset=49950", "limit=100&order_dir=asc", "limit=100&offset=9000&level=ERROR"];
    for (queries, from_the_copy) in [(&from_copy[..], true), (&from_files[..], false)] {
        for q in queries {
            let before = served().await;
            let h = ids(srv, &format!("/api/query/hdfs/logs?{q}&count=none")).await;
            assert_eq!(served().await - before, if from_the_copy { 1.0 } else { 0.0 }, "{q}: from the copy?");
            assert!(!h.is_empty(), "{q}: no rows");
            assert_eq!(
                h,
                ids(srv, &format!("/api/query/postgres/logs?{q}")).await,
                "hdfs and postgres disagree on {q}"
            );
        }
    }
}

#[tokio::test]
async fn local_parquet_agrees_with_postgres() {
    let f = fixture("local");
    agrees_with_postgres(f).await;
    newest_rows_come_from_the_copy(f).await;
    deep_filtered_pages_skip_counted_files(f).await;
}

#[tokio::test]
async fn hdfs_parquet_agrees_with_postgres() {
    let f = fixture("hdfs");
    agrees_with_postgres(f).await;
    newest_rows_are_pruned(f).await;
    deep_filtered_pages_skip_counted_files(f).await;
}

/// Rows whose labels are NULL: a few hundred added to both stores after a normal load.
/// Their file gets a rollup in the background, and a `start_time` inside it forces a scan
/// of it, so both ways of counting on Parquet are compared with PostgreSQL.
#[tokio::test]
async fn null_labels_group_alike_on_both_sources() {
    const NULLS: i64 = 300;
    let dir = std::env::temp_dir().join(format!("fletch-test-null-labels-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pg = postgres_and_parquet("null_labels", 2_000, &format!("file://{}", dir.display()), 1_000);
    let t0 = 2_000_000_000.0; // after every generated row
    add_null_label_rows(&pg, &dir.join("nulls.parquet"), t0, NULLS);
    let mut cfg = pg_config(&pg);
    cfg.parquet.url = format!("file://{}", dir.display());
    cfg.cache.ttl_ms = 0;
    let srv = boot(cfg);
    let mid = t0 + (NULLS / 2) as f64;
    for q in ["group_by=service", "group_by=level", "group_by=host", &format!("group_by=host&start_time={mid}")] {
        let path = format!("/logs/aggregate?{q}");
        same_groups(&srv, &path).await;
        let g = groups(&srv, &format!("/api/query/hdfs{path}")).await;
        assert!(g.iter().any(|(k, n)| k == "null" && *n > 0), "{q}: no `null` group in {g:?}");
    }
}

/// `rows` rows with NULL labels from `t0` on, one a second, into PostgreSQL and as one
/// Parquet file at `path` (see [`write_null_label_file`]).
fn add_null_label_rows(pg: &str, path: &std::path::Path, t0: f64, rows: i64) {
    off_runtime(|| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let (client, conn) = tokio_postgres::connect(pg, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let sql = format!(
                "INSERT INTO logs (id, \"timestamp\", level, service, host, message, metadata, created_at) \
                 SELECT 1000000 + i, {t0} + i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'WARN' END, NULL, \
                 CASE WHEN i % 2 = 0 THEN NULL ELSE 'worker-9' END, 'm', '{{}}', now() \
                 FROM generate_series(0, {}) AS i",
                rows - 1
            );
            // fletch's loader declares the labels NOT NULL; a pipeline's table may not.
            client
                .batch_execute(
                    "ALTER TABLE logs ALTER level DROP NOT NULL, ALTER service DROP NOT NULL, ALTER host DROP NOT NULL",
                )
                .await
                .unwrap();
            client.batch_execute(&sql).await.unwrap();
        })
    });
    write_null_label_file(path, t0, rows);
}

/// A file the pipeline adds while pages are served: the copy of the newest rows is
/// extended with its rows, not read again, and pages cut from it stay PostgreSQL's.
#[tokio::test]
async fn a_new_file_extends_the_copy_of_the_newest_rows() {
    let dir = std::env::temp_dir().join(format!("fletch-test-newest-extend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pg = postgres_and_parquet("newest_extend", 2_000, &format!("file://{}", dir.display()), 1_000);
    let mut cfg = pg_config(&pg);
    cfg.parquet.url = format!("file://{}", dir.display());
    cfg.parquet.newest_rows = 500;
    cfg.parquet.refresh_interval_ms = 200;
    cfg.cache.ttl_ms = 0;
    let srv = boot(cfg);
    let held = newest_copy_of_the_current_listing(&srv).await;
    assert_eq!((held["rows"].as_u64(), &held["extended"]), (Some(500), &Value::from(0)), "{held}");
    add_null_label_rows(&pg, &dir.join("later.parquet"), 2_000_000_000.0, 300);
    for _ in 0..100 {
        let (_, _, stats) = get_json(&srv.url("/api/query/hdfs/stats")).await;
        if stats["files"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let held = newest_copy_of_the_current_listing(&srv).await;
    assert_eq!((held["rows"].as_u64(), &held["extended"]), (Some(500), &Value::from(1)), "{held}");
    let served = metric(&srv, "fletch_hdfs_newest_pages_total").await;
    for q in ["limit=100", "limit=100&offset=250", "limit=150&offset=350", "limit=50&level=WARN&offset=100"] {
        let h = ids(&srv, &format!("/api/query/hdfs/logs?{q}&count=none")).await;
        assert_eq!(h, ids(&srv, &format!("/api/query/postgres/logs?{q}")).await, "hdfs and postgres disagree on {q}");
    }
    assert_eq!(metric(&srv, "fletch_hdfs_newest_pages_total").await - served, 4.0, "pages cut from the copy");
}

/// Ask for a page (which starts reading the copy) and wait until `/ready` shows the copy
/// of the current listing; returns what it says of it.
async fn newest_copy_of_the_current_listing(srv: &TestServer) -> Value {
    ids(srv, "/api/query/hdfs/logs?limit=1&count=none").await;
    let mut held = Value::Null;
    for _ in 0..300 {
        let (_, _, ready) = get_json(&srv.url("/ready")).await;
        let detail = &ready["sources"]["hdfs"]["detail"];
        held = detail["newest_rows"].clone();
        if held["generation"] == detail["generation"] {
            return held;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the copy of the newest rows was not read in 30 s: {held}")
}

/// The NULL-label rows of the test above as one Parquet file (ids and times as inserted).
fn write_null_label_file(path: &std::path::Path, t0: f64, rows: i64) {
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    let label = |every: i64, value: &str| -> ArrayRef {
        std::sync::Arc::new(StringArray::from_iter((0..rows).map(|i| (i % every != 0).then_some(value))))
    };
    let columns: Vec<ArrayRef> = vec![
        std::sync::Arc::new(Int64Array::from_iter_values((0..rows).map(|i| 1_000_000 + i))),
        std::sync::Arc::new(Float64Array::from_iter_values((0..rows).map(|i| t0 + i as f64))),
        label(3, "WARN"),
        std::sync::Arc::new(StringArray::from(vec![None::<&str>; rows as usize])),
        label(2, "worker-9"),
        std::sync::Arc::new(StringArray::from(vec!["m"; rows as usize])),
        std::sync::Arc::new(StringArray::from(vec!["{}"; rows as usize])),
        std::sync::Arc::new(TimestampMicrosecondArray::from(vec![0i64; rows as usize])),
    ];
    let batch = arrow::record_batch::RecordBatch::try_new(fletch::schema::logs_schema(), columns).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Files that cannot be read as `logs` are left out with a reason in `/ready` and a count in
/// `/metrics`; the rest of the archive answers as if they were not there. Hidden files and
/// directories (`_SUCCESS`, `_temporary/`, `.crc`) are not archive files at all.
#[tokio::test]
async fn unreadable_and_foreign_files_are_skipped_and_named() {
    let dir = std::env::temp_dir().join(format!("fletch-test-skipped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pg = postgres_and_parquet("skipped_files", 2_000, &format!("file://{}", dir.display()), 1_000);
    std::fs::write(dir.join("truncated.parquet"), b"PAR1 not a footer").unwrap();
    write_foreign_file(&dir.join("labels-are-numbers.parquet"), true);
    write_foreign_file(&dir.join("no-timestamp.parquet"), false);
    std::fs::write(dir.join("_SUCCESS"), b"").unwrap();
    std::fs::write(dir.join(".part-0.parquet.crc"), b"crc").unwrap();
    std::fs::create_dir_all(dir.join("_temporary/0")).unwrap();
    std::fs::write(dir.join("_temporary/0/part-0.parquet"), b"half written").unwrap();
    let mut cfg = pg_config(&pg);
    cfg.parquet.url = format!("file://{}", dir.display());
    let srv = boot(cfg);

    // The archive's part of /ready (PostgreSQL may still be connecting).
    let mut ready = Value::Null;
    for _ in 0..100 {
        ready = get_json(&srv.url("/ready")).await.2;
        if ready["sources"]["hdfs"]["ready"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let detail = &ready["sources"]["hdfs"]["detail"];
    assert_eq!(detail["files"], 2, "{detail}");
    assert_eq!(detail["skipped_files"]["count"], 3, "{detail}");
    let reasons: Vec<String> = detail["skipped_files"]["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{}: {}", f["path"].as_str().unwrap(), f["reason"].as_str().unwrap()))
        .collect();
    assert!(reasons[0].contains("labels-are-numbers.parquet: column `level` is Int32"), "{reasons:?}");
    assert!(reasons[1].contains("no-timestamp.parquet: no `timestamp` column"), "{reasons:?}");
    assert!(reasons[2].contains("truncated.parquet: unreadable footer"), "{reasons:?}");
    assert_eq!(metric(&srv, "fletch_hdfs_skipped_files").await, 3.0);

    let (s, _, stats) = get_json(&srv.url("/api/query/hdfs/stats")).await;
    assert_eq!((s, &stats["logs_count"], &stats["files"]), (200, &serde_json::json!(2000), &serde_json::json!(2)));
    same_groups(&srv, "/logs/aggregate?group_by=level").await;
    let body = serde_json::json!({"sql": "SELECT count(*) AS n FROM hdfs.logs WHERE level = 'ERROR'"});
    let resp = reqwest::Client::new().post(srv.url("/api/sql")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let row: Value = serde_json::from_str(resp.text().await.unwrap().trim()).unwrap();
    let pg_errors = groups(&srv, "/api/query/postgres/logs/aggregate?group_by=level").await;
    assert_eq!(row["n"], pg_errors.iter().find(|(k, _)| k == "ERROR").map_or(0, |(_, n)| *n));
}

/// A Parquet file that is not `logs`: `level` as numbers, or no `timestamp` at all.
fn write_foreign_file(path: &std::path::Path, with_timestamp: bool) {
    use arrow::array::{ArrayRef, Float64Array, Int32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let mut fields = vec![Field::new("level", DataType::Int32, true)];
    let mut columns: Vec<ArrayRef> = vec![std::sync::Arc::new(Int32Array::from(vec![1, 2, 3]))];
    if with_timestamp {
        fields.push(Field::new("timestamp", DataType::Float64, true));
        columns.push(std::sync::Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])));
    }
    let batch = arrow::record_batch::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}
