//! A stream the upstream cuts midway: what passed reaches the caller, the stream does
//! not pretend to have finished but ends cleanly with an error event, the ledger blames
//! the upstream, and what was generated is still charged (never zero).

use crate::support::{Gateway, World, chat};
use http::StatusCode;
use tollgate_core::Money;
use tollgate_testkit::{CHAT_STREAM, FakeUpstream, Reply};

#[tokio::test]
async fn a_stream_cut_midway_reaches_the_caller_as_cut_and_is_charged_for_what_passed() {
    // Two content events pass, then the connection is reset before the usage chunk.
    let cut = CHAT_STREAM.find("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[]").unwrap();
    let upstream = FakeUpstream::start_with(Reply::chat_stream().reset_after(cut)).await;
    let mut w = World::new();
    w.provider("openai", "openai-compatible", &upstream.base_url());
    w.model("gpt-4o-mini", &[("openai", "gpt-4o-mini-2024-07-18")]);
    let secret = w.key("key_cut", |_| {});
    w.key_budget("key_cut", 1_000_000_000);
    let gw = Gateway::start(&w).await;
    let mut body = chat("gpt-4o-mini");
    body["stream"] = true.into();

    let (r, clean) = gw.post_cut("/v1/chat/completions", &secret, &body).await;

    assert_eq!(r.status, StatusCode::OK, "the stream had started");
    let text = r.text();
    assert!(text.contains("Hel") && text.contains("lo"), "what passed reached the caller: {text}");
    assert!(!text.contains("[DONE]"), "a cut stream does not pretend to have finished: {text}");
    assert!(clean, "the caller's body ends cleanly: {text}");
    assert!(text.ends_with("\n\n") && text.contains("{\"error\":"), "it ends with an error event: {text}");
    let entry = &gw.ledger_entries(1).await[0];
    assert_eq!(entry.status, 502, "recorded as the upstream's failure, not the caller's");
    assert!(entry.attempts.iter().any(|a| a.outcome == "stream_broken"), "{entry:?}");
    assert!(entry.output_tokens > 0, "what was generated is counted: {entry:?}");
    assert!(entry.cost > Money::ZERO, "never charged zero because usage was missing");
}
