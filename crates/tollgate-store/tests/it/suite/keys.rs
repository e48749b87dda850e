//! Virtual keys: filtered and paged listings, updates, creation with a budget, and
//! revoking a principal's keys together.

use super::*;

/// Two projects; keys `key_00`..`key_09`. Even keys are in project A, odd in B; keys
/// 0..5 belong to principal `alice`; key_03 and key_07 are revoked; metadata `tier` is
/// `gold` for multiples of 3 and `silver` otherwise, `env=prod` on keys below 6.
async fn key_fixture(store: &Store) -> (ProjectId, ProjectId) {
    let (_, team, a) = tenancy(store, "a").await;
    let (b, _) = store.create_project(&team.id, "project-b").await.unwrap();
    // Inserted out of id order on purpose.
    for i in [7, 2, 9, 0, 4, 1, 8, 3, 6, 5] {
        let project = if i % 2 == 0 { &a.id } else { &b.id };
        let mut k = bare_key(&format!("key_{i:02}"), project, &format!("hash{i}"));
        if i < 5 {
            k.principal = Some("alice".to_owned());
        }
        if i == 3 || i == 7 {
            k.status = "revoked".to_owned();
        }
        k.metadata.insert("tier".to_owned(), if i % 3 == 0 { "gold" } else { "silver" }.to_owned());
        if i < 6 {
            k.metadata.insert("env".to_owned(), "prod".to_owned());
        }
        if i % 4 == 0 {
            k.tags = vec!["env:prod".to_owned(), "team:search".to_owned()];
        }
        store.create_key(&k, None).await.unwrap();
    }
    (a.id, b.id)
}

pub(crate) async fn list_keys_filters_by_project_principal_status_and_metadata(db: &TestDb) {
    let store = &db.store;
    let (a, b) = key_fixture(store).await;
    let list = |f: KeyFilter| async move { store.list_keys(&f).await.unwrap() };
    let md = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();

    let all = list(KeyFilter::default()).await;
    assert_eq!(
        ids(&all),
        ["key_00", "key_01", "key_02", "key_03", "key_04", "key_05", "key_06", "key_07", "key_08", "key_09"]
    );
    let got = list(KeyFilter { project_id: Some(a.clone()), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_02", "key_04", "key_06", "key_08"]);
    let got =
        list(KeyFilter { project_id: Some(b.clone()), principal: Some("alice".into()), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_01", "key_03"]);
    let got = list(KeyFilter { status: Some("revoked".into()), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_03", "key_07"]);
    let got = list(KeyFilter { metadata: md(&[("tier", "gold")]), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_03", "key_06", "key_09"]);
    let got = list(KeyFilter { metadata: md(&[("tier", "gold"), ("env", "prod")]), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_03"]);
    let got = list(KeyFilter {
        project_id: Some(b),
        status: Some("active".into()),
        metadata: md(&[("tier", "gold")]),
        ..KeyFilter::default()
    })
    .await;
    assert_eq!(ids(&got), ["key_09"]);
    assert!(list(KeyFilter { metadata: md(&[("tier", "Gold")]), ..KeyFilter::default() }).await.is_empty());
    assert!(list(KeyFilter { metadata: md(&[("nope", "gold")]), ..KeyFilter::default() }).await.is_empty());
    let tag = |t: &str| Some(t.to_owned());
    let got = list(KeyFilter { tag: tag("team:search"), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_04", "key_08"]);
    assert_eq!(got[0].tags, ["env:prod", "team:search"]);
    let got =
        list(KeyFilter { tag: tag("team:search"), metadata: md(&[("env", "prod")]), ..KeyFilter::default() }).await;
    assert_eq!(ids(&got), ["key_00", "key_04"]);
    assert!(list(KeyFilter { tag: tag("team"), ..KeyFilter::default() }).await.is_empty());
    assert!(list(KeyFilter { principal: Some("bob".into()), ..KeyFilter::default() }).await.is_empty());
    assert!(list(KeyFilter { project_id: Some(ProjectId::new("proj_x")), ..KeyFilter::default() }).await.is_empty());
}

pub(crate) async fn list_keys_paginates_by_id_with_and_without_metadata_filter(db: &TestDb) {
    let store = &db.store;
    let (a, _) = key_fixture(store).await;

    async fn pages(store: &Store, mut f: KeyFilter) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        loop {
            let page = store.list_keys(&f).await.unwrap();
            assert!(page.len() as u64 <= f.limit);
            let Some(last) = page.last() else { break };
            f.after = Some(last.id.clone());
            out.push(page.iter().map(|k| k.id.to_string()).collect());
        }
        out
    }

    let got = pages(store, KeyFilter { limit: 4, ..KeyFilter::default() }).await;
    assert_eq!(
        got,
        [
            vec!["key_00", "key_01", "key_02", "key_03"],
            vec!["key_04", "key_05", "key_06", "key_07"],
            vec!["key_08", "key_09"]
        ]
    );
    let got = pages(store, KeyFilter { project_id: Some(a), limit: 2, ..KeyFilter::default() }).await;
    assert_eq!(got, [vec!["key_00", "key_02"], vec!["key_04", "key_06"], vec!["key_08"]]);
    let silver = vec![("tier".to_owned(), "silver".to_owned())];
    let got = pages(store, KeyFilter { metadata: silver.clone(), limit: 2, ..KeyFilter::default() }).await;
    assert_eq!(got, [vec!["key_01", "key_02"], vec!["key_04", "key_05"], vec!["key_07", "key_08"]]);

    let f = KeyFilter { after: Some(KeyId::new("key_05")), metadata: silver, ..KeyFilter::default() };
    assert_eq!(ids(&store.list_keys(&f).await.unwrap()), ["key_07", "key_08"]);
    let f = KeyFilter { after: Some(KeyId::new("key_050")), ..KeyFilter::default() };
    assert_eq!(ids(&store.list_keys(&f).await.unwrap()), ["key_06", "key_07", "key_08", "key_09"]);
    assert!(store.list_keys(&KeyFilter { limit: 0, ..KeyFilter::default() }).await.unwrap().is_empty());
    assert_eq!(KeyFilter::default().limit, KeyFilter::DEFAULT_LIMIT);
    assert_eq!(store.list_keys(&KeyFilter { limit: u64::MAX, ..KeyFilter::default() }).await.unwrap().len(), 10);
}

pub(crate) async fn list_keys_orders_ids_bytewise(db: &TestDb) {
    let store = &db.store;
    let (_, _, p) = tenancy(store, "o").await;
    for id in ["key_b", "key_B", "key_a", "key__", "key_A", "key_-1"] {
        store.create_key(&bare_key(id, &p.id, &format!("h{id}")), None).await.unwrap();
    }
    let mut want = vec!["key_b", "key_B", "key_a", "key__", "key_A", "key_-1"];
    want.sort_unstable();
    assert_eq!(ids(&store.list_keys(&KeyFilter::default()).await.unwrap()), want);
    let f = KeyFilter { after: Some(KeyId::new("key_B")), ..KeyFilter::default() };
    assert_eq!(ids(&store.list_keys(&f).await.unwrap()), ["key__", "key_a", "key_b"]);
}

pub(crate) async fn update_key_replaces_mutable_columns_only(db: &TestDb) {
    let store = &db.store;
    let (_, team, project) = tenancy(store, "u").await;
    let (other_project, _) = store.create_project(&team.id, "elsewhere").await.unwrap();
    let original = bare_key("key_1", &project.id, "old-hash");
    store.create_key(&original, None).await.unwrap();

    // Rotate: every mutable column changes; the id, project and creation time may not.
    let mut rotated = full_key("key_1", &other_project.id, "new-hash");
    rotated
        .grace_secrets
        .push(GraceSecretRecord { key_hash: "old-hash".to_owned(), valid_until: at(1_700_000_700_000) });
    rotated.created_at = at(42);
    store.update_key(&rotated).await.unwrap();
    let stored = store.get_key(&original.id).await.unwrap().unwrap();
    let want = KeyRecord { project_id: project.id.clone(), created_at: original.created_at, ..rotated.clone() };
    assert_eq!(stored, want);

    // And back to empty optional columns: NULLs are written, not skipped.
    let mut cleared = bare_key("key_1", &project.id, "newer-hash");
    cleared.updated_at = at(1_800_000_000_000);
    store.update_key(&cleared).await.unwrap();
    assert_eq!(store.get_key(&original.id).await.unwrap().unwrap(), cleared);
    // The freed hash can be used again.
    store.create_key(&bare_key("key_2", &project.id, "old-hash"), None).await.unwrap();
}

pub(crate) async fn update_key_of_missing_key_is_not_found_and_changes_nothing(db: &TestDb) {
    let store = &db.store;
    let (_, _, project) = tenancy(store, "m").await;
    let rev = store.revision().await.unwrap();
    assert_not_found(store.update_key(&bare_key("key_ghost", &project.id, "h")).await, "key");
    assert_eq!(store.revision().await.unwrap(), rev);
    assert!(store.get_key(&KeyId::new("key_ghost")).await.unwrap().is_none());
}

pub(crate) async fn create_key_with_budget_is_atomic(db: &TestDb) {
    let store = &db.store;
    let (_, _, project) = tenancy(store, "b").await;
    store.create_budget(&budget("bud_taken", ScopeKind::Project, project.id.as_str())).await.unwrap();
    let rev = store.revision().await.unwrap();

    let k = bare_key("key_1", &project.id, "h1");
    assert_conflict(store.create_key(&k, Some(&budget("bud_taken", ScopeKind::VirtualKey, "key_1"))).await);
    assert!(store.get_key(&k.id).await.unwrap().is_none(), "the key must roll back with its budget");
    assert!(store.list_budgets_for(ScopeKind::VirtualKey, "key_1").await.unwrap().is_empty());
    assert_eq!(store.revision().await.unwrap(), rev);

    // A key conflict rolls the budget back too.
    store.create_key(&bare_key("key_2", &project.id, "h2"), None).await.unwrap();
    let rev = store.revision().await.unwrap();
    let dup = bare_key("key_3", &project.id, "h2");
    assert_conflict(store.create_key(&dup, Some(&budget("bud_3", ScopeKind::VirtualKey, "key_3"))).await);
    assert!(store.list_budgets_for(ScopeKind::VirtualKey, "key_3").await.unwrap().is_empty());
    assert_eq!(store.revision().await.unwrap(), rev);

    // The same key with a fresh budget id goes through, both rows at once.
    let b = budget("bud_1", ScopeKind::VirtualKey, "key_1");
    assert_eq!(store.create_key(&k, Some(&b)).await.unwrap(), rev + 1);
    assert_eq!(store.get_key(&k.id).await.unwrap(), Some(k));
    assert_eq!(store.list_budgets_for(ScopeKind::VirtualKey, "key_1").await.unwrap(), vec![b]);
}

pub(crate) async fn list_keys_filters_by_team(db: &TestDb) {
    let store = &db.store;
    let (_, team_a, proj_a) = tenancy(store, "a").await;
    let (_, team_b, proj_b) = tenancy(store, "b").await;
    let (second_a, _) = store.create_project(&team_a.id, "a2").await.unwrap();
    for (id, p) in [("key_1", &proj_a.id), ("key_2", &proj_b.id), ("key_3", &second_a.id)] {
        store.create_key(&bare_key(id, p, &format!("h{id}")), None).await.unwrap();
    }
    let ids = |v: Vec<KeyRecord>| v.into_iter().map(|k| k.id.to_string()).collect::<Vec<_>>();
    let of = |t: &TeamId| KeyFilter { team_id: Some(t.clone()), ..KeyFilter::default() };
    assert_eq!(ids(store.list_keys(&of(&team_a.id)).await.unwrap()), ["key_1", "key_3"]);
    assert_eq!(ids(store.list_keys(&of(&team_b.id)).await.unwrap()), ["key_2"]);
    let both = KeyFilter { project_id: Some(proj_b.id.clone()), ..of(&team_a.id) };
    assert!(store.list_keys(&both).await.unwrap().is_empty(), "the filters add up");
}

pub(crate) async fn a_principals_keys_are_revoked_together_across_update_batches(db: &TestDb) {
    let store = &db.store;
    let (_, team, project) = tenancy(store, "pk").await;
    let (_, _, elsewhere) = tenancy(store, "pk-other").await;
    // More keys than one revoking statement takes (1,000), plus keys that must stay. (The
    // databases bind up to 32,766 / 65,535 values a statement; batching keeps a principal
    // with more keys than that revocable, and this crosses the batch boundary.)
    let many = 1_205;
    for i in 0..many {
        let mut k = bare_key(&format!("key_p{i:05}"), &project.id, &format!("hash-p{i:05}"));
        k.principal = Some("acme:1".into());
        store.create_key(&k, None).await.unwrap();
    }
    let mut other = bare_key("key_other", &project.id, "hash-other");
    other.principal = Some("acme:2".into());
    store.create_key(&other, None).await.unwrap();
    let mut outside = bare_key("key_outside", &elsewhere.id, "hash-outside");
    outside.principal = Some("acme:1".into());
    store.create_key(&outside, None).await.unwrap();

    let in_team = tollgate_store::PrincipalFilter { team_id: Some(team.id.clone()), ..Default::default() };
    let before = store.revision().await.unwrap();
    let (revoked, rev) = store.revoke_principal_keys("acme:1", &in_team, at(1_800_000_000_000)).await.unwrap();
    assert_eq!((revoked.len(), rev), (many, Some(before + 1)), "all of them, in one revision");
    let listed =
        |status: &str| KeyFilter { status: Some(status.into()), limit: KeyFilter::MAX_LIMIT, ..Default::default() };
    let mut still_active: Vec<String> = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_keys(&KeyFilter { after: after.clone(), ..listed("active") }).await.unwrap();
        still_active.extend(page.iter().map(|k| k.id.to_string()));
        match page.last() {
            Some(k) if page.len() as u64 == KeyFilter::MAX_LIMIT => after = Some(k.id.clone()),
            _ => break,
        }
    }
    still_active.sort();
    assert_eq!(still_active, ["key_other", "key_outside"], "another principal's key, and one outside the team");
    let revoked_key = store.get_key(&KeyId::new("key_p01204")).await.unwrap().unwrap();
    assert_eq!((revoked_key.status.as_str(), revoked_key.revoked_at), ("revoked", Some(at(1_800_000_000_000))));

    // Nothing left: nothing written.
    let (none, rev) = store.revoke_principal_keys("acme:1", &in_team, at(1_800_000_000_001)).await.unwrap();
    assert_eq!((none.len(), rev, store.revision().await.unwrap()), (0, None, before + 1));
    let f = tollgate_store::PrincipalFilter { limit: 10, ..Default::default() };
    let summary = store.list_principals(&f, at(1_800_000_000_002)).await.unwrap();
    let counts: Vec<(&str, u64, u64)> =
        summary.iter().map(|s| (s.principal.as_str(), s.keys_active, s.keys_revoked)).collect();
    assert_eq!(counts, [("acme:1", 1, many as u64), ("acme:2", 1, 0)]);
}

pub(crate) async fn keys_written_before_the_grace_list_keep_their_previous_secret(db: &TestDb) {
    use sea_orm::{ConnectionTrait, Database};
    let Some(url) = &db.url else {
        return; // an in-memory database does not outlive its connection
    };
    let store = &db.store;
    let (_, _, project) = tenancy(store, "g").await;
    let raw = Database::connect(url.as_str()).await.unwrap();
    // What a control plane predating the list writes: one previous secret, old columns.
    raw.execute_unprepared(&format!(
        "INSERT INTO virtual_keys (id, project_id, key_hash, key_hint, previous_key_hash, previous_valid_until, \
         status, models_allowed_json, metadata_json, created_at, updated_at) \
         VALUES ('key_old', '{}', 'cur', 'tg_…0000', 'prev', 5000, 'active', '[]', '{{}}', 1, 2)",
        project.id.as_str()
    ))
    .await
    .unwrap();
    let old = store.get_key(&KeyId::new("key_old")).await.unwrap().unwrap();
    assert_eq!(old.grace_secrets, [GraceSecretRecord { key_hash: "prev".to_owned(), valid_until: at(5000) }]);

    // Written back with a second rotation: both kept, the old columns hold the latest.
    let mut rotated = old.clone();
    rotated.key_hash = "newest".to_owned();
    rotated.grace_secrets.push(GraceSecretRecord { key_hash: "cur".to_owned(), valid_until: at(9000) });
    store.update_key(&rotated).await.unwrap();
    let row = raw
        .query_one_raw(sea_orm::Statement::from_string(
            raw.get_database_backend(),
            "SELECT previous_key_hash, previous_valid_until FROM virtual_keys WHERE id = 'key_old'",
        ))
        .await
        .unwrap()
        .unwrap();
    let legacy: (Option<String>, Option<i64>) =
        (row.try_get("", "previous_key_hash").unwrap(), row.try_get("", "previous_valid_until").unwrap());
    assert_eq!(legacy, (Some("cur".to_owned()), Some(9000)), "an older reader sees the latest rotation");
    raw.close().await.unwrap();
    assert_eq!(store.get_key(&rotated.id).await.unwrap().unwrap(), rotated, "no entry doubled by the merge");
}
