//! [`LedgerWriter`]: takes entries off the request path without waiting, batches them
//! to the [`LedgerSink`] in a background task, and spools what the sink cannot take.
//!
//! ## How an entry travels
//!
//! [`LedgerWriter::record`] (and [`LedgerWriter::settle`]) writes the entry to the ledger
//! log when there is one (see [`crate::journal`]), pushes it onto an in-memory queue
//! under a short mutex and returns. The background task takes batches of up to
//! `max_batch` entries, as soon as a batch is full or the oldest entry has waited
//! `max_delay`:
//! - while the spool is empty, a batch goes straight to the sink (bounded by
//!   `write_timeout`); if the sink fails, the batch is appended to the spool and the sink
//!   is retried with capped exponential backoff (with jitter);
//! - while the spool holds anything, new batches are appended behind it, so order is
//!   kept, and the spool is replayed to the sink one batch at a time, oldest first; each
//!   batch is acknowledged in the spool only after the sink stored it;
//! - a batch the sink rejects as invalid is retried entry by entry: refused entries go to
//!   the dead-letter file, the others through, in order;
//! - the dead letters are offered to the sink again at start and every `rejected_retry`:
//!   those it takes leave the file, each one it still refuses is logged (error level,
//!   request id and the sink's reason), and [`LedgerStats::rejected_pending`] counts them.
//!
//! ## The ledger log
//!
//! A request dispatched upstream is covered from [`LedgerWriter::intent`] on: if the
//! process dies before [`LedgerWriter::settle`], the next start records the intent's
//! entry as `usage_source: "recovered"` ([`LedgerWriter::recovered`] counts them), and
//! settled entries the sink may not have got are recorded again (the sink keeps one per
//! request id). A thread beside the task fsyncs the log, rotates it, and deletes a
//! segment once its intents are closed and the entries recorded before it was sealed are
//! durable.
//!
//! ## Why the queue has a soft bound, not a bounded channel
//!
//! A bounded channel leaves three choices when it is full: drop (forbidden), block the
//! request (forbidden), or have the request thread write the spool itself — disk I/O on
//! the request path, and a reordering, since older entries still sit in the channel. So
//! `record` always succeeds, and the task keeps the queue short instead: it never waits
//! on anything but one sink write (at most `write_timeout`) or one spool append, and once
//! more than `max_queue` entries wait (a sink slower than the traffic) it moves the whole
//! queue to the spool in one append. The queue therefore holds at most about `max_queue`
//! entries plus `write_timeout` of traffic. It can only grow beyond that if the sink is
//! down *and* the spool cannot be written, in which case entries stay in memory rather
//! than being dropped. [`LedgerWriter::queue_depth`] is the metric to alert on.
//!
//! ## Stopping
//!
//! [`LedgerWriter::shutdown`] (or dropping every handle) drains the queue to the sink or
//! the spool, replays the spool for up to `shutdown_replay` if the sink is up, then stops
//! the task. If the task is aborted or its runtime shuts down instead, a drop guard
//! appends whatever is still in memory to the spool. After the task stopped, `record`
//! appends to the spool directly (synchronously) and a later writer replays it. Stopping
//! also stops the log's thread (waiting for its round in progress) and deletes the
//! segments no longer needed; the log's lock is released once the last handle and the
//! last [`crate::Intent`] are dropped.

use crate::entry::LedgerEntry;
use crate::error::{LedgerError, SinkError};
use crate::journal::{FsyncPolicy, Intent, Journal, JournalRecovery, Replay};
use crate::sink::LedgerSink;
use crate::spool::{DEFAULT_COMPACT_BYTES, Spool, SpoolRecovery};
use futures_util::FutureExt;
use std::collections::VecDeque;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Settings of a [`LedgerWriter`]. [`LedgerConfig::new`] gives production defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// The spool file. Its directory must survive restarts (a persistent volume, not a
    /// container's scratch space), and no two writers may share it.
    pub spool_path: PathBuf,
    /// The most entries in one sink write. Default 256.
    pub max_batch: usize,
    /// The longest an entry waits for its batch to fill. Default 200 ms.
    pub max_delay: Duration,
    /// When more entries than this wait in memory (the sink is up but slower than the
    /// traffic), the whole queue is moved to the spool in one append, and replayed from
    /// there. Default 65,536.
    pub max_queue: usize,
    /// The longest one sink write may take before it counts as failed. Default 10 s.
    pub write_timeout: Duration,
    /// The first wait before retrying a failed sink (or spool). Default 100 ms.
    pub retry_initial: Duration,
    /// The longest wait between retries. Default 30 s.
    pub retry_max: Duration,
    /// Spool compaction threshold, see [`Spool::open_with`]. Default 16 MiB.
    pub compact_bytes: u64,
    /// How long shutdown keeps replaying the spool to a working sink. Default 5 s.
    pub shutdown_replay: Duration,
    /// The ledger log's directory (see [`crate::journal`]): intents and settled entries
    /// written before the sink sees them, so a process crash loses none. `None` (the
    /// default): no log; a hard crash loses what is still in memory. Created 0700 when
    /// missing; one writer at a time ([`LedgerError::JournalLocked`]).
    pub journal_dir: Option<PathBuf>,
    /// When the ledger log is fsynced, which bounds what a machine crash can lose.
    /// Default `interval:50`.
    pub fsync: FsyncPolicy,
    /// How old the current log segment gets before a new one starts (it also starts
    /// past 8 MiB). Default 1 s.
    pub journal_rotate: Duration,
    /// How often the dead-letter file (`<spool>.rejected`) is offered to the sink again;
    /// it is also offered once at start. Default 60 s.
    pub rejected_retry: Duration,
}

impl LedgerConfig {
    /// Defaults, spooling to `spool_path`.
    pub fn new(spool_path: impl Into<PathBuf>) -> Self {
        Self {
            spool_path: spool_path.into(),
            max_batch: 256,
            max_delay: Duration::from_millis(200),
            max_queue: 65_536,
            write_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            compact_bytes: DEFAULT_COMPACT_BYTES,
            shutdown_replay: Duration::from_secs(5),
            journal_dir: None,
            fsync: FsyncPolicy::default(),
            journal_rotate: Duration::from_secs(1),
            rejected_retry: Duration::from_secs(60),
        }
    }

    fn validate(&self) -> Result<(), LedgerError> {
        let rule = if self.max_batch == 0 {
            "max_batch must be at least 1"
        } else if self.max_queue < self.max_batch {
            "max_queue must be at least max_batch"
        } else if self.write_timeout.is_zero() {
            "write_timeout must be positive"
        } else if self.retry_initial.is_zero() {
            "retry_initial must be positive"
        } else if self.retry_max < self.retry_initial {
            "retry_max must be at least retry_initial"
        } else if self.fsync == FsyncPolicy::Interval(Duration::ZERO) {
            "the fsync interval must be positive"
        } else if self.journal_rotate.is_zero() {
            "journal_rotate must be positive"
        } else if self.rejected_retry.is_zero() {
            "rejected_retry must be positive"
        } else {
            return Ok(());
        };
        Err(LedgerError::Config(rule))
    }
}

/// Counters of a [`LedgerWriter`], for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Entries accepted by [`LedgerWriter::record`].
    pub recorded: u64,
    /// Entries the sink acknowledged (one re-sent after a failure counts again).
    pub delivered: u64,
    /// Entries appended to the spool.
    pub spooled: u64,
    /// Times the sink rejected an entry as invalid (each sent to, or kept in, the
    /// dead-letter file; a retry rejected again counts again).
    pub rejected: u64,
    /// Entries in the dead-letter file, waiting for the sink to take them.
    pub rejected_pending: u64,
    /// Intents found unsettled in the ledger log at start and recorded as
    /// `usage_source: "recovered"`.
    pub recovered: u64,
    /// Ledger log lines that could not be written or synced (the request went on).
    pub journal_failures: u64,
    /// Failed sink writes (errors, timeouts, panics).
    pub sink_failures: u64,
    /// Failed spool operations.
    pub spool_failures: u64,
    /// Spool lines skipped as corrupt, those found when opening included.
    pub corrupt_lines: u64,
    /// Entries waiting in the spool.
    pub spool_depth: u64,
    /// Entries waiting in memory.
    pub queue_depth: u64,
}

/// The handle the gateway records ledger entries through. Cheap to clone; every clone
/// feeds the same background task, which stops once every clone is dropped.
#[derive(Clone)]
pub struct LedgerWriter {
    inner: Arc<Handle>,
}

impl fmt::Debug for LedgerWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerWriter")
            .field("queue_depth", &self.queue_depth())
            .field("spool_depth", &self.spool_depth())
            .finish()
    }
}

impl LedgerWriter {
    /// Opens (and recovers) the spool, then spawns the background task on the current
    /// tokio runtime. Entries left in the spool by an earlier run are replayed first.
    ///
    /// Opening the spool is blocking file I/O; call this at start-up. The returned
    /// [`JoinHandle`] ends once the writer has stopped; awaiting it is optional.
    pub fn start(
        sink: Arc<dyn LedgerSink>,
        config: LedgerConfig,
    ) -> Result<(LedgerWriter, JoinHandle<()>), LedgerError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LedgerError::NoRuntime)?;
        let spool = Spool::open_with(&config.spool_path, config.compact_bytes)?;
        let recovery = spool.recovery();
        if recovery.pending > 0 {
            tracing::info!(
                spool = %config.spool_path.display(),
                pending = recovery.pending,
                "ledger spool holds entries from an earlier run; replaying them"
            );
        }
        let (journal, replay) = match &config.journal_dir {
            Some(dir) => {
                let (journal, replay) = Journal::open(dir, config.fsync, config.journal_rotate)?;
                (Some(journal), replay)
            }
            None => (None, Replay { entries: Vec::new(), recovery: JournalRecovery::default() }),
        };
        let journal_recovery = replay.recovery;
        if journal_recovery.recovered > 0 {
            tracing::warn!(
                recovered = journal_recovery.recovered,
                settled = journal_recovery.settled,
                "ledger log holds requests dispatched but never settled by an earlier run; \
                 they are recorded with usage_source \"recovered\" for reconciliation"
            );
        } else if journal_recovery.settled > 0 {
            tracing::info!(
                settled = journal_recovery.settled,
                "ledger log entries of an earlier run are recorded again"
            );
        }
        if journal_recovery.corrupt_lines > 0 {
            tracing::warn!(
                corrupt_lines = journal_recovery.corrupt_lines,
                "ledger log had lines that do not parse (a torn last write); they were copied to ledger.corrupt"
            );
        }
        let counters = Counters::default();
        counters.spool_depth.store(spool.depth(), Ordering::Relaxed);
        counters.corrupt_lines.store(spool.corrupt_total(), Ordering::Relaxed);
        counters.rejected_pending.store(spool.rejected_depth(), Ordering::Relaxed);
        let (progress, _) = watch::channel(Progress::default());
        // What the log held goes first: the old segments are deleted once these are durable.
        let inbox = Inbox {
            first_at: (!replay.entries.is_empty()).then(Instant::now),
            recorded: replay.entries.len() as u64,
            entries: replay.entries.into(),
            ..Inbox::default()
        };
        let shared = Arc::new(Shared {
            inbox: Mutex::new(inbox),
            spool: Mutex::new(spool),
            in_hand: Mutex::new(None),
            wake: Notify::new(),
            progress,
            max_batch: config.max_batch,
            recovery,
            journal,
            journal_recovery,
            maintenance: Mutex::new(None),
            counters,
        });
        if let Some(journal) = &shared.journal {
            let (journal, weak) = (journal.clone(), Arc::downgrade(&shared));
            let thread = std::thread::Builder::new()
                .name("ledger-log".into())
                .spawn(move || maintain(&journal, &weak))
                .map_err(|e| LedgerError::io("start the maintenance thread of", config.spool_path.clone(), e))?;
            *lock(&shared.maintenance) = Some(thread);
        }
        let driver = Driver {
            shared: shared.clone(),
            sink,
            sink_retry: Backoff::new(config.retry_initial, config.retry_max),
            spool_retry: Backoff::new(config.retry_initial, config.retry_max),
            // Dead letters of an earlier run are offered at once; later ones wait a period.
            rejected_due: if shared.counters.rejected_pending.load(Ordering::Relaxed) > 0 {
                Instant::now()
            } else {
                Instant::now() + config.rejected_retry
            },
            cfg: config,
            flush_served: 0,
        };
        let task = runtime.spawn(driver.run());
        Ok((LedgerWriter { inner: Arc::new(Handle { shared }) }, task))
    }

    /// Hands `entry` to the writer. Never waits for the sink or the disk: it takes one
    /// short mutex and returns.
    ///
    /// Errors only after the background task has stopped, when the entry is appended to
    /// the spool directly (blocking file I/O) and that append fails.
    ///
    /// With a ledger log, the entry is first written to it as a settled line (one
    /// `write(2)`, see [`crate::journal`]), so a process crash cannot lose it; a log
    /// failure is logged and counted, never returned.
    pub fn record(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        self.settle_in_log(None, entry)
    }

    /// Writes the intent line for `entry` — the request as known at dispatch: key,
    /// tenancy, models, provider, the prompt's estimated input tokens and their cost —
    /// to the ledger log before the request is dispatched. One `write(2)` under a short
    /// mutex (plus an fdatasync under [`FsyncPolicy::Always`]); never awaits.
    ///
    /// Never fails the request: when the line cannot be written it logs (error level,
    /// the request id only), counts [`LedgerStats::journal_failures`], and returns an
    /// [`Intent`] that does nothing. Without a log it returns such an intent at once.
    ///
    /// If the process dies before [`LedgerWriter::settle`], the next start records the
    /// entry with `usage_source: "recovered"`; dropping the intent unsettled voids it.
    pub fn intent(&self, entry: &LedgerEntry) -> Intent {
        match &self.inner.shared.journal {
            Some(journal) => journal.intent(entry),
            None => Intent::none(),
        }
    }

    /// Writes the settled line for `entry` to the ledger log, closing `intent`, then
    /// queues the entry exactly like [`LedgerWriter::record`] (and fails only like it).
    ///
    /// Call it before the response's last byte leaves. `entry` should carry the
    /// intent's request id; if it does not, the intent is voided and the entry settled
    /// on its own.
    pub fn settle(&self, intent: Intent, entry: LedgerEntry) -> Result<(), LedgerError> {
        let shared = &self.inner.shared;
        let closes = match (intent.take(), &shared.journal) {
            (Some((journal, segment, request_id)), Some(ours))
                if Arc::ptr_eq(&journal, ours) && request_id == entry.request_id =>
            {
                Some(segment)
            }
            (Some((journal, segment, request_id)), _) => {
                tracing::warn!(
                    request_id = %request_id,
                    settled_as = %entry.request_id,
                    "ledger intent settled with another request's entry (or writer); the intent is voided"
                );
                crate::journal::void(&journal, segment, &request_id);
                None
            }
            (None, _) => None,
        };
        self.settle_in_log(closes, entry)
    }

    fn settle_in_log(&self, closes: Option<u64>, entry: LedgerEntry) -> Result<(), LedgerError> {
        let shared = &self.inner.shared;
        // The entry is queued under the log's mutex: a segment sealed after this line
        // counts the entry among those that must be durable before it is deleted.
        let queued = match &shared.journal {
            Some(journal) => journal.settled(entry, closes, |entry| shared.enqueue(entry)),
            None => shared.enqueue(entry),
        };
        match queued {
            None => Ok(()),
            Some(entry) => shared.record_after_stop(entry),
        }
    }

    /// Waits until every entry recorded before this call is durable: stored by the sink
    /// or appended to the spool. (It does not wait for the spool to be replayed.)
    ///
    /// Takes up to one `write_timeout` when the sink hangs. Fails with
    /// [`LedgerError::NotDurable`] when the sink is down and the spool cannot be written
    /// either; those entries stay queued and are retried.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let shared = &self.inner.shared;
        let mut progress = shared.progress.subscribe();
        let (target, epoch) = {
            let mut inbox = lock(&shared.inbox);
            inbox.flush_epoch += 1;
            (inbox.recorded, inbox.flush_epoch)
        };
        shared.wake.notify_one();
        let p = *progress
            .wait_for(|p| p.handled >= target || p.flush_served >= epoch || p.stopped)
            .await
            .map_err(|_| LedgerError::Stopped)?;
        outcome(p, target)
    }

    /// Drains every recorded entry to the sink or the spool, replays the spool for up to
    /// `shutdown_replay` if the sink takes it, and stops the background task. Entries
    /// recorded afterwards go to the spool directly.
    pub async fn shutdown(&self) -> Result<(), LedgerError> {
        let shared = &self.inner.shared;
        let mut progress = shared.progress.subscribe();
        let target = {
            let mut inbox = lock(&shared.inbox);
            inbox.closing = true;
            inbox.recorded
        };
        shared.wake.notify_one();
        let p = *progress.wait_for(|p| p.stopped).await.map_err(|_| LedgerError::Stopped)?;
        outcome(p, target)
    }

    /// Entries waiting in the spool for the sink.
    pub fn spool_depth(&self) -> u64 {
        self.inner.shared.counters.spool_depth.load(Ordering::Relaxed)
    }

    /// Entries waiting in memory (queued, or in a sink write not yet answered).
    pub fn queue_depth(&self) -> u64 {
        let shared = &self.inner.shared;
        let queued = lock(&shared.inbox).entries.len();
        let in_hand = lock(&shared.in_hand).as_ref().map_or(0, |b| b.len());
        (queued + in_hand) as u64
    }

    /// What the spool held when this writer started.
    pub fn recovery(&self) -> SpoolRecovery {
        self.inner.shared.recovery
    }

    /// What the ledger log held when this writer started (all zero without a log).
    pub fn journal_recovery(&self) -> JournalRecovery {
        self.inner.shared.journal_recovery
    }

    /// Intents found unsettled in the ledger log at start and recorded as
    /// `usage_source: "recovered"` (the metric an operator reconciles).
    pub fn recovered(&self) -> u64 {
        self.inner.shared.journal_recovery.recovered
    }

    /// All counters at once.
    pub fn stats(&self) -> LedgerStats {
        let c = &self.inner.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LedgerStats {
            recorded: get(&c.recorded),
            delivered: get(&c.delivered),
            spooled: get(&c.spooled),
            rejected: get(&c.rejected),
            rejected_pending: get(&c.rejected_pending),
            recovered: self.inner.shared.journal_recovery.recovered,
            journal_failures: self.inner.shared.journal.as_ref().map_or(0, |j| j.failures()),
            sink_failures: get(&c.sink_failures),
            spool_failures: get(&c.spool_failures),
            corrupt_lines: get(&c.corrupt_lines),
            spool_depth: get(&c.spool_depth),
            queue_depth: self.queue_depth(),
        }
    }
}

fn outcome(p: Progress, target: u64) -> Result<(), LedgerError> {
    if p.handled >= target { Ok(()) } else { Err(LedgerError::NotDurable { pending: target - p.handled }) }
}

/// Shared by every clone of a [`LedgerWriter`]; the last one dropped asks the task to
/// stop.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        lock(&self.shared.inbox).closing = true;
        self.shared.wake.notify_one();
    }
}

/// State shared by the handles, the background task and its blocking spool calls.
///
/// Lock order, whenever more than one is held: `inbox`, then `spool`, then `in_hand`.
struct Shared {
    inbox: Mutex<Inbox>,
    spool: Mutex<Spool>,
    /// The batch the task took off the queue and has not made durable yet; the drop
    /// guard spools it if the task dies in the middle of a sink write.
    in_hand: Mutex<Option<Arc<Vec<LedgerEntry>>>>,
    wake: Notify,
    progress: watch::Sender<Progress>,
    max_batch: usize,
    recovery: SpoolRecovery,
    journal: Option<Arc<Journal>>,
    journal_recovery: JournalRecovery,
    /// The ledger log's maintenance thread; joined when the writer stops.
    maintenance: Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: Counters,
}

#[derive(Default)]
struct Inbox {
    entries: VecDeque<LedgerEntry>,
    /// When the oldest queued entry arrived.
    first_at: Option<Instant>,
    /// Entries ever queued: the `n`-th recorded entry is durable once `handled >= n`.
    recorded: u64,
    flush_epoch: u64,
    /// Shutdown asked, or every handle dropped.
    closing: bool,
    /// The task has stopped: `record` goes to the spool directly.
    closed: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Queued entries made durable, counted in queue order.
    handled: u64,
    flush_served: u64,
    stopped: bool,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    delivered: AtomicU64,
    spooled: AtomicU64,
    rejected: AtomicU64,
    rejected_pending: AtomicU64,
    sink_failures: AtomicU64,
    spool_failures: AtomicU64,
    corrupt_lines: AtomicU64,
    spool_depth: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bump(a: &AtomicU64, n: usize) {
    a.fetch_add(n as u64, Ordering::Relaxed);
}

/// The ledger log's upkeep, on its own thread (file creation, fdatasync and deletion
/// stay off the runtime): fsync on the interval, rotate, delete segments no longer
/// needed.
fn maintain(journal: &Journal, shared: &std::sync::Weak<Shared>) {
    let mut synced = std::time::Instant::now();
    while journal.sleep(journal.tick()) {
        if let Some(every) = journal.interval()
            && synced.elapsed() >= every
        {
            journal.sync_if_dirty();
            synced = std::time::Instant::now();
        }
        let Some(shared) = shared.upgrade() else { return };
        let durable = shared.progress.borrow().handled;
        journal.maintain(durable, || lock(&shared.inbox).recorded, false);
    }
}

impl Shared {
    /// Queues `entry` for the task; hands it back once the task has stopped.
    fn enqueue(&self, entry: LedgerEntry) -> Option<LedgerEntry> {
        let mut inbox = lock(&self.inbox);
        if inbox.closed {
            return Some(entry);
        }
        let was_empty = inbox.entries.is_empty();
        if was_empty {
            inbox.first_at = Some(Instant::now());
        }
        inbox.entries.push_back(entry);
        inbox.recorded += 1;
        let filled = inbox.entries.len() == self.max_batch;
        drop(inbox);
        self.counters.recorded.fetch_add(1, Ordering::Relaxed);
        if was_empty || filled {
            self.wake.notify_one();
        }
        None
    }

    fn handled(&self, n: usize) {
        if n > 0 {
            self.progress.send_modify(|p| p.handled += n as u64);
        }
    }

    fn mirror(&self, spool: &Spool) {
        self.counters.spool_depth.store(spool.depth(), Ordering::Relaxed);
        self.counters.corrupt_lines.store(spool.corrupt_total(), Ordering::Relaxed);
        self.counters.rejected_pending.store(spool.rejected_depth(), Ordering::Relaxed);
    }

    fn queue_len(&self) -> usize {
        lock(&self.inbox).entries.len()
    }

    /// Takes the oldest `max` queued entries and marks them in hand.
    fn take_batch(&self, max: usize) -> Arc<Vec<LedgerEntry>> {
        let mut inbox = lock(&self.inbox);
        let n = max.min(inbox.entries.len());
        let batch: Vec<_> = inbox.entries.drain(..n).collect();
        if inbox.entries.is_empty() {
            inbox.first_at = None;
        }
        drop(inbox);
        let batch = Arc::new(batch);
        *lock(&self.in_hand) = Some(batch.clone());
        batch
    }

    /// Puts the batch in hand back at the head of the queue (it could not be made
    /// durable; it stays older than everything queued since).
    fn restore_in_hand(&self) {
        let mut inbox = lock(&self.inbox);
        if let Some(batch) = lock(&self.in_hand).take() {
            for entry in Arc::unwrap_or_clone(batch).into_iter().rev() {
                inbox.entries.push_front(entry);
            }
            inbox.first_at.get_or_insert_with(Instant::now);
        }
    }

    /// Appends the batch in hand to the spool. Blocking.
    fn spool_in_hand(&self) -> Result<(), LedgerError> {
        let mut spool = lock(&self.spool);
        let mut in_hand = lock(&self.in_hand);
        let appended = match in_hand.as_deref() {
            Some(batch) => spool.append(batch).map(|()| batch.len()),
            None => Ok(0),
        };
        // Counters first: a flush woken by `handled` must see the spool depth it caused.
        self.mirror(&spool);
        if let Ok(n) = appended {
            *in_hand = None;
            bump(&self.counters.spooled, n);
            self.handled(n);
        }
        appended.map(drop)
    }

    fn record_after_stop(&self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let mut spool = lock(&self.spool);
        let appended = spool.append(std::slice::from_ref(&entry));
        self.mirror(&spool);
        drop(spool);
        match &appended {
            Ok(()) => {
                bump(&self.counters.recorded, 1);
                bump(&self.counters.spooled, 1);
            }
            Err(e) => tracing::error!(
                request_id = %entry.request_id,
                error = %chain(e),
                "ledger writer has stopped and the spool cannot take the entry"
            ),
        }
        appended
    }

    /// Marks the writer stopped, spooling whatever is still in memory first. Runs when
    /// the task ends for any reason (clean stop, abort, panic, runtime shutdown).
    fn stop(&self) {
        let mut inbox = lock(&self.inbox);
        inbox.closed = true;
        let mut spool = lock(&self.spool);
        let mut left: Vec<LedgerEntry> = lock(&self.in_hand).take().map(Arc::unwrap_or_clone).unwrap_or_default();
        left.extend(inbox.entries.drain(..));
        inbox.first_at = None;
        if !left.is_empty() {
            let appended = spool.append(&left);
            self.mirror(&spool);
            match appended {
                Ok(()) => {
                    bump(&self.counters.spooled, left.len());
                    self.handled(left.len());
                    tracing::info!(entries = left.len(), "ledger writer stopped; entries still in memory were spooled");
                }
                Err(e) => {
                    tracing::error!(
                        entries = left.len(),
                        error = %chain(&e),
                        "ledger writer stopped and cannot spool the entries still in memory"
                    );
                    inbox.entries.extend(left);
                }
            }
        }
        drop(spool);
        drop(inbox);
        self.stop_journal();
        self.progress.send_modify(|p| p.stopped = true);
    }

    /// Stops the log's upkeep thread, then seals the current segment and deletes every
    /// segment no longer needed, so a clean stop leaves little to read at the next start.
    /// Lines written later (a late settle) still go to the log.
    fn stop_journal(&self) {
        let Some(journal) = &self.journal else { return };
        journal.stop_maintenance();
        if let Some(thread) = lock(&self.maintenance).take() {
            // Waits for at most the round in progress (one fdatasync or deletion).
            let _ = thread.join();
        }
        let durable = self.progress.borrow().handled;
        journal.maintain(durable, || lock(&self.inbox).recorded, true);
        journal.sync_if_dirty();
    }
}

/// Stops the writer however the task ends.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Capped exponential backoff with jitter.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    until: Option<Instant>,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, next: initial, until: None }
    }

    fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| now >= t)
    }

    /// Starts (or lengthens) a wait; returns how long it is.
    fn fail(&mut self, now: Instant) -> Duration {
        // Up to a quarter shorter, so many gateways do not retry a recovering sink in step.
        let wait = self.next.saturating_sub(jitter(self.next / 4));
        self.until = Some(now + wait);
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.initial;
        self.until = None;
    }
}

/// A duration in `[0, span]` that differs between calls; not for cryptography.
fn jitter(span: Duration) -> Duration {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos()));
    let span = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(seed % span.saturating_add(1))
}

/// An error and its causes, `a: b: c`, for logs.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The background task.
struct Driver {
    shared: Arc<Shared>,
    sink: Arc<dyn LedgerSink>,
    cfg: LedgerConfig,
    sink_retry: Backoff,
    spool_retry: Backoff,
    flush_served: u64,
    /// When the dead letters are next offered to the sink.
    rejected_due: Instant,
}

struct View {
    len: usize,
    first_at: Option<Instant>,
    flush_epoch: u64,
    closing: bool,
}

impl Driver {
    async fn run(mut self) {
        let _guard = StopGuard(self.shared.clone());
        let mut closing_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let view = {
                let inbox = lock(&self.shared.inbox);
                View {
                    len: inbox.entries.len(),
                    first_at: inbox.first_at,
                    flush_epoch: inbox.flush_epoch,
                    closing: inbox.closing,
                }
            };
            if view.closing {
                closing_since.get_or_insert(now);
            }
            let flush_wanted = view.flush_epoch > self.flush_served;
            let urgent = view.closing || flush_wanted;
            let mut progressed = false;
            let mut blocked = false;

            let due = urgent
                || view.len >= self.cfg.max_batch
                || view.first_at.is_some_and(|t| now >= t + self.cfg.max_delay);
            if view.len > 0 && due {
                if self.handle_batch(now).await {
                    progressed = true;
                } else {
                    blocked = true;
                }
            }
            if flush_wanted && (blocked || self.shared.queue_len() == 0) {
                self.flush_served = view.flush_epoch;
                self.shared.progress.send_modify(|p| p.flush_served = view.flush_epoch);
            }

            let now = Instant::now();
            let replay_open = closing_since.is_none_or(|t| now < t + self.cfg.shutdown_replay);
            let can_replay = self.sink_retry.ready(now) && self.spool_retry.ready(now);
            if self.spool_depth() > 0 && replay_open && can_replay {
                self.replay_one().await;
                progressed = true;
            }

            let now = Instant::now();
            if !view.closing && self.rejected_pending() > 0 && now >= self.rejected_due && can_replay {
                self.rejected_due = now + self.cfg.rejected_retry;
                self.retry_rejected().await;
                progressed = true;
            }

            if view.closing && (blocked || self.shared.queue_len() == 0) {
                let now = Instant::now();
                let replay_over = self.spool_depth() == 0
                    || closing_since.is_some_and(|t| now >= t + self.cfg.shutdown_replay)
                    || !self.sink_retry.ready(now)
                    || !self.spool_retry.ready(now);
                if replay_over {
                    return;
                }
            }
            if progressed {
                tokio::task::yield_now().await;
                continue;
            }

            let mut deadline: Option<Instant> = None;
            let mut wake_at = |t: Instant| deadline = Some(deadline.map_or(t, |d| d.min(t)));
            if view.len > 0
                && !blocked
                && let Some(t) = view.first_at
            {
                wake_at(t + self.cfg.max_delay);
            }
            if blocked || self.spool_depth() > 0 {
                self.sink_retry.until.into_iter().chain(self.spool_retry.until).for_each(&mut wake_at);
            }
            if let Some(t) = closing_since {
                wake_at(t + self.cfg.shutdown_replay);
            }
            if !view.closing && self.rejected_pending() > 0 {
                // Not before a backoff in progress ends, or the loop would spin.
                let backoffs = self.sink_retry.until.into_iter().chain(self.spool_retry.until);
                wake_at(backoffs.fold(self.rejected_due, Instant::max));
            }
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = self.shared.wake.notified() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => self.shared.wake.notified().await,
            }
        }
    }

    fn spool_depth(&self) -> u64 {
        self.shared.counters.spool_depth.load(Ordering::Relaxed)
    }

    fn rejected_pending(&self) -> u64 {
        self.shared.counters.rejected_pending.load(Ordering::Relaxed)
    }

    /// Offers the dead letters to the sink again: in batches, entry by entry within a
    /// batch it rejects. Those it takes leave the file; each one it still rejects is
    /// logged with the sink's reason. Stops at the first transient failure.
    async fn retry_rejected(&mut self) {
        let entries = match self.with_spool(|s| s.dead_letters()).await {
            Ok(entries) => entries,
            Err(e) => return self.spool_failed(&e),
        };
        let mut stored = std::collections::HashSet::new();
        let mut still_rejected = 0u64;
        'batches: for batch in entries.chunks(self.cfg.max_batch) {
            match self.write(batch).await {
                Ok(()) => {
                    self.sink_retry.reset();
                    stored.extend(batch.iter().map(|e| e.request_id.clone()));
                }
                Err(e) if e.is_retryable() => {
                    self.sink_failed(&e, batch.len());
                    break;
                }
                Err(_) => {
                    for entry in batch {
                        match self.write(std::slice::from_ref(entry)).await {
                            Ok(()) => {
                                stored.insert(entry.request_id.clone());
                            }
                            Err(e) if e.is_retryable() => {
                                self.sink_failed(&e, 1);
                                break 'batches;
                            }
                            Err(e) => {
                                still_rejected += 1;
                                bump(&self.shared.counters.rejected, 1);
                                tracing::error!(
                                    request_id = %entry.request_id,
                                    error = %chain(&e),
                                    "ledger sink rejected a dead letter again; it stays in the dead-letter file"
                                );
                            }
                        }
                    }
                }
            }
        }
        if stored.is_empty() {
            return;
        }
        let taken = stored.len();
        bump(&self.shared.counters.delivered, taken);
        match self.with_spool(move |s| s.drop_dead_letters(&stored)).await {
            Ok(()) => tracing::info!(
                taken,
                still_rejected,
                "ledger sink took dead letters on a retry; they left the dead-letter file"
            ),
            // They stay in the file and are offered again: duplicates the sink ignores.
            Err(e) => self.spool_failed(&e),
        }
    }

    /// Moves one batch off the queue to the sink or the spool. Returns `false` when
    /// neither can take it now (it stays queued).
    async fn handle_batch(&mut self, now: Instant) -> bool {
        // A backlog the sink cannot keep up with moves to disk in one piece, so memory
        // stays bounded; the spool then feeds the sink in order.
        let spill = self.shared.queue_len() > self.cfg.max_queue;
        let sink_first = !spill && self.spool_depth() == 0 && self.sink_retry.ready(now);
        if !sink_first && !self.spool_retry.ready(now) {
            return false;
        }
        let batch = self.shared.take_batch(if spill { usize::MAX } else { self.cfg.max_batch });
        if spill {
            tracing::warn!(entries = batch.len(), "ledger queue is beyond max_queue; spooling the backlog");
        }
        if sink_first {
            match self.write(&batch).await {
                Ok(()) => {
                    self.sink_retry.reset();
                    *lock(&self.shared.in_hand) = None;
                    bump(&self.shared.counters.delivered, batch.len());
                    self.shared.handled(batch.len());
                    return true;
                }
                Err(e) if e.is_retryable() => self.sink_failed(&e, batch.len()),
                Err(_) => {
                    let done = self.isolate(&batch).await;
                    self.shared.handled(done);
                    let rest = batch.get(done..).filter(|rest| !rest.is_empty());
                    *lock(&self.shared.in_hand) = rest.map(|rest| Arc::new(rest.to_vec()));
                    if rest.is_none() {
                        return true;
                    }
                }
            }
        }
        let shared = self.shared.clone();
        let spooled =
            tokio::task::spawn_blocking(move || shared.spool_in_hand()).await.unwrap_or(Err(LedgerError::Stopped));
        match spooled {
            Ok(()) => true,
            Err(e) => {
                self.spool_failed(&e);
                self.shared.restore_in_hand();
                false
            }
        }
    }

    /// Sends the oldest spooled batch to the sink and acknowledges what it stored.
    async fn replay_one(&mut self) {
        let max = self.cfg.max_batch;
        let batch = match self.with_spool(move |s| s.peek(max)).await {
            Ok(batch) => batch,
            Err(e) => return self.spool_failed(&e),
        };
        if batch.is_empty() {
            return;
        }
        let stored = match self.write(batch.entries()).await {
            Ok(()) => {
                self.sink_retry.reset();
                bump(&self.shared.counters.delivered, batch.len());
                batch.len()
            }
            Err(e) if e.is_retryable() => {
                self.sink_failed(&e, batch.len());
                0
            }
            Err(_) => self.isolate(batch.entries()).await,
        };
        if stored > 0
            && let Err(e) = self.with_spool(move |s| s.ack(&batch, stored)).await
        {
            self.spool_failed(&e);
        }
    }

    /// After the sink rejected a batch: sends its entries one by one, moving the ones it
    /// rejects to the dead-letter file. Returns how many, from the front, are settled;
    /// stops at the first transient failure.
    async fn isolate(&mut self, entries: &[LedgerEntry]) -> usize {
        for (i, entry) in entries.iter().enumerate() {
            match self.write(std::slice::from_ref(entry)).await {
                Ok(()) => bump(&self.shared.counters.delivered, 1),
                Err(e) if e.is_retryable() => {
                    self.sink_failed(&e, entries.len() - i);
                    return i;
                }
                Err(e) => {
                    tracing::error!(
                        request_id = %entry.request_id,
                        error = %chain(&e),
                        "ledger sink rejected an entry; it is kept in the dead-letter file and offered again later"
                    );
                    let one = vec![entry.clone()];
                    if let Err(e) = self.with_spool(move |s| s.dead_letter(&one)).await {
                        self.spool_failed(&e);
                        return i;
                    }
                    bump(&self.shared.counters.rejected, 1);
                }
            }
        }
        self.sink_retry.reset();
        entries.len()
    }

    /// One sink write, bounded in time, with a panicking sink counted as a failure.
    async fn write(&self, entries: &[LedgerEntry]) -> Result<(), SinkError> {
        let sink = &self.sink;
        let call = AssertUnwindSafe(async move { sink.write_batch(entries).await }).catch_unwind();
        match tokio::time::timeout(self.cfg.write_timeout, call).await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => Err(SinkError::unavailable("ledger sink panicked")),
            Err(_elapsed) => Err(SinkError::Timeout(self.cfg.write_timeout)),
        }
    }

    /// Runs `f` on the spool on the blocking pool (file I/O and fsync stay off the
    /// runtime's workers).
    async fn with_spool<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Spool) -> Result<T, LedgerError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut spool = lock(&shared.spool);
            let result = f(&mut spool);
            shared.mirror(&spool);
            result
        })
        .await
        .unwrap_or_else(|_| Err(LedgerError::Stopped))
    }

    fn sink_failed(&mut self, e: &SinkError, entries: usize) {
        bump(&self.shared.counters.sink_failures, 1);
        let wait = self.sink_retry.fail(Instant::now());
        tracing::warn!(
            error = %chain(e),
            entries,
            retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "ledger sink write failed; entries are spooled and the sink retried"
        );
    }

    fn spool_failed(&mut self, e: &LedgerError) {
        bump(&self.shared.counters.spool_failures, 1);
        let wait = self.spool_retry.fail(Instant::now());
        tracing::error!(
            error = %chain(e),
            retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "ledger spool operation failed; entries stay in memory"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_that_cannot_work_are_refused() {
        let ok = LedgerConfig::new("/tmp/x");
        assert!(ok.validate().is_ok());
        let bad = [
            LedgerConfig { max_batch: 0, ..ok.clone() },
            LedgerConfig { max_queue: 10, max_batch: 11, ..ok.clone() },
            LedgerConfig { write_timeout: Duration::ZERO, ..ok.clone() },
            LedgerConfig { retry_initial: Duration::ZERO, ..ok.clone() },
            LedgerConfig { retry_max: Duration::from_millis(1), ..ok.clone() },
            LedgerConfig { fsync: FsyncPolicy::Interval(Duration::ZERO), ..ok.clone() },
            LedgerConfig { journal_rotate: Duration::ZERO, ..ok.clone() },
            LedgerConfig { rejected_retry: Duration::ZERO, ..ok.clone() },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(LedgerError::Config(_))), "{c:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert!(b.ready(now));
        let waits: Vec<_> = (0..5).map(|_| b.fail(now)).collect();
        for (wait, full) in waits.iter().zip([100, 200, 350, 350, 350]) {
            let full = Duration::from_millis(full);
            assert!(*wait <= full && *wait >= full - full / 4, "{wait:?} vs {full:?}");
        }
        assert!(!b.ready(now));
        b.reset();
        assert!(b.ready(now));
        assert_eq!(b.next, Duration::from_millis(100));
    }

    #[test]
    fn start_outside_a_runtime_is_an_error_not_a_panic() {
        let sink = Arc::new(crate::MemorySink::new());
        let err = LedgerWriter::start(sink, LedgerConfig::new(std::env::temp_dir().join("never-opened.spool")));
        assert!(matches!(err, Err(LedgerError::NoRuntime)));
    }
}
