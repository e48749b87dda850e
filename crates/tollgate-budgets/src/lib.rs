//! tollgate-budgets: spend budgets and rate limits for LLM traffic.
//!
//! Owns the definition of a budget ([`Budget`]: a scope, a [`Limit`] in money or tokens,
//! a calendar [`Window`], what happens on breach, and alert thresholds), validated on
//! construction. The enforcement engine (reserve before dispatch, commit the actual cost,
//! all-or-nothing across scopes) and its memory and Redis counter stores build on these
//! types.
//!
//! Does not own: where budgets are stored (the control plane's store), prices
//! (metering) or HTTP.
//!
//! This crate depends only on `tollgate-core`, so other Rust services can embed it.
#![forbid(unsafe_code)]

use std::sync::Arc;
use tollgate_core::{BudgetId, Money, OnBreach, ScopeKind, Timestamp, Window};

/// What a budget caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Spend in nano-dollars.
    Money(Money),
    /// Tokens (input + output).
    Tokens(u64),
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
}

impl Budget {
    /// Builds a validated budget; thresholds are sorted and deduplicated.
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
        if let Limit::Money(m) = limit
            && m.is_negative()
        {
            return Err(BudgetError::NegativeLimit);
        }
        if let Some(&t) = alert_thresholds.iter().find(|&&t| t == 0 || t > 1000) {
            return Err(BudgetError::Threshold(t));
        }
        alert_thresholds.sort_unstable();
        alert_thresholds.dedup();
        Ok(Budget { id, scope, scope_id, limit, window, on_breach, alert_thresholds })
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
