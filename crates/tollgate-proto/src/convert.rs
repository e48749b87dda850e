//! Wire messages → domain types. Each item converts on its own, so one bad resource in
//! a snapshot is refused alone, as a [`Rejected`] naming its kind, id and reason, and
//! the rest still loads. A caller never drops a refusal: it hands every [`Rejected`] back
//! to whoever applies the configuration, which reports it.
//!
//! One function per wire type ([`provider`], [`model`], [`routing_policy`], [`key_in`],
//! [`budget_in`], the ledger entry both ways): a field added to a wire message is
//! converted in exactly one place.

use crate::v1;
use std::sync::Arc;
use tollgate_budgets::{Budget, Limit};
use tollgate_core::{BudgetId, KeyId, Money, OrgId, ProjectId, ProviderId, TeamId, Timestamp};
use tollgate_keys::{
    GraceSecret, KeyHash, KeyStatus, MAX_GRACE_SECRETS, ModelAllowlist, Pepper, RateLimits, VirtualKey,
};
use tollgate_metering::{Attempt, LedgerEntry, Pricing, UsageSource};
use tollgate_providers::{ApiKey, ProviderConfig, ProviderKind};
use tollgate_routing::{
    Deployment, DeploymentOptions, ModelRoute, PartMax, PolicyScope, RawRoutingPolicy, RoutingPolicy,
};

/// The kind of a published object, as a refusal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The snapshot itself (its key pepper).
    Snapshot,
    /// A provider credential.
    Provider,
    /// A catalog model.
    Model,
    /// A model alias.
    Alias,
    /// A routing policy.
    RoutingPolicy,
    /// A virtual key.
    Key,
    /// A budget.
    Budget,
    /// A ledger entry pushed by a gateway.
    LedgerEntry,
}

impl Kind {
    /// The kinds a configuration snapshot or change carries (all but the ledger entry),
    /// e.g. to give a metric one series per kind from the start.
    pub const PUBLISHED: [Kind; 7] =
        [Kind::Snapshot, Kind::Provider, Kind::Model, Kind::Alias, Kind::RoutingPolicy, Kind::Key, Kind::Budget];

    /// The snake_case name, for log fields and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Provider => "provider",
            Kind::Model => "model",
            Kind::Alias => "alias",
            Kind::RoutingPolicy => "routing_policy",
            Kind::Key => "key",
            Kind::Budget => "budget",
            Kind::LedgerEntry => "ledger_entry",
        }
    }

    /// The words used in messages (kept as they always read: "routing policy").
    fn noun(self) -> &'static str {
        match self {
            Kind::RoutingPolicy => "routing policy",
            Kind::LedgerEntry => "ledger entry",
            other => other.as_str(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A wire message that does not describe a valid resource: refused on its own, and
/// handed back to the caller beside everything that did convert.
///
/// The reason never holds a secret (a credential, the pepper, a key hash): only the
/// field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} {id:?}: {reason}", kind.noun())]
pub struct Rejected {
    /// The kind of resource.
    pub kind: Kind,
    /// Its id (an alias's name), for the report.
    pub id: String,
    /// What is wrong.
    pub reason: String,
}

impl Rejected {
    /// A refusal of the object `kind` / `id`.
    pub fn new(kind: Kind, id: &str, reason: impl Into<String>) -> Self {
        Rejected { kind, id: id.to_owned(), reason: reason.into() }
    }
}

fn err(kind: Kind, id: &str, reason: impl Into<String>) -> Rejected {
    Rejected::new(kind, id, reason)
}

/// Shares the id strings that many items repeat (a key's organization, team and project,
/// a key budget's scope id, which is its key's id) across one conversion pass: with
/// 100,000 keys in 1,000 projects, one allocation per distinct id instead of several per
/// key.
/// Allowlists are shared the same way: most keys of a platform carry one of a few.
#[derive(Debug, Default)]
pub struct Interner {
    ids: std::collections::HashSet<Arc<str>>,
    allowlists: std::collections::HashMap<Vec<String>, Arc<ModelAllowlist>>,
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of `s`, made on first sight.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.ids.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.ids.insert(shared.clone());
        shared
    }

    /// The shared allowlist of these patterns (in this order), made on first sight.
    pub fn allowlist(&mut self, patterns: &[String]) -> Arc<ModelAllowlist> {
        if let Some(shared) = self.allowlists.get(patterns) {
            return shared.clone();
        }
        let shared = Arc::new(ModelAllowlist::new(patterns));
        self.allowlists.insert(patterns.to_vec(), shared.clone());
        shared
    }
}

/// The key pepper.
pub fn pepper(bytes: &[u8]) -> Result<Pepper, Rejected> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| err(Kind::Snapshot, "", "key_pepper must be 32 bytes"))?;
    Ok(Pepper::new(arr))
}

/// A provider credential.
pub fn provider(p: &v1::Provider) -> Result<ProviderConfig, Rejected> {
    let kind: ProviderKind = p.kind.parse().map_err(|e| err(Kind::Provider, &p.id, format!("{e}")))?;
    let extra = if p.extra_json.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&p.extra_json).map_err(|e| err(Kind::Provider, &p.id, format!("extra_json: {e}")))?
    };
    Ok(ProviderConfig {
        id: ProviderId::new(p.id.as_str()),
        name: p.name.as_str().into(),
        kind,
        base_url: p.base_url.as_str().into(),
        api_key: ApiKey::new(p.api_key.as_str()),
        rpm: p.rpm,
        tpm: p.tpm,
        priority: p.priority,
        extra,
    })
}

/// A model from the wire: its route, one set of routing options per deployment, its price,
/// and each deployment's own price where it has one.
#[derive(Debug, Clone)]
pub struct ModelParts {
    /// Public name and deployments.
    pub route: ModelRoute,
    /// Priority and weight of each deployment, in the same order.
    pub options: Vec<DeploymentOptions>,
    /// The model's price (`None`: unpriced).
    pub pricing: Option<Pricing>,
    /// Each deployment's own price, in the same order (`None`: the model's).
    pub deployment_pricing: Vec<Option<Pricing>>,
}

/// A price from the wire, refusing a negative rate.
fn pricing_of(p: &v1::Pricing, id: &str) -> Result<Pricing, Rejected> {
    let pricing = Pricing {
        input_per_mtok: Money::from_nanos(p.input_per_mtok_nanos),
        output_per_mtok: Money::from_nanos(p.output_per_mtok_nanos),
        cached_input_per_mtok: p.cached_input_per_mtok_nanos.map(Money::from_nanos),
        cache_write_per_mtok: p.cache_write_per_mtok_nanos.map(Money::from_nanos),
    };
    let rates = [
        Some(pricing.input_per_mtok),
        Some(pricing.output_per_mtok),
        pricing.cached_input_per_mtok,
        pricing.cache_write_per_mtok,
    ];
    if rates.into_iter().flatten().any(Money::is_negative) {
        return Err(err(Kind::Model, id, "negative price"));
    }
    Ok(pricing)
}

/// Converts a model (see [`ModelParts`]). A deployment without a weight on the wire gets
/// weight 1. Provider priorities are left at 0: the gateway copies each provider's own
/// when it builds its catalog.
pub fn model(m: &v1::Model) -> Result<ModelParts, Rejected> {
    if m.deployments.is_empty() {
        return Err(err(Kind::Model, &m.id, "no deployments"));
    }
    let route = ModelRoute {
        name: m.name.as_str().into(),
        deployments: m.deployments.iter().map(|d| Deployment::new(d.provider.as_str(), d.model.as_str())).collect(),
        max_output_tokens: m.max_output_tokens,
        max_tokens_per_part: PartMax { image: m.max_image_tokens, audio: m.max_audio_tokens, file: m.max_file_tokens },
    };
    let options = m
        .deployments
        .iter()
        .map(|d| DeploymentOptions {
            priority: d.priority,
            weight: d.weight.unwrap_or(DeploymentOptions::default().weight),
        })
        .collect();
    let pricing = m.pricing.as_ref().map(|p| pricing_of(p, &m.id)).transpose()?;
    let deployment_pricing = m
        .deployments
        .iter()
        .map(|d| d.pricing.as_ref().map(|p| pricing_of(p, &m.id)).transpose())
        .collect::<Result<_, _>>()?;
    Ok(ModelParts { route, options, pricing, deployment_pricing })
}

/// A routing policy and where it applies: `None` for the default policy.
///
/// The policy JSON goes through [`RawRoutingPolicy`], so an error names the field
/// (`policy_json: routing policy backoff.base_ms: ...`, or serde's unknown-field message).
pub fn routing_policy(p: &v1::RoutingPolicy) -> Result<(Option<PolicyScope>, RoutingPolicy), Rejected> {
    let bad = |reason: String| err(Kind::RoutingPolicy, &p.id, reason);
    let scope_id = || match p.scope_id.as_deref() {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(bad(format!("scope_id is required for scope {:?}", p.scope))),
    };
    let scope = match p.scope.as_str() {
        "default" => {
            if p.scope_id.as_deref().is_some_and(|id| !id.is_empty()) {
                return Err(bad("scope_id must be unset for scope \"default\"".into()));
            }
            None
        }
        "organization" => Some(PolicyScope::Organization(OrgId::new(scope_id()?))),
        "team" => Some(PolicyScope::Team(TeamId::new(scope_id()?))),
        "project" => Some(PolicyScope::Project(ProjectId::new(scope_id()?))),
        "virtual_key" => Some(PolicyScope::Key(KeyId::new(scope_id()?))),
        other => {
            let shown: String = other.chars().take(32).filter(|c| !c.is_control()).collect();
            return Err(bad(format!("unknown scope {shown:?} (organization, team, project, virtual_key or default)")));
        }
    };
    let value: serde_json::Value =
        serde_json::from_str(&p.policy_json).map_err(|e| bad(format!("policy_json: {e}")))?;
    if !value.is_object() {
        // serde's derived structs would also read a positional array.
        return Err(bad("policy_json: must be a JSON object".into()));
    }
    let raw: RawRoutingPolicy = serde_json::from_value(value).map_err(|e| bad(format!("policy_json: {e}")))?;
    let policy = RoutingPolicy::try_from(raw).map_err(|e| bad(format!("policy_json: {e}")))?;
    Ok((scope, policy))
}

/// A virtual key with its hash and, during rotation graces, its rotated-out hashes.
#[derive(Debug, Clone)]
pub struct KeyParts {
    /// The key's policy.
    pub key: Arc<VirtualKey>,
    /// Hash of the current secret.
    pub hash: KeyHash,
    /// Every rotated-out secret still in its grace, oldest rotation first, each with its
    /// own end; at most [`MAX_GRACE_SECRETS`].
    pub previous: Vec<GraceSecret>,
}

fn hash(bytes: &[u8], id: &str) -> Result<KeyHash, Rejected> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| err(Kind::Key, id, "key_hash must be 32 bytes"))?;
    Ok(KeyHash(arr))
}

/// A virtual key.
pub fn key(k: &v1::Key) -> Result<KeyParts, Rejected> {
    key_in(k, &mut Interner::new())
}

/// A virtual key, its ids shared through `ids`.
pub fn key_in(k: &v1::Key, ids: &mut Interner) -> Result<KeyParts, Rejected> {
    let status =
        KeyStatus::parse(&k.status).ok_or_else(|| err(Kind::Key, &k.id, format!("unknown status {:?}", k.status)))?;
    let previous = grace_of(k)?;
    let key = VirtualKey {
        id: KeyId::new(ids.get(&k.id)),
        name: k.name.clone(),
        org: OrgId::new(ids.get(&k.org_id)),
        team: TeamId::new(ids.get(&k.team_id)),
        project: ProjectId::new(ids.get(&k.project_id)),
        principal: k.principal.as_deref().map(Arc::from),
        status,
        expires_at: k.expires_at_ms.map(Timestamp::from_unix_millis),
        models_allowed: ids.allowlist(&k.models_allowed),
        limits: RateLimits { rpm: k.rpm, tpm: k.tpm, max_concurrency: k.max_concurrency },
        metadata: k.metadata.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect(),
        tags: k.tags.clone(),
        hint: k.hint.clone(),
    };
    Ok(KeyParts { key: Arc::new(key), hash: hash(&k.key_hash, &k.id)?, previous })
}

/// The rotated-out secrets of a wire key: `grace_secrets`, plus the single
/// `previous_key_hash` of a control plane that predates the list when the list lacks it;
/// capped at [`MAX_GRACE_SECRETS`] by dropping the earliest rotated out.
fn grace_of(k: &v1::Key) -> Result<Vec<GraceSecret>, Rejected> {
    let mut list = Vec::with_capacity(k.grace_secrets.len() + 1);
    for g in &k.grace_secrets {
        list.push(GraceSecret {
            hash: hash(&g.key_hash, &k.id)?,
            valid_until: Timestamp::from_unix_millis(g.valid_until_ms),
        });
    }
    if let (Some(h), Some(until)) = (&k.previous_key_hash, k.previous_valid_until_ms) {
        let h = hash(h, &k.id)?;
        if !list.iter().any(|g| g.hash == h) {
            list.push(GraceSecret { hash: h, valid_until: Timestamp::from_unix_millis(until) });
        }
    }
    let excess = list.len().saturating_sub(MAX_GRACE_SECRETS);
    list.drain(..excess);
    Ok(list)
}

/// A budget. A token budget is one with `limit_tokens` set; the temporary increase is in
/// the limit's unit and only counts until its end.
pub fn budget(b: &v1::Budget) -> Result<Budget, Rejected> {
    budget_in(b, &mut Interner::new())
}

/// A budget, its scope id shared through `ids`.
pub fn budget_in(b: &v1::Budget, ids: &mut Interner) -> Result<Budget, Rejected> {
    let scope = b.scope.parse().map_err(|e| err(Kind::Budget, &b.id, format!("{e}")))?;
    let window = b.window.parse().map_err(|e| err(Kind::Budget, &b.id, format!("{e}")))?;
    let on_breach = b.on_breach.parse().map_err(|e| err(Kind::Budget, &b.id, format!("{e}")))?;
    let limit = match b.limit_tokens {
        Some(t) => Limit::Tokens(t),
        None => Limit::Money(Money::from_nanos(b.limit_nanos)),
    };
    let thresholds = b
        .alert_thresholds_permille
        .iter()
        .map(|&t| u16::try_from(t).map_err(|_| err(Kind::Budget, &b.id, format!("alert threshold {t}‰ out of range"))))
        .collect::<Result<Vec<u16>, _>>()?;
    let mut budget =
        Budget::new(BudgetId::new(b.id.as_str()), scope, ids.get(&b.scope_id), limit, window, on_breach, thresholds)
            .map_err(|e| err(Kind::Budget, &b.id, e.to_string()))?;
    budget.epoch = b.epoch;
    if let Some(floor) = b.clamp_floor_tokens {
        budget = budget.with_clamp_floor_tokens(floor);
    }
    if let Some(until) = b.temporary_increase_until_ms
        && b.temporary_increase > 0
    {
        let amount = match limit {
            Limit::Money(_) => Limit::Money(Money::from_nanos(b.temporary_increase)),
            Limit::Tokens(_) => Limit::Tokens(u64::try_from(b.temporary_increase).unwrap_or(0)),
        };
        budget.temporary_increase = Some((amount, Timestamp::from_unix_millis(until)));
    }
    Ok(budget)
}

/// A ledger entry as sent over the ledger stream.
pub fn ledger_entry_to_wire(e: &LedgerEntry) -> v1::LedgerEntry {
    v1::LedgerEntry {
        request_id: e.request_id.clone(),
        at_ms: e.at.unix_millis(),
        key_id: e.key_id.to_string(),
        key_name: e.key_name.clone(),
        principal: e.principal.clone(),
        project_id: e.project_id.to_string(),
        team_id: e.team_id.as_ref().map(ToString::to_string),
        org_id: e.org_id.as_ref().map(ToString::to_string),
        requested_model: e.requested_model.clone(),
        served_model: e.served_model.clone(),
        provider: e.provider.clone(),
        input_tokens: e.input_tokens,
        output_tokens: e.output_tokens,
        cached_input_tokens: e.cached_input_tokens,
        reasoning_tokens: e.reasoning_tokens,
        cache_write_tokens: e.cache_write_tokens,
        cost_nanos: e.cost.nanos(),
        status: u32::from(e.status),
        latency_ms: e.latency_ms,
        usage_source: e.usage_source.as_str().to_owned(),
        tags: e.tags.clone(),
        metadata: e.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        attempts: e
            .attempts
            .iter()
            .map(|a| v1::LedgerAttempt {
                provider: a.provider.clone(),
                model: a.model.clone(),
                outcome: a.outcome.clone(),
            })
            .collect(),
        stream: e.stream,
        client_request_id: e.client_request_id.clone(),
        priced: Some(e.priced),
    }
}

/// A ledger entry received over the ledger stream.
pub fn ledger_entry(w: &v1::LedgerEntry) -> Result<LedgerEntry, Rejected> {
    let bad = |reason: String| err(Kind::LedgerEntry, &w.request_id.chars().take(128).collect::<String>(), reason);
    if w.request_id.is_empty() {
        return Err(bad("empty request_id".into()));
    }
    let Some(usage_source) = UsageSource::parse(&w.usage_source) else {
        let other = w.usage_source.chars().take(32).collect::<String>();
        return Err(bad(format!("unknown usage_source {other:?}")));
    };
    let status = u16::try_from(w.status).map_err(|_| bad(format!("status {} is not an HTTP status", w.status)))?;
    Ok(LedgerEntry {
        request_id: w.request_id.clone(),
        client_request_id: w.client_request_id.clone(),
        at: Timestamp::from_unix_millis(w.at_ms),
        key_id: KeyId::new(w.key_id.as_str()),
        key_name: w.key_name.clone(),
        principal: w.principal.clone(),
        project_id: ProjectId::new(w.project_id.as_str()),
        team_id: w.team_id.as_deref().map(TeamId::new),
        org_id: w.org_id.as_deref().map(OrgId::new),
        requested_model: w.requested_model.clone(),
        served_model: w.served_model.clone(),
        provider: w.provider.clone(),
        input_tokens: w.input_tokens,
        output_tokens: w.output_tokens,
        cached_input_tokens: w.cached_input_tokens,
        reasoning_tokens: w.reasoning_tokens,
        cache_write_tokens: w.cache_write_tokens,
        cost: Money::from_nanos(w.cost_nanos),
        status,
        latency_ms: w.latency_ms,
        usage_source,
        tags: w.tags.clone(),
        metadata: w.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        attempts: w.attempts.iter().map(|a| Attempt::new(&a.provider, &a.model, &a.outcome)).collect(),
        stream: w.stream,
        // Gateways older than the field send none: they only ever sent priced entries.
        priced: w.priced.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_converted_in_one_pass_share_their_tenancy_ids_and_their_budgets_scope_id() {
        let wire = |id: &str| v1::Key {
            id: id.into(),
            org_id: "org_1".into(),
            team_id: "team_1".into(),
            project_id: "prj_1".into(),
            status: "active".into(),
            key_hash: vec![7; 32],
            ..Default::default()
        };
        let mut ids = Interner::new();
        let b = v1::Budget {
            id: "bud_1".into(),
            scope: "virtual_key".into(),
            scope_id: "key_a".into(),
            limit_nanos: 1,
            window: "day".into(),
            on_breach: "block".into(),
            ..Default::default()
        };
        let budget = budget_in(&b, &mut ids).unwrap();
        let (a, c) = (key_in(&wire("key_a"), &mut ids).unwrap().key, key_in(&wire("key_c"), &mut ids).unwrap().key);
        let same = |x: &str, y: &str| std::ptr::eq(x.as_ptr(), y.as_ptr());
        assert!(same(a.org.as_str(), c.org.as_str()) && same(a.team.as_str(), c.team.as_str()));
        assert!(same(a.project.as_str(), c.project.as_str()));
        assert!(same(a.id.as_str(), &budget.scope_id), "the key budget's scope id is the key's own id");
        assert!(Arc::ptr_eq(&a.models_allowed, &c.models_allowed), "one allowlist for keys with the same patterns");
        assert!(!same(a.id.as_str(), c.id.as_str()));
        // Converted apart, nothing is shared (and nothing else changes).
        let alone = key(&wire("key_a")).unwrap().key;
        assert!(!same(alone.org.as_str(), a.org.as_str()));
        assert_eq!(*alone, *a);
    }

    #[test]
    fn a_key_converts_with_its_rotation_grace() {
        let k = v1::Key {
            id: "key_1".into(),
            status: "active".into(),
            key_hash: vec![1; 32],
            previous_key_hash: Some(vec![2; 32]),
            previous_valid_until_ms: Some(5),
            models_allowed: vec!["gpt-*".into()],
            rpm: Some(60),
            tags: vec!["env:prod".into(), "feature:chat".into()],
            ..Default::default()
        };
        let parts = key(&k).unwrap();
        assert_eq!(parts.key.tags, ["env:prod", "feature:chat"]);
        assert_eq!(parts.hash, KeyHash([1; 32]));
        assert_eq!(
            parts.previous,
            [GraceSecret { hash: KeyHash([2; 32]), valid_until: Timestamp::from_unix_millis(5) }]
        );
        assert!(parts.key.models_allowed.allows("gpt-4o"));
        assert_eq!(parts.key.limits.rpm, Some(60));
    }

    #[test]
    fn a_key_keeps_every_grace_secret_merges_the_old_field_and_caps_the_list() {
        let g = |n: u8, until: i64| v1::GraceSecret { key_hash: vec![n; 32], valid_until_ms: until };
        let mine =
            |n: u8, until: i64| GraceSecret { hash: KeyHash([n; 32]), valid_until: Timestamp::from_unix_millis(until) };
        let base = v1::Key { id: "key_1".into(), status: "active".into(), key_hash: vec![1; 32], ..Default::default() };
        // A new control plane: the list, and the old field mirroring its last entry.
        let k = v1::Key {
            grace_secrets: vec![g(2, 3_000), g(3, 6_000)],
            previous_key_hash: Some(vec![3; 32]),
            previous_valid_until_ms: Some(6_000),
            ..base.clone()
        };
        assert_eq!(key(&k).unwrap().previous, [mine(2, 3_000), mine(3, 6_000)]);
        // An old control plane: only the old field.
        let k = v1::Key { previous_key_hash: Some(vec![4; 32]), previous_valid_until_ms: Some(9), ..base.clone() };
        assert_eq!(key(&k).unwrap().previous, [mine(4, 9)]);
        // More than the cap: the earliest rotated out go first.
        let many: Vec<_> = (10..20).map(|n| g(n, i64::from(n))).collect();
        let k = v1::Key { grace_secrets: many, ..base.clone() };
        let got = key(&k).unwrap().previous;
        assert_eq!(got.len(), MAX_GRACE_SECRETS);
        assert_eq!(got.first(), Some(&mine(12, 12)));
        // A malformed grace hash rejects the key (as a malformed current hash does).
        let k = v1::Key { grace_secrets: vec![v1::GraceSecret { key_hash: vec![1; 3], valid_until_ms: 1 }], ..base };
        assert!(key(&k).is_err());
    }

    #[test]
    fn budgets_convert_with_their_unit_epoch_and_temporary_increase() {
        let b = v1::Budget {
            id: "bud_1".into(),
            scope: "project".into(),
            scope_id: "prj_1".into(),
            limit_nanos: 10_000_000,
            window: "day".into(),
            on_breach: "block".into(),
            alert_thresholds_permille: vec![800],
            epoch: 3,
            temporary_increase: 5_000_000,
            temporary_increase_until_ms: Some(1_000),
            ..Default::default()
        };
        let got = budget(&b).unwrap();
        assert_eq!(got.limit, Limit::Money(Money::from_nanos(10_000_000)));
        assert_eq!(got.epoch, 3);
        assert_eq!(got.clamp_floor_tokens, Budget::DEFAULT_CLAMP_FLOOR_TOKENS, "unset: the default floor");
        let clamp = v1::Budget { on_breach: "clamp".into(), clamp_floor_tokens: Some(64), ..b.clone() };
        let clamp = budget(&clamp).unwrap();
        assert_eq!((clamp.on_breach, clamp.clamp_floor_tokens), (tollgate_core::OnBreach::Clamp, 64));
        assert_eq!(
            got.temporary_increase,
            Some((Limit::Money(Money::from_nanos(5_000_000)), Timestamp::from_unix_millis(1_000)))
        );
        let tokens = v1::Budget { limit_tokens: Some(500), temporary_increase: 0, ..b.clone() };
        assert_eq!(budget(&tokens).unwrap().limit, Limit::Tokens(500));
        assert_eq!(budget(&tokens).unwrap().temporary_increase, None);
        let bad = v1::Budget { window: "fortnight".into(), ..b.clone() };
        assert!(budget(&bad).unwrap_err().reason.contains("fortnight"));
        let negative = v1::Budget { limit_nanos: -1, ..b };
        let refused = budget(&negative).unwrap_err();
        assert_eq!((refused.kind, refused.id.as_str()), (Kind::Budget, "bud_1"));
        assert!(refused.to_string().starts_with("invalid budget \"bud_1\": "), "{refused}");
    }

    #[test]
    fn bad_items_are_rejected_with_their_id() {
        let bad = v1::Key { id: "key_x".into(), status: "zombie".into(), key_hash: vec![1; 32], ..Default::default() };
        assert_eq!(key(&bad).unwrap_err().id, "key_x");
        assert_eq!(key(&bad).unwrap_err().kind, Kind::Key);
        let short = v1::Key { id: "key_y".into(), status: "active".into(), key_hash: vec![1; 3], ..Default::default() };
        assert!(key(&short).is_err());
        let p = v1::Provider { id: "prov_1".into(), kind: "carrier-pigeon".into(), ..Default::default() };
        assert!(provider(&p).unwrap_err().reason.contains("carrier-pigeon"));
        let m = v1::Model { id: "model_1".into(), name: "m".into(), ..Default::default() };
        assert_eq!(model(&m).unwrap_err().reason, "no deployments");
        assert!(pepper(&[0; 31]).is_err());
    }

    #[test]
    fn models_carry_their_deployment_options_and_unset_weights_are_one() {
        let d = |provider: &str, priority, weight| v1::Deployment {
            provider: provider.into(),
            model: "up".into(),
            priority,
            weight,
            pricing: None,
        };
        let m = v1::Model {
            id: "model_1".into(),
            name: "gpt-4o".into(),
            deployments: vec![d("a", 0, Some(70)), d("b", 2, Some(0)), d("c", 1, None)],
            max_image_tokens: Some(1_500),
            max_file_tokens: Some(20_000),
            ..Default::default()
        };
        let ModelParts { route, options, pricing, .. } = model(&m).unwrap();
        assert_eq!(route.deployments.len(), 3);
        assert_eq!(route.max_tokens_per_part, PartMax { image: Some(1_500), audio: None, file: Some(20_000) });
        assert_eq!(
            options,
            [
                DeploymentOptions { priority: 0, weight: 70 },
                DeploymentOptions { priority: 2, weight: 0 },
                DeploymentOptions { priority: 1, weight: 1 },
            ]
        );
        assert_eq!(pricing, None);
    }

    #[test]
    fn routing_policies_convert_with_their_scope_and_name_the_bad_field() {
        let p = |scope: &str, scope_id: Option<&str>, json: &str| v1::RoutingPolicy {
            id: "rpol_1".into(),
            scope: scope.into(),
            scope_id: scope_id.map(Into::into),
            policy_json: json.into(),
        };
        let (scope, policy) = routing_policy(&p("team", Some("team_1"), r#"{"max_attempts": 5}"#)).unwrap();
        assert_eq!(scope, Some(PolicyScope::Team(TeamId::new("team_1"))));
        assert_eq!(policy.max_attempts(), 5);
        let (scope, policy) = routing_policy(&p("default", None, "{}")).unwrap();
        assert_eq!((scope, policy), (None, RoutingPolicy::default()));
        let (scope, _) = routing_policy(&p("virtual_key", Some("key_1"), "{}")).unwrap();
        assert_eq!(scope, Some(PolicyScope::Key(KeyId::new("key_1"))));

        let e = routing_policy(&p("team", Some("t"), r#"{"backoff": {"base_ms": 9000, "max_ms": 10}}"#)).unwrap_err();
        assert_eq!((e.kind, e.id.as_str()), (Kind::RoutingPolicy, "rpol_1"));
        assert!(e.to_string().starts_with("invalid routing policy \"rpol_1\": "), "{e}");
        assert!(e.reason.contains("backoff.base_ms"), "{e}");
        let e = routing_policy(&p("team", Some("t"), r#"{"retries": 2}"#)).unwrap_err();
        assert!(e.reason.contains("retries"), "{e}");
        assert!(routing_policy(&p("team", None, "{}")).unwrap_err().reason.contains("scope_id"));
        assert!(routing_policy(&p("default", Some("x"), "{}")).unwrap_err().reason.contains("scope_id"));
        assert!(routing_policy(&p("principal", Some("x"), "{}")).unwrap_err().reason.contains("principal"));
        assert!(routing_policy(&p("default", None, "not json")).unwrap_err().reason.contains("policy_json"));
    }

    #[test]
    fn ledger_entries_cross_the_wire_field_for_field() {
        use tollgate_metering::Usage;
        let e = tollgate_testkit::ledger::full_entry("req_1", Timestamp::from_unix_millis(1_772_000_000_250));
        let wire = ledger_entry_to_wire(&e);
        let bytes = prost::Message::encode_to_vec(&wire);
        let back: v1::LedgerEntry = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(ledger_entry(&back).unwrap(), e);
        let estimated = e.clone().with_usage(&Usage::default(), UsageSource::Estimated);
        assert_eq!(ledger_entry(&ledger_entry_to_wire(&estimated)).unwrap(), estimated);

        let unknown = v1::LedgerEntry { usage_source: "guessed".into(), ..wire.clone() };
        let refused = ledger_entry(&unknown).unwrap_err();
        assert!(refused.reason.contains("guessed") && refused.to_string().starts_with("invalid ledger entry "));
        let status = v1::LedgerEntry { status: 70_000, ..wire.clone() };
        assert!(ledger_entry(&status).is_err());
        let anonymous = v1::LedgerEntry { request_id: String::new(), ..wire };
        assert!(ledger_entry(&anonymous).is_err());
    }

    #[test]
    fn the_callers_request_id_and_the_priced_flag_cross_the_wire_and_older_gateways_read_as_priced() {
        let at = Timestamp::from_unix_millis(1_772_000_000_250);
        let e = tollgate_testkit::ledger::full_entry("req_2", at).with_client_request_id("caller-7").with_priced(false);
        let bytes = prost::Message::encode_to_vec(&ledger_entry_to_wire(&e));
        let back: v1::LedgerEntry = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!((back.client_request_id.as_deref(), back.priced), (Some("caller-7"), Some(false)));
        let read = ledger_entry(&back).unwrap();
        assert_eq!((read.client_request_id.as_deref(), read.priced), (Some("caller-7"), false));
        assert_eq!(read, e);

        // What a gateway built before these fields sends: neither is on the wire.
        let old = v1::LedgerEntry { client_request_id: None, priced: None, ..back };
        let bytes = prost::Message::encode_to_vec(&old);
        let read = ledger_entry(&prost::Message::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!((read.client_request_id, read.priced), (None, true));
    }
}
