//! The backends the suite runs against, and small fixtures shared by the suites.

use std::sync::Arc;
use std::time::Duration;
use tollgate_budgets::{
    Budget, Budgets, BudgetsConfig, CounterStore, Limit, MemoryStore, RateLimiter, RateLimiterConfig,
};
use tollgate_core::{BudgetId, Money, OnBreach, ScopeKind, Timestamp, Window};

/// One backend under test. Engines made from it share its counters: the memory backend
/// shares one `MemoryStore`; the Redis backend opens a new connection per engine (as
/// separate gateways would) under one random key prefix, deleted when the backend drops.
pub(crate) struct Backend {
    memory: Option<MemoryStore>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    redis: Option<RedisTarget>,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
struct RedisTarget {
    url: String,
    prefix: String,
}

impl Backend {
    pub(crate) fn memory() -> Backend {
        Backend { memory: Some(MemoryStore::new()), redis: None }
    }

    /// `None` (the test is skipped) when `TOLLGATE_TEST_REDIS_URL` is not set.
    pub(crate) fn redis() -> Option<Backend> {
        if cfg!(not(feature = "redis")) {
            eprintln!("the redis feature is off");
            return None;
        }
        let url = std::env::var("TOLLGATE_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())?;
        Some(Backend { memory: None, redis: Some(RedisTarget { url, prefix: random_prefix() }) })
    }

    /// A store handle: for Redis, a new connection.
    pub(crate) async fn store(&self) -> Arc<dyn CounterStore> {
        if let Some(m) = &self.memory {
            return Arc::new(m.clone());
        }
        Arc::new(self.redis_store().await)
    }

    #[cfg(not(feature = "redis"))]
    async fn redis_store(&self) -> MemoryStore {
        unreachable!("Backend::redis() is None without the redis feature")
    }

    #[cfg(feature = "redis")]
    async fn redis_store(&self) -> tollgate_budgets::RedisStore {
        let target = self.redis.as_ref().expect("a backend is memory or redis");
        tollgate_budgets::RedisStore::connect(&target.url, &target.prefix).await.expect("redis reachable")
    }

    /// A budget engine (a separate instance each call) over this backend.
    pub(crate) async fn budgets(&self, ttl: Duration) -> Budgets {
        Budgets::from_arc(self.store().await, BudgetsConfig::new(ttl))
    }

    /// A rate limiter (a separate instance each call) over this backend.
    pub(crate) async fn limiter(&self, concurrency_ttl: Duration) -> RateLimiter {
        let config = RateLimiterConfig { concurrency_ttl };
        match &self.memory {
            Some(m) => RateLimiter::with_config(m.clone(), config),
            None => RateLimiter::with_config(self.redis_store().await, config),
        }
    }
}

#[cfg(feature = "redis")]
impl Drop for Backend {
    fn drop(&mut self) {
        let Some(target) = &self.redis else { return };
        // Blocking cleanup is fine in a test; a failure only leaves keys that expire or
        // sit under a prefix no one reuses.
        let Ok(client) = redis::Client::open(target.url.as_str()) else { return };
        let Ok(mut con) = client.get_connection() else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}*", target.prefix)).query(&mut con).unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

/// A key prefix no other test (or test run) uses.
pub(crate) fn random_prefix() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let r = std::collections::hash_map::RandomState::new().hash_one((nanos, N.fetch_add(1, Ordering::Relaxed)));
    format!("tgtest:{r:016x}:")
}

pub(crate) fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

pub(crate) fn usd(text: &str) -> Money {
    Money::parse_usd(text).unwrap()
}

pub(crate) fn budget(id: &str, limit: Limit, window: Window, on_breach: OnBreach, thresholds: &[u16]) -> Arc<Budget> {
    Arc::new(
        Budget::new(
            BudgetId::new(id),
            ScopeKind::Project,
            format!("scope-of-{id}"),
            limit,
            window,
            on_breach,
            thresholds.to_vec(),
        )
        .unwrap(),
    )
}

/// Waits (up to 5 s) for a condition that a background task makes true.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}
