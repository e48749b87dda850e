//! The declarative file of `tollctl apply`: its YAML shape (every struct refuses unknown
//! fields), and the checks that need nothing but the file and the environment. Every
//! error names the path of the offending value (`keys[2].project`).
//!
//! Field rule, for every object: a field left out is not managed (an existing object
//! keeps its value, a new one gets the control plane's default); a field set is
//! enforced; `null` clears an optional cap (`rpm: null`). Lists and maps (deployments,
//! `models_allowed`, `metadata`, `tags`) are replaced whole when given.

use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashSet};
use tollgate_core::{Money, OnBreach, ScopeKind, Threshold, Timestamp, Window};

/// The whole file. Sections may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    /// The format version; 1 when left out.
    #[serde(default)]
    pub(crate) version: Option<u32>,
    #[serde(default)]
    pub(crate) providers: Vec<Provider>,
    #[serde(default)]
    pub(crate) models: Vec<Model>,
    #[serde(default)]
    pub(crate) organizations: Vec<Organization>,
    #[serde(default)]
    pub(crate) teams: Vec<Team>,
    #[serde(default)]
    pub(crate) budgets: Vec<Budget>,
    #[serde(default)]
    pub(crate) keys: Vec<Key>,
}

/// A provider credential, by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Provider {
    pub(crate) name: String,
    /// Fixed once created.
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) base_url: Option<String>,
    /// The environment variable holding the API key; the key itself never appears in
    /// the file.
    #[serde(default)]
    pub(crate) api_key_env: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) rpm: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) tpm: Option<Option<u64>>,
    #[serde(default)]
    pub(crate) priority: Option<i32>,
    /// Kind-specific settings (an object).
    #[serde(default)]
    pub(crate) extra: Option<serde_json::Value>,
}

/// Prices in USD per 1M tokens: decimal strings (`"2.50"`) or numbers, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pricing {
    pub(crate) input_per_mtok: Usd,
    pub(crate) output_per_mtok: Usd,
    #[serde(default)]
    pub(crate) cached_input_per_mtok: Option<Usd>,
    #[serde(default)]
    pub(crate) cache_write_per_mtok: Option<Usd>,
}

/// Where a model is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Deployment {
    pub(crate) provider: String,
    pub(crate) model: String,
    /// Lower first; 0 when left out.
    #[serde(default)]
    pub(crate) priority: u32,
    /// Share under the weighted strategy; 1 when left out.
    #[serde(default = "one")]
    pub(crate) weight: u32,
    /// What requests it serves are charged, when not the model's price.
    #[serde(default)]
    pub(crate) pricing: Option<Pricing>,
}

fn one() -> u32 {
    1
}

/// A model of the catalog, by public name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Model {
    pub(crate) name: String,
    /// In priority order; replaces the stored list when it differs.
    pub(crate) deployments: Vec<Deployment>,
    #[serde(default)]
    pub(crate) pricing: Option<Pricing>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) max_output_tokens: Option<Option<u64>>,
    /// `{image: N, audio: N, file: N}` (any subset; a kind left out has no cap); `null`
    /// clears them all.
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) max_tokens_per_part: Option<Option<TokensPerPart>>,
}

/// The most tokens one part of each kind may count for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokensPerPart {
    #[serde(default)]
    pub(crate) image: Option<u64>,
    #[serde(default)]
    pub(crate) audio: Option<u64>,
    #[serde(default)]
    pub(crate) file: Option<u64>,
}

/// An organization, by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Organization {
    pub(crate) name: String,
}

/// A team, by name, with its projects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Team {
    pub(crate) name: String,
    /// Organization name; the default organization when left out.
    #[serde(default)]
    pub(crate) organization: Option<String>,
    #[serde(default)]
    pub(crate) projects: Vec<Project>,
}

/// A project, by name inside its team.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Project {
    pub(crate) name: String,
}

/// A budget, identified by scope, target and window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Budget {
    /// organization | team | project | principal (a key's budget goes on the key).
    pub(crate) scope: ScopeKind,
    /// Organization name, team name, `team/project`, or the principal id.
    pub(crate) target: String,
    pub(crate) window: Window,
    /// Exactly one of `limit_usd` and `limit_tokens`.
    #[serde(default)]
    pub(crate) limit_usd: Option<Usd>,
    #[serde(default)]
    pub(crate) limit_tokens: Option<u64>,
    /// block, warn or clamp; block for a new budget when left out.
    #[serde(default)]
    pub(crate) on_breach: Option<OnBreach>,
    /// Fractions of the limit, e.g. `[0.5, 0.8]`.
    #[serde(default)]
    pub(crate) alert_thresholds: Option<Vec<Threshold>>,
    /// With `on_breach: clamp`: the fewest output tokens a request may be clamped to.
    #[serde(default)]
    pub(crate) clamp_floor_tokens: Option<u64>,
}

/// The part of a budget that apply keeps in line: the limit, the breach behaviour and
/// the alerts.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) limit_usd: Option<Usd>,
    pub(crate) limit_tokens: Option<u64>,
    pub(crate) on_breach: Option<OnBreach>,
    pub(crate) alert_thresholds: Option<Vec<Threshold>>,
    pub(crate) clamp_floor_tokens: Option<u64>,
}

macro_rules! limits_of {
    ($t:ty) => {
        impl $t {
            /// The limit, breach behaviour and alerts.
            pub(crate) fn limits(&self) -> Limits {
                Limits {
                    limit_usd: self.limit_usd,
                    limit_tokens: self.limit_tokens,
                    on_breach: self.on_breach,
                    alert_thresholds: self.alert_thresholds.clone(),
                    clamp_floor_tokens: self.clamp_floor_tokens,
                }
            }
        }
    };
}
limits_of!(Budget);
limits_of!(KeyBudget);

/// A key's own budget (scope virtual_key), identified by the key and the window. It
/// repeats `Budget`'s limit fields rather than sharing them through `#[serde(flatten)]`,
/// which does not work with `deny_unknown_fields` (unknown fields would pass silently).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBudget {
    pub(crate) window: Window,
    /// Exactly one of `limit_usd` and `limit_tokens`.
    #[serde(default)]
    pub(crate) limit_usd: Option<Usd>,
    #[serde(default)]
    pub(crate) limit_tokens: Option<u64>,
    /// block, warn or clamp; block for a new budget when left out.
    #[serde(default)]
    pub(crate) on_breach: Option<OnBreach>,
    /// Fractions of the limit, e.g. `[0.5, 0.8]`.
    #[serde(default)]
    pub(crate) alert_thresholds: Option<Vec<Threshold>>,
    /// With `on_breach: clamp`: the fewest output tokens a request may be clamped to.
    #[serde(default)]
    pub(crate) clamp_floor_tokens: Option<u64>,
}

/// A virtual key, identified by its project and name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Key {
    pub(crate) name: String,
    /// `team/project`.
    pub(crate) project: String,
    /// Fixed once created.
    #[serde(default)]
    pub(crate) principal: Option<String>,
    #[serde(default)]
    pub(crate) models_allowed: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) rpm: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) max_concurrency: Option<Option<u32>>,
    #[serde(default)]
    pub(crate) metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) expires_at: Option<Option<Timestamp>>,
    #[serde(default)]
    pub(crate) budget: Option<KeyBudget>,
}

/// A USD amount that is never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usd(pub(crate) Money);

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = Money::deserialize(d)?;
        if m.is_negative() {
            return Err(serde::de::Error::custom(format!("must not be negative (got {m})")));
        }
        Ok(Usd(m))
    }
}

/// Absent: `None`; `null`: `Some(None)`; a value: `Some(Some(v))`.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Parses the file, naming the path of the first value that does not fit.
pub(crate) fn parse(text: &str) -> Result<File, String> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." { inner.to_string() } else { format!("{path}: {inner}") }
    })?;
    if file.version.is_some_and(|v| v != 1) {
        return Err("version: only version 1 is known".into());
    }
    Ok(file)
}

/// A `team/project` reference, split.
pub(crate) fn project_ref(text: &str) -> Option<(&str, &str)> {
    text.split_once('/').filter(|(t, p)| !t.is_empty() && !p.is_empty() && !p.contains('/'))
}

/// The checks that need only the file and the environment; every error is returned.
pub(crate) fn check(file: &File, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut err = |path: String, msg: String| errors.push(format!("{path}: {msg}"));
    let mut names = HashSet::new();
    for (i, p) in file.providers.iter().enumerate() {
        name(&mut err, format!("providers[{i}].name"), &p.name);
        if !names.insert(p.name.as_str()) {
            err(format!("providers[{i}].name"), format!("provider {:?} appears twice", p.name));
        }
        if let Some(var) = &p.api_key_env
            && env(var).is_none_or(|v| v.is_empty())
        {
            err(format!("providers[{i}].api_key_env"), format!("environment variable {var} is not set"));
        }
        if p.extra.as_ref().is_some_and(|e| !e.is_object()) {
            err(format!("providers[{i}].extra"), "must be a map".into());
        }
    }
    let mut names = HashSet::new();
    for (i, m) in file.models.iter().enumerate() {
        name(&mut err, format!("models[{i}].name"), &m.name);
        if !names.insert(m.name.as_str()) {
            err(format!("models[{i}].name"), format!("model {:?} appears twice", m.name));
        }
        if m.deployments.is_empty() {
            err(format!("models[{i}].deployments"), "at least one deployment is required".into());
        }
    }
    let mut names = HashSet::new();
    for (i, o) in file.organizations.iter().enumerate() {
        name(&mut err, format!("organizations[{i}].name"), &o.name);
        if !names.insert(o.name.as_str()) {
            err(format!("organizations[{i}].name"), format!("organization {:?} appears twice", o.name));
        }
    }
    let mut names = HashSet::new();
    for (i, t) in file.teams.iter().enumerate() {
        name(&mut err, format!("teams[{i}].name"), &t.name);
        if t.name.contains('/') {
            err(format!("teams[{i}].name"), "must not contain '/' (it separates team and project)".into());
        }
        if !names.insert(t.name.as_str()) {
            err(format!("teams[{i}].name"), format!("team {:?} appears twice", t.name));
        }
        let mut projects = HashSet::new();
        for (j, p) in t.projects.iter().enumerate() {
            let path = format!("teams[{i}].projects[{j}].name");
            name(&mut err, path.clone(), &p.name);
            if p.name.contains('/') {
                err(path.clone(), "must not contain '/'".into());
            }
            if !projects.insert(p.name.as_str()) {
                err(path, format!("project {:?} appears twice in team {:?}", p.name, t.name));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, b) in file.budgets.iter().enumerate() {
        let path = format!("budgets[{i}]");
        match b.scope {
            ScopeKind::VirtualKey => {
                err(format!("{path}.scope"), "a key's budget is given on the key (keys[].budget)".into());
            }
            ScopeKind::Project if project_ref(&b.target).is_none() => {
                err(format!("{path}.target"), format!("{:?} is not team/project", b.target));
            }
            _ => name(&mut err, format!("{path}.target"), &b.target),
        }
        limits(&mut err, &path, &b.limits());
        if !seen.insert((b.scope, b.target.as_str(), b.window)) {
            err(path, format!("a second {} budget on {} {:?}", b.window, b.scope, b.target));
        }
    }
    let mut seen = HashSet::new();
    for (i, k) in file.keys.iter().enumerate() {
        name(&mut err, format!("keys[{i}].name"), &k.name);
        if project_ref(&k.project).is_none() {
            err(format!("keys[{i}].project"), format!("{:?} is not team/project", k.project));
        }
        if !seen.insert((k.project.as_str(), k.name.as_str())) {
            err(format!("keys[{i}].name"), format!("key {:?} appears twice in project {:?}", k.name, k.project));
        }
        if let Some(b) = &k.budget {
            limits(&mut err, &format!("keys[{i}].budget"), &b.limits());
        }
    }
    errors
}

fn name(err: &mut impl FnMut(String, String), path: String, value: &str) {
    if value.trim().is_empty() {
        err(path, "must not be empty".into());
    } else if value.chars().any(char::is_control) {
        err(path, "must not contain control characters".into());
    }
}

fn limits(err: &mut impl FnMut(String, String), path: &str, l: &Limits) {
    match (l.limit_usd, l.limit_tokens) {
        (Some(_), Some(_)) => err(format!("{path}.limit_usd"), "give limit_usd or limit_tokens, not both".into()),
        (None, None) => err(format!("{path}.limit_usd"), "one of limit_usd and limit_tokens is required".into()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(f) => check(&f, &|v| (v == "SET").then(|| "sk-x".to_owned())),
            Err(e) => vec![e],
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let e = errors_of("keys:\n  - name: a\n    project: t/p\n  - name: b\n    project: t/p\n    colour: red\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("keys[1]") && e[0].contains("colour"), "{e:?}");
        let e = errors_of("providrs: []\n");
        assert!(e[0].contains("providrs"), "{e:?}");
    }

    #[test]
    fn money_is_exact_and_never_negative() {
        let f = parse("budgets:\n  - {scope: team, target: t, window: month, limit_usd: \"500.10\"}\n").unwrap();
        assert_eq!(f.budgets[0].limit_usd, Some(Usd(Money::from_nanos(500_100_000_000))));
        let f = parse("budgets:\n  - {scope: team, target: t, window: month, limit_usd: 0.1}\n").unwrap();
        assert_eq!(f.budgets[0].limit_usd, Some(Usd(Money::from_nanos(100_000_000))));
        let e = errors_of("budgets:\n  - {scope: team, target: t, window: month, limit_usd: -5}\n");
        assert!(e[0].starts_with("budgets[0].limit_usd") && e[0].contains("negative"), "{e:?}");
    }

    #[test]
    fn semantic_errors_name_every_path() {
        let text = "
providers:
  - {name: a, kind: openai, api_key_env: UNSET_VAR}
  - {name: a, kind: openai, api_key_env: SET}
budgets:
  - {scope: project, target: nope, window: day, limit_usd: 1}
  - {scope: team, target: t, window: day}
keys:
  - {name: k, project: t/p}
  - {name: k, project: t/p}
  - {name: '', project: tp}
";
        let e = errors_of(text);
        for want in [
            "providers[0].api_key_env: environment variable UNSET_VAR is not set",
            "providers[1].name: provider \"a\" appears twice",
            "budgets[0].target: \"nope\" is not team/project",
            "budgets[1].limit_usd: one of limit_usd and limit_tokens is required",
            "keys[1].name: key \"k\" appears twice",
            "keys[2].name: must not be empty",
            "keys[2].project: \"tp\" is not team/project",
        ] {
            assert!(e.iter().any(|x| x.starts_with(want)), "{want:?} not in {e:#?}");
        }
    }

    #[test]
    fn null_clears_and_absence_leaves_alone() {
        let f = parse("keys:\n  - {name: k, project: t/p, rpm: null, tpm: 5}\n").unwrap();
        assert_eq!((f.keys[0].rpm, f.keys[0].tpm, f.keys[0].max_concurrency), (Some(None), Some(Some(5)), None));
    }

    #[test]
    fn fractions_are_thousandths_in_zero_to_one() {
        let f = parse("budgets:\n  - {scope: team, target: t, window: day, limit_tokens: 5, alert_thresholds: [0.8, \"0.125\", 1]}\n")
            .unwrap();
        let t = f.budgets[0].alert_thresholds.clone().unwrap();
        assert_eq!(t.iter().map(|f| f.permille()).collect::<Vec<_>>(), [800, 125, 1000]);
        assert_eq!(t.iter().map(|f| f.to_string()).collect::<Vec<_>>(), ["0.8", "0.125", "1.0"]);
        for bad in ["0", "1.5", "0.0001"] {
            let text = format!(
                "budgets:\n  - {{scope: team, target: t, window: day, limit_tokens: 5, alert_thresholds: [{bad}]}}\n"
            );
            let e = errors_of(&text);
            assert!(e[0].starts_with("budgets[0].alert_thresholds[0]"), "{bad}: {e:?}");
        }
    }
}
