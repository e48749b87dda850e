//! Alert thresholds: a fraction of a budget's limit in (0, 1], exact to 0.001, held as
//! per-mille. The one rule for what a threshold is, shared by the budget engine, the
//! control plane's API and `tollctl apply`'s file, so all three accept the same values.

use crate::{Money, MoneyError};
use std::fmt;

/// An alert threshold: a fraction of the limit in (0, 1], exact to 0.001 and stored as
/// per-mille (`0.8` is 800). Reads JSON numbers and decimal strings alike, without
/// going through floating-point arithmetic; shows as a decimal string (`"0.8"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Threshold(u16);

impl Threshold {
    /// The threshold of `permille` thousandths, if in 1..=1000.
    pub fn from_permille(permille: u16) -> Option<Threshold> {
        (1..=1000).contains(&permille).then_some(Threshold(permille))
    }

    /// Thousandths of the limit (1..=1000).
    pub fn permille(self) -> u16 {
        self.0
    }

    /// Parses a decimal fraction such as `0.8`, `.85`, `1` or `0.125`, exactly (the
    /// same decimal reader as money amounts).
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let bad = || format!("{:?} is not a fraction in (0, 1] such as 0.8", text.chars().take(32).collect::<String>());
        if text.trim_start().starts_with(['+', '-']) {
            return Err(bad());
        }
        // A fraction of one is an amount of one dollar: nano-units, exact.
        let nanos = match Money::parse_usd(text) {
            Ok(m) => m.nanos(),
            Err(MoneyError::TooPrecise(_)) => return Err(format!("{:?} is finer than 0.001", text.trim())),
            Err(_) => return Err(bad()),
        };
        const PER_MILLE: i64 = 1_000_000;
        if nanos % PER_MILLE != 0 {
            return Err(format!("{:?} is finer than 0.001", text.trim()));
        }
        u16::try_from(nanos / PER_MILLE).ok().and_then(Threshold::from_permille).ok_or_else(bad)
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frac = format!("{:03}", self.0 % 1000);
        let frac = frac.trim_end_matches('0');
        write!(f, "{}.{}", self.0 / 1000, if frac.is_empty() { "0" } else { frac })
    }
}

impl serde::Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Threshold;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction in (0, 1] as a number or a decimal string, e.g. 0.8")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Threshold, E> {
                Threshold::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Threshold, E> {
                Threshold::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Threshold, E> {
                Threshold::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Threshold, E> {
                // `Display` of an f64 is the shortest text that reads back as the same
                // number: the decimal the caller wrote (0.8 → "0.8"), never 0.80000001.
                if !v.is_finite() {
                    return Err(E::custom("a threshold must be a finite number"));
                }
                Threshold::parse(&format!("{v}")).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, permille: u16, shown: &str) {
        let t = Threshold::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(t.permille(), permille, "{text}");
        assert_eq!(t.to_string(), shown, "{text}");
    }

    #[test]
    fn thresholds_are_exact_fractions_in_per_mille() {
        check("0.8", 800, "0.8");
        check("0.80", 800, "0.8");
        check(".5", 500, "0.5");
        check("1", 1000, "1.0");
        check("1.000", 1000, "1.0");
        check("0.125", 125, "0.125");
        check("0.001", 1, "0.001");
        check("0.05", 50, "0.05");
        for bad in ["0", "0.0", "1.001", "2", "-0.5", "0.0001", "", ".", "1e-1", "abc", "0.8.1", "01.5"] {
            assert!(Threshold::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(Threshold::from_permille(0), None);
        assert_eq!(Threshold::from_permille(1001), None);
    }

    #[test]
    fn thresholds_read_json_numbers_and_strings_alike() {
        let v: Vec<Threshold> = serde_json::from_str(r#"[0.5, "0.8", 1, 0.95, 0.001]"#).unwrap();
        assert_eq!(v.iter().map(|t| t.permille()).collect::<Vec<_>>(), [500, 800, 1000, 950, 1]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"["0.5","0.8","1.0","0.95","0.001"]"#);
        for bad in ["[0]", "[1.5]", "[-0.2]", "[0.0005]", "[true]", "[null]"] {
            assert!(serde_json::from_str::<Vec<Threshold>>(bad).is_err(), "{bad}");
        }
    }
}
