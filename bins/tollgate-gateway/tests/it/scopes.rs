//! Principal, team and organization budgets through the running gateway: each refuses
//! with 402 naming its own scope (kind, id, budget), with a sane `retry-after`, never
//! reaches the upstream when refusing, and charges nothing for a refusal. (Key and project
//! budgets are in `budgets.rs`.)

use crate::standalone::{ADMIN, Gateway, UPSTREAM_KEY};
use http::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_testkit::http_client::{TestResponse, get};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, Reply};

/// What one call costs: the fake's 12 input + 5 output tokens at $1 / $100 per 1M.
pub(crate) const CALL_NANOS: i64 = 12 * 1_000 + 5 * 100_000;
/// A budget that affords one call, not two: a call reserves about $0.0006 (its prompt's
/// bound plus 5 output tokens) and costs $0.000512.
pub(crate) const ONE_CALL_USD: &str = "0.001";

/// Provider `up` and the priced model `pricey` on it.
pub(crate) async fn priced_model(gw: &Gateway, upstream: &FakeUpstream) {
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
}

/// A request for `pricey` capped at 5 output tokens.
pub(crate) fn ask() -> Value {
    json!({"model": "pricey", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
}

/// Mints a key with `body` (allowed `pricey`) and waits until the gateway serves it.
pub(crate) async fn mint(gw: &Gateway, body: Value) -> (String, String) {
    let mut b = json!({"models_allowed": ["pricey"]});
    if let (Some(o), Some(extra)) = (b.as_object_mut(), body.as_object()) {
        o.extend(extra.clone());
    }
    let k = gw.created("/api/v1/keys", b).await;
    let (id, secret) = (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned());
    gw.wait_key_live(&secret).await;
    (id, secret)
}

/// The budget `budget_id` as the key `secret` sees it on `/v1/key`, once it is there.
pub(crate) async fn budget_seen_by(gw: &Gateway, secret: &str, budget_id: &str) -> Value {
    let url = format!("{}/v1/key", gw.data);
    let find = |v: Value| v["budgets"].as_array().and_then(|bs| bs.iter().find(|b| b["id"] == budget_id).cloned());
    eventually(Duration::from_secs(10), "the budget reaches the key on the gateway", || {
        let url = url.clone();
        async move { find(get(&url, Some(secret)).await.json()).is_some() }
    })
    .await;
    find(get(&url, Some(secret)).await.json()).unwrap()
}

/// The spend committed on a budget view of `/v1/key`, in nano-dollars.
pub(crate) fn committed_nanos(budget: &Value) -> i64 {
    let usd = budget["spent"]["usd"].as_str().unwrap_or_else(|| panic!("no spent.usd in {budget}"));
    tollgate_core::Money::parse_usd(usd).unwrap().nanos()
}

/// The ledger entries of key `key_id` (the last hour).
pub(crate) async fn ledger_of(gw: &Gateway, key_id: &str) -> Vec<Value> {
    let r = get(&format!("{}/api/v1/ledger?window=1h", gw.admin), Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let all = r.json()["entries"].as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|e| e["key_id"] == key_id).collect()
}

/// Waits until the ledger holds exactly `served` entries for `key_id`, all served (200)
/// at `each_nanos` each: refusals never reach it, and nothing more is charged.
pub(crate) async fn ledger_charges_only_served(gw: &Gateway, key_id: &str, served: usize, each_nanos: i64) {
    eventually(Duration::from_secs(10), "the served calls reach the ledger", || async {
        ledger_of(gw, key_id).await.len() >= served
    })
    .await;
    let entries = ledger_of(gw, key_id).await;
    assert_eq!(entries.len(), served, "only served calls are in the ledger: {entries:?}");
    for e in &entries {
        assert_eq!(e["status"], 200, "{e}");
        let cost = tollgate_core::Money::parse_usd(e["cost_usd"].as_str().unwrap()).unwrap().nanos();
        assert_eq!(cost, each_nanos, "{e}");
    }
}

/// Checks a 402 against the error contract: code and type, the scope kind, its id and the
/// budget's id in `meta` and in the message, the limit and window, and a `retry-after`
/// within the (monthly) window.
pub(crate) fn assert_budget_refusal(r: &TestResponse, scope: &str, scope_id: &str, budget_id: &str) {
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
    assert_eq!(v["error"]["type"], "budget_exceeded", "{v}");
    let meta = &v["error"]["meta"];
    assert_eq!(meta["scope"], scope, "{v}");
    assert_eq!(meta["scope_id"], scope_id, "{v}");
    assert_eq!(meta["budget_id"], budget_id, "{v}");
    assert_eq!(meta["window"], "month", "{v}");
    assert_eq!(meta["limit_usd"], ONE_CALL_USD, "{v}");
    assert!(meta["resets_at"].as_str().is_some_and(|t| t.ends_with("T00:00:00Z")), "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(scope) && msg.contains(scope_id), "the message names the scope: {msg}");
    let retry: u64 =
        r.headers.get("retry-after").and_then(|h| h.to_str().ok()).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!((1..=31 * 86_400).contains(&retry), "retry-after {retry} within the month: {:?}", r.headers);
}

/// A budget of `ONE_CALL_USD` a month on `scope` / `scope_id`; answers its view.
async fn one_call_budget(gw: &Gateway, scope: &str, scope_id: &str) -> Value {
    gw.created(
        "/api/v1/budgets",
        json!({"scope": scope, "scope_id": scope_id, "limit_usd": ONE_CALL_USD, "window": "month", "on_breach": "block"}),
    )
    .await
}

/// One call is served and charged on the budget, the next is refused naming it and never
/// leaves; returns the refusal.
async fn serve_one_then_refuse(
    gw: &Gateway,
    upstream: &FakeUpstream,
    (key_id, secret): (&str, &str),
    budget: &Value,
) -> TestResponse {
    let budget_id = budget["id"].as_str().unwrap();
    let seen = budget_seen_by(gw, secret, budget_id).await;
    assert_eq!(committed_nanos(&seen), 0, "{seen}");
    let before = upstream.request_count();
    let r = gw.chat(Some(secret), &ask()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let refused = gw.chat(Some(secret), &ask()).await;
    assert_budget_refusal(&refused, budget["scope"].as_str().unwrap(), budget["scope_id"].as_str().unwrap(), budget_id);
    assert_eq!(upstream.request_count(), before + 1, "the refused call never reached the upstream");
    let seen = budget_seen_by(gw, secret, budget_id).await;
    assert_eq!(committed_nanos(&seen), CALL_NANOS, "the refusal charged nothing: {seen}");
    ledger_charges_only_served(gw, key_id, 1, CALL_NANOS).await;
    refused
}

#[tokio::test]
async fn a_principal_budget_refuses_every_key_of_that_principal_with_402_naming_it() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start_with(Reply::chat_completion()).await;
    priced_model(&gw, &upstream).await;
    gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "mobile", "team": "acme"})).await;
    let budget = one_call_budget(&gw, "principal", "acme:user-42").await;
    assert_eq!(budget["scope_id"], "acme:user-42");
    let (a_id, a) = mint(&gw, json!({"project": "web", "principal": "acme:user-42"})).await;
    // The same principal's key in another project shares the budget; another principal's
    // key in the same project does not.
    let (_, b) = mint(&gw, json!({"project": "mobile", "principal": "acme:user-42"})).await;
    let (other_id, other) = mint(&gw, json!({"project": "web", "principal": "acme:user-7"})).await;

    serve_one_then_refuse(&gw, &upstream, (&a_id, &a), &budget).await;
    let r = gw.chat(Some(&b), &ask()).await;
    assert_budget_refusal(&r, "principal", "acme:user-42", budget["id"].as_str().unwrap());
    let r = gw.chat(Some(&other), &ask()).await;
    assert_eq!(r.status, StatusCode::OK, "another principal is not held by it: {}", r.text());
    assert_eq!(upstream.request_count(), 2);
    ledger_charges_only_served(&gw, &other_id, 1, CALL_NANOS).await;
}

#[tokio::test]
async fn a_team_budget_refuses_every_project_of_the_team_with_402_naming_it() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    priced_model(&gw, &upstream).await;
    let team = gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/teams", json!({"name": "globex"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "mobile", "team": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "site", "team": "globex"})).await;
    // Given by name, stored (and named in refusals) by the team's id.
    let budget = one_call_budget(&gw, "team", "acme").await;
    assert_eq!(budget["scope_id"], team["id"], "{budget}");
    let (web_id, web) = mint(&gw, json!({"project": "web"})).await;
    let (_, mobile) = mint(&gw, json!({"project": "mobile"})).await;
    let (_, site) = mint(&gw, json!({"project": "site"})).await;

    serve_one_then_refuse(&gw, &upstream, (&web_id, &web), &budget).await;
    let r = gw.chat(Some(&mobile), &ask()).await;
    assert_budget_refusal(&r, "team", team["id"].as_str().unwrap(), budget["id"].as_str().unwrap());
    let r = gw.chat(Some(&site), &ask()).await;
    assert_eq!(r.status, StatusCode::OK, "another team is not held by it: {}", r.text());
}

#[tokio::test]
async fn an_organization_budget_refuses_every_team_of_the_organization_with_402_naming_it() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    priced_model(&gw, &upstream).await;
    let org = gw.created("/api/v1/organizations", json!({"name": "initech"})).await;
    gw.created("/api/v1/teams", json!({"name": "red", "organization": "initech"})).await;
    gw.created("/api/v1/teams", json!({"name": "blue", "organization": "initech"})).await;
    // The default organization's team is outside it.
    gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "r1", "team": "red"})).await;
    gw.created("/api/v1/projects", json!({"name": "b1", "team": "blue"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
    let budget = one_call_budget(&gw, "organization", "initech").await;
    assert_eq!(budget["scope_id"], org["id"], "{budget}");
    let (red_id, red) = mint(&gw, json!({"project": "r1"})).await;
    let (_, blue) = mint(&gw, json!({"project": "b1"})).await;
    let (_, outside) = mint(&gw, json!({"project": "web"})).await;

    serve_one_then_refuse(&gw, &upstream, (&red_id, &red), &budget).await;
    let r = gw.chat(Some(&blue), &ask()).await;
    assert_budget_refusal(&r, "organization", org["id"].as_str().unwrap(), budget["id"].as_str().unwrap());
    let r = gw.chat(Some(&outside), &ask()).await;
    assert_eq!(r.status, StatusCode::OK, "another organization is not held by it: {}", r.text());
}

#[tokio::test]
async fn the_tightest_of_several_scopes_is_the_one_named_and_the_others_are_left_untouched() {
    // Key, project, team and organization budgets all apply; only the team's is tight.
    // The refusal names the team, and (all-or-nothing) the refused call left no trace on
    // the budgets that had room.
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    priced_model(&gw, &upstream).await;
    let team = gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
    let roomy = json!({"limit_usd": "5", "window": "month", "on_breach": "block"});
    let org = gw.created(
        "/api/v1/budgets",
        json!({"scope": "organization", "scope_id": "default", "limit_usd": "5", "window": "month", "on_breach": "block"}),
    )
    .await;
    let tight = one_call_budget(&gw, "team", "acme").await;
    let (key_id, secret) = mint(&gw, json!({"project": "web", "budget": roomy})).await;
    let org_seen = budget_seen_by(&gw, &secret, org["id"].as_str().unwrap()).await;
    assert_eq!(committed_nanos(&org_seen), 0);

    let refused = serve_one_then_refuse(&gw, &upstream, (&key_id, &secret), &tight).await;
    assert_eq!(refused.json()["error"]["meta"]["scope_id"], team["id"]);
    let view = get(&format!("{}/v1/key", gw.data), Some(&secret)).await.json();
    let budgets = view["budgets"].as_array().unwrap();
    assert!(budgets.len() >= 3, "key, team and organization budgets apply: {view}");
    for b in budgets {
        assert_eq!(committed_nanos(b), CALL_NANOS, "each scope was charged the served call once: {b}");
        let reserved = tollgate_core::Money::parse_usd(b["spent"]["reserved_usd"].as_str().unwrap()).unwrap();
        assert_eq!(reserved.nanos(), 0, "the refusal left no reservation behind: {b}");
    }
}
