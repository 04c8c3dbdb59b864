//! The HTTP facade over a real PostgreSQL: every endpoint, field and bad-input case of the
//! old Query API, exports in every format, and cancellation when a client goes away.

mod common;

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ROWS: u64 = 200_000;

fn setup() -> &'static (TestServer, String) {
    static S: OnceLock<(TestServer, String)> = OnceLock::new();
    S.get_or_init(|| {
        let url = database_with_rows("pgapi", ROWS);
        (boot(pg_config(&url)), url)
    })
}

fn assert_row_shape(row: &Value) {
    for k in ["id", "timestamp", "level", "service", "host", "message", "metadata", "created_at"] {
        assert!(row.get(k).is_some(), "row lacks `{k}`: {row}");
    }
    assert!(row["id"].is_i64());
    assert!(row["timestamp"].is_f64());
    assert!(row["metadata"].is_object(), "metadata must be a JSON object: {row}");
    assert!(row["metadata"]["request_id"].is_string());
    assert!(row["created_at"].as_str().unwrap().contains('T'));
}

#[tokio::test]
async fn logs_page_has_the_old_shape_newest_first() {
    let (srv, _) = setup();
    let (status, _, body) = get_json(&srv.url("/api/query/postgres/logs?count=exact")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "postgresql");
    assert_eq!(body["limit"], 100);
    assert_eq!(body["offset"], 0);
    assert_eq!(body["returned_count"], 100);
    assert_eq!(body["total_count"], ROWS);
    assert_eq!(body["total_count_kind"], "exact");
    assert!(body["query_time_ms"].as_f64().unwrap() >= 0.0);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 100);
    data.iter().for_each(assert_row_shape);
    let ts: Vec<f64> = data.iter().map(|r| r["timestamp"].as_f64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "not newest first");
}

#[tokio::test]
async fn filters_match_sql() {
    let (srv, url) = setup();
    let (s, _, b) = get_json(
        &srv.url("/api/query/postgres/logs?level=ERROR&service=order-service&host=worker-2&limit=1000&count=exact"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let expected =
        sql_i64(url, "SELECT count(*) FROM logs WHERE level='ERROR' AND service='order-service' AND host='worker-2'")
            .await;
    assert_eq!(b["total_count"], expected);
    assert_eq!(b["returned_count"].as_i64().unwrap(), expected.min(1000));
    for r in b["data"].as_array().unwrap() {
        assert_eq!(
            (r["level"].as_str(), r["service"].as_str(), r["host"].as_str()),
            (Some("ERROR"), Some("order-service"), Some("worker-2"))
        );
    }
    // Time window, inclusive on both ends.
    let t0 = sql_i64(url, r#"SELECT (min("timestamp") + 100)::int8 FROM logs"#).await;
    let t1 = t0 + 50;
    let (s, _, b) =
        get_json(&srv.url(&format!(
            "/api/query/postgres/logs?start_time={t0}&end_time={t1}&limit=10000&count=exact&order_dir=asc"
        )))
        .await;
    assert_eq!(s, 200);
    let expected =
        sql_i64(url, &format!(r#"SELECT count(*) FROM logs WHERE "timestamp" >= {t0} AND "timestamp" <= {t1}"#)).await;
    assert_eq!(b["returned_count"], expected);
    let ts: Vec<f64> = b["data"].as_array().unwrap().iter().map(|r| r["timestamp"].as_f64().unwrap()).collect();
    assert!(ts.iter().all(|t| *t >= t0 as f64 && *t <= t1 as f64));
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "order_dir=asc not honoured");
}

#[tokio::test]
async fn ordering_and_paging() {
    let (srv, _) = setup();
    let (_, _, p1) = get_json(&srv.url("/api/query/postgres/logs?order_by=id&order_dir=asc&limit=50")).await;
    let (_, _, p2) = get_json(&srv.url("/api/query/postgres/logs?order_by=id&order_dir=asc&limit=50&offset=50")).await;
    let ids1: Vec<i64> = p1["data"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let ids2: Vec<i64> = p2["data"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids1, (1..=50).collect::<Vec<_>>());
    assert_eq!(ids2, (51..=100).collect::<Vec<_>>());
    assert_eq!(p2["offset"], 50);
    for (col, dir) in [("level", "asc"), ("service", "desc"), ("created_at", "desc"), ("timestamp", "asc")] {
        let (s, _, b) =
            get_json(&srv.url(&format!("/api/query/postgres/logs?order_by={col}&order_dir={dir}&limit=200"))).await;
        assert_eq!(s, 200, "{col}: {b}");
        let vals: Vec<String> = b["data"].as_array().unwrap().iter().map(|r| r[col].to_string()).collect();
        let mut sorted = vals.clone();
        if col == "timestamp" {
            let f: Vec<f64> = b["data"].as_array().unwrap().iter().map(|r| r[col].as_f64().unwrap()).collect();
            assert!(f.windows(2).all(|w| w[0] <= w[1]));
            continue;
        }
        sorted.sort();
        if dir == "desc" {
            sorted.reverse();
        }
        assert_eq!(vals, sorted, "order_by={col} {dir}");
    }
}

#[tokio::test]
async fn default_count_is_cheap_and_says_what_it_is() {
    let (srv, _) = setup();
    let (s, _, b) = get_json(&srv.url("/api/query/postgres/logs?service=api-gateway")).await;
    assert_eq!(s, 200);
    let kind = b["total_count_kind"].as_str().unwrap();
    assert!(kind == "estimate" || kind == "exact", "{b}");
    // The background exact count lands in the shared cache shortly after.
    let mut exact = None;
    for _ in 0..50 {
        let (_, _, b) = get_json(&srv.url("/api/query/postgres/logs?service=api-gateway")).await;
        if b["total_count_kind"] == "exact" {
            exact = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = exact.expect("exact count never became available");
    assert!(b["total_count_age_ms"].is_u64());
    let (_, _, none) = get_json(&srv.url("/api/query/postgres/logs?count=none&limit=1")).await;
    assert!(none["total_count"].is_null());
    assert_eq!(none["total_count_kind"], "none");
    let (_, _, est) = get_json(&srv.url("/api/query/postgres/logs?count=estimate&level=ERROR&limit=1")).await;
    assert_eq!(est["total_count_kind"], "estimate");
    let e = est["total_count"].as_i64().unwrap();
    assert!(e > 0 && e < ROWS as i64, "estimate {e}");
}

#[tokio::test]
async fn aggregates_match_sql_sorted_by_count() {
    let (srv, url) = setup();
    for g in ["level", "service", "host"] {
        let (s, _, b) = get_json(&srv.url(&format!("/api/query/postgres/logs/aggregate?group_by={g}"))).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["source"], "postgresql");
        assert_eq!(b["group_by"], g);
        assert!(b["query_time_ms"].is_number());
        let data = b["data"].as_array().unwrap();
        let counts: Vec<i64> = data.iter().map(|d| d["count"].as_i64().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(counts.iter().sum::<i64>(), ROWS as i64);
        for d in data {
            let key = d["key"].as_str().unwrap();
            let n = sql_i64(url, &format!("SELECT count(*) FROM logs WHERE {g} = '{key}'")).await;
            assert_eq!(d["count"], n, "{g}={key}");
        }
    }
    let (s, _, b) = get_json(&srv.url("/api/query/postgres/logs/aggregate?group_by=service&level=ERROR")).await;
    assert_eq!(s, 200);
    let total: i64 = b["data"].as_array().unwrap().iter().map(|d| d["count"].as_i64().unwrap()).sum();
    assert_eq!(total, sql_i64(url, "SELECT count(*) FROM logs WHERE level='ERROR'").await);
    // ERROR is about 5 % of rows.
    assert!((total as f64 / ROWS as f64 - 0.05).abs() < 0.01);
}

#[tokio::test]
async fn stats_health_ready_metrics() {
    let (srv, _) = setup();
    let (s, _, b) = get_json(&srv.url("/api/query/postgres/stats")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["source"], "postgresql");
    assert_eq!(b["logs_count"], ROWS);
    assert_eq!(b["events_count"], 0);
    assert!(b["query_time_ms"].is_number());
    let (s, _, b) = get_json(&srv.url("/health")).await;
    assert_eq!((s, b), (200, serde_json::json!({"status": "UP"})));
    let (s, _, b) = get_json(&srv.url("/ready")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["sources"]["postgres"]["ready"], true);
    let text = reqwest::get(srv.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("fletch_http_requests_total{route=\"/stats\",source=\"postgres\",status=\"200\"}"), "{text}");
    assert!(text.contains("fletch_pg_connections_ready 4"));
}

async fn expect_400(srv: &TestServer, path: &str, param: &str) -> Value {
    let (s, _, b) = get_json(&srv.url(path)).await;
    assert_eq!(s, 400, "{path}: {b}");
    assert_eq!(b["parameter"], param, "{path}: {b}");
    assert!(b["message"].as_str().unwrap().contains(param), "{path}: {b}");
    b
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_parameter() {
    let (srv, _) = setup();
    let b = expect_400(srv, "/api/query/postgres/logs/aggregate?group_by=message", "group_by").await;
    assert_eq!(b["allowed"], serde_json::json!(["level", "service", "host"]));
    expect_400(srv, "/api/query/postgres/logs/aggregate", "group_by").await;
    let b = expect_400(srv, "/api/query/postgres/logs?order_by=metadata", "order_by").await;
    assert_eq!(b["allowed"], serde_json::json!(["timestamp", "level", "service", "created_at", "id"]));
    expect_400(srv, "/api/query/postgres/logs?order_dir=sideways", "order_dir").await;
    for limit in ["0", "10001", "-5", "many"] {
        expect_400(srv, &format!("/api/query/postgres/logs?limit={limit}"), "limit").await;
    }
    expect_400(srv, "/api/query/postgres/logs?start_time=yesterday", "start_time").await;
    expect_400(srv, "/api/query/postgres/logs?end_time=1e", "end_time").await;
    expect_400(srv, "/api/query/postgres/logs?offset=-1", "offset").await;
    expect_400(srv, "/api/query/postgres/logs?count=maybe", "count").await;
    let b = expect_400(srv, "/api/query/postgres/logs?levle=ERROR", "levle").await;
    assert_eq!(b["error"], "unknown_parameter");
    expect_400(srv, "/api/query/postgres/logs/export?format=xml", "format").await;
    expect_400(srv, "/api/query/mysql/logs", "source").await;
    // Values longer than their column are refused; SQL in a value is just a value.
    expect_400(srv, "/api/query/postgres/logs?level=ERROR%27%3B%20DROP%20TABLE%20logs%3B--", "level").await;
    let (s, _, b) = get_json(&srv.url("/api/query/postgres/logs?service=x%27%3B%20DROP%20TABLE%20logs%3B--")).await;
    assert_eq!((s, b["returned_count"].as_i64()), (200, Some(0)), "{b}");
    let (s, _, b) = get_json(&srv.url("/no/such/route")).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn exports_stream_every_row_in_each_format() {
    let (srv, url) = setup();
    let errors = sql_i64(url, "SELECT count(*) FROM logs WHERE level='ERROR'").await as usize;
    let nd = reqwest::get(srv.url("/api/query/postgres/logs/export?level=ERROR&format=ndjson")).await.unwrap();
    assert_eq!(nd.headers()["content-type"], "application/x-ndjson");
    let text = nd.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), errors);
    for l in lines.iter().take(100) {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_row_shape(&v);
        assert_eq!(v["level"], "ERROR");
    }
    let client = reqwest::Client::new();
    let csv = client
        .get(srv.url("/api/query/postgres/logs/export?level=ERROR"))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut rdr = text.lines();
    assert_eq!(rdr.next().unwrap(), "id,timestamp,level,service,host,message,metadata,created_at");
    // metadata holds commas and quotes, so count records with a CSV-aware reader.
    let batches = arrow::csv::ReaderBuilder::new(fletch::schema::logs_schema())
        .with_header(true)
        .build(std::io::Cursor::new(text.as_bytes()))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), errors);

    let ipc = reqwest::get(srv.url("/api/query/postgres/logs/export?format=arrow")).await.unwrap();
    assert_eq!(ipc.headers()["content-type"], "application/vnd.apache.arrow.stream");
    let bytes = ipc.bytes().await.unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let schema = reader.schema();
    assert_eq!(schema.fields().len(), 8);
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n as u64, ROWS);
    // Zero rows still carry the schema.
    let empty = reqwest::get(srv.url("/api/query/postgres/logs/export?format=arrow&level=NOPE"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(empty), None).unwrap();
    assert_eq!(reader.schema().fields().len(), 8);
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 0);
}

async fn active_export_queries(url: &str) -> i64 {
    sql_i64(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fletch' AND state = 'active' AND query LIKE 'SELECT id,%'").await
}

#[tokio::test]
async fn client_disconnect_cancels_the_postgres_query() {
    let (srv, url) = setup();
    // Raw socket: read a little of a big export, then vanish.
    let mut sock = std::net::TcpStream::connect(srv.http).unwrap();
    write!(sock, "GET /api/query/postgres/logs/export?format=ndjson&order_by=level HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = sock.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The query is running (held back by the client not reading).
    let t0 = Instant::now();
    loop {
        if active_export_queries(url).await >= 1 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "export query never seen active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancels_before = srv.metrics.pg_cancels.get();
    drop(sock);
    let gone = Instant::now();
    loop {
        if active_export_queries(url).await == 0 {
            break;
        }
        assert!(gone.elapsed() < Duration::from_secs(2), "query still active 2 s after the client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    while srv.metrics.pg_cancels.get() == cancels_before && t.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(srv.metrics.pg_cancels.get() > cancels_before, "no cancel request was sent");
}

/// The backend's table as Hibernate creates it (`ddl-auto: update`): an identity `id`,
/// `varchar` labels, `jsonb` metadata, the three indexes, here under another name in its
/// own schema (`postgres.table`), with rows appended in batches of 100 while fletch serves
/// and an `events` table that appears later (`postgres.events_table`).
#[tokio::test]
async fn a_hibernate_table_under_its_own_name() {
    let url = empty_database("hibernate");
    let exec = |sql: String| {
        let url = url.clone();
        off_runtime(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            })
        })
    };
    exec(
        "CREATE SCHEMA pipeline; \
          CREATE TABLE pipeline.app_logs (id bigint generated by default as identity, created_at timestamp(6), \
            host varchar(100), level varchar(10), message TEXT, metadata jsonb, service varchar(50), \
            \"timestamp\" float(53), primary key (id)); \
          CREATE INDEX idx_logs_timestamp ON pipeline.app_logs (\"timestamp\"); \
          CREATE INDEX idx_logs_level ON pipeline.app_logs (level); \
          CREATE INDEX idx_logs_service ON pipeline.app_logs (service);"
            .into(),
    );
    // What the backend does: 100 rows per insert, ids from the identity.
    let append = |batches: i64, from: i64| {
        let rows: Vec<String> = (0..batches * 100)
            .map(|i| {
                let n = from + i;
                let level = ["INFO", "DEBUG", "WARN", "ERROR"][(n % 4) as usize];
                format!(
                    "(now(), 'worker-{}', '{level}', 'msg {n}', '{{\"status_code\": {}}}', 'api-gateway', {})",
                    n % 3 + 1,
                    200 + n % 5,
                    1_768_000_000 + n
                )
            })
            .collect();
        for chunk in rows.chunks(100) {
            exec(format!(
                "INSERT INTO pipeline.app_logs (created_at, host, level, message, metadata, service, \"timestamp\") VALUES {}",
                chunk.join(",")
            ));
        }
    };
    append(20, 0);
    let mut cfg = pg_config(&url);
    cfg.postgres.table = "pipeline.app_logs".into();
    cfg.postgres.count_ttl_ms = 0;
    cfg.cache.ttl_ms = 0;
    let srv = boot(cfg);

    let (s, _, page) = get_json(&srv.url("/api/query/postgres/logs?limit=5&count=exact")).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["total_count"], 2_000);
    assert_eq!(page["data"][0]["message"], "msg 1999");
    assert_eq!(page["data"][0]["id"], 2_000);
    assert_eq!(page["data"][0]["metadata"]["status_code"], 204);
    let (s, _, agg) = get_json(&srv.url("/api/query/postgres/logs/aggregate?group_by=level")).await;
    assert_eq!(s, 200, "{agg}");
    assert_eq!(agg["data"][0]["count"], 500);
    // Absent `events` table: zero, not an error.
    let (s, _, stats) = get_json(&srv.url("/api/query/postgres/stats")).await;
    assert_eq!((s, &stats["events_count"]), (200, &serde_json::json!(0)), "{stats}");

    // Appended while serving: visible to the next exact count, page and SQL.
    append(3, 2_000);
    let (_, _, page) = get_json(&srv.url("/api/query/postgres/logs?limit=1&count=exact")).await;
    assert_eq!((&page["total_count"], &page["data"][0]["id"]), (&serde_json::json!(2_300), &serde_json::json!(2_300)));
    // A GROUP BY runs whole in PostgreSQL, under the table's real name.
    let body = serde_json::json!({"sql": "SELECT level, count(*) AS n FROM postgres.logs WHERE level = 'ERROR' GROUP BY level"});
    let resp = reqwest::Client::new().post(srv.url("/api/sql")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let row: Value = serde_json::from_str(resp.text().await.unwrap().trim()).unwrap();
    assert_eq!(row["n"], 575, "{row}");

    exec(
        "CREATE TABLE public.events (id bigint generated by default as identity primary key, kind varchar(20)); \
          INSERT INTO public.events (kind) SELECT 'deploy' FROM generate_series(1, 7);"
            .into(),
    );
    let (_, _, stats) = get_json(&srv.url("/api/query/postgres/stats")).await;
    assert_eq!(stats["events_count"], 7, "{stats}");
    assert_eq!(stats["logs_count"], 2_300, "{stats}");
}
