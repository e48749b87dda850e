//! Anthropic answers: whole Messages responses ⇄ OpenAI chat completions, usage in the
//! common shape, and the stop-reason and error-type vocabularies of each side.

use crate::Usage;
use crate::openai::response::{openai_usage, openai_usage_json};
use crate::translate::{now_secs, openai_text};
use crate::usage::{InsaneUsage, count};
use serde_json::{Value, json};

/// Usage from an Anthropic `usage` object. Anthropic counts cache reads and writes apart
/// from `input_tokens`; the common shape counts every prompt token in `input_tokens`.
pub(crate) fn anthropic_usage(usage: &Value) -> Result<Option<Usage>, InsaneUsage> {
    if !usage.is_object() {
        return Ok(None);
    }
    let (read, write) = (count(usage, "cache_read_input_tokens")?, count(usage, "cache_creation_input_tokens")?);
    Usage {
        input_tokens: count(usage, "input_tokens")?.saturating_add(read).saturating_add(write),
        output_tokens: count(usage, "output_tokens")?,
        cached_input_tokens: read,
        reasoning_tokens: 0,
        cache_write_tokens: write,
    }
    .checked()
    .map(Some)
}

/// Anthropic Messages response → OpenAI chat completion shown as `model`.
pub(crate) fn anthropic_to_openai_response(v: &Value, model: &str) -> Value {
    let blocks = v["content"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let text: String = blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| json!({"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": b["input"].to_string()}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    // A report the gateway does not believe is not shown either.
    let usage = v.get("usage").map(anthropic_usage).and_then(Result::ok).flatten().unwrap_or_default();
    json!({
        "id": format!("chatcmpl-{}", v["id"].as_str().unwrap_or("tollgate")),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": openai_finish_reason(v["stop_reason"].as_str().unwrap_or("end_turn"))}],
        "usage": openai_usage_json(&usage),
    })
}

/// OpenAI chat completion → Anthropic Messages response shown as `model`.
pub(crate) fn openai_to_anthropic_response(v: &Value, model: &str) -> Value {
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    let text = openai_text(&msg["content"]);
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg["tool_calls"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let input: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("{}")).unwrap_or(json!({}));
        content.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
    }
    let u = openai_usage(v).ok().flatten().unwrap_or_default();
    json!({
        "id": format!("msg_{}", v["id"].as_str().unwrap_or("tollgate")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": anthropic_stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": {
            "input_tokens": u.input_tokens.saturating_sub(u.cached_input_tokens),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": u.cached_input_tokens,
            "output_tokens": u.output_tokens,
        },
    })
}

/// Anthropic's error `type` for an HTTP status, as its SDKs expect.
pub fn anthropic_error_type(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub(crate) fn openai_finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub(crate) fn anthropic_stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}
