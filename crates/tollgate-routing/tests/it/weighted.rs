//! Weighted load balancing: shares over many requests, fallback order, weight 0, and
//! redistribution around a deployment in cooldown. Seeded, so deterministic, but each
//! check would fail for a biased draw.

use crate::support::{World, policy, rng};
use std::time::{Duration, Instant};
use tollgate_routing::{Admission, BreakerPolicy, Next, Outcome};

const N: usize = 100_000;

/// Counts, over `N` plans, how often each deployment is tried `nth` (0 = first), when
/// every earlier try fails with a 503. Each plan is dropped without reporting, so the
/// breakers never see these requests.
fn shares(w: &World, weighted: &tollgate_routing::RoutingPolicy, nth: usize, seed: u64) -> Vec<f64> {
    let n = w.catalog.get("m").unwrap().deployments.len();
    let mut counts = vec![0usize; n];
    let mut rng = rng(seed);
    let t0 = Instant::now();
    for _ in 0..N {
        let mut plan = w.plan(weighted, t0);
        let mut next = plan.first(t0, &mut rng);
        for _ in 0..nth {
            next = match next {
                // The policy's breaker is disabled, so these failures leave health as is.
                Next::Try(_) => plan.after_failure(Outcome::Status(503, None), t0, &mut rng),
                g => g,
            };
        }
        let Next::Try(a) = next else { panic!("expected a try, got {next:?}") };
        counts[a.deployment] += 1;
    }
    counts.into_iter().map(|c| c as f64 * 100.0 / N as f64).collect()
}

fn assert_within(got: &[f64], want: &[f64], tolerance: f64) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance, "deployment {i}: {g:.2}% vs {w:.2}% ± {tolerance} (all: {got:?})");
    }
}

/// Weighted, 3 attempts, breaker disabled (so the failures above never open it).
fn lb() -> tollgate_routing::RoutingPolicy {
    policy(r#"{"strategy":"weighted","max_attempts":3,"cooldown":{"failures_to_open":0}}"#)
}

#[test]
fn weighted_70_20_10_lands_within_one_and_a_half_percent_over_100k_requests() {
    let w = World::new(&[("a", 0, 70), ("b", 0, 20), ("c", 0, 10)]);
    assert_within(&shares(&w, &lb(), 0, 7), &[70.0, 20.0, 10.0], 1.5);
}

#[test]
fn the_fallback_after_a_failure_is_drawn_among_the_rest_by_weight() {
    // P(second = b) = P(a first)·20/30 + P(c first)·20/90 = 0.7·2/3 + 0.1·2/9 ≈ 48.89 %
    // P(second = a) = P(b first)·70/80 + P(c first)·70/90 = 0.2·7/8 + 0.1·7/9 ≈ 25.28 %
    // P(second = c) = 0.7·1/3 + 0.2·1/8 ≈ 25.83 %
    let w = World::new(&[("a", 0, 70), ("b", 0, 20), ("c", 0, 10)]);
    assert_within(&shares(&w, &lb(), 1, 11), &[25.28, 48.89, 25.83], 1.5);
}

#[test]
fn the_share_of_a_deployment_in_cooldown_goes_to_the_others_in_proportion() {
    let w = World::new(&[("a", 0, 70), ("b", 0, 20), ("c", 0, 10)]);
    let t0 = Instant::now();
    let open = BreakerPolicy::new(1, Duration::from_secs(3600), Duration::from_secs(3600)).unwrap();
    let a = w.health.get("a", "x").unwrap();
    a.record(&Outcome::ConnectError, t0, &open, None);
    assert!(matches!(a.admit(t0, Duration::ZERO), Admission::Rejected { .. }));
    assert_within(&shares(&w, &lb(), 0, 13), &[0.0, 66.67, 33.33], 1.5);
}

#[test]
fn weight_zero_is_only_a_fallback() {
    let w = World::new(&[("spare", 0, 0), ("a", 0, 1), ("b", 0, 1)]);
    assert_within(&shares(&w, &lb(), 0, 17), &[0.0, 50.0, 50.0], 1.5);
    assert_within(&shares(&w, &lb(), 1, 19), &[0.0, 50.0, 50.0], 1.5);
    assert_within(&shares(&w, &lb(), 2, 23), &[100.0, 0.0, 0.0], 0.0);
}

#[test]
fn priority_tiers_come_first_and_weights_split_within_a_tier() {
    // Tier 0 is a/b at 3:1; tier 1 (c) only when both failed.
    let w = World::new(&[("c", 1, 100), ("a", 0, 3), ("b", 0, 1)]);
    assert_within(&shares(&w, &lb(), 0, 29), &[0.0, 75.0, 25.0], 1.5);
    assert_within(&shares(&w, &lb(), 2, 31), &[100.0, 0.0, 0.0], 0.0);
}

#[test]
fn the_priority_strategy_ignores_weights() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1000)]);
    let ordered = policy(r#"{"cooldown":{"failures_to_open":0}}"#);
    assert_within(&shares(&w, &ordered, 0, 37), &[100.0, 0.0], 0.0);
    assert_within(&shares(&w, &ordered, 1, 41), &[0.0, 100.0], 0.0);
}

#[test]
fn the_provider_priority_splits_a_tier_and_weights_apply_within_the_result() {
    // All at deployment priority 0. Providers a and b at priority 1 (3:1), c at 0: c takes
    // every first try despite its small weight, then a/b split 3:1.
    let w = World::with_provider_priorities(&[("a", 0, 1, 3), ("b", 0, 1, 1), ("c", 0, 0, 1)]);
    assert_within(&shares(&w, &lb(), 0, 43), &[0.0, 0.0, 100.0], 0.0);
    assert_within(&shares(&w, &lb(), 1, 47), &[75.0, 25.0, 0.0], 1.5);
}
