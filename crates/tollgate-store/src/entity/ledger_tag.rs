//! The `ledger_tags` table: one row per tag of each ledger entry (see migration m0005).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_tags")]
pub(crate) struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) request_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub(crate) tag: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub(crate) enum Relation {
    #[sea_orm(
        belongs_to = "super::ledger_entry::Entity",
        from = "Column::RequestId",
        to = "super::ledger_entry::Column::RequestId"
    )]
    Entry,
}

impl ActiveModelBehavior for ActiveModel {}
