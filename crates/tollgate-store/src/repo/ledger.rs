//! The ledger in the database: [`Store`] as a [`LedgerSink`], and the spend queries that
//! budget counters are rebuilt from after a restart.
//!
//! Ledger writes are not configuration: they never bump `meta.revision`. A batch is one
//! transaction of `INSERT ... ON CONFLICT (request_id) DO NOTHING`, so a replayed entry,
//! or one repeated inside a batch, is stored once and the first stored copy wins. The
//! entry's tags also go to `ledger_tags` (one row per distinct tag) in that transaction,
//! `ON CONFLICT (request_id, tag) DO NOTHING`, so a replay adds no row there either.
//! Entries the database could never take (a count above `i64::MAX`, a NUL byte in a
//! string, a value the database refuses as data) are checked up front or recognised by
//! their error code, and reported as [`SinkError::Rejected`] on both backends alike;
//! anything else is [`SinkError::Unavailable`], so the writer retries it.

use crate::entity::{ledger_entry, ledger_tag};
use crate::error::StoreError;
use crate::repo::Store;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QuerySelect, RuntimeErr,
};
use std::collections::{BTreeMap, HashSet};
use tollgate_core::{KeyId, Money, OrgId, ProjectId, ScopeKind, TeamId, Timestamp};
use tollgate_metering::{Attempt, LedgerEntry, LedgerSink, SinkError, SinkFuture, UsageSource};

/// Rows per `INSERT` statement: 26 bound values each keeps a statement far below the
/// bind-parameter limits of SQLite (32766) and PostgreSQL (65535).
const INSERT_CHUNK: usize = 200;

/// Rows per `INSERT` into `ledger_tags` (two bound values each).
const TAG_INSERT_CHUNK: usize = 2000;

/// Why an entry cannot be stored; the text names the request, never a secret.
fn refuse(e: &LedgerEntry, what: &str) -> SinkError {
    SinkError::rejected(format!("ledger entry {:?}: {what}", e.request_id))
}

fn count(e: &LedgerEntry, field: &str, v: u64) -> Result<i64, SinkError> {
    i64::try_from(v).map_err(|_| refuse(e, &format!("{field} {v} does not fit a signed 64-bit column")))
}

fn json<T: serde::Serialize>(e: &LedgerEntry, field: &str, v: &T) -> Result<String, SinkError> {
    serde_json::to_string(v).map_err(|err| refuse(e, &format!("{field} is not serializable: {err}")))
}

fn usage_source_str(s: UsageSource) -> &'static str {
    s.as_str()
}

/// The row of `e`, or why the database could never store it.
fn entry_to_row(e: &LedgerEntry) -> Result<ledger_entry::Model, SinkError> {
    let strings = [
        Some(e.request_id.as_str()),
        Some(e.key_id.as_str()),
        e.key_name.as_deref(),
        e.principal.as_deref(),
        Some(e.project_id.as_str()),
        e.team_id.as_ref().map(|t| t.as_str()),
        e.org_id.as_ref().map(|o| o.as_str()),
        Some(e.requested_model.as_str()),
        Some(e.served_model.as_str()),
        Some(e.provider.as_str()),
        e.client_request_id.as_deref(),
    ];
    // PostgreSQL refuses NUL in text; refuse it on SQLite too, so both backends agree.
    // (Inside the JSON columns serde_json escapes it as \u0000.)
    if strings.into_iter().flatten().chain(e.tags.iter().map(String::as_str)).any(|s| s.contains('\0')) {
        return Err(refuse(e, "a text field holds a NUL byte"));
    }
    Ok(ledger_entry::Model {
        request_id: e.request_id.clone(),
        at_ms: e.at.unix_millis(),
        key_id: e.key_id.as_str().to_owned(),
        key_name: e.key_name.clone(),
        principal: e.principal.clone(),
        project_id: e.project_id.as_str().to_owned(),
        team_id: e.team_id.as_ref().map(|t| t.as_str().to_owned()),
        org_id: e.org_id.as_ref().map(|o| o.as_str().to_owned()),
        requested_model: e.requested_model.clone(),
        served_model: e.served_model.clone(),
        provider: e.provider.clone(),
        input_tokens: count(e, "input_tokens", e.input_tokens)?,
        output_tokens: count(e, "output_tokens", e.output_tokens)?,
        cached_input_tokens: count(e, "cached_input_tokens", e.cached_input_tokens)?,
        reasoning_tokens: count(e, "reasoning_tokens", e.reasoning_tokens)?,
        cache_write_tokens: count(e, "cache_write_tokens", e.cache_write_tokens)?,
        cost_nanos: e.cost.nanos(),
        status: i32::from(e.status),
        latency_ms: count(e, "latency_ms", e.latency_ms)?,
        usage_source: usage_source_str(e.usage_source).to_owned(),
        stream: e.stream,
        tags_json: json(e, "tags", &e.tags)?,
        metadata_json: json(e, "metadata", &e.metadata)?,
        attempts_json: json(e, "attempts", &e.attempts)?,
        client_request_id: e.client_request_id.clone(),
        priced: e.priced,
    })
}

fn corrupt(id: &str, detail: String) -> StoreError {
    StoreError::Corrupt { kind: "ledger entry", id: id.to_owned(), detail }
}

fn unsigned(id: &str, column: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(id, format!("column {column} is negative: {v}")))
}

fn from_json<T: serde::de::DeserializeOwned>(id: &str, column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(id, format!("column {column}: {e}")))
}

pub(crate) fn entry_from_row(m: ledger_entry::Model) -> Result<LedgerEntry, StoreError> {
    let id = m.request_id.as_str();
    let Some(usage_source) = UsageSource::parse(&m.usage_source) else {
        return Err(corrupt(id, format!("column usage_source: unknown value {:?}", m.usage_source)));
    };
    let status = u16::try_from(m.status).map_err(|_| corrupt(id, format!("column status: {}", m.status)))?;
    let tags: Vec<String> = from_json(id, "tags_json", &m.tags_json)?;
    let metadata: BTreeMap<String, String> = from_json(id, "metadata_json", &m.metadata_json)?;
    let attempts: Vec<Attempt> = from_json(id, "attempts_json", &m.attempts_json)?;
    Ok(LedgerEntry {
        at: Timestamp::from_unix_millis(m.at_ms),
        key_id: KeyId::new(m.key_id),
        key_name: m.key_name,
        principal: m.principal,
        project_id: ProjectId::new(m.project_id),
        team_id: m.team_id.map(TeamId::new),
        org_id: m.org_id.map(OrgId::new),
        requested_model: m.requested_model,
        served_model: m.served_model,
        provider: m.provider,
        input_tokens: unsigned(id, "input_tokens", m.input_tokens)?,
        output_tokens: unsigned(id, "output_tokens", m.output_tokens)?,
        cached_input_tokens: unsigned(id, "cached_input_tokens", m.cached_input_tokens)?,
        reasoning_tokens: unsigned(id, "reasoning_tokens", m.reasoning_tokens)?,
        cache_write_tokens: unsigned(id, "cache_write_tokens", m.cache_write_tokens)?,
        cost: Money::from_nanos(m.cost_nanos),
        status,
        latency_ms: unsigned(id, "latency_ms", m.latency_ms)?,
        usage_source,
        tags,
        metadata,
        attempts,
        stream: m.stream,
        request_id: m.request_id,
        client_request_id: m.client_request_id,
        priced: m.priced,
    })
}

/// Whether the database refused a statement for its data (retrying cannot help) rather
/// than failing: PostgreSQL SQLSTATE classes 22 (data exception), 23 (integrity
/// constraint) and 54 (program limit, e.g. an index row too large); SQLite primary codes
/// SQLITE_TOOBIG, SQLITE_CONSTRAINT and SQLITE_MISMATCH.
fn refused_as_data(backend: DbBackend, e: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err))) = e else {
        return false;
    };
    let Some(code) = err.as_database_error().and_then(|d| d.code()) else {
        return false;
    };
    match backend {
        DbBackend::Postgres => ["22", "23", "54"].iter().any(|class| code.starts_with(class)),
        DbBackend::Sqlite => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 18..=20)),
        _ => false,
    }
}

/// The sink error for a failed ledger statement.
fn sink_err(backend: DbBackend, e: DbErr) -> SinkError {
    if refused_as_data(backend, &e) {
        SinkError::rejected(StoreError::Database(e))
    } else {
        SinkError::unavailable(StoreError::Database(e))
    }
}

/// The column an entry names its `scope` target in.
pub(crate) fn scope_column(scope: ScopeKind) -> ledger_entry::Column {
    match scope {
        ScopeKind::VirtualKey => ledger_entry::Column::KeyId,
        ScopeKind::Principal => ledger_entry::Column::Principal,
        ScopeKind::Project => ledger_entry::Column::ProjectId,
        ScopeKind::Team => ledger_entry::Column::TeamId,
        ScopeKind::Organization => ledger_entry::Column::OrgId,
    }
}

impl Store {
    async fn write_ledger(&self, entries: &[LedgerEntry]) -> Result<(), SinkError> {
        let mut seen = HashSet::with_capacity(entries.len());
        let mut rows = Vec::with_capacity(entries.len());
        let mut tag_rows = Vec::new();
        for e in entries {
            if seen.insert(e.request_id.as_str()) {
                rows.push(entry_to_row(e)?);
                let mut tags: Vec<&String> = e.tags.iter().collect();
                tags.sort();
                tags.dedup();
                tag_rows.extend(
                    tags.into_iter().map(|t| ledger_tag::Model { request_id: e.request_id.clone(), tag: t.clone() }),
                );
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let backend = self.db().get_database_backend();
        let txn = self.begin_write().await.map_err(|e| match e {
            StoreError::Database(db) => sink_err(backend, db),
            other => SinkError::unavailable(other),
        })?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            ledger_entry::Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
                .on_conflict(OnConflict::column(ledger_entry::Column::RequestId).do_nothing().to_owned())
                .exec_without_returning(&txn)
                .await
                .map_err(|e| sink_err(backend, e))?;
        }
        for chunk in tag_rows.chunks(TAG_INSERT_CHUNK) {
            ledger_tag::Entity::insert_many(chunk.iter().cloned().map(IntoActiveModel::into_active_model))
                .on_conflict(
                    OnConflict::columns([ledger_tag::Column::RequestId, ledger_tag::Column::Tag])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(|e| sink_err(backend, e))?;
        }
        txn.commit().await.map_err(|e| sink_err(backend, e))
    }

    /// The spend of one scope target over `[from, to)`: the sum of `cost` (nano-dollars)
    /// and of `input_tokens + output_tokens` of the ledger entries accepted at or after
    /// `from` and before `to` whose key / principal / project / team / organization
    /// (by `scope`) is `scope_id`. `(0, 0)` when there are none.
    ///
    /// Exact integer sums; a sum beyond `i64::MAX` is a [`StoreError::Database`] error
    /// rather than a wrapped value.
    pub async fn ledger_spend(
        &self,
        scope: ScopeKind,
        scope_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(i64, u64), StoreError> {
        // CAST: PostgreSQL sums BIGINT as NUMERIC, which would not read back as i64.
        let row: Option<(i64, i64)> = ledger_entry::Entity::find()
            .select_only()
            .column_as(Expr::cust("COALESCE(CAST(SUM(cost_nanos) AS BIGINT), 0)"), "cost")
            .column_as(Expr::cust("COALESCE(CAST(SUM(input_tokens + output_tokens) AS BIGINT), 0)"), "tokens")
            .filter(scope_column(scope).eq(scope_id))
            .filter(ledger_entry::Column::AtMs.gte(from.unix_millis()))
            .filter(ledger_entry::Column::AtMs.lt(to.unix_millis()))
            .into_tuple()
            .one(&self.db())
            .await?;
        let (cost, tokens) = row.unwrap_or((0, 0));
        let tokens = u64::try_from(tokens).map_err(|_| StoreError::Corrupt {
            kind: "ledger entry",
            id: format!("{scope}:{scope_id}"),
            detail: format!("token sum is negative: {tokens}"),
        })?;
        Ok((cost, tokens))
    }

    /// How many ledger entries are stored.
    pub async fn ledger_count(&self) -> Result<u64, StoreError> {
        Ok(ledger_entry::Entity::find().count(&self.db()).await?)
    }

    /// The stored ledger entry of `request_id`, exactly as it was first written.
    pub async fn ledger_entry(&self, request_id: &str) -> Result<Option<LedgerEntry>, StoreError> {
        ledger_entry::Entity::find_by_id(request_id).one(&self.db()).await?.map(entry_from_row).transpose()
    }
}

impl LedgerSink for Store {
    /// Stores the batch in one transaction, each request id once; see the module docs.
    fn write_batch<'a>(&'a self, entries: &'a [LedgerEntry]) -> SinkFuture<'a> {
        Box::pin(self.write_ledger(entries))
    }
}
