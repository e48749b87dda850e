//! REST routes of the audit trail: `/api/v1/audit` and `/api/v1/audit/verify`.

use super::openapi::{BadRequest, Forbidden, InternalError, Unauthorized};
use super::{Auth, ok};
use crate::ControlError;
use crate::service::{AuditPage, AuditQuery, AuditVerification, Service};
use axum::extract::{Query, State};
use axum::response::Response;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::Timestamp;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This resource's routes, merged into the management router; operations that share a
/// path are in one `routes!` so the document keeps them together.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(list_audit)).routes(routes!(verify_audit))
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
