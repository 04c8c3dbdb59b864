//! Process metrics in Prometheus text format. Lock-free counters and histograms keyed by
//! label values; `Metrics::render` writes the exposition text for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters by label values (joined with `\u{1f}` internally).
pub struct CounterVec {
    labels: &'static [&'static str],
    map: DashMap<String, Arc<Counter>>,
}

impl CounterVec {
    fn new(labels: &'static [&'static str]) -> Self {
        Self { labels, map: DashMap::new() }
    }
    pub fn with(&self, value: &str) -> Arc<Counter> {
        self.with_labels(&[value])
    }
    pub fn with_labels(&self, values: &[&str]) -> Arc<Counter> {
        let key = values.join("\u{1f}");
        if let Some(c) = self.map.get(&key) {
            return c.clone();
        }
        self.map.entry(key).or_default().clone()
    }
    pub fn get(&self, values: &[&str]) -> u64 {
        self.map.get(&values.join("\u{1f}")).map(|c| c.get()).unwrap_or(0)
    }
}

/// Latency buckets in seconds, from sub-millisecond cache hits to minute-long exports.
const BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

pub struct Histogram {
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

pub struct HistogramVec {
    labels: &'static [&'static str],
    map: DashMap<String, Arc<Histogram>>,
}

impl HistogramVec {
    fn new(labels: &'static [&'static str]) -> Self {
        Self { labels, map: DashMap::new() }
    }
    pub fn with_labels(&self, values: &[&str]) -> Arc<Histogram> {
        let key = values.join("\u{1f}");
        if let Some(h) = self.map.get(&key) {
            return h.clone();
        }
        self.map.entry(key).or_default().clone()
    }
}

/// Every metric fletch exports. One instance per server, passed to whoever records.
pub struct Metrics {
    pub http_requests: CounterVec,
    pub http_latency: HistogramVec,
    pub rejections: CounterVec,
    pub coalesced: CounterVec,
    pub executions: CounterVec,
    /// Ballista jobs by what became of them: submitted, finished, failed, cancelled.
    pub ballista_jobs: CounterVec,
    pub cache_hits: CounterVec,
    pub actor_restarts: CounterVec,
    pub pg_cancels: Counter,
    /// Queries and statements stopped by their time budget.
    pub timeouts: Counter,
    pub hdfs_rows_scanned: Counter,
    /// Pages of newest archive rows cut from the held copy (`archive::newest`).
    pub hdfs_newest_pages: Counter,
    /// Archive pages whose offset passed over runs of files by counting (`archive::deep_page`).
    pub hdfs_run_skips: Counter,
    pub pg_queue_wait: Histogram,
    pub pg_connections_ready: AtomicI64,
    pub pg_connections_busy: AtomicI64,
    pub pg_queue_depth: AtomicI64,
    pub permits_in_use: DashMap<String, AtomicI64>,
    pub queue_depth: DashMap<String, AtomicI64>,
    pub hdfs_up: AtomicI64,
    /// Archive files Spark's commit log does not list (left by failed micro-batches).
    pub hdfs_orphan_files: AtomicI64,
    /// Archive files left out because they cannot be read as `logs`.
    pub hdfs_skipped_files: AtomicI64,
    /// Archive files listed, and those whose label rollup is built.
    pub hdfs_files: AtomicI64,
    pub hdfs_rollup_files: AtomicI64,
    /// 1 once the process is draining (see `crate::shutdown`).
    pub draining: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            http_requests: CounterVec::new(&["route", "source", "status"]),
            http_latency: HistogramVec::new(&["route", "source"]),
            rejections: CounterVec::new(&["source"]),
            coalesced: CounterVec::new(&["source"]),
            executions: CounterVec::new(&["source", "kind"]),
            ballista_jobs: CounterVec::new(&["outcome"]),
            cache_hits: CounterVec::new(&["source"]),
            actor_restarts: CounterVec::new(&["actor"]),
            pg_cancels: Counter::default(),
            timeouts: Counter::default(),
            hdfs_rows_scanned: Counter::default(),
            hdfs_newest_pages: Counter::default(),
            hdfs_run_skips: Counter::default(),
            pg_queue_wait: Histogram::default(),
            pg_connections_ready: AtomicI64::new(0),
            pg_connections_busy: AtomicI64::new(0),
            pg_queue_depth: AtomicI64::new(0),
            permits_in_use: DashMap::new(),
            queue_depth: DashMap::new(),
            hdfs_up: AtomicI64::new(0),
            hdfs_orphan_files: AtomicI64::new(0),
            hdfs_skipped_files: AtomicI64::new(0),
            hdfs_files: AtomicI64::new(0),
            hdfs_rollup_files: AtomicI64::new(0),
            draining: AtomicI64::new(0),
        }
    }
}

fn label_pairs(names: &[&str], key: &str) -> String {
    names
        .iter()
        .zip(key.split('\u{1f}'))
        .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(",")
}

fn render_counters(out: &mut String, name: &str, help: &str, v: &CounterVec) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    let mut rows: Vec<_> = v.map.iter().map(|e| (label_pairs(v.labels, e.key()), e.value().get())).collect();
    rows.sort();
    for (labels, n) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {n}");
    }
}

fn render_gauge_map(out: &mut String, name: &str, help: &str, label: &str, m: &DashMap<String, AtomicI64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    let mut rows: Vec<_> = m.iter().map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed))).collect();
    rows.sort();
    for (k, n) in rows {
        let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {n}");
    }
}

impl Metrics {
    pub fn gauge(&self, map: &DashMap<String, AtomicI64>, key: &str, delta: i64) {
        if let Some(g) = map.get(key) {
            g.fetch_add(delta, Ordering::Relaxed);
            return;
        }
        map.entry(key.to_string()).or_default().fetch_add(delta, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        render_counters(
            &mut out,
            "fletch_http_requests_total",
            "HTTP requests by route, source and status.",
            &self.http_requests,
        );
        let _ = writeln!(out, "# HELP fletch_http_request_duration_seconds HTTP latency to the end of the response body.\n# TYPE fletch_http_request_duration_seconds histogram");
        let mut hs: Vec<_> = self.http_latency.map.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        hs.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, h) in hs {
            h.render(&mut out, "fletch_http_request_duration_seconds", &label_pairs(self.http_latency.labels, &k));
        }
        render_counters(
            &mut out,
            "fletch_rejections_total",
            "Requests refused with 503 because a source was saturated.",
            &self.rejections,
        );
        render_counters(
            &mut out,
            "fletch_coalesced_requests_total",
            "Requests that joined an identical query already running.",
            &self.coalesced,
        );
        render_counters(
            &mut out,
            "fletch_source_executions_total",
            "Queries actually executed at a source.",
            &self.executions,
        );
        render_counters(
            &mut out,
            "fletch_ballista_jobs_total",
            "SQL statements run as Ballista jobs, by outcome (submitted, finished, failed, cancelled).",
            &self.ballista_jobs,
        );
        render_counters(
            &mut out,
            "fletch_cache_hits_total",
            "Requests answered from the result cache.",
            &self.cache_hits,
        );
        render_counters(&mut out, "fletch_actor_restarts_total", "Supervised actor restarts.", &self.actor_restarts);
        render_gauge_map(
            &mut out,
            "fletch_permits_in_use",
            "Admission permits held, by source lane.",
            "lane",
            &self.permits_in_use,
        );
        render_gauge_map(
            &mut out,
            "fletch_queue_depth",
            "Requests waiting for an admission permit, by source lane.",
            "lane",
            &self.queue_depth,
        );
        let _ = writeln!(out, "# HELP fletch_pg_cancels_total PostgreSQL cancel requests sent for abandoned queries.\n# TYPE fletch_pg_cancels_total counter\nfletch_pg_cancels_total {}", self.pg_cancels.get());
        let _ = writeln!(out, "# HELP fletch_query_timeouts_total Queries and SQL statements stopped by query_timeout_ms.\n# TYPE fletch_query_timeouts_total counter\nfletch_query_timeouts_total {}", self.timeouts.get());
        let _ = writeln!(out, "# HELP fletch_hdfs_rows_scanned_total Rows decoded by Parquet reads of pages and exports in time order (after statistics pruning).\n# TYPE fletch_hdfs_rows_scanned_total counter\nfletch_hdfs_rows_scanned_total {}", self.hdfs_rows_scanned.get());
        let _ = writeln!(out, "# HELP fletch_hdfs_newest_pages_total Pages of newest archive rows cut from the held copy of the newest rows.\n# TYPE fletch_hdfs_newest_pages_total counter\nfletch_hdfs_newest_pages_total {}", self.hdfs_newest_pages.get());
        let _ = writeln!(out, "# HELP fletch_hdfs_run_skips_total Archive pages whose offset passed over whole runs of files not in time order by their counts.\n# TYPE fletch_hdfs_run_skips_total counter\nfletch_hdfs_run_skips_total {}", self.hdfs_run_skips.get());
        let _ = writeln!(out, "# HELP fletch_pg_queue_wait_seconds Time jobs waited for a PostgreSQL connection.\n# TYPE fletch_pg_queue_wait_seconds histogram");
        self.pg_queue_wait.render(&mut out, "fletch_pg_queue_wait_seconds", "");
        for (name, help, v) in [
            ("fletch_pg_connections_ready", "PostgreSQL connections up.", &self.pg_connections_ready),
            ("fletch_pg_connections_active", "PostgreSQL connections running a query.", &self.pg_connections_busy),
            ("fletch_pg_router_queue_depth", "Jobs waiting in the PostgreSQL router.", &self.pg_queue_depth),
            ("fletch_hdfs_up", "1 when the Parquet store answered its last listing.", &self.hdfs_up),
            (
                "fletch_hdfs_orphan_files",
                "Archive files not in Spark's commit log (failed micro-batches), ignored.",
                &self.hdfs_orphan_files,
            ),
            (
                "fletch_hdfs_skipped_files",
                "Archive files that cannot be read as logs, ignored.",
                &self.hdfs_skipped_files,
            ),
            ("fletch_hdfs_files", "Archive files listed and read as logs.", &self.hdfs_files),
            (
                "fletch_hdfs_rollup_files",
                "Archive files whose label counts are built (aggregates skip scanning them).",
                &self.hdfs_rollup_files,
            ),
            ("fletch_draining", "1 once the process has been told to stop and is draining.", &self.draining),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.http_requests.with_labels(&["logs", "postgres", "200"]).add(3);
        let h = m.http_latency.with_labels(&["logs", "postgres"]);
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        let text = m.render();
        assert!(text.contains("fletch_http_requests_total{route=\"logs\",source=\"postgres\",status=\"200\"} 3"));
        assert!(text.contains(
            "fletch_http_request_duration_seconds_bucket{route=\"logs\",source=\"postgres\",le=\"0.005\"} 1"
        ));
        assert!(text
            .contains("fletch_http_request_duration_seconds_bucket{route=\"logs\",source=\"postgres\",le=\"0.5\"} 2"));
        assert!(text.contains("fletch_http_request_duration_seconds_count{route=\"logs\",source=\"postgres\"} 2"));
    }
}
