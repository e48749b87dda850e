//! Budgets: create, get, filtered and paged listings, update, reset and delete. A
//! budget's `epoch` only ever moves through [`Store::reset_budget`], by one, in SQL.

use super::{Store, bump_revision};
use crate::convert::{budget_from_row, budget_to_row};
use crate::entity::budget;
use crate::error::{StoreError, write_err};
use crate::records::{BudgetFilter, BudgetRecord};
use sea_orm::ActiveValue::NotSet;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use tollgate_core::{BudgetId, ScopeKind, Timestamp};

impl Store {
    /// Stores a budget as given; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if its id is taken. The scope target is not checked
    /// (a principal is free-form).
    pub async fn create_budget(&self, b: &BudgetRecord) -> Result<i64, StoreError> {
        let row = budget_to_row(b)?;
        let txn = self.begin_write().await?;
        budget::Entity::insert(row.into_active_model())
            .exec_without_returning(&txn)
            .await
            .map_err(|e| write_err("budget", e, &[], format!("budget id {} is taken", b.id)))?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The budgets attached to one scope target, by id.
    pub async fn list_budgets_for(&self, scope: ScopeKind, scope_id: &str) -> Result<Vec<BudgetRecord>, StoreError> {
        budget::Entity::find()
            .filter(budget::Column::Scope.eq(scope.as_str()))
            .filter(budget::Column::ScopeId.eq(scope_id))
            .order_by_asc(budget::Column::Id)
            .all(&self.db())
            .await?
            .into_iter()
            .map(budget_from_row)
            .collect()
    }

    /// The budget with this id.
    pub async fn get_budget(&self, id: &BudgetId) -> Result<Option<BudgetRecord>, StoreError> {
        budget::Entity::find_by_id(id.as_str()).one(&self.db()).await?.map(budget_from_row).transpose()
    }

    /// The budgets matching `f`, by id ascending, at most `f.limit` (capped at
    /// [`BudgetFilter::MAX_LIMIT`]). Pass the last id of a page as `after` for the next.
    pub async fn list_budgets(&self, f: &BudgetFilter) -> Result<Vec<BudgetRecord>, StoreError> {
        let limit = f.limit.min(BudgetFilter::MAX_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut q = budget::Entity::find();
        if let Some(scope) = f.scope {
            q = q.filter(budget::Column::Scope.eq(scope.as_str()));
        }
        if let Some(scope_id) = &f.scope_id {
            q = q.filter(budget::Column::ScopeId.eq(scope_id.as_str()));
        }
        if let Some(after) = &f.after {
            q = q.filter(budget::Column::Id.gt(after.as_str()));
        }
        q.order_by_asc(budget::Column::Id)
            .limit(limit)
            .all(&self.db())
            .await?
            .into_iter()
            .map(budget_from_row)
            .collect()
    }

    /// Replaces the mutable columns of the budget with `b.id` — limit (money or tokens),
    /// window, breach behaviour, thresholds, temporary increase, `updated_at` — and
    /// returns the stored budget and the new revision.
    ///
    /// The scope, `created_at`, `epoch` and `last_reset_at` are never written: those two
    /// only move through [`Store::reset_budget`], so an update racing a reset cannot undo it.
    /// [`StoreError::NotFound`] if no such budget.
    pub async fn update_budget(&self, b: &BudgetRecord) -> Result<(BudgetRecord, i64), StoreError> {
        let mut am = budget_to_row(b)?.into_active_model().reset_all();
        am.id = NotSet;
        am.scope = NotSet;
        am.scope_id = NotSet;
        am.epoch = NotSet;
        am.last_reset_at = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = budget::Entity::update_many()
            .set(am)
            .filter(budget::Column::Id.eq(b.id.as_str()))
            .exec(&txn)
            .await
            .map_err(|e| write_err("budget", e, &[], format!("budget {} could not be updated", b.id)))?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "budget", id: b.id.to_string() });
        }
        let stored = read_budget_in(&txn, &b.id).await?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((stored, rev))
    }

    /// Starts the budget's window afresh everywhere: bumps its `epoch` by one (atomically,
    /// in SQL) and sets `last_reset_at` and `updated_at` to `at`; returns the stored
    /// budget and the new revision.
    ///
    /// [`StoreError::NotFound`] if no such budget; [`StoreError::Conflict`] in the
    /// theoretical case that the epoch cannot grow any more.
    pub async fn reset_budget(&self, id: &BudgetId, at: Timestamp) -> Result<(BudgetRecord, i64), StoreError> {
        use sea_orm::sea_query::ExprTrait as _;
        let txn = self.begin_write().await?;
        let res = budget::Entity::update_many()
            .col_expr(budget::Column::Epoch, Expr::col(budget::Column::Epoch).add(1))
            .col_expr(budget::Column::UpdatedAt, Expr::value(at.unix_millis()))
            .col_expr(budget::Column::LastResetAt, Expr::value(at.unix_millis()))
            .filter(budget::Column::Id.eq(id.as_str()))
            .filter(budget::Column::Epoch.lt(i32::MAX))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return match budget::Entity::find_by_id(id.as_str()).one(&txn).await? {
                None => Err(StoreError::NotFound { kind: "budget", id: id.to_string() }),
                Some(_) => Err(StoreError::Conflict {
                    kind: "budget",
                    detail: format!("budget {id} has been reset too often; create a new one"),
                }),
            };
        }
        let stored = read_budget_in(&txn, id).await?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((stored, rev))
    }

    /// Deletes the budget with this id; returns the new revision.
    ///
    /// [`StoreError::NotFound`] if no such budget.
    pub async fn delete_budget(&self, id: &BudgetId) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let res = budget::Entity::delete_many().filter(budget::Column::Id.eq(id.as_str())).exec(&txn).await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "budget", id: id.to_string() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }
}

/// The budget `id` as seen inside `txn`, which has just written it.
async fn read_budget_in(txn: &DatabaseTransaction, id: &BudgetId) -> Result<BudgetRecord, StoreError> {
    let row = budget::Entity::find_by_id(id.as_str()).one(txn).await?;
    let row = row.ok_or_else(|| StoreError::NotFound { kind: "budget", id: id.to_string() })?;
    budget_from_row(row)
}
