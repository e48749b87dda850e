//! Organizations, teams and projects.

use super::*;

pub(crate) async fn ensure_org_is_idempotent_even_when_racing(db: &TestDb) {
    let store = db.store.clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ensure_org("racy").await.unwrap() })
        })
        .collect();
    let mut orgs = Vec::new();
    for t in tasks {
        orgs.push(t.await.unwrap());
    }
    assert!(orgs.windows(2).all(|w| w[0] == w[1]), "{orgs:?}");
    assert_eq!(store.revision().await.unwrap(), 1, "created once, bumped once");
    assert_eq!(store.snapshot().await.unwrap().orgs, vec![orgs[0].clone()]);
}
