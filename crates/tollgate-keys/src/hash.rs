//! The keyed hash under which keys are stored and looked up.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The server pepper: the HMAC key. Held by the control plane (which stores hashes) and
/// every gateway (which hashes presented keys). `Debug` never prints it.
#[derive(Clone)]
pub struct Pepper([u8; 32]);

impl Pepper {
    /// Wraps 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Pepper(bytes)
    }

    /// The raw bytes, for handing to a gateway over an authenticated channel.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

/// HMAC-SHA256 of a key under the pepper. Uniformly distributed, so the index may hash
/// it trivially.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

/// A stored hash that is not 64 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("key hash is not 64 hex characters")]
pub struct KeyHashParseError;

impl KeyHash {
    /// Lower-case hex, the stored form.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }

    /// Parses the stored hex form.
    pub fn from_hex(hex: &str) -> Result<Self, KeyHashParseError> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(KeyHashParseError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(KeyHashParseError)?;
            let lo = hex_val(pair[1]).ok_or(KeyHashParseError)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(KeyHash(out))
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..12])
    }
}

/// Hashes keys under one pepper. The HMAC key schedule is computed once; each hash clones
/// the prepared state.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    /// Prepares a hasher for `pepper`.
    pub fn new(pepper: &Pepper) -> Self {
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes.
        let mac = match <Hmac<Sha256> as Mac>::new_from_slice(&pepper.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        KeyHasher { mac }
    }

    /// The keyed hash of a (well-formed) key string.
    pub fn hash(&self, key: &str) -> KeyHash {
        self.hash_in_domain(b"", key)
    }

    /// The keyed hash of `text` in `domain`: the HMAC over `domain` and then `text`, so a
    /// hash made for one kind of secret (admin tokens) can never match one made for
    /// another (virtual keys, the empty domain) under the same pepper.
    pub fn hash_in_domain(&self, domain: &[u8], text: &str) -> KeyHash {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(text.as_bytes());
        KeyHash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_the_pepper_and_round_trip_as_hex() {
        let a = KeyHasher::new(&Pepper::new([1; 32]));
        let b = KeyHasher::new(&Pepper::new([2; 32]));
        let h = a.hash("tg_x");
        assert_eq!(h, a.hash("tg_x"));
        assert_ne!(h, b.hash("tg_x"));
        assert_ne!(h, a.hash("tg_y"));
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(KeyHash::from_hex("zz"), Err(KeyHashParseError));
        assert!(!format!("{:?}", Pepper::new([7; 32])).contains('7'));
    }

    #[test]
    fn matches_a_published_hmac_sha256_vector() {
        // HMAC pads short keys with zeros, so "key" padded to 32 bytes is the key "key":
        // HMAC_SHA256("key", "The quick brown fox jumps over the lazy dog").
        let mut k = [0u8; 32];
        k[..3].copy_from_slice(b"key");
        let h = KeyHasher::new(&Pepper::new(k)).hash("The quick brown fox jumps over the lazy dog");
        assert_eq!(h.to_hex(), "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    }
}
