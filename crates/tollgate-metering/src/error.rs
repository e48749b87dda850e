//! Errors of the ledger: [`LedgerError`] for the writer and the spool, [`SinkError`] for
//! what a [`crate::LedgerSink`] reports.

use std::path::PathBuf;
use std::time::Duration;
use tollgate_core::{ErrorCode, ServiceError};

/// A boxed cause, as sinks built on any client library can produce.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a sink did not store a batch. Whatever the variant, the writer keeps the entries:
/// a retryable failure sends them to the spool and retries later; a rejection isolates
/// the refused entries into the dead-letter file and lets the others through.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink could not be reached or failed transiently; retrying may help.
    #[error("ledger sink unavailable")]
    Unavailable(#[source] BoxError),
    /// The sink did not answer within the writer's `write_timeout`; retrying may help.
    #[error("ledger sink did not answer within {0:?}")]
    Timeout(Duration),
    /// The sink refused the batch as invalid; retrying the same batch will not help.
    #[error("ledger sink rejected the batch")]
    Rejected(#[source] BoxError),
}

impl SinkError {
    /// A transient failure caused by `cause`.
    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        SinkError::Unavailable(cause.into())
    }

    /// A permanent refusal caused by `cause`.
    pub fn rejected(cause: impl Into<BoxError>) -> Self {
        SinkError::Rejected(cause.into())
    }

    /// Whether sending the same batch again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SinkError::Rejected(_))
    }
}

impl ServiceError for SinkError {
    fn code(&self) -> ErrorCode {
        match self {
            SinkError::Unavailable(_) | SinkError::Timeout(_) => ErrorCode::Unavailable,
            SinkError::Rejected(_) => ErrorCode::Internal,
        }
    }
}

/// What can go wrong in the ledger writer and its spool.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A [`crate::LedgerConfig`] value is out of range.
    #[error("invalid ledger config: {0}")]
    Config(&'static str),
    /// [`crate::LedgerWriter::start`] was called outside a tokio runtime.
    #[error("the ledger writer needs a tokio runtime")]
    NoRuntime,
    /// A file operation on the spool (or its side files) failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done (`open`, `append to`, `sync`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another writer (in this process or another) holds the spool.
    #[error("spool {} is held by another ledger writer", path.display())]
    SpoolLocked {
        /// The spool file.
        path: PathBuf,
    },
    /// Another writer (in this process or another) holds the ledger log's directory.
    #[error("ledger log {} is held by another ledger writer", dir.display())]
    JournalLocked {
        /// The ledger log's directory.
        dir: PathBuf,
    },
    /// An entry could not be encoded as JSON.
    #[error("cannot encode ledger entry {request_id:?}")]
    Encode {
        /// The entry's request id.
        request_id: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// [`crate::Spool::ack`] was given a batch that does not start at the replay
    /// position (already acknowledged, or read before a compaction).
    #[error("spool batch is not at the replay position")]
    StaleBatch,
    /// Some recorded entries are neither at the sink nor in the spool yet: the sink is
    /// down and the spool cannot be written. They stay in memory and are retried.
    #[error("{pending} ledger entries are not durable yet")]
    NotDurable {
        /// How many of the entries the caller waited for are still only in memory.
        pending: u64,
    },
    /// The writer's task has stopped.
    #[error("ledger writer has stopped")]
    Stopped,
}

impl LedgerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LedgerError::Io { op, path: path.into(), source }
    }
}

impl ServiceError for LedgerError {
    fn code(&self) -> ErrorCode {
        match self {
            LedgerError::SpoolLocked { .. } | LedgerError::JournalLocked { .. } => ErrorCode::Conflict,
            LedgerError::NotDurable { .. } | LedgerError::Stopped => ErrorCode::Unavailable,
            LedgerError::Config(_)
            | LedgerError::NoRuntime
            | LedgerError::Io { .. }
            | LedgerError::Encode { .. }
            | LedgerError::StaleBatch => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn check(err: &dyn ServiceError, display: &str, code: ErrorCode) {
        assert_eq!(err.to_string(), display);
        assert_eq!(err.code(), code, "{display}");
        assert!(!display.ends_with('.'), "{display}");
        assert!(display.starts_with(|c: char| !c.is_uppercase()), "{display}");
    }

    #[test]
    fn errors_say_their_own_part_and_map_to_one_code() {
        let io = LedgerError::io("append to", "/var/spool/ledger", std::io::Error::other("disk full"));
        check(&io, "cannot append to /var/spool/ledger", ErrorCode::Internal);
        assert_eq!(io.source().map(ToString::to_string).as_deref(), Some("disk full"));
        check(&LedgerError::NotDurable { pending: 3 }, "3 ledger entries are not durable yet", ErrorCode::Unavailable);
        check(
            &LedgerError::SpoolLocked { path: "/s".into() },
            "spool /s is held by another ledger writer",
            ErrorCode::Conflict,
        );
        check(&LedgerError::Stopped, "ledger writer has stopped", ErrorCode::Unavailable);
        check(
            &LedgerError::JournalLocked { dir: "/var/lib/tollgate/ledger-log".into() },
            "ledger log /var/lib/tollgate/ledger-log is held by another ledger writer",
            ErrorCode::Conflict,
        );

        let down = SinkError::unavailable("connection refused");
        check(&down, "ledger sink unavailable", ErrorCode::Unavailable);
        assert_eq!(down.source().map(ToString::to_string).as_deref(), Some("connection refused"));
        check(
            &SinkError::Timeout(Duration::from_secs(10)),
            "ledger sink did not answer within 10s",
            ErrorCode::Unavailable,
        );
        check(&SinkError::rejected("bad row"), "ledger sink rejected the batch", ErrorCode::Internal);
    }

    #[test]
    fn only_rejections_are_not_worth_retrying() {
        assert!(SinkError::unavailable("x").is_retryable());
        assert!(SinkError::Timeout(Duration::from_millis(1)).is_retryable());
        assert!(!SinkError::rejected("x").is_retryable());
    }
}
