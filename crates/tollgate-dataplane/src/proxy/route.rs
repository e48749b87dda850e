//! Phase 2, route: the model (an alias resolves to the model that serves it), the key's
//! allowlist, the deployments that can serve this endpoint, the routing policy and plan,
//! the output cap every try forwards, and the first try with its body in the upstream's
//! dialect.

use super::authenticate::Ctx;
use super::{Endpoint, Seen, truncate};
use crate::ApiError;
use crate::enforce::DEFAULT_MAX_OUTPUT_TOKENS;
use crate::snapshot::ProviderEntry;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;
use tollgate_budgets::Budget;
use tollgate_providers::openai::splice_request;
use tollgate_providers::{Dialect, Operation, OutputCap, translate};
use tollgate_routing::{Attempt, GiveUp, ModelRoute, Next, Plan, PolicySubject, RoutingPolicy};

/// A deployment that can serve the request, with its provider and dialect.
#[derive(Clone, Copy)]
pub(super) struct Candidate<'a> {
    pub(super) deployment: &'a tollgate_routing::Deployment,
    pub(super) provider: &'a ProviderEntry,
    pub(super) upstream: Dialect,
}

/// Where a request may go and what it may cost: the route phase's answer.
pub(super) struct Routed<'c> {
    pub(super) route: &'c Arc<ModelRoute>,
    /// By index into the route's deployments: `None` for one that cannot serve this
    /// endpoint (the plan leaves it out).
    pub(super) candidates: Vec<Option<Candidate<'c>>>,
    pub(super) policy: &'c RoutingPolicy,
    pub(super) plan: Plan<'c>,
    /// The budgets that apply to the key.
    pub(super) budgets: Arc<[Arc<Budget>]>,
    /// The output cap every try forwards in its dialect's field, and the reservation is
    /// made for: the caller's (the smallest it gave), else the model's, else
    /// [`DEFAULT_MAX_OUTPUT_TOKENS`]; lowered by a `clamp` budget at admission. 0 for
    /// embeddings.
    pub(super) max_output_tokens: u64,
    /// The first try, its candidate and its body, made before admission.
    pub(super) attempt: Attempt,
    pub(super) first: Candidate<'c>,
    pub(super) first_body: Bytes,
}

/// Resolves the model, checks the allowlist, filters the deployments, builds the plan
/// and picks the first try.
pub(super) fn route<'c>(ctx: &'c Ctx<'_>, seen: &mut Seen) -> Result<Routed<'c>, ApiError> {
    let (snap, key, head) = (&*ctx.snap, &ctx.key, &ctx.head);
    // An alias resolves to the model that serves it; the key may name either.
    let resolved = snap.catalog.lookup(&head.model).ok_or_else(|| ApiError::ModelNotFound(truncate(&head.model)))?;
    let route = resolved.route;
    if let Err(e) = key.check_model(&head.model)
        && (resolved.alias.is_none() || key.check_model(&route.name).is_err())
    {
        return Err(e.into());
    }
    seen.model = Some(route.name.clone());
    let candidates = candidates(ctx, route)?;
    let policy =
        snap.policies.resolve(PolicySubject { key: &key.id, project: &key.project, team: &key.team, org: &key.org });
    let mut plan = Plan::for_resolved(policy, resolved, &snap.health, ctx.started);
    for (i, c) in candidates.iter().enumerate() {
        if c.is_none() {
            plan.exclude(i);
        }
    }
    let budgets = snap.budgets_for(&key.id);
    // Embeddings generate no output tokens; everything else may generate up to its cap,
    // and is told so.
    let max_output_tokens = match ctx.endpoint {
        Endpoint::Embeddings => 0,
        _ => head.smallest_cap().or(route.max_output_tokens).unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
    };
    let (attempt, first_body) = first_try(ctx, &candidates, &mut plan, max_output_tokens)?;
    let Some(first) = candidates[attempt.deployment] else {
        return Err(ApiError::NoUpstream(truncate(&head.model), None));
    };
    seen.provider = Some(first.deployment.provider.clone());
    Ok(Routed { route, candidates, policy, plan, budgets, max_output_tokens, attempt, first, first_body })
}

/// The deployments that can serve this endpoint, by index into the route; an error when
/// none can.
fn candidates<'c>(ctx: &'c Ctx<'_>, route: &'c ModelRoute) -> Result<Vec<Option<Candidate<'c>>>, ApiError> {
    let mut unsupported = false;
    let candidates: Vec<Option<Candidate<'c>>> = route
        .deployments
        .iter()
        .map(|d| {
            let entry = ctx.snap.providers.get(&d.provider)?;
            let kind = entry.provider.kind();
            let upstream = match ctx.endpoint.operation() {
                Operation::ChatCompletions => kind.chat_dialect(),
                op if kind.serves(op) => ctx.caller,
                _ => {
                    unsupported = true;
                    return None;
                }
            };
            Some(Candidate { deployment: d, provider: entry, upstream })
        })
        .collect();
    if candidates.iter().all(Option::is_none) {
        let model = truncate(&ctx.head.model);
        return Err(if unsupported {
            ApiError::Unsupported { model, endpoint: ctx.endpoint.path() }
        } else {
            ApiError::NoUpstream(model, None)
        });
    }
    Ok(candidates)
}

/// The first try, and its body, before admission: a body no usable upstream's dialect
/// can express is the caller's error and must not cost a rate-limit slot; no healthy
/// upstream at all is a 503 that reserves nothing.
fn first_try(
    ctx: &Ctx<'_>,
    candidates: &[Option<Candidate<'_>>],
    plan: &mut Plan<'_>,
    cap: u64,
) -> Result<(Attempt, Bytes), ApiError> {
    let mut next = plan.first(Instant::now(), &mut rand::rng());
    let mut untranslatable = None;
    loop {
        match next {
            Next::Try(a) => match candidates[a.deployment].as_ref().map(|c| ctx.upstream_body(c, cap)) {
                Some(Ok(b)) => return Ok((a, b)),
                Some(Err(e)) => {
                    untranslatable.get_or_insert(e);
                    next = plan.skip(Instant::now(), &mut rand::rng());
                }
                None => next = plan.skip(Instant::now(), &mut rand::rng()),
            },
            Next::GiveUp(why) => {
                // Every deployment cooling down: say when the first may be tried again.
                let wait = match why {
                    GiveUp::NoHealthyUpstream { retry_at: Some(at) } => {
                        Some(at.saturating_duration_since(Instant::now()))
                    }
                    _ => None,
                };
                return Err(untranslatable.unwrap_or_else(|| ApiError::NoUpstream(truncate(&ctx.head.model), wait)));
            }
        }
    }
}

impl Routed<'_> {
    /// The usable deployments, by index into the route.
    pub(super) fn usable(&self) -> impl Iterator<Item = usize> + '_ {
        self.candidates.iter().enumerate().filter(|(_, c)| c.is_some()).map(|(i, _)| i)
    }

    /// Lowers the output cap (a `clamp` budget's), rebuilding the first try's body with it.
    pub(super) fn lower_cap(&mut self, ctx: &Ctx<'_>, cap: u64) -> Result<(), ApiError> {
        if cap < self.max_output_tokens {
            self.max_output_tokens = cap;
            self.first_body = ctx.upstream_body(&self.first, cap)?;
        }
        Ok(())
    }
}

impl Ctx<'_> {
    /// The request body in `c`'s dialect, carrying exactly `cap` as its output cap in
    /// that dialect's field. The same dialect keeps the caller's bytes with only `model`,
    /// the cap and (for an OpenAI chat stream) the usage request spliced, using the head
    /// parsed once per request (which `translate::chat_request` would parse again on
    /// every try); another dialect is a translation.
    pub(super) fn upstream_body(&self, c: &Candidate<'_>, cap: u64) -> Result<Bytes, ApiError> {
        let cap = OutputCap::new(cap, c.provider.provider.kind());
        let model = &c.deployment.upstream_model;
        if c.upstream == self.caller {
            // Every stream is metered: the usage chunk is asked for, and stripped if the
            // caller did not ask for it.
            return Ok(splice_request(&self.body, &self.head, self.caller, model, cap));
        }
        Ok(translate::chat_request(self.caller, c.upstream, &self.body, model, cap)?)
    }
}
