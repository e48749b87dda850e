//! Wire dialects, usage extraction from every dialect's bodies and events, and the SSE
//! helpers the stream adapters share.

use crate::{Operation, ProviderKind, Usage};
use serde_json::{Value, json};

/// The wire dialect of a request or response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    OpenAiChat,
    /// Anthropic Messages (`/v1/messages`).
    AnthropicMessages,
    /// Google Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
    /// OpenAI Responses (`/v1/responses`); passed through to OpenAI-dialect upstreams.
    OpenAiResponses,
    /// OpenAI Embeddings (`/v1/embeddings`); passed through to OpenAI-dialect upstreams.
    OpenAiEmbeddings,
}

impl ProviderKind {
    /// The dialect this kind's chat endpoint speaks.
    pub fn chat_dialect(self) -> Dialect {
        match self {
            ProviderKind::Anthropic => Dialect::AnthropicMessages,
            ProviderKind::Gemini => Dialect::Gemini,
            ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible | ProviderKind::Mock => {
                Dialect::OpenAiChat
            }
        }
    }

    /// Whether the kind serves the operation at all: chat everywhere; Responses and
    /// embeddings only at OpenAI-dialect upstreams (not the mock).
    pub fn serves(self, op: Operation) -> bool {
        match op {
            Operation::ChatCompletions => true,
            Operation::Responses | Operation::Embeddings => {
                matches!(self, ProviderKind::OpenAi | ProviderKind::AzureOpenAi | ProviderKind::OpenAiCompatible)
            }
        }
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Usage from an OpenAI chat or embeddings `usage` object.
pub(crate) fn openai_usage(v: &Value) -> Option<Usage> {
    let usage = v.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        input_tokens: u(usage, "prompt_tokens"),
        output_tokens: u(usage, "completion_tokens"),
        cached_input_tokens: usage.get("prompt_tokens_details").map_or(0, |d| u(d, "cached_tokens")),
        reasoning_tokens: usage.get("completion_tokens_details").map_or(0, |d| u(d, "reasoning_tokens")),
        cache_write_tokens: 0,
    })
}

/// Usage from an OpenAI Responses `usage` object (`input_tokens`, `output_tokens`).
pub(crate) fn responses_usage(usage: &Value) -> Option<Usage> {
    if !usage.is_object() {
        return None;
    }
    Some(Usage {
        input_tokens: u(usage, "input_tokens"),
        output_tokens: u(usage, "output_tokens"),
        cached_input_tokens: usage.get("input_tokens_details").map_or(0, |d| u(d, "cached_tokens")),
        reasoning_tokens: usage.get("output_tokens_details").map_or(0, |d| u(d, "reasoning_tokens")),
        cache_write_tokens: 0,
    })
}

/// Usage from an Anthropic `usage` object. Anthropic counts cache reads and writes apart
/// from `input_tokens`; the common shape counts every prompt token in `input_tokens`.
pub(crate) fn anthropic_usage(usage: &Value) -> Option<Usage> {
    if !usage.is_object() {
        return None;
    }
    let (read, write) = (u(usage, "cache_read_input_tokens"), u(usage, "cache_creation_input_tokens"));
    Some(Usage {
        input_tokens: u(usage, "input_tokens").saturating_add(read).saturating_add(write),
        output_tokens: u(usage, "output_tokens"),
        cached_input_tokens: read,
        reasoning_tokens: 0,
        cache_write_tokens: write,
    })
}

/// Usage from Gemini `usageMetadata`: output is candidates plus thoughts.
pub(crate) fn gemini_usage(v: &Value) -> Option<Usage> {
    let m = v.get("usageMetadata").filter(|m| m.is_object())?;
    let thoughts = u(m, "thoughtsTokenCount");
    Some(Usage {
        input_tokens: u(m, "promptTokenCount"),
        output_tokens: u(m, "candidatesTokenCount").saturating_add(thoughts),
        cached_input_tokens: u(m, "cachedContentTokenCount"),
        reasoning_tokens: thoughts,
        cache_write_tokens: 0,
    })
}

/// Reads usage from a complete (non-streaming) response body of the given dialect.
///
/// Runs on every non-streaming answer, so only the usage object is materialized: the
/// rest of the body is validated and skipped, never built into values.
pub fn usage_of(dialect: Dialect, body: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        usage: Option<Value>,
        #[serde(default, rename = "usageMetadata")]
        usage_metadata: Option<Value>,
    }
    let env: Envelope = serde_json::from_slice(body).ok()?;
    match dialect {
        Dialect::OpenAiChat | Dialect::OpenAiEmbeddings => openai_usage(&json!({"usage": env.usage?})),
        Dialect::OpenAiResponses => responses_usage(&env.usage?),
        Dialect::AnthropicMessages => anthropic_usage(&env.usage?),
        Dialect::Gemini => gemini_usage(&json!({"usageMetadata": env.usage_metadata?})),
    }
}

/// One parsed SSE event: its `event:` name (if any) and its `data:` payload (lines
/// joined with `\n`, as the SSE spec says). Comments and other fields are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent<'a> {
    pub(crate) event: Option<&'a str>,
    pub(crate) data: std::borrow::Cow<'a, str>,
}

/// Parses one raw event (its bytes up to and including the blank line). `None` when it
/// carries no data (a comment or keep-alive) or is not UTF-8.
pub(crate) fn parse_event(raw: &[u8]) -> Option<SseEvent<'_>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut event = None;
    let mut data: Option<std::borrow::Cow<'_, str>> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            data = Some(match data {
                None => std::borrow::Cow::Borrowed(v),
                Some(prev) => std::borrow::Cow::Owned(format!("{prev}\n{v}")),
            });
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim());
        }
    }
    data.map(|data| SseEvent { event, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_every_dialect_with_cache_and_reasoning_tokens() {
        let cases: [(Dialect, &str, Usage); 5] = [
            (
                Dialect::OpenAiChat,
                r#"{"usage":{"prompt_tokens":100,"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":60},"completion_tokens_details":{"reasoning_tokens":10}}}"#,
                Usage {
                    input_tokens: 100,
                    output_tokens: 40,
                    cached_input_tokens: 60,
                    reasoning_tokens: 10,
                    cache_write_tokens: 0,
                },
            ),
            (
                Dialect::AnthropicMessages,
                r#"{"usage":{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":300,"output_tokens":7}}"#,
                Usage {
                    input_tokens: 510,
                    output_tokens: 7,
                    cached_input_tokens: 300,
                    reasoning_tokens: 0,
                    cache_write_tokens: 200,
                },
            ),
            (
                Dialect::Gemini,
                r#"{"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":4,"thoughtsTokenCount":20,"cachedContentTokenCount":2}}"#,
                Usage {
                    input_tokens: 8,
                    output_tokens: 24,
                    cached_input_tokens: 2,
                    reasoning_tokens: 20,
                    cache_write_tokens: 0,
                },
            ),
            (
                Dialect::OpenAiResponses,
                r#"{"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":3},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":1}}}"#,
                Usage {
                    input_tokens: 10,
                    output_tokens: 4,
                    cached_input_tokens: 3,
                    reasoning_tokens: 1,
                    cache_write_tokens: 0,
                },
            ),
            (
                Dialect::OpenAiEmbeddings,
                r#"{"usage":{"prompt_tokens":6,"total_tokens":6}}"#,
                Usage { input_tokens: 6, ..Usage::default() },
            ),
        ];
        for (d, body, want) in cases {
            assert_eq!(usage_of(d, body.as_bytes()), Some(want), "{d:?}");
        }
        assert_eq!(usage_of(Dialect::OpenAiChat, b"{}"), None);
        assert_eq!(usage_of(Dialect::OpenAiChat, br#"{"usage":null}"#), None);
        assert_eq!(usage_of(Dialect::AnthropicMessages, br#"{"usage":[1]}"#), None);
        assert_eq!(usage_of(Dialect::Gemini, br#"{"usage":{"prompt_tokens":3}}"#), None, "not Gemini's field");
        assert_eq!(usage_of(Dialect::OpenAiChat, br#"{"usage":{"prompt_tokens":3}} trailing"#), None);
        assert_eq!(usage_of(Dialect::AnthropicMessages, b"<html>"), None);
    }

    #[test]
    fn events_are_parsed_with_names_multiline_data_and_crlf() {
        let e = parse_event(b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n").unwrap();
        assert_eq!((e.event, &*e.data), (Some("message_start"), "{\"a\":1}"));
        let e = parse_event(b"data: a\ndata: b\n\n").unwrap();
        assert_eq!(&*e.data, "a\nb");
        assert_eq!(parse_event(b": ping\n\n"), None);
    }
}
