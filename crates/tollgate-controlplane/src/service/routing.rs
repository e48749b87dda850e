//! Routing configuration: model aliases and routing policies, shared by REST and gRPC.
//!
//! An alias is another public name for a model (`fast` → `gpt-4o-mini`), one level deep:
//! it never names another alias and never shares a name with a model. A routing policy
//! (strategy, attempts, timeouts, backoff, `retry_on`, cooldown) is attached to one
//! organization, team, project or key, or is the default; one per scope. Policies are
//! validated by the routing crate (`RawRoutingPolicy` → `RoutingPolicy`) and stored with
//! every field written out, so a stored policy keeps its meaning when a default changes.
//!
//! Every write bumps the revision (the next snapshot carries it to the gateways) and
//! leaves an audit event with the caller's token as actor.

use super::auth::{Scope, Target};
use super::budgets::Fields;
use super::{Actor, Service, check_name, new_id};
use crate::ControlError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use tollgate_core::{KeyId, Timestamp};
use tollgate_routing::{RawBackoff, RawCooldown, RawRoutingPolicy, RoutingPolicy};
use tollgate_store::{AliasRecord, RoutingPolicyRecord};
use utoipa::ToSchema;

/// The id prefix of routing policies.
const POLICY_PREFIX: &str = "rpol";

// ------------------------------------------------------------------ aliases

/// `POST /api/v1/aliases`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlias {
    /// The alias, unique across models and aliases.
    pub name: String,
    /// The model it stands for: a model's public name or id, never an alias.
    pub model: String,
}

/// An alias as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AliasView {
    /// The alias.
    pub name: String,
    /// The public name of the model it stands for.
    pub model: String,
    /// Created.
    pub created_at: Timestamp,
}

fn alias_view(r: &AliasRecord) -> AliasView {
    AliasView { name: r.name.clone(), model: r.target_model.clone(), created_at: r.created_at }
}

// ------------------------------------------------------------------ policies

/// Where a routing policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyScopeKind {
    /// Every request of an organization without a more specific policy.
    Organization,
    /// A team's requests.
    Team,
    /// A project's requests.
    Project,
    /// One virtual key's requests.
    VirtualKey,
    /// Every request without a more specific policy (no scope id).
    Default,
}

impl PolicyScopeKind {
    /// Every kind, in declaration order.
    pub const ALL: [PolicyScopeKind; 5] = [
        PolicyScopeKind::Organization,
        PolicyScopeKind::Team,
        PolicyScopeKind::Project,
        PolicyScopeKind::VirtualKey,
        PolicyScopeKind::Default,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyScopeKind::Organization => "organization",
            PolicyScopeKind::Team => "team",
            PolicyScopeKind::Project => "project",
            PolicyScopeKind::VirtualKey => "virtual_key",
            PolicyScopeKind::Default => "default",
        }
    }
}

impl fmt::Display for PolicyScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PolicyScopeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "organization" => PolicyScopeKind::Organization,
            "team" => PolicyScopeKind::Team,
            "project" => PolicyScopeKind::Project,
            "virtual_key" => PolicyScopeKind::VirtualKey,
            "default" => PolicyScopeKind::Default,
            other => {
                let shown: String = other.chars().take(32).filter(|c| !c.is_control()).collect();
                return Err(format!(
                    "unknown scope {shown:?}; expected organization, team, project, virtual_key or default"
                ));
            }
        })
    }
}

impl utoipa::PartialSchema for PolicyScopeKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut s = super::enum_schema(PolicyScopeKind::ALL.map(PolicyScopeKind::as_str));
        s.description = Some("Where a routing policy applies; `default` takes no `scope_id`.".into());
        s.into()
    }
}

impl utoipa::ToSchema for PolicyScopeKind {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("PolicyScopeKind")
    }
}

impl Serialize for PolicyScopeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PolicyScopeKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `POST /api/v1/routing-policies`.
#[derive(Debug, Clone, PartialEq, ToSchema)]
// Read by the schema only (this type is parsed by [`Fields`], which refuses unknown fields).
#[serde(deny_unknown_fields)]
pub struct CreateRoutingPolicy {
    /// Where it applies.
    pub scope: PolicyScopeKind,
    /// The organization, team or project (id or name) or key id; absent for `default`.
    pub scope_id: Option<String>,
    /// The policy as JSON: `strategy`, `max_attempts`, `per_attempt_timeout_ms`,
    /// `overall_timeout_ms`, `backoff`, `retry_on`, `cooldown`; every field optional.
    #[schema(value_type = RawRoutingPolicy)]
    pub policy: serde_json::Value,
}

impl CreateRoutingPolicy {
    /// Reads a JSON body.
    pub fn from_json(body: &[u8]) -> Result<CreateRoutingPolicy, ControlError> {
        let mut f = Fields::parse(body, &["scope", "scope_id", "policy"], false)?;
        Ok(CreateRoutingPolicy {
            scope: f.required("scope")?,
            scope_id: f.optional("scope_id")?,
            policy: f.required("policy")?,
        })
    }
}

/// `PATCH /api/v1/routing-policies/{id}`: replaces the policy (its scope stays).
#[derive(Debug, Clone, PartialEq, ToSchema)]
// Read by the schema only (this type is parsed by [`Fields`], which refuses unknown fields).
#[serde(deny_unknown_fields)]
pub struct UpdateRoutingPolicy {
    /// The new policy, whole: fields left out take the defaults, not the old values.
    #[schema(value_type = RawRoutingPolicy)]
    pub policy: serde_json::Value,
}

impl UpdateRoutingPolicy {
    /// Reads a JSON body.
    pub fn from_json(body: &[u8]) -> Result<UpdateRoutingPolicy, ControlError> {
        let mut f = Fields::parse(body, &["policy"], false)?;
        Ok(UpdateRoutingPolicy { policy: f.required("policy")? })
    }
}

/// A routing policy as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RoutingPolicyView {
    /// Id.
    pub id: String,
    /// Where it applies.
    pub scope: PolicyScopeKind,
    /// The scope's entity id; `null` for `default`.
    pub scope_id: Option<String>,
    /// The policy with every field written out.
    #[schema(value_type = RawRoutingPolicy)]
    pub policy: serde_json::Value,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

fn policy_view(r: &RoutingPolicyRecord) -> Result<RoutingPolicyView, ControlError> {
    let scope = r
        .scope
        .parse()
        .map_err(|e| ControlError::Internal(format!("stored routing policy {} has a bad scope: {e}", r.id)))?;
    Ok(RoutingPolicyView {
        id: r.id.clone(),
        scope,
        scope_id: r.scope_id.clone(),
        policy: r.policy.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

const POLICY_FIELDS: &[&str] =
    &["strategy", "max_attempts", "per_attempt_timeout_ms", "overall_timeout_ms", "backoff", "retry_on", "cooldown"];
const BACKOFF_FIELDS: &[&str] = &["base_ms", "max_ms"];
const COOLDOWN_FIELDS: &[&str] = &["failures_to_open", "cooldown_ms", "max_cooldown_ms"];

/// `value` as an object whose keys are all in `allowed`; errors name `field.key`.
fn object(
    field: &str,
    value: serde_json::Value,
    allowed: &[&str],
) -> Result<serde_json::Map<String, serde_json::Value>, ControlError> {
    let serde_json::Value::Object(map) = value else {
        return Err(ControlError::invalid(field, "must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let k: String = k.chars().take(64).collect();
        return Err(ControlError::invalid(
            format!("{field}.{k}"),
            format!("unknown field; expected one of: {}", allowed.join(", ")),
        ));
    }
    Ok(map)
}

/// The field `name` of `map` (absent or `null`: `None`); errors name `field.name`.
fn take<T: DeserializeOwned>(
    map: &mut serde_json::Map<String, serde_json::Value>,
    field: &str,
    name: &str,
) -> Result<Option<T>, ControlError> {
    match map.remove(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| ControlError::invalid(format!("{field}.{name}"), e.to_string())),
    }
}

/// Validates a policy through the routing crate; every error names its field under
/// `policy.` (`policy.backoff.base_ms`). Returns the policy with every field written out.
pub(crate) fn parse_policy(value: serde_json::Value) -> Result<serde_json::Value, ControlError> {
    const P: &str = "policy";
    let mut m = object(P, value, POLICY_FIELDS)?;
    let backoff = match m.remove("backoff").filter(|v| !v.is_null()) {
        None => None,
        Some(b) => {
            let mut b = object("policy.backoff", b, BACKOFF_FIELDS)?;
            let f = "policy.backoff";
            Some(RawBackoff { base_ms: take(&mut b, f, "base_ms")?, max_ms: take(&mut b, f, "max_ms")? })
        }
    };
    let cooldown = match m.remove("cooldown").filter(|v| !v.is_null()) {
        None => None,
        Some(c) => {
            let mut c = object("policy.cooldown", c, COOLDOWN_FIELDS)?;
            let f = "policy.cooldown";
            Some(RawCooldown {
                failures_to_open: take(&mut c, f, "failures_to_open")?,
                cooldown_ms: take(&mut c, f, "cooldown_ms")?,
                max_cooldown_ms: take(&mut c, f, "max_cooldown_ms")?,
            })
        }
    };
    let raw = RawRoutingPolicy {
        strategy: take(&mut m, P, "strategy")?,
        max_attempts: take(&mut m, P, "max_attempts")?,
        per_attempt_timeout_ms: take(&mut m, P, "per_attempt_timeout_ms")?,
        overall_timeout_ms: take(&mut m, P, "overall_timeout_ms")?,
        backoff,
        retry_on: take(&mut m, P, "retry_on")?,
        cooldown,
    };
    let policy =
        RoutingPolicy::try_from(raw).map_err(|e| ControlError::invalid(format!("policy.{}", e.field), e.reason))?;
    serde_json::to_value(RawRoutingPolicy::from(policy))
        .map_err(|e| ControlError::Internal(format!("a routing policy does not serialize: {e}")))
}

fn policy_not_found(id: &str) -> ControlError {
    ControlError::NotFound { kind: "routing policy", id: id.chars().take(128).collect() }
}

// ------------------------------------------------------------------ operations

impl Service {
    /// Adds an alias for a model. 409 when the name is taken by a model or an alias; 400
    /// (`model`) when the target is unknown or is itself an alias.
    pub async fn create_alias(&self, actor: &Actor, input: CreateAlias) -> Result<AliasView, ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        check_name("name", &input.name)?;
        check_name("model", &input.model)?;
        if self.store.find_model(&input.name).await?.is_some_and(|m| m.name == input.name) {
            return Err(ControlError::Conflict(format!("a model named {:?} exists", input.name)));
        }
        if self.store.find_alias(&input.name).await?.is_some() {
            return Err(ControlError::Conflict(format!("an alias named {:?} already exists", input.name)));
        }
        if self.store.find_alias(&input.model).await?.is_some() {
            return Err(ControlError::invalid(
                "model",
                format!("{:?} is an alias; an alias must point at a model", input.model),
            ));
        }
        let Some(target) = self.store.find_model(&input.model).await? else {
            return Err(ControlError::invalid("model", format!("no model {:?}", input.model)));
        };
        let rec = AliasRecord { name: input.name, target_model: target.name, created_at: Timestamp::now() };
        let w = self.begin_write().await?;
        let rev = w.store().create_alias(&rec).await?;
        let view = alias_view(&rec);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "alias.create", ("alias", &rec.name), meta).await?;
        Ok(view)
    }

    /// Every alias, by name.
    pub async fn list_aliases(&self) -> Result<Vec<AliasView>, ControlError> {
        Ok(self.store.list_aliases().await?.iter().map(alias_view).collect())
    }

    /// Reads an alias.
    pub async fn get_alias(&self, name: &str) -> Result<AliasView, ControlError> {
        match self.store.find_alias(name).await? {
            Some(a) => Ok(alias_view(&a)),
            None => Err(ControlError::NotFound { kind: "alias", id: name.chars().take(128).collect() }),
        }
    }

    /// Deletes an alias; gateways stop answering to it with the next snapshot.
    pub async fn delete_alias(&self, actor: &Actor, name: &str) -> Result<(), ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        let view = self.get_alias(name).await?;
        let w = self.begin_write().await?;
        let rev = w.store().delete_alias(name).await?;
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "alias.delete", ("alias", name), meta).await?;
        Ok(())
    }

    /// The stored id of a policy's scope target (`None` for `default`); 400 (`scope_id`)
    /// when it is missing, misplaced or names nothing.
    async fn policy_target(
        &self,
        scope: PolicyScopeKind,
        scope_id: Option<&str>,
    ) -> Result<Option<String>, ControlError> {
        let id = match (scope, scope_id) {
            (PolicyScopeKind::Default, None) => return Ok(None),
            (PolicyScopeKind::Default, Some(_)) => {
                return Err(ControlError::invalid("scope_id", "must be left out for scope default"));
            }
            (_, None) => return Err(ControlError::invalid("scope_id", format!("is required for scope {scope}"))),
            (_, Some(id)) => id,
        };
        check_name("scope_id", id)?;
        let found = match scope {
            PolicyScopeKind::Organization => self.store.find_org(id).await?.map(|o| o.id.to_string()),
            PolicyScopeKind::Team => self.store.find_team(id).await?.map(|t| t.id.to_string()),
            PolicyScopeKind::Project => self.store.find_project(id).await?.map(|p| p.id.to_string()),
            PolicyScopeKind::VirtualKey => self.store.get_key(&KeyId::new(id)).await?.map(|k| k.id.to_string()),
            PolicyScopeKind::Default => None,
        };
        found.map(Some).ok_or_else(|| ControlError::invalid("scope_id", format!("no {scope} {id:?}")))
    }

    /// Attaches a routing policy to a scope (or sets the default). 409 when the scope
    /// already has one.
    pub async fn create_routing_policy(
        &self,
        actor: &Actor,
        input: CreateRoutingPolicy,
    ) -> Result<RoutingPolicyView, ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        let policy = parse_policy(input.policy)?;
        let scope_id = self.policy_target(input.scope, input.scope_id.as_deref()).await?;
        let now = Timestamp::now();
        let rec = RoutingPolicyRecord {
            id: new_id(POLICY_PREFIX),
            scope: input.scope.as_str().to_owned(),
            scope_id,
            policy,
            created_at: now,
            updated_at: now,
        };
        let view = policy_view(&rec)?;
        let w = self.begin_write().await?;
        let rev = w.store().create_routing_policy(&rec).await?;
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "routing_policy.create", ("routing_policy", &rec.id), meta).await?;
        Ok(view)
    }

    /// Every routing policy, by id.
    pub async fn list_routing_policies(&self, actor: &Actor) -> Result<Vec<RoutingPolicyView>, ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        self.store.list_routing_policies().await?.iter().map(policy_view).collect()
    }

    /// Reads a routing policy.
    pub async fn get_routing_policy(&self, actor: &Actor, id: &str) -> Result<RoutingPolicyView, ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        policy_view(&self.store.get_routing_policy(id).await?.ok_or_else(|| policy_not_found(id))?)
    }

    /// Replaces a routing policy's settings; its scope stays.
    pub async fn update_routing_policy(
        &self,
        actor: &Actor,
        id: &str,
        patch: UpdateRoutingPolicy,
    ) -> Result<RoutingPolicyView, ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        let policy = parse_policy(patch.policy)?;
        let mut rec = self.store.get_routing_policy(id).await?.ok_or_else(|| policy_not_found(id))?;
        rec.policy = policy;
        rec.updated_at = Timestamp::now();
        let w = self.begin_write().await?;
        let (stored, rev) = w.store().update_routing_policy(&rec).await?;
        let view = policy_view(&stored)?;
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "routing_policy.update", ("routing_policy", id), meta).await?;
        Ok(view)
    }

    /// Deletes a routing policy; its scope falls back to the next level with the next
    /// snapshot.
    pub async fn delete_routing_policy(&self, actor: &Actor, id: &str) -> Result<(), ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        let view = self.get_routing_policy(actor, id).await?;
        let w = self.begin_write().await?;
        let rev = w.store().delete_routing_policy(id).await?;
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "routing_policy.delete", ("routing_policy", id), meta).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(v: serde_json::Value) -> String {
        match parse_policy(v) {
            Err(ControlError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn policies_are_written_out_whole_and_errors_name_the_field() {
        let full = parse_policy(json!({"strategy": "weighted"})).unwrap();
        assert_eq!(full["strategy"], "weighted");
        assert_eq!(full["max_attempts"], 3, "defaults are written out: {full}");
        assert_eq!(full["backoff"]["base_ms"], 250);
        assert_eq!(field_of(json!({"backoff": {"base_ms": 9000, "max_ms": 10}})), "policy.backoff.base_ms");
        assert_eq!(field_of(json!({"backoff": {"base_ms": "x"}})), "policy.backoff.base_ms");
        assert_eq!(field_of(json!({"backoff": {"jitter": true}})), "policy.backoff.jitter");
        assert_eq!(field_of(json!({"retries": 2})), "policy.retries");
        assert_eq!(field_of(json!({"max_attempts": 0})), "policy.max_attempts");
        assert_eq!(field_of(json!({"retry_on": ["connect", "400"]})), "policy.retry_on[1]");
        assert_eq!(field_of(json!({"cooldown": {"cooldown_ms": 0}})), "policy.cooldown.cooldown_ms");
        assert_eq!(field_of(json!({"strategy": "random"})), "policy.strategy");
        assert_eq!(field_of(json!(["weighted"])), "policy");
    }

    #[test]
    fn scopes_read_and_show_their_wire_spelling() {
        for s in ["organization", "team", "project", "virtual_key", "default"] {
            assert_eq!(s.parse::<PolicyScopeKind>().unwrap().as_str(), s);
        }
        assert!("principal".parse::<PolicyScopeKind>().unwrap_err().contains("principal"));
    }
}
