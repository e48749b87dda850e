//! The data-plane HTTP server: accepting connections, dispatching by path, and the
//! endpoints that never reach an upstream (`/v1/models`, `/v1/key`, health).

use crate::ledger::CallerPresence;
use crate::metrics::Observation;
use crate::proxy::{Endpoint, Identity, Resp, Seen, json_response, proxy};
use crate::request_id::RequestIds;
use crate::{ApiError, DataPlane, ErrorShape};
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_budgets::{Budget, BudgetUsage, Limit};
use tollgate_core::Timestamp;
use tollgate_edge::{ConnHandle, EdgeListener, Tracked};

/// Serves the data plane on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish for the configured grace period. Every phase of every connection is
/// bounded by the listener's limits (a plain `TcpListener` gets the defaults): see
/// `tollgate-edge`. Request bodies carry the listener's [`tollgate_edge::BodyRules`] in their
/// extensions for the body reader to apply.
pub async fn serve(
    dp: Arc<DataPlane>,
    listener: impl Into<EdgeListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = listener.into();
    let builder = tollgate_edge::http_builder(listener.limits(), dp.config.max_header_bytes);
    let rules = listener.limits().body_rules();
    let make = |conn: ConnHandle| {
        let dp = dp.clone();
        service_fn(move |mut req: Request<Incoming>| {
            let request = conn.begin();
            req.extensions_mut().insert(rules);
            let dp = dp.clone();
            async move {
                let Ok(resp) = handle(dp, req).await;
                Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, request)))
            }
        })
    };
    let graceful = tollgate_edge::serve_http(listener, builder, make, shutdown).await;
    let deadline = tokio::time::Instant::now() + dp.config.shutdown_grace;
    // Connections first, then the requests whose callers left but whose upstream calls
    // still run to completion (they are charged when they end).
    let drained = tokio::time::timeout_at(deadline, async {
        graceful.shutdown().await;
        while dp.metrics.inflight_now() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    if drained.await.is_err() {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
    Ok(())
}

async fn handle(dp: Arc<DataPlane>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let ids = RequestIds::from_headers(req.headers());
    let endpoint = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/chat/completions" | "/chat/completions") => Some(Endpoint::Chat),
        (&Method::POST, "/v1/messages" | "/messages") => Some(Endpoint::Messages),
        (&Method::POST, "/v1/responses" | "/responses") => Some(Endpoint::Responses),
        (&Method::POST, "/v1/embeddings" | "/embeddings") => Some(Endpoint::Embeddings),
        _ => None,
    };
    if let Some(endpoint) = endpoint {
        return Ok(upstream_bound(dp, req, endpoint, ids).await);
    }
    let result = match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/models" | "/models") => models(&dp, req.headers()),
        (&Method::GET, "/v1/key") => own_key(&dp, req.headers()).await,
        (&Method::GET, "/healthz") => Ok(json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))),
        (&Method::GET, "/readyz") => Ok(readyz(&dp)),
        (&Method::GET, "/metrics") => Ok(metrics(&dp)),
        (m, p) => Err(ApiError::UnknownEndpoint { method: m.to_string(), path: p.chars().take(128).collect() }),
    };
    let mut resp = result.unwrap_or_else(|e| error_response(&e, ErrorShape::OpenAi, Timestamp::now()));
    ids.write(resp.headers_mut());
    Ok(resp)
}

/// Serves an upstream-bound request in a task of its own, so that once it is dispatched
/// it runs to completion (bounded by the upstream timeouts) and is settled even when the
/// caller hangs up: the provider bills the call either way. The caller leaving is noted
/// (the ledger records 499) but cancels nothing.
async fn upstream_bound(dp: Arc<DataPlane>, req: Request<Incoming>, endpoint: Endpoint, ids: RequestIds) -> Resp {
    let presence = CallerPresence::default();
    let watch = presence.watch();
    let shape = endpoint.error_shape();
    let task = tokio::spawn(served(dp, req, endpoint, ids.clone(), presence));
    let resp = match task.await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(request_id = ids.ours_str(), error = %e, "request task failed");
            let mut resp = error_response(&ApiError::Internal, shape, Timestamp::now());
            ids.write(resp.headers_mut());
            resp
        }
    };
    // The response is handed over: from here a stream's own end tells how it went.
    watch.handed_over();
    resp
}

async fn served(
    dp: Arc<DataPlane>,
    req: Request<Incoming>,
    endpoint: Endpoint,
    ids: RequestIds,
    presence: CallerPresence,
) -> Resp {
    let _inflight = dp.metrics.inflight();
    let started = Instant::now();
    let mut seen = Seen::default();
    // Every log line of the request carries our id (JSON logs: a `span` field).
    let id = ids.ours_str();
    let span = crate::trace::request_span(id, endpoint);
    let request = Identity { ids: &ids, presence };
    let result = tracing::Instrument::instrument(proxy(&dp, req, endpoint, &request, &mut seen), span.clone()).await;
    let error = result.as_ref().err();
    if let Some(e) = error {
        dp.metrics.refused(e);
    }
    let status = match &result {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.status().as_u16(),
    };
    let total = started.elapsed();
    dp.metrics.observe(&Observation {
        endpoint: endpoint.label(),
        model: seen.model.as_deref(),
        provider: seen.provider.as_deref(),
        key: seen.key.as_ref().map(|k| k.as_str()),
        principal: seen.principal.as_deref(),
        status,
        error: error.map(ApiError::code_str),
        total,
        upstream: seen.upstream,
    });
    if dp.config.trace_attributes {
        crate::trace::record_outcome(
            &span,
            id,
            ids.client_str(),
            endpoint,
            &seen,
            status,
            error.map(ApiError::code_str),
        );
    }
    // The access log: one line per request (its id and endpoint come from the span);
    // `TOLLGATE_LOG=info,tollgate::access=off` turns it off.
    span.in_scope(|| {
        tracing::info!(
            target: "tollgate::access",
            status,
            duration_us = u64::try_from(total.as_micros()).unwrap_or(u64::MAX),
            model = seen.model.as_deref().unwrap_or(""),
            provider = seen.provider.as_deref().unwrap_or(""),
            key_id = seen.key.as_ref().map_or("", |k| k.as_str()),
            client_request_id = ids.client_str().unwrap_or(""),
            error = error.map_or("", ApiError::code_str),
            "request"
        );
    });
    let mut resp = result.unwrap_or_else(|e| error_response(&e, endpoint.error_shape(), Timestamp::now()));
    ids.write(resp.headers_mut());
    resp
}

fn metrics(dp: &DataPlane) -> Resp {
    let mut resp = json_response(StatusCode::OK, Bytes::from(dp.render_metrics()));
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(tollgate_telemetry::prometheus::CONTENT_TYPE));
    resp
}

fn readyz(dp: &DataPlane) -> Resp {
    let snap = dp.snapshot();
    let body = format!("{{\"ready\":{},\"revision\":{}}}", snap.loaded, snap.revision);
    let status = if snap.loaded { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, Bytes::from(body))
}

/// The presented key: `Authorization: Bearer`, then `x-api-key` (Anthropic clients),
/// then `api-key` (Azure clients). Empty when none is present.
pub(crate) fn presented_key(headers: &HeaderMap) -> &str {
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
    // Models and aliases; an alias is listed when the key may use it or the model behind it.
    let mut names: Vec<&str> = snap
        .catalog
        .iter_names()
        .filter(|(n, r)| key.models_allowed.allows(n) || key.models_allowed.allows(&r.name))
        .map(|(n, _)| &**n)
        .collect();
    names.sort_unstable();
    let data: Vec<serde_json::Value> = names
        .into_iter()
        .map(|n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "tollgate"}))
        .collect();
    let body = serde_json::json!({"object": "list", "data": data});
    Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
}

fn error_response(e: &ApiError, shape: ErrorShape, now: Timestamp) -> Resp {
    let mut resp = json_response(e.status(), e.body_in(shape));
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
}
