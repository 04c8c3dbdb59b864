//! PostgreSQL stopped and restarted under a running fletch: fast 503 + Retry-After while it
//! is gone, 200 again once it is back, with no restart of fletch.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn postgres_outage_is_a_fast_503_then_recovers() {
    // A cluster of our own: stopping the shared one would break other tests.
    let dir = std::env::temp_dir().join(format!("fletch-test-pg-restart-{}", std::process::id()));
    let base = start_cluster(&dir);
    let opts = fletch::load::LoadOptions {
        pg_url: Some(base.clone()),
        rows: 5_000,
        progress: false,
        truncate: true,
        ..Default::default()
    };
    fletch::load::run(opts).await.expect("load");
    let mut cfg = pg_config(&base);
    cfg.postgres.backoff_max_ms = 500;
    let srv = boot(cfg);
    let (s, _, _) = get_json(&srv.url("/api/query/postgres/logs?limit=5")).await;
    assert_eq!(s, 200);

    pg_script(&["stop", dir.to_str().unwrap()]);
    // Give the connection actors a moment to notice the closed sockets.
    let t = Instant::now();
    let mut saw_503 = false;
    while t.elapsed() < Duration::from_secs(10) {
        let started = Instant::now();
        let (s, h, b) = get_json(&srv.url("/api/query/postgres/logs?limit=5")).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "request during outage took {took:?}");
        assert_ne!(s, 500, "outage must not be a 500: {b}");
        if s == 503 {
            assert!(h.get("retry-after").is_some(), "503 without Retry-After");
            assert_eq!(b["error"], "source_unavailable", "{b}");
            assert_eq!(b["source"], "postgres");
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_503, "never got 503 while PostgreSQL was down");
    let (s, _, b) = get_json(&srv.url("/ready")).await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["sources"]["postgres"]["ready"], false);

    start_cluster(&dir);
    let t = Instant::now();
    loop {
        let (s, _, b) = get_json(&srv.url("/api/query/postgres/logs?limit=5")).await;
        if s == 200 {
            assert_eq!(b["returned_count"], 5);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "no recovery 15 s after PostgreSQL came back: {s} {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = reqwest::get(srv.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("fletch_actor_restarts_total{actor=\"pg_connection\"}"),
        "restarts not visible in metrics"
    );
    pg_script(&["destroy", dir.to_str().unwrap()]);
}
