//! Money as integer nano-dollars.

use std::fmt;
use std::str::FromStr;

/// Nano-dollars per US dollar.
const NANOS_PER_USD: i64 = 1_000_000_000;

/// An amount of US dollars, held exactly as an integer count of nano-dollars (1e-9 USD).
///
/// There is no floating point anywhere in accounting: amounts are parsed from decimal
/// text, added with checked arithmetic and printed back as decimal text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Why a text could not be read as money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a decimal number.
    #[error("not a decimal amount: {0:?}")]
    Syntax(String),
    /// More than nine decimal places: not representable in nano-dollars.
    #[error("more than 9 decimal places: {0:?}")]
    TooPrecise(String),
    /// Beyond what i64 nano-dollars can hold (about 9.2 billion USD).
    #[error("amount out of range: {0:?}")]
    OutOfRange(String),
    /// A negative amount where only non-negative ones make sense.
    #[error("amount must not be negative: {0:?}")]
    Negative(String),
}

impl Money {
    /// Zero dollars.
    pub const ZERO: Money = Money(0);
    /// The largest representable amount.
    pub const MAX: Money = Money(i64::MAX);

    /// Builds an amount from nano-dollars.
    pub const fn from_nanos(nanos: i64) -> Self {
        Money(nanos)
    }

    /// Builds an amount from whole dollars, `None` on overflow.
    pub const fn from_usd(usd: i64) -> Option<Self> {
        match usd.checked_mul(NANOS_PER_USD) {
            Some(n) => Some(Money(n)),
            None => None,
        }
    }

    /// The amount in nano-dollars.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Checked addition.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// Checked subtraction.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// Addition that stops at the bounds instead of wrapping.
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// Subtraction that stops at the bounds instead of wrapping.
    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }

    /// True when the amount is below zero.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Parses a decimal USD amount (`"500"`, `"500.00"`, `"0.000000001"`) exactly.
    /// Negative amounts are accepted here; use [`Money::parse_non_negative`] for limits
    /// and prices.
    pub fn parse_usd(text: &str) -> Result<Money, MoneyError> {
        let t = text.trim();
        let (neg, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        let syntax = || MoneyError::Syntax(text.to_owned());
        if whole.is_empty() && frac.is_empty() {
            return Err(syntax());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        // Trailing zeros beyond nine places carry no value ("1.0000000000" is fine).
        let frac = frac.trim_end_matches('0');
        if frac.len() > 9 {
            return Err(MoneyError::TooPrecise(text.to_owned()));
        }
        let range = || MoneyError::OutOfRange(text.to_owned());
        let whole_nanos = if whole.is_empty() {
            0i64
        } else {
            whole.parse::<i64>().map_err(|_| range())?.checked_mul(NANOS_PER_USD).ok_or_else(range)?
        };
        let mut frac_nanos = 0i64;
        for (i, b) in frac.bytes().enumerate() {
            frac_nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
        }
        let total = whole_nanos.checked_add(frac_nanos).ok_or_else(range)?;
        Ok(Money(if neg { -total } else { total }))
    }

    /// Like [`Money::parse_usd`] but refuses negative amounts.
    pub fn parse_non_negative(text: &str) -> Result<Money, MoneyError> {
        let m = Money::parse_usd(text)?;
        if m.is_negative() {
            return Err(MoneyError::Negative(text.to_owned()));
        }
        Ok(m)
    }

    /// Reads a JSON number as its shortest decimal text, then parses that exactly, so a
    /// caller who wrote `0.1` gets exactly 100,000,000 nano-dollars.
    pub fn from_json_f64(value: f64) -> Result<Money, MoneyError> {
        if !value.is_finite() {
            return Err(MoneyError::Syntax(value.to_string()));
        }
        Money::parse_usd(&format!("{value}"))
    }
}

impl fmt::Display for Money {
    /// USD with at least two decimals and no trailing zeros beyond them: `500.00`,
    /// `0.000125`, `-3.10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = i128::from(self.0);
        let sign = if n < 0 { "-" } else { "" };
        let abs = n.unsigned_abs();
        let whole = abs / NANOS_PER_USD as u128;
        let frac = abs % NANOS_PER_USD as u128;
        let mut frac_text = format!("{frac:09}");
        while frac_text.len() > 2 && frac_text.ends_with('0') {
            frac_text.pop();
        }
        write!(f, "{sign}{whole}.{frac_text}")
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${self}")
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse_usd(s)
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    /// Accepts a decimal string (`"500.00"`) or a JSON number (`500`, `0.25`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a USD amount as a decimal string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Money, E> {
                Money::parse_usd(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Money, E> {
                Money::from_usd(v).ok_or_else(|| E::custom("amount out of range"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Money, E> {
                i64::try_from(v).ok().and_then(Money::from_usd).ok_or_else(|| E::custom("amount out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Money, E> {
                Money::from_json_f64(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, nanos: i64, shown: &str) {
        let m = Money::parse_usd(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(m.nanos(), nanos, "{input}");
        assert_eq!(m.to_string(), shown, "{input}");
    }

    #[test]
    fn parses_and_prints_exact_decimals() {
        check("500", 500_000_000_000, "500.00");
        check("500.00", 500_000_000_000, "500.00");
        check("0.01", 10_000_000, "0.01");
        check(".5", 500_000_000, "0.50");
        check("0.000000001", 1, "0.000000001");
        check("0.000125", 125_000, "0.000125");
        check("-3.1", -3_100_000_000, "-3.10");
        check("1.0000000000", 1_000_000_000, "1.00");
        check("+2", 2_000_000_000, "2.00");
    }

    #[test]
    fn refuses_what_it_cannot_hold_exactly() {
        assert!(matches!(Money::parse_usd("0.0000000001"), Err(MoneyError::TooPrecise(_))));
        assert!(matches!(Money::parse_usd("1e3"), Err(MoneyError::Syntax(_))));
        assert!(matches!(Money::parse_usd(""), Err(MoneyError::Syntax(_))));
        assert!(matches!(Money::parse_usd("."), Err(MoneyError::Syntax(_))));
        assert!(matches!(Money::parse_usd("1.2.3"), Err(MoneyError::Syntax(_))));
        assert!(matches!(Money::parse_usd("99999999999"), Err(MoneyError::OutOfRange(_))));
        assert!(matches!(Money::parse_non_negative("-1"), Err(MoneyError::Negative(_))));
    }

    #[test]
    fn json_numbers_convert_to_the_decimal_the_caller_wrote() {
        assert_eq!(Money::from_json_f64(0.1).map(Money::nanos), Ok(100_000_000));
        assert_eq!(Money::from_json_f64(2.5).map(Money::nanos), Ok(2_500_000_000));
        assert!(Money::from_json_f64(f64::NAN).is_err());
    }

    #[test]
    fn extremes_print_without_overflow() {
        assert_eq!(Money::from_nanos(i64::MIN).to_string(), "-9223372036.854775808");
        assert_eq!(Money::MAX.to_string(), "9223372036.854775807");
    }
}
