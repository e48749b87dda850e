//! Prometheus metrics of the data plane, rendered in the text exposition format at
//! `GET /metrics`.
//!
//! Series are created on first use and kept in small maps behind read-mostly locks; the
//! hot path takes one read lock and bumps atomics. Label values are bounded: models and
//! providers come from the snapshot (unknown names are folded into `other`), statuses
//! and error codes from closed sets, and per-key and per-principal labels are off
//! unless enabled, each with a cap on distinct values (the rest are reported as `other`).

use hashbrown::{Equivalent, HashMap};
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tollgate_budgets::Amount;
use tollgate_proto::convert::Kind as ConfigKind;
use tollgate_telemetry::prometheus::{Histogram, Kind, header, labels, sample};

/// Upper bounds (seconds) of the latency buckets: 50 µs to 120 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0,
];

/// Upper bounds (seconds) of the gateway-overhead buckets: 10 µs to 100 ms.
const OVERHEAD_BUCKETS: &[f64] =
    &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];

/// Upper bounds of the reservation-to-charge ratio buckets: 1 is a reservation the
/// request used whole; the issue's target is a realistic mix well under 2.
const RESERVATION_RATIO_BUCKETS: &[f64] = &[1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0];

/// Counters of one (endpoint, model, provider) combination.
struct ModelSeries {
    duration: Histogram,
    ttft: Histogram,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    cost_nanos: AtomicU64,
}

impl ModelSeries {
    fn new() -> Self {
        ModelSeries {
            duration: Histogram::new(LATENCY_BUCKETS),
            ttft: Histogram::new(LATENCY_BUCKETS),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            cost_nanos: AtomicU64::new(0),
        }
    }
}

/// Labels of a request counter.
#[derive(Hash, PartialEq, Eq)]
struct ReqKey {
    endpoint: &'static str,
    model: Box<str>,
    provider: Box<str>,
    status: u16,
    error: &'static str,
}

/// The borrowed form of [`ReqKey`], hashed identically, so lookups never allocate.
#[derive(Hash, Clone, Copy)]
struct ReqRef<'a> {
    endpoint: &'static str,
    model: &'a str,
    provider: &'a str,
    status: u16,
    error: &'static str,
}

impl Equivalent<ReqKey> for ReqRef<'_> {
    fn equivalent(&self, k: &ReqKey) -> bool {
        self.endpoint == k.endpoint
            && self.status == k.status
            && self.error == k.error
            && self.model == &*k.model
            && self.provider == &*k.provider
    }
}

impl From<ReqRef<'_>> for ReqKey {
    fn from(r: ReqRef<'_>) -> Self {
        ReqKey {
            endpoint: r.endpoint,
            model: r.model.into(),
            provider: r.provider.into(),
            status: r.status,
            error: r.error,
        }
    }
}

/// Labels of a per-model series.
#[derive(Hash, PartialEq, Eq)]
struct SeriesKey {
    endpoint: &'static str,
    model: Box<str>,
    provider: Box<str>,
}

/// The borrowed form of [`SeriesKey`].
#[derive(Hash, Clone, Copy)]
struct SeriesRef<'a> {
    endpoint: &'static str,
    model: &'a str,
    provider: &'a str,
}

impl Equivalent<SeriesKey> for SeriesRef<'_> {
    fn equivalent(&self, k: &SeriesKey) -> bool {
        self.endpoint == k.endpoint && self.model == &*k.model && self.provider == &*k.provider
    }
}

impl From<SeriesRef<'_>> for SeriesKey {
    fn from(r: SeriesRef<'_>) -> Self {
        SeriesKey { endpoint: r.endpoint, model: r.model.into(), provider: r.provider.into() }
    }
}

/// The outcome of one request, as metrics see it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Observation<'a> {
    /// `chat`, `messages`, `responses`, `embeddings`.
    pub(crate) endpoint: &'static str,
    /// The public model, when the request got far enough to name one.
    pub(crate) model: Option<&'a str>,
    /// The provider that served (or failed), when dispatched.
    pub(crate) provider: Option<&'a str>,
    /// The key, for opt-in per-key series.
    pub(crate) key: Option<&'a str>,
    /// The key's principal (end user), for opt-in per-principal series.
    pub(crate) principal: Option<&'a str>,
    /// The HTTP status returned.
    pub(crate) status: u16,
    /// The error code returned, if any.
    pub(crate) error: Option<&'static str>,
    /// From the first byte of the request to the response head (or the whole answer
    /// for non-streaming requests).
    pub(crate) total: Duration,
    /// Time spent waiting on the upstream within `total`.
    pub(crate) upstream: Duration,
}

/// What a finished stream or response reports for token and cost counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Metered {
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cached_tokens: u64,
    pub(crate) cost_nanos: u64,
}

/// The data plane's metrics registry.
pub(crate) struct Metrics {
    requests: RwLock<HashMap<ReqKey, AtomicU64>>,
    models: RwLock<HashMap<SeriesKey, ModelSeries>>,
    overhead: HashMap<&'static str, Histogram>,
    budget_refusals: RwLock<HashMap<&'static str, AtomicU64>>,
    rate_refusals: RwLock<HashMap<(&'static str, &'static str), AtomicU64>>,
    upstream_errors: RwLock<HashMap<SeriesKey, AtomicU64>>,
    /// Upstream usage reports not believed (charged from the gateway's own count), by
    /// provider (kept in the provider slot).
    usage_rejected: RwLock<HashMap<SeriesKey, AtomicU64>>,
    /// Failed attempts followed by another (a retry or the model's next deployment), by
    /// (model, provider).
    fallbacks: RwLock<HashMap<SeriesKey, AtomicU64>>,
    key_requests: Capped,
    principal_requests: Capped,
    inflight: AtomicI64,
    snapshot_revision: AtomicI64,
    snapshot_applied_unix_ms: AtomicI64,
    /// Published objects this gateway refused to load, by kind (in [`ConfigKind::PUBLISHED`]
    /// order), every series present from the start so an alert can watch its increase.
    config_rejected: [AtomicU64; ConfigKind::PUBLISHED.len()],
    /// Ledger entries of requests served by a model without a price (recorded at zero
    /// cost with `priced: false`).
    unpriced_entries: AtomicU64,
    /// What each settled request had reserved over what it was charged.
    reservation_ratio: Histogram,
    /// Settled requests charged more than they had reserved (an upstream that ignored
    /// the forwarded output cap, or a prompt bound that undercounted).
    reservation_overruns: AtomicU64,
    /// Requests forwarded with their output cap lowered by a `clamp` budget.
    output_capped: AtomicU64,
}

/// The endpoints metrics are kept for.
pub(crate) const ENDPOINTS: &[&str] = &["chat", "messages", "responses", "embeddings"];

const OTHER: &str = "other";

impl Metrics {
    /// A registry; a cap > 0 enables per-key (per-principal) request counters for that
    /// many distinct keys (principals).
    pub(crate) fn new(key_label_cap: usize, principal_label_cap: usize) -> Self {
        Metrics {
            requests: RwLock::new(HashMap::new()),
            models: RwLock::new(HashMap::new()),
            overhead: ENDPOINTS.iter().map(|e| (*e, Histogram::new(OVERHEAD_BUCKETS))).collect(),
            budget_refusals: RwLock::new(HashMap::new()),
            rate_refusals: RwLock::new(HashMap::new()),
            upstream_errors: RwLock::new(HashMap::new()),
            usage_rejected: RwLock::new(HashMap::new()),
            fallbacks: RwLock::new(HashMap::new()),
            key_requests: Capped::new(key_label_cap),
            principal_requests: Capped::new(principal_label_cap),
            inflight: AtomicI64::new(0),
            snapshot_revision: AtomicI64::new(0),
            snapshot_applied_unix_ms: AtomicI64::new(0),
            config_rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            unpriced_entries: AtomicU64::new(0),
            reservation_ratio: Histogram::new(RESERVATION_RATIO_BUCKETS),
            reservation_overruns: AtomicU64::new(0),
            output_capped: AtomicU64::new(0),
        }
    }

    /// Counts a request in flight until the guard drops.
    /// Counts a ledger entry of a request served unpriced.
    pub(crate) fn unpriced_entry(&self) {
        self.unpriced_entries.fetch_add(1, Ordering::Relaxed);
    }

    /// Records what a settled request had reserved against what it was charged: the
    /// ratio (in money when both are priced, else in tokens) and whether the charge
    /// overran the reservation in either unit.
    pub(crate) fn reservation_settled(&self, reserved: Amount, charged: Amount) {
        let (r_money, c_money) = (reserved.money.nanos(), charged.money.nanos());
        if c_money > r_money || charged.tokens > reserved.tokens {
            self.reservation_overruns.fetch_add(1, Ordering::Relaxed);
        }
        let ratio = if r_money > 0 && c_money > 0 {
            r_money as f64 / c_money as f64
        } else if charged.tokens > 0 {
            reserved.tokens as f64 / charged.tokens as f64
        } else {
            return;
        };
        self.reservation_ratio.observe_value(ratio);
    }

    /// Counts a request whose output cap a `clamp` budget lowered.
    pub(crate) fn output_capped(&self) {
        self.output_capped.fetch_add(1, Ordering::Relaxed);
    }

    /// The reservation series: how tight reservations are and how often one was overrun.
    pub(crate) fn render_reservations(&self, out: &mut String) {
        let name = "tollgate_reservation_ratio";
        let help = "Reserved over charged per settled request (money when priced, else tokens): 1 is no waste.";
        header(out, name, Kind::Histogram, help);
        self.reservation_ratio.render(out, name, "");
        let counters: [(&str, &str, &AtomicU64); 2] = [
            (
                "tollgate_reservation_overruns_total",
                "Settled requests charged more than they reserved (the budget may pass its limit by the difference).",
                &self.reservation_overruns,
            ),
            (
                "tollgate_output_capped_total",
                "Requests forwarded with their output cap lowered by a clamp budget.",
                &self.output_capped,
            ),
        ];
        for (name, help, v) in counters {
            header(out, name, Kind::Counter, help);
            sample(out, name, "", v.load(Ordering::Relaxed));
        }
    }

    /// The ledger's series: what this data plane recorded unpriced, and, when it has a
    /// ledger writer, that writer's counters.
    pub(crate) fn render_ledger(&self, out: &mut String, stats: Option<&tollgate_metering::LedgerStats>) {
        let help = "Ledger entries of requests served by a model without a price (charged $0, `priced: false`).";
        header(out, "tollgate_ledger_unpriced_entries_total", Kind::Counter, help);
        sample(out, "tollgate_ledger_unpriced_entries_total", "", self.unpriced_entries.load(Ordering::Relaxed));
        let Some(s) = stats else { return };
        let series: [(&str, Kind, &str, u64); 5] = [
            (
                "tollgate_ledger_queue_depth",
                Kind::Gauge,
                "Ledger entries waiting in memory for the sink.",
                s.queue_depth,
            ),
            (
                "tollgate_ledger_sink_failures_total",
                Kind::Counter,
                "Ledger sink writes that failed (and were retried).",
                s.sink_failures,
            ),
            (
                "tollgate_ledger_recovered_entries_total",
                Kind::Counter,
                "Requests dispatched before a crash and settled from the ledger log at start (`usage_source: recovered`): reconcile them with the provider.",
                s.recovered,
            ),
            (
                "tollgate_ledger_rejected_pending",
                Kind::Gauge,
                "Ledger entries the sink refused as invalid, kept in the dead-letter file and retried (`tollgate-gateway --list-rejected-ledger`).",
                s.rejected_pending,
            ),
            (
                "tollgate_ledger_log_failures_total",
                Kind::Counter,
                "Writes to the crash-safe ledger log that failed (those requests are not crash-safe).",
                s.journal_failures,
            ),
        ];
        for (name, kind, help, v) in series {
            header(out, name, kind, help);
            sample(out, name, "", v);
        }
    }

    /// Requests in flight now (until their response head is handed over).
    pub(crate) fn inflight_now(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed)
    }

    pub(crate) fn inflight(&self) -> InflightGuard<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(&self.inflight)
    }

    /// Records a finished request (its response head, for streams).
    pub(crate) fn observe(&self, o: &Observation<'_>) {
        let model = o.model.unwrap_or("");
        let provider = o.provider.unwrap_or("");
        let error = o.error.unwrap_or("");
        bump(&self.requests, ReqRef { endpoint: o.endpoint, model, provider, status: o.status, error }, ReqKey::from);
        if o.model.is_some() && o.status < 400 {
            with_series(&self.models, SeriesRef { endpoint: o.endpoint, model, provider }, |s| {
                s.duration.observe(o.total)
            });
        }
        if let Some(h) = self.overhead.get(o.endpoint)
            && o.status < 400
            && o.upstream > Duration::ZERO
        {
            h.observe(o.total.saturating_sub(o.upstream));
        }
        if let Some(key) = o.key {
            self.key_requests.bump(key);
        }
        if let Some(principal) = o.principal {
            self.principal_requests.bump(principal);
        }
    }

    /// Whether requests are counted per principal (so callers need not look it up).
    pub(crate) fn principal_labels(&self) -> bool {
        self.principal_requests.cap > 0
    }

    /// Records the time to the first token of a stream.
    pub(crate) fn time_to_first_token(&self, endpoint: &'static str, model: &str, provider: &str, d: Duration) {
        with_series(&self.models, SeriesRef { endpoint, model, provider }, |s| s.ttft.observe(d));
    }

    /// Records tokens and cost once a request is settled.
    pub(crate) fn metered(&self, endpoint: &'static str, model: &str, provider: &str, m: Metered) {
        with_series(&self.models, SeriesRef { endpoint, model, provider }, |s| {
            s.input_tokens.fetch_add(m.input_tokens, Ordering::Relaxed);
            s.output_tokens.fetch_add(m.output_tokens, Ordering::Relaxed);
            s.cached_tokens.fetch_add(m.cached_tokens, Ordering::Relaxed);
            s.cost_nanos.fetch_add(m.cost_nanos, Ordering::Relaxed);
        });
    }

    /// Counts a refusal by its cause: budget scope, rate-limit dimension, or upstream
    /// failure kind.
    pub(crate) fn refused(&self, e: &crate::ApiError) {
        use crate::ApiError;
        match e {
            ApiError::BudgetExceeded(x) => self.budget_refused(x.budget.scope.as_str()),
            ApiError::RateLimited(r, provider) => {
                self.rate_limited(r.dimension.as_str(), if *provider { "provider" } else { "virtual_key" });
            }
            _ => {}
        }
    }

    /// A budget refused a request at `scope`.
    pub(crate) fn budget_refused(&self, scope: &'static str) {
        bump(&self.budget_refusals, scope, |s| s);
    }

    /// A rate limit refused a request.
    pub(crate) fn rate_limited(&self, dimension: &'static str, limit_of: &'static str) {
        bump(&self.rate_refusals, (dimension, limit_of), |k| k);
    }

    /// An upstream call failed.
    pub(crate) fn upstream_error(&self, provider: &str, kind: &'static str) {
        // Kept as (endpoint slot = kind, model slot empty, provider).
        bump(&self.upstream_errors, SeriesRef { endpoint: kind, model: "", provider }, SeriesKey::from);
    }

    /// `provider` reported usage the gateway does not believe (negative, fractional,
    /// absurd): the request was charged from the gateway's own count.
    pub(crate) fn upstream_usage_rejected(&self, provider: &str) {
        bump(&self.usage_rejected, SeriesRef { endpoint: "", model: "", provider }, SeriesKey::from);
    }

    /// A failed attempt at `provider` for `model` is followed by another (a retry or the
    /// next deployment).
    pub(crate) fn fallback(&self, model: &str, from_provider: &str) {
        bump(&self.fallbacks, SeriesRef { endpoint: "", model, provider: from_provider }, SeriesKey::from);
    }

    /// A snapshot was applied.
    pub(crate) fn snapshot_applied(&self, revision: i64, unix_ms: i64) {
        self.snapshot_revision.store(revision, Ordering::Relaxed);
        self.snapshot_applied_unix_ms.store(unix_ms, Ordering::Relaxed);
    }

    /// A published object of `kind` was refused (not loaded) by this gateway.
    pub(crate) fn config_rejected(&self, kind: ConfigKind) {
        if let Some(i) = ConfigKind::PUBLISHED.iter().position(|k| *k == kind) {
            self.config_rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Appends `tollgate_config_rejected_total{kind}`, apart from [`Metrics::render`].
    pub(crate) fn render_config_rejected(&self, out: &mut String) {
        let name = "tollgate_config_rejected_total";
        header(out, name, Kind::Counter, "Published configuration objects this gateway refused to load, by kind.");
        for (kind, c) in ConfigKind::PUBLISHED.iter().zip(&self.config_rejected) {
            sample(out, name, &labels(&[("kind", kind.as_str())]), c.load(Ordering::Relaxed));
        }
    }

    /// The text exposition of every series, plus the gauges passed in.
    pub(crate) fn render(&self, now_unix_ms: i64, spool_depth: Option<u64>) -> String {
        let mut out = String::with_capacity(8192);
        header(
            &mut out,
            "tollgate_requests_total",
            Kind::Counter,
            "Requests by endpoint, model, provider, status and error code.",
        );
        for (k, c) in read(&self.requests).iter() {
            let status = k.status.to_string();
            let l = labels(&[
                ("endpoint", k.endpoint),
                ("model", &*k.model),
                ("provider", &*k.provider),
                ("status", status.as_str()),
                ("error", k.error),
            ]);
            sample(&mut out, "tollgate_requests_total", &l, c.load(Ordering::Relaxed));
        }
        let models = read(&self.models);
        header(
            &mut out,
            "tollgate_request_duration_seconds",
            Kind::Histogram,
            "Total time of successful requests (to the response head for streams).",
        );
        for (k, s) in models.iter() {
            s.duration.render(
                &mut out,
                "tollgate_request_duration_seconds",
                &labels3(k.endpoint, &k.model, &k.provider),
            );
        }
        header(
            &mut out,
            "tollgate_time_to_first_token_seconds",
            Kind::Histogram,
            "Time from request to the first streamed event sent to the caller.",
        );
        for (k, s) in models.iter() {
            s.ttft.render(
                &mut out,
                "tollgate_time_to_first_token_seconds",
                &labels3(k.endpoint, &k.model, &k.provider),
            );
        }
        header(
            &mut out,
            "tollgate_gateway_overhead_seconds",
            Kind::Histogram,
            "Time spent in the gateway: total minus time waiting on the upstream.",
        );
        for e in ENDPOINTS {
            if let Some(h) = self.overhead.get(e) {
                h.render(&mut out, "tollgate_gateway_overhead_seconds", &labels(&[("endpoint", *e)]));
            }
        }
        header(
            &mut out,
            "tollgate_tokens_total",
            Kind::Counter,
            "Tokens metered, by model and kind (cached is a subset of input).",
        );
        for (k, s) in models.iter() {
            let l = labels3(k.endpoint, &k.model, &k.provider);
            for (kind, v) in [("input", &s.input_tokens), ("output", &s.output_tokens), ("cached", &s.cached_tokens)] {
                let l = format!("{l},{}", labels(&[("kind", kind)]));
                sample(&mut out, "tollgate_tokens_total", &l, v.load(Ordering::Relaxed));
            }
        }
        header(
            &mut out,
            "tollgate_cost_usd_total",
            Kind::Counter,
            "Cost charged, in USD (exact integer nano-dollars in the ledger).",
        );
        for (k, s) in models.iter() {
            let nanos = s.cost_nanos.load(Ordering::Relaxed);
            let l = labels3(k.endpoint, &k.model, &k.provider);
            let usd = format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000);
            sample(&mut out, "tollgate_cost_usd_total", &l, usd);
        }
        drop(models);
        header(
            &mut out,
            "tollgate_budget_refusals_total",
            Kind::Counter,
            "Requests refused by a block budget, by the scope that refused.",
        );
        for (scope, c) in read(&self.budget_refusals).iter() {
            sample(
                &mut out,
                "tollgate_budget_refusals_total",
                &labels(&[("scope", *scope)]),
                c.load(Ordering::Relaxed),
            );
        }
        header(&mut out, "tollgate_rate_limit_refusals_total", Kind::Counter, "Requests refused by a rate limit.");
        for ((d, of), c) in read(&self.rate_refusals).iter() {
            let l = labels(&[("dimension", *d), ("limit_of", *of)]);
            sample(&mut out, "tollgate_rate_limit_refusals_total", &l, c.load(Ordering::Relaxed));
        }
        header(
            &mut out,
            "tollgate_upstream_errors_total",
            Kind::Counter,
            "Failed upstream calls, by provider and kind.",
        );
        for (k, c) in read(&self.upstream_errors).iter() {
            let l = labels(&[("provider", &*k.provider), ("kind", k.endpoint)]);
            sample(&mut out, "tollgate_upstream_errors_total", &l, c.load(Ordering::Relaxed));
        }
        header(
            &mut out,
            "tollgate_upstream_usage_rejected_total",
            Kind::Counter,
            "Upstream usage reports not believed (charged from the gateway's own token count), by provider.",
        );
        for (k, c) in read(&self.usage_rejected).iter() {
            let l = labels(&[("provider", &*k.provider)]);
            sample(&mut out, "tollgate_upstream_usage_rejected_total", &l, c.load(Ordering::Relaxed));
        }
        header(
            &mut out,
            "tollgate_upstream_fallbacks_total",
            Kind::Counter,
            "Failed upstream attempts followed by another (retry or next deployment), by model and the provider that failed.",
        );
        for (k, c) in read(&self.fallbacks).iter() {
            let l = labels(&[("model", &*k.model), ("from_provider", &*k.provider)]);
            sample(&mut out, "tollgate_upstream_fallbacks_total", &l, c.load(Ordering::Relaxed));
        }
        self.key_requests.render(
            &mut out,
            "tollgate_key_requests_total",
            "key",
            "Requests per virtual key (opt-in, capped; the rest are `other`).",
        );
        self.principal_requests.render(
            &mut out,
            "tollgate_principal_requests_total",
            "principal",
            "Requests per principal (opt-in, capped; the rest are `other`).",
        );
        header(&mut out, "tollgate_inflight_requests", Kind::Gauge, "Requests being served.");
        sample(&mut out, "tollgate_inflight_requests", "", self.inflight.load(Ordering::Relaxed));
        header(
            &mut out,
            "tollgate_snapshot_revision",
            Kind::Gauge,
            "Control-plane revision of the configuration being served.",
        );
        sample(&mut out, "tollgate_snapshot_revision", "", self.snapshot_revision.load(Ordering::Relaxed));
        header(
            &mut out,
            "tollgate_snapshot_age_seconds",
            Kind::Gauge,
            "Seconds since the configuration was last applied.",
        );
        let applied = self.snapshot_applied_unix_ms.load(Ordering::Relaxed);
        let age = if applied == 0 { 0.0 } else { (now_unix_ms - applied).max(0) as f64 / 1000.0 };
        sample(&mut out, "tollgate_snapshot_age_seconds", "", age);
        if let Some(depth) = spool_depth {
            header(
                &mut out,
                "tollgate_ledger_spool_depth",
                Kind::Gauge,
                "Ledger entries waiting in the local spool for the sink.",
            );
            sample(&mut out, "tollgate_ledger_spool_depth", "", depth);
        }
        out
    }
}

/// Request counters by an unbounded label (key, principal): off when the cap is 0, else
/// the first `cap` distinct values get their own series and the rest count as `other`.
struct Capped {
    map: RwLock<HashMap<Box<str>, AtomicU64>>,
    cap: usize,
}

impl Capped {
    fn new(cap: usize) -> Self {
        Capped { map: RwLock::new(HashMap::new()), cap }
    }

    fn bump(&self, value: &str) {
        if self.cap == 0 {
            return;
        }
        if let Some(c) = read(&self.map).get(value) {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let label = if map.len() < self.cap || map.contains_key(value) { value } else { OTHER };
        map.entry(Box::from(label)).or_insert_with(|| AtomicU64::new(0)).fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        if self.cap == 0 {
            return;
        }
        header(out, name, Kind::Counter, help);
        for (v, c) in read(&self.map).iter() {
            sample(out, name, &labels(&[(label, &**v)]), c.load(Ordering::Relaxed));
        }
    }
}

/// Decrements the in-flight gauge when dropped.
pub(crate) struct InflightGuard<'a>(&'a AtomicI64);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn read<K, V>(m: &RwLock<HashMap<K, V>>) -> std::sync::RwLockReadGuard<'_, HashMap<K, V>> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

/// Bumps the counter at `key`, creating it (with the owned form of the key) on first use.
fn bump<Q, K>(map: &RwLock<HashMap<K, AtomicU64>>, key: Q, own: impl FnOnce(Q) -> K)
where
    Q: Copy + std::hash::Hash + Equivalent<K>,
    K: std::hash::Hash + Eq,
{
    if let Some(c) = read(map).get(&key) {
        c.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut w = map.write().unwrap_or_else(|e| e.into_inner());
    w.entry(own(key)).or_insert_with(|| AtomicU64::new(0)).fetch_add(1, Ordering::Relaxed);
}

fn with_series(map: &RwLock<HashMap<SeriesKey, ModelSeries>>, key: SeriesRef<'_>, f: impl FnOnce(&ModelSeries)) {
    if let Some(s) = read(map).get(&key) {
        f(s);
        return;
    }
    let mut w = map.write().unwrap_or_else(|e| e.into_inner());
    f(w.entry(SeriesKey::from(key)).or_insert_with(ModelSeries::new));
}

fn labels3(e: &str, m: &str, p: &str) -> String {
    labels(&[("endpoint", e), ("model", m), ("provider", p)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(str::to_owned))
    }

    #[test]
    fn requests_tokens_cost_and_histograms_render_in_the_exposition_format() {
        let m = Metrics::new(0, 0);
        let ok = Observation {
            endpoint: "chat",
            model: Some("gpt-4o"),
            provider: Some("oai"),
            status: 200,
            total: Duration::from_millis(3),
            upstream: Duration::from_micros(2_960),
            ..Observation::default()
        };
        m.observe(&ok);
        m.observe(&ok);
        m.observe(&Observation { status: 402, error: Some("budget_exceeded"), ..ok.clone() });
        m.metered(
            "chat",
            "gpt-4o",
            "oai",
            Metered { input_tokens: 10, output_tokens: 5, cached_tokens: 2, cost_nanos: 1_500_000_001 },
        );
        m.budget_refused("project");
        let text = m.render(0, Some(3));
        assert_eq!(
            value(
                &text,
                r#"tollgate_requests_total{endpoint="chat",model="gpt-4o",provider="oai",status="200",error=""}"#
            )
            .as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, r#"tollgate_requests_total{endpoint="chat",model="gpt-4o",provider="oai",status="402",error="budget_exceeded"}"#).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, r#"tollgate_cost_usd_total{endpoint="chat",model="gpt-4o",provider="oai"}"#).as_deref(),
            Some("1.500000001")
        );
        assert_eq!(
            value(&text, r#"tollgate_tokens_total{endpoint="chat",model="gpt-4o",provider="oai",kind="cached"}"#)
                .as_deref(),
            Some("2")
        );
        // 40 µs of overhead lands in the 50 µs bucket, twice.
        assert_eq!(
            value(&text, r#"tollgate_gateway_overhead_seconds_bucket{endpoint="chat",le="0.00005"}"#).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, r#"tollgate_gateway_overhead_seconds_bucket{endpoint="chat",le="+Inf"}"#).as_deref(),
            Some("2")
        );
        assert_eq!(value(&text, r#"tollgate_budget_refusals_total{scope="project"}"#).as_deref(), Some("1"));
        assert_eq!(value(&text, "tollgate_ledger_spool_depth").as_deref(), Some("3"));
        assert!(!text.contains("tollgate_key_requests_total"), "per-key series are opt-in");
        assert!(!text.contains("tollgate_principal_requests_total"), "per-principal series are opt-in");
    }

    #[test]
    fn per_key_series_are_capped_and_label_values_escaped() {
        let m = Metrics::new(2, 1);
        for key in ["k1", "k2", "k3", "k4", "k1"] {
            let principal = Some(if key == "k1" { "alice" } else { "bob" });
            m.observe(&Observation {
                endpoint: "chat",
                key: Some(key),
                principal,
                status: 200,
                ..Observation::default()
            });
        }
        let text = m.render(0, None);
        assert_eq!(value(&text, r#"tollgate_principal_requests_total{principal="alice"}"#).as_deref(), Some("2"));
        assert_eq!(value(&text, r#"tollgate_principal_requests_total{principal="other"}"#).as_deref(), Some("3"));
        assert_eq!(value(&text, r#"tollgate_key_requests_total{key="k1"}"#).as_deref(), Some("2"));
        assert_eq!(value(&text, r#"tollgate_key_requests_total{key="other"}"#).as_deref(), Some("2"));
        assert!(!text.contains("k3"));
        assert_eq!(tollgate_telemetry::prometheus::escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn fallbacks_are_counted_by_model_and_the_provider_that_failed() {
        let m = Metrics::new(0, 0);
        m.fallback("gpt-4o", "primary");
        m.fallback("gpt-4o", "primary");
        m.fallback("gpt-4o", "secondary");
        let text = m.render(0, None);
        let series = r#"tollgate_upstream_fallbacks_total{model="gpt-4o",from_provider="primary"}"#;
        assert_eq!(value(&text, series).as_deref(), Some("2"));
        let series = r#"tollgate_upstream_fallbacks_total{model="gpt-4o",from_provider="secondary"}"#;
        assert_eq!(value(&text, series).as_deref(), Some("1"));
    }
}
