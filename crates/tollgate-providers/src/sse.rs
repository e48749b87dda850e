//! Server-sent events, the one place they are cut, judged and written: [`SseFramer`]
//! splits an upstream byte stream into complete events whatever the boundaries of the
//! network reads (the data plane's stream body and the golden tests both frame through
//! it); [`check_event`] holds the rules an upstream event must meet before any of it
//! reaches a caller; the event parser the stream adapters read them with; and the
//! writers of the events they emit, [`stream_error_event`] among them.

use crate::Dialect;
use bytes::{Bytes, BytesMut};
use serde_json::json;

/// Splits an SSE byte stream into complete events (each up to and including its blank
/// line, `\n\n` or `\r\n\r\n`). Holds at most one incomplete event; one longer than the
/// configured bound is handed on as it is rather than buffered without end.
#[derive(Debug)]
pub struct SseFramer {
    pending: BytesMut,
    /// Bytes of `pending` already searched for an event end (minus the look-behind).
    scanned: usize,
    max_event_bytes: usize,
}

impl Default for SseFramer {
    fn default() -> Self {
        SseFramer::new(Self::DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseFramer {
    /// The default bound on one buffered event.
    pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

    /// A framer that buffers at most `max_event_bytes` of one incomplete event.
    pub fn new(max_event_bytes: usize) -> Self {
        SseFramer { pending: BytesMut::new(), scanned: 0, max_event_bytes: max_event_bytes.max(1) }
    }

    /// Appends bytes read from the upstream and hands every event they complete to `on_event`.
    pub fn push(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(chunk);
        loop {
            // Re-scan the last two bytes: an event end may straddle two reads.
            let from = self.scanned.saturating_sub(2);
            match find_event_end(&self.pending[from..]) {
                Some(end) => {
                    let event = self.pending.split_to(from + end);
                    self.scanned = 0;
                    on_event(&event);
                }
                None => {
                    self.scanned = self.pending.len();
                    break;
                }
            }
        }
        if self.pending.len() > self.max_event_bytes {
            let event = self.pending.split();
            self.scanned = 0;
            on_event(&event);
        }
    }

    /// The stream ended: hands on an unterminated last event if it holds anything but
    /// whitespace.
    pub fn finish(&mut self, mut on_event: impl FnMut(&[u8])) {
        let rest = self.pending.split();
        self.scanned = 0;
        if !rest.iter().all(u8::is_ascii_whitespace) {
            on_event(&rest);
        }
    }

    /// Frames a whole recorded stream into its events (for tests and tools).
    pub fn split_all(stream: &[u8]) -> Vec<Bytes> {
        let mut framer = SseFramer::new(usize::MAX);
        let mut events = Vec::new();
        framer.push(stream, |e| events.push(Bytes::copy_from_slice(e)));
        framer.finish(|e| events.push(Bytes::copy_from_slice(e)));
        events
    }
}

/// The end (exclusive) of the first complete event in `buf`.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// What a well-formed upstream SSE event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventCheck {
    /// `data:` that parses as a JSON object, or OpenAI's `[DONE]` sentinel from an
    /// OpenAI-dialect upstream.
    Data,
    /// No data: a comment or keep-alive (`: ping`), or a lone `event:` / `id:` /
    /// `retry:`, which dispatches nothing.
    NoData,
    /// A well-formed event in which the upstream reports that it failed mid-stream: an
    /// event named `error` (Anthropic, Responses) or `response.failed`, or data whose
    /// top-level `error` is set (OpenAI chat). Forwarded like any event; the stream is
    /// then the upstream's failure, not a success.
    Error,
}

/// Why an upstream SSE event is not well formed. A stream holding one is broken: the
/// event is never forwarded, and the caller gets an error event in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    /// The bytes are not UTF-8 (raw binary).
    #[error("the upstream sent an event that is not UTF-8")]
    NotUtf8,
    /// A line is neither an SSE field (`data`, `event`, `id`, `retry`) nor a comment,
    /// or holds a control character.
    #[error("the upstream sent a line that is not server-sent events")]
    NotSse,
    /// The event's data is not a JSON object (nor the `[DONE]` sentinel).
    #[error("the upstream sent event data that is not JSON")]
    NotJson,
}

/// Judges one raw event as framed by [`SseFramer`] from an upstream speaking
/// `upstream`: every line an SSE field or a comment, printable, and the data (if any) a
/// JSON object or, for OpenAI dialects, `[DONE]`.
///
/// Cost: one UTF-8 check and one skim of the data (serde's `IgnoredAny`: validated, no
/// values built) per event.
pub fn check_event(raw: &[u8], upstream: Dialect) -> Result<EventCheck, BadEvent> {
    let text = std::str::from_utf8(raw).map_err(|_| BadEvent::NotUtf8)?;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(BadEvent::NotSse);
        }
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let field = line.split_once(':').map_or(line, |(name, _)| name);
        if !matches!(field, "data" | "event" | "id" | "retry") {
            return Err(BadEvent::NotSse);
        }
    }
    let Some(event) = parse_event(raw) else { return Ok(EventCheck::NoData) };
    let data = event.data.trim();
    let openai = matches!(upstream, Dialect::OpenAiChat | Dialect::OpenAiResponses | Dialect::OpenAiEmbeddings);
    if openai && data == "[DONE]" {
        return Ok(EventCheck::Data);
    }
    if !data.starts_with('{') {
        return Err(BadEvent::NotJson);
    }
    let top: TopLevel = serde_json::from_str(data).map_err(|_| BadEvent::NotJson)?;
    if top.error || matches!(event.event, Some("error" | "response.failed")) {
        return Ok(EventCheck::Error);
    }
    Ok(EventCheck::Data)
}

/// A JSON object skimmed for one fact, whether its top-level `error` is set (not null):
/// every value is skipped unbuilt, as `IgnoredAny` does.
struct TopLevel {
    error: bool,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = TopLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut error = false;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "error" {
                        error |= map.next_value::<Option<serde::de::IgnoredAny>>()?.is_some();
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(TopLevel { error })
            }
        }
        d.deserialize_map(Keys)
    }
}

/// The last event of a stream the upstream broke (garbage, a stall past the idle
/// timeout, a reset), in the caller's dialect, so the caller's SDK raises an error
/// instead of taking a cut answer for a whole one:
///
/// - OpenAI chat: `data: {"error": {"message", "type": "upstream_error", "code", "param"}}`
///   (the shape OpenAI's SDKs raise on mid-stream). No `[DONE]` follows: a stream that
///   ends with `[DONE]` finished.
/// - OpenAI Responses: an `error` event (`{"type": "error", "code", "message", "param"}`)
///   that also carries the same `error` object, which the SDKs check for.
/// - Anthropic: `event: error` with `{"type": "error", "error": {"type": "api_error",
///   "message"}}`, as Anthropic itself sends mid-stream.
///
/// `code` is a machine-readable code (`upstream_error`, `upstream_timeout`); `message`
/// must be the gateway's own words, never upstream bytes.
pub fn stream_error_event(caller: Dialect, code: &str, message: &str) -> Bytes {
    let mut out = BytesMut::new();
    let error = json!({"message": message, "type": "upstream_error", "code": code, "param": null});
    match caller {
        Dialect::AnthropicMessages => emit_named(
            &mut out,
            "error",
            &json!({"type": "error", "error": {"type": "api_error", "message": message, "code": code}}),
        ),
        Dialect::OpenAiResponses => emit_named(
            &mut out,
            "error",
            &json!({"type": "error", "code": code, "message": message, "param": null, "error": error}),
        ),
        Dialect::OpenAiChat | Dialect::OpenAiEmbeddings | Dialect::Gemini => {
            emit_data(&mut out, &json!({ "error": error }))
        }
    }
    out.freeze()
}

/// One parsed SSE event: its `event:` name (if any) and its `data:` payload (lines
/// joined with `\n`, as the SSE spec says). Comments and other fields are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent<'a> {
    pub(crate) event: Option<&'a str>,
    pub(crate) data: std::borrow::Cow<'a, str>,
}

/// Parses one raw event (its bytes up to and including the blank line). `None` when it
/// carries no data (a comment or keep-alive) or is not UTF-8.
pub(crate) fn parse_event(raw: &[u8]) -> Option<SseEvent<'_>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut event = None;
    let mut data: Option<std::borrow::Cow<'_, str>> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            data = Some(match data {
                None => std::borrow::Cow::Borrowed(v),
                Some(prev) => std::borrow::Cow::Owned(format!("{prev}\n{v}")),
            });
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim());
        }
    }
    data.map(|data| SseEvent { event, data })
}

/// Appends one `data:` event holding `v`.
pub(crate) fn emit_data(out: &mut BytesMut, v: &serde_json::Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Appends one named event (`event:` then `data:`) holding `v`.
pub(crate) fn emit_named(out: &mut BytesMut, name: &str, v: &serde_json::Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    emit_data(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: &[u8], read: usize) -> Vec<Vec<u8>> {
        let mut f = SseFramer::default();
        let mut out = Vec::new();
        for chunk in stream.chunks(read) {
            f.push(chunk, |e| out.push(e.to_vec()));
        }
        f.finish(|e| out.push(e.to_vec()));
        out
    }

    #[test]
    fn events_are_the_same_whatever_the_read_boundaries() {
        let stream = b"event: a\ndata: 1\n\ndata: 2\r\n\r\n: ping\n\ndata: tail";
        let whole = frame(stream, stream.len());
        assert_eq!(
            whole,
            vec![
                b"event: a\ndata: 1\n\n".to_vec(),
                b"data: 2\r\n\r\n".to_vec(),
                b": ping\n\n".to_vec(),
                b"data: tail".to_vec()
            ]
        );
        for read in 1..stream.len() {
            assert_eq!(frame(stream, read), whole, "read size {read}");
        }
    }

    #[test]
    fn an_endless_event_is_handed_on_at_the_bound() {
        let mut f = SseFramer::new(8);
        let mut out = Vec::new();
        f.push(b"data: 0123456789", |e| out.push(e.to_vec()));
        assert_eq!(out, vec![b"data: 0123456789".to_vec()]);
        f.finish(|e| out.push(e.to_vec()));
        assert_eq!(out.len(), 1, "nothing left behind");
    }

    /// The framing the data plane did before the framer moved here: search the whole
    /// pending buffer again after every read. Kept as the oracle the incremental scan
    /// must agree with.
    fn frame_by_rescanning(stream: &[u8], read: usize) -> Vec<Vec<u8>> {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(read) {
            pending.extend_from_slice(chunk);
            while let Some(end) = find_event_end(&pending) {
                out.push(pending.drain(..end).collect());
            }
        }
        if !pending.iter().all(u8::is_ascii_whitespace) {
            out.push(pending);
        }
        out
    }

    #[test]
    fn the_incremental_scan_frames_exactly_as_a_full_rescan() {
        let streams: [&[u8]; 6] = [
            b"data: a\n\ndata: b\n\n",
            b"event: x\r\ndata: 1\r\n\r\ndata: 2\n\r\n: c\n\n",
            b"\n\n\n\ndata: x\n\n\n",
            b"data: {\"a\":\"\\n\\n\"}\n\ndata: [DONE]\n\n  \n",
            b"data: no end",
            b"\r\n\r\n\r\ndata: y\r\n\r",
        ];
        for stream in streams {
            for read in 1..=stream.len() {
                assert_eq!(frame(stream, read), frame_by_rescanning(stream, read), "{stream:?} read {read}");
            }
        }
    }

    #[test]
    fn events_end_at_blank_lines_in_either_newline_style() {
        assert_eq!(find_event_end(b"data: x\n\nrest"), Some(9));
        assert_eq!(find_event_end(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(find_event_end(b"data: x\n"), None);
    }

    #[test]
    fn events_are_parsed_with_names_multiline_data_and_crlf() {
        let e = parse_event(b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n").unwrap();
        assert_eq!((e.event, &*e.data), (Some("message_start"), "{\"a\":1}"));
        let e = parse_event(b"data: a\ndata: b\n\n").unwrap();
        assert_eq!(&*e.data, "a\nb");
        assert_eq!(parse_event(b": ping\n\n"), None);
    }

    #[test]
    fn only_well_formed_events_with_json_data_pass() {
        use Dialect::*;
        let ok: [(&[u8], Dialect, EventCheck); 14] = [
            (b"data: {\"a\":1}\n\n", OpenAiChat, EventCheck::Data),
            (b"event: message_start\r\ndata: {\"a\":[1,2]}\r\n\r\n", AnthropicMessages, EventCheck::Data),
            (b"data: {\"a\":\ndata: 1}\n\n", Gemini, EventCheck::Data),
            (b"id: 7\nretry: 100\ndata: {}\n\n", OpenAiResponses, EventCheck::Data),
            (b"data: [DONE]\n\n", OpenAiChat, EventCheck::Data),
            (b": keep-alive\n\n", AnthropicMessages, EventCheck::NoData),
            (b"event: ping\n\n", AnthropicMessages, EventCheck::NoData),
            (b"data: {\"text\":\"caf\xc3\xa9\",\t\"ok\":1}\n\n", OpenAiChat, EventCheck::Data),
            (b"data:{}", OpenAiChat, EventCheck::Data),
            (b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n", OpenAiChat, EventCheck::Error),
            (
                b"data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}],\"error\":null}\n\n",
                OpenAiChat,
                EventCheck::Data,
            ),
            (b"data: {\"response\":{\"error\":{\"code\":\"x\"}}}\n\n", OpenAiResponses, EventCheck::Data),
            (b"event: error\ndata: {\"type\":\"error\"}\n\n", AnthropicMessages, EventCheck::Error),
            (b"event: response.failed\ndata: {\"type\":\"response.failed\"}\n\n", OpenAiResponses, EventCheck::Error),
        ];
        for (raw, d, want) in ok {
            assert_eq!(check_event(raw, d), Ok(want), "{}", String::from_utf8_lossy(raw));
        }
        let bad: [(&[u8], Dialect, BadEvent); 11] = [
            (b"data: {\"a\":\n\n", OpenAiChat, BadEvent::NotJson),
            (b"data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]\n\n", OpenAiChat, BadEvent::NotJson),
            (b"data: hello\n\n", OpenAiChat, BadEvent::NotJson),
            (b"data: 42\n\n", OpenAiChat, BadEvent::NotJson),
            (b"data: [DONE]\n\n", AnthropicMessages, BadEvent::NotJson),
            (b"data:\n\n", OpenAiChat, BadEvent::NotJson),
            (b"\xff\xfe\x00garbage\n\n", OpenAiChat, BadEvent::NotUtf8),
            (b"data: {\"a\":1}\x00\n\n", OpenAiChat, BadEvent::NotSse),
            (b"<html>502 Bad Gateway</html>\n\n", OpenAiChat, BadEvent::NotSse),
            (b"HTTP/1.1 200 OK\r\n\r\n", AnthropicMessages, BadEvent::NotSse),
            (b": comment with a bell \x07\n\n", OpenAiChat, BadEvent::NotSse),
        ];
        for (raw, d, want) in bad {
            assert_eq!(check_event(raw, d), Err(want), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn the_error_event_is_in_each_callers_shape() {
        let parsed = |d: Dialect| {
            let raw = stream_error_event(d, "upstream_error", "the upstream broke the stream");
            assert!(raw.ends_with(b"\n\n"), "one whole event");
            let e = parse_event(&raw).unwrap();
            (e.event.map(str::to_owned), serde_json::from_str::<serde_json::Value>(&e.data).unwrap())
        };
        let (name, v) = parsed(Dialect::OpenAiChat);
        assert_eq!(name, None);
        assert_eq!(v["error"]["message"], "the upstream broke the stream");
        assert_eq!(v["error"]["type"], "upstream_error");
        assert_eq!(v["error"]["code"], "upstream_error");
        let (name, v) = parsed(Dialect::AnthropicMessages);
        assert_eq!(name.as_deref(), Some("error"));
        assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("api_error")));
        assert_eq!(v["error"]["message"], "the upstream broke the stream");
        let (name, v) = parsed(Dialect::OpenAiResponses);
        assert_eq!(name.as_deref(), Some("error"));
        assert_eq!((v["type"].as_str(), v["code"].as_str()), (Some("error"), Some("upstream_error")));
        assert_eq!(v["error"]["message"], "the upstream broke the stream");
        for d in [Dialect::OpenAiChat, Dialect::AnthropicMessages, Dialect::OpenAiResponses] {
            let raw = stream_error_event(d, "upstream_error", "x");
            assert_eq!(check_event(&raw, d), Ok(EventCheck::Error), "our own event meets our own rules, as an error");
        }
    }
}
