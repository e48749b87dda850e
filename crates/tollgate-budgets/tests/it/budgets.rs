//! The budget conformance suite: every backend must pass each of these exactly.

use crate::backends::{Backend, at, budget, eventually, usd};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tollgate_budgets::store::{
    CommitRequest, CommitSlot, CounterKey, ReleaseRequest, ReserveOutcome, ReserveRequest, ReserveSlot,
};
use tollgate_budgets::{Amount, Budget, Budgets, Limit, ReservationId, ReserveError, StoreError};
use tollgate_core::{ErrorCode, Money, OnBreach, ServiceError, Timestamp, Window};

const TTL: Duration = Duration::from_secs(600);

fn noon() -> Timestamp {
    at("2026-03-10T12:00:00Z")
}

async fn usage(engine: &Budgets, b: &Budget, now: Timestamp) -> (Amount, Amount) {
    let u = engine.usage(b, now).await.unwrap();
    (u.committed, u.reserved)
}

fn exceeded(r: Result<tollgate_budgets::Reservation, ReserveError>) -> Box<tollgate_budgets::Exceeded> {
    match r {
        Err(ReserveError::Exceeded(e)) => e,
        Err(e) => panic!("expected a refusal, got a store error: {e}"),
        Ok(r) => panic!("expected a refusal, got reservation {r:?}"),
    }
}

pub(crate) async fn reserve_then_commit_charges_the_actual_amount(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::new(usd("2"), 100), noon()).await.unwrap();
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::ZERO, Amount::new(usd("2"), 100)));
    let out = r.commit(Amount::new(usd("1.5"), 80)).await.unwrap();
    assert!(out.charged);
    assert!(out.alerts.is_empty());
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::new(usd("1.5"), 80), Amount::ZERO));
    let u = engine.usage(&bud, noon()).await.unwrap();
    assert_eq!(u.remaining(), Limit::Money(usd("8.5")));
    assert_eq!(u.window_start, Some(at("2026-03-10T00:00:00Z")));
    assert_eq!(u.resets_at, Some(at("2026-03-11T00:00:00Z")));
}

pub(crate) async fn block_budget_admits_up_to_its_limit_and_refuses_one_nano_more(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("b", Limit::Money(Money::from_nanos(10)), Window::Day, OnBreach::Block, &[]);
    let nanos = |n| Amount::money(Money::from_nanos(n));
    let _four = engine.reserve(std::slice::from_ref(&bud), nanos(4), noon()).await.unwrap();
    let six = engine.reserve(std::slice::from_ref(&bud), nanos(6), noon()).await.unwrap();
    let e = exceeded(engine.reserve(std::slice::from_ref(&bud), nanos(1), noon()).await);
    assert_eq!(e.budget.id, bud.id);
    assert_eq!(e.limit, Limit::Money(Money::from_nanos(10)));
    assert_eq!(e.used, nanos(10));
    assert_eq!(e.requested, nanos(1));
    assert_eq!(e.resets_at, Some(at("2026-03-11T00:00:00Z")));
    let err = ReserveError::Exceeded(e);
    assert_eq!(err.code(), ErrorCode::BudgetExceeded);
    let text = err.to_string();
    assert!(text.starts_with("day budget b of project scope-of-b"), "{text}");
    assert!(!text.ends_with('.'), "{text}");

    six.release().await.unwrap();
    let _six_again = engine.reserve(std::slice::from_ref(&bud), nanos(6), noon()).await.unwrap();
}

pub(crate) async fn token_limits_count_tokens_and_ignore_money(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let tokens = budget("t", Limit::Tokens(1000), Window::Hour, OnBreach::Block, &[]);
    let _r = engine.reserve(std::slice::from_ref(&tokens), Amount::new(usd("1000000"), 1000), noon()).await.unwrap();
    let e = exceeded(engine.reserve(std::slice::from_ref(&tokens), Amount::tokens(1), noon()).await);
    assert_eq!(e.used.tokens, 1000);
    // Money alone does not touch a token limit.
    let _m = engine.reserve(std::slice::from_ref(&tokens), Amount::money(usd("5")), noon()).await.unwrap();
}

pub(crate) async fn a_refusal_on_one_budget_leaves_no_trace_on_the_others(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let roomy = budget("roomy", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let tight = budget("tight", Limit::Money(usd("1")), Window::Month, OnBreach::Block, &[]);
    let warn = budget("warn", Limit::Money(usd("0.5")), Window::Day, OnBreach::Warn, &[]);
    let tokens = budget("tokens", Limit::Tokens(10), Window::Minute, OnBreach::Block, &[]);
    let all = [roomy.clone(), warn.clone(), tokens.clone(), tight.clone()];

    let e = exceeded(engine.reserve(&all, Amount::new(usd("2"), 5), noon()).await);
    assert_eq!(e.budget.id, tight.id);
    for bud in &all {
        assert_eq!(usage(&engine, bud, noon()).await, (Amount::ZERO, Amount::ZERO), "{}", bud.id);
    }
    // The first refusing budget, in the order given, is the one reported.
    let e = exceeded(engine.reserve(&all, Amount::new(usd("2"), 50), noon()).await);
    assert_eq!(e.budget.id, tokens.id);

    let _r = engine.reserve(&all, Amount::new(usd("0.75"), 5), noon()).await.unwrap();
    for bud in &all {
        assert_eq!(usage(&engine, bud, noon()).await.1, Amount::new(usd("0.75"), 5), "{}", bud.id);
    }
}

pub(crate) async fn warn_budgets_never_refuse_and_name_themselves_in_warnings(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let warn = budget("warn", Limit::Money(usd("1")), Window::Day, OnBreach::Warn, &[]);
    let block = budget("block", Limit::Money(usd("100")), Window::Day, OnBreach::Block, &[]);
    let first = engine.reserve(&[block.clone(), warn.clone()], Amount::money(usd("0.6")), noon()).await.unwrap();
    assert!(first.warnings().is_empty());
    let second = engine.reserve(&[block.clone(), warn.clone()], Amount::money(usd("0.6")), noon()).await.unwrap();
    let [w] = second.warnings() else { panic!("one warning expected: {:?}", second.warnings()) };
    assert_eq!(w.budget_id, warn.id);
    assert_eq!(w.scope, warn.scope);
    assert_eq!(&*w.scope_id, "scope-of-warn");
    assert_eq!(w.used, Amount::money(usd("1.2")));
    let third = engine.reserve(std::slice::from_ref(&warn), Amount::money(usd("50")), noon()).await.unwrap();
    assert_eq!(third.warnings().len(), 1);
    assert_eq!(usage(&engine, &warn, noon()).await.1, Amount::money(usd("51.2")));
}

pub(crate) async fn release_and_drop_give_the_reservation_back(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("5")), noon()).await.unwrap();
    r.release().await.unwrap();
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::ZERO, Amount::ZERO));

    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("10")), noon()).await.unwrap();
    drop(r);
    eventually("a dropped reservation is released", || async {
        engine.usage(&bud, noon()).await.unwrap().reserved == Amount::ZERO
    })
    .await;
    let _r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("10")), noon()).await.unwrap();
}

pub(crate) async fn an_abandoned_reservation_stops_counting_after_the_ttl(b: &Backend) {
    let ttl = Duration::from_secs(60);
    let crashed = b.budgets(ttl).await;
    let survivor = b.budgets(ttl).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let r = crashed.reserve(std::slice::from_ref(&bud), Amount::money(usd("10")), noon()).await.unwrap();
    // The process holding it dies: no commit, no release, no Drop.
    std::mem::forget(r);

    let just_before = noon().plus_millis(59_999);
    exceeded(survivor.reserve(std::slice::from_ref(&bud), Amount::money(usd("0.01")), just_before).await);
    assert_eq!(usage(&survivor, &bud, just_before).await.1, Amount::money(usd("10")));

    let expired = noon().plus_millis(60_000);
    assert_eq!(usage(&survivor, &bud, expired).await, (Amount::ZERO, Amount::ZERO));
    let _r = survivor.reserve(std::slice::from_ref(&bud), Amount::money(usd("10")), expired).await.unwrap();
}

pub(crate) async fn a_late_commit_after_expiry_is_still_charged(b: &Backend) {
    let engine = b.budgets(Duration::from_secs(60)).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("4")), noon()).await.unwrap();
    let later = noon().plus_millis(90_000);
    // Reading expires it: it no longer counts...
    assert_eq!(usage(&engine, &bud, later).await, (Amount::ZERO, Amount::ZERO));
    // ...but the request did run, and what it cost is charged, never dropped.
    let out = r.commit(Amount::money(usd("3"))).await.unwrap();
    assert!(out.charged);
    assert_eq!(usage(&engine, &bud, later).await, (Amount::money(usd("3")), Amount::ZERO));
}

pub(crate) async fn commit_and_release_are_idempotent_in_the_store(b: &Backend) {
    let store = b.store().await;
    let now = noon();
    let key = CounterKey { budget: "b".into(), window: Window::Day, start: Window::Day.start(now), epoch: 0 };
    let id = ReservationId(42);
    let (deadline, purge_at) = (now.plus_millis(1000), now.plus_millis(2000));
    let reserve = |id| ReserveRequest {
        id,
        amount: Amount::money(usd("1")),
        now,
        deadline,
        purge_at,
        slots: vec![ReserveSlot { key: key.clone(), limit: Some(Limit::Money(usd("5"))), keep_until: None }],
    };
    assert!(matches!(store.reserve(&reserve(id)).await.unwrap(), ReserveOutcome::Reserved(_)));
    let commit = CommitRequest {
        id,
        deadline,
        purge_at,
        actual: Amount::money(usd("2")),
        slots: vec![CommitSlot { key: key.clone(), thresholds: vec![] }],
    };
    let first = store.commit(&commit).await.unwrap();
    assert!(first[0].charged);
    assert_eq!(first[0].committed, Amount::money(usd("2")));
    let again = store.commit(&commit).await.unwrap();
    assert!(!again[0].charged, "a repeated commit charges nothing");
    assert_eq!(again[0].committed, Amount::money(usd("2")));

    let other = ReservationId(43);
    assert!(matches!(store.reserve(&reserve(other)).await.unwrap(), ReserveOutcome::Reserved(_)));
    let release = ReleaseRequest { id: other, deadline, purge_at, keys: vec![key.clone()] };
    store.release(&release).await.unwrap();
    store.release(&release).await.unwrap();
    let u = store.read(&key, now).await.unwrap();
    assert_eq!((u.committed, u.reserved), (Amount::money(usd("2")), Amount::ZERO));
    // After its purge time a reservation is forgotten: committing it is a no-op.
    let forgotten = ReservationId(44);
    assert!(matches!(store.reserve(&reserve(forgotten)).await.unwrap(), ReserveOutcome::Reserved(_)));
    store.read(&key, deadline).await.unwrap();
    store.read(&key, purge_at).await.unwrap();
    let late = store.commit(&CommitRequest { id: forgotten, ..commit.clone() }).await.unwrap();
    assert!(!late[0].charged);
}

pub(crate) async fn a_dropped_commit_future_still_charges(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("3")), noon()).await.unwrap();
    // E.g. the client disconnected and the handler task was cancelled mid-commit.
    drop(r.commit(Amount::money(usd("2"))));
    eventually("the abandoned commit is finished in the background", || async {
        engine.usage(&bud, noon()).await.unwrap().committed == Amount::money(usd("2"))
    })
    .await;
    assert_eq!(usage(&engine, &bud, noon()).await.1, Amount::ZERO);
}

pub(crate) async fn the_next_window_starts_empty_and_a_late_commit_lands_in_its_own_window(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let before = at("2026-03-10T23:59:00Z");
    let after = at("2026-03-11T00:00:00Z");
    let old = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("8")), before).await.unwrap();
    assert_eq!(usage(&engine, &bud, after).await, (Amount::ZERO, Amount::ZERO), "a new window starts empty");
    let new = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("9")), after).await.unwrap();
    old.commit(Amount::money(usd("7"))).await.unwrap();
    assert_eq!(usage(&engine, &bud, before).await, (Amount::money(usd("7")), Amount::ZERO));
    assert_eq!(usage(&engine, &bud, after).await, (Amount::ZERO, Amount::money(usd("9"))));
    new.commit(Amount::money(usd("9"))).await.unwrap();
    assert_eq!(usage(&engine, &bud, after).await, (Amount::money(usd("9")), Amount::ZERO));
}

pub(crate) async fn a_commit_above_its_reservation_is_charged_in_full_and_blocks_further_reservations(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[1000]);
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("2")), noon()).await.unwrap();
    let out = r.commit(Amount::money(usd("12"))).await.unwrap();
    assert_eq!(out.alerts.iter().map(|a| a.threshold).collect::<Vec<_>>(), vec![1000]);
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::money(usd("12")), Amount::ZERO));
    let e = exceeded(engine.reserve(std::slice::from_ref(&bud), Amount::money(Money::from_nanos(1)), noon()).await);
    assert_eq!(e.used, Amount::money(usd("12")));
    exceeded(engine.reserve(std::slice::from_ref(&bud), Amount::ZERO, noon()).await);
    // The next window is a fresh start.
    let tomorrow = at("2026-03-11T08:00:00Z");
    let _r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("10")), tomorrow).await.unwrap();
}

pub(crate) async fn alerts_fire_once_per_window_and_threshold_across_engines(b: &Backend) {
    let one = b.budgets(TTL).await;
    let two = b.budgets(TTL).await;
    let block = budget("block", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[500, 800]);
    let warn = budget("warn", Limit::Money(usd("10")), Window::Day, OnBreach::Warn, &[800]);
    let both = [block.clone(), warn.clone()];
    let fired = |out: &tollgate_budgets::CommitOutcome| {
        out.alerts.iter().map(|a| (a.budget.id.to_string(), a.threshold)).collect::<Vec<_>>()
    };

    let r = one.reserve(&both, Amount::money(usd("4")), noon()).await.unwrap();
    assert!(r.commit(Amount::money(usd("4"))).await.unwrap().alerts.is_empty());
    let r = two.reserve(&both, Amount::money(usd("2")), noon()).await.unwrap();
    let out = r.commit(Amount::money(usd("2"))).await.unwrap();
    assert_eq!(fired(&out), vec![("block".into(), 500)]);
    let a = &out.alerts[0];
    assert_eq!(a.window_start, Some(at("2026-03-10T00:00:00Z")));
    assert_eq!(a.committed, Amount::money(usd("6")));

    // Many small commits race across the 80 % and 100 % marks on two engines: each
    // threshold fires exactly once in total.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let engine = if i % 2 == 0 { one.clone() } else { two.clone() };
        let both = both.clone();
        tasks.push(tokio::spawn(async move {
            let r = engine.reserve(&both, Amount::money(usd("0.2")), noon()).await.unwrap();
            tokio::task::yield_now().await;
            r.commit(Amount::money(usd("0.2"))).await.unwrap().alerts
        }));
    }
    let mut counts: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for t in tasks {
        for a in t.await.unwrap() {
            *counts.entry((a.budget.id.to_string(), a.threshold)).or_default() += 1;
        }
    }
    let expected: BTreeMap<(String, u16), usize> =
        [(("block".into(), 800), 1), (("warn".into(), 800), 1), (("warn".into(), 1000), 1)].into_iter().collect();
    assert_eq!(counts, expected);

    // More spend in the same window: nothing fires again.
    let r = one.reserve(std::slice::from_ref(&warn), Amount::money(usd("5")), noon()).await.unwrap();
    assert!(r.commit(Amount::money(usd("5"))).await.unwrap().alerts.is_empty());

    // A new window: the thresholds fire again.
    let tomorrow = at("2026-03-11T12:00:00Z");
    let r = two.reserve(&both, Amount::money(usd("9")), tomorrow).await.unwrap();
    let out = r.commit(Amount::money(usd("9"))).await.unwrap();
    let mut got = fired(&out);
    got.sort();
    assert_eq!(got, vec![("block".into(), 500), ("block".into(), 800), ("warn".into(), 800)]);
}

async fn race(engines: &[Budgets], tasks: usize, scopes: impl Fn(usize) -> Vec<Arc<Budget>>, each: Money) -> usize {
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let engine = engines[i % engines.len()].clone();
        let scopes = scopes(i);
        handles.push(tokio::spawn(async move {
            match engine.reserve(&scopes, Amount::money(each), noon()).await {
                Ok(r) => {
                    tokio::task::yield_now().await;
                    r.commit(Amount::money(each)).await.unwrap();
                    true
                }
                Err(ReserveError::Exceeded(_)) => false,
                Err(e) => panic!("store failure: {e:?}"),
            }
        }));
    }
    let mut ok = 0;
    for h in handles {
        ok += usize::from(h.await.unwrap());
    }
    ok
}

pub(crate) async fn concurrent_reservations_admit_exactly_what_the_budget_affords(b: &Backend) {
    const K: i64 = 37;
    let engines = [b.budgets(TTL).await, b.budgets(TTL).await];
    let each = usd("0.25");
    let limit = Money::from_nanos(each.nanos() * K);
    let bud = budget("b", Limit::Money(limit), Window::Day, OnBreach::Block, &[]);
    let ok = race(&engines, 200, |_| vec![bud.clone()], each).await;
    assert_eq!(ok, K as usize);
    let (committed, reserved) = usage(&engines[0], &bud, noon()).await;
    assert_eq!(committed.money, limit);
    assert!(committed.money <= limit);
    assert_eq!(reserved, Amount::ZERO);
}

pub(crate) async fn concurrent_multi_scope_reservations_stay_exact_on_every_scope(b: &Backend) {
    const K: i64 = 23;
    let engines = [b.budgets(TTL).await, b.budgets(TTL).await];
    let each = usd("0.1");
    let team = budget("team", Limit::Money(Money::from_nanos(each.nanos() * K)), Window::Month, OnBreach::Block, &[]);
    let keys: Vec<_> = (0..10)
        .map(|i| budget(&format!("key{i}"), Limit::Money(usd("0.3")), Window::Day, OnBreach::Block, &[]))
        .collect();
    let org = budget("org", Limit::Money(usd("1000")), Window::Total, OnBreach::Block, &[]);
    let ok = race(&engines, 200, |i| vec![org.clone(), keys[i % 10].clone(), team.clone()], each).await;
    // Each key affords 3 (30 in all) and the team 23: the team is the binding limit.
    assert_eq!(ok, K as usize);
    let team_spend = usage(&engines[1], &team, noon()).await.0.money;
    let mut key_spend = Money::ZERO;
    for k in &keys {
        let (committed, reserved) = usage(&engines[0], k, noon()).await;
        assert!(committed.money <= usd("0.3"));
        assert_eq!(reserved, Amount::ZERO);
        key_spend = key_spend.saturating_add(committed.money);
    }
    assert_eq!(team_spend, Money::from_nanos(each.nanos() * K));
    assert_eq!(key_spend, team_spend, "every scope was charged exactly the same requests");
    assert_eq!(usage(&engines[0], &org, noon()).await.0.money, team_spend);
}

pub(crate) async fn seed_sets_committed_spend_and_reset_empties_the_window(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[500]);
    // Rebuilt from the ledger: $9 spent today (the 50 % alert went out before the restart).
    engine.seed(&bud, Some(at("2026-03-10T05:00:00Z")), Amount::new(usd("9"), 900)).await.unwrap();
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::new(usd("9"), 900), Amount::ZERO));
    exceeded(engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("2")), noon()).await);
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("1")), noon()).await.unwrap();
    assert!(r.commit(Amount::money(usd("0.5"))).await.unwrap().alerts.is_empty(), "no second 50 % alert");

    // Another window is untouched.
    assert_eq!(usage(&engine, &bud, at("2026-03-09T12:00:00Z")).await, (Amount::ZERO, Amount::ZERO));
    let e = engine.seed(&bud, None, Amount::ZERO).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { .. }), "{e:?}");
    assert_eq!(e.code(), ErrorCode::Internal);

    // A manual reset empties the current window; reservations in flight still count and
    // alerts can fire again.
    let in_flight = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("0.5")), noon()).await.unwrap();
    engine.reset(&bud, noon()).await.unwrap();
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::ZERO, Amount::money(usd("0.5"))));
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("9.5")), noon()).await.unwrap();
    exceeded(engine.reserve(std::slice::from_ref(&bud), Amount::money(Money::from_nanos(1)), noon()).await);
    let out = r.commit(Amount::money(usd("6"))).await.unwrap();
    assert_eq!(out.alerts.iter().map(|a| a.threshold).collect::<Vec<_>>(), vec![500]);
    in_flight.commit(Amount::money(usd("0.5"))).await.unwrap();
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::money(usd("6.5")), Amount::ZERO));

    // Lifetime budgets are seeded without a window start.
    let total = budget("total", Limit::Tokens(100), Window::Total, OnBreach::Block, &[]);
    engine.seed(&total, None, Amount::tokens(60)).await.unwrap();
    assert_eq!(usage(&engine, &total, noon()).await.0, Amount::tokens(60));
}

pub(crate) async fn tightest_remaining_is_the_smallest_money_headroom(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let roomy = budget("roomy", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let tight = budget("tight", Limit::Money(usd("3")), Window::Day, OnBreach::Warn, &[]);
    let tokens = budget("tokens", Limit::Tokens(5), Window::Day, OnBreach::Block, &[]);
    let r =
        engine.reserve(&[roomy.clone(), tight.clone(), tokens.clone()], Amount::money(usd("1")), noon()).await.unwrap();
    assert_eq!(r.tightest_remaining(), Some(usd("2")));
    let over = engine.reserve(&[roomy.clone(), tight.clone()], Amount::money(usd("4")), noon()).await.unwrap();
    assert_eq!(over.tightest_remaining(), Some(Money::ZERO), "never below zero");
    let none = engine.reserve(std::slice::from_ref(&tokens), Amount::tokens(1), noon()).await.unwrap();
    assert_eq!(none.tightest_remaining(), None);
    let empty = engine.reserve(&[], Amount::money(usd("1")), noon()).await.unwrap();
    assert_eq!(empty.tightest_remaining(), None);
    assert!(empty.commit(Amount::money(usd("1"))).await.unwrap().alerts.is_empty());
}

pub(crate) async fn a_budget_listed_twice_is_charged_once(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("b", Limit::Money(usd("10")), Window::Day, OnBreach::Block, &[]);
    let r = engine.reserve(&[bud.clone(), bud.clone()], Amount::money(usd("6")), noon()).await.unwrap();
    assert_eq!(usage(&engine, &bud, noon()).await.1, Amount::money(usd("6")));
    r.commit(Amount::money(usd("6"))).await.unwrap();
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::money(usd("6")), Amount::ZERO));
}

pub(crate) async fn lifetime_budgets_never_reset(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("life", Limit::Money(usd("5")), Window::Total, OnBreach::Block, &[]);
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("5")), noon()).await.unwrap();
    r.commit(Amount::money(usd("4"))).await.unwrap();
    let next_year = at("2027-03-10T12:00:00Z");
    assert_eq!(usage(&engine, &bud, next_year).await.0, Amount::money(usd("4")));
    let e = exceeded(engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("2")), next_year).await);
    assert_eq!(e.resets_at, None);
}

pub(crate) async fn money_stays_exact_beyond_double_precision(b: &Backend) {
    // 2^53 nano-dollars is about $9M: a larger limit must still be enforced to the nano
    // (Redis scripts must not compare doubles).
    let engine = b.budgets(TTL).await;
    let limit = Money::from_nanos(9_007_199_254_740_993 * 100 + 7);
    let bud = budget("big", Limit::Money(limit), Window::Month, OnBreach::Block, &[1000]);
    let almost = Money::from_nanos(limit.nanos() - 1);
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(almost), noon()).await.unwrap();
    let _one = engine.reserve(std::slice::from_ref(&bud), Amount::money(Money::from_nanos(1)), noon()).await.unwrap();
    let e = exceeded(engine.reserve(std::slice::from_ref(&bud), Amount::money(Money::from_nanos(1)), noon()).await);
    assert_eq!(e.used.money, limit);
    let out = r.commit(Amount::money(almost)).await.unwrap();
    assert!(out.alerts.is_empty(), "one nano short of 100 % is not 100 %");
    assert_eq!(usage(&engine, &bud, noon()).await, (Amount::money(almost), Amount::money(Money::from_nanos(1))));
}

pub(crate) async fn a_new_epoch_starts_empty_and_the_old_one_is_untouched(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("ep", Limit::Money(usd("1")), Window::Month, OnBreach::Block, &[]);
    engine
        .reserve(std::slice::from_ref(&bud), Amount::money(usd("1")), noon())
        .await
        .unwrap()
        .commit(Amount::money(usd("1")))
        .await
        .unwrap();
    exceeded(engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("0.01")), noon()).await);
    // The control plane's reset bumps the epoch: the same budget counts afresh.
    let reset = Arc::new(Budget { epoch: bud.epoch + 1, ..(*bud).clone() });
    assert_eq!(usage(&engine, &reset, noon()).await, (Amount::ZERO, Amount::ZERO));
    let _r = engine.reserve(std::slice::from_ref(&reset), Amount::money(usd("0.5")), noon()).await.unwrap();
    assert_eq!(usage(&engine, &bud, noon()).await.0, Amount::money(usd("1")), "old epoch keeps its spend");
}

pub(crate) async fn a_temporary_increase_counts_until_it_lapses(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let until = noon().plus_millis(60_000);
    let bud = Arc::new(Budget {
        temporary_increase: Some((Limit::Money(usd("2")), until)),
        ..(*budget("inc", Limit::Money(usd("1")), Window::Month, OnBreach::Block, &[])).clone()
    });
    assert_eq!(bud.limit_at(noon()), Limit::Money(usd("3")));
    let r = engine.reserve(std::slice::from_ref(&bud), Amount::money(usd("2.5")), noon()).await.unwrap();
    r.commit(Amount::money(usd("2.5"))).await.unwrap();
    let u = engine.usage(&bud, noon()).await.unwrap();
    assert_eq!(u.remaining(), Limit::Money(usd("0.5")));
    // Once the increase lapses the base limit is back, and spend above it blocks.
    let later = until.plus_millis(1);
    assert_eq!(bud.limit_at(later), Limit::Money(usd("1")));
    let e = exceeded(engine.reserve(std::slice::from_ref(&bud), Amount::money(Money::from_nanos(1)), later).await);
    assert_eq!(e.limit, Limit::Money(usd("1")));
    // An increase in the other unit is ignored.
    let odd = Budget { temporary_increase: Some((Limit::Tokens(5), until)), ..(*bud).clone() };
    assert_eq!(odd.limit_at(noon()), Limit::Money(usd("1")));
}
