//! Principals: listing them with their key counts, and revoking all of one's keys.
//!
//! A principal has no table: it is the free-form `principal` of keys (and the
//! `scope_id` of principal budgets), so its listing is an aggregate over keys.

use super::{Store, bump_revision};
use crate::entity::{project, virtual_key};
use crate::error::StoreError;
use crate::records::{PrincipalFilter, PrincipalSummary};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::collections::BTreeMap;
use tollgate_core::{KeyId, ProjectId, Timestamp};

/// Stored status of a live key (see `tollgate_keys::KeyStatus`).
const ACTIVE: &str = "active";
/// Stored status of a revoked key.
const REVOKED: &str = "revoked";
/// Keys revoked per statement when a principal's keys are revoked together.
const REVOKE_BATCH: usize = 1_000;

impl Store {
    /// The principals of keys matching `f`, by principal ascending, at most `f.limit`
    /// (capped at [`PrincipalFilter::MAX_LIMIT`]), each with its key counts as of `now`
    /// and the projects its keys are in.
    pub async fn list_principals(
        &self,
        f: &PrincipalFilter,
        now: Timestamp,
    ) -> Result<Vec<PrincipalSummary>, StoreError> {
        let limit = f.limit.min(PrincipalFilter::MAX_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut names = principal_query(f).select_only().column(virtual_key::Column::Principal).distinct();
        if let Some(after) = &f.after {
            names = names.filter(virtual_key::Column::Principal.gt(after.as_str()));
        }
        if let Some(exact) = &f.principal {
            names = names.filter(virtual_key::Column::Principal.eq(exact.as_str()));
        }
        let names: Vec<Option<String>> =
            names.order_by_asc(virtual_key::Column::Principal).limit(limit).into_tuple().all(&self.db()).await?;
        let names: Vec<String> = names.into_iter().flatten().collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(Option<String>, String, Option<i64>, String)> = principal_query(f)
            .filter(virtual_key::Column::Principal.is_in(names.iter().map(String::as_str)))
            .select_only()
            .column(virtual_key::Column::Principal)
            .column(virtual_key::Column::Status)
            .column(virtual_key::Column::ExpiresAt)
            .column(virtual_key::Column::ProjectId)
            .into_tuple()
            .all(&self.db())
            .await?;
        let mut out: BTreeMap<String, PrincipalSummary> = names
            .into_iter()
            .map(|n| (n.clone(), PrincipalSummary { principal: n, ..PrincipalSummary::default() }))
            .collect();
        let now_ms = now.unix_millis();
        for (principal, status, expires_at, project_id) in rows {
            let Some(s) = principal.and_then(|p| out.get_mut(&p)) else { continue };
            match status.as_str() {
                REVOKED => s.keys_revoked += 1,
                _ if expires_at.is_some_and(|e| e <= now_ms) => s.keys_expired += 1,
                _ => s.keys_active += 1,
            }
            let project_id = ProjectId::new(project_id);
            if !s.projects.contains(&project_id) {
                s.projects.push(project_id);
            }
        }
        Ok(out
            .into_values()
            .map(|mut s| {
                s.projects.sort();
                s
            })
            .collect())
    }

    /// Revokes, in one transaction, every active key of `principal` that `f`'s project or
    /// team filter admits (its `principal`, `after` and `limit` are ignored); returns the
    /// ids revoked and the new revision (`None` when there was nothing to revoke, and
    /// then nothing was written).
    pub async fn revoke_principal_keys(
        &self,
        principal: &str,
        f: &PrincipalFilter,
        at: Timestamp,
    ) -> Result<(Vec<KeyId>, Option<i64>), StoreError> {
        use sea_orm::sea_query::Expr;
        let txn = self.begin_write().await?;
        let scoped = || {
            principal_query(f)
                .filter(virtual_key::Column::Principal.eq(principal))
                .filter(virtual_key::Column::Status.eq(ACTIVE))
        };
        let ids: Vec<String> = scoped()
            .select_only()
            .column(virtual_key::Column::Id)
            .order_by_asc(virtual_key::Column::Id)
            .into_tuple()
            .all(&txn)
            .await?;
        if ids.is_empty() {
            return Ok((Vec::new(), None));
        }
        let at = at.unix_millis();
        // In batches: a principal may hold more keys than one statement may bind values
        // (SQLite allows 32,766, PostgreSQL 65,535).
        for batch in ids.chunks(REVOKE_BATCH) {
            virtual_key::Entity::update_many()
                .col_expr(virtual_key::Column::Status, Expr::value(REVOKED))
                .col_expr(virtual_key::Column::RevokedAt, Expr::value(at))
                .col_expr(virtual_key::Column::UpdatedAt, Expr::value(at))
                .filter(virtual_key::Column::Id.is_in(batch.iter().map(String::as_str)))
                .exec(&txn)
                .await?;
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((ids.into_iter().map(KeyId::new).collect(), Some(rev)))
    }
}

/// Keys with a principal, in the filter's project or team.
fn principal_query(f: &PrincipalFilter) -> sea_orm::Select<virtual_key::Entity> {
    let mut q = virtual_key::Entity::find().filter(virtual_key::Column::Principal.is_not_null());
    if let Some(p) = &f.project_id {
        q = q.filter(virtual_key::Column::ProjectId.eq(p.as_str()));
    }
    if let Some(t) = &f.team_id {
        q = q.filter(
            virtual_key::Column::ProjectId.in_subquery(
                Query::select()
                    .column(project::Column::Id)
                    .from(project::Entity)
                    .and_where(project::Column::TeamId.eq(t.as_str()))
                    .to_owned(),
            ),
        );
    }
    q
}
