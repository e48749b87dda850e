//! `SecurityService`: admin tokens and the audit trail over gRPC, the same operations
//! as the REST routes in `rest/security.rs`.

use super::actor;
use crate::ControlError;
use crate::service::{AuditEventView, AuditQuery, CreateToken, Service, TokenView};
use std::sync::Arc;
use tollgate_core::Timestamp;
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

/// Serves token and audit operations over a service.
pub(crate) struct SecurityApi {
    svc: Arc<Service>,
}

impl SecurityApi {
    /// Serves `svc`.
    pub(crate) fn new(svc: Arc<Service>) -> Self {
        SecurityApi { svc }
    }
}

fn token_info(v: TokenView) -> v1::TokenInfo {
    v1::TokenInfo {
        id: v.id.to_string(),
        name: v.name,
        scopes: v.scopes,
        team_id: v.team_id.map(|t| t.to_string()),
        project_id: v.project_id.map(|p| p.to_string()),
        status: v.status.to_owned(),
        hint: v.token_hint,
        expires_at: v.expires_at.map(|t| t.to_rfc3339()),
        created_at: v.created_at.to_rfc3339(),
        revoked_at: v.revoked_at.map(|t| t.to_rfc3339()),
    }
}

fn audit_info(e: AuditEventView) -> v1::AuditEventInfo {
    v1::AuditEventInfo {
        seq: e.seq,
        id: e.id,
        at: e.at.to_rfc3339(),
        actor: e.actor,
        action: e.action,
        target_kind: e.target_kind,
        target_id: e.target_id,
        metadata_json: e.metadata.to_string(),
        hash: e.hash,
    }
}

fn time(name: &str, text: Option<String>) -> Result<Option<Timestamp>, ControlError> {
    text.filter(|t| !t.is_empty())
        .map(|t| Timestamp::parse_rfc3339(&t).map_err(|e| ControlError::invalid(name, e.to_string())))
        .transpose()
}

fn create_input(r: v1::CreateTokenRequest) -> Result<CreateToken, ControlError> {
    Ok(CreateToken {
        name: r.name,
        scopes: r.scopes,
        team: r.team.filter(|t| !t.is_empty()),
        project: r.project.filter(|p| !p.is_empty()),
        expires_at: time("expires_at", r.expires_at)?,
    })
}

fn audit_query(r: v1::ListAuditRequest) -> Result<AuditQuery, ControlError> {
    Ok(AuditQuery {
        target_kind: r.target_kind,
        actor: r.actor,
        since: time("since", r.since)?,
        until: time("until", r.until)?,
        limit: (r.limit > 0).then_some(u64::from(r.limit)),
        cursor: r.cursor,
    })
}

#[tonic::async_trait]
impl v1::security_service_server::SecurityService for SecurityApi {
    async fn create_token(
        &self,
        req: Request<v1::CreateTokenRequest>,
    ) -> Result<Response<v1::CreateTokenResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let input = create_input(req.into_inner()).map_err(|e| e.grpc())?;
        let out = self.svc.create_token(&actor, input).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::CreateTokenResponse { token: Some(token_info(out.view)), secret: out.token }))
    }

    async fn list_tokens(
        &self,
        req: Request<v1::ListTokensRequest>,
    ) -> Result<Response<v1::ListTokensResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let tokens = self.svc.list_tokens(&actor).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::ListTokensResponse { tokens: tokens.into_iter().map(token_info).collect() }))
    }

    async fn revoke_token(&self, req: Request<v1::RevokeTokenRequest>) -> Result<Response<v1::TokenInfo>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let v = self.svc.revoke_token(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
        Ok(Response::new(token_info(v)))
    }

    async fn list_audit(&self, req: Request<v1::ListAuditRequest>) -> Result<Response<v1::ListAuditResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let q = audit_query(req.into_inner()).map_err(|e| e.grpc())?;
        let page = self.svc.list_audit(&actor, &q).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::ListAuditResponse {
            events: page.data.into_iter().map(audit_info).collect(),
            next_cursor: page.next_cursor,
        }))
    }

    async fn verify_audit(
        &self,
        req: Request<v1::VerifyAuditRequest>,
    ) -> Result<Response<v1::VerifyAuditResponse>, Status> {
        let actor = actor(&self.svc, &req).await?;
        let v = self.svc.verify_audit(&actor).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::VerifyAuditResponse {
            ok: v.ok,
            checked: v.checked,
            first_broken: v.first_broken.map(|b| v1::BrokenAuditRow { id: b.id, seq: b.seq, reason: b.reason }),
        }))
    }
}
