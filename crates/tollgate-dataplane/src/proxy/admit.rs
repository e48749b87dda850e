//! Phase 3, admit: the prompt's token bound, the price to reserve at, the key's rate
//! limits, then the budget reservation on every scope at once (the `enforce` engine:
//! a `clamp` budget may lower the output cap here), then the ledger entry started —
//! only for a request routing already found somewhere to go.

use super::authenticate::Ctx;
use super::route::Routed;
use crate::ApiError;
use crate::enforce::{Admitted, Ask, estimate_tokens};
use crate::ledger::{Pending, Start};
use tollgate_budgets::RateLimits;
use tollgate_metering::tokens::{PartMaxTokens, Tokenizer, prompt_bound_with, tokenizer_for};

/// Bodies at least this large get their byte bound on the blocking pool (about 0.1 ms
/// per 64 KiB).
const BYTES_OFF_RUNTIME: usize = 64 * 1024;
/// Bodies at least this large are counted with the tokenizer on the blocking pool
/// (tiktoken takes about 85 µs per KiB).
const TOKENIZER_OFF_RUNTIME: usize = 4 * 1024;

/// What admission hands on: the permits and reservation to settle, and the ledger entry
/// to finish (none when the data plane has no ledger).
pub(super) struct Admission {
    pub(super) admitted: Admitted,
    pub(super) ledger: Option<Pending>,
}

/// Bounds the prompt, takes the key's rate-limit permits and reserves the request's
/// worst case (the bound plus the forwarded output cap, at the dearest usable
/// deployment's price); a refusal (400, 429, 402) leaves no trace and reaches no
/// upstream. A `clamp` budget that lowers the cap has the first try's body rebuilt with
/// it.
///
/// The prompt is bounded cheaply first (its text's bytes: a few microseconds a
/// kilobyte); only when a budget refuses or clamps that, and every usable deployment's
/// tokenizer is known, is it counted with the tokenizer (about a hundred microseconds a
/// kilobyte) and the reservation made again: the tight count is paid for exactly when
/// it can change the answer.
pub(super) async fn admit(ctx: &Ctx<'_>, routed: &mut Routed<'_>) -> Result<Admission, ApiError> {
    let key = &ctx.key;
    let parts = part_limits(routed);
    let input_bound = bound_with(ctx, &[Tokenizer::Estimate], parts, BYTES_OFF_RUNTIME).await?;
    let tokenizers = tokenizers(routed);
    let tighten = tokenizers.map(|(t, n)| async move || bound_with(ctx, &t[..n], parts, TOKENIZER_OFF_RUNTIME).await);
    let max_output_tokens = routed.max_output_tokens;
    let pricing = ctx.snap.reservation_price(&routed.route.name, routed.usable(), input_bound, max_output_tokens);
    let admitted = ctx
        .dp
        .enforcement
        .admit(
            Ask {
                key_id: key.id.as_str(),
                key_limits: RateLimits {
                    rpm: key.limits.rpm,
                    tpm: key.limits.tpm,
                    max_concurrency: key.limits.max_concurrency,
                },
                budgets: &routed.budgets,
                pricing,
                input_bound,
                rate_estimate: estimate_tokens(ctx.body.len() as u64),
                max_output_tokens,
                now: ctx.now,
            },
            tighten,
        )
        .await?;
    if let Some(cap) = admitted.clamped() {
        routed.lower_cap(ctx, cap)?;
        ctx.dp.metrics.output_capped();
    }
    let start = Start {
        model: &ctx.head.model,
        deployment: routed.first.deployment,
        stream: ctx.stream,
        priced: pricing.is_some(),
        prompt: admitted.prompt_estimate(),
        started: ctx.started,
    };
    let ledger = Pending::start(ctx.dp, ctx.identity, key, start);
    Ok(Admission { admitted, ledger })
}

/// The tokenizers of the usable deployments' upstream models (at most the two
/// tiktoken families), when every one has a known tokenizer (else the byte bound is as
/// tight as it gets).
fn tokenizers(routed: &Routed<'_>) -> Option<([Tokenizer; 2], usize)> {
    let mut found = ([Tokenizer::Estimate; 2], 0);
    for c in routed.candidates.iter().flatten() {
        let t = tokenizer_for(&c.deployment.upstream_model);
        if t == Tokenizer::Estimate {
            return None;
        }
        if !found.0[..found.1].contains(&t) && found.1 < 2 {
            found.0[found.1] = t;
            found.1 += 1;
        }
    }
    (found.1 > 0).then_some(found)
}

/// The largest of the prompt's bounds under `tokenizers`, counted on the blocking pool
/// for a body of `off_runtime` bytes or more.
async fn bound_with(
    ctx: &Ctx<'_>,
    tokenizers: &[Tokenizer],
    parts: PartMaxTokens,
    off_runtime: usize,
) -> Result<u64, ApiError> {
    let bound = move |body: &[u8], tokenizers: &[Tokenizer]| {
        tokenizers.iter().try_fold(0u64, |most, t| Ok(most.max(prompt_bound_with(*t, body, &parts)?)))
    };
    let counted = if ctx.body.len() < off_runtime {
        bound(&ctx.body, tokenizers)
    } else {
        let (body, tokenizers) = (ctx.body.clone(), tokenizers.to_vec());
        ctx.dp.offload.run(move || bound(&body, &tokenizers)).await.map_err(|e| {
            tracing::error!(error = %e, "bounding a prompt failed");
            ApiError::Internal
        })?
    };
    counted.map_err(ApiError::UnboundedPrompt)
}

/// The model's per-part maxima for multimodal input (none configured: such parts are
/// refused).
fn part_limits(routed: &Routed<'_>) -> PartMaxTokens {
    let p = &routed.route.max_tokens_per_part;
    PartMaxTokens { image: p.image, audio: p.audio, file: p.file }
}
