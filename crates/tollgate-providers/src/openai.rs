//! The OpenAI dialect: request-head parsing, the byte-level model rewrite, usage
//! extraction, and the adapter for api.openai.com and OpenAI-compatible base URLs.

use crate::{
    ApiKey, BoxFuture, HttpClient, Operation, Provider, ProviderConfig, ProviderError, ProviderErrorKind, ProviderKind,
    UpstreamRequest, UpstreamResponse, Usage,
};
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Uri};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// Why a request body cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not JSON, not UTF-8, too deeply nested, or a field of the wrong type.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// No `model` field.
    #[error("missing required parameter: 'model'")]
    MissingModel,
    /// `model` is not a non-empty string.
    #[error("'model' must be a non-empty string")]
    BadModel,
}

/// The few fields of an OpenAI-dialect request the gateway acts on. Everything else in
/// the body is passed through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The requested (public) model name.
    pub model: String,
    /// Byte range of the `model` value (including its quotes) inside the body.
    pub model_span: Range<usize>,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens` (OpenAI chat, Anthropic), else
    /// `max_output_tokens` (Responses), if given.
    pub max_output_tokens: Option<u64>,
    /// Whether the caller asked for the usage chunk of a stream.
    pub include_usage: bool,
    /// Whether the body has a `stream_options` field at all.
    pub has_stream_options: bool,
}

#[derive(Deserialize)]
struct RawHead<'a> {
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl RequestHead {
    /// Parses the head of an OpenAI-dialect body. The whole body is validated as JSON
    /// (serde_json bounds nesting depth), but only these fields are materialized.
    pub fn parse(body: &[u8]) -> Result<RequestHead, HeadError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|&b| b != b'{') {
            return Err(HeadError::NotAnObject);
        }
        // serde_json does not check UTF-8 inside fields it skips; JSON must be UTF-8
        // throughout, so check the whole body once (and parse the checked text).
        let text = std::str::from_utf8(body)
            .map_err(|e| HeadError::Json(format!("body is not valid UTF-8 at byte {}", e.valid_up_to())))?;
        let raw: RawHead<'_> = serde_json::from_str(text).map_err(|e| HeadError::Json(e.to_string()))?;
        let model_raw = raw.model.ok_or(HeadError::MissingModel)?;
        let text = model_raw.get();
        let model: Cow<'_, str> = serde_json::from_str(text).map_err(|_| HeadError::BadModel)?;
        if model.is_empty() {
            return Err(HeadError::BadModel);
        }
        // The raw value borrows from `body`, so its address gives its position.
        let start = (text.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        if start > body.len() || start + text.len() > body.len() {
            return Err(HeadError::BadModel);
        }
        Ok(RequestHead {
            model: model.into_owned(),
            model_span: start..start + text.len(),
            stream: raw.stream.unwrap_or(false),
            max_output_tokens: raw.max_completion_tokens.or(raw.max_tokens).or(raw.max_output_tokens),
            has_stream_options: raw.stream_options.is_some(),
            include_usage: raw.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        })
    }
}

/// Replaces the `model` value at `span` with `new_model`, copying nothing when the name
/// is unchanged. The rest of the body is byte-for-byte what the caller sent.
pub fn rewrite_model(body: &Bytes, head: &RequestHead, new_model: &str) -> Bytes {
    if head.model == new_model {
        return body.clone();
    }
    let quoted = match serde_json::to_string(new_model) {
        Ok(q) => q,
        Err(_) => return body.clone(),
    };
    let span = &head.model_span;
    let mut out = Vec::with_capacity(body.len() - span.len() + quoted.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    Bytes::from(out)
}

#[derive(Deserialize)]
struct UsageEnvelope {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
            cache_write_tokens: 0,
        }
    }
}

/// Reads `usage` from an OpenAI-dialect response body (non-streaming), if present.
pub fn extract_usage(body: &[u8]) -> Option<Usage> {
    let env: UsageEnvelope = serde_json::from_slice(body).ok()?;
    env.usage.map(Usage::from)
}

/// Reads `usage` from an already parsed OpenAI-dialect object (e.g. a stream chunk).
pub fn usage_from_value(v: &serde_json::Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    OpenAiUsage::deserialize(u).ok().map(Usage::from)
}

/// Makes a streaming request ask the upstream for the final usage chunk
/// (`stream_options.include_usage`), so every stream can be metered. The body is
/// spliced, not re-serialized, unless the caller sent `stream_options` without it.
pub fn request_stream_usage(body: &Bytes, head: &RequestHead) -> Bytes {
    if head.include_usage {
        return body.clone();
    }
    if !head.has_stream_options {
        let Some(open) = body.iter().position(|&b| b == b'{') else { return body.clone() };
        let inject = br#""stream_options":{"include_usage":true},"#;
        let mut out = Vec::with_capacity(body.len() + inject.len());
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(inject);
        out.extend_from_slice(&body[open + 1..]);
        return Bytes::from(out);
    }
    // Rare: the caller sent stream_options without include_usage; set it in place.
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else { return body.clone() };
    match v.get_mut("stream_options").and_then(|o| o.as_object_mut()) {
        Some(opts) => {
            opts.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
        None => {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
            }
        }
    }
    serde_json::to_vec(&v).map(Bytes::from).unwrap_or_else(|_| body.clone())
}

/// The adapter for api.openai.com and any OpenAI-compatible base URL.
pub struct OpenAiProvider {
    kind: ProviderKind,
    chat_uri: Uri,
    responses_uri: Uri,
    embeddings_uri: Uri,
    auth: Option<HeaderValue>,
    client: HttpClient,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential header is never printed, not even marked sensitive.
        f.debug_struct("OpenAiProvider")
            .field("kind", &self.kind)
            .field("host", &self.chat_uri.host())
            .field("has_credential", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// Prepares the adapter: URLs and the credential header are built once.
    pub fn new(cfg: Arc<ProviderConfig>, client: HttpClient) -> Result<Self, ProviderError> {
        let base = cfg.base_url.trim_end_matches('/');
        let uri = |path: &str| -> Result<Uri, ProviderError> {
            format!("{base}/{path}").parse().map_err(|_| {
                ProviderError::new(ProviderErrorKind::Config, format!("provider {}: invalid base_url", cfg.name))
            })
        };
        Ok(OpenAiProvider {
            kind: cfg.kind,
            chat_uri: uri("chat/completions")?,
            responses_uri: uri("responses")?,
            embeddings_uri: uri("embeddings")?,
            auth: bearer(&cfg.api_key, &cfg.name)?,
            client,
        })
    }
}

pub(crate) fn bearer(key: &ApiKey, provider: &str) -> Result<Option<HeaderValue>, ProviderError> {
    if key.is_empty() {
        return Ok(None);
    }
    let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
        ProviderError::new(
            ProviderErrorKind::Config,
            format!("provider {provider}: api_key is not a valid header value"),
        )
    })?;
    v.set_sensitive(true);
    Ok(Some(v))
}

impl Provider for OpenAiProvider {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
        let uri = match req.operation {
            Operation::ChatCompletions => self.chat_uri.clone(),
            Operation::Responses => self.responses_uri.clone(),
            Operation::Embeddings => self.embeddings_uri.clone(),
        };
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                ACCEPT,
                HeaderValue::from_static(if req.stream { "text/event-stream" } else { "application/json" }),
            );
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let client = self.client.clone();
        let built = builder.body(Full::new(req.body));
        Box::pin(async move {
            let request = built
                .map_err(|e| ProviderError::new(ProviderErrorKind::Config, format!("could not build request: {e}")))?;
            let resp = client.send(request).await?;
            let (parts, body) = resp.into_parts();
            Ok(UpstreamResponse::from_parts(&parts, body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing_finds_the_model_span_and_limits() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}], "model" : "gpt-4o", "max_tokens": 5, "stream": true, "stream_options": {"include_usage": true}, "future_field": {"x": [1,2]}}"#;
        let head = RequestHead::parse(body).unwrap();
        assert_eq!(head.model, "gpt-4o");
        assert_eq!(&body[head.model_span.clone()], br#""gpt-4o""#);
        assert!(head.stream);
        assert!(head.include_usage);
        assert_eq!(head.max_output_tokens, Some(5));
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let head = RequestHead::parse(br#"{"model":"m","max_tokens":5,"max_completion_tokens":7}"#).unwrap();
        assert_eq!(head.max_output_tokens, Some(7));
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        let check = |body: &[u8], want: fn(&HeadError) -> bool| {
            let err = RequestHead::parse(body).unwrap_err();
            assert!(want(&err), "{:?} -> {err:?}", String::from_utf8_lossy(body));
        };
        check(b"", |e| matches!(e, HeadError::Json(_)));
        check(b"{", |e| matches!(e, HeadError::Json(_)));
        check(b"[1]", |e| matches!(e, HeadError::NotAnObject));
        check(b"{}", |e| matches!(e, HeadError::MissingModel));
        check(br#"{"model": 4}"#, |e| matches!(e, HeadError::BadModel));
        check(br#"{"model": ""}"#, |e| matches!(e, HeadError::BadModel));
        check(br#"{"model": "m", "stream": "yes"}"#, |e| matches!(e, HeadError::Json(_)));
        check(br#"{"model": "m", "max_tokens": -1}"#, |e| matches!(e, HeadError::Json(_)));
        check(b"{\"model\": \"\xff\xfe\"}", |e| matches!(e, HeadError::Json(_)));
        check(b"{\"model\": \"m\", \"skipped\": \"\xff\"}", |e| matches!(e, HeadError::Json(_)));
        let unbalanced = format!("{{\"model\":\"m\",\"x\":{}", "[".repeat(100_000));
        check(unbalanced.as_bytes(), |e| matches!(e, HeadError::Json(_)));
    }

    #[test]
    fn deep_nesting_in_pass_through_fields_is_skipped_without_recursion() {
        // Unknown fields are skipped iteratively, so depth cannot overflow the stack;
        // the body is forwarded as is.
        let deep = format!("{{\"model\":\"m\",\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(RequestHead::parse(deep.as_bytes()).unwrap().model, "m");
    }

    #[test]
    fn rewrite_touches_only_the_model_value() {
        let body = Bytes::from_static(br#"{"model":"fast","messages":[],"tools":[{"type":"function"}],"seed":7}"#);
        let head = RequestHead::parse(&body).unwrap();
        let out = rewrite_model(&body, &head, "gpt-4o-mini");
        assert_eq!(&out[..], br#"{"model":"gpt-4o-mini","messages":[],"tools":[{"type":"function"}],"seed":7}"#);
        let same = rewrite_model(&body, &head, "fast");
        assert_eq!(same.as_ptr(), body.as_ptr(), "unchanged model must not copy");
        let escaped = rewrite_model(&body, &head, "a\"b");
        assert!(serde_json::from_slice::<serde_json::Value>(&escaped).is_ok());
    }

    #[test]
    fn streams_are_asked_for_usage_without_touching_the_rest() {
        let body = Bytes::from_static(br#"{"model":"m","stream":true,"messages":[]}"#);
        let out = request_stream_usage(&body, &RequestHead::parse(&body).unwrap());
        assert_eq!(&out[..], br#"{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[]}"#);
        assert!(RequestHead::parse(&out).unwrap().include_usage);

        let asked = Bytes::from_static(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#);
        let out = request_stream_usage(&asked, &RequestHead::parse(&asked).unwrap());
        assert_eq!(out.as_ptr(), asked.as_ptr(), "already asked: no copy");

        let partial =
            Bytes::from_static(br#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}"#);
        let out = request_stream_usage(&partial, &RequestHead::parse(&partial).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"], serde_json::json!({"include_obfuscation": false, "include_usage": true}));
    }

    #[test]
    fn an_escaped_model_name_is_decoded() {
        let head = RequestHead::parse(br#"{"model":"gpt\u002d4o"}"#).unwrap();
        assert_eq!(head.model, "gpt-4o");
    }

    #[test]
    fn usage_is_extracted_with_cached_and_reasoning_tokens() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":100,"completion_tokens":40,"total_tokens":140,
            "prompt_tokens_details":{"cached_tokens":60},"completion_tokens_details":{"reasoning_tokens":10}}}"#;
        assert_eq!(
            extract_usage(body),
            Some(Usage {
                input_tokens: 100,
                output_tokens: 40,
                cached_input_tokens: 60,
                reasoning_tokens: 10,
                cache_write_tokens: 0
            })
        );
        assert_eq!(extract_usage(br#"{"id":"x"}"#), None);
        assert_eq!(extract_usage(b"<html>"), None);
    }
}
