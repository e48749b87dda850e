//! Budgets and rate limits through the standalone binary: reservation before dispatch,
//! exact spend, the 402 / 429 contract, warn budgets and their alert webhook, and live
//! changes from the management API.

use crate::standalone::{Gateway, UPSTREAM_KEY, error_code};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_testkit::http_client::{TestResponse, get, send};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, Reply};

/// $1 per 1M input tokens (1,000 nano-dollars a token), $100 per 1M output tokens
/// (100,000 nano-dollars a token).
const INPUT_NANOS: i64 = 1_000;
const OUTPUT_NANOS: i64 = 100_000;
/// What the fake upstream reports: 12 + 5 tokens for a completion, 9 + 2 for a stream.
const JSON_COST: i64 = 12 * INPUT_NANOS + 5 * OUTPUT_NANOS;
const STREAM_COST: i64 = 9 * INPUT_NANOS + 2 * OUTPUT_NANOS;

/// Provider, a priced `pricey` model, an unpriced `free-ish` one, team and project.
async fn catalog(gw: &Gateway, upstream: &FakeUpstream) {
    gw.created(
        "/api/v1/providers",
        json!({"name": "up", "kind": "openai-compatible", "base_url": upstream.base_url(), "api_key": UPSTREAM_KEY}),
    )
    .await;
    gw.created(
        "/api/v1/models",
        json!({"name": "pricey", "deployments": [{"provider": "up", "model": "gpt-4o-mini"}],
               "pricing": {"input_per_mtok": "1", "output_per_mtok": "100"}}),
    )
    .await;
    gw.created("/api/v1/models", json!({"name": "free-ish", "deployments": [{"provider": "up", "model": "x"}]})).await;
    gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
}

/// Mints a key in project `web`, allowed `pricey` unless `body` says otherwise.
async fn key(gw: &Gateway, body: Value) -> (String, String) {
    let mut b = json!({"project": "web", "models_allowed": ["pricey"]});
    if let (Some(o), Some(extra)) = (b.as_object_mut(), body.as_object()) {
        o.extend(extra.clone());
    }
    let k = gw.created("/api/v1/keys", b).await;
    let (id, secret) = (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned());
    gw.wait_key_live(&secret).await;
    (id, secret)
}

fn ask(stream: bool) -> Value {
    json!({"model": "pricey", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": stream})
}

async fn own_key(gw: &Gateway, secret: &str) -> Value {
    let r = get(&format!("{}/v1/key", gw.data), Some(secret)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// A USD decimal string of a JSON view in nano-dollars.
fn nanos(v: &Value) -> i64 {
    tollgate_core::Money::parse_usd(v.as_str().unwrap_or_else(|| panic!("not a USD string: {v}"))).unwrap().nanos()
}

fn spent_nanos(key_view: &Value, budget: usize) -> i64 {
    let usd = key_view["budgets"][budget]["spent"]["usd"].as_str().unwrap_or_else(|| panic!("spent in {key_view}"));
    tollgate_core::Money::parse_usd(usd).unwrap().nanos()
}

#[tokio::test]
async fn concurrent_calls_never_push_a_block_budget_past_its_cap() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start_with(Reply::chat_either().delayed(Duration::from_millis(5))).await;
    catalog(&gw, &upstream).await;
    let (id, secret) = key(&gw, json!({"budget": {"limit_usd": "0.01", "window": "day", "on_breach": "block"}})).await;

    // Far more calls than $0.01 affords (about 20), streaming and not, 16 at a time.
    let url = format!("{}/v1/chat/completions", gw.data);
    let mut statuses = Vec::new();
    let mut refusal: Option<TestResponse> = None;
    for wave in 0..6 {
        let calls = (0..16).map(|i| {
            let (url, secret) = (url.clone(), secret.clone());
            async move {
                let body = ask((wave + i) % 2 == 0).to_string();
                let headers =
                    [("authorization", format!("Bearer {secret}")), ("content-type", "application/json".into())];
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                send(Method::POST, &url, &headers, body).await
            }
        });
        for r in futures_util::future::join_all(calls).await {
            statuses.push(r.status);
            if r.status == StatusCode::PAYMENT_REQUIRED {
                refusal = Some(r);
            } else {
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                // The stream's body must be read for it to be metered; send() reads it.
            }
        }
    }
    let refusal = refusal.expect("the budget refuses once spent");

    // Every call that reached the upstream was affordable: spend never passes the cap.
    let seen = upstream.requests();
    let streams = seen.iter().filter(|r| r.json()["stream"] == true).count() as i64;
    let plain = seen.len() as i64 - streams;
    let expected = plain * JSON_COST + streams * STREAM_COST;
    assert!(expected <= 10_000_000, "dispatched {plain} + {streams} calls costing {expected} nanos > $0.01");
    assert!(seen.len() >= 15, "the budget affords at least 15 calls, only {} went out", seen.len());
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), seen.len(), "every 200 was dispatched once");
    // The counters hold exactly the reported usage at the catalog price.
    eventually(Duration::from_secs(5), "spend settles", || {
        let (gw_data, secret) = (gw.data.clone(), secret.clone());
        async move {
            let r = get(&format!("{gw_data}/v1/key"), Some(&secret)).await.json();
            spent_nanos(&r, 0) == expected
        }
    })
    .await;
    let view = own_key(&gw, &secret).await;
    assert_eq!(nanos(&view["budgets"][0]["spent"]["reserved_usd"]), 0, "no reservation is left behind: {view}");
    assert_eq!(nanos(&view["budgets"][0]["remaining"]["usd"]), 10_000_000 - expected);

    // The 402 contract: names the scope, carries meta and retry-after.
    let v = refusal.json();
    assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
    assert_eq!(v["error"]["type"], "budget_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("virtual_key") && msg.contains(&id) && msg.contains("0.01") && msg.contains("day"), "{msg}");
    let meta = &v["error"]["meta"];
    assert_eq!(meta["scope"], "virtual_key");
    assert_eq!(meta["scope_id"], id.as_str());
    assert!(meta["budget_id"].as_str().is_some_and(|b| b.starts_with("bud")), "{meta}");
    assert_eq!(meta["window"], "day");
    assert_eq!(meta["limit_usd"], "0.01");
    assert!(meta["resets_at"].as_str().is_some_and(|t| t.ends_with("T00:00:00Z")), "{meta}");
    let retry: u64 = refusal.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "retry-after {retry}");
}

#[tokio::test]
async fn rate_limits_refuse_with_retry_after_and_successes_carry_remaining_headers() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    catalog(&gw, &upstream).await;
    let (_, secret) =
        key(&gw, json!({"rpm": 3, "budget": {"limit_usd": "5", "window": "month", "on_breach": "block"}})).await;

    let first = gw.chat(Some(&secret), &ask(false)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.headers["x-ratelimit-remaining-requests"], "2");
    let remaining = first.headers["x-tollgate-budget-remaining"].to_str().unwrap();
    let remaining = tollgate_core::Money::parse_usd(remaining).unwrap().nanos();
    assert!((5_000_000_000 - 1_000_000..5_000_000_000).contains(&remaining), "remaining {remaining}");
    for _ in 0..2 {
        assert_eq!(gw.chat(Some(&secret), &ask(false)).await.status, StatusCode::OK);
    }
    let refused = gw.chat(Some(&secret), &ask(false)).await;
    assert_eq!((refused.status, error_code(&refused)), (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded".into()));
    let v = refused.json();
    assert_eq!(v["error"]["meta"]["dimension"], "rpm", "{v}");
    let retry: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(upstream.requests().len(), 3, "the refused call never reached the upstream");
}

#[tokio::test]
async fn an_unpriced_model_is_never_served_free_to_a_key_with_a_money_budget() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    catalog(&gw, &upstream).await;
    let money = json!({"limit_usd": "1", "window": "month", "on_breach": "block"});
    // A money-budgeted key that could reach the unpriced model is refused when minted,
    // naming the model, so it can never be charged $0 for it.
    let r = gw.admin_post("/api/v1/keys", json!({"project": "web", "budget": money})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "budget.limit_usd");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("free-ish"), "{}", r.text());
    // Kept to priced models, it is minted, and the unpriced model is out of its reach.
    let (_, budgeted) = key(&gw, json!({"budget": money})).await;
    let r = gw.chat(Some(&budgeted), &json!({"model": "free-ish", "messages": []})).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::FORBIDDEN, "model_not_allowed".into()), "{}", r.text());
    assert!(upstream.requests().is_empty());
    // A key without a money budget may use it (the platform chose not to price it).
    let (_, unbudgeted) = key(&gw, json!({"models_allowed": ["*"]})).await;
    let r = gw.chat(Some(&unbudgeted), &json!({"model": "free-ish", "messages": []})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Once it has an explicit price (zero is one), money-budgeted keys may reach it too.
    let zero = json!({"pricing": {"input_per_mtok": "0", "output_per_mtok": "0"}});
    let r = gw.admin_send(Method::PATCH, "/api/v1/models/free-ish", zero).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (_, priced) = key(&gw, json!({"models_allowed": ["*"], "budget": money})).await;
    let r = gw.chat(Some(&priced), &json!({"model": "free-ish", "messages": []})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn warn_budgets_serve_flag_and_alert_once_per_threshold() {
    let webhook = FakeUpstream::start_with(Reply::json(StatusCode::OK, "{}")).await;
    let hook_url = format!("http://{}/hooks/budget", webhook.addr());
    let gw = Gateway::start_with_env(&[("TOLLGATE_ALERT_WEBHOOK_URL", &hook_url)]).await;
    let upstream = FakeUpstream::start().await;
    catalog(&gw, &upstream).await;
    // $0.0015 affords about three calls; the fourth and later breach it.
    let b = gw
        .created(
            "/api/v1/budgets",
            json!({"scope": "project", "scope_id": "web", "limit_usd": "0.0015", "window": "month",
                   "on_breach": "warn", "alert_thresholds": [0.5]}),
        )
        .await;
    let budget_id = b["id"].as_str().unwrap().to_owned();
    let (_, secret) = key(&gw, json!({})).await;
    eventually(Duration::from_secs(10), "budget reaches the gateway", || {
        let (data, secret) = (gw.data.clone(), secret.clone());
        async move { get(&format!("{data}/v1/key"), Some(&secret)).await.json()["budgets"][0]["id"].is_string() }
    })
    .await;

    let mut warned = 0;
    for _ in 0..8 {
        let r = gw.chat(Some(&secret), &ask(false)).await;
        assert_eq!(r.status, StatusCode::OK, "warn budgets never refuse: {}", r.text());
        if let Some(w) = r.headers.get("x-tollgate-budget-warning") {
            let w = w.to_str().unwrap();
            assert!(w.contains("project") && w.contains(&budget_id), "{w}");
            warned += 1;
        }
    }
    assert!(warned >= 4, "calls past the limit are flagged ({warned})");
    eventually(Duration::from_secs(10), "alerts delivered", || {
        let n = webhook.requests().len();
        async move { n >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts: Vec<Value> = webhook.requests().iter().map(|r| r.json()).collect();
    let mut thresholds: Vec<String> = alerts.iter().map(|a| a["threshold"].as_str().unwrap().to_owned()).collect();
    thresholds.sort();
    assert_eq!(thresholds, ["0.500", "1.000"], "each threshold fires once: {alerts:?}");
    assert!(alerts.iter().all(|a| a["budget_id"] == budget_id.as_str() && a["scope"] == "project"));
}

#[tokio::test]
async fn limit_changes_and_resets_apply_to_the_live_gateway() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    catalog(&gw, &upstream).await;
    let (id, secret) =
        key(&gw, json!({"budget": {"limit_usd": "0.001", "window": "month", "on_breach": "block"}})).await;
    // 0.001 affords one call at 512,000 nanos (reservation ~600,000), not two.
    assert_eq!(gw.chat(Some(&secret), &ask(false)).await.status, StatusCode::OK);
    let refused = gw.chat(Some(&secret), &ask(false)).await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED, "{}", refused.text());

    let view = own_key(&gw, &secret).await;
    assert_eq!(view["id"], id.as_str());
    assert_eq!(spent_nanos(&view, 0), JSON_COST);
    let budget_id = view["budgets"][0]["id"].as_str().unwrap().to_owned();

    // Raise the limit: served again without a restart.
    let r = gw.admin_send(Method::PATCH, &format!("/api/v1/budgets/{budget_id}"), json!({"limit_usd": "1"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(Duration::from_secs(10), "new limit reaches the gateway", || {
        let (gw_data, secret) = (gw.data.clone(), secret.clone());
        async move {
            let v = get(&format!("{gw_data}/v1/key"), Some(&secret)).await.json();
            nanos(&v["budgets"][0]["limit"]["usd"]) == 1_000_000_000
        }
    })
    .await;
    assert_eq!(gw.chat(Some(&secret), &ask(false)).await.status, StatusCode::OK);
    assert_eq!(spent_nanos(&own_key(&gw, &secret).await, 0), 2 * JSON_COST);

    // A manual reset empties the window on the gateway.
    let r = gw.admin_post(&format!("/api/v1/budgets/{budget_id}/reset"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(Duration::from_secs(10), "reset reaches the gateway", || {
        let (gw_data, secret) = (gw.data.clone(), secret.clone());
        async move { spent_nanos(&get(&format!("{gw_data}/v1/key"), Some(&secret)).await.json(), 0) == 0 }
    })
    .await;
}

#[tokio::test]
async fn the_key_endpoint_shows_only_the_callers_own_key() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    catalog(&gw, &upstream).await;
    let (a_id, a) = key(
        &gw,
        json!({"name": "alpha", "rpm": 10, "models_allowed": ["pricey"],
               "budget": {"limit_usd": "2", "window": "week", "on_breach": "block"}}),
    )
    .await;
    let (b_id, _) = key(&gw, json!({"name": "beta"})).await;
    let v = own_key(&gw, &a).await;
    assert_eq!(v["id"], a_id.as_str());
    assert_eq!(v["name"], "alpha");
    assert_eq!(v["models_allowed"], json!(["pricey"]));
    assert_eq!(v["rate_limits"]["rpm"], 10);
    assert_eq!(nanos(&v["budgets"][0]["limit"]["usd"]), 2_000_000_000);
    assert_eq!(nanos(&v["budgets"][0]["remaining"]["usd"]), 2_000_000_000);
    assert_eq!(v["budgets"][0]["window"], "week");
    assert!(!v.to_string().contains(&b_id), "another key's id leaked: {v}");
    assert!(!v.to_string().contains(&a), "the secret is never echoed");
    let r = get(&format!("{}/v1/key", gw.data), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn spend_survives_a_restart_because_counters_are_rebuilt_from_the_ledger() {
    let mut gw = Gateway::start().await;
    let upstream = FakeUpstream::start_with(Reply::chat_either()).await;
    catalog(&gw, &upstream).await;
    let (_, secret) =
        key(&gw, json!({"budget": {"limit_usd": "0.003", "window": "month", "on_breach": "block"}})).await;
    // Two plain calls and a stream: 2 × 512,000 + 209,000 nano-dollars.
    for stream in [false, true, false] {
        let r = gw.chat(Some(&secret), &ask(stream)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let before = JSON_COST * 2 + STREAM_COST;
    eventually(Duration::from_secs(5), "spend settles", || {
        let (data, secret) = (gw.data.clone(), secret.clone());
        async move { spent_nanos(&get(&format!("{data}/v1/key"), Some(&secret)).await.json(), 0) == before }
    })
    .await;

    gw.restart().await;
    gw.wait_key_live(&secret).await;
    assert_eq!(spent_nanos(&own_key(&gw, &secret).await, 0), before, "memory counters are rebuilt from the ledger");
    // And the rebuilt counters enforce the cap: $0.003 - $0.001233 leaves room for exactly
    // three more calls (each reserves about $0.0006 and costs $0.000512); counters that
    // started from zero would let a fourth and fifth through.
    let mut served = 0;
    for _ in 0..6 {
        match gw.chat(Some(&secret), &ask(false)).await.status {
            StatusCode::OK => served += 1,
            StatusCode::PAYMENT_REQUIRED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(served, 3, "calls served after the restart");
    assert!((before + served * JSON_COST) <= 3_000_000);
    assert_eq!(upstream.requests().len() as i64, 3 + served);
}

#[tokio::test]
async fn a_tagged_keys_requests_carry_its_tags_into_the_ledger_and_usage() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start_with(Reply::chat_either()).await;
    catalog(&gw, &upstream).await;
    let (id, secret) = key(&gw, json!({"tags": ["env:prod", "feature:chat"]})).await;
    let (_, untagged) = key(&gw, json!({})).await;
    for (secret, stream) in [(&secret, false), (&secret, true), (&untagged, false)] {
        let r = gw.chat(Some(secret), &ask(stream)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let ledger = |query: &'static str| {
        let admin = gw.admin.clone();
        async move {
            let r = get(&format!("{admin}/api/v1/ledger?window=1h{query}"), Some(crate::standalone::ADMIN)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            r.json()["entries"].as_array().cloned().unwrap_or_default()
        }
    };
    eventually(Duration::from_secs(10), "three entries in the ledger", || async { ledger("").await.len() == 3 }).await;
    let tagged = ledger("&scope=tag&scope_id=feature:chat").await;
    assert_eq!(tagged.len(), 2, "{tagged:?}");
    for e in &tagged {
        assert_eq!(e["key_id"], id.as_str());
        assert_eq!(e["tags"], json!(["env:prod", "feature:chat"]));
    }
    let all = ledger("").await;
    assert!(all.iter().any(|e| e["key_id"] != id.as_str() && e["tags"] == json!([])), "{all:?}");
    let usage = get(&format!("{}/api/v1/usage?window=1h&group_by=tag", gw.admin), Some(crate::standalone::ADMIN)).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text());
    let usage = usage.json();
    let by_tag: Vec<(&str, u64)> = usage["by_tag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["tag"].as_str().unwrap(), g["requests"].as_u64().unwrap()))
        .collect();
    assert_eq!(by_tag, [("env:prod", 2), ("feature:chat", 2)], "{usage}");
}
