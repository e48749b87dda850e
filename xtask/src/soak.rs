//! `cargo xtask soak --minutes N`: the standalone gateway under mixed traffic for N
//! minutes, with a faulty upstream and hostile clients, reporting per minute what would
//! show a leak or a drift: the gateway's RSS and open file descriptors, p50/p99 latency,
//! and the count of each outcome. Not run in CI (it takes minutes by design).
//!
//! Builds the gateway and xtask in release (as `bench` does), starts the fake upstream
//! with `--faults PCT` (resets, stalls past the gateway's deadlines, garbage) and the
//! gateway with short upstream deadlines, then drives, paced at `--rate` requests/s over
//! `--connections` keep-alive connections: non-streaming and streaming chat, streams the
//! client hangs up on after the first bytes; beside them, bad keys (401) and hostile
//! sockets (a body that stops coming, a silent connection, a hang-up mid-body, a large
//! body under a bad key), at most `HOSTILE_IN_FLIGHT` at once, each held until the
//! gateway closes it or `HOSTILE_HOLD` passes. After the load, one more sample once the
//! gateway has been idle. Writes `target/soak/report.md` (and prints it).
//!
//! Does not own: the gateway; nothing is asserted about the figures.

use crate::bench::load::{self, http_call};
use crate::bench::{self, Stack, report};
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str = "usage: cargo xtask soak --minutes N [--rate R] [--connections N] [--faults PCT]";
const CHAT: &str = r#"{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#;
const STREAM: &str = r#"{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true}"#;
/// Well formed (`tg_` + 49 base62) but no key: the gateway must refuse it.
const BAD_KEY: &str = "Bearer tg_0000000000000000000000000000000000000000000000000";
/// Hostile sockets open at once.
const HOSTILE_IN_FLIGHT: usize = 64;
/// How long a hostile socket waits for the gateway to close it.
const HOSTILE_HOLD: Duration = Duration::from_secs(30);

/// Options of `cargo xtask soak`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Opts {
    /// Minutes of load.
    pub(crate) minutes: u64,
    /// One report row per this long (a minute; shorter only for trying the command out).
    pub(crate) interval: Duration,
    /// Well-behaved requests per second, all connections together.
    pub(crate) rate: u64,
    /// Keep-alive connections of well-behaved traffic.
    pub(crate) conns: u64,
    /// Percent of upstream answers that misbehave.
    pub(crate) faults: u64,
    /// The command line, for the report.
    pub(crate) command: String,
}

/// Parses the arguments after `soak`.
pub(crate) fn parse_opts(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        minutes: 0,
        interval: Duration::from_secs(60),
        rate: 200,
        conns: 32,
        faults: 5,
        command: ["cargo xtask soak"].into_iter().chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" "),
    };
    let mut it = args.iter();
    let num = |name: &str, v: Option<&String>, range: std::ops::RangeInclusive<u64>| -> anyhow::Result<u64> {
        let v = v.ok_or_else(|| anyhow!("{name} needs a number"))?;
        v.parse()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| anyhow!("bad {name} {v:?}: a whole number from {} to {}", range.start(), range.end()))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => o.minutes = num("--minutes", it.next(), 1..=24 * 60)?,
            "--rate" => o.rate = num("--rate", it.next(), 1..=100_000)?,
            "--connections" => o.conns = num("--connections", it.next(), 1..=1024)?,
            "--faults" => o.faults = num("--faults", it.next(), 0..=100)?,
            // Hidden: shorter rows, to try the command out in seconds.
            "--interval-secs" => o.interval = Duration::from_secs(num("--interval-secs", it.next(), 1..=3600)?),
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown option {other:?}; {USAGE}"),
        }
    }
    if o.minutes == 0 {
        bail!("--minutes is required; {USAGE}");
    }
    Ok(o)
}

/// Counts of one report row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Well-behaved requests answered 200 in full (streams ended with `[DONE]`).
    pub(crate) ok: u64,
    /// Of those, streams.
    pub(crate) streams: u64,
    /// Answered 5xx, or a stream ended by an error event: the injected upstream faults.
    pub(crate) upstream_errors: u64,
    /// Connection failures and any other answer to a well-behaved request.
    pub(crate) other_errors: u64,
    /// Streams the client hung up on after the first bytes.
    pub(crate) hangups: u64,
    /// Bad keys answered 401.
    pub(crate) refused: u64,
    /// Bad keys answered anything else (should stay 0).
    pub(crate) bad_key_not_refused: u64,
    /// Hostile sockets the gateway closed (or answered) within `HOSTILE_HOLD`.
    pub(crate) hostile_closed: u64,
    /// Hostile sockets still open after `HOSTILE_HOLD`, closed by the client.
    pub(crate) hostile_open: u64,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// `1`, `2`, … or `idle` for the sample taken after the load.
    pub(crate) label: String,
    /// What happened in the interval.
    pub(crate) counts: Counts,
    /// Latency of the successful requests, milliseconds.
    pub(crate) p50_ms: Option<f64>,
    /// Latency of the successful requests, milliseconds.
    pub(crate) p99_ms: Option<f64>,
    /// Gateway RSS at the end of the interval, MiB.
    pub(crate) rss_mib: Option<f64>,
    /// Gateway open file descriptors at the end of the interval.
    pub(crate) fds: Option<u64>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// The report table, one line per row.
pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| minute | ok (streams) | p50 ms | p99 ms | upstream faults seen | other errors | hang-ups | \
         bad keys 401 / not | hostile closed / open | RSS MiB | fds |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let c = &r.counts;
        s.push_str(&format!(
            "| {} | {} ({}) | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} |\n",
            r.label,
            c.ok,
            c.streams,
            opt(r.p50_ms, 2),
            opt(r.p99_ms, 2),
            c.upstream_errors,
            c.other_errors,
            c.hangups,
            c.refused,
            c.bad_key_not_refused,
            c.hostile_closed,
            c.hostile_open,
            opt(r.rss_mib, 1),
            r.fds.map_or_else(|| "–".to_owned(), |n| n.to_string()),
        ));
    }
    s
}

/// What the workers add to until the sampler takes it.
struct Window {
    counts: Counts,
    hist: Histogram<u64>,
}

type Shared = Arc<Mutex<Window>>;

fn note(w: &Shared, f: impl FnOnce(&mut Counts)) {
    if let Ok(mut w) = w.lock() {
        f(&mut w.counts);
    }
}

fn take_row(w: &Shared, label: String, pid: u32) -> anyhow::Result<Row> {
    let (counts, hist) = {
        let mut w = w.lock().map_err(|_| anyhow!("a soak worker panicked"))?;
        let fresh = report::histogram()?;
        (std::mem::take(&mut w.counts), std::mem::replace(&mut w.hist, fresh))
    };
    let q = |p: f64| (!hist.is_empty()).then(|| report::pct_us(&hist, p) / 1_000.0);
    Ok(Row {
        label,
        counts,
        p50_ms: q(50.0),
        p99_ms: q(99.0),
        rss_mib: bench::mem_kib(pid, "VmRSS").map(|k| k as f64 / 1024.0),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count() as u64),
    })
}

/// Entry point of `cargo xtask soak`.
pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let (built, args) = bench::strip_built(args);
    let opts = parse_opts(&args)?;
    let Some(release) = bench::release_or_reexec(root, "soak", built, &args)? else { return Ok(()) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(soak(root, &release.join("tollgate-gateway"), &opts))
}

async fn soak(root: &Path, gateway_bin: &Path, opts: &Opts) -> anyhow::Result<()> {
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned();
    let tmp = std::env::temp_dir().join(format!("tollgate-soak-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    // Short upstream deadlines, so the upstream's stalls end within a row.
    let extra: Vec<String> =
        ["--upstream-timeout-s", "5", "--stream-idle-timeout-s", "3"].iter().map(|s| (*s).to_owned()).collect();
    let stack = Stack::start(gateway_bin, &tmp, opts.faults, &extra).await?;
    let pid = stack.pid;
    let shared: Shared = Arc::new(Mutex::new(Window { counts: Counts::default(), hist: report::histogram()? }));
    let mut rows = vec![take_row(&shared, "start".into(), pid)?];
    eprintln!(
        "soak: {} minute(s), {} req/s over {} connections, {}% upstream faults",
        opts.minutes, opts.rate, opts.conns, opts.faults
    );

    let started = Instant::now();
    let end = started + opts.interval * u32::try_from(opts.minutes).unwrap_or(u32::MAX);
    let mut tasks = Vec::new();
    for c in 0..opts.conns {
        let (w, auth) = (shared.clone(), stack.auth.clone());
        let period = Duration::from_secs_f64(opts.conns as f64 / opts.rate as f64);
        tasks.push(tokio::spawn(well_behaved(stack.data_addr, auth, w, c, period, end)));
    }
    tasks.push(tokio::spawn(bad_keys(stack.data_addr, shared.clone(), end)));
    tasks.push(tokio::spawn(hostile(stack.data_addr, stack.auth.clone(), shared.clone(), end)));

    for minute in 1..=opts.minutes {
        tokio::time::sleep_until((started + opts.interval * u32::try_from(minute).unwrap_or(u32::MAX)).into()).await;
        let row = take_row(&shared, minute.to_string(), pid)?;
        eprint!("soak: {}", markdown(std::slice::from_ref(&row)).lines().last().unwrap_or_default());
        eprintln!();
        rows.push(row);
    }
    for t in tasks {
        t.abort();
    }
    // Hostile sockets still held are released within HOSTILE_HOLD; then give the gateway
    // a moment to notice every closed connection and settle.
    tokio::time::sleep(HOSTILE_HOLD + Duration::from_secs(5)).await;
    rows.push(take_row(&shared, "idle".into(), pid)?);
    drop(stack);

    let meta = bench::machine();
    let header = format!(
        "# {}\n\nmachine: {} × {} · kernel {} · load at start {} · at end {}\n\n\
         {} req/s over {} keep-alive connections (6 in 10 non-streaming, 3 streaming, 1 stream \
         hung up after its first bytes); bad keys 10/s; up to {HOSTILE_IN_FLIGHT} hostile sockets \
         at once (slow body, silent, hang-up mid-body, 1 MiB body under a bad key), each held \
         up to {} s; {}% of upstream answers faulty (reset, stall 8 s, garbage), gateway \
         `--upstream-timeout-s 5 --stream-idle-timeout-s 3`. Latency: successful requests, \
         whole body, on the load generator's clock.\n\n",
        opts.command,
        meta["nproc"],
        meta["cpu"].as_str().unwrap_or("?"),
        meta["kernel"].as_str().unwrap_or("?"),
        load_at_start,
        meta["loadavg_at_end"].as_str().unwrap_or("?"),
        opts.rate,
        opts.conns,
        HOSTILE_HOLD.as_secs(),
        opts.faults,
    );
    let md = format!("{header}{}", markdown(&rows));
    let out = root.join("target").join("soak");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.md"), &md)?;
    std::io::Write::write_all(&mut std::io::stdout(), md.as_bytes())?;
    eprintln!("soak: wrote {}", out.join("report.md").display());
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// What one well-behaved request came to.
enum Outcome {
    Ok { stream: bool },
    UpstreamError,
    Other,
    HungUp,
}

/// Sends one request on `s` and reads the answer; `hang_up` drops a stream after its
/// first bytes.
async fn one(
    s: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    auth: &str,
    stream: bool,
    hang_up: bool,
) -> anyhow::Result<Outcome> {
    s.ready().await?;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/chat/completions")
        .header(header::HOST, addr.to_string())
        .header(header::AUTHORIZATION, auth)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(if stream { STREAM } else { CHAT }.as_bytes())))?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if hang_up && status == StatusCode::OK {
        let _ = body.frame().await;
        return Ok(Outcome::HungUp);
    }
    let bytes = body.collect().await?.to_bytes();
    Ok(match status {
        StatusCode::OK if !stream => Outcome::Ok { stream },
        StatusCode::OK if bytes.ends_with(b"data: [DONE]\n\n") => Outcome::Ok { stream },
        StatusCode::OK => Outcome::UpstreamError,
        s if s.is_server_error() => Outcome::UpstreamError,
        _ => Outcome::Other,
    })
}

async fn well_behaved(addr: SocketAddr, auth: String, w: Shared, c: u64, period: Duration, end: Instant) {
    let mut conn = None;
    let mut next = Instant::now() + period.mul_f64(c as f64 / 8.0);
    for i in c.. {
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        next += period;
        let (stream, hang_up) = match i % 10 {
            0..=5 => (false, false),
            6..=8 => (true, false),
            _ => (true, true),
        };
        let s = match conn.take() {
            Some(s) => s,
            None => match load::connect(addr).await {
                Ok(s) => s,
                Err(_) => {
                    note(&w, |c| c.other_errors += 1);
                    continue;
                }
            },
        };
        let mut s = s;
        let t = Instant::now();
        let got = one(&mut s, addr, &auth, stream, hang_up).await;
        let took = t.elapsed();
        match got {
            Ok(Outcome::Ok { stream }) => {
                if let Ok(mut w) = w.lock() {
                    report::record(&mut w.hist, took);
                    w.counts.ok += 1;
                    w.counts.streams += u64::from(stream);
                }
                conn = Some(s);
            }
            // The hung-up connection is dropped with its unread body.
            Ok(Outcome::HungUp) => note(&w, |c| c.hangups += 1),
            Ok(Outcome::UpstreamError) => {
                note(&w, |c| c.upstream_errors += 1);
                conn = Some(s);
            }
            Ok(Outcome::Other) => {
                note(&w, |c| c.other_errors += 1);
                conn = Some(s);
            }
            Err(_) => note(&w, |c| c.other_errors += 1),
        }
    }
}

async fn bad_keys(addr: SocketAddr, w: Shared, end: Instant) {
    while Instant::now() < end {
        let body = Bytes::from_static(CHAT.as_bytes());
        match http_call(addr, Method::POST, "/v1/chat/completions", Some(BAD_KEY), body).await {
            Ok((StatusCode::UNAUTHORIZED, _)) => note(&w, |c| c.refused += 1),
            _ => note(&w, |c| c.bad_key_not_refused += 1),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kinds of hostile socket, taken in turn.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    /// Headers with `content-length: 1000`, 10 bytes of body, then nothing.
    SlowBody,
    /// Connects and sends nothing.
    Silent,
    /// Headers and half a body, then the client closes.
    HangUpMidBody,
    /// A 1 MiB body under a bad key.
    LargeBadKey,
}

async fn hostile(addr: SocketAddr, auth: String, w: Shared, end: Instant) {
    let permits = Arc::new(tokio::sync::Semaphore::new(HOSTILE_IN_FLIGHT));
    let kinds = [Hostile::SlowBody, Hostile::Silent, Hostile::HangUpMidBody, Hostile::LargeBadKey];
    for i in 0usize.. {
        if Instant::now() >= end {
            break;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let (w, auth, kind) = (w.clone(), auth.clone(), kinds[i % kinds.len()]);
        tokio::spawn(async move {
            let closed = hostile_one(addr, &auth, kind).await;
            match closed {
                Ok(true) => note(&w, |c| c.hostile_closed += 1),
                Ok(false) => note(&w, |c| c.hostile_open += 1),
                Err(_) => note(&w, |c| c.hostile_closed += 1),
            }
            drop(permit);
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs one hostile socket; true when the gateway closed it (or answered) within
/// `HOSTILE_HOLD`.
async fn hostile_one(addr: SocketAddr, auth: &str, kind: Hostile) -> anyhow::Result<bool> {
    let mut s = TcpStream::connect(addr).await.context("connect")?;
    let head = |auth: &str, len: usize| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: {auth}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        )
    };
    match kind {
        Hostile::SlowBody => {
            s.write_all(head(auth, 1000).as_bytes()).await?;
            s.write_all(br#"{"model":"#).await?;
        }
        Hostile::Silent => {}
        Hostile::HangUpMidBody => {
            s.write_all(head(auth, CHAT.len()).as_bytes()).await?;
            s.write_all(&CHAT.as_bytes()[..CHAT.len() / 2]).await?;
            return Ok(true);
        }
        Hostile::LargeBadKey => {
            s.write_all(head(BAD_KEY, 1 << 20).as_bytes()).await?;
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..16 {
                // The gateway may answer 401 and close before the body is sent.
                if s.write_all(&chunk).await.is_err() {
                    return Ok(true);
                }
            }
        }
    }
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + HOSTILE_HOLD;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Ok(false),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(true),
            // The bad key's answer: the connection may then stay for keep-alive.
            Ok(Ok(_)) if matches!(kind, Hostile::LargeBadKey) => return Ok(true),
            // An answer to a body that never came (408, 400): read on until the close.
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn minutes_are_required_and_the_rest_has_defaults() {
        let o = parse_opts(&args(&["--minutes", "3"])).unwrap();
        assert_eq!((o.minutes, o.rate, o.conns, o.faults), (3, 200, 32, 5));
        assert_eq!(o.interval, Duration::from_secs(60));
        assert_eq!(o.command, "cargo xtask soak --minutes 3");
        assert!(parse_opts(&[]).is_err());
        let o =
            parse_opts(&args(&["--minutes", "1", "--rate", "50", "--faults", "0", "--interval-secs", "5"])).unwrap();
        assert_eq!((o.rate, o.faults, o.interval), (50, 0, Duration::from_secs(5)));
        for bad in [&["--minutes", "0"][..], &["--minutes", "x"], &["--minutes", "1", "--faults", "101"], &["--nope"]] {
            assert!(parse_opts(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_report_has_a_line_per_row_with_every_figure() {
        let rows = [
            Row {
                label: "1".into(),
                counts: Counts {
                    ok: 100,
                    streams: 40,
                    upstream_errors: 5,
                    other_errors: 1,
                    hangups: 10,
                    refused: 600,
                    bad_key_not_refused: 0,
                    hostile_closed: 30,
                    hostile_open: 2,
                },
                p50_ms: Some(1.234),
                p99_ms: Some(12.5),
                rss_mib: Some(31.3),
                fds: Some(42),
            },
            Row {
                label: "idle".into(),
                counts: Counts::default(),
                p50_ms: None,
                p99_ms: None,
                rss_mib: None,
                fds: None,
            },
        ];
        let md = markdown(&rows);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4, "{md}");
        assert_eq!(lines[2], "| 1 | 100 (40) | 1.23 | 12.50 | 5 | 1 | 10 | 600 / 0 | 30 / 2 | 31.3 | 42 |");
        assert_eq!(lines[3], "| idle | 0 (0) | – | – | 0 | 0 | 0 | 0 / 0 | 0 / 0 | – | – |");
        let columns = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| columns(l) == columns(lines[0])), "{md}");
    }
}
