//! `SecurityService` admin-token RPCs, the same operations as `/api/v1/tokens`.

use super::{actor, time};
use crate::ControlError;
use crate::service::{CreateToken, Service, TokenView};

use tollgate_proto::v1;
use tonic::{Request, Response, Status};

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

fn create_input(r: v1::CreateTokenRequest) -> Result<CreateToken, ControlError> {
    Ok(CreateToken {
        name: r.name,
        scopes: r.scopes,
        team: r.team.filter(|t| !t.is_empty()),
        project: r.project.filter(|p| !p.is_empty()),
        expires_at: time("expires_at", r.expires_at)?,
    })
}

pub(super) async fn create_token(
    svc: &Service,
    req: Request<v1::CreateTokenRequest>,
) -> Result<Response<v1::CreateTokenResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let input = create_input(req.into_inner()).map_err(|e| e.grpc())?;
    let out = svc.create_token(&actor, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::CreateTokenResponse { token: Some(token_info(out.view)), secret: out.token }))
}

pub(super) async fn list_tokens(
    svc: &Service,
    req: Request<v1::ListTokensRequest>,
) -> Result<Response<v1::ListTokensResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let tokens = svc.list_tokens(&actor).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListTokensResponse { tokens: tokens.into_iter().map(token_info).collect() }))
}

pub(super) async fn revoke_token(
    svc: &Service,
    req: Request<v1::RevokeTokenRequest>,
) -> Result<Response<v1::TokenInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.revoke_token(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(token_info(v)))
}
