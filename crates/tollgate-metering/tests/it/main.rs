//! Integration tests of the ledger: the writer, its spool and a sink, through the public
//! API only — outages, crashes, damaged spools, rejected entries; and the prompt bound
//! budgets reserve from, against generated conversations.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test helper is a failed test

mod dead_letters;
mod journal;
mod prompt_bound;
mod support;
mod writer;
