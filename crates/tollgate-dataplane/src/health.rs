//! The gateway's default routing policy, from its breaker flags (`--cooldown-failures`,
//! `--cooldown-s`). The breakers themselves are the routing crate's — one per
//! deployment, in the snapshot, carried over from one snapshot to the next — and a
//! policy attached by the control plane (key > project > team > organization) replaces
//! this default whole.

use std::time::Duration;
use tollgate_routing::{RawCooldown, RawRoutingPolicy, RoutingPolicy};

/// Breaker settings of the default routing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a deployment's breaker (0: never).
    pub failures_to_open: u32,
    /// How long an open breaker skips the deployment before one probe; a failed probe
    /// opens it again for as long.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures_to_open: 5, cooldown: Duration::from_secs(30) }
    }
}

/// The routing crate's defaults (ordered fallback, 3 attempts, jittered backoff, retry on
/// connect errors, timeouts, 429 and 5xx) with the gateway's breaker settings, clamped to
/// the bounds a policy allows.
pub(crate) fn default_policy(breaker: BreakerConfig) -> RoutingPolicy {
    let cooldown_ms = i64::try_from(breaker.cooldown.as_millis()).unwrap_or(i64::MAX).clamp(1, 86_400_000);
    let raw = RawRoutingPolicy {
        cooldown: Some(RawCooldown {
            failures_to_open: Some(i64::from(breaker.failures_to_open.min(1000))),
            cooldown_ms: Some(cooldown_ms),
            max_cooldown_ms: Some(cooldown_ms),
        }),
        ..RawRoutingPolicy::default()
    };
    RoutingPolicy::try_from(raw).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "breaker settings out of bounds; using the default routing policy");
        RoutingPolicy::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_flags_become_the_default_policys_fixed_cooldown() {
        let p = default_policy(BreakerConfig { failures_to_open: 2, cooldown: Duration::from_secs(7) });
        let b = p.breaker();
        assert_eq!(
            (b.failures_to_open(), b.cooldown(), b.max_cooldown()),
            (2, Duration::from_secs(7), Duration::from_secs(7))
        );
        assert_eq!(p.max_attempts(), RoutingPolicy::default().max_attempts());
        // Out-of-range flags are clamped, not refused.
        let p = default_policy(BreakerConfig { failures_to_open: 5000, cooldown: Duration::from_secs(10 * 86_400) });
        assert_eq!((p.breaker().failures_to_open(), p.breaker().cooldown()), (1000, Duration::from_secs(86_400)));
    }
}
