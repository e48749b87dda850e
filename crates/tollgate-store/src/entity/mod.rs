//! sea-orm entities, one per table of the migrations. Plain rows: ids and JSON columns
//! are strings, timestamps are i64 unix milliseconds. Conversion to the public records
//! lives in `crate::convert`, nowhere else.

pub(crate) mod admin_token;
pub(crate) mod audit_event;
pub(crate) mod budget;
pub(crate) mod ledger_entry;
pub(crate) mod ledger_tag;
pub(crate) mod meta;
pub(crate) mod model;
pub(crate) mod model_alias;
pub(crate) mod organization;
pub(crate) mod project;
pub(crate) mod provider;
pub(crate) mod routing_policy;
pub(crate) mod team;
pub(crate) mod virtual_key;
