//! The closed error vocabulary shared by every crate.

/// What kind of failure an error is, independent of transport.
///
/// Every crate's error type maps into exactly one of these; the data plane maps them to
/// HTTP in one place, the control plane to HTTP and gRPC in one place each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or names something invalid.
    BadRequest,
    /// The request body or a header exceeds a configured bound.
    PayloadTooLarge,
    /// No credential, or one that is not recognised.
    Unauthenticated,
    /// The credential is known but may not do this.
    Forbidden,
    /// A block budget cannot take the reservation.
    BudgetExceeded,
    /// A rate limit refused the request.
    RateLimited,
    /// The named resource does not exist (or is invisible to the caller).
    NotFound,
    /// The resource already exists or the write conflicts with current state.
    Conflict,
    /// The upstream answered with an error or garbage.
    Upstream,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// Nothing is available to serve the request right now.
    Unavailable,
    /// A bug or an internal failure; details are logged, not returned.
    Internal,
}

impl ErrorCode {
    /// A stable snake_case name, used in logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Upstream => "upstream",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error that knows its [`ErrorCode`].
pub trait ServiceError: std::error::Error + Send + Sync + 'static {
    /// The transport-independent kind of this error.
    fn code(&self) -> ErrorCode;
}
