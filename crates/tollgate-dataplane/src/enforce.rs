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
use crate::metrics::Metrics;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use tollgate_budgets::{Amount, Budget, Budgets, Clamped, Limit, Permit, RateLimiter, RateLimits, Reservation};
use tollgate_core::{Money, OnBreach, Timestamp};
use tollgate_metering::{Pricing, Usage, UsageSource};

/// The output cap forwarded (and reserved for) when neither the request, the model's
/// configuration nor the price catalog gives one.
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
    /// The budgets that apply to the key.
    pub(crate) budgets: &'a [Arc<Budget>],
    pub(crate) pricing: Option<Pricing>,
    /// An upper bound of the prompt's tokens, the budget reservation's input side.
    pub(crate) input_bound: u64,
    /// The prompt's estimated tokens, what each rate limit is first charged (and
    /// settled to the actual count later).
    pub(crate) rate_estimate: u64,
    /// The output cap forwarded upstream: the most output tokens the request may
    /// generate (0 for embeddings).
    pub(crate) max_output_tokens: u64,
    pub(crate) now: Timestamp,
}

/// A budget reservation, what it holds and the lowered cap, if any.
struct Held {
    reservation: Reservation,
    reserved: Amount,
    clamped: Option<Clamped>,
}

/// A request that passed rate limits and holds its budget reservation. Dropping it
/// without [`Admitted::settle`] releases both.
pub(crate) struct Admitted {
    reservation: Option<Reservation>,
    /// What the reservation holds (zero without one).
    reserved: Amount,
    /// Set when a `clamp` budget lowered the output cap.
    clamped: Option<Clamped>,
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
    /// Rate limits, then the all-scope budget reservation of the request's worst case:
    /// the prompt's bound plus exactly the output cap forwarded upstream, so an upstream
    /// that honours the cap can never commit more than was reserved. When a `clamp`
    /// budget cannot take that but can take the prompt plus its floor of output tokens,
    /// the cap is lowered to what it affords ([`Admitted::clamped`]).
    ///
    /// `tighten` counts a tighter prompt bound (the model's tokenizer) when the cheap
    /// one in `ask` was refused or clamped: the reservation is then made again with it,
    /// so a budget is never refused for what the cheap bound overstated. Rate limits are
    /// taken once, before.
    pub(crate) async fn admit(
        &self,
        ask: Ask<'_>,
        tighten: Option<impl AsyncFnOnce() -> Result<u64, ApiError>>,
    ) -> Result<Admitted, ApiError> {
        // Rate limits count the prompt's estimate now and are settled with the actual
        // total later.
        let key_permit = self.limiter.acquire(ask.key_id, &ask.key_limits, ask.rate_estimate, ask.now).await?;
        let mut held = None;
        if !ask.budgets.is_empty() {
            let has_money_budget = ask.budgets.iter().any(|b| matches!(b.limit, Limit::Money(_)));
            if ask.pricing.is_none() && has_money_budget {
                return Err(ApiError::Unpriced);
            }
            let first = self.reserve(&ask, ask.input_bound).await;
            let tight = match (&first, tighten) {
                (Ok(h), Some(t)) if h.clamped.is_some() => Some(t),
                (Err(ApiError::BudgetExceeded(_)), Some(t)) => Some(t),
                _ => None,
            };
            held = Some(match tight {
                None => first?,
                Some(count) => {
                    let bound = count().await?;
                    if bound >= ask.input_bound {
                        first?
                    } else {
                        // Give back what the cheap bound took before asking again.
                        if let Ok(h) = first
                            && let Err(e) = h.reservation.release().await
                        {
                            tracing::warn!(error = %e, "releasing a reservation before a tighter one failed");
                        }
                        self.reserve(&ask, bound).await?
                    }
                }
            });
        }
        let (reservation, reserved, clamped) = match held {
            Some(h) => (Some(h.reservation), h.reserved, h.clamped),
            None => (None, Amount::default(), None),
        };
        Ok(Admitted {
            reservation,
            reserved,
            clamped,
            key_permit,
            provider_permit: None,
            input_estimate: ask.rate_estimate,
            pricing: ask.pricing,
            alerts: self.alerts.clone(),
        })
    }

    /// Reserves the request's worst case with `input_bound` prompt tokens on every
    /// budget at once, clamping the output when a `clamp` budget is among them.
    async fn reserve(&self, ask: &Ask<'_>, input_bound: u64) -> Result<Held, ApiError> {
        let amount_for = |output: u64| Amount {
            money: ask.pricing.map_or(Money::ZERO, |p| p.worst_case(input_bound, output)),
            tokens: input_bound.saturating_add(output),
        };
        let can_clamp = ask.max_output_tokens > 0 && ask.budgets.iter().any(|b| b.on_breach == OnBreach::Clamp);
        if !can_clamp {
            let reserved = amount_for(ask.max_output_tokens);
            let reservation = self.budgets.reserve(ask.budgets, reserved, ask.now).await?;
            return Ok(Held { reservation, reserved, clamped: None });
        }
        let (reservation, clamped) =
            self.budgets.reserve_clamped(ask.budgets, &amount_for, ask.max_output_tokens, ask.now).await?;
        let reserved = amount_for(clamped.as_ref().map_or(ask.max_output_tokens, |c| c.cap));
        Ok(Held { reservation, reserved, clamped })
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
        if let Some(c) = &self.clamped {
            headers.insert(OUTPUT_CAPPED, HeaderValue::from(c.cap));
            let b = &c.budget;
            let text = format!("{}={}; budget={}; output_capped={}", b.scope, b.scope_id, b.id, c.cap);
            if let Ok(v) = HeaderValue::from_str(&text) {
                headers.append(BUDGET_WARNING, v);
            }
        }
        for w in r.warnings() {
            let text = format!("{}={}; budget={}", w.scope, w.scope_id, w.budget_id);
            if let Ok(v) = HeaderValue::from_str(&text) {
                headers.append(BUDGET_WARNING, v);
            }
        }
    }

    /// The lowered output cap, when a `clamp` budget lowered it.
    pub(crate) fn clamped(&self) -> Option<u64> {
        self.clamped.as_ref().map(|c| c.cap)
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
    pub(crate) async fn settle(self, usage: &Usage, metrics: &Metrics) -> Money {
        let cost = self.cost(usage);
        let tokens = usage.total_tokens();
        if self.reservation.is_some() {
            metrics.reservation_settled(self.reserved, Amount { money: cost, tokens });
        }
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
const OUTPUT_CAPPED: HeaderName = HeaderName::from_static("x-tollgate-output-capped");
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
    fn estimates_round_up() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(8), 2);
        assert_eq!(estimate_tokens(9), 3);
    }
}
