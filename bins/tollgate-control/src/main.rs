//! `tollgate-control`: the control plane alone (REST management API and gRPC), over
//! SQLite or PostgreSQL. Parses flags and calls [`app::run`].

mod app;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    app::run(app::Args::parse()).await
}
