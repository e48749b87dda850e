//! REST routes of admin tokens: `/api/v1/tokens` (mint, list) and revocation.

use super::openapi::{BadRequest, Forbidden, InternalError, List, NotFound, PayloadTooLarge, Unauthorized};
use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{CreateToken, Service, TokenView, TokenWithSecret};
use axum::extract::{Path, State};
use axum::response::Response;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This resource's routes, merged into the management router; operations that share a
/// path are in one `routes!` so the document keeps them together.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(revoke_token))
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token with its secret in `token`: shown this once, never again. Its scopes are a subset of the caller's and its binding inside the caller's.", body = TokenWithSecret),
        BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("tokens:write")))
)]
async fn create_token(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_token(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "The tokens the caller's binding covers; never their secrets.", body = List<TokenView>),
        Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("tokens:write")))
)]
async fn list_tokens(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_tokens(&actor).await? }))
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens/{id}/revoke",
    tag = "tokens",
    params(("id" = String, Path, description = "The admin token's id.")),
    responses(
        (status = 200, description = "The token, revoked: refused from the next request on.", body = TokenView),
        NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("tokens:write")))
)]
async fn revoke_token(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.revoke_token(&actor, &id).await?))
}
