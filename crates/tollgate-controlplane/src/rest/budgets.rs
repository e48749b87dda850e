//! REST routes of budgets: `/api/v1/budgets`, `/api/v1/budgets/{id}`, reset and
//! temporary increase.

use super::openapi::{BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, Unauthorized};
use super::{Auth, Body, body, created, ok};
use crate::ControlError;
use crate::service::{BudgetPage, BudgetView, CreateBudget, IncreaseBudget, ListBudgets, Service, UpdateBudget};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::ScopeKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This resource's routes, merged into the management router; operations that share a
/// path are in one `routes!` so the document keeps them together.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_budget, list_budgets))
        .routes(routes!(get_budget, update_budget, delete_budget))
        .routes(routes!(reset_budget))
        .routes(routes!(increase_budget))
}

#[utoipa::path(
    post,
    path = "/api/v1/budgets",
    tag = "budgets",
    request_body = CreateBudget,
    responses((status = 201, description = "The budget.", body = BudgetView), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn create_budget(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_budget(&actor, CreateBudget::from_json(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/budgets",
    tag = "budgets",
    params(("scope" = Option<ScopeKind>, Query, description = "Only budgets of this scope kind."), ("scope_id" = Option<String>, Query, description = "Only budgets of this scope target (a team, project or organization may be given by name)."), ("after" = Option<String>, Query, description = "Cursor: `next_after` of the previous page."), ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "A page of budgets.", body = BudgetPage), BadRequest, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:read")))
)]
async fn list_budgets(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut filter = ListBudgets::default();
    for (k, v) in q {
        match k.as_str() {
            "scope" => filter.scope = Some(v.parse().map_err(|e| ControlError::invalid("scope", format!("{e}")))?),
            "scope_id" => filter.scope_id = Some(v),
            "after" => filter.after = Some(v),
            "limit" => filter.limit = Some(crate::service::parse_limit(&v)?),
            other => {
                return Err(ControlError::invalid(
                    other.chars().take(64).collect::<String>(),
                    "unknown query parameter",
                ));
            }
        }
    }
    Ok(ok(svc.list_budgets(&actor, filter).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 200, description = "The budget.", body = BudgetView), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:read")))
)]
async fn get_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_budget(&actor, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    request_body = UpdateBudget,
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 200, description = "The budget as changed.", body = BudgetView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn update_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_budget(&actor, &id, UpdateBudget::from_json(&body(b)?)?).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/budgets/{id}",
    tag = "budgets",
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 204, description = "Deleted."), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn delete_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_budget(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/budgets/{id}/reset",
    tag = "budgets",
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 200, description = "The budget with its `epoch` bumped: its window starts empty on every gateway. The body is empty or `{}`.", body = BudgetView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn reset_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    // The body is empty or `{}`: a reset takes no options.
    crate::service::no_fields(&body(b)?)?;
    Ok(ok(svc.reset_budget(&actor, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/budgets/{id}/increase",
    tag = "budgets",
    request_body = IncreaseBudget,
    params(("id" = String, Path, description = "The budget's id.")),
    responses((status = 200, description = "The budget with its temporary increase.", body = BudgetView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("budgets:write")))
)]
async fn increase_budget(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.increase_budget(&actor, &id, IncreaseBudget::from_json(&body(b)?)?).await?))
}
