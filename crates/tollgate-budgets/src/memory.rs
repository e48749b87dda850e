//! [`MemoryStore`]: budget counters and rate-limit state in this process.
//!
//! State is split over a fixed number of shards, each a `std::sync::Mutex` around a hash
//! map, chosen by hashing the counter key: there is no global lock, and a lock is never
//! held across an `.await` (every operation completes synchronously inside the first
//! poll). A reservation over several budgets locks the shards it touches in ascending
//! shard order, checks every counter, then applies: exact all-or-nothing without
//! deadlocks. Counters of windows that ended (plus the time their reservations may still
//! be committed) are swept lazily, at most once a minute per shard.

use crate::rate::{ConcurrencySlot, RateDecision, RateRequest, RateStore, bucket};
use crate::store::{
    CommitRequest, CommitSlotOutcome, CounterKey, CounterStore, ReleaseRequest, ReservationId, ReserveOutcome,
    ReserveRequest, ResetRequest, SeedRequest, StoreFuture, Usage,
};
use crate::{Amount, Dimension};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tollgate_core::Timestamp;

/// Shards per map: enough that two cores (or sixty-four) rarely contend.
const SHARDS: usize = 64;
/// How often a shard sweeps dead state, in the callers' clock.
const SWEEP_EVERY_MS: i64 = 60_000;

/// In-process counters for [`Budgets`](crate::Budgets) and
/// [`RateLimiter`](crate::RateLimiter). Cheap to clone: clones share state, so several
/// engines built on clones of one store see the same counters.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("shards", &SHARDS).finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

type CounterShard = Shard<CounterKey, Counter>;
type RateShard = Shard<Box<str>, RateState>;

struct Inner {
    hasher: RandomState,
    counters: Box<[Mutex<CounterShard>]>,
    rates: Box<[Mutex<RateShard>]>,
}

struct Shard<K, V> {
    map: HashMap<K, V>,
    next_sweep: i64,
}

impl<K, V> Default for Shard<K, V> {
    fn default() -> Self {
        Shard { map: HashMap::new(), next_sweep: i64::MIN }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave a counter half-updated (each update is
    // a few field writes that do not panic), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One budget counter. Reservations are indexed by the time they next change state:
/// live ones by deadline (then they stop counting and move to `dead`), dead ones by
/// purge time (then they are forgotten).
#[derive(Default)]
struct Counter {
    committed: Amount,
    reserved: Amount,
    live: BTreeMap<(Timestamp, ReservationId), (Amount, Timestamp)>,
    dead: BTreeMap<(Timestamp, ReservationId), Amount>,
    fired: Vec<u16>,
    keep_until: Option<Timestamp>,
}

impl Counter {
    fn usage(&self) -> Usage {
        Usage { committed: self.committed, reserved: self.reserved }
    }

    fn prune(&mut self, now: Timestamp) {
        while let Some(entry) = self.live.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), (amount, purge_at)) = entry.remove_entry();
            self.reserved = self.reserved.saturating_sub(amount);
            self.dead.insert((purge_at, id), amount);
        }
        while let Some(entry) = self.dead.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove();
        }
    }

    /// Removes a reservation, live or expired; false when it is not (or no longer) here.
    fn settle(&mut self, id: ReservationId, deadline: Timestamp, purge_at: Timestamp) -> bool {
        if let Some((amount, _)) = self.live.remove(&(deadline, id)) {
            self.reserved = self.reserved.saturating_sub(amount);
            true
        } else {
            self.dead.remove(&(purge_at, id)).is_some()
        }
    }

    fn keep_until(&mut self, until: Option<Timestamp>) {
        self.keep_until = match (self.keep_until, until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::new(Inner {
                hasher: RandomState::new(),
                counters: (0..SHARDS).map(|_| Mutex::default()).collect(),
                rates: (0..SHARDS).map(|_| Mutex::default()).collect(),
            }),
        }
    }

    fn shard_of<K: Hash + ?Sized>(&self, key: &K) -> usize {
        (self.inner.hasher.hash_one(key) as usize) % SHARDS
    }

    fn counter_shard(&self, key: &CounterKey) -> MutexGuard<'_, CounterShard> {
        lock(&self.inner.counters[self.shard_of(key)])
    }

    fn reserve_now(&self, req: &ReserveRequest) -> ReserveOutcome {
        if let [slot] = req.slots.as_slice() {
            let mut shard = self.counter_shard(&slot.key);
            let usage = shard.map.get_mut(&slot.key).map_or_else(Usage::default, |c| {
                c.prune(req.now);
                c.usage()
            });
            if let Some(limit) = slot.limit
                && limit.is_exceeded_by(usage.used().saturating_add(req.amount))
            {
                return ReserveOutcome::Refused { slot: 0, usage };
            }
            let usage = apply_reservation(&mut shard, req, 0);
            sweep(&mut shard, req.now);
            return ReserveOutcome::Reserved(vec![usage]);
        }

        // Several counters: lock their shards in ascending order (no deadlock with a
        // concurrent reservation over an overlapping set), check all, then apply all.
        let shard_of: Vec<usize> = req.slots.iter().map(|s| self.shard_of(&s.key)).collect();
        let mut order = shard_of.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<_> = order.iter().map(|&i| lock(&self.inner.counters[i])).collect();
        let guard_of = |slot: usize| order.binary_search(&shard_of[slot]).unwrap_or(0);
        for (i, slot) in req.slots.iter().enumerate() {
            let shard = &mut guards[guard_of(i)];
            let usage = shard.map.get_mut(&slot.key).map_or_else(Usage::default, |c| {
                c.prune(req.now);
                c.usage()
            });
            if let Some(limit) = slot.limit
                && limit.is_exceeded_by(usage.used().saturating_add(req.amount))
            {
                return ReserveOutcome::Refused { slot: i, usage };
            }
        }
        let usages = (0..req.slots.len()).map(|i| apply_reservation(&mut guards[guard_of(i)], req, i)).collect();
        for shard in &mut guards {
            sweep(shard, req.now);
        }
        ReserveOutcome::Reserved(usages)
    }

    fn commit_now(&self, req: &CommitRequest) -> Vec<CommitSlotOutcome> {
        // Each counter is settled under its own lock: a commit only lowers reservations
        // and raises spend, which needs no cross-counter atomicity to stay safe.
        let mut out = Vec::with_capacity(req.slots.len());
        for slot in &req.slots {
            let mut shard = self.counter_shard(&slot.key);
            let Some(c) = shard.map.get_mut(&slot.key) else {
                out.push(CommitSlotOutcome { charged: false, committed: Amount::ZERO, fired: Vec::new() });
                continue;
            };
            if !c.settle(req.id, req.deadline, req.purge_at) {
                out.push(CommitSlotOutcome { charged: false, committed: c.committed, fired: Vec::new() });
                continue;
            }
            c.committed = c.committed.saturating_add(req.actual);
            let mut fired = Vec::new();
            for t in &slot.thresholds {
                if t.at.is_reached_by(c.committed) && !c.fired.contains(&t.per_mille) {
                    c.fired.push(t.per_mille);
                    fired.push(t.per_mille);
                }
            }
            out.push(CommitSlotOutcome { charged: true, committed: c.committed, fired });
        }
        out
    }

    fn release_now(&self, req: &ReleaseRequest) {
        for key in &req.keys {
            if let Some(c) = self.counter_shard(key).map.get_mut(key) {
                c.settle(req.id, req.deadline, req.purge_at);
            }
        }
    }

    fn rate_shard(&self, key: &str) -> MutexGuard<'_, RateShard> {
        lock(&self.inner.rates[self.shard_of(key)])
    }

    fn acquire_now(&self, req: &RateRequest<'_>) -> RateDecision {
        let now = req.now.unix_millis();
        let mut shard = self.rate_shard(req.key);
        let mut fresh = RateState::default();
        let state = match shard.map.get_mut(req.key) {
            Some(s) => s,
            None => &mut fresh,
        };
        let mut wait: Option<(Dimension, u64)> = None;
        let mut refuse = |dimension, ms: u64| {
            if wait.is_none_or(|(_, w)| ms > w) {
                wait = Some((dimension, ms));
            }
        };
        let rpm = req.rpm.map(|limit| {
            let level = bucket::drained(state.requests.level, state.requests.last, u64::from(limit), now);
            bucket::admit(level, 1, u64::from(limit))
        });
        let tpm = req.tpm.map(|limit| {
            let level = bucket::drained(state.tokens.level, state.tokens.last, limit, now);
            bucket::admit(level, req.tokens, limit)
        });
        if let Some(Err(ms)) = rpm {
            refuse(Dimension::Rpm, ms);
        }
        if let Some(Err(ms)) = tpm {
            refuse(Dimension::Tpm, ms);
        }
        if let Some((max, _)) = req.concurrency {
            state.prune_slots(req.now);
            if state.slots.len() >= max as usize {
                refuse(Dimension::Concurrency, CONCURRENCY_RETRY_MS);
            }
        }
        if let Some((dimension, retry_after_ms)) = wait {
            return RateDecision::Limited { dimension, retry_after_ms };
        }
        let mut remaining_requests = None;
        let mut remaining_tokens = None;
        if let Some(Ok((level, left))) = rpm {
            state.requests = Level { level, last: now };
            remaining_requests = Some(left);
        }
        if let Some(Ok((level, left))) = tpm {
            state.tokens = Level { level, last: now };
            remaining_tokens = Some(left);
        }
        if let Some((_, slot)) = req.concurrency {
            state.slots.insert((slot.deadline, slot.id));
        }
        let idle_at = state.idle_at(req.rpm.map(u64::from), req.tpm);
        state.idle_at = state.idle_at.max(idle_at);
        if !shard.map.contains_key(req.key) {
            let fresh = std::mem::take(&mut fresh);
            shard.map.insert(Box::from(req.key), fresh);
        }
        sweep_rates(&mut shard, req.now);
        RateDecision::Admitted { remaining_requests, remaining_tokens }
    }

    fn adjust_now(&self, key: &str, tpm: u64, delta: i64, now: Timestamp) {
        let mut shard = self.rate_shard(key);
        let Some(state) = shard.map.get_mut(key) else { return };
        let level = bucket::drained(state.tokens.level, state.tokens.last, tpm, now.unix_millis());
        let level = (level + i128::from(delta) * crate::rate::MINUTE_MS).max(0);
        state.tokens = Level { level, last: now.unix_millis() };
        let idle_at = state.idle_at(None, Some(tpm));
        state.idle_at = state.idle_at.max(idle_at);
    }

    fn release_slot_now(&self, key: &str, slot: ConcurrencySlot) {
        if let Some(state) = self.rate_shard(key).map.get_mut(key) {
            state.slots.remove(&(slot.deadline, slot.id));
        }
    }
}

/// Retry hint for a concurrency refusal: when a slot frees is not known in advance.
pub(crate) const CONCURRENCY_RETRY_MS: u64 = 1000;

fn apply_reservation(shard: &mut CounterShard, req: &ReserveRequest, i: usize) -> Usage {
    let slot = &req.slots[i];
    let c = match shard.map.get_mut(&slot.key) {
        Some(c) => c,
        None => shard
            .map
            .entry(slot.key.clone())
            .or_insert_with(|| Counter { keep_until: slot.keep_until, ..Counter::default() }),
    };
    c.live.insert((req.deadline, req.id), (req.amount, req.purge_at));
    c.reserved = c.reserved.saturating_add(req.amount);
    c.keep_until(slot.keep_until.map(|k| k.max(req.purge_at)));
    c.usage()
}

fn sweep(shard: &mut CounterShard, now: Timestamp) {
    let now_ms = now.unix_millis();
    if now_ms < shard.next_sweep {
        return;
    }
    shard.next_sweep = now_ms.saturating_add(SWEEP_EVERY_MS);
    shard.map.retain(|_, c| c.keep_until.is_none_or(|k| k > now));
}

#[derive(Default, Clone, Copy)]
struct Level {
    level: i128,
    last: i64,
}

#[derive(Default)]
struct RateState {
    requests: Level,
    tokens: Level,
    slots: BTreeSet<(Timestamp, u128)>,
    /// When both buckets will have drained, in ms: after it, with no slot held, the
    /// state equals a fresh one and may be swept.
    idle_at: i64,
}

impl RateState {
    fn prune_slots(&mut self, now: Timestamp) {
        while let Some(&first) = self.slots.first() {
            if first.0 > now {
                break;
            }
            self.slots.remove(&first);
        }
    }

    fn idle_at(&self, rpm: Option<u64>, tpm: Option<u64>) -> i64 {
        let drain = |l: Level, limit: Option<u64>| match limit {
            Some(limit) if limit > 0 => {
                let ms = (l.level + i128::from(limit) - 1) / i128::from(limit);
                l.last.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
            }
            _ => l.last,
        };
        drain(self.requests, rpm).max(drain(self.tokens, tpm))
    }
}

fn sweep_rates(shard: &mut RateShard, now: Timestamp) {
    let now_ms = now.unix_millis();
    if now_ms < shard.next_sweep {
        return;
    }
    shard.next_sweep = now_ms.saturating_add(SWEEP_EVERY_MS);
    shard.map.retain(|_, s| {
        s.prune_slots(now);
        // Limits may change between calls, so a bucket is only dropped a full minute
        // after the limits it was last seen with say it drained.
        !s.slots.is_empty() || s.idle_at.saturating_add(SWEEP_EVERY_MS) > now_ms
    });
}

impl CounterStore for MemoryStore {
    fn reserve<'a>(&'a self, req: &'a ReserveRequest) -> StoreFuture<'a, ReserveOutcome> {
        Box::pin(async move { Ok(self.reserve_now(req)) })
    }

    fn commit<'a>(&'a self, req: &'a CommitRequest) -> StoreFuture<'a, Vec<CommitSlotOutcome>> {
        Box::pin(async move { Ok(self.commit_now(req)) })
    }

    fn release<'a>(&'a self, req: &'a ReleaseRequest) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.release_now(req);
            Ok(())
        })
    }

    fn release_detached(self: Arc<Self>, req: ReleaseRequest) {
        self.release_now(&req);
    }

    fn commit_detached(self: Arc<Self>, req: CommitRequest) {
        self.commit_now(&req);
    }

    fn read<'a>(&'a self, key: &'a CounterKey, now: Timestamp) -> StoreFuture<'a, Usage> {
        Box::pin(async move {
            Ok(self.counter_shard(key).map.get_mut(key).map_or_else(Usage::default, |c| {
                c.prune(now);
                c.usage()
            }))
        })
    }

    fn seed<'a>(&'a self, req: &'a SeedRequest) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut shard = self.counter_shard(&req.key);
            let c = shard
                .map
                .entry(req.key.clone())
                .or_insert_with(|| Counter { keep_until: req.keep_until, ..Counter::default() });
            c.committed = req.committed;
            c.keep_until(req.keep_until);
            for &t in &req.fired {
                if !c.fired.contains(&t) {
                    c.fired.push(t);
                }
            }
            Ok(())
        })
    }

    fn reset<'a>(&'a self, req: &'a ResetRequest) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if let Some(c) = self.counter_shard(&req.key).map.get_mut(&req.key) {
                c.committed = Amount::ZERO;
                c.fired.clear();
            }
            Ok(())
        })
    }
}

impl RateStore for MemoryStore {
    fn acquire<'a>(&'a self, req: &'a RateRequest<'a>) -> StoreFuture<'a, RateDecision> {
        Box::pin(async move { Ok(self.acquire_now(req)) })
    }

    fn adjust_tokens<'a>(&'a self, key: &'a str, tpm: u64, delta: i64, now: Timestamp) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.adjust_now(key, tpm, delta, now);
            Ok(())
        })
    }

    fn release<'a>(&'a self, key: &'a str, slot: ConcurrencySlot) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.release_slot_now(key, slot);
            Ok(())
        })
    }

    fn release_detached(self: Arc<Self>, key: Arc<str>, slot: ConcurrencySlot) {
        self.release_slot_now(&key, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limit;
    use crate::store::ReserveSlot;
    use tollgate_core::{Money, Window};

    fn key(budget: &str, start: Option<i64>) -> CounterKey {
        CounterKey {
            budget: budget.into(),
            window: Window::Day,
            start: start.map(Timestamp::from_unix_millis),
            epoch: 0,
        }
    }

    fn reserve(id: u128, slots: &[(&CounterKey, i64)], now: i64) -> ReserveRequest {
        ReserveRequest {
            id: ReservationId(id),
            amount: Amount::money(Money::from_nanos(1)),
            now: Timestamp::from_unix_millis(now),
            deadline: Timestamp::from_unix_millis(now + 1000),
            purge_at: Timestamp::from_unix_millis(now + 2000),
            slots: slots
                .iter()
                .map(|(k, limit)| ReserveSlot {
                    key: (*k).clone(),
                    limit: Some(Limit::Money(Money::from_nanos(*limit))),
                    keep_until: Some(Timestamp::from_unix_millis(now + 10_000)),
                })
                .collect(),
        }
    }

    #[test]
    fn threads_racing_on_shared_and_private_counters_never_overshoot() {
        // OS threads hammer the synchronous core (tokio tasks on two workers rarely
        // collide inside it): a shared counter affording 7,000 and one private counter
        // per thread affording 3,000, reserved together in both orders, alone or together.
        let store = MemoryStore::new();
        let shared = key("shared", Some(0));
        let ids = std::sync::atomic::AtomicU64::new(0);
        let admitted: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let (store, shared, ids) = (&store, &shared, &ids);
                    s.spawn(move || {
                        let own = key(&format!("own{t}"), Some(0));
                        let mut ok = 0;
                        for i in 0..5_000 {
                            let id = u128::from(ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                            let slots: &[(&CounterKey, i64)] = match i % 3 {
                                0 => &[(shared, 7_000), (&own, 3_000)],
                                1 => &[(&own, 3_000), (shared, 7_000)],
                                _ => &[(shared, 7_000)],
                            };
                            if let ReserveOutcome::Reserved(_) = store.reserve_now(&reserve(id, slots, 0)) {
                                ok += 1;
                            }
                        }
                        ok
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
        });
        assert_eq!(admitted.iter().sum::<usize>(), 7_000, "{admitted:?}");
        let shared_usage = store.counter_shard(&shared).map.get(&shared).map(Counter::usage).unwrap_or_default();
        assert_eq!(shared_usage.reserved, Amount::money(Money::from_nanos(7_000)));
        for t in 0..4 {
            let own = key(&format!("own{t}"), Some(0));
            let u = store.counter_shard(&own).map.get(&own).map(Counter::usage).unwrap_or_default();
            assert!(u.reserved.money <= Money::from_nanos(3_000), "own{t}: {u:?}");
        }
    }

    #[test]
    fn counters_of_ended_windows_are_swept() {
        let store = MemoryStore::new();
        let old = key("b", Some(0));
        store.reserve_now(&reserve(1, &[(&old, 10)], 0));
        assert!(store.counter_shard(&old).map.contains_key(&old));
        // Any reservation landing on the same shard after the counter's keep-until sweeps it.
        let later = 10_000 + SWEEP_EVERY_MS;
        let mut n = 0;
        while store.counter_shard(&old).map.contains_key(&old) && n < 10_000 {
            n += 1;
            let k = key(&format!("other{n}"), Some(later));
            store.reserve_now(&reserve(u128::from(n as u32) + 10, &[(&k, 10)], later));
        }
        assert!(!store.counter_shard(&old).map.contains_key(&old), "still there after {n} reservations");
    }

    #[test]
    fn idle_rate_state_is_swept_but_held_slots_are_not() {
        let store = MemoryStore::new();
        let req = |key: &'static str, now: i64, slot: Option<(u32, ConcurrencySlot)>| RateRequest {
            key,
            now: Timestamp::from_unix_millis(now),
            rpm: Some(60),
            tpm: None,
            tokens: 0,
            concurrency: slot,
        };
        let slot = ConcurrencySlot { id: 1, deadline: Timestamp::from_unix_millis(10_000_000) };
        store.acquire_now(&req("idle", 0, None));
        store.acquire_now(&req("busy", 0, Some((1, slot))));
        let mut n = 0;
        while store.rate_shard("idle").map.contains_key("idle") && n < 10_000 {
            n += 1;
            let key: &'static str = Box::leak(format!("k{n}").into_boxed_str());
            store.acquire_now(&req(key, 1_000_000, None));
        }
        assert!(!store.rate_shard("idle").map.contains_key("idle"));
        assert!(store.rate_shard("busy").map.contains_key("busy"), "a held slot keeps its state");
    }
}
