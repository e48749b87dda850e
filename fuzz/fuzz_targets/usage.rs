//! Fuzzes usage extraction from a complete response body of every dialect (`usage_of`).
//!
//! Invariants: no panic; any usage it believes passes the sanity checks (no count above
//! `MAX_REQUEST_TOKENS`, every part within its whole), so nothing implausible is charged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::DIALECTS;
use tollgate_providers::{MAX_REQUEST_TOKENS, usage_of};

fuzz_target!(|data: &[u8]| {
    for d in DIALECTS {
        match usage_of(d, data) {
            Ok(Some(u)) => {
                assert_eq!(u.checked(), Ok(u), "{d:?}: implausible usage believed");
                assert!(u.input_tokens <= MAX_REQUEST_TOKENS && u.output_tokens <= MAX_REQUEST_TOKENS);
                assert!(u.cached_input_tokens.saturating_add(u.cache_write_tokens) <= u.input_tokens);
                assert!(u.reasoning_tokens <= u.output_tokens);
            }
            Ok(None) => {}
            Err(insane) => {
                assert!(insane.value.len() <= 256, "{d:?}: an error rendering {} bytes long", insane.value.len())
            }
        }
    }
});
