//! The service in front of one store: admission (a permit per source and lane),
//! single-flight execution of identical queries, a short-lived result cache with its age
//! reported, and per-query time budgets. It is itself a [`LogStore`], so anything written
//! against the trait gets all of this.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use futures::{stream, StreamExt};

use super::admission::{acquire, Admission, Lane};
use crate::coalesce::{SingleFlight, TtlCache};
use crate::error::QueryError;
use crate::metrics::Metrics;
use crate::query::{AggregateQuery, CountMode, Filters, RowsQuery, Source, MAX_PAGE_LIMIT};
use crate::store::{CountAnswer, GroupCounts, LogStore, Readiness, StoreStats};
use crate::stream::BatchStream;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheInfo {
    /// Age of a cached answer (`None`: computed for this request).
    pub age: Option<Duration>,
}

/// A collected page of rows. Its JSON rendering is made on first use and then shared by
/// every response served from the same (cached or coalesced) page.
pub struct PageRows {
    batches: Vec<RecordBatch>,
    json: std::sync::OnceLock<bytes::Bytes>,
}

impl PageRows {
    pub fn new(batches: Vec<RecordBatch>) -> Self {
        Self { batches, json: std::sync::OnceLock::new() }
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// The rows rendered by `render`, computed once per page.
    pub fn rendered(
        &self,
        render: impl FnOnce(&[RecordBatch]) -> Result<bytes::Bytes, QueryError>,
    ) -> Result<bytes::Bytes, QueryError> {
        if let Some(b) = self.json.get() {
            return Ok(b.clone());
        }
        let b = render(&self.batches)?;
        // A concurrent first render may have won; both are identical.
        Ok(self.json.get_or_init(|| b).clone())
    }
}

impl std::ops::Deref for PageRows {
    type Target = [RecordBatch];
    fn deref(&self) -> &[RecordBatch] {
        &self.batches
    }
}

pub type Page = Arc<PageRows>;
pub type Groups = Arc<GroupCounts>;
pub type Stats = StoreStats;

pub struct ServiceSettings {
    pub query_timeout: Duration,
    /// Serve-stale window for aggregates and stats (0: never serve stale).
    pub max_stale: Duration,
    pub cache_ttl: Duration,
    pub cache_max_rows: usize,
    pub cache_max_entries: usize,
}

pub struct SourceService {
    inner: Arc<dyn LogStore>,
    source: Source,
    admission: Addr<Admission>,
    metrics: Arc<Metrics>,
    query_timeout: Duration,
    cache_max_rows: usize,
    pages: Arc<Memo<Page>>,
    groups: Arc<Memo<Groups>>,
    stats: Arc<Memo<Stats>>,
    /// Answers up to this old are served while one refresh runs in the background.
    max_stale: Duration,
}

/// Results of one kind: recent answers, and the executions under way.
struct Memo<V: Clone> {
    cache: TtlCache<V>,
    flights: SingleFlight<V>,
}

impl<V: Clone> Memo<V> {
    fn new(s: &ServiceSettings) -> Self {
        Self { cache: TtlCache::new(s.cache_ttl, s.cache_max_entries), flights: SingleFlight::default() }
    }
}

impl SourceService {
    pub fn new(
        inner: Arc<dyn LogStore>,
        admission: Addr<Admission>,
        metrics: Arc<Metrics>,
        s: &ServiceSettings,
    ) -> Self {
        Self {
            source: inner.source(),
            inner,
            admission,
            metrics,
            query_timeout: s.query_timeout,
            cache_max_rows: s.cache_max_rows,
            pages: Arc::new(Memo::new(s)),
            groups: Arc::new(Memo::new(s)),
            stats: Arc::new(Memo::new(s)),
            max_stale: s.max_stale,
        }
    }

    /// Cached answer, or one shared execution under a permit and the time budget.
    /// With `serve_stale`, an answer older than the TTL (but within `max_stale`) is returned
    /// at once, with its age, while a single background execution refreshes it.
    #[allow(clippy::too_many_arguments)]
    async fn shared<V, F>(
        &self,
        memo: &Arc<Memo<V>>,
        kind: &'static str,
        lane: Lane,
        key: String,
        serve_stale: bool,
        cacheable: impl Fn(&V) -> bool + Send + 'static,
        run: impl FnOnce() -> F + Send + 'static,
    ) -> Result<(V, CacheInfo), QueryError>
    where
        V: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, QueryError>> + Send + 'static,
    {
        let source = self.source.name();
        if let Some((v, age)) = memo.cache.get_any_age(&key) {
            let fresh = age < memo.cache.ttl();
            if fresh || (serve_stale && age < self.max_stale) {
                self.metrics.cache_hits.with(source).inc();
                if !fresh {
                    let refresh = self.execute(memo.clone(), kind, lane, key, cacheable, run);
                    tokio::spawn(async move {
                        if let Err(e) = refresh.await {
                            tracing::warn!(error = %e, kind, "background refresh failed");
                        }
                    });
                }
                return Ok((v, CacheInfo { age: Some(age) }));
            }
        }
        self.execute(memo.clone(), kind, lane, key, cacheable, run).await
    }

    /// One shared execution (single-flight) under a permit and the time budget; the
    /// result is cached when `cacheable`.
    fn execute<V, F>(
        &self,
        memo: Arc<Memo<V>>,
        kind: &'static str,
        lane: Lane,
        key: String,
        cacheable: impl Fn(&V) -> bool + Send + 'static,
        run: impl FnOnce() -> F + Send + 'static,
    ) -> impl Future<Output = Result<(V, CacheInfo), QueryError>> + Send + 'static
    where
        V: Clone + Send + Sync + 'static,
        F: Future<Output = Result<V, QueryError>> + Send + 'static,
    {
        let (admission, metrics, budget, src) =
            (self.admission.clone(), self.metrics.clone(), self.query_timeout, self.source);
        let m = metrics.clone();
        let (cache, cache_key) = (memo.clone(), key.clone());
        // On the board now, not when the returned future is first polled: a background
        // refresh is spawned, and stale requests arriving before it runs must join it.
        let (flight, joined) = memo.flights.board(&key, move || {
            let work = run();
            async move {
                let _permit = acquire(&admission, src, lane).await?;
                m.executions.with_labels(&[src.name(), kind]).inc();
                let v = super::deadline::within(budget, &m, work).await?;
                // Cached before the flight ends, so a request arriving in between
                // finds the answer rather than starting another execution.
                if cacheable(&v) {
                    cache.cache.put(cache_key, v.clone());
                }
                Ok(v)
            }
        });
        async move {
            let result = memo.flights.land(&key, flight).await;
            if joined {
                metrics.coalesced.with(src.name()).inc();
            }
            Ok((result?, CacheInfo { age: None }))
        }
    }

    async fn key(&self, kind: &str, q: &impl std::fmt::Debug) -> String {
        // Parquet answers stay valid until the file listing changes; PostgreSQL's for the TTL.
        format!("{kind}|{}|{q:?}", self.inner.cache_epoch().await)
    }

    /// A page (at most 10 000 rows), collected so identical requests can share it.
    pub async fn page(&self, q: &RowsQuery) -> Result<(Page, CacheInfo), QueryError> {
        let key = self.key("page", q).await;
        let (inner, q2, max_rows) = (self.inner.clone(), q.clone(), self.cache_max_rows);
        self.shared(
            &self.pages,
            "page",
            Lane::Light,
            key,
            false,
            move |p: &Page| p.rows() <= max_rows,
            move || async move {
                let mut s = inner.rows(&q2).await?;
                let mut out = Vec::new();
                while let Some(b) = s.next().await {
                    let b = b?;
                    // Keep the schema-carrying first batch, drop other empty ones.
                    if b.num_rows() > 0 || out.is_empty() {
                        out.push(b);
                    }
                }
                Ok(Arc::new(PageRows::new(out)))
            },
        )
        .await
    }

    /// Rows of any size, streamed under an export permit held until the stream ends, each
    /// wait for a batch bounded by the time budget (see [`super::deadline`]).
    pub async fn export(&self, q: &RowsQuery) -> Result<BatchStream, QueryError> {
        let permit = acquire(&self.admission, self.source, Lane::Export).await?;
        self.metrics.executions.with_labels(&[self.source.name(), "export"]).inc();
        let budget = self.query_timeout;
        let rows = super::deadline::within(budget, &self.metrics, self.inner.rows(q)).await?;
        Ok(super::deadline::bounded(rows, budget, permit, self.metrics.clone()))
    }

    pub async fn aggregate_info(&self, q: &AggregateQuery) -> Result<(Groups, CacheInfo), QueryError> {
        let key = self.key("aggregate", q).await;
        let (inner, q2) = (self.inner.clone(), q.clone());
        self.shared(
            &self.groups,
            "aggregate",
            Lane::Heavy,
            key,
            true,
            |_| true,
            move || async move { Ok(Arc::new(inner.aggregate(&q2).await?)) },
        )
        .await
    }

    pub async fn stats_info(&self) -> Result<(Stats, CacheInfo), QueryError> {
        let key = self.key("stats", &()).await;
        let inner = self.inner.clone();
        self.shared(&self.stats, "stats", Lane::Light, key, true, |_| true, move || async move { inner.stats().await })
            .await
    }
}

#[async_trait]
impl LogStore for SourceService {
    fn source(&self) -> Source {
        self.source
    }

    async fn rows(&self, q: &RowsQuery) -> Result<BatchStream, QueryError> {
        match q.limit {
            Some(n) if n <= MAX_PAGE_LIMIT => {
                let (page, _) = self.page(q).await?;
                let batches: Vec<_> = page.iter().cloned().map(Ok).collect();
                Ok(Box::pin(stream::iter(batches)))
            }
            _ => self.export(q).await,
        }
    }

    async fn aggregate(&self, q: &AggregateQuery) -> Result<GroupCounts, QueryError> {
        Ok(self.aggregate_info(q).await?.0.as_ref().clone())
    }

    async fn count(&self, filters: &Filters, mode: CountMode) -> Result<CountAnswer, QueryError> {
        self.inner.count(filters, mode).await
    }

    async fn stats(&self) -> Result<Stats, QueryError> {
        Ok(self.stats_info().await?.0)
    }

    async fn readiness(&self) -> Readiness {
        self.inner.readiness().await
    }

    async fn cache_epoch(&self) -> u64 {
        self.inner.cache_epoch().await
    }

    async fn export_schema(&self) -> Result<arrow::datatypes::SchemaRef, QueryError> {
        self.inner.export_schema().await
    }
}
