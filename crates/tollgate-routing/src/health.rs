//! Deployment health: one circuit breaker per deployment (provider name + upstream
//! model), shared by every request and every tenant that uses it.
//!
//! The registry is an immutable map built once per snapshot ([`Health::new`],
//! [`Health::carry_over`]) whose values are `Arc<Breaker>`s made of atomics, so the hot
//! path takes no lock: admitting a request to a closed breaker is one atomic load.
//! Carrying over keeps the very same breaker for every deployment that survives a
//! configuration change, so a snapshot swap neither forgets a failing upstream nor
//! resets a cooldown.
//!
//! Times are passed in (`now: Instant`) and stored as nanoseconds since the breaker's
//! creation, so tests drive the clock without sleeping.
//!
//! Breaker states: **closed** (requests flow; consecutive failures are counted),
//! **open** (rejected until the cooldown ends), **half-open** (the cooldown is over;
//! exactly one probe request at a time is admitted, and only the probe's result changes
//! the state). A probe that is abandoned (its request dropped before reporting) frees its
//! slot; a probe that never reports at all loses its slot after its lease.

use crate::catalog::{Catalog, Deployment};
use crate::outcome::Outcome;
use crate::policy::BreakerPolicy;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether a request may go to a deployment now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed.
    Allowed,
    /// The cooldown is over and this request is the one probe; report its result with
    /// the lease (or [`Breaker::release`] it if the request is not sent after all).
    Probe(ProbeLease),
    /// In cooldown, or another probe is in flight; try again at `until` at the earliest.
    Rejected {
        /// When the deployment may next be admitted (end of the cooldown or of the
        /// in-flight probe's lease).
        until: Instant,
    },
}

/// Proof that a request holds a half-open breaker's single probe slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeLease(u64);

/// The state of a breaker, for metrics and debugging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; `failures` consecutive failures so far.
    Closed {
        /// Consecutive failures counted.
        failures: u32,
    },
    /// Rejecting until `until`.
    Open {
        /// End of the cooldown.
        until: Instant,
    },
    /// Cooldown over; `probing` when the probe is in flight.
    HalfOpen {
        /// A probe holds the slot.
        probing: bool,
    },
}

/// One deployment's circuit breaker. Lock-free; every transition is a single atomic
/// store or compare-exchange, so concurrent requests can at worst both count a failure.
#[derive(Debug)]
pub struct Breaker {
    epoch: Instant,
    /// Consecutive failures while closed.
    failures: AtomicU32,
    /// 0 = closed; otherwise 1 + nanos since `epoch` until which requests are rejected.
    open_until: AtomicU64,
    /// 0 = no probe; otherwise 1 + nanos since `epoch` when the probe's lease ends.
    probe: AtomicU64,
    /// Failed probes since the breaker last closed (grows the cooldown).
    reopens: AtomicU32,
}

impl Breaker {
    /// A closed breaker whose clock starts at `epoch` (instants before it count as it).
    pub fn new(epoch: Instant) -> Self {
        Breaker {
            epoch,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probe: AtomicU64::new(0),
            reopens: AtomicU32::new(0),
        }
    }

    /// `now` as stored: 1 + nanos since the epoch (0 is reserved for "none").
    fn tick(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1).saturating_add(1)
    }

    fn instant(&self, tick: u64) -> Instant {
        let nanos = Duration::from_nanos(tick.saturating_sub(1));
        self.epoch.checked_add(nanos).unwrap_or(self.epoch)
    }

    fn later(&self, now: Instant, by: Duration) -> u64 {
        self.tick(now).saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Whether a request may go to this deployment at `now`. When the cooldown is over,
    /// the first caller gets the probe slot for `probe_lease` (use the attempt's
    /// timeout); others are rejected until the probe reports or its lease runs out.
    pub fn admit(&self, now: Instant, probe_lease: Duration) -> Admission {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Allowed;
        }
        let t = self.tick(now);
        if t < until {
            return Admission::Rejected { until: self.instant(until) };
        }
        let current = self.probe.load(Ordering::Acquire);
        if current != 0 && t < current {
            return Admission::Rejected { until: self.instant(current) };
        }
        let lease = self.later(now, probe_lease).max(t.saturating_add(1));
        match self.probe.compare_exchange(current, lease, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Admission::Probe(ProbeLease(lease)),
            Err(other) => Admission::Rejected { until: self.instant(other.max(t)) },
        }
    }

    /// Records how an attempt went. `probe` is the lease when the attempt was the probe.
    ///
    /// Closed: a failure (see [`Outcome::counts_against_health`]) adds one to the
    /// consecutive count and opens the breaker for `policy.cooldown()` when it reaches
    /// `failures_to_open`; anything else resets the count. Open or half-open: only the
    /// probe's result counts — success closes the breaker, failure re-opens it for a
    /// doubled cooldown (capped); late results of requests admitted before the breaker
    /// opened are ignored.
    pub fn record(&self, outcome: &Outcome, now: Instant, policy: &BreakerPolicy, probe: Option<ProbeLease>) {
        let failed = outcome.counts_against_health();
        if let Some(ProbeLease(lease)) = probe {
            // Only the current holder of the slot decides; a lease that expired and was
            // taken over by another probe has lost its say.
            if self.probe.load(Ordering::Acquire) != lease {
                return;
            }
            // Set the new state before freeing the slot, so no request can slip in a
            // second probe against the old cooldown in between.
            if failed {
                let reopens = self.reopens.fetch_add(1, Ordering::AcqRel).saturating_add(1);
                let cooldown = policy.cooldown_after(reopens);
                self.open_until.store(self.later(now, cooldown), Ordering::Release);
            } else {
                self.failures.store(0, Ordering::Release);
                self.reopens.store(0, Ordering::Release);
                self.open_until.store(0, Ordering::Release);
            }
            let _ = self.probe.compare_exchange(lease, 0, Ordering::AcqRel, Ordering::Acquire);
            return;
        }
        if self.open_until.load(Ordering::Acquire) != 0 {
            return;
        }
        if !failed {
            // Avoid a write (and a cache-line bounce) on the common healthy path.
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Release);
            }
            return;
        }
        let threshold = policy.failures_to_open();
        if threshold == 0 {
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if n >= threshold {
            let until = self.later(now, policy.cooldown_after(0));
            if self.open_until.compare_exchange(0, until, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                self.failures.store(0, Ordering::Release);
                self.reopens.store(0, Ordering::Release);
                self.probe.store(0, Ordering::Release);
            }
        }
    }

    /// Gives back a probe slot whose request was never sent (or was abandoned), without
    /// judging the deployment.
    pub fn release(&self, probe: ProbeLease) {
        let _ = self.probe.compare_exchange(probe.0, 0, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The breaker's state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return BreakerState::Closed { failures: self.failures.load(Ordering::Acquire) };
        }
        let t = self.tick(now);
        if t < until {
            return BreakerState::Open { until: self.instant(until) };
        }
        let p = self.probe.load(Ordering::Acquire);
        BreakerState::HalfOpen { probing: p != 0 && t < p }
    }
}

/// The breakers of every deployment in a catalog, keyed by provider name then upstream
/// model. Build one per snapshot with [`Health::carry_over`] from the previous one.
#[derive(Debug, Default)]
pub struct Health {
    breakers: HashMap<Arc<str>, HashMap<Arc<str>, Arc<Breaker>>>,
}

impl Health {
    /// Fresh (closed) breakers for every deployment of `catalog`.
    pub fn new(catalog: &Catalog) -> Self {
        Health::default().carry_over(catalog)
    }

    /// The registry for a new snapshot: every deployment of `catalog` keeps its breaker
    /// from `self` when it had one (same provider name and upstream model), or gets a
    /// fresh one; deployments no longer in the catalog are dropped. A deployment shared
    /// by several models has one breaker.
    pub fn carry_over(&self, catalog: &Catalog) -> Self {
        let epoch = Instant::now();
        let mut breakers: HashMap<Arc<str>, HashMap<Arc<str>, Arc<Breaker>>> = HashMap::new();
        for route in catalog.iter() {
            for d in &route.deployments {
                let models = breakers.entry(d.provider.clone()).or_default();
                if models.contains_key(&*d.upstream_model) {
                    continue;
                }
                let b = self.breaker(d).cloned().unwrap_or_else(|| Arc::new(Breaker::new(epoch)));
                models.insert(d.upstream_model.clone(), b);
            }
        }
        Health { breakers }
    }

    /// The breaker of a deployment; `None` when the registry was built from a catalog
    /// without it (such a deployment is treated as healthy and nothing is recorded).
    pub fn breaker(&self, d: &Deployment) -> Option<&Arc<Breaker>> {
        self.get(&d.provider, &d.upstream_model)
    }

    /// The breaker of (provider, upstream model).
    pub fn get(&self, provider: &str, upstream_model: &str) -> Option<&Arc<Breaker>> {
        self.breakers.get(provider)?.get(upstream_model)
    }

    /// Every (provider, upstream model, breaker), for metrics.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, &Arc<Breaker>)> {
        self.breakers.iter().flat_map(|(p, models)| models.iter().map(move |(m, b)| (p, m, b)))
    }

    /// Number of deployments tracked.
    pub fn len(&self) -> usize {
        self.breakers.values().map(HashMap::len).sum()
    }

    /// True when no deployment is tracked.
    pub fn is_empty(&self) -> bool {
        self.breakers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ModelRoute;

    const LEASE: Duration = Duration::from_secs(60);

    fn policy(failures: u32, cooldown_s: u64, max_s: u64) -> BreakerPolicy {
        BreakerPolicy::new(failures, Duration::from_secs(cooldown_s), Duration::from_secs(max_s)).unwrap()
    }

    fn s(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    const FAIL: Outcome = Outcome::Status(503, None);

    #[test]
    fn it_opens_after_n_consecutive_failures_and_rejects_during_cooldown() {
        let t0 = Instant::now();
        let b = Breaker::new(t0);
        let p = policy(3, 30, 30);
        b.record(&FAIL, t0, &p, None);
        b.record(&FAIL, t0, &p, None);
        assert_eq!(b.admit(t0, LEASE), Admission::Allowed, "two failures: still closed");
        assert_eq!(b.state(t0), BreakerState::Closed { failures: 2 });
        b.record(&FAIL, s(t0, 1), &p, None);
        assert_eq!(b.admit(s(t0, 1), LEASE), Admission::Rejected { until: s(t0, 31) });
        assert_eq!(b.admit(s(t0, 30), LEASE), Admission::Rejected { until: s(t0, 31) });
        assert_eq!(b.state(s(t0, 2)), BreakerState::Open { until: s(t0, 31) });
    }

    #[test]
    fn a_success_or_a_request_error_resets_the_count() {
        let t0 = Instant::now();
        let b = Breaker::new(t0);
        let p = policy(2, 30, 30);
        for healthy in [Outcome::Success, Outcome::Status(400, None), Outcome::Status(404, None)] {
            b.record(&FAIL, t0, &p, None);
            b.record(&healthy, t0, &p, None);
            assert_eq!(b.state(t0), BreakerState::Closed { failures: 0 }, "{healthy:?}");
        }
        b.record(&Outcome::Timeout, t0, &p, None);
        b.record(&Outcome::Status(429, None), t0, &p, None);
        assert!(matches!(b.state(t0), BreakerState::Open { .. }), "timeouts and 429s count");
    }

    #[test]
    fn exactly_one_probe_then_success_closes() {
        let t0 = Instant::now();
        let b = Breaker::new(t0);
        let p = policy(1, 30, 30);
        b.record(&FAIL, t0, &p, None);
        let Admission::Probe(lease) = b.admit(s(t0, 30), LEASE) else { panic!("the cooldown is over: one probe") };
        assert_eq!(b.admit(s(t0, 30), LEASE), Admission::Rejected { until: s(t0, 90) }, "only one probe at a time");
        assert_eq!(b.state(s(t0, 31)), BreakerState::HalfOpen { probing: true });
        // A late failure from a request admitted before the breaker opened changes nothing.
        b.record(&FAIL, s(t0, 31), &p, None);
        assert_eq!(b.admit(s(t0, 31), LEASE), Admission::Rejected { until: s(t0, 90) });
        b.record(&Outcome::Success, s(t0, 32), &p, Some(lease));
        assert_eq!(b.admit(s(t0, 32), LEASE), Admission::Allowed);
        assert_eq!(b.admit(s(t0, 32), LEASE), Admission::Allowed);
        assert_eq!(b.state(s(t0, 32)), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_probe_reopens_with_a_growing_cooldown_until_a_success() {
        let t0 = Instant::now();
        let b = Breaker::new(t0);
        let p = policy(1, 10, 25);
        b.record(&FAIL, t0, &p, None);
        let mut at = 10;
        for cooldown in [20, 25, 25] {
            let Admission::Probe(lease) = b.admit(s(t0, at), LEASE) else { panic!("probe at {at}") };
            b.record(&Outcome::ConnectError, s(t0, at), &p, Some(lease));
            assert_eq!(b.admit(s(t0, at + 1), LEASE), Admission::Rejected { until: s(t0, at + cooldown) });
            at += cooldown;
        }
        let Admission::Probe(lease) = b.admit(s(t0, at), LEASE) else { panic!("probe") };
        b.record(&Outcome::Success, s(t0, at), &p, Some(lease));
        // Closed again, and the next opening starts from the base cooldown.
        b.record(&FAIL, s(t0, at), &p, None);
        assert_eq!(b.admit(s(t0, at), LEASE), Admission::Rejected { until: s(t0, at + 10) });
    }

    #[test]
    fn an_abandoned_or_expired_probe_frees_the_slot() {
        let t0 = Instant::now();
        let b = Breaker::new(t0);
        let p = policy(1, 10, 10);
        b.record(&FAIL, t0, &p, None);
        let Admission::Probe(lease) = b.admit(s(t0, 10), Duration::from_secs(5)) else { panic!() };
        b.release(lease);
        let Admission::Probe(lost) = b.admit(s(t0, 11), Duration::from_secs(5)) else { panic!("released") };
        // Never reported: after its lease another request may probe.
        assert!(matches!(b.admit(s(t0, 15), LEASE), Admission::Rejected { .. }));
        let Admission::Probe(second) = b.admit(s(t0, 16), LEASE) else { panic!("lease expired") };
        // The first probe's late report no longer decides anything.
        b.record(&Outcome::Success, s(t0, 17), &p, Some(lost));
        assert_eq!(b.state(s(t0, 17)), BreakerState::HalfOpen { probing: true });
        b.record(&FAIL, s(t0, 18), &p, Some(second));
        assert!(matches!(b.state(s(t0, 19)), BreakerState::Open { .. }));
    }

    #[test]
    fn concurrent_requests_at_the_end_of_a_cooldown_get_exactly_one_probe() {
        let t0 = Instant::now();
        let b = Breaker::new(t0);
        let p = policy(1, 10, 10);
        b.record(&FAIL, t0, &p, None);
        let probes = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        if let Admission::Probe(_) = b.admit(s(t0, 10), LEASE) {
                            probes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(probes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn zero_failures_to_open_disables_the_breaker() {
        let t0 = Instant::now();
        let b = Breaker::new(t0);
        let p = policy(0, 10, 10);
        for _ in 0..100 {
            b.record(&FAIL, t0, &p, None);
        }
        assert_eq!(b.admit(t0, LEASE), Admission::Allowed);
    }

    fn catalog(models: &[(&str, &[(&str, &str)])]) -> Catalog {
        let mut c = Catalog::new();
        for (name, ds) in models {
            c.insert(ModelRoute {
                name: (*name).into(),
                deployments: ds.iter().map(|(p, m)| Deployment::new(*p, *m)).collect(),
                max_output_tokens: None,
                max_tokens_per_part: Default::default(),
            })
            .unwrap();
        }
        c
    }

    #[test]
    fn breakers_survive_a_snapshot_swap_for_deployments_that_remain() {
        let old = catalog(&[("a", &[("openai", "gpt"), ("azure", "gpt")]), ("b", &[("openai", "gpt")])]);
        let h1 = Health::new(&old);
        assert_eq!(h1.len(), 2, "a deployment shared by two models has one breaker");
        let t0 = Instant::now();
        let p = policy(1, 60, 60);
        h1.get("openai", "gpt").unwrap().record(&FAIL, t0, &p, None);
        h1.get("azure", "gpt").unwrap().record(&FAIL, t0, &p, None);

        let new = catalog(&[("a", &[("openai", "gpt"), ("gemini", "g")])]);
        let h2 = h1.carry_over(&new);
        assert_eq!(h2.len(), 2);
        assert!(Arc::ptr_eq(h1.get("openai", "gpt").unwrap(), h2.get("openai", "gpt").unwrap()));
        assert!(matches!(h2.get("openai", "gpt").unwrap().admit(t0, LEASE), Admission::Rejected { .. }));
        assert_eq!(h2.get("gemini", "g").unwrap().admit(t0, LEASE), Admission::Allowed);
        assert!(h2.get("azure", "gpt").is_none(), "removed deployments are dropped");
        // Re-added later: a fresh breaker.
        let h3 = h2.carry_over(&old);
        assert_eq!(h3.get("azure", "gpt").unwrap().admit(t0, LEASE), Admission::Allowed);
        assert_eq!(h3.iter().count(), 2);
    }
}
