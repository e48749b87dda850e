//! Settlement: the ledger entry of a served request carries the usage the upstream
//! reported and its exact cost at the catalog price, whole answers and streams alike.

use crate::support::{Gateway, World, chat};
use http::StatusCode;
use tollgate_core::Money;
use tollgate_metering::UsageSource;
use tollgate_testkit::{FakeUpstream, Reply};

async fn gateway(upstream: &FakeUpstream) -> (Gateway, String) {
    let mut w = World::new();
    w.provider("openai", "openai-compatible", &upstream.base_url());
    w.model("gpt-4o-mini", &[("openai", "gpt-4o-mini-2024-07-18")]);
    let secret = w.key("key_billed", |k| k.principal = Some("acme:user-42".into()));
    w.key_budget("key_billed", 1_000_000_000);
    (Gateway::start(&w).await, secret)
}

#[tokio::test]
async fn a_whole_answer_is_charged_its_reported_usage_at_the_catalog_price() {
    let upstream = FakeUpstream::start().await;
    let (gw, secret) = gateway(&upstream).await;

    let r = gw.post("/v1/chat/completions", &secret, &chat("gpt-4o-mini")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let entry = &gw.ledger_entries(1).await[0];
    assert_eq!(entry.key_id.as_str(), "key_billed");
    assert_eq!(entry.principal.as_deref(), Some("acme:user-42"));
    assert_eq!(
        (entry.requested_model.as_str(), entry.served_model.as_str()),
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    );
    assert_eq!((entry.input_tokens, entry.output_tokens), (12, 5));
    assert_eq!(entry.usage_source, UsageSource::Reported);
    // 12 × $1/M + 5 × $2/M.
    assert_eq!(entry.cost, Money::from_nanos(12_000 + 10_000));
    assert_eq!((entry.status, entry.stream), (200, false));
    assert_eq!(r.headers["x-tollgate-request-id"].to_str().unwrap(), entry.request_id, "the ledger's key is ours");
}

#[tokio::test]
async fn a_stream_is_charged_from_its_usage_chunk_which_the_caller_did_not_ask_for() {
    let upstream = FakeUpstream::start_with(Reply::chat_either()).await;
    let (gw, secret) = gateway(&upstream).await;
    let mut body = chat("gpt-4o-mini");
    body["stream"] = true.into();

    let r = gw.post("/v1/chat/completions", &secret, &body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let text = r.text();
    assert!(text.contains("Hel") && text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"usage\""), "the usage chunk the gateway asked for is stripped: {text}");
    assert_eq!(upstream.requests()[0].json()["stream_options"]["include_usage"], true);
    let entry = &gw.ledger_entries(1).await[0];
    assert_eq!((entry.input_tokens, entry.output_tokens), (9, 2));
    assert_eq!(entry.cost, Money::from_nanos(9_000 + 4_000));
    assert_eq!((entry.status, entry.stream), (200, true));
}
