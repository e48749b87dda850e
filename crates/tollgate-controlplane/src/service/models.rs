//! The model catalog's prices: defaults from the shipped price catalog, overrides
//! through the API, the listing, and the rule that no money budget may meet an unpriced
//! model.
//!
//! A model created without `pricing` takes the list price of its first deployment's
//! upstream model found in [`PriceCatalog`] (then of its public name) and records
//! `price_source = "catalog:<version>"`; explicit prices record `explicit`. A model
//! neither priced nor in the catalog stays unpriced: serving it to a key under a money
//! budget is refused here, at configuration time, naming the model — and by the data
//! plane with 400 `model_not_priced` as a last line.

use super::auth::{Scope, Target};
use super::{Actor, ModelView, PricingInput, Service, model_view};
use crate::ControlError;
use serde::Deserialize;
use std::collections::HashMap;
use tollgate_core::{Money, ScopeKind, Timestamp};
use tollgate_keys::ModelAllowlist;
use tollgate_metering::PriceCatalog;
use tollgate_store::{BudgetRecord, KeyRecord, ModelRecord};

/// `price_source` of a price an operator gave.
pub const PRICE_EXPLICIT: &str = "explicit";

/// `PATCH /api/v1/models/{name}`: absent fields are left alone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateModel {
    /// New prices (replaces all of them; recorded as `explicit`). A zero price is a
    /// deliberate price: the model is then free, not unpriced.
    #[serde(default)]
    pub pricing: Option<PricingInput>,
    /// Output tokens assumed when a request sets no `max_tokens`; `null` clears.
    #[serde(default, deserialize_with = "super::double_option")]
    pub max_output_tokens: Option<Option<u64>>,
    /// Where it is served (replaces the list; the same rules as at creation).
    #[serde(default)]
    pub deployments: Option<Vec<super::DeploymentInput>>,
}

/// Refuses a negative price, naming the field.
pub(crate) fn check_pricing(prefix: &str, p: &PricingInput) -> Result<(), ControlError> {
    for (field, m) in [
        ("input_per_mtok", Some(p.input_per_mtok)),
        ("output_per_mtok", Some(p.output_per_mtok)),
        ("cached_input_per_mtok", p.cached_input_per_mtok),
        ("cache_write_per_mtok", p.cache_write_per_mtok),
    ] {
        if m.is_some_and(Money::is_negative) {
            return Err(ControlError::invalid(format!("{prefix}{field}"), "must not be negative"));
        }
    }
    Ok(())
}

/// The list price of a model served by `upstream_models` (in order) under `public_name`,
/// and the source to record, from the shipped catalog.
pub(crate) fn catalog_price<'a>(
    upstream_models: impl IntoIterator<Item = &'a str>,
    public_name: &'a str,
) -> Option<(PricingInput, String)> {
    let catalog = match PriceCatalog::builtin() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the shipped price catalog cannot be read; models get no default price");
            return None;
        }
    };
    let entry = upstream_models.into_iter().chain([public_name]).find_map(|m| catalog.lookup(m))?;
    let p = entry.pricing;
    let input = PricingInput {
        input_per_mtok: p.input_per_mtok,
        output_per_mtok: p.output_per_mtok,
        cached_input_per_mtok: p.cached_input_per_mtok,
        cache_write_per_mtok: p.cache_write_per_mtok,
    };
    Some((input, catalog.source()))
}

/// Writes `p` into the record's price columns.
pub(crate) fn set_price(rec: &mut ModelRecord, p: &PricingInput, source: String) {
    rec.input_per_mtok = Some(p.input_per_mtok.nanos());
    rec.output_per_mtok = Some(p.output_per_mtok.nanos());
    rec.cached_input_per_mtok = p.cached_input_per_mtok.map(Money::nanos);
    rec.cache_write_per_mtok = p.cache_write_per_mtok.map(Money::nanos);
    rec.price_source = Some(source);
}

fn is_priced(m: &ModelRecord) -> bool {
    m.input_per_mtok.is_some() && m.output_per_mtok.is_some()
}

/// Whether a key falls under a budget's scope (`project_team` maps a project to its
/// team and organization).
fn key_in_scope(k: &KeyRecord, b: &BudgetRecord, project_team: &HashMap<String, (String, String)>) -> bool {
    match b.scope {
        ScopeKind::VirtualKey => k.id.as_str() == b.scope_id,
        ScopeKind::Principal => k.principal.as_deref() == Some(b.scope_id.as_str()),
        ScopeKind::Project => k.project_id.as_str() == b.scope_id,
        ScopeKind::Team => project_team.get(k.project_id.as_str()).is_some_and(|(t, _)| *t == b.scope_id),
        ScopeKind::Organization => project_team.get(k.project_id.as_str()).is_some_and(|(_, o)| *o == b.scope_id),
    }
}

/// A write checked by [`Service::refuse_unpriced_reach`]: the records it creates or
/// replaces, as they will be stored.
#[derive(Default, Clone, Copy)]
pub(crate) struct Change<'a> {
    /// A key minted or updated.
    pub(crate) key: Option<&'a KeyRecord>,
    /// Budgets created or updated (a key's inline budget included).
    pub(crate) budgets: &'a [&'a BudgetRecord],
    /// A model created.
    pub(crate) model: Option<&'a ModelRecord>,
}

impl Service {
    /// Lists the catalog with prices, by public name.
    pub async fn list_models(&self) -> Result<Vec<ModelView>, ControlError> {
        Ok(self.store.list_models().await?.iter().map(model_view).collect())
    }

    /// Reads a model by id or public name.
    pub async fn get_model(&self, id_or_name: &str) -> Result<ModelView, ControlError> {
        Ok(model_view(&self.model_record(id_or_name).await?))
    }

    async fn model_record(&self, id_or_name: &str) -> Result<ModelRecord, ControlError> {
        self.store
            .find_model(id_or_name)
            .await?
            .ok_or_else(|| ControlError::NotFound { kind: "model", id: id_or_name.chars().take(128).collect() })
    }

    /// Overrides a model's prices, output cap and/or deployments. The price is recorded
    /// as `explicit`; gateways charge and route by it from the next snapshot on.
    pub async fn update_model(
        &self,
        actor: &Actor,
        id_or_name: &str,
        patch: UpdateModel,
    ) -> Result<ModelView, ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        let mut rec = self.model_record(id_or_name).await?;
        if patch.pricing.is_none() && patch.max_output_tokens.is_none() && patch.deployments.is_none() {
            return Err(ControlError::invalid(
                "pricing",
                "nothing to change: give pricing, max_output_tokens and/or deployments",
            ));
        }
        if let Some(d) = &patch.deployments {
            rec.deployments = self.check_deployments(d).await?;
        }
        if let Some(p) = &patch.pricing {
            check_pricing("pricing.", p)?;
            set_price(&mut rec, p, PRICE_EXPLICIT.to_owned());
        }
        if let Some(cap) = patch.max_output_tokens {
            rec.max_output_tokens = cap.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        }
        rec.updated_at = Timestamp::now();
        let rev = self.store.update_model(&rec).await?;
        self.committed(rev);
        let view = model_view(&rec);
        self.audit(actor, "model.update", "model", rec.id.as_str(), serde_json::to_value(&view).unwrap_or_default())
            .await;
        Ok(view)
    }

    /// Refuses a write after which a money budget would meet an unpriced model.
    ///
    /// `change` is the write about to happen (a key minted or updated, budgets created
    /// or updated, an unpriced model created). The configuration it would leave — what
    /// is stored, with the changed records in place — is checked for a key that is
    /// under a money budget and may reach an unpriced model. Only such triples that the
    /// change takes part in are refused, so a configuration stored before this rule
    /// existed does not block unrelated writes.
    ///
    /// Returns, when it checked anything, a guard to hold until the write is stored:
    /// checks and their writes are serialized in this process, so two writes cannot both
    /// pass against the state before either. (Several control-plane processes on one
    /// database can still race; the data plane's 400 `model_not_priced` is the last line.)
    pub(crate) async fn refuse_unpriced_reach(
        &self,
        field: &str,
        change: Change<'_>,
    ) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, ControlError> {
        let money = |b: &BudgetRecord| b.limit_tokens.is_none();
        let new_model = change.model.filter(|m| !is_priced(m));
        if change.key.is_none() && !change.budgets.iter().any(|b| money(b)) && new_model.is_none() {
            return Ok(None);
        }
        let guard = self.unpriced_lock.lock().await;
        let data = self.store.snapshot().await?;
        let changed_budget = |b: &BudgetRecord| change.budgets.iter().any(|c| c.id == b.id);
        let unpriced: Vec<&str> = data
            .models
            .iter()
            .filter(|m| new_model.is_none_or(|n| n.name != m.name))
            .chain(new_model)
            .filter(|m| !is_priced(m))
            .map(|m| m.name.as_str())
            .collect();
        if unpriced.is_empty() {
            return Ok(Some(guard));
        }
        let budgets: Vec<&BudgetRecord> = data
            .budgets
            .iter()
            .filter(|b| !changed_budget(b))
            .chain(change.budgets.iter().copied())
            .filter(|b| money(b))
            .collect();
        let project_team: HashMap<String, (String, String)> =
            data.projects.iter().map(|p| (p.id.to_string(), (p.team_id.to_string(), p.org_id.to_string()))).collect();
        let keys = data
            .keys
            .iter()
            .filter(|k| change.key.is_none_or(|c| c.id != k.id))
            .chain(change.key)
            .filter(|k| k.status != "revoked");
        for k in keys {
            let key_changed = change.key.is_some_and(|c| c.id == k.id);
            let covering: Vec<&&BudgetRecord> = budgets.iter().filter(|b| key_in_scope(k, b, &project_team)).collect();
            if covering.is_empty() {
                continue;
            }
            let budget_changed = covering.iter().any(|b| changed_budget(b));
            let allow = ModelAllowlist::new(k.models_allowed.iter().map(String::as_str));
            let hit = unpriced.iter().find(|m| {
                allow.allows(m) && (key_changed || budget_changed || new_model.is_some_and(|n| n.name == **m))
            });
            if let Some(m) = hit {
                return Err(ControlError::invalid(
                    field,
                    format!(
                        "model {m:?} has no price, and key {} would reach it under a money budget: set a price \
                         for the model (PATCH /api/v1/models/{m}, zero included), or keep it out of the key's \
                         models_allowed",
                        k.id
                    ),
                ));
            }
        }
        Ok(Some(guard))
    }
}
