//! tollgate-budgets: spend budgets and rate limits for LLM traffic, embeddable in any
//! Rust service.
//!
//! Owns the definition of a budget ([`Budget`]: a scope, a [`Limit`] in money or tokens,
//! a calendar [`Window`], what happens on breach, alert thresholds), validated on
//! construction, and the engine that enforces it: [`Budgets::reserve`] sets the worst-case
//! cost aside on every applicable budget at once, all-or-nothing, before a call is made;
//! [`Reservation::commit`] replaces it with the actual cost afterwards;
//! [`Budgets::reserve_clamped`] lowers a request's output cap to what `clamp` budgets
//! still afford instead of refusing it. Also owns rate
//! limits ([`RateLimiter`]: requests and tokens per minute, concurrent requests).
//!
//! Counters sit behind two traits with one conformance suite: [`CounterStore`] (budgets)
//! and [`RateStore`] (rate limits), implemented by [`MemoryStore`] (one process) and, with
//! the default `redis` feature, [`RedisStore`] (many processes sharing one Redis).
//!
//! Does not own: where budget definitions are stored (the control plane), prices
//! (metering), HTTP. Depends only on `tollgate-core` among tollgate crates.
//!
//! # Invariants
//! - **No silent overshoot.** Concurrent reservations never take a `block` (or `clamp`) budget past its
//!   limit: committed + reserved + requested ≤ limit is checked and applied atomically, in
//!   one process (sharded locks) or across processes (one Lua script). The only way past
//!   it is a commit whose actual cost exceeds its reservation: that is charged in full
//!   (money is never dropped) and the budget then refuses until its window ends.
//! - **All-or-nothing.** A reservation refused by one budget leaves no trace on the others.
//! - **Bounded leaks.** A reservation never committed or released stops counting after
//!   [`BudgetsConfig::reservation_ttl`]; a concurrency slot after
//!   [`RateLimiterConfig::concurrency_ttl`].
//! - **Windows** are calendar-aligned in UTC and start empty; a reservation is committed
//!   into the window it was made in, even after the window rolled over.
//! - **Alerts** fire once per (budget, window, threshold), across every engine sharing a
//!   store. Thresholds are per-mille of the limit; `warn` budgets also alert at 100 %.
//! - Money is integer nano-dollars ([`Money`]) everywhere, including inside Redis.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tollgate_budgets::{Amount, Budget, Budgets, BudgetsConfig, Limit, ReserveError};
//! use tollgate_core::{BudgetId, Money, OnBreach, ScopeKind, Timestamp, Window};

//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let budgets = Budgets::memory(BudgetsConfig::default());
//! // $1.00 a day for one customer; alert at 80 %.
//! let daily = Arc::new(Budget::new(
//!     BudgetId::new("bud_acme"),
//!     ScopeKind::Principal,
//!     "acme:user-42",
//!     Limit::Money(Money::from_usd(1).ok_or("range")?),
//!     Window::Day,
//!     OnBreach::Block,
//!     vec![800],
//! )?);
//! let now = Timestamp::parse_rfc3339("2026-03-01T12:00:00Z")?;
//!
//! // Every budget that applies to the request (key, customer, team, ...).
//! let applicable = [daily];
//!
//! // Before the call: reserve the worst case (60 cents).
//! let worst = Amount::new(Money::parse_usd("0.60")?, 2_000);
//! let reservation = budgets.reserve(&applicable, worst, now).await?;
//! assert_eq!(reservation.tightest_remaining(), Some(Money::parse_usd("0.40")?));
//!
//! // After the call: charge what it actually cost (85 cents: the 80 % alert fires).
//! let outcome = reservation.commit(Amount::new(Money::parse_usd("0.85")?, 1_500)).await?;
//! assert_eq!(outcome.alerts.len(), 1);
//!
//! // The next worst case no longer fits today.
//! match budgets.reserve(&applicable, worst, now).await {
//!     Err(ReserveError::Exceeded(e)) => assert_eq!(e.resets_at, Some(Timestamp::parse_rfc3339("2026-03-02T00:00:00Z")?)),
//!     other => panic!("expected a refusal, got {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod amount;
mod engine;
mod error;
mod memory;
mod rate;
#[cfg(feature = "redis")]
mod redis_store;
pub mod store;

pub use amount::Amount;
pub use engine::{
    Alert, BudgetUsage, BudgetWarning, Budgets, BudgetsConfig, Clamped, CommitOutcome, MAX_CLAMP_RETRIES, Reservation,
};
pub use error::{BoxError, Dimension, Exceeded, RateLimitError, RateLimited, ReserveError, StoreError};
pub use memory::MemoryStore;
pub use rate::{
    ConcurrencySlot, Permit, RateDecision, RateLimiter, RateLimiterConfig, RateLimits, RateRequest, RateStore,
};
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
pub use store::{CounterStore, ReservationId, StoreFuture};

use std::sync::Arc;
use tollgate_core::{BudgetId, Money, OnBreach, ScopeKind, Threshold, Timestamp, Window};

/// What a budget caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Spend in nano-dollars.
    Money(Money),
    /// Tokens (input + output).
    Tokens(u64),
}

impl Limit {
    /// Checks the limit on its own: a money limit must not be negative. The one rule,
    /// used by [`Budget::new`] and by the control plane before it stores a limit.
    pub fn check(self) -> Result<Limit, BudgetError> {
        match self {
            Limit::Money(m) if m.is_negative() => Err(BudgetError::NegativeLimit),
            limit => Ok(limit),
        }
    }
}

/// Why a budget definition is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// A money limit below zero.
    #[error("limit must not be negative")]
    NegativeLimit,
    /// A threshold outside (0, 100 %].
    #[error("alert threshold {0}‰ must be between 1 and 1000 per mille")]
    Threshold(u16),
    /// No scope id.
    #[error("scope_id must not be empty")]
    EmptyScope,
}

/// One budget: a cap on spend or tokens for one scope over one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Id.
    pub id: BudgetId,
    /// The kind of scope.
    pub scope: ScopeKind,
    /// The scope's id (an org, team, project or key id, or a principal).
    pub scope_id: Arc<str>,
    /// The cap.
    pub limit: Limit,
    /// The counting window.
    pub window: Window,
    /// Refuse or only warn when the cap would be exceeded.
    pub on_breach: OnBreach,
    /// Alert thresholds in per-mille of the limit, ascending, deduplicated.
    pub alert_thresholds: Vec<u16>,
    /// Bumped by a manual reset: counters are kept per (budget, epoch), so a new epoch
    /// starts empty wherever the new definition arrives, on memory and Redis alike.
    pub epoch: u32,
    /// A temporary increase of the limit, in the limit's unit, that counts until the
    /// given instant and then lapses by itself.
    pub temporary_increase: Option<(Limit, Timestamp)>,
    /// For a `clamp` budget: the fewest output tokens a request may be clamped to; below
    /// it the request is refused as by `block`. At least 1; ignored by other budgets.
    pub clamp_floor_tokens: u64,
}

impl Budget {
    /// The default [`clamp_floor_tokens`](Budget::clamp_floor_tokens): 16 output tokens.
    pub const DEFAULT_CLAMP_FLOOR_TOKENS: u64 = 16;

    /// Builds a validated budget; thresholds are sorted and deduplicated. The clamp floor
    /// is [`DEFAULT_CLAMP_FLOOR_TOKENS`](Budget::DEFAULT_CLAMP_FLOOR_TOKENS).
    pub fn new(
        id: BudgetId,
        scope: ScopeKind,
        scope_id: impl Into<Arc<str>>,
        limit: Limit,
        window: Window,
        on_breach: OnBreach,
        mut alert_thresholds: Vec<u16>,
    ) -> Result<Self, BudgetError> {
        let scope_id = scope_id.into();
        if scope_id.is_empty() {
            return Err(BudgetError::EmptyScope);
        }
        let limit = limit.check()?;
        // What a threshold may be is decided once, by `tollgate_core::Threshold`.
        if let Some(&t) = alert_thresholds.iter().find(|&&t| Threshold::from_permille(t).is_none()) {
            return Err(BudgetError::Threshold(t));
        }
        alert_thresholds.sort_unstable();
        alert_thresholds.dedup();
        Ok(Budget {
            id,
            scope,
            scope_id,
            limit,
            window,
            on_breach,
            alert_thresholds,
            epoch: 0,
            temporary_increase: None,
            clamp_floor_tokens: Self::DEFAULT_CLAMP_FLOOR_TOKENS,
        })
    }

    /// The budget with its clamp floor set to `floor` output tokens, raised to 1 if 0 (a
    /// request is never forwarded with no room for output).
    #[must_use]
    pub fn with_clamp_floor_tokens(mut self, floor: u64) -> Self {
        self.clamp_floor_tokens = floor.max(1);
        self
    }

    /// The limit in force at `now`: the base limit plus a temporary increase that has
    /// not lapsed (an increase in the other unit is ignored).
    pub fn limit_at(&self, now: Timestamp) -> Limit {
        match (self.limit, self.temporary_increase) {
            (Limit::Money(base), Some((Limit::Money(extra), until))) if now < until => {
                Limit::Money(base.saturating_add(extra))
            }
            (Limit::Tokens(base), Some((Limit::Tokens(extra), until))) if now < until => {
                Limit::Tokens(base.saturating_add(extra))
            }
            (limit, _) => limit,
        }
    }

    /// When the window containing `now` ends and the budget starts empty again; `None`
    /// for a lifetime budget.
    pub fn resets_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.window.end(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: Limit, thresholds: Vec<u16>) -> Result<Budget, BudgetError> {
        Budget::new(
            BudgetId::new("bud_1"),
            ScopeKind::VirtualKey,
            "key_1",
            limit,
            Window::Day,
            OnBreach::Block,
            thresholds,
        )
    }

    #[test]
    fn definitions_are_validated_and_thresholds_normalized() {
        let b = budget(Limit::Money(Money::from_nanos(10)), vec![900, 500, 900]).unwrap();
        assert_eq!(b.alert_thresholds, vec![500, 900]);
        assert_eq!(budget(Limit::Money(Money::from_nanos(-1)), vec![]), Err(BudgetError::NegativeLimit));
        assert_eq!(budget(Limit::Tokens(5), vec![0]), Err(BudgetError::Threshold(0)));
        assert_eq!(budget(Limit::Tokens(5), vec![1001]), Err(BudgetError::Threshold(1001)));
    }

    #[test]
    fn a_daily_budget_resets_at_the_next_utc_midnight() {
        let b = budget(Limit::Tokens(1), vec![]).unwrap();
        let now = Timestamp::parse_rfc3339("2026-11-22T13:00:00Z").unwrap();
        assert_eq!(b.resets_at(now).map(|t| t.to_rfc3339()), Some("2026-11-23T00:00:00Z".to_owned()));
    }
}
