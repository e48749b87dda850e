//! Benchmarks of key lookup, the first thing every data-plane request does: checksum,
//! one HMAC-SHA256 under the pepper, one probe of an index of 100,000 keys, then status
//! and expiry. Also the pieces on their own (checksum only, HMAC only), the refusals
//! (malformed: no HMAC; unknown: HMAC + a missed probe) and the model allowlist check.
//!
//! `cargo bench -p tollgate-keys --bench keys -- --warm-up-time 1 --measurement-time 3`

// A benchmark that fails should stop loudly, like a test.
#![allow(clippy::unwrap_used, reason = "benchmark setup failures should abort the run")]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use tollgate_core::{KeyId, OrgId, ProjectId, TeamId, Timestamp};
use tollgate_keys::{
    KeyHasher, KeyIndex, KeySecret, KeyStatus, ModelAllowlist, Pepper, RateLimits, VirtualKey, mint_secret,
    parse_presented,
};

/// Keys in the index: the size the gateway's memory target is stated for.
const KEYS: usize = 100_000;
/// Distinct keys presented in turn, so lookups touch different cache lines like real
/// traffic from many callers instead of one hot entry.
const PRESENTED: usize = 4_096;

fn virtual_key(i: usize) -> Arc<VirtualKey> {
    Arc::new(VirtualKey {
        id: KeyId::new(format!("key_{i:032}")),
        name: Some(format!("customer-{i}")),
        org: OrgId::new("org_bench"),
        team: TeamId::new(format!("team_{}", i % 100)),
        project: ProjectId::new(format!("proj_{}", i % 1_000)),
        principal: Some(Arc::from(format!("customer:{i}"))),
        status: KeyStatus::Active,
        expires_at: None,
        models_allowed: Arc::new(ModelAllowlist::new(["gpt-4o-mini", "gpt-4o*", "claude-*"])),
        limits: RateLimits { rpm: Some(600), tpm: Some(1_000_000), max_concurrency: None },
        metadata: Default::default(),
        tags: vec!["env:prod".to_owned()],
        hint: "tg_…0000".into(),
    })
}

struct Fixture {
    hasher: KeyHasher,
    index: KeyIndex,
    secrets: Vec<KeySecret>,
}

fn fixture() -> Fixture {
    let hasher = KeyHasher::new(&Pepper::new([7; 32]));
    let mut index = KeyIndex::new();
    let mut secrets = Vec::with_capacity(PRESENTED);
    for i in 0..KEYS {
        let secret = mint_secret();
        index.insert(virtual_key(i), hasher.hash(secret.expose()), None);
        // Spread the presented keys over the whole index.
        if i % (KEYS / PRESENTED) == 0 && secrets.len() < PRESENTED {
            secrets.push(secret);
        }
    }
    assert_eq!(index.len(), KEYS);
    Fixture { hasher, index, secrets }
}

fn lookup(c: &mut Criterion) {
    let f = fixture();
    let now = Timestamp::now();
    let mut g = c.benchmark_group("keys");

    let mut i = 0;
    g.bench_function("authenticate/100k-keys/valid", |b| {
        b.iter(|| {
            i = (i + 1) % f.secrets.len();
            let key = f.index.authenticate(&f.hasher, black_box(f.secrets[i].expose()), now).unwrap();
            black_box(key);
        })
    });

    // Well formed (right checksum) but never issued: the HMAC runs and the probe misses.
    let unknown = mint_secret();
    g.bench_function("authenticate/100k-keys/unknown", |b| {
        b.iter(|| black_box(f.index.authenticate(&f.hasher, black_box(unknown.expose()), now).is_err()))
    });

    // A typo in the last character fails the checksum: refused before any HMAC.
    let mut typo = f.secrets[0].expose().to_owned();
    let last = if typo.ends_with('a') { "b" } else { "a" };
    typo.replace_range(typo.len() - 1.., last);
    g.bench_function("authenticate/100k-keys/malformed", |b| {
        b.iter(|| black_box(f.index.authenticate(&f.hasher, black_box(&typo), now).is_err()))
    });

    let presented = f.secrets[0].expose();
    g.bench_function("parts/checksum", |b| b.iter(|| black_box(parse_presented(black_box(presented)).is_ok())));
    g.bench_function("parts/hmac-sha256", |b| b.iter(|| black_box(f.hasher.hash(black_box(presented)))));

    let key = f.index.authenticate(&f.hasher, presented, now).unwrap().clone();
    g.bench_function("allowlist/glob-hit", |b| b.iter(|| black_box(key.check_model(black_box("gpt-4o-2024-08-06")))));
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
