//! Prices and cache writes: what a model's price is made of and where it came from, and
//! the prompt tokens written to a provider's cache on each request.
//!
//! Adds to `models`:
//! - `cache_write_per_mtok` (nullable BIGINT nano-dollars per 1M tokens): the price of
//!   prompt tokens written to the provider's cache (Anthropic's cache creation); the
//!   input price when unset;
//! - `price_source` (nullable TEXT): `explicit` when an operator gave the price,
//!   `catalog:<version>` when it came from the shipped price catalog; unset for a model
//!   without a price (and for models priced before this migration).
//!
//! Adds to `ledger_entries` `cache_write_tokens` (BIGINT, default 0), a subset of
//! `input_tokens`; existing rows wrote nothing to a cache as far as the ledger knows.
//! One `ALTER TABLE` per column, since SQLite accepts only one change per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Models {
    Table,
    CacheWritePerMtok,
    PriceSource,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    CacheWriteTokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let models = |col: ColumnDef| Table::alter().table(Models::Table).add_column(col).take();
        manager.alter_table(models(big_integer_null(Models::CacheWritePerMtok))).await?;
        manager.alter_table(models(text_null(Models::PriceSource))).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LedgerEntries::Table)
                    .add_column(big_integer(LedgerEntries::CacheWriteTokens).default(0).take())
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(LedgerEntries::Table).drop_column(LedgerEntries::CacheWriteTokens).take())
            .await?;
        for col in [Models::PriceSource, Models::CacheWritePerMtok] {
            manager.alter_table(Table::alter().table(Models::Table).drop_column(col).take()).await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // A half-added set of columns is worse than none.
        Some(true)
    }
}
