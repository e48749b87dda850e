//! Stream adapters: an upstream's SSE events in, the caller's SSE events out, usage read
//! on the way.
//!
//! This file holds the trait, the table of dialect pairs, and the adapters that belong to
//! no single upstream: same-dialect adapters forward every event byte for byte (OpenAI's
//! usage-only chunk is removed when the caller did not ask for it) and only parse the few
//! events that carry usage; `Compose` chains two translations. Each cross-dialect adapter
//! lives in its upstream's folder: OpenAI chat ⇄ Anthropic Messages in `anthropic/`,
//! Gemini → OpenAI chat in `gemini/`, and Gemini → Anthropic by composing the two.

use crate::openai::response::{openai_usage, responses_usage};
use crate::sse::{SseEvent, SseFramer, parse_event};
use crate::translate::TranslateError;
use crate::usage::{InsaneUsage, StreamUsage};
use crate::{Dialect, Usage, anthropic, gemini};
use bytes::BytesMut;
use serde_json::Value;
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
    /// Usage seen so far (final once the upstream reported it), or why the upstream's
    /// report is not believed (once any report of the stream was implausible).
    fn usage(&self) -> Result<Option<Usage>, InsaneUsage>;
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
        (AnthropicMessages, OpenAiChat) => Box::new(anthropic::stream::AnthropicToOpenAi::new(opts)),
        (OpenAiChat, AnthropicMessages) => Box::new(anthropic::stream::OpenAiToAnthropic::new(opts)),
        (Gemini, OpenAiChat) => Box::new(gemini::stream::GeminiToOpenAi::new(opts)),
        (Gemini, AnthropicMessages) => {
            let first = gemini::stream::GeminiToOpenAi::new(StreamOptions { strip_usage_chunk: false, ..opts.clone() });
            Box::new(Compose {
                first: Box::new(first),
                second: Box::new(anthropic::stream::OpenAiToAnthropic::new(opts)),
            })
        }
        (u, c) => return Err(TranslateError::unsupported(u, c)),
    })
}

/// Generated text is kept up to this many bytes.
const MAX_TEXT: usize = 1 << 20;

pub(crate) fn push_text(text: &mut String, s: &str) {
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

/// Same dialect on both sides: bytes forwarded as they came.
struct Passthrough {
    dialect: Dialect,
    strip_usage_chunk: bool,
    usage: StreamUsage,
    text: String,
}

impl Passthrough {
    fn new(dialect: Dialect, strip_usage_chunk: bool) -> Self {
        Passthrough { dialect, strip_usage_chunk, usage: StreamUsage::default(), text: String::new() }
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
                let report = openai_usage(&v);
                if let Ok(Some(_)) | Err(_) = report {
                    self.usage.take(report);
                    let usage_only = v.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
                    return !(usage_only && self.strip_usage_chunk);
                }
            }
            Dialect::OpenAiResponses => {
                if let Some(u) = v.get("response").and_then(|r| r.get("usage")) {
                    self.usage.take(responses_usage(u));
                }
            }
            Dialect::AnthropicMessages => anthropic::stream::merge_anthropic_usage(&mut self.usage, &v),
            Dialect::Gemini => self.usage.take(gemini::response::gemini_usage(&v)),
        }
        true
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

    fn usage(&self) -> Result<Option<Usage>, InsaneUsage> {
        self.usage.get()
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
        // The first adapter emits whole events only, so nothing is left pending.
        let second = &mut self.second;
        SseFramer::new(usize::MAX).push(mid, |event| second.on_event(event, out));
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

    fn usage(&self) -> Result<Option<Usage>, InsaneUsage> {
        self.first.usage()
    }

    fn generated_text(&self) -> &str {
        self.first.generated_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reported = Result<Option<Usage>, InsaneUsage>;

    fn usage_after(upstream: Dialect, caller: Dialect, events: &[&str]) -> Reported {
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
        let cases: Vec<(Reported, Option<Usage>)> = vec![
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
            assert_eq!(got, Ok(want), "case {i}");
        }
    }

    #[test]
    fn implausible_stream_usage_is_reported_as_such_by_every_adapter() {
        let start = |input: &str| {
            format!(r#"{{"type":"message_start","message":{{"usage":{{"input_tokens":{input},"output_tokens":1}}}}}}"#)
        };
        let delta = |output: &str| format!(r#"{{"type":"message_delta","usage":{{"output_tokens":{output}}}}}"#);
        let openai =
            |p: &str, c: &str| format!(r#"{{"choices":[],"usage":{{"prompt_tokens":{p},"completion_tokens":{c}}}}}"#);
        let gemini = |c: &str| format!(r#"{{"usageMetadata":{{"promptTokenCount":3,"candidatesTokenCount":{c}}}}}"#);
        let responses = |o: &str| {
            format!(
                r#"{{"type":"response.completed","response":{{"usage":{{"input_tokens":1,"output_tokens":{o}}}}}}}"#
            )
        };
        use Dialect::*;
        let cases: Vec<(Dialect, Dialect, Vec<String>, &str)> = vec![
            (AnthropicMessages, AnthropicMessages, vec![start("18446744073709551615")], "input_tokens"),
            (AnthropicMessages, OpenAiChat, vec![start("10"), delta("-4")], "output_tokens"),
            // A later plausible report does not clear an earlier lie.
            (AnthropicMessages, AnthropicMessages, vec![start("10"), delta("2.5"), delta("3")], "output_tokens"),
            (OpenAiChat, OpenAiChat, vec![openai("-1", "2")], "prompt_tokens"),
            (OpenAiChat, AnthropicMessages, vec![openai("1", "18446744073709551615")], "completion_tokens"),
            (Gemini, OpenAiChat, vec![gemini("1.5")], "candidatesTokenCount"),
            (Gemini, AnthropicMessages, vec![gemini("-2")], "candidatesTokenCount"),
            (OpenAiResponses, OpenAiResponses, vec![responses("1000000001")], "output_tokens"),
        ];
        for (upstream, caller, events, field) in cases {
            let events: Vec<&str> = events.iter().map(String::as_str).collect();
            let got = usage_after(upstream, caller, &events).map_err(|e| e.field);
            assert_eq!(got, Err(field), "{upstream:?} -> {caller:?}: {events:?}");
        }
    }

    #[test]
    fn a_translated_stream_does_not_show_the_caller_usage_it_does_not_believe() {
        let opts = StreamOptions { public_model: "m".into(), strip_usage_chunk: false };
        let mut a = stream_adapter(Dialect::AnthropicMessages, Dialect::OpenAiChat, opts).unwrap();
        let mut out = BytesMut::new();
        a.on_event(
            br#"data: {"type":"message_start","message":{"usage":{"input_tokens":-7,"output_tokens":1}}}

"#,
            &mut out,
        );
        a.on_end(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(!text.contains("\"usage\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
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
            assert!(a.usage().is_ok_and(|u| u.is_some()));
        }
    }
}
