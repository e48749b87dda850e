//! The model catalog: creating models with their deployments, their prices (defaults
//! from the shipped price catalog, overrides through the API), the listing, and the rule
//! that no money budget may meet an unpriced model.
//!
//! A model created without `pricing` takes the list price of its first deployment's
//! upstream model found in [`PriceCatalog`] (then of its public name) and records
//! `price_source = "catalog:<version>"`; explicit prices record `explicit`. A model
//! neither priced nor in the catalog stays unpriced: serving it to a key under a money
//! budget is refused here, at configuration time, naming the model — and by the data
//! plane with 400 `model_not_priced` as a last line.

use super::auth::{Scope, Target};
use super::{Actor, Service, check_name, new_id};
use crate::ControlError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tollgate_core::{ModelId, Money, ScopeKind, Timestamp};
use tollgate_keys::ModelAllowlist;
use tollgate_metering::PriceCatalog;
use tollgate_store::{BudgetRecord, DeploymentPricing, DeploymentRecord, KeyRecord, ModelRecord};
use utoipa::ToSchema;

/// `price_source` of a price an operator gave.
pub const PRICE_EXPLICIT: &str = "explicit";

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

/// The largest per-part token maximum a model may have.
pub const MAX_TOKENS_PER_PART: u64 = 1_000_000;

/// The most tokens one image, audio or file part of a request may count for; an absent
/// kind has no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokensPerPart {
    /// One image part (1 to 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub image: Option<u64>,
    /// One audio part (1 to 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub audio: Option<u64>,
    /// One file part (1 to 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub file: Option<u64>,
}

impl TokensPerPart {
    /// Refuses a maximum outside 1 to [`MAX_TOKENS_PER_PART`], naming the field.
    pub(crate) fn check(&self) -> Result<(), ControlError> {
        for (kind, v) in [("image", self.image), ("audio", self.audio), ("file", self.file)] {
            if v.is_some_and(|v| !(1..=MAX_TOKENS_PER_PART).contains(&v)) {
                return Err(ControlError::invalid(
                    format!("max_tokens_per_part.{kind}"),
                    format!("must be between 1 and {MAX_TOKENS_PER_PART}"),
                ));
            }
        }
        Ok(())
    }

    /// Writes the maxima into the record's columns (`None` clears them all).
    fn store_into(this: Option<Self>, rec: &mut ModelRecord) {
        let t = this.unwrap_or_default();
        let col = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
        (rec.max_image_tokens, rec.max_audio_tokens, rec.max_file_tokens) = (col(t.image), col(t.audio), col(t.file));
    }

    /// The maxima of a record; `None` when it has none.
    fn of_record(rec: &ModelRecord) -> Option<Self> {
        let col = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        let t = TokensPerPart {
            image: col(rec.max_image_tokens),
            audio: col(rec.max_audio_tokens),
            file: col(rec.max_file_tokens),
        };
        (t != TokensPerPart::default()).then_some(t)
    }
}

fn default_weight() -> u32 {
    tollgate_routing::DeploymentOptions::default().weight
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
    /// The most tokens one image, audio or file part of a request may count for.
    #[serde(default)]
    pub max_tokens_per_part: Option<TokensPerPart>,
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
    /// Per-part token maxima; absent when none is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_part: Option<TokensPerPart>,
    /// Created.
    pub created_at: Timestamp,
}

/// `PATCH /api/v1/models/{name}`: absent fields are left alone.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
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
    pub deployments: Option<Vec<DeploymentInput>>,
    /// Per-part token maxima (replaces all three: an absent kind is cleared); `null`
    /// clears them all.
    #[serde(default, deserialize_with = "super::double_option")]
    pub max_tokens_per_part: Option<Option<TokensPerPart>>,
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
    /// Adds a model to the catalog.
    pub async fn create_model(&self, actor: &Actor, input: CreateModel) -> Result<ModelView, ControlError> {
        self.authorize(actor, Scope::ModelsWrite, Target::Global).await?;
        check_name("name", &input.name)?;
        if self.store.find_alias(&input.name).await?.is_some() {
            return Err(ControlError::Conflict(format!("{:?} is an alias; a model cannot take its name", input.name)));
        }
        let deployments = self.check_deployments(&input.deployments).await?;
        if let Some(p) = &input.pricing {
            check_pricing("pricing.", p)?;
        }
        if let Some(t) = &input.max_tokens_per_part {
            t.check()?;
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
            max_image_tokens: None,
            max_audio_tokens: None,
            max_file_tokens: None,
            created_at: now,
            updated_at: now,
        };
        TokensPerPart::store_into(input.max_tokens_per_part, &mut rec);
        let price = match input.pricing {
            Some(p) => Some((p, PRICE_EXPLICIT.to_owned())),
            None => catalog_price(input.deployments.iter().map(|d| d.model.as_str()), &rec.name),
        };
        let _checked = match price {
            Some((p, source)) => {
                set_price(&mut rec, &p, source);
                None
            }
            None => self.refuse_unpriced_reach("pricing", Change { model: Some(&rec), ..Change::default() }).await?,
        };
        let w = self.begin_write().await?;
        let rev = w.store().create_model(&rec).await?;
        let view = model_view(&rec);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "model.create", ("model", rec.id.as_str()), meta).await?;
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
                check_pricing(&format!("deployments[{i}].pricing."), p)?;
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
        if patch.pricing.is_none()
            && patch.max_output_tokens.is_none()
            && patch.deployments.is_none()
            && patch.max_tokens_per_part.is_none()
        {
            return Err(ControlError::invalid(
                "pricing",
                "nothing to change: give pricing, max_output_tokens, max_tokens_per_part and/or deployments",
            ));
        }
        if let Some(t) = patch.max_tokens_per_part {
            if let Some(t) = &t {
                t.check()?;
            }
            TokensPerPart::store_into(t, &mut rec);
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
        let w = self.begin_write().await?;
        let rev = w.store().update_model(&rec).await?;
        let view = model_view(&rec);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "model.update", ("model", rec.id.as_str()), meta).await?;
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
        max_tokens_per_part: TokensPerPart::of_record(r),
        created_at: r.created_at,
    }
}
