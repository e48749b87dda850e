//! The gRPC services: config distribution (`Watch`) and admin operations, over the same
//! service layer as REST.

use crate::ControlError;
use crate::service::{
    Actor, AliasView, BudgetInput, BudgetView, CreateAlias, CreateBudget, CreateKey, CreateRoutingPolicy,
    IncreaseBudget, KeyView, ListBudgets, ListKeys, ModelView, PricingInput, RotateKey, RoutingPolicyView, Service,
    Threshold, UpdateBudget, UpdateKey, UpdateModel, UpdateRoutingPolicy, UsageFormat, UsageQuery,
};
use std::sync::Arc;
use tollgate_core::{Money, Timestamp};
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

mod catalog;
mod security;
mod tenancy;
mod watch;

pub(crate) use security::SecurityApi;
pub(crate) use watch::ConfigApi;

/// The caller, authenticated from the `authorization: Bearer <admin token>` metadata.
/// What it may do is checked by the service (`Service::authorize`).
async fn actor<T>(svc: &Service, req: &Request<T>) -> Result<Actor, Status> {
    let bearer = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim()));
    svc.authenticate(bearer).await.map_err(|e| e.grpc())
}

/// A gateway's call: it receives every tenant's configuration (credentials and the key
/// pepper included) or writes every tenant's ledger, so it needs an unbound `admin` token.
async fn gateway<T>(svc: &Service, req: &Request<T>) -> Result<(), Status> {
    let actor = actor(svc, req).await?;
    svc.authorize_gateway(&actor).await.map_err(|e| e.grpc())
}

/// The most ledger entries one `PushLedger` call may carry; a gateway's batches are far
/// smaller (256 by default).
const MAX_PUSH_ENTRIES: usize = 10_000;

/// `LedgerService`: gateways of split mode push their ledger entries, and read a
/// budget's spend to seed counters they do not share.
pub(crate) struct LedgerApi {
    svc: Arc<Service>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl LedgerApi {
    /// Stores pushed entries through `svc`'s store, counting them in `metrics`.
    pub(crate) fn new(svc: Arc<Service>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        LedgerApi { svc, metrics }
    }
}

#[tonic::async_trait]
impl v1::ledger_service_server::LedgerService for LedgerApi {
    async fn push_ledger(
        &self,
        req: Request<tonic::Streaming<v1::LedgerBatch>>,
    ) -> Result<Response<v1::PushLedgerAck>, Status> {
        gateway(&self.svc, &req).await?;
        let mut stream = req.into_inner();
        let mut entries = Vec::new();
        while let Some(batch) = stream.message().await? {
            if entries.len() + batch.entries.len() > MAX_PUSH_ENTRIES {
                return Err(Status::invalid_argument(format!(
                    "at most {MAX_PUSH_ENTRIES} ledger entries per PushLedger call"
                )));
            }
            for w in &batch.entries {
                entries.push(
                    tollgate_proto::convert::ledger_entry(w).map_err(|e| Status::invalid_argument(e.to_string()))?,
                );
            }
        }
        let received = entries.len() as u64;
        // Idempotent by request id: a batch re-sent after a lost answer stores nothing new.
        tollgate_metering::LedgerSink::write_batch(self.svc.store(), &entries).await.map_err(|e| {
            let detail = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
            if e.is_retryable() {
                tracing::warn!(error = %e, %detail, "could not store pushed ledger entries; the gateway keeps them");
                Status::unavailable("ledger store unavailable")
            } else {
                Status::invalid_argument(format!("{e}: {detail}"))
            }
        })?;
        self.metrics.ledger_received(received);
        Ok(Response::new(v1::PushLedgerAck { received }))
    }

    async fn get_budget_spend(
        &self,
        req: Request<v1::GetBudgetSpendRequest>,
    ) -> Result<Response<v1::GetBudgetSpendResponse>, Status> {
        gateway(&self.svc, &req).await?;
        let r = req.into_inner();
        let at = if r.at_ms == 0 { Timestamp::now() } else { Timestamp::from_unix_millis(r.at_ms) };
        let (money, tokens) =
            self.svc.budget_spend(&tollgate_core::BudgetId::new(r.budget_id), at).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::GetBudgetSpendResponse { cost_nanos: money.nanos(), tokens }))
    }
}

/// `AdminService`: every management operation for `tollctl` and Rust callers.
pub(crate) struct AdminApi {
    svc: Arc<Service>,
}

impl AdminApi {
    /// Serves admin operations over `svc`.
    pub(crate) fn new(svc: Arc<Service>) -> Self {
        AdminApi { svc }
    }
}

fn key_info(v: KeyView) -> v1::KeyInfo {
    v1::KeyInfo {
        id: v.id.to_string(),
        name: v.name,
        project_id: v.project_id.to_string(),
        principal: v.principal,
        status: v.status,
        hint: v.key_hint,
        models_allowed: v.models_allowed,
        rpm: v.rpm.and_then(|x| u32::try_from(x).ok()),
        tpm: v.tpm.and_then(|x| u64::try_from(x).ok()),
        max_concurrency: v.max_concurrency.and_then(|x| u32::try_from(x).ok()),
        metadata: v.metadata.into_iter().collect(),
        expires_at: v.expires_at.map(|t| t.to_rfc3339()),
        created_at: v.created_at.to_rfc3339(),
        rotated_at: v.rotated_at.map(|t| t.to_rfc3339()),
        revoked_at: v.revoked_at.map(|t| t.to_rfc3339()),
        tags: v.tags,
    }
}

fn create_input(r: v1::CreateKeyRequest) -> Result<CreateKey, ControlError> {
    let expires_at = match r.expires_at.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(Timestamp::parse_rfc3339(s).map_err(|e| ControlError::invalid("expires_at", e.to_string()))?),
        None => None,
    };
    let budget = match r.budget {
        Some(b) => Some(BudgetInput {
            // Empty means a token budget (or none at all, which the service refuses).
            limit_usd: match b.limit_usd.as_str() {
                "" if b.limit_tokens.is_some() => None,
                text => Some(
                    Money::parse_non_negative(text)
                        .map_err(|e| ControlError::invalid("budget.limit_usd", e.to_string()))?,
                ),
            },
            limit_tokens: b.limit_tokens,
            alert_thresholds: thresholds("budget.alert_thresholds", &b.alert_thresholds)?,
            window: b.window.parse().map_err(|e| ControlError::invalid("budget.window", format!("{e}")))?,
            on_breach: match b.on_breach.as_str() {
                "" => None,
                s => Some(s.parse().map_err(|e| ControlError::invalid("budget.on_breach", format!("{e}")))?),
            },
        }),
        None => None,
    };
    Ok(CreateKey {
        project: r.project,
        name: r.name,
        principal: r.principal,
        models_allowed: r.models_allowed,
        rpm: r.rpm,
        tpm: r.tpm,
        max_concurrency: r.max_concurrency,
        metadata: r.metadata.into_iter().collect(),
        tags: r.tags,
        expires_at,
        budget,
    })
}

fn time_field(name: &str, text: &str) -> Result<Timestamp, ControlError> {
    Timestamp::parse_rfc3339(text).map_err(|e| ControlError::invalid(name, e.to_string()))
}

fn update_key_input(r: v1::UpdateKeyRequest) -> Result<UpdateKey, ControlError> {
    use catalog::settable;
    let expires_at = r.expires_at.as_deref().map(|t| time_field("expires_at", t)).transpose()?;
    Ok(UpdateKey {
        name: settable("name", r.name, r.clear_name)?,
        models_allowed: r.models_allowed.map(|l| l.values),
        rpm: settable("rpm", r.rpm, r.clear_rpm)?,
        tpm: settable("tpm", r.tpm, r.clear_tpm)?,
        max_concurrency: settable("max_concurrency", r.max_concurrency, r.clear_max_concurrency)?,
        metadata: r.metadata.map(|m| m.entries.into_iter().collect()),
        tags: r.tags.map(|l| l.values),
        expires_at: settable("expires_at", expires_at, r.clear_expires_at)?,
    })
}

fn budget_info(v: BudgetView) -> v1::BudgetInfo {
    v1::BudgetInfo {
        id: v.id.to_string(),
        scope: v.scope.as_str().to_owned(),
        scope_id: v.scope_id,
        limit_usd: v.limit_usd.map(|m| m.to_string()).unwrap_or_default(),
        limit_tokens: v.limit_tokens.and_then(|t| u64::try_from(t).ok()),
        window: v.window.as_str().to_owned(),
        on_breach: v.on_breach.as_str().to_owned(),
        alert_thresholds_permille: v.alert_thresholds.iter().map(|t| u32::from(t.permille())).collect(),
        epoch: u32::try_from(v.epoch).unwrap_or(0),
        temporary_increase: v.temporary_increase.map(|t| t.amount.to_string()).unwrap_or_default(),
        temporary_increase_until: v.temporary_increase.map(|t| t.until.to_rfc3339()),
        created_at: v.created_at.to_rfc3339(),
        updated_at: v.updated_at.to_rfc3339(),
    }
}

/// Parses a wire enum or value, naming the field on error.
fn field<T>(name: &str, text: &str) -> Result<T, ControlError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| ControlError::invalid(name, format!("{e}")))
}

fn opt_field<T>(name: &str, text: Option<String>) -> Result<Option<T>, ControlError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.map(|t| field(name, &t)).transpose()
}

fn thresholds(name: &str, values: &[String]) -> Result<Vec<Threshold>, ControlError> {
    values.iter().map(|v| Threshold::parse(v).map_err(|e| ControlError::invalid(name, e))).collect()
}

fn create_budget_input(r: v1::CreateBudgetRequest) -> Result<CreateBudget, ControlError> {
    Ok(CreateBudget {
        scope: field("scope", &r.scope)?,
        scope_id: r.scope_id,
        limit_usd: opt_field("limit_usd", r.limit_usd)?,
        limit_tokens: r.limit_tokens,
        window: field("window", &r.window)?,
        on_breach: opt_field("on_breach", r.on_breach.filter(|s| !s.is_empty()))?,
        alert_thresholds: thresholds("alert_thresholds", &r.alert_thresholds)?,
    })
}

fn update_budget_input(r: v1::UpdateBudgetRequest) -> Result<UpdateBudget, ControlError> {
    Ok(UpdateBudget {
        limit_usd: opt_field("limit_usd", r.limit_usd)?,
        limit_tokens: r.limit_tokens,
        window: opt_field("window", r.window)?,
        on_breach: opt_field("on_breach", r.on_breach)?,
        alert_thresholds: r.alert_thresholds.map(|t| thresholds("alert_thresholds", &t.values)).transpose()?,
        clear_temporary_increase: r.clear_temporary_increase,
    })
}

fn increase_budget_input(r: v1::IncreaseBudgetRequest) -> Result<IncreaseBudget, ControlError> {
    Ok(IncreaseBudget {
        amount_usd: opt_field("amount_usd", r.amount_usd)?,
        tokens: r.tokens,
        expires_at: r
            .expires_at
            .map(|s| Timestamp::parse_rfc3339(&s).map_err(|e| ControlError::invalid("expires_at", e.to_string())))
            .transpose()?,
        duration_s: r.duration_s,
    })
}

fn model_info(m: ModelView) -> v1::ModelInfo {
    let p = m.pricing;
    v1::ModelInfo {
        id: m.id.to_string(),
        name: m.name,
        deployments: m
            .deployments
            .into_iter()
            .map(|d| v1::Deployment {
                provider: d.provider,
                model: d.model,
                priority: d.priority,
                weight: Some(d.weight),
                pricing: d.pricing.map(|p| v1::Pricing {
                    input_per_mtok_nanos: p.input_per_mtok.nanos(),
                    output_per_mtok_nanos: p.output_per_mtok.nanos(),
                    cached_input_per_mtok_nanos: p.cached_input_per_mtok.map(tollgate_core::Money::nanos),
                    cache_write_per_mtok_nanos: p.cache_write_per_mtok.map(tollgate_core::Money::nanos),
                }),
            })
            .collect(),
        input_per_mtok: p.map(|p| p.input_per_mtok.to_string()),
        output_per_mtok: p.map(|p| p.output_per_mtok.to_string()),
        cached_input_per_mtok: p.and_then(|p| p.cached_input_per_mtok).map(|m| m.to_string()),
        cache_write_per_mtok: p.and_then(|p| p.cache_write_per_mtok).map(|m| m.to_string()),
        price_source: m.price_source,
        max_output_tokens: m.max_output_tokens,
    }
}

fn price(name: &str, text: &str) -> Result<Money, ControlError> {
    Money::parse_non_negative(text).map_err(|e| ControlError::invalid(name, e.to_string()))
}

/// Prices from USD decimal strings, naming the field (`pricing.input_per_mtok`) on error.
fn pricing_input(
    input: &str,
    output: &str,
    cached_input: Option<&str>,
    cache_write: Option<&str>,
) -> Result<PricingInput, ControlError> {
    Ok(PricingInput {
        input_per_mtok: price("pricing.input_per_mtok", input)?,
        output_per_mtok: price("pricing.output_per_mtok", output)?,
        cached_input_per_mtok: cached_input.map(|t| price("pricing.cached_input_per_mtok", t)).transpose()?,
        cache_write_per_mtok: cache_write.map(|t| price("pricing.cache_write_per_mtok", t)).transpose()?,
    })
}

fn set_price_input(r: &v1::SetModelPriceRequest) -> Result<UpdateModel, ControlError> {
    Ok(UpdateModel {
        pricing: Some(pricing_input(
            &r.input_per_mtok,
            &r.output_per_mtok,
            r.cached_input_per_mtok.as_deref(),
            r.cache_write_per_mtok.as_deref(),
        )?),
        ..UpdateModel::default()
    })
}

fn alias_info(a: AliasView) -> v1::AliasInfo {
    v1::AliasInfo { name: a.name, model: a.model, created_at: a.created_at.to_rfc3339() }
}

fn policy_info(p: RoutingPolicyView) -> v1::RoutingPolicyInfo {
    v1::RoutingPolicyInfo {
        id: p.id,
        scope: p.scope.as_str().to_owned(),
        scope_id: p.scope_id,
        policy_json: p.policy.to_string(),
        created_at: p.created_at.to_rfc3339(),
        updated_at: p.updated_at.to_rfc3339(),
    }
}

/// A JSON field of a request (`name` for the error); the service validates what is in it.
fn field_json(name: &str, text: &str) -> Result<serde_json::Value, ControlError> {
    serde_json::from_str(text).map_err(|e| ControlError::invalid(name, format!("not JSON: {e}")))
}

/// The policy JSON of a request.
fn policy_json(text: &str) -> Result<serde_json::Value, ControlError> {
    field_json("policy", text)
}

fn create_policy_input(r: v1::CreateRoutingPolicyRequest) -> Result<CreateRoutingPolicy, ControlError> {
    Ok(CreateRoutingPolicy {
        scope: field("scope", &r.scope)?,
        scope_id: r.scope_id.filter(|s| !s.is_empty()),
        policy: policy_json(&r.policy_json)?,
    })
}

#[tonic::async_trait]
impl v1::admin_service_server::AdminService for AdminApi {
    async fn list_models(
        &self,
        req: Request<v1::ListModelsRequest>,
    ) -> Result<Response<v1::ListModelsResponse>, Status> {
        actor(&self.svc, &req).await?;
        let models = self.svc.list_models().await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::ListModelsResponse { models: models.into_iter().map(model_info).collect() }))
    }

    async fn set_model_price(&self, req: Request<v1::SetModelPriceRequest>) -> Result<Response<v1::ModelInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let patch = set_price_input(&r).map_err(|e| e.grpc())?;
        let v = self.svc.update_model(&actor, &r.model, patch).await.map_err(|e| e.grpc())?;
        Ok(Response::new(model_info(v)))
    }

    async fn get_usage(&self, req: Request<v1::GetUsageRequest>) -> Result<Response<v1::GetUsageResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let mut params = req.into_inner().params;
        if params.get("format").is_some_and(|f| f != "json") {
            return Err(ControlError::invalid("format", "GetUsage answers JSON; use REST for CSV").grpc());
        }
        params.remove("format");
        let q = UsageQuery::parse(params.into_iter().collect(), Timestamp::now()).map_err(|e| e.grpc())?;
        debug_assert_eq!(q.format, UsageFormat::Json);
        let report = self.svc.usage(&actor, &q).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::GetUsageResponse { report_json: report.to_json().to_string() }))
    }

    async fn create_alias(&self, req: Request<v1::CreateAliasRequest>) -> Result<Response<v1::AliasInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let v =
            self.svc.create_alias(&actor, CreateAlias { name: r.name, model: r.model }).await.map_err(|e| e.grpc())?;
        Ok(Response::new(alias_info(v)))
    }

    async fn list_aliases(
        &self,
        req: Request<v1::ListAliasesRequest>,
    ) -> Result<Response<v1::ListAliasesResponse>, Status> {
        actor(&self.svc, &req).await?;
        let aliases = self.svc.list_aliases().await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::ListAliasesResponse { aliases: aliases.into_iter().map(alias_info).collect() }))
    }

    async fn delete_alias(
        &self,
        req: Request<v1::DeleteAliasRequest>,
    ) -> Result<Response<v1::DeleteAliasResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        self.svc.delete_alias(&actor, &req.get_ref().name).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::DeleteAliasResponse {}))
    }

    async fn create_routing_policy(
        &self,
        req: Request<v1::CreateRoutingPolicyRequest>,
    ) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let input = create_policy_input(req.into_inner()).map_err(|e| e.grpc())?;
        let v = self.svc.create_routing_policy(&actor, input).await.map_err(|e| e.grpc())?;
        Ok(Response::new(policy_info(v)))
    }

    async fn list_routing_policies(
        &self,
        req: Request<v1::ListRoutingPoliciesRequest>,
    ) -> Result<Response<v1::ListRoutingPoliciesResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let policies = self.svc.list_routing_policies(&actor).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::ListRoutingPoliciesResponse { policies: policies.into_iter().map(policy_info).collect() }))
    }

    async fn get_routing_policy(
        &self,
        req: Request<v1::GetRoutingPolicyRequest>,
    ) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let v = self.svc.get_routing_policy(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
        Ok(Response::new(policy_info(v)))
    }

    async fn update_routing_policy(
        &self,
        req: Request<v1::UpdateRoutingPolicyRequest>,
    ) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let patch = UpdateRoutingPolicy { policy: policy_json(&r.policy_json).map_err(|e| e.grpc())? };
        let v = self.svc.update_routing_policy(&actor, &r.id, patch).await.map_err(|e| e.grpc())?;
        Ok(Response::new(policy_info(v)))
    }

    async fn delete_routing_policy(
        &self,
        req: Request<v1::DeleteRoutingPolicyRequest>,
    ) -> Result<Response<v1::DeleteRoutingPolicyResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        self.svc.delete_routing_policy(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::DeleteRoutingPolicyResponse {}))
    }

    async fn create_key(&self, req: Request<v1::CreateKeyRequest>) -> Result<Response<v1::CreateKeyResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let input = create_input(req.into_inner()).map_err(|e| e.grpc())?;
        let out = self.svc.create_key(&actor, input).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::CreateKeyResponse { key: Some(key_info(out.view)), secret: out.key }))
    }

    async fn list_keys(&self, req: Request<v1::ListKeysRequest>) -> Result<Response<v1::ListKeysResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let q = ListKeys {
            project: r.project,
            principal: r.principal,
            status: r.status,
            // Sorted, as REST sorts them, so both ask the store the same question.
            metadata: r.metadata.into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect(),
            tag: r.tag,
            limit: (r.limit > 0).then_some(u64::from(r.limit)),
            after: r.after,
        };
        let page = self.svc.list_keys(&actor, q).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::ListKeysResponse {
            keys: page.data.into_iter().map(key_info).collect(),
            next_after: page.next_after.map(|k| k.to_string()),
        }))
    }

    async fn get_key(&self, req: Request<v1::GetKeyRequest>) -> Result<Response<v1::KeyInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let v = self.svc.get_key(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
        Ok(Response::new(key_info(v)))
    }

    async fn rotate_key(&self, req: Request<v1::RotateKeyRequest>) -> Result<Response<v1::RotateKeyResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let out = self
            .svc
            .rotate_key(&actor, &r.id, RotateKey { grace_period_s: Some(r.grace_period_s) })
            .await
            .map_err(|e| e.grpc())?;
        Ok(Response::new(v1::RotateKeyResponse { key: Some(key_info(out.view)), secret: out.key }))
    }

    async fn update_key(&self, req: Request<v1::UpdateKeyRequest>) -> Result<Response<v1::KeyInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let id = r.id.clone();
        let patch = update_key_input(r).map_err(|e| e.grpc())?;
        let v = self.svc.update_key(&actor, &id, patch).await.map_err(|e| e.grpc())?;
        Ok(Response::new(key_info(v)))
    }

    async fn revoke_key(&self, req: Request<v1::RevokeKeyRequest>) -> Result<Response<v1::KeyInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let v = self.svc.revoke_key(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
        Ok(Response::new(key_info(v)))
    }

    async fn create_budget(&self, req: Request<v1::CreateBudgetRequest>) -> Result<Response<v1::BudgetInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let input = create_budget_input(req.into_inner()).map_err(|e| e.grpc())?;
        let v = self.svc.create_budget(&actor, input).await.map_err(|e| e.grpc())?;
        Ok(Response::new(budget_info(v)))
    }

    async fn list_budgets(
        &self,
        req: Request<v1::ListBudgetsRequest>,
    ) -> Result<Response<v1::ListBudgetsResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let q = ListBudgets {
            scope: opt_field("scope", r.scope).map_err(|e| e.grpc())?,
            scope_id: r.scope_id,
            limit: (r.limit > 0).then_some(u64::from(r.limit)),
            after: r.after,
        };
        let page = self.svc.list_budgets(&actor, q).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::ListBudgetsResponse {
            budgets: page.data.into_iter().map(budget_info).collect(),
            next_after: page.next_after.map(|b| b.to_string()),
        }))
    }

    async fn get_budget(&self, req: Request<v1::GetBudgetRequest>) -> Result<Response<v1::BudgetInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let v = self.svc.get_budget(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
        Ok(Response::new(budget_info(v)))
    }

    async fn update_budget(&self, req: Request<v1::UpdateBudgetRequest>) -> Result<Response<v1::BudgetInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let id = r.id.clone();
        let patch = update_budget_input(r).map_err(|e| e.grpc())?;
        let v = self.svc.update_budget(&actor, &id, patch).await.map_err(|e| e.grpc())?;
        Ok(Response::new(budget_info(v)))
    }

    async fn delete_budget(
        &self,
        req: Request<v1::DeleteBudgetRequest>,
    ) -> Result<Response<v1::DeleteBudgetResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        self.svc.delete_budget(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::DeleteBudgetResponse {}))
    }

    async fn reset_budget(&self, req: Request<v1::ResetBudgetRequest>) -> Result<Response<v1::BudgetInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let v = self.svc.reset_budget(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
        Ok(Response::new(budget_info(v)))
    }

    async fn increase_budget(
        &self,
        req: Request<v1::IncreaseBudgetRequest>,
    ) -> Result<Response<v1::BudgetInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let r = req.into_inner();
        let id = r.id.clone();
        let input = increase_budget_input(r).map_err(|e| e.grpc())?;
        let v = self.svc.increase_budget(&actor, &id, input).await.map_err(|e| e.grpc())?;
        Ok(Response::new(budget_info(v)))
    }

    async fn create_provider(
        &self,
        req: Request<v1::CreateProviderRequest>,
    ) -> Result<Response<v1::ProviderInfo>, Status> {
        catalog::create_provider(&self.svc, req).await
    }

    async fn list_providers(
        &self,
        req: Request<v1::ListProvidersRequest>,
    ) -> Result<Response<v1::ListProvidersResponse>, Status> {
        catalog::list_providers(&self.svc, req).await
    }

    async fn get_provider(&self, req: Request<v1::GetProviderRequest>) -> Result<Response<v1::ProviderInfo>, Status> {
        catalog::get_provider(&self.svc, req).await
    }

    async fn update_provider(
        &self,
        req: Request<v1::UpdateProviderRequest>,
    ) -> Result<Response<v1::ProviderInfo>, Status> {
        catalog::update_provider(&self.svc, req).await
    }

    async fn create_model(&self, req: Request<v1::CreateModelRequest>) -> Result<Response<v1::ModelInfo>, Status> {
        catalog::create_model(&self.svc, req).await
    }

    async fn get_model(&self, req: Request<v1::GetModelRequest>) -> Result<Response<v1::ModelInfo>, Status> {
        catalog::get_model(&self.svc, req).await
    }

    async fn update_model(&self, req: Request<v1::UpdateModelRequest>) -> Result<Response<v1::ModelInfo>, Status> {
        catalog::update_model(&self.svc, req).await
    }

    async fn create_organization(
        &self,
        req: Request<v1::CreateOrganizationRequest>,
    ) -> Result<Response<v1::OrganizationInfo>, Status> {
        tenancy::create_organization(&self.svc, req).await
    }

    async fn list_organizations(
        &self,
        req: Request<v1::ListOrganizationsRequest>,
    ) -> Result<Response<v1::ListOrganizationsResponse>, Status> {
        tenancy::list_organizations(&self.svc, req).await
    }

    async fn get_organization(
        &self,
        req: Request<v1::GetOrganizationRequest>,
    ) -> Result<Response<v1::OrganizationInfo>, Status> {
        tenancy::get_organization(&self.svc, req).await
    }

    async fn create_team(&self, req: Request<v1::CreateTeamRequest>) -> Result<Response<v1::TeamInfo>, Status> {
        tenancy::create_team(&self.svc, req).await
    }

    async fn list_teams(&self, req: Request<v1::ListTeamsRequest>) -> Result<Response<v1::ListTeamsResponse>, Status> {
        tenancy::list_teams(&self.svc, req).await
    }

    async fn get_team(&self, req: Request<v1::GetTeamRequest>) -> Result<Response<v1::TeamInfo>, Status> {
        tenancy::get_team(&self.svc, req).await
    }

    async fn create_project(
        &self,
        req: Request<v1::CreateProjectRequest>,
    ) -> Result<Response<v1::ProjectInfo>, Status> {
        tenancy::create_project(&self.svc, req).await
    }

    async fn list_projects(
        &self,
        req: Request<v1::ListProjectsRequest>,
    ) -> Result<Response<v1::ListProjectsResponse>, Status> {
        tenancy::list_projects(&self.svc, req).await
    }

    async fn get_project(&self, req: Request<v1::GetProjectRequest>) -> Result<Response<v1::ProjectInfo>, Status> {
        tenancy::get_project(&self.svc, req).await
    }

    async fn list_principals(
        &self,
        req: Request<v1::ListPrincipalsRequest>,
    ) -> Result<Response<v1::ListPrincipalsResponse>, Status> {
        tenancy::list_principals(&self.svc, req).await
    }

    async fn get_principal(
        &self,
        req: Request<v1::GetPrincipalRequest>,
    ) -> Result<Response<v1::PrincipalInfo>, Status> {
        tenancy::get_principal(&self.svc, req).await
    }

    async fn revoke_principal_keys(
        &self,
        req: Request<v1::RevokePrincipalKeysRequest>,
    ) -> Result<Response<v1::RevokePrincipalKeysResponse>, Status> {
        tenancy::revoke_principal_keys(&self.svc, req).await
    }
}
