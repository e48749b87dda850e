//! The fake OpenAI upstream of `cargo xtask bench` and `cargo xtask soak`, run as its own
//! process (`xtask fake-upstream --port N [--faults PCT]`): fixed bytes, no JSON parsing,
//! HTTP/1.1 keep-alive, one current-thread runtime so it uses at most one core.
//!
//! With `--faults PCT` (the soak), that percentage of requests misbehave, in turn: the
//! connection is reset (before the head, or mid-stream), the answer stalls past the
//! gateway's deadlines, or the body is garbage (not JSON; binary mid-stream).

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A chat completion with usage (12 prompt + 5 completion tokens).
const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;

/// An SSE chat stream ending with a usage-only chunk and `[DONE]`.
const STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

/// Whether a request body asks for a stream (`"stream":true`, with or without a space).
pub(crate) fn wants_stream(body: &[u8]) -> bool {
    let has = |n: &[u8]| body.windows(n.len()).any(|w| w == n);
    has(b"\"stream\":true") || has(b"\"stream\": true")
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a request gets from a faulty upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A normal answer.
    None,
    /// The connection is dropped: before the head, or after the first event of a stream.
    Reset,
    /// Nothing for longer than the gateway waits (head, or between stream events).
    Stall,
    /// Garbage: a body that is not JSON, or a binary event mid-stream.
    Garbage,
}

/// The fault of request number `n` when `pct` percent misbehave: spread evenly over every
/// hundred requests, kinds taken in turn.
pub(crate) fn fault_of(n: u64, pct: u64) -> Fault {
    let pct = pct.min(100);
    if pct == 0 || (n % 100) * pct / 100 == ((n % 100) + 1) * pct / 100 {
        return Fault::None;
    }
    match (n / 100 + n % 100) % 3 {
        0 => Fault::Reset,
        1 => Fault::Stall,
        _ => Fault::Garbage,
    }
}

/// How long a stalled answer waits: past the soak's gateway deadlines (5 s for a head,
/// 3 s between stream events).
const STALL: Duration = Duration::from_secs(8);

struct State {
    faults_pct: u64,
    seen: AtomicU64,
}

fn full(b: &'static [u8]) -> BoxBody<Bytes, BoxError> {
    Full::new(Bytes::from_static(b)).map_err(|never| match never {}).boxed()
}

async fn answer(state: Arc<State>, req: Request<Incoming>) -> Result<Response<BoxBody<Bytes, BoxError>>, BoxError> {
    let body = req.into_body().collect().await?.to_bytes();
    let fault = fault_of(state.seen.fetch_add(1, Ordering::Relaxed), state.faults_pct);
    let stream = wants_stream(&body);
    let (ct, out) = match (stream, fault) {
        (_, Fault::None) => {
            if stream {
                ("text/event-stream", full(STREAM.as_bytes()))
            } else {
                ("application/json", full(COMPLETION.as_bytes()))
            }
        }
        (false, Fault::Reset) => return Err("reset".into()),
        (false, Fault::Stall) => {
            tokio::time::sleep(STALL).await;
            ("application/json", full(COMPLETION.as_bytes()))
        }
        (false, Fault::Garbage) => ("application/json", full(b"<html>\x00 not json")),
        (true, f) => ("text/event-stream", faulty_stream(f)),
    };
    let mut r = Response::new(out);
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    Ok(r)
}

/// A stream that starts well and then breaks as `fault` says.
fn faulty_stream(fault: Fault) -> BoxBody<Bytes, BoxError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let first = STREAM.split_inclusive("\n\n").next().unwrap_or(STREAM);
    tokio::spawn(async move {
        let _ = tx.send(Ok(Frame::data(Bytes::from_static(first.as_bytes())))).await;
        match fault {
            Fault::Reset => {
                let _ = tx.send(Err("reset mid-stream".into())).await;
            }
            Fault::Stall => {
                tokio::time::sleep(STALL).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(&STREAM.as_bytes()[first.len()..])))).await;
            }
            Fault::Garbage | Fault::None => {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"\x00\x01\xff garbage\n\n")))).await;
            }
        }
    });
    StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed()
}

/// `xtask fake-upstream --port N [--faults PCT]`: serves until killed.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let (port, faults_pct) = parse_args(args)?;
    let state = Arc::new(State { faults_pct, seen: AtomicU64::new(0) });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (s, _) = listener.accept().await?;
            let _ = s.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    })
}

fn parse_args(args: &[String]) -> anyhow::Result<(u16, u64)> {
    let usage = || anyhow!("usage: xtask fake-upstream --port N [--faults PCT]");
    let (mut port, mut faults) = (None, 0);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(usage)?;
        match a.as_str() {
            "--port" => port = Some(v.parse().with_context(|| format!("bad port {v:?}"))?),
            "--faults" => {
                faults = v.parse().ok().filter(|p| *p <= 100).ok_or_else(|| anyhow!("bad --faults {v:?}: 0 to 100"))?
            }
            _ => return Err(usage()),
        }
    }
    Ok((port.ok_or_else(usage)?, faults))
}

#[cfg(test)]
mod tests {
    use super::{Fault, fault_of, parse_args, wants_stream};

    #[test]
    fn the_fault_share_is_exact_per_hundred_and_every_kind_occurs() {
        for pct in [0, 1, 5, 10, 33, 100] {
            let faults: Vec<Fault> = (0..300).map(|n| fault_of(n, pct)).collect();
            let n = faults.iter().filter(|f| **f != Fault::None).count() as u64;
            assert_eq!(n, 3 * pct, "{pct}%");
        }
        let ten: Vec<Fault> = (0..300).map(|n| fault_of(n, 10)).collect();
        for kind in [Fault::Reset, Fault::Stall, Fault::Garbage] {
            assert!(ten.contains(&kind), "{kind:?} never happens at 10%");
        }
    }

    #[test]
    fn upstream_arguments_are_the_port_and_an_optional_fault_share() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(a(&["--port", "80"]).unwrap(), (80, 0));
        assert_eq!(a(&["--port", "80", "--faults", "7"]).unwrap(), (80, 7));
        assert!(a(&["--faults", "7"]).is_err());
        assert!(a(&["--port", "80", "--faults", "101"]).is_err());
        assert!(a(&["--port"]).is_err());
    }

    #[test]
    fn stream_flag_is_recognised_in_both_spellings_only_when_true() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(br#"{"model":"m", "stream": true}"#));
        assert!(!wants_stream(br#"{"model":"m","stream":false}"#));
        assert!(!wants_stream(br#"{"model":"m"}"#));
    }
}
