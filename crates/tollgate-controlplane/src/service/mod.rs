//! The service layer: every management operation, shared by REST and gRPC, one module
//! per resource (`keys`, `budgets`, `providers`, `models`, `tenancy`, `tokens`, `usage`,
//! `audit`, `routing`) plus `auth` (who may do what). This module holds only [`Service`],
//! its constructor and the helpers every resource shares; the snapshot gateways serve
//! from is built in [`crate::snapshot`].

mod audit;
mod auth;
mod budgets;
mod keys;
mod models;
mod providers;
mod routing;
mod tenancy;
mod tokens;
mod usage;

pub(crate) use audit::append_audit;
pub use audit::{AuditEventView, AuditPage, AuditQuery, AuditVerification, BrokenRow};

pub use auth::{Actor, Scope, Tenancy};
pub use budgets::{
    BudgetAmount, BudgetInput, BudgetPage, BudgetView, CreateBudget, IncreaseBudget, ListBudgets,
    MAX_CLAMP_FLOOR_TOKENS, MAX_INCREASE_DURATION_S, TemporaryIncreaseView, Threshold, UpdateBudget,
};
pub use keys::{CreateKey, KeyPage, KeyView, KeyWithSecret, ListKeys, RotateKey, UpdateKey};
pub use models::{
    CreateModel, DeploymentInput, MAX_TOKENS_PER_PART, ModelView, PRICE_EXPLICIT, PricingInput, TokensPerPart,
    UpdateModel,
};
pub use providers::{CreateProvider, ProviderView, UpdateProvider};
pub use routing::{
    AliasView, CreateAlias, CreateRoutingPolicy, PolicyScopeKind, RoutingPolicyView, UpdateRoutingPolicy,
};
pub use tenancy::{
    CreateOrganization, CreateProject, CreateTeam, ListPrincipals, ListProjects, ListTeams, OrganizationView,
    PrincipalPage, PrincipalRevocation, PrincipalView, ProjectView, TeamView,
};
pub use tokens::{CreateToken, TokenView, TokenWithSecret};
pub use usage::{LedgerEntryView, LedgerPage, LedgerQuery, UsageFormat, UsageQuery, UsageReport};

use crate::ControlError;
use crate::secrets::Secrets;
use budgets::budget_view;
pub(crate) use budgets::no_fields;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard, watch};
use tollgate_keys::KeyHasher;
use tollgate_store::{OrgRecord, Store, StoreTxn};

/// Name of the organization created at first start.
pub const DEFAULT_ORG: &str = "default";
/// Page size of list operations when none is given.
const DEFAULT_LIMIT: u64 = 100;
/// The largest page size of list operations.
const MAX_LIST_LIMIT: u64 = 1000;

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or set.
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A string schema that allows exactly `values`.
pub(crate) fn enum_schema(values: impl IntoIterator<Item = &'static str>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String).enum_values(Some(values)).build()
}

/// The control plane's operations over one store.
pub struct Service {
    store: Store,
    secrets: Secrets,
    hasher: KeyHasher,
    org: OrgRecord,
    revision: watch::Sender<i64>,
    /// Serializes this process's admin writes ([`Service::begin_write`]): on SQLite they
    /// would otherwise queue on the database's write lock and could time out.
    audit_lock: Mutex<()>,
    /// Held from the unpriced-model check to the end of the write it clears, so two
    /// writes that are fine alone but not together (an unpriced model and a `*` key
    /// under a money budget) cannot both pass (see `refuse_unpriced_reach`).
    unpriced_lock: Mutex<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("revision", &*self.revision.borrow()).finish_non_exhaustive()
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A list operation's `limit` query parameter.
pub(crate) fn parse_limit(text: &str) -> Result<u64, ControlError> {
    text.parse().map_err(|_| ControlError::invalid("limit", "must be a positive integer"))
}

/// Checks a name with the one rule every crate applies (`tollgate_core::check_name`),
/// naming `field` on error.
fn check_name(field: &str, value: &str) -> Result<(), ControlError> {
    tollgate_core::check_name(value).map_err(|e| ControlError::invalid(field, e.to_string()))
}

impl Service {
    /// Opens the service over a store: ensures the default organization exists and reads
    /// the current revision.
    ///
    /// Refuses a master key other than the one the stored credentials are encrypted under
    /// ([`ControlError::MasterKeyMismatch`]). A database that predates key ids adopts the
    /// key, once it has decrypted a stored credential.
    pub async fn new(store: Store, secrets: Secrets) -> Result<Arc<Self>, ControlError> {
        crate::rotation::check_master_key(&store, &secrets.master_key).await?;
        let org = store.ensure_org(DEFAULT_ORG).await?;
        let rev = store.revision().await?;
        let hasher = KeyHasher::new(&secrets.pepper);
        let (revision, _) = watch::channel(rev);
        Ok(Arc::new(Service {
            store,
            secrets,
            hasher,
            org,
            revision,
            audit_lock: Mutex::new(()),
            unpriced_lock: Mutex::new(()),
        }))
    }

    /// Subscribes to revision changes.
    pub fn revisions(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The control plane's secrets (master key, pepper), for the snapshot builder.
    pub(crate) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    fn committed(&self, rev: i64) {
        self.revision.send_if_modified(|cur| {
            if rev > *cur {
                *cur = rev;
                true
            } else {
                false
            }
        });
    }

    /// Opens an admin write: the write, the revision bump and the audit event all go
    /// through [`AdminWrite::store`] and commit together in [`Service::commit_audited`];
    /// dropping the `AdminWrite` instead (an early `?`) rolls all of it back.
    ///
    /// While it is open, every read of the calling task must go through
    /// [`AdminWrite::store`] too: on an in-memory SQLite database the transaction holds
    /// the only connection.
    async fn begin_write(&self) -> Result<AdminWrite<'_>, ControlError> {
        let guard = self.audit_lock.lock().await;
        let txn = self.store.begin().await?;
        Ok(AdminWrite { txn, _serial: guard })
    }

    /// Appends the write's audit event (actor, action, target, details with secrets
    /// removed) inside its transaction and commits both; then announces `revision` to the
    /// watchers. If the event cannot be stored, nothing of the write is committed and the
    /// caller gets the error (500 `internal_error`).
    /// `target` is the event's `(target_kind, target_id)`.
    async fn commit_audited(
        &self,
        write: AdminWrite<'_>,
        revision: Option<i64>,
        actor: &Actor,
        action: &str,
        (kind, id): (&str, &str),
        metadata: serde_json::Value,
    ) -> Result<(), ControlError> {
        append_audit(write.store(), &actor.id, action, kind, id, metadata).await?;
        write.txn.commit().await?;
        if let Some(rev) = revision {
            self.committed(rev);
        }
        Ok(())
    }
}

/// An admin write in progress; see [`Service::begin_write`].
struct AdminWrite<'a> {
    txn: StoreTxn,
    _serial: MutexGuard<'a, ()>,
}

impl AdminWrite<'_> {
    /// The store whose operations are part of this write.
    fn store(&self) -> &Store {
        self.txn.store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_with_the_field_named() {
        assert!(check_name("name", "ok").is_ok());
        let e = check_name("name", "").unwrap_err().to_string();
        assert!(e.contains("name"), "{e}");
        assert!(check_name("name", &"x".repeat(tollgate_core::MAX_NAME_LEN + 1)).is_err());
        assert!(check_name("name", "a\nb").is_err());
    }
}
