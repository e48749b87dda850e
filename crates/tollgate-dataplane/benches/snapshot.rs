//! Benchmark of the data plane's snapshot apply (`DataPlane::apply`): converting every
//! wire item, building the key index and each key's resolved budgets, and swapping the
//! result in — what a gateway did on every configuration change before Watch sent
//! changes, and still does for a full snapshot — against applying one change that
//! revokes (or reinstates) a key. 10,000 keys, each with its own budget;
//! `snapshot_load` measures 100,000 and 1,000,000 with memory.
//!
//! `cargo bench -p tollgate-dataplane --bench snapshot -- --warm-up-time 1 --measurement-time 5`

// A benchmark that fails should stop loudly, like a test.
#![allow(clippy::unwrap_used, reason = "benchmark setup failures should abort the run")]

#[path = "support/wire.rs"]
mod wire;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_dataplane::{Config, DataPlane, Update};
use tollgate_proto::v1;

fn apply(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let dp = DataPlane::new(Config::default()).unwrap();
    let n = 10_000;
    let snapshot = wire::snapshot(n);
    assert!(dp.apply(&snapshot).is_empty());
    assert_eq!(dp.snapshot().key_count(), n);
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("apply/10k-keys+budgets", |b| b.iter(|| black_box(dp.apply(black_box(&snapshot)))));
    let mut key = snapshot.keys[0].clone();
    g.throughput(Throughput::Elements(1));
    g.bench_function("apply-change/one-key-of-10k", |b| {
        b.iter(|| {
            key.status = if key.status == "active" { "revoked" } else { "active" }.into();
            let from = dp.snapshot().revision;
            let change = v1::ConfigChange {
                from_revision: from,
                revision: from + 1,
                upsert_keys: vec![key.clone()],
                ..Default::default()
            };
            black_box(dp.apply_update(Update::Change(black_box(&change))).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
