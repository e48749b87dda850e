//! The control plane's REST and gRPC suite (`tests/it`) once more, on PostgreSQL: every
//! test control plane gets a fresh database on `TOLLGATE_TEST_POSTGRES_URL`'s server,
//! dropped with it. Without that variable (a fresh machine) it says so and runs on SQLite;
//! `.ci/run` sets it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test helper is a failed test

#[path = "it/main.rs"]
mod suite;

pub(crate) use suite::*;

/// Every test control plane of this binary runs on PostgreSQL.
pub(crate) const BACKEND: Backend = Backend::Postgres;
