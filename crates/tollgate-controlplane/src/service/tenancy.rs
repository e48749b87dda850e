//! The tenancy tree: organizations, teams, projects and principals — creating, listing
//! and reading them, and revoking a principal's keys.
//!
//! Reads of the tenancy tree need any read scope (`keys:read` or what implies it) and
//! are confined to the caller's tenancy: a token bound to project A sees its project and
//! team, never a sibling. Creating organizations and teams reaches every tenant and
//! needs `admin` on an unbound token.

use super::auth::Target;
use super::{Actor, BudgetView, Scope, Service, Tenancy, budget_view, check_name};
use crate::ControlError;
use serde::{Deserialize, Serialize};
use tollgate_core::{OrgId, ProjectId, ScopeKind, TeamId, Timestamp};
use tollgate_store::{OrgRecord, PrincipalFilter, PrincipalSummary, ProjectRecord, TeamRecord};
use utoipa::ToSchema;

/// Page size of principal listings when none is given.
const DEFAULT_PRINCIPAL_LIMIT: u64 = 100;

/// `POST /api/v1/organizations`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// Unique name.
    pub name: String,
}

/// An organization.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrganizationView {
    /// Id.
    pub id: OrgId,
    /// Name.
    pub name: String,
    /// Created.
    pub created_at: Timestamp,
}

/// `POST /api/v1/teams`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// Team name, unique in its organization.
    pub name: String,
    /// Organization id or name; the default organization when absent.
    #[serde(default)]
    pub organization: Option<String>,
}

/// `POST /api/v1/projects`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Project name, unique in its team.
    pub name: String,
    /// Team id or name.
    pub team: String,
}

/// A team.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TeamView {
    /// Id.
    pub id: TeamId,
    /// Name.
    pub name: String,
    /// Organization.
    pub org_id: OrgId,
    /// Created.
    pub created_at: Timestamp,
}

/// A project.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectView {
    /// Id.
    pub id: ProjectId,
    /// Name.
    pub name: String,
    /// Team.
    pub team_id: TeamId,
    /// Organization.
    pub org_id: OrgId,
    /// Created.
    pub created_at: Timestamp,
}

/// Filters of `GET /api/v1/teams`.
#[derive(Debug, Clone, Default)]
pub struct ListTeams {
    /// Organization id or name.
    pub organization: Option<String>,
}

/// Filters of `GET /api/v1/projects`.
#[derive(Debug, Clone, Default)]
pub struct ListProjects {
    /// Team id or name.
    pub team: Option<String>,
}

/// Filters of `GET /api/v1/principals`.
#[derive(Debug, Clone, Default)]
pub struct ListPrincipals {
    /// Only principals with keys in this project (id or name).
    pub project: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u64>,
    /// Cursor: the last principal of the previous page.
    pub after: Option<String>,
}

/// A principal: the keys it holds (in the caller's tenancy) and its own budgets.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrincipalView {
    /// The free-form principal (`acme:user-42`).
    pub id: String,
    /// Keys that authenticate now.
    pub keys_active: u64,
    /// Keys past their expiry.
    pub keys_expired: u64,
    /// Revoked keys.
    pub keys_revoked: u64,
    /// Projects its keys belong to.
    pub projects: Vec<ProjectId>,
    /// Budgets scoped to the principal (shown to unbound tokens with `budgets:read`;
    /// principal budgets are organization-wide).
    pub budgets: Vec<BudgetView>,
}

/// One page of principals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrincipalPage {
    /// The principals, in ascending order.
    pub data: Vec<PrincipalView>,
    /// Cursor for the next page (pass as `after`), if there may be more.
    pub next_after: Option<String>,
}

/// What `POST /api/v1/principals/{id}/revoke` did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrincipalRevocation {
    /// The principal.
    pub id: String,
    /// The keys revoked now (already revoked keys are not listed).
    pub revoked: Vec<tollgate_core::KeyId>,
}

fn org_view(r: &OrgRecord) -> OrganizationView {
    OrganizationView { id: r.id.clone(), name: r.name.clone(), created_at: r.created_at }
}

impl Service {
    /// Creates a team in an organization (the default one unless named).
    pub async fn create_team(&self, actor: &Actor, input: CreateTeam) -> Result<TeamView, ControlError> {
        self.authorize(actor, Scope::Admin, Target::Global).await?;
        check_name("name", &input.name)?;
        let org = match &input.organization {
            Some(o) => {
                self.store
                    .find_org(o)
                    .await?
                    .ok_or_else(|| ControlError::invalid("organization", format!("no organization {o:?}")))?
                    .id
            }
            None => self.org.id.clone(),
        };
        let w = self.begin_write().await?;
        let (rec, rev) = w.store().create_team(&org, &input.name).await?;
        let view = team_view(&rec);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "team.create", ("team", rec.id.as_str()), meta).await?;
        Ok(view)
    }

    /// Creates a project in a team.
    pub async fn create_project(&self, actor: &Actor, input: CreateProject) -> Result<ProjectView, ControlError> {
        self.authorize(actor, Scope::Admin, Target::TeamRef { field: "team", id_or_name: &input.team }).await?;
        check_name("name", &input.name)?;
        let team = self
            .find_team_for(actor, &input.team)
            .await?
            .ok_or_else(|| ControlError::invalid("team", format!("no team {:?}", input.team)))?;
        let w = self.begin_write().await?;
        let (rec, rev) = w.store().create_project(&team.id, &input.name).await?;
        let view = project_view(&rec);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "project.create", ("project", rec.id.as_str()), meta).await?;
        Ok(view)
    }

    /// The project `actor` names in `field` (see [`Service::find_project_for`]); one it
    /// cannot see is 400 "no project", exactly like a missing one.
    pub(super) async fn project(
        &self,
        actor: &Actor,
        field: &str,
        id_or_name: &str,
    ) -> Result<ProjectRecord, ControlError> {
        self.find_project_for(actor, id_or_name)
            .await?
            .ok_or_else(|| ControlError::invalid(field, format!("no project {id_or_name:?}")))
    }

    /// A project by id or name as `actor` may name it. An unbound token looks in every
    /// team (a name that several teams use is 409: use the id). A bound token looks only
    /// inside its own team, and a project-bound one only at its own project: another
    /// tenant's project is then exactly as absent as a missing one, and never makes the
    /// tenant's own names ambiguous.
    pub(crate) async fn find_project_for(
        &self,
        actor: &Actor,
        id_or_name: &str,
    ) -> Result<Option<ProjectRecord>, ControlError> {
        Ok(match actor.tenancy() {
            Tenancy::Global => self.store.find_project(id_or_name).await?,
            Tenancy::Team(team) => self.store.find_project_in_team(team, id_or_name).await?,
            Tenancy::Project { team, project } => {
                self.store.find_project_in_team(team, id_or_name).await?.filter(|p| p.id == *project)
            }
        })
    }

    /// A team by id or name as `actor` may name it: any team for an unbound token (a name
    /// used in several organizations is 409: use the id), only its own team for a bound
    /// one — whose project-bound tokens may still read it.
    pub(crate) async fn find_team_for(
        &self,
        actor: &Actor,
        id_or_name: &str,
    ) -> Result<Option<TeamRecord>, ControlError> {
        Ok(match actor.tenancy() {
            Tenancy::Global => self.store.find_team(id_or_name).await?,
            Tenancy::Team(own) | Tenancy::Project { team: own, .. } => {
                self.store.get_team(own).await?.filter(|t| t.id.as_str() == id_or_name || t.name == id_or_name)
            }
        })
    }

    /// An organization by id or name as `actor` may name it: any for an unbound token,
    /// only its own for a bound one.
    pub(crate) async fn find_org_for(
        &self,
        actor: &Actor,
        id_or_name: &str,
    ) -> Result<Option<OrgRecord>, ControlError> {
        let Some(own) = self.own_org(actor).await? else {
            return Ok(self.store.find_org(id_or_name).await?);
        };
        let rec = self.store.find_org(own.as_str()).await?;
        Ok(rec.filter(|o| o.id == own && (o.id.as_str() == id_or_name || o.name == id_or_name)))
    }

    /// Creates an organization.
    pub async fn create_organization(
        &self,
        actor: &Actor,
        input: CreateOrganization,
    ) -> Result<OrganizationView, ControlError> {
        self.authorize(actor, Scope::Admin, Target::Global).await?;
        check_name("name", &input.name)?;
        let w = self.begin_write().await?;
        let (rec, rev) = w.store().create_org(&input.name).await?;
        let view = org_view(&rec);
        let target = ("organization", rec.id.as_str());
        self.commit_audited(w, Some(rev), actor, "organization.create", target, to_value(&view)).await?;
        Ok(view)
    }

    /// Lists organizations: every one for an unbound token, the caller's own otherwise.
    pub async fn list_organizations(&self, actor: &Actor) -> Result<Vec<OrganizationView>, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let own = self.own_org(actor).await?;
        let orgs = self.store.list_orgs().await?;
        Ok(orgs.iter().filter(|o| own.as_ref().is_none_or(|id| *id == o.id)).map(org_view).collect())
    }

    /// Reads an organization by id or name.
    pub async fn get_organization(&self, actor: &Actor, id_or_name: &str) -> Result<OrganizationView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let missing = || super::auth::not_found("organization", id_or_name);
        let rec = self.find_org_for(actor, id_or_name).await?.ok_or_else(missing)?;
        Ok(org_view(&rec))
    }

    /// The organization a bound token lives in; `None` for an unbound token.
    async fn own_org(&self, actor: &Actor) -> Result<Option<OrgId>, ControlError> {
        let team = match actor.tenancy() {
            Tenancy::Global => return Ok(None),
            Tenancy::Team(t) | Tenancy::Project { team: t, .. } => t,
        };
        // A token whose team is gone reaches no organization.
        Ok(Some(self.store.find_team(team.as_str()).await?.map_or_else(|| OrgId::new(""), |t| t.org_id)))
    }

    /// Lists teams, optionally of one organization; a bound token sees its own team.
    pub async fn list_teams(&self, actor: &Actor, q: ListTeams) -> Result<Vec<TeamView>, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let org = match &q.organization {
            // Another tenant's organization reads exactly like a missing one.
            Some(o) => Some(
                self.find_org_for(actor, o)
                    .await?
                    .ok_or_else(|| ControlError::invalid("organization", format!("no organization {o:?}")))?
                    .id,
            ),
            None => None,
        };
        let teams = self.store.list_teams(org.as_ref()).await?;
        Ok(teams
            .iter()
            .filter(|t| actor.tenancy().covers(&Tenancy::Team(t.id.clone())) || own_team(actor, &t.id))
            .map(team_view)
            .collect())
    }

    /// Reads a team by id or name (404 outside the caller's tenancy).
    pub async fn get_team(&self, actor: &Actor, id_or_name: &str) -> Result<TeamView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let missing = || super::auth::not_found("team", id_or_name);
        let team = self.find_team_for(actor, id_or_name).await?.ok_or_else(missing)?;
        if actor.tenancy().covers(&Tenancy::Team(team.id.clone())) || own_team(actor, &team.id) {
            Ok(team_view(&team))
        } else {
            Err(missing())
        }
    }

    /// Lists projects, optionally of one team; a bound token sees only its own.
    pub async fn list_projects(&self, actor: &Actor, q: ListProjects) -> Result<Vec<ProjectView>, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let team = match &q.team {
            // Another tenant's team reads exactly like a missing one.
            Some(t) => Some(
                self.find_team_for(actor, t)
                    .await?
                    .ok_or_else(|| ControlError::invalid("team", format!("no team {t:?}")))?
                    .id,
            ),
            None => None,
        };
        let projects = self.store.list_projects(team.as_ref(), None).await?;
        Ok(projects.iter().filter(|p| actor.tenancy().covers(&Tenancy::of_project(p))).map(project_view).collect())
    }

    /// Reads a project by id or name (404 outside the caller's tenancy).
    pub async fn get_project(&self, actor: &Actor, id_or_name: &str) -> Result<ProjectView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let missing = || super::auth::not_found("project", id_or_name);
        let project = self.find_project_for(actor, id_or_name).await?.ok_or_else(missing)?;
        if actor.tenancy().covers(&Tenancy::of_project(&project)) { Ok(project_view(&project)) } else { Err(missing()) }
    }

    async fn principal_filter(&self, actor: &Actor, project: Option<&str>) -> Result<PrincipalFilter, ControlError> {
        let mut f = PrincipalFilter::default();
        match actor.tenancy() {
            Tenancy::Global => {}
            Tenancy::Team(t) => f.team_id = Some(t.clone()),
            Tenancy::Project { project, .. } => f.project_id = Some(project.clone()),
        }
        if let Some(p) = project {
            self.authorize(actor, Scope::KeysRead, Target::ProjectRef { field: "project", id_or_name: p }).await?;
            f.project_id = Some(self.project(actor, "project", p).await?.id);
        }
        Ok(f)
    }

    /// Lists the principals that hold keys (in the caller's tenancy), with paging.
    pub async fn list_principals(&self, actor: &Actor, q: ListPrincipals) -> Result<PrincipalPage, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let mut f = self.principal_filter(actor, q.project.as_deref()).await?;
        f.limit = q.limit.unwrap_or(DEFAULT_PRINCIPAL_LIMIT).clamp(1, PrincipalFilter::MAX_LIMIT);
        f.after = q.after;
        let rows = self.store.list_principals(&f, Timestamp::now()).await?;
        let next_after = (rows.len() as u64 == f.limit).then(|| rows.last().map(|r| r.principal.clone())).flatten();
        let data = rows.into_iter().map(|s| principal_view(s, Vec::new())).collect();
        Ok(PrincipalPage { data, next_after })
    }

    /// Reads one principal: its keys' counts and projects, and its budgets. A principal
    /// with no key in the caller's tenancy is 404 (unless an unbound caller finds a
    /// budget scoped to it).
    pub async fn get_principal(&self, actor: &Actor, id: &str) -> Result<PrincipalView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        check_name("principal", id)?;
        let mut f = self.principal_filter(actor, None).await?;
        f.principal = Some(id.to_owned());
        f.limit = 1;
        let now = Timestamp::now();
        let summary = self.store.list_principals(&f, now).await?.pop();
        let budgets = if !actor.is_bound() && actor.has(Scope::BudgetsRead) {
            let recs = self.store.list_budgets_for(ScopeKind::Principal, id).await?;
            recs.iter().map(|b| budget_view(b, now)).collect()
        } else {
            Vec::new()
        };
        match summary {
            Some(s) => Ok(principal_view(s, budgets)),
            None if !budgets.is_empty() => Ok(principal_view(
                PrincipalSummary { principal: id.to_owned(), ..PrincipalSummary::default() },
                budgets,
            )),
            None => Err(super::auth::not_found("principal", id)),
        }
    }

    /// Revokes every active key of a principal in the caller's tenancy, in one write
    /// (one revision, so gateways refuse them all from the same snapshot). Offboarding a
    /// customer is this one call.
    pub async fn revoke_principal_keys(&self, actor: &Actor, id: &str) -> Result<PrincipalRevocation, ControlError> {
        self.authorize(actor, Scope::KeysWrite, Target::Filtered).await?;
        check_name("principal", id)?;
        let f = self.principal_filter(actor, None).await?;
        let mut probe = f.clone();
        probe.principal = Some(id.to_owned());
        probe.limit = 1;
        if self.store.list_principals(&probe, Timestamp::now()).await?.is_empty() {
            return Err(super::auth::not_found("principal", id));
        }
        let w = self.begin_write().await?;
        let (revoked, rev) = w.store().revoke_principal_keys(id, &f, Timestamp::now()).await?;
        // Nothing to revoke: nothing was written, and dropping `w` ends its transaction.
        if let Some(rev) = rev {
            let ids: Vec<&str> = revoked.iter().map(|k| k.as_str()).collect();
            let meta = serde_json::json!({ "revoked": ids });
            self.commit_audited(w, Some(rev), actor, "principal.revoke_keys", ("principal", id), meta).await?;
        }
        Ok(PrincipalRevocation { id: id.to_owned(), revoked })
    }
}

fn team_view(r: &TeamRecord) -> TeamView {
    TeamView { id: r.id.clone(), name: r.name.clone(), org_id: r.org_id.clone(), created_at: r.created_at }
}

fn project_view(r: &ProjectRecord) -> ProjectView {
    ProjectView {
        id: r.id.clone(),
        name: r.name.clone(),
        team_id: r.team_id.clone(),
        org_id: r.org_id.clone(),
        created_at: r.created_at,
    }
}

/// A project-bound token still sees the team its project is in (read-only).
fn own_team(actor: &Actor, team: &tollgate_core::TeamId) -> bool {
    matches!(actor.tenancy(), Tenancy::Project { team: t, .. } if t == team)
}

fn principal_view(s: PrincipalSummary, budgets: Vec<BudgetView>) -> PrincipalView {
    PrincipalView {
        id: s.principal,
        keys_active: s.keys_active,
        keys_expired: s.keys_expired,
        keys_revoked: s.keys_revoked,
        projects: s.projects,
        budgets,
    }
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}
