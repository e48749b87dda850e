//! `clamp` budgets: [`Budgets::reserve_clamped`] lowers a request's output cap to what a
//! clamp budget still affords, refuses below the floor, and never takes the budget past
//! its limit, on every backend.

use crate::backends::{Backend, budget};
use std::sync::Arc;
use std::time::Duration;
use tollgate_budgets::{Amount, Budget, Budgets, Clamped, Limit, Reservation, ReserveError};
use tollgate_core::{BudgetId, Money, OnBreach, Timestamp, Window};

const TTL: Duration = Duration::from_secs(600);

fn noon() -> Timestamp {
    Timestamp::parse_rfc3339("2026-03-10T12:00:00Z").unwrap()
}

/// A request of 100 input tokens costing 1000 nano-dollars, output at 10 nano-dollars a
/// token.
fn request(n: u64) -> Amount {
    Amount::new(Money::from_nanos(1000 + 10 * i64::try_from(n).unwrap()), 100 + n)
}

fn nanos(n: i64) -> Limit {
    Limit::Money(Money::from_nanos(n))
}

fn with_floor(b: &Arc<Budget>, floor: u64) -> Arc<Budget> {
    Arc::new((**b).clone().with_clamp_floor_tokens(floor))
}

async fn used(engine: &Budgets, b: &Budget) -> Amount {
    engine.usage(b, noon()).await.unwrap().used()
}

async fn clamp(
    engine: &Budgets,
    budgets: &[Arc<Budget>],
    max_output: u64,
) -> Result<(Reservation, Option<Clamped>), ReserveError> {
    engine.reserve_clamped(budgets, &request, max_output, noon()).await
}

fn refused_by(r: Result<(Reservation, Option<Clamped>), ReserveError>) -> BudgetId {
    match r {
        Err(ReserveError::Exceeded(e)) => e.budget.id.clone(),
        Err(e) => panic!("expected a refusal, got a store error: {e}"),
        Ok((r, c)) => panic!("expected a refusal, got {r:?} clamped to {c:?}"),
    }
}

pub(crate) async fn a_money_clamp_lowers_the_cap_to_exactly_what_the_budget_affords(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("c", nanos(5000), Window::Day, OnBreach::Clamp, &[]);
    let buds = [Arc::clone(&bud)];
    // 1000 of 5000 spent: 4000 left, which is the input (1000) and 300 output tokens.
    engine
        .reserve(&buds, Amount::money(Money::from_nanos(1000)), noon())
        .await
        .unwrap()
        .commit(Amount::money(Money::from_nanos(1000)))
        .await
        .unwrap();

    let (r, clamped) = clamp(&engine, &buds, 1000).await.unwrap();
    let clamped = clamped.expect("the worst case does not fit: the cap is lowered");
    assert_eq!(clamped.cap, 300);
    assert_eq!(clamped.budget.id, bud.id);
    assert_eq!(
        used(&engine, &bud).await.money,
        Money::from_nanos(5000),
        "the budget is used to its limit, not past it"
    );
    r.release().await.unwrap();

    // A request that fits is reserved whole and not clamped.
    let (r, clamped) = clamp(&engine, &buds, 200).await.unwrap();
    assert_eq!(clamped, None);
    assert_eq!(used(&engine, &bud).await.money, Money::from_nanos(1000 + 3000));
    r.release().await.unwrap();
}

pub(crate) async fn a_token_clamp_counts_tokens_and_ignores_money(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let bud = budget("t", Limit::Tokens(1000), Window::Hour, OnBreach::Clamp, &[]);
    let (r, clamped) = clamp(&engine, std::slice::from_ref(&bud), 5000).await.unwrap();
    assert_eq!(clamped.map(|c| c.cap), Some(900), "100 input + 900 output tokens = the limit");
    assert_eq!(used(&engine, &bud).await, request(900));
    // Full: not even the floor fits now.
    assert_eq!(refused_by(clamp(&engine, std::slice::from_ref(&bud), 5000).await), bud.id);
    r.commit(request(900)).await.unwrap();
    assert_eq!(used(&engine, &bud).await.tokens, 1000);
}

pub(crate) async fn the_tightest_of_two_clamp_budgets_sets_the_cap(b: &Backend) {
    let engine = b.budgets(TTL).await;
    // Money: 1000 + 10 n <= 4000, n <= 300. Tokens: 100 + n <= 250, n <= 150.
    let money = budget("money", nanos(4000), Window::Day, OnBreach::Clamp, &[]);
    let tokens = budget("tokens", Limit::Tokens(250), Window::Day, OnBreach::Clamp, &[]);
    for order in [[Arc::clone(&money), Arc::clone(&tokens)], [Arc::clone(&tokens), Arc::clone(&money)]] {
        let (r, clamped) = clamp(&engine, &order, 1000).await.unwrap();
        let clamped = clamped.unwrap();
        assert_eq!((clamped.cap, &clamped.budget.id), (150, &tokens.id));
        assert_eq!(used(&engine, &money).await, request(150));
        assert_eq!(used(&engine, &tokens).await, request(150));
        r.release().await.unwrap();
    }
    // The token budget's floor above what it affords: refused, nothing left anywhere.
    let tokens = with_floor(&tokens, 151);
    assert_eq!(refused_by(clamp(&engine, &[Arc::clone(&money), Arc::clone(&tokens)], 1000).await), tokens.id);
    assert_eq!(used(&engine, &money).await, Amount::ZERO);
    assert_eq!(used(&engine, &tokens).await, Amount::ZERO);
}

pub(crate) async fn below_the_floor_a_clamp_budget_refuses_like_block(b: &Backend) {
    let engine = b.budgets(TTL).await;
    // Room for the input and exactly 16 output tokens (the default floor).
    let bud = budget("c", Limit::Tokens(116), Window::Day, OnBreach::Clamp, &[]);
    assert_eq!(bud.clamp_floor_tokens, 16);
    let (r, clamped) = clamp(&engine, std::slice::from_ref(&bud), 1000).await.unwrap();
    assert_eq!(clamped.map(|c| c.cap), Some(16));
    r.release().await.unwrap();

    let floor_17 = with_floor(&bud, 17);
    assert_eq!(refused_by(clamp(&engine, std::slice::from_ref(&floor_17), 1000).await), bud.id);
    assert_eq!(used(&engine, &bud).await, Amount::ZERO, "a refusal reserves nothing");

    // Not even the input fits.
    let tiny = budget("tiny", Limit::Tokens(99), Window::Day, OnBreach::Clamp, &[]);
    assert_eq!(refused_by(clamp(&engine, std::slice::from_ref(&tiny), 1000).await), tiny.id);
    // A floor of 0 is raised to 1: a request is never clamped to no output at all.
    let one = budget("one", Limit::Tokens(100), Window::Day, OnBreach::Clamp, &[]);
    assert_eq!(refused_by(clamp(&engine, &[with_floor(&one, 0)], 1000).await), one.id);
}

pub(crate) async fn a_block_budget_refusal_is_final_beside_a_clamp_budget(b: &Backend) {
    let engine = b.budgets(TTL).await;
    let clamp_b = budget("clamp", nanos(4000), Window::Day, OnBreach::Clamp, &[]);
    let block = budget("block", Limit::Tokens(250), Window::Day, OnBreach::Block, &[]);
    let warn = budget("warn", Limit::Tokens(10), Window::Day, OnBreach::Warn, &[]);
    for order in [[Arc::clone(&clamp_b), Arc::clone(&block)], [Arc::clone(&block), Arc::clone(&clamp_b)]] {
        assert_eq!(refused_by(clamp(&engine, &order, 1000).await), block.id);
        assert_eq!(used(&engine, &clamp_b).await, Amount::ZERO);
        assert_eq!(used(&engine, &block).await, Amount::ZERO);
    }
    // Block with room beside clamp: clamped by the clamp budget; warn only warns.
    let roomy = budget("roomy", Limit::Tokens(10_000), Window::Day, OnBreach::Block, &[]);
    let (r, clamped) = clamp(&engine, &[Arc::clone(&warn), roomy, Arc::clone(&clamp_b)], 1000).await.unwrap();
    assert_eq!(clamped.map(|c| (c.cap, c.budget.id.clone())), Some((300, clamp_b.id.clone())));
    assert_eq!(r.warnings().len(), 1);
    assert_eq!(r.warnings()[0].budget_id, warn.id);
    r.release().await.unwrap();
}

pub(crate) async fn concurrent_clamped_requests_fill_the_budget_and_never_pass_it(b: &Backend) {
    const LIMIT: u64 = 20_000;
    let bud = budget("c", Limit::Tokens(LIMIT), Window::Day, OnBreach::Clamp, &[]);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        // Separate engines: on Redis, separate connections, as separate gateways.
        let engine = b.budgets(TTL).await;
        let buds = [Arc::clone(&bud)];
        tasks.push(tokio::spawn(async move {
            let mut clamped_count = 0;
            for _ in 0..8 {
                // Worst case 4100 tokens: unclamped, only 4 would ever fit (82 %).
                match engine.reserve_clamped(&buds, &request, 4000, noon()).await {
                    Ok((r, clamped)) => {
                        let cap = clamped.as_ref().map_or(4000, |c| c.cap);
                        clamped_count += u32::from(clamped.is_some());
                        r.commit(request(cap)).await.unwrap();
                    }
                    Err(ReserveError::Exceeded(_)) => break,
                    Err(e) => panic!("store error: {e}"),
                }
            }
            clamped_count
        }));
    }
    let mut clamped_total = 0;
    for t in tasks {
        clamped_total += t.await.unwrap();
    }
    let engine = b.budgets(TTL).await;
    let u = engine.usage(&bud, noon()).await.unwrap();
    assert_eq!(u.reserved, Amount::ZERO);
    assert!(u.committed.tokens <= LIMIT, "committed {} past the limit {LIMIT}", u.committed.tokens);
    assert!(u.committed.tokens * 100 >= LIMIT * 95, "only {} of {LIMIT} used", u.committed.tokens);
    assert!(clamped_total > 0);
}
