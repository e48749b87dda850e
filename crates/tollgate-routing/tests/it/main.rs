//! Integration tests of the routing engine: plans over a catalog, health and policies,
//! driven with a seeded rng and an explicit clock (no sleeping, no timing assertions).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod plans;
mod properties;
mod support;
mod weighted;
