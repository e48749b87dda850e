//! `AdminService` budget RPCs, the same operations as `/api/v1/budgets`.

use super::{actor, field, opt_field, settable};
use crate::ControlError;
use crate::service::{BudgetView, CreateBudget, IncreaseBudget, ListBudgets, Service, Threshold, UpdateBudget};
use tollgate_core::Timestamp;
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

pub(super) fn budget_info(v: BudgetView) -> v1::BudgetInfo {
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
        clamp_floor_tokens: v.clamp_floor_tokens,
    }
}

pub(super) fn thresholds(name: &str, values: &[String]) -> Result<Vec<Threshold>, ControlError> {
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
        clamp_floor_tokens: r.clamp_floor_tokens,
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
        clamp_floor_tokens: settable("clamp_floor_tokens", r.clamp_floor_tokens, r.clear_clamp_floor_tokens)?,
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

pub(super) async fn create_budget(
    svc: &Service,
    req: Request<v1::CreateBudgetRequest>,
) -> Result<Response<v1::BudgetInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let input = create_budget_input(req.into_inner()).map_err(|e| e.grpc())?;
    let v = svc.create_budget(&actor, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(budget_info(v)))
}

pub(super) async fn list_budgets(
    svc: &Service,
    req: Request<v1::ListBudgetsRequest>,
) -> Result<Response<v1::ListBudgetsResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let q = ListBudgets {
        scope: opt_field("scope", r.scope).map_err(|e| e.grpc())?,
        scope_id: r.scope_id,
        limit: (r.limit > 0).then_some(u64::from(r.limit)),
        after: r.after,
    };
    let page = svc.list_budgets(&actor, q).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListBudgetsResponse {
        budgets: page.data.into_iter().map(budget_info).collect(),
        next_after: page.next_after.map(|b| b.to_string()),
    }))
}

pub(super) async fn get_budget(
    svc: &Service,
    req: Request<v1::GetBudgetRequest>,
) -> Result<Response<v1::BudgetInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.get_budget(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(budget_info(v)))
}

pub(super) async fn update_budget(
    svc: &Service,
    req: Request<v1::UpdateBudgetRequest>,
) -> Result<Response<v1::BudgetInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let id = r.id.clone();
    let patch = update_budget_input(r).map_err(|e| e.grpc())?;
    let v = svc.update_budget(&actor, &id, patch).await.map_err(|e| e.grpc())?;
    Ok(Response::new(budget_info(v)))
}

pub(super) async fn delete_budget(
    svc: &Service,
    req: Request<v1::DeleteBudgetRequest>,
) -> Result<Response<v1::DeleteBudgetResponse>, Status> {
    let actor = actor(svc, &req).await?;
    svc.delete_budget(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::DeleteBudgetResponse {}))
}

pub(super) async fn reset_budget(
    svc: &Service,
    req: Request<v1::ResetBudgetRequest>,
) -> Result<Response<v1::BudgetInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.reset_budget(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(budget_info(v)))
}

pub(super) async fn increase_budget(
    svc: &Service,
    req: Request<v1::IncreaseBudgetRequest>,
) -> Result<Response<v1::BudgetInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let id = r.id.clone();
    let input = increase_budget_input(r).map_err(|e| e.grpc())?;
    let v = svc.increase_budget(&actor, &id, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(budget_info(v)))
}
