//! Budget controls: token limits, manual resets and temporary increases.
//!
//! Adds to `budgets`:
//! - `limit_tokens` (nullable BIGINT): when set, the budget counts tokens (input + output)
//!   and `limit_nanos` is ignored;
//! - `epoch` (INTEGER, default 0): bumped by a manual reset; gateways key their counters
//!   by `(id, epoch)`, so a new epoch starts empty everywhere;
//! - `temporary_increase` (BIGINT, default 0, in the limit's unit) and
//!   `temporary_increase_until` (nullable BIGINT unix ms): an increase that stops counting
//!   at that instant.
//!
//! Existing rows become money budgets at epoch 0 without an increase. One `ALTER TABLE`
//! per column, since SQLite accepts only one change per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Budgets {
    Table,
    LimitTokens,
    Epoch,
    TemporaryIncrease,
    TemporaryIncreaseUntil,
}

fn add(col: ColumnDef) -> TableAlterStatement {
    Table::alter().table(Budgets::Table).add_column(col).take()
}

fn drop_col<T: IntoIden>(col: T) -> TableAlterStatement {
    Table::alter().table(Budgets::Table).drop_column(col).take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(add(big_integer_null(Budgets::LimitTokens))).await?;
        manager.alter_table(add(integer(Budgets::Epoch).default(0).take())).await?;
        manager.alter_table(add(big_integer(Budgets::TemporaryIncrease).default(0).take())).await?;
        manager.alter_table(add(big_integer_null(Budgets::TemporaryIncreaseUntil))).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [Budgets::TemporaryIncreaseUntil, Budgets::TemporaryIncrease, Budgets::Epoch, Budgets::LimitTokens] {
            manager.alter_table(drop_col(col)).await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // A half-added set of columns is worse than none.
        Some(true)
    }
}
