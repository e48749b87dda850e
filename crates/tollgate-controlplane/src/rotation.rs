//! Master-key identity and rotation.
//!
//! The database records the id of the master key ([`MasterKey::key_id`]) every provider
//! credential is encrypted under, so a control plane started with another key is refused
//! at start-up, naming the fingerprint it needs, instead of failing on first use.
//! [`rotate_master_key`] moves every credential to a new key in one store transaction:
//! all rows or none, each with a fresh nonce.

use crate::ControlError;
use crate::secrets::{MASTER_KEY_FILE, MasterKey, fingerprint_of, install_master_key_file};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tollgate_store::Store;

/// The audit actor of a rotation.
pub const ROTATION_ACTOR: &str = "master-key-rotation";

/// What a rotation did. Holds fingerprints only, never key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Provider credentials re-encrypted under the new key.
    pub reencrypted: u64,
    /// Fingerprint of the key the credentials were encrypted under.
    pub old_fingerprint: String,
    /// Fingerprint of the key they are encrypted under now.
    pub new_fingerprint: String,
    /// The configuration revision the rotation committed.
    pub revision: i64,
    /// Whether the audit event was written: always true, since the rotation and its
    /// event commit in one transaction or not at all.
    pub audited: bool,
    /// The data directory's key file, when the rotation replaced it.
    pub key_file: Option<PathBuf>,
}

/// Where [`rotate_master_key_at`] takes its keys from. `Debug` is redacted.
#[derive(Clone)]
pub struct RotationKeys {
    /// The key in use (`TOLLGATE_MASTER_KEY`), base64; `None` reads the data directory's
    /// `master.key` and replaces that file after the rotation commits.
    pub current: Option<String>,
    /// The new key (`TOLLGATE_NEW_MASTER_KEY`), base64 of 32 bytes.
    pub new: String,
}

impl std::fmt::Debug for RotationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotationKeys(<redacted>)")
    }
}

/// The `tollgate-control --rotate-master-key` operation: connects to `database_url`,
/// rotates with [`rotate_master_key`], and when the key in use came from
/// `data_dir/master.key` (standalone data directories), installs the new key there once
/// the database transaction has committed, keeping the old one as `master.key.previous`.
pub async fn rotate_master_key_at(
    database_url: &str,
    data_dir: &Path,
    keys: &RotationKeys,
) -> Result<RotationReport, ControlError> {
    let new = MasterKey::from_base64_named(&keys.new, "TOLLGATE_NEW_MASTER_KEY")?;
    let (old, from_file) = match &keys.current {
        Some(text) => (MasterKey::from_base64(text)?, false),
        None => {
            let path = data_dir.join(MASTER_KEY_FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ControlError::Config(format!(
                    "no current master key: TOLLGATE_MASTER_KEY is not set and {} cannot be read ({e})",
                    path.display()
                ))
            })?;
            (MasterKey::from_base64_named(&text, "master.key")?, true)
        }
    };
    let store = Store::connect(database_url).await?;
    let mut report = rotate_master_key(&store, &old, &new).await?;
    if from_file {
        install_master_key_file(data_dir, &keys.new).map_err(|e| {
            ControlError::Config(format!(
                "the credentials are now encrypted under the new master key (fingerprint {}), but {} could not be \
                 replaced: {e}; write the value of TOLLGATE_NEW_MASTER_KEY into it",
                report.new_fingerprint,
                data_dir.join(MASTER_KEY_FILE).display()
            ))
        })?;
        report.key_file = Some(data_dir.join(MASTER_KEY_FILE));
    }
    Ok(report)
}

/// Checks that `key` is the master key the stored credentials are encrypted under.
///
/// A database without a recorded key id (created before ids existed) adopts `key` once
/// it has decrypted a stored credential, or straight away when there is none.
pub(crate) async fn check_master_key(store: &Store, key: &MasterKey) -> Result<(), ControlError> {
    let recorded = match store.master_key_id().await? {
        Some(id) => id,
        None => {
            if let Some(p) = store.list_providers().await?.first() {
                key.decrypt(&p.api_key_ciphertext).map_err(|_| {
                    ControlError::Config(format!(
                        "the master key in use (fingerprint {}) cannot decrypt the stored credential of provider {:?}; \
                         start with the key it was encrypted under",
                        key.fingerprint(),
                        p.name
                    ))
                })?;
            }
            store.adopt_master_key_id(key.key_id()).await?
        }
    };
    if recorded != key.key_id() {
        return Err(ControlError::MasterKeyMismatch { expected: fingerprint_of(recorded), given: key.fingerprint() });
    }
    Ok(())
}

/// Re-encrypts every provider credential from `old` to `new` in one store transaction,
/// records `new` as the key in use, and writes an audit event (actor
/// `master-key-rotation`, target kind `secrets`) in that same transaction: if the event
/// cannot be stored, nothing is rotated.
///
/// Refused, with nothing changed, when `old` is not the key in use (by recorded id, or on
/// a database without one, when any credential does not decrypt under it) or when `new`
/// is `old`. Every control plane should be stopped first: one still running with `old`
/// refuses to add credentials or publish snapshots without them, until restarted with
/// `new`.
pub async fn rotate_master_key(
    store: &Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<RotationReport, ControlError> {
    if old.key_id() == new.key_id() {
        return Err(ControlError::Config(format!(
            "the new master key (fingerprint {}) is the one in use; nothing to rotate",
            new.fingerprint()
        )));
    }
    let check = |recorded: Option<i64>| match recorded {
        Some(id) if id != old.key_id() => {
            Err(ControlError::MasterKeyMismatch { expected: fingerprint_of(id), given: old.fingerprint() })
        }
        _ => Ok(()),
    };
    let reencrypt = |p: &tollgate_store::ProviderRecord| {
        let plain = old.decrypt(&p.api_key_ciphertext).map_err(|_| {
            ControlError::Config(format!(
                "the credential of provider {:?} cannot be decrypted with the current master key (fingerprint {}); \
                 nothing was changed",
                p.name,
                old.fingerprint()
            ))
        })?;
        new.encrypt(&plain)
    };
    let txn = store.begin().await?;
    let (reencrypted, revision) = txn.store().reencrypt_provider_credentials(new.key_id(), check, reencrypt).await?;
    let report = RotationReport {
        reencrypted,
        old_fingerprint: old.fingerprint(),
        new_fingerprint: new.fingerprint(),
        revision,
        audited: true,
        key_file: None,
    };
    let metadata = serde_json::json!({
        "reencrypted": reencrypted,
        "old_fingerprint": report.old_fingerprint,
        "new_fingerprint": report.new_fingerprint,
        "revision": revision,
    });
    crate::service::append_audit(txn.store(), ROTATION_ACTOR, "master_key.rotate", "secrets", "master_key", metadata)
        .await?;
    txn.commit().await?;
    Ok(report)
}
