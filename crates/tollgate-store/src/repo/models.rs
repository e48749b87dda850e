//! The model catalog and its aliases. Models and aliases never share a name, and an alias
//! always names a model: both are checked inside the writing transaction.

use super::{Store, bump_revision};
use crate::convert::{alias_from_row, alias_to_row, model_from_row, model_to_row};
use crate::entity::{model, model_alias};
use crate::error::{StoreError, write_err};
use crate::records::{AliasRecord, ModelRecord};
use sea_orm::ActiveValue::NotSet;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder};

impl Store {
    /// Stores a catalog model as given; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if its id or name is taken, by a model or an alias.
    /// Deployments are not checked against the providers: the caller validates them.
    pub async fn create_model(&self, m: &ModelRecord) -> Result<i64, StoreError> {
        let row = model_to_row(m)?;
        let txn = self.begin_write().await?;
        if model_alias::Entity::find_by_id(m.name.as_str()).one(&txn).await?.is_some() {
            return Err(StoreError::Conflict { kind: "model", detail: format!("{:?} is an alias", m.name) });
        }
        model::Entity::insert(row.into_active_model()).exec_without_returning(&txn).await.map_err(|e| {
            let taken = format!("a model named {:?} already exists", m.name);
            write_err("model", e, &[(&["name"], taken)], format!("model id {} is taken", m.id))
        })?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// Replaces the prices, deployments and output cap of the model with `m.id` (every
    /// column but `id`, `name` and `created_at`); returns the new revision.
    ///
    /// [`StoreError::NotFound`] if no such model.
    pub async fn update_model(&self, m: &ModelRecord) -> Result<i64, StoreError> {
        let mut am = model_to_row(m)?.into_active_model().reset_all();
        am.id = NotSet;
        am.name = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = model::Entity::update_many().set(am).filter(model::Column::Id.eq(m.id.as_str())).exec(&txn).await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "model", id: m.id.to_string() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// Every model of the catalog, by public name.
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        model::Entity::find()
            .order_by_asc(model::Column::Name)
            .all(&self.db())
            .await?
            .into_iter()
            .map(model_from_row)
            .collect()
    }

    /// The model with id `id_or_name`, else the one with that public name.
    pub async fn find_model(&self, id_or_name: &str) -> Result<Option<ModelRecord>, StoreError> {
        let row = match model::Entity::find_by_id(id_or_name).one(&self.db()).await? {
            Some(m) => Some(m),
            None => model::Entity::find().filter(model::Column::Name.eq(id_or_name)).one(&self.db()).await?,
        };
        row.map(model_from_row).transpose()
    }

    /// Stores an alias; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if the name is taken by an alias or a model;
    /// [`StoreError::NotFound`] (kind `model`) if no model has the target's public name,
    /// which also refuses an alias to an alias (aliases and models never share a name).
    pub async fn create_alias(&self, a: &AliasRecord) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let model_named = |name: &str| model::Entity::find().filter(model::Column::Name.eq(name)).one(&txn);
        if model_named(&a.name).await?.is_some() {
            return Err(StoreError::Conflict { kind: "alias", detail: format!("a model named {:?} exists", a.name) });
        }
        if model_named(&a.target_model).await?.is_none() {
            return Err(StoreError::NotFound { kind: "model", id: a.target_model.clone() });
        }
        model_alias::Entity::insert(alias_to_row(a).into_active_model())
            .exec_without_returning(&txn)
            .await
            .map_err(|e| write_err("alias", e, &[], format!("an alias named {:?} already exists", a.name)))?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The alias named `name`.
    pub async fn find_alias(&self, name: &str) -> Result<Option<AliasRecord>, StoreError> {
        Ok(model_alias::Entity::find_by_id(name).one(&self.db()).await?.map(alias_from_row))
    }

    /// Every alias, by name.
    pub async fn list_aliases(&self) -> Result<Vec<AliasRecord>, StoreError> {
        let rows = model_alias::Entity::find().order_by_asc(model_alias::Column::Name).all(&self.db()).await?;
        Ok(rows.into_iter().map(alias_from_row).collect())
    }

    /// Deletes the alias named `name`; returns the new revision.
    ///
    /// [`StoreError::NotFound`] if no such alias.
    pub async fn delete_alias(&self, name: &str) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let res = model_alias::Entity::delete_many().filter(model_alias::Column::Name.eq(name)).exec(&txn).await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "alias", id: name.to_owned() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }
}
