//! tollgate-metering: what a request costs, and the ledger platforms bill from.
//!
//! Owns:
//! - [`Pricing`] (nano-dollars per 1M input, output, cached-input and cache-write
//!   tokens), the exact cost of a [`Usage`], the worst-case cost used for budget
//!   reservations, and the [`PriceTable`] of the catalog's models;
//! - [`PriceCatalog`], the default list prices shipped in `data/prices.json` (versioned,
//!   compiled in, parsed exactly);
//! - [`tokens`]: counting tokens with the model's tokenizer when an upstream reports no
//!   usage, estimating a request body's prompt, and bounding it from above for budget
//!   reservations ([`prompt_token_bound`]);
//! - [`LedgerEntry`], one row per request, with a stable snake_case JSON form;
//! - the [`LedgerSink`] trait, the I/O seam a store, a control-plane client or an
//!   analytics exporter implements elsewhere, plus [`MemorySink`] for tests and embedding;
//! - [`LedgerWriter`], the asynchronous batching writer, and [`Spool`], its append-only
//!   local file for entries the sink could not take yet, with its dead letters (entries
//!   the sink refused, retried; [`rejected_entries`] lists them);
//! - the [`journal`], the ledger log: an [`Intent`] written before dispatch and the settled
//!   entry written before the response ends, so a process crash loses no charge.
//!
//! Does not own: reading usage off the wire (providers), budgets, or any real sink (the
//! store crate and the control-plane client implement [`LedgerSink`]).
//!
//! Invariants:
//! - All money arithmetic is integer (i128 intermediates, checked into i64); a fraction
//!   of a nano-dollar is rounded up, once per request, so totals are never under-charged;
//!   a model without a price has no entry, never a zero one.
//! - No ledger entry is dropped by this crate: once [`LedgerWriter::record`] (or
//!   [`LedgerWriter::settle`]) returned `Ok`, the entry ends at the sink, in the spool,
//!   or — only while the sink refuses it as invalid — in the spool's dead-letter file,
//!   which is offered to the sink again. Entries reach the sink in the order they were
//!   recorded (dead letters and entries recovered from the log excepted).
//! - With a ledger log ([`LedgerConfig::journal_dir`]), a process crash (`kill -9`, OOM,
//!   `panic = "abort"`) loses nothing: every entry is in the log before it is queued, and
//!   every request dispatched upstream has an intent there, recorded at the next start as
//!   `usage_source: "recovered"` if it never settled. A machine crash loses at most the
//!   last fsync interval ([`FsyncPolicy`]). Without a log, a hard crash loses what is
//!   still only in memory: queued (up to `max_delay`) or in a sink write not yet answered.
//!   An abort, a panic or a runtime shutdown is not a hard crash: a drop guard spools what
//!   is in memory.
//! - A sink may see an entry more than once (after a crash, a lost acknowledgement or a
//!   write timeout); sinks are idempotent by `request_id`, so it is stored once.
//! - [`LedgerWriter::record`], [`LedgerWriter::intent`] and [`LedgerWriter::settle`]
//!   never await the sink and never block beyond one short mutex and, with a ledger log,
//!   one `write(2)` (plus an fdatasync under [`FsyncPolicy::Always`]).
#![forbid(unsafe_code)]

mod catalog;
mod entry;
mod error;
pub mod journal;
mod pricing;
mod sink;
mod spool;
pub mod tokens;
mod writer;

pub use catalog::{BUILTIN_PRICES_JSON, CatalogEntry, CatalogError, PriceCatalog, normalize_model_name};
pub use entry::{Attempt, LedgerEntry, UsageSource};
pub use error::{LedgerError, SinkError};
pub use journal::{FsyncPolicy, FsyncPolicyError, Intent, JournalRecovery};
pub use pricing::{PriceTable, Pricing};
pub use sink::{LedgerSink, MemorySink, SinkFuture};
pub use spool::{DEFAULT_COMPACT_BYTES, Spool, SpoolBatch, SpoolRecovery, rejected_entries};
pub use tokens::{PartKind, PartMaxTokens, PromptBoundError, prompt_token_bound};
pub use tollgate_providers::Usage;
pub use writer::{LedgerConfig, LedgerStats, LedgerWriter};
