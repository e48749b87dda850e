//! The control plane's own secrets: the master key that encrypts provider credentials
//! at rest, the key pepper, and the bootstrap admin token.

use crate::ControlError;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;
use tollgate_keys::{KeyHasher, Pepper, SecretFormat};

/// AES-256-GCM key for provider credentials. `Debug` shows only the fingerprint.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    id: [u8; 8],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint())
    }
}

/// The printed form of a master key id: 16 lower-case hex digits.
pub fn fingerprint_of(key_id: i64) -> String {
    key_id.to_be_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

const CIPHERTEXT_VERSION: &str = "v1:";

impl MasterKey {
    /// From 32 raw bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        MasterKey { cipher: Aes256Gcm::new(bytes.into()), id }
    }

    /// The key's id: the first 8 bytes of SHA-256 of the key, as stored in the database
    /// next to the credentials it encrypts. Identifies the key without revealing it.
    pub fn key_id(&self) -> i64 {
        i64::from_be_bytes(self.id)
    }

    /// [`MasterKey::key_id`] as 16 hex digits, the form shown to operators.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(self.key_id())
    }

    /// From base64 text (the `TOLLGATE_MASTER_KEY` format).
    pub fn from_base64(text: &str) -> Result<Self, ControlError> {
        MasterKey::from_base64_named(text, "TOLLGATE_MASTER_KEY")
    }

    /// From base64 text; errors name it `what` (a variable or file name).
    pub fn from_base64_named(text: &str, what: &str) -> Result<Self, ControlError> {
        Ok(MasterKey::new(&decode32(text, what)?))
    }

    /// Encrypts with a fresh random nonce: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn encrypt(&self, plaintext: &str) -> Result<String, ControlError> {
        let nonce_bytes: [u8; 12] = rand::random();
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plaintext.as_bytes())
            .map_err(|_| ControlError::Internal("encryption failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{CIPHERTEXT_VERSION}{}", B64.encode(out)))
    }

    /// Decrypts what [`MasterKey::encrypt`] produced. Fails when the master key is not the
    /// one the value was encrypted under.
    pub fn decrypt(&self, stored: &str) -> Result<String, ControlError> {
        let bad = || ControlError::Internal("stored credential cannot be decrypted with this master key".into());
        let body = stored.strip_prefix(CIPHERTEXT_VERSION).ok_or_else(bad)?;
        let raw = B64.decode(body).map_err(|_| bad())?;
        if raw.len() < 12 + 16 {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self.cipher.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| bad())?;
        String::from_utf8(pt).map_err(|_| bad())
    }
}

fn decode32(text: &str, what: &str) -> Result<[u8; 32], ControlError> {
    let raw = B64.decode(text.trim()).map_err(|_| ControlError::Config(format!("{what} is not valid base64")))?;
    raw.try_into().map_err(|_| ControlError::Config(format!("{what} must decode to exactly 32 bytes")))
}

/// SHA-256 of an admin token: the only form in which tokens are kept.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What an admin token's keyed hash is computed over, before the token: keeps it apart
/// from every other HMAC under the same pepper (virtual-key hashes).
const ADMIN_TOKEN_DOMAIN: &[u8] = b"tollgate admin token v1\0";

impl Secrets {
    /// The keyed hash (hex HMAC-SHA256 under the pepper) under which an admin token
    /// minted through the API is stored: without the pepper a leaked table cannot even
    /// be checked against a guess.
    pub fn admin_token_hash(&self, token: &str) -> String {
        KeyHasher::new(&self.pepper).hash_in_domain(ADMIN_TOKEN_DOMAIN, token).to_hex()
    }
}

/// Compares two token hashes in constant time.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Generates an admin token: `tga_` + 43 base62 characters (≥256 bits), minted by
/// `tollgate-keys` like every other secret.
pub fn generate_admin_token() -> String {
    SecretFormat::ADMIN_TOKEN.mint()
}

/// The secrets the control plane runs with.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Encrypts provider credentials at rest.
    pub master_key: MasterKey,
    /// HMAC key for virtual-key hashes.
    pub pepper: Pepper,
    /// SHA-256 of the bootstrap admin token.
    pub bootstrap_token_hash: [u8; 32],
    /// The bootstrap token when it was generated just now (to be shown once).
    pub generated_admin_token: Option<String>,
}

/// Where secrets come from: explicit values (environment) win; otherwise files in the
/// data directory, generated with mode 0600 on first start.
#[derive(Clone, Default)]
pub struct SecretSources {
    /// `TOLLGATE_MASTER_KEY` (base64 of 32 bytes).
    pub master_key: Option<String>,
    /// `TOLLGATE_KEY_PEPPER` (base64 of 32 bytes).
    pub key_pepper: Option<String>,
    /// `TOLLGATE_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for SecretSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSources(<redacted>)")
    }
}

impl Secrets {
    /// Loads or creates the secrets for a data directory.
    pub fn load(data_dir: &Path, sources: &SecretSources) -> Result<Secrets, ControlError> {
        create_data_dir(data_dir)
            .map_err(|e| ControlError::Config(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let master_key = match &sources.master_key {
            Some(v) => MasterKey::from_base64(v)?,
            None => MasterKey::from_base64_named(
                &read_or_create(&data_dir.join(MASTER_KEY_FILE), random_b64)?,
                "master.key",
            )?,
        };
        let pepper = match &sources.key_pepper {
            Some(v) => Pepper::new(decode32(v, "TOLLGATE_KEY_PEPPER")?),
            None => Pepper::new(decode32(&read_or_create(&data_dir.join("key_pepper"), random_b64)?, "key_pepper")?),
        };
        let (token, generated) = match &sources.admin_token {
            Some(t) if t.trim().len() >= 16 => (t.trim().to_owned(), None),
            Some(_) => return Err(ControlError::Config("TOLLGATE_ADMIN_TOKEN must be at least 16 characters".into())),
            None => {
                let path = data_dir.join("admin_token");
                let existed = path.exists();
                let t = read_or_create(&path, generate_admin_token)?;
                let generated = (!existed).then(|| t.clone());
                (t, generated)
            }
        };
        Ok(Secrets { master_key, pepper, bootstrap_token_hash: token_hash(&token), generated_admin_token: generated })
    }
}

/// Creates the data directory, and any missing parent, private to its owner (mode
/// 0700): it holds the generated secrets, the SQLite database and the ledger spool. A
/// directory that already exists keeps its mode. Binaries call this instead of
/// `create_dir_all`; [`Secrets::load`] (and so `ControlPlane::start`) calls it too.
pub fn create_data_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// The file in a data directory that holds the generated master key.
pub const MASTER_KEY_FILE: &str = "master.key";
/// Where [`install_master_key_file`] keeps the key it replaced.
pub const PREVIOUS_MASTER_KEY_FILE: &str = "master.key.previous";

/// Whether `data_dir` holds a generated master key file.
pub fn has_master_key_file(data_dir: &Path) -> bool {
    data_dir.join(MASTER_KEY_FILE).exists()
}

/// Replaces the data directory's master key file with `new_key_b64` after a rotation
/// committed: the old file is kept as `master.key.previous`, and the new one is written
/// to a temporary file (mode 0600, synced) renamed over `master.key`, so a crash leaves
/// either the whole old key or the whole new one in place.
pub fn install_master_key_file(data_dir: &Path, new_key_b64: &str) -> Result<(), ControlError> {
    decode32(new_key_b64, "the new master key")?;
    let current = data_dir.join(MASTER_KEY_FILE);
    let previous = data_dir.join(PREVIOUS_MASTER_KEY_FILE);
    let tmp = data_dir.join("master.key.tmp");
    let old = std::fs::read_to_string(&current)
        .map_err(|e| ControlError::Config(format!("cannot read {}: {e}", current.display())))?;
    for path in [&previous, &tmp] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ControlError::Config(format!("cannot remove {}: {e}", path.display()))),
        }
    }
    read_or_create(&previous, || old.trim().to_owned())?;
    read_or_create(&tmp, || new_key_b64.trim().to_owned())?;
    std::fs::rename(&tmp, &current)
        .map_err(|e| ControlError::Config(format!("cannot move {} to {}: {e}", tmp.display(), current.display())))?;
    // The rename is durable only once the directory is synced.
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn random_b64() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, ControlError> {
    use std::io::Write;
    match std::fs::read_to_string(path) {
        Ok(s) => return Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ControlError::Config(format!("cannot read {}: {e}", path.display()))),
    }
    let value = make();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| ControlError::Config(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(value.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| ControlError::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admin tokens as they were minted and hashed before `tollgate-keys` did both: a
    /// token of that era, stored under that hash, must keep verifying.
    #[test]
    fn a_token_minted_and_hashed_the_old_way_verifies_the_new_way() {
        use hmac::{Hmac, Mac};
        use rand::Rng;
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut rng = rand::rng();
        let mut old_token = String::from("tga_");
        for _ in 0..43 {
            old_token.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
        }
        let pepper = Pepper::new([9; 32]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper.expose()).unwrap();
        mac.update(ADMIN_TOKEN_DOMAIN);
        mac.update(old_token.as_bytes());
        let old_hash: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let secrets = Secrets {
            master_key: MasterKey::new(&[7; 32]),
            pepper,
            bootstrap_token_hash: token_hash("bootstrap-token-0000"),
            generated_admin_token: None,
        };
        assert_eq!(secrets.admin_token_hash(&old_token), old_hash);
        // A pinned value, so a change to either side of the hash is caught without RNG.
        assert_eq!(secrets.admin_token_hash("tga_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"), {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[9; 32]).unwrap();
            mac.update(b"tollgate admin token v1\0");
            mac.update(b"tga_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg");
            mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
        });
        let new_token = generate_admin_token();
        assert!(new_token.starts_with("tga_") && new_token.len() == old_token.len(), "{new_token}");
    }

    #[test]
    fn credentials_round_trip_with_fresh_nonces_and_fail_under_another_key() {
        let k = MasterKey::new(&[7; 32]);
        let a = k.encrypt("sk-secret").unwrap();
        let b = k.encrypt("sk-secret").unwrap();
        assert_ne!(a, b, "nonce must be fresh per record");
        assert!(!a.contains("sk-secret"));
        assert_eq!(k.decrypt(&a).unwrap(), "sk-secret");
        assert!(MasterKey::new(&[8; 32]).decrypt(&a).is_err());
        assert!(k.decrypt("v1:AAAA").is_err());
        assert!(k.decrypt("plain").is_err());
    }

    #[test]
    fn the_fingerprint_is_the_first_eight_bytes_of_the_key_hash() {
        let k = MasterKey::new(&[7; 32]);
        let hash = Sha256::digest([7u8; 32]);
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(k.fingerprint(), hex);
        assert_eq!(fingerprint_of(k.key_id()), hex);
        assert_ne!(MasterKey::new(&[8; 32]).key_id(), k.key_id());
        assert_eq!(format!("{k:?}"), format!("MasterKey({hex})"));
    }

    #[test]
    fn installing_a_new_key_file_keeps_the_old_one_as_previous() {
        let dir = std::env::temp_dir().join(format!("tollgate-secrets-{}", rand::random::<u64>()));
        Secrets::load(&dir, &SecretSources::default()).unwrap();
        let old = std::fs::read_to_string(dir.join(MASTER_KEY_FILE)).unwrap();
        let new = random_b64();
        assert!(install_master_key_file(&dir, "short").is_err());
        install_master_key_file(&dir, &new).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(MASTER_KEY_FILE)).unwrap(), new);
        assert_eq!(std::fs::read_to_string(dir.join(PREVIOUS_MASTER_KEY_FILE)).unwrap(), old.trim());
        assert!(!dir.join("master.key.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [MASTER_KEY_FILE, PREVIOUS_MASTER_KEY_FILE] {
                let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{f}");
            }
        }
        let loaded = Secrets::load(&dir, &SecretSources::default()).unwrap();
        assert_eq!(loaded.master_key.key_id(), MasterKey::from_base64(&new).unwrap().key_id());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_are_generated_once_with_private_permissions_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("tollgate-secrets-{}", rand::random::<u64>()));
        let first = Secrets::load(&dir, &SecretSources::default()).unwrap();
        let token = first.generated_admin_token.clone().unwrap();
        assert!(token.starts_with("tga_"));
        let second = Secrets::load(&dir, &SecretSources::default()).unwrap();
        assert!(second.generated_admin_token.is_none());
        assert_eq!(first.bootstrap_token_hash, second.bootstrap_token_hash);
        assert_eq!(first.pepper.expose(), second.pepper.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["admin_token", "master.key", "key_pepper"] {
                let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{f}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_environment_values_are_refused_with_the_variable_name() {
        let dir = std::env::temp_dir().join(format!("tollgate-secrets-{}", rand::random::<u64>()));
        let src = SecretSources { master_key: Some("not base64!".into()), ..Default::default() };
        let err = Secrets::load(&dir, &src).unwrap_err().to_string();
        assert!(err.contains("TOLLGATE_MASTER_KEY"), "{err}");
        let src = SecretSources { admin_token: Some("short".into()), ..Default::default() };
        assert!(Secrets::load(&dir, &src).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
