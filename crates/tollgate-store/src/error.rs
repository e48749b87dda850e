//! The store's error type and its mapping into the shared [`ErrorCode`] vocabulary.

use sea_orm::{DbErr, SqlErr};
use tollgate_core::{ErrorCode, ServiceError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row the operation needs does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What was looked up (`key`, `team`, ...).
        kind: &'static str,
        /// The id or name that was looked up.
        id: String,
    },
    /// The write would break a uniqueness rule (a taken name, a duplicate id or hash),
    /// or a lookup by name is ambiguous.
    #[error("conflicting {kind}: {detail}")]
    Conflict {
        /// What was written (`key`, `team`, ...).
        kind: &'static str,
        /// Which rule was broken; never holds a secret.
        detail: String,
    },
    /// A stored value cannot be read back (bad JSON, an unknown enum spelling): the
    /// database was edited outside tollgate or by an incompatible version.
    #[error("corrupt {kind} row {id:?}: {detail}")]
    Corrupt {
        /// The kind of row (`key`, `budget`, ...).
        kind: &'static str,
        /// The row's id.
        id: String,
        /// What could not be decoded.
        detail: String,
    },
    /// A value cannot be stored (e.g. it does not serialize to JSON).
    #[error("cannot store {kind}: {detail}")]
    Invalid {
        /// The kind of record being written.
        kind: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Running the schema migrations failed.
    #[error("database migration failed")]
    Migration(#[source] DbErr),
    /// The database failed or refused the statement.
    #[error("database error")]
    Database(#[source] DbErr),
}

impl ServiceError for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::Conflict { .. } => ErrorCode::Conflict,
            StoreError::Invalid { .. } => ErrorCode::BadRequest,
            StoreError::Corrupt { .. } | StoreError::Migration(_) | StoreError::Database(_) => ErrorCode::Internal,
        }
    }
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        StoreError::Database(e)
    }
}

/// Maps a failed write of a `kind` row: unique violations become [`StoreError::Conflict`]
/// on every backend, everything else stays a database error.
///
/// `fields` pairs a column name with the message to show when that column's uniqueness
/// was broken. SQLite names the columns (`teams.org_id, teams.name`), PostgreSQL the
/// constraint (`ux_teams_org_id_name`); both contain the column names. The first pair
/// whose every column appears wins; `fallback` covers the rest (e.g. the primary key).
pub(crate) fn write_err(kind: &'static str, e: DbErr, fields: &[(&[&str], String)], fallback: String) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(msg)) => {
            let detail = fields
                .iter()
                .find(|(cols, _)| cols.iter().all(|c| msg.contains(c)))
                .map_or(fallback, |(_, d)| d.clone());
            StoreError::Conflict { kind, detail }
        }
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
            StoreError::Conflict { kind, detail: "it refers to a row that does not exist".to_owned() }
        }
        _ => StoreError::Database(e),
    }
}
