//! Applying changes: property-style equivalence with full builds over random histories,
//! refusal of changes that do not start from the current revision, and items that fail
//! to convert skipped on their own.

use crate::snapshot::Snapshot;
use crate::{ChangeError, Config, DataPlane, Update};
use std::collections::BTreeMap;
use tollgate_budgets::Budget;
use tollgate_core::KeyId;
use tollgate_keys::{AuthError, KeyHasher, Pepper, VirtualKey, mint_secret};
use tollgate_proto::{diff, v1};
use tollgate_providers::{ClientConfig, HttpClient};

const PEPPER: [u8; 32] = [5; 32];

/// xorshift64*: deterministic, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random configuration and the secrets of its keys, mutated step by step the way a
/// control plane's writes would change it.
struct World {
    rng: Rng,
    wire: v1::Snapshot,
    hasher: KeyHasher,
    /// Every secret ever minted, current or rotated out.
    secrets: Vec<String>,
    next_id: usize,
}

impl World {
    fn new(seed: u64, keys: usize) -> World {
        let mut w = World {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            wire: v1::Snapshot { revision: 1, key_pepper: PEPPER.to_vec(), ..Default::default() },
            hasher: KeyHasher::new(&Pepper::new(PEPPER)),
            secrets: Vec::new(),
            next_id: 0,
        };
        for i in 0..3 {
            let p = w.provider(i);
            w.wire.providers.push(p);
        }
        for i in 0..4 {
            let m = w.model(i);
            w.wire.models.push(m);
        }
        for _ in 0..keys {
            let k = w.key();
            w.wire.keys.push(k);
        }
        for _ in 0..keys / 2 {
            let b = w.budget();
            w.wire.budgets.push(b);
        }
        for i in 0..3 {
            let a = w.alias(i);
            w.wire.aliases.push(a);
        }
        for i in 0..2 {
            let p = w.policy(i);
            w.wire.routing_policies.push(p);
        }
        w
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:04}", self.next_id)
    }

    fn provider(&mut self, i: usize) -> v1::Provider {
        v1::Provider {
            id: format!("prov_{i}"),
            name: format!("up{i}"),
            // Now and then one that cannot be built.
            kind: if self.rng.chance(10) { "nope".into() } else { "openai-compatible".into() },
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: format!("sk-{}", self.rng.below(3)),
            ..Default::default()
        }
    }

    fn model(&mut self, i: usize) -> v1::Model {
        let provider = format!("up{}", self.rng.below(3));
        let priced = self.rng.chance(70);
        v1::Model {
            id: format!("mdl_{i}"),
            name: format!("m{i}"),
            deployments: if self.rng.chance(10) {
                Vec::new() // invalid: no deployments
            } else {
                vec![v1::Deployment { provider, model: "x".into(), weight: Some(1), ..Default::default() }]
            },
            pricing: priced.then(|| v1::Pricing {
                input_per_mtok_nanos: self.rng.below(5_000) as i64,
                output_per_mtok_nanos: 7,
                ..Default::default()
            }),
            max_output_tokens: None,
            ..Default::default()
        }
    }

    fn alias(&mut self, i: usize) -> v1::ModelAlias {
        // m4 does not exist: an alias that fails on its own.
        v1::ModelAlias { name: format!("a{i}"), target_model: format!("m{}", self.rng.below(5)) }
    }

    fn policy(&mut self, i: usize) -> v1::RoutingPolicy {
        let attempts = if self.rng.chance(15) { 99 } else { 1 + self.rng.below(3) };
        v1::RoutingPolicy {
            id: format!("rpol_{i}"),
            scope: "team".into(),
            scope_id: Some(format!("team_{}", self.rng.below(3))),
            policy_json: format!(r#"{{"max_attempts": {attempts}}}"#),
        }
    }

    fn secret_hash(&mut self) -> Vec<u8> {
        let secret = mint_secret();
        let hash = self.hasher.hash(secret.expose()).0.to_vec();
        self.secrets.push(secret.expose().to_owned());
        hash
    }

    fn key(&mut self) -> v1::Key {
        let id = self.id("key");
        let key_hash = self.secret_hash();
        v1::Key {
            id,
            org_id: "org_1".into(),
            team_id: format!("team_{}", self.rng.below(3)),
            project_id: format!("prj_{}", self.rng.below(4)),
            principal: self.rng.chance(50).then(|| format!("p{}", self.rng.below(3))),
            status: "active".into(),
            models_allowed: vec!["m*".into()],
            key_hash,
            hint: "tg_…0000".into(),
            ..Default::default()
        }
    }

    fn budget(&mut self) -> v1::Budget {
        let (scope, scope_id) = match self.rng.below(5) {
            0 if !self.wire.keys.is_empty() => {
                let k = self.rng.below(self.wire.keys.len() as u64) as usize;
                ("virtual_key", self.wire.keys[k].id.clone())
            }
            1 => ("principal", format!("p{}", self.rng.below(3))),
            2 => ("project", format!("prj_{}", self.rng.below(4))),
            3 => ("team", format!("team_{}", self.rng.below(3))),
            _ => ("organization", "org_1".to_owned()),
        };
        v1::Budget {
            id: self.id("bud"),
            scope: scope.into(),
            scope_id,
            limit_nanos: 1 + self.rng.below(1_000_000) as i64,
            // Now and then one that does not convert.
            window: if self.rng.chance(8) { "fortnight".into() } else { "day".into() },
            on_breach: "block".into(),
            epoch: self.rng.below(3) as u32,
            ..Default::default()
        }
    }

    fn pick(&mut self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.rng.below(len as u64) as usize)
    }

    /// One revision's worth of writes: mostly keys and budgets, sometimes the rest.
    fn step(&mut self) {
        for _ in 0..1 + self.rng.below(4) {
            match self.rng.below(20) {
                0..=3 => {
                    let k = self.key();
                    self.wire.keys.push(k);
                }
                4..=5 => {
                    if let Some(i) = self.pick(self.wire.keys.len()) {
                        self.wire.keys[i].status = "revoked".into();
                    }
                }
                6 => {
                    if let Some(i) = self.pick(self.wire.keys.len()) {
                        // Rotation with a grace period: the old secret keeps working.
                        let new = self.secret_hash();
                        let k = &mut self.wire.keys[i];
                        k.previous_key_hash = Some(std::mem::replace(&mut k.key_hash, new));
                        k.previous_valid_until_ms = Some(i64::MAX / 2);
                    }
                }
                7 => {
                    if let Some(i) = self.pick(self.wire.keys.len()) {
                        let p = self.rng.below(4);
                        let k = &mut self.wire.keys[i];
                        k.project_id = format!("prj_{p}");
                        k.principal = p.is_multiple_of(2).then(|| format!("p{p}"));
                    }
                }
                8 => {
                    if let Some(i) = self.pick(self.wire.keys.len()) {
                        self.wire.keys.remove(i);
                    }
                }
                9 => {
                    if let Some(i) = self.pick(self.wire.keys.len()) {
                        // A key the gateway cannot take, or one that was and is fixed.
                        let bad = self.wire.keys[i].status != "bogus";
                        self.wire.keys[i].status = if bad { "bogus" } else { "active" }.into();
                    }
                }
                10..=11 => {
                    let b = self.budget();
                    self.wire.budgets.push(b);
                }
                12 => {
                    if let Some(i) = self.pick(self.wire.budgets.len()) {
                        let b = &mut self.wire.budgets[i];
                        b.epoch += 1;
                        b.limit_nanos += 1;
                    }
                }
                13 => {
                    if let Some(i) = self.pick(self.wire.budgets.len()) {
                        self.wire.budgets.remove(i);
                    }
                }
                14 => {
                    if let Some(i) = self.pick(self.wire.budgets.len()) {
                        // Moves to another scope: the keys of both scopes change.
                        let fresh = self.budget();
                        let b = &mut self.wire.budgets[i];
                        (b.scope, b.scope_id, b.window) = (fresh.scope, fresh.scope_id, fresh.window);
                    }
                }
                15 => {
                    let i = self.rng.below(3) as usize;
                    self.wire.providers[i] = self.provider(i);
                }
                16 => {
                    let i = self.rng.below(5) as usize;
                    let m = self.model(i);
                    match self.wire.models.iter().position(|x| x.id == m.id) {
                        Some(at) if self.rng.chance(30) => drop(self.wire.models.remove(at)),
                        Some(at) => self.wire.models[at] = m,
                        None => self.wire.models.push(m),
                    }
                }
                17 => {
                    let i = self.rng.below(4) as usize;
                    let a = self.alias(i);
                    match self.wire.aliases.iter().position(|x| x.name == a.name) {
                        Some(at) if self.rng.chance(30) => drop(self.wire.aliases.remove(at)),
                        Some(at) => self.wire.aliases[at] = a,
                        None => self.wire.aliases.push(a),
                    }
                }
                _ => {
                    let i = self.rng.below(3) as usize;
                    let p = self.policy(i);
                    match self.wire.routing_policies.iter().position(|x| x.id == p.id) {
                        Some(at) if self.rng.chance(30) => drop(self.wire.routing_policies.remove(at)),
                        Some(at) => self.wire.routing_policies[at] = p,
                        None => self.wire.routing_policies.push(p),
                    }
                }
            }
        }
        self.wire.revision += 1 + self.rng.below(2) as i64;
    }
}

/// What requests see of a snapshot, for every key and secret the world ever had.
#[derive(Debug, PartialEq)]
struct Observed {
    revision: i64,
    keys: Vec<(String, Option<VirtualKey>, Vec<Budget>)>,
    auth: Vec<Result<KeyId, AuthError>>,
    budget_count: usize,
    models: Vec<String>,
    prices: Vec<String>,
    providers: Vec<(String, String, String)>,
    policies: String,
}

fn observe(s: &Snapshot, key_ids: &[String], secrets: &[String]) -> Observed {
    let now = tollgate_core::Timestamp::from_unix_millis(1_000_000);
    let names: Vec<String> = (0..5).map(|i| format!("m{i}")).chain((0..4).map(|i| format!("a{i}"))).collect();
    let mut providers: Vec<_> = s
        .providers
        .values()
        .map(|e| (e.config.name.to_string(), e.source.id.clone(), e.source.api_key.clone()))
        .collect();
    providers.sort();
    Observed {
        revision: s.revision,
        keys: key_ids
            .iter()
            .map(|id| {
                let kid = KeyId::new(id.as_str());
                let budgets = s.budgets_for(&kid).iter().map(|b| (**b).clone()).collect();
                (id.clone(), s.keys.get(&kid).map(|k| (**k).clone()), budgets)
            })
            .collect(),
        auth: secrets.iter().map(|x| s.keys.authenticate(&s.hasher, x, now).map(|k| k.id.clone())).collect(),
        budget_count: s.budget_count(),
        models: names.iter().map(|n| format!("{:?}", s.catalog.lookup(n))).collect(),
        prices: names
            .iter()
            .map(|n| format!("{:?} {:?}", s.price_of(n, 0), s.deployment_prices.get(n.as_str())))
            .collect(),
        providers,
        policies: format!("{:?}", s.wire_policies),
    }
}

fn client() -> HttpClient {
    HttpClient::new(ClientConfig::default()).unwrap()
}

#[tokio::test]
async fn applying_each_change_equals_building_the_snapshot_it_leads_to() {
    let client = client();
    for seed in 1..=6 {
        let mut world = World::new(seed, 40);
        let (mut patched, _) = Snapshot::build(&world.wire, &client, &Snapshot::empty());
        let mut key_ids: std::collections::BTreeSet<String> = world.wire.keys.iter().map(|k| k.id.clone()).collect();
        for step in 0..40 {
            let before = world.wire.clone();
            world.step();
            key_ids.extend(world.wire.keys.iter().map(|k| k.id.clone()));
            let key_ids: Vec<String> = key_ids.iter().cloned().collect();
            let change = diff(&before, &world.wire).unwrap();
            let (next, _) = patched.patch(&change, &client).unwrap();
            let (rebuilt, _) = Snapshot::build(&world.wire, &client, &patched);
            assert_eq!(
                observe(&next, &key_ids, &world.secrets),
                observe(&rebuilt, &key_ids, &world.secrets),
                "seed {seed} step {step}: change {change:?}"
            );
            assert!(next.keys == rebuilt.keys, "seed {seed} step {step}: the key index differs");
            assert!(next.key_budgets == rebuilt.key_budgets, "seed {seed} step {step}: resolved budgets differ");
            patched = next;
        }
        assert!(
            patched.keys.len() > 40 && patched.budget_count() > 10,
            "the walk must grow the configuration, else it proves little"
        );
    }
}

fn key(id: &str, status: &str, hash: u8) -> v1::Key {
    v1::Key {
        id: id.into(),
        org_id: "org_1".into(),
        team_id: "team_1".into(),
        project_id: "prj_1".into(),
        status: status.into(),
        key_hash: vec![hash; 32],
        ..Default::default()
    }
}

fn loaded(revision: i64) -> std::sync::Arc<DataPlane> {
    let dp = DataPlane::new(Config::default()).unwrap();
    let wire = v1::Snapshot {
        revision,
        key_pepper: PEPPER.to_vec(),
        keys: vec![key("key_a", "active", 1)],
        ..Default::default()
    };
    assert!(dp.apply_update(Update::Snapshot(&wire)).unwrap().is_empty());
    dp
}

#[tokio::test]
async fn a_change_that_does_not_start_from_the_current_revision_is_refused_whole() {
    let revoke = v1::ConfigChange {
        from_revision: 4,
        revision: 5,
        upsert_keys: vec![key("key_a", "revoked", 1)],
        ..Default::default()
    };
    let fresh = DataPlane::new(Config::default()).unwrap();
    assert_eq!(fresh.apply_update(Update::Change(&revoke)), Err(ChangeError::NotFromCurrent { have: 0, from: 4 }));
    assert!(!fresh.snapshot().loaded, "a change never makes a gateway ready");

    let dp = loaded(3);
    assert_eq!(dp.apply_update(Update::Change(&revoke)), Err(ChangeError::NotFromCurrent { have: 3, from: 4 }));
    let s = dp.snapshot();
    assert_eq!(s.revision, 3);
    assert_eq!(s.keys.get(&KeyId::new("key_a")).map(|k| k.status), Some(tollgate_keys::KeyStatus::Active));
    drop(s);

    let backwards = v1::ConfigChange { from_revision: 3, revision: 3, ..revoke.clone() };
    assert_eq!(dp.apply_update(Update::Change(&backwards)), Err(ChangeError::Backwards { from: 3, to: 3 }));

    let in_step = v1::ConfigChange { from_revision: 3, ..revoke };
    assert_eq!(dp.apply_update(Update::Change(&in_step)), Ok(Vec::new()));
    let s = dp.snapshot();
    assert_eq!(s.revision, 5);
    assert_eq!(s.keys.get(&KeyId::new("key_a")).map(|k| k.status), Some(tollgate_keys::KeyStatus::Revoked));
    assert!(dp.render_metrics().contains("tollgate_snapshot_revision 5"), "the metric follows changes");
}

#[tokio::test]
async fn an_item_that_does_not_convert_is_skipped_alone() {
    let dp = loaded(3);
    let budget = |id: &str, window: &str| v1::Budget {
        id: id.into(),
        scope: "project".into(),
        scope_id: "prj_1".into(),
        limit_nanos: 10,
        window: window.into(),
        on_breach: "block".into(),
        ..Default::default()
    };
    let change = v1::ConfigChange {
        from_revision: 3,
        revision: 4,
        // key_a turns malformed: it is left out, as a full snapshot would leave it.
        upsert_keys: vec![
            key("key_a", "bogus", 1),
            key("key_b", "active", 2),
            v1::Key { key_hash: vec![3; 5], ..key("key_c", "active", 3) },
        ],
        upsert_budgets: vec![budget("bud_ok", "day"), budget("bud_bad", "fortnight")],
        ..Default::default()
    };
    let problems = dp.apply_update(Update::Change(&change)).unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    for id in ["key_a", "key_c", "bud_bad"] {
        assert!(problems.iter().any(|p| p.id == id), "{id} reported: {problems:?}");
    }
    let s = dp.snapshot();
    assert_eq!(s.revision, 4);
    let ids: BTreeMap<&str, bool> =
        ["key_a", "key_b", "key_c"].into_iter().map(|id| (id, s.keys.get(&KeyId::new(id)).is_some())).collect();
    assert_eq!(ids, BTreeMap::from([("key_a", false), ("key_b", true), ("key_c", false)]));
    let budgets: Vec<_> = s.budgets_for(&KeyId::new("key_b")).iter().map(|b| b.id.to_string()).collect();
    assert_eq!(budgets, ["bud_ok"]);
}
