//! Admin tokens minted through the API: `POST /api/v1/tokens`, `GET /api/v1/tokens`,
//! `POST /api/v1/tokens/{id}/revoke`.
//!
//! A token is shown once, at mint, and stored only as its keyed hash. A token can never
//! mint one with more power than itself: the new scopes are a subset of the minter's,
//! and the new binding is the minter's tenancy or inside it.

use super::auth::{Scope, Target, Tenancy};
use super::{Actor, Service, check_name, new_id};
use crate::ControlError;
use crate::secrets::generate_admin_token;
use serde::{Deserialize, Serialize};
use tollgate_core::{ProjectId, TeamId, Timestamp, TokenId};
use tollgate_store::AdminTokenRecord;
use utoipa::ToSchema;

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Display name.
    pub name: String,
    /// Granted scopes (`keys:write`, `usage:read`, ..., or `admin`).
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Vec<String>,
    /// Bind the token to this team (id or name).
    #[serde(default)]
    pub team: Option<String>,
    /// Bind the token to this project (id or name).
    #[serde(default)]
    pub project: Option<String>,
    /// When the token stops working.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

/// An admin token as the API shows it: never the secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    /// Id; the audit trail's actor for everything the token does.
    pub id: TokenId,
    /// Display name.
    pub name: String,
    /// Granted scopes.
    #[schema(value_type = Vec<Scope>)]
    pub scopes: Vec<String>,
    /// The team it is bound to (set for project-bound tokens too).
    pub team_id: Option<TeamId>,
    /// The project it is bound to.
    pub project_id: Option<ProjectId>,
    /// `active`, `revoked` or `expired`.
    #[schema(schema_with = token_status_schema)]
    pub status: &'static str,
    /// The first characters of the token.
    pub token_hint: String,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
    /// Revocation.
    pub revoked_at: Option<Timestamp>,
}

/// A token with its secret: the one response that carries it.
#[derive(Clone, Serialize, ToSchema)]
pub struct TokenWithSecret {
    /// The token, shown once.
    pub token: String,
    /// The token's view.
    #[serde(flatten)]
    pub view: TokenView,
}

impl std::fmt::Debug for TokenWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenWithSecret").field("token", &"<redacted>").field("view", &self.view).finish()
    }
}

/// The values of [`TokenView::status`], as [`token_view`] sets them.
const TOKEN_STATUSES: [&str; 3] = ["active", "revoked", "expired"];

fn token_status_schema() -> utoipa::openapi::Object {
    super::enum_schema(TOKEN_STATUSES)
}

/// At most this many scopes on one token (there are fewer distinct ones).
const MAX_SCOPES: usize = 16;

fn token_view(r: &AdminTokenRecord, now: Timestamp) -> TokenView {
    let [active, revoked, expired] = TOKEN_STATUSES;
    let status = if r.revoked_at.is_some() {
        revoked
    } else if r.expires_at.is_some_and(|e| e <= now) {
        expired
    } else {
        active
    };
    TokenView {
        id: r.id.clone(),
        name: r.name.clone(),
        scopes: r.scopes.clone(),
        team_id: r.team_id.clone(),
        project_id: r.project_id.clone(),
        status,
        token_hint: r.hint.clone(),
        expires_at: r.expires_at,
        created_at: r.created_at,
        revoked_at: r.revoked_at,
    }
}

/// Parses the requested scopes: known names, no repeats, at least one.
fn parse_scopes(scopes: &[String]) -> Result<Vec<Scope>, ControlError> {
    if scopes.is_empty() {
        return Err(ControlError::invalid("scopes", "at least one scope is required"));
    }
    if scopes.len() > MAX_SCOPES {
        return Err(ControlError::invalid("scopes", format!("at most {MAX_SCOPES} entries")));
    }
    let mut out = Vec::with_capacity(scopes.len());
    for (i, s) in scopes.iter().enumerate() {
        let scope = Scope::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            ControlError::invalid(format!("scopes[{i}]"), format!("unknown scope; one of {}", known.join(", ")))
        })?;
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    out.sort();
    Ok(out)
}

impl Service {
    /// Mints an admin token; the secret is returned here and never again.
    pub async fn create_token(&self, actor: &Actor, input: CreateToken) -> Result<TokenWithSecret, ControlError> {
        self.authorize(actor, Scope::TokensWrite, Target::Filtered).await?;
        check_name("name", &input.name)?;
        let scopes = parse_scopes(&input.scopes)?;
        if let Some(s) = scopes.iter().find(|s| !actor.has(**s)) {
            return Err(ControlError::Forbidden(format!(
                "a token cannot grant the scope {s}, which it does not hold itself"
            )));
        }
        let now = Timestamp::now();
        if input.expires_at.is_some_and(|e| e <= now) {
            return Err(ControlError::invalid("expires_at", "must be in the future"));
        }
        let tenancy = self.requested_tenancy(actor, &input).await?;
        if tenancy != Tenancy::Global
            && let Some(s) = scopes.iter().find(|s| s.is_global())
        {
            return Err(ControlError::invalid(
                "scopes",
                format!("{s} reaches every tenant and cannot be granted to a token bound to a team or project"),
            ));
        }
        if !actor.tenancy().covers(&tenancy) {
            return Err(ControlError::Forbidden(
                "a bound token can only mint tokens bound to its own team or project, or inside it".into(),
            ));
        }
        let (team_id, project_id) = match &tenancy {
            Tenancy::Global => (None, None),
            Tenancy::Team(t) => (Some(t.clone()), None),
            Tenancy::Project { team, project } => (Some(team.clone()), Some(project.clone())),
        };
        let secret = generate_admin_token();
        let rec = AdminTokenRecord {
            id: TokenId::new(new_id(TokenId::PREFIX)),
            name: input.name,
            token_hash: self.secrets.admin_token_hash(&secret),
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            team_id,
            project_id,
            created_at: now,
            revoked_at: None,
            expires_at: input.expires_at,
            hint: format!("{}…", secret.chars().take(8).collect::<String>()),
        };
        let w = self.begin_write().await?;
        let rev = w.store().create_admin_token(&rec).await?;
        let view = token_view(&rec, now);
        let meta = serde_json::to_value(&view).unwrap_or_default();
        self.commit_audited(w, Some(rev), actor, "token.create", ("token", rec.id.as_str()), meta).await?;
        Ok(TokenWithSecret { token: secret, view })
    }

    /// The tenancy a mint asks for. A team or project the minter cannot see is refused
    /// exactly like one that does not exist.
    async fn requested_tenancy(&self, actor: &Actor, input: &CreateToken) -> Result<Tenancy, ControlError> {
        let team = match &input.team {
            Some(t) => {
                self.authorize(actor, Scope::TokensWrite, Target::TeamRef { field: "team", id_or_name: t }).await?;
                let rec = self.find_team_for(actor, t).await?;
                Some(rec.ok_or_else(|| ControlError::invalid("team", format!("no team {t:?}")))?)
            }
            None => None,
        };
        match &input.project {
            Some(p) => {
                self.authorize(actor, Scope::TokensWrite, Target::ProjectRef { field: "project", id_or_name: p })
                    .await?;
                let rec = self.find_project_for(actor, p).await?;
                let project = rec.ok_or_else(|| ControlError::invalid("project", format!("no project {p:?}")))?;
                if team.as_ref().is_some_and(|t| t.id != project.team_id) {
                    return Err(ControlError::invalid("project", "is not in the given team"));
                }
                Ok(Tenancy::of_project(&project))
            }
            None => Ok(team.map_or(Tenancy::Global, |t| Tenancy::Team(t.id))),
        }
    }

    /// Lists the tokens inside the caller's tenancy, oldest first; never their secrets.
    pub async fn list_tokens(&self, actor: &Actor) -> Result<Vec<TokenView>, ControlError> {
        self.authorize(actor, Scope::TokensWrite, Target::Filtered).await?;
        let now = Timestamp::now();
        let mut out = Vec::new();
        for t in self.store.list_admin_tokens().await? {
            if actor.tenancy().covers(&self.tenancy_of_token(&t).await?) {
                out.push(token_view(&t, now));
            }
        }
        Ok(out)
    }

    /// Revokes a token: its next call is refused. Revoking twice is a no-op. A token may
    /// only revoke tokens it could have minted.
    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<TokenView, ControlError> {
        self.authorize(actor, Scope::TokensWrite, Target::Token(id)).await?;
        let id = TokenId::new(id);
        let current = self.store.get_admin_token(&id).await?;
        let current = current.ok_or_else(|| ControlError::NotFound { kind: "admin token", id: id.to_string() })?;
        if let Some(s) = current.scopes.iter().find(|s| Scope::parse(s).is_some_and(|s| !actor.has(s))) {
            return Err(ControlError::Forbidden(format!(
                "a token cannot revoke a token holding the scope {s}, which it does not hold itself"
            )));
        }
        let now = Timestamp::now();
        let w = self.begin_write().await?;
        let (rec, rev) = w.store().revoke_admin_token(&id, now).await?;
        // Already revoked: nothing was written, and dropping `w` ends its transaction.
        if let Some(rev) = rev {
            let target = ("token", id.as_str());
            self.commit_audited(w, Some(rev), actor, "token.revoke", target, serde_json::Value::Null).await?;
        }
        Ok(token_view(&rec, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_parsed_deduplicated_and_unknown_ones_named() {
        let s = |v: &[&str]| parse_scopes(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(s(&["usage:read", "keys:read", "usage:read"]).ok(), Some(vec![Scope::KeysRead, Scope::UsageRead]));
        assert!(s(&[]).is_err());
        let e = s(&["keys:read", "keys:delete"]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("scopes[1]"), "{e}");
    }
}
