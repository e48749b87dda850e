//! Prices and the exact cost of a request: [`Pricing`] and the catalog's [`PriceTable`].

use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::Money;
use tollgate_providers::Usage;

const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;

/// Prices of one model, per one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pricing {
    /// Per 1M prompt tokens.
    pub input_per_mtok: Money,
    /// Per 1M generated tokens.
    pub output_per_mtok: Money,
    /// Per 1M prompt tokens read from the provider's cache; the input price if unset.
    pub cached_input_per_mtok: Option<Money>,
}

impl Pricing {
    /// The exact cost of `usage`, rounded up to the next nano-dollar. Saturates at
    /// [`Money::MAX`] rather than wrapping.
    pub fn cost(&self, usage: &Usage) -> Money {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        let scaled = i128::from(fresh) * i128::from(self.input_per_mtok.nanos())
            + i128::from(cached) * i128::from(cached_price.nanos())
            + i128::from(usage.output_tokens) * i128::from(self.output_per_mtok.nanos());
        let nanos =
            scaled.div_euclid(TOKENS_PER_PRICE_UNIT) + i128::from(scaled.rem_euclid(TOKENS_PER_PRICE_UNIT) != 0);
        Money::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    /// The most a request can cost: every input token at the full input price and
    /// `max_output_tokens` generated.
    pub fn worst_case(&self, input_tokens: u64, max_output_tokens: u64) -> Money {
        self.cost(&Usage { input_tokens, output_tokens: max_output_tokens, ..Usage::default() })
    }
}

/// Public model name → price.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<Arc<str>, Pricing>,
}

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a model's price.
    pub fn insert(&mut self, model: Arc<str>, pricing: Pricing) {
        self.prices.insert(model, pricing);
    }

    /// A model's price, if it has one.
    pub fn get(&self, model: &str) -> Option<&Pricing> {
        self.prices.get(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Money {
        Money::parse_usd(s).unwrap()
    }

    fn pricing(input: &str, output: &str, cached: Option<&str>) -> Pricing {
        Pricing { input_per_mtok: usd(input), output_per_mtok: usd(output), cached_input_per_mtok: cached.map(usd) }
    }

    fn check(p: Pricing, input: u64, cached: u64, output: u64, want: &str) {
        let u = Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
        };
        assert_eq!(p.cost(&u), usd(want), "{input}/{cached}/{output}");
    }

    #[test]
    fn cost_is_exact_per_token_price() {
        // gpt-4o: $2.50 in, $10 out, $1.25 cached per 1M.
        let p = pricing("2.50", "10", Some("1.25"));
        check(p, 1_000_000, 0, 0, "2.50");
        check(p, 1000, 0, 500, "0.0075");
        check(p, 1000, 600, 0, "0.00175");
        check(p, 0, 0, 1, "0.00001");
        // gpt-4o-mini: $0.15 in -> 150 nano-dollars a token.
        check(pricing("0.15", "0.60", None), 1, 0, 1, "0.00000075");
    }

    #[test]
    fn fractions_of_a_nano_dollar_round_up_once() {
        // 100 nano-dollars per 1M tokens = 0.0001 nano-dollar a token.
        let p = pricing("0.0000001", "0", None);
        check(p, 3, 0, 0, "0.000000001");
        check(p, 10_000, 0, 0, "0.000000001");
        check(p, 10_001, 0, 0, "0.000000002");
        check(p, 0, 0, 0, "0");
    }

    #[test]
    fn cached_tokens_beyond_input_are_clamped_and_huge_counts_saturate() {
        check(pricing("1", "1", Some("0.5")), 10, 1000, 0, "0.000005");
        let p = pricing("1000", "1000", None);
        let u = Usage { input_tokens: u64::MAX, output_tokens: u64::MAX, ..Usage::default() };
        assert_eq!(p.cost(&u), Money::MAX);
    }

    #[test]
    fn worst_case_prices_the_full_output_cap() {
        assert_eq!(pricing("2.50", "10", None).worst_case(1000, 1000), usd("0.0125"));
    }
}
