//! Every rotated-out secret of a key keeps its own grace (issue 17).
//!
//! Adds to `virtual_keys` `grace_secrets_json` (TEXT, default `'[]'`): a JSON array of
//! `{"key_hash": <hex>, "valid_until_ms": <unix ms>}`, oldest rotation first, at most 8
//! entries. The columns `previous_key_hash` / `previous_valid_until` stay: the store
//! mirrors the list's last entry into them (what a control plane predating the list
//! reads), and reading a row merges a previous secret found only there into the list.
//! So rows written before this migration, or by an older control plane after it, keep
//! their one previous secret until its end; no data is copied here.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum VirtualKeys {
    Table,
    GraceSecretsJson,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(VirtualKeys::Table)
                    .add_column(text(VirtualKeys::GraceSecretsJson).default("[]").take())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(VirtualKeys::Table).drop_column(VirtualKeys::GraceSecretsJson).take())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
