//! REST routes of routing configuration: model aliases (`/api/v1/aliases`) and routing
//! policies (`/api/v1/routing-policies`).

use super::openapi::{BadRequest, Conflict, Forbidden, InternalError, List, NotFound, PayloadTooLarge, Unauthorized};
use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{AliasView, CreateAlias, CreateRoutingPolicy, RoutingPolicyView, Service, UpdateRoutingPolicy};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This resource's routes, merged into the management router; operations that share a
/// path are in one `routes!` so the document keeps them together.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_alias, list_aliases))
        .routes(routes!(get_alias, delete_alias))
        .routes(routes!(create_routing_policy, list_routing_policies))
        .routes(routes!(get_routing_policy, update_routing_policy, delete_routing_policy))
}

#[utoipa::path(
    post,
    path = "/api/v1/aliases",
    tag = "routing",
    request_body = CreateAlias,
    responses((status = 201, description = "The alias.", body = AliasView), BadRequest, PayloadTooLarge, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn create_alias(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_alias(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/aliases",
    tag = "routing",
    responses((status = 200, description = "Every alias.", body = List<AliasView>), Unauthorized, InternalError)
)]
async fn list_aliases(State(svc): State<Arc<Service>>, Auth(_): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_aliases().await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/aliases/{name}",
    tag = "routing",
    params(("name" = String, Path, description = "The alias.")),
    responses((status = 200, description = "The alias.", body = AliasView), NotFound, Unauthorized, InternalError)
)]
async fn get_alias(
    State(svc): State<Arc<Service>>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_alias(&name).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/aliases/{name}",
    tag = "routing",
    params(("name" = String, Path, description = "The alias.")),
    responses((status = 204, description = "Deleted."), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn delete_alias(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_alias(&actor, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/routing-policies",
    tag = "routing",
    request_body = CreateRoutingPolicy,
    responses((status = 201, description = "The policy with every field written out.", body = RoutingPolicyView), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn create_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(created(svc.create_routing_policy(&actor, CreateRoutingPolicy::from_json(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/routing-policies",
    tag = "routing",
    responses((status = 200, description = "Every routing policy.", body = List<RoutingPolicyView>), Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn list_routing_policies(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_routing_policies(&actor).await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/routing-policies/{id}",
    tag = "routing",
    params(("id" = String, Path, description = "The routing policy's id.")),
    responses((status = 200, description = "The policy.", body = RoutingPolicyView), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn get_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_routing_policy(&actor, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/routing-policies/{id}",
    tag = "routing",
    request_body = UpdateRoutingPolicy,
    params(("id" = String, Path, description = "The routing policy's id.")),
    responses((status = 200, description = "The policy as replaced.", body = RoutingPolicyView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn update_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_routing_policy(&actor, &id, UpdateRoutingPolicy::from_json(&body(b)?)?).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/routing-policies/{id}",
    tag = "routing",
    params(("id" = String, Path, description = "The routing policy's id.")),
    responses((status = 204, description = "Deleted."), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn delete_routing_policy(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    svc.delete_routing_policy(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
