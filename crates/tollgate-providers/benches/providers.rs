//! Benchmarks of the per-request body work the gateway does on the OpenAI path: parsing
//! the request head (model, stream, max tokens; the whole body validated as JSON) of a
//! small and a 32 KiB body, splicing a new model name in, asking a stream for its usage
//! chunk, and reading `usage` back from a non-streaming response — both with
//! `openai::extract_usage` (typed, skips the rest) and with `usage_of` (what the data
//! plane calls for any dialect; it builds a `serde_json::Value` of the whole body first).
//!
//! `cargo bench -p tollgate-providers --bench providers -- --warm-up-time 1 --measurement-time 3`

// A benchmark that fails should stop loudly, like a test.
#![allow(clippy::unwrap_used, reason = "benchmark setup failures should abort the run")]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_providers::openai::{RequestHead, extract_usage, request_stream_usage, rewrite_model};
use tollgate_providers::{Dialect, usage_of};

/// A typical small chat request (about 200 bytes).
fn small_request() -> Bytes {
    Bytes::from_static(
        br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"hello there, how are you?"}],"max_tokens":64,"temperature":0.2}"#,
    )
}

/// A 32 KiB request: a long conversation, with escapes and non-ASCII text in it, as
/// retrieval-augmented prompts tend to be.
fn large_request() -> Bytes {
    let turn = r#"{"role":"user","content":"Résumé of section \"4.2\": the quick brown fox jumps over the lazy dog — twice.\nThen a table:\t| a | b |\n"},{"role":"assistant","content":"Noted. Anything else about the fox, the dog, or the table?"},"#;
    let mut body = String::from(r#"{"model":"gpt-4o-mini","stream":false,"max_completion_tokens":512,"messages":["#);
    while body.len() < 32 * 1024 - 64 {
        body.push_str(turn);
    }
    body.push_str(r#"{"role":"user","content":"Summarize."}]}"#);
    Bytes::from(body)
}

/// A non-streaming chat completion as an upstream returns it (about 700 bytes).
fn response() -> Bytes {
    Bytes::from_static(
        br#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! I'm doing well, thank you. How can I help you today? If you have a question about the fox, the dog, or anything else, just ask.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":34,"total_tokens":53,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_06737a9306"}"#,
    )
}

fn request_parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    for (name, body) in [("small", small_request()), ("32KiB", large_request())] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("head-parse/{name}"), |b| {
            b.iter(|| black_box(RequestHead::parse(black_box(&body)).unwrap()))
        });
        let head = RequestHead::parse(&body).unwrap();
        g.bench_function(format!("rewrite-model/{name}"), |b| {
            b.iter(|| black_box(rewrite_model(black_box(&body), &head, "gpt-4o-mini-2024-07-18")))
        });
        g.bench_function(format!("rewrite-model-same-name/{name}"), |b| {
            b.iter(|| black_box(rewrite_model(black_box(&body), &head, "gpt-4o-mini")))
        });
    }
    let stream =
        Bytes::from_static(br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
    let head = RequestHead::parse(&stream).unwrap();
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("stream-include-usage/small", |b| {
        b.iter(|| black_box(request_stream_usage(black_box(&stream), &head)))
    });
    g.finish();
}

fn usage_extraction(c: &mut Criterion) {
    let body = response();
    assert!(extract_usage(&body).is_some() && usage_of(Dialect::OpenAiChat, &body).is_ok_and(|u| u.is_some()));
    let mut g = c.benchmark_group("usage");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("openai-extract_usage/chat-completion", |b| {
        b.iter(|| black_box(extract_usage(black_box(&body)).unwrap()))
    });
    g.bench_function("usage_of-openai-chat/chat-completion", |b| {
        b.iter(|| black_box(usage_of(Dialect::OpenAiChat, black_box(&body)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, request_parsing, usage_extraction);
criterion_main!(benches);
