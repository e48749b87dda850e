//! Gemini requests: OpenAI chat → `generateContent` (an Anthropic caller's request is
//! first made OpenAI chat, see [`crate::translate::chat_request`]).

use crate::translate::{TranslateError, data_url, messages_of, openai_text, truncate};
use serde_json::{Map, Value, json};

/// OpenAI chat request → Gemini `generateContent` body (the model goes in the URL),
/// capped at `max_output_tokens` whatever the caller's body says.
pub(crate) fn openai_to_gemini_request(
    req: &Map<String, Value>,
    max_output_tokens: u64,
) -> Result<Value, TranslateError> {
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
    cfg.insert("maxOutputTokens".into(), json!(max_output_tokens));
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
    out["generationConfig"] = Value::Object(cfg);
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
