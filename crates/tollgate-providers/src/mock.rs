//! The `mock` provider: deterministic OpenAI-shaped answers with realistic `usage`,
//! served in-process, so the quickstart and tests need no upstream account.
//!
//! The reply echoes the last user message; prompt tokens are estimated at one token per
//! four bytes of message text plus four per message (about what OpenAI's tokenizers
//! give for English); completion tokens are the words of the reply, capped by the
//! smallest of `max_tokens` and `max_completion_tokens`, with `finish_reason: "length"`
//! when the cap cut the reply. Streams are sent as OpenAI SSE chunks, one word each.

use crate::head::RequestHead;
use crate::registry::Spec;
use crate::{
    BoxFuture, Dialect, HttpClient, Provider, ProviderConfig, ProviderError, ProviderKind, UpstreamRequest,
    UpstreamResponse,
};
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The mock: OpenAI's chat dialect, served in-process (its base URL is a placeholder).
pub(crate) const SPEC: Spec = Spec {
    chat_dialect: Dialect::OpenAiChat,
    default_base_url: Some("mock://"),
    responses_and_embeddings: false,
    chat_cap_field: crate::head::CapField::MaxTokens,
    build,
};

fn build(cfg: Arc<ProviderConfig>, _client: &HttpClient) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(MockProvider::from_config(&cfg)))
}

/// The in-process mock upstream.
#[derive(Debug, Clone, Default)]
pub struct MockProvider {
    latency: Duration,
}

impl MockProvider {
    /// A mock that answers after `latency`.
    pub fn new(latency: Duration) -> Self {
        MockProvider { latency }
    }

    /// Reads `latency_ms` from the provider's extra config.
    pub fn from_config(cfg: &ProviderConfig) -> Self {
        let ms = cfg.extra.get("latency_ms").and_then(Value::as_u64).unwrap_or(0);
        MockProvider::new(Duration::from_millis(ms.min(60_000)))
    }
}

/// The reply, its usage and the finish reason for a request body.
fn answer(body: &[u8]) -> (Vec<String>, u64, &'static str) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let messages = v.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut prompt_bytes = 0usize;
    let mut last_user = String::new();
    for m in messages {
        let text = content_text(m.get("content"));
        prompt_bytes += text.len();
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last_user = text;
        }
    }
    let prompt_tokens = (prompt_bytes as u64).div_ceil(4) + 4 * messages.len() as u64;
    let head = RequestHead::parse(body).ok();
    let cap = head.and_then(|h| h.smallest_cap()).unwrap_or(u64::MAX);
    let echo: Vec<&str> = last_user.split_whitespace().take(32).collect();
    let mut words: Vec<String> =
        "This is a mock response from tollgate. You said:".split(' ').map(str::to_owned).collect();
    words.extend(echo.iter().map(|w| (*w).to_owned()));
    let finish = if words.len() as u64 > cap { "length" } else { "stop" };
    words.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    (words, prompt_tokens, finish)
}

fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// A non-streaming chat completion for `body`, as the mock answers it.
pub fn completion(body: &[u8], model: &str) -> Value {
    let (words, prompt, finish) = answer(body);
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": words.join(" ")}, "finish_reason": finish}],
        "usage": usage(prompt, words.len() as u64),
    })
}

/// The SSE stream for `body`, as the mock sends it.
pub fn stream(body: &[u8], model: &str, include_usage: bool) -> String {
    let (words, prompt, finish) = answer(body);
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut out = String::new();
    let mut push = |v: Value| {
        out.push_str("data: ");
        out.push_str(&v.to_string());
        out.push_str("\n\n");
    };
    push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
    for (i, w) in words.iter().enumerate() {
        let text = if i == 0 { w.clone() } else { format!(" {w}") };
        push(chunk(json!({"content": text}), Value::Null));
    }
    push(chunk(json!({}), json!(finish)));
    if include_usage {
        push(json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [], "usage": usage(prompt, words.len() as u64)}));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

impl Provider for MockProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mock
    }

    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
        let latency = self.latency;
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let (content_type, body) = if req.stream {
                let include_usage = RequestHead::parse(&req.body).map(|h| h.include_usage).unwrap_or(false);
                ("text/event-stream", Bytes::from(stream(&req.body, &req.upstream_model, include_usage)))
            } else {
                ("application/json", Bytes::from(completion(&req.body, &req.upstream_model).to_string()))
            };
            Ok(UpstreamResponse {
                status: http::StatusCode::OK,
                content_type: Some(HeaderValue::from_static(content_type)),
                body: Full::new(body).map_err(|never| match never {}).boxed(),
                retry_after: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::extract_usage;

    const BODY: &[u8] = br#"{"model":"demo","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}]}"#;

    #[test]
    fn answers_are_deterministic_and_carry_usage() {
        let a = completion(BODY, "demo");
        assert_eq!(a, completion(BODY, "demo"));
        assert_eq!(
            a["choices"][0]["message"]["content"],
            "This is a mock response from tollgate. You said: hello there"
        );
        let u = extract_usage(a.to_string().as_bytes()).unwrap();
        // 8 + 11 bytes of text -> 5 tokens, plus 4 per message.
        assert_eq!(u.input_tokens, 13);
        assert_eq!(u.output_tokens, 11);
    }

    #[test]
    fn max_tokens_caps_the_reply() {
        let body = br#"{"model":"demo","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}"#;
        let a = completion(body, "demo");
        assert_eq!(a["usage"]["completion_tokens"], 3);
        assert_eq!(a["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn max_completion_tokens_caps_the_reply_too_and_the_smaller_cap_wins() {
        for body in [
            &br#"{"model":"demo","max_completion_tokens":4,"messages":[{"role":"user","content":"hi"}]}"#[..],
            br#"{"model":"demo","max_completion_tokens":4,"max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#,
            br#"{"model":"demo","max_completion_tokens":9,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}"#,
        ] {
            let a = completion(body, "demo");
            assert_eq!(a["usage"]["completion_tokens"], 4, "{}", String::from_utf8_lossy(body));
            assert_eq!(a["choices"][0]["finish_reason"], "length");
            let s = stream(body, "demo", true);
            assert!(s.contains(r#""finish_reason":"length""#), "{s}");
            assert!(s.contains(r#""completion_tokens":4"#), "{s}");
        }
        // A cap the reply fits in is not a cut: the reply stops on its own.
        let roomy = br#"{"model":"demo","max_completion_tokens":500,"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(completion(roomy, "demo")["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn the_stream_ends_with_usage_when_asked_and_done() {
        let s = stream(BODY, "demo", true);
        assert!(s.ends_with("data: [DONE]\n\n"));
        assert!(s.contains(r#""usage":{"completion_tokens":11"#), "{s}");
        assert!(!stream(BODY, "demo", false).contains("usage"));
    }
}
