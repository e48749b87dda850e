//! `AdminService` key RPCs: mint, list, read, update, rotate and revoke, the same
//! operations as `/api/v1/keys`.

use super::budgets::thresholds;
use super::{actor, settable};
use crate::ControlError;
use crate::service::{BudgetInput, CreateKey, KeyView, ListKeys, RotateKey, Service, UpdateKey};
use tollgate_core::{Money, Timestamp};
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

fn key_info(v: KeyView) -> v1::KeyInfo {
    v1::KeyInfo {
        id: v.id.to_string(),
        name: v.name,
        project_id: v.project_id.to_string(),
        principal: v.principal,
        status: v.status,
        hint: v.key_hint,
        models_allowed: v.models_allowed,
        rpm: v.rpm.and_then(|x| u32::try_from(x).ok()),
        tpm: v.tpm.and_then(|x| u64::try_from(x).ok()),
        max_concurrency: v.max_concurrency.and_then(|x| u32::try_from(x).ok()),
        metadata: v.metadata.into_iter().collect(),
        expires_at: v.expires_at.map(|t| t.to_rfc3339()),
        created_at: v.created_at.to_rfc3339(),
        rotated_at: v.rotated_at.map(|t| t.to_rfc3339()),
        revoked_at: v.revoked_at.map(|t| t.to_rfc3339()),
        tags: v.tags,
    }
}

fn create_input(r: v1::CreateKeyRequest) -> Result<CreateKey, ControlError> {
    let expires_at = match r.expires_at.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(Timestamp::parse_rfc3339(s).map_err(|e| ControlError::invalid("expires_at", e.to_string()))?),
        None => None,
    };
    let budget = match r.budget {
        Some(b) => Some(BudgetInput {
            // Empty means a token budget (or none at all, which the service refuses).
            limit_usd: match b.limit_usd.as_str() {
                "" if b.limit_tokens.is_some() => None,
                text => Some(
                    Money::parse_non_negative(text)
                        .map_err(|e| ControlError::invalid("budget.limit_usd", e.to_string()))?,
                ),
            },
            limit_tokens: b.limit_tokens,
            alert_thresholds: thresholds("budget.alert_thresholds", &b.alert_thresholds)?,
            window: b.window.parse().map_err(|e| ControlError::invalid("budget.window", format!("{e}")))?,
            on_breach: match b.on_breach.as_str() {
                "" => None,
                s => Some(s.parse().map_err(|e| ControlError::invalid("budget.on_breach", format!("{e}")))?),
            },
            clamp_floor_tokens: b.clamp_floor_tokens,
        }),
        None => None,
    };
    Ok(CreateKey {
        project: r.project,
        name: r.name,
        principal: r.principal,
        models_allowed: r.models_allowed,
        rpm: r.rpm,
        tpm: r.tpm,
        max_concurrency: r.max_concurrency,
        metadata: r.metadata.into_iter().collect(),
        tags: r.tags,
        expires_at,
        budget,
    })
}

fn time_field(name: &str, text: &str) -> Result<Timestamp, ControlError> {
    Timestamp::parse_rfc3339(text).map_err(|e| ControlError::invalid(name, e.to_string()))
}

fn update_key_input(r: v1::UpdateKeyRequest) -> Result<UpdateKey, ControlError> {
    let expires_at = r.expires_at.as_deref().map(|t| time_field("expires_at", t)).transpose()?;
    Ok(UpdateKey {
        name: settable("name", r.name, r.clear_name)?,
        models_allowed: r.models_allowed.map(|l| l.values),
        rpm: settable("rpm", r.rpm, r.clear_rpm)?,
        tpm: settable("tpm", r.tpm, r.clear_tpm)?,
        max_concurrency: settable("max_concurrency", r.max_concurrency, r.clear_max_concurrency)?,
        metadata: r.metadata.map(|m| m.entries.into_iter().collect()),
        tags: r.tags.map(|l| l.values),
        expires_at: settable("expires_at", expires_at, r.clear_expires_at)?,
    })
}

pub(super) async fn create_key(
    svc: &Service,
    req: Request<v1::CreateKeyRequest>,
) -> Result<Response<v1::CreateKeyResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let input = create_input(req.into_inner()).map_err(|e| e.grpc())?;
    let out = svc.create_key(&actor, input).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::CreateKeyResponse { key: Some(key_info(out.view)), secret: out.key }))
}

pub(super) async fn list_keys(
    svc: &Service,
    req: Request<v1::ListKeysRequest>,
) -> Result<Response<v1::ListKeysResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let q = ListKeys {
        project: r.project,
        principal: r.principal,
        status: r.status,
        // Sorted, as REST sorts them, so both ask the store the same question.
        metadata: r.metadata.into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect(),
        tag: r.tag,
        limit: (r.limit > 0).then_some(u64::from(r.limit)),
        after: r.after,
    };
    let page = svc.list_keys(&actor, q).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListKeysResponse {
        keys: page.data.into_iter().map(key_info).collect(),
        next_after: page.next_after.map(|k| k.to_string()),
    }))
}

pub(super) async fn get_key(svc: &Service, req: Request<v1::GetKeyRequest>) -> Result<Response<v1::KeyInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.get_key(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(key_info(v)))
}

pub(super) async fn rotate_key(
    svc: &Service,
    req: Request<v1::RotateKeyRequest>,
) -> Result<Response<v1::RotateKeyResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let out = svc
        .rotate_key(&actor, &r.id, RotateKey { grace_period_s: Some(r.grace_period_s) })
        .await
        .map_err(|e| e.grpc())?;
    Ok(Response::new(v1::RotateKeyResponse { key: Some(key_info(out.view)), secret: out.key }))
}

pub(super) async fn update_key(
    svc: &Service,
    req: Request<v1::UpdateKeyRequest>,
) -> Result<Response<v1::KeyInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let r = req.into_inner();
    let id = r.id.clone();
    let patch = update_key_input(r).map_err(|e| e.grpc())?;
    let v = svc.update_key(&actor, &id, patch).await.map_err(|e| e.grpc())?;
    Ok(Response::new(key_info(v)))
}

pub(super) async fn revoke_key(
    svc: &Service,
    req: Request<v1::RevokeKeyRequest>,
) -> Result<Response<v1::KeyInfo>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.revoke_key(&actor, &req.get_ref().id).await.map_err(|e| e.grpc())?;
    Ok(Response::new(key_info(v)))
}
