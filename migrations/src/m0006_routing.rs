//! Routing configuration: model aliases, routing policies, and per-deployment priority and
//! weight.
//!
//! Adds the table `model_aliases(name PK, target_model, created_at)`: another public name
//! for a catalog model. Aliases are one level deep (the target is a model, never an alias)
//! and never share a name with a model; the store enforces both in the writing
//! transaction, since SQL cannot say "not a row of the other table" portably.
//!
//! Adds the table `routing_policies(id PK, scope, scope_id, policy_json, created_at,
//! updated_at)`: one policy per scope (`organization`, `team`, `project`, `virtual_key`, or
//! `default` with a NULL `scope_id`). The uniqueness index is on `(scope,
//! COALESCE(scope_id, ''))` rather than `(scope, scope_id)`: both backends treat NULLs as
//! distinct in a plain unique index, which would allow several default policies.
//!
//! Per-deployment `priority` and `weight` need no DDL: deployments are JSON in
//! `models.deployments_json`, and rows written before this migration read with the
//! defaults (priority 0, weight 1).

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ModelAliases {
    Table,
    Name,
    TargetModel,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RoutingPolicies {
    Table,
    Id,
    Scope,
    ScopeId,
    PolicyJson,
    CreatedAt,
    UpdatedAt,
}

/// A TEXT primary key in byte order on PostgreSQL, like m0001's `text_pk`.
fn text_pk<T: IntoIden>(backend: DbBackend, col: T) -> ColumnDef {
    let mut def = text(col);
    if backend == DbBackend::Postgres {
        def.extra("COLLATE \"C\"");
    }
    def.primary_key().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .create_table(
                Table::create()
                    .table(ModelAliases::Table)
                    .col(text_pk(backend, ModelAliases::Name))
                    .col(text(ModelAliases::TargetModel))
                    .col(big_integer(ModelAliases::CreatedAt))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoutingPolicies::Table)
                    .col(text_pk(backend, RoutingPolicies::Id))
                    .col(text(RoutingPolicies::Scope))
                    .col(text_null(RoutingPolicies::ScopeId))
                    .col(text(RoutingPolicies::PolicyJson))
                    .col(big_integer(RoutingPolicies::CreatedAt))
                    .col(big_integer(RoutingPolicies::UpdatedAt))
                    .take(),
            )
            .await?;
        // Same SQL on both backends; the name holds `scope_id` so a violation maps to the
        // store's "scope taken" conflict on either.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_routing_policies_scope_scope_id \
                 ON routing_policies (scope, COALESCE(scope_id, ''))",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RoutingPolicies::Table).take()).await?;
        manager.drop_table(Table::drop().table(ModelAliases::Table).take()).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
