//! Layered configuration.
//!
//! Precedence, lowest to highest: built-in defaults → TOML file (`--config`, or
//! `FLETCH_CONFIG`) → environment (`FLETCH_<SECTION>__<KEY>`, e.g.
//! `FLETCH_POSTGRES__POOL_SIZE=16`) → command-line flags (`--pg-url`, `--set key=value`, …).
//! Every key is documented in `config/fletch.example.toml`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub flight: FlightConfig,
    pub postgres: PostgresConfig,
    pub parquet: ParquetConfig,
    pub admission: AdmissionConfig,
    pub cache: CacheConfig,
    pub auth: AuthConfig,
    pub ballista: BallistaConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP facade listens on; port 0 picks a free port.
    pub listen: String,
    /// actix-web worker threads; 0 = one per core.
    pub workers: usize,
    /// After SIGTERM, how long requests and streams under way may take to finish.
    pub shutdown_grace_ms: u64,
    /// After SIGTERM, how long to keep accepting (answering 503 on `/ready`) first.
    pub shutdown_delay_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into(), workers: 0, shutdown_grace_ms: 30_000, shutdown_delay_ms: 0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightConfig {
    /// Address of the Arrow Flight / Flight SQL gRPC port; empty disables it.
    pub listen: String,
    /// Frame `DoGet` responses directly from Arrow buffers (`flight::do_get`); `false` sends
    /// them through tonic's generic encoder, which copies every byte twice more.
    pub direct_do_get: bool,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:50051".into(), direct_do_get: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq-style URL; empty disables the postgres source.
    pub url: String,
    /// Connection actors (one PostgreSQL connection each).
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    /// Server-side `statement_timeout` for every query fletch runs.
    pub statement_timeout_ms: u64,
    /// Reconnect backoff after a connection is lost: doubles from min to max.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Rows per Arrow record batch when streaming results.
    pub batch_rows: usize,
    /// How long an exact `total_count` may be served from cache before a background refresh.
    pub count_ttl_ms: u64,
    /// The log table (`name` or `schema.name`), e.g. as the backend's Hibernate made it.
    pub table: String,
    /// The table `/stats` counts as `events_count` (0 when it does not exist).
    pub events_table: String,
    /// Keep per-(time bucket, labels) counts of the table in fletch (README, "Aggregates
    /// over PostgreSQL"): aggregates, `total_count` and `/stats` then cost the new rows only.
    pub rollup: bool,
    /// How often rows above the rollup's `id` watermark are read (the freshness of answers).
    pub rollup_refresh_ms: u64,
    /// How often the rollup's row count is checked against `count(*)` (0: never).
    pub rollup_verify_interval_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 8,
            connect_timeout_ms: 3_000,
            statement_timeout_ms: 60_000,
            backoff_min_ms: 100,
            backoff_max_ms: 5_000,
            batch_rows: 4_096,
            count_ttl_ms: 30_000,
            table: "logs".into(),
            events_table: "events".into(),
            rollup: true,
            rollup_refresh_ms: 1_000,
            rollup_verify_interval_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParquetConfig {
    /// Directory of Parquet files: `file:///abs/path` or `hdfs://host:port/path`;
    /// empty disables the hdfs source.
    pub url: String,
    /// How often the file listing is refreshed (new files become visible within this time).
    pub refresh_interval_ms: u64,
    /// DataFusion partitions (threads of the dedicated query runtime); 0 = cores.
    pub target_partitions: usize,
    /// The time zone hive `year=/month=/day=/hour=` directories were named in (Spark's
    /// `spark.sql.session.timeZone` when the archive was written), e.g. `UTC`.
    pub partition_time_zone: String,
    /// Newest rows held in time order for pages of newest rows, read again after each
    /// listing change; 0 reads every page from the files.
    pub newest_rows: usize,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            refresh_interval_ms: 5_000,
            target_partitions: 0,
            partition_time_zone: "UTC".into(),
            // About 15 MB of pages.
            newest_rows: 65_536,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Concurrent heavy (scan/aggregate/export) queries per source; 0 = derived from cores / pool.
    pub heavy_permits: usize,
    /// Concurrent cheap (page/point) queries per source; 0 = derived.
    pub light_permits: usize,
    /// Concurrent exports per source (held for as long as the client reads).
    pub export_permits: usize,
    /// Requests allowed to wait for a permit, per source and lane.
    pub queue_depth: usize,
    /// Longest a request may wait for a permit before it gets 503.
    pub queue_timeout_ms: u64,
    /// Per-query time budget once running (cancelled at the source after it).
    pub query_timeout_ms: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            heavy_permits: 0,
            light_permits: 0,
            export_permits: 2,
            queue_depth: 256,
            queue_timeout_ms: 2_000,
            query_timeout_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long small results (aggregates, stats, pages) are served from cache; 0 disables.
    pub ttl_ms: u64,
    /// Aggregates and stats older than `ttl_ms` but younger than this are still answered
    /// at once (with their age) while one background query refreshes them; 0 = never.
    pub max_stale_ms: u64,
    /// Largest result (rows) that is cached.
    pub max_rows: usize,
    /// Entries kept at most.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { ttl_ms: 1_000, max_stale_ms: 30_000, max_rows: 10_000, max_entries: 1_024 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Static bearer tokens; empty = no authentication.
    pub tokens: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BallistaConfig {
    /// Ballista scheduler for heavy SQL, e.g. `df://127.0.0.1:50050`; empty runs all SQL here.
    pub scheduler: String,
    /// SQL whose Parquet scan reads at least this many bytes of files runs on Ballista.
    pub min_scan_bytes: u64,
    /// Partitions a statement is planned with for Ballista (its tasks per stage); 0 = 4 × cores.
    pub target_partitions: usize,
    /// How often a running job's status is asked for.
    pub poll_interval_ms: u64,
}

impl Default for BallistaConfig {
    fn default() -> Self {
        Self { scheduler: String::new(), min_scan_bytes: 1 << 30, target_partitions: 0, poll_interval_ms: 50 }
    }
}

impl PostgresConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl Config {
    /// Defaults, then the TOML file (if any), then `FLETCH_*` environment variables.
    /// Flags are applied by the caller with [`Config::set`].
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut value = toml::Value::try_from(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
            let file_value: toml::Value =
                toml::from_str(&text).map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            merge(&mut value, file_value);
        }
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("FLETCH_") else { continue };
            let Some((section, key)) = rest.split_once("__") else { continue };
            let dotted = format!("{}.{}", section.to_ascii_lowercase(), key.to_ascii_lowercase());
            set_dotted(&mut value, &dotted, &v).map_err(|e| ConfigError::Invalid(format!("{k}: {e}")))?;
        }
        value.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))
    }

    /// Apply one `section.key=value` override (the `--set` flag).
    pub fn set(&mut self, assignment: &str) -> Result<(), ConfigError> {
        let (k, v) = assignment
            .split_once('=')
            .ok_or_else(|| ConfigError::Invalid(format!("`{assignment}` is not of the form section.key=value")))?;
        let mut value = toml::Value::try_from(&*self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        set_dotted(&mut value, k.trim(), v.trim()).map_err(ConfigError::Invalid)?;
        *self = value.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(format!("{k}: {e}")))?;
        Ok(())
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Set `section.key` to `raw`, keeping the type of the current value so that
/// `FLETCH_HTTP__WORKERS=4` is a number and `FLETCH_POSTGRES__URL=...` a string.
fn set_dotted(root: &mut toml::Value, dotted: &str, raw: &str) -> Result<(), String> {
    let (section, key) = dotted.split_once('.').ok_or_else(|| format!("`{dotted}` is not section.key"))?;
    let table = root
        .get_mut(section)
        .and_then(|s| s.as_table_mut())
        .ok_or_else(|| format!("unknown config section `{section}`"))?;
    let current = table.get(key).ok_or_else(|| format!("unknown config key `{section}.{key}`"))?;
    let parsed = match current {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.parse().map_err(|_| format!("`{section}.{key}` needs an integer, got `{raw}`"))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(raw.parse().map_err(|_| format!("`{section}.{key}` needs true/false, got `{raw}`"))?)
        }
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',').filter(|s| !s.is_empty()).map(|s| toml::Value::String(s.trim().to_string())).collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    };
    table.insert(key.to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "[postgres]\npool_size = 3\nurl = \"postgres://file\"\n").unwrap();
        let env = vec![("FLETCH_POSTGRES__POOL_SIZE".to_string(), "5".to_string())];
        let mut c = Config::load(Some(&path), env).unwrap();
        assert_eq!(c.postgres.pool_size, 5);
        assert_eq!(c.postgres.url, "postgres://file");
        c.set("postgres.pool_size=7").unwrap();
        assert_eq!(c.postgres.pool_size, 7);
        assert_eq!(c.http.listen, "127.0.0.1:8080");
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        let mut c = Config::default();
        assert!(c.set("postgres.pool=3").is_err());
        assert!(c.set("postgres.pool_size=many").is_err());
        let env = vec![("FLETCH_NOPE__X".to_string(), "1".to_string())];
        assert!(Config::load(None, env).is_err());
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fletch.example.toml");
        let c = Config::load(Some(&path), Vec::new()).unwrap();
        let d = Config::default();
        assert_eq!(c.postgres.pool_size, d.postgres.pool_size);
        assert_eq!(c.admission.queue_timeout_ms, d.admission.queue_timeout_ms);
    }
}
