//! The Parquet store going away and coming back, and files appearing while fletch runs.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn datanodes_down_is_a_clear_json_error_then_recovers() {
    let parquet = format!("{}/fletch-test/{}/outage", hdfs_url(), std::process::id());
    let pg = postgres_and_parquet("hdfs_outage", 30_000, &parquet, 10_000);
    let mut cfg = pg_config(&pg);
    cfg.parquet.url = parquet;
    cfg.parquet.refresh_interval_ms = 300;
    let srv = boot(cfg);
    let (s, _, b) = get_json(&srv.url("/api/query/hdfs/logs?limit=10")).await;
    assert_eq!(s, 200, "{b}");

    minidfs_ctl("datanodes/stop");
    // Rows must be read from DataNodes: aggregates may come from in-memory rollups and
    // pages of newest rows from the copy of the newest rows, the oldest rows may not.
    let url = srv.url("/api/query/hdfs/logs?limit=10&level=WARN&count=none&order_dir=asc");
    let outcome = async move {
        let t = Instant::now();
        // Reads need DataNodes: the answer must be a JSON 502/503 quickly, never a hang or a 500.
        let (s, h, b) = get_json(&url).await;
        assert!(t.elapsed() < Duration::from_secs(15), "took {:?}", t.elapsed());
        assert!(s == 503 || s == 502, "expected 502/503, got {s}: {b}");
        assert_eq!(b["source"], "hdfs", "{b}");
        assert!(b["message"].as_str().unwrap().len() > 10);
        if s == 503 {
            assert!(h.get("retry-after").is_some());
        }
    };
    // Bring the DataNodes back even when the assertions above fail.
    let result = tokio::spawn(outcome).await;
    minidfs_ctl("datanodes/start");
    result.unwrap();

    let t = Instant::now();
    loop {
        let (s, _, b) = get_json(&srv.url("/api/query/hdfs/logs?limit=10&level=WARN&count=exact")).await;
        if s == 200 {
            assert_eq!(b["data"].as_array().unwrap().len(), 10, "{b}");
            let warn = sql_i64(&pg, "SELECT count(*) FROM logs WHERE level = 'WARN'").await;
            assert_eq!(b["total_count"], warn, "{b}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no recovery after DataNodes came back: {s} {b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn new_files_become_visible_without_restart() {
    let dir = std::env::temp_dir().join(format!("fletch-test-newfiles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let parquet = format!("file://{}", dir.display());
    let pg = postgres_and_parquet("newfiles", 10_000, &parquet, 5_000);
    let mut cfg = pg_config(&pg);
    cfg.parquet.url = parquet.clone();
    cfg.parquet.refresh_interval_ms = 200;
    let srv = boot(cfg);
    let (_, _, st) = get_json(&srv.url("/api/query/hdfs/stats")).await;
    assert_eq!(st["logs_count"], 10_000);

    // More rows, later in time, appended as new files (PostgreSQL gets them too).
    let opts = fletch::load::LoadOptions {
        pg_url: Some(pg.clone()),
        parquet_url: Some(parquet),
        rows: 5_000,
        file_rows: 5_000,
        seed: 3,
        progress: false,
        ..Default::default()
    };
    off_runtime(|| tokio::runtime::Runtime::new().unwrap().block_on(fletch::load::run(opts)).unwrap());
    let t = Instant::now();
    loop {
        let (_, _, st) = get_json(&srv.url("/api/query/hdfs/stats")).await;
        if st["logs_count"] == 15_000 {
            assert_eq!(st["files"], 3);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "new file not visible: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The newest rows now come from the new file, matching PostgreSQL.
    let (_, _, h) = get_json(&srv.url("/api/query/hdfs/logs?limit=5")).await;
    let (_, _, p) = get_json(&srv.url("/api/query/postgres/logs?limit=5")).await;
    assert_eq!(h["data"][0]["id"], p["data"][0]["id"]);
    assert!(h["data"][0]["id"].as_i64().unwrap() > 10_000);
}
