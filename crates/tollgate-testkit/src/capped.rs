//! A fake upstream reply that honours the forwarded output cap like a real provider.
//!
//! [`Reply::capped`](crate::Reply::capped) answers every dialect (chosen by path, like
//! [`Reply::auto`](crate::Reply::auto)) with exactly `min(cap, length)` completion
//! tokens, where `cap` is the output cap the request carries ([`output_cap`]) and
//! `length` the configured natural length of the answer. The reply reports usage with
//! that completion count and a prompt count that is fixed or estimated from the body
//! ([`PromptTokens`]), and ends the way the provider does when the cap cut it short:
//!
//! | dialect | cap field | hit the cap | finished |
//! |---|---|---|---|
//! | OpenAI chat | `max_completion_tokens`, else `max_tokens`, else `max_output_tokens` | `finish_reason: "length"` | `"stop"` |
//! | OpenAI Responses | the same | `status: "incomplete"`, `incomplete_details.reason: "max_output_tokens"` | `"completed"` |
//! | Anthropic Messages | `max_tokens` | `stop_reason: "max_tokens"` | `"end_turn"` |
//! | Gemini | `generationConfig.maxOutputTokens` | `finishReason: "MAX_TOKENS"` | `"STOP"` |
//!
//! Streams carry one chunk per token; the OpenAI chat stream adds its usage-only chunk
//! only when `stream_options.include_usage` is set, as OpenAI does.

use serde_json::{Value, json};

/// Each generated token's text: one short word, so a token is easy to count.
pub const TOKEN_TEXT: &str = "tok ";

/// How a [`Capped`] reply reports prompt tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptTokens {
    /// Always this many.
    Fixed(u64),
    /// The gateway's own estimate of the request body
    /// (`tollgate_metering::tokens::estimate_prompt_tokens` for the body's `model`), so
    /// a test can predict the reserve and the charge from the same number.
    FromBody,
}

/// The settings of a cap-honouring reply (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capped {
    /// Completion tokens the answer has when no cap (or a larger one) cuts it short.
    pub length: u64,
    /// Prompt tokens to report.
    pub prompt: PromptTokens,
}

/// The output cap a request body asks for, by dialect: Gemini paths
/// (`:generateContent` / `:streamGenerateContent`) read
/// `generationConfig.maxOutputTokens`; every other path reads `max_completion_tokens`,
/// else `max_tokens`, else `max_output_tokens` (OpenAI chat, Responses and Anthropic).
/// `None` when the body has none (or is not JSON).
pub fn output_cap(path: &str, body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if is_gemini(path) {
        return v["generationConfig"]["maxOutputTokens"].as_u64();
    }
    ["max_completion_tokens", "max_tokens", "max_output_tokens"].iter().find_map(|k| v[*k].as_u64())
}

fn is_gemini(path: &str) -> bool {
    path.contains(":generateContent") || path.contains(":streamGenerateContent")
}

/// What a capped reply generated for one request.
struct Answer {
    prompt: u64,
    completion: u64,
    hit_cap: bool,
    model: String,
}

impl Capped {
    fn answer(&self, path: &str, body: &[u8]) -> Answer {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let model = v["model"].as_str().map(str::to_owned).unwrap_or_else(|| gemini_model(path));
        let cap = output_cap(path, body);
        let completion = cap.map_or(self.length, |c| c.min(self.length));
        let hit_cap = cap.is_some_and(|c| c < self.length);
        let prompt = match self.prompt {
            PromptTokens::Fixed(n) => n,
            PromptTokens::FromBody => tollgate_metering::tokens::estimate_prompt_tokens(&model, body),
        };
        Answer { prompt, completion, hit_cap, model }
    }

    /// The content type and body answering a request at `path` with `body`.
    pub(crate) fn render(&self, path: &str, body: &[u8]) -> (&'static str, String) {
        let a = self.answer(path, body);
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let stream = req["stream"] == Value::Bool(true);
        if path.contains(":streamGenerateContent") {
            ("text/event-stream", gemini_stream(&a))
        } else if path.contains(":generateContent") {
            ("application/json", gemini(&a).to_string())
        } else if path.ends_with("/messages") {
            if stream {
                ("text/event-stream", anthropic_stream(&a))
            } else {
                ("application/json", anthropic(&a).to_string())
            }
        } else if path.contains("/responses") {
            if stream {
                ("text/event-stream", responses_stream(&a))
            } else {
                ("application/json", responses(&a).to_string())
            }
        } else if stream {
            let usage = req["stream_options"]["include_usage"] == Value::Bool(true);
            ("text/event-stream", chat_stream(&a, usage))
        } else {
            ("application/json", chat(&a).to_string())
        }
    }
}

/// The model named in a Gemini path (`.../models/NAME:generateContent`).
fn gemini_model(path: &str) -> String {
    path.rsplit("/models/").next().and_then(|rest| rest.split(':').next()).unwrap_or("").to_owned()
}

fn text(n: u64) -> String {
    TOKEN_TEXT.repeat(usize::try_from(n).unwrap_or(0))
}

fn sse(out: &mut String, event: Option<&str>, data: &Value) {
    if let Some(e) = event {
        out.push_str("event: ");
        out.push_str(e);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

fn chat_usage(a: &Answer) -> Value {
    json!({"prompt_tokens": a.prompt, "completion_tokens": a.completion, "total_tokens": a.prompt + a.completion})
}

fn chat_finish(a: &Answer) -> &'static str {
    if a.hit_cap { "length" } else { "stop" }
}

fn chat(a: &Answer) -> Value {
    json!({
        "id": "chatcmpl-capped", "object": "chat.completion", "created": 1_700_000_000, "model": a.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text(a.completion)},
                     "finish_reason": chat_finish(a)}],
        "usage": chat_usage(a),
    })
}

fn chat_stream(a: &Answer, usage: bool) -> String {
    let mut out = String::new();
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c-capped", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": a.model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    sse(&mut out, None, &chunk(json!({"role": "assistant", "content": ""}), Value::Null));
    for _ in 0..a.completion {
        sse(&mut out, None, &chunk(json!({"content": TOKEN_TEXT}), Value::Null));
    }
    sse(&mut out, None, &chunk(json!({}), json!(chat_finish(a))));
    if usage {
        sse(
            &mut out,
            None,
            &json!({"id": "c-capped", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": a.model,
                    "choices": [], "usage": chat_usage(a)}),
        );
    }
    out.push_str("data: [DONE]\n\n");
    out
}

fn responses_usage(a: &Answer) -> Value {
    json!({"input_tokens": a.prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": a.completion,
           "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": a.prompt + a.completion})
}

fn responses(a: &Answer) -> Value {
    let (status, details) =
        if a.hit_cap { ("incomplete", json!({"reason": "max_output_tokens"})) } else { ("completed", Value::Null) };
    json!({
        "id": "resp_capped", "object": "response", "created_at": 1_700_000_000, "status": status,
        "incomplete_details": details, "model": a.model,
        "output": [{"type": "message", "id": "msg_1", "status": status, "role": "assistant",
                    "content": [{"type": "output_text", "text": text(a.completion), "annotations": []}]}],
        "usage": responses_usage(a),
    })
}

fn responses_stream(a: &Answer) -> String {
    let mut out = String::new();
    let mut seq = 0u64;
    let mut next = || {
        seq += 1;
        seq - 1
    };
    let created = json!({"id": "resp_capped", "object": "response", "created_at": 1_700_000_000,
                         "status": "in_progress", "model": a.model, "output": [], "usage": null});
    sse(
        &mut out,
        Some("response.created"),
        &json!({"type": "response.created", "sequence_number": next(), "response": created}),
    );
    for _ in 0..a.completion {
        sse(
            &mut out,
            Some("response.output_text.delta"),
            &json!({"type": "response.output_text.delta", "sequence_number": next(), "item_id": "msg_1",
                    "output_index": 0, "content_index": 0, "delta": TOKEN_TEXT}),
        );
    }
    let event = if a.hit_cap { "response.incomplete" } else { "response.completed" };
    sse(&mut out, Some(event), &json!({"type": event, "sequence_number": next(), "response": responses(a)}));
    out
}

fn anthropic_stop(a: &Answer) -> &'static str {
    if a.hit_cap { "max_tokens" } else { "end_turn" }
}

fn anthropic(a: &Answer) -> Value {
    json!({
        "id": "msg_capped", "type": "message", "role": "assistant", "model": a.model,
        "content": [{"type": "text", "text": text(a.completion)}],
        "stop_reason": anthropic_stop(a), "stop_sequence": null,
        "usage": {"input_tokens": a.prompt, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": a.completion},
    })
}

fn anthropic_stream(a: &Answer) -> String {
    let mut out = String::new();
    let start = json!({"id": "msg_capped", "type": "message", "role": "assistant", "model": a.model, "content": [],
                       "stop_reason": null, "stop_sequence": null,
                       "usage": {"input_tokens": a.prompt, "cache_creation_input_tokens": 0,
                                 "cache_read_input_tokens": 0, "output_tokens": 0}});
    sse(&mut out, Some("message_start"), &json!({"type": "message_start", "message": start}));
    sse(
        &mut out,
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for _ in 0..a.completion {
        sse(
            &mut out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TOKEN_TEXT}}),
        );
    }
    sse(&mut out, Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 0}));
    sse(
        &mut out,
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": anthropic_stop(a), "stop_sequence": null},
                "usage": {"output_tokens": a.completion}}),
    );
    sse(&mut out, Some("message_stop"), &json!({"type": "message_stop"}));
    out
}

fn gemini_usage(a: &Answer, candidates: u64) -> Value {
    json!({"promptTokenCount": a.prompt, "candidatesTokenCount": candidates, "totalTokenCount": a.prompt + candidates})
}

fn gemini_finish(a: &Answer) -> &'static str {
    if a.hit_cap { "MAX_TOKENS" } else { "STOP" }
}

fn gemini(a: &Answer) -> Value {
    json!({
        "candidates": [{"content": {"parts": [{"text": text(a.completion)}], "role": "model"},
                        "finishReason": gemini_finish(a), "index": 0}],
        "usageMetadata": gemini_usage(a, a.completion), "modelVersion": a.model,
    })
}

/// One chunk per token, each with the running usage as Gemini sends it; the last one
/// carries the finish reason (a lone finishing chunk when no token was generated).
fn gemini_stream(a: &Answer) -> String {
    let mut out = String::new();
    let chunk = |i: u64, part: &str, last: bool| {
        let mut cand = json!({"content": {"parts": [{"text": part}], "role": "model"}, "index": 0});
        if last {
            cand["finishReason"] = json!(gemini_finish(a));
        }
        json!({"candidates": [cand], "usageMetadata": gemini_usage(a, i), "modelVersion": a.model})
    };
    if a.completion == 0 {
        sse(&mut out, None, &chunk(0, "", true));
    }
    for i in 1..=a.completion {
        sse(&mut out, None, &chunk(i, TOKEN_TEXT, i == a.completion));
    }
    out
}
