//! The one place data-plane errors become HTTP responses: OpenAI's error shape, or
//! Anthropic's on the Anthropic-dialect endpoint.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use tollgate_budgets::{Exceeded, Limit, RateLimitError, RateLimited, ReserveError};
use tollgate_core::{ErrorCode, ServiceError, Timestamp};
use tollgate_keys::AuthError;
use tollgate_metering::tokens::PromptBoundError;
use tollgate_providers::ProviderError;
use tollgate_providers::openai::HeadError;

/// Everything a data-plane request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body exceeds the configured cap.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The body could not be read from the client.
    #[error("could not read the request body")]
    BodyRead,
    /// Buffered request bodies are at their memory budget: refused at once, not queued;
    /// the caller may retry shortly.
    #[error("the gateway is overloaded; retry shortly")]
    Overloaded,
    /// The body is not a valid request.
    #[error(transparent)]
    BadRequest(#[from] HeadError),
    /// Key missing, malformed, unknown, revoked, expired or not allowed this model.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No deployment serves the model.
    #[error("the model `{0}` does not exist or you do not have access to it")]
    ModelNotFound(String),
    /// No deployment of the model can be called now: none configured usable, or every
    /// one cooling down after failures; then the second field is how long until the
    /// first cooldown ends (the caller's `retry-after`).
    #[error("no healthy upstream for model `{0}`")]
    NoUpstream(String, Option<std::time::Duration>),
    /// The upstream failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The upstream answered with something that is not its API.
    #[error("upstream returned an invalid response ({0})")]
    UpstreamGarbage(String),
    /// The upstream refused the platform's own credential (401 / 403): a gateway
    /// configuration problem, never reported as the caller's authentication failure.
    #[error(
        "the upstream provider refused the gateway's credential (HTTP {status}); the caller's key is fine, the \
         platform must fix the provider configuration"
    )]
    UpstreamAuth {
        /// The upstream's status.
        status: u16,
    },
    /// No route for this method and path.
    #[error("unknown endpoint {method} {path}")]
    UnknownEndpoint {
        /// The request method.
        method: String,
        /// The request path (truncated).
        path: String,
    },
    /// The gateway has no configuration yet.
    #[error("gateway has not loaded its configuration yet")]
    NotReady,
    /// A `block` budget cannot take this request's reservation.
    #[error("{}", budget_message(.0))]
    BudgetExceeded(Box<Exceeded>),
    /// A rate limit of the key or of the provider credential refused the request.
    #[error("rate limit exceeded: {} of this {}; retry after {}s", .0.dimension.as_str(), if *.1 { "provider" } else { "key" }, retry_after_secs(.0))]
    RateLimited(RateLimited, bool),
    /// The model has no price and the key carries a money budget: serving it would
    /// charge $0 silently.
    #[error("the model has no price configured, so it cannot be served to a key with a money budget")]
    Unpriced,
    /// The model's upstream does not serve this endpoint (e.g. embeddings on a chat-only
    /// provider).
    #[error("the model `{model}` does not support {endpoint}")]
    Unsupported {
        /// The requested model.
        model: String,
        /// The endpoint's path.
        endpoint: &'static str,
    },
    /// The prompt cannot be bounded for a reservation: it holds a multimodal part (an
    /// image, audio, a file) of a kind the model has no per-part token maximum for.
    /// Refused rather than under-reserved.
    #[error("{}", unbounded_message(.0))]
    UnboundedPrompt(tollgate_metering::tokens::PromptBoundError),
    /// The request cannot be expressed in the upstream's dialect.
    #[error(transparent)]
    Translate(#[from] tollgate_providers::translate::TranslateError),
    /// The budget or rate-limit counters could not be reached.
    #[error("budget counters are unavailable")]
    Counters(#[source] tollgate_budgets::StoreError),
    /// The gateway failed serving the request (a task panicked); the details are in the
    /// log under the request's id, never in the answer.
    #[error("the gateway failed serving this request")]
    Internal,
}

/// "image input is not accepted for this model: ... (at messages[0].content[1]); the
/// platform can set the model's max_tokens_per_part.image to accept it".
fn unbounded_message(e: &PromptBoundError) -> String {
    match e {
        PromptBoundError::UnboundedPart { kind, .. } => {
            format!("{e}; the platform can set the model's max_tokens_per_part.{kind} to accept it")
        }
        other => other.to_string(),
    }
}

/// Which error shape a response uses: the caller's dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorShape {
    /// `{"error": {"message", "type", "code", "param"}}` (OpenAI, Azure, Responses).
    #[default]
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}` (`/v1/messages`).
    Anthropic,
}

/// "budget exceeded for virtual_key key_1 (budget bud_1): limit $0.01 per day".
fn budget_message(e: &Exceeded) -> String {
    let b = &e.budget;
    let limit = match b.limit {
        Limit::Money(m) => format!("${m}"),
        Limit::Tokens(t) => format!("{t} tokens"),
    };
    let per = match b.window {
        tollgate_core::Window::Total => "in total".to_owned(),
        w => format!("per {w}"),
    };
    format!("budget exceeded for {} {} (budget {}): limit {limit} {per}", b.scope, b.scope_id, b.id)
}

/// Whole seconds to wait, rounded up and at least one.
fn retry_after_secs(r: &RateLimited) -> u64 {
    r.retry_after.as_millis().div_ceil(1000).max(1) as u64
}

impl From<ReserveError> for ApiError {
    fn from(e: ReserveError) -> Self {
        match e {
            ReserveError::Exceeded(x) => ApiError::BudgetExceeded(x),
            ReserveError::Store(s) => ApiError::Counters(s),
        }
    }
}

impl From<RateLimitError> for ApiError {
    fn from(e: RateLimitError) -> Self {
        match e {
            RateLimitError::Limited(r) => ApiError::RateLimited(r, false),
            RateLimitError::Store(s) => ApiError::Counters(s),
        }
    }
}

impl ServiceError for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::BodyTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::BodyRead
            | ApiError::BadRequest(_)
            | ApiError::Unsupported { .. }
            | ApiError::Translate(_)
            | ApiError::UnboundedPrompt(_) => ErrorCode::BadRequest,
            ApiError::Auth(e) => e.code(),
            ApiError::ModelNotFound(_) | ApiError::UnknownEndpoint { .. } => ErrorCode::NotFound,
            ApiError::NoUpstream(..) | ApiError::NotReady => ErrorCode::Unavailable,
            ApiError::Provider(e) => e.code(),
            ApiError::UpstreamGarbage(_) | ApiError::UpstreamAuth { .. } => ErrorCode::Upstream,
            ApiError::BudgetExceeded(_) => ErrorCode::BudgetExceeded,
            ApiError::RateLimited(..) => ErrorCode::RateLimited,
            ApiError::Unpriced => ErrorCode::BadRequest,
            ApiError::Counters(_) | ApiError::Overloaded => ErrorCode::Unavailable,
            ApiError::Internal => ErrorCode::Internal,
        }
    }
}

impl ApiError {
    /// The HTTP status, OpenAI `type` and `code` of this error.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BodyTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "request_too_large")
            }
            ApiError::BodyRead | ApiError::BadRequest(_) | ApiError::Translate(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request_error")
            }
            ApiError::Unsupported { .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", "unsupported_endpoint"),
            ApiError::UnboundedPrompt(_) => (StatusCode::BAD_REQUEST, "invalid_request_error", "unsupported_content"),
            ApiError::Auth(e) => match e {
                AuthError::Missing | AuthError::Malformed(_) | AuthError::Unknown => {
                    (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_api_key")
                }
                AuthError::Revoked => (StatusCode::FORBIDDEN, "permission_error", "virtual_key_revoked"),
                AuthError::Expired => (StatusCode::FORBIDDEN, "permission_error", "virtual_key_expired"),
                AuthError::ModelNotAllowed(_) => (StatusCode::FORBIDDEN, "permission_error", "model_not_allowed"),
            },
            ApiError::ModelNotFound(_) => (StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found"),
            ApiError::UnknownEndpoint { .. } => (StatusCode::NOT_FOUND, "invalid_request_error", "unknown_url"),
            ApiError::NoUpstream(..) => (StatusCode::SERVICE_UNAVAILABLE, "upstream_error", "no_healthy_upstream"),
            ApiError::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "api_error", "not_ready"),
            ApiError::Provider(e) => match e.code() {
                ErrorCode::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_error", "upstream_timeout"),
                ErrorCode::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "api_error", "internal_error"),
                _ => (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_error"),
            },
            ApiError::UpstreamGarbage(_) | ApiError::UpstreamAuth { .. } => {
                (StatusCode::BAD_GATEWAY, "upstream_error", "upstream_error")
            }
            ApiError::BudgetExceeded(_) => (StatusCode::PAYMENT_REQUIRED, "budget_exceeded", "budget_exceeded"),
            ApiError::RateLimited(..) => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "rate_limit_exceeded"),
            ApiError::Unpriced => (StatusCode::BAD_REQUEST, "invalid_request_error", "model_not_priced"),
            ApiError::Counters(_) => (StatusCode::SERVICE_UNAVAILABLE, "api_error", "counters_unavailable"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "api_error", "overloaded"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "api_error", "internal_error"),
        }
    }

    /// Machine-readable detail for `error.meta`.
    fn meta(&self) -> serde_json::Value {
        match self {
            ApiError::BudgetExceeded(e) => {
                let b = &e.budget;
                let (limit_usd, limit_tokens) = match b.limit {
                    Limit::Money(m) => (json!(m.to_string()), serde_json::Value::Null),
                    Limit::Tokens(t) => (serde_json::Value::Null, json!(t)),
                };
                json!({
                    "scope": b.scope.as_str(),
                    "scope_id": &*b.scope_id,
                    "budget_id": b.id.as_str(),
                    "window": b.window.as_str(),
                    "limit_usd": limit_usd,
                    "limit_tokens": limit_tokens,
                    "resets_at": e.resets_at.map(|t| t.to_rfc3339()),
                })
            }
            ApiError::RateLimited(r, provider) => json!({
                "dimension": r.dimension.as_str(),
                "limit_of": if *provider { "provider" } else { "virtual_key" },
                "resets_at": r.resets_at.to_rfc3339(),
                "retry_after_ms": u64::try_from(r.retry_after.as_millis()).unwrap_or(u64::MAX),
            }),
            ApiError::UpstreamAuth { status } => json!({"upstream_status": status}),
            ApiError::NoUpstream(_, Some(wait)) => {
                json!({"retry_after_ms": u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)})
            }
            _ => json!({}),
        }
    }

    /// The machine-readable error code (`budget_exceeded`, `upstream_timeout`, ...).
    pub fn code_str(&self) -> &'static str {
        self.parts().2
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The response body in OpenAI's error shape:
    /// `{"error": {"message", "type", "code", "param", "meta"}}`.
    pub fn body(&self) -> Bytes {
        self.body_in(ErrorShape::OpenAi)
    }

    /// The response body in the given dialect's error shape. Anthropic's is
    /// `{"type": "error", "error": {"type", "message"}}`, with tollgate's `code` and
    /// `meta` added inside `error` (Anthropic clients ignore fields they do not know).
    pub fn body_in(&self, shape: ErrorShape) -> Bytes {
        let (status, kind, code) = self.parts();
        let v = match shape {
            ErrorShape::OpenAi => {
                let param = match self {
                    ApiError::BadRequest(HeadError::MissingModel | HeadError::BadModel) => json!("model"),
                    ApiError::UnboundedPrompt(PromptBoundError::UnboundedPart { path, .. }) => json!(path),
                    _ => serde_json::Value::Null,
                };
                json!({"error": {"message": self.to_string(), "type": kind, "code": code, "param": param, "meta": self.meta()}})
            }
            ErrorShape::Anthropic => json!({
                "type": "error",
                "error": {
                    "type": tollgate_providers::translate::anthropic_error_type(status),
                    "message": self.to_string(),
                    "code": code,
                    "meta": self.meta(),
                },
            }),
        };
        Bytes::from(v.to_string())
    }

    /// Extra headers: `www-authenticate` on 401, `retry-after` on 402, 429, 503
    /// `overloaded` and a 503 whose upstreams are cooling down, when waiting can help.
    pub(crate) fn headers(&self, now: Timestamp) -> Option<(header::HeaderName, HeaderValue)> {
        match self {
            ApiError::Auth(AuthError::Missing | AuthError::Malformed(_) | AuthError::Unknown) => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            ApiError::BudgetExceeded(e) => {
                let reset = e.resets_at?;
                let ms = reset.unix_millis().saturating_sub(now.unix_millis()).max(0) as u64;
                Some((header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1))))
            }
            ApiError::RateLimited(r, _) => Some((header::RETRY_AFTER, HeaderValue::from(retry_after_secs(r)))),
            ApiError::NoUpstream(_, Some(wait)) => {
                let secs = u64::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u64::MAX).max(1);
                Some((header::RETRY_AFTER, HeaderValue::from(secs)))
            }
            // Bodies in flight end within seconds; a second is a fair first wait.
            ApiError::Overloaded => Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: ApiError, status: u16, code: &str) {
        assert_eq!(e.status().as_u16(), status, "{e}");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].is_string());
        assert!(v["error"].get("param").is_some());
    }

    #[test]
    fn each_error_maps_to_the_contracted_status_and_code() {
        check(ApiError::BodyTooLarge { limit: 1 }, 413, "request_too_large");
        check(ApiError::BadRequest(HeadError::MissingModel), 400, "invalid_request_error");
        check(ApiError::Auth(AuthError::Missing), 401, "invalid_api_key");
        check(ApiError::Auth(AuthError::Unknown), 401, "invalid_api_key");
        check(ApiError::Auth(AuthError::Revoked), 403, "virtual_key_revoked");
        check(ApiError::Auth(AuthError::Expired), 403, "virtual_key_expired");
        check(ApiError::Auth(AuthError::ModelNotAllowed("m".into())), 403, "model_not_allowed");
        check(ApiError::ModelNotFound("m".into()), 404, "model_not_found");
        check(ApiError::NoUpstream("m".into(), None), 503, "no_healthy_upstream");
        check(
            ApiError::Provider(ProviderError::new(tollgate_providers::ProviderErrorKind::Connect, "x")),
            502,
            "upstream_error",
        );
        check(
            ApiError::Provider(ProviderError::new(tollgate_providers::ProviderErrorKind::Timeout, "x")),
            504,
            "upstream_timeout",
        );
        check(ApiError::UpstreamGarbage("html".into()), 502, "upstream_error");
        check(ApiError::UpstreamAuth { status: 401 }, 502, "upstream_error");
        check(ApiError::Overloaded, 503, "overloaded");
        let retry = ApiError::Overloaded.headers(Timestamp::now());
        assert_eq!(retry.map(|(n, _)| n), Some(header::RETRY_AFTER));
        let deep = ApiError::BadRequest(HeadError::TooDeep { limit: 128 });
        check(deep, 400, "invalid_request_error");
        let v: serde_json::Value =
            serde_json::from_slice(&ApiError::BadRequest(HeadError::TooDeep { limit: 128 }).body()).unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("depth") && message.contains("128"), "{message}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn the_anthropic_shape_carries_anthropic_types_and_our_code() {
        let cases = [
            (ApiError::Auth(AuthError::Unknown), "authentication_error", "invalid_api_key"),
            (ApiError::Auth(AuthError::Revoked), "permission_error", "virtual_key_revoked"),
            (ApiError::BadRequest(HeadError::MissingModel), "invalid_request_error", "invalid_request_error"),
            (ApiError::BodyTooLarge { limit: 1 }, "request_too_large", "request_too_large"),
            (ApiError::ModelNotFound("m".into()), "not_found_error", "model_not_found"),
            (
                ApiError::Provider(ProviderError::new(tollgate_providers::ProviderErrorKind::Timeout, "x")),
                "timeout_error",
                "upstream_timeout",
            ),
        ];
        for (e, kind, code) in cases {
            let v: serde_json::Value = serde_json::from_slice(&e.body_in(ErrorShape::Anthropic)).unwrap();
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], kind, "{v}");
            assert_eq!(v["error"]["code"], code, "{v}");
            assert_eq!(v["error"]["message"], e.to_string());
        }
    }
}
