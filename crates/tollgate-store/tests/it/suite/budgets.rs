//! Budgets: listings, updates, resets and deletes, and rows written before the upgrade.

use super::*;

fn budget_ids(budgets: &[BudgetRecord]) -> Vec<&str> {
    budgets.iter().map(|b| b.id.as_str()).collect()
}

pub(crate) async fn list_budgets_filters_by_scope_and_paginates_by_id(db: &TestDb) {
    let store = &db.store;
    // Inserted out of id order on purpose; ids differ in case to check bytewise order.
    let fixture = [
        ("bud_5", ScopeKind::Team, "team_a"),
        ("bud_1", ScopeKind::Project, "proj_a"),
        ("bud_B", ScopeKind::Team, "team_b"),
        ("bud_3", ScopeKind::Principal, "acme:user-1"),
        ("bud_a", ScopeKind::Team, "team_a"),
        ("bud_2", ScopeKind::Project, "team_a"),
    ];
    for (id, scope, scope_id) in fixture {
        store.create_budget(&budget(id, scope, scope_id)).await.unwrap();
    }
    let list = |f: BudgetFilter| async move { store.list_budgets(&f).await.unwrap() };

    let all = list(BudgetFilter::default()).await;
    assert_eq!(budget_ids(&all), ["bud_1", "bud_2", "bud_3", "bud_5", "bud_B", "bud_a"]);
    assert_eq!(all[0], budget("bud_1", ScopeKind::Project, "proj_a"), "rows come back whole");

    let teams = list(BudgetFilter { scope: Some(ScopeKind::Team), ..BudgetFilter::default() }).await;
    assert_eq!(budget_ids(&teams), ["bud_5", "bud_B", "bud_a"]);
    let team_a =
        list(BudgetFilter { scope: Some(ScopeKind::Team), scope_id: Some("team_a".into()), ..BudgetFilter::default() })
            .await;
    assert_eq!(budget_ids(&team_a), ["bud_5", "bud_a"]);
    // scope_id alone matches across scope kinds.
    let any_team_a = list(BudgetFilter { scope_id: Some("team_a".into()), ..BudgetFilter::default() }).await;
    assert_eq!(budget_ids(&any_team_a), ["bud_2", "bud_5", "bud_a"]);
    assert!(list(BudgetFilter { scope: Some(ScopeKind::VirtualKey), ..BudgetFilter::default() }).await.is_empty());

    let mut pages = Vec::new();
    let mut f = BudgetFilter { limit: 4, ..BudgetFilter::default() };
    loop {
        let page = store.list_budgets(&f).await.unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        f.after = Some(last.id.clone());
        pages.push(budget_ids(&page).into_iter().map(str::to_owned).collect::<Vec<_>>());
    }
    assert_eq!(pages, [vec!["bud_1", "bud_2", "bud_3", "bud_5"], vec!["bud_B", "bud_a"]]);
    let f = BudgetFilter { scope: Some(ScopeKind::Team), limit: 1, after: Some(BudgetId::new("bud_5")), ..f };
    assert_eq!(budget_ids(&list(f).await), ["bud_B"]);
    let f = BudgetFilter { after: Some(BudgetId::new("bud_20")), ..BudgetFilter::default() };
    assert_eq!(budget_ids(&list(f).await), ["bud_3", "bud_5", "bud_B", "bud_a"]);
    assert!(list(BudgetFilter { limit: 0, ..BudgetFilter::default() }).await.is_empty());
    assert_eq!(list(BudgetFilter { limit: u64::MAX, ..BudgetFilter::default() }).await.len(), 6);
    assert_eq!(BudgetFilter::default().limit, BudgetFilter::DEFAULT_LIMIT);
}

pub(crate) async fn update_budget_replaces_mutable_columns_only(db: &TestDb) {
    let store = &db.store;
    let original = budget("bud_1", ScopeKind::Project, "proj_1");
    store.create_budget(&original).await.unwrap();
    store.reset_budget(&original.id, at(1_700_000_000_100)).await.unwrap();
    let rev = store.revision().await.unwrap();

    // A money budget becomes a clamping token budget with an increase; the scope,
    // creation time, epoch and last reset in the input are ignored.
    let changed = BudgetRecord {
        scope: ScopeKind::Team,
        scope_id: "team_other".into(),
        limit_nanos: 0,
        limit_tokens: Some(1_000_000),
        window: Window::Day,
        on_breach: OnBreach::Clamp,
        clamp_floor_tokens: Some(64),
        alert_thresholds: vec![900],
        epoch: 99,
        last_reset_at: Some(at(5)),
        temporary_increase: 50_000,
        temporary_increase_until: Some(at(1_800_000_000_000)),
        created_at: at(1),
        updated_at: at(1_700_000_000_500),
        ..original.clone()
    };
    let (stored, r) = store.update_budget(&changed).await.unwrap();
    assert_eq!(r, rev + 1);
    let want = BudgetRecord {
        scope: original.scope,
        scope_id: original.scope_id.clone(),
        epoch: 1,
        last_reset_at: Some(at(1_700_000_000_100)),
        created_at: original.created_at,
        ..changed.clone()
    };
    assert_eq!(stored, want, "returned as stored");
    assert_eq!(store.get_budget(&original.id).await.unwrap(), Some(want.clone()));

    // And back: NULLs and zeros are written, not skipped.
    let back = BudgetRecord { epoch: 0, updated_at: at(1_700_000_000_600), ..original.clone() };
    let (stored, _) = store.update_budget(&back).await.unwrap();
    assert_eq!(stored, BudgetRecord { epoch: 1, last_reset_at: Some(at(1_700_000_000_100)), ..back });
    assert_eq!(stored.limit_tokens, None);
    assert_eq!(stored.temporary_increase_until, None);

    let rev = store.revision().await.unwrap();
    assert_not_found(store.update_budget(&budget("bud_ghost", ScopeKind::Team, "t")).await, "budget");
    assert_eq!(store.revision().await.unwrap(), rev, "a failed update does not bump");
    assert!(store.get_budget(&BudgetId::new("bud_ghost")).await.unwrap().is_none());
}

pub(crate) async fn reset_budget_bumps_the_epoch_every_time_even_when_racing(db: &TestDb) {
    let store = db.store.clone();
    let b = budget("bud_1", ScopeKind::VirtualKey, "key_1");
    store.create_budget(&b).await.unwrap();
    let rev = store.revision().await.unwrap();

    let (first, r1) = store.reset_budget(&b.id, at(1_700_000_001_000)).await.unwrap();
    assert_eq!((first.epoch, r1), (1, rev + 1));
    assert_eq!(first.updated_at, at(1_700_000_001_000));
    assert_eq!(first.last_reset_at, Some(at(1_700_000_001_000)), "the reset instant is kept");
    assert_eq!(
        BudgetRecord { epoch: 0, updated_at: b.updated_at, last_reset_at: None, ..first.clone() },
        b,
        "nothing else changes"
    );
    let (second, r2) = store.reset_budget(&b.id, at(1_700_000_002_000)).await.unwrap();
    assert_eq!((second.epoch, r2), (2, rev + 2), "an identical second reset bumps again");
    assert_eq!(second.last_reset_at, Some(at(1_700_000_002_000)), "each reset moves it");
    assert_eq!(store.get_budget(&b.id).await.unwrap().unwrap().last_reset_at, Some(at(1_700_000_002_000)));

    // Concurrent resets are never lost: each one bumps the epoch once.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let id = b.id.clone();
            tokio::spawn(async move { store.reset_budget(&id, Timestamp::now()).await.unwrap() })
        })
        .collect();
    let mut epochs = Vec::new();
    for t in tasks {
        epochs.push(t.await.unwrap().0.epoch);
    }
    epochs.sort_unstable();
    assert_eq!(epochs, (3..=10).collect::<Vec<_>>());
    assert_eq!(store.get_budget(&b.id).await.unwrap().unwrap().epoch, 10);
    assert_eq!(store.snapshot().await.unwrap().budgets[0].epoch, 10);

    // An update written from a stale read does not undo a reset.
    let stale = BudgetRecord { epoch: 0, limit_nanos: 7, ..b.clone() };
    let (after_stale, _) = store.update_budget(&stale).await.unwrap();
    assert_eq!(after_stale.epoch, 10);
    assert!(after_stale.last_reset_at.is_some(), "nor clears the last reset");

    let rev = store.revision().await.unwrap();
    assert_not_found(store.reset_budget(&BudgetId::new("bud_ghost"), at(1)).await, "budget");
    assert_eq!(store.revision().await.unwrap(), rev);
}

pub(crate) async fn delete_budget_removes_it_once(db: &TestDb) {
    let store = &db.store;
    let keep = budget("bud_keep", ScopeKind::Project, "p");
    let gone = budget("bud_gone", ScopeKind::Project, "p");
    store.create_budget(&keep).await.unwrap();
    store.create_budget(&gone).await.unwrap();
    let rev = store.revision().await.unwrap();

    assert_eq!(store.delete_budget(&gone.id).await.unwrap(), rev + 1);
    assert!(store.get_budget(&gone.id).await.unwrap().is_none());
    assert_eq!(store.list_budgets_for(ScopeKind::Project, "p").await.unwrap(), vec![keep.clone()]);
    let snap = store.snapshot().await.unwrap();
    assert_eq!((snap.revision, snap.budgets), (rev + 1, vec![keep]));

    assert_not_found(store.delete_budget(&gone.id).await, "budget");
    assert_not_found(store.reset_budget(&gone.id, at(1)).await, "budget");
    assert_not_found(store.update_budget(&gone).await, "budget");
    assert_eq!(store.revision().await.unwrap(), rev + 1, "failed writes do not bump");
    // The id may be used again.
    store.create_budget(&gone).await.unwrap();
}

pub(crate) async fn budgets_written_before_the_upgrade_read_as_money_budgets_at_epoch_zero(db: &TestDb) {
    use sea_orm::{ConnectionTrait, Database};
    use tollgate_migrations::{Migrator, MigratorTrait};
    let Some(url) = &db.url else {
        return; // an in-memory database does not outlive its connection
    };
    // Roll the schema back to m0001 (undoing every later migration, m0002 last) and write a
    // budget row the way the old code did.
    let raw = Database::connect(url.as_str()).await.unwrap();
    let later = Migrator::migrations().len() as u32 - 1;
    Migrator::down(&raw, Some(later)).await.unwrap();
    raw.execute_unprepared(
        "INSERT INTO budgets (id, scope, scope_id, limit_nanos, \"window\", on_breach, alert_thresholds_json, \
         created_at, updated_at) VALUES ('bud_old', 'team', 'team_1', 5000000000, 'day', 'warn', '[800]', 10, 20)",
    )
    .await
    .unwrap();
    raw.close().await.unwrap();

    let store = Store::connect(url).await.unwrap();
    let old = store.get_budget(&BudgetId::new("bud_old")).await.unwrap().unwrap();
    let want = BudgetRecord {
        limit_nanos: 5_000_000_000,
        window: Window::Day,
        on_breach: OnBreach::Warn,
        alert_thresholds: vec![800],
        created_at: at(10),
        updated_at: at(20),
        ..budget("bud_old", ScopeKind::Team, "team_1")
    };
    assert_eq!(old, want);
    assert_eq!(old.clamp_floor_tokens, None, "an old budget has no clamp floor");
    let (reset, _) = store.reset_budget(&old.id, at(30)).await.unwrap();
    assert_eq!((reset.epoch, reset.last_reset_at), (1, Some(at(30))), "the new columns are writable");
}
