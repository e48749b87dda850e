//! The audit log: appends (the caller computes the hash chain; appends never bump the
//! revision), filtered listings newest first, and the chain walked oldest first.
//!
//! [`Store::append_audit_chained`] reads the chain's newest hash and inserts the event
//! that follows it in one transaction (the caller's, when the store is a
//! [`super::StoreTxn`]'s), under a lock every appender takes: on PostgreSQL a
//! transaction-scoped advisory lock, on SQLite the write lock an `IMMEDIATE` transaction
//! holds. Two appenders, in one process or several, can then never both chain onto the
//! same event.

use super::Store;
use crate::convert::{audit_from_row, audit_to_active};
use crate::entity::audit_event;
use crate::error::{StoreError, write_err};
use crate::records::{AuditFilter, AuditRecord};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tollgate_core::Timestamp;

/// The largest page [`Store::list_audit`] returns.
const AUDIT_PAGE_MAX: u64 = 1000;

/// The PostgreSQL advisory lock key of the audit chain (the bytes of "tollgate").
const AUDIT_CHAIN_LOCK: i64 = 0x746f_6c6c_6761_7465;

impl Store {
    /// Appends the next event of the hash chain: inside one write transaction (a
    /// savepoint of the caller's when this store is a [`super::StoreTxn`]'s), under the
    /// chain's lock (see the module docs), reads the newest event's hash — `genesis` when
    /// the chain is empty — and stores `seal(prev_hash)`, which must carry that
    /// `prev_hash` and its own chain hash. Returns the stored record with its seq.
    ///
    /// [`StoreError::Invalid`] if the sealed record does not follow `prev_hash`;
    /// [`StoreError::Conflict`] if its id is taken; nothing is stored on any error.
    pub async fn append_audit_chained<F>(&self, genesis: &str, seal: F) -> Result<AuditRecord, StoreError>
    where
        F: FnOnce(&str) -> AuditRecord + Send,
    {
        let txn = self.begin_write().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({AUDIT_CHAIN_LOCK})")).await?;
        }
        let last = audit_event::Entity::find().order_by_desc(audit_event::Column::Seq).one(&txn).await?;
        let prev = match last {
            Some(row) => audit_from_row(row)?.hash,
            None => genesis.to_owned(),
        };
        let mut rec = seal(&prev);
        if rec.prev_hash != prev {
            return Err(StoreError::Invalid {
                kind: "audit event",
                detail: format!("event {:?} does not follow the chain's newest hash", rec.id),
            });
        }
        let am = audit_to_active(&rec)?;
        let res = audit_event::Entity::insert(am)
            .exec(&txn)
            .await
            .map_err(|err| write_err("audit event", err, &[], format!("audit event id {:?} is taken", rec.id)))?;
        txn.commit().await?;
        rec.seq = res.last_insert_id;
        Ok(rec)
    }

    /// Appends an audit event; computes nothing itself — the caller passes prev_hash/hash.
    /// Returns the seq the database assigned (`e.seq` is ignored). Does not bump the
    /// revision.
    ///
    /// [`StoreError::Conflict`] if the event id is taken.
    pub async fn append_audit(&self, e: &AuditRecord) -> Result<i64, StoreError> {
        let am = audit_to_active(e)?;
        let res = audit_event::Entity::insert(am)
            .exec(&self.db())
            .await
            .map_err(|err| write_err("audit event", err, &[], format!("audit event id {:?} is taken", e.id)))?;
        Ok(res.last_insert_id)
    }

    /// The newest audit event.
    pub async fn last_audit(&self) -> Result<Option<AuditRecord>, StoreError> {
        audit_event::Entity::find()
            .order_by_desc(audit_event::Column::Seq)
            .one(&self.db())
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
            .all(&self.db())
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
            .all(&self.db())
            .await?
            .into_iter()
            .map(audit_from_row)
            .collect()
    }
}
