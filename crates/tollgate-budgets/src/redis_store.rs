//! [`RedisStore`]: budget counters and rate-limit state in Redis, shared by any number of
//! engine instances.
//!
//! Every operation is one Lua script (`src/lua/*.lua`), so it is atomic and one round
//! trip: reserve checks every budget then reserves on all, or on none; commit settles the
//! reservation, charges, and marks alert thresholds with `HSETNX` so each fires once per
//! window whichever instance commits. Stale reservations are expired inside the scripts
//! (a sorted set of reservation ids scored by deadline, a hash of their amounts), using
//! the caller's clock: keep instances' clocks in sync (NTP); skew shifts expiry by the
//! skew, nothing else.
//!
//! Amounts travel and are stored as decimal strings and compared on base-10^9 limbs in
//! Lua, never as doubles, so money stays exact up to `i64::MAX` nano-dollars.
//!
//! Keys: `{prefix}b:{budget}:{window}:{start|total}` (hash) and the same with `:z` (sorted
//! set) per counter; `{prefix}r:{key}` (hash) and `{prefix}r:{key}:c` (sorted set) per
//! rate-limited key. Windowed counters expire on their own after their window (plus twice
//! the reservation TTL and a margin), as a time-to-live from the caller's clock. On Redis Cluster, put a hash tag in the prefix
//! (`{tollgate}:`) so that a reservation's keys share one slot.

use crate::rate::{ConcurrencySlot, RateDecision, RateRequest, RateStore};
use crate::store::{
    CommitRequest, CommitSlotOutcome, CounterKey, CounterStore, ReleaseRequest, ReserveOutcome, ReserveRequest,
    ResetRequest, SeedRequest, StoreFuture, Usage,
};
use crate::{Amount, Dimension, Limit, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tollgate_core::{Money, Timestamp};

const BACKEND: &str = "redis";

macro_rules! script {
    ($($file:literal),+) => {
        LazyLock::new(|| Script::new(concat!($(include_str!(concat!("lua/", $file))),+)))
    };
}

static RESERVE: LazyLock<Script> = script!("common.lua", "reserve.lua");
static COMMIT: LazyLock<Script> = script!("common.lua", "commit.lua");
static RELEASE: LazyLock<Script> = script!("common.lua", "release.lua");
static READ: LazyLock<Script> = script!("common.lua", "read.lua");
static SEED: LazyLock<Script> = script!("common.lua", "seed.lua");
static RESET: LazyLock<Script> = script!("common.lua", "reset.lua");
static RATE_ACQUIRE: LazyLock<Script> = script!("rate_common.lua", "rate_acquire.lua");
static RATE_ADJUST: LazyLock<Script> = script!("rate_common.lua", "rate_adjust.lua");

/// Counters in Redis, for many engine instances sharing them. Cheap to clone (clones
/// share the connection).
#[derive(Clone)]
pub struct RedisStore {
    con: ConnectionManager,
    prefix: Arc<str>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, `rediss://` for TLS if the redis crate
    /// was built with it) through a reconnecting [`ConnectionManager`]; every key starts
    /// with `key_prefix`. Commands time out after 2 s (reported as
    /// [`StoreError::Unavailable`]).
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let con = ConnectionManager::new_with_config(client, config).await.map_err(store_error)?;
        Ok(Self::from_manager(con, key_prefix))
    }

    /// Wraps a connection manager configured by the caller.
    pub fn from_manager(con: ConnectionManager, key_prefix: &str) -> Self {
        RedisStore { con, prefix: Arc::from(key_prefix) }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn counter_key(&self, key: &CounterKey) -> String {
        let mut s = String::with_capacity(self.prefix.len() + key.budget.as_str().len() + 24);
        s.push_str(&self.prefix);
        s.push_str("b:");
        s.push_str(key.budget.as_str());
        s.push(':');
        s.push_str(key.window.as_str());
        s.push(':');
        match key.start {
            Some(start) => {
                let _ = write!(s, "{}", start.unix_millis());
            }
            None => s.push_str("total"),
        }
        if key.epoch != 0 {
            let _ = write!(s, ":e{}", key.epoch);
        }
        s
    }

    fn rate_key(&self, key: &str) -> String {
        format!("{}r:{key}", self.prefix)
    }

    async fn reserve_inner(&self, req: &ReserveRequest) -> Result<ReserveOutcome, StoreError> {
        let mut inv = RESERVE.prepare_invoke();
        for slot in &req.slots {
            let k = self.counter_key(&slot.key);
            let z = format!("{k}:z");
            inv.key(k).key(z);
        }
        inv.arg(req.now.unix_millis())
            .arg(req.id.to_string())
            .arg(req.amount.money.nanos())
            .arg(req.amount.tokens)
            .arg(req.deadline.unix_millis())
            .arg(req.purge_at.unix_millis());
        for slot in &req.slots {
            match slot.limit {
                None => inv.arg("n").arg(0),
                Some(Limit::Money(m)) => inv.arg("m").arg(m.nanos()),
                Some(Limit::Tokens(t)) => inv.arg("t").arg(t),
            };
            match slot.keep_until {
                Some(t) => inv.arg(keep_for(t, req.now)),
                None => inv.arg("-"),
            };
        }
        let mut con = self.con.clone();
        let reply: Value = inv.invoke_async(&mut con).await.map_err(store_error)?;
        let items = array(reply)?;
        match items.first().map(integer).transpose()? {
            Some(1) => {
                let values = &items[1..];
                if values.len() != 4 * req.slots.len() {
                    return Err(protocol(format!("reserve returned {} values", values.len())));
                }
                values.chunks(4).map(usage).collect::<Result<_, _>>().map(ReserveOutcome::Reserved)
            }
            Some(0) if items.len() == 6 => {
                let slot = usize::try_from(integer(&items[1])?).map_err(|_| protocol("negative slot".into()))?;
                Ok(ReserveOutcome::Refused { slot, usage: usage(&items[2..6])? })
            }
            _ => Err(protocol("reserve returned an unknown shape".into())),
        }
    }

    async fn commit_inner(&self, req: &CommitRequest) -> Result<Vec<CommitSlotOutcome>, StoreError> {
        let mut inv = COMMIT.prepare_invoke();
        for slot in &req.slots {
            let k = self.counter_key(&slot.key);
            let z = format!("{k}:z");
            inv.key(k).key(z);
        }
        inv.arg(req.id.to_string()).arg(req.actual.money.nanos()).arg(req.actual.tokens);
        for slot in &req.slots {
            let kind = match slot.thresholds.first().map(|t| t.at) {
                Some(Limit::Tokens(_)) => "t",
                _ => "m",
            };
            inv.arg(kind).arg(slot.thresholds.len());
            for t in &slot.thresholds {
                inv.arg(t.per_mille);
                match t.at {
                    Limit::Money(m) => inv.arg(m.nanos()),
                    Limit::Tokens(n) => inv.arg(n),
                };
            }
        }
        let mut con = self.con.clone();
        let reply: Value = inv.invoke_async(&mut con).await.map_err(store_error)?;
        let slots = array(reply)?;
        if slots.len() != req.slots.len() {
            return Err(protocol(format!("commit returned {} slots", slots.len())));
        }
        slots
            .into_iter()
            .map(|slot| {
                let v = array(slot)?;
                let [charged, money, tokens, fired] =
                    <[Value; 4]>::try_from(v).map_err(|v| protocol(format!("commit slot has {} values", v.len())))?;
                let fired = array(fired)?
                    .iter()
                    .map(|f| u16::try_from(number(f)?).map_err(|_| protocol("threshold out of range".into())))
                    .collect::<Result<_, _>>()?;
                Ok(CommitSlotOutcome { charged: integer(&charged)? == 1, committed: amount(&money, &tokens)?, fired })
            })
            .collect()
    }

    async fn release_inner(&self, req: &ReleaseRequest) -> Result<(), StoreError> {
        let mut inv = RELEASE.prepare_invoke();
        for key in &req.keys {
            let k = self.counter_key(key);
            let z = format!("{k}:z");
            inv.key(k).key(z);
        }
        inv.arg(req.id.to_string());
        let mut con = self.con.clone();
        let _: Value = inv.invoke_async(&mut con).await.map_err(store_error)?;
        Ok(())
    }
}

impl CounterStore for RedisStore {
    fn reserve<'a>(&'a self, req: &'a ReserveRequest) -> StoreFuture<'a, ReserveOutcome> {
        Box::pin(self.reserve_inner(req))
    }

    fn commit<'a>(&'a self, req: &'a CommitRequest) -> StoreFuture<'a, Vec<CommitSlotOutcome>> {
        Box::pin(self.commit_inner(req))
    }

    fn release<'a>(&'a self, req: &'a ReleaseRequest) -> StoreFuture<'a, ()> {
        Box::pin(self.release_inner(req))
    }

    fn release_detached(self: Arc<Self>, req: ReleaseRequest) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                // Best effort by contract: the reservation's deadline covers a failure.
                let _ = self.release_inner(&req).await;
            });
        }
    }

    fn commit_detached(self: Arc<Self>, req: CommitRequest) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                // Best effort by contract: the ledger remains the record of this charge.
                let _ = self.commit_inner(&req).await;
            });
        }
    }

    fn read<'a>(&'a self, key: &'a CounterKey, now: Timestamp) -> StoreFuture<'a, Usage> {
        Box::pin(async move {
            let k = self.counter_key(key);
            let z = format!("{k}:z");
            let mut con = self.con.clone();
            let reply: Value =
                READ.key(k).key(z).arg(now.unix_millis()).invoke_async(&mut con).await.map_err(store_error)?;
            usage(&array(reply)?)
        })
    }

    fn seed<'a>(&'a self, req: &'a SeedRequest) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let k = self.counter_key(&req.key);
            let z = format!("{k}:z");
            let mut inv = SEED.prepare_invoke();
            inv.key(k).key(z).arg(req.committed.money.nanos()).arg(req.committed.tokens);
            match req.keep_until {
                Some(t) => inv.arg(keep_for(t, req.now)),
                None => inv.arg("-"),
            };
            for &t in &req.fired {
                inv.arg(t);
            }
            let mut con = self.con.clone();
            let _: Value = inv.invoke_async(&mut con).await.map_err(store_error)?;
            Ok(())
        })
    }

    fn reset<'a>(&'a self, req: &'a ResetRequest) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inv = RESET.prepare_invoke();
            inv.key(self.counter_key(&req.key));
            for &t in &req.thresholds {
                inv.arg(t);
            }
            let mut con = self.con.clone();
            let _: Value = inv.invoke_async(&mut con).await.map_err(store_error)?;
            Ok(())
        })
    }
}

impl RateStore for RedisStore {
    fn acquire<'a>(&'a self, req: &'a RateRequest<'a>) -> StoreFuture<'a, RateDecision> {
        Box::pin(async move {
            let k = self.rate_key(req.key);
            let c = format!("{k}:c");
            let mut inv = RATE_ACQUIRE.prepare_invoke();
            inv.key(k).key(c).arg(req.now.unix_millis());
            match req.rpm {
                Some(l) => inv.arg(l),
                None => inv.arg("-"),
            };
            match req.tpm {
                Some(l) => inv.arg(l),
                None => inv.arg("-"),
            };
            inv.arg(req.tokens);
            match req.concurrency {
                Some((max, slot)) => {
                    let ttl = (slot.deadline.unix_millis() - req.now.unix_millis()).max(1);
                    inv.arg(max).arg(slot.id.to_string()).arg(slot.deadline.unix_millis()).arg(ttl)
                }
                None => inv.arg("-").arg("-").arg("-").arg("-"),
            };
            let mut con = self.con.clone();
            let reply: Value = inv.invoke_async(&mut con).await.map_err(store_error)?;
            let items = array(reply)?;
            match (items.first().map(integer).transpose()?, items.len()) {
                (Some(1), 3) => {
                    let left = |v: &Value| integer(v).map(|n| u64::try_from(n).ok());
                    Ok(RateDecision::Admitted {
                        remaining_requests: left(&items[1])?,
                        remaining_tokens: left(&items[2])?,
                    })
                }
                (Some(0), 3) => {
                    let dimension = match text(&items[1])?.as_str() {
                        "rpm" => Dimension::Rpm,
                        "tpm" => Dimension::Tpm,
                        "concurrency" => Dimension::Concurrency,
                        other => return Err(protocol(format!("unknown dimension {other:?}"))),
                    };
                    let retry_after_ms =
                        u64::try_from(integer(&items[2])?).map_err(|_| protocol("negative wait".into()))?;
                    Ok(RateDecision::Limited { dimension, retry_after_ms })
                }
                _ => Err(protocol("rate acquire returned an unknown shape".into())),
            }
        })
    }

    fn adjust_tokens<'a>(&'a self, key: &'a str, tpm: u64, delta: i64, now: Timestamp) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let _: Value = RATE_ADJUST
                .key(self.rate_key(key))
                .arg(now.unix_millis())
                .arg(tpm)
                .arg(delta)
                .invoke_async(&mut con)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, key: &'a str, slot: ConcurrencySlot) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let _: Value = redis::cmd("ZREM")
                .arg(format!("{}:c", self.rate_key(key)))
                .arg(slot.id.to_string())
                .query_async(&mut con)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn release_detached(self: Arc<Self>, key: Arc<str>, slot: ConcurrencySlot) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                // Best effort by contract: the slot's deadline covers a failure.
                let _ = RateStore::release(&*self, &key, slot).await;
            });
        }
    }
}

/// The shortest time-to-live given to a windowed counter's keys.
const MIN_KEEP_MS: i64 = 60 * 60 * 1000;

/// A time-to-live (ms) that keeps a key until `until` in the caller's clock. Relative, so
/// that Redis' own clock never decides (and a counter seeded for a past window, e.g. when
/// rebuilding, still lives long enough to be read).
fn keep_for(until: Timestamp, now: Timestamp) -> i64 {
    until.unix_millis().saturating_sub(now.unix_millis()).max(MIN_KEEP_MS)
}

fn store_error(e: RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped() {
        StoreError::Unavailable { backend: BACKEND, source: Box::new(e) }
    } else {
        StoreError::Backend { backend: BACKEND, source: Box::new(e) }
    }
}

fn protocol(detail: String) -> StoreError {
    StoreError::Protocol { backend: BACKEND, detail }
}

fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(protocol(format!("expected an array, got {}", kind(&other)))),
    }
}

fn integer(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(protocol(format!("expected an integer, got {}", kind(other)))),
    }
}

fn text(v: &Value) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| protocol("reply is not UTF-8".into())),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(protocol(format!("expected a string, got {}", kind(other)))),
    }
}

/// An exact integer sent as a decimal string (or, for small values, an integer).
fn number(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(*n),
        _ => text(v)?.parse().map_err(|_| protocol("expected a decimal integer".into())),
    }
}

fn amount(money: &Value, tokens: &Value) -> Result<Amount, StoreError> {
    let tokens = u64::try_from(number(tokens)?).map_err(|_| protocol("negative tokens".into()))?;
    Ok(Amount { money: Money::from_nanos(number(money)?), tokens })
}

fn usage(v: &[Value]) -> Result<Usage, StoreError> {
    match v {
        [cm, ct, rm, rt] => Ok(Usage { committed: amount(cm, ct)?, reserved: amount(rm, rt)? }),
        _ => Err(protocol(format!("usage has {} values", v.len()))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) | Value::SimpleString(_) => "a string",
        Value::Array(_) => "an array",
        _ => "another type",
    }
}
