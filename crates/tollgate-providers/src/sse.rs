//! Server-sent events, the one place they are cut and written: [`SseFramer`] splits an
//! upstream byte stream into complete events whatever the boundaries of the network reads
//! (the data plane's stream body and the golden tests both frame through it), the event
//! parser the stream adapters read them with, and the writers of the events they emit.

use bytes::{Bytes, BytesMut};

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
}
