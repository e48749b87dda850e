//! The plain records the store reads and writes. They carry no behaviour: validation
//! belongs to the callers, decoding of stored columns to `crate::convert`.

use std::collections::BTreeMap;
use tollgate_core::{
    BudgetId, KeyId, ModelId, OnBreach, OrgId, ProjectId, ProviderId, ScopeKind, TeamId, Timestamp, TokenId, Window,
};

/// An organization, the top of the tenancy tree.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgRecord {
    /// Its id.
    pub id: OrgId,
    /// Its name, unique across organizations.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A team inside an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamRecord {
    /// Its id.
    pub id: TeamId,
    /// The organization it belongs to.
    pub org_id: OrgId,
    /// Its name, unique inside its organization.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A project inside a team.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRecord {
    /// Its id.
    pub id: ProjectId,
    /// The team it belongs to.
    pub team_id: TeamId,
    /// The team's organization (joined on read; not stored on the project row).
    pub org_id: OrgId,
    /// Its name, unique inside its team.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An upstream provider credential.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRecord {
    /// Its id.
    pub id: ProviderId,
    /// Its name, unique across providers; model deployments refer to it.
    pub name: String,
    /// The adapter kind (`openai`, `anthropic`, `mock`, ...).
    pub kind: String,
    /// The upstream base URL.
    pub base_url: String,
    /// The API key as encrypted by the caller; opaque here, never a clear key.
    pub api_key_ciphertext: String,
    /// A short display hint of the clear key.
    pub api_key_hint: String,
    /// Requests per minute cap for this credential.
    pub rpm: Option<i64>,
    /// Tokens per minute cap for this credential.
    pub tpm: Option<i64>,
    /// Fallback priority.
    pub priority: i32,
    /// Adapter-specific configuration.
    pub extra: serde_json::Value,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// One upstream serving a public model: a provider (by name), its model name there, and
/// how it takes part in routing.
///
/// `priority` and `weight` were added after the first release: stored deployments without
/// them read as priority 0, weight 1 (the routing defaults), so old rows keep their meaning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentRecord {
    /// The provider's name (not its id).
    pub provider: String,
    /// The model name the upstream expects.
    pub model: String,
    /// Lower is tried first (0 when not stored).
    #[serde(default)]
    pub priority: u32,
    /// Relative share of traffic under the weighted strategy; 0 means fallback only
    /// (1 when not stored).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// What a request this deployment serves is charged, when it differs from the
    /// model's price (a fallback to another provider's model); `None`: the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<DeploymentPricing>,
}

/// A deployment's own prices, nano-dollars per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentPricing {
    /// Per 1M prompt tokens.
    pub input_per_mtok: i64,
    /// Per 1M generated tokens.
    pub output_per_mtok: i64,
    /// Per 1M prompt tokens read from the provider's cache; the input price when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<i64>,
    /// Per 1M prompt tokens written to the provider's cache; the input price when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok: Option<i64>,
}

fn default_weight() -> u32 {
    1
}

/// Another public name for a catalog model (`fast` → `gpt-4o-mini`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRecord {
    /// The alias; unique across aliases and never a model's name.
    pub name: String,
    /// The public name of the model it stands for (never another alias).
    pub target_model: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A routing policy attached to one scope, or the default policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingPolicyRecord {
    /// Its id.
    pub id: String,
    /// `organization`, `team`, `project`, `virtual_key` or `default`; not checked here.
    pub scope: String,
    /// The id of the scope's entity; `None` for `default`. At most one policy per
    /// `(scope, scope_id)`.
    pub scope_id: Option<String>,
    /// The policy as JSON (the routing crate's `RawRoutingPolicy`); opaque here.
    pub policy: serde_json::Value,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// A public model in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    /// Its id.
    pub id: ModelId,
    /// The public name callers ask for, unique across models.
    pub name: String,
    /// Where it can be served, in order.
    pub deployments: Vec<DeploymentRecord>,
    /// Nano-dollars per 1M input tokens; `None` means unpriced.
    pub input_per_mtok: Option<i64>,
    /// Nano-dollars per 1M output tokens; `None` means unpriced.
    pub output_per_mtok: Option<i64>,
    /// Nano-dollars per 1M cached input tokens.
    pub cached_input_per_mtok: Option<i64>,
    /// Nano-dollars per 1M prompt tokens written to the provider's cache; the input
    /// price when unset.
    pub cache_write_per_mtok: Option<i64>,
    /// Where the price came from: `explicit` or `catalog:<version>`; `None` when unpriced
    /// (or priced before sources were recorded).
    pub price_source: Option<String>,
    /// Cap on output tokens per request.
    pub max_output_tokens: Option<i64>,
    /// The most tokens one image part of a request may count for; `None`: no cap.
    pub max_image_tokens: Option<i64>,
    /// The most tokens one audio part of a request may count for; `None`: no cap.
    pub max_audio_tokens: Option<i64>,
    /// The most tokens one file part of a request may count for; `None`: no cap.
    pub max_file_tokens: Option<i64>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// A rotated-out secret of a key (by its hash) and the instant it stops being accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraceSecretRecord {
    /// Hex of the keyed hash of the rotated-out secret.
    pub key_hash: String,
    /// The first instant it is no longer accepted.
    pub valid_until: Timestamp,
}

/// A virtual key: its hash and policy, never its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// Its id.
    pub id: KeyId,
    /// The project it belongs to (immutable).
    pub project_id: ProjectId,
    /// A display name.
    pub name: Option<String>,
    /// The platform's customer or user id it is issued to.
    pub principal: Option<String>,
    /// Hex of the keyed hash of the current secret; unique across keys.
    pub key_hash: String,
    /// A short display hint of the current secret.
    pub key_hint: String,
    /// The rotated-out secrets still in (or not yet pruned after) their grace, oldest
    /// rotation first, each until its own end. Stored as `grace_secrets_json`; the last
    /// one is also written to the columns `previous_key_hash` / `previous_valid_until`,
    /// which is all a control plane predating the list reads, and a row such a control
    /// plane wrote reads with its previous secret merged into the list.
    pub grace_secrets: Vec<GraceSecretRecord>,
    /// `active` or `revoked`; expiry is derived from `expires_at`, not stored here.
    pub status: String,
    /// When the key stops working.
    pub expires_at: Option<Timestamp>,
    /// Model names and globs it may use; empty means no restriction.
    pub models_allowed: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Concurrent requests.
    pub max_concurrency: Option<i64>,
    /// Free-form labels set by the platform.
    pub metadata: BTreeMap<String, String>,
    /// Tags (`env:prod`, `feature:chat`), copied to every ledger entry the key makes.
    pub tags: Vec<String>,
    /// When it was minted.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
    /// When it was last rotated.
    pub rotated_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// A spending limit at one scope: money (nano-dollars) or tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRecord {
    /// Its id.
    pub id: BudgetId,
    /// The kind of entity it applies to.
    pub scope: ScopeKind,
    /// The id of that entity (a principal is its free-form name).
    pub scope_id: String,
    /// The limit in nano-dollars; ignored (and kept 0 by the control plane) when
    /// `limit_tokens` is set.
    pub limit_nanos: i64,
    /// When set, the budget counts tokens (input + output) up to this many instead of money.
    pub limit_tokens: Option<i64>,
    /// The period spend is counted over.
    pub window: Window,
    /// What happens on breach.
    pub on_breach: OnBreach,
    /// Alert thresholds in per-mille of the limit (800 = 80%).
    pub alert_thresholds: Vec<u16>,
    /// Bumped by each manual reset; counters are keyed by `(id, epoch)`. Never negative.
    /// [`crate::Store::update_budget`] never writes it; only
    /// [`crate::Store::reset_budget`] changes it, atomically.
    pub epoch: i32,
    /// A temporary increase of the limit, in the limit's unit (nano-dollars or tokens);
    /// 0 when none.
    pub temporary_increase: i64,
    /// The instant the temporary increase stops counting.
    pub temporary_increase_until: Option<Timestamp>,
    /// When it was last reset by hand (`None` if never): spend before this instant does
    /// not count. Like `epoch`, only [`crate::Store::reset_budget`] writes it.
    pub last_reset_at: Option<Timestamp>,
    /// For an `on_breach = clamp` budget, the fewest output tokens a request may be
    /// clamped to; `None`: the default (16). The control plane keeps it `None` on other
    /// budgets.
    pub clamp_floor_tokens: Option<i64>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// An admin token of the management API: its hash and scopes, never its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminTokenRecord {
    /// Its id.
    pub id: TokenId,
    /// A display name.
    pub name: String,
    /// Hex of the hash of the token; unique across tokens.
    pub token_hash: String,
    /// Granted scopes (`keys:write`, `usage:read`, ...).
    pub scopes: Vec<String>,
    /// When set, the token only reaches this team.
    pub team_id: Option<TeamId>,
    /// When set, the token only reaches this project.
    pub project_id: Option<ProjectId>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked; a revoked token must be refused.
    pub revoked_at: Option<Timestamp>,
    /// When it stops working; an expired token must be refused.
    pub expires_at: Option<Timestamp>,
    /// The first characters of the token, to tell tokens apart in a list.
    pub hint: String,
}

/// One entry of the hash-chained audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Position in the log, assigned by the store on append (ignored on input).
    pub seq: i64,
    /// Its unique id.
    pub id: String,
    /// When it happened.
    pub at: Timestamp,
    /// Who did it (e.g. an admin token id).
    pub actor: String,
    /// What was done (`key.create`, ...).
    pub action: String,
    /// The kind of the target (`key`, `budget`, ...).
    pub target_kind: String,
    /// The target's id.
    pub target_id: String,
    /// Extra detail; never a secret.
    pub metadata: serde_json::Value,
    /// The hash of the previous entry.
    pub prev_hash: String,
    /// The hash of this entry, chained over `prev_hash`.
    pub hash: String,
}

/// Which keys [`crate::Store::list_keys`] returns: every set field must match.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFilter {
    /// Only keys of this project.
    pub project_id: Option<ProjectId>,
    /// Only keys of the projects of this team.
    pub team_id: Option<TeamId>,
    /// Only keys of this principal.
    pub principal: Option<String>,
    /// Only keys with this stored status (`active` or `revoked`).
    pub status: Option<String>,
    /// Only keys whose metadata has every one of these pairs, exactly.
    pub metadata: Vec<(String, String)>,
    /// Only keys carrying this tag.
    pub tag: Option<String>,
    /// Page size; capped at [`KeyFilter::MAX_LIMIT`]; 0 returns an empty page.
    pub limit: u64,
    /// Keyset pagination: only keys whose id sorts after this one.
    pub after: Option<KeyId>,
}

/// Which principals [`Store::list_principals`](crate::Store::list_principals) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalFilter {
    /// Only keys of this project count.
    pub project_id: Option<ProjectId>,
    /// Only keys of the projects of this team count.
    pub team_id: Option<TeamId>,
    /// Only this principal.
    pub principal: Option<String>,
    /// Keyset pagination: only principals that sort after this one.
    pub after: Option<String>,
    /// Page size; capped at [`PrincipalFilter::MAX_LIMIT`]; 0 returns an empty page.
    pub limit: u64,
}

impl PrincipalFilter {
    /// The largest page size honoured.
    pub const MAX_LIMIT: u64 = 1000;
}

/// A principal as seen through its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalSummary {
    /// The free-form principal (`acme:user-42`).
    pub principal: String,
    /// Keys that authenticate now.
    pub keys_active: u64,
    /// Keys past their `expires_at` (stored active).
    pub keys_expired: u64,
    /// Revoked keys.
    pub keys_revoked: u64,
    /// The projects its keys belong to, sorted.
    pub projects: Vec<ProjectId>,
}

impl KeyFilter {
    /// The page size of [`KeyFilter::default`].
    pub const DEFAULT_LIMIT: u64 = 100;
    /// The largest page size honoured.
    pub const MAX_LIMIT: u64 = 1000;
}

impl Default for KeyFilter {
    fn default() -> Self {
        KeyFilter {
            project_id: None,
            team_id: None,
            principal: None,
            status: None,
            metadata: Vec::new(),
            tag: None,
            limit: Self::DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// Which audit events [`crate::Store::query_audit`] returns: every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only events about this kind of target (`key`, `budget`, ...).
    pub target_kind: Option<String>,
    /// Only events by this actor (an admin token id, or `bootstrap`).
    pub actor: Option<String>,
    /// Only events at or after this instant.
    pub since: Option<Timestamp>,
    /// Only events before this instant.
    pub until: Option<Timestamp>,
    /// Only events with a seq below this one (the last seq of the previous page).
    pub before_seq: Option<i64>,
    /// Page size; capped at 1000; 0 returns an empty page.
    pub limit: u64,
}

/// Which budgets [`crate::Store::list_budgets`] returns: every set field must match.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetFilter {
    /// Only budgets of this scope kind.
    pub scope: Option<ScopeKind>,
    /// Only budgets attached to this scope id.
    pub scope_id: Option<String>,
    /// Page size; capped at [`BudgetFilter::MAX_LIMIT`]; 0 returns an empty page.
    pub limit: u64,
    /// Keyset pagination: only budgets whose id sorts after this one.
    pub after: Option<BudgetId>,
}

impl BudgetFilter {
    /// The page size of [`BudgetFilter::default`].
    pub const DEFAULT_LIMIT: u64 = 100;
    /// The largest page size honoured.
    pub const MAX_LIMIT: u64 = 1000;
}

impl Default for BudgetFilter {
    fn default() -> Self {
        BudgetFilter { scope: None, scope_id: None, limit: Self::DEFAULT_LIMIT, after: None }
    }
}

/// Everything a data-plane snapshot is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotData {
    /// The configuration revision these rows are at.
    pub revision: i64,
    /// All organizations, by id.
    pub orgs: Vec<OrgRecord>,
    /// All teams, by id.
    pub teams: Vec<TeamRecord>,
    /// All projects, by id.
    pub projects: Vec<ProjectRecord>,
    /// All provider credentials, by id.
    pub providers: Vec<ProviderRecord>,
    /// All catalog models, by id.
    pub models: Vec<ModelRecord>,
    /// All virtual keys (revoked ones included), by id.
    pub keys: Vec<KeyRecord>,
    /// All budgets, by id.
    pub budgets: Vec<BudgetRecord>,
    /// All model aliases, by name.
    pub aliases: Vec<AliasRecord>,
    /// All routing policies, by id.
    pub routing_policies: Vec<RoutingPolicyRecord>,
}
