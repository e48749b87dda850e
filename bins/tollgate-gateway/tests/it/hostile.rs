//! Hostile callers and misbehaving upstreams: header floods, callers that hang up,
//! upstreams that cut, stall or trickle their answer, or answer broken JSON. In every
//! case the caller gets a clear answer, the gateway keeps serving, nothing is left
//! hanging and what the upstream generated is charged.

use crate::standalone::{Gateway, error_code, hello};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_testkit::http_client::{get, send};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{CHAT_COMPLETION, CHAT_STREAM, FakeUpstream, Reply};

const BUDGET: &str = r#"{"limit_usd": "100.00", "window": "day", "on_breach": "block"}"#;

/// A key with a money budget, kept to priced models (the fixture's `other` is unpriced,
/// and no key under a money budget may reach an unpriced model).
fn with_budget() -> Value {
    with_budget_for(&["gpt-4o*"])
}

fn with_budget_for(models: &[&str]) -> Value {
    json!({"budget": serde_json::from_str::<Value>(BUDGET).unwrap(), "models_allowed": models})
}

fn streaming() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": true})
}

/// The key's own budget as `GET /v1/key` shows it: (spent, reserved) in USD text.
async fn spend(gw: &Gateway, secret: &str) -> (String, String) {
    let v = get(&format!("{}/v1/key", gw.data), Some(secret)).await.json();
    let spent = &v["budgets"][0]["spent"];
    (
        spent["usd"].as_str().unwrap_or_default().to_owned(),
        spent["reserved_usd"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn wait_settled(gw: &Gateway, secret: &str, what: &str) -> String {
    eventually(Duration::from_secs(10), what, || async {
        let (spent, reserved) = spend(gw, secret).await;
        reserved == "0.00" && spent != "0.00"
    })
    .await;
    spend(gw, secret).await.0
}

/// Sends a raw HTTP/1.1 request and returns the open socket after reading `read` bytes
/// (or up to the end of a chunked body, when it ends first).
async fn raw_request(gw: &Gateway, secret: &str, body: &Value, read: usize) -> (TcpStream, Vec<u8>) {
    let addr = gw.data.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {secret}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut got = vec![0u8; read];
    let mut n = 0;
    while n < read {
        match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut got[n..])).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(k)) => {
                n += k;
                if got[..n].ends_with(b"\r\n0\r\n\r\n") {
                    break;
                }
            }
            Ok(Err(_)) => break,
        }
    }
    got.truncate(n);
    (sock, got)
}

#[tokio::test]
async fn header_floods_are_refused_and_the_gateway_keeps_serving() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let url = format!("{}/v1/chat/completions", gw.data);

    // One enormous header, then a great many small ones.
    let huge = "x".repeat(200_000);
    let addr = gw.data.trim_start_matches("http://");
    for flood in [format!("x-flood: {huge}\r\n"), (0..5000).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()] {
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let head =
            format!("POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\n{flood}content-length: 2\r\n\r\n{{}}");
        let _ = sock.write_all(head.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431") || text.starts_with("HTTP/1.1 400"),
            "a header flood is refused, not served: {}",
            &text[..text.len().min(200)]
        );
    }
    assert!(upstream.requests().is_empty(), "nothing from a flood reaches the upstream");
    let r = send(
        Method::POST,
        &url,
        &[("authorization", &format!("Bearer {secret}")), ("content-type", "application/json")],
        hello().to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "the gateway still serves: {}", r.text());
}

#[tokio::test]
async fn a_stream_the_upstream_cuts_midway_is_charged_for_what_passed() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, with_budget()).await;
    // Two content events pass, then the connection is reset before the usage chunk.
    let cut = CHAT_STREAM.find("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[]").unwrap();
    upstream.set_reply(Reply::chat_stream().reset_after(cut));

    // Read to the end: the gateway closes the connection when the upstream breaks.
    let (_sock, got) = raw_request(&gw, &secret, &streaming(), 1 << 20).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "the stream had started: {text}");
    assert!(text.contains("Hel"), "what passed reached the caller: {text}");
    assert!(!text.contains("[DONE]"), "a cut stream does not pretend to have finished: {text}");

    let spent = wait_settled(&gw, &secret, "the cut stream is charged and its reservation released").await;
    assert_ne!(spent, "0.00", "never charged zero because usage was missing");
    assert_eq!(upstream.open_bodies(), 0);
}

#[tokio::test]
async fn a_stalled_stream_times_out_frees_its_reservation_and_is_charged() {
    let gw = Gateway::start_with_env(&[("TOLLGATE_STREAM_IDLE_TIMEOUT_S", "1")]).await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, with_budget()).await;
    let first = CHAT_STREAM.find("\n\n").unwrap() + 2;
    upstream.set_reply(Reply::chat_stream().stall_after(first));

    let started = std::time::Instant::now();
    let (_sock, got) = raw_request(&gw, &secret, &streaming(), 1 << 20).await;
    assert!(started.elapsed() < Duration::from_secs(8), "the idle timeout ended the stream");
    assert!(String::from_utf8_lossy(&got).contains("Hel"), "{}", String::from_utf8_lossy(&got));
    wait_settled(&gw, &secret, "the stalled stream is charged and its reservation released").await;
    eventually(Duration::from_secs(5), "the stalled upstream call is closed", || async { upstream.open_bodies() == 0 })
        .await;
}

/// A caller leaving mid-stream ends the stream (what passed is charged, 499); a caller
/// leaving a dispatched non-streaming call does not cancel it (issue 15: the provider
/// bills it either way) — it runs until the upstream answers or its per-attempt timeout.
#[tokio::test]
async fn a_caller_that_hangs_up_ends_a_stream_but_not_a_dispatched_call() {
    let gw = Gateway::start_with_env(&[("TOLLGATE_UPSTREAM_TIMEOUT_S", "2")]).await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, with_budget()).await;

    // Streaming: the upstream trickles for ~20 s; the caller leaves after the head.
    upstream.set_reply(Reply::chat_stream().trickle(8, Duration::from_millis(400)));
    let (sock, got) = raw_request(&gw, &secret, &streaming(), 64).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    drop(sock);
    eventually(Duration::from_secs(5), "the upstream stream is dropped with the caller", || async {
        upstream.open_bodies() == 0
    })
    .await;
    let after_stream = wait_settled(&gw, &secret, "the abandoned stream is charged for what was generated").await;

    // Not streaming: the upstream sends its head and then nothing; the caller gives up,
    // the call does not: it ends at the 2 s per-attempt timeout, and is settled.
    upstream.set_reply(Reply::chat_completion().stall_after(10));
    let (sock, _) = raw_request(&gw, &secret, &hello(), 0).await;
    eventually(Duration::from_secs(5), "the upstream answers", || async { upstream.open_bodies() == 1 }).await;
    drop(sock);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(upstream.open_bodies(), 1, "the caller leaving does not cancel a dispatched call");
    eventually(Duration::from_secs(5), "the call ends at its per-attempt timeout", || async {
        upstream.open_bodies() == 0
    })
    .await;
    // It generated nothing readable: charged its prompt's estimate, never zero.
    eventually(Duration::from_secs(10), "the abandoned call is charged and its reservation released", || async {
        let (spent, reserved) = spend(&gw, &secret).await;
        reserved == "0.00" && spent != after_stream
    })
    .await;
}

#[tokio::test]
async fn slow_trickles_are_served_and_broken_json_is_a_502_without_echo() {
    // Garbage counts against an upstream's health; the breaker is off here so each case
    // reaches the upstream.
    let gw = Gateway::start_with_env(&[("TOLLGATE_COOLDOWN_FAILURES", "0")]).await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;

    upstream.set_reply(Reply::chat_completion().trickle(16, Duration::from_millis(10)));
    let r = gw.chat(Some(&secret), &hello()).await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, CHAT_COMPLETION.to_owned()));

    upstream.set_reply(Reply::json(StatusCode::OK, r#"{"id":"x","choices":[{"message":"#));
    let r = gw.chat(Some(&secret), &hello()).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::BAD_GATEWAY, "upstream_error".to_owned()));
    assert!(!r.text().contains("choices"), "the upstream's broken bytes are not echoed: {}", r.text());

    // An upstream "stream" that is not SSE at all is a 502, never its bytes under a 200.
    upstream.set_reply(Reply::raw(StatusCode::OK, "text/event-stream", "<html>gateway error</html>"));
    let r = gw.chat(Some(&secret), &streaming()).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::BAD_GATEWAY, "upstream_error".to_owned()), "{}", r.text());
    assert!(!r.text().contains("html"), "the upstream's page is not echoed: {}", r.text());
    // Nor is an empty one.
    upstream.set_reply(Reply::raw(StatusCode::OK, "text/event-stream", ""));
    let r = gw.chat(Some(&secret), &streaming()).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    // A real stream, trickled a few bytes at a time, is still served whole.
    upstream.set_reply(Reply::chat_stream().trickle(7, Duration::from_millis(2)));
    let r = gw.chat(Some(&secret), &streaming()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("[DONE]"), "{}", r.text());
}

#[tokio::test]
async fn a_stream_answered_with_one_json_body_is_a_502_and_what_it_generated_is_charged() {
    let gw = Gateway::start().await;
    // An upstream that ignores `stream` and answers a whole completion (12 + 5 tokens).
    let upstream = FakeUpstream::start_with(Reply::chat_completion()).await;
    let (_, secret) = gw.setup(&upstream, with_budget()).await;
    let r = gw.chat(Some(&secret), &streaming()).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::BAD_GATEWAY, "upstream_error".to_owned()), "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("instead of an event stream"), "{}", r.text());
    // gpt-4o-mini at $0.15 / $0.60 per 1M: 12 × 150 + 5 × 600 nano-dollars, as reported.
    let spent = wait_settled(&gw, &secret, "the generation is charged").await;
    assert_eq!(tollgate_core::Money::parse_usd(&spent).unwrap().nanos(), 12 * 150 + 5 * 600, "spent {spent}");
}

#[tokio::test]
async fn the_platforms_refused_credential_is_a_502_and_an_upstream_429_keeps_its_retry_after() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;

    // OpenAI's 401 quotes part of the platform's key: the caller sees neither it nor a
    // 401 of its own (its SDK would blame the virtual key).
    for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
        upstream.set_reply(Reply::json(
            status,
            r#"{"error":{"message":"Incorrect API key provided: sk-proj-****abcd","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        ));
        let r = gw.chat(Some(&secret), &hello()).await;
        assert_eq!((r.status, error_code(&r)), (StatusCode::BAD_GATEWAY, "upstream_error".to_owned()), "{}", r.text());
        assert_eq!(r.json()["error"]["meta"]["upstream_status"], status.as_u16());
        assert!(!r.text().contains("sk-proj"), "the upstream's message is not shown: {}", r.text());
    }

    // The upstream's own rate limit: 429 with its message and its retry-after.
    upstream.set_reply(
        Reply::json(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":{"message":"Rate limit reached for gpt-4o-mini","type":"requests","code":"rate_limit_exceeded"}}"#,
        )
        .with_header("retry-after", "900"),
    );
    let r = gw.chat(Some(&secret), &hello()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.headers["retry-after"], "900");
    assert_eq!(r.json()["error"]["message"], "Rate limit reached for gpt-4o-mini");
    // A nonsensical retry-after is not passed on.
    upstream.set_reply(
        Reply::json(StatusCode::TOO_MANY_REQUESTS, r#"{"error":{"message":"slow down"}}"#)
            .with_header("retry-after", "<script>"),
    );
    let r = gw.chat(Some(&secret), &hello()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get("retry-after").is_none(), "{:?}", r.headers);
}

#[tokio::test]
async fn anthropic_callers_get_errors_in_anthropics_shape() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start_with(Reply::auto()).await;
    gw.setup(&upstream, json!({})).await;
    let url = format!("{}/v1/messages", gw.data);
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let r =
        send(Method::POST, &url, &[("x-api-key", "tg_nope"), ("content-type", "application/json")], body.to_string())
            .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let v = r.json();
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("authentication_error")), "{v}");

    let r = send(Method::POST, &url, &[("x-api-key", "tg_nope")], "{not json").await;
    assert_eq!(r.json()["type"], "error");
}

#[tokio::test]
async fn a_provider_can_set_its_own_timeout() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let slow = FakeUpstream::start_with(Reply::chat_completion().delayed(Duration::from_secs(5))).await;
    gw.created(
        "/api/v1/providers",
        json!({"name": "slow", "kind": "openai-compatible", "base_url": slow.base_url(), "api_key": "sk-x", "extra": {"timeout_s": 1}}),
    )
    .await;
    gw.created("/api/v1/models", json!({"name": "slowpoke", "deployments": [{"provider": "slow", "model": "m"}]}))
        .await;
    let body = json!({"model": "slowpoke", "messages": []});
    eventually(Duration::from_secs(10), "the slow model routes", || async {
        gw.chat(Some(&secret), &body).await.status != StatusCode::NOT_FOUND
    })
    .await;
    let started = std::time::Instant::now();
    let r = gw.chat(Some(&secret), &body).await;
    assert_eq!(
        (r.status, error_code(&r)),
        (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout".to_owned()),
        "{}",
        r.text()
    );
    assert!(started.elapsed() < Duration::from_secs(4), "the provider's 1 s timeout applied, not the global 300 s");
    // The other provider keeps the global bounds.
    assert_eq!(gw.chat(Some(&secret), &hello()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_deployment_that_fails_before_answering_falls_back_to_the_next() {
    let gw = Gateway::start().await;
    let good = FakeUpstream::start_with(Reply::chat_either()).await;
    let (_, secret) = gw.setup(&good, with_budget_for(&["gpt-4o*", "resilient"])).await;
    let flaky = FakeUpstream::start().await;
    let gone = FakeUpstream::start().await;
    let gone_url = gone.base_url();
    drop(gone);
    for (name, url) in [("flaky", flaky.base_url()), ("gone", gone_url)] {
        gw.created(
            "/api/v1/providers",
            json!({"name": name, "kind": "openai-compatible", "base_url": url, "api_key": "sk-x"}),
        )
        .await;
    }
    let pricing = json!({"input_per_mtok": "1.00", "output_per_mtok": "2.00"});
    gw.created(
        "/api/v1/models",
        json!({"name": "resilient", "pricing": pricing, "deployments": [
            {"provider": "gone", "model": "a"}, {"provider": "flaky", "model": "b"}, {"provider": "up", "model": "c"}]}),
    )
    .await;
    let body = json!({"model": "resilient", "messages": [{"role": "user", "content": "hi"}]});
    flaky.set_reply(Reply::raw(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "overloaded"));
    eventually(Duration::from_secs(10), "the model routes", || async {
        gw.chat(Some(&secret), &body).await.status != StatusCode::NOT_FOUND
    })
    .await;
    let before = good.request_count();
    // Refused connection, then 503, then the good one answers.
    let r = gw.chat(Some(&secret), &body).await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, CHAT_COMPLETION.to_owned()));
    assert_eq!(good.request_count(), before + 1);
    assert_eq!(good.requests().last().unwrap().json()["model"], "c", "the serving deployment's model name is sent");

    // A stream falls back too: nothing had reached the caller yet.
    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let r = gw.chat(Some(&secret), &streaming).await;
    assert!(r.text().contains("[DONE]"), "{}", r.text());

    // A request error is final: the next deployment is never asked.
    flaky.set_reply(Reply::json(
        StatusCode::BAD_REQUEST,
        r#"{"error":{"message":"bad","type":"invalid_request_error","code":"x"}}"#,
    ));
    let before = good.request_count();
    let r = gw.chat(Some(&secret), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(good.request_count(), before, "4xx is not retried elsewhere");

    let m = get(&format!("{}/metrics", gw.data), None).await.text();
    assert!(m.contains(r#"tollgate_upstream_errors_total{provider="gone",kind="connect"}"#), "{m}");
    assert!(m.contains(r#"tollgate_upstream_errors_total{provider="flaky",kind="upstream_5xx"}"#), "{m}");
    wait_settled(&gw, &secret, "reservations of fallen-back requests are all settled").await;
}

#[tokio::test]
async fn a_failing_upstream_is_cooled_down_and_probed_back() {
    let gw = Gateway::start_with_env(&[("TOLLGATE_COOLDOWN_FAILURES", "2"), ("TOLLGATE_COOLDOWN_S", "1")]).await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let sick = FakeUpstream::start_with(Reply::raw(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "boom")).await;
    gw.created(
        "/api/v1/providers",
        json!({"name": "sick", "kind": "openai-compatible", "base_url": sick.base_url(), "api_key": "sk-x"}),
    )
    .await;
    gw.created("/api/v1/models", json!({"name": "fragile", "deployments": [{"provider": "sick", "model": "m"}]})).await;
    let body = json!({"model": "fragile", "messages": []});
    // The first request that routes is tried twice (the default policy retries a 5xx
    // after a jittered backoff): two failures in a row open the breaker, and the caller
    // gets the upstream's failure as a 502.
    eventually(Duration::from_secs(10), "the model routes", || async {
        gw.chat(Some(&secret), &body).await.status == StatusCode::BAD_GATEWAY
    })
    .await;
    assert_eq!(sick.request_count(), 2, "tried, retried once, then cooled down");
    let seen = sick.request_count();
    let r = gw.chat(Some(&secret), &body).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::SERVICE_UNAVAILABLE, "no_healthy_upstream".to_owned()));
    assert_eq!(sick.request_count(), seen, "an upstream in cooldown is not called");
    // The caller is told when to come back: the cooldown's end, in whole seconds.
    assert_eq!(r.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"), "{:?}", r.headers);
    let wait = r.json()["error"]["meta"]["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1000).contains(&wait), "{wait}");

    // After the cooldown one probe goes through; it succeeds, so the breaker closes.
    sick.set_reply(Reply::chat_completion());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(gw.chat(Some(&secret), &body).await.status, StatusCode::OK);
    assert_eq!(gw.chat(Some(&secret), &body).await.status, StatusCode::OK);
    // Other models were never affected.
    assert_eq!(gw.chat(Some(&secret), &hello()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn streams_the_upstream_breaks_after_their_first_bytes_cool_it_down() {
    let gw = Gateway::start_with_env(&[("TOLLGATE_COOLDOWN_FAILURES", "2"), ("TOLLGATE_COOLDOWN_S", "60")]).await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    // Every stream starts well (its first events pass), then the connection resets.
    let cut = CHAT_STREAM.find("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[]").unwrap();
    let sick = FakeUpstream::start_with(Reply::chat_stream().reset_after(cut)).await;
    gw.created(
        "/api/v1/providers",
        json!({"name": "sick", "kind": "openai-compatible", "base_url": sick.base_url(), "api_key": "sk-x"}),
    )
    .await;
    gw.created("/api/v1/models", json!({"name": "fragile", "deployments": [{"provider": "sick", "model": "m"}]})).await;
    eventually(Duration::from_secs(10), "the model routes", || async {
        get(&format!("{}/v1/models", gw.data), Some(&secret)).await.text().contains("fragile")
    })
    .await;

    let body = json!({"model": "fragile", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    for _ in 0..2 {
        let (_sock, got) = raw_request(&gw, &secret, &body, 1 << 20).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200") && !text.contains("[DONE]"), "started, then cut: {text}");
    }
    assert_eq!(sick.request_count(), 2);
    // Two streams broken in a row: the deployment cools down like one failing outright.
    let r = gw.chat(Some(&secret), &body).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::SERVICE_UNAVAILABLE, "no_healthy_upstream".to_owned()));
    assert_eq!(sick.request_count(), 2, "a deployment in cooldown is not called");
    let m = get(&format!("{}/metrics", gw.data), None).await.text();
    assert!(m.contains(r#"tollgate_upstream_errors_total{provider="sick",kind="io"} 2"#), "{m}");
}

#[tokio::test]
async fn an_upstream_request_error_reaches_the_caller_in_the_callers_dialect() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let anth = FakeUpstream::start_with(Reply::json(
        StatusCode::BAD_REQUEST,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
    ))
    .await;
    gw.created(
        "/api/v1/providers",
        json!({"name": "anth", "kind": "anthropic", "base_url": anth.root_url(), "api_key": "sk-ant"}),
    )
    .await;
    gw.created("/api/v1/models", json!({"name": "claude", "deployments": [{"provider": "anth", "model": "claude-x"}]}))
        .await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "long"}]});
    eventually(Duration::from_secs(10), "the model routes", || async {
        gw.chat(Some(&secret), &body).await.status != StatusCode::NOT_FOUND
    })
    .await;
    let r = gw.chat(Some(&secret), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["message"], "prompt is too long: 210000 tokens > 200000 maximum", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v.get("type").is_none(), "OpenAI's shape, not Anthropic's: {v}");
}

#[tokio::test]
async fn an_upstream_429_is_retried_after_its_retry_after_and_one_past_the_deadline_is_not_waited_for() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let limited = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;

    // One 429 asking for a second's wait, then the upstream answers: the caller gets the
    // answer, after the wait.
    upstream.push_reply(Reply::json(StatusCode::TOO_MANY_REQUESTS, limited).with_header("retry-after", "1"));
    let before = upstream.request_count();
    let t = std::time::Instant::now();
    let r = gw.chat(Some(&secret), &hello()).await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, CHAT_COMPLETION.to_owned()));
    assert!(t.elapsed() >= Duration::from_secs(1), "the retry waited the upstream's retry-after: {:?}", t.elapsed());
    assert_eq!(upstream.request_count(), before + 2);

    // A retry-after past the request's deadline (300 s by default) is not slept on: the
    // caller gets the 429 at once, with the upstream's retry-after, and retries itself.
    upstream.set_reply(Reply::json(StatusCode::TOO_MANY_REQUESTS, limited).with_header("retry-after", "3600"));
    let before = upstream.request_count();
    let t = std::time::Instant::now();
    let r = gw.chat(Some(&secret), &hello()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.headers["retry-after"], "3600");
    assert!(t.elapsed() < Duration::from_secs(5), "no pointless wait: {:?}", t.elapsed());
    assert_eq!(upstream.request_count(), before + 1);
}

#[tokio::test]
async fn a_credential_at_its_rate_limit_hands_requests_to_the_next_deployment_and_alone_is_a_429() {
    let gw = Gateway::start().await;
    let capped = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&capped, json!({})).await;
    let spare = FakeUpstream::start().await;
    for (name, up, rpm) in [("capped", &capped, json!(1)), ("spare", &spare, json!(null))] {
        gw.created(
            "/api/v1/providers",
            json!({"name": name, "kind": "openai-compatible", "base_url": up.base_url(), "api_key": "sk-x", "rpm": rpm}),
        )
        .await;
    }
    let pricing = json!({"input_per_mtok": "1", "output_per_mtok": "2"});
    // "solo" is written first: once "pooled" (a later revision) routes, "solo" does too.
    for (model, deployments) in [
        ("solo", json!([{"provider": "capped", "model": "a"}])),
        ("pooled", json!([{"provider": "capped", "model": "a"}, {"provider": "spare", "model": "b"}])),
    ] {
        gw.created("/api/v1/models", json!({"name": model, "deployments": deployments, "pricing": pricing})).await;
    }
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    eventually(Duration::from_secs(10), "the models route", || async {
        gw.chat(Some(&secret), &ask("pooled")).await.status == StatusCode::OK
    })
    .await;
    // The capped credential has served its one request of the minute; the next ones go
    // to the spare deployment instead of being refused.
    let (capped_before, spare_before) = (capped.request_count(), spare.request_count());
    for _ in 0..3 {
        let r = gw.chat(Some(&secret), &ask("pooled")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(capped.request_count(), capped_before, "the capped credential is not called past its rpm");
    assert_eq!(spare.request_count(), spare_before + 3);
    // With nowhere else to go, it is the caller's 429, naming the provider's limit.
    let r = gw.chat(Some(&secret), &ask("solo")).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded".to_owned()));
    assert_eq!(r.json()["error"]["meta"]["limit_of"], "provider", "{}", r.text());
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(capped.request_count(), capped_before);
}
