//! REST routes of provider credentials: `/api/v1/providers` and
//! `/api/v1/providers/{id}`. No response carries a credential, only its hint and fingerprint.

use super::openapi::{BadRequest, Conflict, Forbidden, InternalError, List, NotFound, PayloadTooLarge, Unauthorized};
use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{CreateProvider, ProviderView, Service, UpdateProvider};
use axum::extract::{Path, State};
use axum::response::Response;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This resource's routes, merged into the management router; operations that share a
/// path are in one `routes!` so the document keeps them together.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(create_provider, list_providers)).routes(routes!(get_provider, update_provider))
}

#[utoipa::path(
    post,
    path = "/api/v1/providers",
    tag = "providers",
    request_body = CreateProvider,
    responses((status = 201, description = "The provider; its credential only as a hint.", body = ProviderView), BadRequest, PayloadTooLarge, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("providers:write")))
)]
async fn create_provider(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(created(svc.create_provider(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/providers",
    tag = "providers",
    responses((status = 200, description = "Every provider.", body = List<ProviderView>), Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("providers:write")))
)]
async fn list_providers(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_providers(&actor).await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    params(
        ("id" = String, Path, description = "The provider's id or name.")
    ),
    responses(
        (status = 200, description = "The provider; its credential only as a hint and fingerprint.", body = ProviderView),
        NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("providers:write")))
)]
async fn get_provider(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_provider(&actor, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    request_body = UpdateProvider,
    params(
        ("id" = String, Path, description = "The provider's id or name.")
    ),
    responses(
        (status = 200, description = "The provider as changed.", body = ProviderView),
        BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("providers:write")))
)]
async fn update_provider(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_provider(&actor, &id, parse(&body(b)?)?).await?))
}
