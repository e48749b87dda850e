//! Organizations, teams, projects, principals and provider credentials beyond create:
//! listing, reading, updating a credential, and revoking a principal's keys.
//!
//! Reads of the tenancy tree need any read scope (`keys:read` or what implies it) and
//! are confined to the caller's tenancy: a token bound to project A sees its project and
//! team, never a sibling. Creating organizations and teams reaches every tenant and
//! needs `admin` on an unbound token.

use super::auth::Target;
use super::{
    Actor, BudgetView, ProjectView, ProviderView, Scope, Service, TeamView, Tenancy, budget_view, check_name,
    project_view, team_view,
};
use crate::ControlError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tollgate_core::{OrgId, ProjectId, ScopeKind, Timestamp};
use tollgate_store::{OrgRecord, PrincipalFilter, PrincipalSummary, ProviderRecord};

/// Page size of principal listings when none is given.
const DEFAULT_PRINCIPAL_LIMIT: u64 = 100;

/// `POST /api/v1/organizations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// Unique name.
    pub name: String,
}

/// An organization.
#[derive(Debug, Clone, Serialize)]
pub struct OrganizationView {
    /// Id.
    pub id: OrgId,
    /// Name.
    pub name: String,
    /// Created.
    pub created_at: Timestamp,
}

/// Filters of `GET /api/v1/teams`.
#[derive(Debug, Clone, Default)]
pub struct ListTeams {
    /// Organization id or name.
    pub organization: Option<String>,
}

/// Filters of `GET /api/v1/projects`.
#[derive(Debug, Clone, Default)]
pub struct ListProjects {
    /// Team id or name.
    pub team: Option<String>,
}

/// `PATCH /api/v1/providers/{id}`: absent fields are left alone, `null` clears.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    /// New base URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// New credential (rotation); stored encrypted, never returned.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Requests per minute on this credential; `null` removes the cap.
    #[serde(default, deserialize_with = "super::double_option")]
    pub rpm: Option<Option<u32>>,
    /// Tokens per minute on this credential; `null` removes the cap.
    #[serde(default, deserialize_with = "super::double_option")]
    pub tpm: Option<Option<u64>>,
    /// Fallback priority (lower first).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Kind-specific settings (replaces them).
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

/// Filters of `GET /api/v1/principals`.
#[derive(Debug, Clone, Default)]
pub struct ListPrincipals {
    /// Only principals with keys in this project (id or name).
    pub project: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u64>,
    /// Cursor: the last principal of the previous page.
    pub after: Option<String>,
}

/// A principal: the keys it holds (in the caller's tenancy) and its own budgets.
#[derive(Debug, Clone, Serialize)]
pub struct PrincipalView {
    /// The free-form principal (`acme:user-42`).
    pub id: String,
    /// Keys that authenticate now.
    pub keys_active: u64,
    /// Keys past their expiry.
    pub keys_expired: u64,
    /// Revoked keys.
    pub keys_revoked: u64,
    /// Projects its keys belong to.
    pub projects: Vec<ProjectId>,
    /// Budgets scoped to the principal (shown to unbound tokens with `budgets:read`;
    /// principal budgets are organization-wide).
    pub budgets: Vec<BudgetView>,
}

/// One page of principals.
#[derive(Debug, Clone, Serialize)]
pub struct PrincipalPage {
    /// The principals, in ascending order.
    pub data: Vec<PrincipalView>,
    /// Cursor for the next page (pass as `after`), if there may be more.
    pub next_after: Option<String>,
}

/// What `POST /api/v1/principals/{id}/revoke` did.
#[derive(Debug, Clone, Serialize)]
pub struct PrincipalRevocation {
    /// The principal.
    pub id: String,
    /// The keys revoked now (already revoked keys are not listed).
    pub revoked: Vec<tollgate_core::KeyId>,
}

/// `"sha256:"` and the first 12 hex digits of the credential's SHA-256: lets a
/// declarative client tell whether the stored credential is the one it holds without the
/// credential ever leaving the control plane. Empty for no credential.
pub(crate) fn fingerprint(api_key: &str) -> String {
    if api_key.is_empty() {
        return String::new();
    }
    let digest = Sha256::digest(api_key.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn org_view(r: &OrgRecord) -> OrganizationView {
    OrganizationView { id: r.id.clone(), name: r.name.clone(), created_at: r.created_at }
}

impl Service {
    /// Creates an organization.
    pub async fn create_organization(
        &self,
        actor: &Actor,
        input: CreateOrganization,
    ) -> Result<OrganizationView, ControlError> {
        self.authorize(actor, Scope::Admin, Target::Global).await?;
        check_name("name", &input.name)?;
        let (rec, rev) = self.store.create_org(&input.name).await?;
        self.committed(rev);
        let view = org_view(&rec);
        self.audit(actor, "organization.create", "organization", rec.id.as_str(), to_value(&view)).await;
        Ok(view)
    }

    /// Lists organizations: every one for an unbound token, the caller's own otherwise.
    pub async fn list_organizations(&self, actor: &Actor) -> Result<Vec<OrganizationView>, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let own = self.own_org(actor).await?;
        let orgs = self.store.list_orgs().await?;
        Ok(orgs.iter().filter(|o| own.as_ref().is_none_or(|id| *id == o.id)).map(org_view).collect())
    }

    /// Reads an organization by id or name.
    pub async fn get_organization(&self, actor: &Actor, id_or_name: &str) -> Result<OrganizationView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let missing = || super::auth::not_found("organization", id_or_name);
        let rec = self.store.find_org(id_or_name).await?.ok_or_else(missing)?;
        match self.own_org(actor).await? {
            Some(own) if own != rec.id => Err(missing()),
            _ => Ok(org_view(&rec)),
        }
    }

    /// The organization a bound token lives in; `None` for an unbound token.
    async fn own_org(&self, actor: &Actor) -> Result<Option<OrgId>, ControlError> {
        let team = match actor.tenancy() {
            Tenancy::Global => return Ok(None),
            Tenancy::Team(t) | Tenancy::Project { team: t, .. } => t,
        };
        // A token whose team is gone reaches no organization.
        Ok(Some(self.store.find_team(team.as_str()).await?.map_or_else(|| OrgId::new(""), |t| t.org_id)))
    }

    /// Lists teams, optionally of one organization; a bound token sees its own team.
    pub async fn list_teams(&self, actor: &Actor, q: ListTeams) -> Result<Vec<TeamView>, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let org = match &q.organization {
            Some(o) => Some(
                self.store
                    .find_org(o)
                    .await?
                    .ok_or_else(|| ControlError::invalid("organization", format!("no organization {o:?}")))?
                    .id,
            ),
            None => None,
        };
        let teams = self.store.list_teams(org.as_ref()).await?;
        Ok(teams
            .iter()
            .filter(|t| actor.tenancy().covers(&Tenancy::Team(t.id.clone())) || own_team(actor, &t.id))
            .map(team_view)
            .collect())
    }

    /// Reads a team by id or name (404 outside the caller's tenancy).
    pub async fn get_team(&self, actor: &Actor, id_or_name: &str) -> Result<TeamView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let missing = || super::auth::not_found("team", id_or_name);
        let team = self.store.find_team(id_or_name).await?.ok_or_else(missing)?;
        if actor.tenancy().covers(&Tenancy::Team(team.id.clone())) || own_team(actor, &team.id) {
            Ok(team_view(&team))
        } else {
            Err(missing())
        }
    }

    /// Lists projects, optionally of one team; a bound token sees only its own.
    pub async fn list_projects(&self, actor: &Actor, q: ListProjects) -> Result<Vec<ProjectView>, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let team = match &q.team {
            Some(t) => Some(
                self.store
                    .find_team(t)
                    .await?
                    .ok_or_else(|| ControlError::invalid("team", format!("no team {t:?}")))?
                    .id,
            ),
            None => None,
        };
        let projects = self.store.list_projects(team.as_ref(), None).await?;
        Ok(projects.iter().filter(|p| actor.tenancy().covers(&Tenancy::of_project(p))).map(project_view).collect())
    }

    /// Reads a project by id or name (404 outside the caller's tenancy).
    pub async fn get_project(&self, actor: &Actor, id_or_name: &str) -> Result<ProjectView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let missing = || super::auth::not_found("project", id_or_name);
        let project = self.store.find_project(id_or_name).await?.ok_or_else(missing)?;
        if actor.tenancy().covers(&Tenancy::of_project(&project)) { Ok(project_view(&project)) } else { Err(missing()) }
    }

    /// Reads a provider credential (the credential itself only as hint and fingerprint).
    pub async fn get_provider(&self, actor: &Actor, id_or_name: &str) -> Result<ProviderView, ControlError> {
        self.authorize(actor, Scope::ProvidersWrite, Target::Global).await?;
        let rec = self.provider_record(id_or_name).await?;
        self.provider_view(&rec)
    }

    async fn provider_record(&self, id_or_name: &str) -> Result<ProviderRecord, ControlError> {
        self.store.find_provider(id_or_name).await?.ok_or_else(|| super::auth::not_found("provider", id_or_name))
    }

    /// Changes a provider credential: its URL, caps, priority, settings, or the
    /// credential itself (re-encrypted with a fresh nonce). Name and kind are fixed.
    pub async fn update_provider(
        &self,
        actor: &Actor,
        id_or_name: &str,
        patch: UpdateProvider,
    ) -> Result<ProviderView, ControlError> {
        self.authorize(actor, Scope::ProvidersWrite, Target::Global).await?;
        let mut rec = self.provider_record(id_or_name).await?;
        let kind: tollgate_providers::ProviderKind =
            rec.kind.parse().map_err(|e| ControlError::Internal(format!("stored provider kind: {e}")))?;
        let mut changed = Vec::new();
        if let Some(url) = patch.base_url {
            rec.base_url = super::check_base_url(kind, &url)?;
            changed.push("base_url");
        }
        if let Some(key) = patch.api_key {
            super::check_api_key(kind, &key)?;
            crate::rotation::check_master_key(&self.store, &self.secrets.master_key).await?;
            rec.api_key_ciphertext = self.secrets.master_key.encrypt(&key)?;
            rec.api_key_hint = super::mask(&key);
            changed.push("api_key");
        }
        if let Some(v) = patch.rpm {
            rec.rpm = v.map(i64::from);
            changed.push("rpm");
        }
        if let Some(v) = patch.tpm {
            rec.tpm = v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
            changed.push("tpm");
        }
        if let Some(v) = patch.priority {
            rec.priority = v;
            changed.push("priority");
        }
        if let Some(extra) = patch.extra {
            if !(extra.is_null() || extra.is_object()) {
                return Err(ControlError::invalid("extra", "must be an object"));
            }
            rec.extra = extra;
            changed.push("extra");
        }
        rec.updated_at = Timestamp::now();
        let rev = self.store.update_provider(&rec).await?;
        self.committed(rev);
        let view = self.provider_view(&rec)?;
        let mut audit = to_value(&view);
        if let Some(m) = audit.as_object_mut() {
            m.insert("changed".into(), serde_json::json!(changed));
        }
        self.audit(actor, "provider.update", "provider", rec.id.as_str(), audit).await;
        Ok(view)
    }

    /// A provider as the API shows it, with the credential's fingerprint.
    pub(crate) fn provider_view(&self, r: &ProviderRecord) -> Result<ProviderView, ControlError> {
        let key = self.secrets.master_key.decrypt(&r.api_key_ciphertext)?;
        let mut view = super::provider_view(r);
        view.api_key_fingerprint = fingerprint(&key);
        Ok(view)
    }

    /// The store filter confining principals to `actor`'s tenancy and `project`.
    async fn principal_filter(&self, actor: &Actor, project: Option<&str>) -> Result<PrincipalFilter, ControlError> {
        let mut f = PrincipalFilter::default();
        match actor.tenancy() {
            Tenancy::Global => {}
            Tenancy::Team(t) => f.team_id = Some(t.clone()),
            Tenancy::Project { project, .. } => f.project_id = Some(project.clone()),
        }
        if let Some(p) = project {
            self.authorize(actor, Scope::KeysRead, Target::ProjectRef { field: "project", id_or_name: p }).await?;
            f.project_id = Some(self.project("project", p).await?.id);
        }
        Ok(f)
    }

    /// Lists the principals that hold keys (in the caller's tenancy), with paging.
    pub async fn list_principals(&self, actor: &Actor, q: ListPrincipals) -> Result<PrincipalPage, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        let mut f = self.principal_filter(actor, q.project.as_deref()).await?;
        f.limit = q.limit.unwrap_or(DEFAULT_PRINCIPAL_LIMIT).clamp(1, PrincipalFilter::MAX_LIMIT);
        f.after = q.after;
        let rows = self.store.list_principals(&f, Timestamp::now()).await?;
        let next_after = (rows.len() as u64 == f.limit).then(|| rows.last().map(|r| r.principal.clone())).flatten();
        let data = rows.into_iter().map(|s| principal_view(s, Vec::new())).collect();
        Ok(PrincipalPage { data, next_after })
    }

    /// Reads one principal: its keys' counts and projects, and its budgets. A principal
    /// with no key in the caller's tenancy is 404 (unless an unbound caller finds a
    /// budget scoped to it).
    pub async fn get_principal(&self, actor: &Actor, id: &str) -> Result<PrincipalView, ControlError> {
        self.authorize(actor, Scope::KeysRead, Target::Filtered).await?;
        check_name("principal", id)?;
        let mut f = self.principal_filter(actor, None).await?;
        f.principal = Some(id.to_owned());
        f.limit = 1;
        let now = Timestamp::now();
        let summary = self.store.list_principals(&f, now).await?.pop();
        let budgets = if !actor.is_bound() && actor.has(Scope::BudgetsRead) {
            let recs = self.store.list_budgets_for(ScopeKind::Principal, id).await?;
            recs.iter().map(|b| budget_view(b, now)).collect()
        } else {
            Vec::new()
        };
        match summary {
            Some(s) => Ok(principal_view(s, budgets)),
            None if !budgets.is_empty() => Ok(principal_view(
                PrincipalSummary { principal: id.to_owned(), ..PrincipalSummary::default() },
                budgets,
            )),
            None => Err(super::auth::not_found("principal", id)),
        }
    }

    /// Revokes every active key of a principal in the caller's tenancy, in one write
    /// (one revision, so gateways refuse them all from the same snapshot). Offboarding a
    /// customer is this one call.
    pub async fn revoke_principal_keys(&self, actor: &Actor, id: &str) -> Result<PrincipalRevocation, ControlError> {
        self.authorize(actor, Scope::KeysWrite, Target::Filtered).await?;
        check_name("principal", id)?;
        let f = self.principal_filter(actor, None).await?;
        let mut probe = f.clone();
        probe.principal = Some(id.to_owned());
        probe.limit = 1;
        if self.store.list_principals(&probe, Timestamp::now()).await?.is_empty() {
            return Err(super::auth::not_found("principal", id));
        }
        let (revoked, rev) = self.store.revoke_principal_keys(id, &f, Timestamp::now()).await?;
        if let Some(rev) = rev {
            self.committed(rev);
            let ids: Vec<&str> = revoked.iter().map(|k| k.as_str()).collect();
            self.audit(actor, "principal.revoke_keys", "principal", id, serde_json::json!({ "revoked": ids })).await;
        }
        Ok(PrincipalRevocation { id: id.to_owned(), revoked })
    }
}

/// A project-bound token still sees the team its project is in (read-only).
fn own_team(actor: &Actor, team: &tollgate_core::TeamId) -> bool {
    matches!(actor.tenancy(), Tenancy::Project { team: t, .. } if t == team)
}

fn principal_view(s: PrincipalSummary, budgets: Vec<BudgetView>) -> PrincipalView {
    PrincipalView {
        id: s.principal,
        keys_active: s.keys_active,
        keys_expired: s.keys_expired,
        keys_revoked: s.keys_revoked,
        projects: s.projects,
        budgets,
    }
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_credentials_apart_without_revealing_them() {
        assert_eq!(fingerprint(""), "");
        let a = fingerprint("sk-proj-abcdefghijklmnop");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 12, "{a}");
        assert_eq!(a, fingerprint("sk-proj-abcdefghijklmnop"));
        assert_ne!(a, fingerprint("sk-proj-abcdefghijklmnoq"));
        assert!(!a.contains("mnop"));
    }
}
