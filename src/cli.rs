//! The `fletch` command line: `serve`, `load`, `demo`, and the Ballista roles `scheduler`
//! and `executor`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "fletch",
    version,
    about = "Streaming query server for PostgreSQL and Parquet-on-HDFS logs (HTTP JSON + Arrow Flight)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Generate synthetic logs into PostgreSQL and/or Parquet.
    Load(LoadArgs),
    /// Private PostgreSQL + local Parquet + sample data + server, in one command.
    Demo(DemoArgs),
    /// A Ballista scheduler for heavy SQL (`[ballista] scheduler` of the servers).
    Scheduler(SchedulerArgs),
    /// A Ballista executor that reads the archive and PostgreSQL of the config.
    Executor(ExecutorArgs),
}

#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// gRPC listen address (port 0 = any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub listen: String,
    /// Where the archive is: `[parquet] url`.
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Args, Debug)]
pub struct ExecutorArgs {
    /// The scheduler, e.g. df://127.0.0.1:50050
    #[arg(long, default_value = "df://127.0.0.1:50050")]
    pub scheduler: String,
    /// Host to listen on and to advertise to the scheduler and to fletch.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Arrow Flight port results and shuffles are fetched from.
    #[arg(long, default_value_t = 50061)]
    pub flight_port: u16,
    /// gRPC port the scheduler sends tasks to.
    #[arg(long, default_value_t = 50062)]
    pub grpc_port: u16,
    /// Tasks run at once (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub slots: usize,
    /// Directory for shuffle files (default: a temporary directory).
    #[arg(long)]
    pub work_dir: Option<String>,
    /// Where the archive and PostgreSQL are: `[parquet] url` and `[postgres] url`.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Settings shared by `serve` and `demo`. Flags override env, which overrides the file.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// TOML config file (see config/fletch.example.toml).
    #[arg(long, env = "FLETCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP listen address (port 0 = any free port).
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Arrow Flight listen address; "" disables Flight.
    #[arg(long)]
    pub flight_listen: Option<String>,
    /// PostgreSQL URL, e.g. postgres://user@127.0.0.1:5432/db
    #[arg(long)]
    pub pg_url: Option<String>,
    /// Parquet directory: file:///abs/dir or hdfs://host:port/dir
    #[arg(long)]
    pub parquet_url: Option<String>,
    /// Any other setting as section.key=value (repeatable), e.g. --set postgres.pool_size=16
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    pub fn resolve(&self) -> Result<Config, crate::config::ConfigError> {
        let mut c = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(v) = &self.http_listen {
            c.http.listen = v.clone();
        }
        if let Some(v) = &self.flight_listen {
            c.flight.listen = v.clone();
        }
        if let Some(v) = &self.pg_url {
            c.postgres.url = v.clone();
        }
        if let Some(v) = &self.parquet_url {
            c.parquet.url = v.clone();
        }
        for s in &self.set {
            c.set(s)?;
        }
        Ok(c)
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// PostgreSQL URL to load into (table `logs` is created with its indexes if missing).
    #[arg(long, env = "FLETCH_POSTGRES__URL")]
    pub pg_url: Option<String>,
    /// Parquet directory to write into: file:///abs/dir or hdfs://host:port/dir
    #[arg(long = "parquet")]
    pub parquet_url: Option<String>,
    /// Rows to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Random seed: the same seed gives the same rows.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Rows per Parquet file.
    #[arg(long, default_value_t = 500_000)]
    pub file_rows: u64,
    /// Rows per generated batch.
    #[arg(long, default_value_t = 8_192)]
    pub batch_rows: usize,
    /// First timestamp (epoch seconds); default: after the newest row in PostgreSQL, else 2025-01-01.
    #[arg(long)]
    pub start_time: Option<f64>,
    /// Simulated log rate: rows per second of timestamps.
    #[arg(long, default_value_t = 100.0)]
    pub rows_per_second: f64,
    /// Parallel COPY connections.
    #[arg(long, default_value_t = 2)]
    pub pg_streams: usize,
    /// Empty `logs` first.
    #[arg(long)]
    pub truncate: bool,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Rows of sample data (in PostgreSQL and in Parquet).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Keep the temporary PostgreSQL cluster and Parquet files when stopping.
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLETCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,datafusion=warn,hdfs_native=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

pub fn run(cli: Cli) -> ExitCode {
    init_tracing();
    let result: Result<(), String> = match cli.command {
        Command::Serve(args) => args
            .config
            .resolve()
            .map_err(|e| e.to_string())
            .and_then(|c| crate::server::run_blocking(c).map_err(|e| e.to_string())),
        Command::Load(args) => run_load(args),
        Command::Scheduler(args) => args
            .config
            .resolve()
            .map_err(|e| e.to_string())
            .and_then(|c| crate::roles::run_scheduler(crate::roles::SchedulerRole { bind: args.listen }, c)),
        Command::Executor(args) => args.config.resolve().map_err(|e| e.to_string()).and_then(|c| {
            let role = crate::roles::ExecutorRole {
                scheduler: args.scheduler,
                bind_host: args.host,
                flight_port: args.flight_port,
                grpc_port: args.grpc_port,
                slots: args.slots,
                work_dir: args.work_dir,
            };
            crate::roles::run_executor(role, c)
        }),
        Command::Demo(args) => args.config.resolve().map_err(|e| e.to_string()).and_then(|c| {
            let options = crate::demo::DemoOptions { rows: args.rows, keep: args.keep };
            crate::demo::run(options, c).map_err(|e| e.to_string())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fletch: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_load(a: LoadArgs) -> Result<(), String> {
    let opts = crate::load::LoadOptions {
        pg_url: a.pg_url,
        parquet_url: a.parquet_url,
        rows: a.rows,
        seed: a.seed,
        batch_rows: a.batch_rows,
        file_rows: a.file_rows,
        start_time: a.start_time,
        rows_per_second: a.rows_per_second,
        pg_streams: a.pg_streams,
        truncate: a.truncate,
        progress: !a.quiet,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let report = rt.block_on(crate::load::run(opts)).map_err(|e| e.to_string())?;
    print!("{report}");
    Ok(())
}
