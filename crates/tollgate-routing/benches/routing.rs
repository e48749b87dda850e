//! Benchmarks of routing on the hot path: resolve the name (through an alias), resolve the
//! policy (key > project > team > org), plan the request over three weighted deployments
//! with their breakers checked, and report the success — everything a request does in
//! this crate. Also the failure path (one fallback) and the breaker alone.
//!
//! `cargo bench -p tollgate-routing --bench routing -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, reason = "benchmark setup failures should abort the run")]

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tollgate_core::{KeyId, OrgId, ProjectId, TeamId};
use tollgate_routing::{
    Catalog, Deployment, DeploymentOptions, Health, ModelRoute, Next, Outcome, Plan, PolicyScope, PolicySet,
    PolicySubject, RawRoutingPolicy, RoutingPolicy,
};

fn setup() -> (Catalog, Health, PolicySet) {
    let mut catalog = Catalog::new();
    // A realistic catalog: many models, the benchmarked one behind an alias.
    for i in 0..200 {
        let route = ModelRoute {
            name: format!("model-{i}").into(),
            deployments: vec![Deployment::new(format!("p{i}"), "m")],
            max_output_tokens: None,
            max_tokens_per_part: Default::default(),
        };
        catalog.insert(route).unwrap();
    }
    let route = ModelRoute {
        name: "gpt-4o-mini".into(),
        deployments: ["openai", "azure-eu", "azure-us"].iter().map(|p| Deployment::new(*p, "gpt-4o-mini")).collect(),
        max_output_tokens: None,
        max_tokens_per_part: Default::default(),
    };
    let weights = [70, 20, 10].map(|weight| DeploymentOptions { priority: 0, weight });
    catalog.insert_with_options(route, weights.to_vec()).unwrap();
    catalog.insert_alias("fast", "gpt-4o-mini").unwrap();
    let health = Health::new(&catalog);
    let weighted =
        RoutingPolicy::try_from(RawRoutingPolicy { strategy: Some("weighted".into()), ..Default::default() }).unwrap();
    let mut policies = PolicySet::new();
    for i in 0..1000 {
        policies.insert(PolicyScope::Key(KeyId::new(format!("key_{i}"))), RoutingPolicy::default());
        policies.insert(PolicyScope::Team(TeamId::new(format!("team_{i}"))), RoutingPolicy::default());
    }
    policies.insert(PolicyScope::Organization(OrgId::new("org_acme")), weighted);
    (catalog, health, policies)
}

fn plan(c: &mut Criterion) {
    let (catalog, health, policies) = setup();
    let (key, project, team, org) =
        (KeyId::new("key_caller"), ProjectId::new("proj_x"), TeamId::new("team_x"), OrgId::new("org_acme"));
    let subject = PolicySubject { key: &key, project: &project, team: &team, org: &org };
    let mut rng = SmallRng::seed_from_u64(1);
    let now = Instant::now();
    let mut g = c.benchmark_group("routing");
    g.bench_function("resolve+policy+plan+served/weighted-3", |b| {
        b.iter(|| {
            let resolved = catalog.lookup(black_box("fast")).unwrap();
            let policy = policies.resolve(black_box(subject));
            let mut plan = Plan::for_resolved(policy, resolved, &health, now);
            let Next::Try(a) = plan.first(now, &mut rng) else { unreachable!() };
            plan.served(now);
            black_box(a)
        })
    });
    // The failure path: the first pick fails with a 503 and the plan falls back. The
    // breaker never opens (failures_to_open 0) so every iteration does the same work.
    let no_breaker = RoutingPolicy::try_from(RawRoutingPolicy {
        strategy: Some("weighted".into()),
        cooldown: Some(tollgate_routing::RawCooldown { failures_to_open: Some(0), ..Default::default() }),
        ..Default::default()
    })
    .unwrap();
    g.bench_function("plan+fallback+served/weighted-3", |b| {
        b.iter(|| {
            let resolved = catalog.lookup(black_box("fast")).unwrap();
            let mut plan = Plan::for_resolved(&no_breaker, resolved, &health, now);
            plan.first(now, &mut rng);
            let next = plan.after_failure(Outcome::Status(503, None), now, &mut rng);
            plan.served(now);
            black_box(next)
        })
    });
    let breaker = health.get("openai", "gpt-4o-mini").unwrap();
    g.bench_function("breaker-admit/closed", |b| b.iter(|| black_box(breaker.admit(now, Duration::from_secs(1)))));
    g.finish();
}

criterion_group!(benches, plan);
criterion_main!(benches);
