//! `Snapshot::build` and the routing configuration: deployment options, aliases and
//! routing policies from the wire. Kept apart from `snapshot.rs` so that file's own
//! tests can change without touching these.

use super::Snapshot;
use tollgate_core::TeamId;
use tollgate_proto::v1;
use tollgate_providers::{ClientConfig, HttpClient};
use tollgate_routing::{DeploymentOptions, PolicyScope};

fn wire() -> v1::Snapshot {
    let deployment =
        |priority, weight| v1::Deployment { provider: "up".into(), model: "m".into(), priority, weight, pricing: None };
    let policy = |id: &str, scope: &str, scope_id: Option<&str>, json: &str| v1::RoutingPolicy {
        id: id.into(),
        scope: scope.into(),
        scope_id: scope_id.map(Into::into),
        policy_json: json.into(),
    };
    let alias = |name: &str, target: &str| v1::ModelAlias { name: name.into(), target_model: target.into() };
    v1::Snapshot {
        revision: 7,
        key_pepper: vec![0; 32],
        models: vec![v1::Model {
            id: "model_1".into(),
            name: "gpt-4o".into(),
            deployments: vec![deployment(0, Some(70)), deployment(1, None)],
            ..Default::default()
        }],
        aliases: vec![alias("fast", "gpt-4o"), alias("ghost", "nope"), alias("gpt-4o", "gpt-4o")],
        routing_policies: vec![
            policy("rpol_1", "default", None, r#"{"max_attempts": 1}"#),
            policy("rpol_2", "team", Some("team_1"), r#"{"strategy": "weighted"}"#),
            policy("rpol_3", "team", Some("team_2"), r#"{"max_attempts": 99}"#),
        ],
        ..Default::default()
    }
}

#[test]
fn models_keep_their_options_and_bad_aliases_and_policies_are_skipped_alone() {
    let client = HttpClient::new(ClientConfig::default()).unwrap();
    let (snap, problems): (Snapshot, _) = Snapshot::build(&wire(), &client, &Snapshot::empty());
    let resolved = snap.catalog.lookup("fast").unwrap();
    assert_eq!(&*resolved.route.name, "gpt-4o");
    assert_eq!(
        &**resolved.options,
        [DeploymentOptions { priority: 0, weight: 70 }, DeploymentOptions { priority: 1, weight: 1 }]
    );
    assert!(snap.catalog.lookup("ghost").is_none());
    let scopes: Vec<_> = snap.wire_policies.iter().map(|(s, p)| (s.clone(), p.max_attempts())).collect();
    assert_eq!(scopes, [(None, 1), (Some(PolicyScope::Team(TeamId::new("team_1"))), 3)]);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.id == "ghost"), "{problems:?}");
    assert!(problems.iter().any(|p| p.id == "rpol_3" && p.reason.contains("max_attempts")), "{problems:?}");
}

#[test]
fn each_deployment_carries_its_providers_priority_and_a_plan_honours_it() {
    let provider = |id: &str, name: &str, priority| v1::Provider {
        id: id.into(),
        name: name.into(),
        kind: "openai-compatible".into(),
        base_url: "http://127.0.0.1:9/v1".into(),
        api_key: "sk-test".into(),
        priority,
        ..v1::Provider::default()
    };
    let deployment =
        |p: &str| v1::Deployment { provider: p.into(), model: "m".into(), priority: 0, weight: None, pricing: None };
    let wire = v1::Snapshot {
        revision: 1,
        key_pepper: vec![0; 32],
        providers: vec![provider("prv_a", "a", 5), provider("prv_b", "b", 1)],
        models: vec![v1::Model {
            id: "model_1".into(),
            name: "gpt-4o".into(),
            // Catalog order puts a first; its provider's priority (5) puts it after b (1).
            deployments: vec![deployment("a"), deployment("b"), deployment("ghost")],
            ..Default::default()
        }],
        ..Default::default()
    };
    let client = HttpClient::new(ClientConfig::default()).unwrap();
    let (snap, problems): (Snapshot, _) = Snapshot::build(&wire, &client, &Snapshot::empty());
    assert!(problems.is_empty(), "{problems:?}");
    let resolved = snap.catalog.lookup("gpt-4o").unwrap();
    let got: Vec<(&str, i32)> =
        resolved.route.deployments.iter().map(|d| (&*d.provider, d.provider_priority)).collect();
    assert_eq!(got, [("a", 5), ("b", 1), ("ghost", 0)], "a missing provider leaves the default");
    let policy = tollgate_routing::RoutingPolicy::default();
    let mut plan = tollgate_routing::Plan::for_resolved(&policy, resolved, &snap.health, std::time::Instant::now());
    plan.exclude(2);
    let mut rng = rand::rng();
    match plan.first(std::time::Instant::now(), &mut rng) {
        tollgate_routing::Next::Try(a) => assert_eq!(&*resolved.route.deployments[a.deployment].provider, "b"),
        other => panic!("expected a try, got {other:?}"),
    }
}
