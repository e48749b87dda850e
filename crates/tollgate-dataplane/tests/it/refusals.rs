//! Requests refused before any upstream is called: an unknown key, a model outside the
//! allowlist, a rate limit, a budget. Each is the documented status and code, and the
//! fake upstream's log stays empty (or holds only what was admitted).

use crate::support::{Gateway, World, chat, error_code};
use http::StatusCode;
use tollgate_testkit::FakeUpstream;

async fn world_with(upstream: &FakeUpstream) -> World {
    let mut w = World::new();
    w.provider("openai", "openai-compatible", &upstream.base_url());
    w.model("gpt-4o-mini", &[("openai", "gpt-4o-mini-2024-07-18")]);
    w
}

#[tokio::test]
async fn an_unknown_key_is_401_and_reaches_no_upstream() {
    let upstream = FakeUpstream::start().await;
    let mut w = world_with(&upstream).await;
    w.key("key_known", |_| {});
    let gw = Gateway::start(&w).await;
    // Well formed (the checksum passes) but never minted into this snapshot.
    let stranger = tollgate_keys::mint_secret();

    let r = gw.post("/v1/chat/completions", stranger.expose(), &chat("gpt-4o-mini")).await;

    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(error_code(&r), "invalid_api_key");
    assert_eq!(upstream.request_count(), 0);
    assert!(gw.sink.is_empty(), "a refusal before dispatch leaves no ledger entry");
}

#[tokio::test]
async fn a_model_outside_the_allowlist_is_403_model_not_allowed() {
    let upstream = FakeUpstream::start().await;
    let mut w = world_with(&upstream).await;
    w.model("gpt-4o", &[("openai", "gpt-4o-2024-08-06")]);
    let secret = w.key("key_mini_only", |k| k.models_allowed = vec!["gpt-4o-mini".into()]);
    let gw = Gateway::start(&w).await;

    let r = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o")).await;

    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(error_code(&r), "model_not_allowed");
    assert_eq!(upstream.request_count(), 0);
    let ok = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;
    assert_eq!(ok.status, StatusCode::OK, "the allowed model still serves: {}", ok.text());
}

#[tokio::test]
async fn a_key_over_its_rpm_is_429_with_retry_after() {
    let upstream = FakeUpstream::start().await;
    let mut w = world_with(&upstream).await;
    let secret = w.key("key_rpm_1", |k| k.rpm = Some(1));
    let gw = Gateway::start(&w).await;

    let first = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;
    let second = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS, "{}", second.text());
    assert_eq!(error_code(&second), "rate_limit_exceeded");
    let wait: u64 = second.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "retry-after names the wait in seconds: {wait}");
    assert_eq!(second.json()["error"]["meta"]["dimension"], "rpm");
    assert_eq!(upstream.request_count(), 1, "the refused request never left");
}

#[tokio::test]
async fn a_request_its_budget_cannot_take_is_402_and_never_reaches_the_upstream() {
    let upstream = FakeUpstream::start().await;
    let mut w = world_with(&upstream).await;
    let secret = w.key("key_poor", |_| {});
    // One micro-dollar: less than the worst case of any request at the model's price.
    w.key_budget("key_poor", 1_000);
    let gw = Gateway::start(&w).await;

    let r = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;

    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
    assert_eq!(error_code(&r), "budget_exceeded");
    assert_eq!(r.json()["error"]["meta"]["scope"], "virtual_key");
    assert_eq!(upstream.request_count(), 0, "the upstream's log is empty");
    assert!(gw.sink.is_empty());
}

#[tokio::test]
async fn an_anthropic_caller_is_refused_in_anthropics_error_shape() {
    let upstream = FakeUpstream::start().await;
    let w = world_with(&upstream).await;
    let gw = Gateway::start(&w).await;
    let stranger = tollgate_keys::mint_secret();
    let body =
        serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});

    let r = gw.post("/v1/messages", stranger.expose(), &body).await;

    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let got = r.json();
    assert_eq!(got["type"], "error");
    assert_eq!(got["error"]["type"], "authentication_error");
    assert_eq!(got["error"]["code"], "invalid_api_key");
}
