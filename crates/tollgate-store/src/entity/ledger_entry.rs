//! The `ledger_entries` table: one row per request, written by the [`tollgate_metering::LedgerSink`]
//! implementation of the store and never updated.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) request_id: String,
    pub(crate) at_ms: i64,
    pub(crate) key_id: String,
    pub(crate) key_name: Option<String>,
    pub(crate) principal: Option<String>,
    pub(crate) project_id: String,
    pub(crate) team_id: Option<String>,
    pub(crate) org_id: Option<String>,
    pub(crate) requested_model: String,
    pub(crate) served_model: String,
    pub(crate) provider: String,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cached_input_tokens: i64,
    pub(crate) reasoning_tokens: i64,
    pub(crate) cache_write_tokens: i64,
    pub(crate) cost_nanos: i64,
    pub(crate) status: i32,
    pub(crate) latency_ms: i64,
    pub(crate) usage_source: String,
    pub(crate) stream: bool,
    pub(crate) tags_json: String,
    pub(crate) metadata_json: String,
    pub(crate) attempts_json: String,
    pub(crate) client_request_id: Option<String>,
    pub(crate) priced: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
