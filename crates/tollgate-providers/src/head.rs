//! The request-head parser every dialect shares: the few fields of a caller's body the
//! gateway acts on (model, stream, output cap, stream usage), found without building the
//! body into values, and the byte-level edits made to a same-dialect body (the model
//! splice, the stream-usage request), so a forwarded body is never re-serialized.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;

/// Why a request body cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not JSON, not UTF-8, too deeply nested, or a field of the wrong type.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// No `model` field.
    #[error("missing required parameter: 'model'")]
    MissingModel,
    /// `model` is not a non-empty string.
    #[error("'model' must be a non-empty string")]
    BadModel,
    /// Arrays and objects nested deeper than [`MAX_JSON_DEPTH`].
    #[error("invalid JSON body: nesting depth exceeds the limit of {limit}")]
    TooDeep {
        /// The limit, [`MAX_JSON_DEPTH`].
        limit: usize,
    },
}

/// The deepest nesting of arrays and objects a request body may have (the body's own
/// object is depth 1). Deeper bodies are refused before anything is forwarded: no
/// upstream is asked to parse them, and every parser after this one (translation,
/// token counts) stays within its recursion limit.
pub const MAX_JSON_DEPTH: usize = 128;

/// Whether `body` nests arrays and objects deeper than `limit`: one pass over the bytes,
/// brackets inside strings ignored. Says nothing about whether the body is valid JSON.
fn nests_deeper_than(body: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The few fields of an OpenAI-dialect request the gateway acts on. Everything else in
/// the body is passed through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The requested (public) model name.
    pub model: String,
    /// Byte range of the `model` value (including its quotes) inside the body.
    pub model_span: Range<usize>,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens` (OpenAI chat, Anthropic), else
    /// `max_output_tokens` (Responses), if given.
    pub max_output_tokens: Option<u64>,
    /// Whether the caller asked for the usage chunk of a stream.
    pub include_usage: bool,
    /// Whether the body has a `stream_options` field at all (`null` included).
    pub has_stream_options: bool,
}

#[derive(Deserialize)]
struct RawHead<'a> {
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    /// `Some(None)` for an explicit `null`: present, so it is replaced rather than a
    /// second `stream_options` spliced in beside it.
    #[serde(default, deserialize_with = "present")]
    stream_options: Option<Option<StreamOptions>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<StreamOptions>>, D::Error> {
    Option::<StreamOptions>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl RequestHead {
    /// Parses the head of an OpenAI-dialect body. The whole body is validated as JSON,
    /// nested at most [`MAX_JSON_DEPTH`] deep, but only these fields are materialized.
    pub fn parse(body: &[u8]) -> Result<RequestHead, HeadError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|&b| b != b'{') {
            return Err(HeadError::NotAnObject);
        }
        if nests_deeper_than(body, MAX_JSON_DEPTH) {
            return Err(HeadError::TooDeep { limit: MAX_JSON_DEPTH });
        }
        // serde_json does not check UTF-8 inside fields it skips; JSON must be UTF-8
        // throughout, so check the whole body once (and parse the checked text).
        let text = std::str::from_utf8(body)
            .map_err(|e| HeadError::Json(format!("body is not valid UTF-8 at byte {}", e.valid_up_to())))?;
        let raw: RawHead<'_> = serde_json::from_str(text).map_err(|e| HeadError::Json(e.to_string()))?;
        let model_raw = raw.model.ok_or(HeadError::MissingModel)?;
        let text = model_raw.get();
        let model: Cow<'_, str> = serde_json::from_str(text).map_err(|_| HeadError::BadModel)?;
        if model.is_empty() {
            return Err(HeadError::BadModel);
        }
        // The raw value borrows from `body`, so its address gives its position.
        let start = (text.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        if start > body.len() || start + text.len() > body.len() {
            return Err(HeadError::BadModel);
        }
        Ok(RequestHead {
            model: model.into_owned(),
            model_span: start..start + text.len(),
            stream: raw.stream.unwrap_or(false),
            max_output_tokens: raw.max_completion_tokens.or(raw.max_tokens).or(raw.max_output_tokens),
            has_stream_options: raw.stream_options.is_some(),
            include_usage: raw.stream_options.flatten().and_then(|o| o.include_usage).unwrap_or(false),
        })
    }
}

/// Replaces the `model` value at `span` with `new_model`, copying nothing when the name
/// is unchanged. The rest of the body is byte-for-byte what the caller sent.
pub fn rewrite_model(body: &Bytes, head: &RequestHead, new_model: &str) -> Bytes {
    if head.model == new_model {
        return body.clone();
    }
    let quoted = match serde_json::to_string(new_model) {
        Ok(q) => q,
        Err(_) => return body.clone(),
    };
    let span = &head.model_span;
    let mut out = Vec::with_capacity(body.len() - span.len() + quoted.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    Bytes::from(out)
}

/// Makes a streaming request ask the upstream for the final usage chunk
/// (`stream_options.include_usage`), so every stream can be metered. The body is
/// spliced, not re-serialized, unless the caller sent `stream_options` without it.
pub fn request_stream_usage(body: &Bytes, head: &RequestHead) -> Bytes {
    if head.include_usage {
        return body.clone();
    }
    if !head.has_stream_options {
        let Some(open) = body.iter().position(|&b| b == b'{') else { return body.clone() };
        let inject = br#""stream_options":{"include_usage":true},"#;
        let mut out = Vec::with_capacity(body.len() + inject.len());
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(inject);
        out.extend_from_slice(&body[open + 1..]);
        return Bytes::from(out);
    }
    // Rare: the caller sent stream_options without include_usage; set it in place.
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else { return body.clone() };
    match v.get_mut("stream_options").and_then(|o| o.as_object_mut()) {
        Some(opts) => {
            opts.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
        None => {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
            }
        }
    }
    serde_json::to_vec(&v).map(Bytes::from).unwrap_or_else(|_| body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing_finds_the_model_span_and_limits() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}], "model" : "gpt-4o", "max_tokens": 5, "stream": true, "stream_options": {"include_usage": true}, "future_field": {"x": [1,2]}}"#;
        let head = RequestHead::parse(body).unwrap();
        assert_eq!(head.model, "gpt-4o");
        assert_eq!(&body[head.model_span.clone()], br#""gpt-4o""#);
        assert!(head.stream);
        assert!(head.include_usage);
        assert_eq!(head.max_output_tokens, Some(5));
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let head = RequestHead::parse(br#"{"model":"m","max_tokens":5,"max_completion_tokens":7}"#).unwrap();
        assert_eq!(head.max_output_tokens, Some(7));
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        let check = |body: &[u8], want: fn(&HeadError) -> bool| {
            let err = RequestHead::parse(body).unwrap_err();
            assert!(want(&err), "{:?} -> {err:?}", String::from_utf8_lossy(body));
        };
        check(b"", |e| matches!(e, HeadError::Json(_)));
        check(b"{", |e| matches!(e, HeadError::Json(_)));
        check(b"[1]", |e| matches!(e, HeadError::NotAnObject));
        check(b"{}", |e| matches!(e, HeadError::MissingModel));
        check(br#"{"model": 4}"#, |e| matches!(e, HeadError::BadModel));
        check(br#"{"model": ""}"#, |e| matches!(e, HeadError::BadModel));
        check(br#"{"model": "m", "stream": "yes"}"#, |e| matches!(e, HeadError::Json(_)));
        check(br#"{"model": "m", "max_tokens": -1}"#, |e| matches!(e, HeadError::Json(_)));
        check(b"{\"model\": \"\xff\xfe\"}", |e| matches!(e, HeadError::Json(_)));
        check(b"{\"model\": \"m\", \"skipped\": \"\xff\"}", |e| matches!(e, HeadError::Json(_)));
        let unbalanced = format!("{{\"model\":\"m\",\"x\":{}", "[".repeat(100_000));
        check(unbalanced.as_bytes(), |e| matches!(e, HeadError::TooDeep { limit: 128 }));
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_naming_it() {
        // The body's object is depth 1: 127 arrays inside it are 128 levels, the limit.
        let body = |arrays: usize| format!("{{\"model\":\"m\",\"x\":{}{}}}", "[".repeat(arrays), "]".repeat(arrays));
        assert_eq!(RequestHead::parse(body(MAX_JSON_DEPTH - 1).as_bytes()).unwrap().model, "m");
        for arrays in [MAX_JSON_DEPTH, 10_000, 100_000] {
            let err = RequestHead::parse(body(arrays).as_bytes()).unwrap_err();
            assert_eq!(err, HeadError::TooDeep { limit: MAX_JSON_DEPTH });
            let message = err.to_string();
            assert!(message.contains("depth") && message.contains("128"), "{message}");
        }
        // Brackets inside strings (escaped quotes too) are text, not nesting.
        let text = format!("{{\"model\":\"m\",\"x\":\"\\\"{}\"}}", "[{".repeat(10_000));
        assert_eq!(RequestHead::parse(text.as_bytes()).unwrap().model, "m");
    }

    #[test]
    fn rewrite_touches_only_the_model_value() {
        let body = Bytes::from_static(br#"{"model":"fast","messages":[],"tools":[{"type":"function"}],"seed":7}"#);
        let head = RequestHead::parse(&body).unwrap();
        let out = rewrite_model(&body, &head, "gpt-4o-mini");
        assert_eq!(&out[..], br#"{"model":"gpt-4o-mini","messages":[],"tools":[{"type":"function"}],"seed":7}"#);
        let same = rewrite_model(&body, &head, "fast");
        assert_eq!(same.as_ptr(), body.as_ptr(), "unchanged model must not copy");
        let escaped = rewrite_model(&body, &head, "a\"b");
        assert!(serde_json::from_slice::<serde_json::Value>(&escaped).is_ok());
    }

    #[test]
    fn streams_are_asked_for_usage_without_touching_the_rest() {
        let body = Bytes::from_static(br#"{"model":"m","stream":true,"messages":[]}"#);
        let out = request_stream_usage(&body, &RequestHead::parse(&body).unwrap());
        assert_eq!(&out[..], br#"{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[]}"#);
        assert!(RequestHead::parse(&out).unwrap().include_usage);

        let asked = Bytes::from_static(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#);
        let out = request_stream_usage(&asked, &RequestHead::parse(&asked).unwrap());
        assert_eq!(out.as_ptr(), asked.as_ptr(), "already asked: no copy");

        let partial =
            Bytes::from_static(br#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}"#);
        let out = request_stream_usage(&partial, &RequestHead::parse(&partial).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"], serde_json::json!({"include_obfuscation": false, "include_usage": true}));
    }

    #[test]
    fn null_stream_options_are_replaced_not_duplicated() {
        // Found by the request_head fuzz target: `"stream_options": null` counted as absent,
        // so a second `stream_options` was spliced in and the upstream got the key twice
        // (most parsers keep the last, null: no usage chunk, the stream metered by estimate).
        let body = Bytes::from_static(br#"{"model":"m","stream":true,"stream_options":null}"#);
        let head = RequestHead::parse(&body).unwrap();
        let out = request_stream_usage(&body, &head);
        let again = RequestHead::parse(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        assert!(again.include_usage);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"], serde_json::json!({"include_usage": true}));
    }

    #[test]
    fn an_escaped_model_name_is_decoded() {
        let head = RequestHead::parse(br#"{"model":"gpt\u002d4o"}"#).unwrap();
        assert_eq!(head.model, "gpt-4o");
    }
}
