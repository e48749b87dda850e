//! Gemini answers: `generateContent` responses → OpenAI chat completions, usage in the
//! common shape, and the finish-reason and error-status vocabularies.

use crate::Usage;
use crate::openai::response::openai_usage_json;
use crate::translate::now_secs;
use crate::usage::{InsaneUsage, count};
use serde_json::{Value, json};

/// Usage from Gemini `usageMetadata`: output is candidates plus thoughts.
pub(crate) fn gemini_usage(v: &Value) -> Result<Option<Usage>, InsaneUsage> {
    let Some(m) = v.get("usageMetadata").filter(|m| m.is_object()) else { return Ok(None) };
    let thoughts = count(m, "thoughtsTokenCount")?;
    Usage {
        input_tokens: count(m, "promptTokenCount")?,
        output_tokens: count(m, "candidatesTokenCount")?.saturating_add(thoughts),
        cached_input_tokens: count(m, "cachedContentTokenCount")?,
        reasoning_tokens: thoughts,
        cache_write_tokens: 0,
    }
    .checked()
    .map(Some)
}

/// Gemini `generateContent` response → OpenAI chat completion shown as `model`.
pub(crate) fn gemini_to_openai_response(v: &Value, model: &str) -> Value {
    let choices: Vec<Value> = v["candidates"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let parts = c["content"]["parts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let text: String = parts
                .iter()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p["text"].as_str())
                .collect();
            let calls: Vec<Value> = parts
                .iter()
                .filter_map(|p| p.get("functionCall"))
                .enumerate()
                .map(|(k, fc)| json!({"id": fc.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{k}"), str::to_owned), "type": "function",
                    "function": {"name": fc["name"], "arguments": fc.get("args").map(Value::to_string).unwrap_or_else(|| "{}".into())}}))
                .collect();
            let finish = if calls.is_empty() { gemini_finish_reason(c["finishReason"].as_str().unwrap_or("STOP")) } else { "tool_calls" };
            let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
            let mut message = json!({"role": "assistant", "content": content});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            json!({"index": c.get("index").cloned().unwrap_or(json!(i)), "message": message, "finish_reason": finish})
        })
        .collect();
    // A blocked prompt has no candidates; OpenAI callers still expect one choice.
    let choices = if choices.is_empty() && v["promptFeedback"].get("blockReason").is_some() {
        vec![json!({"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "content_filter"})]
    } else {
        choices
    };
    let usage = gemini_usage(v).ok().flatten().unwrap_or_default();
    json!({
        "id": format!("chatcmpl-{}", v["responseId"].as_str().unwrap_or("tollgate")),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": choices,
        "usage": openai_usage_json(&usage),
    })
}

/// Gemini `finishReason` → OpenAI `finish_reason`.
pub(crate) fn gemini_finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ => "stop",
    }
}

/// Gemini's (Google API) error `status` for an HTTP status.
pub fn gemini_error_status(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        400..=498 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}
