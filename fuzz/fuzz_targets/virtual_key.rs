//! Fuzzes the virtual-key format parser (`parse_presented`), the stored hash's hex form
//! (`KeyHash::from_hex`) and hashing of a presented key (`KeyHasher`).
//!
//! Input: `[position] [replacement] ++ presented text`.
//!
//! Invariants: no panic; a key the parser accepts has the prefix, the exact length and
//! only base62 after the prefix; every single-character change to a well-formed key is
//! refused (the CRC32 checksum catches it); a parsed hash prints back as the same hex;
//! hashing is deterministic and domain-separated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_keys::{KEY_LEN, KEY_PREFIX, KeyHash, KeyHasher, Pepper, parse_presented};

/// A well-formed key (its checksum is right), made for these tests only.
const VALID: &str = "tg_FuzzSeedKey0123456789abcdefghijklmnopqrstuv303PPz";

fuzz_target!(|data: &[u8]| {
    let [pos, repl, rest @ ..] = data else { return };
    let presented = String::from_utf8_lossy(rest);

    if parse_presented(&presented).is_ok() {
        assert!(presented.starts_with(KEY_PREFIX));
        assert_eq!(presented.len(), KEY_LEN);
        assert!(presented.as_bytes()[KEY_PREFIX.len()..].iter().all(u8::is_ascii_alphanumeric));
    }

    // One character of a well-formed key changed: always refused.
    assert_eq!(parse_presented(VALID), Ok(VALID));
    let mut typo = VALID.as_bytes().to_vec();
    let i = usize::from(*pos) % typo.len();
    if typo[i] != *repl {
        typo[i] = *repl;
        let typo = String::from_utf8_lossy(&typo);
        assert!(parse_presented(&typo).is_err(), "a one-character typo was accepted: {typo:?}");
    }

    if let Ok(h) = KeyHash::from_hex(&presented) {
        assert_eq!(h.to_hex(), presented.to_ascii_lowercase());
    }

    let hasher = KeyHasher::new(&Pepper::new([*pos; 32]));
    let a = hasher.hash(&presented);
    assert!(a == hasher.hash(&presented), "hashing is not deterministic");
    assert!(a != hasher.hash_in_domain(b"admin-token", &presented), "domains are not separated");
});
