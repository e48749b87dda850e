//! Phase 5, respond and settle: the answer in the caller's dialect (a stream event by
//! event, a whole body read capped and translated), the actual cost committed in place
//! of the reservation, metrics, and the ledger entry finished. A request that got no
//! answer settles here too: nothing charged, the ledger told why.

use super::admit::Admission;
use super::authenticate::Ctx;
use super::dispatch::{Answered, Served, Unanswered, failure_label};
use super::route::Routed;
use super::{Endpoint, Resp, Seen, json_response, truncate};
use crate::ApiError;
use crate::enforce::{Admitted, estimate_tokens, usage_to_charge};
use crate::ledger::Pending;
use crate::metrics::{Metered, Metrics};
use crate::offload::{BodyLease, LARGE_BODY, Offload};
use crate::stream::{SseStream, StreamEnd, StreamFault, StreamOutcome};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::Money;
use tollgate_metering::{Attempt, Usage, UsageSource};
use tollgate_providers::{
    Dialect, InsaneUsage, ProviderError, ProviderErrorKind, ResponseBody, StreamOptions, stream_adapter, translate,
    usage_of,
};
use tollgate_routing::Outcome;

/// Turns what dispatch got into the caller's response and settles the request.
pub(super) async fn respond(
    ctx: &Ctx<'_>,
    routed: Routed<'_>,
    adm: Admission,
    served: Served,
    seen: &mut Seen,
) -> Result<Resp, ApiError> {
    let Admission { mut admitted, mut ledger } = adm;
    let (answer, chosen_index) = match served.result {
        Ok(answered) => answered,
        // Nothing answered: the reservation and permits go back (dropping `admitted`).
        Err(Unanswered::Failed(e)) => {
            drop(admitted);
            if let Some(l) = ledger {
                l.finish(&Usage::default(), UsageSource::Reported, Money::ZERO, status_of(&e));
            }
            return Err(ApiError::Provider(e));
        }
        // Like any refusal before dispatch, nothing is charged and nothing reaches the
        // ledger.
        Err(Unanswered::NotCalled(e)) => {
            drop(admitted);
            return Err(e);
        }
    };
    let Some(chosen) = routed.candidates[chosen_index] else {
        return Err(ApiError::NoUpstream(truncate(&ctx.head.model), None));
    };
    admitted.charge_at(ctx.snap.price_of(&routed.route.name, chosen_index));
    seen.provider = Some(chosen.deployment.provider.clone());
    let trace = ctx.dp.config.trace_attributes;
    if trace {
        seen.served_model = Some(chosen.deployment.upstream_model.clone());
        seen.system = Some(crate::trace::gen_ai_system(chosen.provider.provider.kind()));
    }
    if let Some(l) = ledger.as_mut() {
        l.served_by(chosen.deployment, admitted.priced());
    }
    // Only a stream is judged at its end; a whole answer was judged when it came, and
    // needs no reference count taken on a breaker every request shares.
    let breaker = if answer.event_stream {
        ctx.snap.health.breaker(chosen.deployment).map(|b| StreamHealth {
            breaker: b.clone(),
            policy: *routed.policy.breaker(),
            probe: served.probe,
        })
    } else {
        None
    };
    let exchange = Exchange {
        caller: ctx.caller,
        upstream: chosen.upstream,
        public_model: Arc::from(ctx.head.model.as_str()),
        served_model: chosen.deployment.upstream_model.clone(),
        provider: chosen.deployment.provider.clone(),
        // Kept (a reference count, not a copy) for a tokenizer count if no usage comes back.
        prompt: ctx.body.clone(),
        body_lease: ctx.body_lease.clone(),
        offload: ctx.dp.offload.clone(),
        endpoint: ctx.endpoint,
        started: ctx.started,
        metrics: ctx.dp.metrics.clone(),
        trace,
        admitted,
        ledger,
        breaker,
    };
    if answer.event_stream {
        let strip_usage_chunk = ctx.caller == Dialect::OpenAiChat && !ctx.head.include_usage;
        return exchange.stream(answer.body, answer.content_type, strip_usage_chunk, &ctx.key.id);
    }
    let Answered { status, retry_after, body, .. } = answer;
    let upstream_answer = UpstreamAnswer { status, retry_after, stream: ctx.stream };
    let config = &ctx.dp.config;
    let resp = exchange.whole(upstream_answer, body, config.max_response_bytes, config.upstream.request_timeout).await;
    seen.upstream = served.since.elapsed();
    resp
}

/// What a stream's end tells its deployment's breaker.
struct StreamHealth {
    breaker: Arc<tollgate_routing::Breaker>,
    policy: tollgate_routing::BreakerPolicy,
    probe: Option<tollgate_routing::ProbeLease>,
}

impl StreamHealth {
    fn judge(self, o: &StreamOutcome) {
        let verdict = match o.end {
            StreamEnd::Upstream(fault) => fault_outcome(fault),
            StreamEnd::Completed => Outcome::Success,
            StreamEnd::CallerLeft => {
                if let Some(lease) = self.probe {
                    self.breaker.release(lease);
                }
                return;
            }
        };
        self.breaker.record(&verdict, Instant::now(), &self.policy, self.probe);
    }
}

/// What the routing engine hears of a stream the upstream failed after it had started.
fn fault_outcome(fault: StreamFault) -> Outcome {
    match fault {
        StreamFault::Garbage => Outcome::Malformed,
        StreamFault::Idle | StreamFault::Broken | StreamFault::Reported => {
            Outcome::StreamBroken { after_first_byte: true }
        }
    }
}

/// The upstream's usage report, or `None` (so the gateway counts) when it is not
/// believed: counted in a metric and logged with the provider and the field, never with
/// request or response content.
fn believed(reported: Result<Option<Usage>, InsaneUsage>, metrics: &Metrics, provider: &str) -> Option<Usage> {
    match reported {
        Ok(u) => u,
        Err(e) => {
            metrics.upstream_usage_rejected(provider);
            tracing::warn!(
                provider = %provider,
                field = e.field,
                value = %e.value,
                "upstream usage not believed; charged from the gateway's own token count"
            );
            None
        }
    }
}

/// What the upstream's answer head said, for the whole-body path.
struct UpstreamAnswer {
    status: StatusCode,
    retry_after: Option<HeaderValue>,
    /// The caller asked for a stream (so a complete JSON body is not a valid answer).
    stream: bool,
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
    /// The body's share of the bodies' memory budget, held as long as `prompt` is.
    body_lease: BodyLease,
    /// Where tokenizer counts run: the bounded blocking pool, off the runtime.
    offload: Offload,
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

/// Counts tokens and cost of a settled request (and puts the tokens on the request span
/// when traced).
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
        let (caller, upstream) = (self.caller, self.upstream);
        let options = StreamOptions { public_model: self.public_model.clone(), strip_usage_chunk };
        let adapter = stream_adapter(upstream, caller, options)?;
        let mut headers = HeaderMap::new();
        self.admitted.write_headers(&mut headers);
        let offload = self.offload.clone();
        let on_done = self.on_stream_done(key_id.clone());
        let body = SseStream::new(body, adapter, upstream, caller, on_done).offloaded(offload);
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

    /// What runs when a stream ends (or the caller leaves): first-token time, the
    /// breaker's verdict, and the charge. Runs inside the body's last poll, before its
    /// last frame is handed out, so the ledger entry is finished (and, with a crash-safe
    /// ledger log, written) before the caller's last byte. Only the budget and
    /// rate-limit settlement, which may wait on a counter store, runs after, in its own
    /// task that keeps the request span open (so the span shows the stream's whole life).
    ///
    /// Cost on the response path: nothing extra when the upstream reported believable
    /// usage and finished; otherwise one tokenizer pass over the generated text (capped
    /// at 1 MiB by the adapter) and one over the prompt, run on the bounded blocking
    /// pool ([`SseStream::offloaded`]) while the last frame waits.
    fn on_stream_done(self, key_id: tollgate_core::KeyId) -> Box<dyn FnOnce(StreamOutcome) + Send + Sync> {
        let Exchange {
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
            body_lease,
            ..
        } = self;
        let span = tracing::Span::current();
        Box::new(move |o: StreamOutcome| {
            // The prompt is let go of with the completion; so is its share of the budget.
            let _body_lease = body_lease;
            // The body is polled outside the request span: the charge is recorded on it.
            let entered = span.enter();
            if let Some(first) = o.first_event {
                metrics.time_to_first_token(endpoint.label(), &public_model, &provider, first.duration_since(started));
            }
            if let Some(health) = breaker {
                health.judge(&o);
            }
            let fault = o.fault();
            if let Some(kind) = fault.map(fault_outcome).as_ref().and_then(failure_label) {
                metrics.upstream_error(&provider, kind);
            }
            let completed = o.completed();
            let reported = believed(o.usage, &metrics, &provider);
            // Count what was generated with the model's tokenizer, for when nothing
            // (or, for a cut stream, too little) was reported.
            let output = match &o.generated_text {
                Some(text) if !text.is_empty() => tollgate_metering::tokens::count_tokens(&served_model, text),
                Some(_) if reported.is_some() => 0,
                _ => estimate_tokens(o.bytes_forwarded),
            };
            let (usage, source) =
                usage_to_charge(reported, completed, output, || prompt_tokens(&served_model, &prompt));
            // What `settle` will charge: the ledger needs it now, the counters later.
            let cost = admitted.cost(&usage);
            metered(&metrics, trace, endpoint, &public_model, &provider, &usage, cost);
            // The upstream's failure is the upstream's: 502 with the attempt's outcome;
            // 499 only for a caller that hung up.
            let status = match o.end {
                StreamEnd::Completed => 200,
                StreamEnd::CallerLeft => 499,
                StreamEnd::Upstream(_) => 502,
            };
            if let Some(mut l) = ledger {
                if let Some(f) = fault {
                    l.attempt(Attempt::new(&*provider, &*served_model, f.outcome()));
                }
                l.finish(&usage, source, cost, status);
            }
            tracing::debug!(key = %key_id, model = %public_model, ?usage, ?source, %cost, status, "stream metered");
            drop(entered);
            let settle = async move {
                admitted.settle(&usage, &metrics).await;
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(tracing::Instrument::instrument(settle, span));
                }
                // Dropped outside the runtime (process teardown): nothing can be awaited
                // any more; the ledger has the entry, and the reservation stops counting
                // when its TTL passes.
                Err(_) => tracing::warn!("stream ended outside the runtime; its budget settlement was not committed"),
            }
        })
    }

    /// The upstream broke before its answer was complete: whatever it generated is
    /// charged at the estimate of the reservation's prompt (the output is unknown), never
    /// zero, and the ledger records `status`.
    async fn broken(self, e: ProviderError, status: u16) -> ApiError {
        let Exchange { admitted, ledger, served_model, prompt, offload, metrics, .. } = self;
        let (prompt_n, _) = counted(&offload, served_model, prompt, None).await;
        let (usage, source) = usage_to_charge(None, false, 0, || prompt_n);
        let cost = admitted.settle(&usage, &metrics).await;
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
        // A JSON object, checked whole (serde skims it without building values): a 200
        // that is not valid JSON must never reach the caller as if it were an answer.
        // A large answer is checked on the blocking pool, off the runtime.
        let looks_json = if bytes.len() < LARGE_BODY {
            is_json_object(&bytes)
        } else {
            let whole = bytes.clone();
            self.offload.run(move || is_json_object(&whole)).await.unwrap_or(false)
        };
        if !answer.status.is_success() {
            return self.refused(answer, bytes, looks_json);
        }
        self.answered(answer, bytes, looks_json).await
    }

    /// The upstream refused the request: nothing was generated, nothing is charged
    /// (dropping `admitted` releases the reservation); the ledger still shows it.
    fn refused(self, answer: UpstreamAnswer, bytes: Bytes, looks_json: bool) -> Result<Resp, ApiError> {
        let Exchange { caller, upstream, admitted, ledger, .. } = self;
        let status = answer.status;
        drop(admitted);
        if let Some(l) = ledger {
            l.finish(&Usage::default(), UsageSource::Reported, Money::ZERO, status.as_u16());
        }
        // The platform's own credential was refused: not the caller's key.
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ApiError::UpstreamAuth { status: status.as_u16() });
        }
        // Request errors (4xx) reach the caller with the upstream's status and message,
        // in the caller's dialect (a 429 with the upstream's `retry-after`); upstream
        // failures (5xx) and non-API answers become 502 and never show the upstream's
        // bytes.
        if status.is_client_error() && looks_json {
            let translated =
                if caller == upstream { Some(bytes) } else { translate::error_body(upstream, caller, status, &bytes) };
            if let Some(b) = translated {
                let mut resp = json_response(status, b);
                if let Some(ra) = answer.retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
                    resp.headers_mut().insert(http::header::RETRY_AFTER, ra);
                }
                return Ok(resp);
            }
        }
        Err(ApiError::UpstreamGarbage(format!("HTTP {}", status.as_u16())))
    }

    /// A 2xx answer read whole: charged at the reported usage (or the tokenizer's count),
    /// translated to the caller's dialect.
    async fn answered(self, answer: UpstreamAnswer, bytes: Bytes, looks_json: bool) -> Result<Resp, ApiError> {
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
            offload,
            ..
        } = self;
        // Only when the upstream reported no usage: the prompt and the answer counted with
        // the model's tokenizer, on the blocking pool.
        if !looks_json {
            // A 200 with garbage may still have cost the platform a generation.
            let (prompt_n, answer_n) = counted(&offload, served_model, prompt, Some(bytes.clone())).await;
            let (usage, source) = usage_to_charge(None, true, answer_n, || prompt_n);
            let cost = admitted.settle(&usage, &metrics).await;
            if let Some(l) = ledger {
                l.finish(&usage, source, cost, 502);
            }
            let what = if answer.stream { "not an event stream" } else { "not JSON" };
            return Err(ApiError::UpstreamGarbage(what.into()));
        }
        let reported = believed(usage_of(upstream, &bytes), &metrics, &provider);
        let (usage, source) = match reported {
            Some(u) => usage_to_charge(Some(u), true, 0, || 0),
            None => {
                let (prompt_n, answer_n) = counted(&offload, served_model, prompt, Some(bytes.clone())).await;
                usage_to_charge(None, true, answer_n, || prompt_n)
            }
        };
        let translate = move |bytes: &Bytes, public_model: &str| {
            translate::chat_response(upstream, caller, bytes, public_model)
                .map_err(|e| format!("could not translate the upstream's answer: {e}"))
        };
        let out = if answer.stream {
            // The upstream ignored `stream` and answered whole: what it generated is
            // charged, but a caller reading events cannot take a JSON body.
            Err("a single JSON body instead of an event stream".to_owned())
        } else if caller == upstream {
            Ok(bytes.clone())
        } else if bytes.len() < LARGE_BODY {
            translate(&bytes, &public_model)
        } else {
            // A large answer is translated on the blocking pool, off the runtime.
            let (whole, model) = (bytes.clone(), public_model.clone());
            offload.run(move || translate(&whole, &model)).await.unwrap_or_else(|e| Err(e.to_string()))
        };
        let mut resp = match out {
            Ok(b) => json_response(StatusCode::OK, b),
            Err(why) => {
                // The upstream generated (and billed) something we cannot express.
                let cost = admitted.settle(&usage, &metrics).await;
                if let Some(l) = ledger {
                    l.finish(&usage, source, cost, 502);
                }
                return Err(ApiError::UpstreamGarbage(why));
            }
        };
        admitted.write_headers(resp.headers_mut());
        let cost = admitted.settle(&usage, &metrics).await;
        metered(&metrics, trace, endpoint, &public_model, &provider, &usage, cost);
        if let Some(l) = ledger {
            l.finish(&usage, source, cost, 200);
        }
        tracing::debug!(model = %public_model, input = usage.input_tokens, output = usage.output_tokens, ?source, %cost, "metered");
        Ok(resp)
    }
}

/// The prompt's tokens and, when given, the answer's, counted with the model's tokenizer
/// on the bounded blocking pool (never on a runtime thread). Should the count fail, the
/// body sizes stand in for it (an upper bound of the prompt, a rough count of the answer).
async fn counted(offload: &Offload, model: Arc<str>, prompt: Bytes, answer: Option<Bytes>) -> (u64, u64) {
    let fallback = (prompt.len() as u64, answer.as_ref().map_or(0, |a| estimate_tokens(a.len() as u64)));
    let count = move || {
        let answer =
            answer.map_or(0, |a| tollgate_metering::tokens::count_tokens(&model, &String::from_utf8_lossy(&a)));
        (prompt_tokens(&model, &prompt), answer)
    };
    offload.run(count).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "token count failed; charged from body sizes");
        fallback
    })
}

/// Whether `bytes` is one JSON object, checked whole (serde skims it without building
/// values).
fn is_json_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// The status a failed dispatch is recorded with.
fn status_of(e: &ProviderError) -> u16 {
    ApiError::Provider(e.clone()).status().as_u16()
}
