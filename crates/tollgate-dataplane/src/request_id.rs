//! A request's two identities: ours, which keys the ledger, and the caller's.
//!
//! Ours is generated for every request and never taken from outside: a ULID-style id
//! (`req_` + 26 Crockford base-32 characters: 48 bits of milliseconds, then 80 bits from
//! the operating system's CSPRNG-seeded generator), so ids sort by time, no caller can
//! predict the next one, and no caller can make another request's ledger entry collide
//! with its own. The caller's `x-request-id` is kept, when it is short and printable, for
//! correlation only: echoed, logged and stored as `client_request_id`, deduplicating
//! nothing.

use http::{HeaderMap, HeaderValue};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest caller request id kept; longer or unprintable ones are ignored.
pub(crate) const MAX_CLIENT_REQUEST_ID: usize = 128;

/// Response header carrying our id.
pub(crate) const TOLLGATE_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-tollgate-request-id");

/// Response header echoing the caller's id (ours when the caller sent none).
pub(crate) const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// A request's ids.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    /// Generated here: the ledger's idempotency key.
    pub(crate) ours: HeaderValue,
    /// The caller's `x-request-id`, when sane.
    pub(crate) client: Option<HeaderValue>,
}

impl RequestIds {
    /// A fresh id of ours, and the caller's from `headers` when it is non-empty, at most
    /// [`MAX_CLIENT_REQUEST_ID`] bytes and printable ASCII.
    pub(crate) fn from_headers(headers: &HeaderMap) -> RequestIds {
        let client = headers
            .get(REQUEST_ID)
            .filter(|v| {
                !v.is_empty() && v.len() <= MAX_CLIENT_REQUEST_ID && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
            })
            .cloned();
        RequestIds { ours: generate(), client }
    }

    /// Ours as text (always ASCII).
    pub(crate) fn ours_str(&self) -> &str {
        self.ours.to_str().unwrap_or("req_unknown")
    }

    /// The caller's as text, if it sent one.
    pub(crate) fn client_str(&self) -> Option<&str> {
        self.client.as_ref().and_then(|v| v.to_str().ok())
    }

    /// Puts both on a response: `x-tollgate-request-id` (ours) and `x-request-id` (the
    /// caller's, or ours when it sent none).
    pub(crate) fn write(self, headers: &mut HeaderMap) {
        headers.insert(REQUEST_ID, self.client.unwrap_or_else(|| self.ours.clone()));
        headers.insert(TOLLGATE_REQUEST_ID, self.ours);
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `req_` + a ULID: 48 bits of Unix milliseconds, 80 random bits, 26 characters.
fn generate() -> HeaderValue {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()) & ((1 << 48) - 1);
    let random: u128 = rand::random::<u128>() & ((1 << 80) - 1);
    let mut value = (ms << 80) | random;
    let mut out = [0u8; 30];
    out[..4].copy_from_slice(b"req_");
    for slot in out[4..].iter_mut().rev() {
        *slot = CROCKFORD[(value & 31) as usize];
        value >>= 5;
    }
    // Every byte is from the ASCII alphabet above: always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("req_unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ours_is_fresh_every_time_even_when_the_caller_repeats_its_id() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        let ids: HashSet<_> = (0..10_000)
            .map(|_| {
                let ids = RequestIds::from_headers(&h);
                assert_eq!(ids.client_str(), Some("abc-123"));
                ids.ours_str().to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert!(id.starts_with("req_") && id.len() == 30, "{id}");
            assert!(id[4..].bytes().all(|b| CROCKFORD.contains(&b)), "{id}");
        }
    }

    #[test]
    fn ids_sort_by_time_and_the_random_part_is_not_a_counter() {
        let a = generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = generate();
        assert!(a.as_bytes() < b.as_bytes(), "{a:?} < {b:?}");
        // Two ids of the same millisecond differ in far more than their last character.
        let (x, y) = (generate(), generate());
        let differing = x.as_bytes()[14..].iter().zip(&y.as_bytes()[14..]).filter(|(p, q)| p != q).count();
        assert!(differing > 4, "{x:?} vs {y:?}");
    }

    #[test]
    fn unusable_caller_ids_are_dropped_and_ours_is_echoed_instead() {
        for bad in ["has space", "", &"x".repeat(129)] {
            let mut h = HeaderMap::new();
            h.insert(REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let ids = RequestIds::from_headers(&h);
            assert_eq!(ids.client, None, "{bad:?}");
            let ours = ids.ours.clone();
            let mut out = HeaderMap::new();
            ids.write(&mut out);
            assert_eq!(out.get(REQUEST_ID), Some(&ours));
            assert_eq!(out.get(TOLLGATE_REQUEST_ID), Some(&ours));
        }
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("caller-1"));
        let ids = RequestIds::from_headers(&h);
        let ours = ids.ours.clone();
        let mut out = HeaderMap::new();
        ids.write(&mut out);
        assert_eq!(out.get(REQUEST_ID).unwrap(), "caller-1");
        assert_eq!(out.get(TOLLGATE_REQUEST_ID), Some(&ours));
    }
}
