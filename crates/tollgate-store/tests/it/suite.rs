//! The conformance suite: every backend must pass every test here unchanged.

use crate::backends::TestDb;
use serde_json::json;
use std::collections::BTreeMap;
use tollgate_core::{
    BudgetId, ErrorCode, KeyId, ModelId, Money, OnBreach, OrgId, ProjectId, ProviderId, ScopeKind, ServiceError,
    TeamId, Timestamp, TokenId, Window,
};
use tollgate_metering::{Attempt, LedgerEntry, LedgerSink, SinkError, Usage, UsageSource};
use tollgate_store::{
    AdminTokenRecord, AliasRecord, AuditFilter, AuditRecord, BudgetFilter, BudgetRecord, DeploymentPricing,
    DeploymentRecord, KeyFilter, KeyRecord, ModelRecord, OrgRecord, ProjectRecord, ProviderRecord, RoutingPolicyRecord,
    Store, StoreError, TeamRecord,
};

// ---------------------------------------------------------------- fixtures

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

/// A key with every optional field empty.
fn bare_key(id: &str, project: &ProjectId, hash: &str) -> KeyRecord {
    KeyRecord {
        id: KeyId::new(id),
        project_id: project.clone(),
        name: None,
        principal: None,
        key_hash: hash.to_owned(),
        key_hint: "tg_…0000".to_owned(),
        previous_key_hash: None,
        previous_valid_until: None,
        status: "active".to_owned(),
        expires_at: None,
        models_allowed: Vec::new(),
        rpm: None,
        tpm: None,
        max_concurrency: None,
        metadata: BTreeMap::new(),
        tags: Vec::new(),
        created_at: at(1_700_000_000_000),
        updated_at: at(1_700_000_000_000),
        rotated_at: None,
        revoked_at: None,
    }
}

/// A key with every optional field set.
fn full_key(id: &str, project: &ProjectId, hash: &str) -> KeyRecord {
    KeyRecord {
        name: Some("checkout service".to_owned()),
        principal: Some("acme:user-42".to_owned()),
        previous_key_hash: Some(format!("{hash}-old")),
        previous_valid_until: Some(at(1_700_000_600_001)),
        status: "revoked".to_owned(),
        expires_at: Some(at(1_800_000_000_999)),
        models_allowed: vec!["gpt-4o*".to_owned(), "claude-sonnet-4".to_owned()],
        rpm: Some(600),
        tpm: Some(1_000_000),
        max_concurrency: Some(8),
        metadata: BTreeMap::from([
            ("customer".to_owned(), "acme".to_owned()),
            ("tier".to_owned(), "gold ✨".to_owned()),
        ]),
        tags: vec!["env:prod".to_owned(), "feature/chat_v2.1-beta".to_owned()],
        created_at: at(1_700_000_000_123),
        updated_at: at(1_700_000_500_456),
        rotated_at: Some(at(1_700_000_400_789)),
        revoked_at: Some(at(1_700_000_500_456)),
        ..bare_key(id, project, hash)
    }
}

fn budget(id: &str, scope: ScopeKind, scope_id: &str) -> BudgetRecord {
    BudgetRecord {
        id: BudgetId::new(id),
        scope,
        scope_id: scope_id.to_owned(),
        limit_nanos: 25_000_000_000,
        limit_tokens: None,
        window: Window::Month,
        on_breach: OnBreach::Block,
        alert_thresholds: vec![500, 800, 1000],
        epoch: 0,
        temporary_increase: 0,
        temporary_increase_until: None,
        last_reset_at: None,
        created_at: at(1_700_000_000_001),
        updated_at: at(1_700_000_000_002),
    }
}

fn provider(id: &str, name: &str) -> ProviderRecord {
    ProviderRecord {
        id: ProviderId::new(id),
        name: name.to_owned(),
        kind: "openai".to_owned(),
        base_url: "https://api.openai.com/v1".to_owned(),
        api_key_ciphertext: "v1:bm9uY2U=:Y2lwaGVydGV4dA==".to_owned(),
        api_key_hint: "sk-…abcd".to_owned(),
        rpm: Some(10_000),
        tpm: None,
        priority: -3,
        extra: json!({"organization": "org-1", "headers": {"x-a": [1, 2.5, null, true]}}),
        created_at: at(1_700_000_000_010),
        updated_at: at(1_700_000_000_020),
    }
}

fn model(id: &str, name: &str) -> ModelRecord {
    ModelRecord {
        id: ModelId::new(id),
        name: name.to_owned(),
        deployments: vec![
            DeploymentRecord {
                provider: "openai".to_owned(),
                model: "gpt-4o-2024-08-06".to_owned(),
                priority: 0,
                weight: 70,
                pricing: None,
            },
            DeploymentRecord {
                provider: "azure".to_owned(),
                model: "gpt-4o".to_owned(),
                priority: 2,
                weight: 0,
                pricing: Some(DeploymentPricing {
                    input_per_mtok: 2_000_000_000,
                    output_per_mtok: 8_000_000_000,
                    cached_input_per_mtok: None,
                    cache_write_per_mtok: Some(1),
                }),
            },
        ],
        input_per_mtok: Some(2_500_000_000),
        output_per_mtok: Some(10_000_000_000),
        cached_input_per_mtok: None,
        cache_write_per_mtok: Some(3_125_000_000),
        price_source: Some("catalog:2025-11-24".to_owned()),
        max_output_tokens: Some(16_384),
        created_at: at(1_700_000_000_030),
        updated_at: at(1_700_000_000_040),
    }
}

fn alias(name: &str, target: &str) -> AliasRecord {
    AliasRecord { name: name.to_owned(), target_model: target.to_owned(), created_at: at(1_700_000_000_050) }
}

fn policy(id: &str, scope: &str, scope_id: Option<&str>) -> RoutingPolicyRecord {
    RoutingPolicyRecord {
        id: id.to_owned(),
        scope: scope.to_owned(),
        scope_id: scope_id.map(str::to_owned),
        policy: json!({"strategy": "weighted", "max_attempts": 4, "backoff": {"base_ms": 10, "max_ms": 100},
                       "retry_on": ["429", "5xx"]}),
        created_at: at(1_700_000_000_060),
        updated_at: at(1_700_000_000_070),
    }
}

fn audit(id: &str, at_ms: i64, target_kind: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        id: id.to_owned(),
        at: at(at_ms),
        actor: "tok_admin".to_owned(),
        action: format!("{target_kind}.create"),
        target_kind: target_kind.to_owned(),
        target_id: format!("{target_kind}_{id}"),
        metadata: json!({"n": at_ms, "tags": ["a", "b"]}),
        prev_hash: format!("prev-{id}"),
        hash: format!("hash-{id}"),
    }
}

fn admin_token(
    id: &str,
    name: &str,
    hash: &str,
    scopes: &[String],
    team: Option<&TeamId>,
    project: Option<&ProjectId>,
) -> AdminTokenRecord {
    AdminTokenRecord {
        id: TokenId::new(id),
        name: name.to_owned(),
        token_hash: hash.to_owned(),
        scopes: scopes.to_vec(),
        team_id: team.cloned(),
        project_id: project.cloned(),
        created_at: Timestamp::now(),
        revoked_at: None,
        expires_at: None,
        hint: String::new(),
    }
}

/// An org, a team in it and a project in that team.
async fn tenancy(store: &Store, suffix: &str) -> (OrgRecord, TeamRecord, ProjectRecord) {
    let org = store.ensure_org(&format!("org-{suffix}")).await.unwrap();
    let (team, _) = store.create_team(&org.id, &format!("team-{suffix}")).await.unwrap();
    let (project, _) = store.create_project(&team.id, &format!("project-{suffix}")).await.unwrap();
    (org, team, project)
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(e @ StoreError::Conflict { .. }) => {
            assert_eq!(e.code(), ErrorCode::Conflict);
            e.to_string()
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, want_kind: &str) {
    match r {
        Err(e @ StoreError::NotFound { kind, .. }) => {
            assert_eq!(kind, want_kind, "{e}");
            assert_eq!(e.code(), ErrorCode::NotFound);
        }
        other => panic!("expected not found, got {other:?}"),
    }
}

fn ids(keys: &[KeyRecord]) -> Vec<&str> {
    keys.iter().map(|k| k.id.as_str()).collect()
}

// ---------------------------------------------------------------- tests

pub(crate) async fn fresh_database_is_empty_at_revision_zero(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.revision().await.unwrap(), 0);
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.revision, 0);
    assert!(snap.orgs.is_empty() && snap.teams.is_empty() && snap.projects.is_empty());
    assert!(snap.providers.is_empty() && snap.models.is_empty());
    assert!(snap.keys.is_empty() && snap.budgets.is_empty());
    assert!(snap.aliases.is_empty() && snap.routing_policies.is_empty());
    assert!(store.last_audit().await.unwrap().is_none());
    assert!(store.list_providers().await.unwrap().is_empty());
}

pub(crate) async fn every_record_round_trips_field_for_field(db: &TestDb) {
    let store = &db.store;

    let org = store.ensure_org("acme").await.unwrap();
    assert_eq!(org.name, "acme");
    assert!(org.id.as_str().starts_with("org_"), "{:?}", org.id);
    let (team, _) = store.create_team(&org.id, "payments").await.unwrap();
    assert_eq!((team.org_id.clone(), team.name.as_str()), (org.id.clone(), "payments"));
    assert!(team.id.as_str().starts_with("team_"));
    let (project, _) = store.create_project(&team.id, "checkout").await.unwrap();
    assert_eq!(project.org_id, org.id);
    assert_eq!(project.team_id, team.id);
    assert!(project.id.as_str().starts_with("proj_"));
    assert_eq!(store.ensure_org("acme").await.unwrap(), org);
    assert_eq!(store.find_team(team.id.as_str()).await.unwrap(), Some(team.clone()));
    assert_eq!(store.find_project(project.id.as_str()).await.unwrap(), Some(project.clone()));

    let prov = provider("prov_1", "openai");
    let mut prov2 = provider("prov_2", "mock");
    prov2.rpm = None;
    prov2.tpm = Some(5);
    prov2.extra = json!({});
    store.create_provider(&prov).await.unwrap();
    store.create_provider(&prov2).await.unwrap();
    assert_eq!(store.find_provider("prov_1").await.unwrap(), Some(prov.clone()));
    assert_eq!(store.list_providers().await.unwrap(), vec![prov2.clone(), prov.clone()], "ordered by name");

    let m = model("model_1", "gpt-4o");
    let mut unpriced = model("model_2", "local");
    unpriced.deployments.clear();
    unpriced.input_per_mtok = None;
    unpriced.output_per_mtok = None;
    unpriced.max_output_tokens = None;
    unpriced.cached_input_per_mtok = Some(0);
    unpriced.cache_write_per_mtok = None;
    unpriced.price_source = None;
    store.create_model(&m).await.unwrap();
    store.create_model(&unpriced).await.unwrap();
    assert_eq!(store.find_model("model_1").await.unwrap(), Some(m.clone()));
    assert_eq!(store.find_model("local").await.unwrap(), Some(unpriced.clone()));
    assert_eq!(store.list_models().await.unwrap(), vec![m.clone(), unpriced.clone()], "ordered by name");

    store.create_alias(&alias("fast", "gpt-4o")).await.unwrap();
    assert_eq!(store.find_alias("fast").await.unwrap(), Some(alias("fast", "gpt-4o")));
    assert_eq!(store.find_alias("gpt-4o").await.unwrap(), None);
    let team_policy = policy("rpol_2", "team", Some(team.id.as_str()));
    let default_policy = RoutingPolicyRecord { policy: json!({}), ..policy("rpol_1", "default", None) };
    store.create_routing_policy(&team_policy).await.unwrap();
    store.create_routing_policy(&default_policy).await.unwrap();
    assert_eq!(store.get_routing_policy("rpol_2").await.unwrap(), Some(team_policy.clone()));
    assert_eq!(store.get_routing_policy("rpol_9").await.unwrap(), None);
    assert_eq!(store.list_routing_policies().await.unwrap(), vec![default_policy.clone(), team_policy.clone()]);

    let full = full_key("key_full", &project.id, "aa11");
    let bare = bare_key("key_bare", &project.id, "bb22");
    let key_budget = budget("bud_key", ScopeKind::VirtualKey, "key_full");
    let mut org_budget = budget("bud_org", ScopeKind::Organization, org.id.as_str());
    org_budget.window = Window::Total;
    org_budget.on_breach = OnBreach::Warn;
    org_budget.alert_thresholds = Vec::new();
    org_budget.limit_nanos = i64::MAX;
    let mut team_budget = budget("bud_team", ScopeKind::Team, team.id.as_str());
    team_budget.limit_nanos = 0;
    team_budget.limit_tokens = Some(i64::MAX);
    team_budget.epoch = 7;
    team_budget.temporary_increase = 250_000;
    team_budget.temporary_increase_until = Some(at(1_900_000_000_321));
    store.create_key(&full, Some(&key_budget)).await.unwrap();
    store.create_key(&bare, None).await.unwrap();
    store.create_budget(&org_budget).await.unwrap();
    store.create_budget(&team_budget).await.unwrap();
    assert_eq!(store.get_budget(&team_budget.id).await.unwrap(), Some(team_budget.clone()));
    assert_eq!(store.get_budget(&org_budget.id).await.unwrap(), Some(org_budget.clone()));
    assert_eq!(store.get_budget(&BudgetId::new("bud_nope")).await.unwrap(), None);
    assert_eq!(store.find_org(org.id.as_str()).await.unwrap(), Some(org.clone()));
    assert_eq!(store.find_org("acme").await.unwrap(), Some(org.clone()));
    assert_eq!(store.find_org("nope").await.unwrap(), None);
    assert_eq!(store.get_key(&full.id).await.unwrap(), Some(full.clone()));
    assert_eq!(store.get_key(&bare.id).await.unwrap(), Some(bare.clone()));
    assert_eq!(store.list_budgets_for(ScopeKind::VirtualKey, "key_full").await.unwrap(), vec![key_budget.clone()]);
    assert_eq!(
        store.list_budgets_for(ScopeKind::Organization, org.id.as_str()).await.unwrap(),
        vec![org_budget.clone()]
    );
    assert!(store.list_budgets_for(ScopeKind::Team, org.id.as_str()).await.unwrap().is_empty());

    let scopes = vec!["keys:write".to_owned(), "usage:read".to_owned()];
    let before = Timestamp::now();
    store
        .create_admin_token(&admin_token(
            "tok_1",
            "billing backend",
            "cafe01",
            &scopes,
            Some(&team.id),
            Some(&project.id),
        ))
        .await
        .unwrap();
    store.create_admin_token(&admin_token("tok_2", "root", "cafe02", &[], None, None)).await.unwrap();
    let tok = store.find_admin_token_by_hash("cafe01").await.unwrap().unwrap();
    assert_eq!(tok.id, TokenId::new("tok_1"));
    assert_eq!(tok.name, "billing backend");
    assert_eq!(tok.token_hash, "cafe01");
    assert_eq!(tok.scopes, scopes);
    assert_eq!(tok.team_id, Some(team.id.clone()));
    assert_eq!(tok.project_id, Some(project.id.clone()));
    assert!(tok.created_at >= before && tok.created_at <= Timestamp::now());
    assert_eq!(tok.revoked_at, None);
    let root = store.find_admin_token_by_hash("cafe02").await.unwrap().unwrap();
    assert_eq!((root.team_id, root.project_id, root.scopes), (None, None, vec![]));
    assert!(store.find_admin_token_by_hash("nope").await.unwrap().is_none());

    let mut ev = audit("ev_1", 1_700_000_000_777, "key");
    ev.seq = 12345; // ignored: the store assigns seq
    let seq = store.append_audit(&ev).await.unwrap();
    ev.seq = seq;
    assert_eq!(store.last_audit().await.unwrap(), Some(ev.clone()));

    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.revision, store.revision().await.unwrap());
    assert_eq!(snap.orgs, vec![org]);
    assert_eq!(snap.teams, vec![team]);
    assert_eq!(snap.projects, vec![project]);
    assert_eq!(snap.providers, vec![prov, prov2], "ordered by id");
    assert_eq!(snap.models, vec![m, unpriced]);
    assert_eq!(snap.keys, vec![bare, full], "ordered by id");
    assert_eq!(snap.budgets, vec![key_budget, org_budget, team_budget]);
    assert_eq!(snap.aliases, vec![alias("fast", "gpt-4o")]);
    assert_eq!(snap.routing_policies, vec![default_policy, team_policy], "ordered by id");
}

pub(crate) async fn each_config_write_bumps_revision_by_exactly_one(db: &TestDb) {
    let store = &db.store;
    let mut rev = store.revision().await.unwrap();
    #[track_caller]
    fn bumped(rev: &mut i64, got: i64, what: &str) {
        assert_eq!(got, *rev + 1, "{what}");
        *rev = got;
    }

    let org = store.ensure_org("acme").await.unwrap();
    bumped(&mut rev, store.revision().await.unwrap(), "ensure_org creating");
    store.ensure_org("acme").await.unwrap();
    assert_eq!(store.revision().await.unwrap(), rev, "ensure_org of an existing org does not bump");

    let (team, r) = store.create_team(&org.id, "t").await.unwrap();
    bumped(&mut rev, r, "create_team");
    let (project, r) = store.create_project(&team.id, "p").await.unwrap();
    bumped(&mut rev, r, "create_project");
    bumped(&mut rev, store.create_provider(&provider("prov_1", "openai")).await.unwrap(), "create_provider");
    bumped(&mut rev, store.create_model(&model("model_1", "gpt-4o")).await.unwrap(), "create_model");
    let k = bare_key("key_1", &project.id, "h1");
    bumped(
        &mut rev,
        store.create_key(&k, Some(&budget("bud_1", ScopeKind::VirtualKey, "key_1"))).await.unwrap(),
        "create_key with a budget bumps once",
    );
    bumped(&mut rev, store.create_key(&bare_key("key_2", &project.id, "h2"), None).await.unwrap(), "create_key");
    let mut revoked = k.clone();
    revoked.status = "revoked".to_owned();
    bumped(&mut rev, store.update_key(&revoked).await.unwrap(), "update_key");
    bumped(
        &mut rev,
        store.create_budget(&budget("bud_2", ScopeKind::Project, project.id.as_str())).await.unwrap(),
        "create_budget",
    );
    let mut b2 = budget("bud_2", ScopeKind::Project, project.id.as_str());
    b2.limit_nanos = 1;
    bumped(&mut rev, store.update_budget(&b2).await.unwrap().1, "update_budget");
    bumped(&mut rev, store.reset_budget(&b2.id, at(5)).await.unwrap().1, "reset_budget");
    bumped(&mut rev, store.delete_budget(&BudgetId::new("bud_1")).await.unwrap(), "delete_budget");
    bumped(
        &mut rev,
        store.create_admin_token(&admin_token("tok_1", "n", "th", &[], None, None)).await.unwrap(),
        "create_admin_token",
    );
    bumped(&mut rev, store.create_alias(&alias("fast", "gpt-4o")).await.unwrap(), "create_alias");
    bumped(&mut rev, store.delete_alias("fast").await.unwrap(), "delete_alias");
    let mut p = policy("rpol_1", "project", Some(project.id.as_str()));
    bumped(&mut rev, store.create_routing_policy(&p).await.unwrap(), "create_routing_policy");
    p.policy = json!({"max_attempts": 1});
    bumped(&mut rev, store.update_routing_policy(&p).await.unwrap().1, "update_routing_policy");
    bumped(&mut rev, store.delete_routing_policy("rpol_1").await.unwrap(), "delete_routing_policy");
    assert_eq!(store.revision().await.unwrap(), rev);

    store.append_audit(&audit("ev_1", 1, "key")).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), rev, "audit appends do not bump");

    assert_conflict(store.create_team(&org.id, "t").await);
    assert_conflict(store.create_model(&model("model_9", "gpt-4o")).await);
    assert_eq!(store.revision().await.unwrap(), rev, "failed writes do not bump");

    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.revision, rev);
    assert_eq!(snap.keys.len(), 2);
    assert_eq!(snap.keys[0].status, "revoked");
    assert_eq!(snap.budgets.len(), 1, "bud_1 was deleted");
    assert_eq!((snap.budgets[0].limit_nanos, snap.budgets[0].epoch), (1, 1));
}

pub(crate) async fn snapshot_revision_matches_its_rows_under_concurrent_writes(db: &TestDb) {
    let store = db.store.clone();
    let (_, _, project) = tenancy(&store, "s").await;
    let base_rev = store.revision().await.unwrap();
    const WRITES: i64 = 30;

    let writer = {
        let store = store.clone();
        let project = project.id.clone();
        tokio::spawn(async move {
            for i in 0..WRITES {
                store.create_key(&bare_key(&format!("key_{i:03}"), &project, &format!("h{i}")), None).await.unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    loop {
        let done = writer.is_finished();
        let snap = store.snapshot().await.unwrap();
        assert_eq!(snap.keys.len() as i64, snap.revision - base_rev, "a snapshot mixes revisions");
        seen.push(snap.revision);
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let last = store.snapshot().await.unwrap();
    assert_eq!(last.revision, base_rev + WRITES);
    assert_eq!(last.keys.len() as i64, WRITES);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "revisions seen go backwards: {seen:?}");
}

pub(crate) async fn concurrent_writers_get_distinct_consecutive_revisions(db: &TestDb) {
    let store = db.store.clone();
    let org = store.ensure_org("acme").await.unwrap();
    let base = store.revision().await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let org = org.id.clone();
            tokio::spawn(async move { store.create_team(&org, &format!("team-{i}")).await.unwrap().1 })
        })
        .collect();
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs.sort_unstable();
    assert_eq!(revs, ((base + 1)..=(base + 16)).collect::<Vec<_>>());
    assert_eq!(store.snapshot().await.unwrap().teams.len(), 16);
}

pub(crate) async fn ensure_org_is_idempotent_even_when_racing(db: &TestDb) {
    let store = db.store.clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ensure_org("racy").await.unwrap() })
        })
        .collect();
    let mut orgs = Vec::new();
    for t in tasks {
        orgs.push(t.await.unwrap());
    }
    assert!(orgs.windows(2).all(|w| w[0] == w[1]), "{orgs:?}");
    assert_eq!(store.revision().await.unwrap(), 1, "created once, bumped once");
    assert_eq!(store.snapshot().await.unwrap().orgs, vec![orgs[0].clone()]);
}

pub(crate) async fn unique_violations_are_conflicts(db: &TestDb) {
    let store = &db.store;
    let (org, team, project) = tenancy(store, "a").await;
    let other_org = store.ensure_org("other").await.unwrap();

    let msg = assert_conflict(store.create_team(&org.id, "team-a").await);
    assert!(msg.contains("team-a"), "{msg}");
    store.create_team(&other_org.id, "team-a").await.unwrap();
    assert_conflict(store.create_project(&team.id, "project-a").await);

    store.create_provider(&provider("prov_1", "openai")).await.unwrap();
    let msg = assert_conflict(store.create_provider(&provider("prov_2", "openai")).await);
    assert!(msg.contains("named \"openai\""), "{msg}");
    let msg = assert_conflict(store.create_provider(&provider("prov_1", "other")).await);
    assert!(msg.contains("prov_1"), "{msg}");

    store.create_model(&model("model_1", "gpt-4o")).await.unwrap();
    assert_conflict(store.create_model(&model("model_2", "gpt-4o")).await);
    assert_conflict(store.create_model(&model("model_1", "gpt-5")).await);

    store.create_key(&bare_key("key_1", &project.id, "hash1"), None).await.unwrap();
    let msg = assert_conflict(store.create_key(&bare_key("key_2", &project.id, "hash1"), None).await);
    assert!(msg.contains("key hash"), "{msg}");
    assert!(!msg.contains("hash1"), "conflict text must not echo the hash: {msg}");
    assert_conflict(store.create_key(&bare_key("key_1", &project.id, "hash2"), None).await);
    store.create_key(&bare_key("key_3", &project.id, "hash3"), None).await.unwrap();
    let mut stolen = bare_key("key_3", &project.id, "hash1");
    stolen.updated_at = at(1);
    assert_conflict(store.update_key(&stolen).await);
    assert_eq!(store.get_key(&KeyId::new("key_3")).await.unwrap().unwrap().key_hash, "hash3");

    store.create_budget(&budget("bud_1", ScopeKind::Team, team.id.as_str())).await.unwrap();
    assert_conflict(store.create_budget(&budget("bud_1", ScopeKind::Project, "x")).await);

    store.create_admin_token(&admin_token("tok_1", "a", "th1", &[], None, None)).await.unwrap();
    assert_conflict(store.create_admin_token(&admin_token("tok_2", "b", "th1", &[], None, None)).await);
    assert_conflict(store.create_admin_token(&admin_token("tok_1", "c", "th3", &[], None, None)).await);

    store.append_audit(&audit("ev_1", 1, "key")).await.unwrap();
    assert_conflict(store.append_audit(&audit("ev_1", 2, "key")).await);
}

pub(crate) async fn missing_parents_are_not_found(db: &TestDb) {
    let store = &db.store;
    let rev = store.revision().await.unwrap();
    assert_not_found(store.create_team(&OrgId::new("org_missing"), "t").await, "organization");
    assert_not_found(store.create_project(&TeamId::new("team_missing"), "p").await, "team");
    let k = bare_key("key_1", &ProjectId::new("proj_missing"), "h");
    assert_not_found(store.create_key(&k, None).await, "project");
    assert_not_found(
        store.create_admin_token(&admin_token("tok_1", "n", "h", &[], Some(&TeamId::new("team_missing")), None)).await,
        "team",
    );
    assert_not_found(
        store
            .create_admin_token(&admin_token("tok_1", "n", "h", &[], None, Some(&ProjectId::new("proj_missing"))))
            .await,
        "project",
    );
    assert_eq!(store.revision().await.unwrap(), rev);
    assert!(store.get_key(&k.id).await.unwrap().is_none());
}

pub(crate) async fn find_accepts_id_or_name_and_refuses_ambiguous_names(db: &TestDb) {
    let store = &db.store;
    let (org, team, project) = tenancy(store, "a").await;
    assert_eq!(store.find_team("team-a").await.unwrap(), Some(team.clone()));
    assert_eq!(store.find_team(team.id.as_str()).await.unwrap(), Some(team.clone()));
    assert_eq!(store.find_project("project-a").await.unwrap(), Some(project.clone()));
    assert!(store.find_team("nope").await.unwrap().is_none());
    assert!(store.find_project("nope").await.unwrap().is_none());

    // The same team name in a second org makes the bare name ambiguous; ids still work.
    let org_b = store.ensure_org("org-b").await.unwrap();
    assert_ne!(org_b.id, org.id);
    let (team_b, _) = store.create_team(&org_b.id, "team-a").await.unwrap();
    assert_conflict(store.find_team("team-a").await);
    assert_eq!(store.find_team(team_b.id.as_str()).await.unwrap(), Some(team_b.clone()));
    let (project_b, _) = store.create_project(&team_b.id, "project-a").await.unwrap();
    assert_eq!(project_b.org_id, org_b.id);
    assert_conflict(store.find_project("project-a").await);
    assert_eq!(store.find_project(project_b.id.as_str()).await.unwrap(), Some(project_b));

    store.create_provider(&provider("prov_1", "openai")).await.unwrap();
    assert_eq!(store.find_provider("openai").await.unwrap().unwrap().id, ProviderId::new("prov_1"));
    assert!(store.find_provider("anthropic").await.unwrap().is_none());
    store.create_model(&model("model_1", "gpt-4o")).await.unwrap();
    assert_eq!(store.find_model("gpt-4o").await.unwrap().unwrap().id, ModelId::new("model_1"));
    assert!(store.find_model("gpt-5").await.unwrap().is_none());
}

/// Two projects; keys `key_00`..`key_09`. Even keys are in project A, odd in B; keys
/// 0..5 belong to principal `alice`; key_03 and key_07 are revoked; metadata `tier` is
/// `gold` for multiples of 3 and `silver` otherwise, `env=prod` on keys below 6.
async fn key_fixture(store: &Store) -> (ProjectId, ProjectId) {
    let (_, team, a) = tenancy(store, "a").await;
    let (b, _) = store.create_project(&team.id, "project-b").await.unwrap();
    // Inserted out of id order on purpose.
    for i in [7, 2, 9, 0, 4, 1, 8, 3, 6, 5] {
        let project = if i % 2 == 0 { &a.id } else { &b.id };
        let mut k = bare_key(&format!("key_{i:02}"), project, &format!("hash{i}"));
        if i < 5 {
            k.principal = Some("alice".to_owned());
        }
        if i == 3 || i == 7 {
            k.status = "revoked".to_owned();
        }
        k.metadata.insert("tier".to_owned(), if i % 3 == 0 { "gold" } else { "silver" }.to_owned());
        if i < 6 {
            k.metadata.insert("env".to_owned(), "prod".to_owned());
        }
        if i % 4 == 0 {
            k.tags = vec!["env:prod".to_owned(), "team:search".to_owned()];
        }
        store.create_key(&k, None).await.unwrap();
    }
    (a.id, b.id)
}

pub(crate) async fn list_keys_filters_by_project_principal_status_and_metadata(db: &TestDb) {
    let store = &db.store;
    let (a, b) = key_fixture(store).await;
    let list = |f: KeyFilter| async move { store.list_keys(&f).await.unwrap() };
    let md = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();

    let all = list(KeyFilter::default()).await;
    assert_eq!(
        ids(&all),
        ["key_00", "key_01", "key_02", "key_03", "key_04", "key_05", "key_06", "key_07", "key_08", "key_09"]
    );
    let got = list(KeyFilter { project_id: Some(a.clone()), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_02", "key_04", "key_06", "key_08"]);
    let got =
        list(KeyFilter { project_id: Some(b.clone()), principal: Some("alice".into()), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_01", "key_03"]);
    let got = list(KeyFilter { status: Some("revoked".into()), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_03", "key_07"]);
    let got = list(KeyFilter { metadata: md(&[("tier", "gold")]), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_03", "key_06", "key_09"]);
    let got = list(KeyFilter { metadata: md(&[("tier", "gold"), ("env", "prod")]), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_03"]);
    let got = list(KeyFilter {
        project_id: Some(b),
        status: Some("active".into()),
        metadata: md(&[("tier", "gold")]),
        ..KeyFilter::default()
    })
    .await;
    assert_eq!(ids(&got), ["key_09"]);
    assert!(list(KeyFilter { metadata: md(&[("tier", "Gold")]), ..KeyFilter::default() }).await.is_empty());
    assert!(list(KeyFilter { metadata: md(&[("nope", "gold")]), ..KeyFilter::default() }).await.is_empty());
    let tag = |t: &str| Some(t.to_owned());
    let got = list(KeyFilter { tag: tag("team:search"), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_04", "key_08"]);
    assert_eq!(got[0].tags, ["env:prod", "team:search"]);
    let got =
        list(KeyFilter { tag: tag("team:search"), metadata: md(&[("env", "prod")]), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_04"]);
    assert!(list(KeyFilter { tag: tag("team"), ..KeyFilter::default() }).await.is_empty());
    assert!(list(KeyFilter { principal: Some("bob".into()), ..KeyFilter::default() }).await.is_empty());
    assert!(list(KeyFilter { project_id: Some(ProjectId::new("proj_x")), ..KeyFilter::default() }).await.is_empty());
}

pub(crate) async fn list_keys_paginates_by_id_with_and_without_metadata_filter(db: &TestDb) {
    let store = &db.store;
    let (a, _) = key_fixture(store).await;

    async fn pages(store: &Store, mut f: KeyFilter) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        loop {
            let page = store.list_keys(&f).await.unwrap();
            assert!(page.len() as u64 <= f.limit);
            let Some(last) = page.last() else { break };
            f.after = Some(last.id.clone());
            out.push(page.iter().map(|k| k.id.to_string()).collect());
        }
        out
    }

    let got = pages(store, KeyFilter { limit: 4, ..KeyFilter::default() }).await;
    assert_eq!(
        got,
        [
            vec!["key_00", "key_01", "key_02", "key_03"],
            vec!["key_04", "key_05", "key_06", "key_07"],
            vec!["key_08", "key_09"]
        ]
    );
    let got = pages(store, KeyFilter { project_id: Some(a), limit: 2, ..KeyFilter::default() }).await;
    assert_eq!(got, [vec!["key_00", "key_02"], vec!["key_04", "key_06"], vec!["key_08"]]);
    let silver = vec![("tier".to_owned(), "silver".to_owned())];
    let got = pages(store, KeyFilter { metadata: silver.clone(), limit: 2, ..KeyFilter::default() }).await;
    assert_eq!(got, [vec!["key_01", "key_02"], vec!["key_04", "key_05"], vec!["key_07", "key_08"]]);

    let f = KeyFilter { after: Some(KeyId::new("key_05")), metadata: silver, ..KeyFilter::default() };
    assert_eq!(ids(&store.list_keys(&f).await.unwrap()), ["key_07", "key_08"]);
    let f = KeyFilter { after: Some(KeyId::new("key_050")), ..KeyFilter::default() };
    assert_eq!(ids(&store.list_keys(&f).await.unwrap()), ["key_06", "key_07", "key_08", "key_09"]);
    assert!(store.list_keys(&KeyFilter { limit: 0, ..KeyFilter::default() }).await.unwrap().is_empty());
    assert_eq!(KeyFilter::default().limit, KeyFilter::DEFAULT_LIMIT);
    assert_eq!(store.list_keys(&KeyFilter { limit: u64::MAX, ..KeyFilter::default() }).await.unwrap().len(), 10);
}

pub(crate) async fn list_keys_orders_ids_bytewise(db: &TestDb) {
    let store = &db.store;
    let (_, _, p) = tenancy(store, "o").await;
    for id in ["key_b", "key_B", "key_a", "key__", "key_A", "key_-1"] {
        store.create_key(&bare_key(id, &p.id, &format!("h{id}")), None).await.unwrap();
    }
    let mut want = vec!["key_b", "key_B", "key_a", "key__", "key_A", "key_-1"];
    want.sort_unstable();
    assert_eq!(ids(&store.list_keys(&KeyFilter::default()).await.unwrap()), want);
    let f = KeyFilter { after: Some(KeyId::new("key_B")), ..KeyFilter::default() };
    assert_eq!(ids(&store.list_keys(&f).await.unwrap()), ["key__", "key_a", "key_b"]);
}

pub(crate) async fn update_key_replaces_mutable_columns_only(db: &TestDb) {
    let store = &db.store;
    let (_, team, project) = tenancy(store, "u").await;
    let (other_project, _) = store.create_project(&team.id, "elsewhere").await.unwrap();
    let original = bare_key("key_1", &project.id, "old-hash");
    store.create_key(&original, None).await.unwrap();

    // Rotate: every mutable column changes; the id, project and creation time may not.
    let mut rotated = full_key("key_1", &other_project.id, "new-hash");
    rotated.previous_key_hash = Some("old-hash".to_owned());
    rotated.created_at = at(42);
    store.update_key(&rotated).await.unwrap();
    let stored = store.get_key(&original.id).await.unwrap().unwrap();
    let want = KeyRecord { project_id: project.id.clone(), created_at: original.created_at, ..rotated.clone() };
    assert_eq!(stored, want);

    // And back to empty optional columns: NULLs are written, not skipped.
    let mut cleared = bare_key("key_1", &project.id, "newer-hash");
    cleared.updated_at = at(1_800_000_000_000);
    store.update_key(&cleared).await.unwrap();
    assert_eq!(store.get_key(&original.id).await.unwrap().unwrap(), cleared);
    // The freed hash can be used again.
    store.create_key(&bare_key("key_2", &project.id, "old-hash"), None).await.unwrap();
}

pub(crate) async fn update_key_of_missing_key_is_not_found_and_changes_nothing(db: &TestDb) {
    let store = &db.store;
    let (_, _, project) = tenancy(store, "m").await;
    let rev = store.revision().await.unwrap();
    assert_not_found(store.update_key(&bare_key("key_ghost", &project.id, "h")).await, "key");
    assert_eq!(store.revision().await.unwrap(), rev);
    assert!(store.get_key(&KeyId::new("key_ghost")).await.unwrap().is_none());
}

pub(crate) async fn create_key_with_budget_is_atomic(db: &TestDb) {
    let store = &db.store;
    let (_, _, project) = tenancy(store, "b").await;
    store.create_budget(&budget("bud_taken", ScopeKind::Project, project.id.as_str())).await.unwrap();
    let rev = store.revision().await.unwrap();

    let k = bare_key("key_1", &project.id, "h1");
    assert_conflict(store.create_key(&k, Some(&budget("bud_taken", ScopeKind::VirtualKey, "key_1"))).await);
    assert!(store.get_key(&k.id).await.unwrap().is_none(), "the key must roll back with its budget");
    assert!(store.list_budgets_for(ScopeKind::VirtualKey, "key_1").await.unwrap().is_empty());
    assert_eq!(store.revision().await.unwrap(), rev);

    // A key conflict rolls the budget back too.
    store.create_key(&bare_key("key_2", &project.id, "h2"), None).await.unwrap();
    let rev = store.revision().await.unwrap();
    let dup = bare_key("key_3", &project.id, "h2");
    assert_conflict(store.create_key(&dup, Some(&budget("bud_3", ScopeKind::VirtualKey, "key_3"))).await);
    assert!(store.list_budgets_for(ScopeKind::VirtualKey, "key_3").await.unwrap().is_empty());
    assert_eq!(store.revision().await.unwrap(), rev);

    // The same key with a fresh budget id goes through, both rows at once.
    let b = budget("bud_1", ScopeKind::VirtualKey, "key_1");
    assert_eq!(store.create_key(&k, Some(&b)).await.unwrap(), rev + 1);
    assert_eq!(store.get_key(&k.id).await.unwrap(), Some(k));
    assert_eq!(store.list_budgets_for(ScopeKind::VirtualKey, "key_1").await.unwrap(), vec![b]);
}

pub(crate) async fn audit_is_listed_newest_first_with_filters_and_pages(db: &TestDb) {
    let store = &db.store;
    let mut appended = Vec::new();
    for (i, kind) in ["key", "budget", "key", "team", "key", "budget"].iter().enumerate() {
        let mut e = audit(&format!("ev_{i}"), 1_000 + i as i64 * 10, kind);
        e.seq = store.append_audit(&e).await.unwrap();
        appended.push(e);
    }
    assert!(appended.windows(2).all(|w| w[0].seq < w[1].seq), "seq increases");
    assert_eq!(store.last_audit().await.unwrap().as_ref(), appended.last());

    let all = store.list_audit(None, None, 100, None).await.unwrap();
    let newest_first: Vec<_> = appended.iter().rev().cloned().collect();
    assert_eq!(all, newest_first);

    let keys = store.list_audit(Some("key"), None, 100, None).await.unwrap();
    assert_eq!(keys.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ev_4", "ev_2", "ev_0"]);
    let recent = store.list_audit(None, Some(at(1_030)), 100, None).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ev_5", "ev_4", "ev_3"]);

    let page1 = store.list_audit(None, None, 2, None).await.unwrap();
    assert_eq!(page1, newest_first[..2]);
    let page2 = store.list_audit(None, None, 2, Some(page1[1].seq)).await.unwrap();
    assert_eq!(page2, newest_first[2..4]);
    let keys_before = store.list_audit(Some("key"), None, 100, Some(appended[4].seq)).await.unwrap();
    assert_eq!(keys_before.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ev_2", "ev_0"]);
    assert!(store.list_audit(None, None, 0, None).await.unwrap().is_empty());
    assert!(store.list_audit(Some("org"), None, 10, None).await.unwrap().is_empty());
}

pub(crate) async fn audit_is_filtered_by_actor_and_until_and_walked_oldest_first(db: &TestDb) {
    let store = &db.store;
    let mut appended = Vec::new();
    for (i, actor) in ["tok_a", "tok_b", "tok_a", "bootstrap"].iter().enumerate() {
        let mut e = audit(&format!("ev_{i}"), 1_000 + i as i64 * 10, "key");
        e.actor = (*actor).to_owned();
        e.seq = store.append_audit(&e).await.unwrap();
        appended.push(e);
    }
    let ids = |v: Vec<AuditRecord>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let by_a = AuditFilter { actor: Some("tok_a".into()), limit: 100, ..AuditFilter::default() };
    assert_eq!(ids(store.query_audit(&by_a).await.unwrap()), ["ev_2", "ev_0"]);
    let window = AuditFilter { since: Some(at(1_010)), until: Some(at(1_030)), limit: 100, ..AuditFilter::default() };
    assert_eq!(ids(store.query_audit(&window).await.unwrap()), ["ev_2", "ev_1"], "until is exclusive");

    assert_eq!(store.audit_chain(None, 100).await.unwrap(), appended, "oldest first");
    let rest = store.audit_chain(Some(appended[1].seq), 1).await.unwrap();
    assert_eq!(ids(rest), ["ev_2"]);
    assert!(store.audit_chain(Some(appended[3].seq), 100).await.unwrap().is_empty());
}

pub(crate) async fn admin_tokens_are_listed_and_revoked_once(db: &TestDb) {
    let store = &db.store;
    let (_, team, _) = tenancy(store, "tok").await;
    let mut t1 = admin_token("tok_1", "billing", "h1", &["keys:read".to_owned()], Some(&team.id), None);
    t1.expires_at = Some(at(9_000_000_000_000));
    t1.hint = "tga_AbCd…".into();
    t1.created_at = at(1_000);
    let mut t2 = admin_token("tok_2", "ops", "h2", &[], None, None);
    t2.created_at = at(2_000);
    store.create_admin_token(&t1).await.unwrap();
    store.create_admin_token(&t2).await.unwrap();
    assert_eq!(store.list_admin_tokens().await.unwrap(), vec![t1.clone(), t2.clone()]);
    assert_eq!(store.get_admin_token(&t1.id).await.unwrap(), Some(t1.clone()));
    assert!(store.get_admin_token(&TokenId::new("tok_x")).await.unwrap().is_none());

    let rev = store.revision().await.unwrap();
    let (revoked, bumped) = store.revoke_admin_token(&t1.id, at(5_000)).await.unwrap();
    assert_eq!((revoked.revoked_at, bumped), (Some(at(5_000)), Some(rev + 1)));
    let (again, bumped) = store.revoke_admin_token(&t1.id, at(6_000)).await.unwrap();
    assert_eq!((again.revoked_at, bumped), (Some(at(5_000)), None), "the first revocation stands");
    assert_not_found(store.revoke_admin_token(&TokenId::new("tok_x"), at(1)).await.map(|_| ()), "admin token");
    assert_eq!(store.find_admin_token_by_hash("h1").await.unwrap().unwrap().revoked_at, Some(at(5_000)));
}

pub(crate) async fn list_keys_filters_by_team(db: &TestDb) {
    let store = &db.store;
    let (_, team_a, proj_a) = tenancy(store, "a").await;
    let (_, team_b, proj_b) = tenancy(store, "b").await;
    let (second_a, _) = store.create_project(&team_a.id, "a2").await.unwrap();
    for (id, p) in [("key_1", &proj_a.id), ("key_2", &proj_b.id), ("key_3", &second_a.id)] {
        store.create_key(&bare_key(id, p, &format!("h{id}")), None).await.unwrap();
    }
    let ids = |v: Vec<KeyRecord>| v.into_iter().map(|k| k.id.to_string()).collect::<Vec<_>>();
    let of = |t: &TeamId| KeyFilter { team_id: Some(t.clone()), ..KeyFilter::default() };
    assert_eq!(ids(store.list_keys(&of(&team_a.id)).await.unwrap()), ["key_1", "key_3"]);
    assert_eq!(ids(store.list_keys(&of(&team_b.id)).await.unwrap()), ["key_2"]);
    let both = KeyFilter { project_id: Some(proj_b.id.clone()), ..of(&team_a.id) };
    assert!(store.list_keys(&both).await.unwrap().is_empty(), "the filters add up");
}

pub(crate) async fn reconnecting_keeps_data_and_reruns_no_migration(db: &TestDb) {
    let Some(url) = &db.url else {
        return; // an in-memory database does not outlive its connection
    };
    let store = &db.store;
    let (_, _, project) = tenancy(store, "r").await;
    store.create_key(&bare_key("key_1", &project.id, "h"), None).await.unwrap();
    let rev = store.revision().await.unwrap();

    let again = Store::connect(url).await.unwrap();
    assert_eq!(again.revision().await.unwrap(), rev);
    assert_eq!(again.snapshot().await.unwrap(), store.snapshot().await.unwrap());
}

// ---------------------------------------------------------------- budgets

fn budget_ids(budgets: &[BudgetRecord]) -> Vec<&str> {
    budgets.iter().map(|b| b.id.as_str()).collect()
}

pub(crate) async fn list_budgets_filters_by_scope_and_paginates_by_id(db: &TestDb) {
    let store = &db.store;
    // Inserted out of id order on purpose; ids differ in case to check bytewise order.
    let fixture = [
        ("bud_5", ScopeKind::Team, "team_a"),
        ("bud_1", ScopeKind::Project, "proj_a"),
        ("bud_B", ScopeKind::Team, "team_b"),
        ("bud_3", ScopeKind::Principal, "acme:user-1"),
        ("bud_a", ScopeKind::Team, "team_a"),
        ("bud_2", ScopeKind::Project, "team_a"),
    ];
    for (id, scope, scope_id) in fixture {
        store.create_budget(&budget(id, scope, scope_id)).await.unwrap();
    }
    let list = |f: BudgetFilter| async move { store.list_budgets(&f).await.unwrap() };

    let all = list(BudgetFilter::default()).await;
    assert_eq!(budget_ids(&all), ["bud_1", "bud_2", "bud_3", "bud_5", "bud_B", "bud_a"]);
    assert_eq!(all[0], budget("bud_1", ScopeKind::Project, "proj_a"), "rows come back whole");

    let teams = list(BudgetFilter { scope: Some(ScopeKind::Team), ..BudgetFilter::default() }).await;
    assert_eq!(budget_ids(&teams), ["bud_5", "bud_B", "bud_a"]);
    let team_a =
        list(BudgetFilter { scope: Some(ScopeKind::Team), scope_id: Some("team_a".into()), ..BudgetFilter::default() })
            .await;
    assert_eq!(budget_ids(&team_a), ["bud_5", "bud_a"]);
    // scope_id alone matches across scope kinds.
    let any_team_a = list(BudgetFilter { scope_id: Some("team_a".into()), ..BudgetFilter::default() }).await;
    assert_eq!(budget_ids(&any_team_a), ["bud_2", "bud_5", "bud_a"]);
    assert!(list(BudgetFilter { scope: Some(ScopeKind::VirtualKey), ..BudgetFilter::default() }).await.is_empty());

    let mut pages = Vec::new();
    let mut f = BudgetFilter { limit: 4, ..BudgetFilter::default() };
    loop {
        let page = store.list_budgets(&f).await.unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        f.after = Some(last.id.clone());
        pages.push(budget_ids(&page).into_iter().map(str::to_owned).collect::<Vec<_>>());
    }
    assert_eq!(pages, [vec!["bud_1", "bud_2", "bud_3", "bud_5"], vec!["bud_B", "bud_a"]]);
    let f = BudgetFilter { scope: Some(ScopeKind::Team), limit: 1, after: Some(BudgetId::new("bud_5")), ..f };
    assert_eq!(budget_ids(&list(f).await), ["bud_B"]);
    let f = BudgetFilter { after: Some(BudgetId::new("bud_20")), ..BudgetFilter::default() };
    assert_eq!(budget_ids(&list(f).await), ["bud_3", "bud_5", "bud_B", "bud_a"]);
    assert!(list(BudgetFilter { limit: 0, ..BudgetFilter::default() }).await.is_empty());
    assert_eq!(list(BudgetFilter { limit: u64::MAX, ..BudgetFilter::default() }).await.len(), 6);
    assert_eq!(BudgetFilter::default().limit, BudgetFilter::DEFAULT_LIMIT);
}

pub(crate) async fn update_budget_replaces_mutable_columns_only(db: &TestDb) {
    let store = &db.store;
    let original = budget("bud_1", ScopeKind::Project, "proj_1");
    store.create_budget(&original).await.unwrap();
    store.reset_budget(&original.id, at(1_700_000_000_100)).await.unwrap();
    let rev = store.revision().await.unwrap();

    // A money budget becomes a token budget with an increase; the scope, creation time,
    // epoch and last reset in the input are ignored.
    let changed = BudgetRecord {
        scope: ScopeKind::Team,
        scope_id: "team_other".into(),
        limit_nanos: 0,
        limit_tokens: Some(1_000_000),
        window: Window::Day,
        on_breach: OnBreach::Warn,
        alert_thresholds: vec![900],
        epoch: 99,
        last_reset_at: Some(at(5)),
        temporary_increase: 50_000,
        temporary_increase_until: Some(at(1_800_000_000_000)),
        created_at: at(1),
        updated_at: at(1_700_000_000_500),
        ..original.clone()
    };
    let (stored, r) = store.update_budget(&changed).await.unwrap();
    assert_eq!(r, rev + 1);
    let want = BudgetRecord {
        scope: original.scope,
        scope_id: original.scope_id.clone(),
        epoch: 1,
        last_reset_at: Some(at(1_700_000_000_100)),
        created_at: original.created_at,
        ..changed.clone()
    };
    assert_eq!(stored, want, "returned as stored");
    assert_eq!(store.get_budget(&original.id).await.unwrap(), Some(want.clone()));

    // And back: NULLs and zeros are written, not skipped.
    let back = BudgetRecord { epoch: 0, updated_at: at(1_700_000_000_600), ..original.clone() };
    let (stored, _) = store.update_budget(&back).await.unwrap();
    assert_eq!(stored, BudgetRecord { epoch: 1, last_reset_at: Some(at(1_700_000_000_100)), ..back });
    assert_eq!(stored.limit_tokens, None);
    assert_eq!(stored.temporary_increase_until, None);

    let rev = store.revision().await.unwrap();
    assert_not_found(store.update_budget(&budget("bud_ghost", ScopeKind::Team, "t")).await, "budget");
    assert_eq!(store.revision().await.unwrap(), rev, "a failed update does not bump");
    assert!(store.get_budget(&BudgetId::new("bud_ghost")).await.unwrap().is_none());
}

pub(crate) async fn reset_budget_bumps_the_epoch_every_time_even_when_racing(db: &TestDb) {
    let store = db.store.clone();
    let b = budget("bud_1", ScopeKind::VirtualKey, "key_1");
    store.create_budget(&b).await.unwrap();
    let rev = store.revision().await.unwrap();

    let (first, r1) = store.reset_budget(&b.id, at(1_700_000_001_000)).await.unwrap();
    assert_eq!((first.epoch, r1), (1, rev + 1));
    assert_eq!(first.updated_at, at(1_700_000_001_000));
    assert_eq!(first.last_reset_at, Some(at(1_700_000_001_000)), "the reset instant is kept");
    assert_eq!(
        BudgetRecord { epoch: 0, updated_at: b.updated_at, last_reset_at: None, ..first.clone() },
        b,
        "nothing else changes"
    );
    let (second, r2) = store.reset_budget(&b.id, at(1_700_000_002_000)).await.unwrap();
    assert_eq!((second.epoch, r2), (2, rev + 2), "an identical second reset bumps again");
    assert_eq!(second.last_reset_at, Some(at(1_700_000_002_000)), "each reset moves it");
    assert_eq!(store.get_budget(&b.id).await.unwrap().unwrap().last_reset_at, Some(at(1_700_000_002_000)));

    // Concurrent resets are never lost: each one bumps the epoch once.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let id = b.id.clone();
            tokio::spawn(async move { store.reset_budget(&id, Timestamp::now()).await.unwrap() })
        })
        .collect();
    let mut epochs = Vec::new();
    for t in tasks {
        epochs.push(t.await.unwrap().0.epoch);
    }
    epochs.sort_unstable();
    assert_eq!(epochs, (3..=10).collect::<Vec<_>>());
    assert_eq!(store.get_budget(&b.id).await.unwrap().unwrap().epoch, 10);
    assert_eq!(store.snapshot().await.unwrap().budgets[0].epoch, 10);

    // An update written from a stale read does not undo a reset.
    let stale = BudgetRecord { epoch: 0, limit_nanos: 7, ..b.clone() };
    let (after_stale, _) = store.update_budget(&stale).await.unwrap();
    assert_eq!(after_stale.epoch, 10);
    assert!(after_stale.last_reset_at.is_some(), "nor clears the last reset");

    let rev = store.revision().await.unwrap();
    assert_not_found(store.reset_budget(&BudgetId::new("bud_ghost"), at(1)).await, "budget");
    assert_eq!(store.revision().await.unwrap(), rev);
}

pub(crate) async fn delete_budget_removes_it_once(db: &TestDb) {
    let store = &db.store;
    let keep = budget("bud_keep", ScopeKind::Project, "p");
    let gone = budget("bud_gone", ScopeKind::Project, "p");
    store.create_budget(&keep).await.unwrap();
    store.create_budget(&gone).await.unwrap();
    let rev = store.revision().await.unwrap();

    assert_eq!(store.delete_budget(&gone.id).await.unwrap(), rev + 1);
    assert!(store.get_budget(&gone.id).await.unwrap().is_none());
    assert_eq!(store.list_budgets_for(ScopeKind::Project, "p").await.unwrap(), vec![keep.clone()]);
    let snap = store.snapshot().await.unwrap();
    assert_eq!((snap.revision, snap.budgets), (rev + 1, vec![keep]));

    assert_not_found(store.delete_budget(&gone.id).await, "budget");
    assert_not_found(store.reset_budget(&gone.id, at(1)).await, "budget");
    assert_not_found(store.update_budget(&gone).await, "budget");
    assert_eq!(store.revision().await.unwrap(), rev + 1, "failed writes do not bump");
    // The id may be used again.
    store.create_budget(&gone).await.unwrap();
}

pub(crate) async fn update_model_replaces_prices_and_keeps_identity(db: &TestDb) {
    let store = &db.store;
    let m = model("model_1", "gpt-4o");
    store.create_model(&m).await.unwrap();
    let rev = store.revision().await.unwrap();
    let mut changed = m.clone();
    changed.name = "renamed".to_owned(); // not writable through update_model
    changed.created_at = at(5);
    changed.input_per_mtok = Some(0);
    changed.cached_input_per_mtok = Some(1);
    changed.cache_write_per_mtok = None;
    changed.price_source = Some("explicit".to_owned());
    changed.updated_at = at(1_800_000_000_000);
    assert_eq!(store.update_model(&changed).await.unwrap(), rev + 1);
    let want = ModelRecord { name: m.name.clone(), created_at: m.created_at, ..changed.clone() };
    assert_eq!(store.find_model("model_1").await.unwrap(), Some(want));
    let mut missing = changed.clone();
    missing.id = ModelId::new("model_9");
    assert_not_found(store.update_model(&missing).await, "model");
    assert_eq!(store.revision().await.unwrap(), rev + 1, "failed writes do not bump");
}

pub(crate) async fn budgets_written_before_the_upgrade_read_as_money_budgets_at_epoch_zero(db: &TestDb) {
    use sea_orm::{ConnectionTrait, Database};
    use tollgate_migrations::{Migrator, MigratorTrait};
    let Some(url) = &db.url else {
        return; // an in-memory database does not outlive its connection
    };
    // Roll the schema back to m0001 (undoing every later migration, m0002 last) and write a
    // budget row the way the old code did.
    let raw = Database::connect(url.as_str()).await.unwrap();
    let later = Migrator::migrations().len() as u32 - 1;
    Migrator::down(&raw, Some(later)).await.unwrap();
    raw.execute_unprepared(
        "INSERT INTO budgets (id, scope, scope_id, limit_nanos, \"window\", on_breach, alert_thresholds_json, \
         created_at, updated_at) VALUES ('bud_old', 'team', 'team_1', 5000000000, 'day', 'warn', '[800]', 10, 20)",
    )
    .await
    .unwrap();
    raw.close().await.unwrap();

    let store = Store::connect(url).await.unwrap();
    let old = store.get_budget(&BudgetId::new("bud_old")).await.unwrap().unwrap();
    let want = BudgetRecord {
        limit_nanos: 5_000_000_000,
        window: Window::Day,
        on_breach: OnBreach::Warn,
        alert_thresholds: vec![800],
        created_at: at(10),
        updated_at: at(20),
        ..budget("bud_old", ScopeKind::Team, "team_1")
    };
    assert_eq!(old, want);
    let (reset, _) = store.reset_budget(&old.id, at(30)).await.unwrap();
    assert_eq!((reset.epoch, reset.last_reset_at), (1, Some(at(30))), "the new columns are writable");
}

// ---------------------------------------------------------------- ledger

/// An entry with every optional field set, a cost no float could hold, and text that
/// is not ASCII.
fn full_entry(id: &str, at_ms: i64) -> LedgerEntry {
    LedgerEntry::new(id, KeyId::new("key_1"), ProjectId::new("proj_1"), "gpt-4o")
        .with_at(at(at_ms))
        .with_key_name("checkout ✨")
        .with_principal("acme:user-42")
        .with_tenancy(TeamId::new("team_1"), OrgId::new("org_1"))
        .with_served_by("openai-main", "gpt-4o-2024-08-06")
        .with_usage(
            &Usage {
                input_tokens: 1000,
                output_tokens: 500,
                cached_input_tokens: 600,
                reasoning_tokens: 7,
                cache_write_tokens: 250,
            },
            UsageSource::Reported,
        )
        .with_cost(Money::from_nanos(9_007_199_254_740_993))
        .with_outcome(201, 1234)
        .with_tags(["prod", "eu"])
        .with_metadata(BTreeMap::from([("customer".to_owned(), "acme \"ü\"".to_owned())]))
        .with_attempt(Attempt::new("azure-east", "gpt-4o", "timeout"))
        .with_attempt(Attempt::new("openai-main", "gpt-4o-2024-08-06", "ok"))
        .with_stream(true)
}

/// An entry of `input` + `output` tokens costing `nanos`, made at `at_ms` by key `key`
/// (of `principal`, if any) in `project` / `team` / `org`.
#[allow(clippy::too_many_arguments)]
fn spend_entry(
    id: &str,
    at_ms: i64,
    key: &str,
    principal: Option<&str>,
    project: &str,
    team: &str,
    org: &str,
    nanos: i64,
    input: u64,
    output: u64,
) -> LedgerEntry {
    let mut e = LedgerEntry::new(id, KeyId::new(key), ProjectId::new(project), "m")
        .with_at(at(at_ms))
        .with_tenancy(TeamId::new(team), OrgId::new(org))
        .with_usage(
            &Usage {
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: 0,
                reasoning_tokens: 0,
                cache_write_tokens: 0,
            },
            UsageSource::Reported,
        )
        .with_cost(Money::from_nanos(nanos));
    if let Some(p) = principal {
        e = e.with_principal(p);
    }
    e
}

async fn write(store: &Store, batch: &[LedgerEntry]) -> Result<(), SinkError> {
    let sink: &dyn LedgerSink = store;
    sink.write_batch(batch).await
}

pub(crate) async fn ledger_batch_round_trips_field_for_field_without_bumping_the_revision(db: &TestDb) {
    let store = &db.store;
    let rev = store.revision().await.unwrap();
    let full = full_entry("req_full", 1_772_366_400_250);
    // Every optional empty, zero counts, estimated usage, negative cost (a refund).
    let bare = LedgerEntry::new("req_bare", KeyId::new("key_2"), ProjectId::new("proj_2"), "claude")
        .with_at(at(1))
        .with_cost(Money::from_nanos(-3))
        .with_outcome(502, 0);
    let max = spend_entry("req_max", i64::MAX, "k", None, "p", "t", "o", i64::MAX, i64::MAX as u64, 0);
    write(store, &[full.clone(), bare.clone(), max.clone()]).await.unwrap();
    write(store, &[]).await.unwrap();

    assert_eq!(store.ledger_entry("req_full").await.unwrap(), Some(full));
    assert_eq!(store.ledger_entry("req_bare").await.unwrap(), Some(bare));
    assert_eq!(store.ledger_entry("req_max").await.unwrap(), Some(max));
    assert_eq!(store.ledger_entry("req_ghost").await.unwrap(), None);
    assert_eq!(store.ledger_count().await.unwrap(), 3);
    assert_eq!(store.revision().await.unwrap(), rev, "ledger writes are not configuration");
    assert_eq!(store.snapshot().await.unwrap().revision, rev);
}

pub(crate) async fn ledger_stores_each_request_id_once(db: &TestDb) {
    let store = &db.store;
    let rev = store.revision().await.unwrap();
    let e = |id: &str, nanos: i64| spend_entry(id, 100, "key_1", None, "p", "t", "o", nanos, 1, 2);

    // A repeat inside one batch: the first copy is stored.
    write(store, &[e("a", 10), e("b", 20), e("a", 999)]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 2);
    assert_eq!(store.ledger_entry("a").await.unwrap().unwrap().cost, Money::from_nanos(10));

    // The same batch again (a replay after a lost acknowledgement) stores nothing.
    write(store, &[e("a", 10), e("b", 20), e("a", 999)]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 2);

    // A batch overlapping stored entries stores only the new one; stored ones never change.
    write(store, &[e("b", 777), e("c", 30)]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 3);
    assert_eq!(store.ledger_entry("b").await.unwrap().unwrap().cost, Money::from_nanos(20));
    assert_eq!(store.ledger_spend(ScopeKind::VirtualKey, "key_1", at(0), at(1000)).await.unwrap(), (60, 9));

    // A batch larger than one INSERT statement, overlapping too, is stored whole, once.
    let big: Vec<_> = (0..450).map(|i| e(&format!("big_{i:03}"), 1)).chain([e("c", 5)]).collect();
    write(store, &big).await.unwrap();
    write(store, &big[200..]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 453);
    assert_eq!(store.ledger_spend(ScopeKind::VirtualKey, "key_1", at(0), at(1000)).await.unwrap(), (510, 453 * 3));
    assert_eq!(store.revision().await.unwrap(), rev, "no ledger write bumps the revision");
}

pub(crate) async fn ledger_rejects_unstorable_entries_and_stores_nothing_of_their_batch(db: &TestDb) {
    let store = &db.store;
    let ok = spend_entry("ok", 1, "k", None, "p", "t", "o", 1, 1, 1);
    let too_many = spend_entry("too_many", 1, "k", None, "p", "t", "o", 1, u64::MAX, 0);
    let nul = spend_entry("nul", 1, "k", Some("acme\0user"), "p", "t", "o", 1, 1, 1);
    for bad in [too_many, nul] {
        let err = write(store, &[ok.clone(), bad.clone()]).await.unwrap_err();
        assert!(matches!(err, SinkError::Rejected(_)), "{} → {err:?}", bad.request_id);
        assert!(!err.is_retryable());
        assert_eq!(store.ledger_count().await.unwrap(), 0, "nothing of a rejected batch is stored");
    }
    write(store, &[ok]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 1);
}

pub(crate) async fn ledger_spend_sums_one_scope_over_a_half_open_range(db: &TestDb) {
    let store = &db.store;
    // Two keys of one principal in project p1 (team t1, org o1); another key, with no
    // principal, in project p2 of team t2 in the same org; one key in another org.
    let batch = [
        spend_entry("r1", 999, "k1", Some("alice"), "p1", "t1", "o1", 1, 1, 0), // before the range
        spend_entry("r2", 1000, "k1", Some("alice"), "p1", "t1", "o1", 10, 2, 3), // at `from`: counted
        spend_entry("r3", 1500, "k2", Some("alice"), "p1", "t1", "o1", 100, 10, 20),
        spend_entry("r4", 1999, "k3", None, "p2", "t2", "o1", 1_000, 100, 200), // last ms in range
        spend_entry("r5", 2000, "k1", Some("alice"), "p1", "t1", "o1", 10_000, 1000, 2000), // at `to`: not
        spend_entry("r6", 1500, "k9", Some("bob"), "p9", "t9", "o9", 100_000, 7, 7), // other tenancy
    ];
    write(store, &batch).await.unwrap();
    let (from, to) = (at(1000), at(2000));
    let spend = |scope, id: &'static str| async move { store.ledger_spend(scope, id, from, to).await.unwrap() };

    assert_eq!(spend(ScopeKind::VirtualKey, "k1").await, (10, 5));
    assert_eq!(spend(ScopeKind::VirtualKey, "k2").await, (100, 30));
    assert_eq!(spend(ScopeKind::Principal, "alice").await, (110, 35));
    assert_eq!(spend(ScopeKind::Project, "p1").await, (110, 35));
    assert_eq!(spend(ScopeKind::Project, "p2").await, (1_000, 300));
    assert_eq!(spend(ScopeKind::Team, "t1").await, (110, 35));
    assert_eq!(spend(ScopeKind::Organization, "o1").await, (1_110, 335));
    assert_eq!(spend(ScopeKind::Organization, "o9").await, (100_000, 14));
    // An id is matched in its own scope's column only.
    assert_eq!(spend(ScopeKind::Team, "p1").await, (0, 0));
    assert_eq!(spend(ScopeKind::Principal, "k3").await, (0, 0));
    assert_eq!(spend(ScopeKind::VirtualKey, "nobody").await, (0, 0));

    // The boundaries: `from` inclusive, `to` exclusive.
    let k1 = |f, t| async move { store.ledger_spend(ScopeKind::VirtualKey, "k1", at(f), at(t)).await.unwrap() };
    assert_eq!(k1(999, 1000).await, (1, 1));
    assert_eq!(k1(1000, 1001).await, (10, 5));
    assert_eq!(k1(1001, 2000).await, (0, 0));
    assert_eq!(k1(2000, 2001).await, (10_000, 3000));
    assert_eq!(k1(0, i64::MAX).await, (10_011, 3006));
    assert_eq!(k1(1000, 1000).await, (0, 0), "an empty range");
}

// ---------------------------------------------------------------- usage

/// 2026-03-01T00:00:00Z.
const MAR1: i64 = 1_772_323_200_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

pub(crate) async fn usage_groups_sum_exactly_across_day_and_hour_boundaries(db: &TestDb) {
    use tollgate_store::{UsageFilter, UsageGroup, UsageKey, UsageTotals};
    let store = &db.store;
    let model_entry = |id: &str, at_ms: i64, key: &str, principal: Option<&str>, model: &str, nanos: i64| {
        let mut e = spend_entry(id, at_ms, key, principal, "p1", "t1", "o1", nanos, 10, 1);
        e.served_model = model.to_owned();
        e.cached_input_tokens = 4;
        e
    };
    let batch = [
        model_entry("u0", MAR1 - 1, "k1", Some("alice"), "gpt-4o", 1), // before the range
        model_entry("u1", MAR1, "k1", Some("alice"), "gpt-4o", 9_007_199_254_740_993),
        model_entry("u2", MAR1 + HOUR_MS - 1, "k2", None, "claude", 2),
        model_entry("u3", MAR1 + HOUR_MS, "k1", Some("bob"), "gpt-4o", 3),
        model_entry("u4", MAR1 + DAY_MS - 1, "k2", None, "gpt-4o", 4),
        model_entry("u5", MAR1 + DAY_MS, "k1", Some("alice"), "claude", 5),
        model_entry("u6", MAR1 + 2 * DAY_MS, "k1", Some("alice"), "claude", 6), // at `to`
    ];
    write(store, &batch).await.unwrap();
    let all = UsageFilter { scope: None, tag: None, within: None, from: at(MAR1), to: at(MAR1 + 2 * DAY_MS) };
    let t = |requests, cost| UsageTotals {
        requests,
        input_tokens: 10 * requests,
        output_tokens: requests,
        cached_input_tokens: 4 * requests,
        cost: Money::from_nanos(cost),
    };
    let big = 9_007_199_254_740_993;
    assert_eq!(store.usage_totals(&all).await.unwrap(), t(5, big + 2 + 3 + 4 + 5));

    let all_ref = &all;
    let rows = |g| async move {
        store.usage_by(all_ref, g).await.unwrap().into_iter().map(|r| (r.key, r.totals)).collect::<Vec<_>>()
    };
    let name = |n: Option<&str>| UsageKey::Name(n.map(str::to_owned));
    assert_eq!(
        rows(UsageGroup::Model).await,
        [(name(Some("claude")), t(2, 2 + 5)), (name(Some("gpt-4o")), t(3, big + 3 + 4))]
    );
    assert_eq!(
        rows(UsageGroup::Day).await,
        [(UsageKey::Start(at(MAR1)), t(4, big + 2 + 3 + 4)), (UsageKey::Start(at(MAR1 + DAY_MS)), t(1, 5))]
    );
    assert_eq!(
        rows(UsageGroup::Hour).await,
        [
            (UsageKey::Start(at(MAR1)), t(2, big + 2)),
            (UsageKey::Start(at(MAR1 + HOUR_MS)), t(1, 3)),
            (UsageKey::Start(at(MAR1 + 23 * HOUR_MS)), t(1, 4)),
            (UsageKey::Start(at(MAR1 + DAY_MS)), t(1, 5)),
        ]
    );
    assert_eq!(rows(UsageGroup::Key).await, [(name(Some("k1")), t(3, big + 3 + 5)), (name(Some("k2")), t(2, 2 + 4))]);
    assert_eq!(
        rows(UsageGroup::Principal).await,
        [(name(None), t(2, 2 + 4)), (name(Some("alice")), t(2, big + 5)), (name(Some("bob")), t(1, 3))]
    );

    // Scope filters.
    let scoped = |kind, id: &str| UsageFilter { scope: Some((kind, id.to_owned())), ..all.clone() };
    assert_eq!(store.usage_totals(&scoped(ScopeKind::Principal, "alice")).await.unwrap(), t(2, big + 5));
    assert_eq!(store.usage_totals(&scoped(ScopeKind::VirtualKey, "k2")).await.unwrap(), t(2, 6));
    assert_eq!(store.usage_totals(&scoped(ScopeKind::Team, "t1")).await.unwrap(), t(5, big + 14));
    assert_eq!(store.usage_totals(&scoped(ScopeKind::Organization, "o9")).await.unwrap(), UsageTotals::default());

    // Pages in (at, request_id) order, each entry once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.ledger_page(&all, cursor.as_ref(), 2).await.unwrap();
        seen.extend(page.iter().map(|e| e.request_id.clone()));
        match page.last() {
            Some(last) if page.len() == 2 => {
                cursor = Some(tollgate_store::LedgerCursor { at: last.at, request_id: last.request_id.clone() })
            }
            _ => break,
        }
    }
    assert_eq!(seen, ["u1", "u2", "u3", "u4", "u5"]);
}

pub(crate) async fn usage_by_tag_counts_each_entry_once_per_tag_and_replays_once(db: &TestDb) {
    use tollgate_store::{UsageFilter, UsageGroup, UsageKey, UsageTotals};
    let store = &db.store;
    let tagged = |id: &str, at_ms: i64, key: &str, nanos: i64, tags: &[&str]| {
        spend_entry(id, at_ms, key, None, "p1", "t1", "o1", nanos, 10, 1).with_tags(tags.iter().copied())
    };
    let t0 = tagged("t0", MAR1, "k1", 1, &[]);
    let t1 = tagged("t1", MAR1 + 1, "k1", 10, &["env:prod"]);
    let t2 = tagged("t2", MAR1 + 2, "k2", 100, &["env:prod", "feature:chat"]);
    // A tag repeated on one entry still counts that entry once.
    let t3 = tagged("t3", MAR1 + HOUR_MS, "k1", 1_000, &["feature:chat", "feature:chat"]);
    let early = tagged("t4", MAR1 - 1, "k1", 10_000, &["env:prod"]); // before the range
    write(store, &[t0.clone(), t1.clone(), t2.clone(), t2.clone(), t3.clone(), early]).await.unwrap();
    // Replayed entries (a spool replay, a re-sent batch) add nothing, tags included.
    write(store, &[t1.clone(), t2.clone(), t3.clone()]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 5);
    assert_eq!(store.ledger_entry("t2").await.unwrap(), Some(t2));

    let all = UsageFilter { scope: None, tag: None, within: None, from: at(MAR1), to: at(MAR1 + DAY_MS) };
    let t = |requests: u64, cost| UsageTotals {
        requests,
        input_tokens: 10 * requests,
        output_tokens: requests,
        cached_input_tokens: 0,
        cost: Money::from_nanos(cost),
    };
    let with_tag = |tag: &str| UsageFilter { tag: Some(tag.to_owned()), ..all.clone() };
    assert_eq!(store.usage_totals(&all).await.unwrap(), t(4, 1_111));
    assert_eq!(store.usage_totals(&with_tag("env:prod")).await.unwrap(), t(2, 110));
    assert_eq!(store.usage_totals(&with_tag("feature:chat")).await.unwrap(), t(2, 1_100));
    assert_eq!(store.usage_totals(&with_tag("env")).await.unwrap(), UsageTotals::default());
    let by_key_and_tag = UsageFilter { scope: Some((ScopeKind::VirtualKey, "k1".to_owned())), ..with_tag("env:prod") };
    assert_eq!(store.usage_totals(&by_key_and_tag).await.unwrap(), t(1, 10));

    let rows = |f: UsageFilter, g| async move {
        store.usage_by(&f, g).await.unwrap().into_iter().map(|r| (r.key, r.totals)).collect::<Vec<_>>()
    };
    let name = |n: &str| UsageKey::Name(Some(n.to_owned()));
    // The untagged entry is in no tag group; the two-tag entry is in both.
    assert_eq!(
        rows(all.clone(), UsageGroup::Tag).await,
        [(name("env:prod"), t(2, 110)), (name("feature:chat"), t(2, 1_100))]
    );
    assert_eq!(
        rows(with_tag("env:prod"), UsageGroup::Tag).await,
        [(name("env:prod"), t(2, 110)), (name("feature:chat"), t(1, 100))]
    );
    assert_eq!(
        rows(with_tag("feature:chat"), UsageGroup::Key).await,
        [(name("k1"), t(1, 1_000)), (name("k2"), t(1, 100))]
    );
    assert_eq!(
        rows(with_tag("feature:chat"), UsageGroup::Hour).await,
        [(UsageKey::Start(at(MAR1)), t(1, 100)), (UsageKey::Start(at(MAR1 + HOUR_MS)), t(1, 1_000))]
    );
    let page = store.ledger_page(&with_tag("env:prod"), None, 10).await.unwrap();
    assert_eq!(page.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["t1", "t2"]);
}

// ---------------------------------------------------------------- routing configuration

pub(crate) async fn aliases_never_share_a_name_with_a_model_and_always_name_one(db: &TestDb) {
    let store = &db.store;
    store.create_model(&model("model_1", "gpt-4o")).await.unwrap();
    store.create_model(&model("model_2", "claude")).await.unwrap();
    let rev = store.revision().await.unwrap();

    let taken = assert_conflict(store.create_alias(&alias("gpt-4o", "claude")).await);
    assert!(taken.contains("gpt-4o"), "{taken}");
    assert_not_found(store.create_alias(&alias("fast", "nope")).await, "model");
    store.create_alias(&alias("fast", "gpt-4o")).await.unwrap();
    let again = assert_conflict(store.create_alias(&alias("fast", "claude")).await);
    assert!(again.contains("fast"), "{again}");
    assert_not_found(store.create_alias(&alias("faster", "fast")).await, "model");
    let shadow = assert_conflict(store.create_model(&model("model_3", "fast")).await);
    assert!(shadow.contains("alias"), "{shadow}");
    assert_eq!(store.revision().await.unwrap(), rev + 1, "only the one alias was written");

    store.create_alias(&alias("best", "claude")).await.unwrap();
    let names: Vec<String> = store.list_aliases().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["best", "fast"], "ordered by name");
    store.delete_alias("fast").await.unwrap();
    assert_not_found(store.delete_alias("fast").await, "alias");
    assert_eq!(store.find_alias("fast").await.unwrap(), None);
    store.create_model(&model("model_3", "fast")).await.unwrap();
}

pub(crate) async fn routing_policies_are_one_per_scope_and_update_only_the_policy(db: &TestDb) {
    let store = &db.store;
    store.create_routing_policy(&policy("rpol_1", "default", None)).await.unwrap();
    store.create_routing_policy(&policy("rpol_2", "team", Some("team_1"))).await.unwrap();
    store.create_routing_policy(&policy("rpol_3", "project", Some("team_1"))).await.unwrap();
    let rev = store.revision().await.unwrap();

    let second_default = assert_conflict(store.create_routing_policy(&policy("rpol_4", "default", None)).await);
    assert!(second_default.contains("already has a routing policy"), "{second_default}");
    let same_team = assert_conflict(store.create_routing_policy(&policy("rpol_5", "team", Some("team_1"))).await);
    assert!(same_team.contains("team team_1"), "{same_team}");
    assert_conflict(store.create_routing_policy(&policy("rpol_1", "team", Some("team_2"))).await);
    assert_eq!(store.revision().await.unwrap(), rev, "failed writes do not bump");

    let mut changed = policy("rpol_2", "organization", Some("org_9"));
    changed.policy = json!({"max_attempts": 1});
    changed.created_at = at(5);
    changed.updated_at = at(1_800_000_000_000);
    let (stored, r) = store.update_routing_policy(&changed).await.unwrap();
    assert_eq!(r, rev + 1);
    let want = RoutingPolicyRecord {
        scope: "team".to_owned(),
        scope_id: Some("team_1".to_owned()),
        created_at: at(1_700_000_000_060),
        ..changed.clone()
    };
    assert_eq!(stored, want, "scope and created_at are never written");
    assert_eq!(store.get_routing_policy("rpol_2").await.unwrap(), Some(want));
    assert_not_found(store.update_routing_policy(&policy("rpol_9", "default", None)).await, "routing policy");

    store.delete_routing_policy("rpol_1").await.unwrap();
    assert_not_found(store.delete_routing_policy("rpol_1").await, "routing policy");
    store.create_routing_policy(&policy("rpol_6", "default", None)).await.unwrap();
    let ids: Vec<String> = store.snapshot().await.unwrap().routing_policies.into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["rpol_2", "rpol_3", "rpol_6"]);
}

pub(crate) async fn deployments_stored_before_routing_options_read_with_the_defaults(db: &TestDb) {
    use sea_orm::{ConnectionTrait, Database};
    let Some(url) = &db.url else {
        return; // an in-memory database does not outlive its connection
    };
    db.store.revision().await.unwrap();
    let raw = Database::connect(url.as_str()).await.unwrap();
    raw.execute_unprepared(
        "INSERT INTO models (id, name, deployments_json, created_at, updated_at) \
         VALUES ('model_old', 'old', '[{\"provider\":\"p\",\"model\":\"m\"}]', 1, 2)",
    )
    .await
    .unwrap();
    raw.close().await.unwrap();
    let old = db.store.find_model("old").await.unwrap().unwrap();
    assert_eq!(
        old.deployments,
        vec![DeploymentRecord {
            provider: "p".to_owned(),
            model: "m".to_owned(),
            priority: 0,
            weight: 1,
            pricing: None
        }]
    );
}

pub(crate) async fn provider_credentials_are_reencrypted_all_or_nothing(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.master_key_id().await.unwrap(), None);
    let mut a = provider("prov_a", "a");
    a.api_key_ciphertext = "old-a".to_owned();
    let mut b = provider("prov_b", "b");
    b.api_key_ciphertext = "old-b".to_owned();
    store.create_provider(&a).await.unwrap();
    store.create_provider(&b).await.unwrap();
    let ciphertexts = || async {
        store.list_providers().await.unwrap().into_iter().map(|p| p.api_key_ciphertext).collect::<Vec<_>>()
    };

    // Adopting records the first id only.
    assert_eq!(store.adopt_master_key_id(11).await.unwrap(), 11);
    assert_eq!(store.adopt_master_key_id(12).await.unwrap(), 11);
    assert_eq!(store.master_key_id().await.unwrap(), Some(11));
    let rev = store.revision().await.unwrap();

    // A refused key id changes nothing.
    let refuse = |_: Option<i64>| Err(StoreError::Invalid { kind: "test", detail: "wrong key".into() });
    let r = store.reencrypt_provider_credentials(22, refuse, |p: &ProviderRecord| Ok(format!("new-{}", p.name))).await;
    assert!(r.is_err());
    // A failure on the second row rolls back the first.
    let fail_on_b = |p: &ProviderRecord| {
        if p.name == "b" {
            Err(StoreError::Invalid { kind: "test", detail: "cannot decrypt".into() })
        } else {
            Ok(format!("new-{}", p.name))
        }
    };
    assert!(store.reencrypt_provider_credentials(22, |_| Ok(()), fail_on_b).await.is_err());
    assert_eq!(ciphertexts().await, vec!["old-a", "old-b"]);
    assert_eq!(store.master_key_id().await.unwrap(), Some(11));
    assert_eq!(store.revision().await.unwrap(), rev);

    let mut seen = None;
    let (count, new_rev) = store
        .reencrypt_provider_credentials(
            22,
            |id| {
                seen = Some(id);
                Ok::<(), StoreError>(())
            },
            |p: &ProviderRecord| Ok(format!("new-{}", p.api_key_ciphertext)),
        )
        .await
        .unwrap();
    assert_eq!(seen, Some(Some(11)));
    assert_eq!((count, new_rev), (2, rev + 1));
    assert_eq!(ciphertexts().await, vec!["new-old-a", "new-old-b"]);
    assert_eq!(store.master_key_id().await.unwrap(), Some(22));
    assert_eq!(store.revision().await.unwrap(), rev + 1);
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.providers[0].api_key_hint, a.api_key_hint, "only the ciphertext changes");
}

pub(crate) async fn a_principals_keys_are_revoked_together_across_update_batches(db: &TestDb) {
    let store = &db.store;
    let (_, team, project) = tenancy(store, "pk").await;
    let (_, _, elsewhere) = tenancy(store, "pk-other").await;
    // More keys than one revoking statement takes (1,000), plus keys that must stay. (The
    // databases bind up to 32,766 / 65,535 values a statement; batching keeps a principal
    // with more keys than that revocable, and this crosses the batch boundary.)
    let many = 1_205;
    for i in 0..many {
        let mut k = bare_key(&format!("key_p{i:05}"), &project.id, &format!("hash-p{i:05}"));
        k.principal = Some("acme:1".into());
        store.create_key(&k, None).await.unwrap();
    }
    let mut other = bare_key("key_other", &project.id, "hash-other");
    other.principal = Some("acme:2".into());
    store.create_key(&other, None).await.unwrap();
    let mut outside = bare_key("key_outside", &elsewhere.id, "hash-outside");
    outside.principal = Some("acme:1".into());
    store.create_key(&outside, None).await.unwrap();

    let in_team = tollgate_store::PrincipalFilter { team_id: Some(team.id.clone()), ..Default::default() };
    let before = store.revision().await.unwrap();
    let (revoked, rev) = store.revoke_principal_keys("acme:1", &in_team, at(1_800_000_000_000)).await.unwrap();
    assert_eq!((revoked.len(), rev), (many, Some(before + 1)), "all of them, in one revision");
    let listed =
        |status: &str| KeyFilter { status: Some(status.into()), limit: KeyFilter::MAX_LIMIT, ..Default::default() };
    let mut still_active: Vec<String> = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_keys(&KeyFilter { after: after.clone(), ..listed("active") }).await.unwrap();
        still_active.extend(page.iter().map(|k| k.id.to_string()));
        match page.last() {
            Some(k) if page.len() as u64 == KeyFilter::MAX_LIMIT => after = Some(k.id.clone()),
            _ => break,
        }
    }
    still_active.sort();
    assert_eq!(still_active, ["key_other", "key_outside"], "another principal's key, and one outside the team");
    let revoked_key = store.get_key(&KeyId::new("key_p01204")).await.unwrap().unwrap();
    assert_eq!((revoked_key.status.as_str(), revoked_key.revoked_at), ("revoked", Some(at(1_800_000_000_000))));

    // Nothing left: nothing written.
    let (none, rev) = store.revoke_principal_keys("acme:1", &in_team, at(1_800_000_000_001)).await.unwrap();
    assert_eq!((none.len(), rev, store.revision().await.unwrap()), (0, None, before + 1));
    let f = tollgate_store::PrincipalFilter { limit: 10, ..Default::default() };
    let summary = store.list_principals(&f, at(1_800_000_000_002)).await.unwrap();
    let counts: Vec<(&str, u64, u64)> =
        summary.iter().map(|s| (s.principal.as_str(), s.keys_active, s.keys_revoked)).collect();
    assert_eq!(counts, [("acme:1", 1, many as u64), ("acme:2", 1, 0)]);
}
