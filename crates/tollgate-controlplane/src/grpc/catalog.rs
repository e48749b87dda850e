//! `AdminService` provider and model RPCs: the same operations as `/api/v1/providers`
//! and `/api/v1/models`. No response carries a provider credential: only its hint and
//! its fingerprint.

use super::{actor, field_json, model_info, pricing_input};
use crate::ControlError;
use crate::service::{
    CreateModel, CreateProvider, DeploymentInput, PricingInput, ProviderView, Service, UpdateModel, UpdateProvider,
};
use tollgate_core::Money;
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

/// A field that can be set or cleared: `Some(Some(v))` sets, `Some(None)` clears.
pub(super) fn settable<T>(name: &str, set: Option<T>, clear: bool) -> Result<Option<Option<T>>, ControlError> {
    match (set, clear) {
        (Some(_), true) => Err(ControlError::invalid(name, "set and cleared in one request")),
        (Some(v), false) => Ok(Some(Some(v))),
        (None, true) => Ok(Some(None)),
        (None, false) => Ok(None),
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

/// A deployment from the wire; the service validates what is in it.
fn deployment_input(d: v1::Deployment) -> DeploymentInput {
    DeploymentInput {
        provider: d.provider,
        model: d.model,
        priority: d.priority,
        weight: d.weight.unwrap_or_else(|| tollgate_routing::DeploymentOptions::default().weight),
        pricing: d.pricing.map(|p| PricingInput {
            input_per_mtok: Money::from_nanos(p.input_per_mtok_nanos),
            output_per_mtok: Money::from_nanos(p.output_per_mtok_nanos),
            cached_input_per_mtok: p.cached_input_per_mtok_nanos.map(Money::from_nanos),
            cache_write_per_mtok: p.cache_write_per_mtok_nanos.map(Money::from_nanos),
        }),
    }
}

fn model_pricing(p: &v1::ModelPricing) -> Result<PricingInput, ControlError> {
    pricing_input(
        &p.input_per_mtok,
        &p.output_per_mtok,
        p.cached_input_per_mtok.as_deref(),
        p.cache_write_per_mtok.as_deref(),
    )
}

fn create_model_input(r: v1::CreateModelRequest) -> Result<CreateModel, ControlError> {
    Ok(CreateModel {
        name: r.name,
        deployments: r.deployments.into_iter().map(deployment_input).collect(),
        pricing: r.pricing.as_ref().map(model_pricing).transpose()?,
        max_output_tokens: r.max_output_tokens,
    })
}

fn update_model_input(r: v1::UpdateModelRequest) -> Result<UpdateModel, ControlError> {
    Ok(UpdateModel {
        pricing: r.pricing.as_ref().map(model_pricing).transpose()?,
        max_output_tokens: settable("max_output_tokens", r.max_output_tokens, r.clear_max_output_tokens)?,
        deployments: r.deployments.map(|l| l.deployments.into_iter().map(deployment_input).collect()),
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

pub(super) async fn create_model(
    svc: &Service,
    req: Request<v1::CreateModelRequest>,
) -> Result<Response<v1::ModelInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let input = create_model_input(req.into_inner()).map_err(|e| e.grpc())?;
    let v = svc.create_model(&actor, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(model_info(v)))
}

pub(super) async fn get_model(
    svc: &Service,
    req: Request<v1::GetModelRequest>,
) -> Result<Response<v1::ModelInfo>, Status> {
    actor(svc, &req).await?;
    let v = svc.get_model(&req.get_ref().model).await.map_err(|e| e.grpc())?;
    Ok(Response::new(model_info(v)))
}

pub(super) async fn update_model(
    svc: &Service,
    req: Request<v1::UpdateModelRequest>,
) -> Result<Response<v1::ModelInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let id = r.model.clone();
    let patch = update_model_input(r).map_err(|e| e.grpc())?;
    let v = svc.update_model(&actor, &id, patch).await.map_err(|e| e.grpc())?;
    Ok(Response::new(model_info(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_set_cleared_or_left_alone_never_both() {
        assert_eq!(settable("rpm", Some(5), false).unwrap(), Some(Some(5)));
        assert_eq!(settable::<u32>("rpm", None, true).unwrap(), Some(None));
        assert_eq!(settable::<u32>("rpm", None, false).unwrap(), None);
        let e = settable("rpm", Some(5), true).unwrap_err().to_string();
        assert!(e.contains("rpm"), "{e}");
    }
}
