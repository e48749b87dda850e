//! Errors of the budget engine, the rate limiter and their stores, and their mapping into
//! the shared [`ErrorCode`] vocabulary.

use crate::{Amount, Budget, Limit};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{ErrorCode, ServiceError, Timestamp};

/// Any error a backend reports as its cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A counter store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused or dropped, timeout).
    #[error("{backend} counter store is unavailable")]
    Unavailable {
        /// Which backend (`memory`, `redis`).
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// The backend answered with an error (for Redis: a script or command error).
    #[error("{backend} counter store refused the operation")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// The backend answered with something this crate does not understand.
    #[error("{backend} counter store sent an unexpected reply: {detail}")]
    Protocol {
        /// Which backend.
        backend: &'static str,
        /// What was wrong with the reply.
        detail: String,
    },
    /// The request itself cannot be served (e.g. a window start out of range).
    #[error("invalid counter store request: {reason}")]
    Invalid {
        /// Why.
        reason: &'static str,
    },
}

impl ServiceError for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::Unavailable { .. } => ErrorCode::Unavailable,
            StoreError::Backend { .. } | StoreError::Protocol { .. } | StoreError::Invalid { .. } => {
                ErrorCode::Internal
            }
        }
    }
}

/// A `block` budget cannot take a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The budget that refused (the first one, in the order given to
    /// [`Budgets::reserve`](crate::Budgets::reserve)).
    pub budget: Arc<Budget>,
    /// Its limit.
    pub limit: Limit,
    /// Committed plus reserved in the current window, without this request.
    pub used: Amount,
    /// What the request asked to reserve.
    pub requested: Amount,
    /// When the window ends and the budget starts empty again; `None` for a lifetime
    /// budget.
    pub resets_at: Option<Timestamp>,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.budget;
        write!(f, "{} budget {} of {} {} ", b.window, b.id, b.scope, b.scope_id)?;
        match self.limit {
            Limit::Money(limit) => {
                write!(f, "cannot take ${} more: ${} of ${} used", self.requested.money, self.used.money, limit)
            }
            Limit::Tokens(limit) => {
                write!(f, "cannot take {} more tokens: {} of {} used", self.requested.tokens, self.used.tokens, limit)
            }
        }
    }
}

impl std::error::Error for Exceeded {}

impl ServiceError for Exceeded {
    fn code(&self) -> ErrorCode {
        ErrorCode::BudgetExceeded
    }
}

/// Why [`Budgets::reserve`](crate::Budgets::reserve) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// A `block` budget would go past its limit; nothing was reserved anywhere.
    #[error(transparent)]
    Exceeded(Box<Exceeded>),
    /// The counter store failed; whether anything was reserved is unknown, but a
    /// reservation that was made expires after the configured TTL.
    #[error("cannot reserve budget")]
    Store(#[source] StoreError),
}

impl From<StoreError> for ReserveError {
    fn from(e: StoreError) -> Self {
        ReserveError::Store(e)
    }
}

impl ServiceError for ReserveError {
    fn code(&self) -> ErrorCode {
        match self {
            ReserveError::Exceeded(_) => ErrorCode::BudgetExceeded,
            ReserveError::Store(e) => e.code(),
        }
    }
}

/// Which rate limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Requests per minute.
    Rpm,
    /// Tokens per minute.
    Tpm,
    /// Requests in flight at once.
    Concurrency,
}

impl Dimension {
    /// The wire spelling: `rpm`, `tpm`, `concurrency`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Rpm => "rpm",
            Dimension::Tpm => "tpm",
            Dimension::Concurrency => "concurrency",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rate limit refused; nothing was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{dimension} limit reached; retry in {}ms", retry_after.as_millis())]
pub struct RateLimited {
    /// The limit that refused (the one with the longest wait when several did).
    pub dimension: Dimension,
    /// How long until the same request can succeed (for `concurrency`, a hint: when a
    /// slot frees is not known in advance).
    pub retry_after: Duration,
    /// `now + retry_after`.
    pub resets_at: Timestamp,
}

/// Why [`RateLimiter::acquire`](crate::RateLimiter::acquire) failed.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// Over a limit.
    #[error(transparent)]
    Limited(RateLimited),
    /// The store failed.
    #[error("cannot check rate limits")]
    Store(#[source] StoreError),
}

impl From<StoreError> for RateLimitError {
    fn from(e: StoreError) -> Self {
        RateLimitError::Store(e)
    }
}

impl ServiceError for RateLimitError {
    fn code(&self) -> ErrorCode {
        match self {
            RateLimitError::Limited(_) => ErrorCode::RateLimited,
            RateLimitError::Store(e) => e.code(),
        }
    }
}
