//! The path every upstream-bound endpoint shares: `/v1/chat/completions`,
//! `/v1/messages`, `/v1/responses` and `/v1/embeddings`, as named phases over one
//! request context ([`authenticate::Ctx`]), each in its own file:
//!
//! 1. [`authenticate()`]: one snapshot → the key (from the headers alone: an unknown,
//!    revoked or expired key is answered before a byte of the body is read) → the body,
//!    capped and within the bodies' memory budget → the request's head (its JSON depth
//!    bounded; a large body parsed off the runtime);
//! 2. [`route()`]: model and alias → allowlist → deployments that serve the endpoint →
//!    routing plan → the output cap → the first try and its body in the upstream's
//!    dialect carrying that cap (the caller's bytes with only `model` and the cap
//!    spliced when both speak the same dialect, a translation otherwise);
//! 3. [`admit()`]: the prompt's token bound → reservation price → rate limits and the
//!    budget reservation of bound + cap (a `clamp` budget may lower the cap) → the
//!    ledger entry started;
//! 4. [`dispatch()`]: tries, fallback, the credentials' own limits, breakers;
//! 5. [`respond()`]: the answer in the caller's dialect (streams event by event) → the
//!    actual cost settled → metrics → the ledger entry finished.
//!
//! A refusal in one phase is the caller's answer; nothing after it runs.

mod admit;
mod authenticate;
mod dispatch;
mod respond;
mod route;

use crate::ledger::CallerPresence;
use crate::offload::{BodyBudget, BodyLease};
use crate::request_id::RequestIds;
use crate::{ApiError, DataPlane, ErrorShape};
use admit::admit;
use authenticate::authenticate;
use bytes::Bytes;
use bytes::BytesMut;
use dispatch::dispatch;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use respond::respond;
use route::route;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tollgate_providers::{Dialect, Operation, ResponseBody};

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

/// Who is asking, apart from the key: the request's ids and whether its caller is still
/// there.
pub(crate) struct Identity<'a> {
    pub(crate) ids: &'a RequestIds,
    pub(crate) presence: CallerPresence,
}

/// The declared `content-length`, when there is a readable one.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// Reads the request body, refusing more than `limit` bytes (413: a larger declared
/// `content-length` before a byte is read, a chunked body as soon as it passes the
/// limit) and more than what is left of the bodies' memory budget (503 `overloaded`:
/// the declared length is taken before a byte is read, a chunked body's frame by frame).
/// The body's share of the budget is held by the returned lease.
pub(crate) async fn read_body<B: http_body::Body<Data = Bytes>>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    budget: &BodyBudget,
) -> Result<(Bytes, BodyLease), ApiError> {
    let mut body = std::pin::pin!(body);
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut taking = budget.take(declared.unwrap_or(0)).map_err(|_| ApiError::Overloaded)?;
    // Declared (and within the limit): allocated once, already paid for.
    let mut buf = BytesMut::with_capacity(taking.taken());
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ApiError::BodyRead)?.into_data() else { continue };
        let total = buf.len() + data.len();
        if total > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        if total > taking.taken() {
            taking.grow(total - taking.taken()).map_err(|_| ApiError::Overloaded)?;
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), taking.lease()))
}

/// Serves one upstream-bound request end to end: the phases in order, each handing the
/// next what it found. A phase's error is the caller's answer (the one mapping to HTTP
/// is in `error.rs`); what was reserved is released when its owner is dropped.
pub(crate) async fn proxy(
    dp: &DataPlane,
    req: Request<Incoming>,
    endpoint: Endpoint,
    identity: &Identity<'_>,
    seen: &mut Seen,
) -> Result<Resp, ApiError> {
    let ctx = authenticate(dp, req, endpoint, identity, seen).await?;
    let mut routed = route(&ctx, seen)?;
    let mut admission = admit(&ctx, &mut routed).await?;
    let served = dispatch(&ctx, &mut routed, &mut admission, seen).await?;
    respond(&ctx, routed, admission, served, seen).await
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
