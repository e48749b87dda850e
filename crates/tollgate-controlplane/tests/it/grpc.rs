//! `AdminService` over the same service layer as REST: budgets, providers (never the
//! credential), models, the tenancy tree, key updates and principals, with missing,
//! weak and out-of-tenancy tokens refused; and a budget change reaching a gateway's
//! `Watch` stream (as a full snapshot, for a caller that takes no changes).

use crate::{ADMIN, Cp};
use std::time::Duration;
use tollgate_proto::v1;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tollgate_proto::v1::config_service_client::ConfigServiceClient;
use tonic::Code;
use tonic::transport::Channel;

pub(crate) fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn client(cp: &Cp) -> AdminServiceClient<Channel> {
    AdminServiceClient::connect(cp.grpc.clone()).await.unwrap()
}

#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, code: Code, needle: &str) {
    let s = r.expect_err("the call must fail");
    assert_eq!(s.code(), code, "{s:?}");
    assert!(s.message().contains(needle), "{needle:?} not in {:?}", s.message());
}

#[tokio::test]
async fn the_admin_grpc_api_manages_budgets() {
    let cp = Cp::start().await;
    let mut c = client(&cp).await;

    let created = c
        .create_budget(authed(
            v1::CreateBudgetRequest {
                scope: "organization".into(),
                scope_id: "default".into(),
                limit_usd: Some("250.5".into()),
                window: "month".into(),
                alert_thresholds: vec!["0.8".into(), "0.5".into()],
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.starts_with("bud_"));
    assert!(created.scope_id.starts_with("org_"), "stored as the org id: {created:?}");
    assert_eq!(created.clamp_floor_tokens, None, "a block budget has no floor");
    assert_eq!((created.limit_usd.as_str(), created.limit_tokens), ("250.50", None));
    assert_eq!((created.window.as_str(), created.on_breach.as_str()), ("month", "block"));
    assert_eq!(created.alert_thresholds_permille, [500, 800]);
    assert_eq!(
        (created.epoch, created.temporary_increase.as_str(), created.temporary_increase_until.as_deref()),
        (0, "", None)
    );
    let id = created.id.clone();

    let got = c.get_budget(authed(v1::GetBudgetRequest { id: id.clone() }, ADMIN)).await.unwrap().into_inner();
    assert_eq!(got, created);

    let tokens = c
        .create_budget(authed(
            v1::CreateBudgetRequest {
                scope: "principal".into(),
                scope_id: "acme:1".into(),
                limit_tokens: Some(10_000),
                window: "day".into(),
                on_breach: Some("warn".into()),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((tokens.limit_usd.as_str(), tokens.limit_tokens), ("", Some(10_000)));

    let page = c
        .list_budgets(authed(v1::ListBudgetsRequest { limit: 1, ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.budgets.len(), 1);
    let next = page.next_after.clone().unwrap();
    let rest = c
        .list_budgets(authed(v1::ListBudgetsRequest { limit: 10, after: Some(next), ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<String> = page.budgets.iter().chain(&rest.budgets).map(|b| b.id.clone()).collect();
    assert_eq!(rest.next_after, None);
    ids.sort();
    let mut want = vec![id.clone(), tokens.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    let principals = c
        .list_budgets(authed(v1::ListBudgetsRequest { scope: Some("principal".into()), ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(principals.budgets, std::slice::from_ref(&tokens));

    let updated = c
        .update_budget(authed(
            v1::UpdateBudgetRequest {
                id: id.clone(),
                window: Some("week".into()),
                alert_thresholds: Some(v1::AlertThresholds { values: vec![] }),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.window.as_str(), updated.limit_usd.as_str()), ("week", "250.50"));
    assert!(updated.alert_thresholds_permille.is_empty(), "an empty list clears the thresholds");

    let increased = c
        .increase_budget(authed(
            v1::IncreaseBudgetRequest {
                id: id.clone(),
                amount_usd: Some("20".into()),
                duration_s: Some(3600),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(increased.temporary_increase, "20.00");
    assert!(increased.temporary_increase_until.is_some());
    let cleared = c
        .update_budget(authed(
            v1::UpdateBudgetRequest { id: id.clone(), clear_temporary_increase: true, ..Default::default() },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((cleared.temporary_increase.as_str(), cleared.temporary_increase_until.as_deref()), ("", None));

    // Clamp with a floor, back to the default, and both at once refused.
    let clamp = v1::UpdateBudgetRequest {
        id: id.clone(),
        on_breach: Some("clamp".into()),
        clamp_floor_tokens: Some(48),
        ..Default::default()
    };
    let clamped = c.update_budget(authed(clamp, ADMIN)).await.unwrap().into_inner();
    assert_eq!((clamped.on_breach.as_str(), clamped.clamp_floor_tokens), ("clamp", Some(48)));
    let default = v1::UpdateBudgetRequest { id: id.clone(), clear_clamp_floor_tokens: true, ..Default::default() };
    assert_eq!(c.update_budget(authed(default, ADMIN)).await.unwrap().into_inner().clamp_floor_tokens, Some(16));
    let both = v1::UpdateBudgetRequest {
        id: id.clone(),
        clamp_floor_tokens: Some(20),
        clear_clamp_floor_tokens: true,
        ..Default::default()
    };
    assert_status(c.update_budget(authed(both, ADMIN)).await, Code::InvalidArgument, "clamp_floor_tokens");
    let block = v1::UpdateBudgetRequest { id: id.clone(), on_breach: Some("block".into()), ..Default::default() };
    assert_eq!(c.update_budget(authed(block, ADMIN)).await.unwrap().into_inner().clamp_floor_tokens, None);

    let reset = c.reset_budget(authed(v1::ResetBudgetRequest { id: id.clone() }, ADMIN)).await.unwrap().into_inner();
    assert_eq!(reset.epoch, 1);
    let reset = c.reset_budget(authed(v1::ResetBudgetRequest { id: id.clone() }, ADMIN)).await.unwrap().into_inner();
    assert_eq!(reset.epoch, 2);

    c.delete_budget(authed(v1::DeleteBudgetRequest { id: id.clone() }, ADMIN)).await.unwrap();
    assert_status(c.get_budget(authed(v1::GetBudgetRequest { id: id.clone() }, ADMIN)).await, Code::NotFound, &id);

    let actions: Vec<String> = cp.budget_audit().await.into_iter().map(|(a, _, _)| a).collect();
    assert_eq!(
        actions,
        [
            "budget.create",
            "budget.create",
            "budget.update",
            "budget.increase",
            "budget.update",
            "budget.update",
            "budget.update",
            "budget.update",
            "budget.reset",
            "budget.reset",
            "budget.delete"
        ]
    );
}

#[tokio::test]
async fn grpc_budget_errors_map_to_status_codes_naming_the_field() {
    let cp = Cp::start().await;
    let mut c = client(&cp).await;
    let create = |scope: &str, limit_usd: Option<&str>, window: &str| v1::CreateBudgetRequest {
        scope: scope.into(),
        scope_id: "x".into(),
        limit_usd: limit_usd.map(str::to_owned),
        window: window.into(),
        ..Default::default()
    };
    assert_status(
        c.create_budget(tonic::Request::new(create("principal", Some("1"), "day"))).await,
        Code::Unauthenticated,
        "admin token",
    );
    assert_status(
        c.create_budget(authed(create("principal", Some("1"), "day"), "wrong-token-0123456789")).await,
        Code::Unauthenticated,
        "admin token",
    );
    assert_status(
        c.create_budget(authed(create("galaxy", Some("1"), "day"), ADMIN)).await,
        Code::InvalidArgument,
        "scope",
    );
    assert_status(
        c.create_budget(authed(create("principal", Some("-1"), "day"), ADMIN)).await,
        Code::InvalidArgument,
        "limit_usd",
    );
    assert_status(
        c.create_budget(authed(create("principal", None, "day"), ADMIN)).await,
        Code::InvalidArgument,
        "limit_usd",
    );
    assert_status(
        c.create_budget(authed(create("principal", Some("1"), "yearly"), ADMIN)).await,
        Code::InvalidArgument,
        "window",
    );
    let mut bad_threshold = create("principal", Some("1"), "day");
    bad_threshold.alert_thresholds = vec!["1.5".into()];
    assert_status(c.create_budget(authed(bad_threshold, ADMIN)).await, Code::InvalidArgument, "alert_thresholds");
    assert_status(c.create_budget(authed(create("team", Some("1"), "day"), ADMIN)).await, Code::NotFound, "team \"x\"");

    let b = c.create_budget(authed(create("principal", Some("1"), "day"), ADMIN)).await.unwrap().into_inner();
    let past = v1::IncreaseBudgetRequest {
        id: b.id.clone(),
        amount_usd: Some("1".into()),
        expires_at: Some("2020-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    assert_status(c.increase_budget(authed(past, ADMIN)).await, Code::InvalidArgument, "expires_at");
    assert_status(
        c.reset_budget(authed(v1::ResetBudgetRequest { id: "bud_nope".into() }, ADMIN)).await,
        Code::NotFound,
        "bud_nope",
    );
    assert_status(
        c.delete_budget(authed(v1::DeleteBudgetRequest { id: "bud_nope".into() }, ADMIN)).await,
        Code::NotFound,
        "bud_nope",
    );
}

#[tokio::test]
async fn a_budget_change_reaches_a_watching_gateway_in_the_next_snapshot() {
    let cp = Cp::start().await;
    let mut watch = ConfigServiceClient::connect(cp.grpc.clone()).await.unwrap();
    let mut stream = watch
        .watch(authed(v1::WatchRequest { since_revision: 0, accept_changes: false }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();

    let mut c = client(&cp).await;
    let b = c
        .create_budget(authed(
            v1::CreateBudgetRequest {
                scope: "principal".into(),
                scope_id: "acme:2".into(),
                limit_tokens: Some(77),
                window: "hour".into(),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    c.reset_budget(authed(v1::ResetBudgetRequest { id: b.id.clone() }, ADMIN)).await.unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let msg = stream.message().await.unwrap().unwrap();
            let snap = msg.snapshot.unwrap();
            assert!(snap.revision > first.revision, "revisions only go forward");
            if let Some(budget) = snap.budgets.iter().find(|x| x.id == b.id)
                && budget.epoch == 1
            {
                return budget.clone();
            }
        }
    })
    .await
    .expect("the reset reaches the Watch stream");
    assert_eq!((seen.limit_tokens, seen.window.as_str(), seen.scope_id.as_str()), (Some(77), "hour", "acme:2"));
}

/// A provider credential in a request, as a test would leak it.
const PROVIDER_SECRET: &str = "sk-grpc-provider-secret-0123456789";

#[tokio::test]
async fn the_admin_grpc_api_manages_providers_and_models_without_returning_a_credential() {
    let cp = Cp::start().await;
    let mut c = client(&cp).await;
    let created = c
        .create_provider(authed(
            v1::CreateProviderRequest {
                name: "up".into(),
                kind: "openai-compatible".into(),
                base_url: Some("http://127.0.0.1:9/v1/".into()),
                api_key: Some(PROVIDER_SECRET.into()),
                rpm: Some(60),
                extra_json: Some(r#"{"latency_ms": 5}"#.into()),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    let fingerprint = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(PROVIDER_SECRET.as_bytes());
        format!("sha256:{}", d.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>())
    };
    assert_eq!(
        (created.api_key_fingerprint.as_str(), created.base_url.as_str()),
        (fingerprint.as_str(), "http://127.0.0.1:9/v1")
    );
    assert_eq!((created.rpm, created.extra_json.as_str()), (Some(60), r#"{"latency_ms":5}"#));
    assert!(!format!("{created:?}").contains("grpc-provider-secret"), "{created:?}");

    let got = c.get_provider(authed(v1::GetProviderRequest { provider: "up".into() }, ADMIN)).await.unwrap();
    assert_eq!(got.into_inner(), created);
    let listed = c.list_providers(authed(v1::ListProvidersRequest {}, ADMIN)).await.unwrap().into_inner();
    assert_eq!(listed.providers, std::slice::from_ref(&created));
    let rotated = c
        .update_provider(authed(
            v1::UpdateProviderRequest {
                provider: created.id.clone(),
                api_key: Some("sk-another-credential-0123456789".into()),
                clear_rpm: true,
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.api_key_fingerprint, created.api_key_fingerprint);
    assert_eq!((rotated.rpm, rotated.priority, rotated.extra_json.as_str()), (None, 0, r#"{"latency_ms":5}"#));
    let snap = cp.snapshot_at(cp.revision().await).await;
    assert_eq!(snap.providers[0].api_key, "sk-another-credential-0123456789", "gateways get the new credential");
    let both = v1::UpdateProviderRequest { provider: "up".into(), rpm: Some(1), clear_rpm: true, ..Default::default() };
    assert_status(c.update_provider(authed(both, ADMIN)).await, Code::InvalidArgument, "rpm");
    let bad_extra =
        v1::UpdateProviderRequest { provider: "up".into(), extra_json: Some("{not json".into()), ..Default::default() };
    assert_status(c.update_provider(authed(bad_extra, ADMIN)).await, Code::InvalidArgument, "extra_json");
    assert_status(
        c.get_provider(authed(v1::GetProviderRequest { provider: "nope".into() }, ADMIN)).await,
        Code::NotFound,
        "nope",
    );

    let deployment = |model: &str| v1::Deployment { provider: "up".into(), model: model.into(), ..Default::default() };
    let pricing = |input: &str| v1::ModelPricing {
        input_per_mtok: input.into(),
        output_per_mtok: "10".into(),
        ..Default::default()
    };
    let model = c
        .create_model(authed(
            v1::CreateModelRequest {
                name: "chat".into(),
                deployments: vec![deployment("gpt-4o")],
                pricing: Some(pricing("2.5")),
                max_output_tokens: Some(100),
                max_tokens_per_part: None,
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((model.input_per_mtok.as_deref(), model.deployments[0].weight), (Some("2.50"), Some(1)));
    let updated = c
        .update_model(authed(
            v1::UpdateModelRequest {
                model: "chat".into(),
                deployments: Some(v1::DeploymentList { deployments: vec![deployment("gpt-4o-mini")] }),
                clear_max_output_tokens: true,
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.deployments[0].model.as_str(), updated.max_output_tokens), ("gpt-4o-mini", None));
    assert_eq!(updated.input_per_mtok.as_deref(), Some("2.50"), "prices left alone");
    let got = c.get_model(authed(v1::GetModelRequest { model: model.id.clone() }, ADMIN)).await.unwrap();
    assert_eq!(got.into_inner(), updated);

    let negative = v1::CreateModelRequest {
        name: "neg".into(),
        deployments: vec![deployment("x")],
        pricing: Some(pricing("-1")),
        ..Default::default()
    };
    assert_status(c.create_model(authed(negative, ADMIN)).await, Code::InvalidArgument, "pricing.input_per_mtok");
    let orphan = v1::CreateModelRequest {
        name: "orphan".into(),
        deployments: vec![v1::Deployment { provider: "ghost".into(), model: "x".into(), ..Default::default() }],
        ..Default::default()
    };
    assert_status(c.create_model(authed(orphan, ADMIN)).await, Code::InvalidArgument, "deployments[0].provider");
    let empty = v1::UpdateModelRequest { model: "chat".into(), ..Default::default() };
    assert_status(c.update_model(authed(empty, ADMIN)).await, Code::InvalidArgument, "nothing to change");

    // Per-part maxima: replaced whole, cleared, refused out of range.
    let parts = |image, file| v1::TokensPerPart { image, audio: None, file };
    let set = v1::UpdateModelRequest {
        model: "chat".into(),
        max_tokens_per_part: Some(parts(Some(1500), Some(20_000))),
        ..Default::default()
    };
    let with_parts = c.update_model(authed(set, ADMIN)).await.unwrap().into_inner();
    assert_eq!(with_parts.max_tokens_per_part, Some(parts(Some(1500), Some(20_000))));
    let clear = v1::UpdateModelRequest { model: "chat".into(), clear_max_tokens_per_part: true, ..Default::default() };
    assert_eq!(c.update_model(authed(clear, ADMIN)).await.unwrap().into_inner().max_tokens_per_part, None);
    let zero = v1::UpdateModelRequest {
        model: "chat".into(),
        max_tokens_per_part: Some(parts(Some(0), None)),
        ..Default::default()
    };
    assert_status(c.update_model(authed(zero, ADMIN)).await, Code::InvalidArgument, "max_tokens_per_part.image");
    assert_status(
        c.get_model(authed(v1::GetModelRequest { model: "nope".into() }, ADMIN)).await,
        Code::NotFound,
        "nope",
    );
}

#[tokio::test]
async fn the_admin_grpc_api_manages_the_tenancy_tree_keys_and_principals() {
    let cp = Cp::start().await;
    let mut c = client(&cp).await;
    let acme = c
        .create_organization(authed(v1::CreateOrganizationRequest { name: "acme".into() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    let team = c
        .create_team(authed(v1::CreateTeamRequest { name: "pay".into(), organization: Some("acme".into()) }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(team.org_id, acme.id);
    let project = c
        .create_project(authed(v1::CreateProjectRequest { name: "web".into(), team: "pay".into() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((project.team_id.as_str(), project.org_id.as_str()), (team.id.as_str(), acme.id.as_str()));
    let orgs = c.list_organizations(authed(v1::ListOrganizationsRequest {}, ADMIN)).await.unwrap().into_inner();
    assert_eq!(orgs.organizations.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["acme", "default"]);
    let got = c.get_organization(authed(v1::GetOrganizationRequest { organization: acme.id.clone() }, ADMIN)).await;
    assert_eq!(got.unwrap().into_inner(), acme);
    let teams = c
        .list_teams(authed(v1::ListTeamsRequest { organization: Some("default".into()) }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert!(teams.teams.is_empty(), "{teams:?}");
    assert_eq!(c.get_team(authed(v1::GetTeamRequest { team: "pay".into() }, ADMIN)).await.unwrap().into_inner(), team);
    let projects =
        c.list_projects(authed(v1::ListProjectsRequest { team: Some(team.id.clone()) }, ADMIN)).await.unwrap();
    assert_eq!(projects.into_inner().projects, std::slice::from_ref(&project));
    assert_eq!(
        c.get_project(authed(v1::GetProjectRequest { project: "web".into() }, ADMIN)).await.unwrap().into_inner(),
        project
    );
    assert_status(
        c.create_team(authed(v1::CreateTeamRequest { name: "x".repeat(200), organization: None }, ADMIN)).await,
        Code::InvalidArgument,
        "name",
    );
    assert_status(
        c.create_project(authed(v1::CreateProjectRequest { name: "p".into(), team: "ghost".into() }, ADMIN)).await,
        Code::InvalidArgument,
        "team",
    );

    // Keys: partial updates with explicit clears, and the metadata filter.
    let key = |name: &str, principal: &str, tier: &str| v1::CreateKeyRequest {
        project: "web".into(),
        name: Some(name.into()),
        principal: Some(principal.into()),
        rpm: Some(10),
        metadata: [("tier".to_owned(), tier.to_owned())].into(),
        ..Default::default()
    };
    let k1 = c.create_key(authed(key("k1", "acme:1", "gold"), ADMIN)).await.unwrap().into_inner().key.unwrap();
    c.create_key(authed(key("k2", "acme:2", "free"), ADMIN)).await.unwrap();
    let gold = v1::ListKeysRequest { metadata: [("tier".to_owned(), "gold".to_owned())].into(), ..Default::default() };
    let listed = c.list_keys(authed(gold, ADMIN)).await.unwrap().into_inner();
    assert_eq!(listed.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), [k1.id.as_str()]);
    let update = v1::UpdateKeyRequest {
        id: k1.id.clone(),
        clear_rpm: true,
        tpm: Some(500),
        tags: Some(v1::StringList { values: vec!["env:prod".into()] }),
        expires_at: Some("2999-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    let updated = c.update_key(authed(update, ADMIN)).await.unwrap().into_inner();
    assert_eq!((updated.rpm, updated.tpm, updated.tags.as_slice()), (None, Some(500), &["env:prod".to_owned()][..]));
    assert_eq!((updated.name.as_deref(), updated.metadata.get("tier").map(String::as_str)), (Some("k1"), Some("gold")));
    let cleared = v1::UpdateKeyRequest {
        id: k1.id.clone(),
        clear_expires_at: true,
        clear_name: true,
        metadata: Some(v1::StringMap::default()),
        ..Default::default()
    };
    let cleared = c.update_key(authed(cleared, ADMIN)).await.unwrap().into_inner();
    assert_eq!((cleared.expires_at, cleared.name, cleared.metadata.len()), (None, None, 0));
    let both =
        v1::UpdateKeyRequest { id: k1.id.clone(), name: Some("n".into()), clear_name: true, ..Default::default() };
    assert_status(c.update_key(authed(both, ADMIN)).await, Code::InvalidArgument, "name");
    let bad_time = v1::UpdateKeyRequest { id: k1.id.clone(), expires_at: Some("soon".into()), ..Default::default() };
    assert_status(c.update_key(authed(bad_time, ADMIN)).await, Code::InvalidArgument, "expires_at");
    let nope = v1::UpdateKeyRequest { id: "key_nope".into(), ..Default::default() };
    assert_status(c.update_key(authed(nope, ADMIN)).await, Code::NotFound, "key_nope");

    // Principals.
    let page = c
        .list_principals(authed(v1::ListPrincipalsRequest { limit: 1, ..Default::default() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((page.principals.len(), page.next_after.as_deref()), (1, Some("acme:1")));
    let p = c.get_principal(authed(v1::GetPrincipalRequest { id: "acme:1".into() }, ADMIN)).await.unwrap().into_inner();
    assert_eq!((p.keys_active, p.keys_revoked, p.project_ids.as_slice()), (1, 0, &[project.id.clone()][..]));
    let revoked = c
        .revoke_principal_keys(authed(v1::RevokePrincipalKeysRequest { id: "acme:1".into() }, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.revoked_key_ids, std::slice::from_ref(&k1.id));
    let p = c.get_principal(authed(v1::GetPrincipalRequest { id: "acme:1".into() }, ADMIN)).await.unwrap().into_inner();
    assert_eq!((p.keys_active, p.keys_revoked), (0, 1));
    assert_status(
        c.get_principal(authed(v1::GetPrincipalRequest { id: "acme:404".into() }, ADMIN)).await,
        Code::NotFound,
        "acme:404",
    );
}

#[tokio::test]
async fn the_new_admin_rpcs_refuse_missing_weak_and_out_of_tenancy_tokens() {
    let t = crate::tokens::Tenants::start().await;
    let mut c = client(&t.cp).await;
    // No token, a wrong one.
    assert_status(
        c.list_providers(tonic::Request::new(v1::ListProvidersRequest {})).await,
        Code::Unauthenticated,
        "admin token",
    );
    assert_status(
        c.list_teams(authed(v1::ListTeamsRequest::default(), "wrong-token-0123456789")).await,
        Code::Unauthenticated,
        "admin token",
    );
    // A token without the scope is told which one it lacks.
    let (_, reader) = t.mint(serde_json::json!({"name": "r", "scopes": ["keys:read"]})).await;
    let provider = v1::CreateProviderRequest { name: "p".into(), kind: "mock".into(), ..Default::default() };
    assert_status(c.create_provider(authed(provider, &reader)).await, Code::PermissionDenied, "providers:write");
    let update = v1::UpdateKeyRequest { id: t.ka.clone(), rpm: Some(1), ..Default::default() };
    assert_status(c.update_key(authed(update, &reader)).await, Code::PermissionDenied, "keys:write");
    let org = v1::CreateOrganizationRequest { name: "o".into() };
    assert_status(c.create_organization(authed(org, &reader)).await, Code::PermissionDenied, "scope admin");

    // A token bound to project pa sees pb and its key as missing, and lists only its own.
    let (_, bound) = t.mint(serde_json::json!({"name": "b", "scopes": ["keys:write"], "project": "pa"})).await;
    assert_status(
        c.get_project(authed(v1::GetProjectRequest { project: t.pb.clone() }, &bound)).await,
        Code::NotFound,
        &t.pb,
    );
    let theirs = v1::UpdateKeyRequest { id: t.kb.clone(), rpm: Some(1), ..Default::default() };
    assert_status(c.update_key(authed(theirs, &bound)).await, Code::NotFound, &t.kb);
    let projects = c.list_projects(authed(v1::ListProjectsRequest::default(), &bound)).await.unwrap().into_inner();
    assert_eq!(projects.projects.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [t.pa.as_str()]);
    let ours = v1::UpdateKeyRequest { id: t.ka.clone(), rpm: Some(7), ..Default::default() };
    assert_eq!(c.update_key(authed(ours, &bound)).await.unwrap().into_inner().rpm, Some(7));
    let global = v1::GetProviderRequest { provider: "anything".into() };
    assert_status(c.get_provider(authed(global, &bound)).await, Code::PermissionDenied, "providers:write");
}
