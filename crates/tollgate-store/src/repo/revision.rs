//! The configuration revision: the counter in `meta` every configuration write bumps by
//! exactly one inside its own transaction.

use super::Store;
use crate::entity::meta;
use crate::error::StoreError;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter};

/// The key of the configuration revision in the `meta` table.
const REVISION: &str = "revision";

pub(super) async fn read_revision<C: ConnectionTrait>(c: &C) -> Result<i64, StoreError> {
    meta::Entity::find_by_id(REVISION).one(c).await?.map(|m| m.value).ok_or_else(|| StoreError::Corrupt {
        kind: "meta",
        id: REVISION.to_owned(),
        detail: "the revision row is missing".to_owned(),
    })
}

/// Bumps the revision by one inside `txn` and returns the new value.
pub(crate) async fn bump_revision(txn: &DatabaseTransaction) -> Result<i64, StoreError> {
    // Scoped: ExprTrait's `min`/`max` would shadow `Ord`'s on integers elsewhere.
    use sea_orm::sea_query::ExprTrait as _;
    let res = meta::Entity::update_many()
        .col_expr(meta::Column::Value, Expr::col(meta::Column::Value).add(1))
        .filter(meta::Column::Name.eq(REVISION))
        .exec(txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(StoreError::Corrupt {
            kind: "meta",
            id: REVISION.to_owned(),
            detail: "the revision row is missing".to_owned(),
        });
    }
    read_revision(txn).await
}

impl Store {
    /// The current configuration revision (0 on a fresh database).
    pub async fn revision(&self) -> Result<i64, StoreError> {
        read_revision(&self.db()).await
    }
}
