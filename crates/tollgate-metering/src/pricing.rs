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
    /// Per 1M prompt tokens written to the provider's cache (Anthropic's cache creation);
    /// the input price if unset.
    pub cache_write_per_mtok: Option<Money>,
}

impl Pricing {
    /// Input and output prices; cached reads and cache writes at the input price.
    pub fn new(input_per_mtok: Money, output_per_mtok: Money) -> Self {
        Pricing { input_per_mtok, output_per_mtok, cached_input_per_mtok: None, cache_write_per_mtok: None }
    }

    /// Sets the price of cached prompt tokens.
    pub fn with_cached_input(mut self, per_mtok: Money) -> Self {
        self.cached_input_per_mtok = Some(per_mtok);
        self
    }

    /// Sets the price of prompt tokens written to the cache.
    pub fn with_cache_write(mut self, per_mtok: Money) -> Self {
        self.cache_write_per_mtok = Some(per_mtok);
        self
    }

    /// The exact cost of `usage`, rounded up to the next nano-dollar. Saturates at
    /// [`Money::MAX`] rather than wrapping.
    ///
    /// Cached reads and cache writes are subsets of `input_tokens`: they are priced at
    /// their own rates and the rest of the prompt at the input price. Counts that claim
    /// more cached or written tokens than the prompt holds are clamped (reads first), so
    /// a malformed usage report can never make the prompt cost less than zero tokens.
    /// Reasoning tokens are part of `output_tokens` and priced as output.
    pub fn cost(&self, usage: &Usage) -> Money {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage.cache_write_tokens.min(usage.input_tokens - cached);
        let fresh = usage.input_tokens - cached - written;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        let write_price = self.cache_write_per_mtok.unwrap_or(self.input_per_mtok);
        // Each product is below 2^64 × 2^63 = 2^127, but their sum may not be: add with
        // saturation (the result saturates to Money::MAX below anyway).
        let scaled = (i128::from(fresh) * i128::from(self.input_per_mtok.nanos()))
            .saturating_add(i128::from(cached) * i128::from(cached_price.nanos()))
            .saturating_add(i128::from(written) * i128::from(write_price.nanos()))
            .saturating_add(i128::from(usage.output_tokens) * i128::from(self.output_per_mtok.nanos()));
        let nanos =
            scaled.div_euclid(TOKENS_PER_PRICE_UNIT) + i128::from(scaled.rem_euclid(TOKENS_PER_PRICE_UNIT) != 0);
        Money::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    /// The most a request can cost: every input token at the dearest input rate (a
    /// cache write costs more than plain input at Anthropic) and `max_output_tokens`
    /// generated.
    pub fn worst_case(&self, input_tokens: u64, max_output_tokens: u64) -> Money {
        let dearest = [self.cached_input_per_mtok, self.cache_write_per_mtok]
            .into_iter()
            .flatten()
            .fold(self.input_per_mtok, Money::max);
        Pricing::new(dearest, self.output_per_mtok).cost(&Usage {
            input_tokens,
            output_tokens: max_output_tokens,
            ..Usage::default()
        })
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
        Pricing {
            input_per_mtok: usd(input),
            output_per_mtok: usd(output),
            cached_input_per_mtok: cached.map(usd),
            cache_write_per_mtok: None,
        }
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

    #[test]
    fn cache_writes_are_priced_apart_and_default_to_the_input_price() {
        // Claude Sonnet: $3 in, $15 out, $0.30 cache read, $3.75 cache write.
        let p = Pricing::new(usd("3"), usd("15")).with_cached_input(usd("0.30")).with_cache_write(usd("3.75"));
        let u = |input, cached, written, output| Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            reasoning_tokens: 0,
            cache_write_tokens: written,
        };
        // Nano-dollars a token: 3000 in, 300 read, 3750 written, 15000 out.
        // 1000 fresh + 2000 read + 3000 written, 100 out.
        assert_eq!(p.cost(&u(6000, 2000, 3000, 100)), Money::from_nanos(3_000_000 + 600_000 + 11_250_000 + 1_500_000));
        // Without a cache-write price, writes cost plain input.
        let plain = Pricing::new(usd("3"), usd("15"));
        assert_eq!(plain.cost(&u(1_000_000, 0, 1_000_000, 0)), usd("3"));
        // Reads and writes together beyond the prompt are clamped: reads first, then writes.
        assert_eq!(p.cost(&u(10, 4, 100, 0)), Money::from_nanos(4 * 300 + 6 * 3750));
        // The worst case charges every prompt token at the dearest input rate.
        assert_eq!(p.worst_case(1_000_000, 0), usd("3.75"));
    }

    #[test]
    fn every_rate_saturates_instead_of_wrapping() {
        let p = Pricing::new(Money::MAX, Money::MAX).with_cached_input(Money::MAX).with_cache_write(Money::MAX);
        let u = Usage {
            input_tokens: u64::MAX,
            output_tokens: u64::MAX,
            cached_input_tokens: u64::MAX / 3,
            reasoning_tokens: u64::MAX,
            cache_write_tokens: u64::MAX / 3,
        };
        assert_eq!(p.cost(&u), Money::MAX);
    }
}
