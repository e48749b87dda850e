//! Applying one [`v1::ConfigChange`] to a snapshot: the incremental half of the one
//! apply path ([`crate::DataPlane::apply_update`]).
//!
//! What a change costs depends on what it touches:
//! - keys (the high-frequency case: a SaaS backend minting and revoking keys): the key
//!   index and the per-key budget lists are cloned — copying the maps, sharing every
//!   entry behind its `Arc` — and only the changed keys are converted and patched;
//! - budgets: patched by id the same way; the keys whose budget lists change are
//!   resolved again — the key itself for a `virtual_key` budget, otherwise every key of
//!   the budget's scope, found by one scan of the index without converting anything;
//! - providers, models, aliases and routing policies (small, rarely changed): the wire
//!   state they were built from is patched by id and the whole routing configuration is
//!   rebuilt from it, exactly as a full snapshot builds it (unchanged providers keep
//!   their upstream pools).
//!
//! Invariant: a change applied to the snapshot at its `from_revision` gives the same
//! snapshot as building the full snapshot at its `revision`; an item that fails to
//! convert is left out and reported, as a full build would leave it out.

use crate::snapshot::{Accounts, Snapshot, WireConfig, budgets_of, build_routing, in_scope, sorted_budgets};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tollgate_budgets::Budget;
use tollgate_core::{BudgetId, KeyId, ScopeKind};
use tollgate_proto::convert::{self, Rejected};
use tollgate_proto::v1;
use tollgate_providers::HttpClient;

/// Why a change was refused as a whole (nothing of it applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The change does not start from the snapshot being served: applying it would skip
    /// or repeat revisions. The gateway must catch up from its own revision instead.
    #[error("change from revision {from} does not apply to revision {have}")]
    NotFromCurrent {
        /// The revision being served (0 before any snapshot).
        have: i64,
        /// The change's `from_revision`.
        from: i64,
    },
    /// The change does not move forward.
    #[error("change to revision {to} does not follow revision {from}")]
    Backwards {
        /// The change's `from_revision`.
        from: i64,
        /// The change's `revision`.
        to: i64,
    },
}

/// Deletions then upserts of one kind of wire item kept by id.
fn patch_by_id<T: Clone>(map: &mut BTreeMap<String, T>, deletes: &[String], upserts: &[T], id: impl Fn(&T) -> &str) {
    for d in deletes {
        map.remove(d);
    }
    for u in upserts {
        map.insert(id(u).to_owned(), u.clone());
    }
}

impl Snapshot {
    /// The snapshot `change` leads to from this one, with the items that were left out
    /// (each a [`Rejected`]); refused whole when it does not start from this snapshot.
    pub(crate) fn patch(
        &self,
        change: &v1::ConfigChange,
        client: &HttpClient,
    ) -> Result<(Snapshot, Vec<Rejected>), ChangeError> {
        if !self.loaded || change.from_revision != self.revision {
            let have = if self.loaded { self.revision } else { 0 };
            return Err(ChangeError::NotFromCurrent { have, from: change.from_revision });
        }
        if change.revision <= change.from_revision {
            return Err(ChangeError::Backwards { from: change.from_revision, to: change.revision });
        }
        let mut problems = Vec::new();

        // Providers, models, aliases, routing policies: patch the wire, rebuild routing.
        let config_changed = !(change.upsert_providers.is_empty()
            && change.delete_providers.is_empty()
            && change.upsert_models.is_empty()
            && change.delete_models.is_empty()
            && change.upsert_aliases.is_empty()
            && change.delete_aliases.is_empty()
            && change.upsert_routing_policies.is_empty()
            && change.delete_routing_policies.is_empty());
        let (wire, routing) = if config_changed {
            let mut w: WireConfig = (*self.wire).clone();
            patch_by_id(&mut w.providers, &change.delete_providers, &change.upsert_providers, |p| &p.id);
            patch_by_id(&mut w.models, &change.delete_models, &change.upsert_models, |m| &m.id);
            patch_by_id(&mut w.aliases, &change.delete_aliases, &change.upsert_aliases, |a| &a.name);
            patch_by_id(
                &mut w.routing_policies,
                &change.delete_routing_policies,
                &change.upsert_routing_policies,
                |p| &p.id,
            );
            let routing = build_routing(&w, client, self, &mut problems);
            (Arc::new(w), routing)
        } else {
            (self.wire.clone(), self.routing())
        };

        // Budgets: patch by id, remembering every scope whose list changes. (Budgets
        // before keys, so a new key shares its id with its budget's scope id.)
        let mut ids = convert::Interner::new();
        let mut budgets = self.budgets.clone();
        let mut touched: HashSet<(ScopeKind, Arc<str>)> = HashSet::new();
        let mut added: HashMap<(ScopeKind, Arc<str>), Vec<Arc<Budget>>> = HashMap::new();
        for id in &change.delete_budgets {
            if let Some(old) = budgets.remove(&BudgetId::new(id.as_str())) {
                touched.insert((old.scope, old.scope_id.clone()));
            }
        }
        for b in &change.upsert_budgets {
            if let Some(old) = budgets.remove(&BudgetId::new(b.id.as_str())) {
                touched.insert((old.scope, old.scope_id.clone()));
            }
            match convert::budget_in(b, &mut ids) {
                Ok(budget) => {
                    let budget = Arc::new(budget);
                    let scope = (budget.scope, budget.scope_id.clone());
                    touched.insert(scope.clone());
                    added.entry(scope).or_default().push(budget.clone());
                    budgets.insert(budget.id.clone(), budget);
                }
                Err(e) => problems.push(e),
            }
        }
        let mut by_scope = self.budgets_by_scope.clone();
        for (kind, id) in &touched {
            let ids = by_scope.entry(*kind).or_default();
            // Those still current (not deleted or replaced), then the new ones.
            let mut list: Vec<Arc<Budget>> = ids
                .get(id)
                .map(|old| {
                    old.iter().filter(|b| budgets.get(&b.id).is_some_and(|cur| Arc::ptr_eq(cur, b))).cloned().collect()
                })
                .unwrap_or_default();
            list.extend(added.remove(&(*kind, id.clone())).unwrap_or_default());
            if list.is_empty() {
                ids.remove(id);
            } else {
                ids.insert(id.clone(), sorted_budgets(list));
            }
        }
        by_scope.retain(|_, ids| !ids.is_empty());

        // Keys: patch by id; then resolve again the budgets of every key they changed for.
        let mut keys = self.keys.clone();
        let mut key_budgets = self.key_budgets.clone();
        let mut resolve: HashSet<KeyId> = HashSet::new();
        for id in &change.delete_keys {
            let id = KeyId::new(id.as_str());
            keys.remove(&id);
            key_budgets.remove(&id);
        }
        for k in &change.upsert_keys {
            let id = KeyId::new(k.id.as_str());
            keys.remove(&id);
            key_budgets.remove(&id);
            match convert::key_in(k, &mut ids) {
                Ok(parts) => {
                    resolve.insert(id);
                    keys.insert(parts.key, parts.hash, parts.previous);
                }
                Err(e) => problems.push(e),
            }
        }
        let wide: Vec<&(ScopeKind, Arc<str>)> = touched.iter().filter(|(k, _)| *k != ScopeKind::VirtualKey).collect();
        for (kind, id) in &touched {
            if *kind == ScopeKind::VirtualKey {
                resolve.insert(KeyId::new(id.clone()));
            }
        }
        if !wide.is_empty() {
            for key in keys.keys() {
                if wide.iter().any(|(kind, id)| in_scope(key, *kind, id)) {
                    resolve.insert(key.id.clone());
                }
            }
        }
        for id in &resolve {
            let Some(key) = keys.get(id) else { continue };
            let applicable = budgets_of(key, &by_scope);
            if applicable.is_empty() {
                key_budgets.remove(id);
            } else {
                key_budgets.insert(id.clone(), applicable);
            }
        }

        let accounts = Accounts { keys, key_budgets, budgets, budgets_by_scope: by_scope };
        let next = Snapshot::assemble(change.revision, self.hasher.clone(), wire, routing, accounts);
        Ok((next, problems))
    }
}

#[cfg(test)]
#[path = "change_tests.rs"]
mod tests;
