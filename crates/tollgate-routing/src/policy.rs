//! Routing policies: how a request picks among a model's deployments, how often and how
//! patiently it retries, and when a failing deployment is put in cooldown.
//!
//! Parse, don't validate: [`RawRoutingPolicy`] is the wire/config form (every field
//! optional, unknown fields refused); [`RoutingPolicy`] can only hold a valid policy and
//! is built from it with `TryFrom`, with errors naming the offending field. Durations are
//! integer milliseconds on the wire (`*_ms`).

use crate::outcome::{FailureClass, RetryOn};
use rand::Rng;
use std::time::Duration;

/// Most attempts one request may make (first try included).
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;
/// Longest per-attempt or overall timeout a policy may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest backoff a policy may set.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest cooldown a breaker may grow to.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(24 * 3600);
/// Most consecutive failures `failures_to_open` may ask for.
pub const MAX_FAILURES_TO_OPEN: u32 = 1000;

/// How a request orders a model's deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Ordered fallback: lowest `priority` first, ties in catalog order.
    #[default]
    Priority,
    /// Load balancing: within each priority tier (lowest first), deployments are drawn
    /// at random in proportion to their `weight`, without replacement; weight 0 is
    /// tried only after the tier's weighted deployments.
    Weighted,
}

impl Strategy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Priority => "priority",
            Strategy::Weighted => "weighted",
        }
    }
}

/// Exponential backoff with full jitter between two tries of the *same* deployment:
/// the n-th retry (n from 0) waits a uniformly random time in
/// `[0, min(max, base × 2ⁿ)]`. Moving on to a deployment not yet tried does not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Builds a backoff; `base ≤ max ≤` [`MAX_BACKOFF`].
    pub fn new(base: Duration, max: Duration) -> Result<Self, PolicyError> {
        if max > MAX_BACKOFF {
            return Err(PolicyError::new("backoff.max_ms", format!("must be at most {} ms", MAX_BACKOFF.as_millis())));
        }
        if base > max {
            return Err(PolicyError::new("backoff.base_ms", "must not exceed backoff.max_ms"));
        }
        Ok(Backoff { base, max })
    }

    /// The first retry's ceiling.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The upper bound of the n-th retry's wait: `min(max, base × 2ⁿ)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A wait for the n-th retry, drawn uniformly from `[0, ceiling(n)]` (full jitter,
    /// so concurrent requests do not retry in lockstep).
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        if ceiling == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

impl Default for Backoff {
    /// 250 ms, doubling, at most 5 s.
    fn default() -> Self {
        Backoff { base: Duration::from_millis(250), max: Duration::from_secs(5) }
    }
}

/// When a deployment is put in cooldown (its circuit breaker opens) and for how long.
///
/// `failures_to_open` consecutive failures (see
/// [`Outcome::counts_against_health`](crate::Outcome::counts_against_health)) open the
/// breaker for `cooldown`; then exactly one probe request is let through. A successful
/// probe closes the breaker; a failed one re-opens it for twice the previous cooldown,
/// up to `max_cooldown` (set `max_cooldown = cooldown` for a fixed cooldown).
/// `failures_to_open = 0` disables the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BreakerPolicy {
    failures_to_open: u32,
    cooldown: Duration,
    max_cooldown: Duration,
}

impl BreakerPolicy {
    /// Builds a breaker policy (see the type's doc for the bounds).
    pub fn new(failures_to_open: u32, cooldown: Duration, max_cooldown: Duration) -> Result<Self, PolicyError> {
        if failures_to_open > MAX_FAILURES_TO_OPEN {
            return Err(PolicyError::new(
                "cooldown.failures_to_open",
                format!("must be at most {MAX_FAILURES_TO_OPEN} (0 disables the breaker)"),
            ));
        }
        if cooldown.is_zero() {
            return Err(PolicyError::new("cooldown.cooldown_ms", "must be at least 1 ms"));
        }
        if max_cooldown > MAX_COOLDOWN {
            return Err(PolicyError::new(
                "cooldown.max_cooldown_ms",
                format!("must be at most {} ms", MAX_COOLDOWN.as_millis()),
            ));
        }
        if cooldown > max_cooldown {
            return Err(PolicyError::new("cooldown.cooldown_ms", "must not exceed cooldown.max_cooldown_ms"));
        }
        Ok(BreakerPolicy { failures_to_open, cooldown, max_cooldown })
    }

    /// Consecutive failures that open the breaker; 0 = never.
    pub fn failures_to_open(&self) -> u32 {
        self.failures_to_open
    }

    /// The first cooldown.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// The longest cooldown after repeated failed probes.
    pub fn max_cooldown(&self) -> Duration {
        self.max_cooldown
    }

    /// The cooldown after `reopens` failed probes in a row: `cooldown × 2^reopens`,
    /// capped at `max_cooldown`.
    pub fn cooldown_after(&self, reopens: u32) -> Duration {
        let factor = 1u32.checked_shl(reopens.min(31)).unwrap_or(u32::MAX);
        self.cooldown.saturating_mul(factor).min(self.max_cooldown)
    }
}

impl Default for BreakerPolicy {
    /// 5 failures in a row, 30 s, growing to at most 5 min.
    fn default() -> Self {
        BreakerPolicy { failures_to_open: 5, cooldown: Duration::from_secs(30), max_cooldown: Duration::from_secs(300) }
    }
}

/// A validated routing policy. Build it from a [`RawRoutingPolicy`] (`try_from`), or
/// take [`RoutingPolicy::default`]:
///
/// | field | default |
/// |---|---|
/// | strategy | `priority` |
/// | max_attempts | 3 (1 ..= 10, first try included) |
/// | per_attempt_timeout | 120 s (time until the upstream answers) |
/// | overall_timeout | 300 s (deadline for all attempts and waits) |
/// | backoff | 250 ms doubling to 5 s, full jitter |
/// | retry_on | connect, timeout, 429, 5xx |
/// | cooldown | 5 consecutive failures, 30 s, doubling to 5 min |
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "MapOnly<RawRoutingPolicy>", into = "RawRoutingPolicy")]
pub struct RoutingPolicy {
    strategy: Strategy,
    max_attempts: u32,
    per_attempt_timeout: Duration,
    overall_timeout: Duration,
    backoff: Backoff,
    retry_on: RetryOn,
    breaker: BreakerPolicy,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy {
            strategy: Strategy::Priority,
            max_attempts: 3,
            per_attempt_timeout: Duration::from_secs(120),
            overall_timeout: Duration::from_secs(300),
            backoff: Backoff::default(),
            retry_on: RetryOn::default(),
            breaker: BreakerPolicy::default(),
        }
    }
}

impl RoutingPolicy {
    /// How deployments are ordered.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Most attempts per request, the first included (1 = no retry, no fallback).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Longest one attempt may wait for the upstream's answer.
    pub fn per_attempt_timeout(&self) -> Duration {
        self.per_attempt_timeout
    }

    /// Deadline for the whole routing phase: attempts, backoff and `retry-after` waits.
    pub fn overall_timeout(&self) -> Duration {
        self.overall_timeout
    }

    /// Wait between tries of the same deployment.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// Which failures are retried (elsewhere, or on the same deployment after a wait).
    pub fn retry_on(&self) -> RetryOn {
        self.retry_on
    }

    /// When deployments are put in cooldown.
    pub fn breaker(&self) -> &BreakerPolicy {
        &self.breaker
    }

    /// The same policy with another strategy.
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
}

/// A policy field that is out of range or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("routing policy {field}: {reason}")]
pub struct PolicyError {
    /// The field, as written on the wire (e.g. `backoff.base_ms`, `retry_on[2]`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl PolicyError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PolicyError { field: field.into(), reason: reason.into() }
    }
}

impl tollgate_core::ServiceError for PolicyError {
    fn code(&self) -> tollgate_core::ErrorCode {
        tollgate_core::ErrorCode::BadRequest
    }
}

/// The wire and config-file form of a [`RoutingPolicy`]: every field optional (absent
/// means the default), unknown fields refused. Numbers are signed so that a negative
/// value gets an error naming its field.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRoutingPolicy {
    /// `priority` or `weighted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// 1 ..= 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// 1 ..= 3 600 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_attempt_timeout_ms: Option<i64>,
    /// 1 ..= 3 600 000, at least `per_attempt_timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall_timeout_ms: Option<i64>,
    /// Wait between tries of the same deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<RawBackoff>,
    /// Any of `connect`, `timeout`, `429`, `5xx`, `409`; `[]` retries nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
    /// The circuit breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<RawCooldown>,
}

/// Wire form of [`Backoff`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// First retry's ceiling; 0 ..= 60 000 (0: no wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ms: Option<i64>,
    /// Largest wait; `base_ms` ..= 60 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<i64>,
}

/// Wire form of [`BreakerPolicy`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RawCooldown {
    /// Consecutive failures that open the breaker; 0 ..= 1000 (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures_to_open: Option<i64>,
    /// First cooldown; 1 ..= `max_cooldown_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<i64>,
    /// Longest cooldown after repeated failed probes; ..= 86 400 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cooldown_ms: Option<i64>,
}

/// Most entries `retry_on` may list (there are five classes; duplicates are harmless).
const MAX_RETRY_ON: usize = 16;

fn millis(field: &str, v: Option<i64>, default: Duration, min: u64, max: Duration) -> Result<Duration, PolicyError> {
    let Some(v) = v else { return Ok(default) };
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    match u64::try_from(v) {
        Ok(ms) if (min..=max_ms).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(PolicyError::new(field, format!("must be between {min} and {max_ms} ms, got {v}"))),
    }
}

fn short(s: &str) -> String {
    s.chars().take(32).filter(|c| !c.is_control()).collect()
}

impl TryFrom<RawRoutingPolicy> for RoutingPolicy {
    type Error = PolicyError;

    fn try_from(raw: RawRoutingPolicy) -> Result<Self, PolicyError> {
        let d = RoutingPolicy::default();
        let strategy = match raw.strategy.as_deref() {
            None => d.strategy,
            Some("priority") => Strategy::Priority,
            Some("weighted") => Strategy::Weighted,
            Some(other) => {
                return Err(PolicyError::new(
                    "strategy",
                    format!("must be \"priority\" or \"weighted\", got {:?}", short(other)),
                ));
            }
        };
        let max_attempts = match raw.max_attempts {
            None => d.max_attempts,
            Some(n) => match u32::try_from(n) {
                Ok(n) if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) => n,
                _ => {
                    return Err(PolicyError::new(
                        "max_attempts",
                        format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {n}"),
                    ));
                }
            },
        };
        let per_attempt_timeout =
            millis("per_attempt_timeout_ms", raw.per_attempt_timeout_ms, d.per_attempt_timeout, 1, MAX_TIMEOUT)?;
        // An overall deadline left out follows a longer per-attempt timeout rather than
        // refusing it.
        let overall_default = d.overall_timeout.max(per_attempt_timeout);
        let overall_timeout = millis("overall_timeout_ms", raw.overall_timeout_ms, overall_default, 1, MAX_TIMEOUT)?;
        if per_attempt_timeout > overall_timeout {
            return Err(PolicyError::new("per_attempt_timeout_ms", "must not exceed overall_timeout_ms"));
        }
        let backoff = match raw.backoff {
            None => d.backoff,
            Some(b) => {
                let max = millis("backoff.max_ms", b.max_ms, d.backoff.max, 0, MAX_BACKOFF)?;
                let base = millis("backoff.base_ms", b.base_ms, d.backoff.base.min(max), 0, MAX_BACKOFF)?;
                Backoff::new(base, max)?
            }
        };
        let retry_on = match raw.retry_on {
            None => d.retry_on,
            Some(list) => {
                if list.len() > MAX_RETRY_ON {
                    return Err(PolicyError::new("retry_on", format!("at most {MAX_RETRY_ON} entries")));
                }
                let mut classes = Vec::with_capacity(list.len());
                for (i, name) in list.iter().enumerate() {
                    let Some(c) = FailureClass::parse(name) else {
                        return Err(PolicyError::new(
                            format!("retry_on[{i}]"),
                            format!(
                                "must be one of connect, timeout, 429, 5xx, 409 (4xx request errors are never retried), got {:?}",
                                short(name)
                            ),
                        ));
                    };
                    classes.push(c);
                }
                RetryOn::of(&classes)
            }
        };
        let breaker = match raw.cooldown {
            None => d.breaker,
            Some(c) => {
                let failures_to_open = match c.failures_to_open {
                    None => d.breaker.failures_to_open,
                    Some(n) => u32::try_from(n).ok().filter(|n| *n <= MAX_FAILURES_TO_OPEN).ok_or_else(|| {
                        PolicyError::new(
                            "cooldown.failures_to_open",
                            format!("must be between 0 and {MAX_FAILURES_TO_OPEN}, got {n}"),
                        )
                    })?,
                };
                let cooldown = millis("cooldown.cooldown_ms", c.cooldown_ms, d.breaker.cooldown, 1, MAX_COOLDOWN)?;
                let max_default = d.breaker.max_cooldown.max(cooldown);
                let max_cooldown = millis("cooldown.max_cooldown_ms", c.max_cooldown_ms, max_default, 1, MAX_COOLDOWN)?;
                BreakerPolicy::new(failures_to_open, cooldown, max_cooldown)?
            }
        };
        Ok(RoutingPolicy { strategy, max_attempts, per_attempt_timeout, overall_timeout, backoff, retry_on, breaker })
    }
}

/// Deserializes `T` from a map only: serde's derived structs also accept a positional
/// array (`["weighted", 3]`), which is no way to write a policy.
struct MapOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a routing policy object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visitor(std::marker::PhantomData)).map(MapOnly)
    }
}

impl TryFrom<MapOnly<RawRoutingPolicy>> for RoutingPolicy {
    type Error = PolicyError;

    fn try_from(raw: MapOnly<RawRoutingPolicy>) -> Result<Self, PolicyError> {
        RoutingPolicy::try_from(raw.0)
    }
}

fn ms(d: Duration) -> Option<i64> {
    Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl From<RoutingPolicy> for RawRoutingPolicy {
    /// Every field written out, so a stored policy does not change meaning when a
    /// default does.
    fn from(p: RoutingPolicy) -> Self {
        RawRoutingPolicy {
            strategy: Some(p.strategy.as_str().to_owned()),
            max_attempts: Some(i64::from(p.max_attempts)),
            per_attempt_timeout_ms: ms(p.per_attempt_timeout),
            overall_timeout_ms: ms(p.overall_timeout),
            backoff: Some(RawBackoff { base_ms: ms(p.backoff.base), max_ms: ms(p.backoff.max) }),
            retry_on: Some(p.retry_on.iter().map(|c| c.as_str().to_owned()).collect()),
            cooldown: Some(RawCooldown {
                failures_to_open: Some(i64::from(p.breaker.failures_to_open)),
                cooldown_ms: ms(p.breaker.cooldown),
                max_cooldown_ms: ms(p.breaker.max_cooldown),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RoutingPolicy, String> {
        serde_json::from_str::<RoutingPolicy>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_policy_is_the_default_and_round_trips() {
        let p = parse("{}").unwrap();
        assert_eq!(p, RoutingPolicy::default());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(parse(&json).unwrap(), p);
        assert!(json.contains(r#""retry_on":["connect","timeout","429","5xx"]"#), "{json}");
    }

    #[test]
    fn every_field_is_read() {
        let p = parse(
            r#"{"strategy":"weighted","max_attempts":5,"per_attempt_timeout_ms":1000,"overall_timeout_ms":4000,
                "backoff":{"base_ms":10,"max_ms":100},"retry_on":["429","409"],
                "cooldown":{"failures_to_open":2,"cooldown_ms":500,"max_cooldown_ms":500}}"#,
        )
        .unwrap();
        assert_eq!(p.strategy(), Strategy::Weighted);
        assert_eq!(p.max_attempts(), 5);
        assert_eq!(p.per_attempt_timeout(), Duration::from_secs(1));
        assert_eq!(p.overall_timeout(), Duration::from_secs(4));
        assert_eq!((p.backoff().base(), p.backoff().max()), (Duration::from_millis(10), Duration::from_millis(100)));
        assert_eq!(p.retry_on(), RetryOn::of(&[FailureClass::RateLimited, FailureClass::Conflict]));
        assert_eq!(p.breaker().failures_to_open(), 2);
        assert_eq!(p.breaker().cooldown_after(3), Duration::from_millis(500), "max = cooldown: fixed cooldown");
        assert_eq!(parse(&serde_json::to_string(&p).unwrap()).unwrap(), p);
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let cases = [
            (
                r#"{"strategy":"random"}"#,
                "routing policy strategy: must be \"priority\" or \"weighted\", got \"random\"",
            ),
            (r#"{"max_attempts":0}"#, "routing policy max_attempts: must be between 1 and 10, got 0"),
            (r#"{"max_attempts":11}"#, "routing policy max_attempts: must be between 1 and 10, got 11"),
            (r#"{"max_attempts":-3}"#, "routing policy max_attempts: must be between 1 and 10, got -3"),
            (
                r#"{"per_attempt_timeout_ms":0}"#,
                "routing policy per_attempt_timeout_ms: must be between 1 and 3600000 ms, got 0",
            ),
            (
                r#"{"overall_timeout_ms":3600001}"#,
                "routing policy overall_timeout_ms: must be between 1 and 3600000 ms, got 3600001",
            ),
            (
                r#"{"per_attempt_timeout_ms":5000,"overall_timeout_ms":1000}"#,
                "routing policy per_attempt_timeout_ms: must not exceed overall_timeout_ms",
            ),
            (
                r#"{"backoff":{"base_ms":200,"max_ms":100}}"#,
                "routing policy backoff.base_ms: must not exceed backoff.max_ms",
            ),
            (
                r#"{"backoff":{"max_ms":60001}}"#,
                "routing policy backoff.max_ms: must be between 0 and 60000 ms, got 60001",
            ),
            (
                r#"{"retry_on":["5xx","4xx"]}"#,
                "routing policy retry_on[1]: must be one of connect, timeout, 429, 5xx, 409 (4xx request errors are never retried), got \"4xx\"",
            ),
            (
                r#"{"cooldown":{"failures_to_open":-1}}"#,
                "routing policy cooldown.failures_to_open: must be between 0 and 1000, got -1",
            ),
            (
                r#"{"cooldown":{"cooldown_ms":0}}"#,
                "routing policy cooldown.cooldown_ms: must be between 1 and 86400000 ms, got 0",
            ),
            (
                r#"{"cooldown":{"cooldown_ms":9000,"max_cooldown_ms":1000}}"#,
                "routing policy cooldown.cooldown_ms: must not exceed cooldown.max_cooldown_ms",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(parse(json).unwrap_err(), want, "{json}");
        }
    }

    #[test]
    fn malformed_and_hostile_input_is_refused() {
        for json in [
            r#"{"stratgey":"weighted"}"#,
            r#"{"backoff":{"base":1}}"#,
            r#"{"cooldown":{"failures":1}}"#,
            r#"{"max_attempts":"3"}"#,
            r#"{"max_attempts":1.5}"#,
            r#"{"max_attempts":99999999999999999999999}"#,
            r#"{"retry_on":"5xx"}"#,
            r#"[]"#,
            r#"["weighted",3]"#,
            r#"null"#,
            r#"{"#,
        ] {
            assert!(parse(json).is_err(), "{json} must be refused");
        }
        assert!(parse(r#"{"stratgey":"weighted"}"#).unwrap_err().contains("unknown field `stratgey`"));
        let many = format!(r#"{{"retry_on":[{}]}}"#, vec![r#""5xx""#; 17].join(","));
        assert_eq!(parse(&many).unwrap_err(), "routing policy retry_on: at most 16 entries");
        let long = format!(r#"{{"strategy":"{}\u0007"}}"#, "x".repeat(10_000));
        let err = parse(&long).unwrap_err();
        assert!(err.len() < 200, "a hostile value is not echoed whole: {err}");
    }

    #[test]
    fn an_absent_deadline_follows_a_long_attempt_timeout() {
        let p = parse(r#"{"per_attempt_timeout_ms":600000}"#).unwrap();
        assert_eq!(p.overall_timeout(), Duration::from_secs(600));
        let p = parse(r#"{"backoff":{"max_ms":100}}"#).unwrap();
        assert_eq!(p.backoff().base(), Duration::from_millis(100), "base follows a smaller max");
    }

    #[test]
    fn an_empty_retry_on_retries_nothing() {
        let p = parse(r#"{"retry_on":[]}"#).unwrap();
        assert_eq!(p.retry_on(), RetryOn::NONE);
    }

    #[test]
    fn cooldowns_double_up_to_the_cap() {
        let b = BreakerPolicy::new(3, Duration::from_secs(10), Duration::from_secs(60)).unwrap();
        let got: Vec<u64> = (0..6).map(|n| b.cooldown_after(n).as_secs()).collect();
        assert_eq!(got, [10, 20, 40, 60, 60, 60]);
        assert_eq!(b.cooldown_after(u32::MAX), Duration::from_secs(60));
    }
}
