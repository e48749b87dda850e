//! The ledger: one row per request served, the record platforms bill from, and the
//! instant of a budget's last manual reset.
//!
//! Adds the table `ledger_entries`, keyed by `request_id` so a replayed entry is stored
//! once, with an index per budget scope on `(scope column, at_ms)`: the one query the
//! gateway runs at start-up sums one scope's entries over a time range. Token counts,
//! cost and latency are BIGINT; tags, metadata and attempts are JSON text.
//!
//! Adds to `budgets` the nullable `last_reset_at` (BIGINT unix ms): spend before it does
//! not count when counters are rebuilt from the ledger.

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    RequestId,
    AtMs,
    KeyId,
    KeyName,
    Principal,
    ProjectId,
    TeamId,
    OrgId,
    RequestedModel,
    ServedModel,
    Provider,
    InputTokens,
    OutputTokens,
    CachedInputTokens,
    ReasoningTokens,
    CostNanos,
    Status,
    LatencyMs,
    UsageSource,
    Stream,
    TagsJson,
    MetadataJson,
    AttemptsJson,
}

#[derive(DeriveIden)]
enum Budgets {
    Table,
    LastResetAt,
}

/// The scope columns, each indexed with `at_ms` as `ix_ledger_entries_<column>_at_ms`.
const SCOPE_COLUMNS: [&str; 5] = ["key_id", "principal", "project_id", "team_id", "org_id"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut request_id = text(LedgerEntries::RequestId);
        // Byte order, like every other text key (see m0001's `text_pk`).
        if manager.get_database_backend() == DbBackend::Postgres {
            request_id.extra("COLLATE \"C\"");
        }
        manager
            .create_table(
                Table::create()
                    .table(LedgerEntries::Table)
                    .col(request_id.primary_key())
                    .col(big_integer(LedgerEntries::AtMs))
                    .col(text(LedgerEntries::KeyId))
                    .col(text_null(LedgerEntries::KeyName))
                    .col(text_null(LedgerEntries::Principal))
                    .col(text(LedgerEntries::ProjectId))
                    .col(text_null(LedgerEntries::TeamId))
                    .col(text_null(LedgerEntries::OrgId))
                    .col(text(LedgerEntries::RequestedModel))
                    .col(text(LedgerEntries::ServedModel))
                    .col(text(LedgerEntries::Provider))
                    .col(big_integer(LedgerEntries::InputTokens))
                    .col(big_integer(LedgerEntries::OutputTokens))
                    .col(big_integer(LedgerEntries::CachedInputTokens))
                    .col(big_integer(LedgerEntries::ReasoningTokens))
                    .col(big_integer(LedgerEntries::CostNanos))
                    .col(integer(LedgerEntries::Status))
                    .col(big_integer(LedgerEntries::LatencyMs))
                    .col(text(LedgerEntries::UsageSource))
                    .col(boolean(LedgerEntries::Stream))
                    .col(text(LedgerEntries::TagsJson))
                    .col(text(LedgerEntries::MetadataJson))
                    .col(text(LedgerEntries::AttemptsJson))
                    .take(),
            )
            .await?;
        for col in SCOPE_COLUMNS {
            manager
                .create_index(
                    Index::create()
                        .name(format!("ix_ledger_entries_{col}_at_ms"))
                        .table(LedgerEntries::Table)
                        .col(Alias::new(col))
                        .col(LedgerEntries::AtMs)
                        .take(),
                )
                .await?;
        }
        manager
            .alter_table(Table::alter().table(Budgets::Table).add_column(big_integer_null(Budgets::LastResetAt)).take())
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Budgets::Table).drop_column(Budgets::LastResetAt).take()).await?;
        manager.drop_table(Table::drop().table(LedgerEntries::Table).take()).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // A ledger table without its indexes, or without the budget column, is worse than none.
        Some(true)
    }
}
