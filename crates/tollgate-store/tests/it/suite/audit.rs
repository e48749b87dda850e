//! The audit log: filters, pages, and the chain walked oldest first.

use super::*;

pub(crate) async fn audit_is_listed_newest_first_with_filters_and_pages(db: &TestDb) {
    let store = &db.store;
    let mut appended = Vec::new();
    for (i, kind) in ["key", "budget", "key", "team", "key", "budget"].iter().enumerate() {
        let mut e = audit(&format!("ev_{i}"), 1_000 + i as i64 * 10, kind);
        e.seq = store.append_audit(&e).await.unwrap();
        appended.push(e);
    }
    assert!(appended.windows(2).all(|w| w[0].seq < w[1].seq), "seq increases");
    assert_eq!(store.last_audit().await.unwrap().as_ref(), appended.last());

    let all = store.list_audit(None, None, 100, None).await.unwrap();
    let newest_first: Vec<_> = appended.iter().rev().cloned().collect();
    assert_eq!(all, newest_first);

    let keys = store.list_audit(Some("key"), None, 100, None).await.unwrap();
    assert_eq!(keys.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ev_4", "ev_2", "ev_0"]);
    let recent = store.list_audit(None, Some(at(1_030)), 100, None).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ev_5", "ev_4", "ev_3"]);

    let page1 = store.list_audit(None, None, 2, None).await.unwrap();
    assert_eq!(page1, newest_first[..2]);
    let page2 = store.list_audit(None, None, 2, Some(page1[1].seq)).await.unwrap();
    assert_eq!(page2, newest_first[2..4]);
    let keys_before = store.list_audit(Some("key"), None, 100, Some(appended[4].seq)).await.unwrap();
    assert_eq!(keys_before.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ev_2", "ev_0"]);
    assert!(store.list_audit(None, None, 0, None).await.unwrap().is_empty());
    assert!(store.list_audit(Some("org"), None, 10, None).await.unwrap().is_empty());
}

pub(crate) async fn audit_is_filtered_by_actor_and_until_and_walked_oldest_first(db: &TestDb) {
    let store = &db.store;
    let mut appended = Vec::new();
    for (i, actor) in ["tok_a", "tok_b", "tok_a", "bootstrap"].iter().enumerate() {
        let mut e = audit(&format!("ev_{i}"), 1_000 + i as i64 * 10, "key");
        e.actor = (*actor).to_owned();
        e.seq = store.append_audit(&e).await.unwrap();
        appended.push(e);
    }
    let ids = |v: Vec<AuditRecord>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let by_a = AuditFilter { actor: Some("tok_a".into()), limit: 100, ..AuditFilter::default() };
    assert_eq!(ids(store.query_audit(&by_a).await.unwrap()), ["ev_2", "ev_0"]);
    let window = AuditFilter { since: Some(at(1_010)), until: Some(at(1_030)), limit: 100, ..AuditFilter::default() };
    assert_eq!(ids(store.query_audit(&window).await.unwrap()), ["ev_2", "ev_1"], "until is exclusive");

    assert_eq!(store.audit_chain(None, 100).await.unwrap(), appended, "oldest first");
    let rest = store.audit_chain(Some(appended[1].seq), 1).await.unwrap();
    assert_eq!(ids(rest), ["ev_2"]);
    assert!(store.audit_chain(Some(appended[3].seq), 100).await.unwrap().is_empty());
}

/// Seals an event after `prev`: a stand-in for the control plane's chain hash.
fn sealed(id: &str, prev: &str) -> AuditRecord {
    let mut e = audit(id, 2_000, "team");
    e.prev_hash = prev.to_owned();
    e.hash = format!("{prev}>{id}");
    e
}

pub(crate) async fn a_transaction_commits_its_writes_and_audit_event_together_or_not_at_all(db: &TestDb) {
    let store = &db.store;
    let org = store.ensure_org("default").await.unwrap();
    let rev = store.revision().await.unwrap();

    // Dropped before commit: the team, the revision bump and the event all roll back.
    {
        let txn = store.begin().await.unwrap();
        let (_, r) = txn.store().create_team(&org.id, "gone").await.unwrap();
        assert_eq!(r, rev + 1);
        assert_eq!(txn.store().revision().await.unwrap(), rev + 1, "the transaction sees its own writes");
        txn.store().append_audit_chained("genesis", |prev| sealed("ev_gone", prev)).await.unwrap();
    }
    assert_eq!(store.revision().await.unwrap(), rev);
    assert!(store.find_team("gone").await.unwrap().is_none());
    assert!(store.last_audit().await.unwrap().is_none());

    // A failing operation inside rolls back only itself; the caller then decides.
    let txn = store.begin().await.unwrap();
    let (team, _) = txn.store().create_team(&org.id, "kept").await.unwrap();
    assert!(txn.store().create_team(&org.id, "kept").await.is_err(), "a taken name");
    let ev = txn.store().append_audit_chained("genesis", |prev| sealed("ev_kept", prev)).await.unwrap();
    assert_eq!((ev.prev_hash.as_str(), ev.hash.as_str()), ("genesis", "genesis>ev_kept"));
    let unchained = txn.store().append_audit_chained("genesis", |_| sealed("ev_bad", "not-the-last")).await;
    assert!(matches!(unchained, Err(StoreError::Invalid { .. })), "{unchained:?}");
    txn.commit().await.unwrap();
    assert_eq!(store.revision().await.unwrap(), rev + 1);
    assert_eq!(store.find_team("kept").await.unwrap().map(|t| t.id), Some(team.id));
    let chain = store.audit_chain(None, 100).await.unwrap();
    assert_eq!(chain.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ev_kept"]);
    assert_eq!(chain[0].seq, ev.seq);
}

pub(crate) async fn chained_appends_follow_the_newest_event_even_when_racing(db: &TestDb) {
    let store = &db.store;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.append_audit_chained("genesis", |prev| sealed(&format!("ev_{i:02}"), prev)).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let chain = store.audit_chain(None, 100).await.unwrap();
    assert_eq!(chain.len(), 16);
    let mut prev = "genesis".to_owned();
    for e in &chain {
        assert_eq!(e.prev_hash, prev, "{} follows the event before it", e.id);
        assert_eq!(e.hash, format!("{prev}>{}", e.id));
        prev = e.hash.clone();
    }
}
