//! `AdminService` model RPCs: the catalog, its deployments and prices, the same
//! operations as `/api/v1/models`.

use super::{actor, settable};
use crate::ControlError;
use crate::service::{CreateModel, DeploymentInput, ModelView, PricingInput, Service, TokensPerPart, UpdateModel};
use tollgate_core::Money;
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

fn model_info(m: ModelView) -> v1::ModelInfo {
    let p = m.pricing;
    v1::ModelInfo {
        id: m.id.to_string(),
        name: m.name,
        deployments: m
            .deployments
            .into_iter()
            .map(|d| v1::Deployment {
                provider: d.provider,
                model: d.model,
                priority: d.priority,
                weight: Some(d.weight),
                pricing: d.pricing.map(|p| v1::Pricing {
                    input_per_mtok_nanos: p.input_per_mtok.nanos(),
                    output_per_mtok_nanos: p.output_per_mtok.nanos(),
                    cached_input_per_mtok_nanos: p.cached_input_per_mtok.map(tollgate_core::Money::nanos),
                    cache_write_per_mtok_nanos: p.cache_write_per_mtok.map(tollgate_core::Money::nanos),
                }),
            })
            .collect(),
        input_per_mtok: p.map(|p| p.input_per_mtok.to_string()),
        output_per_mtok: p.map(|p| p.output_per_mtok.to_string()),
        cached_input_per_mtok: p.and_then(|p| p.cached_input_per_mtok).map(|m| m.to_string()),
        cache_write_per_mtok: p.and_then(|p| p.cache_write_per_mtok).map(|m| m.to_string()),
        price_source: m.price_source,
        max_output_tokens: m.max_output_tokens,
        max_tokens_per_part: m.max_tokens_per_part.map(|t| v1::TokensPerPart {
            image: t.image,
            audio: t.audio,
            file: t.file,
        }),
    }
}

fn tokens_per_part(t: v1::TokensPerPart) -> TokensPerPart {
    TokensPerPart { image: t.image, audio: t.audio, file: t.file }
}

fn price(name: &str, text: &str) -> Result<Money, ControlError> {
    Money::parse_non_negative(text).map_err(|e| ControlError::invalid(name, e.to_string()))
}

/// Prices from USD decimal strings, naming the field (`pricing.input_per_mtok`) on error.
fn pricing_input(
    input: &str,
    output: &str,
    cached_input: Option<&str>,
    cache_write: Option<&str>,
) -> Result<PricingInput, ControlError> {
    Ok(PricingInput {
        input_per_mtok: price("pricing.input_per_mtok", input)?,
        output_per_mtok: price("pricing.output_per_mtok", output)?,
        cached_input_per_mtok: cached_input.map(|t| price("pricing.cached_input_per_mtok", t)).transpose()?,
        cache_write_per_mtok: cache_write.map(|t| price("pricing.cache_write_per_mtok", t)).transpose()?,
    })
}

fn set_price_input(r: &v1::SetModelPriceRequest) -> Result<UpdateModel, ControlError> {
    Ok(UpdateModel {
        pricing: Some(pricing_input(
            &r.input_per_mtok,
            &r.output_per_mtok,
            r.cached_input_per_mtok.as_deref(),
            r.cache_write_per_mtok.as_deref(),
        )?),
        ..UpdateModel::default()
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
        max_tokens_per_part: r.max_tokens_per_part.map(tokens_per_part),
    })
}

fn update_model_input(r: v1::UpdateModelRequest) -> Result<UpdateModel, ControlError> {
    Ok(UpdateModel {
        pricing: r.pricing.as_ref().map(model_pricing).transpose()?,
        max_output_tokens: settable("max_output_tokens", r.max_output_tokens, r.clear_max_output_tokens)?,
        deployments: r.deployments.map(|l| l.deployments.into_iter().map(deployment_input).collect()),
        max_tokens_per_part: settable(
            "max_tokens_per_part",
            r.max_tokens_per_part.map(tokens_per_part),
            r.clear_max_tokens_per_part,
        )?,
    })
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

pub(super) async fn list_models(
    svc: &Service,
    req: Request<v1::ListModelsRequest>,
) -> Result<Response<v1::ListModelsResponse>, Status> {
    actor(svc, &req).await?;
    let models = svc.list_models().await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListModelsResponse { models: models.into_iter().map(model_info).collect() }))
}

pub(super) async fn set_model_price(
    svc: &Service,
    req: Request<v1::SetModelPriceRequest>,
) -> Result<Response<v1::ModelInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let patch = set_price_input(&r).map_err(|e| e.grpc())?;
    let v = svc.update_model(&actor, &r.model, patch).await.map_err(|e| e.grpc())?;
    Ok(Response::new(model_info(v)))
}
