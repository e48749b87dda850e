//! Hard caps through the real binaries: 1,000 concurrent requests spread over two
//! gateways sharing one Redis never push a `block` budget past its limit, and a `clamp`
//! budget under the same load ends at least 95 % used — and never past it either.

use crate::standalone::{Backend, Gateway, UPSTREAM_KEY, gateways_on_redis};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_testkit::http_client::{get, send};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, PromptTokens, Reply};

/// $1 per 1M input tokens, $100 per 1M output tokens: a call of ~10 prompt tokens and
/// its full 100 output tokens costs about $0.01.
const PRICING: &str = r#"{"input_per_mtok": "1", "output_per_mtok": "100"}"#;
/// $2: room for about 200 such calls out of the 1,000 sent.
const LIMIT_NANOS: i64 = 2_000_000_000;
const CALLS: usize = 1_000;

/// Sends `CALLS` requests at once, alternating between the gateways; returns how many
/// were served and how many the budget refused (any other answer fails the test).
async fn flood(gws: &[Gateway], secret: &str) -> (usize, usize) {
    let calls = (0..CALLS).map(|i| {
        let url = format!("{}/v1/chat/completions", gws[i % gws.len()].data);
        let auth = format!("Bearer {secret}");
        async move {
            let body = json!({"model": "m", "max_tokens": 100, "stream": i % 3 == 0,
                "messages": [{"role": "user", "content": format!("call {i}")}]});
            let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            send(Method::POST, &url, &headers, body.to_string()).await
        }
    });
    let (mut served, mut refused) = (0, 0);
    for r in futures_util::future::join_all(calls).await {
        match r.status {
            StatusCode::OK => served += 1,
            StatusCode::PAYMENT_REQUIRED => {
                assert_eq!(r.json()["error"]["code"], "budget_exceeded", "{}", r.text());
                refused += 1;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    (served, refused)
}

/// Two gateways on one Redis, a model on a cap-honouring upstream and a key with one
/// `on_breach` budget of [`LIMIT_NANOS`]; `None` when the test Redis is not configured.
async fn setup(on_breach: &str) -> Option<(Vec<Gateway>, FakeUpstream, String, String)> {
    let gws = gateways_on_redis(2, Backend::Sqlite, &[]).await?;
    // Answers run to their cap (200 > 100): every reservation is used whole but for
    // the prompt's slack.
    let upstream = FakeUpstream::start_with(Reply::capped(200, PromptTokens::FromBody)).await;
    let gw = &gws[0];
    gw.created(
        "/api/v1/providers",
        json!({"name": "up", "kind": "openai-compatible", "base_url": upstream.base_url(), "api_key": UPSTREAM_KEY}),
    )
    .await;
    let pricing: Value = serde_json::from_str(PRICING).ok()?;
    gw.created(
        "/api/v1/models",
        json!({"name": "m", "deployments": [{"provider": "up", "model": "gpt-4o-mini"}], "pricing": pricing}),
    )
    .await;
    gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
    let budget = json!({"limit_usd": "2", "window": "month", "on_breach": on_breach});
    let key = gw.created("/api/v1/keys", json!({"project": "web", "budget": budget})).await;
    let (id, secret) = (key["id"].as_str()?.to_owned(), key["key"].as_str()?.to_owned());
    for g in &gws {
        g.wait_key_live(&secret).await;
    }
    Some((gws, upstream, id, secret))
}

/// The key's committed spend once every served call's ledger entry has reached the
/// control plane's ledger: the ledger, not the counters, is what the platform bills.
async fn ledger_spend(gw: &Gateway, key_id: &str, served: usize) -> i64 {
    let url = format!("{}/api/v1/ledger?scope=virtual_key&scope_id={key_id}&window=1h&limit=1000", gw.admin);
    let served_entries = |page: Value| -> Vec<Value> {
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        entries.into_iter().filter(|e| e["status"] == 200).collect()
    };
    eventually(Duration::from_secs(30), "every served call is in the ledger", || {
        let url = url.clone();
        async move { served_entries(get(&url, Some(crate::standalone::ADMIN)).await.json()).len() == served }
    })
    .await;
    let entries = served_entries(get(&url, Some(crate::standalone::ADMIN)).await.json());
    entries.iter().map(|e| e["cost_nanos"].as_i64().unwrap_or(0)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_calls_on_two_gateways_never_pass_a_block_budget() {
    let Some((gws, upstream, id, secret)) = setup("block").await else { return };

    let (served, refused) = flood(&gws, &secret).await;

    assert_eq!(served + refused, CALLS);
    assert!(refused > 0, "the budget affords about 200 of {CALLS}");
    assert_eq!(upstream.requests().len(), served, "no refused call reached the upstream");
    let spent = ledger_spend(&gws[0], &id, served).await;
    eprintln!("block: {served} served, {refused} refused, ${spent}n of ${LIMIT_NANOS}n");
    assert!(spent <= LIMIT_NANOS, "committed {spent} > limit {LIMIT_NANOS}");
    assert!(spent * 100 >= 90 * LIMIT_NANOS, "a tight reservation leaves little unused: {spent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_calls_on_two_gateways_fill_a_clamp_budget_but_never_pass_it() {
    let Some((gws, upstream, id, secret)) = setup("clamp").await else { return };

    let (served, refused) = flood(&gws, &secret).await;

    assert_eq!(served + refused, CALLS);
    assert_eq!(upstream.requests().len(), served);
    let spent = ledger_spend(&gws[0], &id, served).await;
    eprintln!("clamp: {served} served, {refused} refused, ${spent}n of ${LIMIT_NANOS}n");
    assert!(spent <= LIMIT_NANOS, "committed {spent} > limit {LIMIT_NANOS}");
    assert!(spent * 100 >= 95 * LIMIT_NANOS, "clamp leaves the budget ≥ 95 % used: {spent}");
}
