//! tollgate-migrations: the database schema of the control plane, as ordered
//! sea-orm migrations.
//!
//! Owns: table, index and constraint definitions, and the seed row `meta.revision = 0`.
//! Every migration runs on SQLite and PostgreSQL alike.
//!
//! Does not own: entities, queries or any business rule; those live in `tollgate-store`,
//! which runs [`Migrator`] when it connects.
//!
//! Invariants: a released migration is never edited, only followed by a new one; every
//! migration runs inside a transaction on both backends, so a failed upgrade leaves the
//! schema as it was; timestamps are BIGINT unix milliseconds and money BIGINT nano-dollars.
#![forbid(unsafe_code)]

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_budget_controls;
mod m0003_ledger;
mod m0004_prices;
mod m0005_tags;
mod m0006_routing;
mod m0007_token_lifecycle;
mod m0008_ledger_identity;
mod m0009_clamp_and_part_maxima;
mod m0010_key_grace_secrets;

/// Brings [`Migrator::up`] and friends into scope for crates that do not depend on
/// sea-orm-migration themselves.
pub use sea_orm_migration::MigratorTrait;

/// Every migration of the tollgate schema, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_budget_controls::Migration),
            Box::new(m0003_ledger::Migration),
            Box::new(m0004_prices::Migration),
            Box::new(m0005_tags::Migration),
            Box::new(m0006_routing::Migration),
            Box::new(m0007_token_lifecycle::Migration),
            Box::new(m0008_ledger_identity::Migration),
            Box::new(m0009_clamp_and_part_maxima::Migration),
            Box::new(m0010_key_grace_secrets::Migration),
        ]
    }
}
