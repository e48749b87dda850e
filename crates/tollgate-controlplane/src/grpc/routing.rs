//! `AdminService` alias and routing-policy RPCs, the same operations as
//! `/api/v1/aliases` and `/api/v1/routing-policies`.

use super::{actor, field, field_json};
use crate::ControlError;
use crate::service::{AliasView, CreateAlias, CreateRoutingPolicy, RoutingPolicyView, Service, UpdateRoutingPolicy};

use tollgate_proto::v1;
use tonic::{Request, Response, Status};

fn alias_info(a: AliasView) -> v1::AliasInfo {
    v1::AliasInfo { name: a.name, model: a.model, created_at: a.created_at.to_rfc3339() }
}

fn policy_info(p: RoutingPolicyView) -> v1::RoutingPolicyInfo {
    v1::RoutingPolicyInfo {
        id: p.id,
        scope: p.scope.as_str().to_owned(),
        scope_id: p.scope_id,
        policy_json: p.policy.to_string(),
        created_at: p.created_at.to_rfc3339(),
        updated_at: p.updated_at.to_rfc3339(),
    }
}

/// The policy JSON of a request.
fn policy_json(text: &str) -> Result<serde_json::Value, ControlError> {
    field_json("policy", text)
}

fn create_policy_input(r: v1::CreateRoutingPolicyRequest) -> Result<CreateRoutingPolicy, ControlError> {
    Ok(CreateRoutingPolicy {
        scope: field("scope", &r.scope)?,
        scope_id: r.scope_id.filter(|s| !s.is_empty()),
        policy: policy_json(&r.policy_json)?,
    })
}

pub(super) async fn create_alias(
    svc: &Service,
    req: Request<v1::CreateAliasRequest>,
) -> Result<Response<v1::AliasInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let v = svc.create_alias(&actor, CreateAlias { name: r.name, model: r.model }).await.map_err(|e| e.grpc())?;
    Ok(Response::new(alias_info(v)))
}

pub(super) async fn list_aliases(
    svc: &Service,
    req: Request<v1::ListAliasesRequest>,
) -> Result<Response<v1::ListAliasesResponse>, Status> {
    actor(svc, &req).await?;
    let aliases = svc.list_aliases().await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListAliasesResponse { aliases: aliases.into_iter().map(alias_info).collect() }))
}

pub(super) async fn delete_alias(
    svc: &Service,
    req: Request<v1::DeleteAliasRequest>,
) -> Result<Response<v1::DeleteAliasResponse>, Status> {
    let actor = actor(svc, &req).await?;
    svc.delete_alias(&actor, &req.get_ref().name).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::DeleteAliasResponse {}))
}

pub(super) async fn create_routing_policy(
    svc: &Service,
    req: Request<v1::CreateRoutingPolicyRequest>,
) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let input = create_policy_input(req.into_inner()).map_err(|e| e.grpc())?;
    let v = svc.create_routing_policy(&actor, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(policy_info(v)))
}

pub(super) async fn list_routing_policies(
    svc: &Service,
    req: Request<v1::ListRoutingPoliciesRequest>,
) -> Result<Response<v1::ListRoutingPoliciesResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let policies = svc.list_routing_policies(&actor).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListRoutingPoliciesResponse { policies: policies.into_iter().map(policy_info).collect() }))
}

pub(super) async fn get_routing_policy(
    svc: &Service,
    req: Request<v1::GetRoutingPolicyRequest>,
) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.get_routing_policy(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(policy_info(v)))
}

pub(super) async fn update_routing_policy(
    svc: &Service,
    req: Request<v1::UpdateRoutingPolicyRequest>,
) -> Result<Response<v1::RoutingPolicyInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let patch = UpdateRoutingPolicy { policy: policy_json(&r.policy_json).map_err(|e| e.grpc())? };
    let v = svc.update_routing_policy(&actor, &r.id, patch).await.map_err(|e| e.grpc())?;
    Ok(Response::new(policy_info(v)))
}

pub(super) async fn delete_routing_policy(
    svc: &Service,
    req: Request<v1::DeleteRoutingPolicyRequest>,
) -> Result<Response<v1::DeleteRoutingPolicyResponse>, Status> {
    let actor = actor(svc, &req).await?;
    svc.delete_routing_policy(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::DeleteRoutingPolicyResponse {}))
}
