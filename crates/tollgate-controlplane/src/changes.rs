//! The configuration feed gateways follow: the latest published snapshot and the changes
//! that led to it.
//!
//! Each published revision's [`v1::ConfigChange`] is computed once, by diffing it with
//! the snapshot published before it by id ([`tollgate_proto::diff`]), and kept in a bounded history
//! shared by every follower ([`Feed`]). A follower ([`Subscription`]) at a revision the
//! history starts a chain from receives only the changes after it; one too far behind,
//! ahead of the control plane, or with nothing yet receives the full snapshot first.
//!
//! Invariant: the history is one unbroken chain ending at the latest snapshot — each
//! change's `from_revision` is the `revision` of the one before, the last one's
//! `revision` is the head's — so a follower that applies a chain reaches exactly the
//! head. A new key pepper breaks the chain (the history is emptied), so it only ever
//! reaches gateways in a full snapshot.

use prost::Message;
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tollgate_proto::{diff, v1};

/// How much change history a [`Feed`] keeps by default: the last this many revisions…
pub const DEFAULT_MAX_CHANGES: usize = 1024;
/// …and at most this many encoded bytes of them; a follower further behind is sent the
/// full snapshot.
pub const DEFAULT_MAX_CHANGE_BYTES: usize = 64 << 20;

/// One step that brings a follower forward: a full snapshot (replace everything) or a
/// change (patch the revision it starts from).
#[derive(Clone)]
pub enum FeedItem {
    /// The complete configuration.
    Snapshot(Arc<v1::Snapshot>),
    /// What changed from `from_revision` to `revision`.
    Change(Arc<v1::ConfigChange>),
}

impl std::fmt::Debug for FeedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The snapshot's own Debug is redacted; the revision is all a log needs.
        match self {
            FeedItem::Snapshot(s) => write!(f, "Snapshot(revision {})", s.revision),
            FeedItem::Change(c) => write!(f, "Change({} -> {})", c.from_revision, c.revision),
        }
    }
}

impl FeedItem {
    /// The revision a follower is at once it has applied this item.
    pub fn revision(&self) -> i64 {
        match self {
            FeedItem::Snapshot(s) => s.revision,
            FeedItem::Change(c) => c.revision,
        }
    }

    /// The item as a `Watch` message.
    pub fn to_response(&self) -> v1::WatchResponse {
        match self {
            FeedItem::Snapshot(s) => {
                v1::WatchResponse { revision: s.revision, snapshot: Some((**s).clone()), change: None }
            }
            FeedItem::Change(c) => {
                v1::WatchResponse { revision: c.revision, snapshot: None, change: Some((**c).clone()) }
            }
        }
    }
}

/// The latest snapshot and the unbroken chain of changes that ends at it.
struct History {
    head: Arc<v1::Snapshot>,
    changes: VecDeque<Arc<v1::ConfigChange>>,
    /// Encoded size of `changes`.
    bytes: usize,
}

/// The published configuration, shared by the publisher and every follower (gRPC
/// `Watch` callers and a standalone gateway's in-process feed).
pub struct Feed {
    history: RwLock<History>,
    /// Wakes followers; carries the head for callers that only want snapshots.
    tx: watch::Sender<Arc<v1::Snapshot>>,
    max_changes: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.read();
        f.debug_struct("Feed").field("revision", &h.head.revision).field("changes", &h.changes.len()).finish()
    }
}

impl Feed {
    /// A feed whose head is `first`, keeping at most `max_changes` changes of at most
    /// `max_bytes` encoded bytes in all.
    pub fn new(first: Arc<v1::Snapshot>, max_changes: usize, max_bytes: usize) -> Arc<Feed> {
        let (tx, _) = watch::channel(first.clone());
        Arc::new(Feed {
            history: RwLock::new(History { head: first, changes: VecDeque::new(), bytes: 0 }),
            tx,
            max_changes,
            max_bytes,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, History> {
        // A panic while holding the lock leaves a consistent history (every write is a
        // few plain assignments), so a poisoned lock is still safe to read.
        self.history.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest snapshot.
    pub fn head(&self) -> Arc<v1::Snapshot> {
        self.read().head.clone()
    }

    /// Snapshots as they are published (the latest is always available).
    pub fn snapshots(&self) -> watch::Receiver<Arc<v1::Snapshot>> {
        self.tx.subscribe()
    }

    /// How many revisions of changes are kept right now.
    pub fn history_len(&self) -> usize {
        self.read().changes.len()
    }

    /// Makes `next` the head: computes its change from the current head once, appends
    /// it to the history (dropping the oldest beyond the bounds), then wakes followers.
    /// A snapshot not newer than the head is ignored.
    pub fn publish(&self, next: Arc<v1::Snapshot>) {
        let head = self.head();
        if next.revision <= head.revision {
            tracing::debug!(
                revision = next.revision,
                head = head.revision,
                "snapshot not newer than the head; skipped"
            );
            return;
        }
        // Computed outside the lock: only the publisher writes, and followers keep
        // reading the old head meanwhile.
        let change = diff(&head, &next).map(Arc::new);
        {
            let mut h = self.history.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            h.head = next.clone();
            match change {
                Some(c) => {
                    h.bytes += c.encoded_len();
                    h.changes.push_back(c);
                }
                None => {
                    tracing::info!(revision = next.revision, "key pepper changed; gateways get the full snapshot");
                    h.changes.clear();
                    h.bytes = 0;
                }
            }
            while h.changes.len() > self.max_changes || (h.bytes > self.max_bytes && !h.changes.is_empty()) {
                if let Some(old) = h.changes.pop_front() {
                    h.bytes -= old.encoded_len();
                }
            }
        }
        self.tx.send_replace(next);
    }

    /// What a follower at `at` (`None`: nothing yet) needs to reach the head: nothing,
    /// the chain of changes from `at`, or the head snapshot.
    fn catch_up(&self, at: Option<i64>, accept_changes: bool) -> Vec<FeedItem> {
        let h = self.read();
        let Some(at) = at else { return vec![FeedItem::Snapshot(h.head.clone())] };
        if at == h.head.revision {
            return Vec::new();
        }
        if accept_changes && let Some(start) = h.changes.iter().position(|c| c.from_revision == at) {
            return h.changes.range(start..).cloned().map(FeedItem::Change).collect();
        }
        vec![FeedItem::Snapshot(h.head.clone())]
    }

    /// A follower at `since_revision` (0: nothing yet). Without `accept_changes` it is
    /// sent a full snapshot for every revision.
    pub fn subscribe(self: &Arc<Self>, since_revision: i64, accept_changes: bool) -> Subscription {
        Subscription {
            feed: self.clone(),
            rx: self.tx.subscribe(),
            at: (since_revision != 0).then_some(since_revision),
            accept_changes,
        }
    }

    /// Whether nobody follows the feed any more (the control plane is gone).
    pub(crate) fn abandoned(&self) -> bool {
        self.tx.receiver_count() == 0
    }
}

/// One follower of a [`Feed`]: yields, in order, what brings it from its revision to
/// the latest one.
pub struct Subscription {
    feed: Arc<Feed>,
    rx: watch::Receiver<Arc<v1::Snapshot>>,
    at: Option<i64>,
    accept_changes: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("at", &self.at).finish_non_exhaustive()
    }
}

impl Subscription {
    /// Waits for a revision newer than the follower's and returns the items that reach
    /// it (one snapshot, or changes oldest first); `None` once the publisher is gone.
    pub async fn next(&mut self) -> Option<Vec<FeedItem>> {
        loop {
            // Marked seen before reading, so a publish after the read always wakes us.
            self.rx.borrow_and_update();
            let items = self.feed.catch_up(self.at, self.accept_changes);
            if let Some(last) = items.last() {
                self.at = Some(last.revision());
                return Some(items);
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The revision the follower has been brought to (0: none yet).
    pub fn revision(&self) -> i64 {
        self.at.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, status: &str) -> v1::Key {
        v1::Key { id: id.into(), status: status.into(), key_hash: vec![1; 32], ..Default::default() }
    }

    fn snap(revision: i64, keys: &[(&str, &str)]) -> Arc<v1::Snapshot> {
        Arc::new(v1::Snapshot {
            revision,
            key_pepper: vec![7; 32],
            keys: keys.iter().map(|(id, status)| key(id, status)).collect(),
            ..Default::default()
        })
    }

    fn revisions(items: &[FeedItem]) -> Vec<(&'static str, i64)> {
        items
            .iter()
            .map(|i| match i {
                FeedItem::Snapshot(s) => ("snapshot", s.revision),
                FeedItem::Change(c) => ("change", c.revision),
            })
            .collect()
    }

    #[test]
    fn a_follower_in_the_history_gets_changes_and_one_outside_it_the_snapshot() {
        let feed = Feed::new(snap(1, &[]), 2, usize::MAX);
        for r in 2..=4 {
            feed.publish(snap(r, &[("key_a", if r % 2 == 0 { "active" } else { "revoked" })]));
        }
        assert_eq!(feed.history_len(), 2, "bounded by count");
        assert_eq!(revisions(&feed.catch_up(Some(2), true)), [("change", 3), ("change", 4)]);
        assert_eq!(revisions(&feed.catch_up(Some(3), true)), [("change", 4)]);
        assert!(feed.catch_up(Some(4), true).is_empty());
        assert_eq!(revisions(&feed.catch_up(Some(1), true)), [("snapshot", 4)], "too far behind");
        assert_eq!(revisions(&feed.catch_up(Some(9), true)), [("snapshot", 4)], "ahead (fresh database)");
        assert_eq!(revisions(&feed.catch_up(None, true)), [("snapshot", 4)]);
        assert_eq!(revisions(&feed.catch_up(Some(3), false)), [("snapshot", 4)], "callers without changes");
    }

    #[test]
    fn the_byte_cap_and_a_pepper_change_cut_the_history() {
        let feed = Feed::new(snap(1, &[]), 100, 1);
        feed.publish(snap(2, &[("key_a", "active")]));
        assert_eq!(feed.history_len(), 0, "one change is over the byte cap");
        assert_eq!(revisions(&feed.catch_up(Some(1), true)), [("snapshot", 2)]);

        let feed = Feed::new(snap(1, &[]), 100, usize::MAX);
        feed.publish(snap(2, &[("key_a", "active")]));
        let mut peppered = (*snap(3, &[("key_a", "active")])).clone();
        peppered.key_pepper = vec![9; 32];
        feed.publish(Arc::new(peppered));
        assert_eq!(revisions(&feed.catch_up(Some(2), true)), [("snapshot", 3)]);
        feed.publish(snap(3, &[]));
        assert_eq!(feed.head().key_pepper, vec![9; 32], "a snapshot not newer than the head is ignored");
    }

    #[tokio::test]
    async fn a_subscription_follows_every_publish_in_order() {
        let feed = Feed::new(snap(1, &[]), 10, usize::MAX);
        let mut sub = feed.subscribe(1, true);
        feed.publish(snap(2, &[("key_a", "active")]));
        feed.publish(snap(3, &[("key_a", "revoked")]));
        let items = sub.next().await.unwrap();
        assert_eq!(revisions(&items), [("change", 2), ("change", 3)]);
        let FeedItem::Change(c) = &items[1] else { unreachable!() };
        assert_eq!(c.upsert_keys[0].status, "revoked", "a revocation is a key upsert");
        assert_eq!(sub.revision(), 3);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), sub.next()).await;
        assert!(waiting.is_err(), "nothing new, nothing sent");
    }

    #[tokio::test]
    async fn a_subscription_too_far_behind_gets_the_snapshot_then_changes() {
        let feed = Feed::new(snap(1, &[]), 1, usize::MAX);
        feed.publish(snap(2, &[("key_a", "active")]));
        feed.publish(snap(3, &[("key_a", "active"), ("key_b", "active")]));
        let mut sub = feed.subscribe(1, true);
        let items = sub.next().await.unwrap();
        assert_eq!(revisions(&items), [("snapshot", 3)]);
        let FeedItem::Snapshot(s) = &items[0] else { unreachable!() };
        assert_eq!(s.keys.len(), 2);
        feed.publish(snap(4, &[("key_a", "revoked"), ("key_b", "active")]));
        assert_eq!(revisions(&sub.next().await.unwrap()), [("change", 4)]);
    }
}
