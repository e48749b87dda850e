//! The plan: what apply creates or changes, field by field, computed from the file and
//! the state before anything is written. Every reference (a deployment's provider, a
//! key's project, a budget's target) is resolved here or refused with the path of the
//! value that names it, so a bad file writes nothing.

use super::file::{self, File, Limits, Pricing, project_ref};
use super::state::State;
use std::collections::{BTreeMap, HashMap};
use tollgate_core::{Money, ScopeKind, Threshold, Timestamp};
use tollgate_proto::v1;

/// The organization teams go to when the file names none.
const DEFAULT_ORG: &str = "default";

/// Create or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    Update,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
        }
    }
}

/// One field's change; a secret is never shown, only `(set)` or `(changed)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diff {
    pub(crate) field: String,
    /// `None` for a new object's field, or an optional field that was unset.
    pub(crate) old: Option<String>,
    /// `None` for a cleared field.
    pub(crate) new: Option<String>,
}

/// A budget's target as the file names it, resolved to an id when the change runs (it
/// may be created earlier in the same apply).
#[derive(Debug, Clone)]
pub(crate) enum TargetRef {
    Org(String),
    Team(String),
    /// `team/project`.
    Project(String),
    /// Free-form: the id itself.
    Principal(String),
    /// `team/project` and key name.
    Key(String, String),
}

/// The call a change makes.
#[derive(Debug)]
pub(crate) enum Op {
    CreateProvider(v1::CreateProviderRequest),
    UpdateProvider(v1::UpdateProviderRequest),
    CreateModel(v1::CreateModelRequest),
    UpdateModel(v1::UpdateModelRequest),
    CreateOrg(String),
    /// Team name and organization name (`None`: the default organization).
    CreateTeam(String, Option<String>),
    /// Team name and project name.
    CreateProject(String, String),
    CreateBudget(TargetRef, v1::CreateBudgetRequest),
    UpdateBudget(v1::UpdateBudgetRequest),
    /// `team/project` and the request (its project filled in when it runs).
    CreateKey(String, v1::CreateKeyRequest),
    UpdateKey(v1::UpdateKeyRequest),
}

/// One object to create or update.
#[derive(Debug)]
pub(crate) struct Change {
    /// provider, model, organization, team, project, budget, key.
    pub(crate) kind: &'static str,
    /// How the file identifies it.
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) diffs: Vec<Diff>,
    pub(crate) op: Op,
}

/// Ids of the objects the plan refers to by name, filled from the state and, as the
/// plan runs, from what it creates.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    pub(crate) orgs: HashMap<String, String>,
    pub(crate) teams: HashMap<String, String>,
    /// By `team/project`.
    pub(crate) projects: HashMap<String, String>,
    /// By `team/project` and key name.
    pub(crate) keys: HashMap<(String, String), String>,
}

/// Everything apply will do, in dependency order.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) changes: Vec<Change>,
    /// Objects of the file that already match it.
    pub(crate) unchanged: usize,
    pub(crate) ids: Ids,
}

/// A reference resolved against the file and the state.
enum Ref {
    /// Exists, with this id.
    Existing(String),
    /// Is created by this apply.
    New,
}

fn d(field: impl Into<String>, old: Option<String>, new: Option<String>) -> Diff {
    Diff { field: field.into(), old, new }
}

fn usd(m: Money) -> String {
    m.to_string()
}

/// A money amount as the API writes it; an unreadable one compares unequal to anything.
fn money_of(text: &str) -> Option<Money> {
    Money::parse_usd(text).ok()
}

/// `sha256:` and the first 12 hex digits of the SHA-256 of a credential, as the control
/// plane fingerprints the one it stores.
pub(crate) fn fingerprint(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn wire_pricing(p: &Pricing) -> v1::Pricing {
    v1::Pricing {
        input_per_mtok_nanos: p.input_per_mtok.0.nanos(),
        output_per_mtok_nanos: p.output_per_mtok.0.nanos(),
        cached_input_per_mtok_nanos: p.cached_input_per_mtok.map(|m| m.0.nanos()),
        cache_write_per_mtok_nanos: p.cache_write_per_mtok.map(|m| m.0.nanos()),
    }
}

fn model_pricing(p: &Pricing) -> v1::ModelPricing {
    v1::ModelPricing {
        input_per_mtok: usd(p.input_per_mtok.0),
        output_per_mtok: usd(p.output_per_mtok.0),
        cached_input_per_mtok: p.cached_input_per_mtok.map(|m| usd(m.0)),
        cache_write_per_mtok: p.cache_write_per_mtok.map(|m| usd(m.0)),
    }
}

fn wire_deployment(d: &file::Deployment) -> v1::Deployment {
    v1::Deployment {
        provider: d.provider.clone(),
        model: d.model.clone(),
        priority: d.priority,
        weight: Some(d.weight),
        pricing: d.pricing.as_ref().map(wire_pricing),
    }
}

/// A deployment list as one line: `openai/gpt-4o (priority 0, weight 1), ...`.
fn render_deployments(ds: &[v1::Deployment]) -> String {
    ds.iter()
        .map(|d| {
            let mut s =
                format!("{}/{} (priority {}, weight {})", d.provider, d.model, d.priority, d.weight.unwrap_or(1));
            if let Some(p) = &d.pricing {
                s.push_str(&format!(
                    " at {}/{}",
                    Money::from_nanos(p.input_per_mtok_nanos),
                    Money::from_nanos(p.output_per_mtok_nanos)
                ));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deployments compared as the control plane stores them (an unset weight is 1).
fn same_deployments(a: &[v1::Deployment], b: &[v1::Deployment]) -> bool {
    let norm = |d: &v1::Deployment| v1::Deployment { weight: Some(d.weight.unwrap_or(1)), ..d.clone() };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| norm(x) == norm(y))
}

fn list(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

fn map(m: &BTreeMap<String, String>) -> String {
    format!("{{{}}}", m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))
}

fn fractions(f: &[Threshold]) -> Vec<String> {
    f.iter().map(|x| x.to_string()).collect()
}

/// Per-mille values sorted and deduplicated, as the control plane keeps them.
fn permilles(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v.dedup();
    v
}

fn permille_text(p: u32) -> String {
    // A stored value is always a valid threshold; show anything else as it is.
    u16::try_from(p).ok().and_then(Threshold::from_permille).map_or_else(|| format!("{p}‰"), |t| t.to_string())
}

/// A cap the file may set (`Some(Some)`), clear (`Some(None)`) or leave alone (`None`);
/// returns the diff and what to send when it differs from `current`.
fn cap<T: PartialEq + Copy + ToString>(
    field: &str,
    want: Option<Option<T>>,
    current: Option<T>,
    diffs: &mut Vec<Diff>,
) -> Option<Option<T>> {
    let want = want?;
    if want == current {
        return None;
    }
    diffs.push(d(field, current.map(|v| v.to_string()), want.map(|v| v.to_string())));
    Some(want)
}

struct Planner<'a> {
    file: &'a File,
    state: &'a State,
    errors: Vec<String>,
    plan: Plan,
    now: Timestamp,
}

/// Plans `file` against `state`; `secrets` holds the value of every `api_key_env`
/// variable. Returns every error found, each naming its path.
pub(crate) fn plan(
    file: &File,
    secrets: &HashMap<String, String>,
    state: &State,
    now: Timestamp,
) -> Result<Plan, Vec<String>> {
    let mut p = Planner { file, state, errors: Vec::new(), plan: Plan::default(), now };
    p.providers(secrets);
    p.models();
    p.orgs();
    p.teams();
    p.budgets();
    p.keys();
    if p.errors.is_empty() { Ok(p.plan) } else { Err(p.errors) }
}

impl Planner<'_> {
    fn error(&mut self, path: String, msg: String) {
        self.errors.push(format!("{path}: {msg}"));
    }

    fn change(&mut self, kind: &'static str, name: String, action: Action, diffs: Vec<Diff>, op: Op) {
        self.plan.changes.push(Change { kind, name, action, diffs, op });
    }

    fn providers(&mut self, secrets: &HashMap<String, String>) {
        for (i, p) in self.file.providers.iter().enumerate() {
            let key = p.api_key_env.as_ref().and_then(|v| secrets.get(v));
            let extra = p.extra.as_ref().map(ToString::to_string);
            let base_url = p.base_url.as_deref().map(|u| u.trim_end_matches('/').to_owned());
            let Some(cur) = self.state.providers.get(&p.name) else {
                let mut diffs = vec![d("kind", None, Some(p.kind.clone()))];
                diffs.extend(base_url.clone().map(|u| d("base_url", None, Some(u))));
                diffs.extend(key.map(|_| d("api_key", None, Some("(set)".into()))));
                diffs.extend(p.rpm.flatten().map(|v| d("rpm", None, Some(v.to_string()))));
                diffs.extend(p.tpm.flatten().map(|v| d("tpm", None, Some(v.to_string()))));
                diffs.extend(p.priority.map(|v| d("priority", None, Some(v.to_string()))));
                diffs.extend(extra.clone().map(|e| d("extra", None, Some(e))));
                let req = v1::CreateProviderRequest {
                    name: p.name.clone(),
                    kind: p.kind.clone(),
                    base_url,
                    api_key: key.cloned(),
                    rpm: p.rpm.flatten(),
                    tpm: p.tpm.flatten(),
                    priority: p.priority,
                    extra_json: extra,
                };
                self.change("provider", p.name.clone(), Action::Create, diffs, Op::CreateProvider(req));
                continue;
            };
            if cur.kind != p.kind {
                self.error(
                    format!("providers[{i}].kind"),
                    format!(
                        "provider {:?} is of kind {}; a provider's kind cannot change (spell it as the control plane does)",
                        p.name, cur.kind
                    ),
                );
                continue;
            }
            let mut diffs = Vec::new();
            let mut req = v1::UpdateProviderRequest { provider: cur.id.clone(), ..Default::default() };
            if let Some(u) = base_url.filter(|u| *u != cur.base_url) {
                diffs.push(d("base_url", Some(cur.base_url.clone()), Some(u.clone())));
                req.base_url = Some(u);
            }
            if let Some(k) = key.filter(|k| fingerprint(k) != cur.api_key_fingerprint) {
                let old = (!cur.api_key_fingerprint.is_empty()).then(|| "(hidden)".to_owned());
                diffs.push(d("api_key", old, Some("(changed)".into())));
                req.api_key = Some(k.clone());
            }
            let rpm = cap("rpm", p.rpm, cur.rpm, &mut diffs);
            (req.rpm, req.clear_rpm) = (rpm.flatten(), rpm.is_some_and(|v| v.is_none()));
            let tpm = cap("tpm", p.tpm, cur.tpm, &mut diffs);
            (req.tpm, req.clear_tpm) = (tpm.flatten(), tpm.is_some_and(|v| v.is_none()));
            if let Some(prio) = p.priority.filter(|v| *v != cur.priority) {
                diffs.push(d("priority", Some(cur.priority.to_string()), Some(prio.to_string())));
                req.priority = Some(prio);
            }
            if let Some(e) = &p.extra {
                let current: serde_json::Value =
                    serde_json::from_str(&cur.extra_json).unwrap_or(serde_json::Value::Null);
                if *e != current {
                    let old = (!current.is_null()).then(|| current.to_string());
                    diffs.push(d("extra", old, Some(e.to_string())));
                    req.extra_json = Some(e.to_string());
                }
            }
            self.update_or_keep("provider", p.name.clone(), diffs, Op::UpdateProvider(req));
        }
    }

    fn update_or_keep(&mut self, kind: &'static str, name: String, diffs: Vec<Diff>, op: Op) {
        if diffs.is_empty() {
            self.plan.unchanged += 1;
        } else {
            self.change(kind, name, Action::Update, diffs, op);
        }
    }

    fn models(&mut self) {
        for (i, m) in self.file.models.iter().enumerate() {
            for (j, dep) in m.deployments.iter().enumerate() {
                let known = self.file.providers.iter().any(|p| p.name == dep.provider)
                    || self.state.providers.contains_key(&dep.provider);
                if !known {
                    self.error(
                        format!("models[{i}].deployments[{j}].provider"),
                        format!("no provider {:?} in the file or on the control plane", dep.provider),
                    );
                }
            }
            let deployments: Vec<v1::Deployment> = m.deployments.iter().map(wire_deployment).collect();
            let Some(cur) = self.state.models.get(&m.name) else {
                let mut diffs = vec![d("deployments", None, Some(render_deployments(&deployments)))];
                if let Some(p) = &m.pricing {
                    diffs.extend(pricing_diffs(p, None));
                }
                diffs.extend(m.max_output_tokens.flatten().map(|v| d("max_output_tokens", None, Some(v.to_string()))));
                let parts = m.max_tokens_per_part.flatten().map(wire_parts);
                diffs.extend(parts.as_ref().map(|t| d("max_tokens_per_part", None, Some(render_parts(Some(t))))));
                let req = v1::CreateModelRequest {
                    name: m.name.clone(),
                    deployments,
                    pricing: m.pricing.as_ref().map(model_pricing),
                    max_output_tokens: m.max_output_tokens.flatten(),
                    max_tokens_per_part: parts,
                };
                self.change("model", m.name.clone(), Action::Create, diffs, Op::CreateModel(req));
                continue;
            };
            let mut diffs = Vec::new();
            let mut req = v1::UpdateModelRequest { model: cur.id.clone(), ..Default::default() };
            if !same_deployments(&deployments, &cur.deployments) {
                diffs.push(d(
                    "deployments",
                    Some(render_deployments(&cur.deployments)),
                    Some(render_deployments(&deployments)),
                ));
                req.deployments = Some(v1::DeploymentList { deployments });
            }
            if let Some(p) = &m.pricing {
                let changed = pricing_diffs(p, Some(cur));
                if !changed.is_empty() {
                    diffs.extend(changed);
                    req.pricing = Some(model_pricing(p));
                }
            }
            let current = cur.max_output_tokens.and_then(|v| u64::try_from(v).ok());
            let out = cap("max_output_tokens", m.max_output_tokens, current, &mut diffs);
            (req.max_output_tokens, req.clear_max_output_tokens) = (out.flatten(), out.is_some_and(|v| v.is_none()));
            if let Some(want) = m.max_tokens_per_part {
                // No maximum at all reads back as an unset message.
                let want = want.map(wire_parts).filter(|t| *t != v1::TokensPerPart::default());
                let have = cur.max_tokens_per_part.filter(|t| *t != v1::TokensPerPart::default());
                if want != have {
                    diffs.push(d(
                        "max_tokens_per_part",
                        Some(render_parts(have.as_ref())),
                        Some(render_parts(want.as_ref())),
                    ));
                    req.clear_max_tokens_per_part = want.is_none();
                    req.max_tokens_per_part = want;
                }
            }
            self.update_or_keep("model", m.name.clone(), diffs, Op::UpdateModel(req));
        }
    }

    fn orgs(&mut self) {
        for o in &self.state.orgs {
            self.plan.ids.orgs.insert(o.name.clone(), o.id.clone());
        }
        for o in &self.file.organizations {
            if self.plan.ids.orgs.contains_key(&o.name) {
                self.plan.unchanged += 1;
            } else {
                self.change("organization", o.name.clone(), Action::Create, Vec::new(), Op::CreateOrg(o.name.clone()));
            }
        }
    }

    fn teams(&mut self) {
        // Every team before any project, so the plan reads in dependency order.
        let mut projects = Vec::new();
        for (i, t) in self.file.teams.iter().enumerate() {
            let org = t.organization.as_deref().unwrap_or(DEFAULT_ORG);
            let org_in_file = self.file.organizations.iter().any(|o| o.name == org);
            let org_id = self.plan.ids.orgs.get(org).cloned();
            if org_id.is_none() && !org_in_file {
                self.error(
                    format!("teams[{i}].organization"),
                    format!("no organization {org:?} in the file or on the control plane"),
                );
                continue;
            }
            let existing =
                self.state.teams.iter().find(|x| x.name == t.name && org_id.as_deref() == Some(x.org_id.as_str()));
            match existing {
                Some(team) => {
                    self.plan.ids.teams.insert(t.name.clone(), team.id.clone());
                    self.plan.unchanged += 1;
                }
                None => {
                    let diffs = vec![d("organization", None, Some(org.to_owned()))];
                    let op = Op::CreateTeam(t.name.clone(), t.organization.clone());
                    self.change("team", t.name.clone(), Action::Create, diffs, op);
                }
            }
            let team_id = existing.map(|x| x.id.clone());
            for p in &t.projects {
                let path = format!("{}/{}", t.name, p.name);
                let found = team_id.as_ref().and_then(|tid| {
                    self.state.projects.iter().find(|x| x.team_id == *tid && x.name == p.name).map(|x| x.id.clone())
                });
                match found {
                    Some(id) => {
                        self.plan.ids.projects.insert(path, id);
                        self.plan.unchanged += 1;
                    }
                    None => {
                        let op = Op::CreateProject(t.name.clone(), p.name.clone());
                        projects.push(Change {
                            kind: "project",
                            name: path,
                            action: Action::Create,
                            diffs: Vec::new(),
                            op,
                        });
                    }
                }
            }
        }
        self.plan.changes.extend(projects);
    }

    /// A team by name: the file's, or the one team of that name on the control plane.
    fn team(&self, name: &str) -> Result<Ref, String> {
        if self.file.teams.iter().any(|t| t.name == name) {
            return Ok(self.plan.ids.teams.get(name).cloned().map_or(Ref::New, Ref::Existing));
        }
        let found: Vec<&v1::TeamInfo> = self.state.teams.iter().filter(|t| t.name == name).collect();
        match found.as_slice() {
            [t] => Ok(Ref::Existing(t.id.clone())),
            [] => Err(format!("no team {name:?} in the file or on the control plane")),
            _ => Err(format!("{} teams are named {name:?}; list the one you mean under teams", found.len())),
        }
    }

    /// A project by `team/project`.
    fn project(&self, path: &str) -> Result<Ref, String> {
        let Some((team, name)) = project_ref(path) else {
            return Err(format!("{path:?} is not team/project"));
        };
        let in_file = self.file.teams.iter().any(|t| t.name == team && t.projects.iter().any(|p| p.name == name));
        let missing = || format!("no project {path:?} in the file or on the control plane");
        match self.team(team)? {
            Ref::Existing(tid) => match self.state.projects.iter().find(|p| p.team_id == tid && p.name == name) {
                Some(p) => Ok(Ref::Existing(p.id.clone())),
                None if in_file => Ok(Ref::New),
                None => Err(missing()),
            },
            Ref::New if in_file => Ok(Ref::New),
            Ref::New => Err(missing()),
        }
    }

    fn org(&self, name: &str) -> Result<Ref, String> {
        match self.plan.ids.orgs.get(name) {
            Some(id) => Ok(Ref::Existing(id.clone())),
            None if self.file.organizations.iter().any(|o| o.name == name) => Ok(Ref::New),
            None => Err(format!("no organization {name:?} in the file or on the control plane")),
        }
    }

    fn budgets(&mut self) {
        for (i, b) in self.file.budgets.iter().enumerate() {
            let (target, resolved) = match b.scope {
                ScopeKind::Organization => (TargetRef::Org(b.target.clone()), self.org(&b.target)),
                ScopeKind::Team => (TargetRef::Team(b.target.clone()), self.team(&b.target)),
                ScopeKind::Project => (TargetRef::Project(b.target.clone()), self.project(&b.target)),
                ScopeKind::Principal => (TargetRef::Principal(b.target.clone()), Ok(Ref::Existing(b.target.clone()))),
                // Refused by the file checks.
                ScopeKind::VirtualKey => continue,
            };
            let resolved = match resolved {
                Ok(r) => r,
                Err(e) => {
                    self.error(format!("budgets[{i}].target"), e);
                    continue;
                }
            };
            let name = format!("{} {} {}", b.scope, b.target, b.window);
            self.budget(format!("budgets[{i}]"), name, b.scope, target, resolved, b.window, &b.limits());
        }
    }

    /// One budget identified by scope, target and window: created, updated or kept.
    #[allow(clippy::too_many_arguments)]
    fn budget(
        &mut self,
        path: String,
        name: String,
        scope: ScopeKind,
        target: TargetRef,
        resolved: Ref,
        window: tollgate_core::Window,
        limits: &Limits,
    ) {
        let existing: Vec<&v1::BudgetInfo> = match &resolved {
            Ref::New => Vec::new(),
            Ref::Existing(id) => self
                .state
                .budgets
                .iter()
                .filter(|x| x.scope == scope.as_str() && x.scope_id == *id && x.window == window.as_str())
                .collect(),
        };
        match existing.as_slice() {
            [] => {
                let mut diffs = vec![limit_diff(limits, None)];
                diffs.extend(limits.on_breach.map(|o| d("on_breach", None, Some(o.as_str().to_owned()))));
                diffs.extend(limits.clamp_floor_tokens.map(|f| d("clamp_floor_tokens", None, Some(f.to_string()))));
                if let Some(t) = &limits.alert_thresholds {
                    diffs.push(d("alert_thresholds", None, Some(list(&fractions(t)))));
                }
                let req = v1::CreateBudgetRequest {
                    scope: scope.as_str().to_owned(),
                    scope_id: String::new(),
                    limit_usd: limits.limit_usd.map(|m| usd(m.0)),
                    limit_tokens: limits.limit_tokens,
                    window: window.as_str().to_owned(),
                    on_breach: limits.on_breach.map(|o| o.as_str().to_owned()),
                    alert_thresholds: limits.alert_thresholds.as_deref().map(fractions).unwrap_or_default(),
                    clamp_floor_tokens: limits.clamp_floor_tokens,
                };
                self.change("budget", name, Action::Create, diffs, Op::CreateBudget(target, req));
            }
            [cur] => {
                let (diffs, req) = budget_update(limits, cur);
                self.update_or_keep("budget", name, diffs, Op::UpdateBudget(req));
            }
            many => self.error(
                path,
                format!(
                    "{} {window} budgets exist on this target ({}); apply manages one: delete the others first",
                    many.len(),
                    many.iter().map(|b| b.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ),
        }
    }

    fn keys(&mut self) {
        for (i, k) in self.file.keys.iter().enumerate() {
            let project = match self.project(&k.project) {
                Ok(r) => r,
                Err(e) => {
                    self.error(format!("keys[{i}].project"), e);
                    continue;
                }
            };
            let name = format!("{}/{}", k.project, k.name);
            let existing: &[v1::KeyInfo] = match &project {
                Ref::Existing(pid) => {
                    self.plan.ids.projects.insert(k.project.clone(), pid.clone());
                    self.state.keys.get(&(pid.clone(), k.name.clone())).map(Vec::as_slice).unwrap_or_default()
                }
                Ref::New => &[],
            };
            match existing {
                [] => self.new_key(i, k, name),
                [cur] => {
                    self.plan.ids.keys.insert((k.project.clone(), k.name.clone()), cur.id.clone());
                    self.key_update(i, k, name.clone(), cur);
                    if let Some(b) = &k.budget {
                        let target = TargetRef::Key(k.project.clone(), k.name.clone());
                        let resolved = Ref::Existing(cur.id.clone());
                        let bname = format!("key {name} {}", b.window);
                        let path = format!("keys[{i}].budget");
                        self.budget(path, bname, ScopeKind::VirtualKey, target, resolved, b.window, &b.limits());
                    }
                }
                many => self.error(
                    format!("keys[{i}].name"),
                    format!("{} active keys in {} are named {:?}; apply manages one", many.len(), k.project, k.name),
                ),
            }
        }
    }

    fn new_key(&mut self, i: usize, k: &file::Key, name: String) {
        if let Some(Some(e)) = k.expires_at
            && e <= self.now
        {
            self.error(format!("keys[{i}].expires_at"), "must be in the future for a new key".into());
            return;
        }
        let mut diffs = Vec::new();
        diffs.extend(k.principal.clone().map(|p| d("principal", None, Some(p))));
        diffs.extend(k.models_allowed.as_deref().map(|m| d("models_allowed", None, Some(list(m)))));
        diffs.extend(k.rpm.flatten().map(|v| d("rpm", None, Some(v.to_string()))));
        diffs.extend(k.tpm.flatten().map(|v| d("tpm", None, Some(v.to_string()))));
        diffs.extend(k.max_concurrency.flatten().map(|v| d("max_concurrency", None, Some(v.to_string()))));
        diffs.extend(k.metadata.as_ref().map(|m| d("metadata", None, Some(map(m)))));
        diffs.extend(k.tags.as_deref().map(|t| d("tags", None, Some(list(t)))));
        diffs.extend(k.expires_at.flatten().map(|e| d("expires_at", None, Some(e.to_rfc3339()))));
        let budget = k.budget.as_ref().map(|b| {
            let l = b.limits();
            let mut limit = limit_diff(&l, None);
            limit.field = format!("budget.{} limit", b.window);
            diffs.push(limit);
            v1::BudgetSpec {
                limit_usd: l.limit_usd.map(|m| usd(m.0)).unwrap_or_default(),
                window: b.window.as_str().to_owned(),
                on_breach: l.on_breach.map(|o| o.as_str().to_owned()).unwrap_or_default(),
                limit_tokens: l.limit_tokens,
                alert_thresholds: l.alert_thresholds.as_deref().map(fractions).unwrap_or_default(),
                clamp_floor_tokens: l.clamp_floor_tokens,
            }
        });
        diffs.push(d("secret", None, Some("(minted on apply, shown once)".into())));
        let req = v1::CreateKeyRequest {
            project: String::new(),
            name: Some(k.name.clone()),
            principal: k.principal.clone(),
            models_allowed: k.models_allowed.clone().unwrap_or_default(),
            rpm: k.rpm.flatten(),
            tpm: k.tpm.flatten(),
            max_concurrency: k.max_concurrency.flatten(),
            metadata: k.metadata.clone().unwrap_or_default().into_iter().collect(),
            expires_at: k.expires_at.flatten().map(|e| e.to_rfc3339()),
            budget,
            tags: k.tags.clone().unwrap_or_default(),
        };
        self.change("key", name, Action::Create, diffs, Op::CreateKey(k.project.clone(), req));
    }

    fn key_update(&mut self, i: usize, k: &file::Key, name: String, cur: &v1::KeyInfo) {
        if let Some(p) = &k.principal
            && cur.principal.as_ref() != Some(p)
        {
            self.error(
                format!("keys[{i}].principal"),
                format!(
                    "key {name} belongs to principal {}; a key's principal cannot change (mint a new key)",
                    cur.principal.as_deref().unwrap_or("(none)")
                ),
            );
            return;
        }
        let mut diffs = Vec::new();
        let mut req = v1::UpdateKeyRequest { id: cur.id.clone(), ..Default::default() };
        if let Some(m) = k.models_allowed.as_ref().filter(|m| **m != cur.models_allowed) {
            diffs.push(d("models_allowed", Some(list(&cur.models_allowed)), Some(list(m))));
            req.models_allowed = Some(v1::StringList { values: m.clone() });
        }
        let rpm = cap("rpm", k.rpm, cur.rpm, &mut diffs);
        (req.rpm, req.clear_rpm) = (rpm.flatten(), rpm.is_some_and(|v| v.is_none()));
        let tpm = cap("tpm", k.tpm, cur.tpm, &mut diffs);
        (req.tpm, req.clear_tpm) = (tpm.flatten(), tpm.is_some_and(|v| v.is_none()));
        let conc = cap("max_concurrency", k.max_concurrency, cur.max_concurrency, &mut diffs);
        (req.max_concurrency, req.clear_max_concurrency) = (conc.flatten(), conc.is_some_and(|v| v.is_none()));
        let current_meta: BTreeMap<String, String> = cur.metadata.clone().into_iter().collect();
        if let Some(m) = k.metadata.as_ref().filter(|m| **m != current_meta) {
            diffs.push(d("metadata", Some(map(&current_meta)), Some(map(m))));
            req.metadata = Some(v1::StringMap { entries: m.clone().into_iter().collect() });
        }
        if let Some(t) = k.tags.as_ref().filter(|t| **t != cur.tags) {
            diffs.push(d("tags", Some(list(&cur.tags)), Some(list(t))));
            req.tags = Some(v1::StringList { values: t.clone() });
        }
        if let Some(want) = k.expires_at {
            let current = cur.expires_at.as_deref().and_then(|t| Timestamp::parse_rfc3339(t).ok());
            if want != current {
                diffs.push(d("expires_at", cur.expires_at.clone(), want.map(|e| e.to_rfc3339())));
                match want {
                    Some(e) => req.expires_at = Some(e.to_rfc3339()),
                    None => req.clear_expires_at = true,
                }
            }
        }
        self.update_or_keep("key", name, diffs, Op::UpdateKey(req));
    }
}

/// The limit of a budget as a diff from `current` (none for a new budget).
fn limit_diff(l: &Limits, current: Option<&v1::BudgetInfo>) -> Diff {
    let render = |usd_: Option<Money>, tokens: Option<u64>| match (usd_, tokens) {
        (_, Some(t)) => Some(format!("{t} tokens")),
        (Some(m), None) => Some(format!("${m}")),
        (None, None) => None,
    };
    let old = current.and_then(|c| render(money_of(&c.limit_usd), c.limit_tokens));
    d("limit", old, render(l.limit_usd.map(|m| m.0), l.limit_tokens))
}

/// What differs between the file's budget and the stored one, and the update that
/// makes them equal.
fn budget_update(l: &Limits, cur: &v1::BudgetInfo) -> (Vec<Diff>, v1::UpdateBudgetRequest) {
    let mut diffs = Vec::new();
    let mut req = v1::UpdateBudgetRequest { id: cur.id.clone(), ..Default::default() };
    let same_limit = match (l.limit_usd, l.limit_tokens) {
        (Some(m), _) => cur.limit_tokens.is_none() && money_of(&cur.limit_usd) == Some(m.0),
        (None, Some(t)) => cur.limit_tokens == Some(t),
        (None, None) => true,
    };
    if !same_limit {
        diffs.push(limit_diff(l, Some(cur)));
        req.limit_usd = l.limit_usd.map(|m| usd(m.0));
        req.limit_tokens = if l.limit_usd.is_some() { None } else { l.limit_tokens };
    }
    if let Some(o) = l.on_breach.filter(|o| o.as_str() != cur.on_breach) {
        diffs.push(d("on_breach", Some(cur.on_breach.clone()), Some(o.as_str().to_owned())));
        req.on_breach = Some(o.as_str().to_owned());
    }
    if let Some(f) = l.clamp_floor_tokens.filter(|f| cur.clamp_floor_tokens != Some(*f)) {
        diffs.push(d("clamp_floor_tokens", cur.clamp_floor_tokens.map(|c| c.to_string()), Some(f.to_string())));
        req.clamp_floor_tokens = Some(f);
    }
    if let Some(t) = &l.alert_thresholds {
        let want = permilles(t.iter().map(|f| u32::from(f.permille())).collect());
        let have = permilles(cur.alert_thresholds_permille.clone());
        if want != have {
            let text = |v: &[u32]| list(&v.iter().map(|p| permille_text(*p)).collect::<Vec<_>>());
            diffs.push(d("alert_thresholds", Some(text(&have)), Some(text(&want))));
            req.alert_thresholds = Some(v1::AlertThresholds { values: fractions(t) });
        }
    }
    (diffs, req)
}

/// Per-part maxima as sent on the wire.
fn wire_parts(t: file::TokensPerPart) -> v1::TokensPerPart {
    v1::TokensPerPart { image: t.image, audio: t.audio, file: t.file }
}

/// `image=1500,file=20000`, as `tollctl models --max-tokens-per-part` takes it; `none`
/// without any.
fn render_parts(t: Option<&v1::TokensPerPart>) -> String {
    let text = t
        .map(|t| {
            [("image", t.image), ("audio", t.audio), ("file", t.file)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    if text.is_empty() { "none".into() } else { text }
}

/// Field-level differences of the file's prices from the stored ones (all of them for
/// a new model).
fn pricing_diffs(p: &Pricing, cur: Option<&v1::ModelInfo>) -> Vec<Diff> {
    let fields = [
        ("pricing.input_per_mtok", Some(p.input_per_mtok.0), cur.and_then(|c| c.input_per_mtok.as_deref())),
        ("pricing.output_per_mtok", Some(p.output_per_mtok.0), cur.and_then(|c| c.output_per_mtok.as_deref())),
        (
            "pricing.cached_input_per_mtok",
            p.cached_input_per_mtok.map(|m| m.0),
            cur.and_then(|c| c.cached_input_per_mtok.as_deref()),
        ),
        (
            "pricing.cache_write_per_mtok",
            p.cache_write_per_mtok.map(|m| m.0),
            cur.and_then(|c| c.cache_write_per_mtok.as_deref()),
        ),
    ];
    fields
        .into_iter()
        .filter(|(_, want, have)| *want != have.and_then(money_of))
        .map(|(field, want, have)| d(field, have.map(str::to_owned), want.map(usd)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_sha256_prefixed_and_twelve_hex_digits() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(fingerprint("abc"), "sha256:ba7816bf8f01");
    }

    #[test]
    fn a_budget_matching_the_file_needs_no_update_and_a_changed_limit_only_that() {
        let cur = v1::BudgetInfo {
            id: "bud_1".into(),
            limit_usd: "500.00".into(),
            on_breach: "block".into(),
            alert_thresholds_permille: vec![500, 800],
            ..Default::default()
        };
        let same = Limits {
            limit_usd: Some(file::Usd(Money::from_nanos(500_000_000_000))),
            limit_tokens: None,
            on_breach: None,
            alert_thresholds: Some([800, 500].into_iter().filter_map(Threshold::from_permille).collect()),
            clamp_floor_tokens: None,
        };
        assert!(budget_update(&same, &cur).0.is_empty());
        let more = Limits { limit_usd: Some(file::Usd(Money::from_nanos(600_000_000_000))), ..same };
        let (diffs, req) = budget_update(&more, &cur);
        assert_eq!(diffs, [d("limit", Some("$500.00".into()), Some("$600.00".into()))]);
        assert_eq!((req.limit_usd.as_deref(), req.on_breach, req.alert_thresholds), (Some("600.00"), None, None));
    }

    #[test]
    fn a_budget_turned_to_clamp_sends_its_floor_only_when_it_differs() {
        let cur = v1::BudgetInfo {
            id: "bud_1".into(),
            limit_tokens: Some(1000),
            on_breach: "block".into(),
            ..Default::default()
        };
        let clamp = Limits {
            limit_usd: None,
            limit_tokens: Some(1000),
            on_breach: Some(tollgate_core::OnBreach::Clamp),
            alert_thresholds: None,
            clamp_floor_tokens: Some(32),
        };
        let (diffs, req) = budget_update(&clamp, &cur);
        assert_eq!(
            diffs,
            [
                d("on_breach", Some("block".into()), Some("clamp".into())),
                d("clamp_floor_tokens", None, Some("32".into()))
            ]
        );
        assert_eq!((req.on_breach.as_deref(), req.clamp_floor_tokens), (Some("clamp"), Some(32)));
        let stored = v1::BudgetInfo { on_breach: "clamp".into(), clamp_floor_tokens: Some(32), ..cur };
        assert!(budget_update(&clamp, &stored).0.is_empty(), "a matching clamp budget needs no update");
    }
}
