//! `tollctl`: the operator CLI, talking gRPC to the control plane. Parses flags and
//! calls [`cli::run`].
#![allow(clippy::print_stdout)] // a CLI's output is stdout

mod apply;
mod budgets;
mod catalog;
mod cli;
mod keys;
mod providers;
mod security;
mod tenancy;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match cli::run(cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
