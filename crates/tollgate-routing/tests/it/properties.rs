//! Properties that must hold for any policy, any weights and any sequence of outcomes:
//! the attempt budget, the deadline, exclusions, request errors, and backoff bounds.

use crate::support::{World, rng};
use proptest::prelude::*;
use std::time::{Duration, Instant};
use tollgate_routing::{Backoff, GiveUp, Next, Outcome, RawBackoff, RawCooldown, RawRoutingPolicy, RoutingPolicy};

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::ConnectError),
        Just(Outcome::Timeout),
        Just(Outcome::Malformed),
        any::<bool>().prop_map(|after_first_byte| Outcome::StreamBroken { after_first_byte }),
        (300u16..600, proptest::option::of(0u64..120_000))
            .prop_map(|(s, ra)| Outcome::Status(s, ra.map(Duration::from_millis))),
    ]
}

fn routing_policy() -> impl Strategy<Value = RoutingPolicy> {
    (any::<bool>(), 1i64..=10, 1i64..=60_000, 0i64..=60_000, 0i64..=60_000, 0i64..=5, 0i64..=60_000).prop_map(
        |(weighted, attempts, per_attempt, extra, backoff_max, failures, cooldown)| {
            RoutingPolicy::try_from(RawRoutingPolicy {
                strategy: Some(if weighted { "weighted" } else { "priority" }.into()),
                max_attempts: Some(attempts),
                per_attempt_timeout_ms: Some(per_attempt),
                overall_timeout_ms: Some(per_attempt + extra),
                backoff: Some(RawBackoff { base_ms: Some(backoff_max / 4), max_ms: Some(backoff_max) }),
                retry_on: None,
                cooldown: Some(RawCooldown {
                    failures_to_open: Some(failures),
                    cooldown_ms: Some(cooldown + 1),
                    max_cooldown_ms: None,
                }),
            })
            .unwrap()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_plan_keeps_its_budget_deadline_and_exclusions(
        policy in routing_policy(),
        weights in proptest::collection::vec((0u32..3, 0u32..5), 1..6),
        excluded in proptest::collection::vec(any::<bool>(), 6),
        outcomes in proptest::collection::vec(outcome(), 12),
        took_ms in proptest::collection::vec(0u64..90_000, 12),
        seed in any::<u64>(),
    ) {
        let names = ["a", "b", "c", "d", "e", "f"];
        let ds: Vec<(&str, u32, u32)> = weights.iter().enumerate().map(|(i, &(p, w))| (names[i], p, w)).collect();
        let w = World::new(&ds);
        let t0 = Instant::now();
        let mut r = rng(seed);
        let mut plan = w.plan(&policy, t0);
        for (i, &x) in excluded.iter().enumerate().take(ds.len()) {
            if x { plan.exclude(i); }
        }
        let mut now = t0;
        let mut tries = 0u32;
        let mut next = plan.first(now, &mut r);
        for (o, took) in outcomes.iter().zip(&took_ms) {
            let Next::Try(a) = next else { break };
            tries += 1;
            prop_assert!(!excluded[a.deployment], "tried excluded deployment {}", a.deployment);
            prop_assert_eq!(a.number, tries);
            prop_assert!(tries <= policy.max_attempts());
            prop_assert!(a.timeout > Duration::ZERO && a.timeout <= policy.per_attempt_timeout());
            prop_assert!(now + a.after + a.timeout <= plan.deadline(), "a try may not run past the deadline");
            if tries == 1 { prop_assert_eq!(a.after, Duration::ZERO); }
            prop_assert!(a.after <= policy.backoff().max().max(o_retry_after_bound()));
            now += a.after + Duration::from_millis(*took).min(a.timeout);
            next = plan.after_failure(*o, now, &mut r);
            if !o.is_retryable_under(policy.retry_on()) {
                prop_assert_eq!(next, Next::GiveUp(GiveUp::NotRetryable));
            }
        }
        if tries == 0 && excluded.iter().take(ds.len()).all(|x| *x) {
            prop_assert_eq!(next, Next::GiveUp(GiveUp::NoHealthyUpstream { retry_at: None }));
        }
    }

    #[test]
    fn backoff_stays_within_full_jitter_bounds(base in 0u64..10_000, extra in 0u64..50_000, retry in 0u32..40, seed in any::<u64>()) {
        let b = Backoff::new(Duration::from_millis(base), Duration::from_millis(base + extra)).unwrap();
        let ceiling = b.ceiling(retry);
        let want = Duration::from_millis(base).saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX)).min(b.max());
        prop_assert_eq!(ceiling, want);
        let mut r = rng(seed);
        for _ in 0..32 {
            prop_assert!(b.delay(retry, &mut r) <= ceiling);
        }
    }

    #[test]
    fn any_json_policy_parses_or_is_refused_without_panicking(json in "\\PC{0,200}") {
        let _ = serde_json::from_str::<RoutingPolicy>(&json);
    }
}

/// Retry-after waits in the strategy above are at most 120 s.
fn o_retry_after_bound() -> Duration {
    Duration::from_secs(120)
}

#[test]
fn full_jitter_spreads_waits_over_the_whole_range() {
    let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
    let mut r = rng(42);
    let samples: Vec<Duration> = (0..10_000).map(|_| b.delay(2, &mut r)).collect();
    let ceiling = Duration::from_millis(400);
    assert_eq!(b.ceiling(2), ceiling);
    assert!(samples.iter().all(|d| *d <= ceiling));
    let min = samples.iter().min().unwrap();
    let max = samples.iter().max().unwrap();
    let mean = samples.iter().sum::<Duration>() / 10_000;
    assert!(*min < Duration::from_millis(5), "full jitter reaches near zero: {min:?}");
    assert!(*max > Duration::from_millis(395), "and near the ceiling: {max:?}");
    assert!(mean > Duration::from_millis(190) && mean < Duration::from_millis(210), "uniform: mean {mean:?}");
    assert_eq!(Backoff::new(Duration::ZERO, Duration::ZERO).unwrap().delay(5, &mut r), Duration::ZERO);
}
