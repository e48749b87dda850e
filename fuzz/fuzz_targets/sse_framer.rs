//! Fuzzes the one SSE framer (`SseFramer`) and the rules every upstream event is judged
//! by (`check_event`), as the data plane runs them: bytes in arbitrary network reads.
//!
//! Input: `[read-size seed] [max-event selector] ++ stream`.
//!
//! Invariants: no panic; framing loses, duplicates and reorders nothing (the events
//! joined are the stream, less a trailing run of whitespace `finish` drops); every event
//! but an oversized or final one ends with a blank line; at most one event is buffered,
//! bounded by the configured maximum plus one read; with no bound, the events do not
//! depend on where the reads were cut; judging any event never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::{DIALECTS, chunks};
use tollgate_providers::{SseFramer, check_event};

fuzz_target!(|data: &[u8]| {
    let [seed, max_sel, stream @ ..] = data else { return };
    let max = [1usize, 7, 64, 4096, usize::MAX][usize::from(*max_sel) % 5];

    let mut framer = SseFramer::new(max);
    let mut events: Vec<Vec<u8>> = Vec::new();
    let reads = chunks(stream, *seed);
    let mut fed = 0usize;
    for read in &reads {
        fed += read.len();
        framer.push(read, |e| events.push(e.to_vec()));
        let handed: usize = events.iter().map(Vec::len).sum();
        let buffered = fed - handed;
        assert!(buffered <= max.saturating_add(read.len()), "{buffered} bytes buffered over a bound of {max}");
    }
    let complete = events.len();
    framer.finish(|e| events.push(e.to_vec()));
    assert!(events.len() <= complete + 1, "finish handed on more than one event");

    let joined: Vec<u8> = events.concat();
    assert!(stream.starts_with(&joined), "framing changed the bytes");
    assert!(stream[joined.len()..].iter().all(u8::is_ascii_whitespace), "finish dropped more than whitespace");

    for (i, e) in events.iter().enumerate() {
        assert!(!e.is_empty(), "an empty event was handed on");
        let oversized = e.len() > max;
        let last = i + 1 == events.len();
        assert!(
            oversized || last || e.ends_with(b"\n\n") || e.ends_with(b"\n\r\n"),
            "a complete event does not end with a blank line: {:?}",
            String::from_utf8_lossy(e)
        );
    }

    if max == usize::MAX {
        let whole: Vec<Vec<u8>> = SseFramer::split_all(stream).iter().map(|b| b.to_vec()).collect();
        assert_eq!(whole, events, "events depend on where the reads were cut");
    }

    for e in &events {
        for d in DIALECTS {
            let _ = check_event(e, d);
        }
    }
});
