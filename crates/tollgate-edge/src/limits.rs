//! The limits of one listener, their defaults and their validation.

use std::time::Duration;

/// Deadlines and the connection cap of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// From accept to the first complete request head (the HTTP/2 handshake included),
    /// and for each later HTTP/1.1 head.
    pub header_timeout: Duration,
    /// Longest time a request body may take to arrive in full.
    pub body_timeout: Duration,
    /// Slowest body accepted after [`body_min_rate_grace`](Self::body_min_rate_grace), in
    /// bytes per second averaged since the head (0: no minimum).
    pub body_min_rate: u64,
    /// Time a body is given before its rate is judged.
    pub body_min_rate_grace: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings.
    pub keepalive_interval: Duration,
    /// How long a keep-alive ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Most connections open at once; above it a connection is closed as soon as it is
    /// accepted.
    pub max_connections: usize,
}

/// A limit that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    /// A deadline of zero would close every connection at once.
    #[error("{name} must not be zero")]
    ZeroDuration {
        /// The limit's name.
        name: &'static str,
    },
    /// A cap of zero connections would refuse everyone.
    #[error("max connections must be at least 1")]
    ZeroConnections,
}

impl ListenerLimits {
    /// Defaults of the data plane: 10,000 connections.
    pub const DATA_PLANE: ListenerLimits = ListenerLimits {
        header_timeout: Duration::from_secs(20),
        body_timeout: Duration::from_secs(60),
        body_min_rate: 1024,
        body_min_rate_grace: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        keepalive_interval: Duration::from_secs(20),
        keepalive_timeout: Duration::from_secs(10),
        max_connections: 10_000,
    };

    /// Defaults of the management REST and gRPC listeners: 1,000 connections.
    pub const ADMIN: ListenerLimits = ListenerLimits { max_connections: 1_000, ..ListenerLimits::DATA_PLANE };

    /// The limits when none can work (a zero deadline or cap) is refused.
    pub fn validated(self) -> Result<ListenerLimits, LimitsError> {
        let durations = [
            ("header timeout", self.header_timeout),
            ("body timeout", self.body_timeout),
            ("idle timeout", self.idle_timeout),
            ("keep-alive interval", self.keepalive_interval),
            ("keep-alive timeout", self.keepalive_timeout),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(LimitsError::ZeroDuration { name });
        }
        if self.max_connections == 0 {
            return Err(LimitsError::ZeroConnections);
        }
        Ok(self)
    }

    /// The rules request bodies on this listener are read under.
    pub fn body_rules(&self) -> BodyRules {
        BodyRules { deadline: self.body_timeout, min_rate: self.body_min_rate, grace: self.body_min_rate_grace }
    }
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits::DATA_PLANE
    }
}

/// How a request body must arrive: in full within `deadline` of its head, and, after
/// `grace`, at `min_rate` bytes per second or more on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRules {
    /// Longest time for the whole body.
    pub deadline: Duration,
    /// Slowest average rate accepted after `grace`, bytes per second (0: none).
    pub min_rate: u64,
    /// Time before the rate is judged.
    pub grace: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_limits_are_refused() {
        assert_eq!(ListenerLimits::DATA_PLANE.validated(), Ok(ListenerLimits::DATA_PLANE));
        assert_eq!(ListenerLimits::ADMIN.validated().map(|l| l.max_connections), Ok(1_000));
        let zero = ListenerLimits { idle_timeout: Duration::ZERO, ..ListenerLimits::DATA_PLANE };
        assert_eq!(zero.validated(), Err(LimitsError::ZeroDuration { name: "idle timeout" }));
        let none = ListenerLimits { max_connections: 0, ..ListenerLimits::DATA_PLANE };
        assert_eq!(none.validated(), Err(LimitsError::ZeroConnections));
        // No minimum rate is a valid choice.
        let no_rate = ListenerLimits { body_min_rate: 0, ..ListenerLimits::DATA_PLANE };
        assert!(no_rate.validated().is_ok());
    }
}
