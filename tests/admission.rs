//! Admission control, single-flight and caching against a real PostgreSQL.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;

/// These tests saturate the server on purpose: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn setup() -> &'static (TestServer, String) {
    static S: OnceLock<(TestServer, String)> = OnceLock::new();
    S.get_or_init(|| {
        let url = database_with_rows("admission", 200_000);
        let mut cfg = pg_config(&url);
        cfg.postgres.pool_size = 4; // heavy lane: 1 permit, light lane: 3
        cfg.admission.queue_depth = 2;
        cfg.admission.queue_timeout_ms = 1_000;
        cfg.cache.ttl_ms = 60_000;
        (boot(cfg), url)
    })
}

fn counter(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn metrics_text(srv: &TestServer) -> String {
    reqwest::get(srv.url("/metrics")).await.unwrap().text().await.unwrap()
}

/// Distinct heavy queries (no sharing possible): all combinations of filters.
fn distinct_aggregates(n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for g in ["level", "service", "host"] {
        for l in ["INFO", "DEBUG", "WARN", "ERROR"] {
            for s in ["api-gateway", "user-service", "order-service", "payment-service"] {
                for st in 0..20 {
                    out.push(format!(
                        "/api/query/postgres/logs/aggregate?group_by={g}&level={l}&service={s}&start_time={}",
                        1_000 + st
                    ));
                }
            }
        }
    }
    out.truncate(n);
    out
}

#[tokio::test]
async fn a_burst_beyond_capacity_gets_fast_503s_and_the_rest_succeeds() {
    let _one_at_a_time = SERIAL.lock().await;
    let (srv, _) = setup();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let results = join_all(distinct_aggregates(60).into_iter().map(|p| {
        let (client, url) = (client.clone(), srv.url(&p));
        async move {
            let t = Instant::now();
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let body: serde_json::Value = r.json().await.unwrap();
            (status, retry, body, t.elapsed())
        }
    }))
    .await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let rejected: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(
        ok + rejected.len(),
        results.len(),
        "only 200 or 503 expected: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(ok >= 1, "nothing within capacity succeeded");
    assert!(rejected.len() >= 30, "burst of 60 against 1 permit + 2 queue slots: only {} refused", rejected.len());
    for (_, retry, body, took) in &rejected {
        assert!(retry.is_some_and(|s| s >= 1), "503 without Retry-After: {body}");
        assert_eq!(body["error"], "overloaded");
        assert_eq!(body["source"], "postgres");
        // Refusals are decided up front, not after waiting out a timeout.
        assert!(*took < Duration::from_millis(500), "503 took {took:?}");
    }
    let fastest = rejected.iter().map(|r| r.3).min().unwrap();
    assert!(fastest < Duration::from_millis(100), "fastest 503 took {fastest:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = metrics_text(srv).await;
    assert!(counter(&text, "fletch_rejections_total{source=\"postgres\"}") >= rejected.len() as f64);
}

#[tokio::test]
async fn identical_concurrent_aggregates_execute_once() {
    let _one_at_a_time = SERIAL.lock().await;
    let (srv, _) = setup();
    let path = "/api/query/postgres/logs/aggregate?group_by=host&level=WARN&service=user-service";
    let before = metrics_text(srv).await;
    let exec0 = counter(&before, "fletch_source_executions_total{source=\"postgres\",kind=\"aggregate\"}");
    let client = reqwest::Client::new();
    let bodies = join_all((0..20).map(|_| {
        let (client, url) = (client.clone(), srv.url(path));
        async move { client.get(url).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    }))
    .await;
    for b in &bodies {
        assert_eq!(b["data"], bodies[0]["data"], "{b}");
    }
    let after = metrics_text(srv).await;
    let exec1 = counter(&after, "fletch_source_executions_total{source=\"postgres\",kind=\"aggregate\"}");
    assert_eq!(exec1 - exec0, 1.0, "20 identical requests must run once at the source");
    let shared = counter(&after, "fletch_coalesced_requests_total{source=\"postgres\"}")
        - counter(&before, "fletch_coalesced_requests_total{source=\"postgres\"}")
        + counter(&after, "fletch_cache_hits_total{source=\"postgres\"}")
        - counter(&before, "fletch_cache_hits_total{source=\"postgres\"}");
    assert_eq!(shared, 19.0);
    // Later requests are answered from cache and say how old the answer is.
    let (_, _, b) = get_json(&srv.url(path)).await;
    assert!(b["cache_age_ms"].is_u64(), "{b}");
}

#[tokio::test]
async fn cheap_queries_do_not_wait_behind_heavy_ones() {
    let _one_at_a_time = SERIAL.lock().await;
    let (srv, _) = setup();
    let client = reqwest::Client::new();
    // Keep the heavy lane saturated with distinct aggregates for the whole test.
    let heavy = tokio::spawn({
        let (client, paths) = (client.clone(), distinct_aggregates(600));
        let srv_urls: Vec<String> = paths.iter().map(|p| srv.url(p)).skip(100).collect();
        async move {
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut i = 0;
            while Instant::now() < deadline {
                let batch: Vec<_> = srv_urls.iter().cycle().skip(i).take(8).cloned().collect();
                i += 8;
                join_all(batch.into_iter().map(|u| client.get(u).send())).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let t = Instant::now();
        let (s, _, b) = get_json(&srv.url(&format!("/api/query/postgres/logs?limit=10&offset={i}&count=none"))).await;
        assert_eq!(s, 200, "{b}");
        worst = worst.max(t.elapsed());
    }
    heavy.await.unwrap();
    let text = metrics_text(srv).await;
    assert!(counter(&text, "fletch_permits_in_use{lane=\"postgres/heavy\"}") <= 1.0);
    assert!(worst < Duration::from_millis(500), "a page took {worst:?} while heavy queries ran");
}

#[tokio::test]
async fn stale_aggregates_are_served_at_once_while_one_refresh_runs() {
    let _one_at_a_time = SERIAL.lock().await;
    let (_, url) = setup();
    let mut cfg = pg_config(url);
    // A TTL long enough that, once refreshed, the answer stays fresh across many polls even
    // on a loaded machine whose disk stalls for a second (a poll that found it stale again
    // would rightly start a second refresh).
    cfg.cache.ttl_ms = 3_000;
    cfg.cache.max_stale_ms = 60_000;
    let srv = boot(cfg);
    let path = "/api/query/postgres/logs/aggregate?group_by=service&level=DEBUG";
    let (s, _, first) = get_json(&srv.url(path)).await;
    assert_eq!(s, 200);
    assert!(first.get("cache_age_ms").is_none(), "first answer is computed: {first}");
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let exec = |t: &str| counter(t, "fletch_source_executions_total{source=\"postgres\",kind=\"aggregate\"}");
    let before = exec(&metrics_text(&srv).await);
    let (_, _, stale) = get_json(&srv.url(path)).await;
    assert!(stale["cache_age_ms"].as_u64().unwrap() >= 3_200, "expected the stale answer: {stale}");
    assert_eq!(stale["data"], first["data"]);
    // One background refresh follows; once it lands the answer is fresh again, and the
    // stale requests in between joined that refresh instead of starting their own.
    let t = Instant::now();
    loop {
        let (_, _, b) = get_json(&srv.url(path)).await;
        if b["cache_age_ms"].as_u64().is_some_and(|a| a < 3_000) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "never refreshed: {b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exec(&metrics_text(&srv).await), before + 1.0);
}
