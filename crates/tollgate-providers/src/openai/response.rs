//! OpenAI response shapes: usage read from chat, embeddings and Responses bodies and
//! events, the chat `usage` object written for translated answers, and the error `type`
//! an OpenAI caller expects for an HTTP status.

use crate::Usage;
use crate::usage::{InsaneUsage, count};
use serde::Deserialize;
use serde_json::{Value, json};

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

/// Usage from an OpenAI chat or embeddings `usage` object (`None` when there is none;
/// an [`InsaneUsage`] when a count is not plausible).
pub(crate) fn openai_usage(v: &Value) -> Result<Option<Usage>, InsaneUsage> {
    let Some(usage) = v.get("usage").filter(|u| u.is_object()) else { return Ok(None) };
    let details = |key: &str, field: &'static str| usage.get(key).map_or(Ok(0), |d| count(d, field));
    Usage {
        input_tokens: count(usage, "prompt_tokens")?,
        output_tokens: count(usage, "completion_tokens")?,
        cached_input_tokens: details("prompt_tokens_details", "cached_tokens")?,
        reasoning_tokens: details("completion_tokens_details", "reasoning_tokens")?,
        cache_write_tokens: 0,
    }
    .checked()
    .map(Some)
}

/// Usage from an OpenAI Responses `usage` object (`input_tokens`, `output_tokens`).
pub(crate) fn responses_usage(usage: &Value) -> Result<Option<Usage>, InsaneUsage> {
    if !usage.is_object() {
        return Ok(None);
    }
    let details = |key: &str, field: &'static str| usage.get(key).map_or(Ok(0), |d| count(d, field));
    Usage {
        input_tokens: count(usage, "input_tokens")?,
        output_tokens: count(usage, "output_tokens")?,
        cached_input_tokens: details("input_tokens_details", "cached_tokens")?,
        reasoning_tokens: details("output_tokens_details", "reasoning_tokens")?,
        cache_write_tokens: 0,
    }
    .checked()
    .map(Some)
}

/// The OpenAI `usage` object for a common usage.
pub(crate) fn openai_usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

/// OpenAI's error `type` for an HTTP status.
pub fn openai_error_type(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
