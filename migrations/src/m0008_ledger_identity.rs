//! The ledger's request identity and pricing flag (issue 15).
//!
//! Adds to `ledger_entries` `client_request_id` (TEXT, nullable: the caller's own
//! `x-request-id`, kept for correlation and filtering, never a key; `request_id` stays
//! the gateway's own id and the primary key) with the index
//! `ix_ledger_entries_client_request_id`, and `priced` (BOOLEAN, default true: false when
//! the served model had no price). Rows written before this migration read as priced,
//! without a caller id.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    ClientRequestId,
    Priced,
}

/// The index of exact-match lookups by the caller's id.
const CLIENT_REQUEST_ID_INDEX: &str = "ix_ledger_entries_client_request_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter().table(LedgerEntries::Table).add_column(text_null(LedgerEntries::ClientRequestId)).take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LedgerEntries::Table)
                    .add_column(boolean(LedgerEntries::Priced).default(true).take())
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(CLIENT_REQUEST_ID_INDEX)
                    .table(LedgerEntries::Table)
                    .col(LedgerEntries::ClientRequestId)
                    .take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(CLIENT_REQUEST_ID_INDEX).table(LedgerEntries::Table).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(LedgerEntries::Table).drop_column(LedgerEntries::Priced).take())
            .await?;
        manager
            .alter_table(Table::alter().table(LedgerEntries::Table).drop_column(LedgerEntries::ClientRequestId).take())
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // A caller-id column without its index would turn each filtered read into a scan.
        Some(true)
    }
}
