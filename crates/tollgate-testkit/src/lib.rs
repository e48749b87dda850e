//! tollgate-testkit: fakes and fixtures for tests; a dev-dependency only.
//!
//! Owns [`FakeUpstream`], an in-process OpenAI-compatible HTTP server on a free
//! loopback port that records every request it receives (method, path, headers, body)
//! and answers with a programmable [`Reply`]; and small helpers to talk HTTP to the
//! binaries under test without pulling in a full client crate.
//!
//! Does not own: anything shipped in a release binary.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a failed test

pub mod http_client;
pub mod process;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One request as the fake upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    /// All headers.
    pub headers: HeaderMap,
    /// The body, exactly as received.
    pub body: Bytes,
}

impl Recorded {
    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("recorded body is JSON")
    }

    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the fake upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// `content-type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
    /// Delay before the response head.
    pub delay: Duration,
    /// Answer [`CHAT_STREAM`] instead of `body` when the request asks for a stream
    /// (`"stream": true`), like a real upstream serving both kinds.
    pub stream_when_asked: bool,
}

impl Reply {
    /// A fixed OpenAI chat completion with usage (12 prompt, 5 completion tokens).
    pub fn chat_completion() -> Self {
        Reply::json(StatusCode::OK, CHAT_COMPLETION)
    }

    /// A JSON reply.
    pub fn json(status: StatusCode, body: &str) -> Self {
        Reply {
            status,
            content_type: "application/json",
            body: Bytes::from(body.to_owned()),
            delay: Duration::ZERO,
            stream_when_asked: false,
        }
    }

    /// Any content type, e.g. an HTML error page.
    pub fn raw(status: StatusCode, content_type: &'static str, body: &str) -> Self {
        Reply {
            status,
            content_type,
            body: Bytes::from(body.to_owned()),
            delay: Duration::ZERO,
            stream_when_asked: false,
        }
    }

    /// The same reply after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The body of [`Reply::chat_completion`].
pub const CHAT_COMPLETION: &str = r#"{"id":"chatcmpl-fake","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the fake upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;

/// A fixed OpenAI chat-completion SSE stream ending with a usage-only chunk (as sent when
/// `stream_options.include_usage` is set) and `[DONE]`.
pub const CHAT_STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

impl Reply {
    /// [`CHAT_STREAM`] as `text/event-stream`.
    pub fn chat_stream() -> Self {
        Reply::raw(StatusCode::OK, "text/event-stream", CHAT_STREAM)
    }

    /// [`CHAT_COMPLETION`], or [`CHAT_STREAM`] when the request asks for a stream.
    pub fn chat_either() -> Self {
        Reply { stream_when_asked: true, ..Reply::chat_completion() }
    }
}

/// An in-process fake upstream on a free loopback port. Stops when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    reply: Arc<Mutex<Reply>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    /// Starts a fake upstream answering [`Reply::chat_completion`].
    pub async fn start() -> Self {
        Self::start_with(Reply::chat_completion()).await
    }

    /// Starts a fake upstream with a given reply.
    pub async fn start_with(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake upstream");
        let addr = listener.local_addr().expect("local addr");
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(reply));
        let (rec, rep) = (recorded.clone(), reply.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (rec, rep) = (rec.clone(), rep.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, rec.clone(), rep.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeUpstream { addr, recorded, reply, task }
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL to configure as a provider.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("lock").clone()
    }

    /// Changes the reply for subsequent requests.
    pub fn set_reply(&self, reply: Reply) {
        *self.reply.lock().expect("lock") = reply;
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    reply: Arc<Mutex<Reply>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    recorded.lock().expect("lock").push(Recorded {
        method: parts.method,
        path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers,
        body: body.clone(),
    });
    let mut reply = reply.lock().expect("lock").clone();
    if reply.stream_when_asked && asks_for_stream(&body) {
        reply = Reply { delay: reply.delay, ..Reply::chat_stream() };
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(reply.content_type));
    Ok(resp)
}

/// True when a JSON request body has `"stream": true`.
fn asks_for_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["stream"] == serde_json::Value::Bool(true))
}
