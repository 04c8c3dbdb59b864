//! Shared exact counts: computed once for all concurrent requests, kept, and refreshed in
//! the background when older than a TTL — so a page request never pays a full COUNT(*).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::coalesce::{SingleFlight, TtlCache};
use crate::error::QueryError;
use crate::store::{CountAnswer, CountKind};

pub struct CountCache {
    ttl: Duration,
    values: TtlCache<i64>,
    flights: SingleFlight<i64>,
}

impl CountCache {
    pub fn new(ttl: Duration) -> Arc<Self> {
        // Values outlive `ttl` on purpose: stale ones are served (with their age) while a
        // refresh runs. The cache's own TTL is only an upper bound for eviction.
        Arc::new(Self {
            ttl,
            values: TtlCache::new(Duration::from_secs(24 * 3600), 4096),
            flights: SingleFlight::default(),
        })
    }

    /// Exact count, computed (once, shared) and stored.
    pub async fn refresh<F>(&self, key: &str, compute: impl FnOnce() -> F) -> Result<i64, QueryError>
    where
        F: Future<Output = Result<i64, QueryError>> + Send + 'static,
    {
        let (v, _) = self.flights.run(key, compute).await;
        let v = v?;
        self.values.put(key.to_string(), v);
        Ok(v)
    }

    /// Exact count no older than the TTL; waits for a computation when needed.
    pub async fn exact<F>(&self, key: &str, compute: impl FnOnce() -> F) -> Result<CountAnswer, QueryError>
    where
        F: Future<Output = Result<i64, QueryError>> + Send + 'static,
    {
        if let Some((v, age)) = self.values.get_any_age(key).filter(|(_, age)| *age < self.ttl) {
            return Ok(CountAnswer { value: Some(v), kind: CountKind::Exact, age: Some(age) });
        }
        let v = self.refresh(key, compute).await?;
        Ok(CountAnswer { value: Some(v), kind: CountKind::Exact, age: Some(Duration::ZERO) })
    }

    /// A cached exact count of any age (refreshing it in the background when old), or
    /// `None` after starting a background computation.
    pub fn cached_or_start<F>(
        self: &Arc<Self>,
        key: &str,
        compute: impl FnOnce() -> F + Send + 'static,
    ) -> Option<CountAnswer>
    where
        F: Future<Output = Result<i64, QueryError>> + Send + 'static,
    {
        let hit = self.values.get_any_age(key);
        let stale = hit.as_ref().is_none_or(|(_, age)| *age >= self.ttl);
        if stale {
            let me = self.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                if let Err(e) = me.refresh(&key, compute).await {
                    tracing::warn!(error = %e, "background count refresh failed");
                }
            });
        }
        hit.map(|(v, age)| CountAnswer { value: Some(v), kind: CountKind::Exact, age: Some(age) })
    }
}
