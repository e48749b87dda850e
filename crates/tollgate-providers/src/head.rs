//! The request-head parser every dialect shares: the few fields of a caller's body the
//! gateway acts on (model, stream, output cap, stream usage), found without building the
//! body into values, and the byte-level edits made to a same-dialect body (the model
//! splice, the output cap, the stream-usage request), so a forwarded body is never
//! re-serialized.
//!
//! The spans a [`RequestHead`] records are positions in the body it was parsed from: an
//! edit that shifts bytes makes them stale. So the edits are made together, in one pass
//! over the caller's body, by [`splice_request`] (model + output cap + stream usage);
//! [`rewrite_model`], [`set_output_cap`] and [`request_stream_usage`] each make one edit
//! and take the caller's original body (only `request_stream_usage` reads no span, so it
//! alone may follow another edit).

use crate::Dialect;
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
    /// Every output-cap field the body has (`null` included), with where its value lies.
    pub cap_fields: Vec<CapSpan>,
}

/// A field an output cap is given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapField {
    /// `max_tokens`: OpenAI chat (deprecated at OpenAI, the one OpenAI-compatible servers
    /// know) and Anthropic Messages.
    MaxTokens,
    /// `max_completion_tokens`: OpenAI chat at OpenAI and Azure (the only one their
    /// reasoning models accept).
    MaxCompletionTokens,
    /// `max_output_tokens`: OpenAI Responses.
    MaxOutputTokens,
}

impl CapField {
    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            CapField::MaxTokens => "max_tokens",
            CapField::MaxCompletionTokens => "max_completion_tokens",
            CapField::MaxOutputTokens => "max_output_tokens",
        }
    }
}

/// One output-cap field of a caller's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapSpan {
    /// Which field.
    pub field: CapField,
    /// Its value; `None` for an explicit `null`.
    pub value: Option<u64>,
    /// Byte range of the value inside the body.
    pub span: Range<usize>,
}

/// The output cap a forwarded body must carry, and the field an OpenAI chat body gets
/// when it has none (see [`ProviderKind::chat_cap_field`](crate::ProviderKind::chat_cap_field)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    /// The most output tokens the upstream may generate.
    pub tokens: u64,
    /// The field inserted into an OpenAI chat body without one: `max_completion_tokens`
    /// for OpenAI and Azure, `max_tokens` for OpenAI-compatible servers.
    pub chat_field: CapField,
}

impl OutputCap {
    /// `tokens` as the upstream `kind` wants it written.
    pub fn new(tokens: u64, kind: crate::ProviderKind) -> Self {
        OutputCap { tokens, chat_field: kind.chat_cap_field() }
    }

    /// The field inserted into a `dialect` body that has none; `None` where the body has
    /// no cap field of this kind (embeddings have no output; Gemini nests its cap in
    /// `generationConfig`, which only translation writes).
    pub fn field_for(self, dialect: Dialect) -> Option<CapField> {
        match dialect {
            Dialect::OpenAiChat => Some(self.chat_field),
            Dialect::AnthropicMessages => Some(CapField::MaxTokens),
            Dialect::OpenAiResponses => Some(CapField::MaxOutputTokens),
            Dialect::Gemini | Dialect::OpenAiEmbeddings => None,
        }
    }
}

#[derive(Deserialize)]
struct RawHead<'a> {
    /// The cap fields are kept raw (`null` too) so their spans are known.
    #[serde(borrow, default, deserialize_with = "raw")]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default, deserialize_with = "raw")]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw")]
    max_completion_tokens: Option<&'a RawValue>,
    /// `Some(None)` for an explicit `null`: present, so it is replaced rather than a
    /// second `stream_options` spliced in beside it.
    #[serde(default, deserialize_with = "present")]
    stream_options: Option<Option<StreamOptions>>,
}

fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Where `raw` (a slice of `body`) starts in `body`.
fn offset_in(body: &[u8], raw: &str) -> Option<Range<usize>> {
    // The raw value borrows from `body`, so its address gives its position.
    let start = (raw.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    (start <= body.len() && start + raw.len() <= body.len()).then(|| start..start + raw.len())
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
    /// The smallest output cap among the caller's cap fields (a caller may send both
    /// `max_tokens` and `max_completion_tokens`), if any is given.
    pub fn smallest_cap(&self) -> Option<u64> {
        self.cap_fields.iter().filter_map(|c| c.value).min()
    }

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
        let model_span = offset_in(body, text).ok_or(HeadError::BadModel)?;
        let mut cap_fields = Vec::new();
        for (field, value) in [
            (CapField::MaxCompletionTokens, raw.max_completion_tokens),
            (CapField::MaxTokens, raw.max_tokens),
            (CapField::MaxOutputTokens, raw.max_output_tokens),
        ] {
            let Some(value) = value else { continue };
            let span = offset_in(body, value.get())
                .ok_or_else(|| HeadError::Json(format!("'{}' could not be located", field.key())))?;
            let value = match value.get() {
                "null" => None,
                text => Some(serde_json::from_str::<u64>(text).map_err(|_| {
                    HeadError::Json(format!("'{}' must be a non-negative integer or null", field.key()))
                })?),
            };
            cap_fields.push(CapSpan { field, value, span });
        }
        // The first given of max_completion_tokens, max_tokens, max_output_tokens.
        let max_output_tokens = cap_fields.iter().find_map(|c| c.value);
        Ok(RequestHead {
            model: model.into_owned(),
            model_span,
            stream: raw.stream.unwrap_or(false),
            max_output_tokens,
            cap_fields,
            has_stream_options: raw.stream_options.is_some(),
            include_usage: raw.stream_options.flatten().and_then(|o| o.include_usage).unwrap_or(false),
        })
    }
}

/// One byte-level edit of a body: `range` replaced by `text` (an empty range inserts).
struct Edit {
    range: Range<usize>,
    text: Vec<u8>,
}

/// Applies non-overlapping `edits` to `body` in one copy; no copy when there are none.
fn apply(body: &Bytes, mut edits: Vec<Edit>) -> Bytes {
    if edits.is_empty() {
        return body.clone();
    }
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let grow: usize = edits.iter().map(|e| e.text.len()).sum();
    let mut out = Vec::with_capacity(body.len() + grow);
    let mut at = 0;
    for e in &edits {
        if e.range.start < at || e.range.end > body.len() {
            // Overlapping or out of the body: cannot happen for spans of this body's head.
            return body.clone();
        }
        out.extend_from_slice(&body[at..e.range.start]);
        out.extend_from_slice(&e.text);
        at = e.range.end;
    }
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

/// Where a field inserted at the front of the body goes: just after its opening `{`.
fn front(body: &[u8]) -> Option<usize> {
    body.iter().position(|&b| b == b'{').map(|open| open + 1)
}

fn model_edit(head: &RequestHead, new_model: &str) -> Option<Edit> {
    if head.model == new_model {
        return None;
    }
    let quoted = serde_json::to_string(new_model).ok()?;
    Some(Edit { range: head.model_span.clone(), text: quoted.into_bytes() })
}

/// The edits that leave `dialect`'s body with exactly `cap`: every cap field whose value
/// differs replaced, or the dialect's field inserted when there is none.
fn cap_edits(body: &[u8], head: &RequestHead, dialect: Dialect, cap: OutputCap) -> Vec<Edit> {
    let Some(field) = cap.field_for(dialect) else { return Vec::new() };
    let value = cap.tokens.to_string().into_bytes();
    if head.cap_fields.is_empty() {
        let Some(at) = front(body) else { return Vec::new() };
        let text = format!("\"{}\":{},", field.key(), cap.tokens).into_bytes();
        return vec![Edit { range: at..at, text }];
    }
    head.cap_fields
        .iter()
        .filter(|c| c.value != Some(cap.tokens))
        .map(|c| Edit { range: c.span.clone(), text: value.clone() })
        .collect()
}

/// Sets the output cap of a same-dialect body to exactly `cap.tokens`: every cap field
/// the caller sent (`max_tokens`, `max_completion_tokens`, `max_output_tokens`, `null`
/// included) is replaced when it differs, so none is left above the cap; a body with none
/// gets the dialect's field ([`OutputCap::field_for`]) inserted after its `{`. The rest of
/// the body is byte for byte the caller's; a body already exactly right is not copied.
/// Embeddings (no output) and Gemini bodies are returned as they are.
///
/// `head` must be parsed from `body` itself; to change the model too, use
/// [`splice_request`], which makes every edit in one pass.
pub fn set_output_cap(body: &Bytes, head: &RequestHead, dialect: Dialect, cap: OutputCap) -> Bytes {
    apply(body, cap_edits(body, head, dialect, cap))
}

/// The same-dialect body forwarded upstream, made in one pass over the caller's `body`
/// (whose parsed head is `head`): `upstream_model` spliced in, the output cap set as by
/// [`set_output_cap`], and, for an OpenAI chat stream, the usage chunk asked for as by
/// [`request_stream_usage`]. Nothing else is touched and nothing is re-serialized
/// (except in the rare case `request_stream_usage` documents); the caller's body itself is
/// returned when nothing needs to change.
pub fn splice_request(
    body: &Bytes,
    head: &RequestHead,
    dialect: Dialect,
    upstream_model: &str,
    cap: OutputCap,
) -> Bytes {
    let mut edits = cap_edits(body, head, dialect, cap);
    edits.extend(model_edit(head, upstream_model));
    let wants_usage = dialect == Dialect::OpenAiChat && head.stream && !head.include_usage;
    if wants_usage && !head.has_stream_options {
        if let Some(at) = front(body) {
            edits.push(Edit { range: at..at, text: STREAM_USAGE.to_vec() });
        }
        return apply(body, edits);
    }
    let out = apply(body, edits);
    if wants_usage {
        // stream_options without include_usage: set in place (reads no span).
        return request_stream_usage(&out, head);
    }
    out
}

/// The field that asks an OpenAI stream for its usage chunk, as inserted after `{`.
const STREAM_USAGE: &[u8] = br#""stream_options":{"include_usage":true},"#;

/// Replaces the `model` value at `span` with `new_model`, copying nothing when the name
/// is unchanged. The rest of the body is byte-for-byte what the caller sent.
pub fn rewrite_model(body: &Bytes, head: &RequestHead, new_model: &str) -> Bytes {
    apply(body, model_edit(head, new_model).into_iter().collect())
}

/// Makes a streaming request ask the upstream for the final usage chunk
/// (`stream_options.include_usage`), so every stream can be metered. The body is
/// spliced, not re-serialized, unless the caller sent `stream_options` without it.
pub fn request_stream_usage(body: &Bytes, head: &RequestHead) -> Bytes {
    if head.include_usage {
        return body.clone();
    }
    if !head.has_stream_options {
        let Some(at) = front(body) else { return body.clone() };
        return apply(body, vec![Edit { range: at..at, text: STREAM_USAGE.to_vec() }]);
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

    fn cap(tokens: u64, chat_field: CapField) -> OutputCap {
        OutputCap { tokens, chat_field }
    }

    /// Every cap field of `out` as (key, value), after checking `out` is JSON whose only
    /// difference from `body` is in the cap fields (and, if given, the model).
    fn caps_of(out: &[u8]) -> Vec<(String, serde_json::Value)> {
        let v: serde_json::Value = serde_json::from_slice(out).unwrap();
        ["max_tokens", "max_completion_tokens", "max_output_tokens"]
            .iter()
            .filter_map(|k| v.get(*k).map(|x| ((*k).to_owned(), x.clone())))
            .collect()
    }

    #[test]
    fn cap_fields_are_found_with_their_spans_null_included() {
        let body = br#"{"model":"m","max_tokens" : 70,"max_completion_tokens":null,"max_output_tokens":9}"#;
        let head = RequestHead::parse(body).unwrap();
        let found: Vec<(CapField, Option<u64>, &[u8])> =
            head.cap_fields.iter().map(|c| (c.field, c.value, &body[c.span.clone()])).collect();
        assert_eq!(
            found,
            [
                (CapField::MaxCompletionTokens, None, &b"null"[..]),
                (CapField::MaxTokens, Some(70), b"70"),
                (CapField::MaxOutputTokens, Some(9), b"9"),
            ]
        );
        assert_eq!(head.max_output_tokens, Some(70));
        assert_eq!(head.smallest_cap(), Some(9));
        for bad in [&br#"{"model":"m","max_tokens":1.5}"#[..], br#"{"model":"m","max_output_tokens":"9"}"#] {
            assert!(matches!(RequestHead::parse(bad), Err(HeadError::Json(_))), "{}", String::from_utf8_lossy(bad));
        }
        let dup = br#"{"model":"m","max_tokens":1,"max_tokens":2}"#;
        assert!(matches!(RequestHead::parse(dup), Err(HeadError::Json(_))), "a duplicated cap is refused");
    }

    #[test]
    fn a_body_without_a_cap_gets_its_dialects_field_and_nothing_else() {
        let body = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let head = RequestHead::parse(&body).unwrap();
        let rest = &body[1..];
        for (dialect, chat_field, key) in [
            (Dialect::OpenAiChat, CapField::MaxCompletionTokens, "max_completion_tokens"),
            (Dialect::OpenAiChat, CapField::MaxTokens, "max_tokens"),
            (Dialect::OpenAiResponses, CapField::MaxTokens, "max_output_tokens"),
            (Dialect::AnthropicMessages, CapField::MaxCompletionTokens, "max_tokens"),
        ] {
            let out = set_output_cap(&body, &head, dialect, cap(321, chat_field));
            let want = format!("{{\"{key}\":321,{}", std::str::from_utf8(rest).unwrap());
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{dialect:?}");
            assert_eq!(caps_of(&out), [(key.to_owned(), serde_json::json!(321))]);
            assert_eq!(RequestHead::parse(&out).unwrap().smallest_cap(), Some(321));
        }
        // Embeddings have no output to cap.
        let out = set_output_cap(&body, &head, Dialect::OpenAiEmbeddings, cap(5, CapField::MaxTokens));
        assert_eq!(out.as_ptr(), body.as_ptr());
    }

    #[test]
    fn every_cap_the_caller_sent_ends_at_exactly_the_cap_given() {
        let body = Bytes::from_static(
            br#"{"max_tokens":  900 ,"model":"m","max_completion_tokens":null,"messages":[],"x":{"max_tokens":5}}"#,
        );
        let head = RequestHead::parse(&body).unwrap();
        // Lower than the caller's, and higher: the function sets what it is told (the
        // data plane passes the smaller of the caller's and the model's).
        for tokens in [100, 4000] {
            let out = set_output_cap(&body, &head, Dialect::OpenAiChat, cap(tokens, CapField::MaxCompletionTokens));
            let want = format!(
                r#"{{"max_tokens":  {tokens} ,"model":"m","max_completion_tokens":{tokens},"messages":[],"x":{{"max_tokens":5}}}}"#
            );
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "nested fields and spacing untouched");
            let again = RequestHead::parse(&out).unwrap();
            assert!(again.cap_fields.iter().all(|c| c.value == Some(tokens)));
        }
        // Exactly right already: the caller's bytes, not a copy.
        let right = Bytes::from_static(br#"{"model":"m","max_tokens":64,"max_completion_tokens":64}"#);
        let head = RequestHead::parse(&right).unwrap();
        let out = set_output_cap(&right, &head, Dialect::OpenAiChat, cap(64, CapField::MaxCompletionTokens));
        assert_eq!(out.as_ptr(), right.as_ptr(), "no copy when nothing changes");
    }

    #[test]
    fn one_pass_splices_model_cap_and_stream_usage_consistently() {
        // The cap field lies before the model: separate splices would shift the spans.
        let body = Bytes::from_static(br#"{"max_tokens":10000,"model":"fast","stream":true,"messages":[]}"#);
        let head = RequestHead::parse(&body).unwrap();
        let out = splice_request(&body, &head, Dialect::OpenAiChat, "gpt-4o-mini", cap(50, CapField::MaxTokens));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"stream_options":{"include_usage":true},"max_tokens":50,"model":"gpt-4o-mini","stream":true,"messages":[]}"#
        );
        // No cap at all: both insertions land after `{`.
        let bare = Bytes::from_static(br#"{"model":"fast","stream":true}"#);
        let head = RequestHead::parse(&bare).unwrap();
        let out = splice_request(&bare, &head, Dialect::OpenAiChat, "g", cap(7, CapField::MaxCompletionTokens));
        let again = RequestHead::parse(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        assert_eq!((again.model.as_str(), again.smallest_cap(), again.include_usage), ("g", Some(7), true));
        // stream_options without include_usage: still one cap, the new model, usage asked.
        let partial =
            Bytes::from_static(br#"{"model":"fast","max_completion_tokens":9,"stream":true,"stream_options":{"x":1}}"#);
        let head = RequestHead::parse(&partial).unwrap();
        let out = splice_request(&partial, &head, Dialect::OpenAiChat, "g", cap(3, CapField::MaxTokens));
        let again = RequestHead::parse(&out).unwrap();
        assert_eq!((again.model.as_str(), again.smallest_cap(), again.include_usage), ("g", Some(3), true));
        assert_eq!(caps_of(&out), [("max_completion_tokens".to_owned(), serde_json::json!(3))]);
        // Anthropic and Responses streams are not asked for OpenAI's usage chunk.
        let anthropic = Bytes::from_static(br#"{"model":"fast","stream":true,"max_tokens":8}"#);
        let head = RequestHead::parse(&anthropic).unwrap();
        let out = splice_request(&anthropic, &head, Dialect::AnthropicMessages, "fast", cap(8, CapField::MaxTokens));
        assert_eq!(out.as_ptr(), anthropic.as_ptr(), "nothing to change: no copy");
    }

    #[test]
    fn an_escaped_model_name_is_decoded() {
        let head = RequestHead::parse(br#"{"model":"gpt\u002d4o"}"#).unwrap();
        assert_eq!(head.model, "gpt-4o");
    }
}
