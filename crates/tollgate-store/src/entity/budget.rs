//! The `budgets` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "budgets")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) id: String,
    pub(crate) scope: String,
    pub(crate) scope_id: String,
    pub(crate) limit_nanos: i64,
    pub(crate) window: String,
    pub(crate) on_breach: String,
    pub(crate) alert_thresholds_json: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) limit_tokens: Option<i64>,
    pub(crate) epoch: i32,
    pub(crate) temporary_increase: i64,
    pub(crate) temporary_increase_until: Option<i64>,
    pub(crate) last_reset_at: Option<i64>,
    pub(crate) clamp_floor_tokens: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
