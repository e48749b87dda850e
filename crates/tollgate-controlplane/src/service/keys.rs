//! Virtual keys: mint (with an inline budget), read, list, update, rotate and revoke.
//! The secret is returned at mint and rotation only; the store keeps its keyed hash.

use super::auth::{Scope, Target, Tenancy};
use super::budgets::{self, BudgetInput, BudgetView, budget_view};
use super::models::Change;
use super::{Actor, DEFAULT_LIMIT, MAX_LIST_LIMIT, Service, check_name, enum_schema, new_id};
use crate::ControlError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tollgate_core::{BudgetId, KeyId, OnBreach, ProjectId, ScopeKind, Timestamp};
use tollgate_keys::{AllowlistError, GraceSecret, KeyHash, KeyStatus, MetadataError, after_rotation, mint_secret};
use tollgate_store::{BudgetRecord, GraceSecretRecord, KeyFilter, KeyRecord, Store};
use utoipa::ToSchema;

/// `POST /api/v1/keys`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Project id or name.
    pub project: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The platform's customer or user id.
    #[serde(default)]
    pub principal: Option<String>,
    /// Allowed model names or globs; empty allows every model.
    #[serde(default)]
    pub models_allowed: Vec<String>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Concurrent requests.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Free-form metadata, copied to ledger entries.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Tags (`env:prod`), copied to ledger entries; usage can be filtered and grouped by them.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When the key stops working.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// A budget on this key.
    #[serde(default)]
    pub budget: Option<BudgetInput>,
}

/// `PATCH /api/v1/keys/{id}`: absent fields are left alone, `null` clears.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// Display name.
    #[serde(default, deserialize_with = "super::double_option")]
    pub name: Option<Option<String>>,
    /// Allowed models (replaces the list).
    #[serde(default)]
    pub models_allowed: Option<Vec<String>>,
    /// Requests per minute.
    #[serde(default, deserialize_with = "super::double_option")]
    pub rpm: Option<Option<u32>>,
    /// Tokens per minute.
    #[serde(default, deserialize_with = "super::double_option")]
    pub tpm: Option<Option<u64>>,
    /// Concurrent requests.
    #[serde(default, deserialize_with = "super::double_option")]
    pub max_concurrency: Option<Option<u32>>,
    /// Metadata (replaces the map).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Tags (replaces the list).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Expiry.
    #[serde(default, deserialize_with = "super::double_option")]
    pub expires_at: Option<Option<Timestamp>>,
}

/// `POST /api/v1/keys/{id}/rotate`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old secret keeps working (default 0: it dies now). Secrets rotated out
    /// earlier keep their own grace; at most 8 rotated-out secrets are kept per key (a
    /// ninth drops the one rotated out earliest). Revoking the key ends every grace.
    #[serde(default)]
    pub grace_period_s: Option<u64>,
}

/// `KeyView::status`: the stored statuses, and `expired`, derived from `expires_at`.
fn key_status_schema() -> utoipa::openapi::Object {
    enum_schema([KeyStatus::Active.as_str(), KeyStatus::Revoked.as_str(), "expired"])
}

/// Filters of `GET /api/v1/keys`.
#[derive(Debug, Clone, Default)]
pub struct ListKeys {
    /// Project id or name.
    pub project: Option<String>,
    /// Principal.
    pub principal: Option<String>,
    /// `active` or `revoked`.
    pub status: Option<String>,
    /// `metadata.K=V` pairs, all of which must match.
    pub metadata: Vec<(String, String)>,
    /// Only keys carrying this tag.
    pub tag: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u64>,
    /// Cursor: the last id of the previous page.
    pub after: Option<String>,
}

/// A key as the API shows it: never the secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyView {
    /// Id.
    pub id: KeyId,
    /// Name.
    pub name: Option<String>,
    /// Project.
    pub project_id: ProjectId,
    /// Principal.
    pub principal: Option<String>,
    /// `active` or `revoked` (or `expired`, derived from `expires_at`).
    #[schema(schema_with = key_status_schema)]
    pub status: String,
    /// Display hint of the current secret.
    pub key_hint: String,
    /// Allowed models.
    pub models_allowed: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Concurrent requests.
    pub max_concurrency: Option<i64>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Last rotation.
    pub rotated_at: Option<Timestamp>,
    /// Revocation.
    pub revoked_at: Option<Timestamp>,
    /// Budgets on this key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetView>,
}

/// A key with its secret: the one response that carries it.
#[derive(Clone, Serialize, ToSchema)]
pub struct KeyWithSecret {
    /// The secret, shown once.
    pub key: String,
    /// The key.
    #[serde(flatten)]
    pub view: KeyView,
}

impl std::fmt::Debug for KeyWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWithSecret").field("key", &"<redacted>").field("view", &self.view).finish()
    }
}

/// A page of keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyPage {
    /// The keys.
    pub data: Vec<KeyView>,
    /// Cursor for the next page (pass as `after`), if there may be more.
    pub next_after: Option<KeyId>,
}

/// A key's allowlist, by `tollgate-keys`' rule, with the offending entry named.
fn check_patterns(patterns: &[String]) -> Result<(), ControlError> {
    tollgate_keys::validate_allowlist(patterns).map_err(|e| match e {
        AllowlistError::TooMany => ControlError::invalid("models_allowed", e.to_string()),
        AllowlistError::Pattern { index, reason } => {
            ControlError::invalid(format!("models_allowed[{index}]"), reason.to_string())
        }
    })
}

/// A key's metadata, by `tollgate-keys`' rule, with the offending entry named.
fn check_metadata(m: &BTreeMap<String, String>) -> Result<(), ControlError> {
    tollgate_keys::validate_metadata(m.iter()).map_err(|e| match &e {
        MetadataError::TooMany => ControlError::invalid("metadata", e.to_string()),
        MetadataError::Name(reason) => ControlError::invalid("metadata key", reason.to_string()),
        MetadataError::Value { name } => ControlError::invalid(format!("metadata.{name}"), e.to_string()),
    })
}

fn check_tags(tags: &[String]) -> Result<(), ControlError> {
    tollgate_keys::validate_tags(tags).map_err(|e| ControlError::invalid("tags", e.to_string()))
}

impl Service {
    /// Mints a key; the secret is returned here and never again.
    pub async fn create_key(&self, actor: &Actor, input: CreateKey) -> Result<KeyWithSecret, ControlError> {
        let target = Target::ProjectRef { field: "project", id_or_name: &input.project };
        self.authorize(actor, Scope::KeysWrite, target).await?;
        if input.budget.is_some() {
            // The budget is on the new key, which is inside the project just checked.
            self.authorize(actor, Scope::BudgetsWrite, Target::Filtered).await?;
        }
        let project = self.project(actor, "project", &input.project).await?;
        if let Some(n) = &input.name {
            check_name("name", n)?;
        }
        if let Some(p) = &input.principal {
            check_name("principal", p)?;
        }
        check_patterns(&input.models_allowed)?;
        check_metadata(&input.metadata)?;
        check_tags(&input.tags)?;
        let now = Timestamp::now();
        if input.expires_at.is_some_and(|e| e <= now) {
            return Err(ControlError::invalid("expires_at", "must be in the future"));
        }
        let secret = mint_secret();
        let id = KeyId::new(new_id(KeyId::PREFIX));
        let rec = KeyRecord {
            id: id.clone(),
            project_id: project.id.clone(),
            name: input.name,
            principal: input.principal,
            key_hash: self.hasher.hash(secret.expose()).to_hex(),
            key_hint: secret.hint(),
            grace_secrets: Vec::new(),
            status: KeyStatus::Active.as_str().to_owned(),
            expires_at: input.expires_at,
            models_allowed: input.models_allowed,
            rpm: input.rpm.map(i64::from),
            tpm: input.tpm.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            max_concurrency: input.max_concurrency.map(i64::from),
            metadata: input.metadata,
            tags: input.tags,
            created_at: now,
            updated_at: now,
            rotated_at: None,
            revoked_at: None,
        };
        let budget = match input.budget {
            Some(b) => {
                let (limit_nanos, limit_tokens) = budgets::limit_of("budget.", b.limit_usd, b.limit_tokens)?;
                Some(BudgetRecord {
                    id: BudgetId::new(new_id(BudgetId::PREFIX)),
                    scope: ScopeKind::VirtualKey,
                    scope_id: id.as_str().to_owned(),
                    limit_nanos,
                    limit_tokens,
                    window: b.window,
                    on_breach: b.on_breach.unwrap_or(OnBreach::Block),
                    alert_thresholds: budgets::permilles("budget.alert_thresholds", &b.alert_thresholds)?,
                    epoch: 0,
                    temporary_increase: 0,
                    temporary_increase_until: None,
                    last_reset_at: None,
                    clamp_floor_tokens: budgets::clamp_floor_of(
                        "budget.",
                        b.on_breach.unwrap_or(OnBreach::Block),
                        b.clamp_floor_tokens,
                    )?,
                    created_at: now,
                    updated_at: now,
                })
            }
            None => None,
        };
        if let Some(b) = &budget {
            budgets::domain_budget("budget.", b)?;
        }
        // A key minted under a money budget (its own, or its principal's, project's, team's
        // or organization's) must not reach an unpriced model.
        let inline: Vec<&BudgetRecord> = budget.iter().collect();
        let field = if budget.is_some() { "budget.limit_usd" } else { "models_allowed" };
        let _checked = self
            .refuse_unpriced_reach(field, Change { key: Some(&rec), budgets: &inline, ..Change::default() })
            .await?;
        let w = self.begin_write().await?;
        let rev = w.store().create_key(&rec, budget.as_ref()).await?;
        let view = key_view(&rec, budget.iter().map(|b| budget_view(b, now)).collect(), now);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "key.create", ("key", id.as_str()), meta).await?;
        Ok(KeyWithSecret { key: secret.expose().to_owned(), view })
    }

    async fn key_record(&self, id: &str) -> Result<KeyRecord, ControlError> {
        self.store
            .get_key(&KeyId::new(id))
            .await?
            .ok_or_else(|| ControlError::NotFound { kind: "key", id: id.chars().take(128).collect() })
    }

    async fn key_view_of(&self, rec: &KeyRecord) -> Result<KeyView, ControlError> {
        key_view_in(&self.store, rec).await
    }

    /// Reads a key.
    pub async fn get_key(&self, actor: &Actor, id: &str) -> Result<KeyView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Key(id)).await?;
        let rec = self.key_record(id).await?;
        self.key_view_of(&rec).await
    }

    /// Lists keys with filters and keyset pagination; a bound token sees only the keys
    /// of its team or project.
    pub async fn list_keys(&self, actor: &Actor, q: ListKeys) -> Result<KeyPage, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let project_id = match &q.project {
            Some(p) => {
                self.authorize(actor, Scope::KeysRead, Target::ProjectRef { field: "project", id_or_name: p }).await?;
                Some(self.project(actor, "project", p).await?.id)
            }
            None => match actor.tenancy() {
                Tenancy::Project { project, .. } => Some(project.clone()),
                _ => None,
            },
        };
        let team_id = match actor.tenancy() {
            Tenancy::Team(t) => Some(t.clone()),
            _ => None,
        };
        if let Some(s) = &q.status
            && KeyStatus::parse(s).is_none()
        {
            return Err(ControlError::invalid("status", "must be active or revoked"));
        }
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIST_LIMIT);
        let filter = KeyFilter {
            project_id,
            team_id,
            principal: q.principal,
            status: q.status,
            metadata: q.metadata,
            tag: q.tag,
            limit,
            after: q.after.map(KeyId::new),
        };
        let recs = self.store.list_keys(&filter).await?;
        let now = Timestamp::now();
        let next_after = (recs.len() as u64 == limit).then(|| recs.last().map(|r| r.id.clone())).flatten();
        Ok(KeyPage { data: recs.iter().map(|r| key_view(r, Vec::new(), now)).collect(), next_after })
    }

    /// Updates a key's policy.
    pub async fn update_key(&self, actor: &Actor, id: &str, patch: UpdateKey) -> Result<KeyView, ControlError> {
        self.authorize(actor, Scope::KeysWrite, Target::Key(id)).await?;
        let mut rec = self.key_record(id).await?;
        if let Some(name) = patch.name {
            if let Some(n) = &name {
                check_name("name", n)?;
            }
            rec.name = name;
        }
        let widened = patch.models_allowed.is_some();
        if let Some(m) = patch.models_allowed {
            check_patterns(&m)?;
            rec.models_allowed = m;
        }
        if let Some(v) = patch.rpm {
            rec.rpm = v.map(i64::from);
        }
        if let Some(v) = patch.tpm {
            rec.tpm = v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        }
        if let Some(v) = patch.max_concurrency {
            rec.max_concurrency = v.map(i64::from);
        }
        if let Some(m) = patch.metadata {
            check_metadata(&m)?;
            rec.metadata = m;
        }
        if let Some(t) = patch.tags {
            check_tags(&t)?;
            rec.tags = t;
        }
        if let Some(e) = patch.expires_at {
            rec.expires_at = e;
        }
        let _checked = if widened {
            self.refuse_unpriced_reach("models_allowed", Change { key: Some(&rec), ..Change::default() }).await?
        } else {
            None
        };
        rec.updated_at = Timestamp::now();
        let w = self.begin_write().await?;
        let rev = w.store().update_key(&rec).await?;
        let view = key_view_in(w.store(), &rec).await?;
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "key.update", ("key", id), meta).await?;
        Ok(view)
    }

    /// Issues a new secret; the old one works for `grace_period_s` more seconds, and the
    /// secrets of earlier rotations keep their own ends (see [`after_rotation`]: grace 0
    /// kills only the secret being replaced; at most [`tollgate_keys::MAX_GRACE_SECRETS`]
    /// rotated-out secrets are kept, the earliest dropped first).
    pub async fn rotate_key(&self, actor: &Actor, id: &str, input: RotateKey) -> Result<KeyWithSecret, ControlError> {
        self.authorize(actor, Scope::KeysWrite, Target::Key(id)).await?;
        let mut rec = self.key_record(id).await?;
        if rec.status == KeyStatus::Revoked.as_str() {
            return Err(ControlError::Conflict(format!("key {id} is revoked and cannot be rotated")));
        }
        let grace = input.grace_period_s.unwrap_or(0);
        if grace > 30 * 24 * 3600 {
            return Err(ControlError::invalid("grace_period_s", "must be at most 30 days"));
        }
        let now = Timestamp::now();
        let secret = mint_secret();
        let new_hash = self.hasher.hash(secret.expose());
        rec.grace_secrets = rotated_grace(&rec, new_hash, now, i64::try_from(grace).unwrap_or(0) * 1000);
        rec.key_hash = new_hash.to_hex();
        rec.key_hint = secret.hint();
        rec.rotated_at = Some(now);
        rec.updated_at = now;
        let w = self.begin_write().await?;
        let rev = w.store().update_key(&rec).await?;
        let view = key_view_in(w.store(), &rec).await?;
        let meta = serde_json::json!({"grace_period_s": grace});
        self.commit_audited(w, Some(rev), actor, "key.rotate", ("key", id), meta).await?;
        Ok(KeyWithSecret { key: secret.expose().to_owned(), view })
    }

    /// Revokes a key: every gateway refuses it once this change reaches it.
    pub async fn revoke_key(&self, actor: &Actor, id: &str) -> Result<KeyView, ControlError> {
        self.authorize(actor, Scope::KeysWrite, Target::Key(id)).await?;
        let mut rec = self.key_record(id).await?;
        if rec.status != KeyStatus::Revoked.as_str() {
            let now = Timestamp::now();
            rec.status = KeyStatus::Revoked.as_str().to_owned();
            rec.revoked_at = Some(now);
            rec.updated_at = now;
            // Refused under every secret by its status alone; the graces go too.
            rec.grace_secrets.clear();
            let w = self.begin_write().await?;
            let rev = w.store().update_key(&rec).await?;
            self.commit_audited(w, Some(rev), actor, "key.revoke", ("key", id), serde_json::Value::Null).await?;
        }
        self.key_view_of(&rec).await
    }
}

/// The grace list after rotating `rec` to the secret hashed `new_hash` at `now` with a
/// grace of `grace_ms`. A stored hash that does not parse (it could never authenticate)
/// is dropped.
fn rotated_grace(rec: &KeyRecord, new_hash: KeyHash, now: Timestamp, grace_ms: i64) -> Vec<GraceSecretRecord> {
    let earlier = rec.grace_secrets.iter().filter_map(|g| {
        let hash = KeyHash::from_hex(&g.key_hash).ok()?;
        Some(GraceSecret { hash, valid_until: g.valid_until })
    });
    let list = match KeyHash::from_hex(&rec.key_hash) {
        Ok(current) => after_rotation(earlier, current, now, grace_ms),
        Err(_) => {
            tracing::error!(key = %rec.id, "stored key hash is corrupt; it gets no grace");
            after_rotation(earlier, new_hash, now, 0)
        }
    };
    list.into_iter().map(|g| GraceSecretRecord { key_hash: g.hash.to_hex(), valid_until: g.valid_until }).collect()
}

/// The view of `rec` with its budgets as `store` sees them (an admin write's store, to
/// read what the write is about to commit).
async fn key_view_in(store: &Store, rec: &KeyRecord) -> Result<KeyView, ControlError> {
    let budgets = store.list_budgets_for(ScopeKind::VirtualKey, rec.id.as_str()).await?;
    let now = Timestamp::now();
    Ok(key_view(rec, budgets.iter().map(|b| budget_view(b, now)).collect(), now))
}

fn key_view(r: &KeyRecord, budgets: Vec<BudgetView>, now: Timestamp) -> KeyView {
    let status = if r.status == KeyStatus::Active.as_str() && r.expires_at.is_some_and(|e| e <= now) {
        "expired".to_owned()
    } else {
        r.status.clone()
    };
    KeyView {
        id: r.id.clone(),
        name: r.name.clone(),
        project_id: r.project_id.clone(),
        principal: r.principal.clone(),
        status,
        key_hint: r.key_hint.clone(),
        models_allowed: r.models_allowed.clone(),
        rpm: r.rpm,
        tpm: r.tpm,
        max_concurrency: r.max_concurrency,
        metadata: r.metadata.clone(),
        tags: r.tags.clone(),
        expires_at: r.expires_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
        rotated_at: r.rotated_at,
        revoked_at: r.revoked_at,
        budgets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let p: UpdateKey = serde_json::from_str(r#"{"rpm": null, "name": "x"}"#).unwrap();
        assert_eq!(p.rpm, Some(None));
        assert_eq!(p.name, Some(Some("x".into())));
        assert_eq!(p.tpm, None);
        assert!(serde_json::from_str::<UpdateKey>(r#"{"bogus": 1}"#).is_err());
    }
}
