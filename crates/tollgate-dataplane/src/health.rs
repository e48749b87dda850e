//! Upstream health: a circuit breaker per provider credential. A provider that fails
//! `failures_to_open` times in a row is put in cooldown and skipped (its model's next
//! deployment serves instead); when the cooldown ends exactly one probe request is let
//! through — success closes the breaker, failure opens it again. Breakers live beside
//! the snapshot, so a configuration change does not forget a failing upstream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (0: never).
    pub failures_to_open: u32,
    /// How long an open breaker skips the provider before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures_to_open: 5, cooldown: Duration::from_secs(30) }
    }
}

#[derive(Default)]
struct Breaker {
    consecutive: AtomicU32,
    /// Unix millis until which the provider is skipped; 0 when closed.
    open_until_ms: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
}

/// The breakers of every provider that has failed at least once.
pub(crate) struct Health {
    cfg: BreakerConfig,
    breakers: RwLock<HashMap<Arc<str>, Arc<Breaker>>>,
}

impl Health {
    pub(crate) fn new(cfg: BreakerConfig) -> Self {
        Health { cfg, breakers: RwLock::new(HashMap::new()) }
    }

    fn get(&self, provider: &str) -> Option<Arc<Breaker>> {
        self.breakers.read().unwrap_or_else(|e| e.into_inner()).get(provider).cloned()
    }

    /// Whether a request may go to `provider` now (taking the probe slot when the
    /// cooldown has just ended).
    pub(crate) fn admit(&self, provider: &str, now_ms: u64) -> bool {
        let Some(b) = self.get(provider) else { return true };
        let until = b.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now_ms < until {
            return false;
        }
        b.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Records how a call to `provider` went.
    pub(crate) fn record(&self, provider: &Arc<str>, ok: bool, now_ms: u64) {
        if ok {
            if let Some(b) = self.get(provider) {
                b.consecutive.store(0, Ordering::Release);
                b.open_until_ms.store(0, Ordering::Release);
                b.probing.store(false, Ordering::Release);
            }
            return;
        }
        if self.cfg.failures_to_open == 0 {
            return;
        }
        let b = match self.get(provider) {
            Some(b) => b,
            None => {
                self.breakers.write().unwrap_or_else(|e| e.into_inner()).entry(provider.clone()).or_default().clone()
            }
        };
        let failures = b.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let was_probing = b.probing.swap(false, Ordering::AcqRel);
        if failures >= self.cfg.failures_to_open || was_probing {
            let cooldown = u64::try_from(self.cfg.cooldown.as_millis()).unwrap_or(u64::MAX);
            b.open_until_ms.store(now_ms.saturating_add(cooldown).max(1), Ordering::Release);
            tracing::warn!(provider = %provider, failures, cooldown_s = self.cfg.cooldown.as_secs(), "upstream put in cooldown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_cools_down_probes_once_and_closes_or_reopens() {
        let h = Health::new(BreakerConfig { failures_to_open: 3, cooldown: Duration::from_millis(1000) });
        let p: Arc<str> = "up".into();
        for t in 0..2 {
            h.record(&p, false, t);
            assert!(h.admit("up", t), "under the threshold the provider is still used");
        }
        h.record(&p, false, 10);
        assert!(!h.admit("up", 11), "open after 3 consecutive failures");
        assert!(!h.admit("up", 1009));
        assert!(h.admit("up", 1010), "the cooldown is over: one probe");
        assert!(!h.admit("up", 1011), "only one probe at a time");
        h.record(&p, false, 1020);
        assert!(!h.admit("up", 1500), "a failed probe opens it again");
        assert!(h.admit("up", 2020));
        h.record(&p, true, 2030);
        assert!(h.admit("up", 2031) && h.admit("up", 2032), "a successful probe closes it");
        h.record(&p, false, 2040);
        assert!(h.admit("up", 2041), "the failure count started again from zero");
        assert!(h.admit("never-failed", 0));
    }
}
