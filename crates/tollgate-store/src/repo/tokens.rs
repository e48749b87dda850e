//! Admin tokens of the management API: stored by hash (never the token), listed, found by
//! hash, and revoked once.

use super::{Store, bump_revision};
use crate::convert::{admin_token_from_row, admin_token_to_row};
use crate::entity::{admin_token, project, team};
use crate::error::{StoreError, write_err};
use crate::records::AdminTokenRecord;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder};
use tollgate_core::{Timestamp, TokenId};

impl Store {
    /// Stores an admin token (its hash, never the token); returns the new revision.
    ///
    /// [`StoreError::NotFound`] if the team or project does not exist;
    /// [`StoreError::Conflict`] if the id or hash is taken.
    pub async fn create_admin_token(&self, rec: &AdminTokenRecord) -> Result<i64, StoreError> {
        let row = admin_token_to_row(rec)?;
        let txn = self.begin_write().await?;
        if let Some(t) = &rec.team_id
            && team::Entity::find_by_id(t.as_str()).one(&txn).await?.is_none()
        {
            return Err(StoreError::NotFound { kind: "team", id: t.to_string() });
        }
        if let Some(p) = &rec.project_id
            && project::Entity::find_by_id(p.as_str()).one(&txn).await?.is_none()
        {
            return Err(StoreError::NotFound { kind: "project", id: p.to_string() });
        }
        admin_token::Entity::insert(row.into_active_model()).exec_without_returning(&txn).await.map_err(|e| {
            let taken = "an admin token with this hash already exists".to_owned();
            write_err("admin token", e, &[(&["token_hash"], taken)], format!("admin token id {} is taken", rec.id))
        })?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The admin token with this id, revoked or not.
    pub async fn get_admin_token(&self, id: &TokenId) -> Result<Option<AdminTokenRecord>, StoreError> {
        admin_token::Entity::find_by_id(id.as_str()).one(&self.db()).await?.map(admin_token_from_row).transpose()
    }

    /// Every admin token, revoked ones included, ordered by id (oldest first: ids are
    /// time-ordered). Tokens are few (one per backend or operator), so there is no paging.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        admin_token::Entity::find()
            .order_by_asc(admin_token::Column::Id)
            .all(&self.db())
            .await?
            .into_iter()
            .map(admin_token_from_row)
            .collect()
    }

    /// Marks the token revoked at `at` unless it already is; returns the stored token and
    /// the new revision (`None` when it was already revoked and nothing changed).
    ///
    /// [`StoreError::NotFound`] if no such token.
    pub async fn revoke_admin_token(
        &self,
        id: &TokenId,
        at: Timestamp,
    ) -> Result<(AdminTokenRecord, Option<i64>), StoreError> {
        let txn = self.begin_write().await?;
        let res = admin_token::Entity::update_many()
            .col_expr(admin_token::Column::RevokedAt, Expr::value(at.unix_millis()))
            .filter(admin_token::Column::Id.eq(id.as_str()))
            .filter(admin_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let row = admin_token::Entity::find_by_id(id.as_str())
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::NotFound { kind: "admin token", id: id.to_string() })?;
        let rev = if res.rows_affected > 0 { Some(bump_revision(&txn).await?) } else { None };
        txn.commit().await?;
        Ok((admin_token_from_row(row)?, rev))
    }

    /// The admin token with this hash, revoked or not (the caller checks `revoked_at`).
    pub async fn find_admin_token_by_hash(&self, token_hash: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        admin_token::Entity::find()
            .filter(admin_token::Column::TokenHash.eq(token_hash))
            .one(&self.db())
            .await?
            .map(admin_token_from_row)
            .transpose()
    }
}
