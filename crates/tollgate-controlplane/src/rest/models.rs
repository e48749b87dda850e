//! REST routes of the model catalog: `/api/v1/models` and `/api/v1/models/{name}`
//! (prices, output cap, deployments).

use super::openapi::{BadRequest, Conflict, Forbidden, InternalError, List, NotFound, PayloadTooLarge, Unauthorized};
use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{CreateModel, ModelView, Service, UpdateModel};
use axum::extract::{Path, State};
use axum::response::Response;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This resource's routes, merged into the management router; operations that share a
/// path are in one `routes!` so the document keeps them together.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(create_model, list_models)).routes(routes!(get_model, update_model))
}

#[utoipa::path(
    post,
    path = "/api/v1/models",
    tag = "models",
    request_body = CreateModel,
    responses((status = 201, description = "The model.", body = ModelView), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn create_model(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_model(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    responses((status = 200, description = "The catalog with prices.", body = List<ModelView>), Unauthorized, InternalError)
)]
async fn list_models(State(svc): State<Arc<Service>>, Auth(_): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_models().await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "The model's public name or id.")),
    responses((status = 200, description = "The model.", body = ModelView), NotFound, Unauthorized, InternalError)
)]
async fn get_model(
    State(svc): State<Arc<Service>>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_model(&name).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/models/{name}",
    tag = "models",
    request_body = UpdateModel,
    params(("name" = String, Path, description = "The model's public name or id.")),
    responses((status = 200, description = "The model as changed.", body = ModelView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("models:write")))
)]
async fn update_model(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(name): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_model(&actor, &name, parse(&body(b)?)?).await?))
}
