//! The I/O seam of the budget engine: the [`CounterStore`] trait and the batched requests
//! it answers.
//!
//! One method per engine phase, each one atomic and (for a networked store) one round
//! trip: reserve on every budget at once (all-or-nothing), commit, release, read, seed,
//! reset. Marking alerts "fired once per window" is folded into commit so committing
//! stays one round trip. A store knows nothing of budgets' meaning beyond what a request
//! carries (limits, thresholds, deadlines): the engine decides, the store applies exactly.
//!
//! ## Contract every backend keeps (checked by the conformance suite in `tests/it`)
//! - A counter is identified by a [`CounterKey`] (budget id, window kind, window start).
//!   It holds committed spend, the sum of live reservations, and the set of alert
//!   thresholds already fired.
//! - A reservation lives until it is committed or released, or until its `deadline`
//!   (inclusive) passes; after that it no longer counts. It is still remembered until
//!   `purge_at`, so a late commit is charged in full and a repeated commit or release is a
//!   no-op (both are idempotent).
//! - `reserve` checks every slot with a limit before touching any: if one would be
//!   exceeded (`committed + reserved + requested > limit`), nothing changes and the first
//!   failing slot (in request order) is reported.
//! - Times are the caller's: stores never read a clock of their own.

use crate::{Amount, Limit};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tollgate_core::{BudgetId, Timestamp, Window};

/// The future a store method returns. Boxed so the trait stays usable as
/// `Arc<dyn CounterStore>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, crate::StoreError>> + Send + 'a>>;

/// Identifies one reservation across every engine sharing a store.
///
/// The high 64 bits are random per engine instance, the low 64 bits a counter, so two
/// gateways never mint the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub u128);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// One counter: a budget's spend in one window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// The budget.
    pub budget: BudgetId,
    /// Its window kind (part of the key so a budget whose window changes starts afresh).
    pub window: Window,
    /// The start of the window; `None` for [`Window::Total`].
    pub start: Option<Timestamp>,
    /// The budget's reset epoch ([`crate::Budget::epoch`]): a reset starts a new counter.
    pub epoch: u32,
}

impl CounterKey {
    /// The counter of `budget`'s window that contains `at`; `None` only when `at` is so
    /// far out of range that the calendar cannot place it.
    pub fn at(budget: &crate::Budget, at: Timestamp) -> Option<CounterKey> {
        let start = match budget.window {
            Window::Total => None,
            w => Some(w.start(at)?),
        };
        Some(CounterKey { budget: budget.id.clone(), window: budget.window, start, epoch: budget.epoch })
    }
}

/// Committed spend and live reservations of one counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Spend committed in the window.
    pub committed: Amount,
    /// The sum of reservations not yet committed, released or expired.
    pub reserved: Amount,
}

impl Usage {
    /// Committed plus reserved.
    pub fn used(&self) -> Amount {
        self.committed.saturating_add(self.reserved)
    }
}

/// One counter a reservation touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveSlot {
    /// The counter.
    pub key: CounterKey,
    /// The cap to enforce (`block` budgets), or `None` to count without refusing (`warn`).
    pub limit: Option<Limit>,
    /// Until when (in the caller's clock) the store must keep this counter: the window's
    /// end plus how long a reservation made in it may still be committed; `None` to keep
    /// it for ever. A networked store may turn it into a time-to-live from `now`.
    pub keep_until: Option<Timestamp>,
}

/// Reserve `amount` on every slot, all-or-nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// The new reservation's id.
    pub id: ReservationId,
    /// What to reserve on each slot.
    pub amount: Amount,
    /// The caller's clock: reservations with a deadline at or before it are expired.
    pub now: Timestamp,
    /// When this reservation stops counting unless committed or released first.
    pub deadline: Timestamp,
    /// When the store may forget this reservation entirely (after `deadline`).
    pub purge_at: Timestamp,
    /// The counters, in the order refusals are checked and reported.
    pub slots: Vec<ReserveSlot>,
}

/// What a store did with a [`ReserveRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Reserved on every slot; the usage of each slot afterwards, in request order.
    Reserved(Vec<Usage>),
    /// Nothing was reserved anywhere: slot `slot` (index into the request) could not
    /// take it; `usage` is that counter's usage without this request.
    Refused {
        /// Index of the first slot that refused.
        slot: usize,
        /// Its usage before this request.
        usage: Usage,
    },
}

/// An alert threshold to check after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// Per-mille of the limit (800 = 80 %); the name under which it fires once.
    pub per_mille: u16,
    /// The committed amount, in the limit's unit, at which it is reached.
    pub at: Limit,
}

/// One counter a commit settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSlot {
    /// The counter (of the window the reservation was made in).
    pub key: CounterKey,
    /// Thresholds to fire, each at most once per counter, when committed spend reaches
    /// them.
    pub thresholds: Vec<Threshold>,
}

/// Replace a reservation by the actual amount on each of its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The reservation.
    pub id: ReservationId,
    /// Its deadline, as reserved.
    pub deadline: Timestamp,
    /// Its purge time, as reserved.
    pub purge_at: Timestamp,
    /// What to charge, in full, even above the reservation.
    pub actual: Amount,
    /// Every counter of the reservation.
    pub slots: Vec<CommitSlot>,
}

/// What a commit did on one counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSlotOutcome {
    /// False when the reservation was already settled (or purged): nothing was charged.
    pub charged: bool,
    /// Committed spend of the counter afterwards.
    pub committed: Amount,
    /// Thresholds (per-mille) that fired now for the first time in this counter.
    pub fired: Vec<u16>,
}

/// Drop a reservation from its counters without charging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// The reservation.
    pub id: ReservationId,
    /// Its deadline, as reserved.
    pub deadline: Timestamp,
    /// Its purge time, as reserved.
    pub purge_at: Timestamp,
    /// Every counter of the reservation.
    pub keys: Vec<CounterKey>,
}

/// Set a counter's committed spend (rebuilding from the ledger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRequest {
    /// The counter.
    pub key: CounterKey,
    /// The committed spend to set (live reservations are kept).
    pub committed: Amount,
    /// Thresholds the seeded spend has already reached: marked fired, so a restart does
    /// not alert twice. Markers already set are kept.
    pub fired: Vec<u16>,
    /// See [`ReserveSlot::keep_until`].
    pub keep_until: Option<Timestamp>,
    /// The caller's clock (a networked store turns `keep_until` into a time-to-live from
    /// it).
    pub now: Timestamp,
}

/// Empty a counter: committed spend to zero and its alert markers cleared; live
/// reservations still count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRequest {
    /// The counter.
    pub key: CounterKey,
    /// Alert markers to clear (a store may clear all of them).
    pub thresholds: Vec<u16>,
}

/// Where budget counters live. Implemented by [`MemoryStore`](crate::MemoryStore) and
/// (feature `redis`) [`RedisStore`](crate::RedisStore); see the module docs for the
/// contract.
pub trait CounterStore: Send + Sync + 'static {
    /// Reserves on every slot or none, first expiring stale reservations of those
    /// counters.
    fn reserve<'a>(&'a self, req: &'a ReserveRequest) -> StoreFuture<'a, ReserveOutcome>;

    /// Removes the reservation and charges `actual` on every counter still holding it
    /// (live or expired), then marks and reports thresholds newly reached. Outcomes are
    /// in request order.
    fn commit<'a>(&'a self, req: &'a CommitRequest) -> StoreFuture<'a, Vec<CommitSlotOutcome>>;

    /// Removes the reservation without charging. Idempotent.
    fn release<'a>(&'a self, req: &'a ReleaseRequest) -> StoreFuture<'a, ()>;

    /// Best effort, without a caller to await it: used when a
    /// [`Reservation`](crate::Reservation) is dropped unsettled. A store applies it synchronously or
    /// spawns it; if it cannot, the reservation's deadline covers it.
    fn release_detached(self: Arc<Self>, req: ReleaseRequest);

    /// Best effort, without a caller to await it: used when a commit future is dropped
    /// before it completed, so the charge is not lost. Commit is idempotent, so running it
    /// after a commit that did reach the store is harmless.
    fn commit_detached(self: Arc<Self>, req: CommitRequest);

    /// The usage of one counter, expiring stale reservations first.
    fn read<'a>(&'a self, key: &'a CounterKey, now: Timestamp) -> StoreFuture<'a, Usage>;

    /// Sets a counter's committed spend.
    fn seed<'a>(&'a self, req: &'a SeedRequest) -> StoreFuture<'a, ()>;

    /// Empties a counter's committed spend and alert markers.
    fn reset<'a>(&'a self, req: &'a ResetRequest) -> StoreFuture<'a, ()>;
}

impl<S: CounterStore + ?Sized> CounterStore for Arc<S> {
    fn reserve<'a>(&'a self, req: &'a ReserveRequest) -> StoreFuture<'a, ReserveOutcome> {
        (**self).reserve(req)
    }
    fn commit<'a>(&'a self, req: &'a CommitRequest) -> StoreFuture<'a, Vec<CommitSlotOutcome>> {
        (**self).commit(req)
    }
    fn release<'a>(&'a self, req: &'a ReleaseRequest) -> StoreFuture<'a, ()> {
        (**self).release(req)
    }
    fn release_detached(self: Arc<Self>, req: ReleaseRequest) {
        S::release_detached(Arc::clone(&*self), req)
    }
    fn commit_detached(self: Arc<Self>, req: CommitRequest) {
        S::commit_detached(Arc::clone(&*self), req)
    }
    fn read<'a>(&'a self, key: &'a CounterKey, now: Timestamp) -> StoreFuture<'a, Usage> {
        (**self).read(key, now)
    }
    fn seed<'a>(&'a self, req: &'a SeedRequest) -> StoreFuture<'a, ()> {
        (**self).seed(req)
    }
    fn reset<'a>(&'a self, req: &'a ResetRequest) -> StoreFuture<'a, ()> {
        (**self).reset(req)
    }
}

/// Mints ids unique across processes without a random-number crate: a per-instance
/// value from the standard library's randomly keyed hasher (seeded from the OS), mixed
/// with the process id and the clock, plus a counter.
#[derive(Debug)]
pub(crate) struct IdSource {
    instance: u64,
    next: std::sync::atomic::AtomicU64,
}

impl IdSource {
    pub(crate) fn new() -> Self {
        IdSource { instance: random_u64(), next: std::sync::atomic::AtomicU64::new(1) }
    }

    pub(crate) fn next(&self) -> u128 {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (u128::from(self.instance) << 64) | u128::from(n)
    }
}

/// A random-enough 64-bit value (not for secrets).
pub(crate) fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    static SALT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let salt = SALT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos, salt))
}
