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
use tollgate_keys::Pepper;

/// AES-256-GCM key for provider credentials. `Debug` is redacted.
#[derive(Clone)]
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

const CIPHERTEXT_VERSION: &str = "v1:";

impl MasterKey {
    /// From 32 raw bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        MasterKey(Aes256Gcm::new(bytes.into()))
    }

    /// From base64 text (the `TOLLGATE_MASTER_KEY` format).
    pub fn from_base64(text: &str) -> Result<Self, ControlError> {
        Ok(MasterKey::new(&decode32(text, "TOLLGATE_MASTER_KEY")?))
    }

    /// Encrypts with a fresh random nonce: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn encrypt(&self, plaintext: &str) -> Result<String, ControlError> {
        let nonce_bytes: [u8; 12] = rand::random();
        let ct = self
            .0
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
        let pt = self.0.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| bad())?;
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
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.pepper.expose()) else {
            // HMAC takes a key of any length; this arm is unreachable.
            return String::new();
        };
        mac.update(ADMIN_TOKEN_DOMAIN);
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Compares two token hashes in constant time.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Generates an admin token: `tga_` + 43 base62 characters (≥256 bits).
pub fn generate_admin_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut s = String::from("tga_");
    for _ in 0..43 {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
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
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ControlError::Config(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let master_key = match &sources.master_key {
            Some(v) => MasterKey::from_base64(v)?,
            None => {
                MasterKey::new(&decode32(&read_or_create(&data_dir.join("master.key"), random_b64)?, "master.key")?)
            }
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
