//! Usage reports over the ledger: groups by day, hour and tag.

use super::*;

/// 2026-03-01T00:00:00Z.
const MAR1: i64 = 1_772_323_200_000;

const HOUR_MS: i64 = 3_600_000;

const DAY_MS: i64 = 24 * HOUR_MS;

pub(crate) async fn usage_groups_sum_exactly_across_day_and_hour_boundaries(db: &TestDb) {
    use tollgate_store::{UsageFilter, UsageGroup, UsageKey, UsageTotals};
    let store = &db.store;
    let model_entry = |id: &str, at_ms: i64, key: &str, principal: Option<&str>, model: &str, nanos: i64| {
        let mut e = spend_entry(id, at_ms, key, principal, "p1", "t1", "o1", nanos, 10, 1);
        e.served_model = model.to_owned();
        e.cached_input_tokens = 4;
        e
    };
    let batch = [
        model_entry("u0", MAR1 - 1, "k1", Some("alice"), "gpt-4o", 1), // before the range
        model_entry("u1", MAR1, "k1", Some("alice"), "gpt-4o", 9_007_199_254_740_993),
        model_entry("u2", MAR1 + HOUR_MS - 1, "k2", None, "claude", 2),
        model_entry("u3", MAR1 + HOUR_MS, "k1", Some("bob"), "gpt-4o", 3),
        model_entry("u4", MAR1 + DAY_MS - 1, "k2", None, "gpt-4o", 4),
        model_entry("u5", MAR1 + DAY_MS, "k1", Some("alice"), "claude", 5),
        model_entry("u6", MAR1 + 2 * DAY_MS, "k1", Some("alice"), "claude", 6), // at `to`
    ];
    write(store, &batch).await.unwrap();
    let all = UsageFilter::between(at(MAR1), at(MAR1 + 2 * DAY_MS));
    let t = |requests, cost| UsageTotals {
        requests,
        input_tokens: 10 * requests,
        output_tokens: requests,
        cached_input_tokens: 4 * requests,
        cost: Money::from_nanos(cost),
    };
    let big = 9_007_199_254_740_993;
    assert_eq!(store.usage_totals(&all).await.unwrap(), t(5, big + 2 + 3 + 4 + 5));

    let all_ref = &all;
    let rows = |g| async move {
        store.usage_by(all_ref, g).await.unwrap().into_iter().map(|r| (r.key, r.totals)).collect::<Vec<_>>()
    };
    let name = |n: Option<&str>| UsageKey::Name(n.map(str::to_owned));
    assert_eq!(
        rows(UsageGroup::Model).await,
        [(name(Some("claude")), t(2, 2 + 5)), (name(Some("gpt-4o")), t(3, big + 3 + 4))]
    );
    assert_eq!(
        rows(UsageGroup::Day).await,
        [(UsageKey::Start(at(MAR1)), t(4, big + 2 + 3 + 4)), (UsageKey::Start(at(MAR1 + DAY_MS)), t(1, 5))]
    );
    assert_eq!(
        rows(UsageGroup::Hour).await,
        [
            (UsageKey::Start(at(MAR1)), t(2, big + 2)),
            (UsageKey::Start(at(MAR1 + HOUR_MS)), t(1, 3)),
            (UsageKey::Start(at(MAR1 + 23 * HOUR_MS)), t(1, 4)),
            (UsageKey::Start(at(MAR1 + DAY_MS)), t(1, 5)),
        ]
    );
    assert_eq!(rows(UsageGroup::Key).await, [(name(Some("k1")), t(3, big + 3 + 5)), (name(Some("k2")), t(2, 2 + 4))]);
    assert_eq!(
        rows(UsageGroup::Principal).await,
        [(name(None), t(2, 2 + 4)), (name(Some("alice")), t(2, big + 5)), (name(Some("bob")), t(1, 3))]
    );

    // Scope filters.
    let scoped = |kind, id: &str| UsageFilter { scope: Some((kind, id.to_owned())), ..all.clone() };
    assert_eq!(store.usage_totals(&scoped(ScopeKind::Principal, "alice")).await.unwrap(), t(2, big + 5));
    assert_eq!(store.usage_totals(&scoped(ScopeKind::VirtualKey, "k2")).await.unwrap(), t(2, 6));
    assert_eq!(store.usage_totals(&scoped(ScopeKind::Team, "t1")).await.unwrap(), t(5, big + 14));
    assert_eq!(store.usage_totals(&scoped(ScopeKind::Organization, "o9")).await.unwrap(), UsageTotals::default());

    // Pages in (at, request_id) order, each entry once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.ledger_page(&all, cursor.as_ref(), 2).await.unwrap();
        seen.extend(page.iter().map(|e| e.request_id.clone()));
        match page.last() {
            Some(last) if page.len() == 2 => {
                cursor = Some(tollgate_store::LedgerCursor { at: last.at, request_id: last.request_id.clone() })
            }
            _ => break,
        }
    }
    assert_eq!(seen, ["u1", "u2", "u3", "u4", "u5"]);
}

pub(crate) async fn usage_by_tag_counts_each_entry_once_per_tag_and_replays_once(db: &TestDb) {
    use tollgate_store::{UsageFilter, UsageGroup, UsageKey, UsageTotals};
    let store = &db.store;
    let tagged = |id: &str, at_ms: i64, key: &str, nanos: i64, tags: &[&str]| {
        spend_entry(id, at_ms, key, None, "p1", "t1", "o1", nanos, 10, 1).with_tags(tags.iter().copied())
    };
    let t0 = tagged("t0", MAR1, "k1", 1, &[]);
    let t1 = tagged("t1", MAR1 + 1, "k1", 10, &["env:prod"]);
    let t2 = tagged("t2", MAR1 + 2, "k2", 100, &["env:prod", "feature:chat"]);
    // A tag repeated on one entry still counts that entry once.
    let t3 = tagged("t3", MAR1 + HOUR_MS, "k1", 1_000, &["feature:chat", "feature:chat"]);
    let early = tagged("t4", MAR1 - 1, "k1", 10_000, &["env:prod"]); // before the range
    write(store, &[t0.clone(), t1.clone(), t2.clone(), t2.clone(), t3.clone(), early]).await.unwrap();
    // Replayed entries (a spool replay, a re-sent batch) add nothing, tags included.
    write(store, &[t1.clone(), t2.clone(), t3.clone()]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 5);
    assert_eq!(store.ledger_entry("t2").await.unwrap(), Some(t2));

    let all = UsageFilter::between(at(MAR1), at(MAR1 + DAY_MS));
    let t = |requests: u64, cost| UsageTotals {
        requests,
        input_tokens: 10 * requests,
        output_tokens: requests,
        cached_input_tokens: 0,
        cost: Money::from_nanos(cost),
    };
    let with_tag = |tag: &str| UsageFilter { tag: Some(tag.to_owned()), ..all.clone() };
    assert_eq!(store.usage_totals(&all).await.unwrap(), t(4, 1_111));
    assert_eq!(store.usage_totals(&with_tag("env:prod")).await.unwrap(), t(2, 110));
    assert_eq!(store.usage_totals(&with_tag("feature:chat")).await.unwrap(), t(2, 1_100));
    assert_eq!(store.usage_totals(&with_tag("env")).await.unwrap(), UsageTotals::default());
    let by_key_and_tag = UsageFilter { scope: Some((ScopeKind::VirtualKey, "k1".to_owned())), ..with_tag("env:prod") };
    assert_eq!(store.usage_totals(&by_key_and_tag).await.unwrap(), t(1, 10));

    let rows = |f: UsageFilter, g| async move {
        store.usage_by(&f, g).await.unwrap().into_iter().map(|r| (r.key, r.totals)).collect::<Vec<_>>()
    };
    let name = |n: &str| UsageKey::Name(Some(n.to_owned()));
    // The untagged entry is in no tag group; the two-tag entry is in both.
    assert_eq!(
        rows(all.clone(), UsageGroup::Tag).await,
        [(name("env:prod"), t(2, 110)), (name("feature:chat"), t(2, 1_100))]
    );
    assert_eq!(
        rows(with_tag("env:prod"), UsageGroup::Tag).await,
        [(name("env:prod"), t(2, 110)), (name("feature:chat"), t(1, 100))]
    );
    assert_eq!(
        rows(with_tag("feature:chat"), UsageGroup::Key).await,
        [(name("k1"), t(1, 1_000)), (name("k2"), t(1, 100))]
    );
    assert_eq!(
        rows(with_tag("feature:chat"), UsageGroup::Hour).await,
        [(UsageKey::Start(at(MAR1)), t(1, 100)), (UsageKey::Start(at(MAR1 + HOUR_MS)), t(1, 1_000))]
    );
    let page = store.ledger_page(&with_tag("env:prod"), None, 10).await.unwrap();
    assert_eq!(page.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["t1", "t2"]);
}
