//! REST routes of virtual keys: `/api/v1/keys` (mint, list), `/api/v1/keys/{id}` (read,
//! update), and rotation and revocation.

use super::openapi::{
    BadRequest, Conflict, Forbidden, InternalError, KeyStatusFilter, NotFound, PayloadTooLarge, Unauthorized,
};
use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{CreateKey, KeyPage, KeyView, KeyWithSecret, ListKeys, RotateKey, Service, UpdateKey};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This resource's routes, merged into the management router; operations that share a
/// path are in one `routes!` so the document keeps them together.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
}

#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    request_body = CreateKey,
    responses((status = 201, description = "The key with its secret in `key`: shown this once, never again. An inline `budget` also needs `budgets:write`.", body = KeyWithSecret), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:write")))
)]
async fn create_key(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_key(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    params(("project" = Option<String>, Query, description = "Only keys of this project (id or name)."), ("principal" = Option<String>, Query, description = "Only keys of this principal."), ("status" = Option<KeyStatusFilter>, Query, description = "Only keys of this stored status."), ("tag" = Option<String>, Query, description = "Only keys carrying this tag."), ("after" = Option<String>, Query, description = "Cursor: `next_after` of the previous page."), ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "A page of keys, oldest first; never their secrets. Besides the parameters below, any number of `metadata.K=V` parameters keep only keys whose metadata has `K` equal to `V`.", body = KeyPage), BadRequest, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn list_keys(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut filter = ListKeys::default();
    for (k, v) in q {
        match k.as_str() {
            "project" => filter.project = Some(v),
            "principal" => filter.principal = Some(v),
            "status" => filter.status = Some(v),
            "tag" => filter.tag = Some(v),
            "after" => filter.after = Some(v),
            "limit" => filter.limit = Some(crate::service::parse_limit(&v)?),
            other => match other.strip_prefix("metadata.") {
                Some(mk) if !mk.is_empty() => filter.metadata.push((mk.to_owned(), v)),
                _ => {
                    return Err(ControlError::invalid(
                        other.chars().take(64).collect::<String>(),
                        "unknown query parameter",
                    ));
                }
            },
        }
    }
    filter.metadata.sort();
    Ok(ok(svc.list_keys(&actor, filter).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key with its budgets; never its secret.", body = KeyView), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn get_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_key(&actor, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    request_body = UpdateKey,
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key as changed.", body = KeyView), BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:write")))
)]
async fn update_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_key(&actor, &id, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/rotate",
    tag = "keys",
    request_body = Option<RotateKey>,
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key with its new secret in `key`, shown this once.", body = KeyWithSecret), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:write")))
)]
async fn rotate_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    let b = body(b)?;
    // An empty body means the defaults (grace period 0).
    let input = if b.iter().all(u8::is_ascii_whitespace) { Default::default() } else { parse(&b)? };
    Ok(ok(svc.rotate_key(&actor, &id, input).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/revoke",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id.")),
    responses((status = 200, description = "The key, revoked; every gateway refuses it from the next snapshot on (403 `virtual_key_revoked`). Revoking twice is not an error.", body = KeyView), NotFound, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("keys:write")))
)]
async fn revoke_key(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.revoke_key(&actor, &id).await?))
}
