//! The data-plane HTTP server and the request path.

use crate::enforce::{Ask, DEFAULT_MAX_OUTPUT_TOKENS};
use crate::ledger::Pending;
use crate::stream::UsageStream;
use crate::{ApiError, DataPlane};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use std::time::Instant;
use tokio::net::TcpListener;
use tollgate_budgets::{Budget, BudgetUsage, Limit, RateLimits};
use tollgate_core::Money;
use tollgate_core::Timestamp;
use tollgate_metering::{Usage, UsageSource};
use tollgate_providers::openai::{RequestHead, extract_usage, request_stream_usage, rewrite_model};
use tollgate_providers::{Operation, ProviderError, ResponseBody, UpstreamRequest};

type Resp = Response<ResponseBody>;

/// Serves the data plane on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish for the configured grace period.
pub async fn serve(
    dp: Arc<DataPlane>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(dp.config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(dp.config.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let dp = dp.clone();
                let svc = service_fn(move |req| handle(dp.clone(), req));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(dp.config.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
    Ok(())
}

async fn handle(dp: Arc<DataPlane>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let request_id = request_id(req.headers());
    let result = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/chat/completions") => chat_completions(&dp, req, &request_id).await,
        (&Method::GET, "/v1/models") => models(&dp, req.headers()),
        (&Method::GET, "/v1/key") => own_key(&dp, req.headers()).await,
        (&Method::GET, "/healthz") => Ok(json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))),
        (&Method::GET, "/readyz") => Ok(readyz(&dp)),
        (m, p) => Err(ApiError::UnknownEndpoint { method: m.to_string(), path: p.chars().take(128).collect() }),
    };
    let mut resp = result.unwrap_or_else(|e| error_response(&e, Timestamp::now()));
    resp.headers_mut().insert("x-request-id", request_id);
    Ok(resp)
}

fn readyz(dp: &DataPlane) -> Resp {
    let snap = dp.snapshot();
    let body = format!("{{\"ready\":{},\"revision\":{}}}", snap.loaded, snap.revision);
    let status = if snap.loaded { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, Bytes::from(body))
}

/// The caller's `x-request-id` when it is short and printable, else a fresh one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get("x-request-id")
        && !v.is_empty()
        && v.len() <= 128
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("req_{prefix:08x}{n:012x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("req_unknown"))
}

/// The presented key: `Authorization: Bearer`, then `x-api-key` (Anthropic clients),
/// then `api-key` (Azure clients). Empty when none is present.
fn presented_key(headers: &HeaderMap) -> &str {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v.to_str().unwrap_or("");
        let token = v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]).unwrap_or(v);
        return token.trim();
    }
    for name in ["x-api-key", "api-key"] {
        if let Some(v) = headers.get(name) {
            return v.to_str().unwrap_or("").trim();
        }
    }
    ""
}

async fn read_body(headers: &HeaderMap, body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
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

async fn chat_completions(dp: &DataPlane, req: Request<Incoming>, request_id: &HeaderValue) -> Result<Resp, ApiError> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body, dp.config.max_body_bytes).await?;
    let now = Timestamp::now();

    // Everything the request needs from the snapshot is taken here, at one revision.
    let (key, head, deployment, provider, provider_counter, provider_limits, pricing, budgets, default_max_output) = {
        let snap = dp.snapshot();
        if !snap.loaded {
            return Err(ApiError::NotReady);
        }
        let key = snap.keys.authenticate(&snap.hasher, presented_key(&parts.headers), now)?.clone();
        let head = RequestHead::parse(&body)?;
        key.check_model(&head.model)?;
        let route = snap.catalog.get(&head.model).ok_or_else(|| ApiError::ModelNotFound(truncate(&head.model)))?;
        let deployment = route.deployments[0].clone();
        let entry =
            snap.providers.get(&deployment.provider).ok_or_else(|| ApiError::NoUpstream(truncate(&head.model)))?;
        let provider_limits = entry.limits;
        let provider_counter = entry.counter.clone();
        let pricing = snap.prices.get(&head.model).copied();
        let budgets = snap.budgets_for(&key.id);
        (
            key,
            head,
            deployment,
            entry.provider.clone(),
            provider_counter,
            provider_limits,
            pricing,
            budgets,
            route.max_output_tokens,
        )
    };

    let max_output_tokens = head.max_output_tokens.or(default_max_output).unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS);
    let admitted = dp
        .enforcement
        .admit(Ask {
            key_id: key.id.as_str(),
            key_limits: RateLimits {
                rpm: key.limits.rpm,
                tpm: key.limits.tpm,
                max_concurrency: key.limits.max_concurrency,
            },
            provider_counter: &provider_counter,
            provider_limits,
            budgets: &budgets,
            pricing,
            body_len: body.len(),
            max_output_tokens,
            now,
        })
        .await?;

    let ledger = Pending::start(
        dp.ledger(),
        request_id.to_str().unwrap_or("req_unknown"),
        &key,
        &head.model,
        &deployment,
        head.stream,
        started,
    );
    let mut upstream_body = rewrite_model(&body, &head, &deployment.upstream_model);
    if head.stream {
        // Every stream is metered: ask for the usage chunk, strip it if the caller did not.
        upstream_body = request_stream_usage(&upstream_body, &head);
    }
    // A failed dispatch drops `admitted`, which releases the reservation and permits.
    let upstream = provider
        .send(UpstreamRequest {
            operation: Operation::ChatCompletions,
            body: upstream_body,
            upstream_model: deployment.upstream_model.clone(),
            stream: head.stream,
        })
        .await?;

    if head.stream && upstream.status.is_success() {
        let mut headers = HeaderMap::new();
        admitted.write_headers(&mut headers);
        let (key_id, model) = (key.id.clone(), head.model.clone());
        let on_done = Box::new(move |o: crate::stream::StreamOutcome| {
            let (usage, source) = admitted.usage_or_estimate(o.usage, o.bytes_forwarded);
            // The body is done (or the caller left): charge off the response path.
            let charge = async move {
                let cost = admitted.settle(&usage).await;
                if let Some(l) = ledger {
                    l.finish(&usage, source, cost, if o.completed { 200 } else { 499 });
                }
                tracing::debug!(key = %key_id, %model, ?usage, ?source, %cost, completed = o.completed, "stream metered");
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(charge);
                }
                // Dropped outside the runtime (process teardown): nothing can be awaited
                // any more; the reservation stops counting when its TTL passes.
                Err(_) => tracing::warn!("stream ended outside the runtime; its charge was not committed"),
            }
        });
        let body = UsageStream::new(upstream.body, !head.include_usage, on_done);
        let mut resp = Response::new(body.boxed());
        *resp.headers_mut() = headers;
        resp.headers_mut().insert(
            CONTENT_TYPE,
            upstream.content_type.unwrap_or_else(|| HeaderValue::from_static("text/event-stream")),
        );
        return Ok(resp);
    }

    let bytes = match Limited::new(upstream.body, dp.config.max_response_bytes).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            // Whatever the upstream generated before breaking is charged at the estimate
            // of the reservation's prompt (the output is unknown): never zero.
            let (usage, source) = admitted.usage_or_estimate(None, 0);
            let cost = admitted.settle(&usage).await;
            if let Some(l) = ledger {
                l.finish(&usage, source, cost, 502);
            }
            return Err(match e.downcast::<ProviderError>() {
                Ok(pe) => ApiError::Provider(*pe),
                Err(_) => ApiError::UpstreamGarbage("response too large".into()),
            });
        }
    };
    let looks_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !upstream.status.is_success() {
        // The upstream refused the request: nothing was generated, nothing is charged
        // (dropping `admitted` releases the reservation); the ledger still shows it.
        drop(admitted);
        if let Some(l) = ledger {
            l.finish(&Usage::default(), UsageSource::Reported, Money::ZERO, upstream.status.as_u16());
        }
        // Request errors (4xx) reach the caller with the upstream's status and message;
        // upstream failures (5xx) and non-API answers become 502.
        if upstream.status.is_client_error()
            && looks_json
            && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok()
        {
            return Ok(json_response(upstream.status, bytes));
        }
        return Err(ApiError::UpstreamGarbage(format!("HTTP {}", upstream.status.as_u16())));
    }
    if !looks_json {
        // A 200 with garbage may still have cost the platform a generation.
        let (usage, source) = admitted.usage_or_estimate(None, bytes.len() as u64);
        let cost = admitted.settle(&usage).await;
        if let Some(l) = ledger {
            l.finish(&usage, source, cost, 502);
        }
        return Err(ApiError::UpstreamGarbage("not JSON".into()));
    }
    let (usage, source) = admitted.usage_or_estimate(extract_usage(&bytes), bytes.len() as u64);
    let mut resp = json_response(StatusCode::OK, bytes);
    admitted.write_headers(resp.headers_mut());
    let cost = admitted.settle(&usage).await;
    if let Some(l) = ledger {
        l.finish(&usage, source, cost, 200);
    }
    tracing::debug!(key = %key.id, model = %head.model, input = usage.input_tokens, output = usage.output_tokens, ?source, %cost, "metered");
    Ok(resp)
}

/// `GET /v1/key`: the caller's own key — name, allowed models, rate limits, and each
/// budget that applies to it with spend and remaining in the current window. Nothing
/// about any other key.
async fn own_key(dp: &DataPlane, headers: &HeaderMap) -> Result<Resp, ApiError> {
    let now = Timestamp::now();
    let (key, budgets) = {
        let snap = dp.snapshot();
        if !snap.loaded {
            return Err(ApiError::NotReady);
        }
        let key = snap.keys.authenticate(&snap.hasher, presented_key(headers), now)?.clone();
        let budgets = snap.budgets_for(&key.id);
        (key, budgets)
    };
    let mut out = Vec::with_capacity(budgets.len());
    for b in budgets.iter() {
        let usage = dp.enforcement.budgets.usage(b, now).await.map_err(ApiError::Counters)?;
        out.push(budget_json(b, &usage, now));
    }
    let body = serde_json::json!({
        "id": key.id.as_str(),
        "name": key.name,
        "hint": key.hint,
        "project_id": key.project.as_str(),
        "principal": key.principal.as_deref(),
        "expires_at": key.expires_at.map(|t| t.to_rfc3339()),
        "models_allowed": key.models_allowed.patterns().collect::<Vec<_>>(),
        "rate_limits": {
            "rpm": key.limits.rpm,
            "tpm": key.limits.tpm,
            "max_concurrency": key.limits.max_concurrency,
        },
        "budgets": out,
    });
    Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
}

fn budget_json(b: &Budget, usage: &BudgetUsage, now: Timestamp) -> serde_json::Value {
    let (committed, reserved) = (usage.committed, usage.reserved);
    // `usage.limit` is the limit in force now (temporary increase included).
    let (limit, spent, remaining) = match (usage.limit, usage.remaining()) {
        (Limit::Money(limit), Limit::Money(left)) => (
            serde_json::json!({"usd": limit.to_string()}),
            serde_json::json!({"usd": committed.money.to_string(), "reserved_usd": reserved.money.to_string()}),
            serde_json::json!({"usd": left.to_string()}),
        ),
        (limit, left) => (
            serde_json::json!({"tokens": tokens(limit)}),
            serde_json::json!({"tokens": committed.tokens, "reserved_tokens": reserved.tokens}),
            serde_json::json!({"tokens": tokens(left)}),
        ),
    };
    serde_json::json!({
        "id": b.id.as_str(),
        "scope": b.scope.as_str(),
        "scope_id": &*b.scope_id,
        "window": b.window.as_str(),
        "on_breach": b.on_breach.as_str(),
        "limit": limit,
        "spent": spent,
        "remaining": remaining,
        "resets_at": b.resets_at(now).map(|t| t.to_rfc3339()),
    })
}

fn tokens(l: Limit) -> u64 {
    match l {
        Limit::Tokens(t) => t,
        Limit::Money(_) => 0,
    }
}

fn models(dp: &DataPlane, headers: &HeaderMap) -> Result<Resp, ApiError> {
    let snap = dp.snapshot();
    if !snap.loaded {
        return Err(ApiError::NotReady);
    }
    let key = snap.keys.authenticate(&snap.hasher, presented_key(headers), Timestamp::now())?;
    let mut names: Vec<&str> = snap.catalog.iter().map(|r| &*r.name).filter(|n| key.models_allowed.allows(n)).collect();
    names.sort_unstable();
    let data: Vec<serde_json::Value> = names
        .into_iter()
        .map(|n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    let body = serde_json::json!({"object": "list", "data": data});
    Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
}

fn truncate(s: &str) -> String {
    s.chars().take(256).collect()
}

fn json_response(status: StatusCode, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body).map_err(|never: Infallible| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &ApiError, now: Timestamp) -> Resp {
    let mut resp = json_response(e.status(), e.body());
    if let Some((name, value)) = e.headers(now) {
        resp.headers_mut().insert(name, value);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_each_supported_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), "");
        h.insert("api-key", HeaderValue::from_static("azure"));
        assert_eq!(presented_key(&h), "azure");
        h.insert("x-api-key", HeaderValue::from_static("anthropic"));
        assert_eq!(presented_key(&h), "anthropic");
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  openai "));
        assert_eq!(presented_key(&h), "openai");
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_generated_otherwise() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        let generated = request_id(&h);
        assert!(generated.to_str().unwrap().starts_with("req_"));
        assert_ne!(generated, request_id(&HeaderMap::new()));
    }
}
