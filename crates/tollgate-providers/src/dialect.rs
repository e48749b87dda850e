//! Wire dialects, and usage read from a complete body of any of them (each dialect's
//! reader lives in its upstream's folder).

use crate::{InsaneUsage, Usage, anthropic, gemini, openai};
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

/// Reads usage from a complete (non-streaming) response body of the given dialect:
/// `Ok(None)` when the body is not JSON or carries no usage object; an [`InsaneUsage`]
/// when it carries one the gateway does not believe (a count that is negative, not an
/// integer, above [`MAX_REQUEST_TOKENS`](crate::MAX_REQUEST_TOKENS), or a part larger
/// than its whole), which the caller charges from its own count instead.
///
/// Runs on every non-streaming answer, so only the usage object is materialized: the
/// rest of the body is validated and skipped, never built into values.
pub fn usage_of(dialect: Dialect, body: &[u8]) -> Result<Option<Usage>, InsaneUsage> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        usage: Option<Value>,
        #[serde(default, rename = "usageMetadata")]
        usage_metadata: Option<Value>,
    }
    let Ok(env) = serde_json::from_slice::<Envelope>(body) else { return Ok(None) };
    match dialect {
        Dialect::OpenAiChat | Dialect::OpenAiEmbeddings => match env.usage {
            Some(u) => openai::response::openai_usage(&json!({ "usage": u })),
            None => Ok(None),
        },
        Dialect::OpenAiResponses => env.usage.map_or(Ok(None), |u| openai::response::responses_usage(&u)),
        Dialect::AnthropicMessages => env.usage.map_or(Ok(None), |u| anthropic::response::anthropic_usage(&u)),
        Dialect::Gemini => match env.usage_metadata {
            Some(m) => gemini::response::gemini_usage(&json!({ "usageMetadata": m })),
            None => Ok(None),
        },
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
            assert_eq!(usage_of(d, body.as_bytes()), Ok(Some(want)), "{d:?}");
        }
        assert_eq!(usage_of(Dialect::OpenAiChat, b"{}"), Ok(None));
        assert_eq!(usage_of(Dialect::OpenAiChat, br#"{"usage":null}"#), Ok(None));
        assert_eq!(usage_of(Dialect::AnthropicMessages, br#"{"usage":[1]}"#), Ok(None));
        assert_eq!(usage_of(Dialect::Gemini, br#"{"usage":{"prompt_tokens":3}}"#), Ok(None), "not Gemini's field");
        assert_eq!(usage_of(Dialect::OpenAiChat, br#"{"usage":{"prompt_tokens":3}} trailing"#), Ok(None));
        assert_eq!(usage_of(Dialect::AnthropicMessages, b"<html>"), Ok(None));
    }

    #[test]
    fn implausible_usage_is_refused_in_every_dialect_naming_the_field() {
        let cases: [(Dialect, &str, &str, &str); 10] = [
            (
                Dialect::OpenAiChat,
                r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1}}"#,
                "prompt_tokens",
                "18446744073709551615",
            ),
            (Dialect::OpenAiChat, r#"{"usage":{"prompt_tokens":5,"completion_tokens":-3}}"#, "completion_tokens", "-3"),
            (Dialect::OpenAiChat, r#"{"usage":{"prompt_tokens":5.5,"completion_tokens":3}}"#, "prompt_tokens", "5.5"),
            (
                Dialect::OpenAiChat,
                r#"{"usage":{"prompt_tokens":5,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":6}}}"#,
                "cached_input_tokens",
                "6 (more than input_tokens 5)",
            ),
            (Dialect::OpenAiEmbeddings, r#"{"usage":{"prompt_tokens":"6"}}"#, "prompt_tokens", "a string"),
            (
                Dialect::OpenAiResponses,
                r#"{"usage":{"input_tokens":1,"output_tokens":1000000001}}"#,
                "output_tokens",
                "1000000001",
            ),
            (
                Dialect::OpenAiResponses,
                r#"{"usage":{"input_tokens":1,"output_tokens":2,"output_tokens_details":{"reasoning_tokens":-1}}}"#,
                "reasoning_tokens",
                "-1",
            ),
            (
                Dialect::AnthropicMessages,
                r#"{"usage":{"input_tokens":10,"cache_read_input_tokens":-10,"output_tokens":7}}"#,
                "cache_read_input_tokens",
                "-10",
            ),
            (
                Dialect::AnthropicMessages,
                r#"{"usage":{"input_tokens":600000000,"cache_creation_input_tokens":600000000,"output_tokens":7}}"#,
                "input_tokens",
                "1200000000",
            ),
            (
                Dialect::Gemini,
                r#"{"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":1e20}}"#,
                "candidatesTokenCount",
                "1e+20",
            ),
        ];
        for (d, body, field, value) in cases {
            let got = usage_of(d, body.as_bytes());
            assert_eq!(got, Err(InsaneUsage { field, value: value.into() }), "{d:?} {body}");
        }
    }
}
