//! One request's plan: ordered fallback, retries with backoff and `retry-after`, the
//! attempt budget, the deadline, request errors, streams, probes and skips.

use crate::support::{Step, World, policy, providers, rng, run, secs};
use std::time::{Duration, Instant};
use tollgate_routing::{Admission, BreakerPolicy, BreakerState, GiveUp, Next, Outcome};

const MS: Duration = Duration::from_millis(1);
const UNAVAILABLE: Outcome = Outcome::Status(503, None);

#[test]
fn ordered_fallback_tries_each_deployment_once_in_priority_order_without_waiting() {
    // Catalog order b, a, c; priorities put a first, then b and c in catalog order.
    let w = World::new(&[("b", 1, 1), ("a", 0, 1), ("c", 1, 1)]);
    let p = policy(r#"{"max_attempts":3}"#);
    let t0 = Instant::now();
    let (steps, end) = run(&w, &p, t0, 10 * MS, &[UNAVAILABLE, Outcome::ConnectError, Outcome::Success], 1);
    assert_eq!(providers(&steps), ["a", "b", "c"]);
    assert!(steps.iter().all(|s| s.after.is_zero()), "moving on to a fresh deployment does not wait: {steps:?}");
    assert_eq!(end, None, "served by c");
}

#[test]
fn the_provider_priority_orders_deployments_of_equal_priority_and_never_overrides_it() {
    // Deployment priorities: a, b and c at 0, d at 1. Provider priorities: a 5, b 1,
    // c -2, d -9. Tier (0, -2) = c, then (0, 1) = b, (0, 5) = a, and d last: its
    // provider's -9 does not lift it over a lower deployment priority.
    let w = World::with_provider_priorities(&[("a", 0, 5, 1), ("b", 0, 1, 1), ("d", 1, -9, 1), ("c", 0, -2, 1)]);
    let p = policy(r#"{"max_attempts":4,"cooldown":{"failures_to_open":0}}"#);
    let (steps, end) = run(&w, &p, Instant::now(), MS, &[UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, Outcome::Success], 1);
    assert_eq!((providers(&steps), end), (vec!["c", "b", "a", "d"], None));
    // Equal on both: catalog order, as before.
    let w = World::with_provider_priorities(&[("x", 0, 3, 1), ("y", 0, 3, 1)]);
    let (steps, _) = run(&w, &p, Instant::now(), MS, &[UNAVAILABLE, Outcome::Success], 1);
    assert_eq!(providers(&steps), ["x", "y"]);
}

#[test]
fn the_attempt_budget_is_respected_and_retries_of_one_deployment_back_off() {
    let w = World::new(&[("only", 0, 1)]);
    let p = policy(r#"{"max_attempts":4,"backoff":{"base_ms":100,"max_ms":250},"cooldown":{"failures_to_open":0}}"#);
    let t0 = Instant::now();
    let (steps, end) = run(&w, &p, t0, MS, &[UNAVAILABLE; 10], 2);
    assert_eq!(providers(&steps), ["only"; 4]);
    assert_eq!(end, Some(GiveUp::AttemptsExhausted));
    assert!(steps[0].after.is_zero());
    // Full jitter: retry n waits within [0, min(max, base·2ⁿ)].
    for (s, ceiling) in steps[1..].iter().zip([100, 200, 250]) {
        assert!(s.after <= ceiling * MS, "{:?} > {ceiling} ms", s.after);
    }
}

#[test]
fn one_attempt_means_no_retry_and_no_fallback() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let p = policy(r#"{"max_attempts":1}"#);
    let (steps, end) = run(&w, &p, Instant::now(), MS, &[UNAVAILABLE], 3);
    assert_eq!((providers(&steps), end), (vec!["a"], Some(GiveUp::AttemptsExhausted)));
}

#[test]
fn request_errors_are_final_and_do_not_hurt_health() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let p = policy(
        r#"{"max_attempts":5,"retry_on":["connect","timeout","429","5xx","409"],"cooldown":{"failures_to_open":1}}"#,
    );
    let t0 = Instant::now();
    for status in [400, 401, 403, 404, 413, 422] {
        let (steps, end) = run(&w, &p, t0, MS, &[Outcome::Status(status, Some(Duration::from_secs(1)))], 4);
        assert_eq!((providers(&steps), end), (vec!["a"], Some(GiveUp::NotRetryable)), "{status}");
        assert_eq!(w.health.get("a", "x").unwrap().state(t0), BreakerState::Closed { failures: 0 }, "{status}");
    }
}

#[test]
fn failures_outside_retry_on_are_final() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let p = policy(r#"{"retry_on":["connect"]}"#);
    let (steps, end) = run(&w, &p, Instant::now(), MS, &[Outcome::Status(429, None)], 5);
    assert_eq!((providers(&steps), end), (vec!["a"], Some(GiveUp::NotRetryable)));
    let (steps, end) = run(&w, &p, Instant::now(), MS, &[Outcome::ConnectError, Outcome::Success], 5);
    assert_eq!((providers(&steps), end), (vec!["a", "b"], None));
}

#[test]
fn retry_after_is_honoured_when_the_same_deployment_is_tried_again() {
    let w = World::new(&[("only", 0, 1)]);
    let p = policy(r#"{"max_attempts":2,"backoff":{"base_ms":0,"max_ms":0},"cooldown":{"failures_to_open":0}}"#);
    let t0 = Instant::now();
    let ra = Some(Duration::from_secs(7));
    let (steps, end) = run(&w, &p, t0, Duration::ZERO, &[Outcome::Status(429, ra), Outcome::Success], 6);
    assert_eq!(steps[1].after, Duration::from_secs(7));
    assert_eq!(end, None);
    // With a backoff longer than the retry-after, the longer wait wins.
    let p =
        policy(r#"{"max_attempts":2,"backoff":{"base_ms":20000,"max_ms":20000},"cooldown":{"failures_to_open":0}}"#);
    let ra = Some(Duration::from_millis(1));
    let (steps, _) = run(&w, &p, t0, Duration::ZERO, &[Outcome::Status(503, ra), Outcome::Success], 6);
    assert!(steps[1].after >= MS && steps[1].after <= Duration::from_secs(20));
}

#[test]
fn a_retry_after_past_the_deadline_gives_up_with_the_upstream_answer_instead_of_sleeping() {
    let w = World::new(&[("only", 0, 1)]);
    let p = policy(
        r#"{"max_attempts":3,"per_attempt_timeout_ms":10000,"overall_timeout_ms":30000,"cooldown":{"failures_to_open":0}}"#,
    );
    let t0 = Instant::now();
    let ra = Some(Duration::from_secs(3600));
    let (steps, end) = run(&w, &p, t0, Duration::from_secs(1), &[Outcome::Status(429, ra)], 7);
    assert_eq!(steps.len(), 1);
    assert_eq!(end, Some(GiveUp::RetryAfterBeyondDeadline { retry_after: Duration::from_secs(3600) }));
}

#[test]
fn a_retry_after_does_not_delay_a_fallback_to_another_deployment() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let p = policy(r#"{"max_attempts":3,"overall_timeout_ms":30000,"per_attempt_timeout_ms":10000}"#);
    let t0 = Instant::now();
    let ra = Some(Duration::from_secs(3600));
    let (steps, end) = run(&w, &p, t0, MS, &[Outcome::Status(429, ra), UNAVAILABLE, Outcome::Success], 8);
    // b right away; then a is blocked past the deadline, so b again after its backoff.
    assert_eq!(providers(&steps), ["a", "b", "b"]);
    assert!(steps[1].after.is_zero());
    assert_eq!(end, None);
}

#[test]
fn the_deadline_cuts_the_attempt_timeout_and_then_stops_the_plan() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1), ("c", 0, 1)]);
    let p = policy(
        r#"{"max_attempts":3,"per_attempt_timeout_ms":4000,"overall_timeout_ms":10000,"cooldown":{"failures_to_open":0}}"#,
    );
    let t0 = Instant::now();
    let (steps, end) = run(&w, &p, t0, Duration::from_secs(4), &[Outcome::Timeout; 3], 9);
    let timeouts: Vec<Duration> = steps.iter().map(|s: &Step| s.timeout).collect();
    assert_eq!(timeouts, [4000 * MS, 4000 * MS, 2000 * MS], "the last try only gets what is left");
    assert_eq!(end, Some(GiveUp::AttemptsExhausted));
    let (steps, end) = run(&w, &p, t0, Duration::from_secs(5), &[Outcome::Timeout; 3], 9);
    assert_eq!(steps.len(), 2);
    assert_eq!(end, Some(GiveUp::DeadlineExceeded));
}

#[test]
fn everything_in_cooldown_before_the_first_try_is_no_healthy_upstream() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let t0 = Instant::now();
    let open = BreakerPolicy::new(1, Duration::from_secs(30), Duration::from_secs(30)).unwrap();
    w.health.get("a", "x").unwrap().record(&UNAVAILABLE, t0, &open, None);
    w.health.get("b", "x").unwrap().record(&UNAVAILABLE, secs(t0, 5), &open, None);
    let p = policy("{}");
    let mut plan = w.plan(&p, secs(t0, 10));
    assert_eq!(
        plan.first(secs(t0, 10), &mut rng(1)),
        Next::GiveUp(GiveUp::NoHealthyUpstream { retry_at: Some(secs(t0, 30)) })
    );
    assert_eq!(plan.attempts(), 0);
}

#[test]
fn repeated_failures_open_the_breaker_and_later_requests_go_elsewhere_first() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let p = policy(r#"{"max_attempts":2,"cooldown":{"failures_to_open":2,"cooldown_ms":30000}}"#);
    let t0 = Instant::now();
    for _ in 0..2 {
        let (steps, _) = run(&w, &p, t0, MS, &[UNAVAILABLE, Outcome::Success], 10);
        assert_eq!(providers(&steps), ["a", "b"]);
    }
    // a is cooling down: b serves directly.
    let (steps, _) = run(&w, &p, secs(t0, 1), MS, &[Outcome::Success], 10);
    assert_eq!(providers(&steps), ["b"]);
    // After the cooldown the next request is a's probe; its success closes the breaker.
    let (steps, _) = run(&w, &p, secs(t0, 31), MS, &[Outcome::Success], 10);
    assert_eq!(providers(&steps), ["a"]);
    assert!(steps[0].probe);
    let (steps, _) = run(&w, &p, secs(t0, 32), MS, &[Outcome::Success], 10);
    assert_eq!((providers(&steps), steps[0].probe), (vec!["a"], false));
}

#[test]
fn a_half_open_deployment_gets_exactly_one_probe_and_a_dropped_plan_gives_it_back() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let t0 = Instant::now();
    let p = policy(r#"{"cooldown":{"failures_to_open":1,"cooldown_ms":10000}}"#);
    w.health.get("a", "x").unwrap().record(&UNAVAILABLE, t0, p.breaker(), None);
    let now = secs(t0, 10);
    let mut first = w.plan(&p, now);
    let Next::Try(probe) = first.first(now, &mut rng(1)) else { panic!() };
    assert_eq!((probe.deployment, probe.probe), (0, true));
    // A concurrent request skips a while the probe is in flight.
    let mut second = w.plan(&p, now);
    let Next::Try(other) = second.first(now, &mut rng(1)) else { panic!() };
    assert_eq!((other.deployment, other.probe), (1, false));
    // The probing request is cancelled (dropped): the slot is free again.
    drop(first);
    let mut third = w.plan(&p, now);
    let Next::Try(again) = third.first(now, &mut rng(1)) else { panic!() };
    assert_eq!((again.deployment, again.probe), (0, true));
    // Its failure re-opens the breaker (doubled cooldown), and the request falls back to b.
    let Next::Try(fallback) = third.after_failure(Outcome::Timeout, now, &mut rng(1)) else { panic!() };
    assert_eq!(fallback.deployment, 1);
    assert_eq!(w.health.get("a", "x").unwrap().admit(now, Duration::ZERO), Admission::Rejected { until: secs(t0, 30) });
}

#[test]
fn nothing_is_retried_after_the_first_byte_reached_the_caller() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let p = policy(r#"{"cooldown":{"failures_to_open":1}}"#);
    let t0 = Instant::now();
    let mut r = rng(1);
    // Broken before the first byte: falls back.
    let mut plan = w.plan(&p, t0);
    assert!(matches!(plan.first(t0, &mut r), Next::Try(a) if a.deployment == 0));
    let next = plan.after_failure(Outcome::StreamBroken { after_first_byte: false }, t0, &mut r);
    assert!(matches!(next, Next::Try(a) if a.deployment == 1));
    // b starts streaming, then breaks: final, and b's health hears about it.
    plan.served(t0);
    assert_eq!(plan.served_by(), Some(1));
    let next = plan.after_failure(Outcome::StreamBroken { after_first_byte: true }, t0, &mut r);
    assert_eq!(next, Next::GiveUp(GiveUp::NotRetryable));
    assert!(matches!(w.health.get("b", "x").unwrap().state(t0), BreakerState::Open { .. }));
    // Reported without served(): still final.
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let mut plan = w.plan(&p, t0);
    plan.first(t0, &mut r);
    let next = plan.after_failure(Outcome::StreamBroken { after_first_byte: true }, t0, &mut r);
    assert_eq!(next, Next::GiveUp(GiveUp::NotRetryable));
}

#[test]
fn a_skipped_try_costs_no_attempt_and_excluded_deployments_are_never_tried() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1), ("c", 0, 1)]);
    let p = policy(r#"{"max_attempts":2}"#);
    let t0 = Instant::now();
    let mut r = rng(1);
    let mut plan = w.plan(&p, t0);
    plan.exclude(0);
    let Next::Try(a) = plan.first(t0, &mut r) else { panic!() };
    assert_eq!(a.deployment, 1);
    // b's credential is rate limited locally: skip it, c is tried as attempt 1.
    let Next::Try(a) = plan.skip(t0, &mut r) else { panic!() };
    assert_eq!((a.deployment, a.number, plan.attempts()), (2, 1, 1));
    // c fails: a is excluded and b was skipped, so c is retried (attempt 2 of 2).
    let Next::Try(a) = plan.after_failure(UNAVAILABLE, t0, &mut r) else { panic!() };
    assert_eq!((a.deployment, a.number), (2, 2));
    assert_eq!(plan.after_failure(UNAVAILABLE, t0, &mut r), Next::GiveUp(GiveUp::AttemptsExhausted));
    // Everything excluded: nothing to try.
    let mut plan = w.plan(&p, t0);
    (0..3).for_each(|i| plan.exclude(i));
    assert_eq!(plan.first(t0, &mut r), Next::GiveUp(GiveUp::NoHealthyUpstream { retry_at: None }));
}

#[test]
fn a_snapshot_swap_keeps_a_cooling_deployment_out() {
    let w = World::new(&[("a", 0, 1), ("b", 0, 1)]);
    let t0 = Instant::now();
    let p = policy(r#"{"cooldown":{"failures_to_open":1,"cooldown_ms":60000}}"#);
    run(&w, &p, t0, MS, &[UNAVAILABLE, Outcome::Success], 1);
    // A new snapshot with the same deployments (and one more model) keeps a's breaker.
    let mut catalog = w.catalog.clone();
    catalog
        .insert(tollgate_routing::ModelRoute {
            name: "n".into(),
            deployments: vec![tollgate_routing::Deployment::new("c", "y")],
            max_output_tokens: None,
            max_tokens_per_part: Default::default(),
        })
        .unwrap();
    let w2 = World { health: w.health.carry_over(&catalog), catalog };
    let (steps, _) = run(&w2, &p, secs(t0, 1), MS, &[Outcome::Success], 1);
    assert_eq!(providers(&steps), ["b"]);
}
