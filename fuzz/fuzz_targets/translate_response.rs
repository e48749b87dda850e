//! Fuzzes the way back, upstream's dialect → caller's: whole responses
//! (`translate::chat_response`), error bodies (`translate::error_body`) and SSE streams
//! event by event (`stream_adapter`), as the data plane runs them.
//!
//! Input: `[pair selector] [read-size seed / status] ++ body`.
//!
//! Invariants: no panic; a translated response or error body is one JSON value; every
//! event a stream adapter emits for well-formed upstream events is itself a well-formed
//! event of the caller's dialect; the usage an adapter reports is plausible; the
//! generated text it keeps stays within its 1 MiB cap.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::{DIALECTS, assert_json, chunks};
use tollgate_providers::Dialect::{self, *};
use tollgate_providers::translate::{chat_response, error_body};
use tollgate_providers::{SseFramer, StreamOptions, check_event, stream_adapter};

/// (upstream, caller): every cross-dialect pair, then the pass-through ones.
const PAIRS: [(Dialect, Dialect); 9] = [
    (AnthropicMessages, OpenAiChat),
    (OpenAiChat, AnthropicMessages),
    (Gemini, OpenAiChat),
    (Gemini, AnthropicMessages),
    (OpenAiChat, OpenAiChat),
    (AnthropicMessages, AnthropicMessages),
    (OpenAiResponses, OpenAiResponses),
    (Gemini, Gemini),
    (OpenAiEmbeddings, OpenAiEmbeddings),
];

const STATUSES: [u16; 6] = [400, 401, 404, 429, 500, 529];

fuzz_target!(|data: &[u8]| {
    let [sel, seed, body @ ..] = data else { return };
    let (upstream, caller) = PAIRS[usize::from(*sel) % PAIRS.len()];

    if let Ok(out) = chat_response(upstream, caller, body, "public-model") {
        if upstream != caller {
            assert_json("chat_response", &out);
        }
    }
    let status = http::StatusCode::from_u16(STATUSES[usize::from(*seed) % STATUSES.len()]).expect("valid status");
    let from = DIALECTS[usize::from(*sel) % DIALECTS.len()];
    let to = DIALECTS[usize::from(*seed) % DIALECTS.len()];
    if let Some(out) = error_body(from, to, status, body) {
        assert_json("error_body", &out);
    }

    stream(upstream, caller, body, *seed);
});

/// Frames `body` as an upstream stream, hands the well-formed events to the adapter (the
/// data plane ends the stream at the first bad one), and judges what comes out.
fn stream(upstream: Dialect, caller: Dialect, body: &[u8], seed: u8) {
    let opts = StreamOptions { public_model: "public-model".into(), strip_usage_chunk: seed & 1 == 1 };
    let Ok(mut adapter) = stream_adapter(upstream, caller, opts) else { return };
    let mut framer = SseFramer::default();
    let mut events: Vec<Bytes> = Vec::new();
    for read in chunks(body, seed) {
        framer.push(read, |e| events.push(Bytes::copy_from_slice(e)));
    }
    framer.finish(|e| events.push(Bytes::copy_from_slice(e)));

    let mut out = BytesMut::new();
    let mut clean = true;
    for e in &events {
        if check_event(e, upstream).is_err() {
            clean = false;
            break;
        }
        adapter.on_event(e, &mut out);
    }
    if clean {
        adapter.on_end(&mut out);
    }
    for e in SseFramer::split_all(&out) {
        if let Err(bad) = check_event(&e, caller) {
            panic!("{upstream:?} -> {caller:?} emitted a bad event ({bad}): {:?}", String::from_utf8_lossy(&e));
        }
    }
    if let Ok(Some(u)) = adapter.usage() {
        assert_eq!(u.checked(), Ok(u), "an adapter reported implausible usage as plausible");
    }
    assert!(adapter.generated_text().len() <= 1 << 20, "generated text over its cap");
}
