//! Golden-file tests of every translation pair: a fixture request in the caller's
//! dialect → the exact upstream JSON; a recorded upstream response → the exact caller
//! response; a recorded upstream SSE stream → the exact caller stream, with the usage
//! read on the way.
//!
//! Fixtures live in `tests/golden/<caller>_to_<upstream>/`: `*.in.*` are inputs,
//! `*.out.*` the reviewed expectations. `UPDATE_GOLDEN=1 cargo test -p
//! tollgate-providers --test golden` rewrites the expectations (review the diff!).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use std::path::{Path, PathBuf};
use tollgate_providers::translate::{chat_request, chat_response, error_body};
use tollgate_providers::{Dialect, StreamOptions, Usage, stream_adapter};

fn dir(pair: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(pair)
}

/// Timestamps are the translation time; everything else must match exactly.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\"created\":") {
        let (head, tail) = rest.split_at(i + "\"created\":".len());
        out.push_str(head);
        let spaces = tail.bytes().take_while(|b| *b == b' ').count();
        out.push_str(&tail[..spaces]);
        let tail = &tail[spaces..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        out.push('0');
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// Compares `actual` with the expectation file (or rewrites it under UPDATE_GOLDEN).
fn check(pair: &str, file: &str, actual: &str) {
    let path = dir(pair).join(file);
    let actual = normalize(actual);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if file.ends_with(".json") {
        let (a, e): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(&actual).unwrap(), serde_json::from_str(&expected).unwrap());
        assert_eq!(a, e, "{pair}/{file}");
    } else {
        assert_eq!(actual, expected, "{pair}/{file}");
    }
}

fn read(pair: &str, file: &str) -> Bytes {
    Bytes::from(std::fs::read(dir(pair).join(file)).unwrap())
}

fn pretty(b: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(b).unwrap();
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

/// Feeds a recorded SSE stream through the adapter event by event.
fn run_stream(upstream: Dialect, caller: Dialect, input: &[u8], strip: bool) -> (String, Option<Usage>, String) {
    let mut a = stream_adapter(
        upstream,
        caller,
        StreamOptions { public_model: "public-model".into(), strip_usage_chunk: strip },
    )
    .unwrap();
    let mut out = BytesMut::new();
    let text = std::str::from_utf8(input).unwrap();
    let sep = if text.contains("\r\n\r\n") { "\r\n\r\n" } else { "\n\n" };
    for event in text.split_inclusive(sep) {
        if !event.trim().is_empty() {
            a.on_event(event.as_bytes(), &mut out);
        }
    }
    a.on_end(&mut out);
    (String::from_utf8(out.to_vec()).unwrap(), a.usage(), a.generated_text().to_owned())
}

fn pair(caller: Dialect, upstream: Dialect, name: &str) -> Option<Usage> {
    let req = read(name, "request.in.json");
    let out = chat_request(caller, upstream, &req, "upstream-model").unwrap();
    check(name, "request.out.json", &pretty(&out));
    let resp = read(name, "response.in.json");
    let out = chat_response(upstream, caller, &resp, "public-model").unwrap();
    check(name, "response.out.json", &pretty(&out));
    let (stream, usage, generated) = run_stream(upstream, caller, &read(name, "stream.in.sse"), false);
    check(name, "stream.out.sse", &stream);
    assert!(!generated.is_empty(), "{name}: generated text is tracked for estimates");
    usage
}

#[test]
fn openai_caller_anthropic_upstream() {
    let usage = pair(Dialect::OpenAiChat, Dialect::AnthropicMessages, "openai_to_anthropic").unwrap();
    assert_eq!((usage.input_tokens, usage.cached_input_tokens, usage.output_tokens), (250, 200, 22));
}

#[test]
fn anthropic_caller_openai_upstream() {
    let usage = pair(Dialect::AnthropicMessages, Dialect::OpenAiChat, "anthropic_to_openai").unwrap();
    assert_eq!((usage.input_tokens, usage.cached_input_tokens, usage.output_tokens), (120, 100, 15));
}

#[test]
fn openai_caller_gemini_upstream() {
    let usage = pair(Dialect::OpenAiChat, Dialect::Gemini, "openai_to_gemini").unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens, usage.reasoning_tokens), (40, 8, 3));
}

#[test]
fn same_dialect_requests_are_spliced_and_streams_forwarded_byte_for_byte() {
    let name = "openai_passthrough";
    let req = read(name, "request.in.json");
    let out = chat_request(Dialect::OpenAiChat, Dialect::OpenAiChat, &req, "gpt-4o-mini").unwrap();
    let want = String::from_utf8(req.to_vec()).unwrap().replacen("\"fast\"", "\"gpt-4o-mini\"", 1);
    assert_eq!(String::from_utf8(out.to_vec()).unwrap(), want, "only the model value changes");

    let input = read(name, "stream.in.sse");
    let (kept, usage, _) = run_stream(Dialect::OpenAiChat, Dialect::OpenAiChat, &input, false);
    assert_eq!(kept.as_bytes(), &input[..], "forwarded byte for byte");
    assert_eq!(usage.map(|u| u.input_tokens), Some(120));
    let (stripped, usage, _) = run_stream(Dialect::OpenAiChat, Dialect::OpenAiChat, &input, true);
    check(name, "stream.stripped.sse", &stripped);
    assert!(!stripped.contains("\"usage\""));
    assert_eq!(usage.map(|u| u.output_tokens), Some(15), "usage is read even when stripped");
}

#[test]
fn upstream_errors_reach_the_caller_in_its_own_shape() {
    let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    let out =
        error_body(Dialect::AnthropicMessages, Dialect::OpenAiChat, http::StatusCode::BAD_REQUEST, anthropic).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["message"], "prompt is too long: 210000 tokens > 200000 maximum");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let openai = br#"{"error":{"message":"maximum context length is 128000 tokens","type":"invalid_request_error","code":"context_length_exceeded","param":"messages"}}"#;
    let out =
        error_body(Dialect::OpenAiChat, Dialect::AnthropicMessages, http::StatusCode::BAD_REQUEST, openai).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("invalid_request_error")));

    let gemini = br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
    let out =
        error_body(Dialect::Gemini, Dialect::AnthropicMessages, http::StatusCode::TOO_MANY_REQUESTS, gemini).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");

    assert_eq!(
        error_body(Dialect::OpenAiChat, Dialect::AnthropicMessages, http::StatusCode::BAD_REQUEST, b"<html>"),
        None
    );
    assert_eq!(error_body(Dialect::OpenAiChat, Dialect::OpenAiChat, http::StatusCode::BAD_REQUEST, b"{\"x\":1}"), None);
}

#[test]
fn hostile_bodies_are_refused_with_a_reason_not_a_panic() {
    let cases: [(&[u8], &str); 6] = [
        (br#"{"model":"m","messages":"hi"}"#, "must be an array"),
        (br#"{"model":"m"}"#, "messages"),
        (br#"{"model":"m","messages":[{"content":"x"}]}"#, "role"),
        (br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#, "unknown message role"),
        (br#"{"model":"m","messages":[{"role":"user","content":42}]}"#, "content"),
        (
            br#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{not json"}}]}]}"#,
            "arguments",
        ),
    ];
    for (body, want) in cases {
        let err = chat_request(Dialect::OpenAiChat, Dialect::AnthropicMessages, &Bytes::from_static(body), "m")
            .expect_err(std::str::from_utf8(body).unwrap());
        assert!(err.to_string().contains(want), "{err} should mention {want}");
    }
    let deep = format!("{{\"model\":\"m\",\"messages\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(chat_request(Dialect::OpenAiChat, Dialect::Gemini, &Bytes::from(deep), "m").is_err());
    let huge = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "a".repeat(1 << 20));
    let out = chat_request(Dialect::OpenAiChat, Dialect::AnthropicMessages, &Bytes::from(huge), "m").unwrap();
    assert!(out.len() > 1 << 20);

    // Garbage events in a stream are skipped, never fatal.
    let (out, usage, _) = run_stream(
        Dialect::AnthropicMessages,
        Dialect::OpenAiChat,
        b"data: {not json\n\n: comment\n\nevent: mystery\ndata: {\"type\":\"mystery\"}\n\n",
        false,
    );
    assert_eq!(out, "data: [DONE]\n\n");
    assert_eq!(usage, None);
}
