//! Shared helpers: temp dirs, entries numbered per producer, fast configs, polling.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tollgate_core::Timestamp;
use tollgate_metering::{LedgerConfig, LedgerEntry, MemorySink};
use tollgate_testkit::ledger::spend_entry;

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tollgate-ledger-{name}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The spool path, in a sub-directory the writer has to create.
    pub(crate) fn spool(&self) -> PathBuf {
        self.0.join("data").join("ledger.spool")
    }

    /// The ledger log's directory, beside the spool.
    pub(crate) fn journal(&self) -> PathBuf {
        self.0.join("data").join("ledger-log")
    }

    /// A directory that is not removed on drop (for a child process to use).
    pub(crate) fn at(path: PathBuf) -> Self {
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub(crate) fn side_file(&self, suffix: &str) -> PathBuf {
        self.0.join("data").join(format!("ledger.spool.{suffix}"))
    }

    pub(crate) fn spool_bytes(&self) -> u64 {
        std::fs::metadata(self.spool()).map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `seq`-th entry of producer `producer`: request id `pPP-SSSSSS`.
pub(crate) fn entry(producer: usize, seq: usize) -> LedgerEntry {
    let id = format!("p{producer:02}-{seq:06}");
    let at = Timestamp::from_unix_millis(1_772_000_000_000 + seq as i64);
    spend_entry(&id, "key_1", "proj_1", "gpt-4o", at, (1000, seq as u64), 2_500_000 + seq as i64)
        .with_served_by("openai-main", "gpt-4o-2024-08-06")
        .with_tags(["prod"])
}

/// Fast timings so outages and retries play out in milliseconds.
pub(crate) fn config(dir: &TempDir) -> LedgerConfig {
    LedgerConfig {
        max_batch: 64,
        max_delay: Duration::from_millis(5),
        write_timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(5),
        retry_max: Duration::from_millis(40),
        shutdown_replay: Duration::from_secs(5),
        ..LedgerConfig::new(dir.spool())
    }
}

/// Polls `cond` until it holds; fails the test after 30 s (a liveness bound, not a timing
/// assertion).
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The sink holds exactly `per_producer[p]` entries of each producer `p`, each once, in
/// the order that producer recorded them, with the payload intact.
pub(crate) fn assert_each_once_in_order(sink: &MemorySink, per_producer: &[usize]) {
    let stored = sink.entries();
    assert_eq!(stored.len(), per_producer.iter().sum::<usize>(), "distinct entries at the sink");
    let mut next: HashMap<usize, usize> = HashMap::new();
    for e in &stored {
        let (p, seq) = e.request_id.split_once('-').unwrap();
        let (p, seq): (usize, usize) = (p[1..].parse().unwrap(), seq.parse().unwrap());
        let want = next.entry(p).or_default();
        assert_eq!(seq, *want, "producer {p}: out of order or missing before {}", e.request_id);
        assert_eq!(*e, entry(p, seq), "payload of {}", e.request_id);
        *want += 1;
    }
    for (p, n) in per_producer.iter().enumerate() {
        assert_eq!(next.get(&p).copied().unwrap_or(0), *n, "producer {p}");
    }
}
