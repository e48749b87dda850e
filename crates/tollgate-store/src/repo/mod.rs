//! [`Store`]: the connection and its transactions; the repository operations live in one
//! module per aggregate below, each an `impl Store` block.
//!
//! Each configuration write is one transaction that ends by bumping `meta.revision`
//! (`revision.rs`). On SQLite write transactions start `IMMEDIATE`, so they take the write
//! lock up front and wait (`busy_timeout`) instead of failing half-way when another writer
//! got there first. On PostgreSQL the `UPDATE meta` row lock serializes writers, so
//! revision numbers are committed in order.
//!
//! [`Store::begin`] opens a transaction that several operations share (an admin write and
//! its audit event): the [`StoreTxn`]'s store runs every operation inside it, each
//! operation's own transaction becoming a savepoint, and nothing is visible to anyone else
//! until [`StoreTxn::commit`]. Dropping the `StoreTxn` rolls everything back.

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
    AccessMode, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseExecutor, DatabaseTransaction,
    DbBackend, IsolationLevel, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use std::sync::Arc;
use std::time::Duration;
use tollgate_migrations::{Migrator, MigratorTrait};

pub(crate) use revision::bump_revision;

/// Connections to a SQLite file: WAL lets readers run beside the single writer.
const SQLITE_FILE_POOL: u32 = 4;
/// How long a SQLite statement waits for another connection's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a [`Store`]'s statements run.
#[derive(Clone)]
enum Db {
    /// The connection pool: each operation is on its own.
    Pool(DatabaseConnection),
    /// One open transaction ([`Store::begin`]): shared by every clone of the store that
    /// holds it, committed by [`StoreTxn::commit`], rolled back when the last one drops.
    Txn(Arc<DatabaseTransaction>),
}

/// The control plane's database. Cheap to clone: clones share one connection pool (or,
/// for the store of a [`StoreTxn`], one transaction).
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl std::fmt::Debug for Store {
    // Only the backend: connection options can hold a database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.db().get_database_backend())
            .field("in_transaction", &matches!(self.db, Db::Txn(_)))
            .finish_non_exhaustive()
    }
}

/// A write transaction several [`Store`] operations share; see the module docs.
///
/// Everything done through [`StoreTxn::store`] becomes visible at once on
/// [`StoreTxn::commit`], or not at all when the `StoreTxn` is dropped uncommitted. While it
/// is open it holds a connection (on an in-memory SQLite database, the only one) and, on
/// SQLite, the write lock: do every read of the same task through its store.
#[derive(Debug)]
pub struct StoreTxn {
    store: Store,
}

impl StoreTxn {
    /// The store whose every operation runs inside this transaction.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Commits everything done through [`StoreTxn::store`].
    ///
    /// [`StoreError::Invalid`] (and nothing committed) if a clone of that store is still
    /// alive: the transaction is only committed by its last holder.
    pub async fn commit(self) -> Result<(), StoreError> {
        let Db::Txn(txn) = self.store.db else {
            return Err(StoreError::Invalid { kind: "transaction", detail: "not a transaction".to_owned() });
        };
        let txn = Arc::try_unwrap(txn).map_err(|_| StoreError::Invalid {
            kind: "transaction",
            detail: "a clone of its store is still in use".to_owned(),
        })?;
        Ok(txn.commit().await?)
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

/// Makes the SQLite database at `url` private to its owner: created with mode 0600 when
/// missing and `create` allows it, tightened to 0600 when it (or its `-wal` / `-shm`)
/// already exists readable by others. SQLite gives the `-wal` and `-shm` files it creates
/// the database file's mode, so they follow. Best effort: a file this process cannot
/// create or change is left to SQLite, which reports what it cannot open.
fn make_sqlite_files_private(url: &str, create: bool) {
    use std::str::FromStr;
    let Ok(opts) = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url) else { return };
    let path = opts.get_filename().to_path_buf();
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if create {
            // An empty file is an empty SQLite database; an existing one is left alone.
            let _created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        }
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let mut shm = path.clone().into_os_string();
        shm.push("-shm");
        for file in [path.into_os_string(), wal, shm] {
            if let Ok(meta) = std::fs::metadata(&file)
                && meta.is_file()
                && meta.permissions().mode() & 0o077 != 0
            {
                let _tightened = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, create);
}

impl Store {
    /// Connects to `url` and runs every pending migration.
    ///
    /// SQLite (`sqlite://path/to/file.db`, `sqlite::memory:`): the file is created when
    /// missing (unless the URL sets `mode=` other than `rwc`), private to its owner (mode
    /// 0600, its `-wal` and `-shm` alike), and connections use WAL, enforced foreign
    /// keys and a busy timeout. An in-memory database uses one connection that is never
    /// recycled, since the data lives only as long as it does. PostgreSQL
    /// (`postgres://...`): the database must exist.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false);
        if is_sqlite_url(url) {
            let memory = is_sqlite_memory_url(url);
            let explicit_mode = url.contains("mode=");
            if !memory {
                make_sqlite_files_private(url, !explicit_mode || url.contains("mode=rwc"));
            }
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
        Ok(Store { db: Db::Pool(db) })
    }

    /// What this store's statements run on: the pool, or its open transaction.
    pub(crate) fn db(&self) -> DatabaseExecutor<'_> {
        match &self.db {
            Db::Pool(c) => DatabaseExecutor::Connection(c),
            Db::Txn(t) => DatabaseExecutor::Transaction(t),
        }
    }

    /// Opens a write transaction that every operation of the returned [`StoreTxn`]'s
    /// store joins (see the module docs). On a store that is itself a transaction's, the
    /// new one is a savepoint inside it.
    pub async fn begin(&self) -> Result<StoreTxn, StoreError> {
        let txn = self.begin_write().await?;
        Ok(StoreTxn { store: Store { db: Db::Txn(Arc::new(txn)) } })
    }

    /// A write transaction; see the module docs for the locking. Inside a [`StoreTxn`] it
    /// is a savepoint: an operation that fails rolls back its own statements only, and
    /// the caller decides about the rest.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let opts = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(self.db().begin_with_options(opts).await?)
    }

    /// A read transaction that sees one consistent state of the whole database.
    async fn begin_snapshot(&self) -> Result<DatabaseTransaction, StoreError> {
        let txn = match (&self.db, self.db().get_database_backend()) {
            // Inside a transaction: a savepoint sees what the transaction sees (an
            // isolation level can no longer be set there).
            (Db::Txn(_), _) => self.db().begin().await?,
            // Per-statement snapshots (READ COMMITTED) could mix two revisions.
            (Db::Pool(_), DbBackend::Postgres) => {
                self.db().begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
            }
            // A SQLite read transaction keeps the snapshot its first read took.
            (Db::Pool(_), _) => self.db().begin().await?,
        };
        Ok(txn)
    }
}
