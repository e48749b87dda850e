//! Translation of complete bodies between dialects: requests (caller → upstream),
//! successful responses and error bodies (upstream → caller).
//!
//! Pairs: OpenAI chat ⇄ Anthropic Messages, OpenAI chat → Gemini (and its responses
//! back), Anthropic → Gemini by composing through OpenAI chat. When both sides speak the
//! same dialect nothing is re-serialized: only the `model` value is spliced.
//!
//! Dropped on the way (no meaning on the other side): OpenAI `logprobs`, `top_logprobs`,
//! `logit_bias`, `presence_penalty`, `frequency_penalty`, `seed`, `n` (except Gemini's
//! `candidateCount`) and `response_format` when the target is Anthropic; Anthropic
//! `top_k` (kept for Gemini), `thinking` and `cache_control` markers when the target is
//! OpenAI.

use crate::Dialect;
use crate::Usage;
use crate::dialect::{anthropic_usage, gemini_usage, openai_usage};
use crate::openai::{RequestHead, request_stream_usage, rewrite_model};
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// Why a body cannot be translated. The message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranslateError(String);

impl TranslateError {
    fn new(msg: impl Into<String>) -> Self {
        TranslateError(msg.into())
    }

    pub(crate) fn unsupported(from: Dialect, to: Dialect) -> Self {
        TranslateError::new(format!("cannot translate from {from:?} to {to:?}"))
    }
}

/// Output tokens asked of Anthropic when the caller set no cap (Anthropic requires one).
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 4096;

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, TranslateError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(TranslateError::new("request body must be a JSON object")),
        Err(e) => Err(TranslateError::new(format!("invalid JSON body: {e}"))),
    }
}

fn to_bytes(v: &Value) -> Result<Bytes, TranslateError> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| TranslateError::new(format!("could not encode: {e}")))
}

/// Converts a chat request from the caller's dialect to the upstream's, with
/// `upstream_model` in place (for Gemini the model goes in the URL, not the body). An
/// OpenAI-dialect streaming target is asked for usage.
pub fn chat_request(from: Dialect, to: Dialect, body: &Bytes, upstream_model: &str) -> Result<Bytes, TranslateError> {
    use Dialect::*;
    if from == to {
        if from == Gemini {
            // Gemini names the model in the URL; the body has nothing to splice.
            return Ok(body.clone());
        }
        let head = RequestHead::parse(body).map_err(|e| TranslateError::new(e.to_string()))?;
        let spliced = rewrite_model(body, &head, upstream_model);
        if from == OpenAiChat && head.stream {
            // Every stream is metered: ask for the usage chunk (spliced, not re-serialized).
            return Ok(request_stream_usage(&spliced, &head));
        }
        return Ok(spliced);
    }
    let req = parse_object(body)?;
    let out = match (from, to) {
        (OpenAiChat, AnthropicMessages) => openai_to_anthropic_request(&req, upstream_model)?,
        (AnthropicMessages, OpenAiChat) => anthropic_to_openai_request(&req, upstream_model)?,
        (OpenAiChat, Gemini) => openai_to_gemini_request(&req)?,
        (AnthropicMessages, Gemini) => {
            let Value::Object(mid) = anthropic_to_openai_request(&req, upstream_model)? else {
                return Err(TranslateError::unsupported(from, to));
            };
            let mut out = openai_to_gemini_request(&mid)?;
            // OpenAI chat has no top_k; Gemini does.
            if let Some(k) = req.get("top_k") {
                out["generationConfig"]["topK"] = k.clone();
            }
            out
        }
        _ => return Err(TranslateError::unsupported(from, to)),
    };
    to_bytes(&out)
}

/// Converts a complete successful chat response from the upstream's dialect to the
/// caller's; `public_model` is shown as `model`.
pub fn chat_response(from: Dialect, to: Dialect, body: &[u8], public_model: &str) -> Result<Bytes, TranslateError> {
    use Dialect::*;
    if from == to {
        return Ok(Bytes::copy_from_slice(body));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| TranslateError::new(format!("invalid JSON: {e}")))?;
    let out = match (from, to) {
        (AnthropicMessages, OpenAiChat) => anthropic_to_openai_response(&v, public_model),
        (OpenAiChat, AnthropicMessages) => openai_to_anthropic_response(&v, public_model),
        (Gemini, OpenAiChat) => gemini_to_openai_response(&v, public_model),
        (Gemini, AnthropicMessages) => {
            openai_to_anthropic_response(&gemini_to_openai_response(&v, public_model), public_model)
        }
        _ => return Err(TranslateError::unsupported(from, to)),
    };
    to_bytes(&out)
}

/// Converts an upstream error body (JSON in the upstream's dialect) to the caller
/// dialect's error shape, keeping the upstream's message (and, between OpenAI-dialect
/// bodies, its `type`, `code` and `param`). `None` when the body is not a JSON error of
/// the upstream's dialect (the caller then gets the gateway's own 502, never these
/// bytes).
///
/// Shapes: Anthropic `{"type":"error","error":{"type","message"}}`; OpenAI
/// `{"error":{"message","type","code","param"}}`; Gemini `{"error":{"code","message","status"}}`.
/// The caller-side `type` / `status` follows the HTTP status, which the caller keeps.
pub fn error_body(from: Dialect, to: Dialect, status: http::StatusCode, body: &[u8]) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    let (message, upstream_type, upstream_code, param) = match err {
        // Some OpenAI-compatible servers answer `{"error": "text"}`.
        Value::String(s) if from != Dialect::AnthropicMessages => (s.clone(), None, None, Value::Null),
        Value::Object(o) => {
            let message = o.get("message").and_then(Value::as_str)?.to_owned();
            match from {
                Dialect::AnthropicMessages => {
                    (message, o.get("type").and_then(Value::as_str).map(str::to_owned), None, Value::Null)
                }
                Dialect::Gemini => {
                    let status = o.get("status").and_then(Value::as_str).map(str::to_owned);
                    (message, None, status.map(Value::String), Value::Null)
                }
                _ => (
                    message,
                    o.get("type").and_then(Value::as_str).map(str::to_owned),
                    o.get("code").filter(|c| !c.is_null()).cloned(),
                    o.get("param").cloned().unwrap_or(Value::Null),
                ),
            }
        }
        _ => return None,
    };
    let out = match to {
        Dialect::AnthropicMessages => json!({
            "type": "error",
            "error": {"type": anthropic_error_type(status), "message": message},
        }),
        Dialect::Gemini => json!({
            "error": {"code": status.as_u16(), "message": message, "status": gemini_error_status(status)},
        }),
        Dialect::OpenAiChat | Dialect::OpenAiResponses | Dialect::OpenAiEmbeddings => {
            // Anthropic's error types are OpenAI's names too; Gemini's are not.
            let kind = upstream_type
                .filter(|_| from != Dialect::Gemini)
                .unwrap_or_else(|| openai_error_type(status).to_owned());
            json!({"error": {"message": message, "type": kind, "code": upstream_code.unwrap_or(Value::Null), "param": param}})
        }
    };
    serde_json::to_vec(&out).ok().map(Bytes::from)
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

/// Gemini `finishReason` → OpenAI `finish_reason`.
pub(crate) fn gemini_finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => "content_filter",
        _ => "stop",
    }
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

/// The text of an OpenAI `content` (a string or an array of parts).
fn openai_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// A `data:` URL split into (media type, base64 data).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

fn messages_of(req: &Map<String, Value>, what: &str) -> Result<Vec<Value>, TranslateError> {
    match req.get(what) {
        Some(Value::Array(m)) => Ok(m.clone()),
        Some(_) => Err(TranslateError::new(format!("'{what}' must be an array"))),
        None => Err(TranslateError::new(format!("missing required parameter: '{what}'"))),
    }
}

fn openai_to_anthropic_request(req: &Map<String, Value>, model: &str) -> Result<Value, TranslateError> {
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut push = |role: &str, blocks: Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        if let Some(last) = messages.last_mut()
            && last["role"] == role
            && let Some(content) = last["content"].as_array_mut()
        {
            content.extend(blocks);
            return;
        }
        messages.push(json!({"role": role, "content": blocks}));
    };
    for m in messages_of(req, "messages")? {
        let role =
            m.get("role").and_then(Value::as_str).ok_or_else(|| TranslateError::new("each message needs a 'role'"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = openai_text(content);
                if !text.is_empty() {
                    system.push(text);
                }
            }
            "user" => push("user", user_blocks(content)?),
            "assistant" => {
                let mut blocks = Vec::new();
                let text = openai_text(content);
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in m.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                    let input = tool_arguments(&call["function"]["arguments"])?;
                    blocks.push(
                        json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}),
                    );
                }
                push("assistant", blocks);
            }
            "tool" => {
                let result = json!({"type": "tool_result", "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": openai_text(content)});
                push("user", vec![result]);
            }
            other => return Err(TranslateError::new(format!("unknown message role '{}'", truncate(other)))),
        }
    }
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError::new("'n' greater than 1 is not supported by this model"));
    }
    // Anthropic has no JSON mode without a beta header: ask for JSON in the system prompt.
    match req.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => system.push("Respond with a single valid JSON object and nothing else.".into()),
        Some("json_schema") => {
            let schema = req["response_format"]["json_schema"].get("schema").cloned().unwrap_or(json!({}));
            system.push(format!(
                "Respond with a single JSON object that conforms to this JSON schema, and nothing else:\n{schema}"
            ));
        }
        _ => {}
    }
    let max_tokens = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS);
    let mut out = json!({"model": model, "messages": messages, "max_tokens": max_tokens});
    let o = out.as_object_mut().ok_or_else(|| TranslateError::new("internal"))?;
    if !system.is_empty() {
        o.insert("system".into(), Value::String(system.join("\n\n")));
    }
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = req.get(k) {
            o.insert(k.into(), v.clone());
        }
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            o.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            o.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str).is_none_or(|k| k == "function"))
            .map(|t| {
                let f = &t["function"];
                let mut tool = json!({"name": f["name"], "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"}))});
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                tool
            })
            .collect();
        if !tools.is_empty() {
            o.insert("tools".into(), Value::Array(tools));
        }
    }
    let mut choice = match req.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(_)) => Some(json!({"type": "auto"})),
        Some(Value::Object(c)) => c.get("function").map(|f| json!({"type": "tool", "name": f["name"]})),
        _ => None,
    };
    if req.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        c["disable_parallel_tool_use"] = Value::Bool(true);
    }
    if let Some(c) = choice {
        o.insert("tool_choice".into(), c);
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        o.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(out)
}

/// The Anthropic `input` of an OpenAI tool call: its `arguments` string must hold a JSON
/// object (an empty string is `{}`). Anything else is refused rather than guessed at.
fn tool_arguments(args: &Value) -> Result<Value, TranslateError> {
    let args = match args {
        Value::Null => return Ok(json!({})),
        Value::String(s) if s.trim().is_empty() => return Ok(json!({})),
        Value::String(s) => s,
        _ => return Err(TranslateError::new("tool_calls[].function.arguments must be a string")),
    };
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(TranslateError::new("tool_calls[].function.arguments must be a JSON object to send to this model")),
    }
}

fn user_blocks(content: &Value) -> Result<Vec<Value>, TranslateError> {
    match content {
        // Anthropic refuses empty text blocks.
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| !(p["type"] == "text" && p["text"] == ""))
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") if p["text"].is_string() => Ok(json!({"type": "text", "text": p["text"]})),
                Some("image_url") => {
                    let url = p["image_url"]["url"]
                        .as_str()
                        .or_else(|| p["image_url"].as_str())
                        .ok_or_else(|| TranslateError::new("image_url parts need a 'url' string"))?;
                    Ok(match data_url(url) {
                        Some((media, data)) => {
                            json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
                        }
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    })
                }
                Some("file") => match p["file"]["file_data"].as_str().and_then(data_url) {
                    Some((media, data)) => {
                        Ok(json!({"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}))
                    }
                    None => {
                        Err(TranslateError::new("file parts must carry file_data as a base64 data: URL for this model"))
                    }
                },
                _ => Err(TranslateError::new("only text, image_url and file content parts can be sent to this model")),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(TranslateError::new("message 'content' must be a string or an array of parts")),
    }
}

fn anthropic_to_openai_request(req: &Map<String, Value>, model: &str) -> Result<Value, TranslateError> {
    let mut messages = Vec::new();
    match req.get("system") {
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let text =
                blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n");
            messages.push(json!({"role": "system", "content": text}));
        }
        _ => {}
    }
    for m in messages_of(req, "messages")? {
        let role =
            m.get("role").and_then(Value::as_str).ok_or_else(|| TranslateError::new("each message needs a 'role'"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        let blocks: Vec<Value> = match content {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => return Err(TranslateError::new("message 'content' must be a string or an array of blocks")),
        };
        match role {
            "user" => {
                let mut parts = Vec::new();
                for b in &blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
                        Some("image") => {
                            let s = &b["source"];
                            let url = match s["type"].as_str() {
                                Some("base64") => format!(
                                    "data:{};base64,{}",
                                    s["media_type"].as_str().unwrap_or("image/png"),
                                    s["data"].as_str().unwrap_or("")
                                ),
                                _ => s["url"].as_str().unwrap_or("").to_owned(),
                            };
                            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                        Some("document") => {
                            let s = &b["source"];
                            match s["type"].as_str() {
                                Some("base64") => parts.push(json!({"type": "file", "file": {
                                    "filename": b.get("title").and_then(Value::as_str).unwrap_or("document.pdf"),
                                    "file_data": format!("data:{};base64,{}", s["media_type"].as_str().unwrap_or("application/pdf"), s["data"].as_str().unwrap_or("")),
                                }})),
                                Some("text") => parts.push(json!({"type": "text", "text": s["data"]})),
                                _ => {
                                    return Err(TranslateError::new(
                                        "only base64 and text document sources can be sent to this model",
                                    ));
                                }
                            }
                        }
                        Some("tool_result") => {
                            let text = match &b["content"] {
                                Value::String(s) => s.clone(),
                                other => openai_text(other),
                            };
                            messages.push(json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": text}));
                        }
                        _ => {}
                    }
                }
                if !parts.is_empty() {
                    let all_text = parts.iter().all(|p| p["type"] == "text");
                    let content =
                        if all_text && parts.len() == 1 { parts[0]["text"].clone() } else { Value::Array(parts) };
                    messages.push(json!({"role": "user", "content": content}));
                }
            }
            "assistant" => {
                let text = blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("");
                let calls: Vec<Value> = blocks
                    .iter()
                    .filter(|b| b["type"] == "tool_use")
                    .map(|b| json!({"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": b["input"].to_string()}}))
                    .collect();
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            other => return Err(TranslateError::new(format!("unknown message role '{}'", truncate(other)))),
        }
    }
    let mut out = json!({"model": model, "messages": messages});
    let o = out.as_object_mut().ok_or_else(|| TranslateError::new("internal"))?;
    // `max_tokens` is deprecated at OpenAI and refused by its reasoning models.
    if let Some(n) = req.get("max_tokens") {
        o.insert("max_completion_tokens".into(), n.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = req.get(k) {
            o.insert(k.into(), v.clone());
        }
    }
    if let Some(stop) = req.get("stop_sequences") {
        o.insert("stop".into(), stop.clone());
    }
    if req.get("stream") == Some(&Value::Bool(true)) {
        o.insert("stream".into(), Value::Bool(true));
        o.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| {
                let mut f = json!({"name": t["name"], "parameters": t["input_schema"]});
                if let Some(d) = t.get("description") {
                    f["description"] = d.clone();
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        if !tools.is_empty() {
            o.insert("tools".into(), Value::Array(tools));
        }
    }
    // OpenAI refuses a tool_choice without tools (e.g. only Anthropic server tools were given).
    if let Some(c) = req.get("tool_choice").filter(|_| o.contains_key("tools")) {
        let choice = match c["type"].as_str() {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": c["name"]}}),
            _ => json!("auto"),
        };
        o.insert("tool_choice".into(), choice);
        if c.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            o.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(user) = req.get("metadata").and_then(|m| m.get("user_id")) {
        o.insert("user".into(), user.clone());
    }
    Ok(out)
}

fn openai_to_gemini_request(req: &Map<String, Value>) -> Result<Value, TranslateError> {
    let mut contents: Vec<Value> = Vec::new();
    let mut system = Vec::new();
    // Gemini answers a function call by its name; OpenAI by the call's id.
    let mut call_names: Vec<(Value, Value)> = Vec::new();
    for m in messages_of(req, "messages")? {
        let role =
            m.get("role").and_then(Value::as_str).ok_or_else(|| TranslateError::new("each message needs a 'role'"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        let (g_role, parts): (&str, Vec<Value>) = match role {
            "system" | "developer" => {
                system.push(json!({"text": openai_text(content)}));
                continue;
            }
            "user" => {
                let parts = match content {
                    Value::String(s) => vec![json!({"text": s})],
                    Value::Array(ps) => ps
                        .iter()
                        .filter_map(|p| match p["type"].as_str() {
                            Some("text") => Some(json!({"text": p["text"]})),
                            Some("image_url") => {
                                let url = p["image_url"]["url"].as_str().unwrap_or("");
                                Some(match data_url(url) {
                                    Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
                                    None => json!({"fileData": {"fileUri": url}}),
                                })
                            }
                            _ => None,
                        })
                        .collect(),
                    _ => return Err(TranslateError::new("message 'content' must be a string or an array of parts")),
                };
                ("user", parts)
            }
            "assistant" => {
                let mut parts = Vec::new();
                let text = openai_text(content);
                if !text.is_empty() {
                    parts.push(json!({"text": text}));
                }
                for call in m.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("{}"))
                        .map_err(|_| TranslateError::new("tool_calls[].function.arguments must be JSON"))?;
                    call_names.push((call["id"].clone(), call["function"]["name"].clone()));
                    parts.push(json!({"functionCall": {"name": call["function"]["name"], "args": args}}));
                }
                ("model", parts)
            }
            "tool" => {
                let id = m.get("tool_call_id").cloned().unwrap_or(Value::Null);
                let name = call_names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()).unwrap_or(id);
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": {"content": openai_text(content)}}})],
                )
            }
            other => return Err(TranslateError::new(format!("unknown message role '{}'", truncate(other)))),
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last["role"] == g_role => {
                if let Some(p) = last["parts"].as_array_mut() {
                    p.extend(parts);
                }
            }
            _ => contents.push(json!({"role": g_role, "parts": parts})),
        }
    }
    let mut out = json!({"contents": contents});
    if !system.is_empty() {
        out["systemInstruction"] = json!({"parts": system});
    }
    let mut cfg = Map::new();
    if let Some(n) = req.get("max_completion_tokens").or_else(|| req.get("max_tokens")) {
        cfg.insert("maxOutputTokens".into(), n.clone());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP"), ("n", "candidateCount"), ("seed", "seed")] {
        if let Some(v) = req.get(from) {
            cfg.insert(to.into(), v.clone());
        }
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            cfg.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            cfg.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(rf) = req.get("response_format") {
        match rf["type"].as_str() {
            Some("json_object") => {
                cfg.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                cfg.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = rf["json_schema"].get("schema") {
                    cfg.insert("responseJsonSchema".into(), schema.clone());
                }
            }
            _ => {}
        }
    }
    if !cfg.is_empty() {
        out["generationConfig"] = Value::Object(cfg);
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let decls: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = &t["function"];
                let mut d = json!({"name": f["name"]});
                for k in ["description", "parameters"] {
                    if let Some(v) = f.get(k) {
                        d[k] = v.clone();
                    }
                }
                d
            })
            .collect();
        out["tools"] = json!([{"functionDeclarations": decls}]);
    }
    if let Some(c) = req.get("tool_choice") {
        let cfg = match c {
            Value::String(s) if s == "none" => json!({"mode": "NONE"}),
            Value::String(s) if s == "required" => json!({"mode": "ANY"}),
            Value::Object(o) => {
                json!({"mode": "ANY", "allowedFunctionNames": [o.get("function").map(|f| f["name"].clone())]})
            }
            _ => json!({"mode": "AUTO"}),
        };
        out["toolConfig"] = json!({"functionCallingConfig": cfg});
    }
    Ok(out)
}

fn anthropic_to_openai_response(v: &Value, model: &str) -> Value {
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
    let usage = v.get("usage").and_then(anthropic_usage).unwrap_or_default();
    json!({
        "id": format!("chatcmpl-{}", v["id"].as_str().unwrap_or("tollgate")),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": openai_finish_reason(v["stop_reason"].as_str().unwrap_or("end_turn"))}],
        "usage": openai_usage_json(&usage),
    })
}

fn openai_to_anthropic_response(v: &Value, model: &str) -> Value {
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
    let u = openai_usage(v).unwrap_or_default();
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

fn gemini_to_openai_response(v: &Value, model: &str) -> Value {
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
    let usage = gemini_usage(v).unwrap_or_default();
    json!({
        "id": format!("chatcmpl-{}", v["responseId"].as_str().unwrap_or("tollgate")),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": choices,
        "usage": openai_usage_json(&usage),
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
