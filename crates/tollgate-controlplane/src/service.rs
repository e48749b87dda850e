//! The service layer: every management operation, shared by REST and gRPC.

mod audit;
mod auth;
mod budgets;
mod models;
mod routing;
mod tenancy;
mod tokens;
mod usage;

pub use audit::{AuditEventView, AuditPage, AuditQuery, AuditVerification, BrokenRow};
use auth::Target;
pub use auth::{Actor, Scope, Tenancy};
pub use tenancy::{
    CreateOrganization, ListPrincipals, ListProjects, ListTeams, OrganizationView, PrincipalPage, PrincipalRevocation,
    PrincipalView, UpdateProvider,
};
pub use tokens::{CreateToken, TokenView, TokenWithSecret};

pub use budgets::{
    BudgetAmount, BudgetPage, BudgetView, CreateBudget, IncreaseBudget, ListBudgets, MAX_INCREASE_DURATION_S,
    TemporaryIncreaseView, Threshold, UpdateBudget,
};

use models::Change;
pub use models::{PRICE_EXPLICIT, UpdateModel};
pub use routing::{
    AliasView, CreateAlias, CreateRoutingPolicy, PolicyScopeKind, RoutingPolicyView, UpdateRoutingPolicy,
};
pub use usage::{LedgerPage, LedgerQuery, UsageFormat, UsageQuery, UsageReport};

use crate::ControlError;
use crate::secrets::Secrets;
use budgets::budget_view;
pub(crate) use budgets::no_fields;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::{Mutex, watch};
use tollgate_audit::{AuditEvent, chain_hash, redact};
use tollgate_core::{
    BudgetId, KeyId, ModelId, Money, OnBreach, OrgId, ProjectId, ProviderId, ScopeKind, TeamId, Timestamp, Window,
};
use tollgate_keys::{KeyHash, KeyHasher, KeyStatus, mint_secret};
use tollgate_proto::v1;
use tollgate_providers::ProviderKind;
use tollgate_store::{
    BudgetRecord, DeploymentPricing, DeploymentRecord, KeyFilter, KeyRecord, ModelRecord, OrgRecord, ProjectRecord,
    ProviderRecord, Store, TeamRecord,
};
use utoipa::ToSchema;

/// Name of the organization created at first start.
pub const DEFAULT_ORG: &str = "default";
const MAX_NAME: usize = 128;
const MAX_METADATA_ENTRIES: usize = 64;
const MAX_METADATA_VALUE: usize = 1024;
const MAX_PATTERNS: usize = 256;
/// Page size of list operations when none is given.
const DEFAULT_LIMIT: u64 = 100;
/// The largest page size of list operations.
const MAX_LIST_LIMIT: u64 = 1000;

// ------------------------------------------------------------------ inputs

/// `POST /api/v1/providers`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Unique name, referenced by model deployments.
    pub name: String,
    /// `openai`, `openai-compatible`, `mock`, ...
    #[schema(schema_with = provider_kind_schema)]
    pub kind: String,
    /// Base URL; defaults per kind.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The platform's credential at the provider (stored encrypted).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Requests per minute on this credential.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute on this credential.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Fallback priority (lower first).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Kind-specific settings, e.g. `{"latency_ms": 20}` for `mock`.
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

/// A deployment in [`CreateModel`].
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentInput {
    /// Provider name.
    pub provider: String,
    /// The upstream's model name.
    pub model: String,
    /// Lower is tried first (default 0); deployments of equal priority keep their order
    /// (strategy `priority`) or are drawn by weight (strategy `weighted`).
    #[serde(default)]
    pub priority: u32,
    /// Relative share of traffic among deployments of one priority under the weighted
    /// strategy (default 1, at most 1 000 000); 0 means fallback only.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// What a request this deployment serves is charged, when it differs from the
    /// model's price (a fallback to another provider's model); absent: the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingInput>,
}

impl PricingInput {
    /// As stored on a deployment (nano-dollars).
    fn to_deployment(self) -> DeploymentPricing {
        DeploymentPricing {
            input_per_mtok: self.input_per_mtok.nanos(),
            output_per_mtok: self.output_per_mtok.nanos(),
            cached_input_per_mtok: self.cached_input_per_mtok.map(Money::nanos),
            cache_write_per_mtok: self.cache_write_per_mtok.map(Money::nanos),
        }
    }

    /// As stored on a deployment, for the API.
    fn of_deployment(p: &DeploymentPricing) -> Self {
        PricingInput {
            input_per_mtok: Money::from_nanos(p.input_per_mtok),
            output_per_mtok: Money::from_nanos(p.output_per_mtok),
            cached_input_per_mtok: p.cached_input_per_mtok.map(Money::from_nanos),
            cache_write_per_mtok: p.cache_write_per_mtok.map(Money::from_nanos),
        }
    }
}

/// A deployment's own price on the wire.
fn deployment_pricing_wire(p: &DeploymentPricing) -> v1::Pricing {
    v1::Pricing {
        input_per_mtok_nanos: p.input_per_mtok,
        output_per_mtok_nanos: p.output_per_mtok,
        cached_input_per_mtok_nanos: p.cached_input_per_mtok,
        cache_write_per_mtok_nanos: p.cache_write_per_mtok,
    }
}

fn default_weight() -> u32 {
    tollgate_routing::DeploymentOptions::default().weight
}

/// Prices in USD per 1M tokens.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingInput {
    /// Per 1M prompt tokens.
    pub input_per_mtok: Money,
    /// Per 1M generated tokens.
    pub output_per_mtok: Money,
    /// Per 1M cached prompt tokens.
    #[serde(default)]
    pub cached_input_per_mtok: Option<Money>,
    /// Per 1M prompt tokens written to the provider's cache (Anthropic's cache creation);
    /// the input price when unset.
    #[serde(default)]
    pub cache_write_per_mtok: Option<Money>,
}

/// `POST /api/v1/models`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    /// Public name callers use.
    pub name: String,
    /// Where it is served, in priority order.
    pub deployments: Vec<DeploymentInput>,
    /// Prices; when absent, the shipped price catalog's list price of the first
    /// deployment's upstream model (or of the public name) if it has one. A model
    /// without either stays unpriced and cannot be served under a money budget.
    #[serde(default)]
    pub pricing: Option<PricingInput>,
    /// Output tokens assumed when a request sets no `max_tokens`.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
}

/// `POST /api/v1/teams`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// Team name, unique in its organization.
    pub name: String,
    /// Organization id or name; the default organization when absent.
    #[serde(default)]
    pub organization: Option<String>,
}

/// `POST /api/v1/projects`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Project name, unique in its team.
    pub name: String,
    /// Team id or name.
    pub team: String,
}

/// A budget given inline at key creation (scoped to the new key).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    /// The limit in USD; exactly one of this and `limit_tokens`.
    #[serde(default)]
    pub limit_usd: Option<Money>,
    /// A token limit (input + output).
    #[serde(default)]
    pub limit_tokens: Option<u64>,
    /// The window.
    pub window: Window,
    /// Block (default) or warn.
    #[serde(default)]
    pub on_breach: Option<OnBreach>,
    /// Fractions of the limit at which to alert, e.g. `[0.5, 0.8]`.
    #[serde(default)]
    pub alert_thresholds: Vec<Threshold>,
}

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

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or set.
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /api/v1/keys/{id}`: absent fields are left alone, `null` clears.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// Display name.
    #[serde(default, deserialize_with = "double_option")]
    pub name: Option<Option<String>>,
    /// Allowed models (replaces the list).
    #[serde(default)]
    pub models_allowed: Option<Vec<String>>,
    /// Requests per minute.
    #[serde(default, deserialize_with = "double_option")]
    pub rpm: Option<Option<u32>>,
    /// Tokens per minute.
    #[serde(default, deserialize_with = "double_option")]
    pub tpm: Option<Option<u64>>,
    /// Concurrent requests.
    #[serde(default, deserialize_with = "double_option")]
    pub max_concurrency: Option<Option<u32>>,
    /// Metadata (replaces the map).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Tags (replaces the list).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Expiry.
    #[serde(default, deserialize_with = "double_option")]
    pub expires_at: Option<Option<Timestamp>>,
}

/// `POST /api/v1/keys/{id}/rotate`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old secret keeps working (default 0: it dies now).
    #[serde(default)]
    pub grace_period_s: Option<u64>,
}

/// A string schema that allows exactly `values`.
pub(crate) fn enum_schema(values: impl IntoIterator<Item = &'static str>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String).enum_values(Some(values)).build()
}

/// The provider kinds `POST /api/v1/providers` accepts.
fn provider_kind_schema() -> utoipa::openapi::Object {
    enum_schema(ProviderKind::ALL.iter().map(|k| k.as_str()))
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

// ------------------------------------------------------------------ views

/// A provider as the API shows it: the credential only as a hint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderView {
    /// Id.
    pub id: ProviderId,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Base URL.
    pub base_url: String,
    /// Masked credential (`sk-…abcd`).
    pub api_key_hint: String,
    /// `sha256:` and 12 hex digits of the credential's SHA-256 (empty for none): whether
    /// the stored credential is one you hold, without it ever being returned.
    pub api_key_fingerprint: String,
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Priority.
    pub priority: i32,
    /// Kind-specific settings (`{"latency_ms": 20}`, `{"api_version": ...}`), so a
    /// declarative client can compare them; `null` when none.
    pub extra: serde_json::Value,
    /// Created.
    pub created_at: Timestamp,
}

/// A model as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelView {
    /// Id.
    pub id: ModelId,
    /// Public name.
    pub name: String,
    /// Deployments.
    pub deployments: Vec<DeploymentInput>,
    /// Prices, if set.
    pub pricing: Option<PricingInput>,
    /// Where the prices came from: `explicit` or `catalog:<version>`.
    pub price_source: Option<String>,
    /// Default output cap.
    pub max_output_tokens: Option<i64>,
    /// Created.
    pub created_at: Timestamp,
}

/// A team.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TeamView {
    /// Id.
    pub id: TeamId,
    /// Name.
    pub name: String,
    /// Organization.
    pub org_id: OrgId,
    /// Created.
    pub created_at: Timestamp,
}

/// A project.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectView {
    /// Id.
    pub id: ProjectId,
    /// Name.
    pub name: String,
    /// Team.
    pub team_id: TeamId,
    /// Organization.
    pub org_id: OrgId,
    /// Created.
    pub created_at: Timestamp,
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

// ------------------------------------------------------------------ service

/// The control plane's operations over one store.
pub struct Service {
    store: Store,
    secrets: Secrets,
    hasher: KeyHasher,
    org: OrgRecord,
    revision: watch::Sender<i64>,
    audit_lock: Mutex<()>,
    /// Held from the unpriced-model check to the end of the write it clears, so two
    /// writes that are fine alone but not together (an unpriced model and a `*` key
    /// under a money budget) cannot both pass (see `refuse_unpriced_reach`).
    unpriced_lock: Mutex<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("revision", &*self.revision.borrow()).finish_non_exhaustive()
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A list operation's `limit` query parameter.
pub(crate) fn parse_limit(text: &str) -> Result<u64, ControlError> {
    text.parse().map_err(|_| ControlError::invalid("limit", "must be a positive integer"))
}

fn check_name(field: &str, value: &str) -> Result<(), ControlError> {
    if value.trim().is_empty() {
        return Err(ControlError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_NAME {
        return Err(ControlError::invalid(field, format!("must be at most {MAX_NAME} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ControlError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn check_patterns(patterns: &[String]) -> Result<(), ControlError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(ControlError::invalid("models_allowed", format!("at most {MAX_PATTERNS} entries")));
    }
    for (i, p) in patterns.iter().enumerate() {
        check_name(&format!("models_allowed[{i}]"), p)?;
    }
    Ok(())
}

fn check_metadata(m: &BTreeMap<String, String>) -> Result<(), ControlError> {
    if m.len() > MAX_METADATA_ENTRIES {
        return Err(ControlError::invalid("metadata", format!("at most {MAX_METADATA_ENTRIES} entries")));
    }
    for (k, v) in m {
        check_name("metadata key", k)?;
        if v.len() > MAX_METADATA_VALUE {
            return Err(ControlError::invalid(format!("metadata.{k}"), format!("at most {MAX_METADATA_VALUE} bytes")));
        }
    }
    Ok(())
}

fn check_tags(tags: &[String]) -> Result<(), ControlError> {
    tollgate_keys::validate_tags(tags).map_err(|e| ControlError::invalid("tags", e.to_string()))
}

/// Appends one audit event to the chain in `store`. Callers in one process serialize
/// through [`Service`]'s audit lock.
pub(crate) async fn append_audit(
    store: &Store,
    actor: &str,
    action: &str,
    kind: &str,
    id: &str,
    metadata: serde_json::Value,
) -> Result<i64, tollgate_store::StoreError> {
    let prev = store.last_audit().await?.map(|a| a.hash).unwrap_or_else(|| tollgate_audit::GENESIS.to_owned());
    let event = AuditEvent {
        id: new_id("aud"),
        at: Timestamp::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target_kind: kind.to_owned(),
        target_id: id.to_owned(),
        metadata: redact(metadata),
    };
    let hash = chain_hash(&prev, &event);
    store
        .append_audit(&tollgate_store::AuditRecord {
            seq: 0,
            id: event.id,
            at: event.at,
            actor: event.actor,
            action: event.action,
            target_kind: event.target_kind,
            target_id: event.target_id,
            metadata: event.metadata,
            prev_hash: prev,
            hash,
        })
        .await
}

/// A provider's base URL, checked for its kind and without a trailing slash.
fn check_base_url(kind: ProviderKind, url: &str) -> Result<String, ControlError> {
    let base_url = url.trim_end_matches('/').to_owned();
    if kind != ProviderKind::Mock {
        let uri: http::Uri = base_url.parse().map_err(|_| ControlError::invalid("base_url", "not a valid URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ControlError::invalid("base_url", "must be an http(s) URL with a host"));
        }
    }
    Ok(base_url)
}

/// A provider credential's shape, for its kind.
fn check_api_key(kind: ProviderKind, api_key: &str) -> Result<(), ControlError> {
    if api_key.len() > 4096 || api_key.chars().any(char::is_control) {
        return Err(ControlError::invalid("api_key", "must be at most 4096 printable characters"));
    }
    if matches!(kind, ProviderKind::OpenAi) && api_key.is_empty() {
        return Err(ControlError::invalid("api_key", "required for kind openai"));
    }
    Ok(())
}

fn mask(api_key: &str) -> String {
    let n = api_key.chars().count();
    if n == 0 {
        return String::new();
    }
    if n <= 8 {
        return "…".into();
    }
    let head: String = api_key.chars().take(3).collect();
    let tail: String = api_key.chars().skip(n - 4).collect();
    format!("{head}…{tail}")
}

impl Service {
    /// Opens the service over a store: ensures the default organization exists and reads
    /// the current revision.
    ///
    /// Refuses a master key other than the one the stored credentials are encrypted under
    /// ([`ControlError::MasterKeyMismatch`]). A database that predates key ids adopts the
    /// key, once it has decrypted a stored credential.
    pub async fn new(store: Store, secrets: Secrets) -> Result<Arc<Self>, ControlError> {
        crate::rotation::check_master_key(&store, &secrets.master_key).await?;
        let org = store.ensure_org(DEFAULT_ORG).await?;
        let rev = store.revision().await?;
        let hasher = KeyHasher::new(&secrets.pepper);
        let (revision, _) = watch::channel(rev);
        Ok(Arc::new(Service {
            store,
            secrets,
            hasher,
            org,
            revision,
            audit_lock: Mutex::new(()),
            unpriced_lock: Mutex::new(()),
        }))
    }

    /// Subscribes to revision changes.
    pub fn revisions(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn committed(&self, rev: i64) {
        self.revision.send_if_modified(|cur| {
            if rev > *cur {
                *cur = rev;
                true
            } else {
                false
            }
        });
    }

    async fn audit(&self, actor: &Actor, action: &str, kind: &str, id: &str, metadata: serde_json::Value) {
        let _guard = self.audit_lock.lock().await;
        let result = append_audit(&self.store, &actor.id, action, kind, id, metadata).await;
        if let Err(e) = result {
            tracing::error!(error = %e, action, "could not append audit event");
        }
    }

    /// Creates a provider credential; the key is encrypted before it reaches the store.
    pub async fn create_provider(&self, actor: &Actor, input: CreateProvider) -> Result<ProviderView, ControlError> {
        self.authorize(actor, Scope::ProvidersWrite, Target::Global).await?;
        check_name("name", &input.name)?;
        let kind: ProviderKind = input.kind.parse().map_err(|e| ControlError::invalid("kind", format!("{e}")))?;
        if !kind.is_supported() {
            let supported: Vec<&str> =
                ProviderKind::ALL.iter().filter(|k| k.is_supported()).map(|k| k.as_str()).collect();
            return Err(ControlError::invalid(
                "kind",
                format!("{kind} is not supported by this build (supported: {})", supported.join(", ")),
            ));
        }
        let base_url = match input.base_url.as_deref().or(kind.default_base_url()) {
            Some(u) => check_base_url(kind, u)?,
            None => return Err(ControlError::invalid("base_url", format!("required for kind {kind}"))),
        };
        let api_key = input.api_key.unwrap_or_default();
        check_api_key(kind, &api_key)?;
        let extra = input.extra.unwrap_or(serde_json::Value::Null);
        if !(extra.is_null() || extra.is_object()) {
            return Err(ControlError::invalid("extra", "must be an object"));
        }
        // A control plane left running across a rotation must not add a credential under
        // the retired key.
        crate::rotation::check_master_key(&self.store, &self.secrets.master_key).await?;
        let now = Timestamp::now();
        let rec = ProviderRecord {
            id: ProviderId::new(new_id(ProviderId::PREFIX)),
            name: input.name,
            kind: kind.as_str().to_owned(),
            base_url,
            api_key_ciphertext: self.secrets.master_key.encrypt(&api_key)?,
            api_key_hint: mask(&api_key),
            rpm: input.rpm.map(i64::from),
            tpm: input.tpm.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            priority: input.priority.unwrap_or(0),
            extra,
            created_at: now,
            updated_at: now,
        };
        let rev = self.store.create_provider(&rec).await?;
        self.committed(rev);
        let view = self.provider_view(&rec)?;
        self.audit(
            actor,
            "provider.create",
            "provider",
            rec.id.as_str(),
            serde_json::to_value(&view).unwrap_or_default(),
        )
        .await;
        Ok(view)
    }

    /// Lists providers (credentials only as hints).
    pub async fn list_providers(&self, actor: &Actor) -> Result<Vec<ProviderView>, ControlError> {
        self.authorize(actor, Scope::ProvidersWrite, Target::Global).await?;
        self.store.list_providers().await?.iter().map(|p| self.provider_view(p)).collect()
    }

    /// Adds a model to the catalog.
    pub async fn create_model(&self, actor: &Actor, input: CreateModel) -> Result<ModelView, ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        check_name("name", &input.name)?;
        if self.store.find_alias(&input.name).await?.is_some() {
            return Err(ControlError::Conflict(format!("{:?} is an alias; a model cannot take its name", input.name)));
        }
        let deployments = self.check_deployments(&input.deployments).await?;
        if let Some(p) = &input.pricing {
            models::check_pricing("pricing.", p)?;
        }
        let now = Timestamp::now();
        let mut rec = ModelRecord {
            id: ModelId::new(new_id(ModelId::PREFIX)),
            name: input.name,
            deployments,
            input_per_mtok: None,
            output_per_mtok: None,
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
            price_source: None,
            max_output_tokens: input.max_output_tokens.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            created_at: now,
            updated_at: now,
        };
        let price = match input.pricing {
            Some(p) => Some((p, PRICE_EXPLICIT.to_owned())),
            None => models::catalog_price(input.deployments.iter().map(|d| d.model.as_str()), &rec.name),
        };
        let _checked = match price {
            Some((p, source)) => {
                models::set_price(&mut rec, &p, source);
                None
            }
            None => self.refuse_unpriced_reach("pricing", Change { model: Some(&rec), ..Change::default() }).await?,
        };
        let rev = self.store.create_model(&rec).await?;
        self.committed(rev);
        let view = model_view(&rec);
        self.audit(actor, "model.create", "model", rec.id.as_str(), serde_json::to_value(&view).unwrap_or_default())
            .await;
        Ok(view)
    }

    /// Checks a model's deployments (count, names, weights, prices, providers that
    /// exist) and returns them as stored.
    pub(crate) async fn check_deployments(
        &self,
        deployments: &[DeploymentInput],
    ) -> Result<Vec<DeploymentRecord>, ControlError> {
        if deployments.is_empty() {
            return Err(ControlError::invalid("deployments", "at least one deployment is required"));
        }
        if deployments.len() > tollgate_routing::MAX_DEPLOYMENTS {
            return Err(ControlError::invalid(
                "deployments",
                format!("at most {} deployments", tollgate_routing::MAX_DEPLOYMENTS),
            ));
        }
        for (i, d) in deployments.iter().enumerate() {
            check_name(&format!("deployments[{i}].model"), &d.model)?;
            if d.weight > tollgate_routing::MAX_WEIGHT {
                return Err(ControlError::invalid(
                    format!("deployments[{i}].weight"),
                    format!("must be at most {}", tollgate_routing::MAX_WEIGHT),
                ));
            }
            if let Some(p) = &d.pricing {
                models::check_pricing(&format!("deployments[{i}].pricing."), p)?;
            }
            if self.store.find_provider(&d.provider).await?.is_none() {
                return Err(ControlError::invalid(
                    format!("deployments[{i}].provider"),
                    format!("no provider named {:?}", d.provider),
                ));
            }
        }
        Ok(deployments
            .iter()
            .map(|d| DeploymentRecord {
                provider: d.provider.clone(),
                model: d.model.clone(),
                priority: d.priority,
                weight: d.weight,
                pricing: d.pricing.map(PricingInput::to_deployment),
            })
            .collect())
    }

    /// Creates a team in an organization (the default one unless named).
    pub async fn create_team(&self, actor: &Actor, input: CreateTeam) -> Result<TeamView, ControlError> {
        self.authorize(actor, Scope::Admin, Target::Global).await?;
        check_name("name", &input.name)?;
        let org = match &input.organization {
            Some(o) => {
                self.store
                    .find_org(o)
                    .await?
                    .ok_or_else(|| ControlError::invalid("organization", format!("no organization {o:?}")))?
                    .id
            }
            None => self.org.id.clone(),
        };
        let (rec, rev) = self.store.create_team(&org, &input.name).await?;
        self.committed(rev);
        let view = team_view(&rec);
        self.audit(actor, "team.create", "team", rec.id.as_str(), serde_json::to_value(&view).unwrap_or_default())
            .await;
        Ok(view)
    }

    /// Creates a project in a team.
    pub async fn create_project(&self, actor: &Actor, input: CreateProject) -> Result<ProjectView, ControlError> {
        self.authorize(actor, Scope::Admin, Target::TeamRef { field: "team", id_or_name: &input.team }).await?;
        check_name("name", &input.name)?;
        let team = self
            .store
            .find_team(&input.team)
            .await?
            .ok_or_else(|| ControlError::invalid("team", format!("no team {:?}", input.team)))?;
        let (rec, rev) = self.store.create_project(&team.id, &input.name).await?;
        self.committed(rev);
        let view = project_view(&rec);
        self.audit(
            actor,
            "project.create",
            "project",
            rec.id.as_str(),
            serde_json::to_value(&view).unwrap_or_default(),
        )
        .await;
        Ok(view)
    }

    async fn project(&self, field: &str, id_or_name: &str) -> Result<ProjectRecord, ControlError> {
        self.store
            .find_project(id_or_name)
            .await?
            .ok_or_else(|| ControlError::invalid(field, format!("no project {id_or_name:?}")))
    }

    /// Mints a key; the secret is returned here and never again.
    pub async fn create_key(&self, actor: &Actor, input: CreateKey) -> Result<KeyWithSecret, ControlError> {
        let target = Target::ProjectRef { field: "project", id_or_name: &input.project };
        self.authorize(actor, Scope::KeysWrite, target).await?;
        if input.budget.is_some() {
            // The budget is on the new key, which is inside the project just checked.
            self.authorize(actor, Scope::BudgetsWrite, Target::Filtered).await?;
        }
        let project = self.project("project", &input.project).await?;
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
            previous_key_hash: None,
            previous_valid_until: None,
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
                    created_at: now,
                    updated_at: now,
                })
            }
            None => None,
        };
        // A key minted under a money budget (its own, or its principal's, project's, team's
        // or organization's) must not reach an unpriced model.
        let inline: Vec<&BudgetRecord> = budget.iter().collect();
        let field = if budget.is_some() { "budget.limit_usd" } else { "models_allowed" };
        let _checked = self
            .refuse_unpriced_reach(field, Change { key: Some(&rec), budgets: &inline, ..Change::default() })
            .await?;
        let rev = self.store.create_key(&rec, budget.as_ref()).await?;
        self.committed(rev);
        let view = key_view(&rec, budget.iter().map(|b| budget_view(b, now)).collect(), now);
        self.audit(actor, "key.create", "key", id.as_str(), serde_json::to_value(&view).unwrap_or_default()).await;
        Ok(KeyWithSecret { key: secret.expose().to_owned(), view })
    }

    async fn key_record(&self, id: &str) -> Result<KeyRecord, ControlError> {
        self.store
            .get_key(&KeyId::new(id))
            .await?
            .ok_or_else(|| ControlError::NotFound { kind: "key", id: id.chars().take(128).collect() })
    }

    async fn key_view_of(&self, rec: &KeyRecord) -> Result<KeyView, ControlError> {
        let budgets = self.store.list_budgets_for(ScopeKind::VirtualKey, rec.id.as_str()).await?;
        let now = Timestamp::now();
        Ok(key_view(rec, budgets.iter().map(|b| budget_view(b, now)).collect(), now))
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
                Some(self.project("project", p).await?.id)
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
        let rev = self.store.update_key(&rec).await?;
        self.committed(rev);
        let view = self.key_view_of(&rec).await?;
        self.audit(actor, "key.update", "key", id, serde_json::to_value(&view).unwrap_or_default()).await;
        Ok(view)
    }

    /// Issues a new secret; the old one works for `grace_period_s` more seconds.
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
        if grace > 0 {
            rec.previous_key_hash = Some(rec.key_hash.clone());
            rec.previous_valid_until = Some(now.plus_millis(i64::try_from(grace).unwrap_or(0) * 1000));
        } else {
            rec.previous_key_hash = None;
            rec.previous_valid_until = None;
        }
        rec.key_hash = self.hasher.hash(secret.expose()).to_hex();
        rec.key_hint = secret.hint();
        rec.rotated_at = Some(now);
        rec.updated_at = now;
        let rev = self.store.update_key(&rec).await?;
        self.committed(rev);
        let view = self.key_view_of(&rec).await?;
        self.audit(actor, "key.rotate", "key", id, serde_json::json!({"grace_period_s": grace})).await;
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
            rec.previous_key_hash = None;
            rec.previous_valid_until = None;
            let rev = self.store.update_key(&rec).await?;
            self.committed(rev);
            self.audit(actor, "key.revoke", "key", id, serde_json::Value::Null).await;
        }
        self.key_view_of(&rec).await
    }

    /// Builds the complete configuration gateways serve from.
    pub async fn build_snapshot(&self) -> Result<v1::Snapshot, ControlError> {
        let data = self.store.snapshot().await?;
        let projects: HashMap<&str, &ProjectRecord> = data.projects.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut providers = Vec::with_capacity(data.providers.len());
        for p in &data.providers {
            let api_key = match self.secrets.master_key.decrypt(&p.api_key_ciphertext) {
                Ok(k) => k,
                Err(e) => {
                    // After a rotation under a running control plane every credential is
                    // unreadable: keep the previous snapshot rather than drop them all.
                    crate::rotation::check_master_key(&self.store, &self.secrets.master_key).await?;
                    // One unreadable credential must not take the whole fleet down.
                    tracing::error!(provider = %p.name, error = %e, "skipping provider whose credential cannot be decrypted");
                    continue;
                }
            };
            providers.push(v1::Provider {
                id: p.id.to_string(),
                name: p.name.clone(),
                kind: p.kind.clone(),
                base_url: p.base_url.clone(),
                api_key,
                rpm: p.rpm.and_then(|v| u32::try_from(v).ok()),
                tpm: p.tpm.and_then(|v| u64::try_from(v).ok()),
                priority: p.priority,
                extra_json: if p.extra.is_null() { String::new() } else { p.extra.to_string() },
            });
        }
        let models = data
            .models
            .iter()
            .map(|m| v1::Model {
                id: m.id.to_string(),
                name: m.name.clone(),
                deployments: m
                    .deployments
                    .iter()
                    .map(|d| v1::Deployment {
                        provider: d.provider.clone(),
                        model: d.model.clone(),
                        priority: d.priority,
                        weight: Some(d.weight),
                        pricing: d.pricing.as_ref().map(deployment_pricing_wire),
                    })
                    .collect(),
                pricing: match (m.input_per_mtok, m.output_per_mtok) {
                    (Some(i), Some(o)) => Some(v1::Pricing {
                        input_per_mtok_nanos: i,
                        output_per_mtok_nanos: o,
                        cached_input_per_mtok_nanos: m.cached_input_per_mtok,
                        cache_write_per_mtok_nanos: m.cache_write_per_mtok,
                    }),
                    _ => None,
                },
                max_output_tokens: m.max_output_tokens.and_then(|v| u64::try_from(v).ok()),
            })
            .collect();
        let mut keys = Vec::with_capacity(data.keys.len());
        for k in &data.keys {
            let Some(project) = projects.get(k.project_id.as_str()) else {
                tracing::error!(key = %k.id, "key's project is missing; skipping");
                continue;
            };
            let Ok(hash) = KeyHash::from_hex(&k.key_hash) else {
                tracing::error!(key = %k.id, "stored key hash is corrupt; skipping");
                continue;
            };
            let previous = k.previous_key_hash.as_deref().and_then(|h| KeyHash::from_hex(h).ok());
            keys.push(v1::Key {
                id: k.id.to_string(),
                name: k.name.clone(),
                org_id: project.org_id.to_string(),
                team_id: project.team_id.to_string(),
                project_id: k.project_id.to_string(),
                principal: k.principal.clone(),
                status: k.status.clone(),
                expires_at_ms: k.expires_at.map(Timestamp::unix_millis),
                models_allowed: k.models_allowed.clone(),
                rpm: k.rpm.and_then(|v| u32::try_from(v).ok()),
                tpm: k.tpm.and_then(|v| u64::try_from(v).ok()),
                max_concurrency: k.max_concurrency.and_then(|v| u32::try_from(v).ok()),
                metadata: k.metadata.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
                tags: k.tags.clone(),
                key_hash: hash.0.to_vec(),
                hint: k.key_hint.clone(),
                previous_key_hash: previous.map(|h| h.0.to_vec()),
                previous_valid_until_ms: k.previous_valid_until.map(Timestamp::unix_millis),
            });
        }
        let budgets = data
            .budgets
            .iter()
            .map(|b| v1::Budget {
                id: b.id.to_string(),
                scope: b.scope.as_str().to_owned(),
                scope_id: b.scope_id.clone(),
                limit_nanos: b.limit_nanos,
                window: b.window.as_str().to_owned(),
                on_breach: b.on_breach.as_str().to_owned(),
                alert_thresholds_permille: b.alert_thresholds.iter().map(|&t| u32::from(t)).collect(),
                limit_tokens: b.limit_tokens.and_then(|t| u64::try_from(t).ok()),
                epoch: u32::try_from(b.epoch).unwrap_or(0),
                temporary_increase: b.temporary_increase,
                temporary_increase_until_ms: b.temporary_increase_until.map(Timestamp::unix_millis),
            })
            .collect();
        let aliases = data
            .aliases
            .iter()
            .map(|a| v1::ModelAlias { name: a.name.clone(), target_model: a.target_model.clone() })
            .collect();
        let routing_policies = data
            .routing_policies
            .iter()
            .map(|p| v1::RoutingPolicy {
                id: p.id.clone(),
                scope: p.scope.clone(),
                scope_id: p.scope_id.clone(),
                policy_json: p.policy.to_string(),
            })
            .collect();
        Ok(v1::Snapshot {
            revision: data.revision,
            key_pepper: self.secrets.pepper.expose().to_vec(),
            providers,
            models,
            keys,
            budgets,
            aliases,
            routing_policies,
        })
    }
}

fn provider_view(r: &ProviderRecord) -> ProviderView {
    ProviderView {
        id: r.id.clone(),
        name: r.name.clone(),
        kind: r.kind.clone(),
        base_url: r.base_url.clone(),
        api_key_hint: r.api_key_hint.clone(),
        api_key_fingerprint: String::new(),
        rpm: r.rpm,
        tpm: r.tpm,
        priority: r.priority,
        extra: r.extra.clone(),
        created_at: r.created_at,
    }
}

fn model_view(r: &ModelRecord) -> ModelView {
    ModelView {
        id: r.id.clone(),
        name: r.name.clone(),
        deployments: r
            .deployments
            .iter()
            .map(|d| DeploymentInput {
                provider: d.provider.clone(),
                model: d.model.clone(),
                priority: d.priority,
                weight: d.weight,
                pricing: d.pricing.as_ref().map(PricingInput::of_deployment),
            })
            .collect(),
        pricing: match (r.input_per_mtok, r.output_per_mtok) {
            (Some(i), Some(o)) => Some(PricingInput {
                input_per_mtok: Money::from_nanos(i),
                output_per_mtok: Money::from_nanos(o),
                cached_input_per_mtok: r.cached_input_per_mtok.map(Money::from_nanos),
                cache_write_per_mtok: r.cache_write_per_mtok.map(Money::from_nanos),
            }),
            _ => None,
        },
        price_source: r.price_source.clone(),
        max_output_tokens: r.max_output_tokens,
        created_at: r.created_at,
    }
}

fn team_view(r: &TeamRecord) -> TeamView {
    TeamView { id: r.id.clone(), name: r.name.clone(), org_id: r.org_id.clone(), created_at: r.created_at }
}

fn project_view(r: &ProjectRecord) -> ProjectView {
    ProjectView {
        id: r.id.clone(),
        name: r.name.clone(),
        team_id: r.team_id.clone(),
        org_id: r.org_id.clone(),
        created_at: r.created_at,
    }
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
    fn credentials_are_masked_to_a_hint() {
        assert_eq!(mask(""), "");
        assert_eq!(mask("short"), "…");
        assert_eq!(mask("sk-proj-abcdefghijklmnop"), "sk-…mnop");
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let p: UpdateKey = serde_json::from_str(r#"{"rpm": null, "name": "x"}"#).unwrap();
        assert_eq!(p.rpm, Some(None));
        assert_eq!(p.name, Some(Some("x".into())));
        assert_eq!(p.tpm, None);
        assert!(serde_json::from_str::<UpdateKey>(r#"{"bogus": 1}"#).is_err());
    }

    #[test]
    fn names_are_validated_with_the_field_named() {
        assert!(check_name("name", "ok").is_ok());
        let e = check_name("name", "").unwrap_err().to_string();
        assert!(e.contains("name"), "{e}");
        assert!(check_name("name", &"x".repeat(MAX_NAME + 1)).is_err());
        assert!(check_name("name", "a\nb").is_err());
    }
}
