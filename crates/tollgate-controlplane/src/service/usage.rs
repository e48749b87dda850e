//! Usage reports and the raw ledger, read from the store: `GET /api/v1/usage` (totals
//! and per-group sums as JSON or CSV) and `GET /api/v1/ledger` (entries in pages).
//!
//! Query parameters are read one by one so every error names its parameter. Money is
//! shown as exact USD decimal strings; nothing here goes through floating point.

use super::Service;
use super::auth::{Actor, Target};
use crate::ControlError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, Time};
use tollgate_core::{Money, ScopeKind, Timestamp};
use tollgate_metering::LedgerEntry;
use tollgate_store::{LedgerCursor, UsageFilter, UsageGroup, UsageKey, UsageRow, UsageTotals};
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Entries per ledger page unless `limit` says otherwise.
const DEFAULT_LEDGER_LIMIT: u64 = 100;
/// Most entries per ledger page.
const MAX_LEDGER_LIMIT: u64 = 1000;
/// Longest accepted query value; longer ones are refused rather than echoed.
const MAX_PARAM_LEN: usize = 512;

/// The report format of `/api/v1/usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageFormat {
    /// One JSON object.
    Json,
    /// RFC 4180 CSV, one row per group.
    Csv,
}

/// A parsed `/api/v1/usage` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Which entries.
    pub filter: UsageFilter,
    /// The groupings asked for, without repeats, in [`UsageGroup::ALL`] order.
    pub group_by: Vec<UsageGroup>,
    /// JSON or CSV.
    pub format: UsageFormat,
}

/// A parsed `/api/v1/ledger` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerQuery {
    /// Which entries.
    pub filter: UsageFilter,
    /// Where the page starts.
    pub cursor: Option<LedgerCursor>,
    /// At most this many entries (1..=1000).
    pub limit: u64,
}

fn unknown(name: &str) -> ControlError {
    ControlError::invalid(name.chars().take(64).collect::<String>(), "unknown query parameter")
}

/// What `scope` names: a budget scope kind, or `tag` (entries whose key carried the tag).
enum Scope {
    Kind(ScopeKind),
    Tag,
}

fn parse_scope(text: &str) -> Result<Scope, ControlError> {
    if text == "tag" {
        return Ok(Scope::Tag);
    }
    parse_scope_kind(text).map(Scope::Kind)
}

fn parse_scope_kind(text: &str) -> Result<ScopeKind, ControlError> {
    match text {
        "key" => Ok(ScopeKind::VirtualKey),
        "org" => Ok(ScopeKind::Organization),
        other => other.parse().map_err(|e| ControlError::invalid("scope", format!("{e}"))),
    }
}

fn parse_time(field: &str, text: &str) -> Result<Timestamp, ControlError> {
    Timestamp::parse_rfc3339(text)
        .map_err(|_| ControlError::invalid(field, "must be an RFC 3339 time such as 2026-11-23T00:00:00Z"))
}

/// The first instant of the current UTC month.
fn month_start(now: Timestamp) -> Timestamp {
    let t = now.to_offset_date_time();
    let first = Date::from_calendar_date(t.year(), t.month(), 1)
        .unwrap_or_else(|_| Date::from_calendar_date(1970, Month::January, 1).unwrap_or(Date::MIN));
    Timestamp::from_offset_date_time(first.with_time(Time::MIDNIGHT).assume_utc())
}

/// Reads `scope`, `scope_id`, `window`, `from`, `to` out of `q`, leaving the rest.
/// `scope=tag&scope_id=T` keeps the entries whose key carried tag `T`.
fn take_filter(q: &mut HashMap<String, String>, now: Timestamp) -> Result<UsageFilter, ControlError> {
    if let Some((k, _)) = q.iter().find(|(_, v)| v.len() > MAX_PARAM_LEN) {
        let field = k.chars().take(64).collect::<String>();
        return Err(ControlError::invalid(field, format!("longer than {MAX_PARAM_LEN} bytes")));
    }
    let (scope, tag) = match (q.remove("scope"), q.remove("scope_id")) {
        (None, None) => (None, None),
        (Some(s), Some(id)) if !id.is_empty() => match parse_scope(&s)? {
            Scope::Kind(kind) => (Some((kind, id)), None),
            Scope::Tag => (None, Some(id)),
        },
        (Some(s), _) => {
            parse_scope(&s)?;
            return Err(ControlError::invalid("scope_id", "required with scope"));
        }
        (None, Some(_)) => return Err(ControlError::invalid("scope", "required with scope_id")),
    };
    let window = q.remove("window");
    let from = q.remove("from").map(|t| parse_time("from", &t)).transpose()?;
    let to = q.remove("to").map(|t| parse_time("to", &t)).transpose()?;
    let (from, to) = match (window, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ControlError::invalid("window", "give either window or from/to, not both"));
        }
        (None, None, None) => (now.plus_millis(-30 * 86_400_000), now),
        (None, Some(from), to) => (from, to.unwrap_or(now)),
        (None, None, Some(_)) => return Err(ControlError::invalid("from", "required with to")),
        (Some(w), None, None) => {
            let hours = match w.as_str() {
                "1h" => 1,
                "24h" => 24,
                "7d" => 7 * 24,
                "30d" => 30 * 24,
                "mtd" | "month-to-date" => {
                    return Ok(UsageFilter { scope, tag, ..UsageFilter::between(month_start(now), now) });
                }
                _ => {
                    return Err(ControlError::invalid(
                        "window",
                        "must be one of 1h, 24h, 7d, 30d, mtd (month-to-date)",
                    ));
                }
            };
            (now.plus_millis(-hours * 3_600_000), now)
        }
    };
    if from >= to {
        return Err(ControlError::invalid("from", "must be before to"));
    }
    Ok(UsageFilter { scope, tag, ..UsageFilter::between(from, to) })
}

impl UsageQuery {
    /// Parses the query string of `/api/v1/usage` at `now`.
    pub fn parse(mut q: HashMap<String, String>, now: Timestamp) -> Result<UsageQuery, ControlError> {
        let filter = take_filter(&mut q, now)?;
        let mut group_by = Vec::new();
        if let Some(list) = q.remove("group_by") {
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let g = UsageGroup::ALL.into_iter().find(|g| g.as_str() == name).ok_or_else(|| {
                    ControlError::invalid(
                        "group_by",
                        "must be a comma list of model, requested_model, day, hour, key, principal, tag",
                    )
                })?;
                group_by.push(g);
            }
        }
        group_by.sort();
        group_by.dedup();
        let format = match q.remove("format").as_deref() {
            None | Some("json") => UsageFormat::Json,
            Some("csv") => UsageFormat::Csv,
            Some(_) => return Err(ControlError::invalid("format", "must be json or csv")),
        };
        if let Some(k) = q.keys().next() {
            return Err(unknown(k));
        }
        Ok(UsageQuery { filter, group_by, format })
    }
}

fn encode_cursor(c: &LedgerCursor) -> String {
    B64.encode(format!("{}:{}", c.at.unix_millis(), c.request_id))
}

fn decode_cursor(text: &str) -> Result<LedgerCursor, ControlError> {
    let bad = || ControlError::invalid("cursor", "not a cursor returned by this endpoint");
    let raw = B64.decode(text).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = raw.split_once(':').ok_or_else(bad)?;
    let at = at.parse::<i64>().map_err(|_| bad())?;
    Ok(LedgerCursor { at: Timestamp::from_unix_millis(at), request_id: id.to_owned() })
}

impl LedgerQuery {
    /// Parses the query string of `/api/v1/ledger` at `now`.
    pub fn parse(mut q: HashMap<String, String>, now: Timestamp) -> Result<LedgerQuery, ControlError> {
        let mut filter = take_filter(&mut q, now)?;
        filter.request_id = q.remove("request_id").filter(|v| !v.is_empty());
        filter.client_request_id = q.remove("client_request_id").filter(|v| !v.is_empty());
        let limit = match q.remove("limit") {
            None => DEFAULT_LEDGER_LIMIT,
            Some(l) => l.parse::<u64>().ok().filter(|l| (1..=MAX_LEDGER_LIMIT).contains(l)).ok_or_else(|| {
                ControlError::invalid("limit", format!("must be an integer in 1..={MAX_LEDGER_LIMIT}"))
            })?,
        };
        let cursor = q.remove("cursor").filter(|c| !c.is_empty()).map(|c| decode_cursor(&c)).transpose()?;
        if let Some(k) = q.keys().next() {
            return Err(unknown(k));
        }
        Ok(LedgerQuery { filter, cursor, limit })
    }
}

/// A usage report, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    /// The range covered.
    pub from: Timestamp,
    /// The end of the range (exclusive).
    pub to: Timestamp,
    /// Sums over every covered entry.
    pub summary: UsageTotals,
    /// The groupings asked for, each with its rows.
    pub groups: Vec<(UsageGroup, Vec<UsageRow>)>,
}

fn key_text(group: UsageGroup, key: &UsageKey) -> Option<String> {
    match key {
        UsageKey::Name(n) => n.clone(),
        UsageKey::Start(t) => {
            let d = t.to_offset_date_time();
            Some(if group == UsageGroup::Day {
                format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
            } else {
                d.format(&Rfc3339).unwrap_or_else(|_| t.to_rfc3339())
            })
        }
    }
}

/// One ledger entry as `GET /api/v1/ledger` shows it: every field of the stored entry
/// (`request_id` ours, `client_request_id` the caller's, `cost_nanos`, `priced`, ...) and
/// its cost as an exact decimal string.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct LedgerEntryView {
    /// The stored entry.
    #[serde(flatten)]
    pub entry: LedgerEntry,
    /// The cost in USD, exactly `cost_nanos` / 10^9, as a decimal string: at least two
    /// decimals, no trailing zeros beyond them, `-` first for a negative adjustment
    /// (`"0.0012345"`, `"1.00"`, `"9007199.254740993"`). Never a float.
    #[schema(example = "0.0012345")]
    pub cost_usd: String,
}

impl From<LedgerEntry> for LedgerEntryView {
    fn from(entry: LedgerEntry) -> Self {
        let cost_usd = entry.cost.to_string();
        LedgerEntryView { entry, cost_usd }
    }
}

/// One page of `GET /api/v1/ledger`.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct LedgerPage {
    /// The entries, oldest first (by acceptance time, then request id).
    pub entries: Vec<LedgerEntryView>,
    /// Pass as `cursor` for the next page; `null` once a page comes back short.
    pub next_cursor: Option<String>,
}

/// The sums of [`sums_json`], in that order.
const SUM_FIELDS: [&str; 5] = ["requests", "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd"];

/// An object schema holding the sums of [`sums_json`] (and `extra` properties first).
fn sums_schema(extra: Option<(&str, Object)>) -> Object {
    let mut b = ObjectBuilder::new().additional_properties(Some(AdditionalProperties::FreeForm(false)));
    if let Some((name, schema)) = extra {
        b = b.property(name, schema).required(name);
    }
    for f in SUM_FIELDS {
        let s: RefOr<Schema> = if f == "cost_usd" {
            Ref::from_schema_name(Money::name()).into()
        } else {
            ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).into()
        };
        b = b.property(f, s).required(f);
    }
    b.build()
}

impl PartialSchema for UsageReport {
    /// The JSON form written by [`UsageReport::to_json`]: `by_<group>` is present for
    /// each group asked for in `group_by`.
    fn schema() -> RefOr<Schema> {
        let time: RefOr<Schema> = Ref::from_schema_name(Timestamp::name()).into();
        let window = ObjectBuilder::new()
            .property("from", time.clone())
            .property("to", time)
            .required("from")
            .required("to")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some("The range covered: from inclusive, to exclusive."));
        let mut root = ObjectBuilder::new()
            .property("window", window)
            .required("window")
            .property("summary", sums_schema(None))
            .required("summary")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for g in UsageGroup::ALL {
            let key = ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(match g {
                    UsageGroup::Day => "The UTC day, `YYYY-MM-DD`.",
                    UsageGroup::Hour => "The start of the UTC hour, RFC 3339.",
                    _ => "The group's value; `null` for entries without one.",
                }))
                .build();
            let rows = ArrayBuilder::new().items(sums_schema(Some((g.as_str(), key))));
            root = root.property(format!("by_{}", g.as_str()), rows);
        }
        root.into()
    }
}

impl ToSchema for UsageReport {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("UsageReport")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Money::name().into(), Money::schema()));
        schemas.push((Timestamp::name().into(), Timestamp::schema()));
    }
}

fn sums_json(t: &UsageTotals, obj: &mut Map<String, Value>) {
    obj.insert("requests".into(), json!(t.requests));
    obj.insert("input_tokens".into(), json!(t.input_tokens));
    obj.insert("output_tokens".into(), json!(t.output_tokens));
    obj.insert("cached_input_tokens".into(), json!(t.cached_input_tokens));
    obj.insert("cost_usd".into(), json!(t.cost.to_string()));
}

impl UsageReport {
    /// `{"window": {...}, "summary": {...}, "by_model": [...], ...}`: only the asked-for
    /// groups are present.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("window".into(), json!({"from": self.from.to_rfc3339(), "to": self.to.to_rfc3339()}));
        let mut summary = Map::new();
        sums_json(&self.summary, &mut summary);
        out.insert("summary".into(), Value::Object(summary));
        for (g, rows) in &self.groups {
            let rows = rows
                .iter()
                .map(|r| {
                    let mut obj = Map::new();
                    obj.insert(g.as_str().into(), json!(key_text(*g, &r.key)));
                    sums_json(&r.totals, &mut obj);
                    Value::Object(obj)
                })
                .collect();
            out.insert(format!("by_{}", g.as_str()), Value::Array(rows));
        }
        Value::Object(out)
    }

    /// RFC 4180 CSV with a header: `group,value,requests,input_tokens,output_tokens,
    /// cached_input_tokens,cost_usd`; first the `total` row, then one row per group.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("group,value,requests,input_tokens,output_tokens,cached_input_tokens,cost_usd\r\n");
        let mut row = |group: &str, value: Option<&str>, t: &UsageTotals| {
            out.push_str(&format!(
                "{},{},{},{},{},{},{}\r\n",
                csv_field(group),
                csv_field(value.unwrap_or("")),
                t.requests,
                t.input_tokens,
                t.output_tokens,
                t.cached_input_tokens,
                t.cost
            ));
        };
        row("total", None, &self.summary);
        for (g, rows) in &self.groups {
            for r in rows {
                row(g.as_str(), key_text(*g, &r.key).as_deref(), &r.totals);
            }
        }
        out
    }
}

/// One CSV field, quoted when it holds a comma, quote, CR or LF (RFC 4180), and
/// prefixed with `'` when a spreadsheet would run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\r', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

impl Service {
    /// Confines a ledger filter to the actor's tenancy. A scope outside it then matches
    /// nothing and reads as zero, exactly like a scope that does not exist.
    async fn confined(&self, actor: &Actor, filter: &UsageFilter) -> Result<UsageFilter, ControlError> {
        self.authorize(actor, super::Scope::UsageRead, Target::Filtered).await?;
        Ok(UsageFilter { within: actor.tenancy().ledger_scope(), ..filter.clone() })
    }

    /// The usage report of `q`, inside the actor's tenancy.
    pub async fn usage(&self, actor: &Actor, q: &UsageQuery) -> Result<UsageReport, ControlError> {
        let filter = self.confined(actor, &q.filter).await?;
        let summary = self.store.usage_totals(&filter).await?;
        let mut groups = Vec::with_capacity(q.group_by.len());
        for g in &q.group_by {
            groups.push((*g, self.store.usage_by(&filter, *g).await?));
        }
        Ok(UsageReport { from: q.filter.from, to: q.filter.to, summary, groups })
    }

    /// One page of ledger entries; `next_cursor` is null once a page comes back short.
    pub async fn ledger(&self, actor: &Actor, q: &LedgerQuery) -> Result<LedgerPage, ControlError> {
        let filter = self.confined(actor, &q.filter).await?;
        let entries = self.store.ledger_page(&filter, q.cursor.as_ref(), q.limit).await?;
        let next = match entries.last() {
            Some(last) if entries.len() as u64 == q.limit => {
                Some(encode_cursor(&LedgerCursor { at: last.at, request_id: last.request_id.clone() }))
            }
            _ => None,
        };
        Ok(LedgerPage { entries: entries.into_iter().map(LedgerEntryView::from).collect(), next_cursor: next })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-23T15:30:00Z").unwrap()
    }

    fn field(e: ControlError) -> Option<String> {
        e.field().map(str::to_owned)
    }

    #[test]
    fn windows_end_now_and_mtd_starts_at_the_utc_month() {
        let f = UsageQuery::parse(q(&[("window", "mtd")]), now()).unwrap().filter;
        assert_eq!(f.from.to_rfc3339(), "2026-11-01T00:00:00Z");
        assert_eq!(f.to, now());
        let f = UsageQuery::parse(q(&[]), now()).unwrap().filter;
        assert_eq!(f.from.to_rfc3339(), "2026-10-24T15:30:00Z", "default is 30d");
        let f = UsageQuery::parse(q(&[("window", "1h")]), now()).unwrap().filter;
        assert_eq!(f.from.to_rfc3339(), "2026-11-23T14:30:00Z");
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("window", "2w")], "window"),
            (&[("group_by", "model,tenant")], "group_by"),
            (&[("scope", "galaxy"), ("scope_id", "x")], "scope"),
            (&[("scope", "key")], "scope_id"),
            (&[("scope_id", "k1")], "scope"),
            (&[("from", "yesterday")], "from"),
            (&[("from", "2026-11-02T00:00:00Z"), ("to", "2026-11-01T00:00:00Z")], "from"),
            (&[("window", "7d"), ("from", "2026-11-01T00:00:00Z")], "window"),
            (&[("format", "xml")], "format"),
            (&[("bogus", "1")], "bogus"),
        ];
        for (params, want) in cases {
            let err = UsageQuery::parse(q(params), now()).unwrap_err();
            assert_eq!(field(err).as_deref(), Some(*want), "{params:?}");
        }
        for (params, want) in
            [([("limit", "0")], "limit"), ([("limit", "1001")], "limit"), ([("cursor", "!!")], "cursor")]
        {
            let err = LedgerQuery::parse(q(&params), now()).unwrap_err();
            assert_eq!(field(err).as_deref(), Some(want), "{params:?}");
        }
    }

    #[test]
    fn scope_tag_filters_by_tag_and_tag_is_a_group() {
        let parsed =
            UsageQuery::parse(q(&[("scope", "tag"), ("scope_id", "env:prod"), ("group_by", "tag,model")]), now())
                .unwrap();
        assert_eq!((parsed.filter.scope, parsed.filter.tag.as_deref()), (None, Some("env:prod")));
        assert_eq!(parsed.group_by, [UsageGroup::Model, UsageGroup::Tag]);
        let err = UsageQuery::parse(q(&[("scope", "tag")]), now()).unwrap_err();
        assert_eq!(field(err).as_deref(), Some("scope_id"));
    }

    #[test]
    fn cursors_round_trip_ids_with_colons() {
        let c = LedgerCursor { at: Timestamp::from_unix_millis(42), request_id: "req:a:b".into() };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
