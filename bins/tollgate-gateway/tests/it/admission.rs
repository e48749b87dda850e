//! Admission at the edge (issue 16): nobody's body is read before their key is; buffered
//! bodies have a memory budget and are refused fast above it; heavy work stays off the
//! runtime so a health probe answers while it runs; metric labels come from closed sets;
//! JSON nested deeper than the documented limit never reaches an upstream.

use crate::standalone::{ADMIN, Gateway, error_code, hello};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_testkit::http_client::{get, send};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, Reply};

const MIB: usize = 1024 * 1024;

/// The gateway's resident memory in bytes, from `/proc/<pid>/status`.
fn rss_bytes(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.proc.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The gateway's RSS once it stops moving: tokenizer tables load in the background after
/// start (tens of MiB), and must not be taken for what a test's requests cost.
async fn settled_rss(gw: &Gateway) -> u64 {
    let mut last = rss_bytes(gw);
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_bytes(gw);
        if now.abs_diff(last) < 256 * 1024 {
            return now;
        }
        last = now;
    }
    last
}

/// Sends a request head declaring `body.len()` bytes, then the body (in the background,
/// errors ignored: a gateway that answers first may close), while reading the answer's
/// status line. `None`: no answer before the socket closed or `wait` passed.
async fn post_raw(gw: &Gateway, auth: Option<&str>, body: Arc<Vec<u8>>, wait: Duration) -> Option<String> {
    let addr = gw.data.trim_start_matches("http://").to_owned();
    let sock = TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let auth = auth.map(|k| format!("authorization: Bearer {k}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_ok() {
            let _ = wr.write_all(&body).await;
        }
        wr
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(wait, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        return true;
                    }
                }
            }
        }
    })
    .await
    .unwrap_or(false);
    writer.abort();
    answered.then(|| String::from_utf8_lossy(&got).into_owned())
}

/// A chat body of about `size` bytes: one user message of pseudo-random words (varied
/// enough that the tokenizer does real work on it).
fn chat_of_size(size: usize, stream: bool) -> Vec<u8> {
    let mut text = String::with_capacity(size);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while text.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 2 + (x % 9) as usize;
        for i in 0..len {
            text.push(char::from(b'a' + ((x >> (i * 5)) % 26) as u8));
        }
        text.push(' ');
    }
    let body = json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]});
    body.to_string().into_bytes()
}

#[tokio::test]
async fn unauthenticated_large_bodies_are_answered_401_without_being_read() {
    let gw = Gateway::start_with_env(&[("TOLLGATE_MAX_BODY_BYTES", &(8 * MIB).to_string())]).await;
    let upstream = FakeUpstream::start().await;
    let _ = gw.setup(&upstream, json!({})).await;
    // Settle the allocator: the first requests of each kind grow the heap a little.
    for _ in 0..3 {
        let _ = post_raw(&gw, Some("sk-tg-unknown"), Arc::new(b"{}".to_vec()), Duration::from_secs(10)).await;
    }
    let before = settled_rss(&gw).await;

    let body = Arc::new(vec![b' '; 4 * MIB]);
    // Half without a key, half with a made-up one; all at once.
    let keys: Vec<Option<String>> = (0..100).map(|i| (i % 2 == 1).then(|| format!("sk-tg-made-up-{i}"))).collect();
    let answers: Vec<_> =
        keys.iter().map(|k| post_raw(&gw, k.as_deref(), body.clone(), Duration::from_secs(30))).collect();
    let answers = futures_util::future::join_all(answers).await;
    let refused = answers.iter().filter(|a| a.as_deref().is_some_and(|t| t.starts_with("HTTP/1.1 401"))).count();
    assert_eq!(
        refused,
        100,
        "every unauthenticated caller is answered 401: {:?}",
        answers.iter().find(|a| a.is_none())
    );
    let after = rss_bytes(&gw);
    let growth = after.saturating_sub(before);
    assert!(
        growth < 20 * MIB as u64,
        "100 unauthenticated 4 MiB bodies are not buffered: RSS grew {} MiB ({before} -> {after})",
        growth / MIB as u64
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn bodies_over_the_memory_budget_are_refused_at_once_and_the_budget_comes_back() {
    let gw = Gateway::start_with_env(&[
        ("TOLLGATE_MAX_BODY_BYTES", &(8 * MIB).to_string()),
        ("TOLLGATE_MAX_BUFFERED_BODY_BYTES", &MIB.to_string()),
    ])
    .await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;

    // More than the whole budget: refused before the body is sent, never queued.
    let addr = gw.data.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {secret}\r\ncontent-length: {}\r\n\r\n",
        2 * MIB
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut answer))
        .await
        .expect("refused without waiting for the body")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("retry-after:"), "{text}");
    assert!(text.contains("\"code\":\"overloaded\""), "{text}");
    drop(sock);

    // One request holds most of the budget (its body arrives slowly); a small request is
    // still served, a second large one is refused.
    let big = chat_of_size(768 * 1024, false);
    let mut holder = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {secret}\r\ncontent-length: {}\r\n\r\n",
        big.len()
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    holder.write_all(&big[..1024]).await.unwrap();
    let auth = format!("Bearer {secret}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let url = format!("{}/v1/chat/completions", gw.data);
    eventually(Duration::from_secs(10), "the held body's share is taken", || async {
        send(Method::POST, &url, &headers, chat_of_size(512 * 1024, false)).await.status
            == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let r = send(Method::POST, &url, &headers, chat_of_size(512 * 1024, false)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(error_code(&r), "overloaded");
    assert!(r.headers.get("retry-after").is_some());
    let r = send(Method::POST, &url, &headers, hello().to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "a body within what is left is served: {}", r.text());

    // The holder leaves: its share comes back and the large request is served.
    drop(holder);
    eventually(Duration::from_secs(10), "the budget is given back when the request ends", || async {
        send(Method::POST, &url, &headers, chat_of_size(512 * 1024, false)).await.status == StatusCode::OK
    })
    .await;
    assert!(upstream.requests().iter().all(|r| r.body.len() < MIB), "no refused body reached the upstream");
}

#[tokio::test]
async fn made_up_methods_leave_the_admin_metrics_series_count_unchanged() {
    let gw = Gateway::start().await;
    let metrics_url = format!("{}/metrics", gw.admin);
    let series = || async {
        let r = get(&metrics_url, Some(ADMIN)).await;
        assert_eq!(r.status, StatusCode::OK);
        r.text().lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
    };
    let made_up = |i: usize| Method::from_bytes(format!("X-MADE-UP-{i}").as_bytes()).unwrap();
    // Every series that can appear once: one made-up method, the metrics page itself.
    let _ = send(made_up(0), &format!("{}/api/v1/keys", gw.admin), &[], "").await;
    let _ = series().await;
    let before = series().await;
    for i in 1..=2000 {
        let _ = send(made_up(i), &format!("{}/api/v1/keys", gw.admin), &[], "").await;
    }
    let after = series().await;
    assert_eq!(after, before, "2,000 made-up methods add no series");
    let text = get(&metrics_url, Some(ADMIN)).await.text();
    assert!(!text.contains("X-MADE-UP"), "a made-up method is never a label value");
}

#[tokio::test]
async fn a_health_probe_answers_while_heavy_abandoned_streams_settle() {
    let gw = Gateway::start_with_env(&[("TOLLGATE_MAX_BODY_BYTES", &(8 * MIB).to_string())]).await;
    let upstream = FakeUpstream::start().await;
    let budget = json!({"limit_usd": "1000.00", "window": "day", "on_breach": "block"});
    let (_, secret) = gw.setup(&upstream, json!({"budget": budget, "models_allowed": ["gpt-4o*"]})).await;
    // The upstream trickles its stream; each caller leaves after the first bytes, so each
    // stream is charged from a tokenizer count of its 3.9 MB prompt.
    upstream.set_reply(Reply::chat_stream().trickle(8, Duration::from_millis(200)));
    let prompt = Arc::new(chat_of_size(3_900_000, true));
    let mut callers = Vec::new();
    for _ in 0..8 {
        let (addr, secret, prompt) = (gw.data.trim_start_matches("http://").to_owned(), secret.clone(), prompt.clone());
        callers.push(tokio::spawn(async move {
            let mut sock = TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {secret}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                prompt.len()
            );
            sock.write_all(head.as_bytes()).await.unwrap();
            sock.write_all(&prompt).await.unwrap();
            let mut first = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut first)).await.unwrap().unwrap();
            String::from_utf8_lossy(&first[..n]).into_owned()
            // The socket is dropped here: the caller hangs up after the first bytes.
        }));
    }
    for c in callers {
        let first = c.await.unwrap();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    }
    // While the eight counts run, the probe answers. It may wait up to a liveness bound
    // (not a latency target): a runtime thread busy tokenizing would hold it for seconds.
    let health = format!("{}/healthz", gw.data);
    for _ in 0..10 {
        let probe = tokio::time::timeout(Duration::from_secs(3), get(&health, None)).await;
        assert!(probe.is_ok_and(|r| r.status == StatusCode::OK), "the health probe answered while streams settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And every abandoned stream is charged.
    let key_url = format!("{}/v1/key", gw.data);
    eventually(Duration::from_secs(120), "the abandoned streams are charged", || async {
        let v: Value = get(&key_url, Some(&secret)).await.json();
        let spent = &v["budgets"][0]["spent"];
        spent["reserved_usd"] == "0.00" && spent["usd"] != "0.00"
    })
    .await;
}

#[tokio::test]
async fn a_body_nested_deeper_than_the_limit_is_400_naming_it_and_never_forwarded() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let deep = format!(
        "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let auth = format!("Bearer {secret}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let r = send(Method::POST, &format!("{}/v1/chat/completions", gw.data), &headers, deep).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("depth") && message.contains("128"), "the message names the limit: {message}");
    // Same on the Anthropic endpoint.
    let deep = format!(
        "{{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[{{\"role\":\"user\",\"content\":{}\"hi\"{}}}]}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let r = send(Method::POST, &format!("{}/v1/messages", gw.data), &headers, deep).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("128"), "{}", r.text());
    assert!(upstream.requests().is_empty(), "nothing was forwarded");
}
