//! The data plane's request path driven in process: a `DataPlane` built from a wire
//! snapshot, served on a loopback port, in front of the testkit's `FakeUpstream`s, with
//! an in-memory ledger sink. Each test says one thing a caller (or the platform billing
//! from the ledger) can see. One binary, so it links once; fast enough to run on every
//! change (`cargo test -p tollgate-dataplane --test it`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test's failure is a failed test

mod caps;
mod refusals;
mod routing;
mod settlement;
mod streaming;
mod support;
mod translation;
