//! The in-memory key index and the per-key policy checks of the hot path.

use crate::format::{KeyFormatError, parse_presented};
use crate::{GraceSecret, KeyHash, KeyHasher, KeyMetadata, ModelAllowlist};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use tollgate_core::{ErrorCode, KeyId, OrgId, ProjectId, ServiceError, TeamId, Timestamp};

/// Lifecycle state of a key as stored. Expiry is derived from `expires_at` at request
/// time, so it needs no state change to take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Revoked: refused with 403 `virtual_key_revoked`.
    Revoked,
}

impl KeyStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(KeyStatus::Active),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

/// Per-key rate limits; `None` means unlimited on that dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_concurrency: Option<u32>,
}

/// Everything the data plane knows about a key: its place in the tenancy tree and its
/// policy. Never holds the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualKey {
    /// Record id.
    pub id: KeyId,
    /// Human-readable name.
    pub name: Option<String>,
    /// Owning organization.
    pub org: OrgId,
    /// Owning team.
    pub team: TeamId,
    /// Owning project.
    pub project: ProjectId,
    /// The platform's customer or user id, if any.
    pub principal: Option<Arc<str>>,
    /// Stored status.
    pub status: KeyStatus,
    /// When the key stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// Models the key may use; shared by the keys of one snapshot with the same patterns.
    pub models_allowed: Arc<ModelAllowlist>,
    /// Rate limits.
    pub limits: RateLimits,
    /// Free-form metadata chosen at creation; copied to ledger entries.
    pub metadata: KeyMetadata,
    /// Tags (`env:prod`, …), copied to ledger entries; shared with the rest of the key
    /// behind the index's `Arc`, so a request only clones them into its entry.
    pub tags: Vec<String>,
    /// Display hint of the current secret (`tg_…a1b2`).
    pub hint: String,
}

/// Why a presented key does not authenticate, or may not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key was presented.
    #[error("missing API key")]
    Missing,
    /// The string is not a well-formed key.
    #[error("malformed API key")]
    Malformed(#[source] KeyFormatError),
    /// Well formed but unknown (or a rotated secret past its grace period).
    #[error("invalid API key")]
    Unknown,
    /// The key was revoked.
    #[error("virtual key has been revoked")]
    Revoked,
    /// The key's `expires_at` has passed.
    #[error("virtual key has expired")]
    Expired,
    /// The model is outside the key's allowlist.
    #[error("model {0:?} is not allowed for this key")]
    ModelNotAllowed(String),
}

impl ServiceError for AuthError {
    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing | AuthError::Malformed(_) | AuthError::Unknown => ErrorCode::Unauthenticated,
            AuthError::Revoked | AuthError::Expired | AuthError::ModelNotAllowed(_) => ErrorCode::Forbidden,
        }
    }
}

/// A hasher for already-uniform [`KeyHash`] values: the first eight bytes are the hash.
/// Attackers cannot steer HMAC outputs without the pepper, so this is not a HashDoS risk.
#[derive(Default)]
pub(crate) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only the first eight bytes matter for uniform input.
        let n = bytes.len().min(8);
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(buf);
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: Arc<VirtualKey>,
    /// Set for a rotated-out secret: it authenticates until this instant.
    valid_until: Option<Timestamp>,
}

/// A key with the hashes it is indexed under, so it can be taken out again.
#[derive(Debug, Clone, PartialEq)]
struct Indexed {
    key: Arc<VirtualKey>,
    hash: KeyHash,
    /// Rotated-out secrets still indexed for it (see [`crate::after_rotation`]).
    previous: Vec<KeyHash>,
}

/// Hash → key map probed once per request.
///
/// Cloning it copies the maps but shares every key (`Arc`), which is how a gateway
/// patches a few keys of a large index without rebuilding it. Two indexes are equal
/// when they hold the same keys under the same hashes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyIndex {
    by_hash: HashMap<KeyHash, Entry, BuildHasherDefault<PrefixHasher>>,
    by_id: HashMap<KeyId, Indexed>,
}

impl KeyIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key under its current hash and under each rotated-out secret in `grace`,
    /// every one until its own `valid_until` (so two rotations inside one grace keep both
    /// old secrets working). A key already indexed under the same id is replaced whole:
    /// hashes it no longer has stop authenticating. Only the current hash counts when a
    /// grace hash equals it. Revocation needs no special case: a revoked key is refused
    /// under every hash it is indexed by.
    pub fn insert(&mut self, key: Arc<VirtualKey>, hash: KeyHash, grace: impl IntoIterator<Item = GraceSecret>) {
        self.remove(&key.id);
        let mut previous = Vec::new();
        for g in grace {
            if g.hash == hash {
                continue;
            }
            self.by_hash.insert(g.hash, Entry { key: key.clone(), valid_until: Some(g.valid_until) });
            previous.push(g.hash);
        }
        self.by_id.insert(key.id.clone(), Indexed { key: key.clone(), hash, previous });
        self.by_hash.insert(hash, Entry { key, valid_until: None });
    }

    /// Takes a key out with every hash it authenticates under; returns it if it was in.
    pub fn remove(&mut self, id: &KeyId) -> Option<Arc<VirtualKey>> {
        let gone = self.by_id.remove(id)?;
        for h in std::iter::once(gone.hash).chain(gone.previous) {
            // Only if the hash still leads to this key (never another key's entry).
            if self.by_hash.get(&h).is_some_and(|e| e.key.id == *id) {
                self.by_hash.remove(&h);
            }
        }
        Some(gone.key)
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<VirtualKey>> {
        self.by_id.values().map(|i| &i.key)
    }

    /// Number of keys (not counting rotated-out secrets).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when the index holds no key.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The key with this id.
    pub fn get(&self, id: &KeyId) -> Option<&Arc<VirtualKey>> {
        self.by_id.get(id).map(|i| &i.key)
    }

    /// Authenticates a presented key string at `now`: format, lookup, status, expiry.
    /// Performs exactly one HMAC and one hash-map probe.
    pub fn authenticate(
        &self,
        hasher: &KeyHasher,
        presented: &str,
        now: Timestamp,
    ) -> Result<&Arc<VirtualKey>, AuthError> {
        if presented.is_empty() {
            return Err(AuthError::Missing);
        }
        let key = parse_presented(presented).map_err(AuthError::Malformed)?;
        let entry = self.by_hash.get(&hasher.hash(key)).ok_or(AuthError::Unknown)?;
        if entry.valid_until.is_some_and(|until| now >= until) {
            return Err(AuthError::Unknown);
        }
        let vk = &entry.key;
        if vk.status == KeyStatus::Revoked {
            return Err(AuthError::Revoked);
        }
        if vk.expires_at.is_some_and(|exp| now >= exp) {
            return Err(AuthError::Expired);
        }
        Ok(vk)
    }
}

impl VirtualKey {
    /// Checks the model allowlist.
    pub fn check_model(&self, model: &str) -> Result<(), AuthError> {
        if self.models_allowed.allows(model) {
            Ok(())
        } else {
            Err(AuthError::ModelNotAllowed(model.chars().take(256).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Pepper, mint_secret};

    fn key(status: KeyStatus, expires_at: Option<Timestamp>) -> Arc<VirtualKey> {
        Arc::new(VirtualKey {
            id: KeyId::new("key_1"),
            name: None,
            org: OrgId::new("org_1"),
            team: TeamId::new("team_1"),
            project: ProjectId::new("proj_1"),
            principal: None,
            status,
            expires_at,
            models_allowed: Arc::new(ModelAllowlist::new(["gpt-4o*"])),
            limits: RateLimits::default(),
            metadata: KeyMetadata::default(),
            tags: Vec::new(),
            hint: "tg_…0000".into(),
        })
    }

    struct Fixture {
        hasher: KeyHasher,
        index: KeyIndex,
        secret: String,
    }

    fn fixture(vk: Arc<VirtualKey>) -> Fixture {
        let hasher = KeyHasher::new(&Pepper::new([9; 32]));
        let secret = mint_secret();
        let mut index = KeyIndex::new();
        index.insert(vk, hasher.hash(secret.expose()), None);
        Fixture { hasher, index, secret: secret.expose().to_owned() }
    }

    #[test]
    fn an_active_key_authenticates_and_others_are_refused_with_their_reason() {
        let now = Timestamp::from_unix_millis(1_000_000);
        let f = fixture(key(KeyStatus::Active, None));
        assert_eq!(f.index.authenticate(&f.hasher, &f.secret, now).map(|k| k.id.clone()), Ok(KeyId::new("key_1")));
        assert_eq!(f.index.authenticate(&f.hasher, "", now).err(), Some(AuthError::Missing));
        assert_eq!(f.index.authenticate(&f.hasher, mint_secret().expose(), now).err(), Some(AuthError::Unknown));
        assert!(matches!(f.index.authenticate(&f.hasher, "tg_short", now), Err(AuthError::Malformed(_))));

        let f = fixture(key(KeyStatus::Revoked, None));
        assert_eq!(f.index.authenticate(&f.hasher, &f.secret, now).err(), Some(AuthError::Revoked));

        let f = fixture(key(KeyStatus::Active, Some(now)));
        assert_eq!(f.index.authenticate(&f.hasher, &f.secret, now).err(), Some(AuthError::Expired));
        assert!(f.index.authenticate(&f.hasher, &f.secret, Timestamp::from_unix_millis(999_999)).is_ok());
    }

    #[test]
    fn a_rotated_out_secret_works_until_its_grace_ends() {
        let hasher = KeyHasher::new(&Pepper::new([9; 32]));
        let old = mint_secret();
        let new = mint_secret();
        let until = Timestamp::from_unix_millis(5_000);
        let mut index = KeyIndex::new();
        index.insert(
            key(KeyStatus::Active, None),
            hasher.hash(new.expose()),
            Some(GraceSecret { hash: hasher.hash(old.expose()), valid_until: until }),
        );
        assert!(index.authenticate(&hasher, old.expose(), Timestamp::from_unix_millis(4_999)).is_ok());
        assert_eq!(index.authenticate(&hasher, old.expose(), until).err(), Some(AuthError::Unknown));
        assert!(index.authenticate(&hasher, new.expose(), until).is_ok());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn replacing_or_removing_a_key_retires_its_old_secrets() {
        let hasher = KeyHasher::new(&Pepper::new([9; 32]));
        let (old, new) = (mint_secret(), mint_secret());
        let now = Timestamp::from_unix_millis(1_000);
        let mut index = KeyIndex::new();
        index.insert(key(KeyStatus::Active, None), hasher.hash(old.expose()), None);
        // Rotated: the old secret is still valid for a while, under the same id.
        let until = Timestamp::from_unix_millis(5_000);
        index.insert(
            key(KeyStatus::Active, None),
            hasher.hash(new.expose()),
            Some(GraceSecret { hash: hasher.hash(old.expose()), valid_until: until }),
        );
        assert!(index.authenticate(&hasher, old.expose(), now).is_ok());
        // Replaced again without a grace period: the old secret is gone at once.
        index.insert(key(KeyStatus::Revoked, None), hasher.hash(new.expose()), None);
        assert_eq!(index.authenticate(&hasher, old.expose(), now).err(), Some(AuthError::Unknown));
        assert_eq!(index.authenticate(&hasher, new.expose(), now).err(), Some(AuthError::Revoked));
        assert_eq!(index.len(), 1);

        let mut fresh = KeyIndex::new();
        fresh.insert(key(KeyStatus::Revoked, None), hasher.hash(new.expose()), None);
        assert_eq!(index, fresh, "patching in place equals building from scratch");

        assert!(index.remove(&KeyId::new("key_1")).is_some());
        assert_eq!(index.authenticate(&hasher, new.expose(), now).err(), Some(AuthError::Unknown));
        assert!(index.is_empty() && index.remove(&KeyId::new("key_1")).is_none());
        assert_eq!(index, KeyIndex::new());
    }

    #[test]
    fn every_rotated_out_secret_works_until_its_own_end_and_revocation_kills_them_all() {
        let hasher = KeyHasher::new(&Pepper::new([9; 32]));
        let (first, second, third) = (mint_secret(), mint_secret(), mint_secret());
        let grace = |s: &crate::KeySecret, until: i64| GraceSecret {
            hash: hasher.hash(s.expose()),
            valid_until: Timestamp::from_unix_millis(until),
        };
        // Rotated twice inside one grace: first until 3 000, second until 6 000.
        let mut index = KeyIndex::new();
        index.insert(
            key(KeyStatus::Active, None),
            hasher.hash(third.expose()),
            [grace(&first, 3_000), grace(&second, 6_000)],
        );
        let works = |index: &KeyIndex, s: &crate::KeySecret, ms: i64| {
            index.authenticate(&hasher, s.expose(), Timestamp::from_unix_millis(ms)).map(|k| k.id.clone())
        };
        for s in [&first, &second, &third] {
            assert_eq!(works(&index, s, 2_999), Ok(KeyId::new("key_1")));
        }
        assert_eq!(works(&index, &first, 3_000).err(), Some(AuthError::Unknown), "the first ends at its own end");
        assert!(works(&index, &second, 5_999).is_ok(), "the second outlives the first");
        assert_eq!(works(&index, &second, 6_000).err(), Some(AuthError::Unknown));
        assert!(works(&index, &third, 6_000).is_ok());
        assert_eq!(index.len(), 1);

        // Revoked: every secret is refused at once, the grace ones included.
        index.insert(
            key(KeyStatus::Revoked, None),
            hasher.hash(third.expose()),
            [grace(&first, 3_000), grace(&second, 6_000)],
        );
        for s in [&first, &second, &third] {
            assert_eq!(works(&index, s, 1_000).err(), Some(AuthError::Revoked));
        }
        // Removed: none of its hashes is left behind.
        assert!(index.remove(&KeyId::new("key_1")).is_some());
        assert_eq!(index, KeyIndex::new());
    }

    #[test]
    fn a_grace_hash_equal_to_the_current_one_does_not_expire_the_current_secret() {
        let hasher = KeyHasher::new(&Pepper::new([9; 32]));
        let s = mint_secret();
        let mut index = KeyIndex::new();
        let stale = GraceSecret { hash: hasher.hash(s.expose()), valid_until: Timestamp::from_unix_millis(1) };
        index.insert(key(KeyStatus::Active, None), hasher.hash(s.expose()), [stale]);
        assert!(index.authenticate(&hasher, s.expose(), Timestamp::from_unix_millis(10)).is_ok());
        assert!(index.remove(&KeyId::new("key_1")).is_some());
        assert_eq!(index, KeyIndex::new());
    }

    #[test]
    fn the_allowlist_is_enforced() {
        let vk = key(KeyStatus::Active, None);
        assert!(vk.check_model("gpt-4o-mini").is_ok());
        assert_eq!(vk.check_model("claude-3").err(), Some(AuthError::ModelNotAllowed("claude-3".into())));
        assert_eq!(AuthError::ModelNotAllowed(String::new()).code(), ErrorCode::Forbidden);
        assert_eq!(AuthError::Unknown.code(), ErrorCode::Unauthenticated);
    }
}
