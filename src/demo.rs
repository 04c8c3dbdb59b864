//! `fletch demo`: a private PostgreSQL cluster in a temp dir (via `scripts/pg.sh`), local
//! Parquet beside it, sample data in both, the server, and example requests to try.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start PostgreSQL: {0}")]
    Postgres(String),
    #[error("loading sample data failed: {0}")]
    Load(#[from] crate::load::LoadError),
    #[error(transparent)]
    Server(#[from] crate::server::StartError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn pg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh")
}

fn pg(args: &[&str]) -> Result<String, DemoError> {
    let out = Command::new("bash").arg(pg_script()).args(args).output()?;
    if !out.status.success() {
        return Err(DemoError::Postgres(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn logs_rows(url: &str) -> Option<i64> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(conn);
    let row = client.query_one("SELECT count(*) FROM logs", &[]).await.ok()?;
    Some(row.get(0))
}

fn examples(http: &str) -> String {
    let h = format!("http://{http}");
    [
        "Try:".to_string(),
        format!("  curl '{h}/api/query/postgres/logs?limit=5'"),
        format!("  curl '{h}/api/query/hdfs/logs?limit=5&level=ERROR'"),
        format!("  curl '{h}/api/query/postgres/logs/aggregate?group_by=service&level=ERROR'"),
        format!("  curl '{h}/api/query/hdfs/logs/aggregate?group_by=level'"),
        format!("  curl '{h}/api/query/compare?level=ERROR&limit=100'"),
        format!("  curl '{h}/api/query/hdfs/stats'"),
        format!("  curl '{h}/api/query/postgres/logs/export?format=csv&level=ERROR' | head"),
        format!("  curl '{h}/metrics'    curl '{h}/ready'    curl '{h}/openapi.json'"),
        "Stop with Ctrl-C.".to_string(),
    ]
    .join("\n")
}

/// What `fletch demo` was asked for.
pub struct DemoOptions {
    /// Rows of sample data (in PostgreSQL and in Parquet).
    pub rows: u64,
    /// Keep the temporary PostgreSQL cluster and Parquet files when stopping.
    pub keep: bool,
}

pub fn run(args: DemoOptions, mut config: crate::config::Config) -> Result<(), DemoError> {
    let dir = tempfile::Builder::new().prefix("fletch-demo-").tempdir()?;
    let pg_dir = dir.path().join("pg");
    let own_cluster = config.postgres.url.is_empty();
    if own_cluster {
        eprintln!("demo: starting a private PostgreSQL cluster in {} ...", pg_dir.display());
        config.postgres.url = pg(&["start", pg_dir.to_str().unwrap_or_default()])?;
    }
    if config.parquet.url.is_empty() {
        let pq = dir.path().join("parquet");
        std::fs::create_dir_all(&pq)?;
        config.parquet.url = format!("file://{}", pq.display());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let existing = rt.block_on(logs_rows(&config.postgres.url)).unwrap_or(0);
    if existing == 0 {
        eprintln!("demo: generating {} rows into PostgreSQL and {} ...", args.rows, config.parquet.url);
        let opts = crate::load::LoadOptions {
            pg_url: Some(config.postgres.url.clone()),
            parquet_url: Some(config.parquet.url.clone()),
            rows: args.rows,
            file_rows: (args.rows / 10).max(50_000),
            ..Default::default()
        };
        let report = rt.block_on(crate::load::run(opts))?;
        print!("{report}");
    } else {
        eprintln!("demo: PostgreSQL already holds {existing} rows; not loading");
    }
    drop(rt);

    let result = actix_web::rt::System::new().block_on(async move {
        let running = crate::server::start(config.clone()).await?;
        println!("\nfletch demo is up: http://{}", running.http_addr);
        println!("  postgres: {}\n  parquet:  {}\n", config.postgres.url, config.parquet.url);
        println!("{}", examples(&running.http_addr.to_string()));
        crate::shutdown::serve_until_signal(running).await
    });

    if args.keep {
        let kept = dir.keep();
        eprintln!(
            "demo: kept {} (PostgreSQL still running; stop with scripts/pg.sh stop {}/pg)",
            kept.display(),
            kept.display()
        );
    } else if own_cluster {
        eprintln!("demo: stopping PostgreSQL and removing {}", pg_dir.display());
        let _ = pg(&["destroy", pg_dir.to_str().unwrap_or_default()]);
    }
    Ok(result?)
}
