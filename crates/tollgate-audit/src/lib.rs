//! tollgate-audit: the tamper-evident audit trail of control-plane writes.
//!
//! Owns the [`AuditEvent`] shape (who did what to which target, with a diff that has
//! had its secrets removed) and the hash chain over events: each event's hash covers
//! its content and the previous event's hash, so editing, deleting or reordering a
//! stored row breaks [`verify_chain`] at that row.
//!
//! Does not own: storage of events (the store crate) or deciding what is a write (the
//! control plane).
//!
//! Invariant: the hash input is a canonical encoding (length-prefixed fields, JSON with
//! sorted keys), so the same event always hashes the same on every backend.
#![forbid(unsafe_code)]

use sha2::{Digest, Sha256};
use tollgate_core::Timestamp;

/// The hash that precedes the first event of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Unique id.
    pub id: String,
    /// When it happened.
    pub at: Timestamp,
    /// Who did it: an admin token id, or `bootstrap`.
    pub actor: String,
    /// What was done, e.g. `key.create`.
    pub action: String,
    /// The kind of target, e.g. `key`.
    pub target_kind: String,
    /// The target's id.
    pub target_id: String,
    /// Details (a diff), secrets removed.
    pub metadata: serde_json::Value,
}

/// Field names whose values are never written to the audit trail.
const SECRET_FIELDS: &[&str] = &["api_key", "key", "secret", "token", "key_hash", "password", "master_key"];

/// Replaces the value of every secret-bearing field (at any depth) with `"<redacted>"`.
pub fn redact(mut value: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if SECRET_FIELDS.contains(&k.as_str()) {
                        *child = serde_json::Value::String("<redacted>".into());
                    } else {
                        walk(child);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// The chain hash of `event` following `prev_hash` (lower-case hex SHA-256).
pub fn chain_hash(prev_hash: &str, event: &AuditEvent) -> String {
    let mut h = Sha256::new();
    let at = event.at.unix_millis().to_string();
    // serde_json's default map is a BTreeMap, so object keys serialize sorted.
    let meta = event.metadata.to_string();
    for field in [prev_hash, &event.id, &at, &event.actor, &event.action, &event.target_kind, &event.target_id, &meta] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored event with its chain fields, as read back for verification.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedEvent {
    /// Position in the chain (ascending).
    pub seq: i64,
    /// The event.
    pub event: AuditEvent,
    /// The hash stored as the previous one.
    pub prev_hash: String,
    /// The hash stored for this event.
    pub hash: String,
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq} (event {id}): {reason}")]
pub struct ChainError {
    /// Sequence number of the first bad row.
    pub seq: i64,
    /// Its event id.
    pub id: String,
    /// What does not match.
    pub reason: String,
}

/// Verifies a chain one event at a time, in ascending order from its start, so a long
/// chain can be read page by page.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    prev_hash: String,
    prev_seq: i64,
    checked: usize,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier { prev_hash: GENESIS.to_owned(), prev_seq: 0, checked: 0 }
    }
}

impl ChainVerifier {
    /// A verifier at the start of a chain (sequence numbers start at 1).
    pub fn new() -> Self {
        ChainVerifier::default()
    }

    /// Checks the next event. A row whose previous hash does not match, after a hole in
    /// the sequence numbers, is named as following deleted rows.
    pub fn push(&mut self, e: &ChainedEvent) -> Result<(), ChainError> {
        let fail = |reason: String| ChainError { seq: e.seq, id: e.event.id.clone(), reason };
        if e.prev_hash != self.prev_hash {
            let expected_seq = self.prev_seq + 1;
            return Err(fail(if e.seq > expected_seq {
                format!(
                    "rows are missing before it (seq {expected_seq}..{}): its previous hash matches no row before it",
                    e.seq - 1
                )
            } else {
                "previous hash does not match the row before it".to_owned()
            }));
        }
        if chain_hash(&self.prev_hash, &e.event) != e.hash {
            return Err(fail("content does not match its hash".to_owned()));
        }
        self.prev_hash.clone_from(&e.hash);
        self.prev_seq = e.seq;
        self.checked += 1;
        Ok(())
    }

    /// How many events have verified so far.
    pub fn checked(&self) -> usize {
        self.checked
    }
}

/// Verifies events in ascending order from the start of the chain; the number checked.
pub fn verify_chain<'a>(events: impl IntoIterator<Item = &'a ChainedEvent>) -> Result<usize, ChainError> {
    let mut v = ChainVerifier::new();
    for e in events {
        v.push(e)?;
    }
    Ok(v.checked())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: usize) -> Vec<ChainedEvent> {
        let mut prev = GENESIS.to_owned();
        (0..n)
            .map(|i| {
                let event = AuditEvent {
                    id: format!("aud_{i}"),
                    at: Timestamp::from_unix_millis(i as i64),
                    actor: "bootstrap".into(),
                    action: "key.create".into(),
                    target_kind: "key".into(),
                    target_id: format!("key_{i}"),
                    metadata: json!({"name": i}),
                };
                let hash = chain_hash(&prev, &event);
                let c = ChainedEvent { seq: i as i64 + 1, event, prev_hash: prev.clone(), hash: hash.clone() };
                prev = hash;
                c
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
    }

    #[test]
    fn a_tampered_row_is_named() {
        let mut c = chain(5);
        c[2].event.actor = "mallory".into();
        assert_eq!(verify_chain(&c).unwrap_err().seq, 3);
        let mut c = chain(5);
        c.remove(1);
        let err = verify_chain(&c).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.reason.contains("missing") && err.reason.contains("seq 2..2"), "{err}");
        let mut c = chain(5);
        c[3].prev_hash = c[1].hash.clone();
        let err = verify_chain(&c).unwrap_err();
        assert_eq!((err.seq, err.reason.contains("missing")), (4, false), "{err}");
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = redact(json!({"name": "p", "api_key": "sk-1", "nested": [{"secret": "s"}]}));
        assert_eq!(v, json!({"name": "p", "api_key": "<redacted>", "nested": [{"secret": "<redacted>"}]}));
    }
}
