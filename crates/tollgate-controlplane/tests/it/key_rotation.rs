//! Key rotation graces, from the REST API down to the published snapshot, checked the
//! way a gateway authenticates: every rotated-out secret keeps its own end, a rotation
//! without grace kills only the secret it replaces, at most eight are kept, and
//! revocation kills every secret at once.

use crate::Cp;
use http::Method;
use http::StatusCode as S;
use serde_json::json;
use tollgate_core::Timestamp;
use tollgate_keys::{AuthError, KeyHasher, KeyIndex, MAX_GRACE_SECRETS};
use tollgate_proto::{convert, v1};

async fn project(cp: &Cp) {
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "t"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/projects", Some(json!({"name": "p", "team": "t"})), S::CREATED).await;
}

/// Rotates key `id` with `grace` seconds; returns the new secret.
async fn rotate(cp: &Cp, id: &str, grace: u64) -> String {
    let path = format!("/api/v1/keys/{id}/rotate");
    let r = cp.expect(Method::POST, &path, Some(json!({"grace_period_s": grace})), S::OK).await;
    r["key"].as_str().unwrap().to_owned()
}

/// The published wire key `id` and an index built from it the way a gateway builds one.
async fn published(cp: &Cp, id: &str) -> (v1::Key, KeyHasher, KeyIndex) {
    let snap = cp.snapshot_at(cp.revision().await).await;
    let wire = snap.keys.iter().find(|k| k.id == id).unwrap().clone();
    let hasher = KeyHasher::new(&convert::pepper(&snap.key_pepper).unwrap());
    let parts = convert::key(&wire).unwrap();
    let mut index = KeyIndex::new();
    index.insert(parts.key, parts.hash, parts.previous);
    (wire, hasher, index)
}

#[tokio::test]
async fn every_rotated_out_secret_keeps_its_own_end_until_the_key_is_revoked() {
    let cp = Cp::start().await;
    project(&cp).await;
    let created = cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "p"})), S::CREATED).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let s0 = created["key"].as_str().unwrap().to_owned();
    let before = Timestamp::now().unix_millis();
    let s1 = rotate(&cp, &id, 100).await; // s0 until +100 s
    let s2 = rotate(&cp, &id, 50).await; // s1 until +50 s: ends before s0
    let s3 = rotate(&cp, &id, 0).await; // s2 dies at once; s0 and s1 keep their promise
    let after = Timestamp::now().unix_millis();

    let (wire, hasher, index) = published(&cp, &id).await;
    let ends: Vec<i64> = wire.grace_secrets.iter().map(|g| g.valid_until_ms).collect();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!((before + 100_000..=after + 100_000).contains(&ends[0]), "{ends:?}");
    assert!((before + 50_000..=after + 50_000).contains(&ends[1]), "{ends:?}");
    let latest = wire.grace_secrets.last().unwrap();
    assert_eq!(
        (wire.previous_key_hash.as_deref(), wire.previous_valid_until_ms),
        (Some(latest.key_hash.as_slice()), Some(latest.valid_until_ms)),
        "the old single field carries the latest rotation for older gateways"
    );
    let auth = |s: &str, at: i64| index.authenticate(&hasher, s, Timestamp::from_unix_millis(at)).map(|k| k.id.clone());
    for s in [&s0, &s1, &s3] {
        assert!(auth(s, after).is_ok());
    }
    assert_eq!(auth(&s2, after).err(), Some(AuthError::Unknown), "grace 0 kills the secret it replaces");
    assert_eq!(auth(&s1, ends[1]).err(), Some(AuthError::Unknown), "s1 stops at its own end");
    assert!(auth(&s0, ends[1]).is_ok(), "s0 outlives s1");
    assert_eq!(auth(&s0, ends[0]).err(), Some(AuthError::Unknown));
    assert!(auth(&s3, ends[0]).is_ok());

    cp.expect(Method::POST, &format!("/api/v1/keys/{id}/revoke"), None, S::OK).await;
    let (wire, hasher, index) = published(&cp, &id).await;
    assert!(wire.grace_secrets.is_empty() && wire.previous_key_hash.is_none());
    for s in [&s0, &s1, &s2, &s3] {
        let refused = index.authenticate(&hasher, s, Timestamp::from_unix_millis(after));
        assert!(refused.is_err(), "a revoked key works under no secret");
    }
    assert_eq!(index.authenticate(&hasher, &s3, Timestamp::from_unix_millis(after)).err(), Some(AuthError::Revoked));
}

#[tokio::test]
async fn at_most_eight_rotated_out_secrets_are_kept_and_the_earliest_go_first() {
    let cp = Cp::start().await;
    project(&cp).await;
    let created = cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "p"})), S::CREATED).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut secrets = vec![created["key"].as_str().unwrap().to_owned()];
    for _ in 0..MAX_GRACE_SECRETS + 2 {
        secrets.push(rotate(&cp, &id, 3600).await);
    }
    let (wire, hasher, index) = published(&cp, &id).await;
    assert_eq!(wire.grace_secrets.len(), MAX_GRACE_SECRETS);
    let now = Timestamp::now();
    let works: Vec<bool> = secrets.iter().map(|s| index.authenticate(&hasher, s, now).is_ok()).collect();
    let mut want = vec![true; secrets.len()];
    want[0] = false;
    want[1] = false;
    assert_eq!(works, want, "the two rotated out earliest are dropped; the rest and the current work");
}
