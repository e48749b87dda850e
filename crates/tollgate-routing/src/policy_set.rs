//! Which routing policy applies to a request: the key's, else its project's, else its
//! team's, else its organization's, else the gateway default.
//!
//! The most specific policy applies whole; policies are not merged field by field, so
//! what a key gets is always one policy an operator wrote (or the default) and can be
//! read in one place. Resolution is at most four hash-map probes on ids the request
//! already holds, and none for levels where no policy is set; nothing is allocated.

use crate::policy::RoutingPolicy;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::{KeyId, OrgId, ProjectId, TeamId};

/// Where a policy is attached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PolicyScope {
    /// Every request of an organization without a more specific policy.
    Organization(OrgId),
    /// A team's requests, over its organization's policy.
    Team(TeamId),
    /// A project's requests, over its team's.
    Project(ProjectId),
    /// One virtual key's requests, over everything else.
    Key(KeyId),
}

/// Which level a resolved policy came from (for traces and `x-tollgate-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicySource {
    /// The key's own policy.
    Key,
    /// The key's project's.
    Project,
    /// The key's team's.
    Team,
    /// The key's organization's.
    Organization,
    /// No policy attached anywhere: the gateway default.
    Default,
}

impl PolicySource {
    /// A stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::Key => "key",
            PolicySource::Project => "project",
            PolicySource::Team => "team",
            PolicySource::Organization => "organization",
            PolicySource::Default => "default",
        }
    }
}

/// The ids a request's policy is resolved from (all on the authenticated key).
#[derive(Debug, Clone, Copy)]
pub struct PolicySubject<'a> {
    /// The virtual key.
    pub key: &'a KeyId,
    /// Its project.
    pub project: &'a ProjectId,
    /// Its team.
    pub team: &'a TeamId,
    /// Its organization.
    pub org: &'a OrgId,
}

/// Every routing policy of a snapshot, by where it is attached.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    default: Arc<RoutingPolicy>,
    keys: HashMap<KeyId, Arc<RoutingPolicy>>,
    projects: HashMap<ProjectId, Arc<RoutingPolicy>>,
    teams: HashMap<TeamId, Arc<RoutingPolicy>>,
    orgs: HashMap<OrgId, Arc<RoutingPolicy>>,
}

impl PolicySet {
    /// No policies: every request gets [`RoutingPolicy::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// No policies, and `default` for requests nothing more specific applies to (the
    /// gateway-wide default, e.g. from its command line).
    pub fn with_default(default: RoutingPolicy) -> Self {
        PolicySet { default: Arc::new(default), ..Self::default() }
    }

    /// Attaches (or replaces) the policy of a scope.
    pub fn insert(&mut self, scope: PolicyScope, policy: RoutingPolicy) {
        let policy = Arc::new(policy);
        match scope {
            PolicyScope::Key(id) => self.keys.insert(id, policy),
            PolicyScope::Project(id) => self.projects.insert(id, policy),
            PolicyScope::Team(id) => self.teams.insert(id, policy),
            PolicyScope::Organization(id) => self.orgs.insert(id, policy),
        };
    }

    /// Detaches the policy of a scope, returning it.
    pub fn remove(&mut self, scope: &PolicyScope) -> Option<Arc<RoutingPolicy>> {
        match scope {
            PolicyScope::Key(id) => self.keys.remove(id),
            PolicyScope::Project(id) => self.projects.remove(id),
            PolicyScope::Team(id) => self.teams.remove(id),
            PolicyScope::Organization(id) => self.orgs.remove(id),
        }
    }

    /// The policy attached to exactly this scope (no fallback).
    pub fn get(&self, scope: &PolicyScope) -> Option<&Arc<RoutingPolicy>> {
        match scope {
            PolicyScope::Key(id) => self.keys.get(id),
            PolicyScope::Project(id) => self.projects.get(id),
            PolicyScope::Team(id) => self.teams.get(id),
            PolicyScope::Organization(id) => self.orgs.get(id),
        }
    }

    /// The policy for a request: key > project > team > organization > default.
    pub fn resolve(&self, subject: PolicySubject<'_>) -> &RoutingPolicy {
        self.resolve_with_source(subject).0
    }

    /// Like [`PolicySet::resolve`], also saying which level the policy came from.
    pub fn resolve_with_source(&self, s: PolicySubject<'_>) -> (&RoutingPolicy, PolicySource) {
        // `is_empty` first: most gateways attach policies at one or two levels, and an
        // empty level should cost nothing, not a hash of the id.
        if !self.keys.is_empty()
            && let Some(p) = self.keys.get(s.key)
        {
            return (p, PolicySource::Key);
        }
        if !self.projects.is_empty()
            && let Some(p) = self.projects.get(s.project)
        {
            return (p, PolicySource::Project);
        }
        if !self.teams.is_empty()
            && let Some(p) = self.teams.get(s.team)
        {
            return (p, PolicySource::Team);
        }
        if !self.orgs.is_empty()
            && let Some(p) = self.orgs.get(s.org)
        {
            return (p, PolicySource::Organization);
        }
        (&self.default, PolicySource::Default)
    }

    /// The policy used when nothing more specific is attached.
    pub fn default_policy(&self) -> &RoutingPolicy {
        &self.default
    }

    /// Number of attached policies (the default not counted).
    pub fn len(&self) -> usize {
        self.keys.len() + self.projects.len() + self.teams.len() + self.orgs.len()
    }

    /// True when no policy is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RawRoutingPolicy;

    fn attempts(n: i64) -> RoutingPolicy {
        RoutingPolicy::try_from(RawRoutingPolicy { max_attempts: Some(n), ..Default::default() }).unwrap()
    }

    /// Resolves for key `k`, project `p`, team `t`, org `o` and returns (max_attempts, source).
    fn check(set: &PolicySet, ids: (&str, &str, &str, &str)) -> (u32, &'static str) {
        let (k, p, t, o) = (KeyId::new(ids.0), ProjectId::new(ids.1), TeamId::new(ids.2), OrgId::new(ids.3));
        let (policy, source) = set.resolve_with_source(PolicySubject { key: &k, project: &p, team: &t, org: &o });
        (policy.max_attempts(), source.as_str())
    }

    #[test]
    fn the_most_specific_policy_wins_key_project_team_org_default() {
        let mut set = PolicySet::with_default(attempts(1));
        assert_eq!(check(&set, ("k1", "p1", "t1", "o1")), (1, "default"));
        set.insert(PolicyScope::Organization("o1".into()), attempts(2));
        assert_eq!(check(&set, ("k1", "p1", "t1", "o1")), (2, "organization"));
        set.insert(PolicyScope::Team("t1".into()), attempts(3));
        assert_eq!(check(&set, ("k1", "p1", "t1", "o1")), (3, "team"));
        set.insert(PolicyScope::Project("p1".into()), attempts(4));
        assert_eq!(check(&set, ("k1", "p1", "t1", "o1")), (4, "project"));
        set.insert(PolicyScope::Key("k1".into()), attempts(5));
        assert_eq!(check(&set, ("k1", "p1", "t1", "o1")), (5, "key"));
        // Siblings are untouched by each other's policies.
        assert_eq!(check(&set, ("k2", "p1", "t1", "o1")), (4, "project"));
        assert_eq!(check(&set, ("k3", "p2", "t1", "o1")), (3, "team"));
        assert_eq!(check(&set, ("k4", "p3", "t2", "o1")), (2, "organization"));
        assert_eq!(check(&set, ("k5", "p4", "t3", "o2")), (1, "default"));
        assert_eq!(set.len(), 4);
        // Detaching falls back to the next level.
        set.remove(&PolicyScope::Key("k1".into()));
        assert_eq!(check(&set, ("k1", "p1", "t1", "o1")), (4, "project"));
        assert_eq!(set.get(&PolicyScope::Team("t1".into())).unwrap().max_attempts(), 3);
    }

    #[test]
    fn ids_of_different_levels_never_collide() {
        // The same string as a key id and as an org id are different scopes.
        let mut set = PolicySet::new();
        set.insert(PolicyScope::Organization("same".into()), attempts(7));
        assert_eq!(check(&set, ("same", "same", "same", "other")), (3, "default"));
        assert_eq!(check(&set, ("x", "y", "z", "same")), (7, "organization"));
    }
}
