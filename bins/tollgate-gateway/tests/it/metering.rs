//! Metering through the standalone binary, read back from the ledger: the same answer
//! costs the same streamed or not in every dialect, and a stream cut after it started is
//! charged for what it generated, never for the one token its first event claims.

use crate::standalone::{ADMIN, Gateway, UPSTREAM_KEY};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_testkit::http_client::{TestResponse, get, send, send_cut};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, Reply};

/// $1 / $100 / $0.50 per 1M input / output / cached-input tokens.
fn pricing() -> Value {
    json!({"input_per_mtok": "1", "output_per_mtok": "100", "cached_input_per_mtok": "0.5"})
}

/// A provider of `kind` at `upstream` and a priced model `name` on it.
async fn model(gw: &Gateway, name: &str, kind: &str, upstream: &FakeUpstream) {
    gw.provider_and_model(name, kind, upstream, "up-model", pricing()).await;
}

/// Calls `path` with the caller-chosen request id `id`.
async fn call(gw: &Gateway, secret: &str, path: &str, id: &str, body: &Value) -> TestResponse {
    let auth = format!("Bearer {secret}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("x-request-id", id)];
    send(Method::POST, &format!("{}{path}", gw.data), &headers, body.to_string()).await
}

/// The ledger entry of each request id, once all of them are written.
async fn ledger_entries(gw: &Gateway, ids: &[String]) -> Vec<Value> {
    let url = format!("{}/api/v1/ledger?window=24h&limit=1000", gw.admin);
    let find = |page: &Value| -> Option<Vec<Value>> {
        let entries = page["entries"].as_array()?;
        ids.iter().map(|id| entries.iter().find(|e| e["client_request_id"] == id.as_str()).cloned()).collect()
    };
    eventually(Duration::from_secs(10), "the ledger has every entry", || {
        let url = url.clone();
        async move { find(&get(&url, Some(ADMIN)).await.json()).is_some() }
    })
    .await;
    find(&get(&url, Some(ADMIN)).await.json()).unwrap_or_default()
}

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(
            |(name, data)| {
                if name.is_empty() { format!("data: {data}\n\n") } else { format!("event: {name}\ndata: {data}\n\n") }
            },
        )
        .collect()
}

/// An Anthropic stream's opening events: `message_start` claims one output token.
fn anthropic_opening(input: u64, cache_read: u64) -> Vec<(&'static str, Value)> {
    vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "up-model", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ]
}

fn anthropic_text(text: &str) -> (&'static str, Value) {
    (
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
    )
}

/// For each dialect, one answer with the same usage as a whole body and as a stream.
fn same_answer_both_ways() -> Vec<(&'static str, &'static str, Reply, Reply)> {
    let openai_whole = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                  "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}});
    let chunk = |delta: Value, finish: Value| {
        (
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let openai_stream = sse(&[
        chunk(json!({"role": "assistant", "content": "Hello"}), Value::Null),
        chunk(json!({"content": " there."}), json!("stop")),
        (
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                      "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}}),
        ),
    ]) + "data: [DONE]\n\n";

    let anthropic_whole = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "up-model",
        "content": [{"type": "text", "text": "Hello there."}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 15, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5, "output_tokens": 7}});
    let mut events = anthropic_opening(15, 5);
    events.extend([
        anthropic_text("Hello"),
        anthropic_text(" there."),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]);
    let anthropic_stream = sse(&events);

    let gemini_whole = json!({"candidates": [{"content": {"parts": [{"text": "Hello there."}], "role": "model"},
        "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 4, "totalTokenCount": 12}});
    let gemini_chunk = |text: &str, out: u64, finish: Option<&str>| {
        let mut c = json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        (
            "",
            json!({"candidates": [c], "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": out, "totalTokenCount": 8 + out}}),
        )
    };
    let gemini_stream = sse(&[gemini_chunk("Hello", 1, None), gemini_chunk(" there.", 4, Some("STOP"))]);

    let whole = |v: Value| Reply::json(StatusCode::OK, &v.to_string());
    let stream = |s: String| Reply::raw(StatusCode::OK, "text/event-stream", &s);
    vec![
        ("openai-compatible", "/v1/chat/completions", whole(openai_whole), stream(openai_stream)),
        ("anthropic", "/v1/chat/completions", whole(anthropic_whole.clone()), stream(anthropic_stream.clone())),
        ("anthropic", "/v1/messages", whole(anthropic_whole), stream(anthropic_stream)),
        ("gemini", "/v1/chat/completions", whole(gemini_whole), stream(gemini_stream)),
    ]
}

fn ask(path: &str, model: &str, stream: bool) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream});
    if path == "/v1/messages" {
        body["max_tokens"] = json!(64);
    }
    body
}

fn tokens(e: &Value) -> (u64, u64, u64, u64) {
    let n = |f: &str| e[f].as_u64().unwrap_or_else(|| panic!("{f} in {e}"));
    (n("input_tokens"), n("output_tokens"), n("cached_input_tokens"), n("reasoning_tokens"))
}

#[tokio::test]
async fn the_same_answer_costs_the_same_streamed_or_not_in_every_dialect() {
    let gw = Gateway::start().await;
    let first = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&first, json!({})).await;
    for (i, (kind, path, whole, stream)) in same_answer_both_ways().into_iter().enumerate() {
        let upstream = FakeUpstream::start().await;
        let name = format!("m{i}");
        model(&gw, &name, kind, &upstream).await;
        eventually(Duration::from_secs(10), "the model routes", || async {
            call(&gw, &secret, path, &format!("probe-{i}-{}", upstream.request_count()), &ask(path, &name, false))
                .await
                .status
                != StatusCode::NOT_FOUND
        })
        .await;
        let ids = [format!("parity-{i}-whole"), format!("parity-{i}-stream")];
        upstream.set_reply(whole);
        let r = call(&gw, &secret, path, &ids[0], &ask(path, &name, false)).await;
        assert_eq!(r.status, StatusCode::OK, "{kind} via {path}: {}", r.text());
        upstream.set_reply(stream);
        let r = call(&gw, &secret, path, &ids[1], &ask(path, &name, true)).await;
        assert_eq!(r.status, StatusCode::OK, "{kind} via {path}: {}", r.text());

        let entries = ledger_entries(&gw, &ids).await;
        let (w, s) = (&entries[0], &entries[1]);
        assert_eq!(tokens(w), tokens(s), "{kind} via {path}: whole {w} vs stream {s}");
        assert_eq!(w["cost_nanos"], s["cost_nanos"], "{kind} via {path}: whole {w} vs stream {s}");
        assert!(w["cost_nanos"].as_i64().unwrap() > 0);
        assert_eq!((w["usage_source"].as_str(), s["usage_source"].as_str()), (Some("reported"), Some("reported")));
        assert_eq!((w["stream"].as_bool(), s["stream"].as_bool()), (Some(false), Some(true)));
    }
}

#[tokio::test]
async fn an_anthropic_stream_cut_after_it_started_is_charged_for_what_it_generated() {
    let gw = Gateway::start().await;
    let first = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&first, json!({})).await;
    let upstream = FakeUpstream::start().await;
    model(&gw, "claude", "anthropic", &upstream).await;

    // message_start claims 1 output token; then a long text, then the connection resets.
    let text = "The quick brown fox jumps over the lazy dog while the gateway counts every token. ";
    let mut events = anthropic_opening(20, 0);
    events.extend((0..40).map(|_| anthropic_text(text)));
    let generated = sse(&events);
    let cut = generated.len();
    let full = generated + &sse(&[("message_stop", json!({"type": "message_stop"}))]);
    let expected_output = tollgate_metering::tokens::count_tokens("up-model", &text.repeat(40));
    assert!(expected_output > 100, "a long text: {expected_output} tokens");

    for (i, path) in ["/v1/chat/completions", "/v1/messages"].into_iter().enumerate() {
        upstream.set_reply(Reply::raw(StatusCode::OK, "text/event-stream", &full).reset_after(cut));
        eventually(Duration::from_secs(10), "the model routes", || async {
            get(&format!("{}/v1/models", gw.data), Some(&secret)).await.text().contains("claude")
        })
        .await;
        let id = format!("cut-{i}");
        let auth = format!("Bearer {secret}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("x-request-id", &id)];
        let body = ask(path, "claude", true).to_string();
        let (r, complete) = send_cut(Method::POST, &format!("{}{path}", gw.data), &headers, body).await;
        assert_eq!(r.status, StatusCode::OK, "the stream had started: {}", r.text());
        assert!(r.text().contains("quick brown fox"), "what passed reached the caller");
        assert!(complete, "the caller's body ends cleanly, with an error event: {}", r.text());
        let text = r.text();
        assert!(
            !text.contains("[DONE]") && !text.contains("message_stop"),
            "a cut stream does not end as if it had finished"
        );
        assert!(
            text.trim_end().lines().last().is_some_and(|l| l.contains("\"error\"")),
            "it ends with an error event: {text}"
        );

        let e = ledger_entries(&gw, std::slice::from_ref(&id)).await.remove(0);
        assert_eq!(e["usage_source"], "estimated", "{e}");
        assert_eq!(e["input_tokens"], 20, "the reported prompt is kept: {e}");
        assert_eq!(e["output_tokens"].as_u64(), Some(expected_output), "what was generated is counted: {e}");
        // $1 per 1M input, $100 per 1M output: 1,000 and 100,000 nano-dollars a token.
        assert_eq!(e["cost_nanos"].as_u64(), Some(20 * 1_000 + expected_output * 100_000), "{e}");
        assert_eq!(e["status"], 502, "the ledger shows the upstream broke the stream: {e}");
    }
}

#[tokio::test]
async fn the_charge_follows_the_deployment_that_served_at_its_own_price() {
    let gw = Gateway::start().await;
    let first = FakeUpstream::start().await;
    let budget = json!({"limit_usd": "10", "window": "day", "on_breach": "block"});
    let (_, secret) = gw.setup(&first, json!({"budget": budget, "models_allowed": ["pair"]})).await;
    let (primary, fallback) = (FakeUpstream::start().await, FakeUpstream::start().await);
    for (name, up) in [("primary", &primary), ("fallback", &fallback)] {
        gw.created(
            "/api/v1/providers",
            json!({"name": name, "kind": "openai-compatible", "base_url": up.base_url(), "api_key": UPSTREAM_KEY}),
        )
        .await;
    }
    // The model's price is $1 / $100 per 1M; the fallback deployment (another provider's
    // model) costs $10 / $1000.
    gw.created(
        "/api/v1/models",
        json!({"name": "pair", "pricing": {"input_per_mtok": "1", "output_per_mtok": "100"}, "deployments": [
            {"provider": "primary", "model": "a"},
            {"provider": "fallback", "model": "b", "priority": 1,
             "pricing": {"input_per_mtok": "10", "output_per_mtok": "1000"}}]}),
    )
    .await;
    let ask = json!({"model": "pair", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    eventually(Duration::from_secs(10), "the model routes", || async {
        call(&gw, &secret, "/v1/chat/completions", "probe", &ask).await.status == StatusCode::OK
    })
    .await;

    // The fake upstreams report 12 prompt and 5 completion tokens.
    let r = call(&gw, &secret, "/v1/chat/completions", "served-by-primary", &ask).await;
    assert_eq!(r.status, StatusCode::OK);
    primary.set_reply(Reply::raw(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "down"));
    let r = call(&gw, &secret, "/v1/chat/completions", "served-by-fallback", &ask).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let ids = ["served-by-primary".to_owned(), "served-by-fallback".to_owned()];
    let entries = ledger_entries(&gw, &ids).await;
    let (p, f) = (&entries[0], &entries[1]);
    assert_eq!((p["provider"].as_str(), p["served_model"].as_str()), (Some("primary"), Some("a")));
    assert_eq!(p["cost_nanos"].as_i64(), Some(12 * 1_000 + 5 * 100_000), "the model's price: {p}");
    assert_eq!((f["provider"].as_str(), f["served_model"].as_str()), (Some("fallback"), Some("b")));
    assert_eq!(f["cost_nanos"].as_i64(), Some(12 * 10_000 + 5 * 1_000_000), "the fallback's own price: {f}");
    let tried: Vec<&str> = f["attempts"].as_array().unwrap().iter().filter_map(|a| a["provider"].as_str()).collect();
    assert_eq!(tried.first(), Some(&"primary"), "the failed attempt is listed: {f}");
}
