//! Key tags: a list of labels per virtual key (`env:prod`, `feature:chat`), copied to
//! every ledger entry the key makes, and a side table usage is filtered and grouped by.
//!
//! Adds to `virtual_keys` `tags_json` (TEXT, default `'[]'`): a JSON array of strings;
//! existing keys have none.
//!
//! Adds the table `ledger_tags(request_id, tag)`, primary key both, with an index on
//! `tag`: one row per tag of each ledger entry, written in the same transaction as the
//! entry. The entry's own `tags_json` stays the record of what was billed; this table
//! exists so "usage of tag X" and "usage grouped by tag" are one indexed join that reads
//! the same on SQLite and PostgreSQL, with no JSON functions that differ per backend.
//! Entries written before this migration have no rows here (they carried no tags).

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum VirtualKeys {
    Table,
    TagsJson,
}

#[derive(DeriveIden)]
enum LedgerTags {
    Table,
    RequestId,
    Tag,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(VirtualKeys::Table)
                    .add_column(text(VirtualKeys::TagsJson).default("[]").take())
                    .take(),
            )
            .await?;
        let mut request_id = text(LedgerTags::RequestId);
        let mut tag = text(LedgerTags::Tag);
        // Byte order, like every other text key (see m0001's `text_pk`), so groups and
        // the primary key agree across backends.
        if manager.get_database_backend() == DbBackend::Postgres {
            request_id.extra("COLLATE \"C\"");
            tag.extra("COLLATE \"C\"");
        }
        manager
            .create_table(
                Table::create()
                    .table(LedgerTags::Table)
                    .col(request_id)
                    .col(tag)
                    .primary_key(Index::create().col(LedgerTags::RequestId).col(LedgerTags::Tag))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("ix_ledger_tags_tag").table(LedgerTags::Table).col(LedgerTags::Tag).take(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(LedgerTags::Table).take()).await?;
        manager.alter_table(Table::alter().table(VirtualKeys::Table).drop_column(VirtualKeys::TagsJson).take()).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        // A tag column without its side table (or the reverse) is worse than neither.
        Some(true)
    }
}
