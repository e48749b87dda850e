//! REST routes of admin tokens and the audit trail: `/api/v1/tokens` and
//! `/api/v1/audit`. Kept apart from the resource routes so they merge on their own.

use super::openapi::{BadRequest, Forbidden, InternalError, List, NotFound, PayloadTooLarge, Unauthorized};
use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{AuditPage, AuditQuery, AuditVerification, CreateToken, Service, TokenView, TokenWithSecret};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::Timestamp;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The token and audit routes, merged into the management router.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
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

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(
        ("target_kind" = Option<String>, Query, description = "Only events about this kind of target (`key`, `budget`, `token`, ...)."),
        ("actor" = Option<String>, Query, description = "Only events by this actor: a token id, or `bootstrap`."),
        ("since" = Option<Timestamp>, Query, description = "Only events at or after this instant, RFC 3339."),
        ("until" = Option<Timestamp>, Query, description = "Only events before this instant, RFC 3339."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000)
    ),
    responses(
        (status = 200, description = "A page of audit events, newest first.", body = AuditPage),
        BadRequest, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("audit:read")))
)]
async fn list_audit(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.list_audit(&actor, &AuditQuery::parse(q)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    responses(
        (status = 200, description = "The result of re-walking the stored hash chain in order.", body = AuditVerification),
        Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("audit:read")))
)]
async fn verify_audit(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(svc.verify_audit(&actor).await?))
}
