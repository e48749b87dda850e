//! The one place where public records and table rows are converted into each other.
//!
//! Writing a record can only fail if a value does not serialize (never, for the types
//! used here); reading a row fails with [`StoreError::Corrupt`] when a stored JSON or
//! enum column cannot be decoded.

use crate::entity::{
    admin_token, audit_event, budget, model, model_alias, organization, project, provider, routing_policy, team,
    virtual_key,
};
use crate::error::StoreError;
use crate::records::{
    AdminTokenRecord, AliasRecord, AuditRecord, BudgetRecord, GraceSecretRecord, KeyRecord, ModelRecord, OrgRecord,
    ProjectRecord, ProviderRecord, RoutingPolicyRecord, TeamRecord,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tollgate_core::{BudgetId, KeyId, ModelId, OrgId, ProjectId, ProviderId, TeamId, Timestamp, TokenId};

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn ts_opt(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_unix_millis)
}

fn ms_opt(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::unix_millis)
}

pub(crate) fn to_json<T: Serialize + ?Sized>(kind: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid { kind, detail: format!("not serializable: {e}") })
}

fn from_json<T: DeserializeOwned>(kind: &'static str, id: &str, column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        kind,
        id: id.to_owned(),
        detail: format!("column {column}: {e}"),
    })
}

fn parse_enum<T>(kind: &'static str, id: &str, column: &str, text: &str) -> Result<T, StoreError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| StoreError::Corrupt { kind, id: id.to_owned(), detail: format!("column {column}: {e}") })
}

pub(crate) fn org_from_row(m: organization::Model) -> OrgRecord {
    OrgRecord { id: OrgId::new(m.id), name: m.name, created_at: ts(m.created_at) }
}

pub(crate) fn org_to_row(r: &OrgRecord) -> organization::Model {
    organization::Model { id: r.id.as_str().to_owned(), name: r.name.clone(), created_at: r.created_at.unix_millis() }
}

pub(crate) fn team_from_row(m: team::Model) -> TeamRecord {
    TeamRecord { id: TeamId::new(m.id), org_id: OrgId::new(m.org_id), name: m.name, created_at: ts(m.created_at) }
}

pub(crate) fn team_to_row(r: &TeamRecord) -> team::Model {
    team::Model {
        id: r.id.as_str().to_owned(),
        org_id: r.org_id.as_str().to_owned(),
        name: r.name.clone(),
        created_at: r.created_at.unix_millis(),
    }
}

/// A project row plus its team's organization, which is not stored on the row.
pub(crate) fn project_from_row(m: project::Model, org_id: OrgId) -> ProjectRecord {
    ProjectRecord {
        id: ProjectId::new(m.id),
        team_id: TeamId::new(m.team_id),
        org_id,
        name: m.name,
        created_at: ts(m.created_at),
    }
}

pub(crate) fn project_to_row(r: &ProjectRecord) -> project::Model {
    project::Model {
        id: r.id.as_str().to_owned(),
        team_id: r.team_id.as_str().to_owned(),
        name: r.name.clone(),
        created_at: r.created_at.unix_millis(),
    }
}

pub(crate) fn provider_from_row(m: provider::Model) -> Result<ProviderRecord, StoreError> {
    let extra = from_json("provider", &m.id, "extra_json", &m.extra_json)?;
    Ok(ProviderRecord {
        id: ProviderId::new(m.id),
        name: m.name,
        kind: m.kind,
        base_url: m.base_url,
        api_key_ciphertext: m.api_key_ciphertext,
        api_key_hint: m.api_key_hint,
        rpm: m.rpm,
        tpm: m.tpm,
        priority: m.priority,
        extra,
        created_at: ts(m.created_at),
        updated_at: ts(m.updated_at),
    })
}

pub(crate) fn provider_to_row(r: &ProviderRecord) -> Result<provider::Model, StoreError> {
    Ok(provider::Model {
        id: r.id.as_str().to_owned(),
        name: r.name.clone(),
        kind: r.kind.clone(),
        base_url: r.base_url.clone(),
        api_key_ciphertext: r.api_key_ciphertext.clone(),
        api_key_hint: r.api_key_hint.clone(),
        rpm: r.rpm,
        tpm: r.tpm,
        priority: r.priority,
        extra_json: to_json("provider", &r.extra)?,
        created_at: r.created_at.unix_millis(),
        updated_at: r.updated_at.unix_millis(),
    })
}

pub(crate) fn model_from_row(m: model::Model) -> Result<ModelRecord, StoreError> {
    let deployments = from_json("model", &m.id, "deployments_json", &m.deployments_json)?;
    Ok(ModelRecord {
        id: ModelId::new(m.id),
        name: m.name,
        deployments,
        input_per_mtok: m.input_per_mtok,
        output_per_mtok: m.output_per_mtok,
        cached_input_per_mtok: m.cached_input_per_mtok,
        cache_write_per_mtok: m.cache_write_per_mtok,
        price_source: m.price_source,
        max_output_tokens: m.max_output_tokens,
        max_image_tokens: m.max_image_tokens,
        max_audio_tokens: m.max_audio_tokens,
        max_file_tokens: m.max_file_tokens,
        created_at: ts(m.created_at),
        updated_at: ts(m.updated_at),
    })
}

pub(crate) fn model_to_row(r: &ModelRecord) -> Result<model::Model, StoreError> {
    Ok(model::Model {
        id: r.id.as_str().to_owned(),
        name: r.name.clone(),
        deployments_json: to_json("model", &r.deployments)?,
        input_per_mtok: r.input_per_mtok,
        output_per_mtok: r.output_per_mtok,
        cached_input_per_mtok: r.cached_input_per_mtok,
        cache_write_per_mtok: r.cache_write_per_mtok,
        price_source: r.price_source.clone(),
        max_output_tokens: r.max_output_tokens,
        created_at: r.created_at.unix_millis(),
        updated_at: r.updated_at.unix_millis(),
        max_image_tokens: r.max_image_tokens,
        max_audio_tokens: r.max_audio_tokens,
        max_file_tokens: r.max_file_tokens,
    })
}

pub(crate) fn alias_from_row(m: model_alias::Model) -> AliasRecord {
    AliasRecord { name: m.name, target_model: m.target_model, created_at: ts(m.created_at) }
}

pub(crate) fn alias_to_row(r: &AliasRecord) -> model_alias::Model {
    model_alias::Model {
        name: r.name.clone(),
        target_model: r.target_model.clone(),
        created_at: r.created_at.unix_millis(),
    }
}

pub(crate) fn routing_policy_from_row(m: routing_policy::Model) -> Result<RoutingPolicyRecord, StoreError> {
    let policy = from_json("routing policy", &m.id, "policy_json", &m.policy_json)?;
    Ok(RoutingPolicyRecord {
        id: m.id,
        scope: m.scope,
        scope_id: m.scope_id,
        policy,
        created_at: ts(m.created_at),
        updated_at: ts(m.updated_at),
    })
}

pub(crate) fn routing_policy_to_row(r: &RoutingPolicyRecord) -> Result<routing_policy::Model, StoreError> {
    Ok(routing_policy::Model {
        id: r.id.clone(),
        scope: r.scope.clone(),
        scope_id: r.scope_id.clone(),
        policy_json: to_json("routing policy", &r.policy)?,
        created_at: r.created_at.unix_millis(),
        updated_at: r.updated_at.unix_millis(),
    })
}

/// One entry of `virtual_keys.grace_secrets_json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct RawGraceSecret {
    key_hash: String,
    valid_until_ms: i64,
}

pub(crate) fn key_from_row(m: virtual_key::Model) -> Result<KeyRecord, StoreError> {
    let models_allowed = from_json("key", &m.id, "models_allowed_json", &m.models_allowed_json)?;
    let metadata = from_json("key", &m.id, "metadata_json", &m.metadata_json)?;
    let tags = from_json("key", &m.id, "tags_json", &m.tags_json)?;
    let stored: Vec<RawGraceSecret> = from_json("key", &m.id, "grace_secrets_json", &m.grace_secrets_json)?;
    let mut grace_secrets: Vec<GraceSecretRecord> = stored
        .into_iter()
        .map(|g| GraceSecretRecord { key_hash: g.key_hash, valid_until: ts(g.valid_until_ms) })
        .collect();
    // A row written by a control plane that predates the list carries its one previous
    // secret in the old columns only.
    if let (Some(h), Some(until)) = (m.previous_key_hash, m.previous_valid_until)
        && !grace_secrets.iter().any(|g| g.key_hash == h)
    {
        grace_secrets.push(GraceSecretRecord { key_hash: h, valid_until: ts(until) });
    }
    Ok(KeyRecord {
        id: KeyId::new(m.id),
        project_id: ProjectId::new(m.project_id),
        name: m.name,
        principal: m.principal,
        key_hash: m.key_hash,
        key_hint: m.key_hint,
        grace_secrets,
        status: m.status,
        expires_at: ts_opt(m.expires_at),
        models_allowed,
        rpm: m.rpm,
        tpm: m.tpm,
        max_concurrency: m.max_concurrency,
        metadata,
        tags,
        created_at: ts(m.created_at),
        updated_at: ts(m.updated_at),
        rotated_at: ts_opt(m.rotated_at),
        revoked_at: ts_opt(m.revoked_at),
    })
}

pub(crate) fn key_to_row(r: &KeyRecord) -> Result<virtual_key::Model, StoreError> {
    let grace: Vec<RawGraceSecret> = r
        .grace_secrets
        .iter()
        .map(|g| RawGraceSecret { key_hash: g.key_hash.clone(), valid_until_ms: g.valid_until.unix_millis() })
        .collect();
    // The old columns hold the latest rotation, as a control plane predating the list
    // expects.
    let last = r.grace_secrets.last();
    Ok(virtual_key::Model {
        id: r.id.as_str().to_owned(),
        project_id: r.project_id.as_str().to_owned(),
        name: r.name.clone(),
        principal: r.principal.clone(),
        key_hash: r.key_hash.clone(),
        key_hint: r.key_hint.clone(),
        previous_key_hash: last.map(|g| g.key_hash.clone()),
        previous_valid_until: last.map(|g| g.valid_until.unix_millis()),
        grace_secrets_json: to_json("key", &grace)?,
        status: r.status.clone(),
        expires_at: ms_opt(r.expires_at),
        models_allowed_json: to_json("key", &r.models_allowed)?,
        rpm: r.rpm,
        tpm: r.tpm,
        max_concurrency: r.max_concurrency,
        metadata_json: to_json("key", &r.metadata)?,
        tags_json: to_json("key", &r.tags)?,
        created_at: r.created_at.unix_millis(),
        updated_at: r.updated_at.unix_millis(),
        rotated_at: ms_opt(r.rotated_at),
        revoked_at: ms_opt(r.revoked_at),
    })
}

pub(crate) fn budget_from_row(m: budget::Model) -> Result<BudgetRecord, StoreError> {
    let scope = parse_enum("budget", &m.id, "scope", &m.scope)?;
    let window = parse_enum("budget", &m.id, "window", &m.window)?;
    let on_breach = parse_enum("budget", &m.id, "on_breach", &m.on_breach)?;
    let alert_thresholds = from_json("budget", &m.id, "alert_thresholds_json", &m.alert_thresholds_json)?;
    Ok(BudgetRecord {
        id: BudgetId::new(m.id),
        scope,
        scope_id: m.scope_id,
        limit_nanos: m.limit_nanos,
        limit_tokens: m.limit_tokens,
        window,
        on_breach,
        alert_thresholds,
        epoch: m.epoch,
        temporary_increase: m.temporary_increase,
        temporary_increase_until: ts_opt(m.temporary_increase_until),
        last_reset_at: ts_opt(m.last_reset_at),
        clamp_floor_tokens: m.clamp_floor_tokens,
        created_at: ts(m.created_at),
        updated_at: ts(m.updated_at),
    })
}

pub(crate) fn budget_to_row(r: &BudgetRecord) -> Result<budget::Model, StoreError> {
    Ok(budget::Model {
        id: r.id.as_str().to_owned(),
        scope: r.scope.as_str().to_owned(),
        scope_id: r.scope_id.clone(),
        limit_nanos: r.limit_nanos,
        window: r.window.as_str().to_owned(),
        on_breach: r.on_breach.as_str().to_owned(),
        alert_thresholds_json: to_json("budget", &r.alert_thresholds)?,
        created_at: r.created_at.unix_millis(),
        updated_at: r.updated_at.unix_millis(),
        limit_tokens: r.limit_tokens,
        epoch: r.epoch,
        temporary_increase: r.temporary_increase,
        temporary_increase_until: ms_opt(r.temporary_increase_until),
        last_reset_at: ms_opt(r.last_reset_at),
        clamp_floor_tokens: r.clamp_floor_tokens,
    })
}

pub(crate) fn admin_token_from_row(m: admin_token::Model) -> Result<AdminTokenRecord, StoreError> {
    let scopes = from_json("admin token", &m.id, "scopes_json", &m.scopes_json)?;
    Ok(AdminTokenRecord {
        id: TokenId::new(m.id),
        name: m.name,
        token_hash: m.token_hash,
        scopes,
        team_id: m.team_id.map(TeamId::new),
        project_id: m.project_id.map(ProjectId::new),
        created_at: ts(m.created_at),
        revoked_at: ts_opt(m.revoked_at),
        expires_at: ts_opt(m.expires_at),
        hint: m.hint,
    })
}

pub(crate) fn admin_token_to_row(r: &AdminTokenRecord) -> Result<admin_token::Model, StoreError> {
    Ok(admin_token::Model {
        id: r.id.as_str().to_owned(),
        name: r.name.clone(),
        token_hash: r.token_hash.clone(),
        scopes_json: to_json("admin token", &r.scopes)?,
        team_id: r.team_id.as_ref().map(|t| t.as_str().to_owned()),
        project_id: r.project_id.as_ref().map(|p| p.as_str().to_owned()),
        created_at: r.created_at.unix_millis(),
        revoked_at: ms_opt(r.revoked_at),
        expires_at: ms_opt(r.expires_at),
        hint: r.hint.clone(),
    })
}

pub(crate) fn audit_from_row(m: audit_event::Model) -> Result<AuditRecord, StoreError> {
    let metadata = from_json("audit event", &m.id, "metadata_json", &m.metadata_json)?;
    Ok(AuditRecord {
        seq: m.seq,
        id: m.id,
        at: ts(m.at),
        actor: m.actor,
        action: m.action,
        target_kind: m.target_kind,
        target_id: m.target_id,
        metadata,
        prev_hash: m.prev_hash,
        hash: m.hash,
    })
}

/// The row for an audit record; `seq` is left to the database.
pub(crate) fn audit_to_active(r: &AuditRecord) -> Result<audit_event::ActiveModel, StoreError> {
    use sea_orm::ActiveValue::{NotSet, Set};
    Ok(audit_event::ActiveModel {
        seq: NotSet,
        id: Set(r.id.clone()),
        at: Set(r.at.unix_millis()),
        actor: Set(r.actor.clone()),
        action: Set(r.action.clone()),
        target_kind: Set(r.target_kind.clone()),
        target_id: Set(r.target_id.clone()),
        metadata_json: Set(to_json("audit event", &r.metadata)?),
        prev_hash: Set(r.prev_hash.clone()),
        hash: Set(r.hash.clone()),
    })
}
