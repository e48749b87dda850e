//! `SecurityService` audit RPCs, the same operations as `/api/v1/audit`.

use super::{actor, time};
use crate::ControlError;
use crate::service::{AuditEventView, AuditQuery, Service};

use tollgate_proto::v1;
use tonic::{Request, Response, Status};

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

pub(super) async fn list_audit(
    svc: &Service,
    req: Request<v1::ListAuditRequest>,
) -> Result<Response<v1::ListAuditResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let q = audit_query(req.into_inner()).map_err(|e| e.grpc())?;
    let page = svc.list_audit(&actor, &q).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::ListAuditResponse {
        events: page.data.into_iter().map(audit_info).collect(),
        next_cursor: page.next_cursor,
    }))
}

pub(super) async fn verify_audit(
    svc: &Service,
    req: Request<v1::VerifyAuditRequest>,
) -> Result<Response<v1::VerifyAuditResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let v = svc.verify_audit(&actor).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::VerifyAuditResponse {
        ok: v.ok,
        checked: v.checked,
        first_broken: v.first_broken.map(|b| v1::BrokenAuditRow { id: b.id, seq: b.seq, reason: b.reason }),
    }))
}
