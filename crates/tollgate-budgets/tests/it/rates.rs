//! The rate-limit conformance suite: every backend must pass each of these exactly.

use crate::backends::{Backend, at, eventually};
use std::time::Duration;
use tollgate_budgets::{Dimension, Permit, RateLimitError, RateLimited, RateLimiter, RateLimits};
use tollgate_core::{ErrorCode, ServiceError, Timestamp};

const TTL: Duration = Duration::from_secs(600);

fn rpm(n: u32) -> RateLimits {
    RateLimits { rpm: Some(n), ..RateLimits::default() }
}

async fn admit(l: &RateLimiter, key: &str, limits: &RateLimits, tokens: u64, now: Timestamp) -> Permit {
    match l.acquire(key, limits, tokens, now).await {
        Ok(p) => p,
        Err(e) => panic!("expected admission at {now}, got {e:?}"),
    }
}

async fn refuse(l: &RateLimiter, key: &str, limits: &RateLimits, tokens: u64, now: Timestamp) -> RateLimited {
    match l.acquire(key, limits, tokens, now).await {
        Err(RateLimitError::Limited(r)) => r,
        Err(e) => panic!("store failure: {e:?}"),
        Ok(p) => panic!("expected a refusal at {now}, got {p:?}"),
    }
}

pub(crate) async fn rpm_allows_no_double_burst_across_a_minute_boundary(b: &Backend) {
    let l = b.limiter(TTL).await;
    let limits = rpm(10);
    let boundary = at("2026-03-10T12:01:00Z");
    let before = boundary.plus_millis(-100);
    for i in 0..10 {
        let p = admit(&l, "k", &limits, 0, before).await;
        assert_eq!(p.remaining_requests(), Some(9 - i));
    }
    refuse(&l, "k", &limits, 0, before).await;
    // A fixed window would hand out ten more right after the boundary.
    for ms in [0, 100, 5_000] {
        refuse(&l, "k", &limits, 0, boundary.plus_millis(ms)).await;
    }
    // The bucket refills at the limit's pace: one request per 6 s, not ten at once.
    let paced = before.plus_millis(6_000);
    admit(&l, "k", &limits, 0, paced).await;
    refuse(&l, "k", &limits, 0, paced).await;
}

pub(crate) async fn retry_after_is_exact(b: &Backend) {
    let l = b.limiter(TTL).await;
    let limits = rpm(3);
    let t = at("2026-03-10T12:00:30Z");
    for _ in 0..3 {
        admit(&l, "k", &limits, 0, t).await;
    }
    let r = refuse(&l, "k", &limits, 0, t).await;
    assert_eq!(r.dimension, Dimension::Rpm);
    assert_eq!(r.dimension.as_str(), "rpm");
    assert_eq!(r.retry_after, Duration::from_secs(20));
    assert_eq!(r.resets_at, t.plus_millis(20_000));
    let err = RateLimitError::Limited(r);
    assert_eq!(err.code(), ErrorCode::RateLimited);
    assert_eq!(err.to_string(), "rpm limit reached; retry in 20000ms");

    let r = refuse(&l, "k", &limits, 0, t.plus_millis(19_999)).await;
    assert_eq!(r.retry_after, Duration::from_millis(1));
    let p = admit(&l, "k", &limits, 0, t.plus_millis(20_000)).await;
    assert_eq!(p.remaining_requests(), Some(0));

    // A wait that is not a whole number of milliseconds is rounded up, never down:
    // 7 rpm refills one request every 8571.43 ms.
    let limits = rpm(7);
    for _ in 0..7 {
        admit(&l, "odd", &limits, 0, t).await;
    }
    assert_eq!(refuse(&l, "odd", &limits, 0, t).await.retry_after, Duration::from_millis(8_572));
    assert_eq!(refuse(&l, "odd", &limits, 0, t.plus_millis(8_571)).await.retry_after, Duration::from_millis(1));
    admit(&l, "odd", &limits, 0, t.plus_millis(8_572)).await;
}

pub(crate) async fn tpm_is_charged_by_estimate_and_corrected_by_settle(b: &Backend) {
    let l = b.limiter(TTL).await;
    let limits = RateLimits { tpm: Some(1000), ..RateLimits::default() };
    let t = at("2026-03-10T12:00:00Z");
    let first = admit(&l, "k", &limits, 800, t).await;
    assert_eq!(first.remaining_tokens(), Some(200));
    assert_eq!(first.remaining_requests(), None);
    let r = refuse(&l, "k", &limits, 300, t).await;
    assert_eq!(r.dimension, Dimension::Tpm);
    // 100 tokens over a 1000/min bucket: 6 s.
    assert_eq!(r.retry_after, Duration::from_secs(6));
    // The request used only 100 tokens: 700 come back.
    first.try_settle_tokens_at(100, t).await.unwrap();
    let second = admit(&l, "k", &limits, 300, t).await;
    assert_eq!(second.remaining_tokens(), Some(600));
    // A request that used more than estimated takes the difference (and may go into
    // debt, which delays the next ones).
    second.try_settle_tokens_at(1500, t).await.unwrap();
    let r = refuse(&l, "k", &limits, 1, t).await;
    // Level 1600 tokens + 1 over a cap of 1000: 601 tokens to drain at 1000/min.
    assert_eq!(r.retry_after, Duration::from_millis(36_060));
    // Settling again sets the total, it does not add.
    second.try_settle_tokens_at(1500, t).await.unwrap();
    assert_eq!(refuse(&l, "k", &limits, 1, t).await.retry_after, Duration::from_millis(36_060));
}

pub(crate) async fn an_oversized_request_is_admitted_only_into_an_empty_bucket(b: &Backend) {
    let l = b.limiter(TTL).await;
    let limits = RateLimits { tpm: Some(100), ..RateLimits::default() };
    let t = at("2026-03-10T12:00:00Z");
    let p = admit(&l, "k", &limits, 250, t).await;
    assert_eq!(p.remaining_tokens(), Some(0));
    // 250 tokens at 100/min: empty again after 150 s.
    let r = refuse(&l, "k", &limits, 250, t.plus_millis(60_000)).await;
    assert_eq!(r.retry_after, Duration::from_secs(90));
    admit(&l, "k", &limits, 250, t.plus_millis(150_000)).await;
}

pub(crate) async fn a_refusal_on_one_dimension_counts_nothing(b: &Backend) {
    let l = b.limiter(TTL).await;
    let limits = RateLimits { rpm: Some(5), tpm: Some(100), max_concurrency: Some(10) };
    let t = at("2026-03-10T12:00:00Z");
    let first = admit(&l, "k", &limits, 90, t).await;
    assert_eq!((first.remaining_requests(), first.remaining_tokens()), (Some(4), Some(10)));
    for _ in 0..3 {
        assert_eq!(refuse(&l, "k", &limits, 50, t).await.dimension, Dimension::Tpm);
    }
    let second = admit(&l, "k", &limits, 10, t).await;
    assert_eq!((second.remaining_requests(), second.remaining_tokens()), (Some(3), Some(0)));
    // When several refuse, the longest wait is reported, so retrying then succeeds.
    let tight = RateLimits { rpm: Some(2), tpm: Some(100), max_concurrency: None };
    let r = refuse(&l, "k", &tight, 50, t).await;
    assert_eq!(r.dimension, Dimension::Rpm);
    assert_eq!(r.retry_after, Duration::from_secs(30));
    admit(&l, "k", &tight, 50, t.plus_millis(30_000)).await;
}

pub(crate) async fn concurrency_slots_free_on_drop_and_expire_after_the_ttl(b: &Backend) {
    let l = b.limiter(Duration::from_secs(30)).await;
    let limits = RateLimits { max_concurrency: Some(2), ..RateLimits::default() };
    let t = at("2026-03-10T12:00:00Z");
    let one = admit(&l, "k", &limits, 0, t).await;
    let two = admit(&l, "k", &limits, 0, t).await;
    let r = refuse(&l, "k", &limits, 0, t).await;
    assert_eq!((r.dimension, r.dimension.as_str()), (Dimension::Concurrency, "concurrency"));
    assert!(r.retry_after > Duration::ZERO);
    drop(one);
    eventually("a dropped permit frees its slot", || async {
        match l.acquire("k", &limits, 0, t).await {
            Ok(p) => {
                std::mem::forget(p);
                true
            }
            Err(_) => false,
        }
    })
    .await;
    two.release().await.unwrap();
    let three = admit(&l, "k", &limits, 0, t).await;
    // Both slots are now held by permits whose process "died" (forgotten, never dropped).
    std::mem::forget(three);
    refuse(&l, "k", &limits, 0, t.plus_millis(29_999)).await;
    admit(&l, "k", &limits, 0, t.plus_millis(30_000)).await;
}

pub(crate) async fn keys_are_independent_and_unlimited_is_free(b: &Backend) {
    let l = b.limiter(TTL).await;
    let limits = rpm(1);
    let t = at("2026-03-10T12:00:00Z");
    admit(&l, "key_a", &limits, 0, t).await;
    refuse(&l, "key_a", &limits, 0, t).await;
    admit(&l, "key_b", &limits, 0, t).await;
    admit(&l, "cred:openai-main", &limits, 0, t).await;
    let free = admit(&l, "key_a", &RateLimits::default(), 1_000_000, t).await;
    assert_eq!((free.remaining_requests(), free.remaining_tokens()), (None, None));
    let zero = refuse(&l, "key_c", &rpm(0), 0, t).await;
    assert_eq!(zero.retry_after, Duration::from_secs(60));
}
