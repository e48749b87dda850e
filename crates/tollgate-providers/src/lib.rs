//! tollgate-providers: the upstream side of the gateway.
//!
//! Owns the [`Provider`] trait and the adapters, one folder per upstream (`openai/` for
//! OpenAI and OpenAI-compatible base URLs, `azure/`, `anthropic/`, `gemini/`, and the
//! in-process `mock`), each holding its request, response and stream translation; the
//! registry mapping each [`ProviderKind`] to its folder ([`build_provider`]); the pooled
//! HTTP client every adapter shares ([`HttpClient`]: hyper-util, rustls, HTTP/2 when
//! offered); the wire [`Dialect`]s and the tables of dialect pairs ([`translate`] for
//! whole request, response and error bodies; [`stream_adapter`] for SSE streams, event by
//! event); [`SseFramer`], the one SSE framer, which the data plane and the golden tests
//! both run, with the rules an upstream event must meet ([`check_event`]) and the error
//! event a broken stream ends with in each caller's dialect ([`stream_error_event`]);
//! parsing of the few request fields the gateway acts on
//! ([`openai::RequestHead`], which serves OpenAI chat, Responses, embeddings and
//! Anthropic bodies alike), the byte-level model rewrite, and the common [`Usage`] shape
//! every dialect's report is mapped to ([`usage_of`], and [`StreamAdapter::usage`] for
//! streams), checked for sanity on the way ([`InsaneUsage`]).
//!
//! Does not own: choosing a provider or falling back (routing, data plane),
//! authenticating callers (keys), pricing (metering), the data plane's HTTP server, or
//! deciding which endpoint a caller used (the data plane names the caller's [`Dialect`]).
//!
//! Invariants:
//! - Provider credentials live in [`ApiKey`], whose `Debug` is redacted; adapters put
//!   them only in their own header (`Authorization`, `x-api-key`, `x-goog-api-key`,
//!   `api-key`), marked sensitive, built once at construction — never in a URL, a log
//!   line or an error message.
//! - A same-dialect body is never re-serialized: only the `model` value and the output
//!   cap are spliced (and, for an OpenAI chat stream, `stream_options.include_usage`
//!   injected); same-dialect
//!   responses and stream events are forwarded byte for byte.
//! - Translation is pure (no I/O) and refuses what it cannot express with a
//!   [`translate::TranslateError`] whose message is safe to show the caller.
//! - Stream adapters emit each translated event as soon as its upstream event arrives;
//!   nothing is buffered beyond one event.
//! - Errors say where they came from and whether a retry may help, and never carry an
//!   upstream body verbatim.
//! - An upstream's usage report is never taken on trust: every count is a non-negative
//!   integer up to [`MAX_REQUEST_TOKENS`] and every part (cached, reasoning) within its
//!   whole, or the report is an [`InsaneUsage`] and nothing is charged from it.
#![forbid(unsafe_code)]

// Shared by every upstream.
mod client;
mod config;
mod dialect;
mod error;
mod head;
mod registry;
mod sse;
mod stream;
pub mod translate;
mod upstream;
mod usage;

// One folder per upstream: its adapter and its request, response and stream translation.
mod anthropic;
mod azure;
mod gemini;
pub mod mock;
pub mod openai;

// The public names of the adapters before they moved into their folders.
pub mod native;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use client::{ClientConfig, HttpClient};
pub use config::{ApiKey, ProviderConfig};
pub use dialect::{Dialect, usage_of};
pub use error::{ErrorOrigin, ProviderError, ProviderErrorKind};
pub use head::{CapField, OutputCap};
pub use registry::{ProviderKind, build_provider};
pub use sse::{BadEvent, EventCheck, SseFramer, check_event, stream_error_event};
pub use stream::{StreamAdapter, StreamOptions, stream_adapter};
pub use usage::{InsaneUsage, MAX_REQUEST_TOKENS, Usage};

/// The body of an upstream response, streamed.
pub type ResponseBody = BoxBody<Bytes, ProviderError>;

/// A boxed future, so providers can sit behind `dyn Provider`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which API operation a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Chat in the provider's own dialect (OpenAI Chat Completions, Anthropic Messages,
    /// Gemini generateContent).
    ChatCompletions,
    /// OpenAI Responses.
    Responses,
    /// OpenAI Embeddings.
    Embeddings,
}

/// One call to an upstream, already in the upstream's dialect.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// The operation.
    pub operation: Operation,
    /// The body to send, with the upstream model name already in place.
    pub body: Bytes,
    /// The upstream's name for the model.
    pub upstream_model: Arc<str>,
    /// Whether the caller asked for a stream.
    pub stream: bool,
}

/// An upstream's answer: status, content type and a streamed body.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// The upstream's HTTP status.
    pub status: http::StatusCode,
    /// The upstream's `content-type`, if any.
    pub content_type: Option<http::HeaderValue>,
    /// The body, as it arrives.
    pub body: ResponseBody,
    /// The upstream's `retry-after` (seconds or an HTTP date), when it sent a sane one:
    /// passed on to the caller with a 429 or 503 so clients back off as told.
    pub retry_after: Option<http::HeaderValue>,
}

impl UpstreamResponse {
    /// The response of an HTTP upstream: status, content type, `retry-after`, body.
    pub fn from_parts(parts: &http::response::Parts, body: ResponseBody) -> Self {
        let retry_after = parts.headers.get(http::header::RETRY_AFTER).filter(|v| sane_retry_after(v)).cloned();
        UpstreamResponse {
            status: parts.status,
            content_type: parts.headers.get(http::header::CONTENT_TYPE).cloned(),
            body,
            retry_after,
        }
    }
}

/// A `retry-after` worth passing on: delta-seconds, or a short printable HTTP date.
fn sane_retry_after(v: &http::HeaderValue) -> bool {
    let b = v.as_bytes();
    let seconds = !b.is_empty() && b.len() <= 9 && b.iter().all(u8::is_ascii_digit);
    let date = (20..=40).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || b" ,:-".contains(c));
    seconds || date
}

/// An upstream LLM API. Implementations are pure translation plus thin I/O.
pub trait Provider: Send + Sync + 'static {
    /// The kind of upstream.
    fn kind(&self) -> ProviderKind;
    /// Sends one request and returns once the response head has arrived.
    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>>;
}

#[cfg(test)]
mod tests {
    use super::sane_retry_after;
    use http::HeaderValue;

    #[test]
    fn only_plain_seconds_or_a_short_http_date_are_passed_on_as_retry_after() {
        for ok in ["0", "30", "86400", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert!(sane_retry_after(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in ["", "-1", "1.5", "9999999999", "<script>alert(1)</script> plus some padding", "30s"] {
            assert!(!sane_retry_after(&HeaderValue::from_static(bad)), "{bad}");
        }
    }
}
