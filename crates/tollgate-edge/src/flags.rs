//! [`EdgeFlags`]: the listener flags both binaries share (feature `cli`), so the gateway
//! and the control plane spell, default and document them once.

use crate::limits::{LimitsError, ListenerLimits};
use std::time::Duration;

/// Connection deadlines of every listener, and the caps of the management and gRPC
/// listeners; flatten into a binary's flags with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeFlags {
    /// Seconds from accepting a connection to its first complete request head (the
    /// HTTP/2 handshake included), and for each later HTTP/1.1 head. Every listener.
    #[arg(long, env = "TOLLGATE_HEADER_TIMEOUT_S", default_value_t = 20)]
    pub header_timeout_s: u64,
    /// Seconds a request body may take to arrive in full (HTTP listeners).
    #[arg(long, env = "TOLLGATE_BODY_TIMEOUT_S", default_value_t = 60)]
    pub body_timeout_s: u64,
    /// Slowest request body accepted, in bytes per second averaged from its head, judged
    /// after its first 10 seconds (0: no minimum).
    #[arg(long, env = "TOLLGATE_BODY_MIN_RATE_BYTES", default_value_t = 1024)]
    pub body_min_rate_bytes: u64,
    /// Seconds a connection may stay open with no request in flight. Every listener
    /// (an HTTP/1.1 connection also closes when its next head is not complete within
    /// --header-timeout-s).
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT_S", default_value_t = 60)]
    pub idle_timeout_s: u64,
    /// Seconds between HTTP/2 keep-alive pings; they keep long gRPC streams (Watch,
    /// PushLedger) alive and find dead peers.
    #[arg(long, env = "TOLLGATE_KEEPALIVE_INTERVAL_S", default_value_t = 20)]
    pub keepalive_interval_s: u64,
    /// Seconds an HTTP/2 keep-alive ping may go unanswered before the connection is closed.
    #[arg(long, env = "TOLLGATE_KEEPALIVE_TIMEOUT_S", default_value_t = 10)]
    pub keepalive_timeout_s: u64,
    /// Most connections open at once on the management REST listener.
    #[arg(long, env = "TOLLGATE_ADMIN_MAX_CONNECTIONS", default_value_t = 1_000)]
    pub admin_max_connections: usize,
    /// Most connections open at once on the gRPC listener.
    #[arg(long, env = "TOLLGATE_GRPC_MAX_CONNECTIONS", default_value_t = 1_000)]
    pub grpc_max_connections: usize,
}

impl EdgeFlags {
    /// One listener's limits from the flags, with its own connection cap.
    pub fn limits(&self, max_connections: usize) -> Result<ListenerLimits, LimitsError> {
        ListenerLimits {
            header_timeout: Duration::from_secs(self.header_timeout_s),
            body_timeout: Duration::from_secs(self.body_timeout_s),
            body_min_rate: self.body_min_rate_bytes,
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
            keepalive_interval: Duration::from_secs(self.keepalive_interval_s),
            keepalive_timeout: Duration::from_secs(self.keepalive_timeout_s),
            max_connections,
            ..ListenerLimits::DATA_PLANE
        }
        .validated()
    }

    /// The management REST listener's limits.
    pub fn admin(&self) -> Result<ListenerLimits, LimitsError> {
        self.limits(self.admin_max_connections)
    }

    /// The gRPC listener's limits.
    pub fn grpc(&self) -> Result<ListenerLimits, LimitsError> {
        self.limits(self.grpc_max_connections)
    }
}
