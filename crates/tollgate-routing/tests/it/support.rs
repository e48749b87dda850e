//! Fixtures: a one-model catalog with its health registry, policies from JSON, a seeded
//! rng, and a helper that drives a plan through a scripted list of outcomes.

use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::{Duration, Instant};
use tollgate_routing::{
    Catalog, Deployment, DeploymentOptions, Health, ModelRoute, Next, Outcome, Plan, RoutingPolicy,
};

/// A catalog with one model `m` served by the given deployments (`provider`, priority,
/// weight), and fresh health for it.
pub(crate) struct World {
    pub(crate) catalog: Catalog,
    pub(crate) health: Health,
}

impl World {
    pub(crate) fn new(deployments: &[(&str, u32, u32)]) -> Self {
        let with_provider: Vec<_> = deployments.iter().map(|&(p, priority, weight)| (p, priority, 0, weight)).collect();
        World::with_provider_priorities(&with_provider)
    }

    /// Like [`World::new`], each deployment as (`provider`, deployment priority, the
    /// provider's priority, weight).
    pub(crate) fn with_provider_priorities(deployments: &[(&str, u32, i32, u32)]) -> Self {
        let mut catalog = Catalog::new();
        let route = ModelRoute {
            name: "m".into(),
            deployments: deployments
                .iter()
                .map(|&(p, _, provider_priority, _)| Deployment::new(p, "x").with_provider_priority(provider_priority))
                .collect(),
            max_output_tokens: None,
            max_tokens_per_part: Default::default(),
        };
        let options =
            deployments.iter().map(|&(_, priority, _, weight)| DeploymentOptions { priority, weight }).collect();
        catalog.insert_with_options(route, options).unwrap();
        let health = Health::new(&catalog);
        World { catalog, health }
    }

    pub(crate) fn plan<'a>(&'a self, policy: &'a RoutingPolicy, start: Instant) -> Plan<'a> {
        Plan::for_resolved(policy, self.catalog.lookup("m").unwrap(), &self.health, start)
    }

    /// The provider name of deployment `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.catalog.get("m").unwrap().deployments[i].provider
    }
}

pub(crate) fn policy(json: &str) -> RoutingPolicy {
    serde_json::from_str(json).unwrap()
}

pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub(crate) fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

/// One step of a scripted request: what was tried, after how long, and with what timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) provider: String,
    pub(crate) after: Duration,
    pub(crate) timeout: Duration,
    pub(crate) probe: bool,
}

/// Drives one request: each try gets the next scripted outcome (the clock advancing by
/// the try's `after` plus `took`); a success is served. Returns the steps and how the
/// plan ended (`None` when it was served).
pub(crate) fn run(
    w: &World,
    policy: &RoutingPolicy,
    t0: Instant,
    took: Duration,
    outcomes: &[Outcome],
    seed: u64,
) -> (Vec<Step>, Option<tollgate_routing::GiveUp>) {
    let mut rng = rng(seed);
    let mut plan = w.plan(policy, t0);
    let mut now = t0;
    let mut steps = Vec::new();
    let mut next = plan.first(now, &mut rng);
    let mut script = outcomes.iter();
    loop {
        match next {
            Next::GiveUp(g) => return (steps, Some(g)),
            Next::Try(a) => {
                steps.push(Step {
                    provider: w.name(a.deployment).to_owned(),
                    after: a.after,
                    timeout: a.timeout,
                    probe: a.probe,
                });
                now += a.after + took;
                let outcome = *script.next().expect("the script ran out of outcomes");
                if outcome.is_success() {
                    plan.served(now);
                    return (steps, None);
                }
                next = plan.after_failure(outcome, now, &mut rng);
            }
        }
    }
}

/// The providers of a run's steps.
pub(crate) fn providers(steps: &[Step]) -> Vec<&str> {
    steps.iter().map(|s| s.provider.as_str()).collect()
}
