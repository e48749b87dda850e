//! The per-request plan: which deployment to try next, when, and for how long — and when
//! to give up.
//!
//! A [`Plan`] borrows everything from the snapshot (route, options, policy, health) and
//! keeps its state in a few words and bit sets, so planning a request never allocates.
//! The clock and the random source are passed in, so tests are deterministic.
//!
//! Order of tries:
//! 1. Deployments not yet tried, tier by tier: a tier is a deployment `priority` and a
//!    provider priority ([`Deployment::provider_priority`](crate::Deployment)), lowest
//!    deployment priority first, then lowest provider priority. Within a tier, strategy
//!    `priority` keeps catalog order; strategy `weighted` draws by `weight`
//!    without replacement (weight 0 only after the tier's weighted ones). Moving on to a
//!    deployment not yet tried does not wait: the failure was the previous deployment's.
//! 2. When every deployment was tried and attempts remain, the same order again, each
//!    try waiting the policy's jittered backoff, and at least until the `retry-after`
//!    that deployment sent.
//!
//! Every pick asks the deployment's breaker first: deployments in cooldown are skipped
//! (the weighted draw then happens among the rest, which is the same distribution as
//! drawing among the healthy ones), and a deployment whose cooldown is over gets this
//! request as its single probe.

use crate::catalog::{DeploymentOptions, MAX_DEPLOYMENTS, ModelRoute, Resolved};
use crate::health::{Admission, Breaker, Health, ProbeLease};
use crate::outcome::Outcome;
use crate::policy::{MAX_ATTEMPTS_LIMIT, RoutingPolicy, Strategy};
use rand::Rng;
use std::time::{Duration, Instant};

/// What the caller of a plan does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send the request to a deployment.
    Try(Attempt),
    /// Stop; see the reason.
    GiveUp(GiveUp),
}

/// One try: wait `after`, then send to `deployment` with `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Index into the route's `deployments`.
    pub deployment: usize,
    /// How long to wait before sending (backoff and `retry-after`); zero for a
    /// deployment not yet tried.
    pub after: Duration,
    /// How long this try may wait for the upstream's answer: the policy's per-attempt
    /// timeout, cut to what is left of the deadline after `after`.
    pub timeout: Duration,
    /// This try is the half-open breaker's probe.
    pub probe: bool,
    /// 1 for the first try, 2 for the second, ...
    pub number: u32,
}

/// Why a plan stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// No deployment may be tried now: all in cooldown (or probing), or the plan had
    /// none. With no attempt made this is the caller's 503 `no_healthy_upstream`;
    /// `retry_at` is when the earliest one may be admitted again.
    NoHealthyUpstream {
        /// The earliest end of a cooldown or probe lease, when known.
        retry_at: Option<Instant>,
    },
    /// The last outcome is final: a success already served, a request error (4xx), a
    /// failure outside `retry_on`, or a stream that had reached the caller.
    NotRetryable,
    /// The policy's `max_attempts` were made.
    AttemptsExhausted,
    /// No time is left before the overall deadline for another try.
    DeadlineExceeded,
    /// The only deployments left asked (`retry-after`) to wait past the deadline; the
    /// caller gets the upstream's answer rather than a wait that cannot succeed.
    RetryAfterBeyondDeadline {
        /// What the upstream asked for.
        retry_after: Duration,
    },
}

/// The attempt in flight.
#[derive(Debug, Clone, Copy)]
struct Current<'a> {
    index: u8,
    breaker: Option<&'a Breaker>,
    probe: Option<ProbeLease>,
    /// Whether this deployment had been tried before this attempt (to undo a skip).
    was_tried: bool,
    backed_off: bool,
}

/// One request's routing state. Create it with [`Plan::new`], call [`Plan::first`], then
/// after each try either [`Plan::served`] or [`Plan::after_failure`] (or [`Plan::skip`]
/// when the try could not be sent at all). Dropping a plan gives back a probe slot it
/// still holds, so a cancelled request never wedges a breaker.
#[derive(Debug)]
pub struct Plan<'a> {
    policy: &'a RoutingPolicy,
    route: &'a ModelRoute,
    options: &'a [DeploymentOptions],
    health: &'a Health,
    deadline: Instant,
    /// Deployments this request may use at all.
    usable: u64,
    /// Not yet picked in the current pass.
    remaining: u64,
    /// Tried at least once.
    tried: u64,
    attempts: u32,
    /// Tries that waited a backoff so far (the backoff's exponent).
    backoffs: u32,
    current: Option<Current<'a>>,
    /// The deployment that served (after [`Plan::served`]).
    served: Option<(u8, Option<&'a Breaker>)>,
    /// `retry-after` per tried deployment: not before this instant.
    not_before: [(u8, Option<Instant>); MAX_ATTEMPTS_LIMIT as usize],
    finished: Option<GiveUp>,
}

const DEFAULT_OPTIONS: DeploymentOptions = DeploymentOptions { priority: 0, weight: 1 };

impl<'a> Plan<'a> {
    /// A plan for one request to `route` (whose deployments have `options`, one each),
    /// under `policy`, starting at `start` (the deadline runs from here).
    pub fn new(
        policy: &'a RoutingPolicy,
        route: &'a ModelRoute,
        options: &'a [DeploymentOptions],
        health: &'a Health,
        start: Instant,
    ) -> Self {
        let n = route.deployments.len().min(MAX_DEPLOYMENTS);
        let usable = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        let deadline = start.checked_add(policy.overall_timeout()).unwrap_or(start);
        Plan {
            policy,
            route,
            options,
            health,
            deadline,
            usable,
            remaining: usable,
            tried: 0,
            attempts: 0,
            backoffs: 0,
            current: None,
            served: None,
            not_before: [(0, None); MAX_ATTEMPTS_LIMIT as usize],
            finished: None,
        }
    }

    /// A plan for what [`Catalog::lookup`](crate::Catalog::lookup) returned.
    pub fn for_resolved(policy: &'a RoutingPolicy, resolved: Resolved<'a>, health: &'a Health, start: Instant) -> Self {
        Plan::new(policy, resolved.route, resolved.options, health, start)
    }

    /// Leaves a deployment out of this request (its provider is missing from the
    /// snapshot, or cannot serve this endpoint). Call before [`Plan::first`].
    pub fn exclude(&mut self, deployment: usize) {
        if deployment < MAX_DEPLOYMENTS {
            let bit = !(1u64 << deployment);
            self.usable &= bit;
            self.remaining &= bit;
        }
    }

    /// The first try, or [`GiveUp::NoHealthyUpstream`] when every usable deployment is
    /// in cooldown (or none is usable).
    pub fn first<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Next {
        if let Some(g) = self.finished {
            return Next::GiveUp(g);
        }
        if self.current.is_some() || self.attempts > 0 {
            // Already started: the caller should report the attempt in flight.
            return self.give_up(GiveUp::NotRetryable);
        }
        self.pick(now, rng)
    }

    /// Reports that the attempt in flight failed with `outcome` (recorded against the
    /// deployment's health) and says what to do next. After [`Plan::served`], this
    /// records the failure (say, a stream that broke after its first byte) and always
    /// gives up: nothing is retried once the caller has part of an answer.
    pub fn after_failure<R: Rng + ?Sized>(&mut self, outcome: Outcome, now: Instant, rng: &mut R) -> Next {
        let breaker_policy = self.policy.breaker();
        if let Some((_, breaker)) = self.served {
            if let Some(b) = breaker {
                b.record(&outcome, now, breaker_policy, None);
            }
            return self.give_up(GiveUp::NotRetryable);
        }
        if let Some(g) = self.finished {
            return Next::GiveUp(g);
        }
        let Some(cur) = self.current.take() else {
            // Nothing in flight: nothing to retry.
            return self.give_up(GiveUp::NotRetryable);
        };
        if let Some(b) = cur.breaker {
            b.record(&outcome, now, breaker_policy, cur.probe);
        }
        if outcome.is_success() {
            self.served = Some((cur.index, cur.breaker));
            return self.give_up(GiveUp::NotRetryable);
        }
        if let Some(ra) = outcome.retry_after() {
            self.set_not_before(cur.index, now.checked_add(ra).unwrap_or(self.deadline));
        }
        if !outcome.is_retryable_under(self.policy.retry_on()) {
            return self.give_up(GiveUp::NotRetryable);
        }
        if self.attempts >= self.policy.max_attempts() {
            return self.give_up(GiveUp::AttemptsExhausted);
        }
        self.pick(now, rng)
    }

    /// Reports that the attempt in flight succeeded and its answer goes to the caller
    /// (call it when you start forwarding: from then on nothing is retried).
    pub fn served(&mut self, now: Instant) {
        if let Some(cur) = self.current.take() {
            if let Some(b) = cur.breaker {
                b.record(&Outcome::Success, now, self.policy.breaker(), cur.probe);
            }
            self.served = Some((cur.index, cur.breaker));
            self.finished = Some(GiveUp::NotRetryable);
        }
    }

    /// Like [`Plan::served`], for an answer whose success is known only at its end (a
    /// stream, once its first bytes are in): it is served and nothing is retried, but its
    /// breaker is not told yet, since a stream that then breaks must count as a failure
    /// rather than follow a success. Returns the probe lease the attempt holds, if any;
    /// report the end with [`Breaker::record`] (passing the lease) or give the lease
    /// back with [`Breaker::release`] when the end says nothing about the upstream.
    ///
    /// [`Breaker::record`]: crate::Breaker::record
    /// [`Breaker::release`]: crate::Breaker::release
    pub fn served_pending(&mut self) -> Option<ProbeLease> {
        let cur = self.current.take()?;
        self.served = Some((cur.index, cur.breaker));
        self.finished = Some(GiveUp::NotRetryable);
        cur.probe
    }

    /// The attempt in flight was never sent (for instance the request cannot be
    /// translated for that upstream, or its credential's rate limit refused it): it does
    /// not count as an attempt, says nothing about health, and the deployment is left
    /// out of the rest of this request.
    pub fn skip<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Next {
        if let Some(g) = self.finished {
            return Next::GiveUp(g);
        }
        let Some(cur) = self.current.take() else {
            return self.pick(now, rng);
        };
        if let (Some(b), Some(lease)) = (cur.breaker, cur.probe) {
            b.release(lease);
        }
        self.attempts = self.attempts.saturating_sub(1);
        if cur.backed_off {
            self.backoffs = self.backoffs.saturating_sub(1);
        }
        if !cur.was_tried {
            self.tried &= !(1u64 << cur.index);
        }
        self.exclude(usize::from(cur.index));
        self.pick(now, rng)
    }

    /// Attempts made so far (skipped ones not counted).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The overall deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The deployment of the attempt in flight.
    pub fn current(&self) -> Option<usize> {
        self.current.map(|c| usize::from(c.index))
    }

    /// The deployment that served, once [`Plan::served`] was called.
    pub fn served_by(&self) -> Option<usize> {
        self.served.map(|(i, _)| usize::from(i))
    }

    fn give_up(&mut self, reason: GiveUp) -> Next {
        self.finished = Some(reason);
        Next::GiveUp(reason)
    }

    fn options_of(&self, i: usize) -> DeploymentOptions {
        self.options.get(i).copied().unwrap_or(DEFAULT_OPTIONS)
    }

    /// The tier of deployment `i`: its own priority first, then its provider's.
    fn tier_of(&self, i: usize) -> (u32, i32) {
        let provider = self.route.deployments.get(i).map_or(0, |d| d.provider_priority);
        (self.options_of(i).priority, provider)
    }

    fn set_not_before(&mut self, index: u8, at: Instant) {
        let slot = self.not_before.iter().position(|(i, t)| t.is_some() && *i == index);
        let slot = slot.or_else(|| self.not_before.iter().position(|(_, t)| t.is_none()));
        if let Some(s) = slot {
            self.not_before[s] = (index, Some(at));
        }
    }

    fn not_before(&self, index: u8) -> Option<Instant> {
        self.not_before.iter().find(|(i, t)| t.is_some() && *i == index).and_then(|(_, t)| *t)
    }

    /// The next deployment of the current pass, by tier then strategy.
    fn choose<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        let mut tier = (u32::MAX, i32::MAX);
        let mut bits = self.remaining;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            tier = tier.min(self.tier_of(i));
        }
        let mut first = None;
        let mut total = 0u64;
        let mut weighted = 0;
        let mut last_weighted = None;
        let mut bits = self.remaining;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if self.tier_of(i) == tier {
                first = first.or(Some(i));
                let o = self.options_of(i);
                if o.weight > 0 {
                    total += u64::from(o.weight);
                    weighted += 1;
                    last_weighted = Some(i);
                }
            }
        }
        if self.policy.strategy() == Strategy::Priority || total == 0 {
            return first;
        }
        if weighted == 1 {
            // Nothing to draw.
            return last_weighted;
        }
        let mut r = rng.random_range(0..total);
        let mut bits = self.remaining;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let o = self.options_of(i);
            if self.tier_of(i) != tier || o.weight == 0 {
                continue;
            }
            let w = u64::from(o.weight);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        first
    }

    fn pick<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Next {
        let Some(left) = self.deadline.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            return self.give_up(GiveUp::DeadlineExceeded);
        };
        let mut wrapped = false;
        let mut retry_at: Option<Instant> = None;
        let mut blocked_retry_after: Option<Duration> = None;
        let mut out_of_time = false;
        loop {
            if self.remaining == 0 {
                // A second pass only makes sense once something was actually tried;
                // deployments rejected just now would be rejected again.
                if wrapped || self.tried == 0 {
                    break;
                }
                wrapped = true;
                self.remaining = self.usable;
                continue;
            }
            let Some(i) = self.choose(rng) else { break };
            let bit = 1u64 << i;
            self.remaining &= !bit;
            let index = i as u8;
            let was_tried = self.tried & bit != 0;
            let mut after = Duration::ZERO;
            if was_tried {
                after = self.policy.backoff().delay(self.backoffs, rng);
                if let Some(nb) = self.not_before(index) {
                    let wait = nb.saturating_duration_since(now);
                    if wait >= left {
                        blocked_retry_after = Some(blocked_retry_after.map_or(wait, |b| b.min(wait)));
                        continue;
                    }
                    after = after.max(wait);
                }
                if after >= left {
                    out_of_time = true;
                    continue;
                }
            }
            let timeout = self.policy.per_attempt_timeout().min(left - after);
            let breaker = self.health.breaker(&self.route.deployments[i]).map(|b| &**b);
            let probe = match breaker.map(|b| b.admit(now, after + timeout)) {
                None | Some(Admission::Allowed) => None,
                Some(Admission::Probe(lease)) => Some(lease),
                Some(Admission::Rejected { until }) => {
                    retry_at = Some(retry_at.map_or(until, |r| r.min(until)));
                    continue;
                }
            };
            self.tried |= bit;
            self.attempts += 1;
            if was_tried {
                self.backoffs += 1;
            }
            self.current = Some(Current { index, breaker, probe, was_tried, backed_off: was_tried });
            return Next::Try(Attempt { deployment: i, after, timeout, probe: probe.is_some(), number: self.attempts });
        }
        let reason = if let Some(retry_after) = blocked_retry_after {
            GiveUp::RetryAfterBeyondDeadline { retry_after }
        } else if out_of_time {
            GiveUp::DeadlineExceeded
        } else {
            GiveUp::NoHealthyUpstream { retry_at }
        };
        self.give_up(reason)
    }
}

impl Drop for Plan<'_> {
    fn drop(&mut self) {
        if let Some(Current { breaker: Some(b), probe: Some(lease), .. }) = self.current.take() {
            b.release(lease);
        }
    }
}
