//! The conformance suite: every backend must pass every test here unchanged. One module
//! per aggregate; the fixtures every module shares are here.

mod audit;
mod budgets;
mod keys;
mod ledger;
mod models;
mod providers;
mod records;
mod revision;
mod routing;
mod tenancy;
mod tokens;
mod usage;

pub(crate) use audit::*;
pub(crate) use budgets::*;
pub(crate) use keys::*;
pub(crate) use ledger::*;
pub(crate) use models::*;
pub(crate) use providers::*;
pub(crate) use records::*;
pub(crate) use revision::*;
pub(crate) use routing::*;
pub(crate) use tenancy::*;
pub(crate) use tokens::*;
pub(crate) use usage::*;

use crate::backends::TestDb;
use serde_json::json;
use std::collections::BTreeMap;
use tollgate_core::{
    BudgetId, ErrorCode, KeyId, ModelId, Money, OnBreach, OrgId, ProjectId, ProviderId, ScopeKind, ServiceError,
    TeamId, Timestamp, TokenId, Window,
};
use tollgate_metering::{LedgerEntry, LedgerSink, SinkError};
use tollgate_store::{
    AdminTokenRecord, AliasRecord, AuditFilter, AuditRecord, BudgetFilter, BudgetRecord, DeploymentPricing,
    DeploymentRecord, GraceSecretRecord, KeyFilter, KeyRecord, ModelRecord, OrgRecord, ProjectRecord, ProviderRecord,
    RoutingPolicyRecord, Store, StoreError, TeamRecord,
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
        grace_secrets: Vec::new(),
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
        // Two rotations inside one grace: the later one ends first.
        grace_secrets: vec![
            GraceSecretRecord { key_hash: format!("{hash}-older"), valid_until: at(1_700_000_900_001) },
            GraceSecretRecord { key_hash: format!("{hash}-old"), valid_until: at(1_700_000_600_001) },
        ],
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
        clamp_floor_tokens: None,
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
        max_image_tokens: Some(1_500),
        max_audio_tokens: None,
        max_file_tokens: Some(200_000),
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

/// The testkit's full entry (every optional field set) at `at_ms`.
fn full_entry(id: &str, at_ms: i64) -> LedgerEntry {
    tollgate_testkit::ledger::full_entry(id, at(at_ms))
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
    let mut e = tollgate_testkit::ledger::spend_entry(id, key, project, "m", at(at_ms), (input, output), nanos)
        .with_tenancy(TeamId::new(team), OrgId::new(org));
    if let Some(p) = principal {
        e = e.with_principal(p);
    }
    e
}

async fn write(store: &Store, batch: &[LedgerEntry]) -> Result<(), SinkError> {
    let sink: &dyn LedgerSink = store;
    sink.write_batch(batch).await
}
