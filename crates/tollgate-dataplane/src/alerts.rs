//! Budget alerts: a threshold crossed on commit becomes one JSON POST to the configured
//! webhook, retried with exponential backoff, off the request path.
//!
//! The budgets engine already reports each (budget, window, threshold) once across every
//! gateway sharing the counters; this module only delivers. Delivery is at-least-once
//! while the gateway runs: an alert still queued when the process stops is logged, not
//! persisted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;
use tokio::sync::mpsc;
use tollgate_budgets::{Alert, Limit};
use tollgate_providers::HttpClient;

/// Alerts waiting for delivery; beyond this the newest are logged and dropped rather
/// than letting a dead webhook grow memory without bound.
const QUEUE: usize = 1024;

/// The most of a webhook's response body that is read (and thrown away).
const MAX_WEBHOOK_RESPONSE: usize = 64 * 1024;

/// Where and how alerts are delivered.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// The webhook URL (`http://` or `https://`). No URL: alerts are only logged.
    pub webhook_url: Option<http::Uri>,
    /// Delivery attempts per alert.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failure.
    pub first_backoff: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig { webhook_url: None, max_attempts: 6, first_backoff: Duration::from_millis(500) }
    }
}

/// A cheap handle that queues alerts for delivery.
#[derive(Clone, Debug)]
pub(crate) struct Alerts {
    tx: Option<mpsc::Sender<Alert>>,
}

impl Alerts {
    /// Starts the delivery task (when a webhook is configured) on the current runtime.
    pub(crate) fn start(cfg: AlertConfig, client: HttpClient) -> Alerts {
        let Some(url) = cfg.webhook_url.clone() else { return Alerts { tx: None } };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(rx, url, cfg, client));
        Alerts { tx: Some(tx) }
    }

    /// Alerts that go nowhere but the log.
    pub(crate) fn disabled() -> Alerts {
        Alerts { tx: None }
    }

    /// Queues alerts without waiting.
    pub(crate) fn notify(&self, alerts: Vec<Alert>) {
        for a in alerts {
            tracing::warn!(
                budget = %a.budget.id, scope = %a.budget.scope, scope_id = %a.budget.scope_id,
                threshold_permille = a.threshold, "budget alert threshold crossed"
            );
            if let Some(tx) = &self.tx
                && let Err(e) = tx.try_send(a)
            {
                tracing::error!(error = %e, "alert queue full; alert logged but not delivered");
            }
        }
    }
}

/// The webhook's JSON body for one alert.
pub(crate) fn payload(a: &Alert) -> serde_json::Value {
    let b = &a.budget;
    let (limit_usd, limit_tokens, used_usd, used_tokens) = match b.limit {
        Limit::Money(m) => (Some(m.to_string()), None, Some(a.committed.money.to_string()), None),
        Limit::Tokens(t) => (None, Some(t), None, Some(a.committed.tokens)),
    };
    serde_json::json!({
        "type": "budget.threshold_crossed",
        "budget_id": b.id.as_str(),
        "scope": b.scope.as_str(),
        "scope_id": &*b.scope_id,
        "window": b.window.as_str(),
        "window_start": a.window_start.map(|t| t.to_rfc3339()),
        "threshold": format!("{}.{:03}", a.threshold / 1000, a.threshold % 1000),
        "on_breach": b.on_breach.as_str(),
        "used_usd": used_usd,
        "limit_usd": limit_usd,
        "used_tokens": used_tokens,
        "limit_tokens": limit_tokens,
    })
}

async fn deliver(mut rx: mpsc::Receiver<Alert>, url: http::Uri, cfg: AlertConfig, client: HttpClient) {
    while let Some(alert) = rx.recv().await {
        let body = Bytes::from(payload(&alert).to_string());
        let mut backoff = cfg.first_backoff;
        for attempt in 1..=cfg.max_attempts.max(1) {
            match post(&client, &url, body.clone()).await {
                Ok(()) => break,
                Err(reason) if attempt == cfg.max_attempts.max(1) => {
                    tracing::error!(budget = %alert.budget.id, %reason, attempts = attempt, "alert webhook failed; giving up");
                }
                Err(reason) => {
                    tracing::warn!(budget = %alert.budget.id, %reason, attempt, "alert webhook failed; retrying");
                    let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 4 + 1));
                    tokio::time::sleep(backoff + jitter).await;
                    backoff = backoff.saturating_mul(2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

async fn post(client: &HttpClient, url: &http::Uri, body: Bytes) -> Result<(), String> {
    let req = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "tollgate-alerts")
        .body(Full::new(body))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let resp = client.send(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // Drain a short body so the connection goes back to the pool; a webhook that answers
    // with more than this is cut off rather than read into memory.
    let _ = http_body_util::Limited::new(resp.into_body(), MAX_WEBHOOK_RESPONSE).collect().await;
    if status.is_success() { Ok(()) } else { Err(format!("webhook answered HTTP {}", status.as_u16())) }
}
