//! Budget management: create, list, read, change, delete, reset and temporarily increase
//! budgets at any scope, shared by REST and gRPC.
//!
//! Every write goes through the store in one transaction that bumps the revision, so the
//! next published snapshot carries it to every gateway; each write leaves an audit event
//! with the caller's token as actor. A manual reset bumps the budget's `epoch`: gateways
//! key their counters by `(id, epoch)`, so the window starts empty everywhere at once.
//! [`Service::budget_spend`] reads what counts against a budget from the ledger, so
//! counters can be rebuilt after a restart.
//!
//! JSON bodies are read field by field ([`Fields`]) so every error names the offending
//! field, whether it is unknown, missing, of the wrong type or out of range.

use super::auth::{Scope, Target};
use super::models::Change;
use super::{Actor, DEFAULT_LIMIT, MAX_LIST_LIMIT, Service, check_name, new_id};
use crate::ControlError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use tollgate_budgets::{Budget, BudgetError, Limit};
use tollgate_core::{BudgetId, KeyId, Money, OnBreach, ScopeKind, Timestamp, Window};
use tollgate_store::{BudgetFilter, BudgetRecord};
use utoipa::ToSchema;

/// The most alert thresholds one budget may have.
const MAX_THRESHOLDS: usize = 16;
/// The largest clamp floor a budget may have, in output tokens.
pub const MAX_CLAMP_FLOOR_TOKENS: u64 = 1_000_000;

/// The stored clamp floor of a budget with `on_breach`: `floor` checked (1 to
/// [`MAX_CLAMP_FLOOR_TOKENS`]) for a clamp budget, refused on any other (it would mean
/// nothing there). `prefix` is prepended to the field name (`budget.` inline).
pub(crate) fn clamp_floor_of(
    prefix: &str,
    on_breach: OnBreach,
    floor: Option<u64>,
) -> Result<Option<i64>, ControlError> {
    let Some(floor) = floor else { return Ok(None) };
    let field = format!("{prefix}clamp_floor_tokens");
    if on_breach != OnBreach::Clamp {
        return Err(ControlError::invalid(field, "only a budget with on_breach \"clamp\" takes a clamp floor"));
    }
    if !(1..=MAX_CLAMP_FLOOR_TOKENS).contains(&floor) {
        return Err(ControlError::invalid(field, format!("must be between 1 and {MAX_CLAMP_FLOOR_TOKENS}")));
    }
    Ok(i64::try_from(floor).ok())
}
/// The longest a temporary increase may last.
pub const MAX_INCREASE_DURATION_S: u64 = 90 * 24 * 3600;

/// An alert threshold (a fraction of the limit, exact to 0.001): core's type, the one
/// rule the budget engine and `tollctl apply` share.
pub use tollgate_core::Threshold;

/// Per-mille values of `thresholds`, ascending; refuses duplicates and overly long lists.
pub(crate) fn permilles(field: &str, thresholds: &[Threshold]) -> Result<Vec<u16>, ControlError> {
    if thresholds.len() > MAX_THRESHOLDS {
        return Err(ControlError::invalid(field, format!("at most {MAX_THRESHOLDS} thresholds")));
    }
    let mut out: Vec<u16> = thresholds.iter().map(|t| t.permille()).collect();
    out.sort_unstable();
    if let Some(w) = out.windows(2).find(|w| w[0] == w[1]) {
        let dup = Threshold::from_permille(w[0]).map(|t| t.to_string()).unwrap_or_else(|| w[0].to_string());
        return Err(ControlError::invalid(field, format!("threshold {dup} is given twice")));
    }
    Ok(out)
}

/// The stored limit of a budget: `(limit_nanos, limit_tokens)`, from exactly one of a
/// money or a token limit. `prefix` is prepended to field names (`budget.` inline).
pub(crate) fn limit_of(
    prefix: &str,
    limit_usd: Option<Money>,
    limit_tokens: Option<u64>,
) -> Result<(i64, Option<i64>), ControlError> {
    match (limit_usd, limit_tokens) {
        (Some(_), Some(_)) => Err(ControlError::invalid(
            format!("{prefix}limit_tokens"),
            "give exactly one of limit_usd and limit_tokens",
        )),
        (None, None) => {
            Err(ControlError::invalid(format!("{prefix}limit_usd"), "one of limit_usd or limit_tokens is required"))
        }
        (Some(usd), None) => {
            // The gateway's own rule for a limit (`tollgate_budgets::Limit::check`).
            Limit::Money(usd)
                .check()
                .map_err(|_| ControlError::invalid(format!("{prefix}limit_usd"), "must not be negative"))?;
            Ok((usd.nanos(), None))
        }
        (None, Some(tokens)) => {
            let tokens = i64::try_from(tokens)
                .map_err(|_| ControlError::invalid(format!("{prefix}limit_tokens"), "too large"))?;
            Ok((0, Some(tokens)))
        }
    }
}

/// Builds the budget every gateway will load from `rec`, through the budget crate's own
/// constructor: a record that passes here is one no gateway drops. `prefix` is prepended
/// to field names (`budget.` inline).
pub(crate) fn domain_budget(prefix: &str, rec: &BudgetRecord) -> Result<Budget, ControlError> {
    let limit = match rec.limit_tokens {
        Some(t) => Limit::Tokens(
            u64::try_from(t)
                .map_err(|_| ControlError::invalid(format!("{prefix}limit_tokens"), "must not be negative"))?,
        ),
        None => Limit::Money(Money::from_nanos(rec.limit_nanos)),
    };
    let budget = Budget::new(
        rec.id.clone(),
        rec.scope,
        rec.scope_id.as_str(),
        limit,
        rec.window,
        rec.on_breach,
        rec.alert_thresholds.clone(),
    )
    .map_err(|e| match e {
        BudgetError::NegativeLimit => ControlError::invalid(format!("{prefix}limit_usd"), "must not be negative"),
        BudgetError::Threshold(_) => ControlError::invalid(format!("{prefix}alert_thresholds"), e.to_string()),
        BudgetError::EmptyScope => ControlError::invalid("scope_id", "must not be empty"),
    })?;
    let floor = clamp_floor_of(prefix, rec.on_breach, rec.clamp_floor_tokens.map(|f| u64::try_from(f).unwrap_or(0)))?;
    Ok(match floor {
        Some(f) => budget.with_clamp_floor_tokens(u64::try_from(f).unwrap_or(Budget::DEFAULT_CLAMP_FLOOR_TOKENS)),
        None => budget,
    })
}

// ------------------------------------------------------------------ JSON fields

/// A JSON object read field by field, so that each error names its field.
pub(crate) struct Fields {
    map: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    /// Parses `body` as a JSON object whose keys are all in `allowed`. An empty body is
    /// an empty object when `empty_ok`.
    pub(crate) fn parse(body: &[u8], allowed: &[&str], empty_ok: bool) -> Result<Fields, ControlError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            if empty_ok {
                return Ok(Fields { map: serde_json::Map::new() });
            }
            return Err(ControlError::BadBody("request body must be a JSON object".into()));
        }
        let value: serde_json::Value = crate::body::json(body)?;
        let serde_json::Value::Object(map) = value else {
            return Err(ControlError::BadBody("request body must be a JSON object".into()));
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let reason = if allowed.is_empty() {
                "unknown field; this operation takes none".to_owned()
            } else {
                format!("unknown field; expected one of: {}", allowed.join(", "))
            };
            return Err(ControlError::invalid(unknown.chars().take(64).collect::<String>(), reason));
        }
        Ok(Fields { map })
    }

    fn decode<T: DeserializeOwned>(name: &str, v: serde_json::Value) -> Result<T, ControlError> {
        serde_json::from_value(v).map_err(|e| ControlError::invalid(name, e.to_string()))
    }

    /// The field's value; `None` when absent or `null`.
    pub(crate) fn optional<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, ControlError> {
        match self.map.remove(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => Self::decode(name, v).map(Some),
        }
    }

    /// The field's value; absent or `null` is an error.
    pub(crate) fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, ControlError> {
        self.optional(name)?.ok_or_else(|| ControlError::invalid(name, "is required"))
    }

    /// For a patch: `None` when absent; `null` is an error (the field cannot be unset).
    pub(crate) fn not_null<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, ControlError> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(serde_json::Value::Null) => {
                Err(ControlError::invalid(name, "must not be null; give a value or leave the field out"))
            }
            Some(v) => Self::decode(name, v).map(Some),
        }
    }

    /// For a patch: `None` when absent, `Some(None)` when `null`, else the value.
    pub(crate) fn nullable<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<Option<T>>, ControlError> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(serde_json::Value::Null) => Ok(Some(None)),
            Some(v) => Self::decode(name, v).map(|t| Some(Some(t))),
        }
    }
}

/// Accepts an empty body or an empty JSON object, for operations without options.
pub(crate) fn no_fields(body: &[u8]) -> Result<(), ControlError> {
    Fields::parse(body, &[], true).map(drop)
}

// ------------------------------------------------------------------ inputs

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
    /// Block (default), warn or clamp.
    #[serde(default)]
    pub on_breach: Option<OnBreach>,
    /// Fractions of the limit at which to alert, e.g. `[0.5, 0.8]`.
    #[serde(default)]
    pub alert_thresholds: Vec<Threshold>,
    /// With `on_breach: "clamp"` only: the fewest output tokens a request may be clamped
    /// to (1 to 1,000,000; default 16).
    #[serde(default)]
    pub clamp_floor_tokens: Option<u64>,
}

/// `POST /api/v1/budgets`.
#[derive(Debug, Clone, PartialEq, ToSchema)]
// Read by the schema only (this type is parsed by [`Fields`], which refuses unknown fields).
#[serde(deny_unknown_fields)]
pub struct CreateBudget {
    /// The kind of entity the budget applies to.
    pub scope: ScopeKind,
    /// The entity: a team or project id or name, an organization id or name, a key id,
    /// or a free-form principal. Stored as the id.
    pub scope_id: String,
    /// A money limit in USD; exactly one of this and `limit_tokens`.
    pub limit_usd: Option<Money>,
    /// A token limit (input + output).
    pub limit_tokens: Option<u64>,
    /// The window spend is counted over.
    pub window: Window,
    /// Block (default), warn or clamp: a clamp budget that cannot take a request's
    /// worst case lowers its output cap to what it affords (at least
    /// `clamp_floor_tokens`), else refuses it like block.
    pub on_breach: Option<OnBreach>,
    /// Fractions of the limit at which to alert.
    #[schema(required = false)]
    pub alert_thresholds: Vec<Threshold>,
    /// With `on_breach: "clamp"` only: the fewest output tokens a request may be clamped
    /// to (1 to 1,000,000; default 16).
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub clamp_floor_tokens: Option<u64>,
}

impl CreateBudget {
    /// Reads a JSON body.
    pub fn from_json(body: &[u8]) -> Result<CreateBudget, ControlError> {
        let mut f = Fields::parse(
            body,
            &[
                "scope",
                "scope_id",
                "limit_usd",
                "limit_tokens",
                "window",
                "on_breach",
                "alert_thresholds",
                "clamp_floor_tokens",
            ],
            false,
        )?;
        Ok(CreateBudget {
            scope: f.required("scope")?,
            scope_id: f.required("scope_id")?,
            limit_usd: f.optional("limit_usd")?,
            limit_tokens: f.optional("limit_tokens")?,
            window: f.required("window")?,
            on_breach: f.optional("on_breach")?,
            alert_thresholds: f.optional("alert_thresholds")?.unwrap_or_default(),
            clamp_floor_tokens: f.optional("clamp_floor_tokens")?,
        })
    }
}

/// `PATCH /api/v1/budgets/{id}`: absent fields are left alone.
#[derive(Debug, Clone, Default, PartialEq, ToSchema)]
// Read by the schema only (this type is parsed by [`Fields`], which refuses unknown fields).
#[serde(deny_unknown_fields)]
pub struct UpdateBudget {
    /// A new money limit (turns a token budget into a money budget).
    #[schema(nullable = false)]
    pub limit_usd: Option<Money>,
    /// A new token limit (turns a money budget into a token budget).
    #[schema(nullable = false)]
    pub limit_tokens: Option<u64>,
    /// A new window.
    #[schema(nullable = false)]
    pub window: Option<Window>,
    /// A new breach behaviour.
    #[schema(nullable = false)]
    pub on_breach: Option<OnBreach>,
    /// New thresholds (replace the list; empty clears it).
    pub alert_thresholds: Option<Vec<Threshold>>,
    /// Ends the temporary increase now (`"temporary_increase": null`).
    #[schema(rename = "temporary_increase", schema_with = null_schema, required = false)]
    pub clear_temporary_increase: bool,
    /// A new clamp floor (1 to 1,000,000) of a clamp budget; `null` goes back to the
    /// default (16). Leaving clamp for block or warn drops the floor.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub clamp_floor_tokens: Option<Option<u64>>,
}

impl UpdateBudget {
    /// Reads a JSON body.
    pub fn from_json(body: &[u8]) -> Result<UpdateBudget, ControlError> {
        let mut f = Fields::parse(
            body,
            &[
                "limit_usd",
                "limit_tokens",
                "window",
                "on_breach",
                "alert_thresholds",
                "temporary_increase",
                "clamp_floor_tokens",
            ],
            false,
        )?;
        let clear_temporary_increase = match f.nullable::<serde_json::Value>("temporary_increase")? {
            None => false,
            Some(None) => true,
            Some(Some(_)) => {
                return Err(ControlError::invalid(
                    "temporary_increase",
                    "only null (to end the increase) is accepted here; use POST /api/v1/budgets/{id}/increase",
                ));
            }
        };
        Ok(UpdateBudget {
            limit_usd: f.not_null("limit_usd")?,
            limit_tokens: f.not_null("limit_tokens")?,
            window: f.not_null("window")?,
            on_breach: f.not_null("on_breach")?,
            alert_thresholds: f.nullable("alert_thresholds")?.map(Option::unwrap_or_default),
            clear_temporary_increase,
            clamp_floor_tokens: f.nullable("clamp_floor_tokens")?,
        })
    }

    fn is_empty(&self) -> bool {
        *self == UpdateBudget::default()
    }
}

/// The schema of `null`, the only value of `temporary_increase` in a budget patch.
fn null_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Null)
        .description(Some(
            "`null` ends the temporary increase now; use POST /api/v1/budgets/{id}/increase to start one.",
        ))
        .build()
}

/// `POST /api/v1/budgets/{id}/increase`: raise the limit for a while.
#[derive(Debug, Clone, Default, PartialEq, ToSchema)]
// Read by the schema only (this type is parsed by [`Fields`], which refuses unknown fields).
#[serde(deny_unknown_fields)]
pub struct IncreaseBudget {
    /// The increase of a money budget, in USD.
    pub amount_usd: Option<Money>,
    /// The increase of a token budget.
    pub tokens: Option<u64>,
    /// When the increase ends; exactly one of this and `duration_s`.
    pub expires_at: Option<Timestamp>,
    /// How long the increase lasts, from now.
    pub duration_s: Option<u64>,
}

impl IncreaseBudget {
    /// Reads a JSON body.
    pub fn from_json(body: &[u8]) -> Result<IncreaseBudget, ControlError> {
        let mut f = Fields::parse(body, &["amount_usd", "tokens", "expires_at", "duration_s"], false)?;
        Ok(IncreaseBudget {
            amount_usd: f.optional("amount_usd")?,
            tokens: f.optional("tokens")?,
            expires_at: f.optional("expires_at")?,
            duration_s: f.optional("duration_s")?,
        })
    }
}

/// Filters of `GET /api/v1/budgets`.
#[derive(Debug, Clone, Default)]
pub struct ListBudgets {
    /// Only this scope kind.
    pub scope: Option<ScopeKind>,
    /// Only this scope target (a team, project or organization may be given by name).
    pub scope_id: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u64>,
    /// Cursor: the last id of the previous page.
    pub after: Option<String>,
}

// ------------------------------------------------------------------ views

/// An amount in a budget's unit: USD (a decimal string) or tokens (a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BudgetAmount {
    /// A money amount.
    Usd(Money),
    /// A token count.
    Tokens(i64),
}

impl fmt::Display for BudgetAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetAmount::Usd(m) => m.fmt(f),
            BudgetAmount::Tokens(t) => t.fmt(f),
        }
    }
}

/// A temporary increase still in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct TemporaryIncreaseView {
    /// Added to the limit, in the limit's unit.
    pub amount: BudgetAmount,
    /// When it stops counting.
    pub until: Timestamp,
}

/// A budget as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BudgetView {
    /// Id.
    pub id: BudgetId,
    /// Scope kind.
    pub scope: ScopeKind,
    /// Scope id.
    pub scope_id: String,
    /// Limit in USD; `null` for a token budget.
    pub limit_usd: Option<Money>,
    /// Limit in tokens; `null` for a money budget.
    pub limit_tokens: Option<i64>,
    /// Window.
    pub window: Window,
    /// Block, warn or clamp.
    pub on_breach: OnBreach,
    /// For a clamp budget, the fewest output tokens a request may be clamped to (the
    /// default 16 unless set); absent for block and warn budgets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clamp_floor_tokens: Option<u64>,
    /// Alert thresholds as fractions of the limit (`"0.8"`).
    pub alert_thresholds: Vec<Threshold>,
    /// Bumped by every manual reset.
    pub epoch: i32,
    /// The temporary increase in force, if any (an expired one shows as `null`).
    pub temporary_increase: Option<TemporaryIncreaseView>,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A page of budgets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetPage {
    /// The budgets.
    pub data: Vec<BudgetView>,
    /// Cursor for the next page (pass as `after`), if there may be more.
    pub next_after: Option<BudgetId>,
}

fn amount_of(b: &BudgetRecord, value: i64) -> BudgetAmount {
    if b.limit_tokens.is_some() { BudgetAmount::Tokens(value) } else { BudgetAmount::Usd(Money::from_nanos(value)) }
}

/// The view of `b` at `now`.
pub(crate) fn budget_view(b: &BudgetRecord, now: Timestamp) -> BudgetView {
    let temporary_increase = match b.temporary_increase_until {
        Some(until) if b.temporary_increase != 0 && until > now => {
            Some(TemporaryIncreaseView { amount: amount_of(b, b.temporary_increase), until })
        }
        _ => None,
    };
    BudgetView {
        id: b.id.clone(),
        scope: b.scope,
        scope_id: b.scope_id.clone(),
        limit_usd: b.limit_tokens.is_none().then(|| Money::from_nanos(b.limit_nanos)),
        limit_tokens: b.limit_tokens,
        window: b.window,
        on_breach: b.on_breach,
        clamp_floor_tokens: (b.on_breach == OnBreach::Clamp).then(|| {
            b.clamp_floor_tokens.and_then(|f| u64::try_from(f).ok()).unwrap_or(Budget::DEFAULT_CLAMP_FLOOR_TOKENS)
        }),
        alert_thresholds: b.alert_thresholds.iter().filter_map(|&p| Threshold::from_permille(p)).collect(),
        epoch: b.epoch,
        temporary_increase,
        created_at: b.created_at,
        updated_at: b.updated_at,
    }
}

/// Refuses a limit that, with the increase on top, would not fit the counters.
fn check_headroom(field: &str, b: &BudgetRecord) -> Result<(), ControlError> {
    let limit = b.limit_tokens.unwrap_or(b.limit_nanos);
    if limit.checked_add(b.temporary_increase).is_none() {
        return Err(ControlError::invalid(field, "the limit plus the temporary increase is too large"));
    }
    Ok(())
}

fn budget_not_found(id: &str) -> ControlError {
    ControlError::NotFound { kind: "budget", id: id.chars().take(128).collect() }
}

// ------------------------------------------------------------------ operations

impl Service {
    /// The stored id of a budget's scope target, its name resolved as `actor` may name
    /// it; 404 when the target does not exist (or is another tenant's).
    pub(super) async fn scope_target(
        &self,
        actor: &Actor,
        scope: ScopeKind,
        scope_id: &str,
    ) -> Result<String, ControlError> {
        check_name("scope_id", scope_id)?;
        let not_found = |kind| ControlError::NotFound { kind, id: scope_id.to_owned() };
        Ok(match scope {
            ScopeKind::Organization => {
                self.find_org_for(actor, scope_id).await?.ok_or_else(|| not_found("organization"))?.id.to_string()
            }
            ScopeKind::Team => {
                self.find_team_for(actor, scope_id).await?.ok_or_else(|| not_found("team"))?.id.to_string()
            }
            ScopeKind::Project => {
                self.find_project_for(actor, scope_id).await?.ok_or_else(|| not_found("project"))?.id.to_string()
            }
            ScopeKind::VirtualKey => {
                self.store.get_key(&KeyId::new(scope_id)).await?.ok_or_else(|| not_found("key"))?.id.to_string()
            }
            ScopeKind::Principal => scope_id.to_owned(),
        })
    }

    async fn budget_record(&self, id: &str) -> Result<BudgetRecord, ControlError> {
        self.store.get_budget(&BudgetId::new(id)).await?.ok_or_else(|| budget_not_found(id))
    }

    /// Creates a budget at any scope.
    pub async fn create_budget(&self, actor: &Actor, input: CreateBudget) -> Result<BudgetView, ControlError> {
        self.authorize(actor, Scope::BudgetsWrite, Target::BudgetScope(input.scope, &input.scope_id)).await?;
        let (limit_nanos, limit_tokens) = limit_of("", input.limit_usd, input.limit_tokens)?;
        let alert_thresholds = permilles("alert_thresholds", &input.alert_thresholds)?;
        let on_breach = input.on_breach.unwrap_or(OnBreach::Block);
        let clamp_floor_tokens = clamp_floor_of("", on_breach, input.clamp_floor_tokens)?;
        let scope_id = self.scope_target(actor, input.scope, &input.scope_id).await?;
        let now = Timestamp::now();
        let rec = BudgetRecord {
            id: BudgetId::new(new_id(BudgetId::PREFIX)),
            scope: input.scope,
            scope_id,
            limit_nanos,
            limit_tokens,
            window: input.window,
            on_breach,
            alert_thresholds,
            epoch: 0,
            temporary_increase: 0,
            temporary_increase_until: None,
            last_reset_at: None,
            clamp_floor_tokens,
            created_at: now,
            updated_at: now,
        };
        domain_budget("", &rec)?;
        let _checked =
            self.refuse_unpriced_reach("limit_usd", Change { budgets: &[&rec], ..Change::default() }).await?;
        let w = self.begin_write().await?;
        let rev = w.store().create_budget(&rec).await?;
        let view = budget_view(&rec, now);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "budget.create", ("budget", rec.id.as_str()), meta).await?;
        Ok(view)
    }

    /// Reads a budget.
    pub async fn get_budget(&self, actor: &Actor, id: &str) -> Result<BudgetView, ControlError> {
        self.authorize(actor, Scope::BudgetsRead, Target::Budget(id)).await?;
        Ok(budget_view(&self.budget_record(id).await?, Timestamp::now()))
    }

    /// Lists budgets with filters and keyset pagination. A bound token sees only the
    /// budgets inside its tenancy: a page may then come back short, and `next_after`
    /// still continues where the store stopped.
    pub async fn list_budgets(&self, actor: &Actor, q: ListBudgets) -> Result<BudgetPage, ControlError> {
        self.authorize(actor, Scope::BudgetsRead, Target::Filtered).await?;
        let scope_id = match (q.scope, q.scope_id) {
            // Names resolve to ids like on create; an unknown target simply has no budgets.
            (Some(scope @ (ScopeKind::Organization | ScopeKind::Team | ScopeKind::Project)), Some(sid)) => {
                match self.scope_target(actor, scope, &sid).await {
                    Ok(id) => Some(id),
                    Err(ControlError::NotFound { .. }) => Some(sid),
                    Err(e) => return Err(e),
                }
            }
            (_, sid) => sid,
        };
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIST_LIMIT);
        let filter = BudgetFilter { scope: q.scope, scope_id, limit, after: q.after.map(BudgetId::new) };
        let recs = self.store.list_budgets(&filter).await?;
        let now = Timestamp::now();
        let next_after = (recs.len() as u64 == limit).then(|| recs.last().map(|r| r.id.clone())).flatten();
        let mut data = Vec::with_capacity(recs.len());
        for r in &recs {
            if !actor.is_bound() || actor.tenancy().covers(&self.owner_of_budget(r).await?) {
                data.push(budget_view(r, now));
            }
        }
        Ok(BudgetPage { data, next_after })
    }

    /// Changes a budget's limit, window, breach behaviour or thresholds, or ends its
    /// temporary increase. Switching between a money and a token limit ends the increase
    /// too, since its unit no longer applies. An empty patch changes nothing.
    pub async fn update_budget(
        &self,
        actor: &Actor,
        id: &str,
        patch: UpdateBudget,
    ) -> Result<BudgetView, ControlError> {
        self.authorize(actor, Scope::BudgetsWrite, Target::Budget(id)).await?;
        let mut rec = self.budget_record(id).await?;
        if patch.is_empty() {
            return Ok(budget_view(&rec, Timestamp::now()));
        }
        let was_tokens = rec.limit_tokens.is_some();
        if patch.limit_usd.is_some() || patch.limit_tokens.is_some() {
            (rec.limit_nanos, rec.limit_tokens) = limit_of("", patch.limit_usd, patch.limit_tokens)?;
        }
        if let Some(w) = patch.window {
            rec.window = w;
        }
        if let Some(o) = patch.on_breach {
            rec.on_breach = o;
        }
        match patch.clamp_floor_tokens {
            Some(floor) => rec.clamp_floor_tokens = clamp_floor_of("", rec.on_breach, floor)?,
            // A floor kept by a budget leaving clamp would mean nothing.
            None if rec.on_breach != OnBreach::Clamp => rec.clamp_floor_tokens = None,
            None => {}
        }
        if let Some(t) = &patch.alert_thresholds {
            rec.alert_thresholds = permilles("alert_thresholds", t)?;
        }
        if patch.clear_temporary_increase || rec.limit_tokens.is_some() != was_tokens {
            rec.temporary_increase = 0;
            rec.temporary_increase_until = None;
        }
        check_headroom(if rec.limit_tokens.is_some() { "limit_tokens" } else { "limit_usd" }, &rec)?;
        domain_budget("", &rec)?;
        let _checked = if was_tokens && rec.limit_tokens.is_none() {
            self.refuse_unpriced_reach("limit_usd", Change { budgets: &[&rec], ..Change::default() }).await?
        } else {
            None
        };
        let now = Timestamp::now();
        rec.updated_at = now;
        let w = self.begin_write().await?;
        let (stored, rev) = w.store().update_budget(&rec).await?;
        let view = budget_view(&stored, now);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "budget.update", ("budget", id), meta).await?;
        Ok(view)
    }

    /// Deletes a budget; gateways stop applying it with the next snapshot.
    pub async fn delete_budget(&self, actor: &Actor, id: &str) -> Result<(), ControlError> {
        self.authorize(actor, Scope::BudgetsWrite, Target::Budget(id)).await?;
        let rec = self.budget_record(id).await?;
        let w = self.begin_write().await?;
        let rev = w.store().delete_budget(&rec.id).await?;
        let view = budget_view(&rec, Timestamp::now());
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "budget.delete", ("budget", id), meta).await?;
        Ok(())
    }

    /// Starts the budget's current window afresh on every gateway: bumps its epoch.
    /// Every call bumps it again, so a repeated reset empties the window again.
    pub async fn reset_budget(&self, actor: &Actor, id: &str) -> Result<BudgetView, ControlError> {
        self.authorize(actor, Scope::BudgetsWrite, Target::Budget(id)).await?;
        let now = Timestamp::now();
        let w = self.begin_write().await?;
        let (stored, rev) = w.store().reset_budget(&BudgetId::new(id), now).await?;
        let meta = serde_json::json!({"epoch": stored.epoch});
        self.commit_audited(w, Some(rev), actor, "budget.reset", ("budget", id), meta).await?;
        Ok(budget_view(&stored, now))
    }

    /// What counts against budget `budget_id` in its window containing `now`, read from
    /// the ledger: the cost and the tokens (input + output) of the entries of its scope
    /// target accepted in `[from, to)`.
    ///
    /// `from` is the later of the window's start (the Unix epoch for a `total` budget)
    /// and the budget's last manual reset, so spend before a reset does not count; `to`
    /// is the window's end (unbounded for `total`). The standalone gateway calls this at
    /// start-up to rebuild its budget counters, which are a cache of the ledger.
    /// [`ControlError::NotFound`] if no such budget.
    pub async fn budget_spend(&self, budget_id: &BudgetId, now: Timestamp) -> Result<(Money, u64), ControlError> {
        let b = self.budget_record(budget_id.as_str()).await?;
        let (from, to) = spend_range(&b, now);
        let (nanos, tokens) = self.store.ledger_spend(b.scope, &b.scope_id, from, to).await?;
        Ok((Money::from_nanos(nanos), tokens))
    }

    /// Raises the limit by an amount (in the budget's unit) until an instant at most
    /// [`MAX_INCREASE_DURATION_S`] ahead; replaces any increase already in force.
    pub async fn increase_budget(
        &self,
        actor: &Actor,
        id: &str,
        input: IncreaseBudget,
    ) -> Result<BudgetView, ControlError> {
        self.authorize(actor, Scope::BudgetsWrite, Target::Budget(id)).await?;
        let mut rec = self.budget_record(id).await?;
        let amount = match (input.amount_usd, input.tokens, rec.limit_tokens.is_some()) {
            (Some(_), Some(_), _) => {
                return Err(ControlError::invalid("tokens", "give exactly one of amount_usd and tokens"));
            }
            (None, None, tokens) => {
                let field = if tokens { "tokens" } else { "amount_usd" };
                return Err(ControlError::invalid(field, "the amount of the increase is required"));
            }
            (Some(_), None, true) => {
                return Err(ControlError::invalid("amount_usd", "this is a token budget; give tokens"));
            }
            (None, Some(_), false) => {
                return Err(ControlError::invalid("tokens", "this is a money budget; give amount_usd"));
            }
            (Some(usd), None, false) => {
                if usd.nanos() <= 0 {
                    return Err(ControlError::invalid("amount_usd", "must be positive"));
                }
                usd.nanos()
            }
            (None, Some(tokens), true) => match i64::try_from(tokens) {
                Ok(t) if t > 0 => t,
                Ok(_) => return Err(ControlError::invalid("tokens", "must be positive")),
                Err(_) => return Err(ControlError::invalid("tokens", "too large")),
            },
        };
        let now = Timestamp::now();
        let (field, until) = match (input.expires_at, input.duration_s) {
            (Some(_), Some(_)) => {
                return Err(ControlError::invalid("duration_s", "give exactly one of expires_at and duration_s"));
            }
            (None, None) => {
                return Err(ControlError::invalid("expires_at", "one of expires_at or duration_s is required"));
            }
            (Some(at), None) => ("expires_at", at),
            (None, Some(s)) => {
                ("duration_s", now.plus_millis(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)))
            }
        };
        if until <= now {
            return Err(ControlError::invalid(field, "must be in the future"));
        }
        let max_ms = i64::try_from(MAX_INCREASE_DURATION_S * 1000).unwrap_or(i64::MAX);
        if until > now.plus_millis(max_ms) {
            return Err(ControlError::invalid(field, "must be at most 90 days ahead"));
        }
        rec.temporary_increase = amount;
        rec.temporary_increase_until = Some(until);
        check_headroom(field_of_amount(&rec), &rec)?;
        rec.updated_at = now;
        let w = self.begin_write().await?;
        let (stored, rev) = w.store().update_budget(&rec).await?;
        let view = budget_view(&stored, now);
        let amount = amount_of(&stored, amount);
        let meta = serde_json::json!({"amount": amount, "until": until, "epoch": stored.epoch});
        self.commit_audited(w, Some(rev), actor, "budget.increase", ("budget", id), meta).await?;
        Ok(view)
    }
}

/// The ledger range `[from, to)` that counts against `b` at `now`; see
/// [`Service::budget_spend`].
fn spend_range(b: &BudgetRecord, now: Timestamp) -> (Timestamp, Timestamp) {
    // `start`/`end` are `None` for `total` (and past the calendar's end): unbounded.
    let start = b.window.start(now).unwrap_or(Timestamp::from_unix_millis(0));
    let to = b.window.end(now).unwrap_or(Timestamp::from_unix_millis(i64::MAX));
    let from = b.last_reset_at.map_or(start, |reset| reset.max(start));
    (from, to)
}

fn field_of_amount(b: &BudgetRecord) -> &'static str {
    if b.limit_tokens.is_some() { "tokens" } else { "amount_usd" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_lists_are_sorted_and_duplicates_refused() {
        let t = |p| Threshold::from_permille(p).unwrap();
        assert_eq!(permilles("alert_thresholds", &[t(800), t(500)]).unwrap(), [500, 800]);
        let e = permilles("alert_thresholds", &[t(800), t(800)]).unwrap_err().to_string();
        assert!(e.contains("alert_thresholds") && e.contains("0.8"), "{e}");
    }

    #[test]
    fn a_budget_has_exactly_one_kind_of_limit() {
        assert_eq!(limit_of("", Some(Money::from_nanos(5)), None).unwrap(), (5, None));
        assert_eq!(limit_of("", None, Some(7)).unwrap(), (0, Some(7)));
        let e = limit_of("budget.", None, None).unwrap_err().to_string();
        assert!(e.contains("budget.limit_usd"), "{e}");
        assert!(limit_of("", Some(Money::ZERO), Some(1)).unwrap_err().to_string().contains("exactly one"));
        assert!(limit_of("", Some(Money::from_nanos(-1)), None).unwrap_err().to_string().contains("negative"));
        assert!(limit_of("", None, Some(u64::MAX)).is_err());
    }

    #[test]
    fn bodies_name_the_offending_field() {
        let err = |body: &str| CreateBudget::from_json(body.as_bytes()).unwrap_err();
        let base = r#""scope": "team", "scope_id": "t", "window": "day""#;
        let cases = [
            (format!(r#"{{{base}, "limit_usd": "1", "color": "red"}}"#), "color"),
            (format!(r#"{{{base}, "limit_usd": "abc"}}"#), "limit_usd"),
            (format!(r#"{{{base}, "limit_tokens": -5}}"#), "limit_tokens"),
            (format!(r#"{{{base}, "limit_tokens": "many"}}"#), "limit_tokens"),
            (r#"{"scope": "galaxy", "scope_id": "t", "window": "day", "limit_usd": 1}"#.to_owned(), "scope"),
            (r#"{"scope": "team", "scope_id": "t", "window": "year", "limit_usd": 1}"#.to_owned(), "window"),
            (r#"{"scope": "team", "window": "day", "limit_usd": 1}"#.to_owned(), "scope_id"),
            (format!(r#"{{{base}, "limit_usd": 1, "alert_thresholds": [1.2]}}"#), "alert_thresholds"),
            (format!(r#"{{{base}, "limit_usd": 1, "on_breach": "explode"}}"#), "on_breach"),
        ];
        for (body, field) in cases {
            let e = err(&body);
            assert_eq!(e.field(), Some(field), "{body}: {e}");
        }
        let ok = CreateBudget::from_json(format!(r#"{{{base}, "limit_usd": 0.1}}"#).as_bytes()).unwrap();
        assert_eq!(ok.limit_usd, Some(Money::from_nanos(100_000_000)), "JSON numbers convert exactly");
        assert!(matches!(CreateBudget::from_json(b"[1]"), Err(ControlError::BadBody(_))));
    }

    #[test]
    fn patches_tell_absent_from_null() {
        let p = UpdateBudget::from_json(br#"{"temporary_increase": null, "alert_thresholds": null}"#).unwrap();
        assert!(p.clear_temporary_increase);
        assert_eq!(p.alert_thresholds, Some(Vec::new()));
        assert!(UpdateBudget::from_json(b"{}").unwrap().is_empty());
        let e = UpdateBudget::from_json(br#"{"limit_usd": null}"#).unwrap_err();
        assert_eq!(e.field(), Some("limit_usd"));
        let e = UpdateBudget::from_json(br#"{"temporary_increase": {"amount": 1}}"#).unwrap_err();
        assert_eq!(e.field(), Some("temporary_increase"));
    }

    #[test]
    fn views_show_the_limit_in_its_unit_and_hide_expired_increases() {
        let now = Timestamp::from_unix_millis(1_000_000);
        let mut b = BudgetRecord {
            id: BudgetId::new("bud_1"),
            scope: ScopeKind::Team,
            scope_id: "team_1".into(),
            limit_nanos: 500_000_000_000,
            limit_tokens: None,
            window: Window::Month,
            on_breach: OnBreach::Block,
            alert_thresholds: vec![500, 800],
            epoch: 2,
            last_reset_at: None,
            temporary_increase: 10_000_000_000,
            temporary_increase_until: Some(now.plus_millis(1)),
            clamp_floor_tokens: None,
            created_at: now,
            updated_at: now,
        };
        let v = serde_json::to_value(budget_view(&b, now)).unwrap();
        assert!(v.get("clamp_floor_tokens").is_none(), "a block budget has no floor: {v}");
        assert_eq!(v["limit_usd"], "500.00");
        assert_eq!(v["limit_tokens"], serde_json::Value::Null);
        assert_eq!(v["alert_thresholds"], serde_json::json!(["0.5", "0.8"]));
        assert_eq!(v["temporary_increase"]["amount"], "10.00");
        assert_eq!(v["epoch"], 2);
        b.limit_tokens = Some(1000);
        b.temporary_increase = 250;
        let v = serde_json::to_value(budget_view(&b, now)).unwrap();
        assert_eq!((v["limit_usd"].clone(), v["limit_tokens"].clone()), (serde_json::Value::Null, 1000.into()));
        assert_eq!(v["temporary_increase"]["amount"], 250);
        assert!(budget_view(&b, now.plus_millis(1)).temporary_increase.is_none(), "expired at `until`");
        b.on_breach = OnBreach::Clamp;
        assert_eq!(budget_view(&b, now).clamp_floor_tokens, Some(16), "the default floor of a clamp budget");
        b.clamp_floor_tokens = Some(64);
        assert_eq!(budget_view(&b, now).clamp_floor_tokens, Some(64));
        assert_eq!(domain_budget("", &b).unwrap().clamp_floor_tokens, 64, "the gateway gets the floor");
    }

    #[test]
    fn a_clamp_floor_is_bounded_and_only_for_clamp_budgets() {
        assert_eq!(clamp_floor_of("", OnBreach::Clamp, None).unwrap(), None);
        assert_eq!(clamp_floor_of("", OnBreach::Clamp, Some(1)).unwrap(), Some(1));
        assert_eq!(clamp_floor_of("", OnBreach::Clamp, Some(1_000_000)).unwrap(), Some(1_000_000));
        for bad in [0, 1_000_001] {
            let e = clamp_floor_of("budget.", OnBreach::Clamp, Some(bad)).unwrap_err();
            assert_eq!(e.field(), Some("budget.clamp_floor_tokens"), "{bad}: {e}");
        }
        for other in [OnBreach::Block, OnBreach::Warn] {
            let e = clamp_floor_of("", other, Some(16)).unwrap_err();
            assert!(e.to_string().contains("clamp"), "{e}");
        }
        let p = UpdateBudget::from_json(br#"{"clamp_floor_tokens": null}"#).unwrap();
        assert_eq!(p.clamp_floor_tokens, Some(None), "null goes back to the default");
    }
}
