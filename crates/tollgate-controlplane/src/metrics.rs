//! Prometheus metrics of the control plane, served at `GET /metrics` beside the REST API:
//! management requests by route, method and status with a latency histogram, the
//! revision being published, and ledger entries received from gateways.
//!
//! Kept apart from `rest/`: a middleware on the whole router and one extra route.
//! Label values come from closed sets: routes are the router's patterns
//! (`/api/v1/keys/{id}`, never a concrete id) or `unmatched`; methods are the standard
//! ones or `other` (a made-up method, sent without a token, must not add a series).

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tollgate_proto::v1;
use tollgate_telemetry::prometheus::{self, Histogram, Kind, header, labels, sample};

/// Upper bounds (seconds) of the request latency buckets: 1 ms to 10 s.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Labels of a request counter: route pattern, method, status.
type ReqKey = (Box<str>, Box<str>, u16);

/// The control plane's metrics registry.
pub(crate) struct Metrics {
    requests: RwLock<HashMap<ReqKey, AtomicU64>>,
    latency: RwLock<HashMap<Box<str>, Histogram>>,
    ledger_entries: AtomicU64,
    snapshots: watch::Receiver<Arc<v1::Snapshot>>,
}

impl Metrics {
    /// A registry reading the published revision from `snapshots`.
    pub(crate) fn new(snapshots: watch::Receiver<Arc<v1::Snapshot>>) -> Self {
        Metrics {
            requests: RwLock::new(HashMap::new()),
            latency: RwLock::new(HashMap::new()),
            ledger_entries: AtomicU64::new(0),
            snapshots,
        }
    }

    /// Counts ledger entries a gateway pushed (and the store accepted).
    pub(crate) fn ledger_received(&self, n: u64) {
        self.ledger_entries.fetch_add(n, Ordering::Relaxed);
    }

    fn observe(&self, route: &str, method: &str, status: u16, d: Duration) {
        let counted = {
            let map = self.requests.read().unwrap_or_else(|e| e.into_inner());
            // Borrowed lookups would need a custom key type; the management API is not
            // a hot path, so the key is built per request.
            map.get(&(route.into(), method.into(), status)).map(|c| c.fetch_add(1, Ordering::Relaxed)).is_some()
        };
        if !counted {
            let mut map = self.requests.write().unwrap_or_else(|e| e.into_inner());
            map.entry((route.into(), method.into(), status))
                .or_insert_with(|| AtomicU64::new(0))
                .fetch_add(1, Ordering::Relaxed);
        }
        let observed = {
            let map = self.latency.read().unwrap_or_else(|e| e.into_inner());
            map.get(route).map(|h| h.observe(d)).is_some()
        };
        if !observed {
            let mut map = self.latency.write().unwrap_or_else(|e| e.into_inner());
            map.entry(route.into()).or_insert_with(|| Histogram::new(BUCKETS)).observe(d);
        }
    }

    /// The text exposition of every series.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "tollgate_control_requests_total",
            Kind::Counter,
            "Management API requests by route, method and status.",
        );
        let mut requests: Vec<_> = {
            let map = self.requests.read().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, c)| (k.clone(), c.load(Ordering::Relaxed))).collect()
        };
        requests.sort();
        for ((route, method, status), n) in requests {
            let status = status.to_string();
            let l = labels(&[("route", &*route), ("method", &*method), ("status", status.as_str())]);
            sample(&mut out, "tollgate_control_requests_total", &l, n);
        }
        let name = "tollgate_control_request_duration_seconds";
        header(&mut out, name, Kind::Histogram, "Management API request latency by route.");
        {
            let map = self.latency.read().unwrap_or_else(|e| e.into_inner());
            let mut routes: Vec<_> = map.iter().collect();
            routes.sort_by(|a, b| a.0.cmp(b.0));
            for (route, h) in routes {
                h.render(&mut out, name, &labels(&[("route", &**route)]));
            }
        }
        header(
            &mut out,
            "tollgate_control_revision",
            Kind::Gauge,
            "Configuration revision of the latest published snapshot.",
        );
        sample(&mut out, "tollgate_control_revision", "", self.snapshots.borrow().revision);
        header(
            &mut out,
            "tollgate_control_ledger_entries_received_total",
            Kind::Counter,
            "Ledger entries pushed by gateways and stored.",
        );
        let received = self.ledger_entries.load(Ordering::Relaxed);
        sample(&mut out, "tollgate_control_ledger_entries_received_total", "", received);
        out
    }
}

/// `router` plus `GET /metrics`, every request counted and timed, and run in a span
/// (exported when the binary traces).
pub(crate) fn instrument(router: Router, metrics: Arc<Metrics>) -> Router {
    let m = metrics.clone();
    router
        .route("/metrics", get(move || async move { metrics_response(&m) }))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

fn metrics_response(m: &Metrics) -> Response {
    ([(http::header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], m.render()).into_response()
}

/// The method's label: a standard method, or `other`.
fn method_label(m: &http::Method) -> &'static str {
    use http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(k, _)| k == m).map_or("other", |(_, label)| label)
}

async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let span = tracing::info_span!(
        "admin_request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = resp.status().as_u16();
    span.record("http.response.status_code", u64::from(status));
    m.observe(&route, method, status, started.elapsed());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_series() {
        let (_tx, rx) = watch::channel(Arc::new(v1::Snapshot::default()));
        let m = Metrics::new(rx);
        for i in 0..50 {
            let method = http::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
            m.observe("unmatched", method_label(&method), 405, Duration::from_millis(1));
        }
        m.observe("unmatched", method_label(&http::Method::GET), 404, Duration::from_millis(1));
        let out = m.render();
        let series: Vec<&str> = out.lines().filter(|l| l.starts_with("tollgate_control_requests_total{")).collect();
        assert_eq!(series.len(), 2, "{series:?}");
        assert!(series.iter().any(|l| l.contains("method=\"other\"") && l.ends_with(" 50")), "{series:?}");
        assert!(!out.contains("MADEUP"));
    }
}
