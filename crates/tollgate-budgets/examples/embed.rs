//! Embedding tollgate-budgets in a Rust service with no gateway around it.
//!
//! A service calls some paid API on behalf of its customers. Before each call it checks
//! the customer's rate limit and reserves the call's worst-case cost on every budget that
//! applies (the customer's daily cap, which blocks, and the company's monthly budget,
//! which only warns); after the call it commits what the call really cost.
//!
//! ```text
//! cargo run -p tollgate-budgets --example embed                           # memory store
//! cargo run -p tollgate-budgets --example embed -- redis://127.0.0.1:6379 # shared Redis
//! ```
//! (or set `TOLLGATE_REDIS_URL`).

#![allow(clippy::print_stdout, reason = "an example shows what it does on stdout")]

use std::sync::Arc;
use std::time::Duration;
use tollgate_budgets::{
    Amount, Budget, Budgets, BudgetsConfig, Limit, RateLimitError, RateLimiter, RateLimits, RedisStore, ReserveError,
};
use tollgate_core::{BudgetId, Money, OnBreach, ScopeKind, Timestamp, Window};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Reservations of a process that dies stop counting after 2 x our 30 s call timeout.
    let config = BudgetsConfig::new(Duration::from_secs(60));
    let url = std::env::args().nth(1).or_else(|| std::env::var("TOLLGATE_REDIS_URL").ok());
    let (budgets, limiter) = match url {
        Some(url) => {
            // A prefix of our own so this demo never touches anyone else's counters.
            let prefix = format!("tollgate-embed-example:{}:", std::process::id());
            let store = RedisStore::connect(&url, &prefix).await?;
            println!("counters in Redis at {url} under {prefix}");
            (Budgets::new(store.clone(), config), RateLimiter::new(store))
        }
        None => {
            println!("counters in memory (pass a redis:// URL to share them between processes)");
            (Budgets::memory(config), RateLimiter::memory())
        }
    };

    let customer = Arc::new(Budget::new(
        BudgetId::new("bud_customer_daily"),
        ScopeKind::Principal,
        "acme:user-42",
        Limit::Money(Money::parse_usd("0.05")?),
        Window::Day,
        OnBreach::Block,
        vec![500, 800],
    )?);
    let company = Arc::new(Budget::new(
        BudgetId::new("bud_company_monthly"),
        ScopeKind::Organization,
        "acme",
        Limit::Money(Money::parse_usd("0.03")?),
        Window::Month,
        OnBreach::Warn,
        vec![],
    )?);
    let applicable = [customer.clone(), company.clone()];
    let limits = RateLimits { rpm: Some(5), tpm: Some(20_000), max_concurrency: Some(2) };

    for call in 1..=8 {
        let now = Timestamp::now();
        // Worst case: 500 input tokens + at most 1,000 output tokens at $10 per million.
        let worst = Amount::new(Money::from_nanos(1_500 * 10_000), 1_500);

        let permit = match limiter.acquire("acme:user-42", &limits, worst.tokens, now).await {
            Ok(p) => p,
            Err(RateLimitError::Limited(r)) => {
                println!("call {call}: rate limited on {}, retry in {:?}", r.dimension, r.retry_after);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let reservation = match budgets.reserve(&applicable, worst, now).await {
            Ok(r) => r,
            Err(ReserveError::Exceeded(e)) => {
                println!("call {call}: refused: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for w in reservation.warnings() {
            println!("call {call}: warning: {} {} is over its budget {}", w.scope, w.scope_id, w.budget_id);
        }

        // ... the paid call happens here; it used 500 + 700 tokens ...
        let actual = Amount::new(Money::from_nanos(1_200 * 10_000), 1_200);
        permit.settle_tokens(actual.tokens).await;
        let outcome = reservation.commit(actual).await?;
        for alert in &outcome.alerts {
            println!("call {call}: alert: {} reached {}‰ of its limit", alert.budget.id, alert.threshold);
        }
        if let Limit::Money(left) = budgets.usage(&customer, now).await?.remaining() {
            println!("call {call}: served for ${}; the customer has ${left} left today", actual.money);
        }
    }
    Ok(())
}
