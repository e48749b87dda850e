//! Phase 3, admit: the key's rate limits, then the budget reservation on every scope
//! at once (the `enforce` engine), then the ledger entry started — only for a request
//! routing already found somewhere to go.

use super::authenticate::Ctx;
use super::route::Routed;
use crate::ApiError;
use crate::enforce::{Admitted, Ask};
use crate::ledger::{Pending, Start};
use tollgate_budgets::RateLimits;

/// What admission hands on: the permits and reservation to settle, and the ledger entry
/// to finish (none when the data plane has no ledger).
pub(super) struct Admission {
    pub(super) admitted: Admitted,
    pub(super) ledger: Option<Pending>,
}

/// Takes the key's rate-limit permits and reserves the request's worst case; a refusal
/// (429, 402) leaves no trace and reaches no upstream.
pub(super) async fn admit(ctx: &Ctx<'_>, routed: &Routed<'_>) -> Result<Admission, ApiError> {
    let key = &ctx.key;
    let admitted = ctx
        .dp
        .enforcement
        .admit(Ask {
            key_id: key.id.as_str(),
            key_limits: RateLimits {
                rpm: key.limits.rpm,
                tpm: key.limits.tpm,
                max_concurrency: key.limits.max_concurrency,
            },
            budgets: &routed.budgets,
            pricing: routed.pricing,
            body_len: ctx.body.len(),
            max_output_tokens: routed.max_output_tokens,
            now: ctx.now,
        })
        .await?;
    let start = Start {
        model: &ctx.head.model,
        deployment: routed.first.deployment,
        stream: ctx.stream,
        priced: routed.pricing.is_some(),
        prompt: admitted.prompt_estimate(),
        started: ctx.started,
    };
    let ledger = Pending::start(ctx.dp, ctx.identity, key, start);
    Ok(Admission { admitted, ledger })
}
