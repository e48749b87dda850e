//! Dialect translation: an OpenAI caller in front of an Anthropic upstream. The upstream
//! sees an Anthropic Messages request; the caller gets an OpenAI chat completion.

use crate::support::{Gateway, World, chat};
use http::StatusCode;
use tollgate_testkit::{FakeUpstream, Reply};

#[tokio::test]
async fn an_openai_caller_is_served_by_an_anthropic_upstream_in_its_own_shape() {
    let upstream = FakeUpstream::start_with(Reply::auto()).await;
    let mut w = World::new();
    w.provider("anthropic", "anthropic", &upstream.root_url());
    w.model("claude", &[("anthropic", "claude-sonnet-4-5")]);
    let secret = w.key("key_translate", |_| {});
    let gw = Gateway::start(&w).await;

    let r = gw.post("/v1/chat/completions", &secret, &chat("claude")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].path.ends_with("/v1/messages"), "the Messages endpoint was called: {}", seen[0].path);
    let sent = seen[0].json();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["messages"][0]["role"], "user");
    assert!(sent.get("stream_options").is_none(), "no OpenAI-only field crosses: {sent}");

    let got = r.json();
    assert_eq!(got["object"], "chat.completion");
    assert_eq!(got["model"], "claude", "the caller sees the model it asked for");
    assert_eq!(got["choices"][0]["message"]["role"], "assistant");
    assert_eq!(got["choices"][0]["message"]["content"], "Hello from the fake Anthropic.");
    assert_eq!(got["usage"]["completion_tokens"], 7);
    let entry = &gw.ledger_entries(1).await[0];
    assert_eq!((entry.output_tokens, entry.cached_input_tokens), (7, 5), "usage read from the Anthropic answer");
}
