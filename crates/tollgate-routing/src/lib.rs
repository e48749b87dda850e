//! tollgate-routing: which upstream serves a public model name.
//!
//! Owns the model [`Catalog`]: public model names mapped to one or more
//! [`Deployment`]s (a provider, by name, and that provider's model name), plus each
//! model's default output cap. Later: aliases, routing policies, fallback and health.
//!
//! Does not own: provider I/O (providers), prices (metering), or who may use a model
//! (keys).
//!
//! Invariant: a catalog only holds models with at least one deployment.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;

/// One place a model is served: a provider credential and the upstream's model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The provider's unique name.
    pub provider: Arc<str>,
    /// The model name the upstream expects.
    pub upstream_model: Arc<str>,
}

/// A public model and where it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    /// The public name callers use.
    pub name: Arc<str>,
    /// Deployments in priority order; never empty.
    pub deployments: Vec<Deployment>,
    /// Output tokens assumed when a request gives no `max_tokens`.
    pub max_output_tokens: Option<u64>,
}

/// Why a model cannot be added to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// A model needs somewhere to be served.
    #[error("model {0:?} has no deployments")]
    NoDeployments(String),
}

/// Public model name → route. Probed once per request.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    models: HashMap<Arc<str>, Arc<ModelRoute>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a model.
    pub fn insert(&mut self, route: ModelRoute) -> Result<(), CatalogError> {
        if route.deployments.is_empty() {
            return Err(CatalogError::NoDeployments(route.name.to_string()));
        }
        self.models.insert(route.name.clone(), Arc::new(route));
        Ok(())
    }

    /// The route of a public model name.
    pub fn get(&self, model: &str) -> Option<&Arc<ModelRoute>> {
        self.models.get(model)
    }

    /// Every model, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ModelRoute>> {
        self.models.values()
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// True when no model is configured.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, deployments: &[(&str, &str)]) -> ModelRoute {
        ModelRoute {
            name: name.into(),
            deployments: deployments
                .iter()
                .map(|(p, m)| Deployment { provider: (*p).into(), upstream_model: (*m).into() })
                .collect(),
            max_output_tokens: None,
        }
    }

    #[test]
    fn models_resolve_to_their_deployments() {
        let mut c = Catalog::new();
        c.insert(route("fast", &[("openai", "gpt-4o-mini")])).unwrap();
        assert_eq!(&*c.get("fast").unwrap().deployments[0].upstream_model, "gpt-4o-mini");
        assert!(c.get("slow").is_none());
        assert_eq!(c.insert(route("empty", &[])), Err(CatalogError::NoDeployments("empty".into())));
        assert_eq!(c.len(), 1);
    }
}
