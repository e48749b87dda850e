//! [`Store`]: connection set-up and every repository operation.
//!
//! Each configuration write is one transaction that ends by bumping `meta.revision`.
//! On SQLite write transactions start `IMMEDIATE`, so they take the write lock up front
//! and wait (`busy_timeout`) instead of failing half-way when another writer got there
//! first. On PostgreSQL the `UPDATE meta` row lock serializes writers, so revision
//! numbers are committed in order.

use crate::convert::{
    admin_token_from_row, admin_token_to_row, alias_from_row, alias_to_row, audit_from_row, audit_to_active,
    budget_from_row, budget_to_row, key_from_row, key_to_row, model_from_row, model_to_row, org_from_row, org_to_row,
    project_from_row, project_to_row, provider_from_row, provider_to_row, routing_policy_from_row,
    routing_policy_to_row, team_from_row, team_to_row,
};
use crate::entity::{
    admin_token, audit_event, budget, meta, model, model_alias, organization, project, provider, routing_policy, team,
    virtual_key,
};
use crate::error::{StoreError, write_err};
use crate::records::{
    AdminTokenRecord, AliasRecord, AuditFilter, AuditRecord, BudgetFilter, BudgetRecord, KeyFilter, KeyRecord,
    ModelRecord, OrgRecord, ProjectRecord, ProviderRecord, RoutingPolicyRecord, SnapshotData, TeamRecord,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    AccessMode, ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, IntoActiveModel, IsolationLevel, QueryFilter,
    QueryOrder, QuerySelect, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use std::collections::HashMap;
use std::time::Duration;
use tollgate_core::{BudgetId, KeyId, OrgId, ProjectId, ScopeKind, TeamId, Timestamp, TokenId};
use tollgate_migrations::{Migrator, MigratorTrait};

/// The key of the configuration revision in the `meta` table.
const REVISION: &str = "revision";
/// The key in `meta` of the id of the master key every provider credential is encrypted
/// under (absent on a database that predates it).
const MASTER_KEY_ID: &str = "master_key_id";
/// Connections to a SQLite file: WAL lets readers run beside the single writer.
const SQLITE_FILE_POOL: u32 = 4;
/// How long a SQLite statement waits for another connection's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest page [`Store::list_audit`] returns.
const AUDIT_PAGE_MAX: u64 = 1000;
/// Rows fetched per round when `list_keys` filters metadata in memory.
const KEY_SCAN_BATCH: u64 = 500;

/// The control plane's database. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
}

impl std::fmt::Debug for Store {
    // Only the backend: connection options can hold a database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.db.get_database_backend()).finish_non_exhaustive()
    }
}

/// A fresh id: the kind's prefix, `_`, and a UUIDv7 in hex (time-ordered).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn is_sqlite_memory_url(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

async fn read_revision<C: ConnectionTrait>(c: &C) -> Result<i64, StoreError> {
    meta::Entity::find_by_id(REVISION).one(c).await?.map(|m| m.value).ok_or_else(|| StoreError::Corrupt {
        kind: "meta",
        id: REVISION.to_owned(),
        detail: "the revision row is missing".to_owned(),
    })
}

/// Bumps the revision by one inside `txn` and returns the new value.
pub(crate) async fn bump_revision(txn: &DatabaseTransaction) -> Result<i64, StoreError> {
    // Scoped: ExprTrait's `min`/`max` would shadow `Ord`'s on integers elsewhere.
    use sea_orm::sea_query::ExprTrait as _;
    let res = meta::Entity::update_many()
        .col_expr(meta::Column::Value, Expr::col(meta::Column::Value).add(1))
        .filter(meta::Column::Name.eq(REVISION))
        .exec(txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(StoreError::Corrupt {
            kind: "meta",
            id: REVISION.to_owned(),
            detail: "the revision row is missing".to_owned(),
        });
    }
    read_revision(txn).await
}

/// The project rows in `rows` with their organizations, looked up through their teams.
pub(crate) async fn projects_with_orgs<C: ConnectionTrait>(
    c: &C,
    rows: Vec<project::Model>,
) -> Result<Vec<ProjectRecord>, StoreError> {
    let team_ids: Vec<String> = rows.iter().map(|p| p.team_id.clone()).collect();
    let teams: HashMap<String, String> = team::Entity::find()
        .filter(team::Column::Id.is_in(team_ids))
        .all(c)
        .await?
        .into_iter()
        .map(|t| (t.id, t.org_id))
        .collect();
    rows.into_iter()
        .map(|p| {
            let org = teams.get(&p.team_id).cloned().ok_or_else(|| StoreError::Corrupt {
                kind: "project",
                id: p.id.clone(),
                detail: format!("team {:?} does not exist", p.team_id),
            })?;
            Ok(project_from_row(p, OrgId::new(org)))
        })
        .collect()
}

/// Applies the SQL-side conditions of a key filter.
fn key_query(f: &KeyFilter, after: Option<&str>) -> sea_orm::Select<virtual_key::Entity> {
    let mut q = virtual_key::Entity::find();
    if let Some(p) = &f.project_id {
        q = q.filter(virtual_key::Column::ProjectId.eq(p.as_str()));
    }
    if let Some(t) = &f.team_id {
        q = q.filter(
            virtual_key::Column::ProjectId.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(project::Column::Id)
                    .from(project::Entity)
                    .and_where(project::Column::TeamId.eq(t.as_str()))
                    .to_owned(),
            ),
        );
    }
    if let Some(p) = &f.principal {
        q = q.filter(virtual_key::Column::Principal.eq(p.as_str()));
    }
    if let Some(s) = &f.status {
        q = q.filter(virtual_key::Column::Status.eq(s.as_str()));
    }
    if let Some(a) = after {
        q = q.filter(virtual_key::Column::Id.gt(a));
    }
    q.order_by_asc(virtual_key::Column::Id)
}

impl Store {
    /// Connects to `url` and runs every pending migration.
    ///
    /// SQLite (`sqlite://path/to/file.db`, `sqlite::memory:`): the file is created when
    /// missing (unless the URL sets `mode=`), and connections use WAL, enforced foreign
    /// keys and a busy timeout. An in-memory database uses one connection that is never
    /// recycled, since the data lives only as long as it does. PostgreSQL
    /// (`postgres://...`): the database must exist.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false);
        if is_sqlite_url(url) {
            let memory = is_sqlite_memory_url(url);
            let explicit_mode = url.contains("mode=");
            if memory {
                opts.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
            } else {
                opts.max_connections(SQLITE_FILE_POOL);
            }
            opts.map_sqlx_sqlite_opts(move |o| {
                use sea_orm::sqlx::sqlite::SqliteJournalMode;
                let o = o.foreign_keys(true).busy_timeout(SQLITE_BUSY_TIMEOUT);
                let o = if explicit_mode { o } else { o.create_if_missing(true) };
                if memory { o } else { o.journal_mode(SqliteJournalMode::Wal) }
            });
        }
        let db = Database::connect(opts).await?;
        Migrator::up(&db, None).await.map_err(StoreError::Migration)?;
        Ok(Store { db })
    }

    /// The current configuration revision (0 on a fresh database).
    pub async fn revision(&self) -> Result<i64, StoreError> {
        read_revision(&self.db).await
    }

    /// A write transaction; see the module docs for the locking.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let opts = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(self.db.begin_with_options(opts).await?)
    }

    /// A read transaction that sees one consistent state of the whole database.
    async fn begin_snapshot(&self) -> Result<DatabaseTransaction, StoreError> {
        let txn = match self.db.get_database_backend() {
            // Per-statement snapshots (READ COMMITTED) could mix two revisions.
            DbBackend::Postgres => {
                self.db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
            }
            // A SQLite read transaction keeps the snapshot its first read took.
            _ => self.db.begin().await?,
        };
        Ok(txn)
    }

    /// Returns the org named `name`, creating it if missing (bumps revision only when created).
    pub async fn ensure_org(&self, name: &str) -> Result<OrgRecord, StoreError> {
        let by_name = || organization::Entity::find().filter(organization::Column::Name.eq(name));
        if let Some(m) = by_name().one(&self.db).await? {
            return Ok(org_from_row(m));
        }
        let rec =
            OrgRecord { id: OrgId::new(new_id(OrgId::PREFIX)), name: name.to_owned(), created_at: Timestamp::now() };
        let txn = self.begin_write().await?;
        if let Some(m) = by_name().one(&txn).await? {
            return Ok(org_from_row(m));
        }
        let inserted =
            organization::Entity::insert(org_to_row(&rec).into_active_model()).exec_without_returning(&txn).await;
        match inserted {
            Ok(_) => {}
            Err(e) => {
                let err = write_err("organization", e, &[], format!("organization {name:?} already exists"));
                drop(txn);
                // Another writer created it between our read and our insert (PostgreSQL).
                if matches!(err, StoreError::Conflict { .. })
                    && let Some(m) = by_name().one(&self.db).await?
                {
                    return Ok(org_from_row(m));
                }
                return Err(err);
            }
        }
        bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rec)
    }

    /// The organization with id `id_or_name`, else the one with that name.
    pub async fn find_org(&self, id_or_name: &str) -> Result<Option<OrgRecord>, StoreError> {
        let row = match organization::Entity::find_by_id(id_or_name).one(&self.db).await? {
            Some(m) => Some(m),
            None => {
                organization::Entity::find().filter(organization::Column::Name.eq(id_or_name)).one(&self.db).await?
            }
        };
        Ok(row.map(org_from_row))
    }

    /// Creates a team named `name` in organization `org_id`; returns it and the new revision.
    ///
    /// [`StoreError::NotFound`] if the organization does not exist,
    /// [`StoreError::Conflict`] if the name is taken in that organization.
    pub async fn create_team(&self, org_id: &OrgId, name: &str) -> Result<(TeamRecord, i64), StoreError> {
        let rec = TeamRecord {
            id: TeamId::new(new_id(TeamId::PREFIX)),
            org_id: org_id.clone(),
            name: name.to_owned(),
            created_at: Timestamp::now(),
        };
        let txn = self.begin_write().await?;
        if organization::Entity::find_by_id(org_id.as_str()).one(&txn).await?.is_none() {
            return Err(StoreError::NotFound { kind: "organization", id: org_id.to_string() });
        }
        team::Entity::insert(team_to_row(&rec).into_active_model()).exec_without_returning(&txn).await.map_err(
            |e| {
                let taken = format!("a team named {name:?} already exists in organization {org_id}");
                write_err("team", e, &[(&["name"], taken)], format!("team id {} is taken", rec.id))
            },
        )?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((rec, rev))
    }

    /// The team with id `id_or_name`, else the team with that name in any organization.
    ///
    /// [`StoreError::Conflict`] if the name matches teams in several organizations.
    pub async fn find_team(&self, id_or_name: &str) -> Result<Option<TeamRecord>, StoreError> {
        if let Some(m) = team::Entity::find_by_id(id_or_name).one(&self.db).await? {
            return Ok(Some(team_from_row(m)));
        }
        let mut rows = team::Entity::find()
            .filter(team::Column::Name.eq(id_or_name))
            .order_by_asc(team::Column::Id)
            .limit(2)
            .all(&self.db)
            .await?;
        if rows.len() > 1 {
            return Err(StoreError::Conflict {
                kind: "team",
                detail: format!("several teams are named {id_or_name:?}; use the id"),
            });
        }
        Ok(rows.pop().map(team_from_row))
    }

    /// Creates a project named `name` in team `team_id`; returns it and the new revision.
    ///
    /// [`StoreError::NotFound`] if the team does not exist,
    /// [`StoreError::Conflict`] if the name is taken in that team.
    pub async fn create_project(&self, team_id: &TeamId, name: &str) -> Result<(ProjectRecord, i64), StoreError> {
        let txn = self.begin_write().await?;
        let Some(team) = team::Entity::find_by_id(team_id.as_str()).one(&txn).await? else {
            return Err(StoreError::NotFound { kind: "team", id: team_id.to_string() });
        };
        let rec = ProjectRecord {
            id: ProjectId::new(new_id(ProjectId::PREFIX)),
            team_id: team_id.clone(),
            org_id: OrgId::new(team.org_id),
            name: name.to_owned(),
            created_at: Timestamp::now(),
        };
        project::Entity::insert(project_to_row(&rec).into_active_model()).exec_without_returning(&txn).await.map_err(
            |e| {
                let taken = format!("a project named {name:?} already exists in team {team_id}");
                write_err("project", e, &[(&["name"], taken)], format!("project id {} is taken", rec.id))
            },
        )?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((rec, rev))
    }

    /// The project with id `id_or_name`, else the project with that name in any team.
    ///
    /// [`StoreError::Conflict`] if the name matches projects in several teams.
    pub async fn find_project(&self, id_or_name: &str) -> Result<Option<ProjectRecord>, StoreError> {
        let rows = match project::Entity::find_by_id(id_or_name).one(&self.db).await? {
            Some(m) => vec![m],
            None => {
                project::Entity::find()
                    .filter(project::Column::Name.eq(id_or_name))
                    .order_by_asc(project::Column::Id)
                    .limit(2)
                    .all(&self.db)
                    .await?
            }
        };
        if rows.len() > 1 {
            return Err(StoreError::Conflict {
                kind: "project",
                detail: format!("several projects are named {id_or_name:?}; use the id"),
            });
        }
        Ok(projects_with_orgs(&self.db, rows).await?.pop())
    }

    /// Stores a provider credential as given; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if its id or name is taken.
    pub async fn create_provider(&self, p: &ProviderRecord) -> Result<i64, StoreError> {
        let row = provider_to_row(p)?;
        let txn = self.begin_write().await?;
        provider::Entity::insert(row.into_active_model()).exec_without_returning(&txn).await.map_err(|e| {
            let taken = format!("a provider named {:?} already exists", p.name);
            write_err("provider", e, &[(&["name"], taken)], format!("provider id {} is taken", p.id))
        })?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The provider with id `id_or_name`, else the one with that name.
    pub async fn find_provider(&self, id_or_name: &str) -> Result<Option<ProviderRecord>, StoreError> {
        let row = match provider::Entity::find_by_id(id_or_name).one(&self.db).await? {
            Some(m) => Some(m),
            None => provider::Entity::find().filter(provider::Column::Name.eq(id_or_name)).one(&self.db).await?,
        };
        row.map(provider_from_row).transpose()
    }

    /// Every provider credential, by name.
    pub async fn list_providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        provider::Entity::find()
            .order_by_asc(provider::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(provider_from_row)
            .collect()
    }

    /// The id of the master key the provider credentials are encrypted under, if one was
    /// recorded. The store does not interpret it.
    pub async fn master_key_id(&self) -> Result<Option<i64>, StoreError> {
        Ok(meta::Entity::find_by_id(MASTER_KEY_ID).one(&self.db).await?.map(|m| m.value))
    }

    /// Records `id` as the master key id unless one is recorded already; returns the one
    /// recorded afterwards. Not a configuration change: the revision stays.
    pub async fn adopt_master_key_id(&self, id: i64) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        if let Some(m) = meta::Entity::find_by_id(MASTER_KEY_ID).one(&txn).await? {
            return Ok(m.value);
        }
        meta::Entity::insert(meta::Model { name: MASTER_KEY_ID.to_owned(), value: id }.into_active_model())
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(id)
    }

    /// Replaces every provider's `api_key_ciphertext` with what `reencrypt` makes of it
    /// and records `new_key_id` as the master key id, all in one transaction that also
    /// bumps the revision: either every row moves to the new key or none does.
    ///
    /// `check_key_id` sees the recorded master key id (inside the transaction, so no
    /// writer can slip in between) and refuses by returning an error; any error from it
    /// or from `reencrypt` rolls everything back. Returns the number of rows rewritten and
    /// the new revision.
    pub async fn reencrypt_provider_credentials<E, C, F>(
        &self,
        new_key_id: i64,
        check_key_id: C,
        mut reencrypt: F,
    ) -> Result<(u64, i64), E>
    where
        E: From<StoreError>,
        C: FnOnce(Option<i64>) -> Result<(), E>,
        F: FnMut(&ProviderRecord) -> Result<String, E>,
    {
        let txn = self.begin_write().await?;
        // First, so that on PostgreSQL the row lock on `meta` serializes this with every
        // other writer before anything is read.
        let rev = bump_revision(&txn).await?;
        let recorded = meta::Entity::find_by_id(MASTER_KEY_ID).one(&txn).await.map_err(StoreError::from)?;
        check_key_id(recorded.as_ref().map(|m| m.value))?;
        let rows =
            provider::Entity::find().order_by_asc(provider::Column::Id).all(&txn).await.map_err(StoreError::from)?;
        let mut count = 0u64;
        for row in rows {
            let id = row.id.clone();
            let ciphertext = reencrypt(&provider_from_row(row)?)?;
            let res = provider::Entity::update_many()
                .col_expr(provider::Column::ApiKeyCiphertext, Expr::value(ciphertext))
                .filter(provider::Column::Id.eq(id.as_str()))
                .exec(&txn)
                .await
                .map_err(StoreError::from)?;
            count += res.rows_affected;
        }
        if recorded.is_some() {
            meta::Entity::update_many()
                .col_expr(meta::Column::Value, Expr::value(new_key_id))
                .filter(meta::Column::Name.eq(MASTER_KEY_ID))
                .exec(&txn)
                .await
                .map_err(StoreError::from)?;
        } else {
            let row = meta::Model { name: MASTER_KEY_ID.to_owned(), value: new_key_id }.into_active_model();
            meta::Entity::insert(row).exec_without_returning(&txn).await.map_err(StoreError::from)?;
        }
        txn.commit().await.map_err(StoreError::from)?;
        Ok((count, rev))
    }

    /// Stores a catalog model as given; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if its id or name is taken, by a model or an alias.
    /// Deployments are not checked against the providers: the caller validates them.
    pub async fn create_model(&self, m: &ModelRecord) -> Result<i64, StoreError> {
        let row = model_to_row(m)?;
        let txn = self.begin_write().await?;
        if model_alias::Entity::find_by_id(m.name.as_str()).one(&txn).await?.is_some() {
            return Err(StoreError::Conflict { kind: "model", detail: format!("{:?} is an alias", m.name) });
        }
        model::Entity::insert(row.into_active_model()).exec_without_returning(&txn).await.map_err(|e| {
            let taken = format!("a model named {:?} already exists", m.name);
            write_err("model", e, &[(&["name"], taken)], format!("model id {} is taken", m.id))
        })?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// Replaces the prices, deployments and output cap of the model with `m.id` (every
    /// column but `id`, `name` and `created_at`); returns the new revision.
    ///
    /// [`StoreError::NotFound`] if no such model.
    pub async fn update_model(&self, m: &ModelRecord) -> Result<i64, StoreError> {
        let mut am = model_to_row(m)?.into_active_model().reset_all();
        am.id = NotSet;
        am.name = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = model::Entity::update_many().set(am).filter(model::Column::Id.eq(m.id.as_str())).exec(&txn).await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "model", id: m.id.to_string() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// Every model of the catalog, by public name.
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        model::Entity::find()
            .order_by_asc(model::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(model_from_row)
            .collect()
    }

    /// The model with id `id_or_name`, else the one with that public name.
    pub async fn find_model(&self, id_or_name: &str) -> Result<Option<ModelRecord>, StoreError> {
        let row = match model::Entity::find_by_id(id_or_name).one(&self.db).await? {
            Some(m) => Some(m),
            None => model::Entity::find().filter(model::Column::Name.eq(id_or_name)).one(&self.db).await?,
        };
        row.map(model_from_row).transpose()
    }

    /// Stores an alias; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if the name is taken by an alias or a model;
    /// [`StoreError::NotFound`] (kind `model`) if no model has the target's public name,
    /// which also refuses an alias to an alias (aliases and models never share a name).
    pub async fn create_alias(&self, a: &AliasRecord) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let model_named = |name: &str| model::Entity::find().filter(model::Column::Name.eq(name)).one(&txn);
        if model_named(&a.name).await?.is_some() {
            return Err(StoreError::Conflict { kind: "alias", detail: format!("a model named {:?} exists", a.name) });
        }
        if model_named(&a.target_model).await?.is_none() {
            return Err(StoreError::NotFound { kind: "model", id: a.target_model.clone() });
        }
        model_alias::Entity::insert(alias_to_row(a).into_active_model())
            .exec_without_returning(&txn)
            .await
            .map_err(|e| write_err("alias", e, &[], format!("an alias named {:?} already exists", a.name)))?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The alias named `name`.
    pub async fn find_alias(&self, name: &str) -> Result<Option<AliasRecord>, StoreError> {
        Ok(model_alias::Entity::find_by_id(name).one(&self.db).await?.map(alias_from_row))
    }

    /// Every alias, by name.
    pub async fn list_aliases(&self) -> Result<Vec<AliasRecord>, StoreError> {
        let rows = model_alias::Entity::find().order_by_asc(model_alias::Column::Name).all(&self.db).await?;
        Ok(rows.into_iter().map(alias_from_row).collect())
    }

    /// Deletes the alias named `name`; returns the new revision.
    ///
    /// [`StoreError::NotFound`] if no such alias.
    pub async fn delete_alias(&self, name: &str) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let res = model_alias::Entity::delete_many().filter(model_alias::Column::Name.eq(name)).exec(&txn).await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "alias", id: name.to_owned() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// Stores a routing policy as given; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if its id is taken or its scope already has a policy. The
    /// scope target is not checked: the caller validates it.
    pub async fn create_routing_policy(&self, p: &RoutingPolicyRecord) -> Result<i64, StoreError> {
        let row = routing_policy_to_row(p)?;
        let txn = self.begin_write().await?;
        routing_policy::Entity::insert(row.into_active_model()).exec_without_returning(&txn).await.map_err(|e| {
            let scope = match &p.scope_id {
                Some(id) => format!("{} {id}", p.scope),
                None => p.scope.clone(),
            };
            let taken = format!("{scope} already has a routing policy");
            write_err("routing policy", e, &[(&["scope_id"], taken)], format!("routing policy id {} is taken", p.id))
        })?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The routing policy with this id.
    pub async fn get_routing_policy(&self, id: &str) -> Result<Option<RoutingPolicyRecord>, StoreError> {
        routing_policy::Entity::find_by_id(id).one(&self.db).await?.map(routing_policy_from_row).transpose()
    }

    /// Every routing policy, by id.
    pub async fn list_routing_policies(&self) -> Result<Vec<RoutingPolicyRecord>, StoreError> {
        routing_policy::Entity::find()
            .order_by_asc(routing_policy::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(routing_policy_from_row)
            .collect()
    }

    /// Replaces the policy and `updated_at` of the routing policy with `p.id` (its scope
    /// and `created_at` are never written); returns the stored policy and the new revision.
    ///
    /// [`StoreError::NotFound`] if no such policy.
    pub async fn update_routing_policy(
        &self,
        p: &RoutingPolicyRecord,
    ) -> Result<(RoutingPolicyRecord, i64), StoreError> {
        let mut am = routing_policy_to_row(p)?.into_active_model().reset_all();
        am.id = NotSet;
        am.scope = NotSet;
        am.scope_id = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = routing_policy::Entity::update_many()
            .set(am)
            .filter(routing_policy::Column::Id.eq(p.id.as_str()))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "routing policy", id: p.id.clone() });
        }
        let row = routing_policy::Entity::find_by_id(p.id.as_str()).one(&txn).await?;
        let stored = routing_policy_from_row(
            row.ok_or_else(|| StoreError::NotFound { kind: "routing policy", id: p.id.clone() })?,
        )?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((stored, rev))
    }

    /// Deletes the routing policy with this id; returns the new revision.
    ///
    /// [`StoreError::NotFound`] if no such policy.
    pub async fn delete_routing_policy(&self, id: &str) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let res = routing_policy::Entity::delete_many().filter(routing_policy::Column::Id.eq(id)).exec(&txn).await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "routing policy", id: id.to_owned() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// Stores a virtual key and, when given, its budget, in one transaction; returns the
    /// new revision (bumped once).
    ///
    /// [`StoreError::NotFound`] if the project does not exist; [`StoreError::Conflict`]
    /// if the key id, key hash or budget id is taken. On any error nothing is stored.
    pub async fn create_key(&self, k: &KeyRecord, budget: Option<&BudgetRecord>) -> Result<i64, StoreError> {
        let key_row = key_to_row(k)?;
        let budget_row = budget.map(budget_to_row).transpose()?;
        let txn = self.begin_write().await?;
        if project::Entity::find_by_id(k.project_id.as_str()).one(&txn).await?.is_none() {
            return Err(StoreError::NotFound { kind: "project", id: k.project_id.to_string() });
        }
        virtual_key::Entity::insert(key_row.into_active_model())
            .exec_without_returning(&txn)
            .await
            .map_err(|e| key_write_err(e, k))?;
        if let Some(row) = budget_row {
            let id = row.id.clone();
            budget::Entity::insert(row.into_active_model())
                .exec_without_returning(&txn)
                .await
                .map_err(|e| write_err("budget", e, &[], format!("budget id {id} is taken")))?;
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The key with this id.
    pub async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        virtual_key::Entity::find_by_id(id.as_str()).one(&self.db).await?.map(key_from_row).transpose()
    }

    /// The keys matching `f`, by id ascending, at most `f.limit` (capped at
    /// [`KeyFilter::MAX_LIMIT`]). Pass the last id of a page as `after` for the next.
    pub async fn list_keys(&self, f: &KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
        let limit = f.limit.min(KeyFilter::MAX_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        if f.metadata.is_empty() && f.tag.is_none() {
            return key_query(f, f.after.as_ref().map(KeyId::as_str))
                .limit(limit)
                .all(&self.db)
                .await?
                .into_iter()
                .map(key_from_row)
                .collect();
        }
        // Metadata and tags are JSON columns whose query syntax differs per backend: scan in
        // id order and filter here, resuming after the last row seen, until the page is full.
        let batch = limit.max(KEY_SCAN_BATCH);
        let mut out = Vec::new();
        let mut cursor = f.after.as_ref().map(|a| a.as_str().to_owned());
        loop {
            let rows = key_query(f, cursor.as_deref()).limit(batch).all(&self.db).await?;
            let exhausted = (rows.len() as u64) < batch;
            for row in rows {
                cursor = Some(row.id.clone());
                let rec = key_from_row(row)?;
                if f.metadata.iter().all(|(k, v)| rec.metadata.get(k) == Some(v))
                    && f.tag.as_ref().is_none_or(|t| rec.tags.contains(t))
                {
                    out.push(rec);
                    if out.len() as u64 == limit {
                        return Ok(out);
                    }
                }
            }
            if exhausted {
                return Ok(out);
            }
        }
    }

    /// Replaces every mutable column of the key with `k.id` (all but `project_id` and
    /// `created_at`); returns the new revision. Used for rotate, revoke and patch.
    ///
    /// [`StoreError::NotFound`] if no such key; [`StoreError::Conflict`] if the new key
    /// hash belongs to another key.
    pub async fn update_key(&self, k: &KeyRecord) -> Result<i64, StoreError> {
        let mut am = key_to_row(k)?.into_active_model().reset_all();
        am.id = NotSet;
        am.project_id = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = virtual_key::Entity::update_many()
            .set(am)
            .filter(virtual_key::Column::Id.eq(k.id.as_str()))
            .exec(&txn)
            .await
            .map_err(|e| key_write_err(e, k))?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "key", id: k.id.to_string() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// Stores a budget as given; returns the new revision.
    ///
    /// [`StoreError::Conflict`] if its id is taken. The scope target is not checked
    /// (a principal is free-form).
    pub async fn create_budget(&self, b: &BudgetRecord) -> Result<i64, StoreError> {
        let row = budget_to_row(b)?;
        let txn = self.begin_write().await?;
        budget::Entity::insert(row.into_active_model())
            .exec_without_returning(&txn)
            .await
            .map_err(|e| write_err("budget", e, &[], format!("budget id {} is taken", b.id)))?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The budgets attached to one scope target, by id.
    pub async fn list_budgets_for(&self, scope: ScopeKind, scope_id: &str) -> Result<Vec<BudgetRecord>, StoreError> {
        budget::Entity::find()
            .filter(budget::Column::Scope.eq(scope.as_str()))
            .filter(budget::Column::ScopeId.eq(scope_id))
            .order_by_asc(budget::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(budget_from_row)
            .collect()
    }

    /// The budget with this id.
    pub async fn get_budget(&self, id: &BudgetId) -> Result<Option<BudgetRecord>, StoreError> {
        budget::Entity::find_by_id(id.as_str()).one(&self.db).await?.map(budget_from_row).transpose()
    }

    /// The budgets matching `f`, by id ascending, at most `f.limit` (capped at
    /// [`BudgetFilter::MAX_LIMIT`]). Pass the last id of a page as `after` for the next.
    pub async fn list_budgets(&self, f: &BudgetFilter) -> Result<Vec<BudgetRecord>, StoreError> {
        let limit = f.limit.min(BudgetFilter::MAX_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut q = budget::Entity::find();
        if let Some(scope) = f.scope {
            q = q.filter(budget::Column::Scope.eq(scope.as_str()));
        }
        if let Some(scope_id) = &f.scope_id {
            q = q.filter(budget::Column::ScopeId.eq(scope_id.as_str()));
        }
        if let Some(after) = &f.after {
            q = q.filter(budget::Column::Id.gt(after.as_str()));
        }
        q.order_by_asc(budget::Column::Id).limit(limit).all(&self.db).await?.into_iter().map(budget_from_row).collect()
    }

    /// Replaces the mutable columns of the budget with `b.id` — limit (money or tokens),
    /// window, breach behaviour, thresholds, temporary increase, `updated_at` — and
    /// returns the stored budget and the new revision.
    ///
    /// The scope, `created_at`, `epoch` and `last_reset_at` are never written: those two
    /// only move through [`Store::reset_budget`], so an update racing a reset cannot undo it.
    /// [`StoreError::NotFound`] if no such budget.
    pub async fn update_budget(&self, b: &BudgetRecord) -> Result<(BudgetRecord, i64), StoreError> {
        let mut am = budget_to_row(b)?.into_active_model().reset_all();
        am.id = NotSet;
        am.scope = NotSet;
        am.scope_id = NotSet;
        am.epoch = NotSet;
        am.last_reset_at = NotSet;
        am.created_at = NotSet;
        let txn = self.begin_write().await?;
        let res = budget::Entity::update_many()
            .set(am)
            .filter(budget::Column::Id.eq(b.id.as_str()))
            .exec(&txn)
            .await
            .map_err(|e| write_err("budget", e, &[], format!("budget {} could not be updated", b.id)))?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "budget", id: b.id.to_string() });
        }
        let stored = read_budget_in(&txn, &b.id).await?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((stored, rev))
    }

    /// Starts the budget's window afresh everywhere: bumps its `epoch` by one (atomically,
    /// in SQL) and sets `last_reset_at` and `updated_at` to `at`; returns the stored
    /// budget and the new revision.
    ///
    /// [`StoreError::NotFound`] if no such budget; [`StoreError::Conflict`] in the
    /// theoretical case that the epoch cannot grow any more.
    pub async fn reset_budget(&self, id: &BudgetId, at: Timestamp) -> Result<(BudgetRecord, i64), StoreError> {
        use sea_orm::sea_query::ExprTrait as _;
        let txn = self.begin_write().await?;
        let res = budget::Entity::update_many()
            .col_expr(budget::Column::Epoch, Expr::col(budget::Column::Epoch).add(1))
            .col_expr(budget::Column::UpdatedAt, Expr::value(at.unix_millis()))
            .col_expr(budget::Column::LastResetAt, Expr::value(at.unix_millis()))
            .filter(budget::Column::Id.eq(id.as_str()))
            .filter(budget::Column::Epoch.lt(i32::MAX))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return match budget::Entity::find_by_id(id.as_str()).one(&txn).await? {
                None => Err(StoreError::NotFound { kind: "budget", id: id.to_string() }),
                Some(_) => Err(StoreError::Conflict {
                    kind: "budget",
                    detail: format!("budget {id} has been reset too often; create a new one"),
                }),
            };
        }
        let stored = read_budget_in(&txn, id).await?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((stored, rev))
    }

    /// Deletes the budget with this id; returns the new revision.
    ///
    /// [`StoreError::NotFound`] if no such budget.
    pub async fn delete_budget(&self, id: &BudgetId) -> Result<i64, StoreError> {
        let txn = self.begin_write().await?;
        let res = budget::Entity::delete_many().filter(budget::Column::Id.eq(id.as_str())).exec(&txn).await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound { kind: "budget", id: id.to_string() });
        }
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// Stores an admin token (its hash, never the token); returns the new revision.
    ///
    /// [`StoreError::NotFound`] if the team or project does not exist;
    /// [`StoreError::Conflict`] if the id or hash is taken.
    pub async fn create_admin_token(&self, rec: &AdminTokenRecord) -> Result<i64, StoreError> {
        let row = admin_token_to_row(rec)?;
        let txn = self.begin_write().await?;
        if let Some(t) = &rec.team_id
            && team::Entity::find_by_id(t.as_str()).one(&txn).await?.is_none()
        {
            return Err(StoreError::NotFound { kind: "team", id: t.to_string() });
        }
        if let Some(p) = &rec.project_id
            && project::Entity::find_by_id(p.as_str()).one(&txn).await?.is_none()
        {
            return Err(StoreError::NotFound { kind: "project", id: p.to_string() });
        }
        admin_token::Entity::insert(row.into_active_model()).exec_without_returning(&txn).await.map_err(|e| {
            let taken = "an admin token with this hash already exists".to_owned();
            write_err("admin token", e, &[(&["token_hash"], taken)], format!("admin token id {} is taken", rec.id))
        })?;
        let rev = bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(rev)
    }

    /// The admin token with this id, revoked or not.
    pub async fn get_admin_token(&self, id: &TokenId) -> Result<Option<AdminTokenRecord>, StoreError> {
        admin_token::Entity::find_by_id(id.as_str()).one(&self.db).await?.map(admin_token_from_row).transpose()
    }

    /// Every admin token, revoked ones included, ordered by id (oldest first: ids are
    /// time-ordered). Tokens are few (one per backend or operator), so there is no paging.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        admin_token::Entity::find()
            .order_by_asc(admin_token::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(admin_token_from_row)
            .collect()
    }

    /// Marks the token revoked at `at` unless it already is; returns the stored token and
    /// the new revision (`None` when it was already revoked and nothing changed).
    ///
    /// [`StoreError::NotFound`] if no such token.
    pub async fn revoke_admin_token(
        &self,
        id: &TokenId,
        at: Timestamp,
    ) -> Result<(AdminTokenRecord, Option<i64>), StoreError> {
        let txn = self.begin_write().await?;
        let res = admin_token::Entity::update_many()
            .col_expr(admin_token::Column::RevokedAt, Expr::value(at.unix_millis()))
            .filter(admin_token::Column::Id.eq(id.as_str()))
            .filter(admin_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let row = admin_token::Entity::find_by_id(id.as_str())
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::NotFound { kind: "admin token", id: id.to_string() })?;
        let rev = if res.rows_affected > 0 { Some(bump_revision(&txn).await?) } else { None };
        txn.commit().await?;
        Ok((admin_token_from_row(row)?, rev))
    }

    /// The admin token with this hash, revoked or not (the caller checks `revoked_at`).
    pub async fn find_admin_token_by_hash(&self, token_hash: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        admin_token::Entity::find()
            .filter(admin_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await?
            .map(admin_token_from_row)
            .transpose()
    }

    /// Appends an audit event; computes nothing itself — the caller passes prev_hash/hash.
    /// Returns the seq the database assigned (`e.seq` is ignored). Does not bump the
    /// revision.
    ///
    /// [`StoreError::Conflict`] if the event id is taken.
    pub async fn append_audit(&self, e: &AuditRecord) -> Result<i64, StoreError> {
        let am = audit_to_active(e)?;
        let res = audit_event::Entity::insert(am)
            .exec(&self.db)
            .await
            .map_err(|err| write_err("audit event", err, &[], format!("audit event id {:?} is taken", e.id)))?;
        Ok(res.last_insert_id)
    }

    /// The newest audit event.
    pub async fn last_audit(&self) -> Result<Option<AuditRecord>, StoreError> {
        audit_event::Entity::find()
            .order_by_desc(audit_event::Column::Seq)
            .one(&self.db)
            .await?
            .map(audit_from_row)
            .transpose()
    }

    /// Audit events, newest first: optionally only of one target kind, at or after
    /// `since`, and with seq below `before_seq` (pass the last seq of a page for the
    /// next). At most `limit` events, capped at 1000.
    pub async fn list_audit(
        &self,
        target_kind: Option<&str>,
        since: Option<Timestamp>,
        limit: u64,
        before_seq: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let f = AuditFilter {
            target_kind: target_kind.map(str::to_owned),
            since,
            before_seq,
            limit,
            ..AuditFilter::default()
        };
        self.query_audit(&f).await
    }

    /// Audit events matching every set field of `f`, newest first (descending seq); at
    /// most `f.limit`, capped at 1000.
    pub async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = f.limit.min(AUDIT_PAGE_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut q = audit_event::Entity::find();
        if let Some(k) = &f.target_kind {
            q = q.filter(audit_event::Column::TargetKind.eq(k.as_str()));
        }
        if let Some(a) = &f.actor {
            q = q.filter(audit_event::Column::Actor.eq(a.as_str()));
        }
        if let Some(t) = f.since {
            q = q.filter(audit_event::Column::At.gte(t.unix_millis()));
        }
        if let Some(t) = f.until {
            q = q.filter(audit_event::Column::At.lt(t.unix_millis()));
        }
        if let Some(s) = f.before_seq {
            q = q.filter(audit_event::Column::Seq.lt(s));
        }
        q.order_by_desc(audit_event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(audit_from_row)
            .collect()
    }

    /// The audit chain in stored order: at most `limit` events (capped at 1000) with seq
    /// above `after_seq`, oldest first. Walk it page by page to verify the whole chain.
    pub async fn audit_chain(&self, after_seq: Option<i64>, limit: u64) -> Result<Vec<AuditRecord>, StoreError> {
        let mut q = audit_event::Entity::find();
        if let Some(s) = after_seq {
            q = q.filter(audit_event::Column::Seq.gt(s));
        }
        q.order_by_asc(audit_event::Column::Seq)
            .limit(limit.min(AUDIT_PAGE_MAX))
            .all(&self.db)
            .await?
            .into_iter()
            .map(audit_from_row)
            .collect()
    }

    /// Everything a data-plane snapshot is built from, read in one transaction together
    /// with the revision it belongs to. Every list is ordered by id.
    pub async fn snapshot(&self) -> Result<SnapshotData, StoreError> {
        let txn = self.begin_snapshot().await?;
        let revision = read_revision(&txn).await?;
        let orgs = organization::Entity::find()
            .order_by_asc(organization::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(org_from_row)
            .collect();
        let team_rows = team::Entity::find().order_by_asc(team::Column::Id).all(&txn).await?;
        let org_of_team: HashMap<String, String> = team_rows.iter().map(|t| (t.id.clone(), t.org_id.clone())).collect();
        let teams = team_rows.into_iter().map(team_from_row).collect();
        let projects = project::Entity::find()
            .order_by_asc(project::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(|p| {
                let org = org_of_team.get(&p.team_id).cloned().ok_or_else(|| StoreError::Corrupt {
                    kind: "project",
                    id: p.id.clone(),
                    detail: format!("team {:?} does not exist", p.team_id),
                })?;
                Ok(project_from_row(p, OrgId::new(org)))
            })
            .collect::<Result<_, StoreError>>()?;
        let providers = provider::Entity::find()
            .order_by_asc(provider::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(provider_from_row)
            .collect::<Result<_, _>>()?;
        let models = model::Entity::find()
            .order_by_asc(model::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(model_from_row)
            .collect::<Result<_, _>>()?;
        let keys = virtual_key::Entity::find()
            .order_by_asc(virtual_key::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(key_from_row)
            .collect::<Result<_, _>>()?;
        let budgets = budget::Entity::find()
            .order_by_asc(budget::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(budget_from_row)
            .collect::<Result<_, _>>()?;
        let aliases = model_alias::Entity::find()
            .order_by_asc(model_alias::Column::Name)
            .all(&txn)
            .await?
            .into_iter()
            .map(alias_from_row)
            .collect();
        let routing_policies = routing_policy::Entity::find()
            .order_by_asc(routing_policy::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(routing_policy_from_row)
            .collect::<Result<_, _>>()?;
        txn.commit().await?;
        Ok(SnapshotData {
            revision,
            orgs,
            teams,
            projects,
            providers,
            models,
            keys,
            budgets,
            aliases,
            routing_policies,
        })
    }
}

#[cfg(feature = "test-util")]
impl Store {
    /// Runs SQL as is and returns the rows it touched: for tests that tamper with stored
    /// rows (the audit chain) behind the store's back.
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(self.db.execute_unprepared(sql).await?.rows_affected())
    }

    /// Creates an empty PostgreSQL database with a fresh name on the server of
    /// `admin_url` and returns its URL, for tests that need a database of their own.
    /// Drop it with [`Store::drop_postgres_database`].
    pub async fn create_postgres_database(admin_url: &str) -> Result<String, StoreError> {
        let name = format!("tollgate_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(admin_url).await?;
        admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await?;
        admin.close().await?;
        let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(b, q)| (b, Some(q)));
        let host_start = base.find("://").map_or(0, |i| i + 3);
        let base = base[host_start..].find('/').map_or(base, |i| &base[..host_start + i]);
        Ok(match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        })
    }

    /// Drops the database at `url` made by [`Store::create_postgres_database`].
    pub async fn drop_postgres_database(admin_url: &str, url: &str) -> Result<(), StoreError> {
        let name = url.split('?').next().and_then(|b| b.rsplit('/').next()).unwrap_or_default();
        let admin = Database::connect(admin_url).await?;
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
        admin.close().await?;
        Ok(())
    }
}

/// The budget `id` as seen inside `txn`, which has just written it.
async fn read_budget_in(txn: &DatabaseTransaction, id: &BudgetId) -> Result<BudgetRecord, StoreError> {
    let row = budget::Entity::find_by_id(id.as_str()).one(txn).await?;
    let row = row.ok_or_else(|| StoreError::NotFound { kind: "budget", id: id.to_string() })?;
    budget_from_row(row)
}

/// A failed key insert or update: a taken hash is the likely conflict.
fn key_write_err(e: sea_orm::DbErr, k: &KeyRecord) -> StoreError {
    write_err(
        "key",
        e,
        &[(&["key_hash"], "another key already has this key hash".to_owned())],
        format!("key id {} is taken", k.id),
    )
}
