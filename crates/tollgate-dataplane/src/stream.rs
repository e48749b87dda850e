//! Server-sent-event streams: the upstream's events framed one by one as they arrive (by
//! the providers' [`SseFramer`], the one framer the golden tests also run), each judged
//! by the providers' framing rules ([`check_event`]: SSE fields only, data a JSON
//! object), and handed to the providers' [`StreamAdapter`], which forwards them (same
//! dialect) or translates them (caller and upstream differ) and reads usage on the way.
//! Nothing is buffered beyond one incomplete event.
//!
//! A stream the upstream breaks — an event that fails the rules, a stall past the idle
//! timeout, a reset — ends for the caller with one error event in its dialect
//! ([`stream_error_event`]) and a clean end of the body: no byte of the bad event is
//! forwarded, and the caller's client sees an error, not a cut connection. The completion
//! callback runs before the last frame is handed out, so whatever it records (the ledger
//! entry) is recorded before the caller's last byte. When it has tokens to count (no
//! believable usage, or a cut stream) it runs on the bounded blocking pool, never on a
//! runtime thread, and the last frame is held (the body is pending) until it is done; a
//! stream the caller left is settled there too, with nobody waiting.

use crate::offload::Offload;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;
use tollgate_providers::{
    BadEvent, Dialect, EventCheck, InsaneUsage, ProviderError, ProviderErrorKind, ResponseBody, SseFramer,
    StreamAdapter, Usage, check_event, stream_error_event,
};

/// How the upstream failed a stream that had started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamFault {
    /// It sent an event that is not well-formed SSE with JSON data (broken JSON, binary).
    Garbage,
    /// It sent nothing for longer than the idle timeout.
    Idle,
    /// The connection broke (a reset, a read error).
    Broken,
    /// It reported its own failure in an error event (forwarded to the caller as it
    /// came, in the caller's dialect), then ended the stream.
    Reported,
}

impl StreamFault {
    /// The attempt's outcome in the ledger.
    pub(crate) fn outcome(self) -> &'static str {
        match self {
            StreamFault::Garbage => "stream_garbage",
            StreamFault::Idle => "stream_idle",
            StreamFault::Broken => "stream_broken",
            StreamFault::Reported => "stream_error_event",
        }
    }

    /// The code of the caller's error event.
    fn code(self) -> &'static str {
        match self {
            StreamFault::Idle => "upstream_timeout",
            StreamFault::Garbage | StreamFault::Broken | StreamFault::Reported => "upstream_error",
        }
    }

    /// The message of the caller's error event: the gateway's words, never upstream bytes.
    fn message(self) -> &'static str {
        match self {
            StreamFault::Garbage => "the upstream sent a malformed event; the stream was ended",
            StreamFault::Idle => "the upstream stopped sending; the stream was ended after the idle timeout",
            StreamFault::Broken => "the upstream connection broke mid-stream",
            StreamFault::Reported => "the upstream reported an error mid-stream",
        }
    }
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The upstream finished it.
    Completed,
    /// The caller went away (or the response was dropped) first.
    CallerLeft,
    /// The upstream failed it; the caller got an error event.
    Upstream(StreamFault),
}

/// How a stream ended, reported once to the completion callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamOutcome {
    /// The usage the upstream reported, if it did, or why its report is not believed.
    pub(crate) usage: Result<Option<Usage>, InsaneUsage>,
    /// Who ended the stream.
    pub(crate) end: StreamEnd,
    /// Bytes of upstream event data forwarded to the caller (the gateway's own error
    /// event not included).
    pub(crate) bytes_forwarded: u64,
    /// The generated text (content and tool-call arguments) seen, kept only when the
    /// upstream reported no believable usage or the stream did not finish, for a
    /// tokenizer count.
    pub(crate) generated_text: Option<String>,
    /// When the first event reached the caller, if one did.
    pub(crate) first_event: Option<std::time::Instant>,
}

impl StreamOutcome {
    /// The upstream finished the stream.
    pub(crate) fn completed(&self) -> bool {
        self.end == StreamEnd::Completed
    }

    /// How the upstream failed it, if it did.
    pub(crate) fn fault(&self) -> Option<StreamFault> {
        match self.end {
            StreamEnd::Upstream(f) => Some(f),
            StreamEnd::Completed | StreamEnd::CallerLeft => None,
        }
    }
}

type OnDone = Box<dyn FnOnce(StreamOutcome) + Send + Sync>;

/// Wraps an upstream SSE body.
pub(crate) struct SseStream {
    inner: ResponseBody,
    /// Holds the tail after the last complete event until its end arrives.
    framer: SseFramer,
    adapter: Box<dyn StreamAdapter>,
    /// The upstream's dialect (which events are well formed).
    upstream: Dialect,
    /// The caller's dialect (the shape of the error event).
    caller: Dialect,
    forwarded: u64,
    on_done: Option<OnDone>,
    finished: bool,
    first_event: Option<std::time::Instant>,
    /// The upstream sent its own error event: the stream is its failure when it ends.
    upstream_reported_error: bool,
    /// Where a completion that counts tokens runs (none: here, in the poll).
    offload: Option<Offload>,
    /// The completion running on the blocking pool; the last frame waits for it.
    settling: Option<JoinHandle<()>>,
    /// The last frame, handed out once the completion is done.
    held: Option<Frame<Bytes>>,
}

impl SseStream {
    pub(crate) fn new(
        inner: ResponseBody,
        adapter: Box<dyn StreamAdapter>,
        upstream: Dialect,
        caller: Dialect,
        on_done: OnDone,
    ) -> Self {
        SseStream {
            inner,
            framer: SseFramer::default(),
            adapter,
            upstream,
            caller,
            forwarded: 0,
            on_done: Some(on_done),
            finished: false,
            first_event: None,
            upstream_reported_error: false,
            offload: None,
            settling: None,
            held: None,
        }
    }

    /// Runs a completion that counts tokens on `pool`, off the runtime.
    pub(crate) fn offloaded(mut self, pool: Offload) -> Self {
        self.offload = Some(pool);
        self
    }

    fn finish(&mut self, end: StreamEnd) {
        if let Some(done) = self.on_done.take() {
            let usage = self.adapter.usage();
            // Needed for a count when nothing believable (or, for a cut stream, maybe
            // not all) was reported.
            let count_needed = !matches!(usage, Ok(Some(_))) || end != StreamEnd::Completed;
            let outcome = StreamOutcome {
                usage,
                end,
                bytes_forwarded: self.forwarded,
                generated_text: count_needed.then(|| self.adapter.generated_text().to_owned()),
                first_event: self.first_event,
            };
            // A count tokenizes the prompt and the text: heavy work, not for a runtime
            // thread. Without a count the completion only records.
            match self.offload.as_ref().filter(|_| count_needed) {
                Some(pool) => self.settling = pool.start(move || done(outcome)),
                None => done(outcome),
            }
        }
    }

    /// Hands out the last frame (none: the end) once the completion is done.
    fn hand_last(
        &mut self,
        cx: &mut Context<'_>,
        last: Option<Frame<Bytes>>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProviderError>>> {
        if last.is_some() {
            self.held = last;
        }
        if let Some(settling) = self.settling.as_mut() {
            if Pin::new(settling).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.settling = None;
        }
        Poll::Ready(self.held.take().map(Ok))
    }

    /// Frames `data`, judges every event it completes and hands the good ones to the
    /// adapter; returns what to forward, and the first bad event (after which nothing
    /// more is handed on).
    fn drain_events(&mut self, data: &[u8]) -> (BytesMut, Option<BadEvent>) {
        let mut out = BytesMut::new();
        let mut bad = None;
        let (adapter, upstream, reported) = (&mut self.adapter, self.upstream, &mut self.upstream_reported_error);
        self.framer.push(data, |event| judge_and_relay(event, upstream, &mut **adapter, &mut out, &mut bad, reported));
        (out, bad)
    }

    /// Hands out `out` as a data frame (nothing when it is empty).
    fn forward(&mut self, out: BytesMut) -> Option<Frame<Bytes>> {
        if out.is_empty() {
            return None;
        }
        self.first_event.get_or_insert_with(std::time::Instant::now);
        self.forwarded += out.len() as u64;
        Some(Frame::data(out.freeze()))
    }

    /// The upstream failed the stream: what passed before the fault, then the caller's
    /// error event, as the last frame; the outcome is reported before it is handed out.
    fn fail(&mut self, out: BytesMut, fault: StreamFault) -> Frame<Bytes> {
        self.finished = true;
        // Let go of the upstream now: its connection closes rather than idling on.
        self.inner = http_body_util::Empty::new().map_err(|never| match never {}).boxed();
        let mut last = BytesMut::new();
        if !out.is_empty() {
            self.first_event.get_or_insert_with(std::time::Instant::now);
            self.forwarded += out.len() as u64;
            last = out;
        }
        last.extend_from_slice(&stream_error_event(self.caller, fault.code(), fault.message()));
        self.finish(StreamEnd::Upstream(fault));
        Frame::data(last.freeze())
    }
}

/// One framed upstream event: judged, then relayed through the adapter when well formed.
/// After the first bad one, nothing more is relayed.
/// An upstream's own error event is relayed too, and noted in `reported`.
fn judge_and_relay(
    event: &[u8],
    upstream: Dialect,
    adapter: &mut dyn StreamAdapter,
    out: &mut BytesMut,
    bad: &mut Option<BadEvent>,
    reported: &mut bool,
) {
    if bad.is_some() {
        return;
    }
    match check_event(event, upstream) {
        Ok(check) => {
            *reported |= check == EventCheck::Error;
            adapter.on_event(event, out);
        }
        Err(e) => *bad = Some(e),
    }
}

impl Body for SseStream {
    type Data = Bytes;
    type Error = ProviderError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ProviderError>>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return this.hand_last(cx, None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(mut data) = frame.into_data() else { continue };
                    let (out, bad) = this.drain_events(&data.copy_to_bytes(data.remaining()));
                    if let Some(bad) = bad {
                        tracing::warn!(error = %bad, "upstream stream ended: a malformed event");
                        let last = this.fail(out, StreamFault::Garbage);
                        return this.hand_last(cx, Some(last));
                    }
                    if let Some(frame) = this.forward(out) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let fault =
                        if e.kind == ProviderErrorKind::IdleTimeout { StreamFault::Idle } else { StreamFault::Broken };
                    tracing::warn!(error = %e, "upstream stream ended: {}", fault.outcome());
                    // A partial event held by the framer is dropped with the stream.
                    let last = this.fail(BytesMut::new(), fault);
                    return this.hand_last(cx, Some(last));
                }
                Poll::Ready(None) => {
                    let mut out = BytesMut::new();
                    let mut bad = None;
                    // An unterminated last event still counts, completed with its blank
                    // line so the caller's client dispatches it too.
                    let (adapter, upstream, reported) =
                        (&mut this.adapter, this.upstream, &mut this.upstream_reported_error);
                    this.framer.finish(|event| {
                        let mut whole = event.to_vec();
                        while !whole.ends_with(b"\n\n") && !whole.ends_with(b"\r\n\r\n") {
                            whole.push(b'\n');
                        }
                        judge_and_relay(&whole, upstream, &mut **adapter, &mut out, &mut bad, reported);
                    });
                    if bad.is_some() {
                        let last = this.fail(out, StreamFault::Garbage);
                        return this.hand_last(cx, Some(last));
                    }
                    this.finished = true;
                    this.adapter.on_end(&mut out);
                    this.forwarded += out.len() as u64;
                    // A stream that carried the upstream's own error event ended, but did
                    // not succeed: the ledger and the breaker hear of the failure.
                    let end = if this.upstream_reported_error {
                        StreamEnd::Upstream(StreamFault::Reported)
                    } else {
                        StreamEnd::Completed
                    };
                    this.finish(end);
                    let last = (!out.is_empty()).then(|| Frame::data(out.freeze()));
                    return this.hand_last(cx, last);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.held.is_none() && self.settling.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        // The caller disconnected (or the response was dropped) before the end.
        self.finish(StreamEnd::CallerLeft);
    }
}

/// Reads an upstream body up to its first non-empty data frame (`None`: it ended
/// without one). Used to see what a stream really is before the caller gets a 200.
pub(crate) async fn first_data(body: &mut ResponseBody) -> Result<Option<Bytes>, ProviderError> {
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if let Ok(mut data) = frame?.into_data()
            && data.has_remaining()
        {
            return Ok(Some(data.copy_to_bytes(data.remaining())));
        }
    }
    Ok(None)
}

/// Whether the first bytes of an upstream stream can be server-sent events: they open
/// with an SSE field (`data:`, `event:`, `id:`, `retry:`) or a `:` comment, or are too
/// short to tell and could still become one. An HTML error page or a JSON body cannot.
pub(crate) fn could_be_sse(first: &[u8]) -> bool {
    let start = first.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(first.len());
    let head = &first[start..first.len().min(start + 6)];
    head.is_empty()
        || head[0] == b':'
        || [&b"data:"[..], b"event:", b"id:", b"retry:"]
            .iter()
            .any(|field| field.starts_with(head) || head.starts_with(field))
}

/// Whether the first bytes of an upstream stream open a well-formed event stream: they
/// can be server-sent events ([`could_be_sse`]) and every event complete in them passes
/// the providers' [`check_event`](tollgate_providers::check_event). Judged before the
/// caller gets a 200, so a stream that opens with garbage falls back like any other
/// failed try.
pub(crate) fn opens_event_stream(first: &[u8], upstream: tollgate_providers::Dialect) -> bool {
    if !could_be_sse(first) {
        return false;
    }
    let mut framer = SseFramer::default();
    let mut well_formed = true;
    framer.push(first, |event| {
        well_formed &= tollgate_providers::check_event(event, upstream).is_ok();
    });
    well_formed
}

/// A body whose first frame was already read: that frame, then the rest.
pub(crate) struct Prepend {
    first: Option<Bytes>,
    rest: ResponseBody,
}

impl Prepend {
    pub(crate) fn new(first: Option<Bytes>, rest: ResponseBody) -> Self {
        Prepend { first, rest }
    }
}

impl Body for Prepend {
    type Data = Bytes;
    type Error = ProviderError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ProviderError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};
    use tollgate_providers::{StreamOptions, stream_adapter};

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

    const ANTHROPIC: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n";

    fn chunked(text: &[u8], size: usize) -> ResponseBody {
        let chunks: Vec<Result<Frame<Bytes>, ProviderError>> =
            text.chunks(size).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
        StreamBody::new(futures_util::stream::iter(chunks)).boxed()
    }

    /// `text` in pieces of `size`, then `err` instead of a clean end.
    fn chunked_then(text: &[u8], size: usize, err: ProviderErrorKind) -> ResponseBody {
        let mut chunks: Vec<Result<Frame<Bytes>, ProviderError>> =
            text.chunks(size).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
        chunks.push(Err(ProviderError::new(err, "upstream failed")));
        StreamBody::new(futures_util::stream::iter(chunks)).boxed()
    }

    fn adapter(upstream: Dialect, caller: Dialect, strip: bool) -> Box<dyn StreamAdapter> {
        stream_adapter(upstream, caller, StreamOptions { public_model: "m".into(), strip_usage_chunk: strip }).unwrap()
    }

    /// Reads a whole stream as a caller's client does; the body must end cleanly.
    async fn run_with(body: ResponseBody, upstream: Dialect, caller: Dialect, strip: bool) -> (String, StreamOutcome) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let body = SseStream::new(
            body,
            adapter(upstream, caller, strip),
            upstream,
            caller,
            Box::new(move |o| *s.lock().unwrap() = Some(o)),
        );
        let out = body.collect().await.expect("the caller's body ends cleanly, never with an error").to_bytes();
        let outcome = seen.lock().unwrap().take().expect("the outcome is reported once");
        (String::from_utf8(out.to_vec()).expect("the caller only gets UTF-8"), outcome)
    }

    async fn run(size: usize, strip: bool) -> (String, StreamOutcome) {
        run_with(chunked(STREAM.as_bytes(), size), Dialect::OpenAiChat, Dialect::OpenAiChat, strip).await
    }

    #[tokio::test]
    async fn usage_is_read_whatever_the_chunking_and_stripped_when_not_asked_for() {
        for size in [1, 3, 7, 64, 4096] {
            let (kept, outcome) = run(size, false).await;
            assert_eq!(kept, STREAM, "chunk size {size}");
            assert_eq!(outcome.usage.clone().unwrap().map(|u| (u.input_tokens, u.output_tokens)), Some((9, 2)));
            assert!(outcome.completed());

            let (stripped, outcome) = run(size, true).await;
            assert!(!stripped.contains("usage"), "chunk size {size}: {stripped}");
            assert!(stripped.ends_with("data: [DONE]\n\n"));
            assert_eq!(outcome.usage.unwrap().map(|u| u.total_tokens()), Some(11));
        }
    }

    #[tokio::test]
    async fn an_abandoned_stream_reports_what_was_forwarded() {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let mut body = SseStream::new(
            chunked(STREAM.as_bytes(), 10),
            adapter(Dialect::OpenAiChat, Dialect::OpenAiChat, true),
            Dialect::OpenAiChat,
            Dialect::OpenAiChat,
            Box::new(move |o| *s.lock().unwrap() = Some(o)),
        );
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(!first.is_empty());
        drop(body);
        let outcome = seen.lock().unwrap().take().unwrap();
        assert_eq!(outcome.end, StreamEnd::CallerLeft);
        assert_eq!(outcome.bytes_forwarded, first.len() as u64);
        assert_eq!(outcome.usage, Ok(None));
        assert_eq!(outcome.generated_text.as_deref(), Some("Hel"), "what was generated before the caller left");
    }

    /// The events of a caller's body: every one must be whole and well formed.
    fn events(body: &str) -> Vec<String> {
        assert!(body.is_empty() || body.ends_with("\n\n"), "the body ends with a whole event: {body:?}");
        body.split_terminator("\n\n").map(str::to_owned).collect()
    }

    fn last_event_data(body: &str) -> serde_json::Value {
        let last = events(body).pop().expect("an event");
        let data = last.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
        serde_json::from_str(data).expect("JSON data")
    }

    #[tokio::test]
    async fn garbage_ends_the_stream_with_an_error_event_and_never_reaches_the_caller() {
        let first = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        let garbage: [&[u8]; 6] = [
            b"data: {\"choices\":[{\"delta\":{\"content\":\"SECRET-BROKEN\"\n\n",
            b"\xff\xfe\x00\x01SECRET-BINARY\n\n",
            b"data: SECRET-NOT-JSON\n\n",
            b"<html>SECRET-HTML</html>\n\n",
            b"data: {\"ok\":1}\x00SECRET-NUL\n\n",
            // An unterminated broken event at the very end.
            b"data: {\"SECRET-TAIL\":",
        ];
        for bad in garbage {
            for size in [1, 5, 4096] {
                let mut stream = first.as_bytes().to_vec();
                stream.extend_from_slice(bad);
                if bad.ends_with(b"\n\n") {
                    stream.extend_from_slice(
                        b"data: {\"choices\":[{\"delta\":{\"content\":\"SECRET-AFTER\"}}]}\n\ndata: [DONE]\n\n",
                    );
                }
                let (body, o) = run_with(chunked(&stream, size), Dialect::OpenAiChat, Dialect::OpenAiChat, false).await;
                let what = format!("{} in pieces of {size}", String::from_utf8_lossy(bad));
                assert!(body.starts_with(first), "{what}: what passed before reached the caller: {body}");
                assert!(!body.contains("SECRET"), "{what}: nothing of the garbage, nor after it: {body}");
                assert!(!body.contains("[DONE]"), "{what}: a broken stream does not claim to have finished");
                assert_eq!(last_event_data(&body)["error"]["type"], "upstream_error", "{what}: {body}");
                assert_eq!(o.end, StreamEnd::Upstream(StreamFault::Garbage), "{what}");
                assert_eq!(o.generated_text.as_deref(), Some("Hel"), "{what}: what passed is counted");
                assert_eq!(o.bytes_forwarded, first.len() as u64, "{what}: our error event is not upstream output");
            }
        }
    }

    #[tokio::test]
    async fn an_upstreams_own_error_event_is_relayed_and_the_stream_is_its_failure() {
        let anthropic_error = format!(
            "{ANTHROPIC}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n"
        );
        let openai_error = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n";
        let cases = [
            (anthropic_error.as_str(), Dialect::AnthropicMessages, "overloaded_error"),
            (openai_error, Dialect::OpenAiChat, "server_error"),
        ];
        for (stream, dialect, marker) in cases {
            for size in [3, 4096] {
                let (body, o) = run_with(chunked(stream.as_bytes(), size), dialect, dialect, false).await;
                assert!(body.contains(marker), "{dialect:?}: the upstream's own error reaches the caller: {body}");
                assert_eq!(o.end, StreamEnd::Upstream(StreamFault::Reported), "{dialect:?} in pieces of {size}");
                assert_eq!(StreamFault::Reported.outcome(), "stream_error_event");
            }
        }
        // A stream that merely mentions an error in its text, or carries `"error": null`,
        // succeeded.
        let fine = "data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}],\"error\":null}\n\ndata: [DONE]\n\n";
        let (_, o) = run_with(chunked(fine.as_bytes(), 4096), Dialect::OpenAiChat, Dialect::OpenAiChat, false).await;
        assert_eq!(o.end, StreamEnd::Completed);
    }

    #[tokio::test]
    async fn a_reset_or_a_stall_ends_the_stream_with_an_error_event_in_the_callers_dialect() {
        let up = Dialect::AnthropicMessages;
        for (kind, fault) in
            [(ProviderErrorKind::Io, StreamFault::Broken), (ProviderErrorKind::IdleTimeout, StreamFault::Idle)]
        {
            // Cut inside an event: the partial event is dropped, never forwarded.
            let mut stream = ANTHROPIC.as_bytes().to_vec();
            stream.extend_from_slice(b"event: content_block_delta\ndata: {\"type\":\"content_blo");
            for caller in [Dialect::AnthropicMessages, Dialect::OpenAiChat] {
                let (body, o) = run_with(chunked_then(&stream, 7, kind.clone()), up, caller, false).await;
                assert_eq!(o.end, StreamEnd::Upstream(fault), "{kind:?} {caller:?}");
                assert_eq!(o.generated_text.as_deref(), Some("Hel"));
                assert!(body.contains("Hel"), "{body}");
                assert!(!body.contains("content_blo\""), "the partial event is not forwarded: {body}");
                let all = events(&body);
                let last = all.last().unwrap();
                let v = last_event_data(&body);
                match caller {
                    Dialect::AnthropicMessages => {
                        assert!(last.starts_with("event: error\n"), "{body}");
                        assert_eq!(
                            (v["type"].as_str(), v["error"]["type"].as_str()),
                            (Some("error"), Some("api_error"))
                        );
                        assert!(!body.contains("message_stop"), "a broken stream does not claim to have finished");
                    }
                    _ => {
                        assert_eq!(v["error"]["type"], "upstream_error", "{body}");
                        assert!(!body.contains("[DONE]"), "a broken stream does not claim to have finished");
                    }
                }
                let code = if fault == StreamFault::Idle { "upstream_timeout" } else { "upstream_error" };
                assert!(last.contains(code), "{last}");
            }
        }
    }

    #[tokio::test]
    async fn the_outcome_is_reported_before_the_last_frame_is_handed_out() {
        let body = chunked_then(STREAM.as_bytes(), 4096, ProviderErrorKind::Io);
        for (body, want) in
            [(body, StreamEnd::Upstream(StreamFault::Broken)), (chunked(STREAM.as_bytes(), 4096), StreamEnd::Completed)]
        {
            let seen = Arc::new(Mutex::new(None));
            let s = seen.clone();
            let mut sse = SseStream::new(
                body,
                adapter(Dialect::OpenAiChat, Dialect::OpenAiChat, false),
                Dialect::OpenAiChat,
                Dialect::OpenAiChat,
                Box::new(move |o| *s.lock().unwrap() = Some(o)),
            );
            let mut frames = 0;
            loop {
                let frame = sse.frame().await;
                // When the caller's client sees the last frame (or the end), the outcome
                // has been reported: nothing of it is left to run after the last byte.
                if frame.is_none() || sse.is_end_stream() {
                    assert_eq!(seen.lock().unwrap().as_ref().map(|o: &StreamOutcome| o.end), Some(want));
                }
                match frame {
                    Some(Ok(_)) => frames += 1,
                    Some(Err(e)) => panic!("the caller's body never ends in an error: {e}"),
                    None => break,
                }
            }
            assert!(frames >= 1);
        }
    }

    #[tokio::test]
    async fn a_completion_that_counts_runs_off_the_runtime_and_the_last_frame_waits_for_it() {
        let runtime_thread = std::thread::current().id();
        // Cut by the upstream, and abandoned by the caller: both need a count.
        for abandon in [false, true] {
            let seen = Arc::new(Mutex::new(None));
            let s = seen.clone();
            let mut sse = SseStream::new(
                chunked_then(STREAM.as_bytes(), 16, ProviderErrorKind::Io),
                adapter(Dialect::OpenAiChat, Dialect::OpenAiChat, false),
                Dialect::OpenAiChat,
                Dialect::OpenAiChat,
                Box::new(move |o| {
                    // Heavy work takes a while; the caller's last frame must wait for it.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    *s.lock().unwrap() = Some((o.end, std::thread::current().id()));
                }),
            )
            .offloaded(Offload::new(1));
            if abandon {
                let _ = sse.frame().await;
                drop(sse);
                for _ in 0..100 {
                    if seen.lock().unwrap().is_some() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                let (end, thread) = seen.lock().unwrap().expect("an abandoned stream is settled");
                assert_eq!(end, StreamEnd::CallerLeft);
                assert_ne!(thread, runtime_thread, "counted off the runtime");
                continue;
            }
            loop {
                let frame = sse.frame().await;
                if frame.is_none() || sse.is_end_stream() {
                    break;
                }
                assert!(seen.lock().unwrap().is_none() || sse.is_end_stream());
            }
            let (end, thread) = seen.lock().unwrap().expect("settled before the last frame was handed out");
            assert_eq!(end, StreamEnd::Upstream(StreamFault::Broken));
            assert_ne!(thread, runtime_thread, "counted off the runtime");
        }
    }

    #[tokio::test]
    async fn implausible_stream_usage_is_reported_and_the_text_kept_for_a_count() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":-9,\"completion_tokens\":2}}\n\n\
data: [DONE]\n\n";
        let (_, o) = run_with(chunked(stream.as_bytes(), 9), Dialect::OpenAiChat, Dialect::OpenAiChat, true).await;
        assert!(o.completed());
        assert_eq!(o.usage.map_err(|e| e.field), Err("prompt_tokens"));
        assert_eq!(o.generated_text.as_deref(), Some("Hello"), "kept for the gateway's own count");
    }

    #[tokio::test]
    async fn comments_and_an_unterminated_last_event_are_well_formed() {
        let stream = ": keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]";
        let (body, o) = run_with(chunked(stream.as_bytes(), 3), Dialect::OpenAiChat, Dialect::OpenAiChat, true).await;
        assert!(o.completed());
        assert_eq!(body, format!("{stream}\n\n"), "kept, and the last event completed for the caller's parser");
    }

    #[test]
    fn only_what_can_open_an_event_stream_is_taken_for_one() {
        for ok in ["data: {}", "  \n\ndata:", "event: message_start", ": ping", "id: 1", "retry: 10", "d", "da", ""] {
            assert!(could_be_sse(ok.as_bytes()), "{ok:?}");
        }
        for bad in ["<html>gateway error</html>", "{\"id\":\"x\"}", "HTTP/1.1 502", "dat a:", "Internal Server Error"] {
            assert!(!could_be_sse(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn a_stream_opens_only_with_well_formed_events() {
        use tollgate_providers::Dialect::{AnthropicMessages, OpenAiChat};
        let complete_then_partial = "data: {\"id\":\"1\"}\n\ndata: {\"id\":";
        assert!(opens_event_stream(complete_then_partial.as_bytes(), OpenAiChat), "a partial tail is judged later");
        assert!(opens_event_stream(b"event: ping\ndata: {}\n\n", AnthropicMessages));
        assert!(opens_event_stream(b": keep-alive\n\n", OpenAiChat));
        for bad in [
            &b"data: {\"id\":\"x\",\"choices\":[{\"delta\n\n"[..],
            b"data: not json\n\n",
            b"data: {}\n\ndata: \xff\xfe\n\n",
            b"<html>",
        ] {
            assert!(!opens_event_stream(bad, OpenAiChat), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn the_first_frame_read_ahead_is_served_first() {
        let mut body = chunked(STREAM.as_bytes(), 10);
        let first = first_data(&mut body).await.unwrap().unwrap();
        assert_eq!(&first[..], &STREAM.as_bytes()[..10]);
        let whole = Prepend::new(Some(first), body).collect().await.unwrap().to_bytes();
        assert_eq!(&whole[..], STREAM.as_bytes(), "nothing lost or reordered");
        assert_eq!(first_data(&mut chunked(b"", 1)).await.unwrap(), None, "an empty body has no first frame");
    }

    #[test]
    fn events_end_at_blank_lines_in_either_newline_style() {
        let events = |s: &[u8]| SseFramer::split_all(s).iter().map(|e| e.len()).collect::<Vec<_>>();
        assert_eq!(events(b"data: x\n\nrest"), [9, 4]);
        assert_eq!(events(b"data: x\r\n\r\nrest"), [11, 4]);
        assert_eq!(events(b"data: x\n"), [8], "an unterminated event is handed on at the end");
    }
}
