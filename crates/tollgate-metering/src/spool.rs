//! The spool: an append-only local file holding ledger entries the sink could not take
//! yet, replayed in order once it can.
//!
//! ## Format (version 1)
//!
//! One record per line, `CRC\tKIND\tPAYLOAD\n`, where `CRC` is the CRC-32 (IEEE) of
//! `KIND\tPAYLOAD` as 8 lowercase hex digits and `KIND` is one byte:
//! - `e`: an entry; `PAYLOAD` is the [`LedgerEntry`] JSON (compact, so it never holds a
//!   raw newline or tab);
//! - `a`: an acknowledgement; `PAYLOAD` is a decimal byte offset: every entry before it
//!   has been stored by the sink.
//!
//! Every append is one `write` of whole lines followed by `sync_data`, so a crash leaves
//! at worst one incomplete last line. Replay progress is recorded by appending an `a`
//! line after the sink acknowledged a batch, so a crash during replay re-sends at most the
//! batch in flight (which the idempotent sink may already hold). Once everything is
//! acknowledged the file is truncated to zero; when the acknowledged prefix grows past
//! the compaction threshold and outweighs the rest, the unacknowledged lines are copied
//! to `<spool>.tmp`, synced, and renamed over the spool. Every state change is therefore
//! one atomic step: an append, a truncation or a rename.
//!
//! ## Recovery on open
//!
//! An incomplete last line (no newline) is a torn write: it is dropped, everything
//! before it is kept. A complete line whose checksum or JSON does not check out is
//! skipped and counted. Neither is discarded silently: their bytes are appended to
//! `<spool>.corrupt` for an operator to inspect. If anything was dropped or acknowledged,
//! the pending lines are rewritten into a clean file.
//!
//! ## Side files
//!
//! `<spool>.lock` (held with an OS file lock while a [`Spool`] is open, so two writers
//! never share a spool), `<spool>.tmp` (compaction in progress; removed on open),
//! `<spool>.corrupt` (unreadable lines), `<spool>.rejected` (entries the sink refused as
//! invalid, in the spool format: the dead letters, see [`rejected_entries`]). Dead
//! letters are not final: the writer offers them to the sink again, and those it takes
//! are removed ([`Spool::drop_dead_letters`], a rewrite renamed over the file).

use crate::entry::LedgerEntry;
use crate::error::LedgerError;
use crate::journal::private_file;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The default compaction threshold: the acknowledged prefix is dropped once it exceeds
/// 16 MiB and is larger than what is left to replay.
pub const DEFAULT_COMPACT_BYTES: u64 = 16 * 1024 * 1024;

const ENTRY: u8 = b'e';
const ACK: u8 = b'a';
/// The most bytes of a torn tail copied aside for inspection.
const MAX_TORN_COPY: u64 = 16 * 1024 * 1024;

/// What [`Spool::open`] found on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolRecovery {
    /// Entries waiting to be replayed.
    pub pending: u64,
    /// Bytes of an incomplete last line (a torn write) that were dropped.
    pub torn_bytes: u64,
    /// Complete lines awaiting replay that failed their checksum or could not be
    /// decoded; skipped, and copied to `<spool>.corrupt`.
    pub corrupt_lines: u64,
}

/// The next entries to replay, as read by [`Spool::peek`].
#[derive(Debug)]
pub struct SpoolBatch {
    start: u64,
    entries: Vec<LedgerEntry>,
    /// `ends[i]`: the offset just past entry `i`'s line.
    ends: Vec<u64>,
}

impl SpoolBatch {
    /// The entries, oldest first.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An open spool file. One owner at a time: opening takes an exclusive lock that is
/// released when the value is dropped.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    _lock: File,
    /// Bytes of whole lines; every write goes at this offset.
    len: u64,
    /// First byte not acknowledged yet: replay resumes here.
    read_pos: u64,
    /// The offset just past the last entry line; nothing to replay once `read_pos`
    /// reaches it.
    last_entry_end: u64,
    /// Lines before this offset were already read back (by recovery or a peek), and
    /// copied aside if corrupt: they are not copied or counted twice.
    checked_to: u64,
    /// Entries waiting.
    pending: u64,
    compact_bytes: u64,
    recovery: SpoolRecovery,
    corrupt_total: u64,
    /// Entries in the dead-letter file.
    rejected_depth: u64,
}

impl Spool {
    /// Opens (or creates) the spool at `path`, recovering from a crash, with the
    /// [`DEFAULT_COMPACT_BYTES`] threshold.
    pub fn open(path: impl Into<PathBuf>) -> Result<Spool, LedgerError> {
        Self::open_with(path, DEFAULT_COMPACT_BYTES)
    }

    /// Opens (or creates) the spool at `path`, compacting once more than `compact_bytes`
    /// of acknowledged lines outweigh the rest. Creates missing parent directories.
    pub fn open_with(path: impl Into<PathBuf>, compact_bytes: u64) -> Result<Spool, LedgerError> {
        let path = path.into();
        if path.file_name().is_none() {
            return Err(LedgerError::Config("spool path must name a file"));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| LedgerError::io("create directory", dir, e))?;
        }
        let lock_path = sibling(&path, "lock");
        let lock = private_file(&mut OpenOptions::new())
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LedgerError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LedgerError::SpoolLocked { path }),
            Err(TryLockError::Error(e)) => return Err(LedgerError::io("lock", lock_path, e)),
        }
        // A compaction (or dead-letter rewrite) that crashed before its rename: the file
        // itself is intact.
        for tmp in [sibling(&path, "tmp"), sibling(&path, "rejected.tmp")] {
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(LedgerError::io("remove", tmp, e)),
                _ => {}
            }
        }
        let rejected_depth = rejected_entries(&path)?.len() as u64;
        let created = !path.exists();
        let file = private_file(&mut OpenOptions::new())
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LedgerError::io("open", &path, e))?;
        if created {
            sync_dir(&path)?;
        }
        let size = file.metadata().map_err(|e| LedgerError::io("stat", &path, e))?.len();

        // Pass 1: how far replay got (the furthest acknowledgement) and where the whole
        // lines end.
        let mut read_pos = 0;
        let complete = each_line(&file, &path, 0, size, |start, line| {
            if let Line::Ack(through) = classify(line)
                && through <= start
            {
                read_pos = read_pos.max(through);
            }
            Ok(true)
        })?;
        let torn_bytes = size - complete;

        // Pass 2: check what is left to replay.
        let mut pending = 0;
        let mut last_entry_end = read_pos;
        let mut corrupt = Vec::new();
        let mut corrupt_starts = Vec::new();
        each_line(&file, &path, read_pos, complete, |start, line| {
            let valid = match classify(line) {
                Line::Entry(json) => serde_json::from_slice::<LedgerEntry>(json).is_ok(),
                Line::Ack(_) => return Ok(true),
                Line::Corrupt => false,
            };
            if valid {
                pending += 1;
                last_entry_end = start + line.len() as u64 + 1;
            } else {
                corrupt.push(line.to_vec());
                corrupt_starts.push(start);
            }
            Ok(true)
        })?;
        let corrupt_lines = corrupt.len() as u64;
        if torn_bytes > 0 {
            corrupt.push(read_range(&file, &path, complete, size.min(complete + MAX_TORN_COPY))?);
        }

        let mut spool = Spool {
            path,
            file,
            _lock: lock,
            len: complete,
            read_pos,
            last_entry_end,
            checked_to: complete,
            pending,
            compact_bytes,
            recovery: SpoolRecovery { pending, torn_bytes, corrupt_lines },
            corrupt_total: corrupt_lines,
            rejected_depth,
        };
        spool.quarantine(&corrupt);
        if read_pos > 0 || torn_bytes > 0 || corrupt_lines > 0 {
            spool.rewrite(&corrupt_starts)?;
        }
        if torn_bytes > 0 || corrupt_lines > 0 {
            tracing::warn!(
                spool = %spool.path.display(),
                torn_bytes,
                corrupt_lines,
                "ledger spool recovered from damage; the damaged bytes were copied to the .corrupt file"
            );
        }
        Ok(spool)
    }

    /// What opening found on disk.
    pub fn recovery(&self) -> SpoolRecovery {
        self.recovery
    }

    /// The spool file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where entries the sink refused as invalid are kept (`<spool>.rejected`).
    pub fn rejected_path(&self) -> PathBuf {
        sibling(&self.path, "rejected")
    }

    /// Where unreadable lines are copied (`<spool>.corrupt`).
    pub fn corrupt_path(&self) -> PathBuf {
        sibling(&self.path, "corrupt")
    }

    /// Entries waiting to be replayed.
    pub fn depth(&self) -> u64 {
        self.pending
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// The spool file's size in bytes.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Lines skipped as corrupt since opening, those found by the recovery included.
    pub fn corrupt_total(&self) -> u64 {
        self.corrupt_total
    }

    /// Appends `entries` after everything already spooled and syncs them to disk. On
    /// error nothing is appended (a partial write is cut off again).
    pub fn append(&mut self, entries: &[LedgerEntry]) -> Result<(), LedgerError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(entries.len() * 512);
        for e in entries {
            let json = serde_json::to_vec(e)
                .map_err(|source| LedgerError::Encode { request_id: e.request_id.clone(), source })?;
            push_line(&mut buf, ENTRY, &json);
        }
        self.write_at_end(&buf)?;
        self.pending += entries.len() as u64;
        self.last_entry_end = self.len;
        Ok(())
    }

    /// Reads up to `max` of the oldest unacknowledged entries without consuming them.
    /// Lines that fail their checksum are skipped, counted and copied aside.
    pub fn peek(&mut self, max: usize) -> Result<SpoolBatch, LedgerError> {
        let max = max.max(1);
        let mut entries = Vec::new();
        let mut ends = Vec::new();
        let mut corrupt = Vec::new();
        let mut skip_to = self.read_pos;
        let mut examined_to = self.read_pos;
        let checked_to = self.checked_to;
        each_line(&self.file, &self.path, self.read_pos, self.len, |start, line| {
            let end = start + line.len() as u64 + 1;
            examined_to = end;
            let bad = match classify(line) {
                Line::Entry(json) => match serde_json::from_slice::<LedgerEntry>(json) {
                    Ok(entry) => {
                        entries.push(entry);
                        ends.push(end);
                        return Ok(entries.len() < max);
                    }
                    Err(_) => true,
                },
                Line::Ack(_) => false,
                Line::Corrupt => true,
            };
            if bad && start >= checked_to {
                corrupt.push(line.to_vec());
            }
            if entries.is_empty() {
                skip_to = end;
            }
            Ok(true)
        })?;
        if !corrupt.is_empty() {
            let n = corrupt.len() as u64;
            self.quarantine(&corrupt);
            self.corrupt_total += n;
            self.pending = self.pending.saturating_sub(n);
        }
        self.checked_to = self.checked_to.max(examined_to);
        // Acknowledgements and corrupt lines before the first entry need no replay.
        self.read_pos = skip_to;
        if entries.is_empty() && self.read_pos >= self.last_entry_end && self.len > 0 {
            self.truncate()?;
        }
        Ok(SpoolBatch { start: self.read_pos, entries, ends })
    }

    /// Records that the sink stored the first `n` entries of `batch` (which must be the
    /// latest [`Spool::peek`]); they will not be replayed again, even after a crash.
    /// Truncates the file once nothing is left, and compacts it when worthwhile.
    pub fn ack(&mut self, batch: &SpoolBatch, n: usize) -> Result<(), LedgerError> {
        if n == 0 {
            return Ok(());
        }
        let Some(&through) = batch.ends.get(n - 1) else {
            return Err(LedgerError::StaleBatch);
        };
        if batch.start != self.read_pos {
            return Err(LedgerError::StaleBatch);
        }
        self.read_pos = through;
        self.pending = self.pending.saturating_sub(n as u64);
        if through >= self.last_entry_end {
            return self.truncate();
        }
        let mut line = Vec::with_capacity(32);
        push_line(&mut line, ACK, through.to_string().as_bytes());
        self.write_at_end(&line)?;
        if self.read_pos >= self.compact_bytes && self.read_pos >= self.len - self.read_pos {
            // The acknowledgement is durable already; a failed compaction only costs space.
            if let Err(e) = self.rewrite(&[]) {
                tracing::warn!(spool = %self.path.display(), error = %e, "ledger spool compaction failed");
            }
        }
        Ok(())
    }

    /// Appends `entries` to the dead-letter file `<spool>.rejected` and syncs it.
    pub fn dead_letter(&mut self, entries: &[LedgerEntry]) -> Result<(), LedgerError> {
        let mut buf = Vec::new();
        for e in entries {
            let json = serde_json::to_vec(e)
                .map_err(|source| LedgerError::Encode { request_id: e.request_id.clone(), source })?;
            push_line(&mut buf, ENTRY, &json);
        }
        let path = self.rejected_path();
        append_durably(&path, &buf).map_err(|e| LedgerError::io("append to", path, e))?;
        self.rejected_depth += entries.len() as u64;
        Ok(())
    }

    /// Entries in the dead-letter file, waiting for the sink to take them.
    pub fn rejected_depth(&self) -> u64 {
        self.rejected_depth
    }

    /// The dead letters, oldest first (none when the file does not exist).
    pub fn dead_letters(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        rejected_entries(&self.path)
    }

    /// Removes from the dead-letter file every entry whose request id is in `stored`
    /// (the sink took it on a retry); keeps everything else, unreadable lines included.
    /// The rest is written to `<spool>.rejected.tmp`, synced and renamed over the file.
    pub fn drop_dead_letters(&mut self, stored: &HashSet<String>) -> Result<(), LedgerError> {
        let path = self.rejected_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.rejected_depth = 0;
                return Ok(());
            }
            Err(e) => return Err(LedgerError::io("open", path, e)),
        };
        let size = file.metadata().map_err(|e| LedgerError::io("stat", &path, e))?.len();
        let mut kept = Vec::new();
        let mut left = 0;
        each_line(&file, &path, 0, size, |_, line| {
            if let Line::Entry(json) = classify(line)
                && let Ok(entry) = serde_json::from_slice::<LedgerEntry>(json)
            {
                if stored.contains(&entry.request_id) {
                    return Ok(true);
                }
                left += 1;
            }
            kept.extend_from_slice(line);
            kept.push(b'\n');
            Ok(true)
        })?;
        let tmp = sibling(&self.path, "rejected.tmp");
        let written = (|| {
            let mut f = private_file(&mut OpenOptions::new()).write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&kept)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(LedgerError::io("rewrite", path, e));
        }
        sync_dir(&path)?;
        self.rejected_depth = left;
        Ok(())
    }

    /// Every readable entry line of a file in the spool format (a spool, acknowledged
    /// entries included, or a `.rejected` dead-letter file), in file order. Corrupt and
    /// incomplete lines are skipped.
    pub fn read_entries(path: impl AsRef<Path>) -> Result<Vec<LedgerEntry>, LedgerError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| LedgerError::io("open", path, e))?;
        let size = file.metadata().map_err(|e| LedgerError::io("stat", path, e))?.len();
        let mut out = Vec::new();
        each_line(&file, path, 0, size, |_, line| {
            if let Line::Entry(json) = classify(line)
                && let Ok(entry) = serde_json::from_slice(json)
            {
                out.push(entry);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn write_at_end(&mut self, buf: &[u8]) -> Result<(), LedgerError> {
        let mut f = &self.file;
        let written = f.seek(SeekFrom::Start(self.len)).and_then(|_| f.write_all(buf)).and_then(|()| f.sync_data());
        match written {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partial write off so the next append starts on a clean line.
                let _ = self.file.set_len(self.len);
                Err(LedgerError::io("append to", &self.path, e))
            }
        }
    }

    fn truncate(&mut self) -> Result<(), LedgerError> {
        self.file.set_len(0).map_err(|e| LedgerError::io("truncate", &self.path, e))?;
        // The file is empty now whatever the sync says: memory must agree, or the next
        // append would leave a hole of zeros.
        self.len = 0;
        self.read_pos = 0;
        self.last_entry_end = 0;
        self.checked_to = 0;
        self.pending = 0;
        self.file.sync_data().map_err(|e| LedgerError::io("sync", &self.path, e))
    }

    /// Copies the unacknowledged entry lines (minus those starting at an offset in
    /// `skip`, sorted) into a fresh file renamed over the spool.
    fn rewrite(&mut self, skip: &[u64]) -> Result<(), LedgerError> {
        let tmp_path = sibling(&self.path, "tmp");
        let tmp = private_file(&mut OpenOptions::new())
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| LedgerError::io("create", &tmp_path, e))?;
        let copied = self.copy_pending(&tmp, &tmp_path, skip).and_then(|copied| {
            tmp.sync_all().map_err(|e| LedgerError::io("sync", &tmp_path, e))?;
            fs::rename(&tmp_path, &self.path).map_err(|e| LedgerError::io("rename", &tmp_path, e))?;
            sync_dir(&self.path)?;
            Ok(copied)
        });
        match copied {
            Ok((len, count, corrupt)) => {
                self.file = tmp;
                self.len = len;
                self.read_pos = 0;
                self.last_entry_end = len;
                self.checked_to = 0;
                self.pending = count;
                self.corrupt_total += corrupt;
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp_path);
                Err(e)
            }
        }
    }

    /// Returns (bytes written, entries copied, corrupt lines found).
    fn copy_pending(&self, tmp: &File, tmp_path: &Path, skip: &[u64]) -> Result<(u64, u64, u64), LedgerError> {
        let mut out = BufWriter::with_capacity(64 * 1024, tmp);
        let (mut len, mut count) = (0u64, 0u64);
        let mut corrupt = Vec::new();
        let write_err = |e| LedgerError::io("write", tmp_path, e);
        each_line(&self.file, &self.path, self.read_pos, self.len, |start, line| {
            if skip.binary_search(&start).is_ok() {
                return Ok(true);
            }
            match classify(line) {
                Line::Entry(_) => {
                    out.write_all(line).and_then(|()| out.write_all(b"\n")).map_err(write_err)?;
                    len += line.len() as u64 + 1;
                    count += 1;
                }
                Line::Ack(_) => {}
                Line::Corrupt if start >= self.checked_to => corrupt.push(line.to_vec()),
                Line::Corrupt => {}
            }
            Ok(true)
        })?;
        out.flush().map_err(write_err)?;
        self.quarantine(&corrupt);
        Ok((len, count, corrupt.len() as u64))
    }

    /// Copies unreadable bytes aside; never fails the caller (they are unreadable
    /// either way), but says so loudly when it cannot.
    fn quarantine(&self, lines: &[Vec<u8>]) {
        if lines.is_empty() {
            return;
        }
        let path = self.corrupt_path();
        let mut buf = Vec::new();
        for line in lines {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        match append_durably(&path, &buf) {
            Ok(()) => {
                tracing::warn!(lines = lines.len(), path = %path.display(), "ledger spool: corrupt lines copied aside")
            }
            Err(e) => {
                tracing::error!(lines = lines.len(), path = %path.display(), error = %e, "ledger spool: cannot copy corrupt lines aside")
            }
        }
    }
}

/// The dead letters of the spool at `spool_path` (its `<spool>.rejected` file): entries
/// the sink refused as invalid, oldest first, for an operator's listing. None when the
/// file does not exist; unreadable lines are skipped.
///
/// A running writer rewrites the file when the sink takes some of them on a retry; the
/// rewrite is a rename, so a reader sees the file before or after it, never half of it.
pub fn rejected_entries(spool_path: &Path) -> Result<Vec<LedgerEntry>, LedgerError> {
    match Spool::read_entries(sibling(spool_path, "rejected")) {
        Err(LedgerError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

/// One line of the spool, without its newline.
enum Line<'a> {
    Entry(&'a [u8]),
    Ack(u64),
    Corrupt,
}

fn classify(line: &[u8]) -> Line<'_> {
    let (Some(hex), Some(b'\t'), Some(body)) = (line.get(..8), line.get(8), line.get(9..)) else {
        return Line::Corrupt;
    };
    let crc = hex.iter().try_fold(0u32, |acc, &c| Some(acc << 4 | char::from(c).to_digit(16)?));
    if crc != Some(crc32fast::hash(body)) {
        return Line::Corrupt;
    }
    match body {
        [ENTRY, b'\t', json @ ..] => Line::Entry(json),
        [ACK, b'\t', digits @ ..] if !digits.is_empty() => digits
            .iter()
            .try_fold(0u64, |acc, &c| acc.checked_mul(10)?.checked_add(u64::from(char::from(c).to_digit(10)?)))
            .map_or(Line::Corrupt, Line::Ack),
        _ => Line::Corrupt,
    }
}

fn push_line(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind, b'\t']);
    crc.update(payload);
    buf.extend_from_slice(format!("{:08x}\t", crc.finalize()).as_bytes());
    buf.extend_from_slice(&[kind, b'\t']);
    buf.extend_from_slice(payload);
    buf.push(b'\n');
}

/// Calls `f(offset, line)` for each whole line in `[from, to)` of `file` (newline
/// stripped) until it returns `false`; returns the offset just past the last line seen.
/// An incomplete last line is not passed.
fn each_line(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<bool, LedgerError>,
) -> Result<u64, LedgerError> {
    let mut handle = file;
    handle.seek(SeekFrom::Start(from)).map_err(|e| LedgerError::io("seek in", path, e))?;
    let mut reader = BufReader::with_capacity(64 * 1024, handle.take(to.saturating_sub(from)));
    let mut pos = from;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| LedgerError::io("read", path, e))?;
        let Some((b'\n', content)) = line.split_last() else {
            return Ok(pos);
        };
        let start = pos;
        pos += n as u64;
        if !f(start, content)? {
            return Ok(pos);
        }
    }
}

fn read_range(file: &File, path: &Path, from: u64, to: u64) -> Result<Vec<u8>, LedgerError> {
    let mut handle = file;
    let mut buf = Vec::new();
    handle
        .seek(SeekFrom::Start(from))
        .and_then(|_| handle.take(to.saturating_sub(from)).read_to_end(&mut buf))
        .map_err(|e| LedgerError::io("read", path, e))?;
    Ok(buf)
}

/// `<path>.<suffix>`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn append_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let created = !path.exists();
    let mut f = private_file(&mut OpenOptions::new()).create(true).append(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    if created {
        sync_dir(path).map_err(io::Error::other)?;
    }
    Ok(())
}

/// Makes a created or renamed directory entry durable.
fn sync_dir(path: &Path) -> Result<(), LedgerError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| LedgerError::io("sync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tollgate_core::{KeyId, ProjectId, Timestamp};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tollgate-spool-{}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn spool(&self) -> PathBuf {
            self.0.join("ledger.spool")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn entry(i: usize) -> LedgerEntry {
        LedgerEntry::new(format!("req_{i:04}"), KeyId::new("key_1"), ProjectId::new("proj_1"), "gpt-4o")
            .with_at(Timestamp::from_unix_millis(1_772_000_000_000))
            .with_tags(["tab\there", "new\nline"])
    }

    fn entries(range: std::ops::Range<usize>) -> Vec<LedgerEntry> {
        range.map(entry).collect()
    }

    fn ids(es: &[LedgerEntry]) -> Vec<String> {
        es.iter().map(|e| e.request_id.clone()).collect()
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    /// Drains the spool the way the writer does, acknowledging each batch.
    fn replay_all(spool: &mut Spool, batch: usize) -> Vec<LedgerEntry> {
        let mut out = Vec::new();
        loop {
            let b = spool.peek(batch).unwrap();
            if b.is_empty() {
                return out;
            }
            out.extend_from_slice(b.entries());
            spool.ack(&b, b.len()).unwrap();
        }
    }

    #[test]
    fn lines_are_checksummed_json_and_replay_in_order() {
        let dir = TempDir::new();
        let mut spool = Spool::open(dir.spool()).unwrap();
        spool.append(&entries(0..3)).unwrap();
        spool.append(&entries(3..5)).unwrap();
        assert_eq!(spool.depth(), 5);

        let text = fs::read_to_string(dir.spool()).unwrap();
        let first = text.lines().next().unwrap();
        let (crc, body) = first.split_once('\t').unwrap();
        assert_eq!(u32::from_str_radix(crc, 16).unwrap(), crc32fast::hash(body.as_bytes()));
        let json = body.strip_prefix("e\t").unwrap();
        assert_eq!(serde_json::from_str::<LedgerEntry>(json).unwrap(), entry(0));

        assert_eq!(ids(&replay_all(&mut spool, 2)), ids(&entries(0..5)));
        assert_eq!((spool.depth(), spool.file_len()), (0, 0), "a drained spool is truncated");
    }

    #[test]
    fn torn_last_line_is_dropped_and_everything_before_kept() {
        let dir = TempDir::new();
        {
            let mut spool = Spool::open(dir.spool()).unwrap();
            spool.append(&entries(0..3)).unwrap();
        }
        // A crash in the middle of writing the fourth line.
        let mut line = Vec::new();
        push_line(&mut line, ENTRY, &serde_json::to_vec(&entry(3)).unwrap());
        append_raw(&dir.spool(), &line[..line.len() / 2]);

        let mut spool = Spool::open(dir.spool()).unwrap();
        let rec = spool.recovery();
        assert_eq!((rec.pending, rec.corrupt_lines), (3, 0));
        assert_eq!(rec.torn_bytes, (line.len() / 2) as u64);
        assert_eq!(fs::read(spool.corrupt_path()).unwrap(), [&line[..line.len() / 2], b"\n"].concat());
        // The next append starts on a clean line.
        spool.append(&entries(4..5)).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.spool()).unwrap();
        assert_eq!(spool.recovery(), SpoolRecovery { pending: 4, torn_bytes: 0, corrupt_lines: 0 });
        assert_eq!(ids(&replay_all(&mut spool, 10)), ["req_0000", "req_0001", "req_0002", "req_0004"]);
    }

    #[test]
    fn corrupt_lines_are_skipped_counted_and_copied_aside() {
        let dir = TempDir::new();
        {
            let mut spool = Spool::open(dir.spool()).unwrap();
            spool.append(&entries(0..4)).unwrap();
        }
        // Flip one byte inside the second line's JSON, and add a line of garbage and one
        // whose checksum is right but whose JSON is not an entry.
        let mut bytes = fs::read(dir.spool()).unwrap();
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[second + 40] ^= 0x01;
        bytes.extend_from_slice(b"garbage without a checksum\n");
        push_line(&mut bytes, ENTRY, br#"{"not":"an entry"}"#);
        fs::write(dir.spool(), &bytes).unwrap();

        let mut spool = Spool::open(dir.spool()).unwrap();
        assert_eq!(spool.recovery(), SpoolRecovery { pending: 3, torn_bytes: 0, corrupt_lines: 3 });
        assert_eq!(spool.corrupt_total(), 3);
        assert_eq!(fs::read_to_string(spool.corrupt_path()).unwrap().lines().count(), 3);
        assert_eq!(ids(&replay_all(&mut spool, 10)), ["req_0000", "req_0002", "req_0003"]);
    }

    #[test]
    fn corruption_after_append_is_caught_at_replay() {
        let dir = TempDir::new();
        let mut spool = Spool::open(dir.spool()).unwrap();
        spool.append(&entries(0..3)).unwrap();
        // Rot the first line on disk behind the open spool's back.
        let mut bytes = fs::read(dir.spool()).unwrap();
        bytes[3] = b'z';
        fs::write(dir.spool(), &bytes).unwrap();
        assert_eq!(ids(&replay_all(&mut spool, 10)), ["req_0001", "req_0002"]);
        assert_eq!((spool.corrupt_total(), spool.depth()), (1, 0));
    }

    #[test]
    fn acknowledged_progress_survives_a_crash() {
        let dir = TempDir::new();
        {
            let mut spool = Spool::open(dir.spool()).unwrap();
            spool.append(&entries(0..10)).unwrap();
            let b = spool.peek(4).unwrap();
            spool.ack(&b, 4).unwrap();
            // Read but never acknowledged: the crash comes before the sink answered.
            let _ = spool.peek(4).unwrap();
        }
        let mut spool = Spool::open(dir.spool()).unwrap();
        assert_eq!(spool.recovery().pending, 6);
        assert_eq!(ids(&replay_all(&mut spool, 3)), ids(&entries(4..10)));
    }

    #[test]
    fn a_torn_acknowledgement_replays_more_never_less() {
        let dir = TempDir::new();
        {
            let mut spool = Spool::open(dir.spool()).unwrap();
            spool.append(&entries(0..6)).unwrap();
            let b = spool.peek(2).unwrap();
            spool.ack(&b, 2).unwrap();
        }
        let mut ack = Vec::new();
        push_line(&mut ack, ACK, b"999999");
        append_raw(&dir.spool(), &ack[..ack.len() - 3]);
        let mut spool = Spool::open(dir.spool()).unwrap();
        assert_eq!(spool.recovery().pending, 4);
        assert_eq!(ids(&replay_all(&mut spool, 10)), ids(&entries(2..6)));
    }

    #[test]
    fn partial_acks_and_stale_batches() {
        let dir = TempDir::new();
        let mut spool = Spool::open(dir.spool()).unwrap();
        spool.append(&entries(0..5)).unwrap();
        let b = spool.peek(3).unwrap();
        spool.ack(&b, 1).unwrap();
        assert!(matches!(spool.ack(&b, 1), Err(LedgerError::StaleBatch)));
        assert_eq!(spool.depth(), 4);
        assert_eq!(ids(spool.peek(10).unwrap().entries()), ids(&entries(1..5)));
    }

    #[test]
    fn compaction_keeps_the_file_bounded_while_replay_and_appends_interleave() {
        let dir = TempDir::new();
        let mut spool = Spool::open_with(dir.spool(), 4096).unwrap();
        let mut next = 0;
        let mut replayed = Vec::new();
        let mut largest = 0;
        for _ in 0..200 {
            spool.append(&entries(next..next + 3)).unwrap();
            next += 3;
            let b = spool.peek(2).unwrap();
            replayed.extend_from_slice(b.entries());
            spool.ack(&b, b.len()).unwrap();
            largest = largest.max(spool.file_len());
        }
        // 200 unreplayed entries remain; the acknowledged prefix never piles up.
        assert_eq!(spool.depth(), 200);
        let one = {
            let mut l = Vec::new();
            push_line(&mut l, ENTRY, &serde_json::to_vec(&entry(0)).unwrap());
            l.len() as u64
        };
        assert!(largest < 2 * 200 * (one + 40) + 4096, "spool grew to {largest} bytes");
        replayed.extend(replay_all(&mut spool, 7));
        assert_eq!(ids(&replayed), ids(&entries(0..600)));
    }

    #[test]
    fn a_spool_has_one_owner_and_a_crashed_compaction_is_cleaned_up() {
        let dir = TempDir::new();
        let spool = Spool::open(dir.spool()).unwrap();
        assert!(matches!(Spool::open(dir.spool()), Err(LedgerError::SpoolLocked { .. })));
        drop(spool);
        fs::write(sibling(&dir.spool(), "tmp"), b"half a compaction").unwrap();
        let spool = Spool::open(dir.spool()).unwrap();
        assert!(!sibling(&dir.spool(), "tmp").exists());
        assert!(spool.is_empty());
    }

    #[test]
    fn dead_letters_are_readable_spool_lines() {
        let dir = TempDir::new();
        let mut spool = Spool::open(dir.spool()).unwrap();
        spool.dead_letter(&entries(7..9)).unwrap();
        spool.dead_letter(&entries(9..10)).unwrap();
        assert_eq!(ids(&Spool::read_entries(spool.rejected_path()).unwrap()), ids(&entries(7..10)));
        assert!(spool.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn every_spool_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let mut spool = Spool::open(dir.spool()).unwrap();
        spool.append(&entries(0..3)).unwrap();
        spool.dead_letter(&entries(3..4)).unwrap();
        for path in [dir.spool(), sibling(&dir.spool(), "lock"), spool.rejected_path()] {
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
        }
    }
}
