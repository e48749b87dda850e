//! tollgate-store: the control plane's database, through sea-orm, on SQLite (the
//! default, one file) or PostgreSQL.
//!
//! Owns: the sea-orm entities of the schema defined in `tollgate-migrations`, the
//! conversion between table rows and the plain records of this crate, and the
//! repository operations of [`Store`]. [`Store::connect`] runs pending migrations.
//! Also the ledger: `Store` implements [`tollgate_metering::LedgerSink`], and
//! [`Store::ledger_spend`] sums what one scope spent over a time range, so budget
//! counters can be rebuilt from the ledger after a restart; [`Store::usage_totals`],
//! [`Store::usage_by`] and [`Store::ledger_page`] report usage from it.
//!
//! Does not own: ids, secrets and hashing (callers pass ids, hashes and ciphertexts in;
//! provider keys arrive already encrypted), validation and policy, audit hash
//! computation, or anything about serving requests. The data plane never depends on
//! this crate; it receives [`SnapshotData`] through the control plane.
//!
//! Invariants:
//! - Every write that changes configuration bumps `meta.revision` by exactly one in the
//!   same transaction and returns the new revision; revisions are committed in order.
//!   Audit appends and ledger writes do not bump it.
//! - [`Store::append_audit_chained`] reads the chain's newest hash and inserts the next
//!   event in one transaction under the chain's lock, so concurrent appenders (in one
//!   process or several) never fork the chain; inside a [`StoreTxn`] the event commits
//!   or rolls back with the writes it records.
//! - A ledger entry is stored at most once per `request_id` and never changed; writing
//!   it again is a success that stores nothing.
//! - [`Store::snapshot`] reads the revision and every row in one transaction, so the rows
//!   are exactly those of that revision.
//! - A budget's `epoch` only ever moves through [`Store::reset_budget`], by one, in SQL;
//!   [`Store::update_budget`] never writes it, so an update racing a reset cannot undo it.
//! - A broken uniqueness rule is [`StoreError::Conflict`] on every backend.
//! - Models and aliases never share a name, and an alias always names a model: both are
//!   checked inside the writing transaction.
//! - Timestamps are stored as i64 unix milliseconds, money as i64 nano-dollars.
//! - [`Store::reencrypt_provider_credentials`] rewrites every provider ciphertext and
//!   the recorded master key id in one transaction: all rows or none.
#![forbid(unsafe_code)]

mod convert;
mod entity;
mod error;
mod records;
mod repo;

pub use error::StoreError;
pub use records::{
    AdminTokenRecord, AliasRecord, AuditFilter, AuditRecord, BudgetFilter, BudgetRecord, DeploymentPricing,
    DeploymentRecord, GraceSecretRecord, KeyFilter, KeyRecord, ModelRecord, OrgRecord, PrincipalFilter,
    PrincipalSummary, ProjectRecord, ProviderRecord, RoutingPolicyRecord, SnapshotData, TeamRecord,
};
pub use repo::usage::{LedgerCursor, UsageFilter, UsageGroup, UsageKey, UsageRow, UsageTotals};
pub use repo::{Store, StoreTxn};
