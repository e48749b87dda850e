//! Request identity and the books: the ledger is keyed by an id the gateway generates,
//! so no caller can merge, forge or erase a charge by choosing its `x-request-id` — its
//! own or another tenant's. The fake upstream's request log is the ground truth, the
//! ledger API the books; both backends.

use crate::standalone::{ADMIN, Backend, Gateway, hello};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use tollgate_testkit::http_client::{TestResponse, get, send};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, Reply};

/// Every ledger entry of the last day (the suite's gateways hold far fewer than a page).
pub(crate) async fn ledger(gw: &Gateway) -> Vec<Value> {
    let r = get(&format!("{}/api/v1/ledger?window=24h&limit=1000", gw.admin), Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["entries"].as_array().cloned().unwrap_or_default()
}

/// Waits until the ledger holds `n` entries, and returns them.
pub(crate) async fn ledger_of(gw: &Gateway, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(15), &format!("the ledger holds {n} entries"), || async move {
        ledger(gw).await.len() >= n
    })
    .await;
    ledger(gw).await
}

/// The sum of `cost_nanos` over entries.
pub(crate) fn total_nanos(entries: &[Value]) -> i64 {
    entries.iter().map(|e| e["cost_nanos"].as_i64().unwrap_or_else(|| panic!("cost_nanos in {e}"))).sum()
}

/// A chat completion with `key`, sending `x-request-id: id` when given.
async fn chat_as(gw: &Gateway, key: &str, id: Option<&str>) -> TestResponse {
    let auth = format!("Bearer {key}");
    let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    if let Some(id) = id {
        headers.push(("x-request-id", id));
    }
    let r = send(Method::POST, &format!("{}/v1/chat/completions", gw.data), &headers, hello().to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r
}

fn header<'r>(r: &'r TestResponse, name: &str) -> &'r str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

/// Found at 58aef5c: six requests sent with one `x-request-id` were six upstream calls
/// and one ledger entry, and after a restart the re-seeded budget showed a sixth of the
/// spend. Now each is its own entry, found again by the caller's id.
#[tokio::test]
async fn a_repeated_caller_request_id_dedupes_nothing_before_or_after_a_restart() {
    for backend in Backend::ALL {
        let upstream = FakeUpstream::start_with(Reply::chat_completion()).await;
        let mut gw = Gateway::start_on(backend, &[]).await;
        let (key_id, secret) = gw.setup(&upstream, json!({"models_allowed": ["gpt-4o-mini"]})).await;
        gw.created(
            "/api/v1/budgets",
            json!({"scope": "virtual_key", "scope_id": key_id, "limit_usd": "100", "window": "month", "on_breach": "block"}),
        )
        .await;
        eventually(Duration::from_secs(10), "budget reaches the gateway", || {
            let (data, secret) = (gw.data.clone(), secret.clone());
            async move { get(&format!("{data}/v1/key"), Some(&secret)).await.json()["budgets"][0]["id"].is_string() }
        })
        .await;

        let mut ours = HashSet::new();
        for _ in 0..6 {
            let r = chat_as(&gw, &secret, Some("same-id-6")).await;
            assert_eq!(header(&r, "x-request-id"), "same-id-6", "the caller's id is echoed");
            let id = header(&r, "x-tollgate-request-id");
            assert!(id.starts_with("req_") && id != "same-id-6", "{id}");
            ours.insert(id.to_owned());
        }
        assert_eq!(ours.len(), 6, "each request has an id of its own");
        assert_eq!(upstream.request_count(), 6);

        let entries = ledger_of(&gw, 6).await;
        assert_eq!(entries.len(), 6, "one entry per upstream call: {entries:#?}");
        let ids: HashSet<String> = entries.iter().map(|e| e["request_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, ours, "the ledger is keyed by the ids the responses carried");
        assert!(entries.iter().all(|e| e["client_request_id"] == "same-id-6"), "{entries:#?}");
        let by_client = get(&format!("{}/api/v1/ledger?window=24h&client_request_id=same-id-6", gw.admin), Some(ADMIN))
            .await
            .json();
        assert_eq!(
            by_client["entries"].as_array().map(Vec::len),
            Some(6),
            "filterable by the caller's id: {by_client}"
        );
        let spent = total_nanos(&entries);
        assert!(spent > 0);

        gw.restart().await;
        let view = get(&format!("{}/v1/key", gw.data), Some(&secret)).await.json();
        let reseeded = tollgate_core::Money::parse_usd(view["budgets"][0]["spent"]["usd"].as_str().unwrap()).unwrap();
        assert_eq!(reseeded.nanos(), spent, "{backend:?}: the budget re-seeded from the ledger holds every charge");
    }
}

/// Found at 58aef5c: generated ids were sequential and returned to every caller, so one
/// tenant could send the ids another tenant would be given next and make 5 of 5 of that
/// tenant's requests vanish from the ledger.
#[tokio::test]
async fn no_tenant_can_erase_another_tenants_entries_by_guessing_ids() {
    for backend in Backend::ALL {
        let upstream = FakeUpstream::start_with(Reply::chat_completion()).await;
        let gw = Gateway::start_on(backend, &[]).await;
        let (_, attacker) = gw.setup(&upstream, json!({})).await;
        gw.created("/api/v1/projects", json!({"name": "victims", "team": "acme"})).await;
        let victim = gw.created("/api/v1/keys", json!({"project": "victims", "name": "v"})).await;
        let (victim_id, victim) =
            (victim["id"].as_str().unwrap().to_owned(), victim["key"].as_str().unwrap().to_owned());
        gw.wait_key_live(&victim).await;

        // The attacker learns the current id, and claims the next ones however they are
        // built: the old sequential form, and ours with its last characters bumped.
        let seen = chat_as(&gw, &attacker, None).await;
        let current = header(&seen, "x-request-id").to_owned();
        for guess in guesses(&current, 5) {
            chat_as(&gw, &attacker, Some(&guess)).await;
        }
        for _ in 0..5 {
            chat_as(&gw, &victim, None).await;
        }

        let entries = ledger_of(&gw, 11).await;
        assert_eq!(entries.len(), 11, "{backend:?}: every upstream call has its entry: {entries:#?}");
        assert_eq!(upstream.request_count(), 11);
        let victims = entries.iter().filter(|e| e["key_id"] == victim_id.as_str()).count();
        assert_eq!(victims, 5, "{backend:?}: none of the victim's requests vanished");
    }
}

/// The next `n` ids after `id` if ids counted up in hex (the old form) or in any
/// alphabet ending in digits and letters (each guess bumps the last character).
fn guesses(id: &str, n: u64) -> Vec<String> {
    let split = id.len().saturating_sub(12);
    let (head, tail) = id.split_at(split);
    match u64::from_str_radix(tail, 16) {
        Ok(v) => (1..=n).map(|k| format!("{head}{:012x}", v + k)).collect(),
        Err(_) => {
            let (head, last) = id.split_at(id.len() - 1);
            (1..=n).map(|k| format!("{head}{}", (last.as_bytes()[0] as u64 + k) as u8 as char)).collect()
        }
    }
}

/// Money in the ledger API as the contract says: `cost_usd`, the exact decimal of
/// `cost_nanos`, and a model served without a price kept at zero with `priced: false`,
/// counted on `/metrics` so an operator finds what to price.
#[tokio::test]
async fn ledger_entries_carry_cost_usd_and_unpriced_ones_say_so() {
    let upstream = FakeUpstream::start_with(Reply::chat_completion()).await;
    let gw = Gateway::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    chat_as(&gw, &secret, Some("priced-1")).await;
    let mut unpriced = hello();
    unpriced["model"] = json!("other");
    let auth = format!("Bearer {secret}");
    let headers =
        [("authorization", auth.as_str()), ("content-type", "application/json"), ("x-request-id", "unpriced-1")];
    let r = send(Method::POST, &format!("{}/v1/chat/completions", gw.data), &headers, unpriced.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let entries = ledger_of(&gw, 2).await;
    let by = |id: &str| entries.iter().find(|e| e["client_request_id"] == id).cloned().unwrap();
    let priced = by("priced-1");
    // 12 × $0.15 + 5 × $0.60 per Mtok.
    assert_eq!(
        (priced["cost_nanos"].as_i64(), priced["cost_usd"].as_str()),
        (Some(4800), Some("0.0000048")),
        "{priced}"
    );
    assert_eq!(priced["priced"], true);
    let free = by("unpriced-1");
    assert_eq!((free["cost_nanos"].as_i64(), free["priced"].as_bool()), (Some(0), Some(false)), "{free}");
    assert_eq!(
        (free["input_tokens"].as_u64(), free["output_tokens"].as_u64()),
        (Some(12), Some(5)),
        "usage still kept"
    );
    let metrics = get(&format!("{}/metrics", gw.data), None).await.text();
    assert!(metrics.lines().any(|l| l == "tollgate_ledger_unpriced_entries_total 1"), "{metrics}");
}
