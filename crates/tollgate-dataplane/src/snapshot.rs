//! The in-memory configuration every request is served from.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tollgate_budgets::{Budget, RateLimits};
use tollgate_core::{BudgetId, KeyId, ScopeKind};
use tollgate_keys::{KeyHasher, KeyIndex, Pepper, VirtualKey};
use tollgate_metering::{PriceTable, Pricing};
use tollgate_proto::convert::{self, Kind, Rejected};
use tollgate_proto::v1;
use tollgate_providers::{HttpClient, Provider, ProviderConfig, build_provider};
use tollgate_routing::{Catalog, Health, ModelRoute, PolicyScope, PolicySet, RoutingPolicy};

/// A provider ready to serve, with its configuration.
#[derive(Clone)]
pub(crate) struct ProviderEntry {
    pub(crate) config: Arc<ProviderConfig>,
    pub(crate) provider: Arc<dyn Provider>,
    /// The credential's rpm / tpm caps.
    pub(crate) limits: RateLimits,
    /// Its rate-limit counter key (`provider:<name>`), built once per snapshot so the
    /// hot path does not format it per request; the prefix keeps it apart from key ids.
    pub(crate) counter: Arc<str>,
    /// The wire configuration it was built from, to reuse it while that is unchanged.
    pub(crate) source: Arc<v1::Provider>,
}

/// The configuration-sized wire items (everything but keys and budgets) by id, as the
/// last full snapshot and the changes after it left them: what a change patches before
/// the routing configuration is rebuilt from it. Aliases are keyed by name.
#[derive(Clone, Default)]
pub(crate) struct WireConfig {
    pub(crate) providers: BTreeMap<String, v1::Provider>,
    pub(crate) models: BTreeMap<String, v1::Model>,
    pub(crate) aliases: BTreeMap<String, v1::ModelAlias>,
    pub(crate) routing_policies: BTreeMap<String, v1::RoutingPolicy>,
}

impl WireConfig {
    fn from_snapshot(wire: &v1::Snapshot) -> Self {
        WireConfig {
            providers: wire.providers.iter().map(|p| (p.id.clone(), p.clone())).collect(),
            models: wire.models.iter().map(|m| (m.id.clone(), m.clone())).collect(),
            aliases: wire.aliases.iter().map(|a| (a.name.clone(), a.clone())).collect(),
            routing_policies: wire.routing_policies.iter().map(|p| (p.id.clone(), p.clone())).collect(),
        }
    }
}

/// What requests are routed and priced with, built from a [`WireConfig`].
pub(crate) struct Routing {
    pub(crate) providers: HashMap<Arc<str>, ProviderEntry>,
    pub(crate) catalog: Catalog,
    pub(crate) prices: PriceTable,
    pub(crate) deployment_prices: HashMap<Arc<str>, Box<[Option<Pricing>]>>,
    pub(crate) wire_policies: Vec<(Option<PolicyScope>, RoutingPolicy)>,
}

/// Budgets by scope: kind, then scope id, each list in budget id order.
pub(crate) type ScopeBudgets = HashMap<ScopeKind, HashMap<Arc<str>, Arc<[Arc<Budget>]>>>;

/// Keys and budgets, with every key's budgets resolved: the part of a snapshot that
/// grows with the number of customers, patched in place by a change.
pub(crate) struct Accounts {
    pub(crate) keys: KeyIndex,
    pub(crate) key_budgets: HashMap<KeyId, Arc<[Arc<Budget>]>>,
    pub(crate) budgets: HashMap<BudgetId, Arc<Budget>>,
    pub(crate) budgets_by_scope: ScopeBudgets,
}

/// A complete, immutable configuration: keys, catalog, prices and providers.
pub struct Snapshot {
    /// The control plane revision this snapshot reflects.
    pub revision: i64,
    /// False until the first snapshot from the control plane is applied.
    pub loaded: bool,
    pub(crate) hasher: KeyHasher,
    pub(crate) keys: KeyIndex,
    pub(crate) catalog: Catalog,
    pub(crate) prices: PriceTable,
    /// For models whose deployments have prices of their own: the price of each
    /// deployment, in order (its own, else the model's). Other models are charged
    /// [`Snapshot::prices`] whichever deployment serves.
    pub(crate) deployment_prices: HashMap<Arc<str>, Box<[Option<Pricing>]>>,
    pub(crate) providers: HashMap<Arc<str>, ProviderEntry>,
    /// Every budget that applies to a key — its own, its principal's, project's, team's
    /// and organization's — resolved once per snapshot so a request does one probe.
    pub(crate) key_budgets: HashMap<KeyId, Arc<[Arc<Budget>]>>,
    /// Every budget by id.
    pub(crate) budgets: HashMap<BudgetId, Arc<Budget>>,
    /// The same budgets by scope, to resolve a key's budgets when it or they change.
    pub(crate) budgets_by_scope: ScopeBudgets,
    /// Shared by every key without budgets, so the hot path never allocates for them.
    no_budgets: Arc<[Arc<Budget>]>,
    /// One circuit breaker per deployment, carried over from the snapshot before (see
    /// [`crate::DataPlane::apply`]) so a configuration change forgets no failing upstream.
    pub(crate) health: Health,
    /// The routing policy of each request: the gateway's default, unless one is attached
    /// to its key, project, team or organization.
    pub(crate) policies: PolicySet,
    /// The snapshot's routing policies as converted from the wire, in id order; `None`
    /// scope is the default policy. Raw material for the request path's `PolicySet`.
    pub(crate) wire_policies: Vec<(Option<PolicyScope>, RoutingPolicy)>,
    /// The wire items the routing configuration was built from, for the next change.
    pub(crate) wire: Arc<WireConfig>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision)
            .field("keys", &self.keys.len())
            .field("models", &self.catalog.len())
            .field("providers", &self.providers.len())
            .field("budgets", &self.budgets.len())
            .finish()
    }
}

impl Snapshot {
    /// The snapshot before any configuration arrived: no keys, so every request is 401.
    pub fn empty() -> Self {
        Snapshot {
            revision: 0,
            loaded: false,
            hasher: KeyHasher::new(&Pepper::new(rand::random())),
            keys: KeyIndex::new(),
            catalog: Catalog::new(),
            prices: PriceTable::new(),
            deployment_prices: HashMap::new(),
            providers: HashMap::new(),
            key_budgets: HashMap::new(),
            budgets: HashMap::new(),
            budgets_by_scope: HashMap::new(),
            no_budgets: Arc::from(Vec::new()),
            health: Health::new(&Catalog::new()),
            policies: PolicySet::new(),
            wire_policies: Vec::new(),
            wire: Arc::new(WireConfig::default()),
        }
    }

    /// Assembles a snapshot from its parts; health and policies are left for
    /// [`crate::DataPlane`] to carry over and resolve.
    pub(crate) fn assemble(
        revision: i64,
        hasher: KeyHasher,
        wire: Arc<WireConfig>,
        routing: Routing,
        accounts: Accounts,
    ) -> Snapshot {
        let Routing { providers, catalog, prices, deployment_prices, wire_policies } = routing;
        let Accounts { keys, key_budgets, budgets, budgets_by_scope } = accounts;
        Snapshot {
            revision,
            loaded: true,
            hasher,
            keys,
            health: Health::new(&catalog),
            catalog,
            prices,
            deployment_prices,
            providers,
            key_budgets,
            budgets,
            budgets_by_scope,
            no_budgets: Arc::from(Vec::new()),
            policies: PolicySet::new(),
            wire_policies,
            wire,
        }
    }

    /// The routing configuration as it stands, to reuse when a change leaves it alone.
    pub(crate) fn routing(&self) -> Routing {
        Routing {
            providers: self.providers.clone(),
            catalog: self.catalog.clone(),
            prices: self.prices.clone(),
            deployment_prices: self.deployment_prices.clone(),
            wire_policies: self.wire_policies.clone(),
        }
    }

    /// Builds a snapshot from the wire. Each item converts on its own; the ones that fail
    /// are left out and returned, each as a [`Rejected`], for the caller to report.
    ///
    /// A provider whose wire configuration is the same as in `previous` keeps its entry
    /// (and with it its upstream connection pool): minting a key does not reconnect to
    /// every upstream.
    pub(crate) fn build(wire: &v1::Snapshot, client: &HttpClient, previous: &Snapshot) -> (Snapshot, Vec<Rejected>) {
        let mut problems = Vec::new();
        let hasher = match convert::pepper(&wire.key_pepper) {
            Ok(p) => KeyHasher::new(&p),
            Err(e) => {
                // Without the pepper no key can authenticate; keep a random one so every
                // key is refused rather than accepted.
                problems.push(e);
                KeyHasher::new(&Pepper::new(rand::random()))
            }
        };
        let config = WireConfig::from_snapshot(wire);
        let routing = build_routing(&config, client, previous, &mut problems);
        let mut budgets = HashMap::with_capacity(wire.budgets.len());
        // Budgets first: a key budget's scope id is its key's id, shared with the key.
        let mut ids = convert::Interner::new();
        for b in &wire.budgets {
            match convert::budget_in(b, &mut ids) {
                Ok(budget) => {
                    budgets.insert(budget.id.clone(), Arc::new(budget));
                }
                Err(e) => problems.push(e),
            }
        }
        let mut by_scope: HashMap<ScopeKind, HashMap<Arc<str>, Vec<Arc<Budget>>>> = HashMap::new();
        for b in budgets.values() {
            by_scope.entry(b.scope).or_default().entry(b.scope_id.clone()).or_default().push(b.clone());
        }
        let budgets_by_scope: ScopeBudgets = by_scope
            .into_iter()
            .map(|(kind, ids)| (kind, ids.into_iter().map(|(id, list)| (id, sorted_budgets(list))).collect()))
            .collect();
        let mut keys = KeyIndex::new();
        let mut key_budgets = HashMap::new();
        for k in &wire.keys {
            match convert::key_in(k, &mut ids) {
                Ok(parts) => {
                    let applicable = budgets_of(&parts.key, &budgets_by_scope);
                    if !applicable.is_empty() {
                        key_budgets.insert(parts.key.id.clone(), applicable);
                    }
                    keys.insert(parts.key, parts.hash, parts.previous);
                }
                Err(e) => problems.push(e),
            }
        }
        let accounts = Accounts { keys, key_budgets, budgets, budgets_by_scope };
        let snap = Snapshot::assemble(wire.revision, hasher, Arc::new(config), routing, accounts);
        (snap, problems)
    }

    /// The price a request to `model` pays when its `deployment` (index into the route)
    /// serves it: the deployment's own, else the model's.
    pub(crate) fn price_of(&self, model: &str, deployment: usize) -> Option<Pricing> {
        match self.deployment_prices.get(model) {
            Some(each) => each.get(deployment).copied().flatten(),
            None => self.prices.get(model).copied(),
        }
    }

    /// The price to reserve a request to `model` at before it is known which of the
    /// `usable` deployments serves: the one with the highest worst case for `input` and
    /// `output` tokens, so the charge can never outgrow the reservation; `None` when any
    /// of them is unpriced.
    pub(crate) fn reservation_price(
        &self,
        model: &str,
        usable: impl Iterator<Item = usize>,
        input: u64,
        output: u64,
    ) -> Option<Pricing> {
        let Some(each) = self.deployment_prices.get(model) else {
            return self.prices.get(model).copied();
        };
        let mut worst: Option<Pricing> = None;
        for i in usable {
            let p = each.get(i).copied().flatten()?;
            if worst.is_none_or(|w| p.worst_case(input, output) > w.worst_case(input, output)) {
                worst = Some(p);
            }
        }
        worst
    }

    /// The budgets that apply to a key (empty when none): a reference count, not a copy.
    pub(crate) fn budgets_for(&self, key: &KeyId) -> Arc<[Arc<Budget>]> {
        match self.key_budgets.get(key) {
            Some(b) => Arc::clone(b),
            None => Arc::clone(&self.no_budgets),
        }
    }

    /// Number of budgets.
    pub fn budget_count(&self) -> usize {
        self.budgets.len()
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// The upstream client of one provider: the shared pool, unless the provider sets its
/// own `extra.connect_timeout_s` / `extra.timeout_s` (time to the response head), which
/// get a client of their own (kept from snapshot to snapshot while the provider's
/// configuration is unchanged).
fn client_for(cfg: &ProviderConfig, shared: &HttpClient) -> Result<HttpClient, String> {
    let secs = |name: &str| -> Result<Option<Duration>, String> {
        match cfg.extra.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n @ 1..=3600) => Ok(Some(Duration::from_secs(n))),
                _ => Err(format!("extra.{name} must be a whole number of seconds between 1 and 3600")),
            },
        }
    };
    let (connect, request) = (secs("connect_timeout_s")?, secs("timeout_s")?);
    if connect.is_none() && request.is_none() {
        return Ok(shared.clone());
    }
    let mut c = shared.config().clone();
    c.connect_timeout = connect.unwrap_or(c.connect_timeout);
    c.request_timeout = request.unwrap_or(c.request_timeout);
    HttpClient::new(c).map_err(|e| e.to_string())
}

/// The rate-limit counter key of a provider credential: prefixed, so it can never
/// collide with a virtual key's id in the same counter store.
fn provider_counter(name: &str) -> Arc<str> {
    format!("provider:{name}").into()
}

/// Builds the routing configuration from `config`, item by item; the ones that fail are
/// left out and added to `problems`. Providers whose wire configuration is the same
/// as in `previous` keep their entry (and upstream connection pool).
pub(crate) fn build_routing(
    config: &WireConfig,
    client: &HttpClient,
    previous: &Snapshot,
    problems: &mut Vec<Rejected>,
) -> Routing {
    let mut providers = HashMap::new();
    for p in config.providers.values() {
        if let Some(same) = previous.providers.get(p.name.as_str()).filter(|e| *e.source == *p) {
            providers.insert(same.config.name.clone(), same.clone());
            continue;
        }
        let refused = |reason: String| Rejected::new(Kind::Provider, &p.id, format!("provider {:?}: {reason}", p.name));
        let built = convert::provider(p).and_then(|cfg| {
            let cfg = Arc::new(cfg);
            let client = client_for(&cfg, client).map_err(refused)?;
            build_provider(cfg.clone(), &client)
                .map(|provider| ProviderEntry {
                    limits: RateLimits { rpm: cfg.rpm, tpm: cfg.tpm, max_concurrency: None },
                    counter: provider_counter(&cfg.name),
                    config: cfg,
                    provider,
                    source: Arc::new(p.clone()),
                })
                .map_err(|e| refused(e.to_string()))
        });
        match built {
            Ok(entry) => {
                providers.insert(entry.config.name.clone(), entry);
            }
            Err(e) => problems.push(e),
        }
    }
    let mut catalog = Catalog::new();
    let mut prices = PriceTable::new();
    let mut deployment_prices = HashMap::new();
    for m in config.models.values() {
        match convert::model(m) {
            Ok(convert::ModelParts { mut route, options, pricing, deployment_pricing }) => {
                if route.max_output_tokens.is_none() {
                    route.max_output_tokens = catalog_output_cap(&route);
                }
                // Routing orders deployments of equal priority by their provider's own.
                for d in &mut route.deployments {
                    if let Some(p) = providers.get(&*d.provider) {
                        d.provider_priority = p.config.priority;
                    }
                }
                let name = route.name.clone();
                match catalog.insert_with_options(route, options) {
                    Ok(()) => {
                        if deployment_pricing.iter().any(Option::is_some) {
                            let each = deployment_pricing.into_iter().map(|d| d.or(pricing)).collect();
                            deployment_prices.insert(name.clone(), each);
                        }
                        if let Some(p) = pricing {
                            prices.insert(name, p);
                        }
                    }
                    Err(e) => problems.push(Rejected::new(Kind::Model, &m.id, e.to_string())),
                }
            }
            Err(e) => problems.push(e),
        }
    }
    // After every model, so an alias only fails on its own account.
    for a in config.aliases.values() {
        if let Err(e) = catalog.insert_alias(&a.name, &a.target_model) {
            problems.push(Rejected::new(Kind::Alias, &a.name, e.to_string()));
        }
    }
    let mut wire_policies = Vec::with_capacity(config.routing_policies.len());
    for p in config.routing_policies.values() {
        match convert::routing_policy(p) {
            Ok(scoped) => wire_policies.push(scoped),
            Err(e) => problems.push(e),
        }
    }
    Routing { providers, catalog, prices, deployment_prices, wire_policies }
}

/// The output cap of a model configured without one: the smallest of the price
/// catalog's output limits among its deployments' upstream models (so every deployment
/// accepts it); `None` when the catalog knows none of them.
fn catalog_output_cap(route: &ModelRoute) -> Option<u64> {
    let catalog = tollgate_metering::PriceCatalog::builtin().ok()?;
    route.deployments.iter().filter_map(|d| catalog.lookup(&d.upstream_model).and_then(|e| e.max_output)).min()
}

/// One scope's budgets in id order, so every path that builds the list orders it alike.
pub(crate) fn sorted_budgets(mut list: Vec<Arc<Budget>>) -> Arc<[Arc<Budget>]> {
    list.sort_by(|a, b| a.id.cmp(&b.id));
    list.into()
}

/// The budgets of every scope a key belongs to, narrowest first.
pub(crate) fn budgets_of(key: &VirtualKey, by_scope: &ScopeBudgets) -> Arc<[Arc<Budget>]> {
    let mut scopes = vec![(ScopeKind::VirtualKey, key.id.as_str())];
    if let Some(p) = key.principal.as_deref() {
        scopes.push((ScopeKind::Principal, p));
    }
    scopes.push((ScopeKind::Project, key.project.as_str()));
    scopes.push((ScopeKind::Team, key.team.as_str()));
    scopes.push((ScopeKind::Organization, key.org.as_str()));
    scopes
        .iter()
        .filter_map(|(kind, id)| by_scope.get(kind).and_then(|ids| ids.get(*id)))
        .flat_map(|list| list.iter())
        .cloned()
        .collect()
}

/// Whether `key` belongs to the scope `kind` / `id` (so that scope's budgets apply to it).
pub(crate) fn in_scope(key: &VirtualKey, kind: ScopeKind, id: &str) -> bool {
    match kind {
        ScopeKind::VirtualKey => key.id.as_str() == id,
        ScopeKind::Principal => key.principal.as_deref() == Some(id),
        ScopeKind::Project => key.project.as_str() == id,
        ScopeKind::Team => key.team.as_str() == id,
        ScopeKind::Organization => key.org.as_str() == id,
    }
}

#[cfg(test)]
#[path = "snapshot_routing_tests.rs"]
mod routing_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_counters_are_prefixed_apart_from_key_ids() {
        assert_eq!(&*provider_counter("openai"), "provider:openai");
    }

    fn wire(revision: i64, api_key: &str) -> v1::Snapshot {
        let provider = v1::Provider {
            id: "prv_1".into(),
            name: "up".into(),
            kind: "openai-compatible".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: api_key.into(),
            extra_json: r#"{"timeout_s": 5}"#.into(),
            ..v1::Provider::default()
        };
        v1::Snapshot { revision, key_pepper: vec![7; 32], providers: vec![provider], ..v1::Snapshot::default() }
    }

    #[tokio::test]
    async fn an_unchanged_provider_keeps_its_client_across_snapshots() {
        let client = HttpClient::new(tollgate_providers::ClientConfig::default()).unwrap();
        let (first, problems) = Snapshot::build(&wire(1, "sk-a"), &client, &Snapshot::empty());
        assert!(problems.is_empty(), "{problems:?}");
        let (second, _) = Snapshot::build(&wire(2, "sk-a"), &client, &first);
        let provider = |s: &Snapshot| Arc::clone(&s.providers["up"].provider);
        assert!(Arc::ptr_eq(&provider(&first), &provider(&second)), "same configuration, same provider and pool");
        let (third, _) = Snapshot::build(&wire(3, "sk-b"), &client, &second);
        assert!(!Arc::ptr_eq(&provider(&second), &provider(&third)), "a new credential builds a new provider");
        assert_eq!(third.providers["up"].source.api_key, "sk-b");
    }

    #[tokio::test]
    async fn a_budget_the_gateway_cannot_load_is_rejected_loudly_and_the_rest_still_loads() {
        let dp = crate::DataPlane::new(crate::Config::default()).unwrap();
        // 1500‰ passes no `Budget::new`: the gateway must say so, not drop it quietly.
        let budget = |id: &str, threshold: u32| v1::Budget {
            id: id.into(),
            scope: "project".into(),
            scope_id: "prj_1".into(),
            limit_nanos: 1_000,
            window: "day".into(),
            on_breach: "block".into(),
            alert_thresholds_permille: vec![threshold],
            ..v1::Budget::default()
        };
        let key = v1::Key {
            id: "key_1".into(),
            org_id: "org_1".into(),
            team_id: "team_1".into(),
            project_id: "prj_1".into(),
            status: "active".into(),
            key_hash: vec![1; 32],
            ..v1::Key::default()
        };
        let mut snapshot = wire(1, "sk-a");
        snapshot.keys = vec![key];
        snapshot.budgets = vec![budget("bud_ok", 800), budget("bud_bad", 1500)];

        let rejected = dp.apply(&snapshot);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!((rejected[0].kind, rejected[0].id.as_str()), (Kind::Budget, "bud_bad"));
        assert!(rejected[0].reason.contains("1500"), "{rejected:?}");
        let s = dp.snapshot();
        assert_eq!((s.revision, s.key_count(), s.budget_count()), (1, 1, 1));
        assert!(s.providers.contains_key("up"));
        let applicable: Vec<_> = s.budgets_for(&KeyId::new("key_1")).iter().map(|b| b.id.to_string()).collect();
        assert_eq!(applicable, ["bud_ok"]);
        drop(s);
        let metrics = dp.render_metrics();
        assert!(metrics.contains("tollgate_config_rejected_total{kind=\"budget\"} 1\n"), "{metrics}");
        assert!(metrics.contains("tollgate_config_rejected_total{kind=\"key\"} 0\n"), "{metrics}");

        // A change that brings it again is refused again, and counted again.
        let change = v1::ConfigChange {
            from_revision: 1,
            revision: 2,
            upsert_budgets: vec![budget("bud_bad", 1500)],
            ..v1::ConfigChange::default()
        };
        let rejected = dp.apply_update(crate::Update::Change(&change)).unwrap();
        assert_eq!(rejected.iter().map(|r| (r.kind, r.id.as_str())).collect::<Vec<_>>(), [(Kind::Budget, "bud_bad")]);
        assert_eq!(dp.snapshot().budget_count(), 1);
        assert!(dp.render_metrics().contains("tollgate_config_rejected_total{kind=\"budget\"} 2\n"));
    }
}
