//! Stream adapters: an upstream's SSE events in, the caller's SSE events out, usage read
//! on the way.
//!
//! Same-dialect adapters forward every event byte for byte (OpenAI's usage-only chunk
//! is removed when the caller did not ask for it) and only parse the few events that
//! carry usage. Cross-dialect adapters translate each event as it arrives: OpenAI chat ⇄
//! Anthropic Messages, Gemini → OpenAI chat, and Gemini → Anthropic by composing the two.

use crate::dialect::{SseEvent, anthropic_usage, gemini_usage, openai_usage, parse_event, responses_usage};
use crate::translate::{TranslateError, anthropic_stop_reason, gemini_finish_reason, openai_finish_reason};
use crate::{Dialect, Usage};
use bytes::BytesMut;
use serde_json::{Value, json};
use std::sync::Arc;

/// Turns an upstream SSE stream into the caller's SSE stream, one event at a time,
/// reading usage on the way.
pub trait StreamAdapter: Send + Sync {
    /// One complete SSE event from the upstream (its raw bytes, including the
    /// terminating blank line). Appends what the caller should receive to `out`.
    fn on_event(&mut self, event: &[u8], out: &mut BytesMut);
    /// The upstream ended the stream cleanly; appends any closing events the caller's
    /// dialect needs.
    fn on_end(&mut self, out: &mut BytesMut);
    /// Usage seen so far (final once the upstream reported it).
    fn usage(&self) -> Option<Usage>;
    /// The generated text seen so far (content and tool-call argument deltas), capped at
    /// 1 MiB, for a tokenizer count when the upstream never reports usage.
    fn generated_text(&self) -> &str;
}

/// Options of a stream adapter.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// What the caller asked for; shown as `model` in translated events.
    pub public_model: Arc<str>,
    /// The OpenAI caller did not ask for the usage chunk: remove usage-only chunks
    /// (`choices: []`) before they reach the caller.
    pub strip_usage_chunk: bool,
}

/// The adapter for an (upstream, caller) pair; unsupported pairs are refused.
pub fn stream_adapter(
    upstream: Dialect,
    caller: Dialect,
    opts: StreamOptions,
) -> Result<Box<dyn StreamAdapter>, TranslateError> {
    use Dialect::*;
    Ok(match (upstream, caller) {
        (u, c) if u == c => Box::new(Passthrough::new(u, opts.strip_usage_chunk)),
        (AnthropicMessages, OpenAiChat) => Box::new(AnthropicToOpenAi::new(opts)),
        (OpenAiChat, AnthropicMessages) => Box::new(OpenAiToAnthropic::new(opts)),
        (Gemini, OpenAiChat) => Box::new(GeminiToOpenAi::new(opts)),
        (Gemini, AnthropicMessages) => {
            let first = GeminiToOpenAi::new(StreamOptions { strip_usage_chunk: false, ..opts.clone() });
            Box::new(Compose { first: Box::new(first), second: Box::new(OpenAiToAnthropic::new(opts)) })
        }
        (u, c) => return Err(TranslateError::unsupported(u, c)),
    })
}

/// Generated text is kept up to this many bytes.
const MAX_TEXT: usize = 1 << 20;

fn push_text(text: &mut String, s: &str) {
    if text.len() < MAX_TEXT {
        let room = MAX_TEXT - text.len();
        let mut end = s.len().min(room);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        text.push_str(&s[..end]);
    }
}

/// Appends the raw (still JSON-escaped) string values of generated-text fields found in
/// `data` without parsing it: good enough for a token estimate, and cheap enough for
/// every event of a pass-through stream.
fn scan_text(data: &str, text: &mut String) {
    for field in
        ["\"content\":\"", "\"text\":\"", "\"arguments\":\"", "\"partial_json\":\"", "\"delta\":\"", "\"thinking\":\""]
    {
        let mut rest = data;
        while let Some(i) = rest.find(field) {
            let after = &rest[i + field.len()..];
            let bytes = after.as_bytes();
            let mut j = 0;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(after.len());
            if let Some(s) = after.get(..end) {
                push_text(text, s);
            }
            rest = after.get(end..).unwrap_or("");
        }
    }
}

fn emit_data(out: &mut BytesMut, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn emit_named(out: &mut BytesMut, name: &str, v: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    emit_data(out, v);
}

/// Same dialect on both sides: bytes forwarded as they came.
struct Passthrough {
    dialect: Dialect,
    strip_usage_chunk: bool,
    usage: Option<Usage>,
    text: String,
}

impl Passthrough {
    fn new(dialect: Dialect, strip_usage_chunk: bool) -> Self {
        Passthrough { dialect, strip_usage_chunk, usage: None, text: String::new() }
    }

    /// Reads usage from an event; false when the event is a usage-only chunk to strip.
    fn inspect(&mut self, e: &SseEvent<'_>) -> bool {
        let data = &*e.data;
        scan_text(data, &mut self.text);
        if !data.contains("sage") {
            return true;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else { return true };
        match self.dialect {
            Dialect::OpenAiChat | Dialect::OpenAiEmbeddings => {
                if let Some(u) = openai_usage(&v) {
                    self.usage = Some(u);
                    let usage_only = v.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
                    return !(usage_only && self.strip_usage_chunk);
                }
            }
            Dialect::OpenAiResponses => {
                if let Some(u) = v.get("response").and_then(|r| r.get("usage")).and_then(responses_usage) {
                    self.usage = Some(u);
                }
            }
            Dialect::AnthropicMessages => merge_anthropic_usage(&mut self.usage, &v),
            Dialect::Gemini => {
                if let Some(u) = gemini_usage(&v) {
                    self.usage = Some(u);
                }
            }
        }
        true
    }
}

/// Anthropic streams report input usage in `message_start` and cumulative output in
/// `message_delta` (which may repeat the input counts).
fn merge_anthropic_usage(usage: &mut Option<Usage>, v: &Value) {
    match v.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            if let Some(u) = v.get("message").and_then(|m| m.get("usage")).and_then(anthropic_usage) {
                *usage = Some(u);
            }
        }
        Some("message_delta") => {
            if let Some(d) = v.get("usage").filter(|u| u.is_object()) {
                let current = usage.get_or_insert_with(Usage::default);
                if let Some(o) = d.get("output_tokens").and_then(Value::as_u64) {
                    current.output_tokens = o;
                }
                if d.get("input_tokens").and_then(Value::as_u64).is_some()
                    && let Some(full) = anthropic_usage(d)
                {
                    current.input_tokens = full.input_tokens;
                    current.cached_input_tokens = full.cached_input_tokens;
                    current.cache_write_tokens = full.cache_write_tokens;
                }
            }
        }
        _ => {}
    }
}

impl StreamAdapter for Passthrough {
    fn on_event(&mut self, event: &[u8], out: &mut BytesMut) {
        let keep = match parse_event(event) {
            Some(e) => self.inspect(&e),
            None => true,
        };
        if keep {
            out.extend_from_slice(event);
        }
    }

    fn on_end(&mut self, _out: &mut BytesMut) {}

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn generated_text(&self) -> &str {
        &self.text
    }
}

/// Builds OpenAI chat chunks.
struct ChunkWriter {
    id: String,
    created: u64,
    model: Arc<str>,
}

impl ChunkWriter {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        self.chunk_at(0, delta, finish)
    }

    fn chunk_at(&self, index: u64, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": &*self.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        })
    }

    fn usage_chunk(&self, u: &Usage) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": &*self.model,
            "choices": [],
            "usage": crate::translate::openai_usage_json(u),
        })
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Anthropic Messages events → OpenAI chat chunks.
struct AnthropicToOpenAi {
    w: ChunkWriter,
    strip_usage_chunk: bool,
    usage: Option<Usage>,
    text: String,
    /// Anthropic content-block index → OpenAI tool-call index, for tool_use blocks.
    tools: Vec<(u64, usize)>,
    done: bool,
}

impl AnthropicToOpenAi {
    fn new(opts: StreamOptions) -> Self {
        AnthropicToOpenAi {
            w: ChunkWriter { id: "chatcmpl-tollgate".into(), created: now_secs(), model: opts.public_model },
            strip_usage_chunk: opts.strip_usage_chunk,
            usage: None,
            text: String::new(),
            tools: Vec::new(),
            done: false,
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.strip_usage_chunk
            && let Some(u) = &self.usage
        {
            emit_data(out, &self.w.usage_chunk(u));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

impl StreamAdapter for AnthropicToOpenAi {
    fn on_event(&mut self, event: &[u8], out: &mut BytesMut) {
        let Some(e) = parse_event(event) else { return };
        let Ok(v) = serde_json::from_str::<Value>(&e.data) else { return };
        merge_anthropic_usage(&mut self.usage, &v);
        match v.get("type").and_then(Value::as_str).or(e.event) {
            Some("message_start") => {
                if let Some(id) = v.get("message").and_then(|m| m.get("id")).and_then(Value::as_str) {
                    self.w.id = format!("chatcmpl-{id}");
                }
                emit_data(out, &self.w.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            Some("content_block_start") => {
                let block = &v["content_block"];
                if block["type"] == "tool_use" {
                    let index = self.tools.len();
                    self.tools.push((v["index"].as_u64().unwrap_or(0), index));
                    let call = json!({"index": index, "id": block["id"], "type": "function",
                        "function": {"name": block["name"], "arguments": ""}});
                    emit_data(out, &self.w.chunk(json!({"tool_calls": [call]}), None));
                } else if let Some(t) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    push_text(&mut self.text, t);
                    emit_data(out, &self.w.chunk(json!({"content": t}), None));
                }
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        let t = d["text"].as_str().unwrap_or("");
                        push_text(&mut self.text, t);
                        emit_data(out, &self.w.chunk(json!({"content": t}), None));
                    }
                    // Thinking is not shown to OpenAI callers, but it is billed output.
                    Some("thinking_delta") => push_text(&mut self.text, d["thinking"].as_str().unwrap_or("")),
                    Some("input_json_delta") => {
                        let block = v["index"].as_u64().unwrap_or(0);
                        let Some(&(_, index)) = self.tools.iter().find(|(b, _)| *b == block) else { return };
                        let args = d["partial_json"].as_str().unwrap_or("");
                        if args.is_empty() {
                            return;
                        }
                        push_text(&mut self.text, args);
                        let call = json!({"index": index, "function": {"arguments": args}});
                        emit_data(out, &self.w.chunk(json!({"tool_calls": [call]}), None));
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                let reason = v["delta"]["stop_reason"].as_str().map(openai_finish_reason);
                if reason.is_some() {
                    emit_data(out, &self.w.chunk(json!({}), reason));
                }
            }
            Some("message_stop") => self.finish(out),
            Some("error") => {
                let msg = v["error"]["message"].as_str().unwrap_or("upstream error");
                emit_data(
                    out,
                    &json!({"error": {"message": msg, "type": v["error"]["type"], "code": "upstream_error"}}),
                );
            }
            _ => {}
        }
    }

    fn on_end(&mut self, out: &mut BytesMut) {
        self.finish(out);
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn generated_text(&self) -> &str {
        &self.text
    }
}

/// OpenAI chat chunks → Anthropic Messages events.
struct OpenAiToAnthropic {
    model: Arc<str>,
    id: String,
    started: bool,
    /// The open content block: its index and whether it is text (else a tool call,
    /// with the OpenAI tool-call index it maps).
    open: Option<(usize, Option<u64>)>,
    next_block: usize,
    stop_reason: Option<&'static str>,
    usage: Option<Usage>,
    text: String,
    done: bool,
}

impl OpenAiToAnthropic {
    fn new(opts: StreamOptions) -> Self {
        OpenAiToAnthropic {
            model: opts.public_model,
            id: "msg_tollgate".into(),
            started: false,
            open: None,
            next_block: 0,
            stop_reason: None,
            usage: None,
            text: String::new(),
            done: false,
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": &*self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        emit_named(out, "message_start", &json!({"type": "message_start", "message": message}));
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            emit_named(out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}));
        }
    }

    fn open_block(&mut self, out: &mut BytesMut, tool: Option<u64>, block: Value) -> usize {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, tool));
        emit_named(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.done = true;
        self.start(out);
        self.close_block(out);
        let u = self.usage.unwrap_or_default();
        let usage = json!({
            "input_tokens": u.input_tokens.saturating_sub(u.cached_input_tokens),
            "cache_read_input_tokens": u.cached_input_tokens,
            "output_tokens": u.output_tokens,
        });
        let delta = json!({"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null});
        emit_named(out, "message_delta", &json!({"type": "message_delta", "delta": delta, "usage": usage}));
        emit_named(out, "message_stop", &json!({"type": "message_stop"}));
    }
}

impl StreamAdapter for OpenAiToAnthropic {
    fn on_event(&mut self, event: &[u8], out: &mut BytesMut) {
        let Some(e) = parse_event(event) else { return };
        if e.data.trim() == "[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&e.data) else { return };
        if let Some(err) = v.get("error") {
            let msg = err["message"].as_str().unwrap_or("upstream error");
            emit_named(out, "error", &json!({"type": "error", "error": {"type": "api_error", "message": msg}}));
            return;
        }
        if let Some(id) = v.get("id").and_then(Value::as_str).filter(|_| !self.started) {
            self.id = format!("msg_{id}");
        }
        if let Some(u) = openai_usage(&v) {
            self.usage = Some(u);
        }
        let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else { return };
        self.start(out);
        let delta = &choice["delta"];
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            push_text(&mut self.text, t);
            let index = match self.open {
                Some((i, None)) => i,
                _ => self.open_block(out, None, json!({"type": "text", "text": ""})),
            };
            let d = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}});
            emit_named(out, "content_block_delta", &d);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            let tool = call["index"].as_u64().unwrap_or(0);
            let index = match self.open {
                Some((i, Some(t))) if t == tool => i,
                _ => {
                    let block =
                        json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}});
                    self.open_block(out, Some(tool), block)
                }
            };
            if let Some(args) = call["function"]["arguments"].as_str().filter(|a| !a.is_empty()) {
                push_text(&mut self.text, args);
                let d = json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": args}});
                emit_named(out, "content_block_delta", &d);
            }
        }
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(anthropic_stop_reason(r));
        }
    }

    fn on_end(&mut self, out: &mut BytesMut) {
        self.finish(out);
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn generated_text(&self) -> &str {
        &self.text
    }
}

/// Gemini `streamGenerateContent?alt=sse` events → OpenAI chat chunks. Each candidate
/// is a choice (`candidateCount` > 1 streams several).
struct GeminiToOpenAi {
    w: ChunkWriter,
    strip_usage_chunk: bool,
    started: bool,
    /// Tool calls seen so far, per choice index.
    tool_calls: Vec<(u64, usize)>,
    usage: Option<Usage>,
    text: String,
    done: bool,
}

impl GeminiToOpenAi {
    fn new(opts: StreamOptions) -> Self {
        GeminiToOpenAi {
            w: ChunkWriter { id: "chatcmpl-tollgate".into(), created: now_secs(), model: opts.public_model },
            strip_usage_chunk: opts.strip_usage_chunk,
            started: false,
            tool_calls: Vec::new(),
            usage: None,
            text: String::new(),
            done: false,
        }
    }

    fn calls_of(&mut self, choice: u64) -> &mut usize {
        let i = match self.tool_calls.iter().position(|(c, _)| *c == choice) {
            Some(i) => i,
            None => {
                self.tool_calls.push((choice, 0));
                self.tool_calls.len() - 1
            }
        };
        &mut self.tool_calls[i].1
    }
}

impl StreamAdapter for GeminiToOpenAi {
    fn on_event(&mut self, event: &[u8], out: &mut BytesMut) {
        let Some(e) = parse_event(event) else { return };
        let Ok(v) = serde_json::from_str::<Value>(&e.data) else { return };
        if let Some(u) = gemini_usage(&v) {
            self.usage = Some(u);
        }
        if let Some(err) = v.get("error") {
            let msg = err["message"].as_str().unwrap_or("upstream error");
            emit_data(out, &json!({"error": {"message": msg, "type": "upstream_error", "code": "upstream_error"}}));
            return;
        }
        if let Some(id) = v.get("responseId").and_then(Value::as_str).filter(|_| !self.started) {
            self.w.id = format!("chatcmpl-{id}");
        }
        if !self.started {
            self.started = true;
            emit_data(out, &self.w.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let candidates = v.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for (i, cand) in candidates.iter().enumerate() {
            let choice = cand.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
            for part in cand["content"]["parts"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let text = part.get("text").and_then(Value::as_str);
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    // Not shown to the caller, but billed as output.
                    push_text(&mut self.text, text.unwrap_or(""));
                    continue;
                }
                if let Some(t) = text {
                    push_text(&mut self.text, t);
                    emit_data(out, &self.w.chunk_at(choice, json!({"content": t}), None));
                } else if let Some(fc) = part.get("functionCall") {
                    let args = fc.get("args").map(Value::to_string).unwrap_or_else(|| "{}".into());
                    push_text(&mut self.text, &args);
                    let n = self.calls_of(choice);
                    let index = *n;
                    *n += 1;
                    let id =
                        fc.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{index}"), str::to_owned);
                    let call = json!({"index": index, "id": id, "type": "function",
                        "function": {"name": fc["name"], "arguments": args}});
                    emit_data(out, &self.w.chunk_at(choice, json!({"tool_calls": [call]}), None));
                }
            }
            if let Some(r) = cand.get("finishReason").and_then(Value::as_str) {
                let called = *self.calls_of(choice) > 0;
                let reason = if called { "tool_calls" } else { gemini_finish_reason(r) };
                emit_data(out, &self.w.chunk_at(choice, json!({}), Some(reason)));
            }
        }
        // A blocked prompt has no candidates at all.
        if candidates.is_empty() && v["promptFeedback"].get("blockReason").is_some() {
            emit_data(out, &self.w.chunk(json!({}), Some("content_filter")));
        }
    }

    fn on_end(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.strip_usage_chunk
            && let Some(u) = &self.usage
        {
            emit_data(out, &self.w.usage_chunk(u));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn generated_text(&self) -> &str {
        &self.text
    }
}

/// Two adapters in a row: the first one's events are re-framed and fed to the second.
struct Compose {
    first: Box<dyn StreamAdapter>,
    second: Box<dyn StreamAdapter>,
}

impl Compose {
    fn relay(&mut self, mid: &[u8], out: &mut BytesMut) {
        let mut rest = mid;
        while let Some(end) = rest.windows(2).position(|w| w == b"\n\n").map(|i| i + 2) {
            self.second.on_event(&rest[..end], out);
            rest = &rest[end..];
        }
    }
}

impl StreamAdapter for Compose {
    fn on_event(&mut self, event: &[u8], out: &mut BytesMut) {
        let mut mid = BytesMut::new();
        self.first.on_event(event, &mut mid);
        self.relay(&mid, out);
    }

    fn on_end(&mut self, out: &mut BytesMut) {
        let mut mid = BytesMut::new();
        self.first.on_end(&mut mid);
        self.relay(&mid, out);
        self.second.on_end(out);
    }

    fn usage(&self) -> Option<Usage> {
        self.first.usage()
    }

    fn generated_text(&self) -> &str {
        self.first.generated_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_after(upstream: Dialect, caller: Dialect, events: &[&str]) -> Option<Usage> {
        let opts = StreamOptions { public_model: "m".into(), strip_usage_chunk: true };
        let mut a = stream_adapter(upstream, caller, opts).unwrap();
        let mut out = BytesMut::new();
        for e in events {
            a.on_event(format!("data: {e}\n\n").as_bytes(), &mut out);
        }
        a.usage()
    }

    #[test]
    fn stream_usage_table() {
        let start = r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":300,"output_tokens":1}}}"#;
        let delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":42}}"#;
        let full_delta =
            r#"{"type":"message_delta","usage":{"input_tokens":20,"cache_read_input_tokens":300,"output_tokens":50}}"#;
        let anthropic = |events: &[&str]| {
            let a = usage_after(Dialect::AnthropicMessages, Dialect::AnthropicMessages, events);
            assert_eq!(a, usage_after(Dialect::AnthropicMessages, Dialect::OpenAiChat, events), "same either way");
            a
        };
        let cases: Vec<(Option<Usage>, Option<Usage>)> = vec![
            (anthropic(&[]), None),
            (
                anthropic(&[start]),
                Some(Usage {
                    input_tokens: 510,
                    output_tokens: 1,
                    cached_input_tokens: 300,
                    cache_write_tokens: 200,
                    reasoning_tokens: 0,
                }),
            ),
            // Output is cumulative: the last message_delta wins, input stays from the start.
            (
                anthropic(&[start, delta]),
                Some(Usage {
                    input_tokens: 510,
                    output_tokens: 42,
                    cached_input_tokens: 300,
                    cache_write_tokens: 200,
                    reasoning_tokens: 0,
                }),
            ),
            // A message_delta that restates input replaces it (cache writes included).
            (
                anthropic(&[start, full_delta]),
                Some(Usage {
                    input_tokens: 320,
                    output_tokens: 50,
                    cached_input_tokens: 300,
                    cache_write_tokens: 0,
                    reasoning_tokens: 0,
                }),
            ),
            // Gemini: the last usageMetadata wins; output = candidates + thoughts.
            (
                usage_after(
                    Dialect::Gemini,
                    Dialect::OpenAiChat,
                    &[
                        r#"{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1}}"#,
                        r#"{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":9,"thoughtsTokenCount":4,"cachedContentTokenCount":2}}"#,
                    ],
                ),
                Some(Usage {
                    input_tokens: 5,
                    output_tokens: 13,
                    cached_input_tokens: 2,
                    cache_write_tokens: 0,
                    reasoning_tokens: 4,
                }),
            ),
            // OpenAI: the usage chunk, also read when it is stripped for the caller.
            (
                usage_after(
                    Dialect::OpenAiChat,
                    Dialect::OpenAiChat,
                    &[
                        r#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#,
                        r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"completion_tokens_details":{"reasoning_tokens":2}}}"#,
                    ],
                ),
                Some(Usage { input_tokens: 7, output_tokens: 3, reasoning_tokens: 2, ..Usage::default() }),
            ),
            // Responses: only response.completed carries it.
            (
                usage_after(
                    Dialect::OpenAiResponses,
                    Dialect::OpenAiResponses,
                    &[
                        r#"{"type":"response.created","response":{"usage":null}}"#,
                        r#"{"type":"response.completed","response":{"usage":{"input_tokens":4,"output_tokens":6}}}"#,
                    ],
                ),
                Some(Usage { input_tokens: 4, output_tokens: 6, ..Usage::default() }),
            ),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn a_usage_only_chunk_is_stripped_only_when_asked() {
        let usage = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n";
        for (strip, kept) in [(true, false), (false, true)] {
            let opts = StreamOptions { public_model: "m".into(), strip_usage_chunk: strip };
            let mut a = stream_adapter(Dialect::OpenAiChat, Dialect::OpenAiChat, opts).unwrap();
            let mut out = BytesMut::new();
            a.on_event(usage, &mut out);
            a.on_end(&mut out);
            assert_eq!(!out.is_empty(), kept, "strip={strip}");
            assert!(a.usage().is_some());
        }
    }
}
