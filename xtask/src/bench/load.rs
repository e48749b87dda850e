//! The load generator of `cargo xtask bench`: keep-alive HTTP/1.1 connections (raw hyper
//! http1), a sequential single-connection mode, a closed-loop saturation mode and an
//! open-loop fixed-rate mode measured from each request's intended send time.

use super::report::{self, corrected_latency, intended_offset};
use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Where requests go: the upstream directly, or the gateway with a virtual key.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// `Bearer …` sent as `authorization`, if any.
    pub(crate) auth: Option<String>,
}

impl Endpoint {
    pub(crate) fn new(addr: SocketAddr, auth: Option<String>) -> Endpoint {
        Endpoint { addr, auth }
    }
}

/// What a phase measured: latencies of successful requests, their count, and failures.
pub(crate) struct Outcome {
    pub(crate) hist: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
}

impl Outcome {
    fn new() -> anyhow::Result<Outcome> {
        Ok(Outcome { hist: report::histogram()?, ok: 0, errors: 0 })
    }

    fn merge(&mut self, o: Outcome) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&o.hist);
        self.ok += o.ok;
        self.errors += o.errors;
    }

    /// Successful requests per second over `d`.
    pub(crate) fn rate(&self, d: Duration) -> f64 {
        self.ok as f64 / d.as_secs_f64()
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(
    ep_addr: SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Bytes,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut b = Request::builder().method(method).uri(path).header(header::HOST, ep_addr.to_string());
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    if !body.is_empty() {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    Ok(b.body(Full::new(body))?)
}

/// One request on a fresh connection (setup and checks, not measured).
pub(crate) async fn http_call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut s = connect(addr).await?;
    let resp = s.send_request(request(addr, method, path, auth, body)?).await?;
    let status = resp.status();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// Sends one chat request on `s`; with `ttfb`, returns the time until the first non-empty
/// body frame (the body is drained afterwards), else until the whole body has arrived.
/// `Ok(None)` for a non-200 answer.
async fn one(
    s: &mut SendRequest<Full<Bytes>>,
    ep: &Endpoint,
    body: &Bytes,
    ttfb: bool,
) -> anyhow::Result<Option<Instant>> {
    s.ready().await?;
    let resp = s
        .send_request(request(ep.addr, Method::POST, "/v1/chat/completions", ep.auth.as_deref(), body.clone())?)
        .await?;
    let ok = resp.status() == StatusCode::OK;
    let mut b = resp.into_body();
    let mut first = None;
    while let Some(f) = b.frame().await {
        let f = f?;
        if ttfb && first.is_none() && f.data_ref().is_some_and(|d| !d.is_empty()) {
            first = Some(Instant::now());
        }
    }
    Ok(ok.then(|| first.unwrap_or_else(Instant::now)))
}

/// One connection, one request at a time, for `d`: latency with no queueing.
pub(crate) async fn sequential(ep: &Endpoint, body: &Bytes, d: Duration, ttfb: bool) -> anyhow::Result<Outcome> {
    let mut s = connect(ep.addr).await?;
    let mut out = Outcome::new()?;
    let end = Instant::now() + d;
    while Instant::now() < end {
        let t = Instant::now();
        match one(&mut s, ep, body, ttfb).await? {
            Some(done) => {
                report::record(&mut out.hist, done - t);
                out.ok += 1;
            }
            None => out.errors += 1,
        }
    }
    Ok(out)
}

/// Closed loop: `conns` keep-alive connections each sending as fast as answers come, for `d`.
pub(crate) async fn saturate(ep: &Endpoint, body: &Bytes, conns: usize, d: Duration) -> anyhow::Result<Outcome> {
    let end = Instant::now() + d;
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (ep, body) = (ep.clone(), body.clone());
        let mut s = connect(ep.addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::new()?;
            while Instant::now() < end {
                let t = Instant::now();
                match one(&mut s, &ep, &body, false).await? {
                    Some(done) if done <= end => {
                        report::record(&mut out.hist, done - t);
                        out.ok += 1;
                    }
                    Some(_) => {} // finished after the phase: not counted in the rate
                    None => out.errors += 1,
                }
            }
            anyhow::Ok(out)
        }));
    }
    collect(tasks).await
}

/// Open loop: `rate` requests/s spread evenly over `conns` connections for `d`; each
/// latency runs from the request's intended send time (coordinated omission corrected).
pub(crate) async fn open_loop(
    ep: &Endpoint,
    body: &Bytes,
    rate: u64,
    conns: u64,
    d: Duration,
) -> anyhow::Result<Outcome> {
    let mut senders = Vec::new();
    for _ in 0..conns {
        senders.push(connect(ep.addr).await?);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for (c, mut s) in (0..conns).zip(senders) {
        let (ep, body) = (ep.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::new()?;
            let mut prev_done = Duration::ZERO;
            for j in 0.. {
                let intended = intended_offset(c, j, rate, conns);
                if intended >= d {
                    break;
                }
                tokio::time::sleep_until((start + intended).into()).await;
                let sent = Instant::now().saturating_duration_since(start);
                match one(&mut s, &ep, &body, false).await? {
                    Some(done) => {
                        let done = done.saturating_duration_since(start);
                        report::record(&mut out.hist, corrected_latency(intended, prev_done, sent, done));
                        prev_done = done;
                        out.ok += 1;
                    }
                    None => {
                        prev_done = Instant::now().saturating_duration_since(start);
                        out.errors += 1;
                    }
                }
            }
            anyhow::Ok(out)
        }));
    }
    collect(tasks).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Outcome>>>) -> anyhow::Result<Outcome> {
    let mut all = Outcome::new()?;
    for t in tasks {
        match t.await {
            Ok(r) => all.merge(r?),
            Err(e) => bail!("load task failed: {e}"),
        }
    }
    Ok(all)
}
