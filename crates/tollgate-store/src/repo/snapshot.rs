//! The snapshot: every row a data-plane snapshot is built from, read in one transaction
//! together with the revision it belongs to.

use super::Store;
use super::revision::read_revision;
use crate::convert::{
    alias_from_row, budget_from_row, key_from_row, model_from_row, org_from_row, project_from_row, provider_from_row,
    routing_policy_from_row, team_from_row,
};
use crate::entity::{budget, model, model_alias, organization, project, provider, routing_policy, team, virtual_key};
use crate::error::StoreError;
use crate::records::SnapshotData;
use sea_orm::{EntityTrait, QueryOrder};
use std::collections::HashMap;
use tollgate_core::OrgId;

impl Store {
    /// Everything a data-plane snapshot is built from, read in one transaction together
    /// with the revision it belongs to. Every list is ordered by id.
    pub async fn snapshot(&self) -> Result<SnapshotData, StoreError> {
        let txn = self.begin_snapshot().await?;
        let revision = read_revision(&txn).await?;
        let orgs = organization::Entity::find()
            .order_by_asc(organization::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(org_from_row)
            .collect();
        let team_rows = team::Entity::find().order_by_asc(team::Column::Id).all(&txn).await?;
        let org_of_team: HashMap<String, String> = team_rows.iter().map(|t| (t.id.clone(), t.org_id.clone())).collect();
        let teams = team_rows.into_iter().map(team_from_row).collect();
        let projects = project::Entity::find()
            .order_by_asc(project::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(|p| {
                let org = org_of_team.get(&p.team_id).cloned().ok_or_else(|| StoreError::Corrupt {
                    kind: "project",
                    id: p.id.clone(),
                    detail: format!("team {:?} does not exist", p.team_id),
                })?;
                Ok(project_from_row(p, OrgId::new(org)))
            })
            .collect::<Result<_, StoreError>>()?;
        let providers = provider::Entity::find()
            .order_by_asc(provider::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(provider_from_row)
            .collect::<Result<_, _>>()?;
        let models = model::Entity::find()
            .order_by_asc(model::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(model_from_row)
            .collect::<Result<_, _>>()?;
        let keys = virtual_key::Entity::find()
            .order_by_asc(virtual_key::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(key_from_row)
            .collect::<Result<_, _>>()?;
        let budgets = budget::Entity::find()
            .order_by_asc(budget::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(budget_from_row)
            .collect::<Result<_, _>>()?;
        let aliases = model_alias::Entity::find()
            .order_by_asc(model_alias::Column::Name)
            .all(&txn)
            .await?
            .into_iter()
            .map(alias_from_row)
            .collect();
        let routing_policies = routing_policy::Entity::find()
            .order_by_asc(routing_policy::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(routing_policy_from_row)
            .collect::<Result<_, _>>()?;
        txn.commit().await?;
        Ok(SnapshotData {
            revision,
            orgs,
            teams,
            projects,
            providers,
            models,
            keys,
            budgets,
            aliases,
            routing_policies,
        })
    }
}
