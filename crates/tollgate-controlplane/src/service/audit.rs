//! The audit trail: appending an event to the hash chain (every write), and reading it: `GET /api/v1/audit` (newest first, paginated) and
//! `GET /api/v1/audit/verify` (re-walks the stored hash chain in order).
//!
//! Both need `audit:read` on an unbound token: events name targets of every tenant, and
//! a chain can only be verified whole, so a token bound to a team or project gets 403.

use super::auth::{Actor, Scope, Target};
use super::{Service, new_id};
use crate::ControlError;
use serde::Serialize;
use std::collections::HashMap;
use tollgate_audit::{AuditEvent, ChainVerifier, ChainedEvent, chain_hash, redact};
use tollgate_core::Timestamp;
use tollgate_store::{AuditFilter, AuditRecord, Store};
use utoipa::ToSchema;

const DEFAULT_AUDIT_LIMIT: u64 = 100;
const MAX_AUDIT_LIMIT: u64 = 1000;
/// Rows read per round while verifying.
const VERIFY_BATCH: u64 = 1000;

/// A parsed `GET /api/v1/audit` query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Only events about this kind of target (`key`, `budget`, `token`, ...).
    pub target_kind: Option<String>,
    /// Only events by this actor (a token id, or `bootstrap`).
    pub actor: Option<String>,
    /// Only events at or after this instant.
    pub since: Option<Timestamp>,
    /// Only events before this instant.
    pub until: Option<Timestamp>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn time(name: &str, v: &str) -> Result<Timestamp, ControlError> {
    Timestamp::parse_rfc3339(v).map_err(|e| ControlError::invalid(name, e.to_string()))
}

impl AuditQuery {
    /// Reads the query parameters, naming the offending one on error.
    pub fn parse(q: HashMap<String, String>) -> Result<AuditQuery, ControlError> {
        let mut out = AuditQuery::default();
        for (k, v) in q {
            if v.len() > 512 {
                return Err(ControlError::invalid(k.chars().take(64).collect::<String>(), "too long"));
            }
            match k.as_str() {
                "target_kind" => out.target_kind = Some(v),
                "actor" => out.actor = Some(v),
                "since" => out.since = Some(time("since", &v)?),
                "until" => out.until = Some(time("until", &v)?),
                "cursor" => out.cursor = Some(v),
                "limit" => out.limit = Some(super::parse_limit(&v)?),
                other => {
                    return Err(ControlError::invalid(
                        other.chars().take(64).collect::<String>(),
                        "unknown query parameter",
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// One audit event as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Position in the chain.
    pub seq: i64,
    /// Id.
    pub id: String,
    /// When.
    pub at: Timestamp,
    /// Who: a token id, or `bootstrap`.
    pub actor: String,
    /// What, e.g. `key.create`.
    pub action: String,
    /// Target kind.
    pub target_kind: String,
    /// Target id.
    pub target_id: String,
    /// Details, secrets removed.
    pub metadata: serde_json::Value,
    /// The chain hash of this event.
    pub hash: String,
}

/// A page of audit events, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    /// The events.
    pub data: Vec<AuditEventView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The first row where the chain does not hold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct BrokenRow {
    /// Its event id.
    pub id: String,
    /// Its position.
    pub seq: i64,
    /// What does not match.
    pub reason: String,
}

/// The result of re-walking the chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct AuditVerification {
    /// Whether every stored row verified.
    pub ok: bool,
    /// How many rows verified before the first broken one (all of them when `ok`).
    pub checked: u64,
    /// The first broken row, if any.
    pub first_broken: Option<BrokenRow>,
}

fn view(r: AuditRecord) -> AuditEventView {
    AuditEventView {
        seq: r.seq,
        id: r.id,
        at: r.at,
        actor: r.actor,
        action: r.action,
        target_kind: r.target_kind,
        target_id: r.target_id,
        metadata: r.metadata,
        hash: r.hash,
    }
}

fn chained(r: AuditRecord) -> ChainedEvent {
    ChainedEvent {
        seq: r.seq,
        event: AuditEvent {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target_kind: r.target_kind,
            target_id: r.target_id,
            metadata: r.metadata,
        },
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}

/// Appends one audit event to the chain in `store`: the store reads the chain's newest
/// hash and inserts this event after it in one transaction, under the chain's lock (a
/// savepoint of the caller's transaction when `store` is a [`tollgate_store::StoreTxn`]'s,
/// so the event commits or rolls back with the write it records).
pub(crate) async fn append_audit(
    store: &Store,
    actor: &str,
    action: &str,
    kind: &str,
    id: &str,
    metadata: serde_json::Value,
) -> Result<i64, tollgate_store::StoreError> {
    let event = AuditEvent {
        id: new_id("aud"),
        at: Timestamp::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target_kind: kind.to_owned(),
        target_id: id.to_owned(),
        metadata: redact(metadata),
    };
    let seal = |prev: &str| {
        let hash = chain_hash(prev, &event);
        tollgate_store::AuditRecord {
            seq: 0,
            id: event.id.clone(),
            at: event.at,
            actor: event.actor.clone(),
            action: event.action.clone(),
            target_kind: event.target_kind.clone(),
            target_id: event.target_id.clone(),
            metadata: event.metadata.clone(),
            prev_hash: prev.to_owned(),
            hash,
        }
    };
    Ok(store.append_audit_chained(tollgate_audit::GENESIS, seal).await?.seq)
}

impl Service {
    /// A page of audit events, newest first.
    pub async fn list_audit(&self, actor: &Actor, q: &AuditQuery) -> Result<AuditPage, ControlError> {
        self.authorize(actor, Scope::AuditRead, Target::Global).await?;
        let before_seq = match &q.cursor {
            Some(c) => Some(c.parse::<i64>().map_err(|_| ControlError::invalid("cursor", "not a cursor of this API"))?),
            None => None,
        };
        let limit = q.limit.unwrap_or(DEFAULT_AUDIT_LIMIT).clamp(1, MAX_AUDIT_LIMIT);
        let f = AuditFilter {
            target_kind: q.target_kind.clone(),
            actor: q.actor.clone(),
            since: q.since,
            until: q.until,
            before_seq,
            limit,
        };
        let rows = self.store.query_audit(&f).await?;
        let next_cursor = match rows.last() {
            Some(last) if rows.len() as u64 == limit => Some(last.seq.to_string()),
            _ => None,
        };
        Ok(AuditPage { data: rows.into_iter().map(view).collect(), next_cursor })
    }

    /// Re-walks the whole stored chain in order and names the first row that breaks it
    /// (edited, or following deleted rows). Deleting the newest rows cannot be seen from
    /// the chain alone.
    pub async fn verify_audit(&self, actor: &Actor) -> Result<AuditVerification, ControlError> {
        self.authorize(actor, Scope::AuditRead, Target::Global).await?;
        let mut verifier = ChainVerifier::new();
        let mut after = None;
        loop {
            let rows = self.store.audit_chain(after, VERIFY_BATCH).await?;
            let done = (rows.len() as u64) < VERIFY_BATCH;
            for r in rows {
                after = Some(r.seq);
                if let Err(e) = verifier.push(&chained(r)) {
                    return Ok(AuditVerification {
                        ok: false,
                        checked: verifier.checked() as u64,
                        first_broken: Some(BrokenRow { id: e.id, seq: e.seq, reason: e.reason }),
                    });
                }
            }
            if done {
                return Ok(AuditVerification { ok: true, checked: verifier.checked() as u64, first_broken: None });
            }
        }
    }
}
