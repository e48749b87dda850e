//! REST routes of spend: `/api/v1/usage` (totals and groups, JSON or CSV) and
//! `/api/v1/ledger` (raw entries, keyset-paged).

use super::openapi::{BadRequest, Forbidden, InternalError, Unauthorized, UsageFormatName, UsageScope, UsageWindow};
use super::{Auth, ok};
use crate::ControlError;
use crate::service::{LedgerPage, LedgerQuery, Service, UsageFormat, UsageQuery, UsageReport};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_core::Timestamp;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This resource's routes, merged into the management router; operations that share a
/// path are in one `routes!` so the document keeps them together.
pub(super) fn routes() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(usage)).routes(routes!(ledger))
}

#[utoipa::path(
    get,
    path = "/api/v1/usage",
    tag = "usage",
    params(("scope" = Option<UsageScope>, Query, description = "With `scope_id`: only entries of this budget scope kind (`organization` or `org`, `team`, `project`, `principal`, `virtual_key` or `key`), or `tag` for entries whose key carried the tag `scope_id`."), ("scope_id" = Option<String>, Query, description = "The scope target; required with `scope`."), ("window" = Option<UsageWindow>, Query, description = "The range ending now: `1h`, `24h`, `7d`, `30d` or `mtd` (month-to-date, UTC). Not with `from`/`to`; default `30d`."), ("from" = Option<Timestamp>, Query, description = "Start of the range (inclusive), RFC 3339; instead of `window`."), ("to" = Option<Timestamp>, Query, description = "End of the range (exclusive), RFC 3339; default now; needs `from`."), ("group_by" = Option<String>, Query, description = "Comma-separated groups: `model` (the model that served), `requested_model` (the name the caller used), `day`, `hour`, `key`, `principal`, `tag`.", example = "model,day"), ("format" = Option<UsageFormatName>, Query, description = "`json` (default) or `csv`.")),
    responses((status = 200, description = "Totals over the range, and one list `by_<group>` per group asked for. With `format=csv`, RFC 4180 CSV: `group,value,requests,input_tokens,output_tokens,cached_input_tokens,cost_usd`, a `total` row first.", content((UsageReport = "application/json"), (String = "text/csv"))), BadRequest, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("usage:read")))
)]
async fn usage(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    let q = UsageQuery::parse(q, tollgate_core::Timestamp::now())?;
    let report = svc.usage(&actor, &q).await?;
    Ok(match q.format {
        UsageFormat::Json => ok(report.to_json()),
        UsageFormat::Csv => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], report.to_csv()).into_response(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/ledger",
    tag = "usage",
    params(("scope" = Option<UsageScope>, Query, description = "With `scope_id`: only entries of this budget scope kind (`organization` or `org`, `team`, `project`, `principal`, `virtual_key` or `key`), or `tag` for entries whose key carried the tag `scope_id`."), ("scope_id" = Option<String>, Query, description = "The scope target; required with `scope`."), ("window" = Option<UsageWindow>, Query, description = "The range ending now: `1h`, `24h`, `7d`, `30d` or `mtd` (month-to-date, UTC). Not with `from`/`to`; default `30d`."), ("from" = Option<Timestamp>, Query, description = "Start of the range (inclusive), RFC 3339; instead of `window`."), ("to" = Option<Timestamp>, Query, description = "End of the range (exclusive), RFC 3339; default now; needs `from`."), ("request_id" = Option<String>, Query, description = "Only the entry with this request id (the gateway's own, `x-tollgate-request-id`)."), ("client_request_id" = Option<String>, Query, description = "Only entries whose caller sent this `x-request-id` (exact match). It deduplicates nothing: every entry that carries it is listed."), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."), ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000 (default 100).", minimum = 1, maximum = 1000)),
    responses((status = 200, description = "A page of ledger entries.", body = LedgerPage), BadRequest, Unauthorized, Forbidden, InternalError),
    extensions(("x-required-scope" = json!("usage:read")))
)]
async fn ledger(
    State(svc): State<Arc<Service>>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ControlError> {
    Ok(ok(svc.ledger(&actor, &LedgerQuery::parse(q, tollgate_core::Timestamp::now())?).await?))
}
