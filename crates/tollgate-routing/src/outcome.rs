//! How one attempt at an upstream went, in the routing engine's terms, and what that
//! means for retrying and for the deployment's health.
//!
//! The data plane maps its provider errors and HTTP statuses into an [`Outcome`]; the
//! engine never sees a provider type or an upstream body. The whole policy lives in two
//! small functions here ([`Outcome::failure_class`] and [`Outcome::counts_against_health`])
//! so the table in the README has exactly one implementation.

use std::time::Duration;

/// What happened to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered 2xx.
    Success,
    /// No connection: refused, DNS, TLS handshake.
    ConnectError,
    /// The attempt's timeout passed before the upstream answered.
    Timeout,
    /// The upstream answered with this status, and `retry-after` when it sent one.
    /// A 2xx status is the same as [`Outcome::Success`].
    Status(u16, Option<Duration>),
    /// The upstream answered something that is not its API (an HTML error page, garbage).
    Malformed,
    /// The response broke off (reset, idle timeout). `after_first_byte`: some of it had
    /// already been sent to the caller, so the request can no longer go elsewhere.
    StreamBroken {
        /// Whether the caller had already received part of the answer.
        after_first_byte: bool,
    },
}

/// The kinds of failure a policy may retry (`retry_on`). 4xx request errors are not a
/// class: they are never retried, whatever the policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// `connect`: no connection, or it broke before anything reached the caller.
    Connect,
    /// `timeout`: the attempt timed out, or the upstream answered 408.
    Timeout,
    /// `429`: the upstream is rate limiting us.
    RateLimited,
    /// `5xx`: the upstream failed (any 5xx, or an answer that is not its API).
    ServerError,
    /// `409`: a conflict the OpenAI and Anthropic SDKs treat as transient (lock
    /// timeouts). Off by default: it usually repeats, and the caller's SDK retries it
    /// already.
    Conflict,
}

impl FailureClass {
    /// Every class, in a stable order.
    pub const ALL: [FailureClass; 5] = [
        FailureClass::Connect,
        FailureClass::Timeout,
        FailureClass::RateLimited,
        FailureClass::ServerError,
        FailureClass::Conflict,
    ];

    /// The name used in `retry_on`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Connect => "connect",
            FailureClass::Timeout => "timeout",
            FailureClass::RateLimited => "429",
            FailureClass::ServerError => "5xx",
            FailureClass::Conflict => "409",
        }
    }

    /// Parses a `retry_on` name.
    pub fn parse(s: &str) -> Option<Self> {
        FailureClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            FailureClass::Connect => 1,
            FailureClass::Timeout => 2,
            FailureClass::RateLimited => 4,
            FailureClass::ServerError => 8,
            FailureClass::Conflict => 16,
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`FailureClass`]es, the policy's `retry_on`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryOn(u8);

impl RetryOn {
    /// Retry nothing: every failure is final (fallback off).
    pub const NONE: RetryOn = RetryOn(0);

    /// The set of the given classes.
    pub fn of(classes: &[FailureClass]) -> Self {
        RetryOn(classes.iter().fold(0, |acc, c| acc | c.bit()))
    }

    /// Whether `class` is retried.
    pub fn contains(self, class: FailureClass) -> bool {
        self.0 & class.bit() != 0
    }

    /// The classes in the set, in [`FailureClass::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = FailureClass> {
        FailureClass::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl Default for RetryOn {
    /// `connect`, `timeout`, `429`, `5xx`.
    fn default() -> Self {
        RetryOn::of(&[
            FailureClass::Connect,
            FailureClass::Timeout,
            FailureClass::RateLimited,
            FailureClass::ServerError,
        ])
    }
}

impl std::fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter().map(FailureClass::as_str)).finish()
    }
}

impl Outcome {
    /// Builds the outcome of an answered attempt: 2xx is success.
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> Self {
        if (200..300).contains(&status) { Outcome::Success } else { Outcome::Status(status, retry_after) }
    }

    /// True for a 2xx answer.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success) || matches!(self, Outcome::Status(s, _) if (200..300).contains(s))
    }

    /// The retryable class of this failure, or `None` when it is success or a failure
    /// that is never retried: a 4xx caused by the request (anything but 408, 409, 429),
    /// a 1xx/3xx, or a response that already reached the caller.
    pub fn failure_class(&self) -> Option<FailureClass> {
        match *self {
            Outcome::Success => None,
            Outcome::ConnectError => Some(FailureClass::Connect),
            Outcome::Timeout => Some(FailureClass::Timeout),
            Outcome::Malformed => Some(FailureClass::ServerError),
            Outcome::StreamBroken { after_first_byte: false } => Some(FailureClass::Connect),
            Outcome::StreamBroken { after_first_byte: true } => None,
            Outcome::Status(s, _) => match s {
                408 => Some(FailureClass::Timeout),
                409 => Some(FailureClass::Conflict),
                429 => Some(FailureClass::RateLimited),
                500..=599 => Some(FailureClass::ServerError),
                _ => None,
            },
        }
    }

    /// Whether the default `retry_on` retries this outcome.
    pub fn is_retryable(&self) -> bool {
        self.is_retryable_under(RetryOn::default())
    }

    /// Whether a policy retrying `retry_on` retries this outcome.
    pub fn is_retryable_under(&self, retry_on: RetryOn) -> bool {
        self.failure_class().is_some_and(|c| retry_on.contains(c))
    }

    /// Whether this outcome is evidence the deployment is unhealthy (it counts towards
    /// opening its breaker). A request error (4xx other than 408/429) shows the
    /// upstream answering normally, so it counts as healthy.
    pub fn counts_against_health(&self) -> bool {
        match *self {
            Outcome::Success => false,
            Outcome::ConnectError | Outcome::Timeout | Outcome::Malformed | Outcome::StreamBroken { .. } => true,
            Outcome::Status(s, _) => match s {
                200..=299 => false,
                408 | 429 => true,
                400..=499 => false,
                // 5xx, and 1xx/3xx an LLM API has no business sending.
                _ => true,
            },
        }
    }

    /// How long the upstream asked us to wait before coming back, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Outcome::Status(_, ra) => ra,
            _ => None,
        }
    }

    /// A short stable label for logs, metrics and the ledger's attempt list.
    pub fn label(&self) -> &'static str {
        match *self {
            Outcome::Success => "success",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::Malformed => "malformed",
            Outcome::StreamBroken { after_first_byte: false } => "broken_before_first_byte",
            Outcome::StreamBroken { after_first_byte: true } => "broken_after_first_byte",
            Outcome::Status(s, _) => match s {
                200..=299 => "success",
                408 => "upstream_408",
                409 => "upstream_409",
                429 => "rate_limited",
                400..=499 => "upstream_4xx",
                500..=599 => "upstream_5xx",
                _ => "upstream_unexpected_status",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_are_never_retried_whatever_retry_on_says() {
        let everything = RetryOn::of(&FailureClass::ALL);
        for s in [400, 401, 403, 404, 405, 413, 415, 422, 451, 499] {
            let o = Outcome::Status(s, Some(Duration::from_secs(1)));
            assert!(!o.is_retryable_under(everything), "{s} must never be retried");
            assert!(!o.counts_against_health(), "{s} is the request's fault, not the upstream's");
        }
        for s in [100, 301, 304] {
            assert!(!Outcome::Status(s, None).is_retryable_under(everything));
            assert!(Outcome::Status(s, None).counts_against_health());
        }
    }

    #[test]
    fn the_default_retries_connect_timeout_429_and_5xx_only() {
        for o in [
            Outcome::ConnectError,
            Outcome::Timeout,
            Outcome::Status(408, None),
            Outcome::Status(429, None),
            Outcome::Status(500, None),
            Outcome::Status(502, None),
            Outcome::Status(503, None),
            Outcome::Status(504, None),
            Outcome::Malformed,
            Outcome::StreamBroken { after_first_byte: false },
        ] {
            assert!(o.is_retryable(), "{o:?}");
            assert!(o.counts_against_health(), "{o:?}");
        }
        assert!(!Outcome::Status(409, None).is_retryable(), "409 is opt-in");
        assert!(Outcome::Status(409, None).is_retryable_under(RetryOn::of(&[FailureClass::Conflict])));
        assert!(!Outcome::Status(409, None).counts_against_health());
        assert!(!Outcome::Status(503, None).is_retryable_under(RetryOn::NONE));
        assert!(!Outcome::Success.is_retryable() && !Outcome::Success.counts_against_health());
    }

    #[test]
    fn nothing_is_retried_once_the_caller_has_bytes() {
        let broken = Outcome::StreamBroken { after_first_byte: true };
        assert!(!broken.is_retryable_under(RetryOn::of(&FailureClass::ALL)));
        assert!(broken.counts_against_health());
    }

    #[test]
    fn statuses_map_to_outcomes_and_labels() {
        assert_eq!(Outcome::from_status(200, None), Outcome::Success);
        assert!(Outcome::Status(204, None).is_success());
        let ra = Some(Duration::from_secs(3));
        assert_eq!(Outcome::from_status(429, ra).retry_after(), ra);
        assert_eq!(Outcome::from_status(429, ra).label(), "rate_limited");
        assert_eq!(Outcome::Status(404, None).label(), "upstream_4xx");
        assert_eq!(format!("{:?}", RetryOn::default()), r#"{"connect", "timeout", "429", "5xx"}"#);
        for c in FailureClass::ALL {
            assert_eq!(FailureClass::parse(c.as_str()), Some(c));
        }
        assert_eq!(FailureClass::parse("4xx"), None);
    }
}
