//! tollgate-metering: what a request costs, and the ledger platforms bill from.
//!
//! Owns:
//! - [`Pricing`] (nano-dollars per 1M input, output, cached-input and cache-write
//!   tokens), the exact cost of a [`Usage`], the worst-case cost used for budget
//!   reservations, and the [`PriceTable`] of the catalog's models;
//! - [`PriceCatalog`], the default list prices shipped in `data/prices.json` (versioned,
//!   compiled in, parsed exactly);
//! - [`tokens`]: counting tokens with the model's tokenizer when an upstream reports no
//!   usage, and estimating a request body's prompt;
//! - [`LedgerEntry`], one row per request, with a stable snake_case JSON form;
//! - the [`LedgerSink`] trait, the I/O seam a store, a control-plane client or an
//!   analytics exporter implements elsewhere, plus [`MemorySink`] for tests and embedding;
//! - [`LedgerWriter`], the asynchronous batching writer, and [`Spool`], its append-only
//!   local file for entries the sink could not take yet.
//!
//! Does not own: reading usage off the wire (providers), budgets, or any real sink (the
//! store crate and the control-plane client implement [`LedgerSink`]).
//!
//! Invariants:
//! - All money arithmetic is integer (i128 intermediates, checked into i64); a fraction
//!   of a nano-dollar is rounded up, once per request, so totals are never under-charged;
//!   a model without a price has no entry, never a zero one.
//! - No ledger entry is dropped by this crate: once [`LedgerWriter::record`] returned
//!   `Ok`, the entry ends at the sink, in the spool, or — only if the sink refused it as
//!   invalid — in the spool's dead-letter file. Entries reach the sink in the order they
//!   were recorded. The one window of loss is a hard crash (power cut, `kill -9`, OOM)
//!   while an entry is still only in memory: queued (up to `max_delay`, longer while one
//!   sink write is pending) or in a sink write not yet answered. An abort, a panic or a
//!   runtime shutdown is not a hard crash: a drop guard spools what is in memory.
//! - A sink may see an entry more than once (after a crash, a lost acknowledgement or a
//!   write timeout); sinks are idempotent by `request_id`, so it is stored once.
//! - [`LedgerWriter::record`] never awaits the sink, never touches the disk, and never
//!   blocks beyond one short mutex.
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
pub use tollgate_providers::Usage;
pub use writer::{LedgerConfig, LedgerStats, LedgerWriter};
