//! Errors of upstream calls: where they came from and whether a retry may help.

use crate::ProviderKind;
use std::time::Duration;
use tollgate_core::{ErrorCode, ServiceError};

/// Which side of the gateway an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOrigin {
    /// The upstream provider (or the network to it).
    Upstream,
    /// Inside the gateway (configuration, a bug).
    Internal,
}

/// What went wrong with an upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// Could not connect (refused, DNS, TLS).
    Connect,
    /// No response head within the request timeout.
    Timeout,
    /// The stream went silent for longer than the idle timeout.
    IdleTimeout,
    /// The connection broke while reading the response.
    Io,
    /// The upstream answered something that is not its API (HTML, garbage).
    Malformed,
    /// The configuration cannot be served (bad base URL, unsupported kind).
    Config,
}

/// An upstream call failed. The message never carries an upstream body or a credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What went wrong.
    pub kind: ProviderErrorKind,
    /// Where it came from.
    pub origin: ErrorOrigin,
    /// Whether sending the same request again (here or elsewhere) may succeed.
    pub retryable: bool,
    /// How long the upstream asked us to wait, if it did.
    pub retry_after: Option<Duration>,
    message: String,
}

impl ProviderError {
    /// Builds an error.
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        let (origin, retryable) = match kind {
            ProviderErrorKind::Config => (ErrorOrigin::Internal, false),
            ProviderErrorKind::Malformed => (ErrorOrigin::Upstream, true),
            _ => (ErrorOrigin::Upstream, true),
        };
        ProviderError { kind, origin, retryable, retry_after: None, message: message.into() }
    }

    /// A kind this build has no adapter for.
    pub fn unsupported(kind: ProviderKind) -> Self {
        ProviderError::new(ProviderErrorKind::Config, format!("provider kind {kind} is not supported by this gateway"))
    }

    /// The message, safe to show a caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl ServiceError for ProviderError {
    fn code(&self) -> ErrorCode {
        match self.kind {
            ProviderErrorKind::Timeout | ProviderErrorKind::IdleTimeout => ErrorCode::UpstreamTimeout,
            ProviderErrorKind::Config => ErrorCode::Internal,
            ProviderErrorKind::Connect | ProviderErrorKind::Io | ProviderErrorKind::Malformed => ErrorCode::Upstream,
        }
    }
}
