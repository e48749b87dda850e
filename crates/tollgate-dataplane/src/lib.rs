//! tollgate-dataplane: the gateway's request path.
//!
//! Owns the data-plane HTTP server (OpenAI-compatible endpoints, health and readiness),
//! the in-memory [`Snapshot`] every request is served from (swapped atomically with
//! `arc-swap`, built by one [`DataPlane::apply_update`] path at start-up and on every
//! change: a full snapshot replaces it, a [`v1::ConfigChange`] patches it),
//! the per-request phases (`proxy/`: authenticate → route → admit → dispatch →
//! respond, one file each, over one request context), the single mapping of errors to
//! HTTP, and the Watch client that keeps the snapshot in step with a remote control
//! plane.
//!
//! Budgets and rate limits are enforced here through the embeddable `tollgate-budgets`
//! engine (memory counters by default, Redis when gateways share them): rate limits,
//! then an all-scope reservation before dispatch, then the actual cost committed when
//! the response (or stream) ends.
//!
//! Does not own: the database or the control plane (it never depends on either; it only
//! consumes `tollgate-proto` snapshots), provider wire formats (providers), key hashing
//! (keys), or prices (metering).
//!
//! Invariants: nothing on the request path touches a database or the network other than
//! the chosen upstream; a request reads one snapshot and uses it throughout; secrets
//! never reach logs or error messages.
#![forbid(unsafe_code)]

mod alerts;
mod change;
mod enforce;
mod error;
mod health;
mod idle;
mod ledger;
mod ledger_stream;
mod metrics;
mod offload;
mod proxy;
mod request_id;
mod server;
mod snapshot;
mod stream;
mod trace;
mod watch;

pub use alerts::AlertConfig;
pub use change::ChangeError;
pub use error::{ApiError, ErrorShape};
pub use health::BreakerConfig;
use health::default_policy;
pub use ledger_stream::{GrpcLedgerSink, LedgerStreamError};
pub use server::serve;
pub use snapshot::Snapshot;
pub use tollgate_proto::convert::{Kind as RejectedKind, Rejected};
pub use watch::{BudgetSeeder, SpendFuture, SpendSource, WatchConfig, watch_control_plane};

use alerts::Alerts;
use arc_swap::ArcSwap;
use enforce::Enforcement;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tollgate_budgets::{Budgets, BudgetsConfig, RateLimiter};
use tollgate_metering::LedgerWriter;
use tollgate_proto::v1;
use tollgate_providers::{ClientConfig, HttpClient, ProviderError};
use tollgate_routing::{PolicyScope, PolicySet, RoutingPolicy};

/// Bounds and settings of the data plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest request body accepted; larger ones get 413 before being read whole.
    pub max_body_bytes: usize,
    /// Largest non-streaming upstream response buffered for usage extraction.
    pub max_response_bytes: usize,
    /// Largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// Upstream client bounds.
    pub upstream: ClientConfig,
    /// Longest silence allowed from an upstream while its body is being read; a stream
    /// that stalls longer ends with an error and is charged for what passed.
    pub stream_idle_timeout: Duration,
    /// How long in-flight requests may finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Budget alert delivery.
    pub alerts: AlertConfig,
    /// When an upstream is put in cooldown after repeated failures.
    pub breaker: BreakerConfig,
    /// Most distinct virtual keys given their own `/metrics` series (0: none; the rest
    /// are counted as `other`).
    pub metrics_key_labels: usize,
    /// Most distinct principals given their own `/metrics` series (0: none; the rest
    /// are counted as `other`).
    pub metrics_principal_labels: usize,
    /// Record the OpenTelemetry GenAI attributes (`gen_ai.*`, status, request id) on
    /// each request span. Set it when spans are exported: off, the request path records
    /// nothing beyond the request id and endpoint the logs already carry.
    pub trace_attributes: bool,
    /// Memory all buffered request bodies may hold at once, in bytes. A request whose
    /// body would take more than what is left is refused at once with 503 `overloaded`
    /// and `retry-after`, never queued; its share is given back when the request ends.
    pub max_buffered_body_bytes: usize,
    /// Most CPU-heavy tasks (tokenizer counts, parsing large bodies) run at once on the
    /// blocking pool, off the async runtime; more wait their turn there, so a health
    /// probe never waits behind them.
    pub heavy_work_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body_bytes: 4 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            upstream: ClientConfig::default(),
            stream_idle_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(10),
            alerts: AlertConfig::default(),
            metrics_key_labels: 0,
            metrics_principal_labels: 0,
            trace_attributes: false,
            breaker: BreakerConfig::default(),
            max_buffered_body_bytes: 256 * 1024 * 1024,
            heavy_work_threads: offload::default_threads(),
        }
    }
}

/// The routing policies of a snapshot: those the control plane attached to keys,
/// projects, teams and organizations, over a default — the control plane's when it set
/// one (so every gateway routes alike), else this gateway's own from its flags.
fn policy_set(gateway_default: RoutingPolicy, wire: Vec<(Option<PolicyScope>, RoutingPolicy)>) -> PolicySet {
    let mut default = gateway_default;
    let mut scoped = Vec::with_capacity(wire.len());
    for (scope, policy) in wire {
        match scope {
            Some(scope) => scoped.push((scope, policy)),
            None => default = policy,
        }
    }
    let mut set = PolicySet::with_default(default);
    for (scope, policy) in scoped {
        set.insert(scope, policy);
    }
    set
}

/// One step of configuration from the control plane, as `Watch` delivers it.
#[derive(Debug, Clone, Copy)]
pub enum Update<'a> {
    /// A complete configuration: replaces the snapshot being served.
    Snapshot(&'a v1::Snapshot),
    /// What changed since the snapshot being served: patches it, or is refused whole
    /// when it does not start from its revision.
    Change(&'a v1::ConfigChange),
}

impl Update<'_> {
    /// The revision the update leads to.
    pub fn revision(&self) -> i64 {
        match self {
            Update::Snapshot(s) => s.revision,
            Update::Change(c) => c.revision,
        }
    }
}

/// The data plane: configuration, the live snapshot and the shared upstream client.
/// Cheap to share behind an `Arc`.
pub struct DataPlane {
    config: Config,
    snapshot: ArcSwap<Snapshot>,
    /// Held while an update is built from the snapshot being served, so two updates
    /// never both start from the same one.
    applying: std::sync::Mutex<()>,
    client: HttpClient,
    enforcement: Enforcement,
    ledger: OnceLock<LedgerWriter>,
    metrics: Arc<metrics::Metrics>,
    /// The routing policy of requests with none attached (from [`Config::breaker`]).
    routing: RoutingPolicy,
    /// The memory budget of buffered request bodies ([`Config::max_buffered_body_bytes`]).
    bodies: offload::BodyBudget,
    /// The bounded blocking pool CPU-heavy work runs on ([`Config::heavy_work_threads`]).
    offload: offload::Offload,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane").field("revision", &self.snapshot.load().revision).finish_non_exhaustive()
    }
}

impl DataPlane {
    /// Builds a data plane with an empty snapshot (not ready until the first apply) and
    /// in-process counters: budgets and rate limits hold for this gateway alone.
    pub fn new(config: Config) -> Result<Arc<Self>, ProviderError> {
        let budgets = Budgets::memory(BudgetsConfig::default());
        Self::with_counters(config, budgets, RateLimiter::memory())
    }

    /// Builds a data plane whose budgets and rate limits live in the given counters
    /// (e.g. Redis shared by every gateway). Must be called inside a Tokio runtime when
    /// an alert webhook is configured.
    pub fn with_counters(config: Config, budgets: Budgets, limiter: RateLimiter) -> Result<Arc<Self>, ProviderError> {
        let client = HttpClient::new(config.upstream.clone())?;
        let alerts = if config.alerts.webhook_url.is_some() {
            Alerts::start(config.alerts.clone(), client.clone())
        } else {
            Alerts::disabled()
        };
        let enforcement = Enforcement { budgets, limiter, alerts };
        Ok(Arc::new(DataPlane {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            applying: std::sync::Mutex::new(()),
            client,
            enforcement,
            ledger: OnceLock::new(),
            metrics: Arc::new(metrics::Metrics::new(config.metrics_key_labels, config.metrics_principal_labels)),
            routing: default_policy(config.breaker),
            bodies: offload::BodyBudget::new(config.max_buffered_body_bytes),
            offload: offload::Offload::new(config.heavy_work_threads),
            config,
        }))
    }

    /// Gives the data plane its ledger: from then on every request that reached an
    /// upstream is recorded. Set once; returns false (and keeps the first) if one is
    /// already set.
    pub fn set_ledger(&self, writer: LedgerWriter) -> bool {
        self.ledger.set(writer).is_ok()
    }

    /// The ledger writer, when one is set.
    pub fn ledger(&self) -> Option<&LedgerWriter> {
        self.ledger.get()
    }

    /// The budget engine requests are charged through (to rebuild counters from the
    /// ledger at start-up, for instance).
    pub fn budgets(&self) -> &Budgets {
        &self.enforcement.budgets
    }

    /// The snapshot requests are served from right now.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The current snapshot as an owned reference count, for a request that holds it
    /// across awaits (an `ArcSwap` guard must not be).
    pub(crate) fn snapshot_arc(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Applies a full snapshot from the control plane and swaps it in atomically.
    /// Invalid items are skipped on their own and returned (and reported as in
    /// [`DataPlane::apply_update`]); a snapshot older than the current one is ignored
    /// (use [`DataPlane::apply_update`] for one the control plane sends as authoritative).
    pub fn apply(&self, wire: &v1::Snapshot) -> Vec<Rejected> {
        let current = self.snapshot.load();
        if current.loaded && wire.revision < current.revision {
            let reason = format!("ignored: older than revision {}", current.revision);
            return vec![Rejected::new(RejectedKind::Snapshot, &wire.revision.to_string(), reason)];
        }
        drop(current);
        match self.apply_update(Update::Snapshot(wire)) {
            Ok(rejected) => rejected,
            // A snapshot is never refused; kept total rather than unwrapped.
            Err(e) => vec![Rejected::new(RejectedKind::Snapshot, &wire.revision.to_string(), e.to_string())],
        }
    }

    /// The one path configuration takes into the data plane, at start-up and on every
    /// change: a full snapshot replaces the snapshot being served (whatever its
    /// revision: the control plane decides, e.g. after it restarted on a fresh
    /// database), a change patches it. The result is swapped in atomically; requests in
    /// flight finish on the snapshot they started with.
    ///
    /// Items that fail to convert are left out on their own and returned; each is logged
    /// at `error` and counted in `tollgate_config_rejected_total{kind}`, since a gateway
    /// serving without a published object (a budget!) must say so loudly. A change that does not start from the revision being served is
    /// refused whole and nothing changes: the caller must catch up from its revision.
    pub fn apply_update(&self, update: Update<'_>) -> Result<Vec<Rejected>, ChangeError> {
        let _one_at_a_time = self.applying.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.snapshot.load_full();
        let (mut next, problems) = match update {
            Update::Snapshot(wire) => {
                if current.loaded && wire.revision < current.revision {
                    tracing::warn!(
                        revision = wire.revision,
                        previous = current.revision,
                        "control plane sent an older snapshot (restarted on another database?); replacing"
                    );
                }
                Snapshot::build(wire, &self.client, &current)
            }
            Update::Change(change) => current.patch(change, &self.client)?,
        };
        // Breakers outlive configuration changes; the default policy is the gateway's.
        next.health = current.health.carry_over(&next.catalog);
        next.policies = policy_set(self.routing.clone(), next.wire_policies.clone());
        for r in &problems {
            tracing::error!(revision = next.revision, kind = r.kind.as_str(), id = %r.id, reason = %r.reason, "published configuration object rejected; serving without it");
            self.metrics.config_rejected(r.kind);
        }
        match update {
            Update::Snapshot(_) => tracing::info!(
                revision = next.revision,
                keys = next.keys.len(),
                models = next.catalog.len(),
                budgets = next.budget_count(),
                "snapshot applied"
            ),
            Update::Change(c) => tracing::debug!(
                from = c.from_revision,
                revision = next.revision,
                keys = c.upsert_keys.len() + c.delete_keys.len(),
                budgets = c.upsert_budgets.len() + c.delete_budgets.len(),
                "change applied"
            ),
        }
        self.metrics.snapshot_applied(next.revision, tollgate_core::Timestamp::now().unix_millis());
        self.snapshot.store(Arc::new(next));
        Ok(problems)
    }

    /// The data plane's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Prometheus text exposition of the data plane's metrics (`GET /metrics`).
    pub fn render_metrics(&self) -> String {
        let spool = self.ledger().map(|l| l.spool_depth());
        let mut out = self.metrics.render(tollgate_core::Timestamp::now().unix_millis(), spool);
        self.metrics.render_config_rejected(&mut out);
        self.metrics.render_ledger(&mut out, self.ledger().map(|l| l.stats()).as_ref());
        self.metrics.render_reservations(&mut out);
        out
    }
}
