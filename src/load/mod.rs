//! `fletch load`: synthetic logs into PostgreSQL (binary COPY) and/or Parquet files
//! (`file://` or `hdfs://`), the same rows in both, with progress output.

pub mod generator;
pub mod parquet_out;
pub mod pg_copy;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_postgres::NoTls;

use crate::archive::open_store;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("store: {0}")]
    Store(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub pg_url: Option<String>,
    pub parquet_url: Option<String>,
    pub rows: u64,
    pub seed: u64,
    pub batch_rows: usize,
    pub file_rows: u64,
    /// First timestamp; `None` continues after the newest row in PostgreSQL (or a fixed epoch).
    pub start_time: Option<f64>,
    pub rows_per_second: f64,
    pub pg_streams: usize,
    pub truncate: bool,
    pub progress: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            pg_url: None,
            parquet_url: None,
            rows: 1_000_000,
            seed: 42,
            batch_rows: 8_192,
            file_rows: 500_000,
            start_time: None,
            rows_per_second: 100.0,
            pg_streams: 2,
            truncate: false,
            progress: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub rows: u64,
    pub elapsed: Duration,
    pub pg_total: Option<i64>,
    pub parquet_files: Vec<String>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "loaded {} rows in {secs:.1} s ({:.0} rows/s)", self.rows, self.rows_per_sec())?;
        if let Some(n) = self.pg_total {
            writeln!(f, "postgres: table logs now holds {n} rows")?;
        }
        if !self.parquet_files.is_empty() {
            writeln!(f, "parquet: wrote {} files", self.parquet_files.len())?;
        }
        Ok(())
    }
}

impl LoadReport {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// 2025-01-01T00:00:00Z: default start so seeded loads are reproducible.
pub const DEFAULT_START_TIME: f64 = 1_735_689_600.0;

async fn connect(url: &str) -> Result<tokio_postgres::Client, LoadError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "load connection ended");
        }
    });
    Ok(client)
}

/// Progress to a terminal as a bar, elsewhere (CI logs) as a line every few seconds.
fn progress(total: u64, enabled: bool) -> (ProgressBar, bool) {
    if !enabled {
        return (ProgressBar::hidden(), false);
    }
    if std::io::stderr().is_terminal() {
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} rows  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        (pb, false)
    } else {
        (ProgressBar::hidden(), true)
    }
}

pub async fn run(opts: LoadOptions) -> Result<LoadReport, LoadError> {
    if opts.pg_url.is_none() && opts.parquet_url.is_none() {
        return Err(LoadError::Invalid("nothing to load into: give --pg-url and/or --parquet".into()));
    }
    if opts.rows == 0 || opts.batch_rows == 0 || opts.file_rows == 0 {
        return Err(LoadError::Invalid("--rows, --batch-rows and --file-rows must be positive".into()));
    }
    let started = Instant::now();
    let mut first_id = 1;
    let mut start_time = opts.start_time.unwrap_or(DEFAULT_START_TIME);
    let mut created = false;
    let main_client = match &opts.pg_url {
        Some(url) => {
            let c = connect(url).await?;
            created = pg_copy::ensure_table(&c).await?;
            if opts.truncate {
                c.batch_execute("TRUNCATE logs").await?;
            }
            first_id = pg_copy::next_id(&c).await?;
            if opts.start_time.is_none() {
                let newest: Option<f64> = c.query_one(r#"SELECT max("timestamp") FROM logs"#, &[]).await?.get(0);
                if let Some(t) = newest {
                    start_time = t + 1.0;
                }
            }
            Some(c)
        }
        None => None,
    };

    let (pb, log_lines) = progress(opts.rows, opts.progress);
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut pg_tx = None;
    if let Some(url) = &opts.pg_url {
        let (tx, rx) = async_channel::bounded(8);
        pg_tx = Some(tx);
        for _ in 0..opts.pg_streams.max(1) {
            let (url, rx, done, pb) = (url.clone(), rx.clone(), done.clone(), pb.clone());
            tasks.push(tokio::spawn(async move {
                let client = connect(&url).await?;
                pg_copy::copy_batches(&client, rx, |n| {
                    done.fetch_add(n as u64, Ordering::Relaxed);
                    pb.inc(n as u64);
                })
                .await
                .map(|_| Vec::<String>::new())
            }));
        }
    }
    let mut pq_tx = None;
    if let Some(url) = &opts.parquet_url {
        let (store, dir) = open_store(url).map_err(|e| LoadError::Store(e.to_string()))?;
        let (tx, rx) = async_channel::bounded(8);
        pq_tx = Some(tx);
        let count_here = opts.pg_url.is_none();
        let (done, pb, file_rows) = (done.clone(), pb.clone(), opts.file_rows);
        tasks.push(tokio::spawn(async move {
            parquet_out::write_files(store, dir, file_rows, rx, |n| {
                if count_here {
                    done.fetch_add(n as u64, Ordering::Relaxed);
                    pb.inc(n as u64);
                }
            })
            .await
        }));
    }

    let ticker = log_lines.then(|| {
        let (done, total) = (done.clone(), opts.rows);
        tokio::spawn(async move {
            let t0 = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let n = done.load(Ordering::Relaxed);
                eprintln!("load: {n}/{total} rows ({:.0} rows/s)", n as f64 / t0.elapsed().as_secs_f64());
            }
        })
    });

    let gen_opts = opts.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let mut g = generator::Generator::new(gen_opts.seed, first_id, start_time, gen_opts.rows_per_second);
        let mut left = gen_opts.rows;
        while left > 0 {
            let n = left.min(gen_opts.batch_rows as u64) as usize;
            let batch = g.next_batch(n);
            if let Some(tx) = &pq_tx {
                if tx.send_blocking(batch.clone()).is_err() {
                    break;
                }
            }
            if let Some(tx) = &pg_tx {
                if tx.send_blocking(batch).is_err() {
                    break;
                }
            }
            left -= n as u64;
        }
    });
    producer.await.map_err(|e| LoadError::Invalid(format!("generator failed: {e}")))?;
    let mut files = Vec::new();
    for t in tasks {
        files.extend(t.await.map_err(|e| LoadError::Invalid(format!("writer failed: {e}")))??);
    }
    if let Some(t) = ticker {
        t.abort();
    }
    pb.finish_and_clear();
    let elapsed = started.elapsed();
    let pg_total = match &main_client {
        Some(c) => {
            if created {
                if opts.progress {
                    eprintln!("load: building indexes on timestamp, level, service ...");
                }
                pg_copy::create_indexes(c).await?;
            }
            Some(pg_copy::finish(c).await?)
        }
        None => None,
    };
    files.sort();
    Ok(LoadReport { rows: opts.rows, elapsed, pg_total, parquet_files: files })
}
