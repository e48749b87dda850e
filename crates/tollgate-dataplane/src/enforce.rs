//! Admission and settlement on the request path: rate limits (per key and per provider
//! credential), the budget reservation across every scope the key belongs to, and, once
//! the upstream has answered, the commit of the actual cost and tokens.
//!
//! Order matters: rate limits first (cheap, and a refused request must not hold a
//! reservation), then the budget reservation (all scopes at once), then dispatch. A
//! request that never reaches the upstream releases everything it took when its
//! [`Admitted`] is dropped.

use crate::ApiError;
use crate::alerts::Alerts;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use tollgate_budgets::{Amount, Budget, Budgets, Limit, Permit, RateLimiter, RateLimits, Reservation};
use tollgate_core::{Money, Timestamp};
use tollgate_metering::{Pricing, Usage, UsageSource};

/// Output tokens assumed for reservations when neither the request nor the model
/// configuration caps them.
pub(crate) const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// The counters every request goes through; memory or Redis underneath.
#[derive(Clone)]
pub(crate) struct Enforcement {
    pub(crate) budgets: Budgets,
    pub(crate) limiter: RateLimiter,
    pub(crate) alerts: Alerts,
}

/// What a request asks to be admitted with.
pub(crate) struct Ask<'a> {
    pub(crate) key_id: &'a str,
    pub(crate) key_limits: RateLimits,
    /// The provider credential's rate-limit counter key (see the snapshot).
    pub(crate) budgets: &'a [Arc<Budget>],
    pub(crate) pricing: Option<Pricing>,
    /// Size of the request body in bytes.
    pub(crate) body_len: usize,
    /// The most output tokens the request may generate.
    pub(crate) max_output_tokens: u64,
    pub(crate) now: Timestamp,
}

/// A request that passed rate limits and holds its budget reservation. Dropping it
/// without [`Admitted::settle`] releases both.
pub(crate) struct Admitted {
    reservation: Option<Reservation>,
    key_permit: Permit,
    /// The permit of the provider credential tried last, and its counter key: taken per
    /// attempt ([`Enforcement::acquire_provider`]), so a fallback counts against the
    /// credential that serves.
    provider_permit: Option<(Arc<str>, Permit)>,
    /// The prompt's estimated tokens, what each rate limit is first charged.
    input_estimate: u64,
    pricing: Option<Pricing>,
    alerts: Alerts,
}

/// An upper bound of a prompt's tokens from its body size. Byte-level BPE tokenizers
/// never produce more tokens than bytes of text, and the JSON framing around the text
/// outweighs the few tokens chat templates add per message, so the body length bounds
/// the prompt for text input. The reservation made from it is released down to the
/// actual usage at commit.
pub(crate) fn input_token_bound(body_len: usize) -> u64 {
    body_len as u64
}

/// The usage to charge for an answer — never zero because the upstream said nothing or
/// was cut short:
/// - a finished answer's reported usage, as reported;
/// - an unfinished one's reported usage with at least the output counted from what
///   passed (a partial report, like Anthropic's `message_start` with `output_tokens: 1`,
///   undercounts what was generated before the cut), marked estimated when raised;
/// - no report at all: `prompt_tokens()` (the model's tokenizer over the request) and the
///   counted output, marked estimated.
pub(crate) fn usage_to_charge(
    reported: Option<Usage>,
    finished: bool,
    counted_output: u64,
    prompt_tokens: impl FnOnce() -> u64,
) -> (Usage, UsageSource) {
    match reported {
        Some(u) if finished || u.output_tokens >= counted_output => (u, UsageSource::Reported),
        Some(u) => (Usage { output_tokens: counted_output, ..u }, UsageSource::Estimated),
        None => (
            Usage { input_tokens: prompt_tokens(), output_tokens: counted_output, ..Usage::default() },
            UsageSource::Estimated,
        ),
    }
}

/// A rough count of tokens in `bytes` of generated text (about four bytes a token for
/// English), used only when the upstream reports no usage.
pub(crate) fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

impl Enforcement {
    /// Rate limits, then the all-scope budget reservation.
    pub(crate) async fn admit(&self, ask: Ask<'_>) -> Result<Admitted, ApiError> {
        // Rate limits count the prompt now and are settled with the actual total later.
        // Rate limits count the prompt's estimate now and are settled with the actual
        // total later; the budget reserves the prompt's upper bound, so a prompt longer
        // than estimated can never overshoot it.
        let input_estimate = estimate_tokens(ask.body_len as u64);
        let input_bound = input_token_bound(ask.body_len);
        let key_permit = self.limiter.acquire(ask.key_id, &ask.key_limits, input_estimate, ask.now).await?;
        let reservation = if ask.budgets.is_empty() {
            None
        } else {
            let has_money_budget = ask.budgets.iter().any(|b| matches!(b.limit, Limit::Money(_)));
            let money = match ask.pricing {
                Some(p) => p.worst_case(input_bound, ask.max_output_tokens),
                None if has_money_budget => return Err(ApiError::Unpriced),
                None => Money::ZERO,
            };
            let amount = Amount { money, tokens: input_bound.saturating_add(ask.max_output_tokens) };
            Some(self.budgets.reserve(ask.budgets, amount, ask.now).await?)
        };
        Ok(Admitted {
            reservation,
            key_permit,
            provider_permit: None,
            input_estimate,
            pricing: ask.pricing,
            alerts: self.alerts.clone(),
        })
    }

    /// Takes the rate-limit permit of the provider credential an attempt is about to use
    /// (the platform's rpm / tpm at that provider, shared by every gateway on the same
    /// counters), unless the request already holds it. A refusal is 429 with
    /// `limit_of: provider`; the caller may try another deployment.
    pub(crate) async fn acquire_provider(
        &self,
        admitted: &mut Admitted,
        counter: &Arc<str>,
        limits: &RateLimits,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        if admitted.provider_permit.as_ref().is_some_and(|(held, _)| held == counter) {
            return Ok(());
        }
        let permit =
            self.limiter.acquire(counter, limits, admitted.input_estimate, now).await.map_err(
                |e| match ApiError::from(e) {
                    ApiError::RateLimited(r, _) => ApiError::RateLimited(r, true),
                    other => other,
                },
            )?;
        // The credential tried before keeps what it was charged: it did get a request.
        admitted.provider_permit = Some((Arc::clone(counter), permit));
        Ok(())
    }
}

impl Admitted {
    /// The response headers of an admitted request: remaining requests and tokens of the
    /// key's rate limits, the tightest remaining budget, and one warning per breached
    /// `warn` budget.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        if let Some(n) = self.key_permit.remaining_requests() {
            headers.insert(REMAINING_REQUESTS, HeaderValue::from(n));
        }
        if let Some(n) = self.key_permit.remaining_tokens() {
            headers.insert(REMAINING_TOKENS, HeaderValue::from(n));
        }
        let Some(r) = &self.reservation else { return };
        if let Some(m) = r.tightest_remaining()
            && let Ok(v) = HeaderValue::from_str(&m.to_string())
        {
            headers.insert(BUDGET_REMAINING, v);
        }
        for w in r.warnings() {
            let text = format!("{}={}; budget={}", w.scope, w.scope_id, w.budget_id);
            if let Ok(v) = HeaderValue::from_str(&text) {
                headers.append(BUDGET_WARNING, v);
            }
        }
    }

    /// Charges the request at `pricing` (the deployment that served), in place of the
    /// price it was reserved at (never lower than this one's worst case).
    pub(crate) fn charge_at(&mut self, pricing: Option<Pricing>) {
        self.pricing = pricing;
    }

    /// The prompt's estimated tokens and their cost at this request's price.
    pub(crate) fn prompt_estimate(&self) -> (u64, Money) {
        let usage = Usage { input_tokens: self.input_estimate, ..Usage::default() };
        (self.input_estimate, self.cost(&usage))
    }

    /// Whether the request has a price (a model served unpriced is recorded at zero cost
    /// with `priced: false`).
    pub(crate) fn priced(&self) -> bool {
        self.pricing.is_some()
    }

    /// The cost of `usage` at this request's price (zero when the model has no price,
    /// which only happens for keys without a money budget).
    pub(crate) fn cost(&self, usage: &Usage) -> Money {
        self.pricing.map(|p| p.cost(usage)).unwrap_or(Money::ZERO)
    }

    /// Commits the actual cost and tokens in place of the reservation, settles the
    /// rate limits' token counts, and hands crossed alert thresholds to the notifier.
    /// Returns what was charged.
    pub(crate) async fn settle(self, usage: &Usage) -> Money {
        let cost = self.cost(usage);
        let tokens = usage.total_tokens();
        self.key_permit.settle_tokens(tokens).await;
        if let Some((_, p)) = &self.provider_permit {
            p.settle_tokens(tokens).await;
        }
        if let Some(r) = self.reservation {
            match r.commit(Amount { money: cost, tokens }).await {
                Ok(outcome) => self.alerts.notify(outcome.alerts),
                // The counters are a cache of the ledger; the ledger entry still carries
                // the cost, and the counters are rebuilt from it.
                Err(e) => tracing::error!(error = %e, "could not commit spend to the budget counters"),
            }
        }
        cost
    }
}

const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const BUDGET_REMAINING: HeaderName = HeaderName::from_static("x-tollgate-budget-remaining");
const BUDGET_WARNING: HeaderName = HeaderName::from_static("x-tollgate-budget-warning");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_never_charged_short_of_what_passed() {
        let reported = |input, output| Some(Usage { input_tokens: input, output_tokens: output, ..Usage::default() });
        let no_prompt = || -> u64 { panic!("the prompt is only counted when nothing was reported") };
        let cases = [
            // (reported, finished, counted output) -> (input, output, source)
            (reported(10, 42), true, 900, (10, 42, UsageSource::Reported)),
            (reported(10, 42), false, 30, (10, 42, UsageSource::Reported)),
            // Cut after Anthropic's message_start (output 1): what passed counts.
            (reported(10, 1), false, 30, (10, 30, UsageSource::Estimated)),
        ];
        for (r, finished, counted, (input, output, source)) in cases {
            let (u, s) = usage_to_charge(r, finished, counted, no_prompt);
            assert_eq!((u.input_tokens, u.output_tokens, s), (input, output, source), "{r:?} {finished} {counted}");
        }
        let cut = Usage { cached_input_tokens: 300, ..reported(10, 1).unwrap() };
        let (u, _) = usage_to_charge(Some(cut), false, 5, no_prompt);
        assert_eq!(u.cached_input_tokens, 300, "the reported input side is kept whole");
        for finished in [true, false] {
            let (u, s) = usage_to_charge(None, finished, 7, || 123);
            assert_eq!((u.input_tokens, u.output_tokens, s), (123, 7, UsageSource::Estimated));
        }
    }

    #[test]
    fn estimates_round_up_and_bounds_never_undercount_text() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(8), 2);
        assert_eq!(estimate_tokens(9), 3);
        assert_eq!(input_token_bound(120), 120);
    }
}
