//! The revision: a fresh database, one bump per configuration write, consecutive
//! revisions under concurrent writers, snapshots that match their revision, reconnecting.

use super::*;

pub(crate) async fn fresh_database_is_empty_at_revision_zero(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.revision().await.unwrap(), 0);
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.revision, 0);
    assert!(snap.orgs.is_empty() && snap.teams.is_empty() && snap.projects.is_empty());
    assert!(snap.providers.is_empty() && snap.models.is_empty());
    assert!(snap.keys.is_empty() && snap.budgets.is_empty());
    assert!(snap.aliases.is_empty() && snap.routing_policies.is_empty());
    assert!(store.last_audit().await.unwrap().is_none());
    assert!(store.list_providers().await.unwrap().is_empty());
}

pub(crate) async fn each_config_write_bumps_revision_by_exactly_one(db: &TestDb) {
    let store = &db.store;
    let mut rev = store.revision().await.unwrap();
    #[track_caller]
    fn bumped(rev: &mut i64, got: i64, what: &str) {
        assert_eq!(got, *rev + 1, "{what}");
        *rev = got;
    }

    let org = store.ensure_org("acme").await.unwrap();
    bumped(&mut rev, store.revision().await.unwrap(), "ensure_org creating");
    store.ensure_org("acme").await.unwrap();
    assert_eq!(store.revision().await.unwrap(), rev, "ensure_org of an existing org does not bump");

    let (team, r) = store.create_team(&org.id, "t").await.unwrap();
    bumped(&mut rev, r, "create_team");
    let (project, r) = store.create_project(&team.id, "p").await.unwrap();
    bumped(&mut rev, r, "create_project");
    bumped(&mut rev, store.create_provider(&provider("prov_1", "openai")).await.unwrap(), "create_provider");
    bumped(&mut rev, store.create_model(&model("model_1", "gpt-4o")).await.unwrap(), "create_model");
    let k = bare_key("key_1", &project.id, "h1");
    bumped(
        &mut rev,
        store.create_key(&k, Some(&budget("bud_1", ScopeKind::VirtualKey, "key_1"))).await.unwrap(),
        "create_key with a budget bumps once",
    );
    bumped(&mut rev, store.create_key(&bare_key("key_2", &project.id, "h2"), None).await.unwrap(), "create_key");
    let mut revoked = k.clone();
    revoked.status = "revoked".to_owned();
    bumped(&mut rev, store.update_key(&revoked).await.unwrap(), "update_key");
    bumped(
        &mut rev,
        store.create_budget(&budget("bud_2", ScopeKind::Project, project.id.as_str())).await.unwrap(),
        "create_budget",
    );
    let mut b2 = budget("bud_2", ScopeKind::Project, project.id.as_str());
    b2.limit_nanos = 1;
    bumped(&mut rev, store.update_budget(&b2).await.unwrap().1, "update_budget");
    bumped(&mut rev, store.reset_budget(&b2.id, at(5)).await.unwrap().1, "reset_budget");
    bumped(&mut rev, store.delete_budget(&BudgetId::new("bud_1")).await.unwrap(), "delete_budget");
    bumped(
        &mut rev,
        store.create_admin_token(&admin_token("tok_1", "n", "th", &[], None, None)).await.unwrap(),
        "create_admin_token",
    );
    bumped(&mut rev, store.create_alias(&alias("fast", "gpt-4o")).await.unwrap(), "create_alias");
    bumped(&mut rev, store.delete_alias("fast").await.unwrap(), "delete_alias");
    let mut p = policy("rpol_1", "project", Some(project.id.as_str()));
    bumped(&mut rev, store.create_routing_policy(&p).await.unwrap(), "create_routing_policy");
    p.policy = json!({"max_attempts": 1});
    bumped(&mut rev, store.update_routing_policy(&p).await.unwrap().1, "update_routing_policy");
    bumped(&mut rev, store.delete_routing_policy("rpol_1").await.unwrap(), "delete_routing_policy");
    assert_eq!(store.revision().await.unwrap(), rev);

    store.append_audit(&audit("ev_1", 1, "key")).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), rev, "audit appends do not bump");

    assert_conflict(store.create_team(&org.id, "t").await);
    assert_conflict(store.create_model(&model("model_9", "gpt-4o")).await);
    assert_eq!(store.revision().await.unwrap(), rev, "failed writes do not bump");

    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.revision, rev);
    assert_eq!(snap.keys.len(), 2);
    assert_eq!(snap.keys[0].status, "revoked");
    assert_eq!(snap.budgets.len(), 1, "bud_1 was deleted");
    assert_eq!((snap.budgets[0].limit_nanos, snap.budgets[0].epoch), (1, 1));
}

pub(crate) async fn snapshot_revision_matches_its_rows_under_concurrent_writes(db: &TestDb) {
    let store = db.store.clone();
    let (_, _, project) = tenancy(&store, "s").await;
    let base_rev = store.revision().await.unwrap();
    const WRITES: i64 = 30;

    let writer = {
        let store = store.clone();
        let project = project.id.clone();
        tokio::spawn(async move {
            for i in 0..WRITES {
                store.create_key(&bare_key(&format!("key_{i:03}"), &project, &format!("h{i}")), None).await.unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    loop {
        let done = writer.is_finished();
        let snap = store.snapshot().await.unwrap();
        assert_eq!(snap.keys.len() as i64, snap.revision - base_rev, "a snapshot mixes revisions");
        seen.push(snap.revision);
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let last = store.snapshot().await.unwrap();
    assert_eq!(last.revision, base_rev + WRITES);
    assert_eq!(last.keys.len() as i64, WRITES);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "revisions seen go backwards: {seen:?}");
}

pub(crate) async fn concurrent_writers_get_distinct_consecutive_revisions(db: &TestDb) {
    let store = db.store.clone();
    let org = store.ensure_org("acme").await.unwrap();
    let base = store.revision().await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let org = org.id.clone();
            tokio::spawn(async move { store.create_team(&org, &format!("team-{i}")).await.unwrap().1 })
        })
        .collect();
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs.sort_unstable();
    assert_eq!(revs, ((base + 1)..=(base + 16)).collect::<Vec<_>>());
    assert_eq!(store.snapshot().await.unwrap().teams.len(), 16);
}

pub(crate) async fn reconnecting_keeps_data_and_reruns_no_migration(db: &TestDb) {
    let Some(url) = &db.url else {
        return; // an in-memory database does not outlive its connection
    };
    let store = &db.store;
    let (_, _, project) = tenancy(store, "r").await;
    store.create_key(&bare_key("key_1", &project.id, "h"), None).await.unwrap();
    let rev = store.revision().await.unwrap();

    let again = Store::connect(url).await.unwrap();
    assert_eq!(again.revision().await.unwrap(), rev);
    assert_eq!(again.snapshot().await.unwrap(), store.snapshot().await.unwrap());
}
