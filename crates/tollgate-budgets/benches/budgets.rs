//! Benchmarks of the hot path: reserve + commit on the memory store (1 and 5 scopes) and
//! on Redis (when `TOLLGATE_TEST_REDIS_URL` is set; skipped otherwise), and rate-limit
//! acquire (+ permit drop) on the memory store.
//!
//! `cargo bench -p tollgate-budgets --bench budgets -- --warm-up-time 1 --measurement-time 3`

// A benchmark that fails should stop loudly, like a test.
#![allow(clippy::unwrap_used, reason = "benchmark setup failures should abort the run")]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use tollgate_budgets::{Amount, Budget, Budgets, BudgetsConfig, Limit, RateLimiter, RateLimits};
use tollgate_core::{BudgetId, Money, OnBreach, ScopeKind, Timestamp, Window};

fn scopes(n: usize) -> Vec<Arc<Budget>> {
    let kinds =
        [ScopeKind::VirtualKey, ScopeKind::Principal, ScopeKind::Project, ScopeKind::Team, ScopeKind::Organization];
    (0..n)
        .map(|i| {
            let window = if i % 2 == 0 { Window::Month } else { Window::Day };
            Arc::new(
                Budget::new(
                    BudgetId::new(format!("bud_bench_{i}")),
                    kinds[i % kinds.len()],
                    format!("scope_{i}"),
                    Limit::Money(Money::MAX),
                    window,
                    OnBreach::Block,
                    vec![800],
                )
                .unwrap(),
            )
        })
        .collect()
}

fn reserve_commit(c: &mut Criterion, group: &str, rt: &tokio::runtime::Runtime, engine: &Budgets) {
    let now = Timestamp::now();
    let amount = Amount::new(Money::from_nanos(1_500), 1_000);
    let mut g = c.benchmark_group(group);
    for n in [1, 5] {
        let scopes = scopes(n);
        g.bench_function(format!("reserve+commit/{n}-scopes"), |b| {
            b.to_async(rt).iter(|| async {
                let r = engine.reserve(black_box(&scopes), amount, now).await.unwrap();
                black_box(r.commit(amount).await.unwrap());
            })
        });
    }
    g.finish();
}

fn memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let engine = Budgets::memory(BudgetsConfig::default());
    reserve_commit(c, "memory", &rt, &engine);

    let limiter = RateLimiter::memory();
    let limits = RateLimits { rpm: Some(u32::MAX), tpm: Some(u64::MAX / 120_000), max_concurrency: Some(1_000) };
    let now = Timestamp::now();
    c.bench_function("memory/rate-acquire/rpm+tpm+concurrency", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(limiter.acquire("key_bench", &limits, 1_000, now).await.unwrap());
        })
    });
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {
    eprintln!("redis benchmarks skipped: built without the redis feature");
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    let Some(url) = std::env::var("TOLLGATE_TEST_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("redis benchmarks skipped: TOLLGATE_TEST_REDIS_URL not set");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let prefix = format!("tgbench:{}:", std::process::id());
    let store = rt.block_on(tollgate_budgets::RedisStore::connect(&url, &prefix)).unwrap();
    let engine = Budgets::new(store, BudgetsConfig::default());
    reserve_commit(c, "redis", &rt, &engine);
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
