//! Every record type at once: field-for-field round trips, uniqueness conflicts,
//! missing parents, and lookups by id or name.

use super::*;

pub(crate) async fn every_record_round_trips_field_for_field(db: &TestDb) {
    let store = &db.store;

    let org = store.ensure_org("acme").await.unwrap();
    assert_eq!(org.name, "acme");
    assert!(org.id.as_str().starts_with("org_"), "{:?}", org.id);
    let (team, _) = store.create_team(&org.id, "payments").await.unwrap();
    assert_eq!((team.org_id.clone(), team.name.as_str()), (org.id.clone(), "payments"));
    assert!(team.id.as_str().starts_with("team_"));
    let (project, _) = store.create_project(&team.id, "checkout").await.unwrap();
    assert_eq!(project.org_id, org.id);
    assert_eq!(project.team_id, team.id);
    assert!(project.id.as_str().starts_with("proj_"));
    assert_eq!(store.ensure_org("acme").await.unwrap(), org);
    assert_eq!(store.find_team(team.id.as_str()).await.unwrap(), Some(team.clone()));
    assert_eq!(store.find_project(project.id.as_str()).await.unwrap(), Some(project.clone()));

    let prov = provider("prov_1", "openai");
    let mut prov2 = provider("prov_2", "mock");
    prov2.rpm = None;
    prov2.tpm = Some(5);
    prov2.extra = json!({});
    store.create_provider(&prov).await.unwrap();
    store.create_provider(&prov2).await.unwrap();
    assert_eq!(store.find_provider("prov_1").await.unwrap(), Some(prov.clone()));
    assert_eq!(store.list_providers().await.unwrap(), vec![prov2.clone(), prov.clone()], "ordered by name");

    let m = model("model_1", "gpt-4o");
    let mut unpriced = model("model_2", "local");
    unpriced.deployments.clear();
    unpriced.input_per_mtok = None;
    unpriced.output_per_mtok = None;
    unpriced.max_output_tokens = None;
    unpriced.max_image_tokens = None;
    unpriced.max_audio_tokens = Some(30_000);
    unpriced.max_file_tokens = None;
    unpriced.cached_input_per_mtok = Some(0);
    unpriced.cache_write_per_mtok = None;
    unpriced.price_source = None;
    store.create_model(&m).await.unwrap();
    store.create_model(&unpriced).await.unwrap();
    assert_eq!(store.find_model("model_1").await.unwrap(), Some(m.clone()));
    assert_eq!(store.find_model("local").await.unwrap(), Some(unpriced.clone()));
    assert_eq!(store.list_models().await.unwrap(), vec![m.clone(), unpriced.clone()], "ordered by name");

    store.create_alias(&alias("fast", "gpt-4o")).await.unwrap();
    assert_eq!(store.find_alias("fast").await.unwrap(), Some(alias("fast", "gpt-4o")));
    assert_eq!(store.find_alias("gpt-4o").await.unwrap(), None);
    let team_policy = policy("rpol_2", "team", Some(team.id.as_str()));
    let default_policy = RoutingPolicyRecord { policy: json!({}), ..policy("rpol_1", "default", None) };
    store.create_routing_policy(&team_policy).await.unwrap();
    store.create_routing_policy(&default_policy).await.unwrap();
    assert_eq!(store.get_routing_policy("rpol_2").await.unwrap(), Some(team_policy.clone()));
    assert_eq!(store.get_routing_policy("rpol_9").await.unwrap(), None);
    assert_eq!(store.list_routing_policies().await.unwrap(), vec![default_policy.clone(), team_policy.clone()]);

    let full = full_key("key_full", &project.id, "aa11");
    let bare = bare_key("key_bare", &project.id, "bb22");
    let key_budget = budget("bud_key", ScopeKind::VirtualKey, "key_full");
    let mut org_budget = budget("bud_org", ScopeKind::Organization, org.id.as_str());
    org_budget.window = Window::Total;
    org_budget.on_breach = OnBreach::Warn;
    org_budget.alert_thresholds = Vec::new();
    org_budget.limit_nanos = i64::MAX;
    let mut team_budget = budget("bud_team", ScopeKind::Team, team.id.as_str());
    team_budget.limit_nanos = 0;
    team_budget.limit_tokens = Some(i64::MAX);
    team_budget.epoch = 7;
    team_budget.temporary_increase = 250_000;
    team_budget.temporary_increase_until = Some(at(1_900_000_000_321));
    store.create_key(&full, Some(&key_budget)).await.unwrap();
    store.create_key(&bare, None).await.unwrap();
    store.create_budget(&org_budget).await.unwrap();
    store.create_budget(&team_budget).await.unwrap();
    assert_eq!(store.get_budget(&team_budget.id).await.unwrap(), Some(team_budget.clone()));
    assert_eq!(store.get_budget(&org_budget.id).await.unwrap(), Some(org_budget.clone()));
    assert_eq!(store.get_budget(&BudgetId::new("bud_nope")).await.unwrap(), None);
    assert_eq!(store.find_org(org.id.as_str()).await.unwrap(), Some(org.clone()));
    assert_eq!(store.find_org("acme").await.unwrap(), Some(org.clone()));
    assert_eq!(store.find_org("nope").await.unwrap(), None);
    assert_eq!(store.get_key(&full.id).await.unwrap(), Some(full.clone()));
    assert_eq!(store.get_key(&bare.id).await.unwrap(), Some(bare.clone()));
    assert_eq!(store.list_budgets_for(ScopeKind::VirtualKey, "key_full").await.unwrap(), vec![key_budget.clone()]);
    assert_eq!(
        store.list_budgets_for(ScopeKind::Organization, org.id.as_str()).await.unwrap(),
        vec![org_budget.clone()]
    );
    assert!(store.list_budgets_for(ScopeKind::Team, org.id.as_str()).await.unwrap().is_empty());

    let scopes = vec!["keys:write".to_owned(), "usage:read".to_owned()];
    let before = Timestamp::now();
    store
        .create_admin_token(&admin_token(
            "tok_1",
            "billing backend",
            "cafe01",
            &scopes,
            Some(&team.id),
            Some(&project.id),
        ))
        .await
        .unwrap();
    store.create_admin_token(&admin_token("tok_2", "root", "cafe02", &[], None, None)).await.unwrap();
    let tok = store.find_admin_token_by_hash("cafe01").await.unwrap().unwrap();
    assert_eq!(tok.id, TokenId::new("tok_1"));
    assert_eq!(tok.name, "billing backend");
    assert_eq!(tok.token_hash, "cafe01");
    assert_eq!(tok.scopes, scopes);
    assert_eq!(tok.team_id, Some(team.id.clone()));
    assert_eq!(tok.project_id, Some(project.id.clone()));
    assert!(tok.created_at >= before && tok.created_at <= Timestamp::now());
    assert_eq!(tok.revoked_at, None);
    let root = store.find_admin_token_by_hash("cafe02").await.unwrap().unwrap();
    assert_eq!((root.team_id, root.project_id, root.scopes), (None, None, vec![]));
    assert!(store.find_admin_token_by_hash("nope").await.unwrap().is_none());

    let mut ev = audit("ev_1", 1_700_000_000_777, "key");
    ev.seq = 12345; // ignored: the store assigns seq
    let seq = store.append_audit(&ev).await.unwrap();
    ev.seq = seq;
    assert_eq!(store.last_audit().await.unwrap(), Some(ev.clone()));

    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.revision, store.revision().await.unwrap());
    assert_eq!(snap.orgs, vec![org]);
    assert_eq!(snap.teams, vec![team]);
    assert_eq!(snap.projects, vec![project]);
    assert_eq!(snap.providers, vec![prov, prov2], "ordered by id");
    assert_eq!(snap.models, vec![m, unpriced]);
    assert_eq!(snap.keys, vec![bare, full], "ordered by id");
    assert_eq!(snap.budgets, vec![key_budget, org_budget, team_budget]);
    assert_eq!(snap.aliases, vec![alias("fast", "gpt-4o")]);
    assert_eq!(snap.routing_policies, vec![default_policy, team_policy], "ordered by id");
}

pub(crate) async fn unique_violations_are_conflicts(db: &TestDb) {
    let store = &db.store;
    let (org, team, project) = tenancy(store, "a").await;
    let other_org = store.ensure_org("other").await.unwrap();

    let msg = assert_conflict(store.create_team(&org.id, "team-a").await);
    assert!(msg.contains("team-a"), "{msg}");
    store.create_team(&other_org.id, "team-a").await.unwrap();
    assert_conflict(store.create_project(&team.id, "project-a").await);

    store.create_provider(&provider("prov_1", "openai")).await.unwrap();
    let msg = assert_conflict(store.create_provider(&provider("prov_2", "openai")).await);
    assert!(msg.contains("named \"openai\""), "{msg}");
    let msg = assert_conflict(store.create_provider(&provider("prov_1", "other")).await);
    assert!(msg.contains("prov_1"), "{msg}");

    store.create_model(&model("model_1", "gpt-4o")).await.unwrap();
    assert_conflict(store.create_model(&model("model_2", "gpt-4o")).await);
    assert_conflict(store.create_model(&model("model_1", "gpt-5")).await);

    store.create_key(&bare_key("key_1", &project.id, "hash1"), None).await.unwrap();
    let msg = assert_conflict(store.create_key(&bare_key("key_2", &project.id, "hash1"), None).await);
    assert!(msg.contains("key hash"), "{msg}");
    assert!(!msg.contains("hash1"), "conflict text must not echo the hash: {msg}");
    assert_conflict(store.create_key(&bare_key("key_1", &project.id, "hash2"), None).await);
    store.create_key(&bare_key("key_3", &project.id, "hash3"), None).await.unwrap();
    let mut stolen = bare_key("key_3", &project.id, "hash1");
    stolen.updated_at = at(1);
    assert_conflict(store.update_key(&stolen).await);
    assert_eq!(store.get_key(&KeyId::new("key_3")).await.unwrap().unwrap().key_hash, "hash3");

    store.create_budget(&budget("bud_1", ScopeKind::Team, team.id.as_str())).await.unwrap();
    assert_conflict(store.create_budget(&budget("bud_1", ScopeKind::Project, "x")).await);

    store.create_admin_token(&admin_token("tok_1", "a", "th1", &[], None, None)).await.unwrap();
    assert_conflict(store.create_admin_token(&admin_token("tok_2", "b", "th1", &[], None, None)).await);
    assert_conflict(store.create_admin_token(&admin_token("tok_1", "c", "th3", &[], None, None)).await);

    store.append_audit(&audit("ev_1", 1, "key")).await.unwrap();
    assert_conflict(store.append_audit(&audit("ev_1", 2, "key")).await);
}

pub(crate) async fn missing_parents_are_not_found(db: &TestDb) {
    let store = &db.store;
    let rev = store.revision().await.unwrap();
    assert_not_found(store.create_team(&OrgId::new("org_missing"), "t").await, "organization");
    assert_not_found(store.create_project(&TeamId::new("team_missing"), "p").await, "team");
    let k = bare_key("key_1", &ProjectId::new("proj_missing"), "h");
    assert_not_found(store.create_key(&k, None).await, "project");
    assert_not_found(
        store.create_admin_token(&admin_token("tok_1", "n", "h", &[], Some(&TeamId::new("team_missing")), None)).await,
        "team",
    );
    assert_not_found(
        store
            .create_admin_token(&admin_token("tok_1", "n", "h", &[], None, Some(&ProjectId::new("proj_missing"))))
            .await,
        "project",
    );
    assert_eq!(store.revision().await.unwrap(), rev);
    assert!(store.get_key(&k.id).await.unwrap().is_none());
}

pub(crate) async fn names_are_unique_per_parent_and_resolve_inside_one_team(db: &TestDb) {
    let store = &db.store;
    let (org, team_a, project_a) = tenancy(store, "a").await;
    let (team_b, _) = store.create_team(&org.id, "team-b").await.unwrap();
    // One name per team and per organization; the same name in another parent is fine.
    assert_conflict(store.create_project(&team_a.id, "project-a").await);
    assert_conflict(store.create_team(&org.id, "team-a").await);
    let (project_b, _) = store.create_project(&team_b.id, "project-a").await.unwrap();

    // Inside one team, a name finds that team's project only, and an id of another
    // team's project finds nothing.
    assert_eq!(store.find_project_in_team(&team_a.id, "project-a").await.unwrap(), Some(project_a.clone()));
    assert_eq!(store.find_project_in_team(&team_b.id, "project-a").await.unwrap(), Some(project_b.clone()));
    assert_eq!(store.find_project_in_team(&team_a.id, project_a.id.as_str()).await.unwrap(), Some(project_a));
    assert_eq!(store.find_project_in_team(&team_a.id, project_b.id.as_str()).await.unwrap(), None);
    assert_eq!(store.find_project_in_team(&team_a.id, "nope").await.unwrap(), None);
    assert_eq!(store.get_team(&team_b.id).await.unwrap(), Some(team_b));
    assert_eq!(store.get_team(&tollgate_core::TeamId::new("team-a")).await.unwrap(), None, "names are not ids");
}

pub(crate) async fn find_accepts_id_or_name_and_refuses_ambiguous_names(db: &TestDb) {
    let store = &db.store;
    let (org, team, project) = tenancy(store, "a").await;
    assert_eq!(store.find_team("team-a").await.unwrap(), Some(team.clone()));
    assert_eq!(store.find_team(team.id.as_str()).await.unwrap(), Some(team.clone()));
    assert_eq!(store.find_project("project-a").await.unwrap(), Some(project.clone()));
    assert!(store.find_team("nope").await.unwrap().is_none());
    assert!(store.find_project("nope").await.unwrap().is_none());

    // The same team name in a second org makes the bare name ambiguous; ids still work.
    let org_b = store.ensure_org("org-b").await.unwrap();
    assert_ne!(org_b.id, org.id);
    let (team_b, _) = store.create_team(&org_b.id, "team-a").await.unwrap();
    assert_conflict(store.find_team("team-a").await);
    assert_eq!(store.find_team(team_b.id.as_str()).await.unwrap(), Some(team_b.clone()));
    let (project_b, _) = store.create_project(&team_b.id, "project-a").await.unwrap();
    assert_eq!(project_b.org_id, org_b.id);
    assert_conflict(store.find_project("project-a").await);
    assert_eq!(store.find_project(project_b.id.as_str()).await.unwrap(), Some(project_b));

    store.create_provider(&provider("prov_1", "openai")).await.unwrap();
    assert_eq!(store.find_provider("openai").await.unwrap().unwrap().id, ProviderId::new("prov_1"));
    assert!(store.find_provider("anthropic").await.unwrap().is_none());
    store.create_model(&model("model_1", "gpt-4o")).await.unwrap();
    assert_eq!(store.find_model("gpt-4o").await.unwrap().unwrap().id, ModelId::new("model_1"));
    assert!(store.find_model("gpt-5").await.unwrap().is_none());
}
