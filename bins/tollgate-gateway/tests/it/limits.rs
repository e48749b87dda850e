//! A key's tokens-per-minute and concurrency limits, and a budget's temporary increase,
//! through the running gateway: 429 with the dimension and a sane `retry-after`, nothing
//! dispatched or charged for a refusal, and an increase that admits while it lasts and
//! refuses again once it lapses, without a restart.

use crate::scopes::{
    CALL_NANOS, ONE_CALL_USD, ask, assert_budget_refusal, budget_seen_by, committed_nanos, ledger_charges_only_served,
    mint, priced_model,
};
use crate::standalone::Gateway;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_testkit::http_client::{TestResponse, send};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, PromptTokens, Reply};

/// Checks a 429 against the error contract: code and type, the dimension, the key as the
/// limit's owner, and a `retry-after` of at most the minute the limit spans.
pub(crate) fn assert_rate_refusal(r: &TestResponse, dimension: &str) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_exceeded", "{v}");
    assert_eq!(v["error"]["meta"]["dimension"], dimension, "{v}");
    assert_eq!(v["error"]["meta"]["limit_of"], "virtual_key", "{v}");
    assert!(v["error"]["meta"]["resets_at"].is_string(), "{v}");
    let retry: u64 =
        r.headers.get("retry-after").and_then(|h| h.to_str().ok()).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!((1..=60).contains(&retry), "retry-after {retry}: {:?}", r.headers);
}

/// A key's project: team `acme`, project `web`.
async fn tenancy(gw: &Gateway) {
    gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
}

#[tokio::test]
async fn a_key_over_its_tpm_is_refused_429_once_its_calls_reported_tokens_fill_the_minute() {
    let gw = Gateway::start().await;
    // Every call reports 10 prompt + 20 completion tokens: 30 of the key's 60 a minute.
    let upstream = FakeUpstream::start_with(Reply::capped(20, PromptTokens::Fixed(10))).await;
    priced_model(&gw, &upstream).await;
    tenancy(&gw).await;
    let (key_id, secret) = mint(&gw, json!({"project": "web", "tpm": 60})).await;
    let body = json!({"model": "pricey", "messages": [{"role": "user", "content": "hi"}]});

    // Two calls fill the minute with reported tokens (the prompt's estimate alone would
    // let many more in); the third's prompt no longer fits.
    for n in 0..2 {
        let r = gw.chat(Some(&secret), &body).await;
        assert_eq!(r.status, StatusCode::OK, "call {n}: {}", r.text());
        assert!(r.headers.contains_key("x-ratelimit-remaining-tokens"), "{:?}", r.headers);
        assert_eq!(r.json()["usage"]["total_tokens"], 30);
    }
    let refused = gw.chat(Some(&secret), &body).await;
    assert_rate_refusal(&refused, "tpm");
    assert_eq!(upstream.request_count(), 2, "the refused call never reached the upstream");
    // Refusals are neither charged nor counted: a refused call leaves the bucket as it was.
    let again = gw.chat(Some(&secret), &body).await;
    assert_rate_refusal(&again, "tpm");
    ledger_charges_only_served(&gw, &key_id, 2, 10 * 1_000 + 20 * 100_000).await;
}

#[tokio::test]
async fn a_key_at_its_max_concurrency_is_refused_429_until_a_call_finishes() {
    let gw = Gateway::start().await;
    // The first call's stream sends its first event, then hangs: the call stays in flight.
    let upstream = FakeUpstream::start_with(Reply::chat_completion()).await;
    upstream.push_reply(Reply::chat_stream().stall_after(40));
    priced_model(&gw, &upstream).await;
    tenancy(&gw).await;
    let (_, secret) = mint(&gw, json!({"project": "web", "max_concurrency": 1})).await;

    let url = format!("{}/v1/chat/completions", gw.data);
    let held = {
        let (url, secret) = (url.clone(), secret.clone());
        tokio::spawn(async move {
            let stream = json!({"model": "pricey", "messages": [{"role": "user", "content": "hi"}], "stream": true});
            let auth = format!("Bearer {secret}");
            send(
                Method::POST,
                &url,
                &[("authorization", auth.as_str()), ("content-type", "application/json")],
                stream.to_string(),
            )
            .await
        })
    };
    eventually(Duration::from_secs(10), "the first call is in flight", || async { upstream.request_count() == 1 })
        .await;

    let refused = gw.chat(Some(&secret), &ask()).await;
    assert_rate_refusal(&refused, "concurrency");
    assert_eq!(upstream.request_count(), 1, "the refused call never reached the upstream");

    // The caller of the hanging stream gives up; its slot comes back and calls are served.
    held.abort();
    let _ = held.await;
    eventually(Duration::from_secs(20), "the slot is freed when the caller hangs up", || async {
        let r = gw.chat(Some(&secret), &ask()).await;
        match r.status {
            StatusCode::OK => true,
            _ => {
                assert_rate_refusal(&r, "concurrency");
                false
            }
        }
    })
    .await;
    assert_eq!(upstream.request_count(), 2, "only admitted calls were dispatched");
}

/// The limit the key sees on `budget_id`, in nano-dollars.
async fn limit_nanos(gw: &Gateway, secret: &str, budget_id: &str) -> i64 {
    let b: Value = budget_seen_by(gw, secret, budget_id).await;
    tollgate_core::Money::parse_usd(b["limit"]["usd"].as_str().unwrap()).unwrap().nanos()
}

#[tokio::test]
async fn a_temporary_increase_admits_while_it_lasts_and_refuses_again_when_it_lapses() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    priced_model(&gw, &upstream).await;
    tenancy(&gw).await;
    let budget = json!({"limit_usd": ONE_CALL_USD, "window": "month", "on_breach": "block"});
    let (key_id, secret) = mint(&gw, json!({"project": "web", "budget": budget})).await;
    let own = tollgate_testkit::http_client::get(&format!("{}/v1/key", gw.data), Some(&secret)).await.json();
    let budget_id = own["budgets"][0]["id"].as_str().unwrap_or_else(|| panic!("the key's budget: {own}")).to_owned();

    assert_eq!(gw.chat(Some(&secret), &ask()).await.status, StatusCode::OK);
    let refused = gw.chat(Some(&secret), &ask()).await;
    assert_budget_refusal(&refused, "virtual_key", &key_id, &budget_id);

    // $0.01 more for a few seconds: the limit in force rises on the running gateway and
    // the next call is served.
    let r = gw
        .admin_post(&format!("/api/v1/budgets/{budget_id}/increase"), json!({"amount_usd": "0.01", "duration_s": 8}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["temporary_increase"]["amount"], "0.01", "{}", r.text());
    eventually(Duration::from_secs(5), "the increase reaches the gateway", || async {
        limit_nanos(&gw, &secret, &budget_id).await == 11_000_000
    })
    .await;
    let r = gw.chat(Some(&secret), &ask()).await;
    assert_eq!(r.status, StatusCode::OK, "served under the increase: {}", r.text());

    // Once it lapses the base limit is in force again, with no restart and no change
    // pushed: $0.001024 spent of $0.001 refuses.
    eventually(Duration::from_secs(20), "the increase lapses", || async {
        limit_nanos(&gw, &secret, &budget_id).await == 1_000_000
    })
    .await;
    let refused = gw.chat(Some(&secret), &ask()).await;
    assert_budget_refusal(&refused, "virtual_key", &key_id, &budget_id);
    assert_eq!(upstream.request_count(), 2, "refusals never reached the upstream");
    let b = budget_seen_by(&gw, &secret, &budget_id).await;
    assert_eq!(committed_nanos(&b), 2 * CALL_NANOS, "only the two served calls were charged: {b}");
    ledger_charges_only_served(&gw, &key_id, 2, CALL_NANOS).await;
}
