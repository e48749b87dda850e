//! Rotation grace: the rotated-out secrets of a key that still authenticate, each until
//! its own end.
//!
//! Every rotation with a grace period adds the secret it replaces, with its own end, to
//! the key's list; the earlier ones keep theirs. So two rotations inside one grace keep
//! both old secrets working, each until the end it was promised. The rules, applied by
//! [`after_rotation`] and nowhere else:
//!
//! - a rotation with grace 0 kills the secret it replaces at once, but leaves the earlier
//!   rotated-out secrets until their ends (a grace promised is kept);
//! - secrets whose grace has ended are pruned at the next rotation (until then they sit in
//!   the list, refused by the index because their end has passed);
//! - at most [`MAX_GRACE_SECRETS`] are kept: beyond that the ones rotated out earliest are
//!   dropped first, whatever their end;
//! - revocation is not a rotation: a revoked key is refused under every secret at once.

use crate::KeyHash;
use tollgate_core::Timestamp;

/// Most rotated-out secrets one key keeps alive at once. A rotation beyond it drops the
/// secret rotated out earliest.
pub const MAX_GRACE_SECRETS: usize = 8;

/// A rotated-out secret (by its hash) that authenticates until `valid_until` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraceSecret {
    /// The keyed hash of the rotated-out secret.
    pub hash: KeyHash,
    /// The first instant at which it no longer authenticates.
    pub valid_until: Timestamp,
}

/// The grace list after a rotation at `now` that replaces the secret hashed `current`
/// with a new one, given the list `earlier` (oldest rotation first) and `grace_ms`.
///
/// Keeps the earlier secrets still within their grace, in rotation order, appends
/// `current` until `now + grace_ms` when `grace_ms > 0`, and caps the result at
/// [`MAX_GRACE_SECRETS`] by dropping from the front (earliest rotated out).
pub fn after_rotation(
    earlier: impl IntoIterator<Item = GraceSecret>,
    current: KeyHash,
    now: Timestamp,
    grace_ms: i64,
) -> Vec<GraceSecret> {
    let mut list: Vec<GraceSecret> = earlier.into_iter().filter(|g| g.valid_until > now && g.hash != current).collect();
    if grace_ms > 0 {
        list.push(GraceSecret { hash: current, valid_until: now.plus_millis(grace_ms) });
    }
    let excess = list.len().saturating_sub(MAX_GRACE_SECRETS);
    list.drain(..excess);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> KeyHash {
        KeyHash([n; 32])
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn ends(list: &[GraceSecret]) -> Vec<(u8, i64)> {
        list.iter().map(|g| (g.hash.0[0], g.valid_until.unix_millis())).collect()
    }

    #[test]
    fn each_rotation_adds_the_replaced_secret_with_its_own_end() {
        let first = after_rotation([], h(1), at(1_000), 2_000);
        let second = after_rotation(first, h(2), at(2_000), 4_000);
        assert_eq!(ends(&second), [(1, 3_000), (2, 6_000)], "both old secrets, each with its own end");
    }

    #[test]
    fn grace_zero_kills_the_current_secret_but_keeps_earlier_promises() {
        let first = after_rotation([], h(1), at(1_000), 5_000);
        let second = after_rotation(first, h(2), at(2_000), 0);
        assert_eq!(ends(&second), [(1, 6_000)]);
    }

    #[test]
    fn expired_secrets_are_pruned_at_the_next_rotation() {
        let first = after_rotation([], h(1), at(1_000), 1_000);
        let second = after_rotation(first, h(2), at(2_000), 1_000);
        assert_eq!(ends(&second), [(2, 3_000)], "the first ended exactly at 2 000");
    }

    #[test]
    fn beyond_the_cap_the_earliest_rotated_out_is_dropped_first() {
        let mut list = Vec::new();
        // Later rotations get shorter graces: the drop is by rotation order, not by end.
        for n in 1..=10u8 {
            // Ten rotations, two more than the cap.
            list = after_rotation(list, h(n), at(i64::from(n)), 1_000_000 - i64::from(n));
        }
        assert_eq!(list.len(), MAX_GRACE_SECRETS);
        assert_eq!(list.first().map(|g| g.hash), Some(h(3)), "1 and 2 dropped");
        assert_eq!(list.last().map(|g| g.hash), Some(h(10)));
    }
}
