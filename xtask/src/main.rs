//! xtask: repository chores in Rust, run as `cargo xtask <command>`.
//!
//! `tidy` checks the workspace's Architecture Invariants (docs/architecture.md): the
//! dependency rule between crates, versions pinned once at the root, a `//!` doc atop
//! every source file and `#![forbid(unsafe_code)]` in every library. The same check runs
//! as an ordinary `#[test]`, so `cargo test --workspace` fails when the layering breaks.
//!
//! `bench` builds the gateway in release and measures it end to end against a fake
//! upstream, direct vs through tollgate (see `bench/mod.rs` and docs/performance.md).
//!
//! `fuzz [--smoke]` runs the cargo-fuzz targets of `fuzz/` and fails on a crash (CI runs
//! the smoke); `soak --minutes N` drives the gateway with mixed and hostile traffic
//! against a faulty upstream and reports RSS, fds and latency per minute.
//!
//! Does not own: anything the shipped binaries do.

mod bench;
mod fuzz;
mod soak;
mod tidy;

use anyhow::bail;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tidy") => {
            let problems = tidy::check(&workspace_root())?;
            if problems.is_empty() {
                eprintln!("tidy: ok");
                Ok(())
            } else {
                for p in &problems {
                    eprintln!("tidy: {p}");
                }
                bail!("{} tidy problem(s)", problems.len())
            }
        }
        Some("bench") => bench::run(&workspace_root(), &args[1..]),
        Some("fuzz") => fuzz::run(&workspace_root(), &args[1..]),
        Some("soak") => soak::run(&workspace_root(), &args[1..]),
        // Hidden: the fake upstream `bench` starts as its own process.
        Some("fake-upstream") => bench::upstream::run(&args[1..]),
        _ => bail!(
            "usage: cargo xtask tidy | cargo xtask bench [--quick] [--duration S] [--connections N] | \
             cargo xtask fuzz [--smoke] [--seconds N] [TARGET...] | cargo xtask soak --minutes N"
        ),
    }
}

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}
