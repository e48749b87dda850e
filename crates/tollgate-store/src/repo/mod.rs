//! [`Store`]: the connection and its transactions; the repository operations live in one
//! module per aggregate below, each an `impl Store` block.
//!
//! Each configuration write is one transaction that ends by bumping `meta.revision`
//! (`revision.rs`). On SQLite write transactions start `IMMEDIATE`, so they take the write
//! lock up front and wait (`busy_timeout`) instead of failing half-way when another writer
//! got there first. On PostgreSQL the `UPDATE meta` row lock serializes writers, so
//! revision numbers are committed in order.

mod audit;
mod budgets;
mod keys;
mod ledger;
mod models;
mod principals;
mod providers;
mod revision;
mod routing;
mod snapshot;
mod tenancy;
#[cfg(feature = "test-util")]
mod testing;
mod tokens;
pub(crate) mod usage;

use crate::error::StoreError;
use sea_orm::{
    AccessMode, ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, IsolationLevel,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use std::time::Duration;
use tollgate_migrations::{Migrator, MigratorTrait};

pub(crate) use revision::bump_revision;

/// Connections to a SQLite file: WAL lets readers run beside the single writer.
const SQLITE_FILE_POOL: u32 = 4;
/// How long a SQLite statement waits for another connection's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The control plane's database. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
}

impl std::fmt::Debug for Store {
    // Only the backend: connection options can hold a database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.db.get_database_backend()).finish_non_exhaustive()
    }
}

/// A fresh id: the kind's prefix, `_`, and a UUIDv7 in hex (time-ordered).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn is_sqlite_memory_url(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl Store {
    /// Connects to `url` and runs every pending migration.
    ///
    /// SQLite (`sqlite://path/to/file.db`, `sqlite::memory:`): the file is created when
    /// missing (unless the URL sets `mode=`), and connections use WAL, enforced foreign
    /// keys and a busy timeout. An in-memory database uses one connection that is never
    /// recycled, since the data lives only as long as it does. PostgreSQL
    /// (`postgres://...`): the database must exist.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false);
        if is_sqlite_url(url) {
            let memory = is_sqlite_memory_url(url);
            let explicit_mode = url.contains("mode=");
            if memory {
                opts.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
            } else {
                opts.max_connections(SQLITE_FILE_POOL);
            }
            opts.map_sqlx_sqlite_opts(move |o| {
                use sea_orm::sqlx::sqlite::SqliteJournalMode;
                let o = o.foreign_keys(true).busy_timeout(SQLITE_BUSY_TIMEOUT);
                let o = if explicit_mode { o } else { o.create_if_missing(true) };
                if memory { o } else { o.journal_mode(SqliteJournalMode::Wal) }
            });
        }
        let db = Database::connect(opts).await?;
        Migrator::up(&db, None).await.map_err(StoreError::Migration)?;
        Ok(Store { db })
    }

    /// A write transaction; see the module docs for the locking.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let opts = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(self.db.begin_with_options(opts).await?)
    }

    /// A read transaction that sees one consistent state of the whole database.
    async fn begin_snapshot(&self) -> Result<DatabaseTransaction, StoreError> {
        let txn = match self.db.get_database_backend() {
            // Per-statement snapshots (READ COMMITTED) could mix two revisions.
            DbBackend::Postgres => {
                self.db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
            }
            // A SQLite read transaction keeps the snapshot its first read took.
            _ => self.db.begin().await?,
        };
        Ok(txn)
    }
}
