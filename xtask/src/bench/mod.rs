//! `cargo xtask bench`: end-to-end performance of the standalone gateway against a fast
//! fake OpenAI upstream, direct vs through tollgate, in the same run and load shape.
//!
//! Builds `tollgate-gateway` in release, starts the fake upstream as a separate process
//! (this binary re-executed as `xtask fake-upstream --port N`), starts the gateway with a
//! real key (allowlist, rpm limit, money budget, metering), then measures alternately
//! direct and through the gateway: single-connection latency, closed-loop saturation,
//! open-loop fixed-rate latency (coordinated omission corrected), streaming TTFB, the
//! gateway's CPU per request and RSS, and config propagation (a key revoked through the
//! admin API until the data plane refuses it). Then, unless `--skip-snapshot-load`, runs
//! the data plane's `snapshot_load` bench at 100,000 keys and folds in its load time,
//! RSS, and what one key change costs a loaded gateway against a full re-apply. Writes `target/bench/report.md` and `report.json`.
//!
//! Does not own: the gateway itself; targets are reported here, never asserted in tests.

pub(crate) mod load;
pub(crate) mod report;
pub(crate) mod upstream;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use load::{Endpoint, http_call};
use report::{Compare, Row, Target};
use serde_json::json;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
const CHAT_BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#;
const STREAM_BODY: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true}"#;

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone)]
struct Opts {
    /// Seconds per measured phase (each of direct and tollgate).
    duration: Duration,
    /// Connections in the saturation phase.
    conns: usize,
    quick: bool,
    /// Revocations timed in the config-propagation phase.
    revocations: usize,
    /// Skip the 100k-key snapshot-load bench.
    skip_snapshot_load: bool,
    /// The command line, for the report.
    command: String,
}

const USAGE: &str =
    "usage: cargo xtask bench [--quick] [--duration S] [--connections N] [--revocations N] [--skip-snapshot-load]";

fn parse_opts(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        duration: Duration::from_secs(5),
        conns: 32,
        quick: false,
        revocations: 20,
        skip_snapshot_load: false,
        command: ["cargo xtask bench"].into_iter().chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" "),
    };
    let mut it = args.iter();
    let mut duration_set = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--skip-snapshot-load" => o.skip_snapshot_load = true,
            "--revocations" => {
                let v = it.next().ok_or_else(|| anyhow!("--revocations needs a number"))?;
                o.revocations = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| anyhow!("bad --revocations {v:?}"))?;
            }
            "-h" | "--help" => bail!("{USAGE}"),
            "--duration" => {
                let v = it.next().ok_or_else(|| anyhow!("--duration needs a number of seconds"))?;
                let s: f64 = v.parse().with_context(|| format!("--duration {v:?} is not a number"))?;
                if !(0.1..=600.0).contains(&s) {
                    bail!("--duration must be between 0.1 and 600 seconds");
                }
                o.duration = Duration::from_secs_f64(s);
                duration_set = true;
            }
            "--connections" => {
                let v = it.next().ok_or_else(|| anyhow!("--connections needs a number"))?;
                o.conns = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| anyhow!("bad --connections {v:?}"))?;
            }
            other => bail!("unknown option {other:?}; {USAGE}"),
        }
    }
    if o.quick && !duration_set {
        o.duration = Duration::from_secs(1);
    }
    Ok(o)
}

/// A child process killed when dropped.
pub(crate) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The target directory cargo uses for this workspace (honours CARGO_TARGET_DIR).
pub(crate) fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["target_directory"].as_str().map(PathBuf::from).ok_or_else(|| anyhow!("no target_directory in cargo metadata"))
}

fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    report::parse_stat_cpu_ticks(&s).ok_or_else(|| anyhow!("unparsable /proc/{pid}/stat"))
}

pub(crate) fn mem_kib(pid: u32, field: &str) -> Option<u64> {
    report::parse_status_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, field)
}

pub(crate) fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "cpu": cpu,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "loadavg_at_end": read("/proc/loadavg"),
    })
}

/// Entry point of `cargo xtask bench`.
///
/// `cargo xtask` runs a debug build; a debug load generator would spend the CPU the
/// gateway and upstream need. So this builds the gateway *and* xtask in release and, when
/// running from a debug build, re-executes the release xtask (`--built` skips the build).
pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let (built, args) = strip_built(args);
    let opts = parse_opts(&args)?;
    let Some(release) = release_or_reexec(root, "bench", built, &args)? else { return Ok(()) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(bench(root, &release.join("tollgate-gateway"), &opts))
}

/// Whether `--built` is among `args`, and the other arguments.
pub(crate) fn strip_built(args: &[String]) -> (bool, Vec<String>) {
    (args.iter().any(|a| a == "--built"), args.iter().filter(|a| *a != "--built").cloned().collect())
}

/// Unless `built`, builds the gateway and xtask in release and, when this is a debug
/// build, re-executes the release xtask as `xtask <command> --built <args>` and returns
/// `None` once it has finished. Otherwise returns the release directory to run from.
pub(crate) fn release_or_reexec(
    root: &Path,
    command: &str,
    built: bool,
    args: &[String],
) -> anyhow::Result<Option<PathBuf>> {
    let release = target_dir(root)?.join("release");
    if built {
        return Ok(Some(release));
    }
    eprintln!("{command}: building tollgate-gateway and xtask (release)…");
    // `cargo xtask` runs under `cargo run`, which sets CARGO_MANIFEST_DIR; ring's build
    // script tracks it, so passing it on would rebuild ring and everything above it
    // whenever the release tree was last built from a plain shell (and back again).
    let st = Command::new(cargo())
        .args(["build", "--release", "-p", "tollgate-gateway", "-p", "xtask"])
        .env_remove("CARGO_MANIFEST_DIR")
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !st.success() {
        bail!("cargo build --release -p tollgate-gateway -p xtask failed");
    }
    if !cfg!(debug_assertions) {
        return Ok(Some(release));
    }
    let st = Command::new(release.join("xtask"))
        .arg(command)
        .arg("--built")
        .args(args)
        .current_dir(root)
        .status()
        .context("running the release xtask")?;
    if st.success() { Ok(None) } else { bail!("{command} failed ({st})") }
}

/// Runs the data plane's `snapshot_load` bench at 100,000 keys (its own process, so the
/// gateway's heap does not colour it) and returns its load row and its change row.
fn snapshot_load(root: &Path) -> anyhow::Result<(report::SnapshotLoad, report::ChangeApply)> {
    eprintln!("bench: snapshot load, 100,000 keys (cargo bench -p tollgate-dataplane --bench snapshot_load)");
    let out = Command::new(cargo())
        .args(["bench", "-p", "tollgate-dataplane", "--bench", "snapshot_load"])
        .env_remove("CARGO_MANIFEST_DIR")
        .env("TOLLGATE_BENCH_SNAPSHOT_KEYS", "100000")
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running the snapshot_load bench")?;
    if !out.status.success() {
        bail!("the snapshot_load bench failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let load = text
        .lines()
        .find_map(report::parse_snapshot_load_row)
        .ok_or_else(|| anyhow!("no result row in the snapshot_load output:\n{text}"))?;
    let change = text
        .lines()
        .find_map(report::parse_change_row)
        .ok_or_else(|| anyhow!("no change row in the snapshot_load output:\n{text}"))?;
    Ok((load, change))
}

/// Config propagation: `n` times, mint a key, wait until the data plane serves it, revoke
/// it through the admin REST API and poll the data plane until it answers 403
/// `virtual_key_revoked`. Each sample runs from just before the revoke call (the
/// operator's view: API write, snapshot rebuild, apply) to that first refusal.
async fn propagation(admin_addr: SocketAddr, data_addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let k = admin(admin_addr, "/api/v1/keys", json!({"project": "bench-project", "name": format!("revoke-{i}")}))
            .await?;
        let (Some(secret), Some(id)) = (k["key"].as_str(), k["id"].as_str()) else { bail!("no key in {k}") };
        let auth = format!("Bearer {secret}");
        let models = |auth: String| async move {
            http_call(data_addr, http::Method::GET, "/v1/models", Some(&auth), Bytes::new()).await
        };
        wait_until("a new key live on the data plane", Duration::from_secs(10), || {
            let f = models(auth.clone());
            async move { matches!(f.await, Ok((s, _)) if s.is_success()) }
        })
        .await?;
        let started = Instant::now();
        admin(admin_addr, &format!("/api/v1/keys/{id}/revoke"), json!({})).await?;
        loop {
            let (status, body) = models(auth.clone()).await?;
            if status == http::StatusCode::FORBIDDEN && body.windows(19).any(|w| w == b"virtual_key_revoked") {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("a revoked key still answered {status} after 30 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(started.elapsed());
    }
    Ok(samples)
}

pub(crate) async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

async fn admin(addr: SocketAddr, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, b) = http_call(addr, http::Method::POST, path, Some(&auth), Bytes::from(body.to_string())).await?;
    if !status.is_success() {
        bail!("POST {path} → {status}: {}", String::from_utf8_lossy(&b));
    }
    Ok(serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null))
}

/// A fake upstream and a standalone gateway serving one key through it, both killed when
/// dropped: what `bench` and `soak` measure.
pub(crate) struct Stack {
    /// The fake upstream's address.
    pub(crate) up_addr: SocketAddr,
    /// The gateway's data-plane listener.
    pub(crate) data_addr: SocketAddr,
    /// The gateway's admin listener.
    pub(crate) admin_addr: SocketAddr,
    /// The gateway's process id.
    pub(crate) pid: u32,
    /// `Bearer <key>` of a key allowed model `bench`, with a huge rpm limit and budget.
    pub(crate) auth: String,
    // Dropped (killed) in this order: the gateway, then the upstream.
    _gateway: Proc,
    _upstream: Proc,
}

impl Stack {
    /// Starts the fake upstream (this binary, re-executed, with `faults_pct` percent of
    /// faulty answers) and the gateway `gateway_bin` (data under `tmp`, log in
    /// `tmp/gateway.log`, `extra_args` appended), and sets up provider, model, team,
    /// project and key through the admin API.
    pub(crate) async fn start(
        gateway_bin: &Path,
        tmp: &Path,
        faults_pct: u64,
        extra_args: &[String],
    ) -> anyhow::Result<Stack> {
        // Fake upstream: this binary, re-executed.
        let up_port = free_port()?;
        let up_addr: SocketAddr = ([127, 0, 0, 1], up_port).into();
        let upstream = Proc(
            Command::new(std::env::current_exe()?)
                .args(["fake-upstream", "--port", &up_port.to_string(), "--faults", &faults_pct.to_string()])
                .stdin(Stdio::null())
                .spawn()
                .context("starting the fake upstream")?,
        );
        wait_until("fake upstream", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(up_addr).await.is_ok()
        })
        .await?;

        // Standalone gateway.
        let (d, a, g) = (free_port()?, free_port()?, free_port()?);
        let data_addr: SocketAddr = ([127, 0, 0, 1], d).into();
        let admin_addr: SocketAddr = ([127, 0, 0, 1], a).into();
        let log = std::fs::File::create(tmp.join("gateway.log"))?;
        let gw = Proc(
            Command::new(gateway_bin)
                .arg("--standalone")
                .arg("--data-dir")
                .arg(tmp.join("data"))
                .args(["--listen", &data_addr.to_string(), "--admin-listen", &admin_addr.to_string()])
                .args(["--grpc-listen", &format!("127.0.0.1:{g}")])
                .args(extra_args)
                .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("TOLLGATE_LOG", "warn")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", gateway_bin.display()))?,
        );
        let pid = gw.0.id();
        wait_until("gateway /readyz", Duration::from_secs(60), || async move {
            matches!(http_call(data_addr, http::Method::GET, "/readyz", None, Bytes::new()).await, Ok((s, _)) if s.is_success())
        })
        .await
        .with_context(|| format!("gateway log: {}", tmp.join("gateway.log").display()))?;

        admin(
            admin_addr,
            "/api/v1/providers",
            json!({"name": "fake", "kind": "openai-compatible", "base_url": format!("http://{up_addr}/v1"), "api_key": "sk-bench-upstream-0123456789"}),
        )
        .await?;
        admin(
            admin_addr,
            "/api/v1/models",
            json!({"name": "bench", "deployments": [{"provider": "fake", "model": "gpt-4o-mini"}],
                   "pricing": {"input_per_mtok": "0.15", "output_per_mtok": "0.6"}}),
        )
        .await?;
        admin(admin_addr, "/api/v1/teams", json!({"name": "bench-team"})).await?;
        admin(admin_addr, "/api/v1/projects", json!({"name": "bench-project", "team": "bench-team"})).await?;
        let k = admin(
            admin_addr,
            "/api/v1/keys",
            json!({"project": "bench-project", "models_allowed": ["bench"], "rpm": 100_000_000,
                   "budget": {"limit_usd": "1000000", "window": "day", "on_breach": "block"}}),
        )
        .await?;
        let key = k["key"].as_str().ok_or_else(|| anyhow!("no key in {k}"))?.to_owned();
        let auth = format!("Bearer {key}");
        {
            let auth = auth.clone();
            wait_until("key live on the data plane", Duration::from_secs(10), move || {
                let auth = auth.clone();
                async move {
                    matches!(http_call(data_addr, http::Method::GET, "/v1/models", Some(&auth), Bytes::new()).await, Ok((s, _)) if s.is_success())
                }
            })
            .await?;
        }
        Ok(Stack { up_addr, data_addr, admin_addr, pid, auth, _gateway: gw, _upstream: upstream })
    }
}

async fn bench(root: &Path, gateway_bin: &Path, opts: &Opts) -> anyhow::Result<()> {
    // The machine may be shared: the load before and after goes in the report.
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned();
    let tmp = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;

    let stack = Stack::start(gateway_bin, &tmp, 0, &[]).await?;
    let (up_addr, data_addr, admin_addr, pid) = (stack.up_addr, stack.data_addr, stack.admin_addr, stack.pid);
    let auth = stack.auth.clone();

    let direct = Endpoint::new(up_addr, None);
    let via = Endpoint::new(data_addr, Some(auth.clone()));
    let chat = Bytes::from_static(CHAT_BODY.as_bytes());
    let stream = Bytes::from_static(STREAM_BODY.as_bytes());
    // Both must answer 200 before anything is measured.
    for (name, ep) in [("direct", &direct), ("tollgate", &via)] {
        let (s, b) =
            http_call(ep.addr, http::Method::POST, "/v1/chat/completions", ep.auth.as_deref(), chat.clone()).await?;
        if !s.is_success() {
            bail!("{name} smoke request → {s}: {}", String::from_utf8_lossy(&b));
        }
    }

    let d = opts.duration;
    let mut errors = serde_json::Map::new();
    let mut note = |phase: &str, who: &str, e: u64| {
        if e > 0 {
            eprintln!("bench: {e} non-200 answers in {phase} ({who})");
        }
        errors.insert(format!("{phase}/{who}"), json!(e));
    };

    eprintln!("bench: warm-up");
    let warm = d.min(Duration::from_secs(2));
    load::saturate(&direct, &chat, 8, warm).await?;
    load::saturate(&via, &chat, 8, warm).await?;

    eprintln!("bench: single connection, sequential ({d:?} each)");
    let sd = load::sequential(&direct, &chat, d, false).await?;
    let sg = load::sequential(&via, &chat, d, false).await?;
    note("single", "direct", sd.errors);
    note("single", "tollgate", sg.errors);

    eprintln!("bench: saturation, {} connections ({d:?} each)", opts.conns);
    let satd = load::saturate(&direct, &chat, opts.conns, d).await?;
    let tck = clk_tck();
    let t0 = cpu_ticks(pid)?;
    let satg = load::saturate(&via, &chat, opts.conns, d).await?;
    let t1 = cpu_ticks(pid)?;
    note("saturation", "direct", satd.errors);
    note("saturation", "tollgate", satg.errors);
    let cpu_us = report::cpu_us_per_request(t1.saturating_sub(t0), tck, satg.ok);

    eprintln!("bench: open loop 1,000 req/s ({d:?} each)");
    let o1d = load::open_loop(&direct, &chat, 1_000, 16, d).await?;
    let o1g = load::open_loop(&via, &chat, 1_000, 16, d).await?;
    note("open1000", "direct", o1d.errors);
    note("open1000", "tollgate", o1g.errors);

    eprintln!("bench: open loop 5,000 req/s ({d:?} each)");
    let o5d = load::open_loop(&direct, &chat, 5_000, 64, d).await?;
    let o5g = load::open_loop(&via, &chat, 5_000, 64, d).await?;
    note("open5000", "direct", o5d.errors);
    note("open5000", "tollgate", o5g.errors);

    eprintln!("bench: streaming time to first byte ({d:?} each)");
    let td = load::sequential(&direct, &stream, d, true).await?;
    let tg = load::sequential(&via, &stream, d, true).await?;
    note("ttfb", "direct", td.errors);
    note("ttfb", "tollgate", tg.errors);

    let rss = mem_kib(pid, "VmRSS").map(|k| k as f64 / 1024.0);
    let hwm = mem_kib(pid, "VmHWM").map(|k| k as f64 / 1024.0);
    // What the gateway metered for the key: proof the full path (budget, ledger) ran.
    let own = http_call(data_addr, http::Method::GET, "/v1/key", Some(&auth), Bytes::new()).await.ok();
    let spent = own
        .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["budgets"].clone())
        .unwrap_or_default();

    eprintln!("bench: config propagation, {} revocations", opts.revocations);
    let revocations = propagation(admin_addr, data_addr, opts.revocations).await?;
    drop(stack);
    let snapshot = if opts.skip_snapshot_load { None } else { Some(snapshot_load(root)?) };

    let p = report::pct_us;
    let lat = |m: &str, dv: f64, gv: f64, t: Target| Row {
        measure: m.into(),
        unit: "µs",
        direct: Some(dv),
        tollgate: Some(gv),
        compare: Compare::Difference,
        target: t,
    };
    let rows = vec![
        lat("latency p50, 1 connection (added)", p(&sd.hist, 50.0), p(&sg.hist, 50.0), Target::AtMost(50.0)),
        lat("latency p99, 1 connection (added)", p(&sd.hist, 99.0), p(&sg.hist, 99.0), Target::None),
        Row {
            measure: format!("saturated throughput, {} conns", opts.conns),
            unit: "req/s",
            direct: Some(satd.rate(d)),
            tollgate: Some(satg.rate(d)),
            compare: Compare::Ratio,
            target: Target::AtLeast(0.25),
        },
        lat("latency p50 at saturation", p(&satd.hist, 50.0), p(&satg.hist, 50.0), Target::None),
        lat("open loop 1,000 req/s p50", p(&o1d.hist, 50.0), p(&o1g.hist, 50.0), Target::None),
        lat("open loop 1,000 req/s p99", p(&o1d.hist, 99.0), p(&o1g.hist, 99.0), Target::AtMost(500.0)),
        lat("open loop 1,000 req/s p99.9", p(&o1d.hist, 99.9), p(&o1g.hist, 99.9), Target::None),
        lat("open loop 5,000 req/s p50", p(&o5d.hist, 50.0), p(&o5g.hist, 50.0), Target::None),
        lat("open loop 5,000 req/s p99", p(&o5d.hist, 99.0), p(&o5g.hist, 99.0), Target::None),
        lat("open loop 5,000 req/s p99.9", p(&o5d.hist, 99.9), p(&o5g.hist, 99.9), Target::None),
        lat("streaming TTFB p50 (added)", p(&td.hist, 50.0), p(&tg.hist, 50.0), Target::AtMost(100.0)),
        Row {
            measure: "gateway CPU per request (saturation)".into(),
            unit: "µs",
            direct: None,
            tollgate: cpu_us,
            compare: Compare::Own,
            target: Target::AtMost(50.0),
        },
        Row {
            measure: "gateway RSS after load".into(),
            unit: "MiB",
            direct: None,
            tollgate: rss,
            compare: Compare::Own,
            target: Target::AtMost(40.0),
        },
        Row {
            measure: "gateway peak RSS (VmHWM)".into(),
            unit: "MiB",
            direct: None,
            tollgate: hwm,
            compare: Compare::Own,
            target: Target::None,
        },
    ];
    let mut rows = rows;
    let ms = |q: f64| Some(report::quantile(&revocations, q).as_secs_f64() * 1e3);
    let own = |measure: String, unit: &'static str, v: Option<f64>, target: Target| Row {
        measure,
        unit,
        direct: None,
        tollgate: v,
        compare: Compare::Own,
        target,
    };
    let n = revocations.len();
    rows.push(own(format!("revocation visible, p50 of {n}"), "ms", ms(50.0), Target::None));
    rows.push(own(format!("revocation visible, p99 of {n}"), "ms", ms(99.0), Target::AtMost(1000.0)));
    rows.push(own(format!("revocation visible, max of {n}"), "ms", ms(100.0), Target::None));
    if let Some((s, c)) = &snapshot {
        rows.push(own(
            "snapshot load, 100k keys (decode + apply)".into(),
            "ms",
            Some(s.decode_ms + s.apply_ms),
            Target::None,
        ));
        rows.push(own(
            "RSS with 100k keys loaded (data plane alone)".into(),
            "MiB",
            Some(s.rss_after_mib),
            Target::AtMost(64.0),
        ));
        rows.push(own("peak RSS loading 100k keys (VmHWM)".into(), "MiB", Some(s.hwm_mib), Target::None));
        rows.push(own("full snapshot re-apply, 100k keys".into(), "ms", Some(c.full_ms), Target::None));
        rows.push(own("key mint as a Watch change, 100k keys (apply)".into(), "ms", Some(c.mint_ms), Target::None));
        rows.push(own(
            "key revocation as a Watch change, 100k keys (apply)".into(),
            "ms",
            Some(c.revoke_ms),
            Target::None,
        ));
        rows.push(own("key mint change on the wire".into(), "bytes", Some(c.mint_bytes), Target::None));
        rows.push(own("full snapshot on the wire, 100k keys".into(), "MiB", Some(c.snapshot_mib), Target::None));
    }

    let mut meta = machine();
    if let Some(o) = meta.as_object_mut() {
        o.insert("command".into(), json!(opts.command));
        o.insert("loadavg_at_start".into(), json!(load_at_start));
        o.insert("phase_seconds".into(), json!(d.as_secs_f64()));
        o.insert("saturation_connections".into(), json!(opts.conns));
        o.insert("clk_tck".into(), json!(tck));
        o.insert("gateway_requests_in_saturation".into(), json!(satg.ok));
        o.insert("gateway_cpu_ticks_in_saturation".into(), json!(t1.saturating_sub(t0)));
        o.insert("non_200".into(), serde_json::Value::Object(errors));
        o.insert("key_budgets_after".into(), spent);
    }
    let md = report::markdown(&rows);
    let out = root.join("target").join("bench");
    std::fs::create_dir_all(&out)?;
    let header = format!(
        "# {}\n\nmachine: {} × {} · kernel {} · load at start {} · at end {} · {:.1} s per phase\n\n",
        opts.command,
        meta["nproc"],
        meta["cpu"].as_str().unwrap_or("?"),
        meta["kernel"].as_str().unwrap_or("?"),
        load_at_start,
        meta["loadavg_at_end"].as_str().unwrap_or("?"),
        d.as_secs_f64()
    );
    std::fs::write(out.join("report.md"), format!("{header}{md}"))?;
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report::json(&rows, meta))?)?;
    // The table is this command's output (stderr carries progress).
    std::io::Write::write_all(&mut std::io::stdout(), format!("{header}{md}").as_bytes())?;
    eprintln!("bench: wrote {}", out.join("report.md").display());
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
