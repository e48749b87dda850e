//! Admin tokens: minting (shown once, never more power than the minter), scopes (403
//! `insufficient_scope`), tenancy (another tenant's resources read as missing), and
//! authentication of every route.

use crate::{ADMIN, Cp};
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};
use tollgate_core::{TeamId, Timestamp};
use tollgate_metering::LedgerSink;

/// Two tenants: team A with projects `pa` and `pa2`, team B with project `pb`; a key
/// in each project.
pub(crate) struct Tenants {
    pub(crate) cp: Cp,
    pub(crate) team_a: String,
    pub(crate) pa: String,
    pub(crate) pb: String,
    pub(crate) ka: String,
    pub(crate) ka2: String,
    pub(crate) kb: String,
}

impl Tenants {
    pub(crate) async fn start() -> Tenants {
        let cp = Cp::start().await;
        let team_a = cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "A"})), S::CREATED).await;
        cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "B"})), S::CREATED).await;
        let mut ids = Vec::new();
        for (name, team) in [("pa", "A"), ("pa2", "A"), ("pb", "B")] {
            let p = cp
                .expect(Method::POST, "/api/v1/projects", Some(json!({"name": name, "team": team})), S::CREATED)
                .await;
            let k =
                cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": name, "name": name})), S::CREATED).await;
            ids.push((p["id"].as_str().unwrap().to_owned(), k["id"].as_str().unwrap().to_owned()));
        }
        let [(pa, ka), (_, ka2), (pb, kb)] = <[_; 3]>::try_from(ids).unwrap();
        Tenants { cp, team_a: team_a["id"].as_str().unwrap().to_owned(), pa, pb, ka, ka2, kb }
    }

    /// Mints a token as the bootstrap admin; returns `(id, secret)`.
    pub(crate) async fn mint(&self, body: Value) -> (String, String) {
        let r = self.cp.expect(Method::POST, "/api/v1/tokens", Some(body), S::CREATED).await;
        (r["id"].as_str().unwrap().to_owned(), r["token"].as_str().unwrap().to_owned())
    }

    /// One call with `token`; returns the status and JSON body (Null when empty).
    pub(crate) async fn call(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (S, Value) {
        let r = self.cp.call(method, path, Some(token), body.as_ref()).await;
        let v = if r.body.is_empty() { Value::Null } else { r.json() };
        (r.status, v)
    }
}

pub(crate) fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_minted_token_is_shown_once_works_and_stops_at_revocation() {
    let t = Tenants::start().await;
    let r = t
        .cp
        .expect(Method::POST, "/api/v1/tokens", Some(json!({"name": "billing", "scopes": ["keys:read"]})), S::CREATED)
        .await;
    let secret = r["token"].as_str().unwrap().to_owned();
    let id = r["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tga_") && secret.len() >= 4 + 43, "{secret}");
    assert_eq!((r["status"].as_str(), r["scopes"].clone()), (Some("active"), json!(["keys:read"])));

    let list = t.cp.admin(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(list.status, S::OK);
    assert!(!list.text().contains(&secret[4..]), "the list never holds the secret");
    let listed = &list.json()["data"].as_array().unwrap().iter().find(|x| x["id"] == id.as_str()).unwrap().clone();
    assert!(secret.starts_with(listed["token_hint"].as_str().unwrap().trim_end_matches('…')));
    assert!(listed.get("token").is_none() && listed.get("token_hash").is_none(), "{listed}");

    assert_eq!(t.call(&secret, Method::GET, "/api/v1/keys", None).await.0, S::OK);
    let (s, v) = t.call(&secret, Method::POST, &format!("/api/v1/tokens/{id}/revoke"), None).await;
    assert_eq!((s, code(&v)), (S::FORBIDDEN, "insufficient_scope"), "{v}");
    let revoked = t.cp.expect(Method::POST, &format!("/api/v1/tokens/{id}/revoke"), None, S::OK).await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(t.call(&secret, Method::GET, "/api/v1/keys", None).await.0, S::UNAUTHORIZED);

    // An expired token is refused too.
    let soon = Timestamp::now().plus_millis(1_500).to_rfc3339();
    let (_, short) = t.mint(json!({"name": "short", "scopes": ["keys:read"], "expires_at": soon})).await;
    assert_eq!(t.call(&short, Method::GET, "/api/v1/keys", None).await.0, S::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    assert_eq!(t.call(&short, Method::GET, "/api/v1/keys", None).await.0, S::UNAUTHORIZED);
}

#[tokio::test]
async fn every_route_answers_401_without_a_token_and_with_a_wrong_one() {
    let t = Tenants::start().await;
    let routes: &[(Method, &str)] = &[
        (Method::POST, "/api/v1/providers"),
        (Method::GET, "/api/v1/providers"),
        (Method::POST, "/api/v1/models"),
        (Method::GET, "/api/v1/models"),
        (Method::GET, "/api/v1/models/demo"),
        (Method::PATCH, "/api/v1/models/demo"),
        (Method::POST, "/api/v1/teams"),
        (Method::POST, "/api/v1/projects"),
        (Method::POST, "/api/v1/keys"),
        (Method::GET, "/api/v1/keys"),
        (Method::GET, "/api/v1/keys/key_x"),
        (Method::PATCH, "/api/v1/keys/key_x"),
        (Method::POST, "/api/v1/keys/key_x/rotate"),
        (Method::POST, "/api/v1/keys/key_x/revoke"),
        (Method::POST, "/api/v1/budgets"),
        (Method::GET, "/api/v1/budgets"),
        (Method::GET, "/api/v1/budgets/bud_x"),
        (Method::PATCH, "/api/v1/budgets/bud_x"),
        (Method::DELETE, "/api/v1/budgets/bud_x"),
        (Method::POST, "/api/v1/budgets/bud_x/reset"),
        (Method::POST, "/api/v1/budgets/bud_x/increase"),
        (Method::GET, "/api/v1/usage"),
        (Method::GET, "/api/v1/ledger"),
        (Method::POST, "/api/v1/tokens"),
        (Method::GET, "/api/v1/tokens"),
        (Method::POST, "/api/v1/tokens/tok_x/revoke"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/api/v1/audit/verify"),
        (Method::POST, "/api/v1/aliases"),
        (Method::GET, "/api/v1/aliases"),
        (Method::GET, "/api/v1/aliases/fast"),
        (Method::DELETE, "/api/v1/aliases/fast"),
        (Method::POST, "/api/v1/routing-policies"),
        (Method::GET, "/api/v1/routing-policies"),
        (Method::GET, "/api/v1/routing-policies/rpol_x"),
        (Method::PATCH, "/api/v1/routing-policies/rpol_x"),
        (Method::DELETE, "/api/v1/routing-policies/rpol_x"),
        (Method::POST, "/api/v1/organizations"),
        (Method::GET, "/api/v1/organizations"),
        (Method::GET, "/api/v1/organizations/default"),
        (Method::GET, "/api/v1/teams"),
        (Method::GET, "/api/v1/teams/team_x"),
        (Method::GET, "/api/v1/projects"),
        (Method::GET, "/api/v1/projects/proj_x"),
        (Method::GET, "/api/v1/providers/mock"),
        (Method::PATCH, "/api/v1/providers/mock"),
        (Method::GET, "/api/v1/principals"),
        (Method::GET, "/api/v1/principals/acme:1"),
        (Method::POST, "/api/v1/principals/acme:1/revoke"),
    ];
    let wrong = "tga_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    for (method, path) in routes {
        for token in [None, Some(wrong), Some("")] {
            let r = t.cp.call(method.clone(), path, token, Some(&json!({}))).await;
            assert_eq!(r.status, S::UNAUTHORIZED, "{method} {path} with {token:?}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "unauthenticated");
        }
    }
}

#[tokio::test]
async fn a_token_without_the_scope_gets_403_naming_it() {
    let t = Tenants::start().await;
    let (_, reader) = t.mint(json!({"name": "reader", "scopes": ["keys:read"]})).await;
    let cases: &[(Method, String, Option<Value>, &str)] = &[
        (Method::POST, "/api/v1/keys".into(), Some(json!({"project": "pa"})), "keys:write"),
        (Method::POST, format!("/api/v1/keys/{}/revoke", t.ka), None, "keys:write"),
        (Method::GET, "/api/v1/usage".into(), None, "usage:read"),
        (Method::GET, "/api/v1/ledger".into(), None, "usage:read"),
        (Method::GET, "/api/v1/budgets".into(), None, "budgets:read"),
        (Method::POST, "/api/v1/providers".into(), Some(json!({"name": "p", "kind": "mock"})), "providers:write"),
        (Method::GET, "/api/v1/audit".into(), None, "audit:read"),
        (Method::POST, "/api/v1/tokens".into(), Some(json!({"name": "n", "scopes": ["keys:read"]})), "tokens:write"),
        (Method::POST, "/api/v1/teams".into(), Some(json!({"name": "C"})), "admin"),
        (Method::POST, "/api/v1/aliases".into(), Some(json!({"name": "fast", "model": "demo"})), "models:write"),
        (
            Method::POST,
            "/api/v1/routing-policies".into(),
            Some(json!({"scope": "default", "policy": {"max_attempts": 1}})),
            "models:write",
        ),
        (Method::GET, "/api/v1/routing-policies".into(), None, "models:write"),
    ];
    for (method, path, body, scope) in cases {
        let (s, v) = t.call(&reader, method.clone(), path, body.clone()).await;
        assert_eq!((s, code(&v)), (S::FORBIDDEN, "insufficient_scope"), "{method} {path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(scope), "{method} {path}: {v}");
    }
    // keys:write implies keys:read, not the other way round.
    let (_, writer) = t.mint(json!({"name": "writer", "scopes": ["keys:write"]})).await;
    assert_eq!(t.call(&writer, Method::GET, &format!("/api/v1/keys/{}", t.ka), None).await.0, S::OK);
}

#[tokio::test]
async fn a_project_bound_token_cannot_reach_another_projects_keys_usage_or_budgets() {
    let t = Tenants::start().await;
    let scopes = json!(["keys:write", "usage:read", "budgets:write"]);
    let (_, tok) = t.mint(json!({"name": "a", "scopes": scopes, "project": t.pa})).await;

    // Its own project works.
    assert_eq!(t.call(&tok, Method::GET, &format!("/api/v1/keys/{}", t.ka), None).await.0, S::OK);
    // Another project's key reads as missing, for every operation.
    let kb = &t.kb;
    let ops: &[(Method, String, Option<Value>)] = &[
        (Method::GET, format!("/api/v1/keys/{kb}"), None),
        (Method::PATCH, format!("/api/v1/keys/{kb}"), Some(json!({"name": "x"}))),
        (Method::POST, format!("/api/v1/keys/{kb}/rotate"), None),
        (Method::POST, format!("/api/v1/keys/{kb}/revoke"), None),
        (Method::GET, format!("/api/v1/keys/{}", t.ka2), None), // same team, other project
    ];
    for (method, path, body) in ops {
        let (s, v) = t.call(&tok, method.clone(), path, body.clone()).await;
        let (missing_s, missing) = t
            .call(
                &tok,
                method.clone(),
                &path.replace(kb.as_str(), "key_nope").replace(&t.ka2, "key_nope"),
                body.clone(),
            )
            .await;
        assert_eq!((s, code(&v)), (S::NOT_FOUND, "not_found"), "{method} {path}: {v}");
        assert_eq!(missing_s, S::NOT_FOUND);
        assert_eq!(code(&missing), code(&v));
    }
    let kb_now = t.cp.expect(Method::GET, &format!("/api/v1/keys/{kb}"), None, S::OK).await;
    assert_eq!((kb_now["status"].as_str(), kb_now["name"].as_str()), (Some("active"), Some("pb")), "untouched");

    // Lists are filtered; naming the other project reads like a missing one.
    let (s, list) = t.call(&tok, Method::GET, "/api/v1/keys", None).await;
    assert_eq!(s, S::OK);
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [t.ka.as_str()]);
    let (s, v) = t.call(&tok, Method::GET, "/api/v1/keys?project=pb", None).await;
    let (_, nope) = t.call(&tok, Method::GET, "/api/v1/keys?project=nope", None).await;
    assert_eq!((s, code(&v)), (S::BAD_REQUEST, code(&nope)), "{v}");
    let (s, v) = t.call(&tok, Method::POST, "/api/v1/keys", Some(json!({"project": "pb"}))).await;
    assert_eq!((s, v["error"]["field"].as_str()), (S::BAD_REQUEST, Some("project")), "{v}");
    assert_eq!(t.call(&tok, Method::POST, "/api/v1/keys", Some(json!({"project": "pa"}))).await.0, S::CREATED);

    // Usage is confined: B's spend reads as zero, its own as itself.
    let spend = |id: &str, project: &str, team: &str, nanos: i64| {
        // A minute ago: "now" in the report's window is exclusive.
        let at = Timestamp::now().plus_millis(-60_000);
        tollgate_testkit::ledger::spend_entry(id, "key_x", project, "m", at, (1, 1), nanos)
            .with_tenancy(TeamId::new(team), tollgate_core::OrgId::new("org"))
    };
    let sink: &dyn LedgerSink = t.cp.cp.service().store();
    sink.write_batch(&[spend("r1", &t.pa, &t.team_a, 5), spend("r2", &t.pb, "team_b", 7)]).await.unwrap();
    let (s, own) = t.call(&tok, Method::GET, "/api/v1/usage", None).await;
    assert_eq!((s, own["summary"]["cost_usd"].as_str()), (S::OK, Some("0.000000005")), "{own}");
    let (_, other) = t.call(&tok, Method::GET, &format!("/api/v1/usage?scope=project&scope_id={}", t.pb), None).await;
    assert_eq!(other["summary"]["requests"], 0, "{other}");
    let admin_view =
        t.cp.expect(Method::GET, &format!("/api/v1/usage?scope=project&scope_id={}", t.pb), None, S::OK).await;
    assert_eq!(admin_view["summary"]["requests"], 1);
    let (_, ledger) = t.call(&tok, Method::GET, "/api/v1/ledger", None).await;
    let entries: Vec<&str> =
        ledger["entries"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    assert_eq!(entries, ["r1"]);
    // The caller's request id filters within the tenancy: B's entry carrying the same id
    // stays invisible, and naming B's entry by our request id finds nothing.
    let shared = |id: &str, project: &str, team: &str| spend(id, project, team, 1).with_client_request_id("shared");
    sink.write_batch(&[shared("r3", &t.pb, "team_b"), shared("r4", &t.pa, &t.team_a)]).await.unwrap();
    for (query, want) in
        [("client_request_id=shared", vec!["r4"]), ("request_id=r3", vec![]), ("request_id=r4", vec!["r4"])]
    {
        let (s, ledger) = t.call(&tok, Method::GET, &format!("/api/v1/ledger?{query}"), None).await;
        let got: Vec<&str> =
            ledger["entries"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap()).collect();
        assert_eq!((s, got), (S::OK, want), "{query}: {ledger}");
    }

    // Budgets: not on B, not on its own team (wider than the token), yes on its key.
    for (scope, scope_id) in [("project", t.pb.as_str()), ("team", "B"), ("team", "A"), ("virtual_key", kb.as_str())] {
        let body = json!({"scope": scope, "scope_id": scope_id, "limit_usd": "1", "window": "day"});
        let (s, v) = t.call(&tok, Method::POST, "/api/v1/budgets", Some(body)).await;
        assert_eq!((s, code(&v)), (S::NOT_FOUND, "not_found"), "{scope} {scope_id}: {v}");
    }
    let body = json!({"scope": "virtual_key", "scope_id": t.ka, "limit_usd": "1", "window": "day"});
    assert_eq!(t.call(&tok, Method::POST, "/api/v1/budgets", Some(body)).await.0, S::CREATED);
    let b_budget =
        t.cp.expect(
            Method::POST,
            "/api/v1/budgets",
            Some(json!({"scope": "project", "scope_id": t.pb, "limit_usd": "1", "window": "day"})),
            S::CREATED,
        )
        .await;
    let (s, _) =
        t.call(&tok, Method::GET, &format!("/api/v1/budgets/{}", b_budget["id"].as_str().unwrap()), None).await;
    assert_eq!(s, S::NOT_FOUND);
    let (_, budgets) = t.call(&tok, Method::GET, "/api/v1/budgets", None).await;
    let scopes: Vec<&str> =
        budgets["data"].as_array().unwrap().iter().map(|b| b["scope_id"].as_str().unwrap()).collect();
    assert_eq!(scopes, [t.ka.as_str()], "{budgets}");
}

#[tokio::test]
async fn a_team_bound_token_reaches_every_project_of_its_team_and_nothing_global() {
    let t = Tenants::start().await;
    let (_, tok) = t.mint(json!({"name": "a", "scopes": ["admin"], "team": "A"})).await;
    let (_, list) = t.call(&tok, Method::GET, "/api/v1/keys", None).await;
    let mut ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want = [t.ka.as_str(), t.ka2.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(t.call(&tok, Method::GET, &format!("/api/v1/keys/{}", t.kb), None).await.0, S::NOT_FOUND);
    let p = json!({"name": "pa3", "team": "A"});
    assert_eq!(t.call(&tok, Method::POST, "/api/v1/projects", Some(p)).await.0, S::CREATED);
    let (s, _) = t.call(&tok, Method::POST, "/api/v1/projects", Some(json!({"name": "pb2", "team": "B"}))).await;
    assert_eq!(s, S::BAD_REQUEST, "team B reads like a missing team");
    for (method, path, body) in [
        (Method::POST, "/api/v1/providers", Some(json!({"name": "p", "kind": "mock"}))),
        (Method::GET, "/api/v1/providers", None),
        (Method::POST, "/api/v1/teams", Some(json!({"name": "C"}))),
        (Method::GET, "/api/v1/audit", None),
        (Method::GET, "/api/v1/audit/verify", None),
    ] {
        let (s, v) = t.call(&tok, method.clone(), path, body).await;
        assert_eq!((s, code(&v)), (S::FORBIDDEN, "forbidden"), "{method} {path}: {v}");
    }
    // Organization-wide budgets are outside the team: they read as missing.
    for (scope, scope_id) in [("organization", "default"), ("principal", "acme:user-1")] {
        let body = json!({"scope": scope, "scope_id": scope_id, "limit_usd": "1", "window": "day"});
        let (s, v) = t.call(&tok, Method::POST, "/api/v1/budgets", Some(body)).await;
        assert_eq!((s, code(&v)), (S::NOT_FOUND, "not_found"), "{scope}: {v}");
    }
}

#[tokio::test]
async fn a_token_never_mints_or_revokes_more_power_than_it_has() {
    let t = Tenants::start().await;
    let (_, team_minter) = t.mint(json!({"name": "m", "scopes": ["keys:read", "tokens:write"], "team": "A"})).await;
    let mint = |body: Value| {
        let tok = team_minter.clone();
        let t = &t;
        async move { t.call(&tok, Method::POST, "/api/v1/tokens", Some(body)).await }
    };
    let (s, v) = mint(json!({"name": "x", "scopes": ["keys:write"], "team": "A"})).await;
    assert_eq!((s, code(&v)), (S::FORBIDDEN, "forbidden"), "more scopes: {v}");
    let (s, v) = mint(json!({"name": "x", "scopes": ["keys:read"]})).await;
    assert_eq!((s, code(&v)), (S::FORBIDDEN, "forbidden"), "unbound: {v}");
    let (s, v) = mint(json!({"name": "x", "scopes": ["keys:read"], "team": "B"})).await;
    assert_eq!((s, v["error"]["field"].as_str()), (S::BAD_REQUEST, Some("team")), "another team: {v}");
    let (s, v) = mint(json!({"name": "x", "scopes": ["keys:read"], "project": "pb"})).await;
    assert_eq!((s, v["error"]["field"].as_str()), (S::BAD_REQUEST, Some("project")), "another team's project: {v}");
    let (s, sub) = mint(json!({"name": "sub", "scopes": ["keys:read"], "project": "pa"})).await;
    assert_eq!(s, S::CREATED, "{sub}");
    assert_eq!(sub["team_id"], t.team_a.as_str());
    let (s, _) = mint(json!({"name": "team", "scopes": ["keys:read", "tokens:write"], "team": t.team_a})).await;
    assert_eq!(s, S::CREATED);

    // The project token cannot widen to its team.
    let (_, proj_minter) = t.mint(json!({"name": "p", "scopes": ["tokens:write", "keys:read"], "project": "pa"})).await;
    let body = json!({"name": "x", "scopes": ["keys:read"], "team": "A"});
    let (s, v) = t.call(&proj_minter, Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!((s, v["error"]["field"].as_str()), (S::BAD_REQUEST, Some("team")), "{v}");

    // Global scopes need an unbound token, even when the minter is admin.
    let body = json!({"name": "x", "scopes": ["audit:read"], "team": "A"});
    let (s, v) = t.call(ADMIN, Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!((s, v["error"]["field"].as_str()), (S::BAD_REQUEST, Some("scopes")), "{v}");

    // Listing shows the minter's tenancy only; revoking reaches only what it could mint.
    let (_, listed) = t.call(&team_minter, Method::GET, "/api/v1/tokens", None).await;
    assert!(listed["data"].as_array().unwrap().iter().all(|x| x["team_id"] == t.team_a.as_str()), "{listed}");
    let (admin_a, _) = t.mint(json!({"name": "big", "scopes": ["admin"], "team": "A"})).await;
    let (s, v) = t.call(&team_minter, Method::POST, &format!("/api/v1/tokens/{admin_a}/revoke"), None).await;
    assert_eq!((s, code(&v)), (S::FORBIDDEN, "forbidden"), "{v}");
    let (unbound, _) = t.mint(json!({"name": "u", "scopes": ["keys:read"]})).await;
    let (s, _) = t.call(&team_minter, Method::POST, &format!("/api/v1/tokens/{unbound}/revoke"), None).await;
    assert_eq!(s, S::NOT_FOUND);
    let sub_id = sub["id"].as_str().unwrap();
    let (s, v) = t.call(&team_minter, Method::POST, &format!("/api/v1/tokens/{sub_id}/revoke"), None).await;
    assert_eq!((s, v["status"].as_str()), (S::OK, Some("revoked")));
}

#[tokio::test]
async fn writes_are_audited_with_the_token_as_actor() {
    let t = Tenants::start().await;
    let (id, tok) = t.mint(json!({"name": "w", "scopes": ["keys:write"], "project": "pa"})).await;
    let (s, key) = t.call(&tok, Method::POST, "/api/v1/keys", Some(json!({"project": "pa"}))).await;
    assert_eq!(s, S::CREATED);
    let events = t.cp.expect(Method::GET, "/api/v1/audit?target_kind=key&limit=1", None, S::OK).await;
    let e = &events["data"][0];
    assert_eq!((e["actor"].as_str(), e["target_id"].as_str()), (Some(id.as_str()), key["id"].as_str()), "{e}");
    let minted = t.cp.expect(Method::GET, "/api/v1/audit?target_kind=token&actor=bootstrap", None, S::OK).await;
    assert!(minted["data"].as_array().unwrap().iter().any(|e| e["target_id"] == id.as_str()));
}

#[tokio::test]
async fn a_gateway_token_watches_and_pushes_but_manages_nothing() {
    use tollgate_proto::v1;
    use tollgate_proto::v1::config_service_client::ConfigServiceClient;
    let t = Tenants::start().await;
    let (_, gw) = t.mint(json!({"name": "edge-1", "scopes": ["gateway"]})).await;
    let authed = |token: &str| {
        let mut r = tonic::Request::new(v1::WatchRequest { since_revision: 0, accept_changes: true });
        r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    let mut client = ConfigServiceClient::connect(t.cp.grpc.clone()).await.unwrap();
    let mut stream = client.watch(authed(&gw)).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.revision > 0);

    let (_, reader) = t.mint(json!({"name": "t", "scopes": ["keys:read"]})).await;
    let err = client.watch(authed(&reader)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("gateway"), "{err:?}");
    let body = json!({"name": "t", "scopes": ["gateway"], "team": t.team_a});
    let r = t.cp.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some("scopes")), "never bound");

    for (method, path) in [(Method::GET, "/api/v1/keys"), (Method::GET, "/api/v1/providers")] {
        let (s, v) = t.call(&gw, method, path, None).await;
        assert_eq!((s, code(&v)), (S::FORBIDDEN, "insufficient_scope"), "{path}");
    }
}
