//! The audit log: appends (the caller computes the hash chain; appends never bump the
//! revision), filtered listings newest first, and the chain walked oldest first.

use super::Store;
use crate::convert::{audit_from_row, audit_to_active};
use crate::entity::audit_event;
use crate::error::{StoreError, write_err};
use crate::records::{AuditFilter, AuditRecord};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tollgate_core::Timestamp;

/// The largest page [`Store::list_audit`] returns.
const AUDIT_PAGE_MAX: u64 = 1000;

impl Store {
    /// Appends an audit event; computes nothing itself — the caller passes prev_hash/hash.
    /// Returns the seq the database assigned (`e.seq` is ignored). Does not bump the
    /// revision.
    ///
    /// [`StoreError::Conflict`] if the event id is taken.
    pub async fn append_audit(&self, e: &AuditRecord) -> Result<i64, StoreError> {
        let am = audit_to_active(e)?;
        let res = audit_event::Entity::insert(am)
            .exec(&self.db)
            .await
            .map_err(|err| write_err("audit event", err, &[], format!("audit event id {:?} is taken", e.id)))?;
        Ok(res.last_insert_id)
    }

    /// The newest audit event.
    pub async fn last_audit(&self) -> Result<Option<AuditRecord>, StoreError> {
        audit_event::Entity::find()
            .order_by_desc(audit_event::Column::Seq)
            .one(&self.db)
            .await?
            .map(audit_from_row)
            .transpose()
    }

    /// Audit events, newest first: optionally only of one target kind, at or after
    /// `since`, and with seq below `before_seq` (pass the last seq of a page for the
    /// next). At most `limit` events, capped at 1000.
    pub async fn list_audit(
        &self,
        target_kind: Option<&str>,
        since: Option<Timestamp>,
        limit: u64,
        before_seq: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let f = AuditFilter {
            target_kind: target_kind.map(str::to_owned),
            since,
            before_seq,
            limit,
            ..AuditFilter::default()
        };
        self.query_audit(&f).await
    }

    /// Audit events matching every set field of `f`, newest first (descending seq); at
    /// most `f.limit`, capped at 1000.
    pub async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = f.limit.min(AUDIT_PAGE_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut q = audit_event::Entity::find();
        if let Some(k) = &f.target_kind {
            q = q.filter(audit_event::Column::TargetKind.eq(k.as_str()));
        }
        if let Some(a) = &f.actor {
            q = q.filter(audit_event::Column::Actor.eq(a.as_str()));
        }
        if let Some(t) = f.since {
            q = q.filter(audit_event::Column::At.gte(t.unix_millis()));
        }
        if let Some(t) = f.until {
            q = q.filter(audit_event::Column::At.lt(t.unix_millis()));
        }
        if let Some(s) = f.before_seq {
            q = q.filter(audit_event::Column::Seq.lt(s));
        }
        q.order_by_desc(audit_event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(audit_from_row)
            .collect()
    }

    /// The audit chain in stored order: at most `limit` events (capped at 1000) with seq
    /// above `after_seq`, oldest first. Walk it page by page to verify the whole chain.
    pub async fn audit_chain(&self, after_seq: Option<i64>, limit: u64) -> Result<Vec<AuditRecord>, StoreError> {
        let mut q = audit_event::Entity::find();
        if let Some(s) = after_seq {
            q = q.filter(audit_event::Column::Seq.gt(s));
        }
        q.order_by_asc(audit_event::Column::Seq)
            .limit(limit.min(AUDIT_PAGE_MAX))
            .all(&self.db)
            .await?
            .into_iter()
            .map(audit_from_row)
            .collect()
    }
}
