//! Phase 4, dispatch: tries as the routing plan says, each with the credential's own
//! rate limits, its timeout and (for a stream) its first bytes read, falling back to
//! the next deployment after a retryable failure. Knows nothing of the caller's answer.

use super::admit::Admission;
use super::authenticate::Ctx;
use super::route::{Candidate, Routed};
use super::{Seen, truncate};
use crate::enforce::Admitted;
use crate::idle::IdleTimeout;
use crate::stream::{Prepend, first_data, opens_event_stream};
use crate::{ApiError, DataPlane};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tollgate_core::Timestamp;
use tollgate_metering::Attempt;
use tollgate_providers::{ProviderError, ProviderErrorKind, ResponseBody, UpstreamRequest};
use tollgate_routing::{Next, Outcome, ProbeLease};

/// An upstream's answer as the dispatch loop keeps it: the head, and the body wrapped in
/// the idle timeout (for a stream, with its first bytes already read back in front).
pub(super) struct Answered {
    pub(super) status: StatusCode,
    pub(super) content_type: Option<HeaderValue>,
    pub(super) retry_after: Option<HeaderValue>,
    pub(super) body: ResponseBody,
    /// A stream whose first bytes open an event stream: forwarded event by event.
    pub(super) event_stream: bool,
}

/// How dispatch ended.
pub(super) struct Served {
    /// The answer that goes to the response phase and the deployment (index into the
    /// route) that gave it; or why there is none.
    pub(super) result: Result<(Answered, usize), Unanswered>,
    /// A stream's probe lease, judged when the stream ends.
    pub(super) probe: Option<ProbeLease>,
    /// When the first try left: the upstream's share of the request's time.
    pub(super) since: Instant,
}

/// Why no upstream answer is left for the response phase.
pub(super) enum Unanswered {
    /// The last try failed without an answer (connect error, timeout, broken stream).
    Failed(ProviderError),
    /// No upstream was called (every credential capped, or none healthy).
    NotCalled(ApiError),
}

/// Tries as the plan says: the next deployment at once after a retryable failure
/// (connect error, timeout, 429, 5xx, an answer that is not the API), the same ones
/// again after a jittered backoff and the upstream's retry-after, each try with its
/// timeout, never past the policy's deadline. A request error (4xx) is final. A stream
/// is only committed to the caller once its first bytes are in, so it can fall back
/// until then.
pub(super) async fn dispatch(
    ctx: &Ctx<'_>,
    routed: &mut Routed<'_>,
    adm: &mut Admission,
    seen: &mut Seen,
) -> Result<Served, ApiError> {
    let dp = ctx.dp;
    let since = Instant::now();
    let mut attempt = routed.attempt;
    // `Bytes::new()` left behind allocates nothing.
    let mut prebuilt = Some(std::mem::take(&mut routed.first_body));
    let mut last: Option<(Result<Answered, ProviderError>, usize)> = None;
    // A credential whose rate limit refused: the caller's 429 if no deployment answers.
    let mut capped: Option<ApiError> = None;
    let mut probe = None;
    let served = loop {
        // Backoff and the upstream's retry-after come first, so what follows (the
        // credential's permit, the send) happens at the time the try really starts.
        if !attempt.after.is_zero() {
            tokio::time::sleep(attempt.after).await;
        }
        let i = attempt.deployment;
        let candidate = routed.candidates[i];
        let cap = routed.max_output_tokens;
        let ready = permitted(ctx, candidate, prebuilt.take(), cap, &mut adm.admitted, &mut capped).await?;
        let Some((body, c)) = ready else {
            // This deployment cannot take the request after all; another may.
            match routed.plan.skip(Instant::now(), &mut rand::rng()) {
                Next::Try(a) => {
                    attempt = a;
                    continue;
                }
                Next::GiveUp(_) => break None,
            }
        };
        let upstream_model = c.deployment.upstream_model.clone();
        let request = UpstreamRequest { operation: ctx.endpoint.operation(), body, upstream_model, stream: ctx.stream };
        let (outcome, result) = call_upstream(dp, &c, request, attempt.timeout).await;
        if outcome.is_success() {
            // A stream's health is told at its end: one that breaks later is a failure,
            // not a success followed by nothing.
            if result.as_ref().is_ok_and(|a| a.event_stream) {
                probe = routed.plan.served_pending();
            } else {
                routed.plan.served(Instant::now());
            }
            break result.ok().map(|a| (a, i));
        }
        // A request error (a 4xx other than 401, 403, 408, 429) is the caller's answer,
        // not the upstream failing.
        if let Some(kind) = failure_label(&outcome) {
            dp.metrics.upstream_error(&c.deployment.provider, kind);
            if let Some(l) = adm.ledger.as_mut() {
                l.attempt(Attempt::new(&*c.deployment.provider, &*c.deployment.upstream_model, kind));
            }
        }
        // The latest failure is what the caller gets if nothing does better; an earlier
        // answer is dropped here, closing its connection.
        last = Some((result, i));
        match routed.plan.after_failure(outcome, Instant::now(), &mut rand::rng()) {
            Next::Try(a) => {
                dp.metrics.fallback(&routed.route.name, &c.deployment.provider);
                attempt = a;
            }
            Next::GiveUp(_) => break None,
        }
    };
    seen.upstream = since.elapsed();
    let result = match (served, last) {
        (Some(served), _) => Ok(served),
        (None, last) => unserved(ctx, last, capped),
    };
    Ok(Served { result, probe, since })
}

/// What the response phase gets when no try succeeded: the upstream's last answer (a
/// 429, a 5xx, a 4xx request error, a page that is not the API), which it says in the
/// caller's terms; else the last failure; else why nothing was called.
fn unserved(
    ctx: &Ctx<'_>,
    last: Option<(Result<Answered, ProviderError>, usize)>,
    capped: Option<ApiError>,
) -> Result<(Answered, usize), Unanswered> {
    match last {
        Some((Ok(answer), i)) => Ok((answer, i)),
        Some((Err(e), _)) => Err(Unanswered::Failed(e)),
        None => {
            Err(Unanswered::NotCalled(capped.unwrap_or_else(|| ApiError::NoUpstream(truncate(&ctx.head.model), None))))
        }
    }
}

/// A try's body and candidate once the credential's own rate limits (the platform's
/// rpm / tpm at that provider) let it go; `None` when this deployment cannot take the
/// request after all (its body cannot be built, or its credential is capped).
async fn permitted<'c>(
    ctx: &Ctx<'_>,
    candidate: Option<Candidate<'c>>,
    prebuilt: Option<Bytes>,
    cap: u64,
    admitted: &mut Admitted,
    capped: &mut Option<ApiError>,
) -> Result<Option<(Bytes, Candidate<'c>)>, ApiError> {
    let (body, c) = match (prebuilt, candidate) {
        (Some(b), Some(c)) => (b, c),
        (None, Some(c)) => match ctx.upstream_body(&c, cap) {
            Ok(b) => (b, c),
            Err(_) => return Ok(None),
        },
        (_, None) => return Ok(None),
    };
    let (counter, limits) = (&c.provider.counter, &c.provider.limits);
    match ctx.dp.enforcement.acquire_provider(admitted, counter, limits, Timestamp::now()).await {
        Ok(()) => Ok(Some((body, c))),
        Err(e @ ApiError::RateLimited(..)) => {
            capped.get_or_insert(e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One try at one deployment, within `timeout` to the answer's head, and what it means
/// for routing. A stream's first bytes are read here too: an answer that is not a
/// well-formed event stream (an HTML page, one JSON body, a garbled first event, nothing)
/// is this upstream failing, so the request can still go elsewhere before anything
/// reaches the caller.
async fn call_upstream(
    dp: &DataPlane,
    c: &Candidate<'_>,
    request: UpstreamRequest,
    timeout: Duration,
) -> (Outcome, Result<Answered, ProviderError>) {
    let stream = request.stream;
    let sent = tokio::time::timeout(timeout, c.provider.provider.send(request))
        .await
        .unwrap_or_else(|_| Err(ProviderError::new(ProviderErrorKind::Timeout, "the upstream did not answer in time")));
    let a = match sent {
        Ok(a) => a,
        Err(e) => return (outcome_of(&e), Err(e)),
    };
    let retry_after = a.retry_after.as_ref().and_then(retry_after_secs).map(Duration::from_secs);
    let outcome = Outcome::from_status(a.status.as_u16(), retry_after);
    let mut answered = Answered {
        status: a.status,
        content_type: a.content_type,
        retry_after: a.retry_after,
        body: IdleTimeout::new(a.body, dp.config.stream_idle_timeout).boxed(),
        event_stream: false,
    };
    if !(stream && outcome.is_success()) {
        return (outcome, Ok(answered));
    }
    match first_data(&mut answered.body).await {
        Err(e) => (Outcome::StreamBroken { after_first_byte: false }, Err(e)),
        Ok(first) => {
            answered.event_stream = first.as_deref().is_some_and(|f| opens_event_stream(f, c.upstream));
            answered.body = Prepend::new(first, answered.body).boxed();
            (if answered.event_stream { outcome } else { Outcome::Malformed }, Ok(answered))
        }
    }
}

/// The routing engine's view of a failed call.
fn outcome_of(e: &ProviderError) -> Outcome {
    match e.kind {
        ProviderErrorKind::Connect => Outcome::ConnectError,
        ProviderErrorKind::Timeout | ProviderErrorKind::IdleTimeout => Outcome::Timeout,
        // The connection broke before any of the answer reached the caller.
        ProviderErrorKind::Io => Outcome::StreamBroken { after_first_byte: false },
        ProviderErrorKind::Malformed => Outcome::Malformed,
        // The request cannot be built for this upstream (its configuration is wrong): it
        // fails like a 5xx, so another deployment serves and its breaker opens.
        ProviderErrorKind::Config => Outcome::Status(500, None),
    }
}

/// The `kind` label of a failed attempt (metrics and the ledger's attempt list), or `None`
/// for a request error, which is an answer rather than a failure. The labels predate the
/// routing engine and dashboards depend on them.
pub(super) fn failure_label(outcome: &Outcome) -> Option<&'static str> {
    Some(match *outcome {
        Outcome::Success => return None,
        Outcome::ConnectError => "connect",
        Outcome::Timeout => "timeout",
        Outcome::Malformed => "malformed",
        Outcome::StreamBroken { .. } => "io",
        Outcome::Status(429, _) => "rate_limited",
        Outcome::Status(408, _) => "timeout",
        Outcome::Status(401 | 403, _) => "credential_refused",
        Outcome::Status(s, _) if s >= 500 => "upstream_5xx",
        Outcome::Status(..) => return None,
    })
}

/// Whole seconds of a `retry-after` given in seconds (an HTTP date is passed on to the
/// caller but not waited for here).
fn retry_after_secs(v: &HeaderValue) -> Option<u64> {
    v.to_str().ok()?.trim().parse().ok()
}
