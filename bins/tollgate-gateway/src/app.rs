//! Wiring of the gateway binary: flags → library crates.

use anyhow::{Context, bail};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_budgets::{Amount, Budgets, BudgetsConfig, RateLimiter, RedisStore};
use tollgate_controlplane::{ControlPlane, FeedItem, SecretSources, Subscription};
use tollgate_core::{BudgetId, Timestamp};
use tollgate_dataplane::{BudgetSeeder, DataPlane, SpendFuture, SpendSource, Update, WatchConfig};
use tollgate_edge::EdgeListener;
use tollgate_metering::{LedgerConfig, LedgerSink, LedgerWriter};

/// Flags; each also reads a `TOLLGATE_*` environment variable.
#[derive(Debug, Parser)]
#[command(name = "tollgate-gateway", version, about = "tollgate data plane: a multi-tenant LLM gateway")]
pub(crate) struct Args {
    /// Run with the control plane embedded (REST, gRPC and SQLite in this process).
    #[arg(long, env = "TOLLGATE_STANDALONE", conflicts_with = "control_plane")]
    standalone: bool,
    /// With --standalone: seed a mock provider, a `demo` model and project, and print a key.
    #[arg(long, env = "TOLLGATE_DEMO", requires = "standalone")]
    demo: bool,
    /// Directory for the SQLite database and generated secrets (standalone), and for the
    /// ledger spool (`ledger.spool`, both modes): entries wait there while the database or
    /// the control plane is unreachable, so it must survive restarts (a persistent volume)
    /// and belong to one gateway only (a second gateway on the same spool refuses to start).
    #[arg(long, env = "TOLLGATE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Database URL for the embedded control plane (default: SQLite in the data dir).
    #[arg(long, env = "TOLLGATE_DATABASE_URL")]
    database_url: Option<String>,
    /// Data-plane listen address.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Management REST listen address (standalone).
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN", default_value = "127.0.0.1:4001")]
    admin_listen: SocketAddr,
    /// gRPC listen address (standalone).
    #[arg(long, env = "TOLLGATE_GRPC_LISTEN", default_value = "127.0.0.1:4002")]
    grpc_listen: SocketAddr,
    /// Connection deadlines and the management and gRPC listeners' caps.
    #[command(flatten)]
    edge: tollgate_edge::EdgeFlags,
    /// Most connections open at once on the data-plane listener; more are closed as soon
    /// as they are accepted.
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Remote control plane gRPC endpoint, e.g. http://10.0.0.5:4002.
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE")]
    control_plane: Option<String>,
    /// Admin token used to watch the remote control plane (default: TOLLGATE_ADMIN_TOKEN).
    #[arg(long, env = "TOLLGATE_CONTROL_PLANE_TOKEN", hide_env_values = true)]
    control_plane_token: Option<String>,
    /// Redis URL for counters shared between gateways.
    #[arg(long, env = "TOLLGATE_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Prefix of every Redis key tollgate writes, so several deployments can share one
    /// Redis. For Redis Cluster use a hash tag, e.g. `{tollgate}:`.
    #[arg(long, env = "TOLLGATE_REDIS_KEY_PREFIX", default_value = "tollgate:")]
    redis_key_prefix: String,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Memory all buffered request bodies may hold at once, in bytes; above it requests
    /// are refused at once with 503 `overloaded` and `retry-after`.
    #[arg(long, env = "TOLLGATE_MAX_BUFFERED_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_buffered_body_bytes: usize,
    /// Seconds allowed for an upstream's response head.
    #[arg(long, env = "TOLLGATE_UPSTREAM_TIMEOUT_S", default_value_t = 300)]
    upstream_timeout_s: u64,
    /// PEM file of certificate authorities to trust for upstreams, besides the public
    /// ones (e.g. a self-hosted model server behind a private CA).
    #[arg(long, env = "TOLLGATE_UPSTREAM_CA_FILE")]
    upstream_ca_file: Option<std::path::PathBuf>,

    /// Seconds an upstream may stay silent while its answer is streaming before the
    /// gateway gives up on it.
    #[arg(long, env = "TOLLGATE_STREAM_IDLE_TIMEOUT_S", default_value_t = 120)]
    stream_idle_timeout_s: u64,

    /// Distinct virtual keys given their own series on `/metrics` (0: no per-key
    /// series; keys past the cap are counted as `other`).
    #[arg(long, env = "TOLLGATE_METRICS_KEY_LABELS", default_value_t = 0)]
    metrics_key_labels: usize,

    /// Distinct principals given their own series on `/metrics` (0: no per-principal
    /// series; principals past the cap are counted as `other`).
    #[arg(long, env = "TOLLGATE_METRICS_PRINCIPAL_LABELS", default_value_t = 0)]
    metrics_principal_labels: usize,

    /// Consecutive failures after which an upstream is put in cooldown (0: never).
    #[arg(long, env = "TOLLGATE_COOLDOWN_FAILURES", default_value_t = 5)]
    cooldown_failures: u32,

    /// Seconds an upstream in cooldown is skipped before one probe request is let through.
    #[arg(long, env = "TOLLGATE_COOLDOWN_S", default_value_t = 30)]
    cooldown_s: u64,
    /// URL that receives budget alerts as JSON POSTs (retried with backoff).
    #[arg(long, env = "TOLLGATE_ALERT_WEBHOOK_URL")]
    alert_webhook_url: Option<http::Uri>,
    /// Seconds after which a reservation left by a crashed gateway stops counting
    /// (default: twice the upstream timeout).
    #[arg(long, env = "TOLLGATE_RESERVATION_TTL_S")]
    reservation_ttl_s: Option<u64>,
    /// Log format.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// When the crash-safe ledger log (`<data-dir>/ledger-log`) is fsynced:
    /// `interval:<ms>` (default `interval:50`), `always` or `never`. Each request writes
    /// an intent line before it is dispatched and its settled entry before its last byte
    /// leaves; a process crash (kill -9, OOM) loses none of them once written. A machine
    /// crash or power cut loses at most the last interval (`never`: what the OS had not
    /// written back; `always`: nothing, at the cost of two disk syncs per request).
    #[arg(long, env = "TOLLGATE_LEDGER_FSYNC", default_value = "interval:50")]
    ledger_fsync: tollgate_metering::FsyncPolicy,
    /// Print the ledger entries the sink refused as invalid (the dead letters of
    /// `--data-dir`, retried every minute while the gateway runs) as JSON lines, and exit.
    #[arg(long)]
    list_rejected_ledger: bool,
    /// OpenTelemetry collector (OTLP/gRPC) that receives request spans, e.g.
    /// http://otel-collector:4317. Off when unset.
    #[arg(long, env = "TOLLGATE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

/// Secrets come only from the environment, never from flags (flags show up in `ps`).
fn secret_sources() -> SecretSources {
    SecretSources {
        master_key: std::env::var("TOLLGATE_MASTER_KEY").ok().filter(|s| !s.is_empty()),
        key_pepper: std::env::var("TOLLGATE_KEY_PEPPER").ok().filter(|s| !s.is_empty()),
        admin_token: std::env::var("TOLLGATE_ADMIN_TOKEN").ok().filter(|s| !s.is_empty()),
    }
}

/// Logs on stderr; spans over OTLP too when an endpoint is given. Keep the returned
/// guard alive: dropping it flushes the spans still buffered.
fn init_tracing(format: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<tollgate_telemetry::Telemetry> {
    let opts = tollgate_telemetry::Options {
        service_name: "tollgate-gateway",
        json_logs: format == "json",
        otlp_endpoint: otlp_endpoint.filter(|e| !e.is_empty()),
    };
    tollgate_telemetry::init(opts).context("cannot set up logging and tracing")
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn stopped(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Runs the gateway until a shutdown signal.
/// The certificates of a PEM file (at least one).
fn read_ca_file(path: &std::path::Path) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the upstream CA file {}", path.display()))?;
    if certs.is_empty() {
        bail!("the upstream CA file {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// The ledger writer's settings for `data_dir`: the spool and the crash-safe log beside it.
fn ledger_config(args: &Args) -> LedgerConfig {
    let mut config = LedgerConfig::new(args.data_dir.join("ledger.spool"));
    config.journal_dir = Some(args.data_dir.join("ledger-log"));
    config.fsync = args.ledger_fsync;
    config
}

/// `--list-rejected-ledger`: the dead letters, one JSON entry per line.
fn list_rejected(args: &Args) -> anyhow::Result<()> {
    use std::io::Write;
    let spool = args.data_dir.join("ledger.spool");
    let entries = tollgate_metering::rejected_entries(&spool)
        .with_context(|| format!("cannot read the dead letters beside {}", spool.display()))?;
    let mut out = std::io::stdout().lock();
    for e in &entries {
        writeln!(out, "{}", serde_json::to_string(e)?)?;
    }
    Ok(())
}

/// Logs what the ledger log recovered at start: requests a crash cut after dispatch.
fn report_recovery(ledger: &LedgerWriter) {
    let r = ledger.journal_recovery();
    if r.recovered > 0 {
        tracing::warn!(
            recovered = r.recovered,
            "requests dispatched before the last crash were settled from the ledger log as `recovered` \
             (charged their prompt's estimate); reconcile them with the provider's bill"
        );
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if args.list_rejected_ledger {
        return list_rejected(&args);
    }
    let telemetry = init_tracing(&args.log_format, args.otlp_endpoint.as_deref())?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = tollgate_dataplane::Config { max_body_bytes: args.max_body_bytes, ..Default::default() };
    config.max_buffered_body_bytes = args.max_buffered_body_bytes;
    config.upstream.request_timeout = Duration::from_secs(args.upstream_timeout_s);
    if let Some(path) = &args.upstream_ca_file {
        config.upstream.extra_roots = read_ca_file(path)?;
    }
    config.stream_idle_timeout = Duration::from_secs(args.stream_idle_timeout_s.max(1));
    config.metrics_key_labels = args.metrics_key_labels.min(10_000);
    config.metrics_principal_labels = args.metrics_principal_labels.min(10_000);
    config.trace_attributes = telemetry.traces_exported();
    config.breaker = tollgate_dataplane::BreakerConfig {
        failures_to_open: args.cooldown_failures,
        cooldown: Duration::from_secs(args.cooldown_s.max(1)),
    };
    config.alerts.webhook_url = args.alert_webhook_url.clone();
    let budgets_config = BudgetsConfig::new(Duration::from_secs(
        args.reservation_ttl_s.unwrap_or(args.upstream_timeout_s.saturating_mul(2)),
    ));
    let (budgets, limiter) = match &args.redis_url {
        Some(url) => {
            let store = RedisStore::connect(url, &args.redis_key_prefix)
                .await
                .context("cannot connect to Redis for shared counters")?;
            tracing::info!("budget and rate-limit counters shared through Redis");
            (Budgets::new(store.clone(), budgets_config), RateLimiter::new(store))
        }
        None => (Budgets::memory(budgets_config), RateLimiter::memory()),
    };
    let dp = DataPlane::with_counters(config, budgets, limiter).context("cannot build the upstream client")?;
    // Tokenizer tables for usage estimates load in the background, off the first request.
    tokio::task::spawn_blocking(tollgate_metering::tokens::warm);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let data_limits = args.edge.limits(args.max_connections).context("invalid connection limits")?;
    let (admin_limits, grpc_limits) = (
        args.edge.admin().context("invalid connection limits")?,
        args.edge.grpc().context("invalid connection limits")?,
    );
    let data_listener = EdgeListener::new(bind(args.listen, "the data plane").await?, data_limits, "data");
    let ledger_to_close: Option<LedgerWriter>;
    let mut tasks = tokio::task::JoinSet::new();

    if args.standalone {
        tollgate_controlplane::create_data_dir(&args.data_dir)
            .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
        let database_url = args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", args.data_dir.join("tollgate.db").display()));
        let cp_config =
            tollgate_controlplane::Config { database_url, data_dir: args.data_dir.clone(), secrets: secret_sources() };
        let cp = Arc::new(ControlPlane::start(&cp_config).await.context("cannot start the embedded control plane")?);
        if let Some(token) = cp.generated_admin_token() {
            let path = args.data_dir.join("admin_token");
            // Shown once, on the terminal only, never through the logger.
            eprintln!("\nGenerated admin token (also saved to {}, mode 0600):\n\n    {token}\n", path.display());
        }
        if args.demo {
            let key = cp.seed_demo().await.context("cannot seed the demo setup")?;
            eprintln!(
                "\nDemo ready. Virtual key for model \"demo\":\n\n    {key}\n\nTry:\n    curl -s http://{}/v1/chat/completions -H \"Authorization: Bearer {key}\" \\\n      -H 'content-type: application/json' -d '{{\"model\":\"demo\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'\n",
                args.listen
            );
        }
        // The ledger: every request that reached an upstream, written to the database in
        // batches and spooled beside it if the database is unavailable. Leftovers of an
        // earlier run are replayed, and requests a crash cut after dispatch are settled from
        // the ledger log as `recovered`, before the budget counters are rebuilt from it.
        let sink: Arc<dyn LedgerSink> = Arc::new(cp.service().store().clone());
        let (ledger, _) = LedgerWriter::start(sink, ledger_config(&args))
            .with_context(|| format!("cannot open the ledger spool and log in {}", args.data_dir.display()))?;
        report_recovery(&ledger);
        if let Err(e) = ledger.flush().await {
            tracing::warn!(error = %e, "ledger entries of an earlier run are still spooled; budgets may start low");
        }
        dp.set_ledger(ledger.clone());
        ledger_to_close = Some(ledger);

        // In-process feed: exactly what remote gateways receive over Watch (the full
        // snapshot, then one change per revision), through the same apply path. Budget
        // counters are a cache of the ledger: each budget (or budget epoch) seen for the
        // first time is seeded with its window's spend before the update that brings it
        // is applied, so a restart or a new budget never starts from zero spend.
        let mut feed = cp.subscribe(0);
        let mut seeder = BudgetSeeder::new(Arc::new(LocalLedger(cp.clone())));
        // Serve nothing older than what is already written (the demo seed, say): the
        // publisher builds snapshots asynchronously, so wait for it to catch up.
        let written = *cp.service().revisions().borrow();
        let catch_up = tokio::time::Instant::now() + Duration::from_secs(10);
        while !dp.snapshot().loaded || dp.snapshot().revision < written {
            match tokio::time::timeout_at(catch_up, feed.next()).await {
                Ok(Some(items)) => apply_local(&cp, &dp, &mut seeder, &mut feed, &items).await,
                _ => break,
            }
        }
        let (feed_cp, feed_dp) = (cp.clone(), dp.clone());
        tokio::spawn(async move {
            while let Some(items) = feed.next().await {
                apply_local(&feed_cp, &feed_dp, &mut seeder, &mut feed, &items).await;
            }
        });
        let rest = EdgeListener::new(bind(args.admin_listen, "the management API").await?, admin_limits, "admin");
        let grpc = EdgeListener::new(bind(args.grpc_listen, "gRPC").await?, grpc_limits, "grpc");
        let (cp1, cp2) = (cp.clone(), cp.clone());
        let stop = stop_rx.clone();
        tasks.spawn(async move { cp1.serve_rest(rest, stopped(&stop)).await.context("management API failed") });
        let stop = stop_rx.clone();
        tasks.spawn(async move { cp2.serve_grpc(grpc, stopped(&stop)).await.context("gRPC server failed") });
        tracing::info!(data = %args.listen, admin = %args.admin_listen, grpc = %args.grpc_listen, "tollgate standalone listening");
    } else if let Some(endpoint) = args.control_plane.clone() {
        let token = args
            .control_plane_token
            .clone()
            .or_else(|| std::env::var("TOLLGATE_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
            .context("--control-plane needs a token: set TOLLGATE_CONTROL_PLANE_TOKEN or TOLLGATE_ADMIN_TOKEN")?;
        // The ledger: batches pushed to the control plane over gRPC, spooled in the data
        // dir while it is unreachable and replayed in order when it returns.
        tollgate_controlplane::create_data_dir(&args.data_dir)
            .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
        let spool = args.data_dir.join("ledger.spool");
        let grpc_ledger = Arc::new(
            tollgate_dataplane::GrpcLedgerSink::new(&endpoint, &token)
                .context("cannot set up the ledger stream to the control plane")?,
        );
        let sink: Arc<dyn LedgerSink> = grpc_ledger.clone();
        let (ledger, _) = LedgerWriter::start(sink, ledger_config(&args))
            .with_context(|| format!("cannot open the ledger spool and log in {}", args.data_dir.display()))?;
        report_recovery(&ledger);
        dp.set_ledger(ledger.clone());
        ledger_to_close = Some(ledger);
        // Budget counters are seeded from the control plane's ledger exactly as in
        // standalone mode, before each snapshot that brings a new budget (or epoch).
        let seeder = BudgetSeeder::new(grpc_ledger);
        let cfg = WatchConfig { endpoint: endpoint.clone(), token, max_backoff: Duration::from_secs(5) };
        tokio::spawn(tollgate_dataplane::watch_control_plane(dp.clone(), cfg, seeder));
        tracing::info!(data = %args.listen, control_plane = %endpoint, spool = %spool.display(), "tollgate gateway listening");
    } else {
        bail!("choose a mode: --standalone, or --control-plane http://HOST:4002");
    }

    let stop = stop_rx.clone();
    let dp_serve = dp.clone();
    tasks.spawn(async move {
        tollgate_dataplane::serve(dp_serve, data_listener, stopped(&stop)).await.context("data plane failed")
    });
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                result = Err(e);
                break;
            }
            Err(e) => {
                result = Err(anyhow::anyhow!("a server task panicked: {e}"));
                break;
            }
        }
    }
    if let Some(ledger) = ledger_to_close
        && let Err(e) = ledger.shutdown().await
    {
        tracing::error!(error = %e, "ledger could not be flushed at shutdown; entries stay in the spool");
    }
    result
}

/// Standalone mode's spend source: the embedded control plane reads its own ledger.
struct LocalLedger(Arc<ControlPlane>);

impl SpendSource for LocalLedger {
    fn budget_spend<'a>(&'a self, id: &'a BudgetId, at: Timestamp) -> SpendFuture<'a> {
        Box::pin(async move {
            let (money, tokens) = self.0.service().budget_spend(id, at).await?;
            Ok(Amount { money, tokens })
        })
    }
}

/// Applies what the in-process feed yielded, in order. A change out of step with the
/// gateway (never expected in process) is refused whole by the data plane; the feed then
/// starts again from the revision the gateway has.
async fn apply_local(
    cp: &ControlPlane,
    dp: &DataPlane,
    seeder: &mut BudgetSeeder,
    feed: &mut Subscription,
    items: &[FeedItem],
) {
    for item in items {
        let update = match item {
            FeedItem::Snapshot(s) => Update::Snapshot(s),
            FeedItem::Change(c) => Update::Change(c),
        };
        seeder.seed_update(dp, update).await;
        if let Err(e) = dp.apply_update(update) {
            tracing::error!(error = %e, "in-process configuration change refused; following again from this revision");
            let at = dp.snapshot();
            *feed = cp.subscribe(if at.loaded { at.revision } else { 0 });
            return;
        }
    }
}
