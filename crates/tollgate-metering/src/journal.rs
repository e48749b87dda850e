//! The ledger log: an append-only file of what each request is about to cost and what it
//! cost, so a process crash loses no charge.
//!
//! ## What is written
//!
//! Segment files `<journal_dir>/ledger-<seq>.log` (seq zero-padded, so names sort), JSON
//! lines, one record each:
//! - `{"t":"intent","e":<entry>}` before a request is dispatched upstream
//!   ([`crate::LedgerWriter::intent`]): the entry as known then (the prompt's estimate);
//! - `{"t":"settled","e":<entry>}` before the response's last byte leaves
//!   ([`crate::LedgerWriter::settle`], and every [`crate::LedgerWriter::record`]);
//! - `{"t":"void","id":"<request_id>"}` when an [`Intent`] is dropped unsettled: the
//!   request never reached an upstream, so there is nothing to charge.
//!
//! Each line is one `write(2)` under a short mutex, on the caller's thread; the line
//! buffer is reused. Files are created 0600 in a 0700 directory, and `ledger.lock` (an
//! OS file lock) keeps a second writer off the directory.
//!
//! ## What survives what
//!
//! - A process crash (`kill -9`, OOM kill, `panic = "abort"`) loses nothing once the
//!   `write(2)` returned: the line is in the kernel's page cache and reaches the disk
//!   without the process.
//! - A machine crash or power cut loses what was not fsynced yet. With
//!   [`FsyncPolicy::Interval`] (default 50 ms) a background thread fdatasyncs the current
//!   segment every interval when it was written to, so at most the last interval of
//!   lines is lost. [`FsyncPolicy::Always`] fdatasyncs after every line on the caller's
//!   thread and loses nothing, at the cost of one disk flush per line added to every
//!   request twice (intent and settle): from about 0.1 ms on an SSD with a power-safe
//!   write cache to several ms on network or consumer storage (`benches/journal.rs`
//!   measured 7 ms per request on a cloud VM disk, against 6-9 µs with `interval` or
//!   `never`). [`FsyncPolicy::Never`] leaves write-back to the OS (Linux: about 30 s).
//!
//! Hot-path cost without `always`: per line one JSON serialization into a reused buffer
//! and one `write(2)`; an [`Intent`] also keeps a copy of its request id for the void
//! line.
//!
//! ## Start-up
//!
//! Every segment is read in order. A line that does not parse (a torn last line, the
//! tail of a machine crash) is counted as corrupt, copied to `ledger.corrupt`, and
//! skipped. Per request id: a settled entry is recorded again (sinks are idempotent by
//! request id); an intent with neither a settled nor a void line is recorded with
//! `usage_source: "recovered"` and counted. Then a fresh segment is started.
//!
//! ## Rotation and deletion
//!
//! A background thread starts a new segment once the current one is a second old (or
//! larger than 8 MiB). A segment is deleted, oldest first, once (a) every intent written
//! in it is settled or voided and (b) every entry recorded before it was sealed is durable
//! (at the sink or in the spool). A long stream keeps its segment, and every later one,
//! on disk until it settles.

use crate::entry::{LedgerEntry, UsageSource};
use crate::error::LedgerError;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// When the ledger log is fsynced: `interval:<ms>` (ms >= 1), `always` or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every line, on the caller's thread.
    Always,
    /// Never; the OS writes the page cache back when it likes.
    Never,
    /// A background thread syncs the current segment this often when it was written.
    Interval(Duration),
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_millis(50))
    }
}

/// A `--ledger-fsync` value that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ledger fsync policy {input:?}: expected interval:<ms> (ms >= 1), always or never")]
pub struct FsyncPolicyError {
    input: String,
}

impl FromStr for FsyncPolicy {
    type Err = FsyncPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || FsyncPolicyError { input: s.to_owned() };
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => {
                let ms = s.strip_prefix("interval:").ok_or_else(bad)?;
                if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                match ms.parse::<u64>() {
                    Ok(ms) if ms >= 1 => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
                    _ => Err(bad()),
                }
            }
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

/// A segment grows past this many bytes: the next rotation check starts a new one.
pub(crate) const SEGMENT_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// The longest the maintenance thread sleeps between rotation checks.
const MAX_TICK: Duration = Duration::from_millis(100);
const LOCK_FILE: &str = "ledger.lock";
const CORRUPT_FILE: &str = "ledger.corrupt";

/// What the ledger log held when the writer started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalRecovery {
    /// Segment files read.
    pub segments: u64,
    /// Settled entries recorded again (the sink keeps each request id once).
    pub settled: u64,
    /// Intents with no settled or void line: recorded as `usage_source: "recovered"`.
    pub recovered: u64,
    /// Intents voided (never dispatched): not recorded.
    pub voided: u64,
    /// Lines that did not parse (a torn last line included); copied to `ledger.corrupt`.
    pub corrupt_lines: u64,
}

/// What start-up hands the writer: entries to record again, in log order.
pub(crate) struct Replay {
    pub(crate) entries: Vec<LedgerEntry>,
    pub(crate) recovery: JournalRecovery,
}

/// An open ledger log.
pub(crate) struct Journal {
    dir: PathBuf,
    policy: FsyncPolicy,
    rotate_after: Duration,
    state: Mutex<State>,
    /// Held by whoever rotates or deletes segments (the maintenance thread, then stop).
    maintaining: Mutex<()>,
    failures: AtomicU64,
    stopped: Mutex<bool>,
    wake: Condvar,
    _lock: File,
}

struct State {
    file: Arc<File>,
    seq: u64,
    opened: Instant,
    bytes: u64,
    /// Written since the last fdatasync.
    dirty: bool,
    buf: Vec<u8>,
    /// Every segment on disk, the current one included.
    segments: BTreeMap<u64, Segment>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Segment {
    /// Intents written in it and neither settled nor voided yet.
    open: u64,
    /// The writer's count of recorded entries when it stopped being current: deletable
    /// once that many are durable.
    sealed_at: Option<u64>,
}

#[derive(Clone, Copy)]
enum Kind {
    Intent,
    Settled,
}

impl Journal {
    /// Opens the log in `dir` (creating it), reads what an earlier run left, and starts a
    /// fresh segment. The old segments stay until the `replay.entries` — which the caller
    /// must record first, before anything else — are durable.
    pub(crate) fn open(
        dir: &Path,
        policy: FsyncPolicy,
        rotate_after: Duration,
    ) -> Result<(Arc<Journal>, Replay), LedgerError> {
        create_private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = private_file(OpenOptions::new().create(true).truncate(false).write(true))
            .open(&lock_path)
            .map_err(|e| LedgerError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LedgerError::JournalLocked { dir: dir.to_owned() }),
            Err(TryLockError::Error(e)) => return Err(LedgerError::io("lock", lock_path, e)),
        }
        let old = list_segments(dir)?;
        let mut fates = Fates::default();
        let mut corrupt = Vec::new();
        for (_, path) in &old {
            let bytes = fs::read(path).map_err(|e| LedgerError::io("read", path, e))?;
            fates.read_segment(&bytes, &mut corrupt);
        }
        if !corrupt.is_empty() {
            let path = dir.join(CORRUPT_FILE);
            let mut text = Vec::new();
            for line in &corrupt {
                text.extend_from_slice(line);
                text.push(b'\n');
            }
            if let Err(e) = append_private(&path, &text) {
                tracing::error!(path = %path.display(), error = %e, "ledger log: cannot copy corrupt lines aside");
            }
        }
        let mut replay = fates.finish();
        replay.recovery.segments = old.len() as u64;
        replay.recovery.corrupt_lines = corrupt.len() as u64;
        let recorded = replay.entries.len() as u64;

        let seq = old.last().map_or(1, |(seq, _)| seq + 1);
        let file = create_segment(dir, seq, policy)?;
        let mut segments: BTreeMap<u64, Segment> =
            old.iter().map(|(seq, _)| (*seq, Segment { open: 0, sealed_at: Some(recorded) })).collect();
        segments.insert(seq, Segment::default());
        let journal = Journal {
            dir: dir.to_owned(),
            policy,
            rotate_after,
            state: Mutex::new(State {
                file: Arc::new(file),
                seq,
                opened: Instant::now(),
                bytes: 0,
                dirty: false,
                buf: Vec::with_capacity(2048),
                segments,
            }),
            maintaining: Mutex::new(()),
            failures: AtomicU64::new(0),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            _lock: lock,
        };
        Ok((Arc::new(journal), replay))
    }

    /// Lines that could not be written or synced.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Writes an intent line; on failure logs, counts, and returns an intent that does
    /// nothing.
    pub(crate) fn intent(self: &Arc<Self>, entry: &LedgerEntry) -> Intent {
        let mut st = lock(&self.state);
        let written = self.append(&mut st, |buf| encode(buf, Kind::Intent, entry));
        let seq = st.seq;
        if written.is_ok()
            && let Some(seg) = st.segments.get_mut(&seq)
        {
            seg.open += 1;
        }
        let sync = self.sync_after(&st, &written);
        drop(st);
        match written {
            Ok(()) => {
                self.sync_line(sync, &entry.request_id);
                Intent {
                    open: Some(OpenIntent {
                        journal: self.clone(),
                        segment: seq,
                        request_id: entry.request_id.clone(),
                    }),
                }
            }
            Err(e) => {
                self.failed(&e, &entry.request_id, "cannot write the intent");
                Intent::none()
            }
        }
    }

    /// Writes a settled line for `entry`, closes the intent of segment `closes` if any,
    /// and hands the entry to `then` — all under the log's mutex, so a rotation sees
    /// either both the line and the recorded entry or neither.
    pub(crate) fn settled<R>(&self, entry: LedgerEntry, closes: Option<u64>, then: impl FnOnce(LedgerEntry) -> R) -> R {
        let mut st = lock(&self.state);
        let written = self.append(&mut st, |buf| encode(buf, Kind::Settled, &entry));
        // A settled line that did not make it leaves its intent open, so a crash before
        // the entry is durable recovers it rather than losing it.
        if written.is_ok()
            && let Some(seg) = closes.and_then(|seq| st.segments.get_mut(&seq))
        {
            seg.open = seg.open.saturating_sub(1);
        }
        let sync = self.sync_after(&st, &written);
        let request_id = (written.is_err() || sync.is_some()).then(|| entry.request_id.clone());
        let out = then(entry);
        drop(st);
        let request_id = request_id.as_deref().unwrap_or_default();
        match written {
            Ok(()) => self.sync_line(sync, request_id),
            Err(e) => self.failed(&e, request_id, "cannot write the settled entry"),
        }
        out
    }

    /// Writes a void line for an intent of segment `closes` and closes it.
    fn void(&self, request_id: &str, closes: u64) {
        let mut st = lock(&self.state);
        let written = self.append(&mut st, |buf| {
            buf.extend_from_slice(br#"{"t":"void","id":"#);
            serde_json::to_writer(&mut *buf, request_id)?;
            buf.extend_from_slice(b"}\n");
            Ok(())
        });
        // Closed even if the line failed: deleting the intent is the right outcome.
        if let Some(seg) = st.segments.get_mut(&closes) {
            seg.open = seg.open.saturating_sub(1);
        }
        let sync = self.sync_after(&st, &written);
        drop(st);
        match written {
            Ok(()) => self.sync_line(sync, request_id),
            Err(e) => self.failed(&e, request_id, "cannot write the void line"),
        }
    }

    /// Appends the line `fill` encodes into the reused buffer. A partial write is cut
    /// off again so the next line starts clean.
    fn append(
        &self,
        st: &mut State,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
    ) -> Result<(), LedgerError> {
        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        let result = match fill(&mut buf) {
            Err(source) => Err(LedgerError::Encode { request_id: String::new(), source }),
            Ok(()) => match (&*st.file).write_all(&buf) {
                Ok(()) => {
                    st.bytes += buf.len() as u64;
                    st.dirty = true;
                    Ok(())
                }
                Err(e) => {
                    let _ = st.file.set_len(st.bytes);
                    Err(LedgerError::io("append to", self.segment_path(st.seq), e))
                }
            },
        };
        // Keep the grown buffer, unless one huge entry made it huge.
        if buf.capacity() <= 1 << 20 {
            st.buf = buf;
        }
        result
    }

    /// The file to fdatasync after a line, under [`FsyncPolicy::Always`].
    fn sync_after(&self, st: &State, written: &Result<(), LedgerError>) -> Option<Arc<File>> {
        (self.policy == FsyncPolicy::Always && written.is_ok()).then(|| st.file.clone())
    }

    /// Syncs outside the mutex, so concurrent requests share the disk flush.
    fn sync_line(&self, file: Option<Arc<File>>, request_id: &str) {
        if let Some(file) = file
            && let Err(e) = file.sync_data()
        {
            let e = LedgerError::io("sync", self.dir.clone(), e);
            self.failed(&e, request_id, "cannot fsync the ledger log");
        }
    }

    fn failed(&self, e: &LedgerError, request_id: &str, what: &'static str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(request_id, error = %crate::writer::chain(e), "ledger log: {what}");
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        segment_path(&self.dir, seq)
    }

    /// How long the maintenance thread sleeps between rounds.
    pub(crate) fn tick(&self) -> Duration {
        let tick = match self.policy {
            FsyncPolicy::Interval(d) => d.min(MAX_TICK),
            FsyncPolicy::Always | FsyncPolicy::Never => MAX_TICK,
        };
        tick.min(self.rotate_after).max(Duration::from_millis(1))
    }

    /// Sleeps up to `d`; false once [`Journal::stop_maintenance`] was called.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let stopped = lock(&self.stopped);
        let (stopped, _) = self.wake.wait_timeout_while(stopped, d, |s| !*s).unwrap_or_else(PoisonError::into_inner);
        !*stopped
    }

    /// Ends the maintenance thread's loop.
    pub(crate) fn stop_maintenance(&self) {
        *lock(&self.stopped) = true;
        self.wake.notify_all();
    }

    /// Whether the interval policy wants a sync every `d`.
    pub(crate) fn interval(&self) -> Option<Duration> {
        match self.policy {
            FsyncPolicy::Interval(d) => Some(d),
            FsyncPolicy::Always | FsyncPolicy::Never => None,
        }
    }

    /// fdatasyncs the current segment if it was written since the last sync.
    pub(crate) fn sync_if_dirty(&self) {
        let file = {
            let mut st = lock(&self.state);
            if !st.dirty {
                return;
            }
            st.dirty = false;
            st.file.clone()
        };
        if let Err(e) = file.sync_data() {
            lock(&self.state).dirty = true;
            let e = LedgerError::io("sync", self.dir.clone(), e);
            self.failed(&e, "", "cannot fsync the ledger log");
        }
    }

    /// One round of upkeep: starts a new segment when the current one is old or large
    /// (or `force` and it is not empty), then deletes the oldest segments that are no
    /// longer needed. `durable`: how many recorded entries are at the sink or in the
    /// spool; `recorded()`: how many were recorded so far (called under the log's mutex).
    pub(crate) fn maintain(&self, durable: u64, recorded: impl FnOnce() -> u64, force: bool) {
        let _one = lock(&self.maintaining);
        let next = {
            let st = lock(&self.state);
            let due =
                st.bytes > 0 && (force || st.opened.elapsed() >= self.rotate_after || st.bytes >= SEGMENT_MAX_BYTES);
            due.then_some(st.seq + 1)
        };
        if let Some(next) = next {
            match create_segment(&self.dir, next, self.policy) {
                Ok(file) => self.switch_to(next, file, recorded),
                Err(e) => self.failed(&e, "", "cannot start a new segment"),
            }
        }
        self.delete_done(durable);
    }

    fn switch_to(&self, next: u64, file: File, recorded: impl FnOnce() -> u64) {
        let (old, was_dirty) = {
            let mut st = lock(&self.state);
            let sealed_at = recorded();
            let seq = st.seq;
            if let Some(seg) = st.segments.get_mut(&seq) {
                seg.sealed_at = Some(sealed_at);
            }
            st.segments.insert(next, Segment::default());
            st.seq = next;
            st.opened = Instant::now();
            st.bytes = 0;
            let was_dirty = std::mem::replace(&mut st.dirty, false);
            (std::mem::replace(&mut st.file, Arc::new(file)), was_dirty)
        };
        // The sealed segment gets its last sync here: the interval thread only syncs the
        // current one.
        if was_dirty
            && self.policy != FsyncPolicy::Never
            && let Err(e) = old.sync_data()
        {
            let e = LedgerError::io("sync", self.dir.clone(), e);
            self.failed(&e, "", "cannot fsync a sealed segment");
        }
    }

    fn delete_done(&self, durable: u64) {
        let done: Vec<u64> = {
            let mut st = lock(&self.state);
            let current = st.seq;
            let done: Vec<u64> = st
                .segments
                .iter()
                .take_while(|(seq, seg)| {
                    **seq != current && seg.open == 0 && seg.sealed_at.is_some_and(|at| durable >= at)
                })
                .map(|(seq, _)| *seq)
                .collect();
            for seq in &done {
                st.segments.remove(seq);
            }
            done
        };
        for seq in done {
            let path = self.segment_path(seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Left behind, it is read again at the next start: duplicates the sink
                // ignores, nothing lost.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ledger log: cannot delete a done segment")
                }
            }
        }
    }

    /// Segment numbers on disk that the log still tracks, oldest first (tests).
    #[cfg(test)]
    fn tracked(&self) -> Vec<u64> {
        lock(&self.state).segments.keys().copied().collect()
    }
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// A request dispatched upstream and not settled yet, as written to the ledger log by
/// [`crate::LedgerWriter::intent`]. Settle it with [`crate::LedgerWriter::settle`].
///
/// Dropping it unsettled writes a `void` line: the request never reached an upstream,
/// so there is nothing to recover. An intent the log could not write (or made without a
/// log) does nothing at all.
#[must_use = "settle the intent with LedgerWriter::settle; dropping it voids the request"]
pub struct Intent {
    open: Option<OpenIntent>,
}

struct OpenIntent {
    journal: Arc<Journal>,
    segment: u64,
    request_id: String,
}

impl Intent {
    /// An intent that does nothing (no log, or the log failed).
    pub(crate) fn none() -> Self {
        Intent { open: None }
    }

    /// Whether the intent line is in the log (false without a log or after a failed write).
    pub fn is_logged(&self) -> bool {
        self.open.is_some()
    }

    /// Disarms the intent for settling: its log, segment and request id.
    pub(crate) fn take(mut self) -> Option<(Arc<Journal>, u64, String)> {
        self.open.take().map(|o| (o.journal, o.segment, o.request_id))
    }
}

impl Drop for Intent {
    fn drop(&mut self) {
        if let Some(o) = self.open.take() {
            o.journal.void(&o.request_id, o.segment);
        }
    }
}

/// Voids an intent taken with [`Intent::take`] that is not settled after all.
pub(crate) fn void(journal: &Journal, segment: u64, request_id: &str) {
    journal.void(request_id, segment);
}

impl fmt::Debug for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.open {
            Some(o) => {
                f.debug_struct("Intent").field("request_id", &o.request_id).field("segment", &o.segment).finish()
            }
            None => f.write_str("Intent(not logged)"),
        }
    }
}

fn encode(buf: &mut Vec<u8>, kind: Kind, entry: &LedgerEntry) -> Result<(), serde_json::Error> {
    buf.extend_from_slice(match kind {
        Kind::Intent => br#"{"t":"intent","e":"#.as_slice(),
        Kind::Settled => br#"{"t":"settled","e":"#.as_slice(),
    });
    serde_json::to_writer(&mut *buf, entry)?;
    buf.extend_from_slice(b"}\n");
    Ok(())
}

/// One line as read back.
#[derive(Deserialize)]
struct Line {
    t: LineKind,
    #[serde(default)]
    e: Option<LedgerEntry>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum LineKind {
    Intent,
    Settled,
    Void,
}

enum Fate {
    Open(LedgerEntry),
    Settled(LedgerEntry),
    Void,
}

/// What became of each request id seen in the log, in first-seen order.
#[derive(Default)]
struct Fates {
    order: Vec<String>,
    by_id: HashMap<String, Fate>,
}

impl Fates {
    fn read_segment(&mut self, bytes: &[u8], corrupt: &mut Vec<Vec<u8>>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                // A torn last line: the write a crash interrupted.
                corrupt.push(rest.to_vec());
                break;
            };
            let line = &rest[..end];
            rest = &rest[end + 1..];
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Line>(line) {
                Ok(Line { t: LineKind::Intent, e: Some(e), .. }) => self.intent(e),
                Ok(Line { t: LineKind::Settled, e: Some(e), .. }) => self.settled(e),
                Ok(Line { t: LineKind::Void, id: Some(id), .. }) => self.void(&id),
                _ => corrupt.push(line.to_vec()),
            }
        }
    }

    fn intent(&mut self, e: LedgerEntry) {
        if !self.by_id.contains_key(&e.request_id) {
            self.order.push(e.request_id.clone());
            self.by_id.insert(e.request_id.clone(), Fate::Open(e));
        }
    }

    fn settled(&mut self, e: LedgerEntry) {
        match self.by_id.get_mut(&e.request_id) {
            // The first settled entry is the one the sink kept.
            Some(Fate::Settled(_)) => {}
            Some(fate) => *fate = Fate::Settled(e),
            None => {
                self.order.push(e.request_id.clone());
                self.by_id.insert(e.request_id.clone(), Fate::Settled(e));
            }
        }
    }

    fn void(&mut self, id: &str) {
        if let Some(fate @ Fate::Open(_)) = self.by_id.get_mut(id) {
            *fate = Fate::Void;
        }
    }

    fn finish(mut self) -> Replay {
        let mut replay = Replay { entries: Vec::with_capacity(self.order.len()), recovery: JournalRecovery::default() };
        for id in &self.order {
            match self.by_id.remove(id) {
                Some(Fate::Settled(e)) => {
                    replay.recovery.settled += 1;
                    replay.entries.push(e);
                }
                Some(Fate::Open(mut e)) => {
                    e.usage_source = UsageSource::Recovered;
                    replay.recovery.recovered += 1;
                    replay.entries.push(e);
                }
                Some(Fate::Void) => replay.recovery.voided += 1,
                None => {}
            }
        }
        replay
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("ledger-{seq:020}.log"))
}

/// The segment files in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LedgerError> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| LedgerError::io("list", dir, e))? {
        let item = item.map_err(|e| LedgerError::io("list", dir, e))?;
        let name = item.file_name();
        let seq = name
            .to_str()
            .and_then(|n| n.strip_prefix("ledger-"))
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, item.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn create_segment(dir: &Path, seq: u64, policy: FsyncPolicy) -> Result<File, LedgerError> {
    let path = segment_path(dir, seq);
    let file = private_file(OpenOptions::new().create_new(true).append(true))
        .open(&path)
        .map_err(|e| LedgerError::io("create", &path, e))?;
    if policy != FsyncPolicy::Never {
        sync_dir(dir)?;
    }
    Ok(file)
}

fn create_private_dir(dir: &Path) -> Result<(), LedgerError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| LedgerError::io("create directory", parent, e))?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(LedgerError::io("create directory", dir, e)),
    }
}

/// `options` creating files readable by the owner only.
/// `options` creating files readable and writable by the owner only (0600): ledger
/// files hold who spent what.
pub(crate) fn private_file(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

fn append_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = private_file(OpenOptions::new().create(true).append(true)).open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// Makes a created directory entry in `dir` (or `dir` itself) durable.
fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    #[cfg(unix)]
    {
        let parent = match dir.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        for d in [dir, parent] {
            if d.is_dir() {
                File::open(d).and_then(|f| f.sync_all()).map_err(|e| LedgerError::io("sync directory", d, e))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{KeyId, ProjectId};

    fn entry(id: &str) -> LedgerEntry {
        LedgerEntry::new(id, KeyId::new("key_1"), ProjectId::new("proj_1"), "gpt-4o")
    }

    fn line(kind: Kind, e: &LedgerEntry) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, kind, e).unwrap();
        buf
    }

    fn void_line(id: &str) -> Vec<u8> {
        format!("{{\"t\":\"void\",\"id\":{}}}\n", serde_json::to_string(id).unwrap()).into_bytes()
    }

    #[test]
    fn fsync_policy_parses_the_flag_forms_and_prints_them_back() {
        for (text, want) in [
            ("always", FsyncPolicy::Always),
            ("never", FsyncPolicy::Never),
            ("interval:1", FsyncPolicy::Interval(Duration::from_millis(1))),
            ("interval:250", FsyncPolicy::Interval(Duration::from_millis(250))),
        ] {
            let got: FsyncPolicy = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::Interval(Duration::from_millis(50)));
        for bad in [
            "",
            "Always",
            "interval",
            "interval:",
            "interval:0",
            "interval:-5",
            "interval:+5",
            "interval:1.5",
            "interval: 5",
            "interval:99999999999999999999",
            "sometimes",
        ] {
            let err = bad.parse::<FsyncPolicy>().unwrap_err().to_string();
            assert!(err.contains("interval:<ms>") && err.contains("always") && err.contains("never"), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn recovery_records_settled_entries_and_open_intents_never_voided_ones() {
        let (a, b, c, d) = (entry("a"), entry("b"), entry("c"), entry("d"));
        let mut log = Vec::new();
        for l in [
            line(Kind::Intent, &a),
            line(Kind::Intent, &b),
            line(Kind::Intent, &c),
            line(Kind::Settled, &a.clone().with_outcome(200, 7)),
            void_line("b"),
            // A second settled line (a retried record): the first is what the sink kept.
            line(Kind::Settled, &a.clone().with_outcome(500, 1)),
            line(Kind::Settled, &d),
            // A void for an intent in a segment already deleted: nothing to do.
            void_line("gone"),
        ] {
            log.extend(l);
        }
        let mut fates = Fates::default();
        let mut corrupt = Vec::new();
        fates.read_segment(&log, &mut corrupt);
        let replay = fates.finish();
        let mut recovered_c = c.clone();
        recovered_c.usage_source = UsageSource::Recovered;
        assert_eq!(replay.entries, [a.with_outcome(200, 7), recovered_c, d]);
        let r = replay.recovery;
        assert_eq!((r.settled, r.recovered, r.voided), (2, 1, 1));
        assert!(corrupt.is_empty());
    }

    #[test]
    fn only_whole_parseable_lines_count_and_the_rest_is_kept_aside() {
        let a = entry("a");
        let intent = line(Kind::Intent, &a);
        let mut log = b"\n{\"t\":\"void\"}\nnot json\n{\"t\":\"settled\",\"e\":{\"request_id\":\"x\"}}\n".to_vec();
        log.extend(&intent);
        log.extend(&intent[..intent.len() / 2]);
        let mut fates = Fates::default();
        let mut corrupt = Vec::new();
        fates.read_segment(&log, &mut corrupt);
        assert_eq!(corrupt.len(), 4, "a void without id, garbage, an entry missing fields, a torn tail");
        assert_eq!(corrupt[3], &intent[..intent.len() / 2]);
        assert_eq!(fates.finish().recovery.recovered, 1);
    }

    #[test]
    fn segment_names_sort_as_numbers_and_strangers_are_ignored() {
        let dir = std::env::temp_dir().join(format!("tollgate-journal-names-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for seq in [10, 9, 100] {
            File::create(segment_path(&dir, seq)).unwrap();
        }
        for stranger in ["ledger-.log", "ledger-12.log.tmp", "ledger-x1.log", "notes.txt", LOCK_FILE] {
            File::create(dir.join(stranger)).unwrap();
        }
        let seqs: Vec<u64> = list_segments(&dir).unwrap().into_iter().map(|(s, _)| s).collect();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(seqs, [9, 10, 100]);
    }

    #[test]
    fn a_journal_tracks_the_segments_it_may_still_need() {
        let dir = std::env::temp_dir().join(format!("tollgate-journal-track-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (journal, replay) = Journal::open(&dir, FsyncPolicy::Never, Duration::from_secs(3600)).unwrap();
        assert!(replay.entries.is_empty());
        let intent = journal.intent(&entry("a"));
        journal.settled(entry("b"), None, drop);
        // Sealed with two entries recorded, one open intent.
        journal.maintain(0, || 2, true);
        assert_eq!(journal.tracked(), [1, 2]);
        journal.maintain(2, || 2, false);
        assert_eq!(journal.tracked(), [1, 2], "the open intent keeps segment 1");
        drop(intent);
        journal.maintain(1, || 2, false);
        assert_eq!(journal.tracked(), [1, 2], "one of two entries is durable");
        journal.maintain(2, || 2, false);
        assert_eq!(journal.tracked(), [2]);
        assert!(!segment_path(&dir, 1).exists());
        drop(journal);
        let _ = fs::remove_dir_all(&dir);
    }
}
