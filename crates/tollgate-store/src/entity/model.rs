//! The `models` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "models")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) deployments_json: String,
    pub(crate) input_per_mtok: Option<i64>,
    pub(crate) output_per_mtok: Option<i64>,
    pub(crate) cached_input_per_mtok: Option<i64>,
    pub(crate) cache_write_per_mtok: Option<i64>,
    pub(crate) price_source: Option<String>,
    pub(crate) max_output_tokens: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) max_image_tokens: Option<i64>,
    pub(crate) max_audio_tokens: Option<i64>,
    pub(crate) max_file_tokens: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
