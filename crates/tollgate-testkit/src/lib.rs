//! tollgate-testkit: fakes and fixtures for tests; a dev-dependency only.
//!
//! Owns [`FakeUpstream`], an in-process HTTP server on a free loopback port that records
//! every request it receives (method, path, headers, body) and answers with a
//! programmable [`Reply`]: fixed bodies, every dialect's recorded answer chosen by path
//! ([`Reply::auto`]: OpenAI chat / Responses / embeddings, Anthropic Messages, Gemini),
//! and faults (delays, slow trickles, connections reset or stalled mid-body, queued
//! one-off replies for fallback tests), over plain HTTP or TLS with HTTP/2 offered; and
//! small helpers to talk HTTP to the binaries
//! under test without pulling in a full client crate; and the ledger-entry fixtures
//! ([`ledger`]) every crate's ledger tests share.
//!
//! Does not own: anything shipped in a release binary.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a failed test

pub mod capped;
pub mod http_client;
pub mod ledger;
pub mod process;

pub use capped::{Capped, PromptTokens, output_cap};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The throwaway certificate authority that signed the TLS fake upstream's certificate
/// (PEM). Trust it in tests only.
pub const TEST_CA_PEM: &str = include_str!("../data/test-ca.pem");
const TEST_SERVER_CERT_PEM: &str = include_str!("../data/test-server.pem");
const TEST_SERVER_KEY_PEM: &str = include_str!("../data/test-server.key");

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
    /// The HTTP version the request came in (HTTP/2 only over TLS, by ALPN).
    pub version: http::Version,
}

impl Recorded {
    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("recorded body is JSON")
    }

    /// The output cap the body asks for, by dialect (see [`output_cap`]).
    pub fn output_cap(&self) -> Option<u64> {
        output_cap(&self.path, &self.body)
    }

    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a reply's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ending {
    /// The whole body, then a clean end.
    #[default]
    Complete,
    /// After `cut_after` bytes the connection is reset (an upstream crashing mid-body).
    Reset,
    /// After `cut_after` bytes nothing more is sent, ever (an upstream hanging).
    Stall,
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
    /// Answer each dialect's recorded reply, chosen by the request's path and `stream`
    /// flag, instead of `body` (see [`Reply::auto`]).
    pub auto: bool,
    /// Extra response headers, e.g. `retry-after`.
    pub headers: Vec<(&'static str, String)>,
    /// Send the body in pieces of this many bytes (0: in one piece).
    pub chunk_size: usize,
    /// Pause between pieces.
    pub chunk_gap: Duration,
    /// Bytes of the body sent before `ending` applies (`None`: all of it).
    pub cut_after: Option<usize>,
    /// What happens after the body (or after `cut_after` bytes).
    pub ending: Ending,
    /// Answer like a provider honouring the request's output cap instead of `body`
    /// (see [`Reply::capped`]).
    pub capped: Option<Capped>,
}

impl Reply {
    /// A fixed OpenAI chat completion with usage (12 prompt, 5 completion tokens).
    pub fn chat_completion() -> Self {
        Reply::json(StatusCode::OK, CHAT_COMPLETION)
    }

    /// A JSON reply.
    pub fn json(status: StatusCode, body: &str) -> Self {
        Reply::raw(status, "application/json", body)
    }

    /// Any content type, e.g. an HTML error page.
    pub fn raw(status: StatusCode, content_type: &'static str, body: &str) -> Self {
        Reply {
            status,
            content_type,
            body: Bytes::from(body.to_owned()),
            delay: Duration::ZERO,
            stream_when_asked: false,
            auto: false,
            headers: Vec::new(),
            chunk_size: 0,
            chunk_gap: Duration::ZERO,
            cut_after: None,
            ending: Ending::Complete,
            capped: None,
        }
    }

    /// Any bytes under any content type, e.g. an event stream with raw binary in it.
    pub fn raw_bytes(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Reply { body: body.into(), ..Reply::raw(status, content_type, "") }
    }

    /// Each dialect's recorded answer, by path: `/messages` → Anthropic
    /// ([`ANTHROPIC_MESSAGE`] / [`ANTHROPIC_STREAM`]), `:generateContent` /
    /// `:streamGenerateContent` → Gemini ([`GEMINI_RESPONSE`] / [`GEMINI_STREAM`]),
    /// `/embeddings` → [`EMBEDDINGS`], `/responses` → [`RESPONSES_RESPONSE`] /
    /// [`RESPONSES_STREAM`], anything else → OpenAI chat ([`CHAT_COMPLETION`] /
    /// [`CHAT_STREAM`]). Streams when the body asks for one (Gemini: by path).
    pub fn auto() -> Self {
        Reply { auto: true, ..Reply::chat_completion() }
    }

    /// Answers like a real provider honouring the forwarded output cap: exactly
    /// `min(cap, length)` completion tokens (each [`capped::TOKEN_TEXT`]) in the dialect
    /// chosen by path (as [`Reply::auto`]), streamed one chunk per token when asked, with
    /// usage `{prompt: prompt, completion: that}` and the dialect's "cut short" ending
    /// when the cap was hit (OpenAI chat `finish_reason: "length"`, else `"stop"`); see
    /// [`capped`] for every dialect and [`FakeUpstream::last_cap`] for what was asked.
    pub fn capped(length: u64, prompt: PromptTokens) -> Self {
        Reply { capped: Some(Capped { length, prompt }), ..Reply::chat_completion() }
    }

    /// The same reply after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sends the body `size` bytes at a time with `gap` between pieces.
    pub fn trickle(mut self, size: usize, gap: Duration) -> Self {
        self.chunk_size = size.max(1);
        self.chunk_gap = gap;
        self
    }

    /// Resets the connection after `bytes` of the body.
    pub fn reset_after(mut self, bytes: usize) -> Self {
        self.cut_after = Some(bytes);
        self.ending = Ending::Reset;
        self
    }

    /// Stops sending (without closing) after `bytes` of the body.
    pub fn stall_after(mut self, bytes: usize) -> Self {
        self.cut_after = Some(bytes);
        self.ending = Ending::Stall;
        self
    }

    /// [`CHAT_STREAM`] as `text/event-stream`.
    pub fn chat_stream() -> Self {
        Reply::raw(StatusCode::OK, "text/event-stream", CHAT_STREAM)
    }

    /// [`CHAT_COMPLETION`], or [`CHAT_STREAM`] when the request asks for a stream.
    pub fn chat_either() -> Self {
        Reply { stream_when_asked: true, ..Reply::chat_completion() }
    }

    /// The recorded answer for a request, when this reply is [`Reply::auto`] or
    /// `stream_when_asked`; the reply itself otherwise.
    fn resolve(mut self, path: &str, body: &[u8]) -> Reply {
        let stream = asks_for_stream(body);
        if let Some(capped) = self.capped {
            let (content_type, text) = capped.render(path, body);
            self.content_type = content_type;
            self.body = Bytes::from(text);
        } else if self.auto {
            let (content_type, text) = if path.contains(":streamGenerateContent") {
                ("text/event-stream", GEMINI_STREAM)
            } else if path.contains(":generateContent") {
                ("application/json", GEMINI_RESPONSE)
            } else if path.ends_with("/messages") {
                if stream { ("text/event-stream", ANTHROPIC_STREAM) } else { ("application/json", ANTHROPIC_MESSAGE) }
            } else if path.contains("/embeddings") {
                ("application/json", EMBEDDINGS)
            } else if path.contains("/responses") {
                if stream { ("text/event-stream", RESPONSES_STREAM) } else { ("application/json", RESPONSES_RESPONSE) }
            } else if stream {
                ("text/event-stream", CHAT_STREAM)
            } else {
                ("application/json", CHAT_COMPLETION)
            };
            self.content_type = content_type;
            self.body = Bytes::from_static(text.as_bytes());
        } else if self.stream_when_asked && stream {
            self.content_type = "text/event-stream";
            self.body = Bytes::from_static(CHAT_STREAM.as_bytes());
        }
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

/// An Anthropic Messages response (20 input, 7 output tokens, 5 of the input read
/// from the cache).
pub const ANTHROPIC_MESSAGE: &str = r#"{"id":"msg_fake","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello from the fake Anthropic."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":15,"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"output_tokens":7}}"#;

/// An Anthropic Messages SSE stream, as Anthropic sends it (with `event:` lines).
pub const ANTHROPIC_STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_fake\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":11,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\":\"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

/// A Gemini `generateContent` response (8 prompt, 4 candidate tokens).
pub const GEMINI_RESPONSE: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Hello from the fake Gemini."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":4,"totalTokenCount":12},"modelVersion":"gemini-2.5-flash"}"#;

/// A Gemini `streamGenerateContent?alt=sse` stream.
pub const GEMINI_STREAM: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":1,\"totalTokenCount\":9},\"modelVersion\":\"gemini-2.5-flash\"}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"candidatesTokenCount\":2,\"totalTokenCount\":10},\"modelVersion\":\"gemini-2.5-flash\"}\r\n\r\n";

/// An OpenAI embeddings response (6 prompt tokens).
pub const EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,0.015797347]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":6,"total_tokens":6}}"#;

/// An OpenAI Responses API response (10 input, 4 output tokens).
pub const RESPONSES_RESPONSE: &str = r#"{"id":"resp_fake","object":"response","created_at":1700000000,"status":"completed","model":"gpt-4o-mini-2024-07-18","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello from Responses.","annotations":[]}]}],"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":0},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":14}}"#;

/// An OpenAI Responses API stream (typed events; usage in `response.completed`).
pub const RESPONSES_STREAM: &str = "event: response.created\n\
data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_fake\",\"object\":\"response\",\"created_at\":1700000000,\"status\":\"in_progress\",\"model\":\"gpt-4o-mini-2024-07-18\",\"output\":[],\"usage\":null}}\n\n\
event: response.output_text.delta\n\
data: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\"}\n\n\
event: response.completed\n\
data: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_fake\",\"object\":\"response\",\"created_at\":1700000000,\"status\":\"completed\",\"model\":\"gpt-4o-mini-2024-07-18\",\"output\":[{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello\",\"annotations\":[]}]}],\"usage\":{\"input_tokens\":10,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":1,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":11}}}\n\n";

/// An in-process fake upstream on a free loopback port. Stops when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    recorded: Mutex<Vec<Recorded>>,
    reply: Mutex<Reply>,
    queued: Mutex<VecDeque<Reply>>,
    /// The output cap of the last request received (`None`: it had none).
    last_cap: Mutex<Option<u64>>,
    /// Responses whose body has not finished (or been dropped) yet.
    open_bodies: AtomicU64,
}

impl FakeUpstream {
    /// Starts a fake upstream answering [`Reply::chat_completion`].
    pub async fn start() -> Self {
        Self::start_with(Reply::chat_completion()).await
    }

    /// Starts a fake upstream with a given reply.
    pub async fn start_with(reply: Reply) -> Self {
        Self::serve(reply, None).await
    }

    /// Starts a fake upstream over TLS, offering HTTP/2 and HTTP/1.1 (ALPN), with a
    /// certificate for `127.0.0.1` and `localhost` signed by [`TEST_CA_PEM`]: a client
    /// that trusts that CA can reach it at [`FakeUpstream::tls_base_url`].
    pub async fn start_tls(reply: Reply) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(TEST_SERVER_CERT_PEM.as_bytes())
            .collect::<Result<_, _>>()
            .expect("test server certificate");
        let key = PrivateKeyDer::from_pem_slice(TEST_SERVER_KEY_PEM.as_bytes()).expect("test server key");
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("test server TLS config");
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::serve(reply, Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))).await
    }

    async fn serve(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake upstream");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            recorded: Mutex::new(Vec::new()),
            reply: Mutex::new(reply),
            queued: Mutex::new(VecDeque::new()),
            last_cap: Mutex::new(None),
            open_bodies: AtomicU64::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (st, tls) = (st.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, st.clone()));
                    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        None => server.serve_connection(TokioIo::new(stream), svc).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => server.serve_connection(TokioIo::new(stream), svc).await,
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        FakeUpstream { addr, state, task }
    }

    /// `https://127.0.0.1:PORT/v1`, the base URL of a [`FakeUpstream::start_tls`] upstream.
    pub fn tls_base_url(&self) -> String {
        format!("https://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL to configure as an OpenAI provider.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, the base URL for providers whose paths carry their own
    /// version (Anthropic, Gemini, Azure).
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.recorded.lock().expect("lock").clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.state.recorded.lock().expect("lock").len()
    }

    /// The output cap the last request carried (see [`output_cap`]): what the gateway
    /// forwarded. `None` when it carried none, or before any request.
    pub fn last_cap(&self) -> Option<u64> {
        *self.state.last_cap.lock().expect("lock")
    }

    /// Changes the reply for subsequent requests.
    pub fn set_reply(&self, reply: Reply) {
        *self.state.reply.lock().expect("lock") = reply;
    }

    /// Queues a one-off reply: queued replies answer the next requests, in order,
    /// before the standing reply resumes.
    pub fn push_reply(&self, reply: Reply) {
        self.state.queued.lock().expect("lock").push_back(reply);
    }

    /// Response bodies still being sent (or stalled): zero once every caller has
    /// finished or hung up, which is how tests see that nothing was left hanging.
    pub fn open_bodies(&self) -> u64 {
        self.state.open_bodies.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type FakeBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Decrements the open-body count when the response body is finished or dropped.
struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_bodies.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(req: Request<Incoming>, state: Arc<State>) -> Result<Response<FakeBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    *state.last_cap.lock().expect("lock") = output_cap(&path, &body);
    state.recorded.lock().expect("lock").push(Recorded {
        method: parts.method,
        path: path.clone(),
        headers: parts.headers,
        body: body.clone(),
        version: parts.version,
    });
    let queued = state.queued.lock().expect("lock").pop_front();
    let reply = queued.unwrap_or_else(|| state.reply.lock().expect("lock").clone());
    let reply = reply.resolve(&path, &body);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.open_bodies.fetch_add(1, Ordering::SeqCst);
    let guard = OpenGuard(state.clone());
    let mut resp = Response::new(body_of(&reply, guard));
    *resp.status_mut() = reply.status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(reply.content_type));
    for (name, value) in &reply.headers {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            resp.headers_mut().insert(*name, v);
        }
    }
    Ok(resp)
}

/// The reply's body as a stream: pieces with gaps, then the ending.
fn body_of(reply: &Reply, guard: OpenGuard) -> FakeBody {
    let sent = reply.cut_after.map_or(reply.body.clone(), |n| reply.body.slice(..n.min(reply.body.len())));
    let size = if reply.chunk_size == 0 { sent.len().max(1) } else { reply.chunk_size };
    let pieces: Vec<Bytes> = sent.chunks(size).map(Bytes::copy_from_slice).collect();
    let (gap, ending) = (reply.chunk_gap, if reply.cut_after.is_some() { reply.ending } else { Ending::Complete });
    let stream =
        futures_util::stream::unfold((pieces.into_iter(), 0usize, Some(guard)), move |(mut it, i, guard)| async move {
            guard.as_ref()?;
            match it.next() {
                Some(piece) => {
                    if i > 0 && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    Some((Ok(http_body::Frame::data(piece)), (it, i + 1, guard)))
                }
                None => match ending {
                    Ending::Complete => {
                        drop(guard);
                        None
                    }
                    Ending::Reset => Some({
                        // Let what was sent reach the peer before the connection breaks.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        (
                            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fake upstream reset")),
                            (it, i, None),
                        )
                    }),
                    Ending::Stall => {
                        // Never answers again; the guard drops when the caller hangs up.
                        let _hold = guard;
                        std::future::pending::<()>().await;
                        None
                    }
                },
            }
        });
    StreamBody::new(stream).boxed()
}

/// True when a JSON request body has `"stream": true`.
fn asks_for_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["stream"] == serde_json::Value::Bool(true))
}
