//! REST routes of the tenancy tree: `/api/v1/organizations`, `/api/v1/teams`,
//! `/api/v1/projects` and `/api/v1/principals`.

use super::openapi::{BadRequest, Conflict, Forbidden, InternalError, List, NotFound, PayloadTooLarge, Unauthorized};
use super::{Auth, Body, body, created, ok, parse};
use crate::ControlError;
use crate::service::{
    CreateOrganization, CreateProject, CreateTeam, ListPrincipals, ListProjects, ListTeams, OrganizationView,
    PrincipalPage, PrincipalRevocation, PrincipalView, ProjectView, Service, TeamView,
};
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
        .routes(routes!(create_organization, list_organizations))
        .routes(routes!(get_organization))
        .routes(routes!(create_team, list_teams))
        .routes(routes!(get_team))
        .routes(routes!(create_project, list_projects))
        .routes(routes!(get_project))
        .routes(routes!(list_principals))
        .routes(routes!(get_principal))
        .routes(routes!(revoke_principal))
}

/// Takes the query parameters named in `allowed` out of `q`; any other is a 400 naming it.
fn only(q: HashMap<String, String>, allowed: &[&str]) -> Result<HashMap<String, String>, ControlError> {
    if let Some(other) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ControlError::invalid(other.chars().take(64).collect::<String>(), "unknown query parameter"));
    }
    Ok(q)
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations",
    tag = "tenancy",
    request_body = CreateOrganization,
    responses(
        (status = 201, description = "The organization.", body = OrganizationView),
        BadRequest, PayloadTooLarge, Conflict, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("admin")))
)]
async fn create_organization(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    b: Body,
) -> Result<Response, ControlError> {
    Ok(created(svc.create_organization(&actor, parse(&body(b)?)?).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations",
    tag = "tenancy",
    responses(
        (status = 200, description = "Every organization for an unbound token; the caller's own otherwise.", body = List<OrganizationView>),
        Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn list_organizations(State(svc): State<Arc<Service>>, Auth(actor): Auth) -> Result<Response, ControlError> {
    Ok(ok(List { data: svc.list_organizations(&actor).await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/{id}",
    tag = "tenancy",
    params(
        ("id" = String, Path, description = "The organization's id or name.")
    ),
    responses(
        (status = 200, description = "The organization.", body = OrganizationView),
        NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn get_organization(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_organization(&actor, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/teams",
    tag = "teams",
    request_body = CreateTeam,
    responses((status = 201, description = "The team.", body = TeamView), BadRequest, PayloadTooLarge, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("admin")))
)]
async fn create_team(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_team(&actor, parse(&body(b)?)?).await?))
}

/// `GET /api/v1/teams[?organization=]`.
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "tenancy",
    params(
        ("organization" = Option<String>, Query, description = "Only teams of this organization (id or name).")
    ),
    responses(
        (status = 200, description = "The teams in the caller's tenancy.", body = List<TeamView>),
        BadRequest, NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn list_teams(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut q = only(q, &["organization"])?;
    let filter = ListTeams { organization: q.remove("organization") };
    Ok(ok(List { data: svc.list_teams(&actor, filter).await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/teams/{id}",
    tag = "tenancy",
    params(
        ("id" = String, Path, description = "The team's id or name.")
    ),
    responses(
        (status = 200, description = "The team.", body = TeamView),
        NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn get_team(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_team(&actor, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/projects",
    tag = "projects",
    request_body = CreateProject,
    responses((status = 201, description = "The project.", body = ProjectView), BadRequest, PayloadTooLarge, NotFound, Conflict, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("admin")))
)]
async fn create_project(State(svc): State<Arc<Service>>, Auth(actor): Auth, b: Body) -> Result<Response, ControlError> {
    Ok(created(svc.create_project(&actor, parse(&body(b)?)?).await?))
}

/// `GET /api/v1/projects[?team=]`.
#[utoipa::path(
    get,
    path = "/api/v1/projects",
    tag = "tenancy",
    params(
        ("team" = Option<String>, Query, description = "Only projects of this team (id or name).")
    ),
    responses(
        (status = 200, description = "The projects in the caller's tenancy.", body = List<ProjectView>),
        BadRequest, NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn list_projects(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut q = only(q, &["team"])?;
    let filter = ListProjects { team: q.remove("team") };
    Ok(ok(List { data: svc.list_projects(&actor, filter).await? }))
}

#[utoipa::path(
    get,
    path = "/api/v1/projects/{id}",
    tag = "tenancy",
    params(
        ("id" = String, Path, description = "The project's id or name.")
    ),
    responses(
        (status = 200, description = "The project.", body = ProjectView),
        NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn get_project(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_project(&actor, &id).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/principals",
    tag = "tenancy",
    params(
        ("project" = Option<String>, Query, description = "Only principals with keys in this project (id or name)."),
        ("after" = Option<String>, Query, description = "Cursor: `next_after` of the previous page."),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000)
    ),
    responses(
        (status = 200, description = "A page of principals holding keys in the caller's tenancy.", body = PrincipalPage),
        BadRequest, NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn list_principals(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let mut q = only(q, &["project", "after", "limit"])?;
    let limit = match q.remove("limit") {
        Some(v) => Some(crate::service::parse_limit(&v)?),
        None => None,
    };
    let filter = ListPrincipals { project: q.remove("project"), after: q.remove("after"), limit };
    Ok(ok(svc.list_principals(&actor, filter).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/principals/{id}",
    tag = "tenancy",
    params(
        ("id" = String, Path, description = "The principal (free-form, e.g. `acme:user-42`).")
    ),
    responses(
        (status = 200, description = "The principal: its keys and budgets.", body = PrincipalView),
        NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:read")))
)]
async fn get_principal(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.get_principal(&actor, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/principals/{id}/revoke",
    tag = "tenancy",
    params(
        ("id" = String, Path, description = "The principal.")
    ),
    responses(
        (status = 200, description = "The keys of the principal revoked now. The body is empty or `{}`.", body = PrincipalRevocation),
        BadRequest, PayloadTooLarge, NotFound, Unauthorized, Forbidden, InternalError
    ),
    extensions(("x-required-scope" = json!("keys:write")))
)]
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
