//! Clamp budgets and per-part token maxima.
//!
//! Adds to `budgets` `clamp_floor_tokens` (nullable BIGINT): for a budget with
//! `on_breach = 'clamp'`, the fewest output tokens a request may be clamped to; unset:
//! the default (16). Existing budgets are `block` or `warn` and leave it unset.
//!
//! Adds to `models` `max_image_tokens`, `max_audio_tokens` and `max_file_tokens`
//! (nullable BIGINT each): the most tokens one image, audio or file part of a request may
//! count for; unset: no cap. One `ALTER TABLE` per column, since SQLite accepts only one
//! change per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Budgets {
    Table,
    ClampFloorTokens,
}

#[derive(DeriveIden)]
enum Models {
    Table,
    MaxImageTokens,
    MaxAudioTokens,
    MaxFileTokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Budgets::Table).add_column(big_integer_null(Budgets::ClampFloorTokens)).take(),
            )
            .await?;
        for col in [Models::MaxImageTokens, Models::MaxAudioTokens, Models::MaxFileTokens] {
            manager.alter_table(Table::alter().table(Models::Table).add_column(big_integer_null(col)).take()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [Models::MaxFileTokens, Models::MaxAudioTokens, Models::MaxImageTokens] {
            manager.alter_table(Table::alter().table(Models::Table).drop_column(col).take()).await?;
        }
        manager.alter_table(Table::alter().table(Budgets::Table).drop_column(Budgets::ClampFloorTokens).take()).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // A half-added set of columns is worse than none.
        Some(true)
    }
}
