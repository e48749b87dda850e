//! Fallback across a model's deployments: a failing first deployment is tried, then the
//! second serves, and the ledger says who served and what failed on the way.

use crate::support::{Gateway, World, chat};
use http::StatusCode;
use tollgate_testkit::{FakeUpstream, Reply};

#[tokio::test]
async fn a_failing_first_deployment_falls_back_to_the_second() {
    let sick = FakeUpstream::start_with(Reply::json(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"boom"}"#)).await;
    let healthy = FakeUpstream::start().await;
    let mut w = World::new();
    w.provider("sick", "openai-compatible", &sick.base_url());
    w.provider("healthy", "openai-compatible", &healthy.base_url());
    w.model("gpt-4o-mini", &[("sick", "mini-sick"), ("healthy", "mini-healthy")]);
    let secret = w.key("key_fallback", |_| {});
    let gw = Gateway::start(&w).await;

    let r = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from the fake upstream.");
    assert_eq!(sick.request_count(), 1, "the first deployment was tried once");
    let served = healthy.requests();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].json()["model"], "mini-healthy", "each deployment gets its own upstream model");
    let entry = &gw.ledger_entries(1).await[0];
    assert_eq!((entry.provider.as_str(), entry.served_model.as_str()), ("healthy", "mini-healthy"));
    assert_eq!(entry.status, 200);
    assert_eq!(entry.attempts.len(), 1, "the failed try is on record: {:?}", entry.attempts);
    assert_eq!((entry.attempts[0].provider.as_str(), entry.attempts[0].outcome.as_str()), ("sick", "upstream_5xx"));
}

#[tokio::test]
async fn a_credential_at_its_rpm_hands_the_request_to_the_next_deployment() {
    let capped = FakeUpstream::start().await;
    let spare = FakeUpstream::start().await;
    let mut w = World::new();
    w.provider("capped", "openai-compatible", &capped.base_url()).rpm = Some(1);
    w.provider("spare", "openai-compatible", &spare.base_url());
    w.model("gpt-4o-mini", &[("capped", "mini"), ("spare", "mini")]);
    let secret = w.key("key_cred_rpm", |_| {});
    let gw = Gateway::start(&w).await;

    let first = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;
    let second = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;

    assert_eq!((first.status, second.status), (StatusCode::OK, StatusCode::OK), "{}", second.text());
    assert_eq!((capped.request_count(), spare.request_count()), (1, 1), "the capped credential was skipped");
}

#[tokio::test]
async fn every_credential_capped_is_the_callers_429_naming_the_provider() {
    let upstream = FakeUpstream::start().await;
    let mut w = World::new();
    w.provider("only", "openai-compatible", &upstream.base_url()).rpm = Some(1);
    w.model("gpt-4o-mini", &[("only", "mini")]);
    let secret = w.key("key_all_capped", |_| {});
    let gw = Gateway::start(&w).await;

    let first = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;
    let second = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS, "{}", second.text());
    assert_eq!(second.json()["error"]["meta"]["limit_of"], "provider");
    assert!(second.headers.contains_key("retry-after"));
    assert_eq!(upstream.request_count(), 1);
}

#[tokio::test]
async fn a_request_error_from_the_upstream_is_the_callers_answer_without_fallback() {
    let refusing = FakeUpstream::start_with(Reply::json(
        StatusCode::BAD_REQUEST,
        r#"{"error":{"message":"temperature is out of range","type":"invalid_request_error","param":"temperature","code":null}}"#,
    ))
    .await;
    let other = FakeUpstream::start().await;
    let mut w = World::new();
    w.provider("refusing", "openai-compatible", &refusing.base_url());
    w.provider("other", "openai-compatible", &other.base_url());
    w.model("gpt-4o-mini", &[("refusing", "mini"), ("other", "mini")]);
    let secret = w.key("key_bad_request", |_| {});
    let gw = Gateway::start(&w).await;

    let r = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;

    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["message"], "temperature is out of range", "the upstream's own words");
    assert_eq!(other.request_count(), 0, "a request error is final, not a reason to fall back");
    let entry = &gw.ledger_entries(1).await[0];
    assert_eq!((entry.status, entry.cost), (400, tollgate_core::Money::ZERO), "nothing generated, nothing charged");
}

/// A stream whose first event is garbage is that upstream failing before anything reached
/// the caller: the request falls back to the next deployment instead of answering 200 and
/// ending with an error event.
#[tokio::test]
async fn a_stream_opening_with_garbage_falls_back_before_the_caller_sees_a_byte() {
    let garbled = FakeUpstream::start_with(Reply::raw(
        StatusCode::OK,
        "text/event-stream",
        "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"GARB\n\ndata: [DONE]\n\n",
    ))
    .await;
    let healthy = FakeUpstream::start_with(Reply::chat_stream()).await;
    let mut w = World::new();
    w.provider("garbled", "openai-compatible", &garbled.base_url());
    w.provider("healthy", "openai-compatible", &healthy.base_url());
    w.model("gpt-4o-mini", &[("garbled", "mini-garbled"), ("healthy", "mini-healthy")]);
    let secret = w.key("key_garbled", |_| {});
    let gw = Gateway::start(&w).await;

    let mut body = chat("gpt-4o-mini");
    body["stream"] = serde_json::json!(true);
    let r = gw.post("/v1/chat/completions", &secret, &body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(!r.text().contains("GARB"), "{}", r.text());
    assert!(!r.text().contains("\"error\""), "the healthy deployment's stream, whole: {}", r.text());
    assert_eq!((garbled.request_count(), healthy.request_count()), (1, 1));
    let entry = &gw.ledger_entries(1).await[0];
    assert_eq!((entry.provider.as_str(), entry.status), ("healthy", 200));
    assert_eq!((entry.attempts[0].provider.as_str(), entry.attempts[0].outcome.as_str()), ("garbled", "malformed"));
}
