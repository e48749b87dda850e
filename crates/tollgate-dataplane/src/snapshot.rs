//! The in-memory configuration every request is served from.

use std::collections::HashMap;
use std::sync::Arc;
use tollgate_keys::{KeyHasher, KeyIndex, Pepper};
use tollgate_metering::PriceTable;
use tollgate_proto::{convert, v1};
use tollgate_providers::{HttpClient, Provider, ProviderConfig, build_provider};
use tollgate_routing::Catalog;

/// A provider ready to serve, with its configuration.
#[derive(Clone)]
pub(crate) struct ProviderEntry {
    pub(crate) config: Arc<ProviderConfig>,
    pub(crate) provider: Arc<dyn Provider>,
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
    pub(crate) providers: HashMap<Arc<str>, ProviderEntry>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision)
            .field("keys", &self.keys.len())
            .field("models", &self.catalog.len())
            .field("providers", &self.providers.len())
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
            providers: HashMap::new(),
        }
    }

    /// Builds a snapshot from the wire. Each item converts on its own; the ones that fail
    /// are left out and described in the returned problems.
    pub(crate) fn build(wire: &v1::Snapshot, client: &HttpClient) -> (Snapshot, Vec<String>) {
        let mut problems = Vec::new();
        let hasher = match convert::pepper(&wire.key_pepper) {
            Ok(p) => KeyHasher::new(&p),
            Err(e) => {
                // Without the pepper no key can authenticate; keep a random one so every
                // key is refused rather than accepted.
                problems.push(e.to_string());
                KeyHasher::new(&Pepper::new(rand::random()))
            }
        };
        let mut providers = HashMap::new();
        for p in &wire.providers {
            let built = convert::provider(p).map_err(|e| e.to_string()).and_then(|cfg| {
                let cfg = Arc::new(cfg);
                build_provider(cfg.clone(), client)
                    .map(|provider| ProviderEntry { config: cfg, provider })
                    .map_err(|e| format!("provider {:?}: {e}", p.name))
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
        for m in &wire.models {
            match convert::model(m) {
                Ok((route, pricing)) => {
                    let name = route.name.clone();
                    match catalog.insert(route) {
                        Ok(()) => {
                            if let Some(p) = pricing {
                                prices.insert(name, p);
                            }
                        }
                        Err(e) => problems.push(e.to_string()),
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        let mut keys = KeyIndex::new();
        for k in &wire.keys {
            match convert::key(k) {
                Ok(parts) => keys.insert(parts.key, parts.hash, parts.previous),
                Err(e) => problems.push(e.to_string()),
            }
        }
        let snap = Snapshot { revision: wire.revision, loaded: true, hasher, keys, catalog, prices, providers };
        (snap, problems)
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}
