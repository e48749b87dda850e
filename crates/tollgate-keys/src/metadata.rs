//! A key's metadata in the gateway's memory: string pairs, sorted by key, held as one
//! boxed slice. A `BTreeMap` spends a whole B-tree node (over 500 bytes) on a key with
//! one pair; at 100,000 keys that node was a quarter of the gateway's memory.

use std::collections::BTreeMap;

/// A key's metadata: at most one value per name, iterated in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMetadata(Box<[(Box<str>, Box<str>)]>);

impl KeyMetadata {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.0.binary_search_by(|(k, _)| (**k).cmp(name)).ok()?;
        Some(&self.0[i].1)
    }

    /// The pairs, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs as an owned map (a ledger entry's form).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for KeyMetadata {
    /// Sorted by name; of pairs with the same name, the last one given wins (as in a map).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut v: Vec<(Box<str>, Box<str>)> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        // Stable: equal names keep their order, so the last given ends last and survives.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(v.len());
        for pair in v {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        KeyMetadata(out.into_boxed_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_sorted_looked_up_and_the_last_duplicate_wins() {
        let m: KeyMetadata = [("tier", "gold"), ("account", "a-1"), ("tier", "platinum")].into_iter().collect();
        assert_eq!(m.iter().collect::<Vec<_>>(), [("account", "a-1"), ("tier", "platinum")]);
        assert_eq!((m.get("tier"), m.get("account"), m.get("nope")), (Some("platinum"), Some("a-1"), None));
        assert_eq!(m.len(), 2);
        let map = m.to_map();
        assert_eq!(map.get("tier").map(String::as_str), Some("platinum"));
        assert!(KeyMetadata::default().is_empty() && KeyMetadata::default().to_map().is_empty());
    }
}
