//! `tollgate-gateway`: the data plane, standalone (control plane embedded) or as a
//! replica fed by a remote control plane. Parses flags and calls [`app::run`].

mod app;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    app::run(app::Args::parse()).await
}
