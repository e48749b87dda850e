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
