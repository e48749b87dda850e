//! Provider credentials: create, find, list, update, and the master key they are
//! encrypted under (recording it, and re-encrypting every credential in one transaction).

use super::{Store, bump_revision};
use crate::convert::{provider_from_row, provider_to_row};
use crate::entity::{meta, provider};
use crate::error::{StoreError, write_err};
use crate::records::ProviderRecord;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder};

/// The key in `meta` of the id of the master key every provider credential is encrypted
/// under (absent on a database that predates it).
const MASTER_KEY_ID: &str = "master_key_id";

impl Store {
    /// Stores a provider credential as given; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if its id or name is taken.
    pub async fn create_provider(&self, p: &ProviderRecord) -> Result<i64, StoreError> {
        let row = provider_to_row(p)?;
        let txn = self.begin_write().await?;
        provider::Entity::insert(row.into_active_model()).exec_without_returning(&txn).await.map_err(|e| {
            let taken = format!("a provider named {:?} already exists", p.name);
            write_err("provider", e, &[(&["name"], taken)], format!("provider id {} is taken", p.id))
        })?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The provider with id `id_or_name`, else the one with that name.
    pub async fn find_provider(&self, id_or_name: &str) -> Result<Option<ProviderRecord>, StoreError> {
        let row = match provider::Entity::find_by_id(id_or_name).one(&self.db()).await? {
            Some(m) => Some(m),
            None => provider::Entity::find().filter(provider::Column::Name.eq(id_or_name)).one(&self.db()).await?,
        };
        row.map(provider_from_row).transpose()
    }

    /// Every provider credential, by name.
    pub async fn list_providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        provider::Entity::find()
            .order_by_asc(provider::Column::Name)
            .all(&self.db())
            .await?
            .into_iter()
            .map(provider_from_row)
            .collect()
    }

    /// Replaces every mutable column of the provider `p.id` (all but `id`, `name`, `kind`
    /// and `created_at`); returns the new revision.
    ///
    /// [`StoreError::NotFound`] if there is no such provider.
    pub async fn update_provider(&self, p: &ProviderRecord) -> Result<i64, StoreError> {
        use sea_orm::ActiveValue::NotSet;
        let mut am = provider_to_row(p)?.into_active_model().reset_all();
        am.id = NotSet;
        am.name = NotSet;
        am.kind = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = provider::Entity::update_many()
            .set(am)
            .filter(provider::Column::Id.eq(p.id.as_str()))
            .exec(&txn)
            .await
            .map_err(|e| write_err("provider", e, &[], format!("provider {} could not be updated", p.id)))?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "provider", id: p.id.to_string() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The id of the master key the provider credentials are encrypted under, if one was
    /// recorded. The store does not interpret it.
    pub async fn master_key_id(&self) -> Result<Option<i64>, StoreError> {
        Ok(meta::Entity::find_by_id(MASTER_KEY_ID).one(&self.db()).await?.map(|m| m.value))
    }

    /// Records `id` as the master key id unless one is recorded already; returns the one
    /// recorded afterwards. Not a configuration change: the revision stays.
    pub async fn adopt_master_key_id(&self, id: i64) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        if let Some(m) = meta::Entity::find_by_id(MASTER_KEY_ID).one(&txn).await? {
            return Ok(m.value);
        }
        meta::Entity::insert(meta::Model { name: MASTER_KEY_ID.to_owned(), value: id }.into_active_model())
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(id)
    }

    /// Replaces every provider's `api_key_ciphertext` with what `reencrypt` makes of it
    /// and records `new_key_id` as the master key id, all in one transaction that also
    /// bumps the revision: either every row moves to the new key or none does.
    ///
    /// `check_key_id` sees the recorded master key id (inside the transaction, so no
    /// writer can slip in between) and refuses by returning an error; any error from it
    /// or from `reencrypt` rolls everything back. Returns the number of rows rewritten and
    /// the new revision.
    pub async fn reencrypt_provider_credentials<E, C, F>(
        &self,
        new_key_id: i64,
        check_key_id: C,
        mut reencrypt: F,
    ) -> Result<(u64, i64), E>
    where
        E: From<StoreError>,
        C: FnOnce(Option<i64>) -> Result<(), E>,
        F: FnMut(&ProviderRecord) -> Result<String, E>,
    {
        let txn = self.begin_write().await?;
        // First, so that on PostgreSQL the row lock on `meta` serializes this with every
        // other writer before anything is read.
        let rev = bump_revision(&txn).await?;
        let recorded = meta::Entity::find_by_id(MASTER_KEY_ID).one(&txn).await.map_err(StoreError::from)?;
        check_key_id(recorded.as_ref().map(|m| m.value))?;
        let rows =
            provider::Entity::find().order_by_asc(provider::Column::Id).all(&txn).await.map_err(StoreError::from)?;
        let mut count = 0u64;
        for row in rows {
            let id = row.id.clone();
            let ciphertext = reencrypt(&provider_from_row(row)?)?;
            let res = provider::Entity::update_many()
                .col_expr(provider::Column::ApiKeyCiphertext, Expr::value(ciphertext))
                .filter(provider::Column::Id.eq(id.as_str()))
                .exec(&txn)
                .await
                .map_err(StoreError::from)?;
            count += res.rows_affected;
        }
        if recorded.is_some() {
            meta::Entity::update_many()
                .col_expr(meta::Column::Value, Expr::value(new_key_id))
                .filter(meta::Column::Name.eq(MASTER_KEY_ID))
                .exec(&txn)
                .await
                .map_err(StoreError::from)?;
        } else {
            let row = meta::Model { name: MASTER_KEY_ID.to_owned(), value: new_key_id }.into_active_model();
            meta::Entity::insert(row).exec_without_returning(&txn).await.map_err(StoreError::from)?;
        }
        txn.commit().await.map_err(StoreError::from)?;
        Ok((count, rev))
    }
}
