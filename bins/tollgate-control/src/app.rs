//! Wiring of the control-plane binary: flags → `tollgate-controlplane`.

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;
use tollgate_controlplane::{ControlPlane, RotationKeys, SecretSources};
use tollgate_edge::EdgeListener;

/// Flags; each also reads a `TOLLGATE_*` environment variable.
#[derive(Debug, Parser)]
#[command(name = "tollgate-control", version, about = "tollgate control plane: management REST API and gRPC")]
pub(crate) struct Args {
    /// sea-orm database URL: `sqlite://path/tollgate.db?mode=rwc` or `postgres://user@host/db`.
    #[arg(
        long,
        env = "TOLLGATE_DATABASE_URL",
        default_value = "sqlite://./data/tollgate.db?mode=rwc",
        hide_env_values = true
    )]
    database_url: String,
    /// Directory for generated secrets (admin token, master key, key pepper).
    #[arg(long, env = "TOLLGATE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Management REST listen address.
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN", default_value = "127.0.0.1:4001")]
    admin_listen: SocketAddr,
    /// gRPC listen address.
    #[arg(long, env = "TOLLGATE_GRPC_LISTEN", default_value = "127.0.0.1:4002")]
    grpc_listen: SocketAddr,
    /// Connection deadlines and the management and gRPC listeners' caps.
    #[command(flatten)]
    edge: tollgate_edge::EdgeFlags,
    /// Re-encrypt every provider credential under the key in `TOLLGATE_NEW_MASTER_KEY`
    /// (never a flag: flags show in `ps`), print a summary and exit. The key in use comes
    /// from `TOLLGATE_MASTER_KEY`, else from `master.key` in the data dir, which is then
    /// replaced (the old one kept as `master.key.previous`). Stop the control plane first.
    #[arg(long)]
    rotate_master_key: bool,
    /// Log format.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// OpenTelemetry collector (OTLP/gRPC) that receives request spans, e.g.
    /// http://otel-collector:4317. Off when unset.
    #[arg(long, env = "TOLLGATE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// `--rotate-master-key`: one transaction, a summary on stdout, exit.
async fn rotate(args: &Args) -> anyhow::Result<()> {
    use std::io::Write;
    let new = env("TOLLGATE_NEW_MASTER_KEY").context(
        "--rotate-master-key reads the new key from TOLLGATE_NEW_MASTER_KEY (base64 of 32 bytes); it is not set",
    )?;
    let keys = RotationKeys { current: env("TOLLGATE_MASTER_KEY"), new };
    let report = tollgate_controlplane::rotate_master_key_at(&args.database_url, &args.data_dir, &keys)
        .await
        .context("master key rotation failed; nothing was changed")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "master key rotated: {} provider credential(s) re-encrypted, fingerprint {} -> {} (revision {})",
        report.reencrypted, report.old_fingerprint, report.new_fingerprint, report.revision
    )?;
    if let Some(path) = &report.key_file {
        writeln!(out, "new key written to {} (old key kept as master.key.previous)", path.display())?;
    } else {
        writeln!(out, "start the control plane with TOLLGATE_MASTER_KEY set to the new key")?;
    }
    if !report.audited {
        writeln!(out, "warning: the audit event could not be written; see the log")?;
    }
    Ok(())
}

/// Logs on stderr; spans over OTLP too when an endpoint is given. Keep the returned
/// guard alive: dropping it flushes the spans still buffered.
fn init_tracing(format: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<tollgate_telemetry::Telemetry> {
    let opts = tollgate_telemetry::Options {
        service_name: "tollgate-control",
        json_logs: format == "json",
        otlp_endpoint: otlp_endpoint.filter(|e| !e.is_empty()),
    };
    tollgate_telemetry::init(opts).context("cannot set up logging and tracing")
}

/// Runs the control plane until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let _telemetry = init_tracing(&args.log_format, args.otlp_endpoint.as_deref())?;
    if args.rotate_master_key {
        return rotate(&args).await;
    }
    tollgate_controlplane::create_data_dir(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let cfg = tollgate_controlplane::Config {
        database_url: args.database_url.clone(),
        data_dir: args.data_dir.clone(),
        secrets: SecretSources {
            master_key: env("TOLLGATE_MASTER_KEY"),
            key_pepper: env("TOLLGATE_KEY_PEPPER"),
            admin_token: env("TOLLGATE_ADMIN_TOKEN"),
        },
    };
    let cp = Arc::new(ControlPlane::start(&cfg).await.context("cannot start the control plane")?);
    if let Some(token) = cp.generated_admin_token() {
        eprintln!(
            "\nGenerated admin token (also saved to {}, mode 0600):\n\n    {token}\n",
            args.data_dir.join("admin_token").display()
        );
    }
    let (admin_limits, grpc_limits) = (
        args.edge.admin().context("invalid connection limits")?,
        args.edge.grpc().context("invalid connection limits")?,
    );
    let rest = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen for the management API on {}", args.admin_listen))?;
    let grpc = tokio::net::TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", args.grpc_listen))?;
    let (rest, grpc) = (EdgeListener::new(rest, admin_limits, "admin"), EdgeListener::new(grpc, grpc_limits, "grpc"));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tracing::info!(admin = %args.admin_listen, grpc = %args.grpc_listen, "tollgate control plane listening");
    let (a, b) = (cp.clone(), cp.clone());
    let rest_task = tokio::spawn({
        let s = stopped(&stop_rx);
        async move { a.serve_rest(rest, s).await }
    });
    let grpc_task = tokio::spawn({
        let s = stopped(&stop_rx);
        async move { b.serve_grpc(grpc, s).await }
    });
    rest_task.await.context("REST task")?.context("management API failed")?;
    grpc_task.await.context("gRPC task")?.context("gRPC server failed")?;
    Ok(())
}
