//! Organizations, teams and projects: creation, lookup by id or name, and listings.

use super::{Store, bump_revision, new_id};
use crate::convert::{org_from_row, org_to_row, project_from_row, project_to_row, team_from_row, team_to_row};
use crate::entity::{organization, project, team};
use crate::error::{StoreError, write_err};
use crate::records::{OrgRecord, ProjectRecord, TeamRecord};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect};
use std::collections::HashMap;
use tollgate_core::{OrgId, ProjectId, TeamId, Timestamp};

impl Store {
    /// Creates an organization named `name`; returns it and the new revision.
    ///
    /// [`StoreError::Conflict`] if the name is taken.
    pub async fn create_org(&self, name: &str) -> Result<(OrgRecord, i64), StoreError> {
        let rec =
            OrgRecord { id: OrgId::new(new_id(OrgId::PREFIX)), name: name.to_owned(), created_at: Timestamp::now() };
        let txn = self.begin_write().await?;
        organization::Entity::insert(org_to_row(&rec).into_active_model()).exec_without_returning(&txn).await.map_err(
            |e| {
                let taken = format!("an organization named {name:?} already exists");
                write_err("organization", e, &[(&["name"], taken.clone())], taken)
            },
        )?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((rec, rev))
    }

    /// Returns the org named `name`, creating it if missing (bumps revision only when created).
    pub async fn ensure_org(&self, name: &str) -> Result<OrgRecord, StoreError> {
        let by_name = || organization::Entity::find().filter(organization::Column::Name.eq(name));
        if let Some(m) = by_name().one(&self.db()).await? {
            return Ok(org_from_row(m));
        }
        let rec =
            OrgRecord { id: OrgId::new(new_id(OrgId::PREFIX)), name: name.to_owned(), created_at: Timestamp::now() };
        let txn = self.begin_write().await?;
        if let Some(m) = by_name().one(&txn).await? {
            return Ok(org_from_row(m));
        }
        let inserted =
            organization::Entity::insert(org_to_row(&rec).into_active_model()).exec_without_returning(&txn).await;
        match inserted {
            Ok(_) => {}
            Err(e) => {
                let err = write_err("organization", e, &[], format!("organization {name:?} already exists"));
                drop(txn);
                // Another writer created it between our read and our insert (PostgreSQL).
                if matches!(err, StoreError::Conflict { .. })
                    && let Some(m) = by_name().one(&self.db()).await?
                {
                    return Ok(org_from_row(m));
                }
                return Err(err);
            }
        }
        bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rec)
    }

    /// The organization with id `id_or_name`, else the one with that name.
    pub async fn find_org(&self, id_or_name: &str) -> Result<Option<OrgRecord>, StoreError> {
        let row = match organization::Entity::find_by_id(id_or_name).one(&self.db()).await? {
            Some(m) => Some(m),
            None => {
                organization::Entity::find().filter(organization::Column::Name.eq(id_or_name)).one(&self.db()).await?
            }
        };
        Ok(row.map(org_from_row))
    }

    /// Every organization, by name.
    pub async fn list_orgs(&self) -> Result<Vec<OrgRecord>, StoreError> {
        let rows = organization::Entity::find().order_by_asc(organization::Column::Name).all(&self.db()).await?;
        Ok(rows.into_iter().map(org_from_row).collect())
    }

    /// The teams of `org` (every organization's when `None`), by name then id.
    pub async fn list_teams(&self, org: Option<&OrgId>) -> Result<Vec<TeamRecord>, StoreError> {
        let mut q = team::Entity::find();
        if let Some(o) = org {
            q = q.filter(team::Column::OrgId.eq(o.as_str()));
        }
        let rows = q.order_by_asc(team::Column::Name).order_by_asc(team::Column::Id).all(&self.db()).await?;
        Ok(rows.into_iter().map(team_from_row).collect())
    }

    /// The projects of `team` (or of every team of `org`, or all), by name then id.
    pub async fn list_projects(
        &self,
        team: Option<&TeamId>,
        org: Option<&OrgId>,
    ) -> Result<Vec<ProjectRecord>, StoreError> {
        let mut q = project::Entity::find();
        if let Some(t) = team {
            q = q.filter(project::Column::TeamId.eq(t.as_str()));
        }
        if let Some(o) = org {
            q = q.filter(
                project::Column::TeamId.in_subquery(
                    Query::select()
                        .column(team::Column::Id)
                        .from(team::Entity)
                        .and_where(team::Column::OrgId.eq(o.as_str()))
                        .to_owned(),
                ),
            );
        }
        let rows = q.order_by_asc(project::Column::Name).order_by_asc(project::Column::Id).all(&self.db()).await?;
        projects_with_orgs(&self.db(), rows).await
    }

    /// Creates a team named `name` in organization `org_id`; returns it and the new revision.
    ///
    /// [`StoreError::NotFound`] if the organization does not exist,
    /// [`StoreError::Conflict`] if the name is taken in that organization.
    pub async fn create_team(&self, org_id: &OrgId, name: &str) -> Result<(TeamRecord, i64), StoreError> {
        let rec = TeamRecord {
            id: TeamId::new(new_id(TeamId::PREFIX)),
            org_id: org_id.clone(),
            name: name.to_owned(),
            created_at: Timestamp::now(),
        };
        let txn = self.begin_write().await?;
        if organization::Entity::find_by_id(org_id.as_str()).one(&txn).await?.is_none() {
            return Err(StoreError::NotFound { kind: "organization", id: org_id.to_string() });
        }
        team::Entity::insert(team_to_row(&rec).into_active_model()).exec_without_returning(&txn).await.map_err(
            |e| {
                let taken = format!("a team named {name:?} already exists in organization {org_id}");
                write_err("team", e, &[(&["name"], taken)], format!("team id {} is taken", rec.id))
            },
        )?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((rec, rev))
    }

    /// The team with id `id`, by id only (a team named like an id is not it).
    pub async fn get_team(&self, id: &TeamId) -> Result<Option<TeamRecord>, StoreError> {
        Ok(team::Entity::find_by_id(id.as_str()).one(&self.db()).await?.map(team_from_row))
    }

    /// The team with id `id_or_name`, else the team with that name in any organization.
    ///
    /// [`StoreError::Conflict`] if the name matches teams in several organizations.
    pub async fn find_team(&self, id_or_name: &str) -> Result<Option<TeamRecord>, StoreError> {
        if let Some(m) = team::Entity::find_by_id(id_or_name).one(&self.db()).await? {
            return Ok(Some(team_from_row(m)));
        }
        let mut rows = team::Entity::find()
            .filter(team::Column::Name.eq(id_or_name))
            .order_by_asc(team::Column::Id)
            .limit(2)
            .all(&self.db())
            .await?;
        if rows.len() > 1 {
            return Err(StoreError::Conflict {
                kind: "team",
                detail: format!("several teams are named {id_or_name:?}; use the id"),
            });
        }
        Ok(rows.pop().map(team_from_row))
    }

    /// Creates a project named `name` in team `team_id`; returns it and the new revision.
    ///
    /// [`StoreError::NotFound`] if the team does not exist,
    /// [`StoreError::Conflict`] if the name is taken in that team.
    pub async fn create_project(&self, team_id: &TeamId, name: &str) -> Result<(ProjectRecord, i64), StoreError> {
        let txn = self.begin_write().await?;
        let Some(team) = team::Entity::find_by_id(team_id.as_str()).one(&txn).await? else {
            return Err(StoreError::NotFound { kind: "team", id: team_id.to_string() });
        };
        let rec = ProjectRecord {
            id: ProjectId::new(new_id(ProjectId::PREFIX)),
            team_id: team_id.clone(),
            org_id: OrgId::new(team.org_id),
            name: name.to_owned(),
            created_at: Timestamp::now(),
        };
        project::Entity::insert(project_to_row(&rec).into_active_model()).exec_without_returning(&txn).await.map_err(
            |e| {
                let taken = format!("a project named {name:?} already exists in team {team_id}");
                write_err("project", e, &[(&["name"], taken)], format!("project id {} is taken", rec.id))
            },
        )?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((rec, rev))
    }

    /// The project with id `id_or_name`, else the project with that name in any team.
    ///
    /// [`StoreError::Conflict`] if the name matches projects in several teams.
    pub async fn find_project(&self, id_or_name: &str) -> Result<Option<ProjectRecord>, StoreError> {
        let rows = match project::Entity::find_by_id(id_or_name).one(&self.db()).await? {
            Some(m) => vec![m],
            None => {
                project::Entity::find()
                    .filter(project::Column::Name.eq(id_or_name))
                    .order_by_asc(project::Column::Id)
                    .limit(2)
                    .all(&self.db())
                    .await?
            }
        };
        if rows.len() > 1 {
            return Err(StoreError::Conflict {
                kind: "project",
                detail: format!("several projects are named {id_or_name:?}; use the id"),
            });
        }
        Ok(projects_with_orgs(&self.db(), rows).await?.pop())
    }

    /// The project of team `team` with id `id_or_name`, else the one of that team with
    /// that name (names are unique within a team). A project of another team is `None`,
    /// whatever its name: this is how a team-bound caller's names resolve, so another
    /// team's project of the same name never shadows its own.
    pub async fn find_project_in_team(
        &self,
        team: &TeamId,
        id_or_name: &str,
    ) -> Result<Option<ProjectRecord>, StoreError> {
        let in_team = || project::Entity::find().filter(project::Column::TeamId.eq(team.as_str()));
        let row = match in_team().filter(project::Column::Id.eq(id_or_name)).one(&self.db()).await? {
            Some(m) => Some(m),
            None => in_team().filter(project::Column::Name.eq(id_or_name)).one(&self.db()).await?,
        };
        Ok(projects_with_orgs(&self.db(), row.into_iter().collect()).await?.pop())
    }
}

/// The project rows in `rows` with their organizations, looked up through their teams.
pub(crate) async fn projects_with_orgs<C: ConnectionTrait>(
    c: &C,
    rows: Vec<project::Model>,
) -> Result<Vec<ProjectRecord>, StoreError> {
    let team_ids: Vec<String> = rows.iter().map(|p| p.team_id.clone()).collect();
    let teams: HashMap<String, String> = team::Entity::find()
        .filter(team::Column::Id.is_in(team_ids))
        .all(c)
        .await?
        .into_iter()
        .map(|t| (t.id, t.org_id))
        .collect();
    rows.into_iter()
        .map(|p| {
            let org = teams.get(&p.team_id).cloned().ok_or_else(|| StoreError::Corrupt {
                kind: "project",
                id: p.id.clone(),
                detail: format!("team {:?} does not exist", p.team_id),
            })?;
            Ok(project_from_row(p, OrgId::new(org)))
        })
        .collect()
}
