//! Control-plane errors, and their one mapping to HTTP and one to gRPC.

use tollgate_core::{ErrorCode, ServiceError};
use tollgate_store::StoreError;

/// Everything a control-plane operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A field of the input is invalid; names the field.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field (dotted path).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The body is not valid JSON for this operation.
    #[error("{0}")]
    BadBody(String),
    /// No or unknown admin token.
    #[error("missing or invalid admin token")]
    Unauthenticated,
    /// The token lacks the scope the operation needs; names it.
    #[error("admin token lacks the scope {0}")]
    InsufficientScope(&'static str),
    /// The token holds the scope but may not use it here (a bound token on a global
    /// resource, or minting more power than it has).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// Resource kind.
        kind: &'static str,
        /// The id or name asked for.
        id: String,
    },
    /// The request body is over the management API's limit.
    #[error("request body is over {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The write conflicts with an existing resource.
    #[error("{0}")]
    Conflict(String),
    /// Start-up configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The master key given is not the one the stored provider credentials are
    /// encrypted under; both are named by fingerprint, never by value.
    #[error(
        "the master key in use (fingerprint {given}) is not the one the stored provider credentials are encrypted under (fingerprint {expected}); start with that key, or rotate to a new one with `tollgate-control --rotate-master-key`"
    )]
    MasterKeyMismatch {
        /// Fingerprint recorded in the database.
        expected: String,
        /// Fingerprint of the key given.
        given: String,
    },
    /// The store failed.
    #[error("storage error")]
    Store(#[source] StoreError),
    /// Anything else; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => ControlError::NotFound { kind, id },
            e if e.code() == ErrorCode::Conflict => ControlError::Conflict(e.to_string()),
            e => ControlError::Store(e),
        }
    }
}

impl ControlError {
    /// An invalid-field error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ControlError::Invalid { field: field.into(), reason: reason.into() }
    }

    /// Every `code` [`ControlError::http`] can answer, for the API's documentation.
    pub(crate) const HTTP_CODES: [&'static str; 8] = [
        "invalid_request",
        "request_too_large",
        "unauthenticated",
        "forbidden",
        "insufficient_scope",
        "not_found",
        "conflict",
        "internal_error",
    ];

    /// The REST status and `code` of this error.
    pub(crate) fn http(&self) -> (http::StatusCode, &'static str) {
        use http::StatusCode as S;
        if let ControlError::InsufficientScope(_) = self {
            return (S::FORBIDDEN, "insufficient_scope");
        }
        match self.code() {
            ErrorCode::BadRequest => (S::BAD_REQUEST, "invalid_request"),
            ErrorCode::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "request_too_large"),
            ErrorCode::Unauthenticated => (S::UNAUTHORIZED, "unauthenticated"),
            ErrorCode::Forbidden => (S::FORBIDDEN, "forbidden"),
            ErrorCode::NotFound => (S::NOT_FOUND, "not_found"),
            ErrorCode::Conflict => (S::CONFLICT, "conflict"),
            _ => (S::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    /// The gRPC status of this error.
    pub(crate) fn grpc(&self) -> tonic::Status {
        let msg = self.public_message();
        match self.code() {
            ErrorCode::BadRequest | ErrorCode::PayloadTooLarge => tonic::Status::invalid_argument(msg),
            ErrorCode::Unauthenticated => tonic::Status::unauthenticated(msg),
            ErrorCode::Forbidden => tonic::Status::permission_denied(msg),
            ErrorCode::NotFound => tonic::Status::not_found(msg),
            ErrorCode::Conflict => tonic::Status::already_exists(msg),
            _ => tonic::Status::internal(msg),
        }
    }

    /// The message safe to return: internal details are logged instead.
    pub(crate) fn public_message(&self) -> String {
        match self {
            ControlError::Store(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(e), "store failure");
                "internal storage error".into()
            }
            ControlError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error".into()
            }
            other => other.to_string(),
        }
    }

    /// The field this error is about, if any.
    pub(crate) fn field(&self) -> Option<&str> {
        match self {
            ControlError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl ServiceError for ControlError {
    fn code(&self) -> ErrorCode {
        match self {
            ControlError::Invalid { .. } | ControlError::BadBody(_) => ErrorCode::BadRequest,
            ControlError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            ControlError::Unauthenticated => ErrorCode::Unauthenticated,
            ControlError::InsufficientScope(_) | ControlError::Forbidden(_) => ErrorCode::Forbidden,
            ControlError::NotFound { .. } => ErrorCode::NotFound,
            ControlError::Conflict(_) => ErrorCode::Conflict,
            ControlError::Config(_)
            | ControlError::MasterKeyMismatch { .. }
            | ControlError::Store(_)
            | ControlError::Internal(_) => ErrorCode::Internal,
        }
    }
}
