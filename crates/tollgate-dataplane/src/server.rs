//! The data-plane HTTP server and the request path.

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
use tokio::net::TcpListener;
use tollgate_core::Timestamp;
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
        (&Method::POST, "/v1/chat/completions") => chat_completions(&dp, req).await,
        (&Method::GET, "/v1/models") => models(&dp, req.headers()),
        (&Method::GET, "/healthz") => Ok(json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))),
        (&Method::GET, "/readyz") => Ok(readyz(&dp)),
        (m, p) => Err(ApiError::UnknownEndpoint { method: m.to_string(), path: p.chars().take(128).collect() }),
    };
    let mut resp = result.unwrap_or_else(|e| error_response(&e));
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

async fn chat_completions(dp: &DataPlane, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body, dp.config.max_body_bytes).await?;

    // Everything the request needs from the snapshot is taken here, at one revision.
    let (key, head, deployment, provider, pricing) = {
        let snap = dp.snapshot();
        if !snap.loaded {
            return Err(ApiError::NotReady);
        }
        let key = snap.keys.authenticate(&snap.hasher, presented_key(&parts.headers), Timestamp::now())?.clone();
        let head = RequestHead::parse(&body)?;
        key.check_model(&head.model)?;
        let route = snap.catalog.get(&head.model).ok_or_else(|| ApiError::ModelNotFound(truncate(&head.model)))?;
        let deployment = route.deployments[0].clone();
        let entry =
            snap.providers.get(&deployment.provider).ok_or_else(|| ApiError::NoUpstream(truncate(&head.model)))?;
        let pricing = snap.prices.get(&head.model).copied();
        (key, head, deployment, entry.provider.clone(), pricing)
    };

    let mut upstream_body = rewrite_model(&body, &head, &deployment.upstream_model);
    if head.stream {
        // Every stream is metered: ask for the usage chunk, strip it if the caller did not.
        upstream_body = request_stream_usage(&upstream_body, &head);
    }
    let upstream = provider
        .send(UpstreamRequest {
            operation: Operation::ChatCompletions,
            body: upstream_body,
            upstream_model: deployment.upstream_model.clone(),
            stream: head.stream,
        })
        .await?;

    if head.stream && upstream.status.is_success() {
        let (key_id, model) = (key.id.clone(), head.model.clone());
        let on_done = Box::new(move |o: crate::stream::StreamOutcome| {
            let cost = match (o.usage, pricing) {
                (Some(u), Some(p)) => Some(p.cost(&u)),
                _ => None,
            };
            tracing::debug!(key = %key_id, model = %model, usage = ?o.usage, ?cost, completed = o.completed, "stream metered");
        });
        let body = UsageStream::new(upstream.body, !head.include_usage, on_done);
        let mut resp = Response::new(body.boxed());
        resp.headers_mut().insert(
            CONTENT_TYPE,
            upstream.content_type.unwrap_or_else(|| HeaderValue::from_static("text/event-stream")),
        );
        return Ok(resp);
    }

    let bytes = match Limited::new(upstream.body, dp.config.max_response_bytes).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Err(match e.downcast::<ProviderError>() {
                Ok(pe) => ApiError::Provider(*pe),
                Err(_) => ApiError::UpstreamGarbage("response too large".into()),
            });
        }
    };
    let looks_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !upstream.status.is_success() {
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
        return Err(ApiError::UpstreamGarbage("not JSON".into()));
    }
    let usage = extract_usage(&bytes);
    if let (Some(u), Some(p)) = (usage, pricing) {
        tracing::debug!(key = %key.id, model = %head.model, input = u.input_tokens, output = u.output_tokens, cost = %p.cost(&u), "metered");
    }
    Ok(json_response(StatusCode::OK, bytes))
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

fn error_response(e: &ApiError) -> Resp {
    let mut resp = json_response(e.status(), e.body());
    if let Some((name, value)) = e.headers() {
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
