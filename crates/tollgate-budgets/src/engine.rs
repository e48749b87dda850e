//! The budget engine: [`Budgets`] turns budget definitions into store requests and store
//! answers into reservations, warnings, refusals and alerts.
//!
//! The engine owns the semantics (which window, which limit, what a warning or an alert
//! is); the [`CounterStore`] owns atomicity. A [`Reservation`] is a handle on money set
//! aside: it must end in [`Reservation::commit`] or [`Reservation::release`], and when it
//! is dropped instead it is released on a best-effort basis, with its deadline as the
//! backstop.

use crate::memory::MemoryStore;
use crate::store::{
    CommitRequest, CommitSlot, CounterKey, CounterStore, IdSource, ReleaseRequest, ReservationId, ReserveOutcome,
    ReserveRequest, ReserveSlot, ResetRequest, SeedRequest, Threshold,
};
use crate::{Amount, Budget, Exceeded, Limit, ReserveError, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{BudgetId, Money, OnBreach, ScopeKind, Timestamp, Window};

/// How long past a window's end its counter is kept, on top of what reservations made in
/// it need: room for clock skew between engines and for slow commits.
const KEEP_MARGIN_MS: i64 = 60 * 60 * 1000;

/// Engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetsConfig {
    /// How long a reservation counts without being committed or released. Bound it by
    /// the longest a request can take (e.g. 2x the upstream timeout): after it, money
    /// held by a crashed process is available again. Clamped to at least 1 ms.
    pub reservation_ttl: Duration,
}

impl BudgetsConfig {
    /// The default TTL: 10 minutes, twice a 300 s upstream timeout.
    pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(600);

    /// Settings with the given reservation TTL.
    pub const fn new(reservation_ttl: Duration) -> Self {
        BudgetsConfig { reservation_ttl }
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.reservation_ttl.as_millis()).unwrap_or(i64::MAX / 4).clamp(1, i64::MAX / 4)
    }
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        BudgetsConfig { reservation_ttl: Self::DEFAULT_RESERVATION_TTL }
    }
}

struct Inner {
    store: Arc<dyn CounterStore>,
    ttl_ms: i64,
    ids: IdSource,
}

/// The budget engine. Cheap to clone (an `Arc` inside); share one per process.
#[derive(Clone)]
pub struct Budgets {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets").field("reservation_ttl_ms", &self.inner.ttl_ms).finish_non_exhaustive()
    }
}

/// How many times [`Budgets::reserve_clamped`] lowers the cap again after a refusal
/// before it gives up with the last refusal.
pub const MAX_CLAMP_RETRIES: u32 = 4;

/// The output cap a `clamp` budget lowered a request to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clamped {
    /// The largest number of output tokens the budgets afford; forward the request with
    /// its output cap set to this.
    pub cap: u64,
    /// The clamp budget that lowered the cap (the last one, when several did).
    pub budget: Arc<Budget>,
}

/// A `warn` budget that this request takes past its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetWarning {
    /// The budget's id.
    pub budget_id: BudgetId,
    /// Its scope kind.
    pub scope: ScopeKind,
    /// Its scope id.
    pub scope_id: Arc<str>,
    /// Its limit.
    pub limit: Limit,
    /// Committed plus reserved in the window, this request included.
    pub used: Amount,
}

/// An alert threshold reached for the first time in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The budget.
    pub budget: Arc<Budget>,
    /// The window's start; `None` for a lifetime budget.
    pub window_start: Option<Timestamp>,
    /// The threshold, per-mille of the limit (1000 = the limit itself).
    pub threshold: u16,
    /// Committed spend in the window after the commit that reached it.
    pub committed: Amount,
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitOutcome {
    /// Thresholds newly reached. Each (budget, window, threshold) is reported once per
    /// window across every engine sharing the store.
    pub alerts: Vec<Alert>,
    /// False when the store had already settled this reservation (a repeated commit), so
    /// nothing was charged this time.
    pub charged: bool,
}

/// The state of one budget in the window containing a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUsage {
    /// The budget's limit.
    pub limit: Limit,
    /// Spend committed in the window.
    pub committed: Amount,
    /// Live reservations in the window.
    pub reserved: Amount,
    /// The window's start; `None` for a lifetime budget.
    pub window_start: Option<Timestamp>,
    /// The window's end; `None` for a lifetime budget.
    pub resets_at: Option<Timestamp>,
}

impl BudgetUsage {
    /// Committed plus reserved.
    pub fn used(&self) -> Amount {
        self.committed.saturating_add(self.reserved)
    }

    /// What is left of the limit, in its unit, never below zero.
    pub fn remaining(&self) -> Limit {
        self.limit.remaining_after(self.used())
    }
}

impl Budgets {
    /// An engine over any counter store.
    pub fn new(store: impl CounterStore, config: BudgetsConfig) -> Self {
        Self::from_arc(Arc::new(store), config)
    }

    /// An engine over a shared, type-erased store.
    pub fn from_arc(store: Arc<dyn CounterStore>, config: BudgetsConfig) -> Self {
        Budgets { inner: Arc::new(Inner { store, ttl_ms: config.ttl_ms(), ids: IdSource::new() }) }
    }

    /// An engine over a fresh in-process [`MemoryStore`].
    pub fn memory(config: BudgetsConfig) -> Self {
        Self::new(MemoryStore::new(), config)
    }

    /// The reservation TTL in effect.
    pub fn reservation_ttl(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.inner.ttl_ms).unwrap_or(0))
    }

    /// Reserves `amount` on every budget at once.
    ///
    /// Every budget is charged (a budget listed twice, once). If a `block` budget would go
    /// past its limit (committed + reserved + requested > limit, in the limit's unit) the
    /// call fails with [`ReserveError::Exceeded`] naming the first such budget, and nothing
    /// is reserved anywhere. `warn` budgets never refuse; the ones this request takes past
    /// their limit are listed in [`Reservation::warnings`]. Negative money counts as zero.
    ///
    /// One store call (one round trip on Redis). If this future is dropped while that
    /// call is in flight, a reservation may have been made with no handle to settle it:
    /// it stops counting after the reservation TTL.
    pub async fn reserve(
        &self,
        budgets: &[Arc<Budget>],
        amount: Amount,
        now: Timestamp,
    ) -> Result<Reservation, ReserveError> {
        let amount = amount.normalized();
        let ttl = self.inner.ttl_ms;
        let deadline = now.plus_millis(ttl);
        let purge_at = deadline.plus_millis(ttl);
        let mut held: Vec<Held> = Vec::with_capacity(budgets.len());
        let mut slots = Vec::with_capacity(budgets.len());
        for budget in budgets {
            let key = counter_key(budget, now)?;
            if slots.iter().any(|s: &ReserveSlot| s.key == key) {
                continue;
            }
            // A clamp budget is enforced exactly like a block budget: the clamping happens
            // before, in `reserve_clamped`, by asking for less.
            let limit = matches!(budget.on_breach, OnBreach::Block | OnBreach::Clamp).then_some(budget.limit_at(now));
            let keep_until = budget.window.end(now).map(|end| end.plus_millis(2 * ttl + KEEP_MARGIN_MS));
            held.push(Held { budget: Arc::clone(budget), key: key.clone() });
            slots.push(ReserveSlot { key, limit, keep_until });
        }
        let id = ReservationId(self.inner.ids.next());
        let mut reservation = Reservation {
            inner: Arc::clone(&self.inner),
            id,
            deadline,
            purge_at,
            held: Vec::new(),
            warnings: Vec::new(),
            tightest: None,
        };
        if slots.is_empty() {
            return Ok(reservation);
        }
        let req = ReserveRequest { id, amount, now, deadline, purge_at, slots };
        match self.inner.store.reserve(&req).await? {
            ReserveOutcome::Refused { slot, usage } => {
                let budget = held.get(slot).map(|h| Arc::clone(&h.budget)).ok_or(StoreError::Protocol {
                    backend: "engine",
                    detail: format!("refusal names slot {slot} of {}", held.len()),
                })?;
                Err(ReserveError::Exceeded(Box::new(Exceeded {
                    limit: budget.limit_at(now),
                    used: usage.used(),
                    requested: amount,
                    resets_at: budget.resets_at(now),
                    budget,
                })))
            }
            ReserveOutcome::Reserved(usages) => {
                if usages.len() != held.len() {
                    // The store did reserve; hand back a handle so Drop releases it.
                    reservation.held = held;
                    return Err(StoreError::Protocol {
                        backend: "engine",
                        detail: format!("{} usages for {} slots", usages.len(), reservation.held.len()),
                    }
                    .into());
                }
                for (h, usage) in held.iter().zip(&usages) {
                    let b = &h.budget;
                    let used = usage.used();
                    let limit = b.limit_at(now);
                    if b.on_breach == OnBreach::Warn && limit.is_exceeded_by(used) {
                        reservation.warnings.push(BudgetWarning {
                            budget_id: b.id.clone(),
                            scope: b.scope,
                            scope_id: Arc::clone(&b.scope_id),
                            limit,
                            used,
                        });
                    }
                    if let Limit::Money(left) = limit.remaining_after(used) {
                        reservation.tightest = Some(reservation.tightest.map_or(left, |t: Money| t.min(left)));
                    }
                }
                reservation.held = held;
                Ok(reservation)
            }
        }
    }

    /// Reserves what a request with `max_output` output tokens costs, lowering its output
    /// cap when a `clamp` budget cannot take the worst case.
    ///
    /// `amount_for(n)` is the reservation for the request with at most `n` output tokens
    /// (input included); it must not decrease as `n` grows. First `amount_for(max_output)`
    /// is reserved as by [`reserve`](Budgets::reserve). When a `clamp` budget refuses, the
    /// largest `n` below the current cap whose amount fits in that budget's room (limit −
    /// committed − reserved, in the limit's unit, as the refusal saw it) is found by
    /// bisection and reserved instead; another clamp budget or a concurrent request may
    /// refuse again, so this repeats, the cap only going down, at most
    /// [`MAX_CLAMP_RETRIES`] times. The final reservation is one atomic store call like
    /// any other, so a clamp budget never goes past its limit.
    ///
    /// Returns the reservation and, when the cap was lowered, the [`Clamped`] cap and the
    /// clamp budget that lowered it last. Fails with [`ReserveError::Exceeded`] when a
    /// `block` budget refuses (final), when the cap would fall below the floor
    /// ([`Budget::clamp_floor_tokens`], the highest among the clamp budgets that lowered
    /// it) or not even the input fits, or when the retries run out (the last refusal).
    pub async fn reserve_clamped(
        &self,
        budgets: &[Arc<Budget>],
        amount_for: &(dyn Fn(u64) -> Amount + Sync),
        max_output: u64,
        now: Timestamp,
    ) -> Result<(Reservation, Option<Clamped>), ReserveError> {
        let mut cap = max_output;
        let mut floor = 0;
        let mut clamped_by: Option<Arc<Budget>> = None;
        let mut attempts = 0;
        loop {
            let refusal = match self.reserve(budgets, amount_for(cap), now).await {
                Ok(reservation) => {
                    let clamped = clamped_by.map(|budget| Clamped { cap, budget });
                    return Ok((reservation, clamped));
                }
                Err(ReserveError::Exceeded(e)) if e.budget.on_breach == OnBreach::Clamp => e,
                Err(e) => return Err(e),
            };
            if attempts == MAX_CLAMP_RETRIES {
                return Err(ReserveError::Exceeded(refusal));
            }
            attempts += 1;
            floor = floor.max(refusal.budget.clamp_floor_tokens);
            let room = refusal.limit.value() - refusal.used.measured_by(refusal.limit);
            let fits = |n: u64| amount_for(n).normalized().measured_by(refusal.limit) <= room;
            match largest_fitting(cap, &fits) {
                Some(n) if n >= floor => {
                    cap = n;
                    clamped_by = Some(Arc::clone(&refusal.budget));
                }
                _ => return Err(ReserveError::Exceeded(refusal)),
            }
        }
    }

    /// Committed spend and live reservations of `budget` in the window containing `now`.
    pub async fn usage(&self, budget: &Budget, now: Timestamp) -> Result<BudgetUsage, StoreError> {
        let key = counter_key(budget, now)?;
        let usage = self.inner.store.read(&key, now).await?;
        Ok(BudgetUsage {
            limit: budget.limit_at(now),
            committed: usage.committed,
            reserved: usage.reserved,
            window_start: key.start,
            resets_at: budget.resets_at(now),
        })
    }

    /// Sets the committed spend of one of `budget`'s windows, e.g. rebuilt from the
    /// ledger after a restart. `window_start` is any instant inside the window (its start
    /// is computed); it is ignored for a lifetime budget and required otherwise. Live
    /// reservations are kept. Thresholds the seeded spend has already reached are marked
    /// as fired, so a restart does not alert twice.
    pub async fn seed(
        &self,
        budget: &Budget,
        window_start: Option<Timestamp>,
        spent: Amount,
    ) -> Result<(), StoreError> {
        let at = match (budget.window, window_start) {
            (Window::Total, _) => Timestamp::from_unix_millis(0),
            (_, Some(at)) => at,
            (_, None) => return Err(StoreError::Invalid { reason: "seeding a windowed budget needs a window start" }),
        };
        let key = counter_key(budget, at)?;
        let committed = spent.normalized();
        let fired = thresholds(budget, at).filter(|t| t.at.is_reached_by(committed)).map(|t| t.per_mille).collect();
        let keep_until = budget.window.end(at).map(|end| end.plus_millis(2 * self.inner.ttl_ms + KEEP_MARGIN_MS));
        let req = SeedRequest { key, committed, fired, keep_until, now: Timestamp::now() };
        self.inner.store.seed(&req).await
    }

    /// Empties the window of `budget` containing `now`: committed spend back to zero and
    /// its alerts ready to fire again. Reservations in flight still count and commit into
    /// it.
    pub async fn reset(&self, budget: &Budget, now: Timestamp) -> Result<(), StoreError> {
        let key = counter_key(budget, now)?;
        let thresholds = thresholds(budget, now).map(|t| t.per_mille).collect();
        self.inner.store.reset(&ResetRequest { key, thresholds }).await
    }
}

/// The largest `n < below` with `fits(n)`, for a `fits` that holds up to some point and
/// not after it; `None` when not even `fits(0)`.
fn largest_fitting(below: u64, fits: &dyn Fn(u64) -> bool) -> Option<u64> {
    if below == 0 || !fits(0) {
        return None;
    }
    // Invariant: fits(lo), and nothing at or above `hi` is known to fit.
    let (mut lo, mut hi) = (0u64, below);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// The thresholds of a budget: its own, plus 100 % for a `warn` budget, of the limit in
/// force at `at`.
fn thresholds(budget: &Budget, at: Timestamp) -> impl Iterator<Item = Threshold> + '_ {
    let limit = budget.limit_at(at);
    let full = (budget.on_breach == OnBreach::Warn && !budget.alert_thresholds.contains(&1000)).then_some(1000);
    budget
        .alert_thresholds
        .iter()
        .copied()
        .chain(full)
        .map(move |per_mille| Threshold { per_mille, at: limit.threshold(per_mille) })
}

fn counter_key(budget: &Budget, at: Timestamp) -> Result<CounterKey, StoreError> {
    CounterKey::at(budget, at).ok_or(StoreError::Invalid { reason: "instant outside the calendar's range" })
}

struct Held {
    budget: Arc<Budget>,
    key: CounterKey,
}

/// Money and tokens set aside on every budget of a request.
///
/// End it with [`commit`](Reservation::commit) (charge the actual amount) or
/// [`release`](Reservation::release) (charge nothing). Dropped without either, it is
/// released: synchronously on the memory store, on a spawned task for Redis when a Tokio
/// runtime is present, and in any case it stops counting after the reservation TTL.
pub struct Reservation {
    inner: Arc<Inner>,
    id: ReservationId,
    deadline: Timestamp,
    purge_at: Timestamp,
    held: Vec<Held>,
    warnings: Vec<BudgetWarning>,
    tightest: Option<Money>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("id", &self.id)
            .field("deadline", &self.deadline)
            .field("budgets", &self.held.iter().map(|h| &h.budget.id).collect::<Vec<_>>())
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// Replaces the reservation by `actual` on every budget, in the windows it was
    /// reserved in. `actual` may exceed the reservation: it is charged in full (money is
    /// never lost), and a `block` budget pushed past its limit then refuses further
    /// reservations until its window ends.
    ///
    /// The charge happens even if the returned future is dropped before it completes
    /// (it is then finished in the background; commit is idempotent).
    pub fn commit(
        mut self,
        actual: Amount,
    ) -> impl Future<Output = Result<CommitOutcome, StoreError>> + Send + 'static {
        let held = std::mem::take(&mut self.held);
        // Thresholds are of the limit in force when the reservation was made.
        let made_at = self.deadline.plus_millis(-self.inner.ttl_ms);
        let req = CommitRequest {
            id: self.id,
            deadline: self.deadline,
            purge_at: self.purge_at,
            actual: actual.normalized(),
            slots: held
                .iter()
                .map(|h| CommitSlot { key: h.key.clone(), thresholds: thresholds(&h.budget, made_at).collect() })
                .collect(),
        };
        let mut pending = PendingCommit { store: Arc::clone(&self.inner.store), req: Some(req) };
        async move {
            let Some(req) = pending.req.as_ref() else { return Ok(CommitOutcome::default()) };
            if req.slots.is_empty() {
                pending.done();
                return Ok(CommitOutcome { alerts: Vec::new(), charged: true });
            }
            let result = pending.store.commit(req).await;
            pending.done();
            let outcomes = result?;
            let mut out = CommitOutcome { alerts: Vec::new(), charged: false };
            for (h, o) in held.iter().zip(outcomes) {
                out.charged |= o.charged;
                for threshold in o.fired {
                    out.alerts.push(Alert {
                        budget: Arc::clone(&h.budget),
                        window_start: h.key.start,
                        threshold,
                        committed: o.committed,
                    });
                }
            }
            Ok(out)
        }
    }

    /// Gives the reservation back without charging anything.
    pub async fn release(mut self) -> Result<(), StoreError> {
        match self.release_request() {
            Some(req) => self.inner.store.release(&req).await,
            None => Ok(()),
        }
    }

    /// The `warn` budgets this request takes past their limit (scope, scope id, budget
    /// id): the gateway names them in a response header.
    pub fn warnings(&self) -> &[BudgetWarning] {
        &self.warnings
    }

    /// The smallest money left across the request's money budgets (`block` and `warn`)
    /// after this reservation, never below zero; `None` without money budgets.
    pub fn tightest_remaining(&self) -> Option<Money> {
        self.tightest
    }

    /// The reservation's id in the store.
    pub fn id(&self) -> ReservationId {
        self.id
    }

    /// When the reservation stops counting if neither committed nor released.
    pub fn expires_at(&self) -> Timestamp {
        self.deadline
    }

    fn release_request(&mut self) -> Option<ReleaseRequest> {
        if self.held.is_empty() {
            return None;
        }
        let keys = std::mem::take(&mut self.held).into_iter().map(|h| h.key).collect();
        Some(ReleaseRequest { id: self.id, deadline: self.deadline, purge_at: self.purge_at, keys })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(req) = self.release_request() {
            Arc::clone(&self.inner.store).release_detached(req);
        }
    }
}

/// A commit that has not completed yet; dropping it hands the commit to the store to
/// finish in the background.
struct PendingCommit {
    store: Arc<dyn CounterStore>,
    req: Option<CommitRequest>,
}

impl PendingCommit {
    /// The store answered (or there was nothing to do): no background commit needed.
    fn done(&mut self) {
        self.req = None;
    }
}

impl Drop for PendingCommit {
    fn drop(&mut self) {
        if let Some(req) = self.req.take()
            && !req.slots.is_empty()
        {
            Arc::clone(&self.store).commit_detached(req);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn handles_and_futures_are_send() {
        let engine = Budgets::memory(BudgetsConfig::default());
        let fut = engine.reserve(&[], Amount::ZERO, Timestamp::from_unix_millis(0));
        assert_send(&fut);
        let usage_of = |b: &Budget| {
            let fut = engine.usage(b, Timestamp::from_unix_millis(0));
            assert_send(&fut);
        };
        let _ = usage_of;
        fn reservation_is_send_and_sync(r: Reservation) -> impl Send + Sync {
            r
        }
        let _ = reservation_is_send_and_sync;
        fn permit_is_send_and_sync(p: crate::Permit) -> impl Send + Sync {
            p
        }
        let _ = permit_is_send_and_sync;
        fn acquire_is_send(l: &crate::RateLimiter, limits: &crate::RateLimits) -> impl Send {
            l.acquire("k", limits, 0, Timestamp::from_unix_millis(0))
        }
        let _ = acquire_is_send;
    }

    #[test]
    fn ttl_is_clamped_to_a_positive_bound() {
        assert_eq!(BudgetsConfig::new(Duration::ZERO).ttl_ms(), 1);
        assert_eq!(BudgetsConfig::new(Duration::MAX).ttl_ms(), i64::MAX / 4);
        assert_eq!(BudgetsConfig::default().ttl_ms(), 600_000);
    }
}
