//! Gemini streams: `streamGenerateContent?alt=sse` events → OpenAI chat chunks (an
//! Anthropic caller gets them through the OpenAI → Anthropic adapter).

use super::response::{gemini_finish_reason, gemini_usage};
use crate::Usage;
use crate::openai::stream::ChunkWriter;
use crate::sse::{emit_data, parse_event};
use crate::stream::{StreamAdapter, StreamOptions, push_text};
use crate::usage::{InsaneUsage, StreamUsage};
use bytes::BytesMut;
use serde_json::{Value, json};

/// Gemini `streamGenerateContent?alt=sse` events → OpenAI chat chunks. Each candidate
/// is a choice (`candidateCount` > 1 streams several).
pub(crate) struct GeminiToOpenAi {
    w: ChunkWriter,
    strip_usage_chunk: bool,
    started: bool,
    /// Tool calls seen so far, per choice index.
    tool_calls: Vec<(u64, usize)>,
    usage: StreamUsage,
    text: String,
    done: bool,
}

impl GeminiToOpenAi {
    pub(crate) fn new(opts: StreamOptions) -> Self {
        GeminiToOpenAi {
            w: ChunkWriter::new(opts.public_model),
            strip_usage_chunk: opts.strip_usage_chunk,
            started: false,
            tool_calls: Vec::new(),
            usage: StreamUsage::default(),
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
        self.usage.take(gemini_usage(&v));
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
            && let Some(u) = &self.usage.shown()
        {
            emit_data(out, &self.w.usage_chunk(u));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn usage(&self) -> Result<Option<Usage>, InsaneUsage> {
        self.usage.get()
    }

    fn generated_text(&self) -> &str {
        &self.text
    }
}
