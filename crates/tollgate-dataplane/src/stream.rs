//! Server-sent-event streams: the upstream's events framed one by one as they arrive (by
//! the providers' [`SseFramer`], the one framer the golden tests also run) and handed to
//! the providers' [`StreamAdapter`], which forwards them (same dialect) or translates them
//! (caller and upstream differ) and reads usage on the way. Nothing is buffered beyond
//! one incomplete event.

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tollgate_providers::{ProviderError, ResponseBody, SseFramer, StreamAdapter, Usage};

/// How a stream ended, reported once to the completion callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamOutcome {
    /// The usage the upstream reported, if it did.
    pub(crate) usage: Option<Usage>,
    /// True when the upstream finished the stream; false when the caller went away or the
    /// upstream broke it.
    pub(crate) completed: bool,
    /// Bytes of event data forwarded to the caller.
    pub(crate) bytes_forwarded: u64,
    /// The generated text (content and tool-call arguments) seen, kept only when the
    /// upstream reported no usage or the stream did not finish, for a tokenizer count.
    pub(crate) generated_text: Option<String>,
    /// When the first event reached the caller, if one did.
    pub(crate) first_event: Option<std::time::Instant>,
    /// True when the upstream broke the stream (a read error), as opposed to finishing
    /// it or the caller going away: the deployment's health hears of it.
    pub(crate) upstream_broke: bool,
}

type OnDone = Box<dyn FnOnce(StreamOutcome) + Send + Sync>;

/// Wraps an upstream SSE body.
pub(crate) struct SseStream {
    inner: ResponseBody,
    /// Holds the tail after the last complete event until its end arrives.
    framer: SseFramer,
    adapter: Box<dyn StreamAdapter>,
    forwarded: u64,
    on_done: Option<OnDone>,
    finished: bool,
    first_event: Option<std::time::Instant>,
}

impl SseStream {
    pub(crate) fn new(inner: ResponseBody, adapter: Box<dyn StreamAdapter>, on_done: OnDone) -> Self {
        SseStream {
            inner,
            framer: SseFramer::default(),
            adapter,
            forwarded: 0,
            on_done: Some(on_done),
            finished: false,
            first_event: None,
        }
    }

    fn finish(&mut self, completed: bool, upstream_broke: bool) {
        if let Some(done) = self.on_done.take() {
            let usage = self.adapter.usage();
            done(StreamOutcome {
                usage,
                completed,
                bytes_forwarded: self.forwarded,
                // Needed for a count when nothing (or, for a cut stream, maybe not all)
                // was reported.
                generated_text: (usage.is_none() || !completed).then(|| self.adapter.generated_text().to_owned()),
                first_event: self.first_event,
                upstream_broke,
            });
        }
    }

    /// Frames `data` and hands every event it completes to the adapter; returns what to
    /// forward.
    fn drain_events(&mut self, data: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        let adapter = &mut self.adapter;
        self.framer.push(data, |event| adapter.on_event(event, &mut out));
        out
    }
}

impl Body for SseStream {
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
                    let out = this.drain_events(&data.copy_to_bytes(data.remaining()));
                    if !out.is_empty() {
                        this.first_event.get_or_insert_with(std::time::Instant::now);
                        this.forwarded += out.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    this.finish(false, true);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    let mut out = BytesMut::new();
                    // An unterminated last event still counts.
                    let adapter = &mut this.adapter;
                    this.framer.finish(|event| adapter.on_event(event, &mut out));
                    this.adapter.on_end(&mut out);
                    this.forwarded += out.len() as u64;
                    this.finish(true, false);
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
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

impl Drop for SseStream {
    fn drop(&mut self) {
        // The caller disconnected (or the response was dropped) before the end.
        self.finish(false, false);
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
    use tollgate_providers::{Dialect, StreamOptions, stream_adapter};

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

    fn chunked(text: &str, size: usize) -> ResponseBody {
        let chunks: Vec<Result<Frame<Bytes>, ProviderError>> =
            text.as_bytes().chunks(size).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
        StreamBody::new(futures_util::stream::iter(chunks)).boxed()
    }

    fn openai(strip: bool) -> Box<dyn StreamAdapter> {
        stream_adapter(
            Dialect::OpenAiChat,
            Dialect::OpenAiChat,
            StreamOptions { public_model: "m".into(), strip_usage_chunk: strip },
        )
        .unwrap()
    }

    async fn run(size: usize, strip: bool) -> (String, StreamOutcome) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let body =
            SseStream::new(chunked(STREAM, size), openai(strip), Box::new(move |o| *s.lock().unwrap() = Some(o)));
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
        let mut body =
            SseStream::new(chunked(STREAM, 10), openai(true), Box::new(move |o| *s.lock().unwrap() = Some(o)));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(!first.is_empty());
        drop(body);
        let outcome = seen.lock().unwrap().take().unwrap();
        assert!(!outcome.completed);
        assert_eq!(outcome.bytes_forwarded, first.len() as u64);
        assert_eq!(outcome.usage, None);
        assert_eq!(outcome.generated_text.as_deref(), Some("Hel"), "what was generated before the caller left");
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

    #[tokio::test]
    async fn the_first_frame_read_ahead_is_served_first() {
        let mut body = chunked(STREAM, 10);
        let first = first_data(&mut body).await.unwrap().unwrap();
        assert_eq!(&first[..], &STREAM.as_bytes()[..10]);
        let whole = Prepend::new(Some(first), body).collect().await.unwrap().to_bytes();
        assert_eq!(&whole[..], STREAM.as_bytes(), "nothing lost or reordered");
        assert_eq!(first_data(&mut chunked("", 1)).await.unwrap(), None, "an empty body has no first frame");
    }

    #[test]
    fn events_end_at_blank_lines_in_either_newline_style() {
        let events = |s: &[u8]| SseFramer::split_all(s).iter().map(|e| e.len()).collect::<Vec<_>>();
        assert_eq!(events(b"data: x\n\nrest"), [9, 4]);
        assert_eq!(events(b"data: x\r\n\r\nrest"), [11, 4]);
        assert_eq!(events(b"data: x\n"), [8], "an unterminated event is handed on at the end");
    }
}
