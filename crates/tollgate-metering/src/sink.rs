//! The [`LedgerSink`] trait — where ledger entries end up — and [`MemorySink`].
//!
//! Real sinks live elsewhere: the store (SQLite, PostgreSQL), the control-plane client
//! that streams entries from a gateway, an analytics exporter (ClickHouse).

use crate::entry::LedgerEntry;
use crate::error::SinkError;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The future a [`LedgerSink`] returns: boxed so the trait stays dyn-compatible (the
/// gateway holds an `Arc<dyn LedgerSink>`).
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Where ledger entries are stored for good.
///
/// Contract, which every implementation must keep:
/// - **Idempotent by `request_id`.** Writing an entry that is already stored is a
///   success and stores nothing new; this holds within one batch too. The writer re-sends
///   after crashes, timeouts and lost acknowledgements and relies on it.
/// - `Ok(())` means every entry of the batch is durably stored (or already was).
/// - `Err` means some, all or none may be stored; the writer sends them all again later.
///   Return [`SinkError::Rejected`] only when the same batch can never succeed (an entry
///   the sink considers invalid); anything transient is [`SinkError::Unavailable`].
/// - Batches arrive in the order entries were recorded; a sink may store them in any
///   order it likes.
pub trait LedgerSink: Send + Sync + 'static {
    /// Stores `entries`.
    fn write_batch<'a>(&'a self, entries: &'a [LedgerEntry]) -> SinkFuture<'a>;
}

/// An in-memory sink for tests and embedding: deduplicates by request id, counts what it
/// receives, and can be switched off, made to fail later, to lose acknowledgements, to
/// reject chosen entries, or to answer slowly.
#[derive(Debug, Default)]
pub struct MemorySink {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    entries: Vec<LedgerEntry>,
    ids: HashSet<String>,
    failing: bool,
    fail_after: Option<u64>,
    lose_acks: bool,
    reject: HashSet<String>,
    delay: Duration,
    calls: u64,
    received: u64,
    duplicates: u64,
}

impl MemorySink {
    /// An empty, working sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Switches the sink off (every write fails as unavailable, storing nothing) or back
    /// on. Switching on also cancels a pending [`MemorySink::fail_after`].
    pub fn set_failing(&self, failing: bool) {
        let mut s = self.state();
        s.failing = failing;
        s.fail_after = None;
    }

    /// Lets `batches` more writes succeed, then switches the sink off.
    pub fn fail_after(&self, batches: u64) {
        let mut s = self.state();
        s.failing = false;
        s.fail_after = Some(batches);
    }

    /// When on, writes store their entries and then report failure anyway, as when an
    /// acknowledgement is lost on the network.
    pub fn set_lose_acks(&self, lose: bool) {
        self.state().lose_acks = lose;
    }

    /// Makes every batch holding `request_id` fail as [`SinkError::Rejected`].
    pub fn reject(&self, request_id: impl Into<String>) {
        self.state().reject.insert(request_id.into());
    }

    /// Stops rejecting `request_id` (see [`MemorySink::reject`]).
    pub fn stop_rejecting(&self, request_id: &str) {
        self.state().reject.remove(request_id);
    }

    /// Makes every write wait `delay` before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// The distinct entries stored, in the order they were first stored.
    pub fn entries(&self) -> Vec<LedgerEntry> {
        self.state().entries.clone()
    }

    /// How many distinct entries are stored.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.state().entries.is_empty()
    }

    /// How many times `write_batch` was called, failures included.
    pub fn write_calls(&self) -> u64 {
        self.state().calls
    }

    /// How many entries arrived in writes that stored them, duplicates included.
    pub fn received(&self) -> u64 {
        self.state().received
    }

    /// How many received entries were already stored (and so were not stored again).
    pub fn duplicates(&self) -> u64 {
        self.state().duplicates
    }

    fn apply(&self, entries: &[LedgerEntry]) -> Result<(), SinkError> {
        let mut s = self.state();
        s.calls += 1;
        if s.fail_after == Some(0) {
            s.fail_after = None;
            s.failing = true;
        }
        if s.failing {
            return Err(SinkError::unavailable("memory sink is switched off"));
        }
        if let Some(bad) = entries.iter().find(|e| s.reject.contains(&e.request_id)) {
            return Err(SinkError::rejected(format!("entry {:?} is refused", bad.request_id)));
        }
        for e in entries {
            s.received += 1;
            if s.ids.insert(e.request_id.clone()) {
                s.entries.push(e.clone());
            } else {
                s.duplicates += 1;
            }
        }
        if let Some(left) = s.fail_after.as_mut() {
            *left -= 1;
        }
        if s.lose_acks {
            return Err(SinkError::unavailable("memory sink lost the acknowledgement"));
        }
        Ok(())
    }
}

impl LedgerSink for MemorySink {
    fn write_batch<'a>(&'a self, entries: &'a [LedgerEntry]) -> SinkFuture<'a> {
        Box::pin(async move {
            let delay = self.state().delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            self.apply(entries)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{KeyId, ProjectId};

    fn entry(id: &str) -> LedgerEntry {
        LedgerEntry::new(id, KeyId::new("key_1"), ProjectId::new("proj_1"), "m")
    }

    fn write(sink: &MemorySink, ids: &[&str]) -> Result<(), SinkError> {
        let batch: Vec<_> = ids.iter().map(|id| entry(id)).collect();
        futures_util::FutureExt::now_or_never(sink.write_batch(&batch)).unwrap()
    }

    #[test]
    fn a_dyn_sink_stores_each_request_id_once() {
        let sink = MemorySink::new();
        let dyn_sink: &dyn LedgerSink = &sink;
        let batch = vec![entry("a"), entry("b"), entry("a")];
        futures_util::FutureExt::now_or_never(dyn_sink.write_batch(&batch)).unwrap().unwrap();
        write(&sink, &["b", "c"]).unwrap();
        let ids: Vec<_> = sink.entries().into_iter().map(|e| e.request_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!((sink.received(), sink.duplicates(), sink.write_calls()), (5, 2, 2));
    }

    #[test]
    fn switches_fail_store_nothing_and_fail_after_counts_successes() {
        let sink = MemorySink::new();
        sink.set_failing(true);
        assert!(write(&sink, &["a"]).unwrap_err().is_retryable());
        assert!(sink.is_empty());
        sink.fail_after(2);
        write(&sink, &["a"]).unwrap();
        write(&sink, &["b"]).unwrap();
        assert!(write(&sink, &["c"]).is_err());
        assert!(write(&sink, &["c"]).is_err());
        sink.set_failing(false);
        write(&sink, &["c"]).unwrap();
        assert_eq!(sink.len(), 3);
    }

    #[test]
    fn lost_acks_store_and_rejections_do_not() {
        let sink = MemorySink::new();
        sink.set_lose_acks(true);
        assert!(write(&sink, &["a"]).is_err());
        assert_eq!(sink.len(), 1);
        sink.set_lose_acks(false);
        sink.reject("bad");
        let err = write(&sink, &["b", "bad"]).unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(sink.len(), 1);
    }
}
