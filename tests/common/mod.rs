//! Test helpers: a real PostgreSQL (started by `scripts/pg.sh` unless
//! `FLETCH_TEST_PG_URL` names one), sample data loaded with fletch's own loader, and the
//! real server booted on port 0 in a background thread.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use fletch::config::Config;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Run `scripts/pg.sh` and return its stdout (the URL for `start`).
pub fn pg_script(args: &[&str]) -> String {
    let out = Command::new("bash").arg(repo().join("scripts/pg.sh")).args(args).output().expect("run scripts/pg.sh");
    assert!(out.status.success(), "scripts/pg.sh {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A private PostgreSQL cluster in `dir` (started if needed). Panics with the script's
/// error when PostgreSQL cannot be started: a missing service is a failure, not a skip.
pub fn start_cluster(dir: &Path) -> String {
    pg_script(&["start", dir.to_str().expect("utf-8 path")])
}

/// The shared PostgreSQL for this test binary.
pub fn pg_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("FLETCH_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => start_cluster(&std::env::temp_dir().join("fletch-test-pg")),
    })
    .clone()
}

/// Run blocking set-up (which may start its own runtime) off the async test's thread.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("set-up panicked"))
}

/// A fresh database with `rows` generated rows (seeded), named after the test binary.
pub fn database_with_rows(name: &str, rows: u64) -> String {
    off_runtime(|| database_with_rows_blocking(name, rows))
}

fn database_with_rows_blocking(name: &str, rows: u64) -> String {
    let base = pg_url();
    let admin = base.clone();
    let db = format!("fletch_{name}");
    let url = match base.rfind('/') {
        Some(i) => format!("{}/{db}", &base[..i]),
        None => panic!("unexpected PostgreSQL URL {base}"),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
        tokio::spawn(conn);
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
        client.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    });
    let opts =
        fletch::load::LoadOptions { pg_url: Some(url.clone()), rows, seed: 7, progress: false, ..Default::default() };
    let report = rt.block_on(fletch::load::run(opts)).expect("load sample rows");
    assert_eq!(report.pg_total, Some(rows as i64));
    url
}

pub struct TestServer {
    pub http: SocketAddr,
    /// The Flight port, when booted with [`boot_with_flight`].
    pub flight_addr: Option<SocketAddr>,
    pub metrics: std::sync::Arc<fletch::metrics::Metrics>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    #[allow(dead_code)] // not every test binary speaks Flight
    pub fn flight(&self) -> SocketAddr {
        self.flight_addr.expect("server booted with Flight")
    }
}

/// Boot the real server on port 0 with `config` (Flight off) and return its address.
pub fn boot(config: Config) -> TestServer {
    off_runtime(|| boot_blocking(config, false))
}

/// [`boot`], with Flight on its own port 0 too.
#[allow(dead_code)]
pub fn boot_with_flight(config: Config) -> TestServer {
    off_runtime(|| boot_blocking(config, true))
}

fn boot_blocking(mut config: Config, flight: bool) -> TestServer {
    config.http.listen = "127.0.0.1:0".into();
    config.flight.listen = if flight { "127.0.0.1:0".into() } else { String::new() };
    config.http.workers = 2;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match fletch::server::start(config).await {
                Ok(running) => {
                    tx.send(Ok((running.http_addr, running.flight_addr, running.metrics.clone()))).unwrap();
                    let _ = running.server.await;
                }
                Err(e) => tx.send(Err(e.to_string())).unwrap(),
            }
        })
    });
    let (http, flight_addr, metrics) =
        rx.recv_timeout(Duration::from_secs(30)).expect("server start").expect("server start");
    TestServer { http, flight_addr, metrics }
}

pub fn pg_config(url: &str) -> Config {
    let mut c = Config::default();
    c.postgres.url = url.to_string();
    c.postgres.pool_size = 4;
    c
}

/// GET and parse JSON; returns (status, headers, body).
pub async fn get_json(url: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let resp = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: body is not JSON ({e}): {text}"));
    (status, headers, body)
}

/// Direct SQL against PostgreSQL (the oracle the API is checked against).
pub async fn sql_i64(url: &str, sql: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// The HDFS (MiniDFS) for this test binary: `FLETCH_TEST_HDFS_URL`, else started with
/// `scripts/minidfs.sh` (one cluster per machine, NameNode on port 9000).
pub fn hdfs_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("FLETCH_TEST_HDFS_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            let out = Command::new("bash")
                .arg(repo().join("scripts/minidfs.sh"))
                .arg("start")
                .output()
                .expect("run minidfs.sh");
            assert!(out.status.success(), "scripts/minidfs.sh start failed:\n{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    })
    .clone()
}

/// Control MiniDFS (`datanodes/stop`, `datanodes/start`, ...).
pub fn minidfs_ctl(path: &str) {
    let out = Command::new("bash")
        .arg(repo().join("scripts/minidfs.sh"))
        .args(["ctl", path])
        .output()
        .expect("run minidfs.sh");
    assert!(out.status.success(), "minidfs.sh ctl {path} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A fresh database and a Parquet directory holding the same `rows` rows.
pub fn postgres_and_parquet(name: &str, rows: u64, parquet_url: &str, file_rows: u64) -> String {
    let url = empty_database(name);
    let opts = fletch::load::LoadOptions {
        pg_url: Some(url.clone()),
        parquet_url: Some(parquet_url.to_string()),
        rows,
        file_rows,
        seed: 11,
        progress: false,
        ..Default::default()
    };
    off_runtime(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let report = rt.block_on(fletch::load::run(opts)).expect("load");
        assert_eq!(report.pg_total, Some(rows as i64));
    });
    url
}

/// A fresh, empty database `fletch_{name}` on the test cluster; returns its URL.
pub fn empty_database(name: &str) -> String {
    let base = pg_url();
    let db = format!("fletch_{name}");
    let url = format!("{}/{db}", &base[..base.rfind('/').expect("URL has a database")]);
    off_runtime(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (client, conn) =
                tokio_postgres::connect(&base, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
            tokio::spawn(conn);
            client.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
            client.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
        });
    });
    url
}

/// Current value of an unlabelled counter on `/metrics`.
pub async fn metric(srv: &TestServer, name: &str) -> f64 {
    let text = reqwest::get(srv.url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("metric {name} not found"))
}

/// A gRPC channel to a server's Flight port.
pub async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to Flight")
}
