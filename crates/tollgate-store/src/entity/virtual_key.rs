//! The `virtual_keys` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "virtual_keys")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) project_id: String,
    pub(crate) name: Option<String>,
    pub(crate) principal: Option<String>,
    pub(crate) key_hash: String,
    pub(crate) key_hint: String,
    pub(crate) previous_key_hash: Option<String>,
    pub(crate) previous_valid_until: Option<i64>,
    /// JSON array of `{"key_hash", "valid_until_ms"}` (migration m0010).
    pub(crate) grace_secrets_json: String,
    pub(crate) status: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) models_allowed_json: String,
    pub(crate) rpm: Option<i64>,
    pub(crate) tpm: Option<i64>,
    pub(crate) max_concurrency: Option<i64>,
    pub(crate) metadata_json: String,
    pub(crate) tags_json: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) rotated_at: Option<i64>,
    pub(crate) revoked_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
