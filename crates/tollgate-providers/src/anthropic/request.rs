//! Anthropic requests: OpenAI chat → Messages for an Anthropic upstream, and Messages →
//! OpenAI chat for an Anthropic caller served by an OpenAI-dialect upstream.

use crate::head::OutputCap;
use crate::translate::{TranslateError, data_url, messages_of, openai_text, truncate};
use serde_json::{Map, Value, json};

/// OpenAI chat request → Anthropic Messages request for `model`, capped at `max_tokens`
/// (whatever the caller's body says: the cap is the data plane's).
pub(crate) fn openai_to_anthropic_request(
    req: &Map<String, Value>,
    model: &str,
    max_tokens: u64,
) -> Result<Value, TranslateError> {
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

/// Anthropic Messages request → OpenAI chat request for `model` (streams ask for usage),
/// capped at `cap` in the field the upstream wants.
pub(crate) fn anthropic_to_openai_request(
    req: &Map<String, Value>,
    model: &str,
    cap: OutputCap,
) -> Result<Value, TranslateError> {
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
    // `max_tokens` is deprecated at OpenAI and refused by its reasoning models; the
    // upstream's kind says which field it reads.
    o.insert(cap.chat_field.key().into(), json!(cap.tokens));
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
