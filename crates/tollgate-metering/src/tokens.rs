//! Counting tokens when the upstream reports none: a stream the caller abandoned, a
//! stream cut by the upstream, an answer without `usage`.
//!
//! OpenAI-family models are counted with their real tokenizer (tiktoken: `o200k_base`
//! for gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4 and gpt-oss; `cl100k_base` for gpt-4,
//! gpt-3.5 and the text-embedding models). Other providers' tokenizers are not public, so
//! their text is estimated at one token per 3.5 characters, rounded up — on the high side
//! of what Claude and Gemini tokenizers give for English, so an estimate does not
//! undercharge. Non-empty text is never zero tokens.
//!
//! [`estimate_prompt_tokens`] estimates a whole request body's prompt: the text of its
//! messages (OpenAI chat, Anthropic messages, OpenAI responses, embeddings input, Gemini
//! contents), tool definitions and tool-call arguments, plus OpenAI's documented framing
//! overhead of 3 tokens per message and 3 to prime the reply. Each image counts 85 tokens
//! (OpenAI's low-detail base; a high-detail image costs more, which only the upstream
//! can know). A body that is not JSON, or has none of these fields, is counted whole.
//! The tables are built once, lazily ([`warm`] builds them at start-up).
//!
//! [`prompt_token_bound`] is different: an upper bound on the prompt tokens a request
//! can be billed for, which a budget reservation is computed from (see its docs).

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use tiktoken_rs::CoreBPE;

/// Which counter applies to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// tiktoken `o200k_base`.
    O200k,
    /// tiktoken `cl100k_base`.
    Cl100k,
    /// ceil(characters / 3.5).
    Estimate,
}

/// The tokenizer for an upstream model name (case-insensitive, date suffixes allowed).
pub fn tokenizer_for(model: &str) -> Tokenizer {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    const O200K: &[&str] =
        &["gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss", "codex-"];
    const CL100K: &[&str] = &["gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada"];
    if O200K.iter().any(|p| m.starts_with(p)) {
        Tokenizer::O200k
    } else if CL100K.iter().any(|p| m.starts_with(p)) {
        Tokenizer::Cl100k
    } else {
        Tokenizer::Estimate
    }
}

fn bpe(t: Tokenizer) -> Option<&'static CoreBPE> {
    match t {
        Tokenizer::O200k => Some(tiktoken_rs::o200k_base_singleton()),
        Tokenizer::Cl100k => Some(tiktoken_rs::cl100k_base_singleton()),
        Tokenizer::Estimate => None,
    }
}

/// Tokens in `text` for `model`.
pub fn count_tokens(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match bpe(tokenizer_for(model)) {
        Some(bpe) => (bpe.encode_ordinary(text).len() as u64).max(1),
        None => (text.chars().count() as u64 * 2).div_ceil(7).max(1),
    }
}

/// Loads the tokenizer tables now (they take a moment), so the first estimate on the
/// request path does not pay for it.
pub fn warm() {
    let _ = bpe(Tokenizer::O200k);
    let _ = bpe(Tokenizer::Cl100k);
}

/// OpenAI's per-message framing (`<|start|>role ... <|end|>`).
const TOKENS_PER_MESSAGE: u64 = 3;
/// OpenAI's priming of the assistant reply.
const TOKENS_REPLY_PRIMING: u64 = 3;
/// One image, at the lowest rate any provider bills for it.
const TOKENS_PER_IMAGE: u64 = 85;

/// Fields holding the prompt, in every dialect the gateway meets.
const PROMPT_FIELDS: &[&str] =
    &["messages", "system", "input", "prompt", "instructions", "contents", "systemInstruction", "system_instruction"];
/// Fields whose whole JSON the upstream bills as prompt text.
const SCHEMA_FIELDS: &[&str] = &["tools", "functions", "response_format", "tool_choice"];
/// Keys inside a prompt that are structure or binary payloads, not text.
const SKIP_KEYS: &[&str] = &[
    "type",
    "role",
    "id",
    "cache_control",
    "tool_call_id",
    "tool_use_id",
    "detail",
    "media_type",
    "mime_type",
    "mimeType",
    "source",
    "url",
    "data",
    "file_id",
];

fn is_image(o: &Map<String, Value>) -> bool {
    matches!(o.get("type").and_then(Value::as_str), Some("image" | "image_url" | "input_image"))
        || ["image_url", "inline_data", "inlineData", "file_data", "fileData"].iter().any(|k| o.contains_key(*k))
}

/// Appends the text leaves of `v` to `text`; counts images in `images`.
fn collect(v: &Value, text: &mut String, images: &mut u64) {
    match v {
        Value::String(s) => {
            text.push_str(s);
            text.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|x| collect(x, text, images)),
        Value::Object(o) if is_image(o) => *images += 1,
        Value::Object(o) => {
            for (k, x) in o {
                if !SKIP_KEYS.contains(&k.as_str()) {
                    collect(x, text, images);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Prompt tokens of a request `body` for `model`, estimated when the upstream reports
/// no usage; see the module docs. Never zero for a non-empty body.
pub fn estimate_prompt_tokens(model: &str, body: &[u8]) -> u64 {
    if body.is_empty() {
        return 0;
    }
    let whole = || count_tokens(model, &String::from_utf8_lossy(body)).max(1);
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return whole();
    };
    let mut text = String::new();
    let mut images = 0;
    let mut framing = 0;
    let mut found = false;
    for field in PROMPT_FIELDS {
        if let Some(v) = req.get(*field) {
            found = true;
            collect(v, &mut text, &mut images);
            if *field == "messages"
                && let Value::Array(messages) = v
            {
                framing += TOKENS_PER_MESSAGE * messages.len() as u64 + TOKENS_REPLY_PRIMING;
            }
        }
    }
    if !found {
        return whole();
    }
    for field in SCHEMA_FIELDS {
        if let Some(v) = req.get(*field).filter(|v| !v.is_null()) {
            text.push_str(&v.to_string());
            text.push('\n');
        }
    }
    (count_tokens(model, &text) + framing + images * TOKENS_PER_IMAGE).max(1)
}

/// The most prompt tokens one multimodal part of each kind may cost for a model (from
/// the model's configuration). A kind whose maximum is `None` is refused, so a request
/// can never cost more than its reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartMaxTokens {
    /// One image (OpenAI `image_url`, Responses `input_image`, Anthropic `image`, Gemini
    /// inline or file data with an `image/*` type).
    pub image: Option<u64>,
    /// One audio clip (`input_audio`, Gemini data with an `audio/*` type).
    pub audio: Option<u64>,
    /// One file or document (OpenAI `file`, Responses `input_file`, Anthropic
    /// `document`, Gemini data of any other type, video included).
    pub file: Option<u64>,
}

/// The kind of a multimodal part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartKind {
    /// An image.
    Image,
    /// Audio.
    Audio,
    /// A file, a document or a video.
    File,
}

impl PartKind {
    /// The kind's name, as error messages show it.
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Image => "image",
            PartKind::Audio => "audio",
            PartKind::File => "file",
        }
    }
}

impl fmt::Display for PartKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no prompt bound can be given for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptBoundError {
    /// The body has a part of a kind the model has no per-part maximum for.
    #[error("{kind} input is not accepted for this model: no {kind} token limit is configured (at {path})")]
    UnboundedPart {
        /// The part's kind.
        kind: PartKind,
        /// Where the part is in the body, e.g. `messages[0].content[1]`.
        path: String,
    },
    /// The body is not a JSON object (the request head parser refuses such bodies first).
    #[error("request body is not a JSON object")]
    NotAnObject,
}

impl tollgate_core::ServiceError for PromptBoundError {
    fn code(&self) -> tollgate_core::ErrorCode {
        tollgate_core::ErrorCode::BadRequest
    }
}

/// ChatML framing of one message beyond its role: `<|im_start|>`, the newline after the
/// role, `<|im_end|>` and the newline after it.
const BOUND_PER_MESSAGE: u64 = 4;
/// `<|im_start|>assistant\n`, which primes the reply.
const BOUND_REPLY_PRIMING: u64 = 3;
/// Added to every text leaf: tokens merge differently where a leaf meets its framing.
const BOUND_PER_LEAF: u64 = 1;
/// OpenAI renders tool definitions into a namespace preamble of its own; the JSON text
/// they are counted as already holds more than that rendering, and this covers the
/// preamble.
const BOUND_TOOLS_PREAMBLE: u64 = 16;
/// Each tool call in a prompt (OpenAI `tool_calls[]`, Responses `function_call`,
/// Anthropic `tool_use`, Gemini `functionCall`) is framed as a message of its own:
/// `<|im_start|>assistant to=functions.NAME\n ... <|im_end|>\n`.
const BOUND_PER_TOOL_CALL: u64 = 8;
/// Per message, for models whose framing is not public (Anthropic, Gemini, others).
const BOUND_PER_MESSAGE_OTHER: u64 = 8;
/// The largest tool-use system prompt Anthropic documents (Claude 3 Opus, `auto`: 530
/// tokens; Claude 4 models: 346), added when a request to a non-OpenAI model has tools.
/// <https://docs.anthropic.com/en/docs/tool-use-pricing-and-tokens>
const BOUND_TOOL_SYSTEM_PROMPT: u64 = 530;
/// Text is counted in pieces of at most this many bytes: tiktoken's cost grows faster
/// than linearly inside one pre-token (a long run of one character), and splitting only
/// ever stops merges, so each piece plus [`BOUND_PER_LEAF`] stays an upper bound.
const BOUND_PIECE: usize = 2048;

/// Top-level fields holding the prompt, in every dialect the gateway meets.
const BOUND_PROMPT_FIELDS: &[&str] =
    &["messages", "system", "input", "prompt", "instructions", "contents", "systemInstruction", "system_instruction"];
/// Top-level fields billed as their JSON text: tool and output schemas.
const BOUND_SCHEMA_FIELDS: &[&str] =
    &["tools", "functions", "response_format", "tool_choice", "text", "toolConfig", "tool_config"];
/// Keys whose (object) value is shown to the model as JSON: tool-call inputs and results.
const BOUND_RAW_KEYS: &[&str] = &["input", "args", "response", "arguments", "parameters", "input_schema"];
/// Keys inside a prompt that are structure, not text the model reads.
const BOUND_SKIP_KEYS: &[&str] = &["type", "cache_control", "detail", "signature"];

#[derive(Deserialize)]
struct BoundTop<'a> {
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    contents: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "systemInstruction")]
    system_instruction_camel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    system_instruction: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    functions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_choice: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "toolConfig")]
    tool_config_camel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_config: Option<&'a RawValue>,
}

/// One step of a JSON path.
enum Seg<'de> {
    Key(Cow<'de, str>),
    Index(usize),
}

/// The walk's running state: the tokens counted so far and where it is.
struct Bound<'de> {
    bpe: Option<&'static CoreBPE>,
    parts: PartMaxTokens,
    tokens: u64,
    path: Vec<Seg<'de>>,
    error: Option<PromptBoundError>,
}

impl Bound<'_> {
    /// Tokens of one text leaf: tiktoken in pieces, or its UTF-8 length.
    fn text(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        let n = match self.bpe {
            Some(bpe) => {
                let mut n = 0u64;
                let mut rest = s;
                while !rest.is_empty() {
                    let mut cut = rest.len().min(BOUND_PIECE);
                    while !rest.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    let (piece, tail) = rest.split_at(cut);
                    n += bpe.encode_ordinary(piece).len() as u64 + BOUND_PER_LEAF;
                    rest = tail;
                }
                n
            }
            None => s.len() as u64,
        };
        self.tokens = self.tokens.saturating_add(n);
    }

    fn path_text(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    fn part(&mut self, kind: PartKind) {
        let max = match kind {
            PartKind::Image => self.parts.image,
            PartKind::Audio => self.parts.audio,
            PartKind::File => self.parts.file,
        };
        match max {
            Some(n) => self.tokens = self.tokens.saturating_add(n),
            None if self.error.is_none() => {
                self.error = Some(PromptBoundError::UnboundedPart { kind, path: self.path_text() })
            }
            None => {}
        }
    }
}

/// Walks one JSON value, counting its text leaves and multimodal parts into a [`Bound`].
struct Walk<'a, 'de>(&'a mut Bound<'de>);

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.text(v);
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    // A number in a prompt is a token id (embeddings) or a small value: one token.
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.0.tokens = self.0.tokens.saturating_add(1);
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.0.tokens = self.0.tokens.saturating_add(1);
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.0.tokens = self.0.tokens.saturating_add(1);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            self.0.path.push(Seg::Index(i));
            let more = seq.next_element_seed(Walk(&mut *self.0))?;
            self.0.path.pop();
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Text read before the map turns out to be a part is taken back.
        let before = self.0.tokens;
        let in_tool_calls =
            self.0.path.len() >= 2 && matches!(&self.0.path[self.0.path.len() - 2], Seg::Key(k) if k == "tool_calls");
        let mut call = in_tool_calls;
        let mut kind: Option<PartKind> = None;
        let mut by_type: Option<PartKind> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match &*key {
                "type" => {
                    by_type = match map.next_value_seed(StrSeed)?.as_deref() {
                        Some("function_call" | "tool_use" | "custom_tool_call") => {
                            call = true;
                            None
                        }
                        Some("image_url" | "input_image" | "image") => Some(PartKind::Image),
                        Some("input_audio") => Some(PartKind::Audio),
                        Some("file" | "input_file" | "document") => Some(PartKind::File),
                        _ => None,
                    };
                }
                "image_url" => {
                    kind = Some(PartKind::Image);
                    map.next_value::<IgnoredAny>()?;
                }
                "input_audio" => {
                    kind = Some(PartKind::Audio);
                    map.next_value::<IgnoredAny>()?;
                }
                "functionCall" | "function_call" => {
                    call = true;
                    self.0.path.push(Seg::Key(key));
                    map.next_value_seed(Walk(&mut *self.0))?;
                    self.0.path.pop();
                }
                "inline_data" | "inlineData" | "file_data" | "fileData" => {
                    let mime = map.next_value_seed(MimeSeed)?.unwrap_or_default();
                    kind = Some(if mime.starts_with("image/") {
                        PartKind::Image
                    } else if mime.starts_with("audio/") {
                        PartKind::Audio
                    } else {
                        PartKind::File
                    });
                }
                k if BOUND_SKIP_KEYS.contains(&k) => {
                    map.next_value::<IgnoredAny>()?;
                }
                k if BOUND_RAW_KEYS.contains(&k) => {
                    let raw: &RawValue = map.next_value()?;
                    self.0.text(raw.get());
                }
                _ => {
                    self.0.path.push(Seg::Key(key));
                    map.next_value_seed(Walk(&mut *self.0))?;
                    self.0.path.pop();
                }
            }
        }
        if let Some(kind) = by_type.or(kind) {
            self.0.tokens = before;
            self.0.part(kind);
        } else if call {
            self.0.tokens = self.0.tokens.saturating_add(BOUND_PER_TOOL_CALL);
        }
        Ok(())
    }
}

/// A map key, borrowed when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Any value; the string it is, if it is one.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrSeed {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// Gemini `inline_data` / `file_data`: its `mime_type` (or `mimeType`), lowercased.
struct MimeSeed;

impl<'de> DeserializeSeed<'de> for MimeSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let mut mime = None;
        let found = d.deserialize_any(MimeVisitor(&mut mime))?;
        Ok(found.then_some(mime).flatten())
    }
}

struct MimeVisitor<'a>(&'a mut Option<String>);

impl<'de> Visitor<'de> for MimeVisitor<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == "mime_type" || key == "mimeType" {
                *self.0 = map.next_value_seed(StrSeed)?.map(|m| m.to_ascii_lowercase());
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(true)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// Walks one top-level prompt field; every object element of a top-level array is one
/// message (or item, or content) and costs the per-message framing.
fn walk_field<'de>(b: &mut Bound<'de>, name: &'static str, raw: &'de RawValue, per_message: u64) {
    let text = raw.get();
    b.path.push(Seg::Key(Cow::Borrowed(name)));
    let messages = if text.starts_with('[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => items,
            Err(_) => vec![raw],
        }
    } else {
        vec![raw]
    };
    let top_array = text.starts_with('[');
    for (i, item) in messages.into_iter().enumerate() {
        if top_array {
            b.path.push(Seg::Index(i));
        }
        let item_text = item.get();
        if item_text.starts_with('{') || !top_array {
            b.tokens = b.tokens.saturating_add(per_message);
        }
        let mut de = serde_json::Deserializer::from_str(item_text);
        if Walk(&mut *b).deserialize(&mut de).is_err() {
            // Validated by the request head already; count what cannot be walked whole.
            b.text(item_text);
        }
        if top_array {
            b.path.pop();
        }
    }
    b.path.pop();
}

/// An upper bound on the prompt tokens `body` (a request in any dialect the gateway
/// serves) can be billed for by `model`, which a budget reservation is computed from.
///
/// Counted: the text leaves of the prompt fields (OpenAI chat `messages`, tool-call
/// names and arguments included; Responses `input` and `instructions`; Anthropic `system`
/// and `messages`; Gemini `contents` and `systemInstruction`; embeddings `input` as text,
/// or one token per token id), tool inputs and results as their JSON text, and tool,
/// function and output schemas as their JSON text. Not counted: the body's own JSON
/// framing (keys included), `type` tags, cache markers and thinking-block signatures.
///
/// - OpenAI-family models ([`tokenizer_for`] is not [`Tokenizer::Estimate`]): each text
///   leaf counted with the real tokenizer (in pieces of 2 KiB, each plus one token of
///   margin, as text meets its framing), plus ChatML framing per message (4) and the reply
///   priming (3), plus 16 for the tool preamble when there are tools.
/// - Other models: the UTF-8 length of each text leaf (no tokenizer in use makes a token
///   of less than one byte), plus 8 per message and per prompt field, plus Anthropic's
///   largest documented tool-use system prompt (530) when there are tools.
/// - Each multimodal part adds its kind's maximum from `parts`; a part whose kind has no
///   maximum is [`PromptBoundError::UnboundedPart`], naming the part's JSON path.
///
/// Cost: one pass over the body without building it into values (top-level fields and
/// array items are borrowed slices), plus the tokenizer over the text; see the `tokens`
/// bench. Run bodies larger than 64 KiB off the async runtime.
pub fn prompt_token_bound(model: &str, body: &[u8], parts: &PartMaxTokens) -> Result<u64, PromptBoundError> {
    prompt_bound_with(tokenizer_for(model), body, parts)
}

/// [`prompt_token_bound`] under a given tokenizer. [`Tokenizer::Estimate`] gives the byte
/// bound, which holds for every model (no tokenizer in use makes a token of less than
/// one byte, and its framing allowances are the larger) and costs a few microseconds a
/// kilobyte where the real tokenizer costs about a hundred (see the `tokens` bench): the
/// gateway reserves with it first and counts with the tokenizer only when a budget is
/// tight enough for the difference to matter.
pub fn prompt_bound_with(tokenizer: Tokenizer, body: &[u8], parts: &PartMaxTokens) -> Result<u64, PromptBoundError> {
    let text = std::str::from_utf8(body).map_err(|_| PromptBoundError::NotAnObject)?;
    if !text.trim_start().starts_with('{') {
        return Err(PromptBoundError::NotAnObject);
    }
    let top: BoundTop<'_> = serde_json::from_str(text).map_err(|_| PromptBoundError::NotAnObject)?;
    let bpe = bpe(tokenizer);
    let mut b = Bound { bpe, parts: *parts, tokens: 0, path: Vec::new(), error: None };
    let (per_message, priming) = match bpe {
        Some(_) => (BOUND_PER_MESSAGE, BOUND_REPLY_PRIMING),
        None => (BOUND_PER_MESSAGE_OTHER, BOUND_PER_MESSAGE_OTHER),
    };
    let prompt = [
        ("messages", top.messages),
        ("system", top.system),
        ("input", top.input),
        ("prompt", top.prompt),
        ("instructions", top.instructions),
        ("contents", top.contents),
        ("systemInstruction", top.system_instruction_camel),
        ("system_instruction", top.system_instruction),
    ];
    debug_assert_eq!(prompt.len(), BOUND_PROMPT_FIELDS.len());
    for (name, raw) in prompt {
        if let Some(raw) = raw.filter(|r| r.get() != "null") {
            walk_field(&mut b, name, raw, per_message);
        }
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    let mut tools = false;
    let schemas = [
        top.tools,
        top.functions,
        top.response_format,
        top.tool_choice,
        top.text,
        top.tool_config_camel,
        top.tool_config,
    ];
    debug_assert_eq!(schemas.len(), BOUND_SCHEMA_FIELDS.len());
    for (i, raw) in schemas.into_iter().enumerate() {
        let Some(raw) = raw.filter(|r| !matches!(r.get(), "null" | "[]" | "{}")) else { continue };
        // tools and functions
        tools |= i < 2;
        b.text(raw.get());
    }
    if tools {
        let preamble = if bpe.is_some() { BOUND_TOOLS_PREAMBLE } else { BOUND_TOOL_SYSTEM_PROMPT };
        b.tokens = b.tokens.saturating_add(preamble);
    }
    Ok(b.tokens.saturating_add(priming))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_map_to_their_tokenizer() {
        for (m, t) in [
            ("gpt-4o-mini-2024-07-18", Tokenizer::O200k),
            ("GPT-5", Tokenizer::O200k),
            ("o3-mini", Tokenizer::O200k),
            ("openai/gpt-4.1", Tokenizer::O200k),
            ("gpt-4-turbo", Tokenizer::Cl100k),
            ("gpt-3.5-turbo", Tokenizer::Cl100k),
            ("text-embedding-3-small", Tokenizer::Cl100k),
            ("claude-sonnet-4-5", Tokenizer::Estimate),
            ("gemini-2.5-flash", Tokenizer::Estimate),
        ] {
            assert_eq!(tokenizer_for(m), t, "{m}");
        }
    }

    #[test]
    fn counts_are_the_real_tokenizers_and_never_zero_for_text() {
        // "hello world" is two tokens in both OpenAI encodings.
        assert_eq!(count_tokens("gpt-4o", "hello world"), 2);
        assert_eq!(count_tokens("gpt-4", "hello world"), 2);
        assert_eq!(count_tokens("gpt-4o", ""), 0);
        // 7 characters → 2 estimated tokens; 1 character → 1.
        assert_eq!(count_tokens("claude-x", "abcdefg"), 2);
        assert_eq!(count_tokens("claude-x", "a"), 1);
        assert_eq!(count_tokens("gemini-x", &"word ".repeat(700)), 1000);
    }

    #[test]
    fn a_chat_prompt_counts_its_text_framing_and_tools_not_its_json() {
        let body = br#"{"model":"gpt-4o","max_tokens":50,"stream":true,
            "messages":[{"role":"system","content":"hello world"},
                        {"role":"user","content":[{"type":"text","text":"hello world"},
                          {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}]}]}"#;
        // "hello world\n" is 3 tokens in o200k; two of them, 2 messages × 3 + 3, one image.
        let text = count_tokens("gpt-4o", "hello world\nhello world\n");
        assert_eq!(estimate_prompt_tokens("gpt-4o", body), text + 9 + 85);
        // Tools are billed as prompt: adding one adds tokens.
        let with_tools = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather in a city"}}]}"#;
        let without = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(estimate_prompt_tokens("gpt-4o", with_tools) > estimate_prompt_tokens("gpt-4o", without) + 5);
    }

    #[test]
    fn anthropic_responses_and_embedding_bodies_are_read_too() {
        let anthropic = br#"{"model":"claude-sonnet-4-5","max_tokens":10,
            "system":[{"type":"text","text":"abcdefg","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"abcdefg"},
              {"type":"image","source":{"type":"base64","media_type":"image/png","data":"QUFBQUFBQUFBQUFBQUFB"}}]}]}"#;
        // 2 × "abcdefg\n" = 16 chars → 5 estimated tokens; 1 message framing; 1 image.
        assert_eq!(estimate_prompt_tokens("claude-sonnet-4-5", anthropic), 5 + 6 + 85);
        let responses = br#"{"model":"gpt-4o","instructions":"hello world","input":"hello world"}"#;
        assert_eq!(estimate_prompt_tokens("gpt-4o", responses), count_tokens("gpt-4o", "hello world\nhello world\n"));
        let embeddings = br#"{"model":"text-embedding-3-small","input":["hello world","hello world"]}"#;
        assert_eq!(
            estimate_prompt_tokens("text-embedding-3-small", embeddings),
            count_tokens("text-embedding-3-small", "hello world\nhello world\n")
        );
    }

    #[test]
    fn hostile_or_unknown_bodies_fall_back_to_counting_everything() {
        assert_eq!(estimate_prompt_tokens("gpt-4o", b""), 0);
        for body in [&b"not json at all"[..], b"[1,2,3]", b"{\"model\":\"x\"}", b"\xff\xfe{", b"{}"] {
            let want = count_tokens("gpt-4o", &String::from_utf8_lossy(body)).max(1);
            assert_eq!(estimate_prompt_tokens("gpt-4o", body), want, "{:?}", String::from_utf8_lossy(body));
            assert!(estimate_prompt_tokens("gpt-4o", body) >= 1);
        }
        // Deep nesting is refused by the JSON reader (recursion limit), not a stack overflow.
        let deep = format!("{{\"messages\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(estimate_prompt_tokens("gpt-4o", deep.as_bytes()) > 0);
        // Empty messages still cost the reply priming.
        assert_eq!(estimate_prompt_tokens("gpt-4o", br#"{"messages":[]}"#), 3);
    }

    const PARTS: PartMaxTokens = PartMaxTokens { image: Some(1000), audio: Some(2000), file: Some(5000) };

    fn bound(model: &str, body: &str) -> u64 {
        prompt_token_bound(model, body.as_bytes(), &PARTS).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    #[test]
    fn the_bound_counts_text_and_framing_not_json() {
        let tok = |s: &str| count_tokens("gpt-4o", s);
        let body = r#"{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"user","content":"hello world"}]}"#;
        // role and text, one margin each; 4 of framing; 3 of priming.
        assert_eq!(bound("gpt-4o", body), tok("user") + 1 + tok("hello world") + 1 + 4 + 3);
        // Other models: the bytes of the text, 8 per message and 8 of priming.
        assert_eq!(bound("claude-sonnet-4-5", body), 4 + 11 + 8 + 8);
        // Unknown fields and JSON framing cost nothing.
        let padded = r#"{"model":"gpt-4o","max_tokens":50,"metadata":{"k":"a long value that is not prompt"},
            "messages":[{"role":"user","content":"hello world"}],"temperature":0.5}"#;
        assert_eq!(bound("gpt-4o", padded), bound("gpt-4o", body));
    }

    #[test]
    fn every_dialects_prompt_fields_are_counted() {
        let text = "the quick brown fox jumps over the lazy dog";
        let empty = |model: &str, body: &str| bound(model, body);
        let cases: &[(&str, String, String)] = &[
            // OpenAI chat: content parts, names, tool calls.
            (
                "gpt-4o",
                format!(r#"{{"messages":[{{"role":"user","name":"ann","content":[{{"type":"text","text":"{text}"}}]}}]}}"#),
                r#"{"messages":[{"role":"user","name":"ann","content":[{"type":"text","text":""}]}]}"#.to_owned(),
            ),
            (
                "gpt-4o",
                format!(r#"{{"messages":[{{"role":"assistant","tool_calls":[{{"id":"c","type":"function","function":{{"name":"f","arguments":"{{\"q\":\"{text}\"}}"}}}}]}}]}}"#),
                r#"{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"q\":\"\"}"}}]}]}"#.to_owned(),
            ),
            // Responses.
            ("gpt-4o", format!(r#"{{"instructions":"{text}","input":"x"}}"#), r#"{"instructions":"","input":"x"}"#.to_owned()),
            (
                "gpt-4o",
                format!(r#"{{"input":[{{"role":"user","content":[{{"type":"input_text","text":"{text}"}}]}}]}}"#),
                r#"{"input":[{"role":"user","content":[{"type":"input_text","text":""}]}]}"#.to_owned(),
            ),
            // Anthropic: system blocks, tool_use input, tool_result content.
            (
                "claude-sonnet-4-5",
                format!(r#"{{"system":[{{"type":"text","text":"{text}","cache_control":{{"type":"ephemeral"}}}}],"messages":[]}}"#),
                r#"{"system":[{"type":"text","text":"","cache_control":{"type":"ephemeral"}}],"messages":[]}"#.to_owned(),
            ),
            (
                "claude-sonnet-4-5",
                format!(r#"{{"messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"f","input":{{"q":"{text}"}}}}]}}]}}"#),
                r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"q":""}}]}]}"#.to_owned(),
            ),
            (
                "claude-sonnet-4-5",
                format!(r#"{{"messages":[{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":[{{"type":"text","text":"{text}"}}]}}]}}]}}"#),
                r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":""}]}]}]}"#.to_owned(),
            ),
            // Gemini.
            (
                "gemini-2.5-flash",
                format!(r#"{{"systemInstruction":{{"parts":[{{"text":"{text}"}}]}},"contents":[]}}"#),
                r#"{"systemInstruction":{"parts":[{"text":""}]},"contents":[]}"#.to_owned(),
            ),
            (
                "gemini-2.5-flash",
                format!(r#"{{"contents":[{{"role":"user","parts":[{{"text":"{text}"}}]}}]}}"#),
                r#"{"contents":[{"role":"user","parts":[{"text":""}]}]}"#.to_owned(),
            ),
            // Embeddings: a string, strings.
            ("text-embedding-3-small", format!(r#"{{"input":"{text}"}}"#), r#"{"input":""}"#.to_owned()),
            ("text-embedding-3-small", format!(r#"{{"input":["{text}","{text}"]}}"#), r#"{"input":["",""]}"#.to_owned()),
        ];
        for (model, with, without) in cases {
            let (a, b) = (bound(model, with), empty(model, without));
            let want =
                if tokenizer_for(model) == Tokenizer::Estimate { text.len() as u64 } else { count_tokens(model, text) };
            assert!(a >= b + want, "{model}: {with} -> {a}, without the text {b}, text alone {want}");
        }
        // Token ids are one token each.
        assert_eq!(bound("text-embedding-3-small", r#"{"input":[[1,2,3],[4,5]]}"#), 5 + 3);
        assert_eq!(bound("text-embedding-3-small", r#"{"input":[1,2,3]}"#), 3 + 3);
    }

    #[test]
    fn tools_and_schemas_count_as_their_json_and_tool_prompts_are_added() {
        let plain = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let tools = r#"{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}"#;
        let schema_json = r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]"#;
        let json_tokens = count_tokens("gpt-4o", schema_json);
        assert!(bound("gpt-4o", tools) >= bound("gpt-4o", plain) + json_tokens + 16);
        // Anthropic's tool-use system prompt.
        assert!(
            bound("claude-sonnet-4-5", tools) >= bound("claude-sonnet-4-5", plain) + schema_json.len() as u64 + 530
        );
        let format = r#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}"#;
        assert!(bound("gpt-4o", format) > bound("gpt-4o", plain) + 10);
    }

    #[test]
    fn each_multimodal_part_adds_its_kinds_maximum() {
        let text_only = bound("gpt-4o", r#"{"messages":[{"role":"user","content":[{"type":"text","text":"look"}]}]}"#);
        let with = |part: &str| {
            format!(r#"{{"messages":[{{"role":"user","content":[{{"type":"text","text":"look"}},{part}]}}]}}"#)
        };
        let base64 = "QUFB".repeat(5000);
        for (part, max) in [
            (format!(r#"{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{base64}"}}}}"#), 1000),
            (format!(r#"{{"type":"input_audio","input_audio":{{"data":"{base64}","format":"wav"}}}}"#), 2000),
            (format!(r#"{{"type":"file","file":{{"file_data":"data:application/pdf;base64,{base64}"}}}}"#), 5000),
            (r#"{"type":"input_image","image_url":"https://x/y.png"}"#.to_owned(), 1000),
            (r#"{"type":"input_file","file_id":"file-1"}"#.to_owned(), 5000),
            (
                format!(
                    r#"{{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{base64}"}}}}"#
                ),
                1000,
            ),
            (r#"{"type":"document","source":{"type":"text","data":"a long text document"}}"#.to_owned(), 5000),
            (format!(r#"{{"inline_data":{{"mime_type":"image/jpeg","data":"{base64}"}}}}"#), 1000),
            (format!(r#"{{"inlineData":{{"mimeType":"audio/mp3","data":"{base64}"}}}}"#), 2000),
            (r#"{"fileData":{"mimeType":"video/mp4","fileUri":"gs://b/v.mp4"}}"#.to_owned(), 5000),
            (r#"{"file_data":{"mime_type":"application/pdf","file_uri":"gs://b/d.pdf"}}"#.to_owned(), 5000),
        ] {
            assert_eq!(bound("gpt-4o", &with(&part)), text_only + max, "{part:.80}");
        }
    }

    #[test]
    fn a_part_without_a_maximum_is_refused_naming_its_kind_and_path() {
        let none = PartMaxTokens { image: Some(10), ..PartMaxTokens::default() };
        let cases = [
            (
                r#"{"messages":[{"role":"user","content":"hi"},{"role":"user","content":[{"type":"text","text":"x"},{"type":"input_audio","input_audio":{"data":"AA","format":"wav"}}]}]}"#,
                PartKind::Audio,
                "messages[1].content[1]",
            ),
            (
                r#"{"contents":[{"role":"user","parts":[{"inline_data":{"mime_type":"application/pdf","data":"AA"}}]}]}"#,
                PartKind::File,
                "contents[0].parts[0]",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"document","source":{"type":"text","data":"x"}}]}]}]}"#,
                PartKind::File,
                "messages[0].content[0].content[0]",
            ),
        ];
        for (body, kind, path) in cases {
            let err = prompt_token_bound("gpt-4o", body.as_bytes(), &none).unwrap_err();
            assert_eq!(err, PromptBoundError::UnboundedPart { kind, path: path.to_owned() });
            let message = err.to_string();
            assert!(message.contains(kind.as_str()) && message.contains(path), "{message}");
        }
        // An image is fine: its kind has a maximum.
        let image =
            r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x"}}]}]}"#;
        assert!(prompt_token_bound("gpt-4o", image.as_bytes(), &none).is_ok());
        for bad in [&b"[1]"[..], b"not json", b"\xff"] {
            assert_eq!(prompt_token_bound("gpt-4o", bad, &none), Err(PromptBoundError::NotAnObject));
        }
    }

    #[test]
    fn a_long_run_of_one_character_is_counted_in_pieces_and_stays_a_bound() {
        let spaces = " ".repeat(100_000);
        let body = serde_json::to_vec(&serde_json::json!({"messages":[{"role":"user","content": spaces}]})).unwrap();
        let n = prompt_token_bound("gpt-4o", &body, &PARTS).unwrap();
        // (The whole run is not counted here: that is the cost the pieces avoid.)
        assert!(n >= count_tokens("gpt-4o", &" ".repeat(BOUND_PIECE)) * (100_000 / BOUND_PIECE as u64), "{n}");
        assert!(n <= 100_000 / 8, "pieces add a token each, not one per byte: {n}");
    }
}
