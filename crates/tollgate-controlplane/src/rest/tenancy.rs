//! REST routes of the tenancy tree and of provider credentials beyond create:
//! `/api/v1/organizations`, reads of teams and projects, `/api/v1/principals`, and
//! `GET/PATCH /api/v1/providers/{id}`.

use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{ListPrincipals, ListProjects, ListTeams, Service};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::Arc;

/// The routes whose paths are new; `GET /api/v1/teams` and `GET /api/v1/projects` share
/// their path with the creates and are routed next to them.
pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/v1/organizations", post(create_organization).get(list_organizations))
        .route("/api/v1/organizations/{id}", get(get_organization))
        .route("/api/v1/teams/{id}", get(get_team))
        .route("/api/v1/projects/{id}", get(get_project))
        .route("/api/v1/providers/{id}", get(get_provider).patch(update_provider))
        .route("/api/v1/principals", get(list_principals))
        .route("/api/v1/principals/{id}", get(get_principal))
        .route("/api/v1/principals/{id}/revoke", post(revoke_principal))
}

/// Takes the query parameters named in `allowed` out of `q`; any other is a 400 naming it.
fn only(q: HashMap<String, String>, allowed: &[&str]) -> Result<HashMap<String, String>, ControlError> {
    if let Some(other) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ControlError::invalid(other.chars().take(64).collect::<String>(), "unknown query parameter"));
    }
    Ok(q)
}

async fn create_organization(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(created(svc.create_organization(&actor, parse(&body(b)?)?).await?))
}

async fn list_organizations(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(serde_json::json!({"data": svc.list_organizations(&actor).await?})))
}

async fn get_organization(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_organization(&actor, &id).await?))
}

/// `GET /api/v1/teams[?organization=]`.
pub(super) async fn list_teams(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut q = only(q, &["organization"])?;
    let filter = ListTeams { organization: q.remove("organization") };
    Ok(ok(serde_json::json!({"data": svc.list_teams(&actor, filter).await?})))
}

async fn get_team(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_team(&actor, &id).await?))
}

/// `GET /api/v1/projects[?team=]`.
pub(super) async fn list_projects(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut q = only(q, &["team"])?;
    let filter = ListProjects { team: q.remove("team") };
    Ok(ok(serde_json::json!({"data": svc.list_projects(&actor, filter).await?})))
}

async fn get_project(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_project(&actor, &id).await?))
}

async fn get_provider(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_provider(&actor, &id).await?))
}

async fn update_provider(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(ok(svc.update_provider(&actor, &id, parse(&body(b)?)?).await?))
}

async fn list_principals(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut q = only(q, &["project", "after", "limit"])?;
    let limit = match q.remove("limit") {
        Some(v) => Some(v.parse().map_err(|_| ControlError::invalid("limit", "must be a positive integer"))?),
        None => None,
    };
    let filter = ListPrincipals { project: q.remove("project"), after: q.remove("after"), limit };
    Ok(ok(svc.list_principals(&actor, filter).await?))
}

async fn get_principal(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_principal(&actor, &id).await?))
}

async fn revoke_principal(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ControlError> {
    // The body is empty or `{}`: revoking takes no options.
    crate::service::no_fields(&body(b)?)?;
    Ok(ok(svc.revoke_principal_keys(&actor, &id).await?))
}
