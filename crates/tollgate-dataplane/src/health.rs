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

    /// Lets a request go to `provider` now, or not (`None`: in cooldown, or its one
    /// probe is already out). Taken right before the call: an admission that is
    /// dropped without [`Admission::record`] (the caller hung up mid-call) gives the
    /// probe slot back, so a provider is never stuck half-open.
    pub(crate) fn admit<'a>(&'a self, provider: &'a Arc<str>, now_ms: u64) -> Option<Admission<'a>> {
        let admission = |probe| Some(Admission { health: self, provider, probe });
        let Some(b) = self.get(provider) else { return admission(None) };
        let until = b.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return admission(None);
        }
        if now_ms < until {
            return None;
        }
        match b.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => admission(Some(b)),
            Err(_) => None,
        }
    }

    /// Records how a call to `provider` went.
    fn record(&self, provider: &Arc<str>, ok: bool, now_ms: u64) {
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

/// Leave to call one provider, from [`Health::admit`].
pub(crate) struct Admission<'a> {
    health: &'a Health,
    provider: &'a Arc<str>,
    /// The breaker whose half-open probe this call is.
    probe: Option<Arc<Breaker>>,
}

impl Admission<'_> {
    /// Records how the call went (a probe's verdict closes or reopens the breaker).
    pub(crate) fn record(mut self, ok: bool, now_ms: u64) {
        // `record` reads and clears the probe flag itself.
        self.probe = None;
        self.health.record(self.provider, ok, now_ms);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.probe.take() {
            b.probing.store(false, Ordering::Release);
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
            h.admit(&p, t).unwrap().record(false, t);
            assert!(h.admit(&p, t).is_some(), "under the threshold the provider is still used");
        }
        h.admit(&p, 10).unwrap().record(false, 10);
        assert!(h.admit(&p, 11).is_none(), "open after 3 consecutive failures");
        assert!(h.admit(&p, 1009).is_none());
        let probe = h.admit(&p, 1010).expect("the cooldown is over: one probe");
        assert!(h.admit(&p, 1011).is_none(), "only one probe at a time");
        probe.record(false, 1020);
        assert!(h.admit(&p, 1500).is_none(), "a failed probe opens it again");
        let probe = h.admit(&p, 2020).unwrap();
        probe.record(true, 2030);
        assert!(h.admit(&p, 2031).is_some() && h.admit(&p, 2032).is_some(), "a successful probe closes it");
        h.admit(&p, 2040).unwrap().record(false, 2040);
        assert!(h.admit(&p, 2041).is_some(), "the failure count started again from zero");
        assert!(h.admit(&"never-failed".into(), 0).is_some());
    }

    #[test]
    fn a_probe_abandoned_without_a_verdict_frees_its_slot() {
        let h = Health::new(BreakerConfig { failures_to_open: 1, cooldown: Duration::from_millis(100) });
        let p: Arc<str> = "up".into();
        h.admit(&p, 0).unwrap().record(false, 0);
        let probe = h.admit(&p, 100).expect("probe after the cooldown");
        assert!(h.admit(&p, 101).is_none(), "one probe at a time");
        drop(probe); // the caller hung up, or another deployment answered first
        let again = h.admit(&p, 102).expect("the slot came back: the provider is not stuck half-open");
        again.record(true, 103);
        assert!(h.admit(&p, 104).is_some(), "closed");
    }
}
