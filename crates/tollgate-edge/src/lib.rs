//! tollgate-edge: the bounds every listening socket of tollgate lives under.
//!
//! Owns [`ListenerLimits`] (deadlines and the connection cap of one listener, with
//! defaults and validation), the accept loop that applies the cap ([`EdgeListener`]: above
//! it a connection is accepted and closed at once, never queued), the IO wrapper that
//! closes a connection whose phase outlives its deadline ([`EdgeIo`]), the request body
//! wrapper that enforces a body deadline and a minimum rate ([`GuardedBody`]), and the
//! glue that serves a hyper service ([`serve_http`]) or tonic ([`TrackLayer`]) over them.
//!
//! Does not own: routing, authentication, what a request means. Listeners do not do TLS
//! today; a TLS acceptor would run inside the same first-request deadline.
//!
//! The phases and who bounds them:
//! - connection accepted → first request head complete (silent sockets, partial or
//!   complete HTTP/2 prefaces, header slow-loris, the HTTP/2 handshake): `header_timeout`,
//!   by [`EdgeIo`]; later HTTP/1.1 heads by hyper's header read timeout (same value);
//! - request body: `body_timeout` in all and `body_min_rate` bytes/s after a grace, by
//!   [`GuardedBody`], where the listener's bodies are finite (not gRPC streams);
//! - no request in flight (keep-alive, an idle HTTP/2 connection): `idle_timeout`, by
//!   [`EdgeIo`];
//! - HTTP/2 liveness while streams are open: keep-alive pings every
//!   `keepalive_interval`, the connection closed when one is not answered within
//!   `keepalive_timeout`. Long gRPC streams (Watch, PushLedger) live on through them.
//!
//! Invariant: a connection holds a permit of its listener's cap for exactly as long as
//! its socket is open, so open sockets (and file descriptors) per listener never exceed
//! `max_connections`.
#![forbid(unsafe_code)]

mod body;
mod conn;
#[cfg(feature = "cli")]
mod flags;
mod grpc;
mod http;
mod io;
mod limits;
mod listener;

pub use body::{BodyError, GuardedBody};
pub use conn::{ConnHandle, RequestGuard, Tracked};
#[cfg(feature = "cli")]
pub use flags::EdgeFlags;
pub use grpc::{EdgeConnectInfo, TrackLayer, TrackService};
pub use http::{http_builder, serve_http};
pub use io::EdgeIo;
pub use limits::{BodyRules, LimitsError, ListenerLimits};
pub use listener::EdgeListener;

/// The boxed error type hyper and tonic accept from bodies and services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
