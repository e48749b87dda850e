//! Anthropic streams: Messages events → OpenAI chat chunks, OpenAI chat chunks →
//! Messages events (with `event:` lines), and the usage Anthropic spreads over
//! `message_start` and `message_delta`.

use super::response::{anthropic_stop_reason, anthropic_usage, openai_finish_reason};
use crate::Usage;
use crate::openai::response::openai_usage;
use crate::openai::stream::ChunkWriter;
use crate::sse::{emit_data, emit_named, parse_event};
use crate::stream::{StreamAdapter, StreamOptions, push_text};
use crate::usage::{InsaneUsage, StreamUsage, count};
use bytes::BytesMut;
use serde_json::{Value, json};
use std::sync::Arc;

/// Anthropic streams report input usage in `message_start` and cumulative output in
/// `message_delta` (which may repeat the input counts). A count the gateway does not
/// believe taints the stream's usage.
pub(crate) fn merge_anthropic_usage(usage: &mut StreamUsage, v: &Value) {
    match v.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            if let Some(u) = v.get("message").and_then(|m| m.get("usage")) {
                usage.take(anthropic_usage(u));
            }
        }
        Some("message_delta") => {
            let Some(d) = v.get("usage").filter(|u| u.is_object()) else { return };
            let restated = d.get("input_tokens").is_some_and(|i| !i.is_null());
            let delta = (|| {
                let output = count(d, "output_tokens")?;
                let full = if restated { anthropic_usage(d)? } else { None };
                let mut next = usage.latest().unwrap_or_default();
                if d.get("output_tokens").is_some_and(|o| !o.is_null()) {
                    next.output_tokens = output;
                }
                if let Some(full) = full {
                    next.input_tokens = full.input_tokens;
                    next.cached_input_tokens = full.cached_input_tokens;
                    next.cache_write_tokens = full.cache_write_tokens;
                }
                next.checked()
            })();
            match delta {
                Ok(next) => usage.take(Ok(Some(next))),
                Err(e) => usage.reject(e),
            }
        }
        _ => {}
    }
}

/// Anthropic Messages events → OpenAI chat chunks.
pub(crate) struct AnthropicToOpenAi {
    w: ChunkWriter,
    strip_usage_chunk: bool,
    usage: StreamUsage,
    text: String,
    /// Anthropic content-block index → OpenAI tool-call index, for tool_use blocks.
    tools: Vec<(u64, usize)>,
    done: bool,
}

impl AnthropicToOpenAi {
    pub(crate) fn new(opts: StreamOptions) -> Self {
        AnthropicToOpenAi {
            w: ChunkWriter::new(opts.public_model),
            strip_usage_chunk: opts.strip_usage_chunk,
            usage: StreamUsage::default(),
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
            && let Some(u) = &self.usage.shown()
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

    fn usage(&self) -> Result<Option<Usage>, InsaneUsage> {
        self.usage.get()
    }

    fn generated_text(&self) -> &str {
        &self.text
    }
}

/// OpenAI chat chunks → Anthropic Messages events.
pub(crate) struct OpenAiToAnthropic {
    model: Arc<str>,
    id: String,
    started: bool,
    /// The open content block: its index and whether it is text (else a tool call,
    /// with the OpenAI tool-call index it maps).
    open: Option<(usize, Option<u64>)>,
    next_block: usize,
    stop_reason: Option<&'static str>,
    usage: StreamUsage,
    text: String,
    done: bool,
}

impl OpenAiToAnthropic {
    pub(crate) fn new(opts: StreamOptions) -> Self {
        OpenAiToAnthropic {
            model: opts.public_model,
            id: "msg_tollgate".into(),
            started: false,
            open: None,
            next_block: 0,
            stop_reason: None,
            usage: StreamUsage::default(),
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
        let u = self.usage.shown().unwrap_or_default();
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
        self.usage.take(openai_usage(&v));
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

    fn usage(&self) -> Result<Option<Usage>, InsaneUsage> {
        self.usage.get()
    }

    fn generated_text(&self) -> &str {
        &self.text
    }
}
