//! The ledger as a sink: round trips, idempotence by request id, rejected batches, and
//! spend per scope.

use super::*;

pub(crate) async fn ledger_batch_round_trips_field_for_field_without_bumping_the_revision(db: &TestDb) {
    let store = &db.store;
    let rev = store.revision().await.unwrap();
    // The caller's own id and an unpriced model are stored and read back too.
    let full = full_entry("req_full", 1_772_366_400_250).with_client_request_id("caller-7").with_priced(false);
    // Every optional empty (no caller id, priced), zero counts, estimated usage, negative cost (a refund).
    let bare = LedgerEntry::new("req_bare", KeyId::new("key_2"), ProjectId::new("proj_2"), "claude")
        .with_at(at(1))
        .with_cost(Money::from_nanos(-3))
        .with_outcome(502, 0);
    let max = spend_entry("req_max", i64::MAX, "k", None, "p", "t", "o", i64::MAX, i64::MAX as u64, 0);
    write(store, &[full.clone(), bare.clone(), max.clone()]).await.unwrap();
    write(store, &[]).await.unwrap();

    assert_eq!(store.ledger_entry("req_full").await.unwrap(), Some(full));
    assert_eq!(store.ledger_entry("req_bare").await.unwrap(), Some(bare));
    assert_eq!(store.ledger_entry("req_max").await.unwrap(), Some(max));
    assert_eq!(store.ledger_entry("req_ghost").await.unwrap(), None);
    assert_eq!(store.ledger_count().await.unwrap(), 3);
    assert_eq!(store.revision().await.unwrap(), rev, "ledger writes are not configuration");
    assert_eq!(store.snapshot().await.unwrap().revision, rev);
}

pub(crate) async fn ledger_stores_each_request_id_once(db: &TestDb) {
    let store = &db.store;
    let rev = store.revision().await.unwrap();
    let e = |id: &str, nanos: i64| spend_entry(id, 100, "key_1", None, "p", "t", "o", nanos, 1, 2);

    // A repeat inside one batch: the first copy is stored.
    write(store, &[e("a", 10), e("b", 20), e("a", 999)]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 2);
    assert_eq!(store.ledger_entry("a").await.unwrap().unwrap().cost, Money::from_nanos(10));

    // The same batch again (a replay after a lost acknowledgement) stores nothing.
    write(store, &[e("a", 10), e("b", 20), e("a", 999)]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 2);

    // A batch overlapping stored entries stores only the new one; stored ones never change.
    write(store, &[e("b", 777), e("c", 30)]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 3);
    assert_eq!(store.ledger_entry("b").await.unwrap().unwrap().cost, Money::from_nanos(20));
    assert_eq!(store.ledger_spend(ScopeKind::VirtualKey, "key_1", at(0), at(1000)).await.unwrap(), (60, 9));

    // A batch larger than one INSERT statement, overlapping too, is stored whole, once.
    let big: Vec<_> = (0..450).map(|i| e(&format!("big_{i:03}"), 1)).chain([e("c", 5)]).collect();
    write(store, &big).await.unwrap();
    write(store, &big[200..]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 453);
    assert_eq!(store.ledger_spend(ScopeKind::VirtualKey, "key_1", at(0), at(1000)).await.unwrap(), (510, 453 * 3));
    assert_eq!(store.revision().await.unwrap(), rev, "no ledger write bumps the revision");
}

pub(crate) async fn ledger_rejects_unstorable_entries_and_stores_nothing_of_their_batch(db: &TestDb) {
    let store = &db.store;
    let ok = spend_entry("ok", 1, "k", None, "p", "t", "o", 1, 1, 1);
    let too_many = spend_entry("too_many", 1, "k", None, "p", "t", "o", 1, u64::MAX, 0);
    let nul = spend_entry("nul", 1, "k", Some("acme\0user"), "p", "t", "o", 1, 1, 1);
    for bad in [too_many, nul] {
        let err = write(store, &[ok.clone(), bad.clone()]).await.unwrap_err();
        assert!(matches!(err, SinkError::Rejected(_)), "{} → {err:?}", bad.request_id);
        assert!(!err.is_retryable());
        assert_eq!(store.ledger_count().await.unwrap(), 0, "nothing of a rejected batch is stored");
    }
    write(store, &[ok]).await.unwrap();
    assert_eq!(store.ledger_count().await.unwrap(), 1);
}

pub(crate) async fn ledger_spend_sums_one_scope_over_a_half_open_range(db: &TestDb) {
    let store = &db.store;
    // Two keys of one principal in project p1 (team t1, org o1); another key, with no
    // principal, in project p2 of team t2 in the same org; one key in another org.
    let batch = [
        spend_entry("r1", 999, "k1", Some("alice"), "p1", "t1", "o1", 1, 1, 0), // before the range
        spend_entry("r2", 1000, "k1", Some("alice"), "p1", "t1", "o1", 10, 2, 3), // at `from`: counted
        spend_entry("r3", 1500, "k2", Some("alice"), "p1", "t1", "o1", 100, 10, 20),
        spend_entry("r4", 1999, "k3", None, "p2", "t2", "o1", 1_000, 100, 200), // last ms in range
        spend_entry("r5", 2000, "k1", Some("alice"), "p1", "t1", "o1", 10_000, 1000, 2000), // at `to`: not
        spend_entry("r6", 1500, "k9", Some("bob"), "p9", "t9", "o9", 100_000, 7, 7), // other tenancy
    ];
    write(store, &batch).await.unwrap();
    let (from, to) = (at(1000), at(2000));
    let spend = |scope, id: &'static str| async move { store.ledger_spend(scope, id, from, to).await.unwrap() };

    assert_eq!(spend(ScopeKind::VirtualKey, "k1").await, (10, 5));
    assert_eq!(spend(ScopeKind::VirtualKey, "k2").await, (100, 30));
    assert_eq!(spend(ScopeKind::Principal, "alice").await, (110, 35));
    assert_eq!(spend(ScopeKind::Project, "p1").await, (110, 35));
    assert_eq!(spend(ScopeKind::Project, "p2").await, (1_000, 300));
    assert_eq!(spend(ScopeKind::Team, "t1").await, (110, 35));
    assert_eq!(spend(ScopeKind::Organization, "o1").await, (1_110, 335));
    assert_eq!(spend(ScopeKind::Organization, "o9").await, (100_000, 14));
    // An id is matched in its own scope's column only.
    assert_eq!(spend(ScopeKind::Team, "p1").await, (0, 0));
    assert_eq!(spend(ScopeKind::Principal, "k3").await, (0, 0));
    assert_eq!(spend(ScopeKind::VirtualKey, "nobody").await, (0, 0));

    // The boundaries: `from` inclusive, `to` exclusive.
    let k1 = |f, t| async move { store.ledger_spend(ScopeKind::VirtualKey, "k1", at(f), at(t)).await.unwrap() };
    assert_eq!(k1(999, 1000).await, (1, 1));
    assert_eq!(k1(1000, 1001).await, (10, 5));
    assert_eq!(k1(1001, 2000).await, (0, 0));
    assert_eq!(k1(2000, 2001).await, (10_000, 3000));
    assert_eq!(k1(0, i64::MAX).await, (10_011, 3006));
    assert_eq!(k1(1000, 1000).await, (0, 0), "an empty range");
}
