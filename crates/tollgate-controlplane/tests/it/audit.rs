//! `/api/v1/audit` and `/api/v1/audit/verify`: newest first with filters and a cursor,
//! a tampered or deleted row named by verification, and no secret in any event.

use crate::Cp;
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};

async fn seed(cp: &Cp) {
    for name in ["t1", "t2", "t3", "t4"] {
        cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": name})), S::CREATED).await;
    }
}

fn target_ids(v: &Value) -> Vec<String> {
    v["data"].as_array().unwrap().iter().map(|e| e["target_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn audit_is_listed_newest_first_in_pages_with_filters() {
    let cp = Cp::start().await;
    seed(&cp).await;
    let all = cp.expect(Method::GET, "/api/v1/audit?target_kind=team", None, S::OK).await;
    let events = all["data"].as_array().unwrap();
    assert_eq!(events.len(), 4);
    assert!(events.windows(2).all(|w| w[0]["seq"].as_i64() > w[1]["seq"].as_i64()), "newest first");
    assert!(events.iter().all(|e| e["actor"] == "bootstrap" && e["action"] == "team.create"));
    assert_eq!(all["next_cursor"], Value::Null);

    let page1 = cp.expect(Method::GET, "/api/v1/audit?target_kind=team&limit=3", None, S::OK).await;
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 =
        cp.expect(Method::GET, &format!("/api/v1/audit?target_kind=team&limit=3&cursor={cursor}"), None, S::OK).await;
    let mut both = target_ids(&page1);
    both.extend(target_ids(&page2));
    assert_eq!(both, target_ids(&all));

    let none = cp.expect(Method::GET, "/api/v1/audit?actor=tok_nobody", None, S::OK).await;
    assert!(none["data"].as_array().unwrap().is_empty());
    let future = cp.expect(Method::GET, "/api/v1/audit?since=2999-01-01T00:00:00Z", None, S::OK).await;
    assert!(future["data"].as_array().unwrap().is_empty());
    let past = cp.expect(Method::GET, "/api/v1/audit?until=2000-01-01T00:00:00Z", None, S::OK).await;
    assert!(past["data"].as_array().unwrap().is_empty());
    let bad = cp.expect(Method::GET, "/api/v1/audit?since=yesterday", None, S::BAD_REQUEST).await;
    assert_eq!(bad["error"]["field"], "since");
    let bad = cp.expect(Method::GET, "/api/v1/audit?bogus=1", None, S::BAD_REQUEST).await;
    assert_eq!(bad["error"]["field"], "bogus");
}

#[tokio::test]
async fn verify_names_an_edited_row_and_the_row_after_a_deleted_one() {
    let cp = Cp::start().await;
    seed(&cp).await;
    let ok = cp.expect(Method::GET, "/api/v1/audit/verify", None, S::OK).await;
    assert_eq!(ok, json!({"ok": true, "checked": 4, "first_broken": null}));

    let events = cp.expect(Method::GET, "/api/v1/audit", None, S::OK).await;
    let oldest_first: Vec<(i64, String)> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| (e["seq"].as_i64().unwrap(), e["id"].as_str().unwrap().to_owned()))
        .collect();
    let store = cp.cp.service().store();

    // Edit the third row's metadata behind the control plane's back.
    let (seq3, id3) = &oldest_first[2];
    let n = store
        .execute_unchecked(&format!(
            r#"UPDATE audit_events SET metadata_json = '{{"name":"evil"}}' WHERE seq = {seq3}"#
        ))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let broken = cp.expect(Method::GET, "/api/v1/audit/verify", None, S::OK).await;
    assert_eq!((broken["ok"].as_bool(), broken["checked"].as_u64()), (Some(false), Some(2)), "{broken}");
    assert_eq!(broken["first_broken"]["id"], id3.as_str());
    assert!(broken["first_broken"]["reason"].as_str().unwrap().contains("content"), "{broken}");

    // A fresh chain with its second row deleted: the third is named, after a gap.
    let cp = Cp::start().await;
    seed(&cp).await;
    let events = cp.expect(Method::GET, "/api/v1/audit", None, S::OK).await;
    let seqs: Vec<(i64, String)> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| (e["seq"].as_i64().unwrap(), e["id"].as_str().unwrap().to_owned()))
        .collect();
    let store = cp.cp.service().store();
    store.execute_unchecked(&format!("DELETE FROM audit_events WHERE seq = {}", seqs[1].0)).await.unwrap();
    let broken = cp.expect(Method::GET, "/api/v1/audit/verify", None, S::OK).await;
    assert_eq!((broken["ok"].as_bool(), broken["checked"].as_u64()), (Some(false), Some(1)), "{broken}");
    assert_eq!(broken["first_broken"]["id"], seqs[2].1.as_str());
    assert_eq!(broken["first_broken"]["seq"], seqs[2].0);
    let reason = broken["first_broken"]["reason"].as_str().unwrap();
    assert!(reason.contains("missing") && reason.contains(&format!("seq {}", seqs[1].0)), "{reason}");
}

#[tokio::test]
async fn no_provider_credential_or_minted_token_ever_reaches_the_audit_trail() {
    let cp = Cp::start().await;
    let api_key = "sk-live-SECRETSECRETSECRET-0042";
    let body = json!({"name": "up", "kind": "openai-compatible", "base_url": "http://127.0.0.1:9", "api_key": api_key});
    cp.expect(Method::POST, "/api/v1/providers", Some(body), S::CREATED).await;
    let minted =
        cp.expect(Method::POST, "/api/v1/tokens", Some(json!({"name": "t", "scopes": ["admin"]})), S::CREATED).await;
    let token = minted["token"].as_str().unwrap();
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "x"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/projects", Some(json!({"name": "p", "team": "x"})), S::CREATED).await;
    let key = cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "p"})), S::CREATED).await;
    let secret_key = key["key"].as_str().unwrap();
    let audit = cp.call(Method::GET, "/api/v1/audit?limit=1000", Some(token), None).await;
    assert_eq!(audit.status, S::OK);
    let text = audit.text();
    assert!(text.contains("provider.create") && text.contains("token.create"), "{text}");
    for secret in [api_key, "SECRETSECRET", token, &token[4..], secret_key] {
        assert!(!text.contains(secret), "{secret} leaked into the audit trail");
    }
    // And in the stored rows themselves, not only in what the API shows.
    let stored = cp.cp.service().store().list_audit(None, None, 1000, None).await.unwrap();
    let raw = format!("{stored:?}");
    for secret in [api_key, token, secret_key] {
        assert!(!raw.contains(secret), "{secret} stored in the audit trail");
    }
}

/// Renames the audit table away (`off`) or back: while it is away every audit append
/// fails, on SQLite and PostgreSQL alike.
async fn audit_table(cp: &Cp, off: bool) {
    let (from, to) = if off { ("audit_events", "audit_events_off") } else { ("audit_events_off", "audit_events") };
    cp.cp.service().store().execute_unchecked(&format!("ALTER TABLE {from} RENAME TO {to}")).await.unwrap();
}

#[tokio::test]
async fn a_write_whose_audit_event_cannot_be_stored_is_refused_and_leaves_no_trace() {
    let cp = Cp::start().await;
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "t"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/projects", Some(json!({"name": "p", "team": "t"})), S::CREATED).await;
    let budget = json!({"scope": "team", "scope_id": "t", "limit_usd": "10.00", "window": "month"});
    let budget = cp.expect(Method::POST, "/api/v1/budgets", Some(budget), S::CREATED).await;
    let budget_path = format!("/api/v1/budgets/{}", budget["id"].as_str().unwrap());
    let events_before = cp.expect(Method::GET, "/api/v1/audit?limit=1000", None, S::OK).await["data"].clone();
    let revision = cp.revision().await;

    audit_table(&cp, true).await;
    let provider =
        json!({"name": "up", "kind": "openai-compatible", "base_url": "http://127.0.0.1:9", "api_key": "sk-x"});
    let writes = [
        (Method::POST, "/api/v1/keys".to_owned(), json!({"project": "p", "name": "k"})),
        (Method::PATCH, budget_path.clone(), json!({"limit_usd": "99.00"})),
        (Method::POST, "/api/v1/providers".to_owned(), provider),
        (Method::POST, "/api/v1/teams".to_owned(), json!({"name": "t2"})),
    ];
    for (method, path, body) in writes {
        let r = cp.admin(method.clone(), &path, Some(body)).await;
        assert_eq!(r.status, S::INTERNAL_SERVER_ERROR, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "internal_error", "{method} {path}");
    }
    assert_eq!(cp.revision().await, revision, "no refused write bumped the revision");
    audit_table(&cp, false).await;

    let keys = cp.expect(Method::GET, "/api/v1/keys", None, S::OK).await;
    assert_eq!(keys["data"], json!([]), "the refused key is not stored");
    let stored = cp.expect(Method::GET, &budget_path, None, S::OK).await;
    assert_eq!(stored["limit_usd"], "10.00", "the refused budget update is not stored");
    let providers = cp.expect(Method::GET, "/api/v1/providers", None, S::OK).await;
    assert!(!providers.to_string().contains("\"up\""), "the refused provider is not stored: {providers}");
    let teams = cp.expect(Method::GET, "/api/v1/teams", None, S::OK).await;
    assert!(!teams.to_string().contains("\"t2\""), "the refused team is not stored: {teams}");
    let events_after = cp.expect(Method::GET, "/api/v1/audit?limit=1000", None, S::OK).await["data"].clone();
    assert_eq!(events_after, events_before, "no audit event of a refused write");
    let snapshot = cp.snapshot_at(revision).await;
    assert_eq!(snapshot.revision, revision);

    // The store is not left wedged: the same write goes through once audits can be stored.
    cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "p", "name": "k"})), S::CREATED).await;
    assert_eq!(cp.revision().await, revision + 1);
    let ok = cp.expect(Method::GET, "/api/v1/audit/verify", None, S::OK).await;
    assert_eq!(ok["ok"], true, "{ok}");
}

#[tokio::test]
async fn the_chain_verifies_after_a_burst_of_concurrent_writes() {
    let cp = std::sync::Arc::new(Cp::start().await);
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "base"})), S::CREATED).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let cp = cp.clone();
        tasks.push(tokio::spawn(async move {
            cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": format!("t{i}")})), S::CREATED).await;
            let b = json!({"scope": "team", "scope_id": "base", "limit_usd": i + 1, "window": "day"});
            let b = cp.expect(Method::POST, "/api/v1/budgets", Some(b), S::CREATED).await;
            let path = format!("/api/v1/budgets/{}", b["id"].as_str().unwrap());
            cp.expect(Method::PATCH, &path, Some(json!({"limit_usd": i + 100})), S::OK).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ok = cp.expect(Method::GET, "/api/v1/audit/verify", None, S::OK).await;
    assert_eq!(ok, json!({"ok": true, "checked": 1 + 12 * 3, "first_broken": null}));
}
