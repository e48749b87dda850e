//! Routing configuration: model aliases, routing policies and per-deployment priority /
//! weight, over REST and gRPC, down to the published snapshot and the audit trail.

use crate::{ADMIN, Cp};
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;

async fn setup(cp: &Cp) {
    cp.expect(Method::POST, "/api/v1/providers", Some(json!({"name": "up", "kind": "mock"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/providers", Some(json!({"name": "down", "kind": "mock"})), S::CREATED).await;
    let model = json!({"name": "gpt-4o", "deployments": [
        {"provider": "up", "model": "a", "weight": 70},
        {"provider": "down", "model": "b", "priority": 1, "weight": 0},
        {"provider": "up", "model": "c"},
    ], "pricing": {"input_per_mtok": "1", "output_per_mtok": "2"}});
    cp.expect(Method::POST, "/api/v1/models", Some(model), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "t"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/projects", Some(json!({"name": "p", "team": "t"})), S::CREATED).await;
}

/// `(action, target_id)` of every audit event of `kind`, oldest first.
async fn audit(cp: &Cp, kind: &str) -> Vec<(String, String)> {
    let mut events = cp.cp.service().store().list_audit(Some(kind), None, 1000, None).await.unwrap();
    events.reverse();
    events.into_iter().map(|e| (e.action, e.target_id)).collect()
}

#[track_caller]
fn assert_field(r: &tollgate_testkit::http_client::TestResponse, status: S, field: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], field, "{}", r.text());
}

#[tokio::test]
async fn deployments_take_priority_and_weight_and_the_snapshot_carries_them() {
    let cp = Cp::start().await;
    setup(&cp).await;
    let m = cp.expect(Method::GET, "/api/v1/models/gpt-4o", None, S::OK).await;
    let opts: Vec<(u64, u64)> = m["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["priority"].as_u64().unwrap(), d["weight"].as_u64().unwrap()))
        .collect();
    assert_eq!(opts, [(0, 70), (1, 0), (0, 1)], "defaults: priority 0, weight 1");

    let snap = cp.snapshot_at(cp.revision().await).await;
    let wire = snap.models.iter().find(|m| m.name == "gpt-4o").unwrap();
    let got: Vec<(u32, Option<u32>)> = wire.deployments.iter().map(|d| (d.priority, d.weight)).collect();
    assert_eq!(got, [(0, Some(70)), (1, Some(0)), (0, Some(1))]);

    let heavy = json!({"name": "heavy", "deployments": [{"provider": "up", "model": "a", "weight": 1_000_001}]});
    assert_field(&cp.admin(Method::POST, "/api/v1/models", Some(heavy)).await, S::BAD_REQUEST, "deployments[0].weight");
    let negative = json!({"name": "neg", "deployments": [{"provider": "up", "model": "a", "priority": -1}]});
    assert_eq!(cp.admin(Method::POST, "/api/v1/models", Some(negative)).await.status, S::BAD_REQUEST);
}

#[tokio::test]
async fn aliases_are_created_listed_and_deleted_and_never_shadow_a_model() {
    let cp = Cp::start().await;
    setup(&cp).await;
    let rev = cp.revision().await;
    let created =
        cp.expect(Method::POST, "/api/v1/aliases", Some(json!({"name": "fast", "model": "gpt-4o"})), S::CREATED).await;
    assert_eq!((created["name"].as_str(), created["model"].as_str()), (Some("fast"), Some("gpt-4o")));
    assert_eq!(cp.revision().await, rev + 1, "a write bumps the revision once");
    let snap = cp.snapshot_at(rev + 1).await;
    assert_eq!(snap.aliases, [v1::ModelAlias { name: "fast".into(), target_model: "gpt-4o".into() }]);

    // 409: the name is taken, by an alias or a model; and a model cannot take an alias's name.
    let r = cp.admin(Method::POST, "/api/v1/aliases", Some(json!({"name": "fast", "model": "gpt-4o"}))).await;
    assert_eq!(r.status, S::CONFLICT, "{}", r.text());
    let r = cp.admin(Method::POST, "/api/v1/aliases", Some(json!({"name": "gpt-4o", "model": "gpt-4o"}))).await;
    assert_eq!(r.status, S::CONFLICT, "{}", r.text());
    let shadow = json!({"name": "fast", "deployments": [{"provider": "up", "model": "x"}]});
    let r = cp.admin(Method::POST, "/api/v1/models", Some(shadow)).await;
    assert_eq!(r.status, S::CONFLICT, "{}", r.text());
    // 400: the target is unknown or is an alias.
    let r = cp.admin(Method::POST, "/api/v1/aliases", Some(json!({"name": "x", "model": "nope"}))).await;
    assert_field(&r, S::BAD_REQUEST, "model");
    let r = cp.admin(Method::POST, "/api/v1/aliases", Some(json!({"name": "faster", "model": "fast"}))).await;
    assert_field(&r, S::BAD_REQUEST, "model");
    assert!(r.text().contains("alias"), "{}", r.text());
    let r = cp.admin(Method::POST, "/api/v1/aliases", Some(json!({"name": "", "model": "gpt-4o"}))).await;
    assert_field(&r, S::BAD_REQUEST, "name");
    assert_eq!(cp.revision().await, rev + 1, "refused writes change nothing");

    let list = cp.expect(Method::GET, "/api/v1/aliases", None, S::OK).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(cp.expect(Method::GET, "/api/v1/aliases/fast", None, S::OK).await, created);
    cp.expect(Method::DELETE, "/api/v1/aliases/fast", None, S::NO_CONTENT).await;
    cp.expect(Method::DELETE, "/api/v1/aliases/fast", None, S::NOT_FOUND).await;
    cp.expect(Method::GET, "/api/v1/aliases/fast", None, S::NOT_FOUND).await;
    assert!(cp.snapshot_at(rev + 2).await.aliases.is_empty());
    assert_eq!(
        audit(&cp, "alias").await,
        [("alias.create".into(), "fast".into()), ("alias.delete".into(), "fast".into())]
    );

    for (method, path) in [(Method::GET, "/api/v1/aliases"), (Method::DELETE, "/api/v1/aliases/fast")] {
        assert_eq!(cp.call(method.clone(), path, None, None).await.status, S::UNAUTHORIZED, "{method} {path}");
    }
    let r =
        cp.call(Method::POST, "/api/v1/aliases", Some("wrong"), Some(&json!({"name": "a", "model": "gpt-4o"}))).await;
    assert_eq!(r.status, S::UNAUTHORIZED);
}

#[tokio::test]
async fn routing_policies_are_validated_by_field_one_per_scope_and_reach_the_snapshot() {
    let cp = Cp::start().await;
    setup(&cp).await;
    let rev = cp.revision().await;
    let policy = json!({"strategy": "weighted", "max_attempts": 4, "backoff": {"base_ms": 100, "max_ms": 1000},
                        "retry_on": ["connect", "429"], "cooldown": {"failures_to_open": 2}});
    let created = cp
        .expect(
            Method::POST,
            "/api/v1/routing-policies",
            Some(json!({"scope": "team", "scope_id": "t", "policy": policy})),
            S::CREATED,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rpol_"), "{created}");
    assert!(created["scope_id"].as_str().unwrap().starts_with("team_"), "stored as the team id: {created}");
    assert_eq!(created["policy"]["max_attempts"], 4);
    assert_eq!(created["policy"]["cooldown"]["cooldown_ms"], 30_000, "written out whole: {created}");
    let default = cp
        .expect(Method::POST, "/api/v1/routing-policies", Some(json!({"scope": "default", "policy": {}})), S::CREATED)
        .await;
    assert_eq!(default["scope_id"], Value::Null);
    assert_eq!(cp.revision().await, rev + 2);

    let snap = cp.snapshot_at(rev + 2).await;
    assert_eq!(snap.routing_policies.len(), 2);
    for p in &snap.routing_policies {
        let (scope, converted) = tollgate_proto::convert::routing_policy(p).unwrap();
        if p.id == id {
            assert_eq!(scope.map(|_| ()), Some(()));
            assert_eq!(converted.max_attempts(), 4);
        } else {
            assert_eq!((scope, converted), (None, tollgate_routing::RoutingPolicy::default()));
        }
    }

    // Validation names the field, through the routing crate's rules.
    for (body, field) in [
        (
            json!({"scope": "team", "scope_id": "t", "policy": {"backoff": {"base_ms": 9000, "max_ms": 10}}}),
            "policy.backoff.base_ms",
        ),
        (json!({"scope": "team", "scope_id": "t", "policy": {"max_attempts": 11}}), "policy.max_attempts"),
        (json!({"scope": "team", "scope_id": "t", "policy": {"retry_on": ["400"]}}), "policy.retry_on[0]"),
        (json!({"scope": "team", "scope_id": "t", "policy": {"retries": 1}}), "policy.retries"),
        (json!({"scope": "team", "scope_id": "t", "policy": "fast"}), "policy"),
        (json!({"scope": "principal", "scope_id": "t", "policy": {}}), "scope"),
        (json!({"scope": "project", "policy": {}}), "scope_id"),
        (json!({"scope": "project", "scope_id": "nope", "policy": {}}), "scope_id"),
        (json!({"scope": "virtual_key", "scope_id": "key_nope", "policy": {}}), "scope_id"),
        (json!({"scope": "default", "scope_id": "x", "policy": {}}), "scope_id"),
        (json!({"scope": "project", "scope_id": "p"}), "policy"),
        (json!({"scope": "project", "scope_id": "p", "policy": {}, "extra": 1}), "extra"),
    ] {
        let r = cp.admin(Method::POST, "/api/v1/routing-policies", Some(body.clone())).await;
        assert_eq!(r.status, S::BAD_REQUEST, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], field, "{body}: {}", r.text());
    }
    // One policy per scope.
    for body in [json!({"scope": "team", "scope_id": "t", "policy": {}}), json!({"scope": "default", "policy": {}})] {
        let r = cp.admin(Method::POST, "/api/v1/routing-policies", Some(body.clone())).await;
        assert_eq!(r.status, S::CONFLICT, "{body}: {}", r.text());
    }
    assert_eq!(cp.revision().await, rev + 2, "refused writes change nothing");

    let path = format!("/api/v1/routing-policies/{id}");
    let r = cp.admin(Method::PATCH, &path, Some(json!({"policy": {"overall_timeout_ms": 0}}))).await;
    assert_field(&r, S::BAD_REQUEST, "policy.overall_timeout_ms");
    let patched = cp.expect(Method::PATCH, &path, Some(json!({"policy": {"max_attempts": 1}})), S::OK).await;
    assert_eq!(
        (patched["policy"]["max_attempts"].as_u64(), patched["policy"]["strategy"].as_str()),
        (Some(1), Some("priority"))
    );
    assert_eq!(patched["scope_id"], created["scope_id"]);
    assert_eq!(cp.expect(Method::GET, &path, None, S::OK).await, patched);
    let list = cp.expect(Method::GET, "/api/v1/routing-policies", None, S::OK).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    cp.expect(Method::DELETE, &path, None, S::NO_CONTENT).await;
    cp.expect(Method::GET, &path, None, S::NOT_FOUND).await;
    cp.expect(Method::DELETE, &path, None, S::NOT_FOUND).await;
    assert_eq!(cp.revision().await, rev + 4);
    assert_eq!(cp.snapshot_at(rev + 4).await.routing_policies.len(), 1);
    let actions: Vec<String> = audit(&cp, "routing_policy").await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        actions,
        ["routing_policy.create", "routing_policy.create", "routing_policy.update", "routing_policy.delete"]
    );

    for (method, p) in
        [(Method::GET, "/api/v1/routing-policies"), (Method::DELETE, path.as_str()), (Method::PATCH, path.as_str())]
    {
        assert_eq!(cp.call(method.clone(), p, None, None).await.status, S::UNAUTHORIZED, "{method} {p}");
    }
}

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

#[tokio::test]
async fn the_admin_grpc_api_manages_aliases_and_routing_policies() {
    let cp = Cp::start().await;
    setup(&cp).await;
    let mut c = AdminServiceClient::connect(cp.grpc.clone()).await.unwrap();
    let alias = v1::CreateAliasRequest { name: "fast".into(), model: "gpt-4o".into() };
    let err = c.create_alias(authed(alias.clone(), "wrong")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let a = c.create_alias(authed(alias.clone(), ADMIN)).await.unwrap().into_inner();
    assert_eq!((a.name.as_str(), a.model.as_str()), ("fast", "gpt-4o"));
    assert_eq!(c.create_alias(authed(alias, ADMIN)).await.unwrap_err().code(), tonic::Code::AlreadyExists);
    let listed = c.list_aliases(authed(v1::ListAliasesRequest {}, ADMIN)).await.unwrap().into_inner();
    assert_eq!(listed.aliases, [a]);
    c.delete_alias(authed(v1::DeleteAliasRequest { name: "fast".into() }, ADMIN)).await.unwrap();

    let req = |json: &str| v1::CreateRoutingPolicyRequest {
        scope: "project".into(),
        scope_id: Some("p".into()),
        policy_json: json.into(),
    };
    let bad = c.create_routing_policy(authed(req(r#"{"backoff": {"max_ms": 61000}}"#), ADMIN)).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("policy.backoff.max_ms"), "{}", bad.message());
    let p = c.create_routing_policy(authed(req(r#"{"max_attempts": 2}"#), ADMIN)).await.unwrap().into_inner();
    assert_eq!(p.scope, "project");
    assert!(p.scope_id.as_deref().is_some_and(|s| s.starts_with("proj_")), "{p:?}");
    let dup = c.create_routing_policy(authed(req("{}"), ADMIN)).await.unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    let updated = c
        .update_routing_policy(authed(
            v1::UpdateRoutingPolicyRequest { id: p.id.clone(), policy_json: r#"{"strategy": "weighted"}"#.into() },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    let json: Value = serde_json::from_str(&updated.policy_json).unwrap();
    assert_eq!((json["strategy"].as_str(), json["max_attempts"].as_u64()), (Some("weighted"), Some(3)));
    let got = c.get_routing_policy(authed(v1::GetRoutingPolicyRequest { id: p.id.clone() }, ADMIN)).await.unwrap();
    assert_eq!(got.into_inner(), updated);
    let all = c.list_routing_policies(authed(v1::ListRoutingPoliciesRequest {}, ADMIN)).await.unwrap().into_inner();
    assert_eq!(all.policies, [updated]);
    c.delete_routing_policy(authed(v1::DeleteRoutingPolicyRequest { id: p.id.clone() }, ADMIN)).await.unwrap();
    let gone = c.get_routing_policy(authed(v1::GetRoutingPolicyRequest { id: p.id }, ADMIN)).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}
