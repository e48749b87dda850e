//! Names that cannot leak or collide across tenants (issue 16.5): a bound token resolves
//! team and project names only inside its own tenancy, a filter on another tenant's team
//! or organization answers exactly as a missing one, provider URLs carrying credentials
//! are refused without echoing them, and the data directory's files are private.

use crate::grpc::authed;
use crate::tokens::{Tenants, code};
use crate::{ADMIN, Cp};
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;

/// The error body with the quoted `name` it echoes replaced, so two refusals that differ
/// only in the name they were given compare equal.
fn shape(v: &Value, name: &str) -> String {
    v.to_string().replace(&format!("\\\"{name}\\\""), "<name>")
}

#[tokio::test]
async fn a_tenants_project_name_never_shadows_another_tenants_project() {
    let t = Tenants::start().await;
    let (_, tok_a) = t.mint(json!({"name": "a", "scopes": ["admin"], "team": "A"})).await;
    let (_, tok_b) = t.mint(json!({"name": "b", "scopes": ["admin"], "team": "B"})).await;
    // Tenant B names a project like tenant A's.
    let (s, b_pa) = t.call(&tok_b, Method::POST, "/api/v1/projects", Some(json!({"name": "pa", "team": "B"}))).await;
    assert_eq!(s, S::CREATED, "{b_pa}");
    let b_pa = b_pa["id"].as_str().unwrap().to_owned();
    assert_ne!(b_pa, t.pa);

    // Each tenant's name-based calls keep reaching its own project.
    for (tok, own) in [(&tok_a, &t.pa), (&tok_b, &b_pa)] {
        let (s, key) = t.call(tok, Method::POST, "/api/v1/keys", Some(json!({"project": "pa"}))).await;
        assert_eq!((s, key["project_id"].as_str()), (S::CREATED, Some(own.as_str())), "{key}");
        let (s, keys) = t.call(tok, Method::GET, "/api/v1/keys?project=pa", None).await;
        assert_eq!(s, S::OK, "{keys}");
        assert!(keys["data"].as_array().unwrap().iter().all(|k| k["project_id"] == json!(own)), "{keys}");
        let (s, p) = t.call(tok, Method::GET, "/api/v1/projects/pa", None).await;
        assert_eq!((s, p["id"].as_str()), (S::OK, Some(own.as_str())), "{p}");
        let budget = json!({"scope": "project", "scope_id": "pa", "limit_usd": "5", "window": "day"});
        let (s, b) = t.call(tok, Method::POST, "/api/v1/budgets", Some(budget)).await;
        assert_eq!((s, b["scope_id"].as_str()), (S::CREATED, Some(own.as_str())), "{b}");
        let (s, v) = t.call(tok, Method::GET, "/api/v1/principals?project=pa", None).await;
        assert_eq!(s, S::OK, "{v}");
        let (s, v) = t
            .call(
                tok,
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": "p", "scopes": ["keys:read"], "project": "pa"})),
            )
            .await;
        assert_eq!(s, S::CREATED, "{v}");
        // A token bound to the project resolves the name to it too.
        let (s, v) = t.call(v["token"].as_str().unwrap(), Method::GET, "/api/v1/keys?project=pa", None).await;
        assert_eq!(s, S::OK, "{v}");
    }
    // An unbound token sees both and asks for the id.
    let r = t.cp.admin(Method::GET, "/api/v1/projects/pa", None).await;
    assert_eq!((r.status, code(&r.json())), (S::CONFLICT, "conflict"), "{}", r.text());
}

#[tokio::test]
async fn a_teams_name_resolves_inside_the_tokens_own_organization() {
    let cp = Cp::start().await;
    cp.expect(Method::POST, "/api/v1/organizations", Some(json!({"name": "acme"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "ml", "organization": "acme"})), S::CREATED).await;
    let ml = cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "ml"})), S::CREATED).await;
    let ml = ml["id"].as_str().unwrap();
    let body = json!({"name": "t", "scopes": ["admin"], "team": ml});
    let tok = cp.expect(Method::POST, "/api/v1/tokens", Some(body), S::CREATED).await;
    let tok = tok["token"].as_str().unwrap();
    let r = cp.call(Method::GET, "/api/v1/teams/ml", Some(tok), None).await;
    assert_eq!((r.status, r.json()["id"].as_str()), (S::OK, Some(ml)), "{}", r.text());
    let r = cp.call(Method::POST, "/api/v1/projects", Some(tok), Some(&json!({"name": "p", "team": "ml"}))).await;
    assert_eq!((r.status, r.json()["team_id"].as_str()), (S::CREATED, Some(ml)), "{}", r.text());
    let r = cp.call(Method::GET, "/api/v1/projects?team=ml", Some(tok), None).await;
    assert_eq!((r.status, r.json()["data"].as_array().map(Vec::len)), (S::OK, Some(1)), "{}", r.text());
}

#[tokio::test]
async fn a_filter_on_another_tenants_team_or_organization_reads_as_a_missing_one() {
    let t = Tenants::start().await;
    t.cp.expect(Method::POST, "/api/v1/organizations", Some(json!({"name": "acme"})), S::CREATED).await;
    t.cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "C", "organization": "acme"})), S::CREATED).await;
    let (_, team_tok) = t.mint(json!({"name": "a", "scopes": ["admin"], "team": "A"})).await;
    let (_, project_tok) = t.mint(json!({"name": "p", "scopes": ["keys:read"], "project": "pa"})).await;
    for tok in [&team_tok, &project_tok] {
        for (param, other, missing) in [("team", "B", "no-such-team"), ("organization", "acme", "no-such-org")] {
            let path = if param == "team" { "projects" } else { "teams" };
            let (s1, v1) = t.call(tok, Method::GET, &format!("/api/v1/{path}?{param}={other}"), None).await;
            let (s2, v2) = t.call(tok, Method::GET, &format!("/api/v1/{path}?{param}={missing}"), None).await;
            assert_eq!(s2, S::BAD_REQUEST, "{v2}");
            assert_eq!((s1, shape(&v1, other)), (s2, shape(&v2, missing)), "{path}?{param}={other}");
        }
        // By id as well as by name.
        let b = t.cp.expect(Method::GET, "/api/v1/projects/pb", None, S::OK).await;
        let b_team = b["team_id"].as_str().unwrap();
        let (s, v) = t.call(tok, Method::GET, &format!("/api/v1/projects?team={b_team}"), None).await;
        assert_eq!((s, v["error"]["field"].as_str()), (S::BAD_REQUEST, Some("team")), "{v}");
    }
    // The tenant's own team and organization still filter.
    let (s, v) = t.call(&team_tok, Method::GET, "/api/v1/projects?team=A", None).await;
    assert_eq!((s, v["data"].as_array().map(Vec::len)), (S::OK, Some(2)), "{v}");
    let (s, v) = t.call(&team_tok, Method::GET, "/api/v1/teams?organization=default", None).await;
    assert_eq!((s, v["data"].as_array().map(Vec::len)), (S::OK, Some(1)), "{v}");
}

/// A password that must never come back.
const URL_PASSWORD: &str = "hunter2-url-password";

#[tokio::test]
async fn a_provider_url_with_credentials_is_refused_without_echoing_them() {
    let cp = Cp::start().await;
    let with_password = format!("https://alice:{URL_PASSWORD}@api.example.com/v1");
    for url in [with_password.as_str(), "https://alice@api.example.com/v1", "http://:pw@127.0.0.1:9"] {
        let body = json!({"name": "up", "kind": "openai", "base_url": url, "api_key": "sk-test-0123456789"});
        let r = cp.admin(Method::POST, "/api/v1/providers", Some(body)).await;
        assert_eq!((r.status, r.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some("base_url")), "{url}");
        assert!(!r.text().contains(URL_PASSWORD) && !r.text().contains("alice"), "{}", r.text());
    }
    let body = json!({"name": "up", "kind": "openai", "base_url": "https://api.example.com/v1", "api_key": "sk-0123"});
    cp.expect(Method::POST, "/api/v1/providers", Some(body), S::CREATED).await;
    let r = cp.admin(Method::PATCH, "/api/v1/providers/up", Some(json!({"base_url": with_password}))).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (S::BAD_REQUEST, Some("base_url")), "{}", r.text());
    assert!(!r.text().contains(URL_PASSWORD), "{}", r.text());
    let listed = cp.expect(Method::GET, "/api/v1/providers", None, S::OK).await;
    assert!(!listed.to_string().contains(URL_PASSWORD), "{listed}");

    // gRPC refuses it the same way.
    let mut c = AdminServiceClient::connect(cp.grpc.clone()).await.unwrap();
    let create = v1::CreateProviderRequest {
        name: "up2".into(),
        kind: "openai".into(),
        base_url: Some(with_password.clone()),
        api_key: Some("sk-test-0123456789".into()),
        ..Default::default()
    };
    let s = c.create_provider(authed(create, ADMIN)).await.expect_err("credentials in the URL");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("base_url") && !format!("{s:?}").contains(URL_PASSWORD), "{s:?}");
    let update =
        v1::UpdateProviderRequest { provider: "up".into(), base_url: Some(with_password), ..Default::default() };
    let s = c.update_provider(authed(update, ADMIN)).await.expect_err("credentials in the URL");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("base_url") && !format!("{s:?}").contains(URL_PASSWORD), "{s:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_the_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tollgate_testkit::process::temp_dir("controlplane-modes").join("data");
    let cfg = tollgate_controlplane::Config {
        database_url: format!("sqlite://{}?mode=rwc", dir.join("tollgate.db").display()),
        data_dir: dir.clone(),
        secrets: tollgate_controlplane::SecretSources::default(),
    };
    let cp = tollgate_controlplane::ControlPlane::start(&cfg).await.unwrap();
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(""), 0o700, "the data dir");
    for f in ["tollgate.db", "tollgate.db-wal", "tollgate.db-shm", "admin_token"] {
        assert_eq!(mode(f), 0o600, "{f}");
    }
    drop(cp);
}
