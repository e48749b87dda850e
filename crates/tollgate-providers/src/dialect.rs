//! Wire dialects, and usage read from a complete body of any of them (each dialect's
//! reader lives in its upstream's folder).

use crate::{Usage, anthropic, gemini, openai};
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
        Dialect::OpenAiChat | Dialect::OpenAiEmbeddings => {
            openai::response::openai_usage(&json!({"usage": env.usage?}))
        }
        Dialect::OpenAiResponses => openai::response::responses_usage(&env.usage?),
        Dialect::AnthropicMessages => anthropic::response::anthropic_usage(&env.usage?),
        Dialect::Gemini => gemini::response::gemini_usage(&json!({"usageMetadata": env.usage_metadata?})),
    }
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
}
