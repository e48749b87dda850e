//! The tenancy tree and provider credentials over REST: organizations, reads of teams
//! and projects confined to a token's tenancy, provider updates (credential rotation
//! without the credential ever coming back), principals and offboarding a principal.

use crate::tokens::{Tenants, code};
use crate::{ADMIN, Cp};
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn ids(v: &Value) -> Vec<String> {
    v["data"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_owned()).collect()
}

fn names(v: &Value) -> Vec<String> {
    v["data"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn organizations_hold_their_own_teams_and_names_conflict() {
    let cp = Cp::start().await;
    let acme = cp.expect(Method::POST, "/api/v1/organizations", Some(json!({"name": "acme"})), S::CREATED).await;
    assert!(acme["id"].as_str().unwrap().starts_with("org_"), "{acme}");
    let again = cp.admin(Method::POST, "/api/v1/organizations", Some(json!({"name": "acme"}))).await;
    assert_eq!((again.status, code(&again.json())), (S::CONFLICT, "conflict"), "{}", again.text());

    let list = cp.expect(Method::GET, "/api/v1/organizations", None, S::OK).await;
    assert_eq!(names(&list), ["acme", "default"]);
    let by_name = cp.expect(Method::GET, "/api/v1/organizations/acme", None, S::OK).await;
    assert_eq!(by_name["id"], acme["id"]);
    let missing = cp.admin(Method::GET, "/api/v1/organizations/nope", None).await;
    assert_eq!((missing.status, code(&missing.json())), (S::NOT_FOUND, "not_found"));

    // Teams of the same name live in different organizations.
    let t1 =
        cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "ml", "organization": "acme"})), S::CREATED).await;
    assert_eq!(t1["org_id"], acme["id"]);
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "ml"})), S::CREATED).await;
    let dup = cp.admin(Method::POST, "/api/v1/teams", Some(json!({"name": "ml", "organization": "acme"}))).await;
    assert_eq!(dup.status, S::CONFLICT, "{}", dup.text());
    let acme_teams = cp.expect(Method::GET, "/api/v1/teams?organization=acme", None, S::OK).await;
    assert_eq!(ids(&acme_teams), [t1["id"].as_str().unwrap()]);
    assert_eq!(cp.expect(Method::GET, "/api/v1/teams", None, S::OK).await["data"].as_array().unwrap().len(), 2);
    let bad = cp.admin(Method::POST, "/api/v1/teams", Some(json!({"name": "x", "organization": "nope"}))).await;
    assert_eq!((bad.status, bad.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some("organization")));
    let bad = cp.admin(Method::GET, "/api/v1/teams?organization=nope", None).await;
    assert_eq!((bad.status, bad.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some("organization")));
}

#[tokio::test]
async fn organization_input_is_validated_and_naming_the_field() {
    let cp = Cp::start().await;
    for (body, field) in [
        (json!({"name": ""}), Some("name")),
        (json!({"name": "a\u{0}b"}), Some("name")),
        (json!({"name": "x".repeat(129)}), Some("name")),
        (json!({"name": "x", "owner": "me"}), None),
        (json!([1, 2]), None),
    ] {
        let r = cp.admin(Method::POST, "/api/v1/organizations", Some(body.clone())).await;
        assert_eq!(r.status, S::BAD_REQUEST, "{body}: {}", r.text());
        if let Some(f) = field {
            assert_eq!(r.json()["error"]["field"].as_str(), Some(f), "{body}");
        } else {
            assert!(r.text().contains("owner") || body.is_array(), "{}", r.text());
        }
    }
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = tollgate_testkit::http_client::send(
        Method::POST,
        &format!("{}/api/v1/organizations", cp.rest),
        &[("authorization", &format!("Bearer {ADMIN}")), ("content-type", "application/json")],
        big,
    )
    .await;
    assert_eq!((r.status, code(&r.json())), (S::PAYLOAD_TOO_LARGE, "request_too_large"), "{}", r.text());
    let r = cp.admin(Method::GET, "/api/v1/teams?bogus=1", None).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some("bogus")));
    assert_eq!(names(&cp.expect(Method::GET, "/api/v1/organizations", None, S::OK).await), ["default"]);
}

#[tokio::test]
async fn a_bound_token_reads_only_its_own_corner_of_the_tree() {
    let t = Tenants::start().await;
    let (_, pa_tok) = t.mint(json!({"name": "t", "scopes": ["keys:read"], "project": t.pa})).await;
    let (_, team_tok) = t.mint(json!({"name": "t", "scopes": ["keys:read"], "team": t.team_a})).await;

    let (s, v) = t.call(&pa_tok, Method::GET, "/api/v1/projects", None).await;
    assert_eq!((s, ids(&v)), (S::OK, vec![t.pa.clone()]));
    let (s, v) = t.call(&team_tok, Method::GET, "/api/v1/projects", None).await;
    assert_eq!(s, S::OK);
    assert_eq!(names(&v), ["pa", "pa2"], "the team's projects, not team B's");
    let (s, _) = t.call(&pa_tok, Method::GET, &format!("/api/v1/projects/{}", t.pa), None).await;
    assert_eq!(s, S::OK);
    let (s, v) = t.call(&pa_tok, Method::GET, &format!("/api/v1/projects/{}", t.pb), None).await;
    assert_eq!((s, code(&v)), (S::NOT_FOUND, "not_found"), "another tenant's project is missing, not forbidden");
    let (s, _) = t.call(&pa_tok, Method::GET, "/api/v1/projects/pa2", None).await;
    assert_eq!(s, S::NOT_FOUND, "a sibling project of the same team too");

    let (s, v) = t.call(&pa_tok, Method::GET, "/api/v1/teams", None).await;
    assert_eq!((s, ids(&v)), (S::OK, vec![t.team_a.clone()]), "its own team, read-only");
    let (s, _) = t.call(&team_tok, Method::GET, "/api/v1/teams/B", None).await;
    assert_eq!(s, S::NOT_FOUND);
    let (s, v) = t.call(&team_tok, Method::GET, "/api/v1/organizations", None).await;
    assert_eq!((s, names(&v)), (S::OK, vec!["default".to_owned()]));

    // Creating reaches every tenant: a bound admin token is refused, a reader lacks the scope.
    let (s, v) = t.call(&team_tok, Method::POST, "/api/v1/organizations", Some(json!({"name": "x"}))).await;
    assert_eq!((s, code(&v)), (S::FORBIDDEN, "insufficient_scope"));
    let (_, bound_admin) = t.mint(json!({"name": "t", "scopes": ["admin"], "team": t.team_a})).await;
    let (s, _) = t.call(&bound_admin, Method::POST, "/api/v1/organizations", Some(json!({"name": "x"}))).await;
    assert_eq!(s, S::FORBIDDEN);
    let (_, usage_only) = t.mint(json!({"name": "t", "scopes": ["usage:read"]})).await;
    let (s, v) = t.call(&usage_only, Method::GET, "/api/v1/projects", None).await;
    assert_eq!((s, code(&v)), (S::FORBIDDEN, "insufficient_scope"));
}

fn sha256_12(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    format!("sha256:{}", d.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>())
}

#[tokio::test]
async fn a_provider_credential_rotates_without_ever_coming_back() {
    let cp = Cp::start().await;
    let old_key = "sk-old-0123456789abcdefOLD1";
    let new_key = "sk-new-9876543210fedcbaNEW2";
    let p = cp
        .expect(
            Method::POST,
            "/api/v1/providers",
            Some(json!({"name": "oai", "kind": "openai", "api_key": old_key, "rpm": 100})),
            S::CREATED,
        )
        .await;
    assert_eq!(p["api_key_fingerprint"], sha256_12(old_key));
    let got = cp.expect(Method::GET, "/api/v1/providers/oai", None, S::OK).await;
    assert_eq!((got["id"].clone(), got["rpm"].clone()), (p["id"].clone(), json!(100)));

    let before = cp.revision().await;
    let r = cp.admin(Method::PATCH, "/api/v1/providers/oai", Some(json!({"api_key": new_key, "rpm": null}))).await;
    assert_eq!(r.status, S::OK, "{}", r.text());
    assert!(!r.text().contains(new_key) && !r.text().contains("NEW2x"), "the credential never comes back");
    let v = r.json();
    assert_eq!((v["api_key_fingerprint"].clone(), v["rpm"].clone()), (json!(sha256_12(new_key)), Value::Null));
    assert_eq!(v["api_key_hint"], "sk-…NEW2");
    assert_eq!(cp.revision().await, before + 1);

    // Gateways receive the new credential; the audit trail records the change, not the key.
    let snap = cp.snapshot_at(before + 1).await;
    let wire = snap.providers.iter().find(|x| x.name == "oai").unwrap();
    assert_eq!((wire.api_key.as_str(), wire.rpm), (new_key, None));
    let audit = cp.expect(Method::GET, "/api/v1/audit?target_kind=provider", None, S::OK).await;
    let text = audit.to_string();
    assert!(text.contains("provider.update") && text.contains("api_key"), "{text}");
    assert!(!text.contains(new_key) && !text.contains(old_key), "{text}");

    for (body, field) in [
        (json!({"base_url": "ftp://x"}), "base_url"),
        (json!({"api_key": "a\nb"}), "api_key"),
        (json!({"api_key": ""}), "api_key"),
        (json!({"extra": [1]}), "extra"),
    ] {
        let r = cp.admin(Method::PATCH, "/api/v1/providers/oai", Some(body.clone())).await;
        assert_eq!((r.status, r.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some(field)), "{body}");
    }
    let r = cp.admin(Method::PATCH, "/api/v1/providers/oai", Some(json!({"name": "renamed"}))).await;
    assert_eq!(r.status, S::BAD_REQUEST, "name and kind are fixed: {}", r.text());
    let r = cp.admin(Method::PATCH, "/api/v1/providers/nope", Some(json!({"rpm": 1}))).await;
    assert_eq!(r.status, S::NOT_FOUND);
    assert_eq!(cp.revision().await, before + 1, "refused patches write nothing");

    let t = cp
        .expect(Method::POST, "/api/v1/tokens", Some(json!({"name": "t", "scopes": ["keys:write"]})), S::CREATED)
        .await;
    let token = t["token"].as_str().unwrap();
    let r = cp.call(Method::PATCH, "/api/v1/providers/oai", Some(token), Some(&json!({"rpm": 1}))).await;
    assert_eq!(
        (r.status, r.json()["error"]["message"].as_str().unwrap_or("").contains("providers:write")),
        (S::FORBIDDEN, true)
    );
}

#[tokio::test]
async fn a_models_deployments_can_be_replaced() {
    let cp = Cp::start().await;
    for name in ["a", "b"] {
        cp.expect(Method::POST, "/api/v1/providers", Some(json!({"name": name, "kind": "mock"})), S::CREATED).await;
    }
    let body = json!({"name": "m", "deployments": [{"provider": "a", "model": "x"}],
        "pricing": {"input_per_mtok": "1", "output_per_mtok": "2"}});
    cp.expect(Method::POST, "/api/v1/models", Some(body), S::CREATED).await;
    let patch = json!({"deployments": [{"provider": "b", "model": "y", "weight": 3}, {"provider": "a", "model": "x", "priority": 1}]});
    let v = cp.expect(Method::PATCH, "/api/v1/models/m", Some(patch), S::OK).await;
    assert_eq!(v["deployments"][0]["provider"], "b");
    assert_eq!(v["pricing"]["input_per_mtok"], "1.00", "the price is left alone");
    let snap = cp.snapshot_at(cp.revision().await).await;
    let m = snap.models.iter().find(|m| m.name == "m").unwrap();
    let wire: Vec<(&str, &str, u32, Option<u32>)> =
        m.deployments.iter().map(|d| (d.provider.as_str(), d.model.as_str(), d.priority, d.weight)).collect();
    assert_eq!(wire, [("b", "y", 0, Some(3)), ("a", "x", 1, Some(1))]);

    let before = cp.revision().await;
    for (patch, field) in [
        (json!({"deployments": []}), "deployments"),
        (json!({"deployments": [{"provider": "nope", "model": "y"}]}), "deployments[0].provider"),
        (json!({"deployments": [{"provider": "a", "model": ""}]}), "deployments[0].model"),
    ] {
        let r = cp.admin(Method::PATCH, "/api/v1/models/m", Some(patch.clone())).await;
        assert_eq!((r.status, r.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some(field)), "{patch}");
    }
    assert_eq!(cp.revision().await, before);
}

/// Mints a key for `principal` in `project`; returns its id.
async fn key_for(cp: &Cp, project: &str, principal: &str) -> String {
    let k = cp
        .expect(Method::POST, "/api/v1/keys", Some(json!({"project": project, "principal": principal})), S::CREATED)
        .await;
    k["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn principals_are_listed_from_their_keys_within_the_tenancy() {
    let t = Tenants::start().await;
    let cp = &t.cp;
    key_for(cp, "pa", "acme:1").await;
    key_for(cp, "pb", "acme:1").await;
    let revoked = key_for(cp, "pa", "acme:2").await;
    cp.expect(Method::POST, &format!("/api/v1/keys/{revoked}/revoke"), None, S::OK).await;
    key_for(cp, "pb", "zeta:9").await;

    let all = cp.expect(Method::GET, "/api/v1/principals", None, S::OK).await;
    let rows: Vec<(String, u64, u64, usize)> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |f: &str| p[f].as_u64().unwrap();
            (
                p["id"].as_str().unwrap().to_owned(),
                n("keys_active"),
                n("keys_revoked"),
                p["projects"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(rows, [("acme:1".into(), 2, 0, 2), ("acme:2".into(), 0, 1, 1), ("zeta:9".into(), 1, 0, 1)]);

    // Keyset pages of one.
    let mut seen = Vec::new();
    let mut path = "/api/v1/principals?limit=1".to_owned();
    loop {
        let page = cp.expect(Method::GET, &path, None, S::OK).await;
        seen.extend(ids(&page));
        match page["next_after"].as_str() {
            Some(after) => path = format!("/api/v1/principals?limit=1&after={after}"),
            None => break,
        }
        assert!(seen.len() <= 3, "paging ends");
    }
    assert_eq!(seen, ["acme:1", "acme:2", "zeta:9"]);

    // A token bound to project pa sees pa's principals, and their pa keys only.
    let (_, pa_tok) = t.mint(json!({"name": "t", "scopes": ["keys:read"], "project": t.pa})).await;
    let (s, v) = t.call(&pa_tok, Method::GET, "/api/v1/principals", None).await;
    assert_eq!((s, ids(&v)), (S::OK, vec!["acme:1".to_owned(), "acme:2".to_owned()]));
    let (s, v) = t.call(&pa_tok, Method::GET, "/api/v1/principals/acme:1", None).await;
    assert_eq!((s, v["keys_active"].as_u64(), v["projects"].clone()), (S::OK, Some(1), json!([t.pa])));
    let (s, _) = t.call(&pa_tok, Method::GET, "/api/v1/principals/zeta:9", None).await;
    assert_eq!(s, S::NOT_FOUND, "a principal with keys only elsewhere is missing");
    let (s, v) = t.call(&pa_tok, Method::GET, &format!("/api/v1/principals?project={}", t.pb), None).await;
    assert_eq!((s, code(&v)), (S::BAD_REQUEST, "invalid_request"), "{v}");
    let filtered = cp.expect(Method::GET, &format!("/api/v1/principals?project={}", t.pb), None, S::OK).await;
    assert_eq!(ids(&filtered), ["acme:1", "zeta:9"]);

    let r = cp.admin(Method::GET, "/api/v1/principals?limit=x", None).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some("limit")));
    let r = cp.admin(Method::GET, &format!("/api/v1/principals/{}", "p".repeat(300)), None).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some("principal")));
    assert_eq!(cp.admin(Method::GET, "/api/v1/principals/nobody", None).await.status, S::NOT_FOUND);
}

#[tokio::test]
async fn a_principal_budget_shows_on_the_principal() {
    let cp = Cp::start().await;
    let body = json!({"scope": "principal", "scope_id": "acme:7", "limit_usd": "5", "window": "day"});
    let b = cp.expect(Method::POST, "/api/v1/budgets", Some(body), S::CREATED).await;
    let v = cp.expect(Method::GET, "/api/v1/principals/acme:7", None, S::OK).await;
    assert_eq!((v["keys_active"].as_u64(), v["budgets"][0]["id"].clone()), (Some(0), b["id"].clone()));
}

#[tokio::test]
async fn offboarding_a_principal_revokes_all_its_keys_in_one_revision() {
    let t = Tenants::start().await;
    let cp = &t.cp;
    let k1 = key_for(cp, "pa", "acme:1").await;
    let k2 = key_for(cp, "pa2", "acme:1").await;
    let k3 = key_for(cp, "pb", "acme:1").await;
    let other = key_for(cp, "pa", "acme:2").await;

    // A token bound to team A revokes the principal's keys in team A only.
    let (_, team_tok) = t.mint(json!({"name": "t", "scopes": ["keys:write"], "team": t.team_a})).await;
    let before = cp.revision().await;
    let (s, v) = t.call(&team_tok, Method::POST, "/api/v1/principals/acme:1/revoke", None).await;
    assert_eq!(s, S::OK, "{v}");
    let mut revoked: Vec<String> =
        v["revoked"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().into()).collect();
    revoked.sort();
    let mut want = vec![k1.clone(), k2.clone()];
    want.sort();
    assert_eq!(revoked, want);
    assert_eq!(cp.revision().await, before + 1, "one write, one revision");

    let snap = cp.snapshot_at(before + 1).await;
    let status = |id: &str| snap.keys.iter().find(|k| k.id == id).unwrap().status.clone();
    assert_eq!([status(&k1), status(&k2), status(&k3), status(&other)], ["revoked", "revoked", "active", "active"]);

    // Again: nothing left to revoke, nothing written.
    let (s, v) = t.call(&team_tok, Method::POST, "/api/v1/principals/acme:1/revoke", None).await;
    assert_eq!((s, v["revoked"].as_array().unwrap().len()), (S::OK, 0));
    assert_eq!(cp.revision().await, before + 1);
    let audit = cp.expect(Method::GET, "/api/v1/audit?target_kind=principal", None, S::OK).await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1, "{audit}");

    let (_, reader) = t.mint(json!({"name": "t", "scopes": ["keys:read"]})).await;
    let (s, v) = t.call(&reader, Method::POST, "/api/v1/principals/acme:1/revoke", None).await;
    assert_eq!((s, code(&v)), (S::FORBIDDEN, "insufficient_scope"));
    let (s, _) = t.call(&team_tok, Method::POST, "/api/v1/principals/acme:2/revoke", Some(json!({"all": true}))).await;
    assert_eq!(s, S::BAD_REQUEST, "revoking takes no options");
    let (s, _) = t.call(&team_tok, Method::POST, "/api/v1/principals/nobody/revoke", None).await;
    assert_eq!(s, S::NOT_FOUND);
    let k = cp.expect(Method::GET, &format!("/api/v1/keys/{k3}"), None, S::OK).await;
    assert_eq!(k["status"], "active", "team B's key of the same principal is untouched");
}
