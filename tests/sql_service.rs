//! SQL through the service door, against the real server on real sockets: the time budget
//! and admission apply to SQL as to every other query, statements too big to plan safely
//! are refused before planning, errors known before the first row are status codes, and a
//! prepared statement made by one process runs on another.
//!
//! Data: `ROWS` rows in PostgreSQL and in a `file://` Parquet directory, written by
//! fletch's loader. A cross join of the archive with itself is the runaway statement.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{ActionCreatePreparedStatementRequest, CommandPreparedStatementQuery, ProstMessageExt};
use arrow_flight::{Action, FlightClient, FlightDescriptor, Ticket};
use common::*;
use futures::{StreamExt, TryStreamExt};
use prost::Message;

const ROWS: u64 = 20_000;
const TIMEOUT_MS: u64 = 1_500;
/// 400 M pairs of strings: minutes of work, and no rows until the end.
const RUNAWAY: &str = "SELECT max(length(a.message || b.message)) FROM hdfs.logs a CROSS JOIN hdfs.logs b";

/// The runaway tests measure this process's CPU to see that a statement stopped, so tests
/// here run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Env {
    pg_url: String,
    /// `query_timeout_ms` = [`TIMEOUT_MS`].
    short: TestServer,
    /// A second process with the same config as `short`.
    twin: TestServer,
    /// One export permit per source, a short queue budget.
    tight: TestServer,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fletch-sql-service-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let parquet_url = format!("file://{}", dir.display());
        let pg_url = postgres_and_parquet("sql_service", ROWS, &parquet_url, 5_000);
        let mut c = pg_config(&pg_url);
        c.parquet.url = parquet_url;
        c.admission.query_timeout_ms = TIMEOUT_MS;
        let short = boot_with_flight(c.clone());
        let twin = boot_with_flight(c.clone());
        c.admission.export_permits = 1;
        c.admission.queue_timeout_ms = 300;
        c.admission.query_timeout_ms = 20_000;
        let tight = boot_with_flight(c);
        Env { pg_url, short, twin, tight }
    })
}

async fn post_sql(srv: &TestServer, sql: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(srv.url("/api/sql"))
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .expect("POST")
}

/// Run `sql` over Flight SQL to the end; the status of the first failure.
async fn flight_sql_status(addr: SocketAddr, sql: &str) -> Result<usize, tonic::Status> {
    let mut c = FlightSqlServiceClient::new(channel(addr).await);
    let info = c.execute(sql.to_string(), None).await.map_err(flight_status)?;
    let mut s = c.do_get(info.endpoint[0].ticket.clone().expect("ticket")).await.map_err(flight_status)?;
    let mut rows = 0;
    while let Some(b) = s.try_next().await.map_err(flight_status)? {
        rows += b.num_rows();
    }
    Ok(rows)
}

fn flight_status(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// CPU seconds this process (the servers run in it) has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("comm").1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

async fn assert_idle_after_timeout(srv: &TestServer) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds() - before;
    assert!(used < 0.6, "the timed-out statement kept running: {used:.2} CPU-s in 2 s");
    assert!(metric(srv, "fletch_query_timeouts_total").await >= 1.0);
}

#[tokio::test]
async fn runaway_sql_over_http_times_out_cleanly_and_stops() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    let started = Instant::now();
    let resp = post_sql(&e.short, RUNAWAY).await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status().as_u16(), 504, "{:?}", resp.text().await);
    assert!(elapsed < Duration::from_millis(TIMEOUT_MS + 1_000), "answered after {elapsed:?}");
    let body: serde_json::Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["error"], "timeout", "{body}");
    assert!(body["message"].as_str().unwrap().contains("time budget"), "{body}");
    assert_idle_after_timeout(&e.short).await;
}

#[tokio::test]
async fn runaway_sql_over_flight_is_deadline_exceeded_and_stops() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    let started = Instant::now();
    let err = flight_sql_status(e.twin.flight(), RUNAWAY).await.expect_err("must time out");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS + 1_000), "answered after {:?}", started.elapsed());
    assert_idle_after_timeout(&e.twin).await;
}

#[tokio::test]
async fn sql_over_http_counts_against_admission() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    // Hold the only hdfs export permit with a statement that has not finished.
    let srv = e.tight.url("/api/sql");
    let holder = tokio::spawn(async move {
        let body = serde_json::json!({ "sql": "SELECT * FROM hdfs.logs a CROSS JOIN hdfs.logs b" });
        let resp = reqwest::Client::new().post(srv).json(&body).send().await.expect("POST");
        let mut rows = resp.bytes_stream();
        assert!(rows.next().await.is_some());
        // Holds the permit while it does not read.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(rows);
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = post_sql(&e.tight, "SELECT count(*) FROM hdfs.logs").await;
    assert_eq!(resp.status().as_u16(), 503);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "overloaded", "{body}");
    holder.abort();
}

#[tokio::test]
async fn statements_nested_too_deep_are_refused_not_fatal() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    let chain = |term: &str, op: &str, n: usize| vec![term; n].join(op);
    let cases = [
        format!("SELECT 1{}", "+1".repeat(2_000)),
        format!("SELECT count(*) FROM hdfs.logs WHERE {}", chain("level = 'A'", " AND ", 2_000)),
        format!("SELECT count(*) FROM postgres.logs WHERE {}", chain("level = 'A'", " OR ", 12_000)),
        format!("SELECT count(*) FROM hdfs.logs WHERE {}", chain("level = 'A'", " OR ", 12_000)),
        format!("SELECT {}", chain("'a'", " || ", 5_000)),
        format!("SELECT {}", chain("'a'", " || ", 30_000)),
    ];
    for sql in &cases {
        let started = Instant::now();
        let resp = post_sql(&e.short, sql).await;
        assert_eq!(resp.status().as_u16(), 400, "{}…", &sql[..60]);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains("nested more than 256 levels"), "{body}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        let err = flight_sql_status(e.short.flight(), sql).await.expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
    // Just under the limit still runs.
    let ok = format!("SELECT 1{}", "+1".repeat(200));
    assert_eq!(post_sql(&e.short, &ok).await.status().as_u16(), 200);
    let (status, _, body) = get_json(&e.short.url("/health")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("UP")));
}

#[tokio::test]
async fn errors_before_the_first_row_are_status_codes() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    for sql in ["SELECT 1/0", "SELECT * FROM postgres.logs WHERE message = 'a\u{0}b'", "SELECT CAST('x' AS INT)"] {
        let resp = post_sql(&e.short, sql).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 400, "{sql}: {text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{sql}: not JSON: {text}"));
        assert_eq!(body["error"], "sql_error", "{sql}: {body}");
    }
}

#[tokio::test]
async fn sql_bodies_are_read_up_to_what_the_engine_takes() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    // 600 KiB of SQL (over actix-web's default 256 KiB body limit) runs.
    let long = format!("SELECT 1 AS one{}", " ".repeat(600 * 1024));
    let resp = post_sql(&e.short, &long).await;
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
    // Past the statement limit: the engine's 400 naming it.
    let longer = format!("SELECT 1 AS one{}", " ".repeat(1_100 * 1024));
    let resp = post_sql(&e.short, &longer).await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("1048576 bytes"), "{body}");
    // Past the body limit: a JSON 413 naming it, not actix-web's plain text.
    let resp = reqwest::Client::new()
        .post(e.short.url("/api/sql"))
        .header("content-type", "application/json")
        .body(vec![b' '; 5 << 20])
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 413);
    let body: serde_json::Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["error"], "too_large", "{body}");
    assert!(body["message"].as_str().unwrap().contains("4194304 bytes"), "{body}");
}

#[tokio::test]
async fn offsets_are_bounded() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    for source in ["postgres", "hdfs"] {
        for offset in ["9223372036854775807", "9223372036854775707", "10000001"] {
            let started = Instant::now();
            let (status, _, body) = get_json(&e.short.url(&format!("/api/query/{source}/logs?offset={offset}"))).await;
            assert_eq!(status, 400, "{source} offset={offset}: {body}");
            assert_eq!(body["parameter"], "offset");
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }
}

#[tokio::test]
async fn empty_and_unknown_tickets_are_invalid_argument() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    let mut c = FlightClient::new(channel(e.short.flight()).await);
    for ticket in [&b""[..], b"\x0a\x03abc", b"{", b"\xff\xfe"] {
        let err = match c.do_get(Ticket::new(ticket.to_vec())).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.expect_err("no data for a bad ticket"),
            Err(e) => e,
        };
        let status = flight_status(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{ticket:?}: {status:?}");
    }
}

#[tokio::test]
async fn a_prepared_statement_runs_on_another_process() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    let sql = "SELECT count(*) FROM postgres.logs WHERE level = 'ERROR'";
    let mut a = FlightClient::new(channel(e.short.flight()).await);
    let request = ActionCreatePreparedStatementRequest { query: sql.into(), transaction_id: None };
    let action = Action::new("CreatePreparedStatement", request.as_any().encode_to_vec());
    let answer = a.do_action(action).await.unwrap().next().await.expect("one result").unwrap();
    let created = arrow_flight::sql::Any::decode(answer).unwrap();
    let created: arrow_flight::sql::ActionCreatePreparedStatementResult = created.unpack().unwrap().expect("result");

    // The second process has never seen this handle.
    let mut b = FlightClient::new(channel(e.twin.flight()).await);
    let cmd = CommandPreparedStatementQuery { prepared_statement_handle: created.prepared_statement_handle };
    let info = b.get_flight_info(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec())).await.unwrap();
    let batches: Vec<_> =
        b.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.expect("rows");
    let count = batches.iter().find(|b| b.num_rows() > 0).unwrap().column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(count, sql_i64(&e.pg_url, "SELECT count(*) FROM logs WHERE level = 'ERROR'").await);
}

/// Statements PostgreSQL runs whole for this test's `JOIN`, other than the probe itself.
async fn active_joins(pg_url: &str) -> i64 {
    sql_i64(
        pg_url,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query ILIKE '%join%' \
         AND query NOT ILIKE '%pg_stat_activity%'",
    )
    .await
}

/// Starts `client`, waits until PostgreSQL runs the join, aborts the client and returns how
/// long PostgreSQL went on running it.
async fn join_runs_on_after_client_leaves(e: &Env, client: tokio::task::JoinHandle<()>) -> Duration {
    let seen = Instant::now();
    while active_joins(&e.pg_url).await == 0 {
        assert!(seen.elapsed() < Duration::from_secs(10), "the join never reached PostgreSQL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancels = metric(&e.tight, "fletch_pg_cancels_total").await;
    client.abort();
    let left = Instant::now();
    while active_joins(&e.pg_url).await > 0 {
        assert!(left.elapsed() < Duration::from_secs(3), "PostgreSQL still runs the join after the client left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(metric(&e.tight, "fletch_pg_cancels_total").await > cancels);
    left.elapsed()
}

/// PostgreSQL computes this whole before its one row: nothing is read meanwhile.
const POSTGRES_JOIN: &str = "SELECT count(*) FROM postgres.logs a JOIN postgres.logs b ON a.level = b.level";

#[tokio::test]
async fn pushed_down_sql_is_cancelled_when_the_client_leaves() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    let addr = e.tight.flight();
    let flight = tokio::spawn(async move {
        let _ = flight_sql_status(addr, POSTGRES_JOIN).await;
    });
    let took = join_runs_on_after_client_leaves(e, flight).await;
    eprintln!("Flight SQL client gone → PostgreSQL query ended in {took:?}");

    let url = e.tight.url("/api/sql");
    let http = tokio::spawn(async move {
        let body = serde_json::json!({ "sql": POSTGRES_JOIN });
        let _ = reqwest::Client::new().post(url).json(&body).send().await;
    });
    let took = join_runs_on_after_client_leaves(e, http).await;
    eprintln!("HTTP client gone → PostgreSQL query ended in {took:?}");
}

/// Timestamps of a page, as the API returns them.
async fn page_timestamps(srv: &TestServer, source: &str, query: &str) -> Vec<f64> {
    let (status, _, body) = get_json(&srv.url(&format!("/api/query/{source}/logs?{query}&count=none"))).await;
    assert_eq!(status, 200, "{source} {query}: {body}");
    body["data"].as_array().unwrap().iter().map(|r| r["timestamp"].as_f64().unwrap()).collect()
}

#[tokio::test]
async fn deep_pages_skip_row_groups_and_agree_with_postgres() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    for order in ["asc", "desc"] {
        for offset in [10_000, 12_345, 19_950] {
            let q = format!("limit=100&offset={offset}&order_dir={order}");
            let started = Instant::now();
            let hdfs = page_timestamps(&e.short, "hdfs", &q).await;
            assert!(started.elapsed() < Duration::from_secs(2), "{q}: {:?}", started.elapsed());
            assert_eq!(hdfs, page_timestamps(&e.short, "postgres", &q).await, "{q}");
            assert_eq!(hdfs.len(), (ROWS - offset).min(100) as usize, "{q}");
        }
    }
    assert!(page_timestamps(&e.short, "hdfs", "limit=100&offset=10000000").await.is_empty());
}

#[tokio::test]
async fn a_slow_reader_is_not_timed_out() {
    let _one_at_a_time = SERIAL.lock().await;
    let e = env();
    for source in ["postgres", "hdfs"] {
        let url = e.short.url(&format!("/api/query/{source}/logs/export?format=ndjson&order_dir=asc"));
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let mut body = resp.bytes_stream();
        let mut bytes = body.next().await.expect("first chunk").expect("bytes").to_vec();
        // Longer than the time budget: the budget is for fletch's waits, not the reader's.
        tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 2)).await;
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("{source}: stream cut: {e}")));
        }
        let lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(lines as u64, ROWS, "{source}");
    }
}
