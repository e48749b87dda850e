//! `AdminService` provider RPCs: the same operations as `/api/v1/providers`. No
//! response carries a provider credential: only its hint and its fingerprint.

use super::{actor, field_json, settable};
use crate::ControlError;
use crate::service::{CreateProvider, ProviderView, Service, UpdateProvider};

use tollgate_proto::v1;
use tonic::{Request, Response, Status};

pub(super) fn provider_info(v: ProviderView) -> v1::ProviderInfo {
    v1::ProviderInfo {
        id: v.id.to_string(),
        name: v.name,
        kind: v.kind,
        base_url: v.base_url,
        api_key_hint: v.api_key_hint,
        api_key_fingerprint: v.api_key_fingerprint,
        rpm: v.rpm.and_then(|x| u32::try_from(x).ok()),
        tpm: v.tpm.and_then(|x| u64::try_from(x).ok()),
        priority: v.priority,
        created_at: v.created_at.to_rfc3339(),
        extra_json: if v.extra.is_null() { String::new() } else { v.extra.to_string() },
    }
}

fn create_provider_input(r: v1::CreateProviderRequest) -> Result<CreateProvider, ControlError> {
    Ok(CreateProvider {
        name: r.name,
        kind: r.kind,
        base_url: r.base_url,
        api_key: r.api_key,
        rpm: r.rpm,
        tpm: r.tpm,
        priority: r.priority,
        extra: r.extra_json.as_deref().map(|t| field_json("extra_json", t)).transpose()?,
    })
}

fn update_provider_input(r: v1::UpdateProviderRequest) -> Result<UpdateProvider, ControlError> {
    Ok(UpdateProvider {
        base_url: r.base_url,
        api_key: r.api_key,
        rpm: settable("rpm", r.rpm, r.clear_rpm)?,
        tpm: settable("tpm", r.tpm, r.clear_tpm)?,
        priority: r.priority,
        extra: r.extra_json.as_deref().map(|t| field_json("extra_json", t)).transpose()?,
    })
}

pub(super) async fn create_provider(
    svc: &Service,
    req: Request<v1::CreateProviderRequest>,
) -> Result<Response<v1::ProviderInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let input = create_provider_input(req.into_inner()).map_err(|e| e.grpc())?;
    let v = svc.create_provider(&actor, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(provider_info(v)))
}

pub(super) async fn list_providers(
    svc: &Service,
    req: Request<v1::ListProvidersRequest>,
) -> Result<Response<v1::ListProvidersResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let providers = svc.list_providers(&actor).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListProvidersResponse { providers: providers.into_iter().map(provider_info).collect() }))
}

pub(super) async fn get_provider(
    svc: &Service,
    req: Request<v1::GetProviderRequest>,
) -> Result<Response<v1::ProviderInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.get_provider(&actor, &req.get_ref().provider).await.map_err(|e| e.grpc())?;
    Ok(Response::new(provider_info(v)))
}

pub(super) async fn update_provider(
    svc: &Service,
    req: Request<v1::UpdateProviderRequest>,
) -> Result<Response<v1::ProviderInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let id = r.provider.clone();
    let patch = update_provider_input(r).map_err(|e| e.grpc())?;
    let v = svc.update_provider(&actor, &id, patch).await.map_err(|e| e.grpc())?;
    Ok(Response::new(provider_info(v)))
}
