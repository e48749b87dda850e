//! REST routes of admin tokens and the audit trail: `/api/v1/tokens` and
//! `/api/v1/audit`. Kept apart from the resource routes so they merge on their own.

use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{AuditQuery, Service};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::Arc;

/// The token and audit routes, merged into the management router.
pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/tokens", post(create_token).get(list_tokens))
        .route("/api/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/audit/verify", get(verify_audit))
}

async fn create_token(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_token(&actor, parse(&body(b)?)?).await?))
}

async fn list_tokens(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(serde_json::json!({"data": svc.list_tokens(&actor).await?})))
}

async fn revoke_token(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.revoke_token(&actor, &id).await?))
}

async fn list_audit(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.list_audit(&actor, &AuditQuery::parse(q)?).await?))
}

async fn verify_audit(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(svc.verify_audit(&actor).await?))
}
