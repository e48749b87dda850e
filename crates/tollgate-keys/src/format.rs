//! The secret formats: a virtual key is `tg_` + 43 base62 secret characters + 6 base62
//! checksum characters; a control-plane admin token is `tga_` + 43 base62 characters.
//! Both are minted here, by one generator ([`SecretFormat`]).

use rand::Rng;
use std::fmt;

/// Every virtual key starts with this, so secret scanners can recognise leaked keys.
pub const KEY_PREFIX: &str = "tg_";
/// Every control-plane admin token starts with this.
pub const ADMIN_TOKEN_PREFIX: &str = "tga_";
/// Secret characters: 43 base62 characters carry 43 × log2(62) ≈ 256.03 bits.
const SECRET_LEN: usize = 43;
/// Checksum characters: CRC32 in base62 (62^6 > 2^32).
const CHECKSUM_LEN: usize = 6;
/// Total length of a well-formed key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + SECRET_LEN + CHECKSUM_LEN;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented string is not a well-formed key. Never carries the string itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Missing the `tg_` prefix.
    #[error("key does not start with {KEY_PREFIX}")]
    Prefix,
    /// Wrong total length.
    #[error("key has the wrong length")]
    Length,
    /// A character outside base62.
    #[error("key contains characters outside base62")]
    Alphabet,
    /// The checksum does not match: a typo or a truncated key.
    #[error("key checksum does not match")]
    Checksum,
}

/// A full virtual key secret. Shown once at mint or rotation, never logged: `Debug` and
/// `Display` print only the display hint.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret(String);

impl KeySecret {
    /// The secret text, for the one response that returns it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short hint safe to store and show (`tg_…a1b2`): the prefix and the last four
    /// characters, which are checksum characters and reveal nothing of the secret.
    pub fn hint(&self) -> String {
        hint_of(&self.0)
    }
}

/// The display hint of a key string.
pub(crate) fn hint_of(key: &str) -> String {
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{KEY_PREFIX}…{tail}")
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySecret({})", self.hint())
    }
}

impl fmt::Display for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hint())
    }
}

/// A secret format: a fixed prefix (so secret scanners recognise a leak), 43 base62
/// characters of secret (≥256 bits), and, for virtual keys, a CRC32 checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretFormat {
    prefix: &'static str,
    checksum: bool,
}

impl SecretFormat {
    /// Virtual keys: `tg_`, secret, checksum.
    pub const KEY: SecretFormat = SecretFormat { prefix: KEY_PREFIX, checksum: true };
    /// Admin tokens: `tga_` and the secret, no checksum: the text tokens have always had,
    /// which their stored hashes are of.
    pub const ADMIN_TOKEN: SecretFormat = SecretFormat { prefix: ADMIN_TOKEN_PREFIX, checksum: false };

    /// The fixed prefix.
    pub fn prefix(self) -> &'static str {
        self.prefix
    }

    /// Mints a fresh secret in this format from the operating system's CSPRNG (via
    /// `rand`'s thread RNG, a ChaCha-based generator seeded from the OS).
    pub fn mint(self) -> String {
        let mut rng = rand::rng();
        let mut s = String::with_capacity(self.prefix.len() + SECRET_LEN + CHECKSUM_LEN);
        s.push_str(self.prefix);
        for _ in 0..SECRET_LEN {
            // `random_range` is uniform (rejection sampling), so every character carries
            // exactly log2(62) bits.
            s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
        }
        if self.checksum {
            let sum = checksum(s.as_bytes());
            s.push_str(&sum);
        }
        s
    }
}

/// Mints a fresh virtual key ([`SecretFormat::KEY`]).
pub fn mint_secret() -> KeySecret {
    KeySecret(SecretFormat::KEY.mint())
}

fn checksum(prefix_and_secret: &[u8]) -> String {
    let mut n = crc32fast::hash(prefix_and_secret);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// Checks the shape of a presented key (prefix, length, alphabet, checksum) without
/// hashing or looking it up. Returns the same string, now known to be well formed.
pub fn parse_presented(presented: &str) -> Result<&str, KeyFormatError> {
    let bytes = presented.as_bytes();
    if !presented.starts_with(KEY_PREFIX) {
        return Err(KeyFormatError::Prefix);
    }
    if bytes.len() != KEY_LEN {
        return Err(KeyFormatError::Length);
    }
    if !bytes[KEY_PREFIX.len()..].iter().all(u8::is_ascii_alphanumeric) {
        return Err(KeyFormatError::Alphabet);
    }
    let (body, sum) = bytes.split_at(KEY_LEN - CHECKSUM_LEN);
    if checksum(body).as_bytes() != sum {
        return Err(KeyFormatError::Checksum);
    }
    Ok(presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_are_the_prefix_and_43_base62_characters() {
        let t = SecretFormat::ADMIN_TOKEN.mint();
        assert!(t.starts_with(ADMIN_TOKEN_PREFIX), "{t}");
        let body = &t[ADMIN_TOKEN_PREFIX.len()..];
        assert_eq!(body.len(), SECRET_LEN);
        assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(t, SecretFormat::ADMIN_TOKEN.mint());
    }

    #[test]
    fn minted_keys_parse_and_are_distinct() {
        let a = mint_secret();
        let b = mint_secret();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), KEY_LEN);
        assert_eq!(parse_presented(a.expose()), Ok(a.expose()));
    }

    #[test]
    fn a_single_typo_is_caught_by_the_checksum() {
        let k = mint_secret();
        let mut chars: Vec<char> = k.expose().chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(parse_presented(&typo), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn malformed_keys_are_refused_with_the_reason() {
        let k = mint_secret();
        assert_eq!(parse_presented("sk-abc"), Err(KeyFormatError::Prefix));
        assert_eq!(parse_presented(&k.expose()[..KEY_LEN - 1]), Err(KeyFormatError::Length));
        let bad = format!("{}!{}", &k.expose()[..10], &k.expose()[11..]);
        assert_eq!(parse_presented(&bad), Err(KeyFormatError::Alphabet));
        // multi-byte characters must not panic on slicing
        assert!(parse_presented("tg_ééééééééééééééééééééééééééé").is_err());
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let k = mint_secret();
        let secret_part = &k.expose()[3..40];
        assert!(!format!("{k:?}").contains(secret_part));
        assert!(!format!("{k}").contains(secret_part));
        assert!(k.hint().starts_with("tg_…"));
    }
}
