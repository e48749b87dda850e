//! Admin token lifecycle: tokens minted through the API may expire, and are listed with
//! a display hint instead of their secret.
//!
//! Adds to `admin_tokens` `expires_at` (BIGINT unix ms, nullable: never) and `hint`
//! (TEXT, default `''`: the first characters of the token, enough to tell tokens apart
//! in a list, far too few to guess one).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum AdminTokens {
    Table,
    ExpiresAt,
    Hint,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter().table(AdminTokens::Table).add_column(big_integer_null(AdminTokens::ExpiresAt)).take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(AdminTokens::Table).add_column(text(AdminTokens::Hint).default("").take()).take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(AdminTokens::Table).drop_column(AdminTokens::Hint).take()).await?;
        manager
            .alter_table(Table::alter().table(AdminTokens::Table).drop_column(AdminTokens::ExpiresAt).take())
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
