//! Integration tests of tollgate-providers, one binary: golden translation fixtures,
//! the adapters' I/O against a local server, and hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adapters;
mod golden;
mod hostile;
