//! End-to-end tests of the standalone gateway binary: management REST → key → chat
//! completions through a fake upstream, and the error contract at the edges.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test helper is a failed test

mod admission;
mod budgets;
mod crash;
mod edges;
mod hardcaps;
mod hostile;
mod identity;
mod limits;
mod metering;
mod observability;
mod priority;
mod rotation;
mod routing;
mod scopes;
mod sdk;
mod shared;
mod standalone;
mod upstream_faults;
