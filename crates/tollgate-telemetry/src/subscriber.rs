//! The global `tracing` subscriber: log lines on stderr and, when an endpoint is given,
//! spans exported over OTLP/gRPC (feature `otlp`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry};

/// How a binary wants its telemetry.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// `service.name` of the exported spans (`tollgate-gateway`, `tollgate-control`).
    pub service_name: &'static str,
    /// Log lines as JSON objects instead of text.
    pub json_logs: bool,
    /// OTLP/gRPC collector endpoint, e.g. `http://otel-collector:4317`; `None`: no traces.
    pub otlp_endpoint: Option<&'a str>,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a malformed endpoint, usually).
    #[error("otlp exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already installed.
    #[error("tracing subscriber already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// Installed telemetry; flushes the spans still buffered when dropped (keep it alive
/// for the life of the process).
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint was given).
    pub fn traces_exported(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // Export what is buffered; a collector that is gone loses it, nothing else.
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. Call once, inside the Tokio runtime (the gRPC
/// exporter's connection lives on it).
pub fn init(opts: Options<'_>) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_env("TOLLGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !opts.json_logs;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = if opts.json_logs { fmt.json().boxed() } else { fmt.boxed() };
    let (provider, otel) = match opts.otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(TelemetryError::Exporter)?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(opts.service_name).build())
                .build();
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(opts.service_name))
                .with_tracked_inactivity(false)
                // Keep each span a builder until it closes, so its name and kind can be
                // set once the request is known (a started span ignores new names).
                .with_context_activation(false)
                .with_threads(false)
                .with_location(false)
                // tollgate's own spans only: exporting hyper's or tonic's would also
                // trace the exporter's own calls.
                .with_filter(Targets::new().with_target("tollgate", Level::INFO));
            (Some(provider), Some(layer))
        }
    };
    Registry::default()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry { provider })
}
