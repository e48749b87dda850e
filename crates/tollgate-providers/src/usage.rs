//! The common usage shape every upstream's report is mapped to, and the sanity checks a
//! report must pass before anything is charged from it.
//!
//! An upstream's usage is outside input: a buggy or hostile upstream can report a
//! negative, fractional or absurd count (18446744073709551615 tokens), and a charge
//! computed from it would be zero, or too large for the ledger to hold. Every parser
//! reads counts through [`count`] and finishes with [`Usage::checked`], so a report is
//! either plausible or an [`InsaneUsage`] naming the field; the data plane then charges
//! from its own tokenizer count instead.

use serde_json::Value;

/// The most tokens one request may be charged for in any one usage field (input,
/// output, or a subset of them). No model's context comes near it; a report above it is
/// not believed.
pub const MAX_REQUEST_TOKENS: u64 = 1_000_000_000;

/// Token counts of one request, as reported by the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, including cached ones.
    pub input_tokens: u64,
    /// Generated tokens, including reasoning ones.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache (a subset of `input_tokens`).
    pub cached_input_tokens: u64,
    /// Reasoning tokens (a subset of `output_tokens`).
    pub reasoning_tokens: u64,
    /// Prompt tokens written to the provider's cache on this request (a subset of
    /// `input_tokens`; Anthropic's `cache_creation_input_tokens`, priced apart).
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// This usage if it is plausible: no count above [`MAX_REQUEST_TOKENS`], and each
    /// subset (cached, cache-write, reasoning) within the count it is part of.
    pub fn checked(self) -> Result<Usage, InsaneUsage> {
        for (field, value) in [("input_tokens", self.input_tokens), ("output_tokens", self.output_tokens)] {
            if value > MAX_REQUEST_TOKENS {
                return Err(InsaneUsage::new(field, value.to_string()));
            }
        }
        let subsets = [
            ("cached_input_tokens", self.cached_input_tokens, "input_tokens", self.input_tokens),
            ("cache_write_tokens", self.cache_write_tokens, "input_tokens", self.input_tokens),
            (
                "cached_input_tokens+cache_write_tokens",
                self.cached_input_tokens.saturating_add(self.cache_write_tokens),
                "input_tokens",
                self.input_tokens,
            ),
            ("reasoning_tokens", self.reasoning_tokens, "output_tokens", self.output_tokens),
        ];
        for (field, part, of, whole) in subsets {
            if part > whole {
                return Err(InsaneUsage::new(field, format!("{part} (more than {of} {whole})")));
            }
        }
        Ok(self)
    }
}

/// An upstream's usage report that is not believed: a count that is negative, not an
/// integer, not a number, above [`MAX_REQUEST_TOKENS`], or a part larger than its whole.
///
/// Safe to log: it names the field and holds at most a short rendering of the value the
/// upstream sent (never request or response content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("implausible upstream usage: {field} = {value}")]
pub struct InsaneUsage {
    /// The usage field, as the upstream's dialect names it (`prompt_tokens`,
    /// `output_tokens`, `candidatesTokenCount`, ...), or the common field for a total.
    pub field: &'static str,
    /// What it held, rendered short (`-5`, `12.5`, `18446744073709551615`, `a string`).
    pub value: String,
}

impl InsaneUsage {
    fn new(field: &'static str, value: String) -> Self {
        InsaneUsage { field, value }
    }
}

/// How many characters of a rejected value are kept.
const MAX_VALUE_CHARS: usize = 48;

fn render(v: &Value) -> String {
    let s = match v {
        Value::Number(n) => n.to_string(),
        Value::String(_) => "a string".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::Null => "null".to_owned(),
    };
    s.chars().take(MAX_VALUE_CHARS).collect()
}

/// A token count field of a usage object: absent or `null` is zero; a non-negative
/// integer up to [`MAX_REQUEST_TOKENS`] (an integral float such as `12.0` included) is
/// the count; anything else is an [`InsaneUsage`].
pub(crate) fn count(v: &Value, key: &'static str) -> Result<u64, InsaneUsage> {
    let Some(raw) = v.get(key).filter(|x| !x.is_null()) else { return Ok(0) };
    let n = match raw {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= MAX_REQUEST_TOKENS as f64).map(|f| f as u64)
        }),
        _ => None,
    };
    match n {
        Some(n) if n <= MAX_REQUEST_TOKENS => Ok(n),
        _ => Err(InsaneUsage::new(key, render(raw))),
    }
}

/// The usage a stream reported so far: the latest plausible report, or the first
/// implausible one, which taints the stream for good (a later plausible report from an
/// upstream that lied once is not believed either).
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamUsage {
    usage: Option<Usage>,
    rejected: Option<InsaneUsage>,
}

impl StreamUsage {
    /// Takes a report read from one event: a usage replaces the previous one; nothing
    /// leaves it; a rejection sticks.
    pub(crate) fn take(&mut self, report: Result<Option<Usage>, InsaneUsage>) {
        match report {
            Ok(Some(u)) => self.usage = Some(u),
            Ok(None) => {}
            Err(e) => {
                self.rejected.get_or_insert(e);
            }
        }
    }

    /// The latest usage taken (whether or not the stream is tainted), for a report
    /// that only updates part of it (Anthropic's cumulative deltas).
    pub(crate) fn latest(&self) -> Option<Usage> {
        self.usage
    }

    /// Marks the stream's usage as not believed.
    pub(crate) fn reject(&mut self, e: InsaneUsage) {
        self.rejected.get_or_insert(e);
    }

    /// What the adapter reports: the usage, or why it is not believed.
    pub(crate) fn get(&self) -> Result<Option<Usage>, InsaneUsage> {
        match &self.rejected {
            Some(e) => Err(e.clone()),
            None => Ok(self.usage),
        }
    }

    /// The usage to show a caller in a translated event (none once it was rejected: the
    /// caller is not told counts the gateway does not believe).
    pub(crate) fn shown(&self) -> Option<Usage> {
        if self.rejected.is_some() { None } else { self.usage }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_are_non_negative_integers_up_to_the_ceiling() {
        let v = json!({
            "ok": 12, "float_int": 12.0, "absent_is": null, "max": MAX_REQUEST_TOKENS,
            "neg": -5, "frac": 12.5, "huge": u64::MAX, "over": MAX_REQUEST_TOKENS + 1, "big_float": 1e300,
            "neg_float": -1.0, "text": "12", "obj": {}, "bool": true,
        });
        assert_eq!(count(&v, "ok"), Ok(12));
        assert_eq!(count(&v, "float_int"), Ok(12), "an integral float is still a count");
        assert_eq!(count(&v, "absent_is"), Ok(0));
        assert_eq!(count(&v, "missing"), Ok(0));
        assert_eq!(count(&v, "max"), Ok(MAX_REQUEST_TOKENS));
        for (key, shown) in [
            ("neg", "-5"),
            ("frac", "12.5"),
            ("huge", "18446744073709551615"),
            ("over", "1000000001"),
            ("big_float", "1e+300"),
            ("neg_float", "-1.0"),
            ("text", "a string"),
            ("obj", "an object"),
            ("bool", "a boolean"),
        ] {
            assert_eq!(count(&v, key), Err(InsaneUsage { field: key, value: shown.into() }), "{key}");
        }
    }

    #[test]
    fn a_part_larger_than_its_whole_is_not_believed() {
        let ok = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: 4,
            cache_write_tokens: 6,
            reasoning_tokens: 5,
        };
        assert_eq!(ok.checked(), Ok(ok));
        let cases = [
            (Usage { cached_input_tokens: 11, ..ok }, "cached_input_tokens"),
            (Usage { cache_write_tokens: 11, ..ok }, "cache_write_tokens"),
            (Usage { cache_write_tokens: 7, ..ok }, "cached_input_tokens+cache_write_tokens"),
            (Usage { reasoning_tokens: 6, ..ok }, "reasoning_tokens"),
            (Usage { input_tokens: MAX_REQUEST_TOKENS + 1, ..ok }, "input_tokens"),
            (Usage { output_tokens: u64::MAX, ..ok }, "output_tokens"),
        ];
        for (u, field) in cases {
            assert_eq!(u.checked().map_err(|e| e.field), Err(field), "{u:?}");
        }
    }

    #[test]
    fn a_stream_that_lied_once_stays_untrusted() {
        let mut s = StreamUsage::default();
        let u = Usage { input_tokens: 3, ..Usage::default() };
        s.take(Ok(Some(u)));
        s.take(Ok(None));
        assert_eq!(s.get(), Ok(Some(u)));
        let lie = InsaneUsage::new("output_tokens", "-1".into());
        s.take(Err(lie.clone()));
        s.take(Ok(Some(u)));
        assert_eq!(s.get(), Err(lie));
        assert_eq!(s.shown(), None, "a caller is not shown counts the gateway does not believe");
    }
}
