//! Virtual keys: create (with an optional budget, atomically), get, filtered and paged
//! listings, and updates (rotate, revoke, patch).

use super::{Store, bump_revision};
use crate::convert::{budget_to_row, key_from_row, key_to_row};
use crate::entity::{budget, project, virtual_key};
use crate::error::{StoreError, write_err};
use crate::records::{BudgetRecord, KeyFilter, KeyRecord};
use sea_orm::ActiveValue::NotSet;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect};
use tollgate_core::KeyId;

/// Rows fetched per round when `list_keys` filters metadata in memory.
const KEY_SCAN_BATCH: u64 = 500;

impl Store {
    /// Stores a virtual key and, when given, its budget, in one transaction; returns the
    /// new revision (bumped once).
    ///
    /// [`StoreError::NotFound`] if the project does not exist; [`StoreError::Conflict`]
    /// if the key id, key hash or budget id is taken. On any error nothing is stored.
    pub async fn create_key(&self, k: &KeyRecord, budget: Option<&BudgetRecord>) -> Result<i64, StoreError> {
        let key_row = key_to_row(k)?;
        let budget_row = budget.map(budget_to_row).transpose()?;
        let txn = self.begin_write().await?;
        if project::Entity::find_by_id(k.project_id.as_str()).one(&txn).await?.is_none() {
            return Err(StoreError::NotFound { kind: "project", id: k.project_id.to_string() });
        }
        virtual_key::Entity::insert(key_row.into_active_model())
            .exec_without_returning(&txn)
            .await
            .map_err(|e| key_write_err(e, k))?;
        if let Some(row) = budget_row {
            let id = row.id.clone();
            budget::Entity::insert(row.into_active_model())
                .exec_without_returning(&txn)
                .await
                .map_err(|e| write_err("budget", e, &[], format!("budget id {id} is taken")))?;
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The key with this id.
    pub async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        virtual_key::Entity::find_by_id(id.as_str()).one(&self.db()).await?.map(key_from_row).transpose()
    }

    /// The keys matching `f`, by id ascending, at most `f.limit` (capped at
    /// [`KeyFilter::MAX_LIMIT`]). Pass the last id of a page as `after` for the next.
    pub async fn list_keys(&self, f: &KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
        let limit = f.limit.min(KeyFilter::MAX_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        if f.metadata.is_empty() && f.tag.is_none() {
            return key_query(f, f.after.as_ref().map(KeyId::as_str))
                .limit(limit)
                .all(&self.db())
                .await?
                .into_iter()
                .map(key_from_row)
                .collect();
        }
        // Metadata and tags are JSON columns whose query syntax differs per backend: scan in
        // id order and filter here, resuming after the last row seen, until the page is full.
        let batch = limit.max(KEY_SCAN_BATCH);
        let mut out = Vec::new();
        let mut cursor = f.after.as_ref().map(|a| a.as_str().to_owned());
        loop {
            let rows = key_query(f, cursor.as_deref()).limit(batch).all(&self.db()).await?;
            let exhausted = (rows.len() as u64) < batch;
            for row in rows {
                cursor = Some(row.id.clone());
                let rec = key_from_row(row)?;
                if f.metadata.iter().all(|(k, v)| rec.metadata.get(k) == Some(v))
                    && f.tag.as_ref().is_none_or(|t| rec.tags.contains(t))
                {
                    out.push(rec);
                    if out.len() as u64 == limit {
                        return Ok(out);
                    }
                }
            }
            if exhausted {
                return Ok(out);
            }
        }
    }

    /// Replaces every mutable column of the key with `k.id` (all but `project_id` and
    /// `created_at`); returns the new revision. Used for rotate, revoke and patch.
    ///
    /// [`StoreError::NotFound`] if no such key; [`StoreError::Conflict`] if the new key
    /// hash belongs to another key.
    pub async fn update_key(&self, k: &KeyRecord) -> Result<i64, StoreError> {
        let mut am = key_to_row(k)?.into_active_model().reset_all();
        am.id = NotSet;
        am.project_id = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = virtual_key::Entity::update_many()
            .set(am)
            .filter(virtual_key::Column::Id.eq(k.id.as_str()))
            .exec(&txn)
            .await
            .map_err(|e| key_write_err(e, k))?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "key", id: k.id.to_string() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }
}

/// Applies the SQL-side conditions of a key filter.
fn key_query(f: &KeyFilter, after: Option<&str>) -> sea_orm::Select<virtual_key::Entity> {
    let mut q = virtual_key::Entity::find();
    if let Some(p) = &f.project_id {
        q = q.filter(virtual_key::Column::ProjectId.eq(p.as_str()));
    }
    if let Some(t) = &f.team_id {
        q = q.filter(
            virtual_key::Column::ProjectId.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(project::Column::Id)
                    .from(project::Entity)
                    .and_where(project::Column::TeamId.eq(t.as_str()))
                    .to_owned(),
            ),
        );
    }
    if let Some(p) = &f.principal {
        q = q.filter(virtual_key::Column::Principal.eq(p.as_str()));
    }
    if let Some(s) = &f.status {
        q = q.filter(virtual_key::Column::Status.eq(s.as_str()));
    }
    if let Some(a) = after {
        q = q.filter(virtual_key::Column::Id.gt(a));
    }
    q.order_by_asc(virtual_key::Column::Id)
}

/// A failed key insert or update: a taken hash is the likely conflict.
fn key_write_err(e: sea_orm::DbErr, k: &KeyRecord) -> StoreError {
    write_err(
        "key",
        e,
        &[(&["key_hash"], "another key already has this key hash".to_owned())],
        format!("key id {} is taken", k.id),
    )
}
