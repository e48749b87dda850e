//! Fuzzes request translation, caller's dialect → upstream's (`translate::chat_request`),
//! for every pair the gateway serves, same-dialect splices included.
//!
//! Input: `[pair selector] ++ body`.
//!
//! Invariants: no panic; what a translation emits is one JSON value; a translated or
//! spliced body names the upstream model (Gemini names it in the URL instead); a
//! same-dialect body still parses as a request head.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::{assert_json, split_selector};
use tollgate_providers::Dialect::{self, *};
use tollgate_providers::openai::RequestHead;
use tollgate_providers::translate::chat_request;
use tollgate_providers::{CapField, OutputCap};

const PAIRS: [(Dialect, Dialect); 8] = [
    (OpenAiChat, AnthropicMessages),
    (AnthropicMessages, OpenAiChat),
    (OpenAiChat, Gemini),
    (AnthropicMessages, Gemini),
    (OpenAiChat, OpenAiChat),
    (AnthropicMessages, AnthropicMessages),
    (OpenAiResponses, OpenAiResponses),
    (OpenAiEmbeddings, OpenAiEmbeddings),
];

const UPSTREAM_MODEL: &str = "up-model";

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = split_selector(data) else { return };
    let (from, to) = PAIRS[usize::from(sel) % PAIRS.len()];
    let body = Bytes::copy_from_slice(body);
    let Ok(out) =
        chat_request(from, to, &body, UPSTREAM_MODEL, OutputCap { tokens: 100, chat_field: CapField::MaxTokens })
    else {
        return;
    };
    assert_json("chat_request", &out);
    if to == Gemini {
        return;
    }
    let v: serde_json::Value = serde_json::from_slice(&out).expect("checked above");
    assert_eq!(v.get("model").and_then(|m| m.as_str()), Some(UPSTREAM_MODEL), "{from:?} -> {to:?}: model not set");
    if from == to {
        let head = RequestHead::parse(&out).expect("a spliced body parses");
        assert_eq!(head.model, UPSTREAM_MODEL);
    }
});
