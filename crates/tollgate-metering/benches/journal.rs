//! What the ledger log adds to a request: one intent line before dispatch and one
//! settled line (then the queue push) before the response ends, under each fsync
//! policy. Run with `cargo bench -p tollgate-metering --bench journal`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{KeyId, Money, OrgId, ProjectId, TeamId};
use tollgate_metering::{
    Attempt, FsyncPolicy, LedgerConfig, LedgerEntry, LedgerSink, LedgerWriter, SinkFuture, Usage, UsageSource,
};

/// Takes everything at once, so the bench measures the request path, not a sink.
struct NullSink;

impl LedgerSink for NullSink {
    fn write_batch<'a>(&'a self, _entries: &'a [LedgerEntry]) -> SinkFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// A typical entry: a key with a name, principal, tags and metadata, one attempt.
fn entry(n: u64) -> LedgerEntry {
    LedgerEntry::new(
        format!("01JZ8X3V6Q4W1T0M9R2K7C5B{n:08}"),
        KeyId::new("key_7f3a"),
        ProjectId::new("proj_9"),
        "gpt-4o",
    )
    .with_client_request_id("caller-123")
    .with_key_name("checkout-service")
    .with_principal("acme:user-42")
    .with_tenancy(TeamId::new("team_1"), OrgId::new("org_1"))
    .with_served_by("openai-main", "gpt-4o-2024-08-06")
    .with_usage(&Usage { input_tokens: 1200, output_tokens: 350, ..Usage::default() }, UsageSource::Reported)
    .with_cost(Money::from_nanos(6_500_000))
    .with_tags(["prod", "eu"])
    .with_attempt(Attempt::new("openai-main", "gpt-4o-2024-08-06", "ok"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("ledger_log");
    for policy in ["never", "interval:50", "always", "none"] {
        let dir = std::env::temp_dir().join(format!("tollgate-bench-journal-{}-{policy}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = LedgerConfig::new(dir.join("ledger.spool"));
        if let Ok(fsync) = policy.parse::<FsyncPolicy>() {
            cfg.journal_dir = Some(dir.join("log"));
            cfg.fsync = fsync;
        }
        let (writer, _task) = LedgerWriter::start(Arc::new(NullSink), cfg).unwrap();
        let done = entry(0);
        let mut estimate = done.clone();
        estimate.output_tokens = 0;
        group.bench_function(format!("intent_and_settle/{policy}"), |b| {
            b.iter(|| {
                let intent = writer.intent(&estimate);
                writer.settle(intent, done.clone()).unwrap();
            });
        });
        rt.block_on(writer.shutdown()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
