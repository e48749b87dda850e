//! `AdminService` organization, team, project and principal RPCs, over the same service
//! operations as the REST routes. A bound token sees only its own team or project: the
//! rest answers as missing.

use super::actor;
use super::budgets::budget_info;
use crate::service::{
    CreateOrganization, CreateProject, CreateTeam, ListPrincipals, ListProjects, ListTeams, OrganizationView,
    PrincipalView, ProjectView, Service, TeamView,
};
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

fn organization_info(v: OrganizationView) -> v1::OrganizationInfo {
    v1::OrganizationInfo { id: v.id.to_string(), name: v.name, created_at: v.created_at.to_rfc3339() }
}

fn team_info(v: TeamView) -> v1::TeamInfo {
    v1::TeamInfo {
        id: v.id.to_string(),
        name: v.name,
        org_id: v.org_id.to_string(),
        created_at: v.created_at.to_rfc3339(),
    }
}

fn project_info(v: ProjectView) -> v1::ProjectInfo {
    v1::ProjectInfo {
        id: v.id.to_string(),
        name: v.name,
        team_id: v.team_id.to_string(),
        org_id: v.org_id.to_string(),
        created_at: v.created_at.to_rfc3339(),
    }
}

fn principal_info(v: PrincipalView) -> v1::PrincipalInfo {
    v1::PrincipalInfo {
        id: v.id,
        keys_active: v.keys_active,
        keys_revoked: v.keys_revoked,
        keys_expired: v.keys_expired,
        project_ids: v.projects.iter().map(ToString::to_string).collect(),
        budgets: v.budgets.into_iter().map(budget_info).collect(),
    }
}

/// An optional id-or-name filter; empty means none.
fn filter(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

pub(super) async fn create_organization(
    svc: &Service,
    req: Request<v1::CreateOrganizationRequest>,
) -> Result<Response<v1::OrganizationInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let input = CreateOrganization { name: req.into_inner().name };
    let v = svc.create_organization(&actor, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(organization_info(v)))
}

pub(super) async fn list_organizations(
    svc: &Service,
    req: Request<v1::ListOrganizationsRequest>,
) -> Result<Response<v1::ListOrganizationsResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let orgs = svc.list_organizations(&actor).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListOrganizationsResponse {
        organizations: orgs.into_iter().map(organization_info).collect(),
    }))
}

pub(super) async fn get_organization(
    svc: &Service,
    req: Request<v1::GetOrganizationRequest>,
) -> Result<Response<v1::OrganizationInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.get_organization(&actor, &req.get_ref().organization).await.map_err(|e| e.grpc())?;
    Ok(Response::new(organization_info(v)))
}

pub(super) async fn create_team(
    svc: &Service,
    req: Request<v1::CreateTeamRequest>,
) -> Result<Response<v1::TeamInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let input = CreateTeam { name: r.name, organization: filter(r.organization) };
    let v = svc.create_team(&actor, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(team_info(v)))
}

pub(super) async fn list_teams(
    svc: &Service,
    req: Request<v1::ListTeamsRequest>,
) -> Result<Response<v1::ListTeamsResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let q = ListTeams { organization: filter(req.into_inner().organization) };
    let teams = svc.list_teams(&actor, q).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListTeamsResponse { teams: teams.into_iter().map(team_info).collect() }))
}

pub(super) async fn get_team(
    svc: &Service,
    req: Request<v1::GetTeamRequest>,
) -> Result<Response<v1::TeamInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.get_team(&actor, &req.get_ref().team).await.map_err(|e| e.grpc())?;
    Ok(Response::new(team_info(v)))
}

pub(super) async fn create_project(
    svc: &Service,
    req: Request<v1::CreateProjectRequest>,
) -> Result<Response<v1::ProjectInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let v = svc.create_project(&actor, CreateProject { name: r.name, team: r.team }).await.map_err(|e| e.grpc())?;
    Ok(Response::new(project_info(v)))
}

pub(super) async fn list_projects(
    svc: &Service,
    req: Request<v1::ListProjectsRequest>,
) -> Result<Response<v1::ListProjectsResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let q = ListProjects { team: filter(req.into_inner().team) };
    let projects = svc.list_projects(&actor, q).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListProjectsResponse { projects: projects.into_iter().map(project_info).collect() }))
}

pub(super) async fn get_project(
    svc: &Service,
    req: Request<v1::GetProjectRequest>,
) -> Result<Response<v1::ProjectInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.get_project(&actor, &req.get_ref().project).await.map_err(|e| e.grpc())?;
    Ok(Response::new(project_info(v)))
}

pub(super) async fn list_principals(
    svc: &Service,
    req: Request<v1::ListPrincipalsRequest>,
) -> Result<Response<v1::ListPrincipalsResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let q = ListPrincipals {
        project: filter(r.project),
        after: filter(r.after),
        limit: (r.limit > 0).then_some(u64::from(r.limit)),
    };
    let page = svc.list_principals(&actor, q).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListPrincipalsResponse {
        principals: page.data.into_iter().map(principal_info).collect(),
        next_after: page.next_after,
    }))
}

pub(super) async fn get_principal(
    svc: &Service,
    req: Request<v1::GetPrincipalRequest>,
) -> Result<Response<v1::PrincipalInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.get_principal(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(principal_info(v)))
}

pub(super) async fn revoke_principal_keys(
    svc: &Service,
    req: Request<v1::RevokePrincipalKeysRequest>,
) -> Result<Response<v1::RevokePrincipalKeysResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.revoke_principal_keys(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::RevokePrincipalKeysResponse {
        id: v.id,
        revoked_key_ids: v.revoked.iter().map(ToString::to_string).collect(),
    }))
}
