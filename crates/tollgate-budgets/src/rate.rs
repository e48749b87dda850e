//! Rate limits: requests per minute, tokens per minute and concurrent requests, keyed by
//! any string (a virtual key id, a provider credential id).
//!
//! rpm and tpm are leaky buckets (the GCRA family) held as integers: a bucket's level is
//! in token-milliseconds, each unit of cost adds 60,000 and it drains by `limit` per
//! millisecond; a request is admitted when the level after it stays within
//! `limit × 60,000`. So a full minute's worth can be spent at once, after which spend is
//! paced at the limit's rate: there is no fixed window and so no 2x burst at a minute
//! boundary, and a refusal knows exactly how long until the same request fits.
//! Concurrency is a set of in-flight slots, each with a deadline so a crashed process's
//! slots free themselves.
//!
//! All dimensions are checked together: a refusal on one counts nothing on the others.

use crate::store::{IdSource, StoreFuture};
use crate::{Dimension, MemoryStore, RateLimitError, RateLimited, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tollgate_core::Timestamp;

/// Milliseconds in the rate window; also the bucket units added per request or token.
pub(crate) const MINUTE_MS: i128 = 60_000;

/// The limits applied to one key. `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_concurrency: Option<u32>,
}

impl RateLimits {
    /// True when nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_concurrency.is_none()
    }
}

/// Rate limiter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimiterConfig {
    /// How long a concurrency slot is held at most: a permit of a process that died is
    /// freed after it. Bound it by the longest a request can take. Clamped to at least
    /// 1 ms.
    pub concurrency_ttl: Duration,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        RateLimiterConfig { concurrency_ttl: Duration::from_secs(600) }
    }
}

/// A concurrency slot held by a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConcurrencySlot {
    /// Unique across engines.
    pub id: u128,
    /// When it frees itself if not released.
    pub deadline: Timestamp,
}

/// One admission check, all dimensions at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRequest<'a> {
    /// The limited key.
    pub key: &'a str,
    /// The caller's clock.
    pub now: Timestamp,
    /// Requests-per-minute limit, if any.
    pub rpm: Option<u32>,
    /// Tokens-per-minute limit, if any.
    pub tpm: Option<u64>,
    /// Tokens to charge against `tpm` (the estimate).
    pub tokens: u64,
    /// Concurrency limit and the slot to take, if limited.
    pub concurrency: Option<(u32, ConcurrencySlot)>,
}

/// What a [`RateStore`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Admitted and counted.
    Admitted {
        /// Requests left in the rpm bucket, if limited.
        remaining_requests: Option<u64>,
        /// Tokens left in the tpm bucket, if limited.
        remaining_tokens: Option<u64>,
    },
    /// Refused; nothing counted.
    Limited {
        /// The dimension with the longest wait.
        dimension: Dimension,
        /// Milliseconds until the same request fits.
        retry_after_ms: u64,
    },
}

/// Where rate-limit state lives. Implemented by [`MemoryStore`] and (feature `redis`)
/// [`RedisStore`](crate::RedisStore). Each method is atomic and one round trip.
pub trait RateStore: Send + Sync + 'static {
    /// Checks every limited dimension and, only if all admit, counts the request.
    fn acquire<'a>(&'a self, req: &'a RateRequest<'a>) -> StoreFuture<'a, RateDecision>;

    /// Adds `delta` tokens (negative to give back) to the tpm bucket of `key`.
    fn adjust_tokens<'a>(&'a self, key: &'a str, tpm: u64, delta: i64, now: Timestamp) -> StoreFuture<'a, ()>;

    /// Frees a concurrency slot. Idempotent.
    fn release<'a>(&'a self, key: &'a str, slot: ConcurrencySlot) -> StoreFuture<'a, ()>;

    /// Best effort, without a caller to await it (a permit was dropped).
    fn release_detached(self: Arc<Self>, key: Arc<str>, slot: ConcurrencySlot);
}

/// The bucket arithmetic both backends implement (the Redis script mirrors it).
pub(crate) mod bucket {
    use super::MINUTE_MS;

    /// The level at `now` of a bucket that was at `level` at `last`.
    pub(crate) fn drained(level: i128, last: i64, limit: u64, now: i64) -> i128 {
        if level <= 0 {
            return 0;
        }
        let elapsed = i128::from(now.saturating_sub(last).max(0));
        (level - elapsed * i128::from(limit)).max(0)
    }

    /// Admits `cost` into a bucket at `level` (already drained): `Ok((new level,
    /// remaining units))` or `Err(milliseconds to wait)`. A cost larger than the whole
    /// bucket is admitted only into an empty bucket (it could never fit otherwise).
    pub(crate) fn admit(level: i128, cost: u64, limit: u64) -> Result<(i128, u64), u64> {
        if limit == 0 {
            return Err(MINUTE_MS as u64);
        }
        let limit = i128::from(limit);
        let cap = limit * MINUTE_MS;
        let add = i128::from(cost) * MINUTE_MS;
        let new = level + add;
        if new <= cap {
            return Ok((new, u64::try_from((cap - new) / MINUTE_MS).unwrap_or(u64::MAX)));
        }
        if add > cap {
            if level == 0 {
                return Ok((new, 0));
            }
            return Err(u64::try_from((level + limit - 1) / limit).unwrap_or(u64::MAX));
        }
        Err(u64::try_from((new - cap + limit - 1) / limit).unwrap_or(u64::MAX))
    }
}

struct Inner {
    store: Arc<dyn RateStore>,
    ttl_ms: i64,
    ids: IdSource,
}

/// Admission control by rpm, tpm and concurrency. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("concurrency_ttl_ms", &self.inner.ttl_ms).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter over a fresh in-process [`MemoryStore`].
    pub fn memory() -> Self {
        Self::new(MemoryStore::new())
    }

    /// A limiter over any rate store, with default settings.
    pub fn new(store: impl RateStore) -> Self {
        Self::with_config(store, RateLimiterConfig::default())
    }

    /// A limiter over any rate store.
    pub fn with_config(store: impl RateStore, config: RateLimiterConfig) -> Self {
        Self::from_arc(Arc::new(store), config)
    }

    /// A limiter over a shared, type-erased store.
    pub fn from_arc(store: Arc<dyn RateStore>, config: RateLimiterConfig) -> Self {
        let ttl_ms = i64::try_from(config.concurrency_ttl.as_millis()).unwrap_or(i64::MAX / 4).clamp(1, i64::MAX / 4);
        RateLimiter { inner: Arc::new(Inner { store, ttl_ms, ids: IdSource::new() }) }
    }

    /// Admits one request of about `estimated_tokens` under `limits` for `key`, or says
    /// which limit refused and how long until the same request would pass.
    ///
    /// A limit of zero refuses everything (retry after a minute). A request estimated
    /// above the whole tpm limit is admitted only when the key's token bucket is empty.
    pub async fn acquire(
        &self,
        key: &str,
        limits: &RateLimits,
        estimated_tokens: u64,
        now: Timestamp,
    ) -> Result<Permit, RateLimitError> {
        if limits.is_unlimited() {
            return Ok(Permit::unlimited());
        }
        let slot = limits.max_concurrency.map(|max| {
            (max, ConcurrencySlot { id: self.inner.ids.next(), deadline: now.plus_millis(self.inner.ttl_ms) })
        });
        let tokens = estimated_tokens.min(i64::MAX as u64);
        let req = RateRequest { key, now, rpm: limits.rpm, tpm: limits.tpm, tokens, concurrency: slot };
        match self.inner.store.acquire(&req).await? {
            RateDecision::Limited { dimension, retry_after_ms } => {
                let retry_after = Duration::from_millis(retry_after_ms);
                let resets_at = now.plus_millis(i64::try_from(retry_after_ms).unwrap_or(i64::MAX));
                Err(RateLimitError::Limited(RateLimited { dimension, retry_after, resets_at }))
            }
            RateDecision::Admitted { remaining_requests, remaining_tokens } => Ok(Permit {
                held: Some(Held {
                    store: Arc::clone(&self.inner.store),
                    key: Arc::from(key),
                    tpm: limits.tpm,
                    charged_tokens: AtomicU64::new(tokens),
                    slot: slot.map(|(_, s)| s),
                }),
                remaining_requests,
                remaining_tokens,
            }),
        }
    }
}

struct Held {
    store: Arc<dyn RateStore>,
    key: Arc<str>,
    tpm: Option<u64>,
    charged_tokens: AtomicU64,
    slot: Option<ConcurrencySlot>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            Arc::clone(&self.store).release_detached(Arc::clone(&self.key), slot);
        }
    }
}

/// An admitted request. Dropping it frees its concurrency slot (synchronously on the
/// memory store, on a spawned task for Redis; slots also expire after the configured
/// TTL).
pub struct Permit {
    held: Option<Held>,
    remaining_requests: Option<u64>,
    remaining_tokens: Option<u64>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("remaining_requests", &self.remaining_requests)
            .field("remaining_tokens", &self.remaining_tokens)
            .finish_non_exhaustive()
    }
}

impl Permit {
    fn unlimited() -> Self {
        Permit { held: None, remaining_requests: None, remaining_tokens: None }
    }

    /// Requests left this minute after this one (`x-ratelimit-remaining-requests`);
    /// `None` without an rpm limit.
    pub fn remaining_requests(&self) -> Option<u64> {
        self.remaining_requests
    }

    /// Tokens left this minute after this one's estimate
    /// (`x-ratelimit-remaining-tokens`); `None` without a tpm limit.
    pub fn remaining_tokens(&self) -> Option<u64> {
        self.remaining_tokens
    }

    /// Corrects the tpm bucket with the request's actual tokens (input + output), at the
    /// current wall-clock time. May be called again as a stream progresses: each call
    /// sets the request's total. Best effort: a store failure here only makes the next
    /// minute's token pacing slightly off, so it is not reported; use
    /// [`Permit::try_settle_tokens_at`] to see it.
    pub async fn settle_tokens(&self, actual_tokens: u64) {
        // Ignored on purpose; see the doc comment.
        let _ = self.try_settle_tokens_at(actual_tokens, Timestamp::now()).await;
    }

    /// Like [`Permit::settle_tokens`], at an explicit instant, reporting store failures.
    pub async fn try_settle_tokens_at(&self, actual_tokens: u64, now: Timestamp) -> Result<(), StoreError> {
        let Some(held) = &self.held else { return Ok(()) };
        let Some(tpm) = held.tpm else { return Ok(()) };
        let actual = actual_tokens.min(i64::MAX as u64);
        let before = held.charged_tokens.swap(actual, Ordering::AcqRel);
        let delta = i64::try_from(actual).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX);
        if delta == 0 {
            return Ok(());
        }
        held.store.adjust_tokens(&held.key, tpm, delta, now).await
    }

    /// Frees the concurrency slot now and waits for the store to confirm.
    pub async fn release(mut self) -> Result<(), StoreError> {
        let Some(mut held) = self.held.take() else { return Ok(()) };
        let Some(slot) = held.slot else { return Ok(()) };
        // The slot stays in `held` until the store answers: if this future is dropped
        // half-way, `held`'s Drop releases it in the background (release is idempotent).
        let result = held.store.release(&held.key, slot).await;
        held.slot = None;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::bucket::{admit, drained};

    #[test]
    fn a_bucket_admits_a_full_minute_then_paces_at_the_limit() {
        // 60 rpm: 60 requests at once, then one per second.
        let mut level = 0;
        for _ in 0..60 {
            level = admit(level, 1, 60).map(|(l, _)| l).unwrap_or_else(|w| panic!("refused, wait {w}"));
        }
        assert_eq!(admit(level, 1, 60), Err(1000));
        assert_eq!(admit(drained(level, 0, 60, 999), 1, 60), Err(1));
        assert!(admit(drained(level, 0, 60, 1000), 1, 60).is_ok());
    }

    #[test]
    fn an_oversized_cost_waits_for_an_empty_bucket() {
        assert_eq!(admit(0, 500, 100).map(|(_, r)| r), Ok(0));
        assert_eq!(admit(600, 500, 100), Err(6));
        assert_eq!(admit(0, 1, 0), Err(60_000));
    }
}
