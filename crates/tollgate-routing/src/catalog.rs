//! The model catalog: public model names and aliases mapped to the deployments that
//! serve them, with each deployment's routing weight and priority.
//!
//! Aliases are one level deep by construction: an alias names a real model, never another
//! alias, and never hides a model of the same name. That keeps resolution a fixed two
//! hash probes at most, and makes "what does `fast` mean?" answerable at a glance.

use std::collections::HashMap;
use std::sync::Arc;

/// Most deployments one model may have. Plans track deployments in a `u64` bit set, so a
/// request never allocates to route; no real catalog comes close.
pub const MAX_DEPLOYMENTS: usize = 64;

/// Longest model or alias name accepted, in bytes (the control plane allows 128
/// characters, which is at most 512 bytes of UTF-8).
pub const MAX_NAME_LEN: usize = 512;

/// Largest weight a deployment may carry (weights are relative; this bounds the sums).
pub const MAX_WEIGHT: u32 = 1_000_000;

/// One place a model is served: a provider credential and the upstream's model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The provider's unique name.
    pub provider: Arc<str>,
    /// The model name the upstream expects.
    pub upstream_model: Arc<str>,
    /// The provider's own priority (lower first, default 0): among deployments of equal
    /// [`DeploymentOptions::priority`], the ones whose provider has the lower priority are
    /// tried first. Copied from the provider when the snapshot is built.
    pub provider_priority: i32,
}

impl Deployment {
    /// A deployment of `upstream_model` at `provider`, with provider priority 0.
    pub fn new(provider: impl Into<Arc<str>>, upstream_model: impl Into<Arc<str>>) -> Self {
        Deployment { provider: provider.into(), upstream_model: upstream_model.into(), provider_priority: 0 }
    }

    /// The same deployment with its provider's priority set.
    #[must_use]
    pub fn with_provider_priority(mut self, priority: i32) -> Self {
        self.provider_priority = priority;
        self
    }
}

/// A public model and where it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    /// The public name callers use.
    pub name: Arc<str>,
    /// Deployments in catalog order; never empty. Plans try them by deployment priority,
    /// then provider priority (see [`DeploymentOptions`]).
    pub deployments: Vec<Deployment>,
    /// Output tokens assumed when a request gives no `max_tokens`.
    pub max_output_tokens: Option<u64>,
    /// The most tokens one image, audio or file part of a request may count for.
    pub max_tokens_per_part: PartMax,
}

/// Per-part token maxima of a model: the most tokens one image, audio or file part of a
/// request may count for; `None`: no cap for that kind of part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PartMax {
    /// One image part.
    pub image: Option<u64>,
    /// One audio part.
    pub audio: Option<u64>,
    /// One file part.
    pub file: Option<u64>,
}

/// How one deployment takes part in routing, kept beside (not inside) [`Deployment`] so
/// existing constructors stay valid.
///
/// `priority`: lower is tried first; among deployments of equal priority, the one whose
/// provider has the lower [`Deployment::provider_priority`] comes first; deployments equal
/// on both keep their catalog order (strategy `priority`) or are drawn by weight
/// (strategy `weighted`).
/// `weight`: relative share of traffic among deployments of the same priority under the
/// `weighted` strategy; 0 means "only as a fallback" (tried after every weighted
/// deployment of its priority has failed or is cooling down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentOptions {
    /// Lower is tried first. Default 0.
    pub priority: u32,
    /// Relative share under the weighted strategy; 0 = fallback only. Default 1.
    pub weight: u32,
}

impl Default for DeploymentOptions {
    fn default() -> Self {
        DeploymentOptions { priority: 0, weight: 1 }
    }
}

/// Why a model or an alias cannot be added to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// A model needs somewhere to be served.
    #[error("model {0:?} has no deployments")]
    NoDeployments(String),
    /// More deployments than a plan can track.
    #[error("model {model:?} has {count} deployments, at most {max} are allowed", max = MAX_DEPLOYMENTS)]
    TooManyDeployments {
        /// The model.
        model: String,
        /// How many it had.
        count: usize,
    },
    /// The options do not line up with the deployments, or carry an out-of-range weight.
    #[error("model {model:?}: {reason}")]
    InvalidOptions {
        /// The model.
        model: String,
        /// What is wrong, naming the deployment index.
        reason: String,
    },
    /// A name is empty, too long or holds control characters.
    #[error("invalid model name {0:?}: names are 1 to {max} printable bytes", max = MAX_NAME_LEN)]
    InvalidName(String),
    /// The alias would hide a real model of the same name.
    #[error("alias {0:?} would shadow the model of the same name")]
    AliasShadowsModel(String),
    /// The model would be hidden behind (or hide) an alias of the same name.
    #[error("model {0:?} is already an alias")]
    NameIsAlias(String),
    /// The alias points at another alias; aliases are one level deep.
    #[error("alias {alias:?} points at {target:?}, which is itself an alias")]
    AliasChain {
        /// The alias being added.
        alias: String,
        /// Its target, an alias.
        target: String,
    },
    /// The alias points at no model.
    #[error("alias {alias:?} points at unknown model {target:?}")]
    UnknownAliasTarget {
        /// The alias being added.
        alias: String,
        /// The missing target.
        target: String,
    },
}

impl tollgate_core::ServiceError for CatalogError {
    fn code(&self) -> tollgate_core::ErrorCode {
        tollgate_core::ErrorCode::BadRequest
    }
}

/// A model with its per-deployment routing options (same length, same order).
#[derive(Debug, Clone)]
struct Entry {
    route: Arc<ModelRoute>,
    options: Arc<[DeploymentOptions]>,
}

/// What a name resolved to: the route, its deployments' options, and the alias used, if
/// any.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The model that serves the name.
    pub route: &'a Arc<ModelRoute>,
    /// One entry per deployment of `route`, in the same order.
    pub options: &'a Arc<[DeploymentOptions]>,
    /// The alias the caller used, when the name was one.
    pub alias: Option<&'a Arc<str>>,
}

/// Public model name (or alias) → route. Probed once per request.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    models: HashMap<Arc<str>, Entry>,
    /// alias → target model name (always a key of `models`).
    aliases: HashMap<Arc<str>, Arc<str>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a model, every deployment with default options (priority 0,
    /// weight 1: catalog order under `priority`, an even split under `weighted`).
    pub fn insert(&mut self, route: ModelRoute) -> Result<(), CatalogError> {
        let options = vec![DeploymentOptions::default(); route.deployments.len()];
        self.insert_with_options(route, options)
    }

    /// Adds or replaces a model with one [`DeploymentOptions`] per deployment.
    pub fn insert_with_options(
        &mut self,
        route: ModelRoute,
        options: Vec<DeploymentOptions>,
    ) -> Result<(), CatalogError> {
        check_name(&route.name)?;
        let n = route.deployments.len();
        if n == 0 {
            return Err(CatalogError::NoDeployments(route.name.to_string()));
        }
        if n > MAX_DEPLOYMENTS {
            return Err(CatalogError::TooManyDeployments { model: route.name.to_string(), count: n });
        }
        if options.len() != n {
            return Err(CatalogError::InvalidOptions {
                model: route.name.to_string(),
                reason: format!("{} options for {n} deployments", options.len()),
            });
        }
        if let Some(i) = options.iter().position(|o| o.weight > MAX_WEIGHT) {
            return Err(CatalogError::InvalidOptions {
                model: route.name.to_string(),
                reason: format!("deployments[{i}].weight exceeds {MAX_WEIGHT}"),
            });
        }
        if self.aliases.contains_key(&*route.name) {
            return Err(CatalogError::NameIsAlias(route.name.to_string()));
        }
        let entry = Entry { route: Arc::new(route), options: options.into() };
        self.models.insert(entry.route.name.clone(), entry);
        Ok(())
    }

    /// Makes `alias` another name for the model `target`. The target must already be a
    /// model (not an alias); the alias must not be a model's name. Re-pointing an
    /// existing alias is allowed.
    pub fn insert_alias(&mut self, alias: &str, target: &str) -> Result<(), CatalogError> {
        check_name(alias)?;
        check_name(target)?;
        if self.models.contains_key(alias) {
            return Err(CatalogError::AliasShadowsModel(alias.to_owned()));
        }
        if self.aliases.contains_key(target) {
            return Err(CatalogError::AliasChain { alias: alias.to_owned(), target: target.to_owned() });
        }
        let Some((target, _)) = self.models.get_key_value(target) else {
            return Err(CatalogError::UnknownAliasTarget { alias: alias.to_owned(), target: target.to_owned() });
        };
        let target = target.clone();
        self.aliases.insert(alias.into(), target);
        Ok(())
    }

    /// The route of a public model name (not following aliases).
    pub fn get(&self, model: &str) -> Option<&Arc<ModelRoute>> {
        self.models.get(model).map(|e| &e.route)
    }

    /// The route a name stands for: a model of that name, else the model an alias of
    /// that name points at.
    pub fn resolve(&self, name: &str) -> Option<&Arc<ModelRoute>> {
        self.lookup(name).map(|r| r.route)
    }

    /// Like [`Catalog::resolve`], with the deployments' routing options and the alias used.
    pub fn lookup(&self, name: &str) -> Option<Resolved<'_>> {
        if let Some(e) = self.models.get(name) {
            return Some(Resolved { route: &e.route, options: &e.options, alias: None });
        }
        let (alias, target) = self.aliases.get_key_value(name)?;
        let e = self.models.get(target)?;
        Some(Resolved { route: &e.route, options: &e.options, alias: Some(alias) })
    }

    /// The routing options of a model's deployments (not following aliases).
    pub fn options(&self, model: &str) -> Option<&Arc<[DeploymentOptions]>> {
        self.models.get(model).map(|e| &e.options)
    }

    /// The model an alias points at.
    pub fn alias_target(&self, alias: &str) -> Option<&Arc<str>> {
        self.aliases.get(alias)
    }

    /// Every name a caller may use — models and aliases — with the route it resolves to,
    /// in no particular order. `/v1/models` filters this by the key's allowlist.
    pub fn iter_names(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<ModelRoute>)> {
        let models = self.models.iter().map(|(name, e)| (name, &e.route));
        let aliases = self.aliases.iter().filter_map(|(alias, target)| Some((alias, &self.models.get(target)?.route)));
        models.chain(aliases)
    }

    /// Every model, in no particular order (aliases not included).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ModelRoute>> {
        self.models.values().map(|e| &e.route)
    }

    /// Number of models (aliases not counted).
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Number of aliases.
    pub fn alias_count(&self) -> usize {
        self.aliases.len()
    }

    /// True when no model is configured.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

fn check_name(name: &str) -> Result<(), CatalogError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        // Never echo a hostile name whole into an error.
        let shown: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
        return Err(CatalogError::InvalidName(shown));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, deployments: &[(&str, &str)]) -> ModelRoute {
        ModelRoute {
            name: name.into(),
            deployments: deployments.iter().map(|(p, m)| Deployment::new(*p, *m)).collect(),
            max_output_tokens: None,
            max_tokens_per_part: Default::default(),
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

    #[test]
    fn an_alias_resolves_to_its_model_and_is_listed() {
        let mut c = Catalog::new();
        c.insert(route("gpt-4o-mini", &[("openai", "gpt-4o-mini"), ("azure", "mini-eu")])).unwrap();
        c.insert_alias("fast", "gpt-4o-mini").unwrap();
        let r = c.lookup("fast").unwrap();
        assert_eq!(&*r.route.name, "gpt-4o-mini");
        assert_eq!(r.alias.map(|a| &**a), Some("fast"));
        assert_eq!(r.options.len(), 2);
        assert!(c.get("fast").is_none(), "get does not follow aliases");
        assert_eq!(c.lookup("gpt-4o-mini").unwrap().alias, None);
        let mut names: Vec<(String, String)> =
            c.iter_names().map(|(n, r)| (n.to_string(), r.name.to_string())).collect();
        names.sort();
        assert_eq!(names, vec![("fast".into(), "gpt-4o-mini".into()), ("gpt-4o-mini".into(), "gpt-4o-mini".into())]);
        assert_eq!((c.len(), c.alias_count()), (1, 1));
    }

    #[test]
    fn an_alias_sees_its_model_replaced() {
        let mut c = Catalog::new();
        c.insert(route("m", &[("a", "x")])).unwrap();
        c.insert_alias("fast", "m").unwrap();
        c.insert(route("m", &[("b", "y")])).unwrap();
        assert_eq!(&*c.resolve("fast").unwrap().deployments[0].provider, "b");
    }

    #[test]
    fn aliases_refuse_chains_cycles_shadowing_and_unknown_targets() {
        let mut c = Catalog::new();
        c.insert(route("m", &[("a", "x")])).unwrap();
        c.insert(route("n", &[("a", "y")])).unwrap();
        c.insert_alias("fast", "m").unwrap();
        assert_eq!(
            c.insert_alias("faster", "fast"),
            Err(CatalogError::AliasChain { alias: "faster".into(), target: "fast".into() })
        );
        assert_eq!(
            c.insert_alias("fast", "fast"),
            Err(CatalogError::AliasChain { alias: "fast".into(), target: "fast".into() })
        );
        assert_eq!(c.insert_alias("n", "m"), Err(CatalogError::AliasShadowsModel("n".into())));
        assert_eq!(c.insert_alias("m", "m"), Err(CatalogError::AliasShadowsModel("m".into())));
        assert_eq!(
            c.insert_alias("ghost", "nope"),
            Err(CatalogError::UnknownAliasTarget { alias: "ghost".into(), target: "nope".into() })
        );
        assert_eq!(c.insert(route("fast", &[("a", "z")])), Err(CatalogError::NameIsAlias("fast".into())));
        // Re-pointing an alias is fine.
        c.insert_alias("fast", "n").unwrap();
        assert_eq!(&*c.resolve("fast").unwrap().name, "n");
    }

    #[test]
    fn hostile_names_and_options_are_refused() {
        let mut c = Catalog::new();
        c.insert(route("m", &[("a", "x")])).unwrap();
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(c.insert_alias(&long, "m"), Err(CatalogError::InvalidName(s)) if s.len() == 64));
        assert!(matches!(c.insert_alias("", "m"), Err(CatalogError::InvalidName(_))));
        assert!(matches!(c.insert_alias("a\nb", "m"), Err(CatalogError::InvalidName(s)) if s == "ab"));
        assert!(matches!(c.insert(route("", &[("a", "x")])), Err(CatalogError::InvalidName(_))));
        let many: Vec<(String, String)> = (0..=MAX_DEPLOYMENTS).map(|i| (format!("p{i}"), "m".to_owned())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(p, m)| (p.as_str(), m.as_str())).collect();
        assert_eq!(
            c.insert(route("big", &many)),
            Err(CatalogError::TooManyDeployments { model: "big".into(), count: MAX_DEPLOYMENTS + 1 })
        );
        let two = route("two", &[("a", "x"), ("b", "y")]);
        let err = c.insert_with_options(two.clone(), vec![DeploymentOptions::default()]).unwrap_err();
        assert_eq!(err.to_string(), "model \"two\": 1 options for 2 deployments");
        let heavy = DeploymentOptions { priority: 0, weight: MAX_WEIGHT + 1 };
        let err = c.insert_with_options(two, vec![DeploymentOptions::default(), heavy]).unwrap_err();
        assert_eq!(err.to_string(), "model \"two\": deployments[1].weight exceeds 1000000");
        assert!(c.get("two").is_none());
    }
}
