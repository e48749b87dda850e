//! [`Amount`]: what a request consumes (money and tokens), and the exact integer
//! arithmetic the engine and the stores share for limits and alert thresholds.

use crate::Limit;
use tollgate_core::Money;

/// What a request consumes: money and tokens (input + output).
///
/// Money is never negative in accounting: the engine treats a negative `money` as zero
/// (a refund is not a reservation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Amount {
    /// Cost in nano-dollars.
    pub money: Money,
    /// Tokens, input + output.
    pub tokens: u64,
}

impl Amount {
    /// Nothing.
    pub const ZERO: Amount = Amount { money: Money::ZERO, tokens: 0 };

    /// An amount of money and tokens.
    pub const fn new(money: Money, tokens: u64) -> Self {
        Amount { money, tokens }
    }

    /// Only money.
    pub const fn money(money: Money) -> Self {
        Amount { money, tokens: 0 }
    }

    /// Only tokens.
    pub const fn tokens(tokens: u64) -> Self {
        Amount { money: Money::ZERO, tokens }
    }

    /// Sum that stops at the bounds instead of wrapping.
    pub fn saturating_add(self, other: Amount) -> Amount {
        Amount { money: self.money.saturating_add(other.money), tokens: self.tokens.saturating_add(other.tokens) }
    }

    /// Difference that stops at the bounds (tokens at zero) instead of wrapping.
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount { money: self.money.saturating_sub(other.money), tokens: self.tokens.saturating_sub(other.tokens) }
    }

    /// The amount with negative money raised to zero and tokens capped at `i64::MAX` (the
    /// range every store holds exactly).
    pub(crate) fn normalized(self) -> Amount {
        Amount {
            money: if self.money.is_negative() { Money::ZERO } else { self.money },
            tokens: self.tokens.min(i64::MAX as u64),
        }
    }

    /// The part of this amount a limit measures (money in nano-dollars or tokens).
    pub(crate) fn measured_by(self, limit: Limit) -> i128 {
        match limit {
            Limit::Money(_) => i128::from(self.money.nanos()),
            Limit::Tokens(_) => i128::from(self.tokens),
        }
    }
}

impl Limit {
    /// The cap as an integer in its own unit (nano-dollars or tokens).
    pub(crate) fn value(self) -> i128 {
        match self {
            Limit::Money(m) => i128::from(m.nanos()),
            Limit::Tokens(t) => i128::from(t),
        }
    }

    /// True when `used` is past this limit (strictly above it).
    pub fn is_exceeded_by(self, used: Amount) -> bool {
        used.measured_by(self) > self.value()
    }

    /// What is left of this limit after `used`, in the limit's unit, never below zero.
    pub fn remaining_after(self, used: Amount) -> Limit {
        let left = (self.value() - used.measured_by(self)).max(0);
        match self {
            Limit::Money(_) => Limit::Money(Money::from_nanos(i64::try_from(left).unwrap_or(i64::MAX))),
            Limit::Tokens(_) => Limit::Tokens(u64::try_from(left).unwrap_or(u64::MAX)),
        }
    }

    /// The amount at which a threshold of `per_mille` of this limit is reached, rounded
    /// up (so 80 % of 10 nano-dollars is reached at 8, of 11 at 9), in the limit's unit.
    pub fn threshold(self, per_mille: u16) -> Limit {
        let at = (self.value() * i128::from(per_mille) + 999) / 1000;
        match self {
            Limit::Money(_) => Limit::Money(Money::from_nanos(i64::try_from(at).unwrap_or(i64::MAX))),
            Limit::Tokens(_) => Limit::Tokens(u64::try_from(at).unwrap_or(u64::MAX)),
        }
    }

    /// True when `used` has reached this value (at or above it) and is not zero: an
    /// empty window never alerts.
    pub(crate) fn is_reached_by(self, used: Amount) -> bool {
        let used = used.measured_by(self);
        used > 0 && used >= self.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_round_up_and_never_overflow() {
        assert_eq!(Limit::Money(Money::from_nanos(10)).threshold(800), Limit::Money(Money::from_nanos(8)));
        assert_eq!(Limit::Money(Money::from_nanos(11)).threshold(800), Limit::Money(Money::from_nanos(9)));
        assert_eq!(Limit::Tokens(u64::MAX).threshold(1000), Limit::Tokens(u64::MAX));
        assert_eq!(Limit::Money(Money::MAX).threshold(1000), Limit::Money(Money::MAX));
    }

    #[test]
    fn a_limit_is_exceeded_only_strictly_above_it() {
        let l = Limit::Money(Money::from_nanos(100));
        assert!(!l.is_exceeded_by(Amount::money(Money::from_nanos(100))));
        assert!(l.is_exceeded_by(Amount::money(Money::from_nanos(101))));
        assert_eq!(l.remaining_after(Amount::money(Money::from_nanos(130))), Limit::Money(Money::ZERO));
        let t = Limit::Tokens(5);
        assert!(!t.is_exceeded_by(Amount::new(Money::MAX, 5)), "a token limit ignores money");
    }

    #[test]
    fn normalizing_drops_negative_money() {
        let a = Amount::new(Money::from_nanos(-5), u64::MAX).normalized();
        assert_eq!(a, Amount::new(Money::ZERO, i64::MAX as u64));
    }
}
