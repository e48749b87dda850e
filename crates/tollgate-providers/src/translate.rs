//! Translation of complete bodies between dialects: requests (caller → upstream),
//! successful responses and error bodies (upstream → caller).
//!
//! This file is the table of dialect pairs; each pair's translation lives in the folder
//! of the upstream whose dialect is not OpenAI chat (`anthropic/`, `gemini/`). Pairs:
//! OpenAI chat ⇄ Anthropic Messages, OpenAI chat → Gemini (and its responses back),
//! Anthropic → Gemini by composing through OpenAI chat. When both sides speak the same
//! dialect nothing is re-serialized: only the `model` value and the output cap are
//! spliced.
//!
//! Every translated request carries exactly the [`OutputCap`] it is given, in the target
//! dialect's field (OpenAI chat `max_completion_tokens` or `max_tokens` as the upstream
//! wants, Anthropic `max_tokens`, Gemini `generationConfig.maxOutputTokens`), whatever
//! cap the caller's body had: the data plane passes the cap its reservation was computed
//! from, so the upstream can never generate more than was reserved.
//!
//! Dropped on the way (no meaning on the other side): OpenAI `logprobs`, `top_logprobs`,
//! `logit_bias`, `presence_penalty`, `frequency_penalty`, `seed`, `n` (except Gemini's
//! `candidateCount`) and `response_format` when the target is Anthropic; Anthropic
//! `top_k` (kept for Gemini), `thinking` and `cache_control` markers when the target is
//! OpenAI.

use crate::Dialect;
use crate::head::{OutputCap, RequestHead, splice_request};
use crate::{anthropic, gemini};
use bytes::Bytes;
use serde_json::{Map, Value, json};

pub use crate::anthropic::response::anthropic_error_type;
pub use crate::gemini::response::gemini_error_status;
pub use crate::openai::response::openai_error_type;

/// Why a body cannot be translated. The message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranslateError(String);

impl TranslateError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        TranslateError(msg.into())
    }

    pub(crate) fn unsupported(from: Dialect, to: Dialect) -> Self {
        TranslateError::new(format!("cannot translate from {from:?} to {to:?}"))
    }
}

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
/// `upstream_model` in place (for Gemini the model goes in the URL, not the body) and
/// exactly `cap` as its output cap (see the module docs). An OpenAI-dialect streaming
/// target is asked for usage.
///
/// The same dialect is spliced ([`splice_request`]), never re-serialized; a Gemini body
/// is returned as it is (no caller speaks Gemini to the gateway, and Gemini nests its cap
/// where no splice reaches).
pub fn chat_request(
    from: Dialect,
    to: Dialect,
    body: &Bytes,
    upstream_model: &str,
    cap: OutputCap,
) -> Result<Bytes, TranslateError> {
    use Dialect::*;
    if from == to {
        if from == Gemini {
            // Gemini names the model in the URL; the body has nothing to splice.
            return Ok(body.clone());
        }
        let head = RequestHead::parse(body).map_err(|e| TranslateError::new(e.to_string()))?;
        return Ok(splice_request(body, &head, from, upstream_model, cap));
    }
    let req = parse_object(body)?;
    let out = match (from, to) {
        (OpenAiChat, AnthropicMessages) => {
            anthropic::request::openai_to_anthropic_request(&req, upstream_model, cap.tokens)?
        }
        (AnthropicMessages, OpenAiChat) => anthropic::request::anthropic_to_openai_request(&req, upstream_model, cap)?,
        (OpenAiChat, Gemini) => gemini::request::openai_to_gemini_request(&req, cap.tokens)?,
        (AnthropicMessages, Gemini) => {
            let Value::Object(mid) = anthropic::request::anthropic_to_openai_request(&req, upstream_model, cap)? else {
                return Err(TranslateError::unsupported(from, to));
            };
            let mut out = gemini::request::openai_to_gemini_request(&mid, cap.tokens)?;
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
        (AnthropicMessages, OpenAiChat) => anthropic::response::anthropic_to_openai_response(&v, public_model),
        (OpenAiChat, AnthropicMessages) => anthropic::response::openai_to_anthropic_response(&v, public_model),
        (Gemini, OpenAiChat) => gemini::response::gemini_to_openai_response(&v, public_model),
        (Gemini, AnthropicMessages) => {
            let mid = gemini::response::gemini_to_openai_response(&v, public_model);
            anthropic::response::openai_to_anthropic_response(&mid, public_model)
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

/// The text of an OpenAI `content` (a string or an array of parts).
pub(crate) fn openai_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// A `data:` URL split into (media type, base64 data).
pub(crate) fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

pub(crate) fn messages_of(req: &Map<String, Value>, what: &str) -> Result<Vec<Value>, TranslateError> {
    match req.get(what) {
        Some(Value::Array(m)) => Ok(m.clone()),
        Some(_) => Err(TranslateError::new(format!("'{what}' must be an array"))),
        None => Err(TranslateError::new(format!("missing required parameter: '{what}'"))),
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
