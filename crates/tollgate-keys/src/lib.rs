//! tollgate-keys: virtual keys — their format, minting, hashing, lookup and policy.
//!
//! Owns the key format (`tg_` + 43 base62 characters of secret (≥256 bits) + a 6
//! character CRC32 checksum), minting, the keyed hash (HMAC-SHA256 under a server pepper)
//! that is the only thing ever stored, the in-memory [`KeyIndex`] the data plane probes
//! once per request, rotation grace ([`after_rotation`]: every rotated-out secret keeps its own end),
//! the per-key policy checks (status, expiry, model allowlist), and
//! the shape of key tags ([`validate_tags`]), and what an allowlist and metadata may
//! hold ([`validate_allowlist`], [`validate_metadata`]).
//!
//! Does not own: storage (the store crate), rate limits and budgets (the budgets crate),
//! or how keys reach the gateway (the snapshot in the data plane).
//!
//! Invariants: a secret is only ever held in a [`KeySecret`], whose `Debug` and `Display`
//! never print it; malformed keys are refused by [`parse_presented`] before any hashing or
//! lookup; lookups are by keyed hash, never by secret.
#![forbid(unsafe_code)]

mod allowlist;
mod format;
mod grace;
mod hash;
mod index;
mod limits;
mod metadata;
mod tags;

pub use allowlist::ModelAllowlist;
pub use format::{
    ADMIN_TOKEN_PREFIX, KEY_LEN, KEY_PREFIX, KeyFormatError, KeySecret, SecretFormat, mint_secret, parse_presented,
};
pub use grace::{GraceSecret, MAX_GRACE_SECRETS, after_rotation};
pub use hash::{KeyHash, KeyHashParseError, KeyHasher, Pepper};
pub use index::{AuthError, KeyIndex, KeyStatus, RateLimits, VirtualKey};
pub use limits::{
    AllowlistError, MAX_METADATA_ENTRIES, MAX_METADATA_VALUE, MAX_PATTERNS, MetadataError, validate_allowlist,
    validate_metadata,
};
pub use metadata::KeyMetadata;
pub use tags::{MAX_TAG_LEN, MAX_TAGS, TagError, validate_tags};
