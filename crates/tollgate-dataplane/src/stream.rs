//! Server-sent-event streams: forwarded event by event as they arrive, with usage read
//! on the way and the usage-only chunk removed when the caller did not ask for it.

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tollgate_providers::{ProviderError, ResponseBody, Usage};

/// How a stream ended, reported once to the completion callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamOutcome {
    /// The usage the upstream reported, if it did.
    pub(crate) usage: Option<Usage>,
    /// True when the upstream finished the stream; false when the caller went away or the
    /// upstream broke it.
    pub(crate) completed: bool,
    /// Bytes of event data forwarded to the caller.
    pub(crate) bytes_forwarded: u64,
}

type OnDone = Box<dyn FnOnce(StreamOutcome) + Send + Sync>;

/// Wraps an upstream OpenAI SSE body.
pub(crate) struct UsageStream {
    inner: ResponseBody,
    /// Bytes received but not yet forwarded: the tail after the last complete event.
    pending: BytesMut,
    strip_usage_chunk: bool,
    usage: Option<Usage>,
    forwarded: u64,
    on_done: Option<OnDone>,
    finished: bool,
}

/// Upper bound on one buffered partial event; a longer "event" is forwarded as is.
const MAX_PENDING: usize = 1 << 20;

impl UsageStream {
    pub(crate) fn new(inner: ResponseBody, strip_usage_chunk: bool, on_done: OnDone) -> Self {
        UsageStream {
            inner,
            pending: BytesMut::new(),
            strip_usage_chunk,
            usage: None,
            forwarded: 0,
            on_done: Some(on_done),
            finished: false,
        }
    }

    fn finish(&mut self, completed: bool) {
        if let Some(done) = self.on_done.take() {
            done(StreamOutcome { usage: self.usage, completed, bytes_forwarded: self.forwarded });
        }
    }

    /// Takes every complete event out of `pending`, reads usage from it, and returns the
    /// bytes to forward (usage-only events removed when stripping).
    fn drain_events(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(end) = find_event_end(&self.pending) {
            let event = self.pending.split_to(end);
            let keep = self.inspect(&event);
            if keep {
                out.extend_from_slice(&event);
            }
        }
        if self.pending.len() > MAX_PENDING {
            out.extend_from_slice(&self.pending.split());
        }
        out.freeze()
    }

    /// Reads usage from one event; false when the event is a usage-only chunk to strip.
    fn inspect(&mut self, event: &[u8]) -> bool {
        let Some(data) = event_data(event) else { return true };
        if !contains(data, b"\"usage\"") {
            return true;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return true };
        if let Some(u) = tollgate_providers::openai::usage_from_value(&v) {
            self.usage = Some(u);
            let usage_only = v.get("choices").and_then(|c| c.as_array()).is_some_and(Vec::is_empty);
            if usage_only && self.strip_usage_chunk {
                return false;
            }
        }
        true
    }
}

/// The end (exclusive) of the first complete event: a blank line (`\n\n` or `\r\n\r\n`).
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

/// The payload of an event's `data:` line (single-line data, as OpenAI sends).
fn event_data(event: &[u8]) -> Option<&[u8]> {
    event.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.strip_prefix(b"data:").map(|d| d.strip_prefix(b" ").unwrap_or(d))
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Body for UsageStream {
    type Data = Bytes;
    type Error = ProviderError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ProviderError>>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(mut data) = frame.into_data() else { continue };
                    this.pending.extend_from_slice(&data.copy_to_bytes(data.remaining()));
                    let out = this.drain_events();
                    if !out.is_empty() {
                        this.forwarded += out.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    this.finish(false);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    let rest = this.pending.split().freeze();
                    this.finish(true);
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    this.forwarded += rest.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for UsageStream {
    fn drop(&mut self) {
        // The caller disconnected (or the response was dropped) before the end.
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

    fn chunked(text: &str, size: usize) -> ResponseBody {
        let chunks: Vec<Result<Frame<Bytes>, ProviderError>> =
            text.as_bytes().chunks(size).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
        StreamBody::new(futures_util::stream::iter(chunks)).boxed()
    }

    async fn run(size: usize, strip: bool) -> (String, StreamOutcome) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let body = UsageStream::new(chunked(STREAM, size), strip, Box::new(move |o| *s.lock().unwrap() = Some(o)));
        let out = body.collect().await.unwrap().to_bytes();
        let outcome = seen.lock().unwrap().take().unwrap();
        (String::from_utf8(out.to_vec()).unwrap(), outcome)
    }

    #[tokio::test]
    async fn usage_is_read_whatever_the_chunking_and_stripped_when_not_asked_for() {
        for size in [1, 3, 7, 64, 4096] {
            let (kept, outcome) = run(size, false).await;
            assert_eq!(kept, STREAM, "chunk size {size}");
            assert_eq!(outcome.usage.map(|u| (u.input_tokens, u.output_tokens)), Some((9, 2)));
            assert!(outcome.completed);

            let (stripped, outcome) = run(size, true).await;
            assert!(!stripped.contains("usage"), "chunk size {size}: {stripped}");
            assert!(stripped.ends_with("data: [DONE]\n\n"));
            assert_eq!(outcome.usage.map(|u| u.total_tokens()), Some(11));
        }
    }

    #[tokio::test]
    async fn an_abandoned_stream_reports_what_was_forwarded() {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let mut body = UsageStream::new(chunked(STREAM, 10), true, Box::new(move |o| *s.lock().unwrap() = Some(o)));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(!first.is_empty());
        drop(body);
        let outcome = seen.lock().unwrap().take().unwrap();
        assert!(!outcome.completed);
        assert_eq!(outcome.bytes_forwarded, first.len() as u64);
        assert_eq!(outcome.usage, None);
    }

    #[test]
    fn events_end_at_blank_lines_in_either_newline_style() {
        assert_eq!(find_event_end(b"data: x\n\nrest"), Some(9));
        assert_eq!(find_event_end(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(find_event_end(b"data: x\n"), None);
        assert_eq!(event_data(b"event: e\ndata: {\"a\":1}\n\n"), Some(&b"{\"a\":1}"[..]));
    }
}
