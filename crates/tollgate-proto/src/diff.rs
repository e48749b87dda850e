//! The change between two wire snapshots, by id: what `ConfigService.Watch` sends a
//! gateway instead of a whole snapshot. Computed by the control plane once per
//! revision; here, beside the wire types, so the data plane's tests can check that
//! applying it equals applying the snapshot it leads to.

use crate::v1;

/// The change that turns `old` into `new`, by id; `None` when the key pepper differs
/// (a new pepper must reach gateways as a full snapshot).
pub fn diff(old: &v1::Snapshot, new: &v1::Snapshot) -> Option<v1::ConfigChange> {
    if old.key_pepper != new.key_pepper {
        return None;
    }
    let mut c = v1::ConfigChange { from_revision: old.revision, revision: new.revision, ..Default::default() };
    diff_by_id(&old.providers, &new.providers, |p| &p.id, &mut c.upsert_providers, &mut c.delete_providers);
    diff_by_id(&old.models, &new.models, |m| &m.id, &mut c.upsert_models, &mut c.delete_models);
    diff_by_id(&old.keys, &new.keys, |k| &k.id, &mut c.upsert_keys, &mut c.delete_keys);
    diff_by_id(&old.budgets, &new.budgets, |b| &b.id, &mut c.upsert_budgets, &mut c.delete_budgets);
    diff_by_id(&old.aliases, &new.aliases, |a| &a.name, &mut c.upsert_aliases, &mut c.delete_aliases);
    diff_by_id(
        &old.routing_policies,
        &new.routing_policies,
        |p| &p.id,
        &mut c.upsert_routing_policies,
        &mut c.delete_routing_policies,
    );
    Some(c)
}

/// Items of `new` that are absent from `old` or differ from it go to `upserts`, ids of
/// `old` absent from `new` to `deletes`. A merge of both lists sorted by id: the store
/// already returns them in id order, so the sorts are linear.
fn diff_by_id<T: PartialEq + Clone>(
    old: &[T],
    new: &[T],
    id: impl Fn(&T) -> &String,
    upserts: &mut Vec<T>,
    deletes: &mut Vec<String>,
) {
    let mut old: Vec<&T> = old.iter().collect();
    let mut new: Vec<&T> = new.iter().collect();
    old.sort_by(|a, b| id(a).cmp(id(b)));
    new.sort_by(|a, b| id(a).cmp(id(b)));
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if id(o) == id(n) => {
                if o != n {
                    upserts.push((*n).clone());
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if id(o) < id(n) => {
                deletes.push(id(o).clone());
                i += 1;
            }
            (Some(o), None) => {
                deletes.push(id(o).clone());
                i += 1;
            }
            (_, Some(n)) => {
                upserts.push((*n).clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, status: &str) -> v1::Key {
        v1::Key { id: id.into(), status: status.into(), key_hash: vec![1; 32], ..Default::default() }
    }

    fn snap(revision: i64, keys: &[(&str, &str)]) -> v1::Snapshot {
        v1::Snapshot {
            revision,
            key_pepper: vec![7; 32],
            keys: keys.iter().map(|(id, status)| key(id, status)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_diff_holds_only_what_changed_by_id() {
        let old = snap(1, &[("key_a", "active"), ("key_b", "active"), ("key_c", "active")]);
        // Out of id order on purpose: the diff must not depend on it.
        let new = snap(2, &[("key_d", "active"), ("key_b", "revoked"), ("key_a", "active")]);
        let c = diff(&old, &new).unwrap();
        assert_eq!((c.from_revision, c.revision), (1, 2));
        let upserts: Vec<_> = c.upsert_keys.iter().map(|k| (k.id.as_str(), k.status.as_str())).collect();
        assert_eq!(upserts, [("key_b", "revoked"), ("key_d", "active")]);
        assert_eq!(c.delete_keys, ["key_c"]);
        assert!(c.upsert_budgets.is_empty() && c.upsert_providers.is_empty());
    }

    #[test]
    fn a_new_pepper_has_no_change() {
        let old = snap(1, &[]);
        let mut new = snap(2, &[]);
        new.key_pepper = vec![8; 32];
        assert!(diff(&old, &new).is_none());
    }
}
