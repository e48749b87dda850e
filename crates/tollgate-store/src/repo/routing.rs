//! Routing policies: at most one per scope; an update replaces the policy, never its scope.

use super::{Store, bump_revision};
use crate::convert::{routing_policy_from_row, routing_policy_to_row};
use crate::entity::routing_policy;
use crate::error::{StoreError, write_err};
use crate::records::RoutingPolicyRecord;
use sea_orm::ActiveValue::NotSet;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder};

impl Store {
    /// Stores a routing policy as given; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if its id is taken or its scope already has a policy. The
    /// scope target is not checked: the caller validates it.
    pub async fn create_routing_policy(&self, p: &RoutingPolicyRecord) -> Result<i64, StoreError> {
        let row = routing_policy_to_row(p)?;
        let txn = self.begin_write().await?;
        routing_policy::Entity::insert(row.into_active_model()).exec_without_returning(&txn).await.map_err(|e| {
            let scope = match &p.scope_id {
                Some(id) => format!("{} {id}", p.scope),
                None => p.scope.clone(),
            };
            let taken = format!("{scope} already has a routing policy");
            write_err("routing policy", e, &[(&["scope_id"], taken)], format!("routing policy id {} is taken", p.id))
        })?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The routing policy with this id.
    pub async fn get_routing_policy(&self, id: &str) -> Result<Option<RoutingPolicyRecord>, StoreError> {
        routing_policy::Entity::find_by_id(id).one(&self.db()).await?.map(routing_policy_from_row).transpose()
    }

    /// Every routing policy, by id.
    pub async fn list_routing_policies(&self) -> Result<Vec<RoutingPolicyRecord>, StoreError> {
        routing_policy::Entity::find()
            .order_by_asc(routing_policy::Column::Id)
            .all(&self.db())
            .await?
            .into_iter()
            .map(routing_policy_from_row)
            .collect()
    }

    /// Replaces the policy and `updated_at` of the routing policy with `p.id` (its scope
    /// and `created_at` are never written); returns the stored policy and the new revision.
    ///
    /// [`StoreError::NotFound`] if no such policy.
    pub async fn update_routing_policy(
        &self,
        p: &RoutingPolicyRecord,
    ) -> Result<(RoutingPolicyRecord, i64), StoreError> {
        let mut am = routing_policy_to_row(p)?.into_active_model().reset_all();
        am.id = NotSet;
        am.scope = NotSet;
        am.scope_id = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = routing_policy::Entity::update_many()
            .set(am)
            .filter(routing_policy::Column::Id.eq(p.id.as_str()))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "routing policy", id: p.id.clone() });
        }
        let row = routing_policy::Entity::find_by_id(p.id.as_str()).one(&txn).await?;
        let stored = routing_policy_from_row(
            row.ok_or_else(|| StoreError::NotFound { kind: "routing policy", id: p.id.clone() })?,
        )?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((stored, rev))
    }

    /// Deletes the routing policy with this id; returns the new revision.
    ///
    /// [`StoreError::NotFound`] if no such policy.
    pub async fn delete_routing_policy(&self, id: &str) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let res = routing_policy::Entity::delete_many().filter(routing_policy::Column::Id.eq(id)).exec(&txn).await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "routing policy", id: id.to_owned() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }
}
