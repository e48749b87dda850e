//! tollgate-routing: which upstream serves a request, in what order the alternatives are
//! tried, and when to stop.
//!
//! Owns, as pure logic over the snapshot (no I/O, no async, no clock, no global rng):
//! - the model [`Catalog`]: public names and one-level aliases (`fast` → `gpt-4o-mini`)
//!   mapped to [`Deployment`]s (a provider by name and that provider's model name), each
//!   with [`DeploymentOptions`] (priority, weight);
//! - [`RoutingPolicy`]: strategy (ordered fallback or weighted), attempts, per-attempt
//!   timeout, overall deadline, jittered backoff, which failures are retried, and the
//!   circuit breaker's settings; parsed from [`RawRoutingPolicy`] with errors naming the
//!   field;
//! - [`PolicySet`]: the policy of a request, key > project > team > organization >
//!   default;
//! - [`Health`]: one lock-free circuit [`Breaker`] per deployment, carried across
//!   snapshot swaps;
//! - [`Plan`]: one request's routing state machine — the next deployment to try, how
//!   long to wait and to allow, and when to give up — fed with [`Outcome`]s.
//!
//! Does not own: sending requests, sleeping or timing out (the data plane does, as the
//! plan says), provider errors (the data plane maps them into [`Outcome`]), rate limits
//! per credential (budgets), prices (metering), who may use a model (keys).
//!
//! Invariants:
//! - a catalog only holds models with 1 ..= [`MAX_DEPLOYMENTS`] deployments, and aliases
//!   always point at a model (never at an alias, never shadowing a model);
//! - a 4xx caused by the request (anything but 408, 409 and 429) is never retried, and
//!   nothing is retried once part of an answer reached the caller;
//! - a plan never makes more than `max_attempts` tries, never schedules a try past its
//!   deadline, and never allocates;
//! - a half-open breaker admits exactly one probe at a time, and a dropped plan gives its
//!   probe slot back.
//!
//! See the crate's README for the semantics table and how the data plane drives a plan.
#![forbid(unsafe_code)]

mod catalog;
mod health;
mod outcome;
mod plan;
mod policy;
mod policy_set;

pub use catalog::{
    Catalog, CatalogError, Deployment, DeploymentOptions, MAX_DEPLOYMENTS, MAX_NAME_LEN, MAX_WEIGHT, ModelRoute,
    PartMax, Resolved,
};
pub use health::{Admission, Breaker, BreakerState, Health, ProbeLease};
pub use outcome::{FailureClass, Outcome, RetryOn};
pub use plan::{Attempt, GiveUp, Next, Plan};
pub use policy::{
    Backoff, BreakerPolicy, MAX_ATTEMPTS_LIMIT, MAX_BACKOFF, MAX_COOLDOWN, MAX_FAILURES_TO_OPEN, MAX_TIMEOUT,
    PolicyError, RawBackoff, RawCooldown, RawRoutingPolicy, RoutingPolicy, Strategy,
};
pub use policy_set::{PolicyScope, PolicySet, PolicySource, PolicySubject};
