//! Who may do what: the authenticated [`Actor`], its [`Scope`]s and [`Tenancy`], and
//! [`Service::authorize`], the one check every management operation goes through.
//!
//! The rules, in order:
//! 1. The actor must hold the scope (`admin` implies every scope; `keys:write` implies
//!    `keys:read`, `budgets:write` implies `budgets:read`), else 403 `insufficient_scope`.
//! 2. Global operations (providers, models, teams, the audit trail, gateway calls) need
//!    an unbound token, else 403 `forbidden`.
//! 3. A resource outside a bound token's tenancy — another team's or project's, or one of
//!    the whole organization (organization and principal budgets, unbound tokens) —
//!    answers exactly as a missing one would (404, or the 400 "no project" of a create),
//!    so a tenant cannot learn what other tenants have. Lists and usage are filtered to
//!    the tenancy instead.

use super::Service;
use crate::ControlError;
use crate::secrets::{hashes_equal, token_hash};
use tollgate_core::{KeyId, ProjectId, ScopeKind, TeamId, Timestamp, TokenId};
use tollgate_store::{AdminTokenRecord, BudgetRecord, ProjectRecord};

/// A permission an admin token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read keys.
    KeysRead,
    /// Mint, update, rotate and revoke keys.
    KeysWrite,
    /// Read budgets.
    BudgetsRead,
    /// Create, change, reset and delete budgets.
    BudgetsWrite,
    /// Manage provider credentials (unbound tokens only).
    ProvidersWrite,
    /// Manage the model catalog (unbound tokens only).
    ModelsWrite,
    /// Read usage and the ledger.
    UsageRead,
    /// Read and verify the audit trail (unbound tokens only).
    AuditRead,
    /// Mint, list and revoke admin tokens.
    TokensWrite,
    /// What a split-mode gateway does: `Watch` the configuration (provider credentials
    /// included), push its ledger and read budget spend. Nothing of the management API
    /// (unbound tokens only).
    Gateway,
    /// Everything, including teams and projects.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are documented.
    pub const ALL: [Scope; 11] = [
        Scope::KeysRead,
        Scope::KeysWrite,
        Scope::BudgetsRead,
        Scope::BudgetsWrite,
        Scope::ProvidersWrite,
        Scope::ModelsWrite,
        Scope::UsageRead,
        Scope::AuditRead,
        Scope::TokensWrite,
        Scope::Gateway,
        Scope::Admin,
    ];

    /// The wire name (`keys:read`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::KeysRead => "keys:read",
            Scope::KeysWrite => "keys:write",
            Scope::BudgetsRead => "budgets:read",
            Scope::BudgetsWrite => "budgets:write",
            Scope::ProvidersWrite => "providers:write",
            Scope::ModelsWrite => "models:write",
            Scope::UsageRead => "usage:read",
            Scope::AuditRead => "audit:read",
            Scope::TokensWrite => "tokens:write",
            Scope::Gateway => "gateway",
            Scope::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Scopes only an unbound token may use: they reach resources of every tenant.
    pub fn is_global(self) -> bool {
        matches!(self, Scope::ProvidersWrite | Scope::ModelsWrite | Scope::AuditRead | Scope::Gateway)
    }

    /// The scopes that grant this one besides itself.
    fn granted_by(self) -> &'static [Scope] {
        match self {
            Scope::KeysRead => &[Scope::KeysWrite, Scope::Admin],
            Scope::BudgetsRead => &[Scope::BudgetsWrite, Scope::Admin],
            Scope::Admin => &[],
            _ => &[Scope::Admin],
        }
    }
}

impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut s = super::enum_schema(Scope::ALL.map(Scope::as_str));
        let global: Vec<String> = Scope::ALL.into_iter().filter(|s| s.is_global()).map(|s| format!("`{s}`")).collect();
        s.description = Some(format!(
            "A permission of an admin token. `admin` implies every scope; `keys:write` implies \
             `keys:read` and `budgets:write` implies `budgets:read`. {} work only on tokens bound \
             to no team or project.",
            global.join(", ")
        ));
        s.into()
    }
}

impl utoipa::ToSchema for Scope {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Scope")
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What part of the organization a token (or a resource) belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenancy {
    /// Everything: an unbound token, or a resource of the organization itself.
    Global,
    /// One team and its projects.
    Team(TeamId),
    /// One project.
    Project {
        /// The project's team.
        team: TeamId,
        /// The project.
        project: ProjectId,
    },
}

impl Tenancy {
    /// Whether a token of this tenancy reaches a resource (or mints a token) of `other`.
    pub fn covers(&self, other: &Tenancy) -> bool {
        match (self, other) {
            (Tenancy::Global, _) => true,
            (Tenancy::Team(t), Tenancy::Team(u)) => t == u,
            (Tenancy::Team(t), Tenancy::Project { team, .. }) => t == team,
            (Tenancy::Project { project: p, .. }, Tenancy::Project { project: q, .. }) => p == q,
            _ => false,
        }
    }

    /// The tenancy of a project's resources.
    pub(crate) fn of_project(p: &ProjectRecord) -> Tenancy {
        Tenancy::Project { team: p.team_id.clone(), project: p.id.clone() }
    }

    /// The ledger filter (`scope`, `scope_id`) that confines usage to this tenancy.
    pub(crate) fn ledger_scope(&self) -> Option<(ScopeKind, String)> {
        match self {
            Tenancy::Global => None,
            Tenancy::Team(t) => Some((ScopeKind::Team, t.to_string())),
            Tenancy::Project { project, .. } => Some((ScopeKind::Project, project.to_string())),
        }
    }
}

/// Who is making a call: the token id (`bootstrap` for the bootstrap token), what it may
/// do and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Token id, or `bootstrap` for the bootstrap admin token; the audit trail's actor.
    pub id: String,
    scopes: Vec<Scope>,
    tenancy: Tenancy,
}

impl Actor {
    /// An in-process caller with every power (the `--demo` seed, tests); `id` is what
    /// the audit trail records.
    pub fn system(id: impl Into<String>) -> Actor {
        Actor { id: id.into(), scopes: vec![Scope::Admin], tenancy: Tenancy::Global }
    }

    /// An actor with these scopes and tenancy.
    pub fn new(id: impl Into<String>, scopes: Vec<Scope>, tenancy: Tenancy) -> Actor {
        Actor { id: id.into(), scopes, tenancy }
    }

    /// Whether the actor holds `scope`, directly or through one that implies it.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s == scope || scope.granted_by().contains(s))
    }

    /// Where the actor reaches.
    pub fn tenancy(&self) -> &Tenancy {
        &self.tenancy
    }

    /// Whether the actor is bound to a team or project.
    pub fn is_bound(&self) -> bool {
        self.tenancy != Tenancy::Global
    }
}

/// What an operation touches, for [`Service::authorize`]. Targets given by id are
/// looked up; one that does not exist fails as the operation itself would have.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// A resource of no tenant (providers, models, teams, the audit trail).
    Global,
    /// A list or report that the operation confines to the actor's tenancy itself.
    Filtered,
    /// A project named in a create's body (`field`), by id or name.
    ProjectRef {
        /// The body field, for the error.
        field: &'a str,
        /// Its value.
        id_or_name: &'a str,
    },
    /// A team named in a create's body (`field`), by id or name.
    TeamRef {
        /// The body field, for the error.
        field: &'a str,
        /// Its value.
        id_or_name: &'a str,
    },
    /// A key, by id.
    Key(&'a str),
    /// A budget, by id.
    Budget(&'a str),
    /// A budget's scope target (resolved like a create resolves it).
    BudgetScope(ScopeKind, &'a str),
    /// An admin token, by id.
    Token(&'a str),
}

pub(super) fn not_found(kind: &'static str, id: &str) -> ControlError {
    ControlError::NotFound { kind, id: id.chars().take(128).collect() }
}

impl Service {
    /// Authenticates an admin bearer token: the bootstrap token (every scope, actor
    /// `bootstrap`), or an active token minted through the API. Anything else, a revoked
    /// or an expired token included, is [`ControlError::Unauthenticated`].
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Actor, ControlError> {
        let token = bearer.filter(|t| !t.is_empty()).ok_or(ControlError::Unauthenticated)?;
        if hashes_equal(&token_hash(token), &self.secrets.bootstrap_token_hash) {
            return Ok(Actor::system("bootstrap"));
        }
        let rec = self
            .store
            .find_admin_token_by_hash(&self.secrets.admin_token_hash(token))
            .await?
            .ok_or(ControlError::Unauthenticated)?;
        if rec.revoked_at.is_some() || rec.expires_at.is_some_and(|e| e <= Timestamp::now()) {
            return Err(ControlError::Unauthenticated);
        }
        let tenancy = self.tenancy_of_token(&rec).await?;
        // A scope this build does not know grants nothing.
        let scopes = rec.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
        Ok(Actor { id: rec.id.to_string(), scopes, tenancy })
    }

    pub(crate) async fn tenancy_of_token(&self, rec: &AdminTokenRecord) -> Result<Tenancy, ControlError> {
        Ok(match (&rec.team_id, &rec.project_id) {
            (_, Some(p)) => match self.store.find_project(p.as_str()).await? {
                Some(project) => Tenancy::of_project(&project),
                // The project is gone (foreign keys forbid it; be safe anyway): reach nothing.
                None => Tenancy::Project { team: TeamId::new(""), project: p.clone() },
            },
            (Some(t), None) => Tenancy::Team(t.clone()),
            (None, None) => Tenancy::Global,
        })
    }

    /// The one authorization check: `actor` must hold `scope`, and reach `target`.
    pub(crate) async fn authorize(&self, actor: &Actor, scope: Scope, target: Target<'_>) -> Result<(), ControlError> {
        if !actor.has(scope) {
            return Err(ControlError::InsufficientScope(scope.as_str()));
        }
        let (owner, missing) = match target {
            Target::Filtered => return Ok(()),
            Target::Global => {
                if actor.is_bound() {
                    return Err(ControlError::Forbidden(
                        "this operation reaches every tenant and needs a token not bound to a team or project".into(),
                    ));
                }
                return Ok(());
            }
            Target::ProjectRef { field, id_or_name } => {
                let missing = ControlError::invalid(field, format!("no project {id_or_name:?}"));
                match self.find_project_for(actor, id_or_name).await? {
                    Some(p) => (Tenancy::of_project(&p), missing),
                    None => return Err(missing),
                }
            }
            Target::TeamRef { field, id_or_name } => {
                let missing = ControlError::invalid(field, format!("no team {id_or_name:?}"));
                match self.find_team_for(actor, id_or_name).await? {
                    Some(t) => (Tenancy::Team(t.id), missing),
                    None => return Err(missing),
                }
            }
            Target::Key(id) => (self.owner_of_key(id).await?, not_found("key", id)),
            Target::Budget(id) => {
                let b = self.store.get_budget(&tollgate_core::BudgetId::new(id)).await?;
                let b = b.ok_or_else(|| not_found("budget", id))?;
                (self.owner_of_budget(&b).await?, not_found("budget", id))
            }
            Target::BudgetScope(kind, scope_id) => {
                let stored = self.scope_target(actor, kind, scope_id).await?;
                let owner = self.owner_of_scope(kind, &stored).await?.unwrap_or(Tenancy::Global);
                (owner, not_found(kind_name(kind), scope_id))
            }
            Target::Token(id) => {
                let t = self.store.get_admin_token(&TokenId::new(id)).await?;
                let t = t.ok_or_else(|| not_found("admin token", id))?;
                (self.tenancy_of_token(&t).await?, not_found("admin token", id))
            }
        };
        // Organization-wide resources (organization and principal budgets, unbound
        // tokens) are outside every tenancy too.
        if actor.tenancy.covers(&owner) { Ok(()) } else { Err(missing) }
    }

    /// A gateway's call (`Watch`, the ledger service): it reaches every tenant's
    /// configuration and ledger, so it needs `gateway` (or `admin`) on an unbound token.
    pub(crate) async fn authorize_gateway(&self, actor: &Actor) -> Result<(), ControlError> {
        self.authorize(actor, Scope::Gateway, Target::Global).await
    }

    async fn owner_of_key(&self, id: &str) -> Result<Tenancy, ControlError> {
        let key = self.store.get_key(&KeyId::new(id)).await?.ok_or_else(|| not_found("key", id))?;
        let project = self.store.find_project(key.project_id.as_str()).await?;
        Ok(project.map(|p| Tenancy::of_project(&p)).unwrap_or(Tenancy::Global))
    }

    pub(crate) async fn owner_of_budget(&self, b: &BudgetRecord) -> Result<Tenancy, ControlError> {
        // A budget whose target has gone reaches no tenant: only unbound tokens see it.
        Ok(self.owner_of_scope(b.scope, &b.scope_id).await?.unwrap_or(Tenancy::Global))
    }

    /// The tenancy of a budget scope target given by stored id; `None` if it is gone.
    async fn owner_of_scope(&self, kind: ScopeKind, id: &str) -> Result<Option<Tenancy>, ControlError> {
        Ok(match kind {
            ScopeKind::Organization | ScopeKind::Principal => Some(Tenancy::Global),
            ScopeKind::Team => Some(Tenancy::Team(TeamId::new(id))),
            ScopeKind::Project => self.store.find_project(id).await?.map(|p| Tenancy::of_project(&p)),
            ScopeKind::VirtualKey => match self.store.get_key(&KeyId::new(id)).await? {
                Some(k) => self.store.find_project(k.project_id.as_str()).await?.map(|p| Tenancy::of_project(&p)),
                None => None,
            },
        })
    }
}

fn kind_name(kind: ScopeKind) -> &'static str {
    match kind {
        ScopeKind::Organization => "organization",
        ScopeKind::Team => "team",
        ScopeKind::Project => "project",
        ScopeKind::VirtualKey => "key",
        ScopeKind::Principal => "principal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(t: &str) -> Tenancy {
        Tenancy::Team(TeamId::new(t))
    }

    fn project(t: &str, p: &str) -> Tenancy {
        Tenancy::Project { team: TeamId::new(t), project: ProjectId::new(p) }
    }

    #[test]
    fn tenancy_covers_itself_and_below_only() {
        assert!(Tenancy::Global.covers(&team("a")));
        assert!(team("a").covers(&project("a", "p")));
        assert!(team("a").covers(&team("a")));
        assert!(!team("a").covers(&team("b")));
        assert!(!team("a").covers(&project("b", "q")));
        assert!(!team("a").covers(&Tenancy::Global));
        assert!(project("a", "p").covers(&project("a", "p")));
        assert!(!project("a", "p").covers(&project("a", "q")));
        assert!(!project("a", "p").covers(&team("a")));
    }

    #[test]
    fn admin_implies_every_scope_and_write_implies_read() {
        let admin = Actor::system("x");
        assert!(Scope::ALL.iter().all(|s| admin.has(*s)));
        let writer = Actor::new("w", vec![Scope::KeysWrite], Tenancy::Global);
        assert!(writer.has(Scope::KeysRead) && writer.has(Scope::KeysWrite));
        assert!(!writer.has(Scope::BudgetsRead) && !writer.has(Scope::Admin));
        let reader = Actor::new("r", vec![Scope::KeysRead], Tenancy::Global);
        assert!(!reader.has(Scope::KeysWrite));
    }

    #[test]
    fn scope_names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("keys:delete"), None);
    }
}
