//! Usage reports over the ledger: totals and per-group sums (model, UTC day, UTC hour,
//! key, principal, tag) of one scope or one tag over a half-open time range, and raw
//! entries in pages.
//!
//! Tags are read through the `ledger_tags` side table (one row per distinct tag of an
//! entry): a tag filter is `request_id IN (SELECT request_id FROM ledger_tags WHERE tag
//! = ?)`, and grouping by tag is an inner join, so an entry without tags falls in no tag
//! group and an entry with two tags counts once in each of them.
//!
//! Every sum is an integer computed in SQL and cast back to BIGINT (PostgreSQL sums a
//! BIGINT as NUMERIC). Days and hours are buckets of `at_ms` by integer division, so they
//! are UTC and identical on every backend. Groups come back sorted bytewise by their key
//! in Rust, so the order does not depend on the database's collation.

use super::ledger::{entry_from_row, scope_column};
use crate::entity::{ledger_entry, ledger_tag};
use crate::error::StoreError;
use crate::repo::Store;
use sea_orm::sea_query::{Condition, Expr, Query, SimpleExpr};
use sea_orm::{ColumnTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, RelationTrait, Select};
use tollgate_core::{Money, ScopeKind, Timestamp};
use tollgate_metering::LedgerEntry;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Which ledger entries a usage query covers: those accepted in `[from, to)`, of one
/// scope target when `scope` is set, carrying `tag` when it is set, with the given
/// request ids when those are set, of everything otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageFilter {
    /// The scope kind and the id of its target (`key_…`, a principal, `prj_…`, …).
    pub scope: Option<(ScopeKind, String)>,
    /// Only entries whose key carried this tag (exact match).
    pub tag: Option<String>,
    /// Only entries inside this team or project (`(Team, id)` or `(Project, id)`), on
    /// top of `scope`: how a tenant-bound admin token is confined to its tenancy.
    pub within: Option<(ScopeKind, String)>,
    /// Only the entry with this (gateway-generated) request id.
    pub request_id: Option<String>,
    /// Only entries whose caller sent this `x-request-id` (exact match; several entries
    /// may share one, since it deduplicates nothing).
    pub client_request_id: Option<String>,
    /// First instant covered.
    pub from: Timestamp,
    /// First instant no longer covered.
    pub to: Timestamp,
}

impl UsageFilter {
    /// Everything from `from` (included) to `to` (excluded), no other condition: add
    /// conditions with struct-update syntax.
    pub fn between(from: Timestamp, to: Timestamp) -> Self {
        UsageFilter { scope: None, tag: None, within: None, request_id: None, client_request_id: None, from, to }
    }
}

/// A dimension usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageGroup {
    /// The model that served the request (after aliasing and fallback): what the
    /// platform paid for.
    Model,
    /// The model the caller asked for (a public name or an alias): what the caller
    /// bought, for billing by the names customers see.
    RequestedModel,
    /// The UTC day the entry was accepted.
    Day,
    /// The UTC hour the entry was accepted.
    Hour,
    /// The virtual key id.
    Key,
    /// The principal (end user) the key names; entries without one group under `None`.
    Principal,
    /// Each tag of the key; an entry counts once in every one of its tags and, when it
    /// has none, in no group.
    Tag,
}

impl UsageGroup {
    /// Every group, in the order reports show them.
    pub const ALL: [UsageGroup; 7] = [
        UsageGroup::Model,
        UsageGroup::RequestedModel,
        UsageGroup::Day,
        UsageGroup::Hour,
        UsageGroup::Key,
        UsageGroup::Principal,
        UsageGroup::Tag,
    ];

    /// The name used in queries and reports (`model`, `day`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            UsageGroup::Model => "model",
            UsageGroup::RequestedModel => "requested_model",
            UsageGroup::Day => "day",
            UsageGroup::Hour => "hour",
            UsageGroup::Key => "key",
            UsageGroup::Principal => "principal",
            UsageGroup::Tag => "tag",
        }
    }

    fn expr(self) -> SimpleExpr {
        match self {
            UsageGroup::Model => Expr::col(ledger_entry::Column::ServedModel),
            UsageGroup::RequestedModel => Expr::col(ledger_entry::Column::RequestedModel),
            UsageGroup::Day => Expr::cust(format!("(at_ms / {MS_PER_DAY})")),
            UsageGroup::Hour => Expr::cust(format!("(at_ms / {MS_PER_HOUR})")),
            UsageGroup::Key => Expr::col(ledger_entry::Column::KeyId),
            UsageGroup::Principal => Expr::col(ledger_entry::Column::Principal),
            UsageGroup::Tag => Expr::col((ledger_tag::Entity, ledger_tag::Column::Tag)),
        }
    }
}

/// Sums over a set of ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageTotals {
    /// How many entries (requests).
    pub requests: u64,
    /// Sum of `input_tokens`.
    pub input_tokens: u64,
    /// Sum of `output_tokens`.
    pub output_tokens: u64,
    /// Sum of `cached_input_tokens`.
    pub cached_input_tokens: u64,
    /// Sum of `cost`, exact.
    pub cost: Money,
}

/// The key of one group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum UsageKey {
    /// A model, key id, principal (`None`: entries without a principal) or tag.
    Name(Option<String>),
    /// The first instant of a UTC day or hour bucket.
    Start(Timestamp),
}

/// The sums of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// What the entries of this group share.
    pub key: UsageKey,
    /// Their sums.
    pub totals: UsageTotals,
}

/// Where a ledger page starts: after the entry accepted at `at` with this `request_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCursor {
    /// When the last entry seen was accepted.
    pub at: Timestamp,
    /// Its request id.
    pub request_id: String,
}

type SumRow = (i64, i64, i64, i64, i64);

fn filtered(f: &UsageFilter) -> Select<ledger_entry::Entity> {
    let mut q = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::AtMs.gte(f.from.unix_millis()))
        .filter(ledger_entry::Column::AtMs.lt(f.to.unix_millis()));
    for (kind, id) in [&f.scope, &f.within].into_iter().flatten() {
        q = q.filter(scope_column(*kind).eq(id.as_str()));
    }
    if let Some(id) = &f.request_id {
        q = q.filter(ledger_entry::Column::RequestId.eq(id.as_str()));
    }
    if let Some(id) = &f.client_request_id {
        q = q.filter(ledger_entry::Column::ClientRequestId.eq(id.as_str()));
    }
    if let Some(tag) = &f.tag {
        q = q.filter(
            ledger_entry::Column::RequestId.in_subquery(
                Query::select()
                    .column(ledger_tag::Column::RequestId)
                    .from(ledger_tag::Entity)
                    .and_where(ledger_tag::Column::Tag.eq(tag.as_str()))
                    .to_owned(),
            ),
        );
    }
    q
}

fn with_sums(q: Select<ledger_entry::Entity>) -> Select<ledger_entry::Entity> {
    q.column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "requests")
        .column_as(Expr::cust("COALESCE(CAST(SUM(input_tokens) AS BIGINT), 0)"), "input_tokens")
        .column_as(Expr::cust("COALESCE(CAST(SUM(output_tokens) AS BIGINT), 0)"), "output_tokens")
        .column_as(Expr::cust("COALESCE(CAST(SUM(cached_input_tokens) AS BIGINT), 0)"), "cached_input_tokens")
        .column_as(Expr::cust("COALESCE(CAST(SUM(cost_nanos) AS BIGINT), 0)"), "cost_nanos")
}

fn totals(what: &str, (requests, input, output, cached, cost): SumRow) -> Result<UsageTotals, StoreError> {
    let count = |column: &str, v: i64| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt {
            kind: "ledger entry",
            id: what.to_owned(),
            detail: format!("sum of {column} is negative: {v}"),
        })
    };
    Ok(UsageTotals {
        requests: count("requests", requests)?,
        input_tokens: count("input_tokens", input)?,
        output_tokens: count("output_tokens", output)?,
        cached_input_tokens: count("cached_input_tokens", cached)?,
        cost: Money::from_nanos(cost),
    })
}

impl Store {
    /// The sums over every entry `f` covers; all zero when there are none.
    ///
    /// A sum beyond `i64::MAX` is a [`StoreError::Database`] error, never a wrapped value.
    pub async fn usage_totals(&self, f: &UsageFilter) -> Result<UsageTotals, StoreError> {
        let row: Option<SumRow> = with_sums(filtered(f).select_only()).into_tuple().one(&self.db()).await?;
        totals("usage totals", row.unwrap_or_default())
    }

    /// The sums of each group of `group` among the entries `f` covers, sorted by key
    /// (names bytewise, `None` first; buckets oldest first). Groups without entries are
    /// absent.
    pub async fn usage_by(&self, f: &UsageFilter, group: UsageGroup) -> Result<Vec<UsageRow>, StoreError> {
        let mut q = filtered(f).select_only();
        if group == UsageGroup::Tag {
            q = q.join(JoinType::InnerJoin, ledger_tag::Relation::Entry.def().rev());
        }
        let q = with_sums(q.column_as(group.expr(), "g")).group_by(group.expr());
        let mut rows = match group {
            UsageGroup::Day | UsageGroup::Hour => {
                let width = if group == UsageGroup::Day { MS_PER_DAY } else { MS_PER_HOUR };
                let raw: Vec<(i64, i64, i64, i64, i64, i64)> = q.into_tuple().all(&self.db()).await?;
                raw.into_iter()
                    .map(|(b, r, i, o, c, n)| {
                        let key = UsageKey::Start(Timestamp::from_unix_millis(b.saturating_mul(width)));
                        Ok(UsageRow { key, totals: totals(group.as_str(), (r, i, o, c, n))? })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?
            }
            _ => {
                let raw: Vec<(Option<String>, i64, i64, i64, i64, i64)> = q.into_tuple().all(&self.db()).await?;
                raw.into_iter()
                    .map(|(g, r, i, o, c, n)| {
                        Ok(UsageRow { key: UsageKey::Name(g), totals: totals(group.as_str(), (r, i, o, c, n))? })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?
            }
        };
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(rows)
    }

    /// Up to `limit` entries `f` covers, ordered by acceptance time then request id,
    /// starting after `after`. Paging with the last entry of each page as the next
    /// cursor returns every entry exactly once, even while new ones are written.
    pub async fn ledger_page(
        &self,
        f: &UsageFilter,
        after: Option<&LedgerCursor>,
        limit: u64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut q = filtered(f);
        if let Some(c) = after {
            let at = c.at.unix_millis();
            q = q.filter(
                Condition::any().add(ledger_entry::Column::AtMs.gt(at)).add(
                    Condition::all()
                        .add(ledger_entry::Column::AtMs.eq(at))
                        .add(ledger_entry::Column::RequestId.gt(c.request_id.as_str())),
                ),
            );
        }
        let rows = q
            .order_by_asc(ledger_entry::Column::AtMs)
            .order_by_asc(ledger_entry::Column::RequestId)
            .limit(limit)
            .all(&self.db())
            .await?;
        rows.into_iter().map(entry_from_row).collect()
    }
}
