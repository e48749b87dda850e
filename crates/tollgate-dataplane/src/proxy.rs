//! The path every upstream-bound endpoint shares: `/v1/chat/completions`,
//! `/v1/messages`, `/v1/responses` and `/v1/embeddings`.
//!
//! read a capped body → one snapshot → authenticate → parse the head → allowlist →
//! route → rate limits and budget reservation → body in the upstream's dialect (the
//! caller's bytes with only `model` spliced when both speak the same dialect, a
//! translation otherwise) → dispatch → the answer in the caller's dialect (streams
//! event by event) → settle the actual cost → ledger entry.

use crate::enforce::{Admitted, Ask, DEFAULT_MAX_OUTPUT_TOKENS, estimate_tokens, input_token_bound, usage_to_charge};
use crate::idle::IdleTimeout;
use crate::ledger::Pending;
use crate::metrics::{Metered, Metrics};
use crate::snapshot::ProviderEntry;
use crate::stream::{Prepend, SseStream, StreamOutcome, could_be_sse, first_data};
use crate::{ApiError, DataPlane, ErrorShape};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_budgets::RateLimits;
use tollgate_core::{Money, Timestamp};
use tollgate_metering::{Attempt, Usage, UsageSource};
use tollgate_providers::openai::{RequestHead, request_stream_usage, rewrite_model};
use tollgate_providers::translate;
use tollgate_providers::{
    Dialect, Operation, ProviderError, ProviderErrorKind, ResponseBody, StreamOptions, UpstreamRequest, stream_adapter,
    usage_of,
};
use tollgate_routing::{GiveUp, Next, Outcome, Plan, PolicySubject};

pub(crate) type Resp = Response<ResponseBody>;

/// An upstream-bound endpoint of the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /v1/chat/completions` (OpenAI).
    Chat,
    /// `POST /v1/messages` (Anthropic).
    Messages,
    /// `POST /v1/responses` (OpenAI Responses; OpenAI-dialect upstreams only).
    Responses,
    /// `POST /v1/embeddings` (OpenAI-dialect upstreams only).
    Embeddings,
}

impl Endpoint {
    /// The dialect callers of this endpoint speak.
    pub(crate) fn dialect(self) -> Dialect {
        match self {
            Endpoint::Chat => Dialect::OpenAiChat,
            Endpoint::Messages => Dialect::AnthropicMessages,
            Endpoint::Responses => Dialect::OpenAiResponses,
            Endpoint::Embeddings => Dialect::OpenAiEmbeddings,
        }
    }

    /// The error shape callers of this endpoint understand.
    pub(crate) fn error_shape(self) -> ErrorShape {
        match self {
            Endpoint::Messages => ErrorShape::Anthropic,
            _ => ErrorShape::OpenAi,
        }
    }

    fn operation(self) -> Operation {
        match self {
            Endpoint::Chat | Endpoint::Messages => Operation::ChatCompletions,
            Endpoint::Responses => Operation::Responses,
            Endpoint::Embeddings => Operation::Embeddings,
        }
    }

    /// The endpoint's metrics label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Messages => "messages",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Messages => "/v1/messages",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }
}

/// What a request revealed about itself on the way, for metrics: filled in as the
/// phases pass, so a refusal still reports how far it got.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) model: Option<Arc<str>>,
    pub(crate) provider: Option<Arc<str>>,
    pub(crate) key: Option<tollgate_core::KeyId>,
    /// The key's principal, only when counted per principal.
    pub(crate) principal: Option<Arc<str>>,
    /// The upstream's name of the model that served, only when traced.
    pub(crate) served_model: Option<Arc<str>>,
    /// `gen_ai.system` of the provider that served, only when traced.
    pub(crate) system: Option<&'static str>,
    /// Time spent waiting on the upstream (head, and the whole body when not streaming).
    pub(crate) upstream: Duration,
}

/// Reads the request body, refusing more than `limit` bytes: a larger declared
/// `content-length` is refused before a byte is read, a chunked body as soon as it
/// passes the limit.
pub(crate) async fn read_body(headers: &HeaderMap, body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::BodyTooLarge { limit })
        }
        Err(_) => Err(ApiError::BodyRead),
    }
}

/// Serves one upstream-bound request end to end.
pub(crate) async fn proxy(
    dp: &DataPlane,
    req: Request<Incoming>,
    endpoint: Endpoint,
    request_id: &HeaderValue,
    seen: &mut Seen,
) -> Result<Resp, ApiError> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body, dp.config.max_body_bytes).await?;
    let now = Timestamp::now();
    let caller = endpoint.dialect();

    // Everything the request needs comes from one snapshot, held (a reference count)
    // until dispatch ends: the routing plan borrows its breakers and policy.
    let snap = dp.snapshot_arc();
    if !snap.loaded {
        return Err(ApiError::NotReady);
    }
    let key = snap.keys.authenticate(&snap.hasher, crate::server::presented_key(&parts.headers), now)?.clone();
    seen.key = Some(key.id.clone());
    if dp.metrics.principal_labels() {
        seen.principal = key.principal.clone();
    }
    let head = RequestHead::parse(&body)?;
    // An alias resolves to the model that serves it; the key may name either.
    let resolved = snap.catalog.lookup(&head.model).ok_or_else(|| ApiError::ModelNotFound(truncate(&head.model)))?;
    let route = resolved.route;
    if let Err(e) = key.check_model(&head.model)
        && (resolved.alias.is_none() || key.check_model(&route.name).is_err())
    {
        return Err(e.into());
    }
    seen.model = Some(route.name.clone());
    // The deployments that can serve this endpoint (by index into the route); the plan
    // leaves the others out.
    let mut unsupported = false;
    let candidates: Vec<Option<Candidate>> = route
        .deployments
        .iter()
        .map(|d| {
            let entry = snap.providers.get(&d.provider)?;
            let kind = entry.provider.kind();
            let upstream = match endpoint.operation() {
                Operation::ChatCompletions => kind.chat_dialect(),
                op if kind.serves(op) => caller,
                _ => {
                    unsupported = true;
                    return None;
                }
            };
            Some(Candidate { deployment: d, provider: entry, upstream })
        })
        .collect();
    if candidates.iter().all(Option::is_none) {
        return Err(if unsupported {
            ApiError::Unsupported { model: truncate(&head.model), endpoint: endpoint.path() }
        } else {
            ApiError::NoUpstream(truncate(&head.model), None)
        });
    }
    let policy =
        snap.policies.resolve(PolicySubject { key: &key.id, project: &key.project, team: &key.team, org: &key.org });
    let mut plan = Plan::for_resolved(policy, resolved, &snap.health, started);
    for (i, c) in candidates.iter().enumerate() {
        if c.is_none() {
            plan.exclude(i);
        }
    }
    let budgets = snap.budgets_for(&key.id);
    let default_max = route.max_output_tokens;
    // Embeddings generate no output tokens; everything else may generate up to its cap.
    let stream = head.stream && endpoint != Endpoint::Embeddings;
    let max_output_tokens = match endpoint {
        Endpoint::Embeddings => 0,
        _ => head.max_output_tokens.or(default_max).unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
    };
    let usable = candidates.iter().enumerate().filter(|(_, c)| c.is_some()).map(|(i, _)| i);
    let pricing = snap.reservation_price(&route.name, usable, input_token_bound(body.len()), max_output_tokens);
    let upstream_body = |c: &Candidate| -> Result<Bytes, ApiError> {
        if c.upstream == caller {
            let spliced = rewrite_model(&body, &head, &c.deployment.upstream_model);
            if stream && caller == Dialect::OpenAiChat {
                // Every stream is metered: ask for the usage chunk, strip it if the caller did not.
                return Ok(request_stream_usage(&spliced, &head));
            }
            return Ok(spliced);
        }
        Ok(translate::chat_request(caller, c.upstream, &body, &c.deployment.upstream_model)?)
    };

    // The first try, and its body, before admission: a body no usable upstream's dialect
    // can express is the caller's error and must not cost a rate-limit slot; no healthy
    // upstream at all is a 503 that reserves nothing.
    let mut next = plan.first(Instant::now(), &mut rand::rng());
    let mut untranslatable = None;
    let (mut attempt, first_body) = loop {
        match next {
            Next::Try(a) => match candidates[a.deployment].as_ref().map(upstream_body) {
                Some(Ok(b)) => break (a, b),
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
                return Err(untranslatable.unwrap_or_else(|| ApiError::NoUpstream(truncate(&head.model), wait)));
            }
        }
    };
    let Some(first) = candidates[attempt.deployment].as_ref() else {
        return Err(ApiError::NoUpstream(truncate(&head.model), None));
    };
    seen.provider = Some(first.deployment.provider.clone());

    let mut admitted = dp
        .enforcement
        .admit(Ask {
            key_id: key.id.as_str(),
            key_limits: RateLimits {
                rpm: key.limits.rpm,
                tpm: key.limits.tpm,
                max_concurrency: key.limits.max_concurrency,
            },
            budgets: &budgets,
            pricing,
            body_len: body.len(),
            max_output_tokens,
            now,
        })
        .await?;

    let mut ledger = Pending::start(
        dp.ledger(),
        request_id.to_str().unwrap_or("req_unknown"),
        &key,
        &head.model,
        first.deployment,
        stream,
        started,
    );
    // Tries as the plan says: the next deployment at once after a retryable failure
    // (connect error, timeout, 429, 5xx, an answer that is not the API), the same ones
    // again after a jittered backoff and the upstream's retry-after, each try with its
    // timeout, never past the policy's deadline. A request error (4xx) is final. A stream
    // is only committed to the caller once its first bytes are in, so it can fall back
    // until then.
    let dispatched = Instant::now();
    let mut prebuilt = Some(first_body);
    let mut last: Option<(Result<Answered, ProviderError>, usize)> = None;
    // A credential whose rate limit refused: the caller's 429 if no deployment answers.
    let mut capped: Option<ApiError> = None;
    // A stream's probe lease, judged when the stream ends.
    let mut stream_probe = None;
    let served = loop {
        // Backoff and the upstream's retry-after come first, so what follows (the
        // credential's permit, the send) happens at the time the try really starts.
        if !attempt.after.is_zero() {
            tokio::time::sleep(attempt.after).await;
        }
        let i = attempt.deployment;
        let ready = match (prebuilt.take(), candidates[i].as_ref()) {
            (Some(b), Some(c)) => Some((b, c)),
            (None, Some(c)) => upstream_body(c).ok().map(|b| (b, c)),
            (_, None) => None,
        };
        // The credential's own rate limits (the platform's rpm / tpm at that provider).
        let ready = match ready {
            Some((b, c)) => {
                let (counter, limits) = (&c.provider.counter, &c.provider.limits);
                match dp.enforcement.acquire_provider(&mut admitted, counter, limits, Timestamp::now()).await {
                    Ok(()) => Some((b, c)),
                    Err(e @ ApiError::RateLimited(..)) => {
                        capped.get_or_insert(e);
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        let Some((req_body, c)) = ready else {
            // This deployment cannot take the request after all; another may.
            match plan.skip(Instant::now(), &mut rand::rng()) {
                Next::Try(a) => {
                    attempt = a;
                    continue;
                }
                Next::GiveUp(_) => break None,
            }
        };
        let request = UpstreamRequest {
            operation: endpoint.operation(),
            body: req_body,
            upstream_model: c.deployment.upstream_model.clone(),
            stream,
        };
        let (outcome, result) = call_upstream(dp, c, request, attempt.timeout).await;
        if outcome.is_success() {
            // A stream's health is told at its end: one that breaks later is a failure,
            // not a success followed by nothing.
            if result.as_ref().is_ok_and(|a| a.event_stream) {
                stream_probe = plan.served_pending();
            } else {
                plan.served(Instant::now());
            }
            break result.ok().map(|a| (a, i));
        }
        // A request error (a 4xx other than 401, 403, 408, 429) is the caller's answer,
        // not the upstream failing.
        if let Some(kind) = failure_label(&outcome) {
            dp.metrics.upstream_error(&c.deployment.provider, kind);
            if let Some(l) = ledger.as_mut() {
                l.attempt(Attempt::new(&*c.deployment.provider, &*c.deployment.upstream_model, kind));
            }
        }
        // The latest failure is what the caller gets if nothing does better; an earlier
        // answer is dropped here, closing its connection.
        last = Some((result, i));
        match plan.after_failure(outcome, Instant::now(), &mut rand::rng()) {
            Next::Try(a) => {
                dp.metrics.fallback(&route.name, &c.deployment.provider);
                attempt = a;
            }
            Next::GiveUp(_) => break None,
        }
    };
    seen.upstream = dispatched.elapsed();
    let (answer, chosen) = match (served, last) {
        (Some(served), _) => served,
        // The upstream's last answer (a 429, a 5xx, a 4xx request error, a page that is
        // not the API) goes to the response phase, which says it in the caller's terms.
        (None, Some((Ok(answer), i))) => (answer, i),
        // Nothing answered: the reservation and permits go back (dropping `admitted`).
        (None, Some((Err(e), _))) => {
            drop(admitted);
            if let Some(l) = ledger {
                l.finish(&Usage::default(), UsageSource::Reported, Money::ZERO, status_of(&e));
            }
            return Err(ApiError::Provider(e));
        }
        (None, None) => {
            // No upstream was called (every credential capped, or none healthy): like any
            // refusal before dispatch, nothing is charged and nothing reaches the ledger.
            drop(admitted);
            return Err(capped.unwrap_or_else(|| ApiError::NoUpstream(truncate(&head.model), None)));
        }
    };
    let chosen_index = chosen;
    let Some(chosen) = candidates[chosen].as_ref() else {
        return Err(ApiError::NoUpstream(truncate(&head.model), None));
    };
    let upstream = chosen.upstream;
    admitted.charge_at(snap.price_of(&route.name, chosen_index));
    seen.provider = Some(chosen.deployment.provider.clone());
    if dp.config.trace_attributes {
        seen.served_model = Some(chosen.deployment.upstream_model.clone());
        seen.system = Some(crate::trace::gen_ai_system(chosen.provider.provider.kind()));
    }
    if let Some(l) = ledger.as_mut() {
        l.served_by(chosen.deployment);
    }

    let exchange = Exchange {
        caller,
        upstream,
        public_model: Arc::from(head.model.as_str()),
        served_model: chosen.deployment.upstream_model.clone(),
        provider: chosen.deployment.provider.clone(),
        // Kept (a reference count, not a copy) for a tokenizer count if no usage comes back.
        prompt: body.clone(),
        endpoint,
        started,
        metrics: dp.metrics.clone(),
        trace: dp.config.trace_attributes,
        admitted,
        ledger,
        // Only a stream is judged at its end; a whole answer was judged when it came, and
        // needs no reference count taken on a breaker every request shares.
        breaker: if answer.event_stream {
            snap.health.breaker(chosen.deployment).map(|b| StreamHealth {
                breaker: b.clone(),
                policy: *policy.breaker(),
                probe: stream_probe,
            })
        } else {
            None
        },
    };
    if answer.event_stream {
        let strip_usage_chunk = caller == Dialect::OpenAiChat && !head.include_usage;
        return exchange.stream(answer.body, answer.content_type, strip_usage_chunk, &key.id);
    }
    let upstream_answer = UpstreamAnswer { status: answer.status, retry_after: answer.retry_after, stream };
    let deadline = dp.config.upstream.request_timeout;
    let resp = exchange.whole(upstream_answer, answer.body, dp.config.max_response_bytes, deadline).await;
    seen.upstream = dispatched.elapsed();
    resp
}

/// One try at one deployment, within `timeout` to the answer's head, and what it means
/// for routing. A stream's first bytes are read here too: an answer that is not an event
/// stream (an HTML page, one JSON body, nothing) is this upstream failing, so the request
/// can still go elsewhere before anything reaches the caller.
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
            answered.event_stream = first.as_deref().is_some_and(could_be_sse);
            answered.body = Prepend::new(first, answered.body).boxed();
            (if answered.event_stream { outcome } else { Outcome::Malformed }, Ok(answered))
        }
    }
}

/// An upstream's answer as the dispatch loop keeps it: the head, and the body wrapped in
/// the idle timeout (for a stream, with its first bytes already read back in front).
struct Answered {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    retry_after: Option<HeaderValue>,
    body: ResponseBody,
    /// A stream whose first bytes open an event stream: forwarded event by event.
    event_stream: bool,
}

/// What the upstream's answer head said, for the whole-body path.
struct UpstreamAnswer {
    status: StatusCode,
    retry_after: Option<HeaderValue>,
    /// The caller asked for a stream (so a complete JSON body is not a valid answer).
    stream: bool,
}

/// A deployment that can serve the request, with its provider and dialect.
struct Candidate<'a> {
    deployment: &'a tollgate_routing::Deployment,
    provider: &'a ProviderEntry,
    upstream: Dialect,
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

/// What a stream's end tells its deployment's breaker.
struct StreamHealth {
    breaker: Arc<tollgate_routing::Breaker>,
    policy: tollgate_routing::BreakerPolicy,
    probe: Option<tollgate_routing::ProbeLease>,
}

impl StreamHealth {
    fn judge(self, o: &StreamOutcome) {
        let verdict = if o.upstream_broke {
            Outcome::StreamBroken { after_first_byte: true }
        } else if o.completed {
            Outcome::Success
        } else {
            if let Some(lease) = self.probe {
                self.breaker.release(lease);
            }
            return;
        };
        self.breaker.record(&verdict, Instant::now(), &self.policy, self.probe);
    }
}

/// The `kind` label of a failed attempt (metrics and the ledger's attempt list), or `None`
/// for a request error, which is an answer rather than a failure. The labels predate the
/// routing engine and dashboards depend on them.
fn failure_label(outcome: &Outcome) -> Option<&'static str> {
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

/// What the response phase needs: dialects, the caller's model name, the admission to
/// settle and the ledger entry to finish.
struct Exchange {
    caller: Dialect,
    upstream: Dialect,
    public_model: Arc<str>,
    /// The upstream's name for the model (picks the tokenizer for estimates).
    served_model: Arc<str>,
    provider: Arc<str>,
    /// The caller's request body.
    prompt: Bytes,
    endpoint: Endpoint,
    started: Instant,
    metrics: Arc<Metrics>,
    /// Record usage on the request span (spans are exported).
    trace: bool,
    admitted: Admitted,
    ledger: Option<Pending>,
    /// A stream's deployment breaker, the policy judging it and the probe lease the
    /// stream holds: the stream's end is its health verdict (finished: success; broken
    /// by the upstream, even after its first bytes: failure; the caller leaving: none).
    breaker: Option<StreamHealth>,
}

/// The prompt's tokens counted with the model's tokenizer: only when the upstream
/// reported no usage.
fn prompt_tokens(model: &str, prompt: &[u8]) -> u64 {
    tollgate_metering::tokens::estimate_prompt_tokens(model, prompt)
}

impl Exchange {
    /// Counts tokens and cost of a settled request (and puts the tokens on the request
    /// span when traced).
    fn metered(
        metrics: &Metrics,
        trace: bool,
        endpoint: Endpoint,
        model: &str,
        provider: &str,
        usage: &Usage,
        cost: Money,
    ) {
        if trace {
            crate::trace::record_usage(usage.input_tokens, usage.output_tokens);
        }
        metrics.metered(
            endpoint.label(),
            model,
            provider,
            Metered {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cached_tokens: usage.cached_input_tokens,
                cost_nanos: u64::try_from(cost.nanos()).unwrap_or(0),
            },
        );
    }
}

impl Exchange {
    /// A successful stream: forwarded event by event in the caller's dialect; charged
    /// when it ends, however it ends.
    fn stream(
        self,
        body: ResponseBody,
        content_type: Option<HeaderValue>,
        strip_usage_chunk: bool,
        key_id: &tollgate_core::KeyId,
    ) -> Result<Resp, ApiError> {
        let Exchange {
            caller,
            upstream,
            public_model,
            served_model,
            provider,
            prompt,
            endpoint,
            started,
            metrics,
            trace,
            admitted,
            ledger,
            breaker,
        } = self;
        let adapter =
            stream_adapter(upstream, caller, StreamOptions { public_model: public_model.clone(), strip_usage_chunk })?;
        let mut headers = HeaderMap::new();
        admitted.write_headers(&mut headers);
        let key_id = key_id.clone();
        // The charge runs after the response head has left, in its own task: it keeps
        // the request span (open until the charge ends, so the span shows the stream's
        // whole life and its usage).
        let span = tracing::Span::current();
        let on_done = Box::new(move |o: StreamOutcome| {
            if let Some(first) = o.first_event {
                metrics.time_to_first_token(endpoint.label(), &public_model, &provider, first.duration_since(started));
            }
            if let Some(health) = breaker {
                health.judge(&o);
            }
            if o.upstream_broke
                && let Some(kind) = failure_label(&Outcome::StreamBroken { after_first_byte: true })
            {
                metrics.upstream_error(&provider, kind);
            }
            // The body is done (or the caller left): charge off the response path.
            let charge = async move {
                // Count what was generated with the model's tokenizer, for when nothing
                // (or, for a cut stream, too little) was reported.
                let output = match &o.generated_text {
                    Some(text) if !text.is_empty() => tollgate_metering::tokens::count_tokens(&served_model, text),
                    Some(_) if o.usage.is_some() => 0,
                    _ => estimate_tokens(o.bytes_forwarded),
                };
                let (usage, source) =
                    usage_to_charge(o.usage, o.completed, output, || prompt_tokens(&served_model, &prompt));
                let cost = admitted.settle(&usage).await;
                Exchange::metered(&metrics, trace, endpoint, &public_model, &provider, &usage, cost);
                if let Some(l) = ledger {
                    l.finish(&usage, source, cost, if o.completed { 200 } else { 499 });
                }
                tracing::debug!(key = %key_id, model = %public_model, ?usage, ?source, %cost, completed = o.completed, "stream metered");
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(tracing::Instrument::instrument(charge, span));
                }
                // Dropped outside the runtime (process teardown): nothing can be awaited
                // any more; the reservation stops counting when its TTL passes.
                Err(_) => tracing::warn!("stream ended outside the runtime; its charge was not committed"),
            }
        });
        let body = SseStream::new(body, adapter, on_done);
        let mut resp = Response::new(body.boxed());
        *resp.headers_mut() = headers;
        let content_type = match content_type {
            Some(ct) if caller == upstream => ct,
            _ => HeaderValue::from_static("text/event-stream"),
        };
        resp.headers_mut().insert(CONTENT_TYPE, content_type);
        resp.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(resp)
    }

    /// The upstream broke before its answer was complete: whatever it generated is
    /// charged at the estimate of the reservation's prompt (the output is unknown), never
    /// zero, and the ledger records `status`.
    async fn broken(self, e: ProviderError, status: u16) -> ApiError {
        let Exchange { admitted, ledger, served_model, prompt, .. } = self;
        let (usage, source) = usage_to_charge(None, false, 0, || prompt_tokens(&served_model, &prompt));
        let cost = admitted.settle(&usage).await;
        if let Some(l) = ledger {
            l.finish(&usage, source, cost, status);
        }
        ApiError::Provider(e)
    }

    /// A complete (non-streaming) answer: read whole (capped), metered, translated.
    async fn whole(
        self,
        answer: UpstreamAnswer,
        body: ResponseBody,
        max_bytes: usize,
        deadline: Duration,
    ) -> Result<Resp, ApiError> {
        let status = answer.status;
        // A body trickled slowly enough to dodge the idle timeout still has a deadline.
        let read = tokio::time::timeout(deadline, Limited::new(body, max_bytes).collect()).await.unwrap_or_else(|_| {
            Err(Box::new(ProviderError::new(ProviderErrorKind::Timeout, "upstream did not finish its answer in time")))
        });
        let bytes = match read {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return Err(match e.downcast::<ProviderError>() {
                    Ok(pe) => self.broken(*pe, 502).await,
                    Err(_) => {
                        let too_large = ProviderError::new(ProviderErrorKind::Malformed, "response too large");
                        self.broken(too_large, 502).await;
                        ApiError::UpstreamGarbage("response too large".into())
                    }
                });
            }
        };
        let Exchange {
            caller,
            upstream,
            public_model,
            served_model,
            provider,
            prompt,
            endpoint,
            metrics,
            trace,
            admitted,
            ledger,
            ..
        } = self;
        // Only when the upstream reported no usage: the prompt and the answer counted with
        // the model's tokenizer.
        let prompt_tokens = || prompt_tokens(&served_model, &prompt);
        let answer_tokens =
            |b: &[u8]| tollgate_metering::tokens::count_tokens(&served_model, &String::from_utf8_lossy(b));
        // A JSON object, checked whole (serde skims it without building values): a 200
        // that is not valid JSON must never reach the caller as if it were an answer.
        let looks_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
        if !status.is_success() {
            // The upstream refused the request: nothing was generated, nothing is
            // charged (dropping `admitted` releases the reservation); the ledger still
            // shows it.
            drop(admitted);
            if let Some(l) = ledger {
                l.finish(&Usage::default(), UsageSource::Reported, Money::ZERO, status.as_u16());
            }
            // The platform's own credential was refused: not the caller's key.
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(ApiError::UpstreamAuth { status: status.as_u16() });
            }
            // Request errors (4xx) reach the caller with the upstream's status and
            // message, in the caller's dialect (a 429 with the upstream's
            // `retry-after`); upstream failures (5xx) and non-API answers become 502 and
            // never show the upstream's bytes.
            if status.is_client_error() && looks_json {
                let translated = if caller == upstream {
                    Some(bytes)
                } else {
                    translate::error_body(upstream, caller, status, &bytes)
                };
                if let Some(b) = translated {
                    let mut resp = json_response(status, b);
                    if let Some(ra) = answer.retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
                        resp.headers_mut().insert(http::header::RETRY_AFTER, ra);
                    }
                    return Ok(resp);
                }
            }
            return Err(ApiError::UpstreamGarbage(format!("HTTP {}", status.as_u16())));
        }
        if !looks_json {
            // A 200 with garbage may still have cost the platform a generation.
            let (usage, source) = usage_to_charge(None, true, answer_tokens(&bytes), prompt_tokens);
            let cost = admitted.settle(&usage).await;
            if let Some(l) = ledger {
                l.finish(&usage, source, cost, 502);
            }
            let what = if answer.stream { "not an event stream" } else { "not JSON" };
            return Err(ApiError::UpstreamGarbage(what.into()));
        }
        let reported = usage_of(upstream, &bytes);
        let counted = if reported.is_some() { 0 } else { answer_tokens(&bytes) };
        let (usage, source) = usage_to_charge(reported, true, counted, prompt_tokens);
        let out = if answer.stream {
            // The upstream ignored `stream` and answered whole: what it generated is
            // charged, but a caller reading events cannot take a JSON body.
            Err("a single JSON body instead of an event stream".to_owned())
        } else if caller == upstream {
            Ok(bytes.clone())
        } else {
            translate::chat_response(upstream, caller, &bytes, &public_model)
                .map_err(|e| format!("could not translate the upstream's answer: {e}"))
        };
        let mut resp = match out {
            Ok(b) => json_response(StatusCode::OK, b),
            Err(why) => {
                // The upstream generated (and billed) something we cannot express.
                let cost = admitted.settle(&usage).await;
                if let Some(l) = ledger {
                    l.finish(&usage, source, cost, 502);
                }
                return Err(ApiError::UpstreamGarbage(why));
            }
        };
        admitted.write_headers(resp.headers_mut());
        let cost = admitted.settle(&usage).await;
        Exchange::metered(&metrics, trace, endpoint, &public_model, &provider, &usage, cost);
        if let Some(l) = ledger {
            l.finish(&usage, source, cost, 200);
        }
        tracing::debug!(model = %public_model, input = usage.input_tokens, output = usage.output_tokens, ?source, %cost, "metered");
        Ok(resp)
    }
}

/// The status a failed dispatch is recorded with.
fn status_of(e: &ProviderError) -> u16 {
    ApiError::Provider(e.clone()).status().as_u16()
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(256).collect()
}

pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body).map_err(|never: Infallible| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
