//! tollgate-telemetry: the binaries' logging and tracing set-up, and the Prometheus text
//! format both planes render their `/metrics` in, each in one place.
//!
//! Owns the `tracing` subscriber of `tollgate-gateway` and `tollgate-control` (feature
//! `otlp`, on by default; the binaries use it, the library crates turn it off so they
//! never pull OpenTelemetry in): log lines on stderr (text or JSON, filtered by
//! `TOLLGATE_LOG`), and — only when an OTLP endpoint is given — spans exported over
//! OTLP/gRPC through `tracing-opentelemetry`. Also owns [`prometheus`]: `# HELP` /
//! `# TYPE` lines, label escaping, samples and fixed-bucket histograms, with no
//! dependencies at all.
//!
//! Does not own: what goes on a span (the libraries name their spans and fields, e.g.
//! the data plane's GenAI attributes), which series exist (each plane keeps its own
//! registry), or reading flags and the environment (the binaries do that and pass an
//! [`Options`]).
//!
//! Invariants: with no endpoint nothing OpenTelemetry is installed, so the request path
//! pays nothing for it; only spans of tollgate's own crates are exported (never a
//! dependency's), and the exporter's own logs cannot loop back into it.
#![forbid(unsafe_code)]

pub mod prometheus;
#[cfg(feature = "otlp")]
mod subscriber;

#[cfg(feature = "otlp")]
pub use subscriber::{Options, Telemetry, TelemetryError, init};
