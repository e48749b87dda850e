//! Routing policies.

use super::*;

pub(crate) async fn routing_policies_are_one_per_scope_and_update_only_the_policy(db: &TestDb) {
    let store = &db.store;
    store.create_routing_policy(&policy("rpol_1", "default", None)).await.unwrap();
    store.create_routing_policy(&policy("rpol_2", "team", Some("team_1"))).await.unwrap();
    store.create_routing_policy(&policy("rpol_3", "project", Some("team_1"))).await.unwrap();
    let rev = store.revision().await.unwrap();

    let second_default = assert_conflict(store.create_routing_policy(&policy("rpol_4", "default", None)).await);
    assert!(second_default.contains("already has a routing policy"), "{second_default}");
    let same_team = assert_conflict(store.create_routing_policy(&policy("rpol_5", "team", Some("team_1"))).await);
    assert!(same_team.contains("team team_1"), "{same_team}");
    assert_conflict(store.create_routing_policy(&policy("rpol_1", "team", Some("team_2"))).await);
    assert_eq!(store.revision().await.unwrap(), rev, "failed writes do not bump");

    let mut changed = policy("rpol_2", "organization", Some("org_9"));
    changed.policy = json!({"max_attempts": 1});
    changed.created_at = at(5);
    changed.updated_at = at(1_800_000_000_000);
    let (stored, r) = store.update_routing_policy(&changed).await.unwrap();
    assert_eq!(r, rev + 1);
    let want = RoutingPolicyRecord {
        scope: "team".to_owned(),
        scope_id: Some("team_1".to_owned()),
        created_at: at(1_700_000_000_060),
        ..changed.clone()
    };
    assert_eq!(stored, want, "scope and created_at are never written");
    assert_eq!(store.get_routing_policy("rpol_2").await.unwrap(), Some(want));
    assert_not_found(store.update_routing_policy(&policy("rpol_9", "default", None)).await, "routing policy");

    store.delete_routing_policy("rpol_1").await.unwrap();
    assert_not_found(store.delete_routing_policy("rpol_1").await, "routing policy");
    store.create_routing_policy(&policy("rpol_6", "default", None)).await.unwrap();
    let ids: Vec<String> = store.snapshot().await.unwrap().routing_policies.into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["rpol_2", "rpol_3", "rpol_6"]);
}
