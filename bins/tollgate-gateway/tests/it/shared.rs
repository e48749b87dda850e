//! Two gateways on one Redis share a key's rate limits: a key at rpm 10 gets 10 calls
//! across both, not 20, and the tokens one gateway's calls reported count on the other.
//! Skipped (said so) without `TOLLGATE_TEST_REDIS_URL`.

use crate::limits::assert_rate_refusal;
use crate::scopes::{CALL_NANOS, ask, ledger_charges_only_served, mint, priced_model};
use crate::standalone::{Backend, Gateway, two_gateways_on_redis};
use http::StatusCode;
use serde_json::json;
use std::time::Instant;
use tollgate_testkit::http_client::post_json;
use tollgate_testkit::{FakeUpstream, PromptTokens, Reply};

/// Team `acme` and project `web` on the control plane, and the priced model.
async fn catalog(gw: &Gateway, upstream: &FakeUpstream) {
    priced_model(gw, upstream).await;
    gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
}

#[tokio::test]
async fn a_key_at_rpm_10_gets_10_calls_across_two_gateways_not_20() {
    let Some((a, b)) = two_gateways_on_redis(Backend::Sqlite, &[]).await else { return };
    let upstream = FakeUpstream::start().await;
    catalog(&a, &upstream).await;
    let (key_id, secret) = mint(&a, json!({"project": "web", "rpm": 10})).await;
    b.wait_key_live(&secret).await;

    // Twenty calls at once, alternating between the gateways.
    let started = Instant::now();
    let calls = (0..20).map(|i| {
        let url = format!("{}/v1/chat/completions", if i % 2 == 0 { &a.data } else { &b.data });
        let secret = secret.clone();
        async move { post_json(&url, Some(&secret), &ask()).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    let took = started.elapsed();
    let served = answers.iter().filter(|r| r.status == StatusCode::OK).count();
    for r in answers.iter().filter(|r| r.status != StatusCode::OK) {
        assert_rate_refusal(r, "rpm");
    }
    // A minute's 10 at once, then one more per 6 s the calls took (the bucket drains at
    // the limit's pace); each gateway alone would have served all 20.
    let drained = usize::try_from(took.as_secs() / 6).unwrap_or(usize::MAX);
    assert!((10..=10 + drained).contains(&served), "{served} served across both gateways in {took:?}");
    assert_eq!(upstream.request_count(), served, "refused calls never reached the upstream");
    // Both gateways refuse now, whichever is asked.
    for gw in [&a, &b] {
        assert_rate_refusal(&gw.chat(Some(&secret), &ask()).await, "rpm");
    }
    ledger_charges_only_served(&a, &key_id, served, CALL_NANOS).await;
}

#[tokio::test]
async fn tokens_reported_through_one_gateway_count_against_the_keys_tpm_on_the_other() {
    let Some((a, b)) = two_gateways_on_redis(Backend::Sqlite, &[]).await else { return };
    // The answer would run to 1,000 tokens; the caller caps it at 80, and with the
    // 20-token prompt the call reports 100: the key's whole minute.
    let upstream = FakeUpstream::start_with(Reply::capped(1_000, PromptTokens::Fixed(20))).await;
    catalog(&a, &upstream).await;
    let (key_id, secret) = mint(&a, json!({"project": "web", "tpm": 100})).await;
    b.wait_key_live(&secret).await;
    let body = json!({"model": "pricey", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 80});

    let r = a.chat(Some(&secret), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(upstream.last_cap(), Some(80), "the caller's cap was forwarded");
    assert_eq!(r.json()["usage"]["total_tokens"], 100);
    // The other gateway sees the minute spent and refuses even a small prompt.
    let refused = b.chat(Some(&secret), &body).await;
    assert_rate_refusal(&refused, "tpm");
    let refused = a.chat(Some(&secret), &body).await;
    assert_rate_refusal(&refused, "tpm");
    assert_eq!(upstream.request_count(), 1, "refused calls never reached the upstream");
    ledger_charges_only_served(&a, &key_id, 1, 20 * 1_000 + 80 * 100_000).await;
}
