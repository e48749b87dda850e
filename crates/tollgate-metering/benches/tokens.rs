//! What counting tokens costs when an upstream reports no usage: tiktoken on a short and
//! a long prompt, the character estimate, and a whole chat body through
//! `estimate_prompt_tokens`, and the prompt bound budgets reserve from
//! (`prompt_token_bound`) on a ~1 KB and a ~100 KB chat body (on the shared 2-core dev
//! host, 2026-12-08: gpt-4o 85 µs and 10.1 ms, tiktoken-bound like the estimate; Claude,
//! bytes only, 4.9 µs and 170 µs). Run with `cargo bench -p tollgate-metering --bench tokens`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_metering::tokens::{PartMaxTokens, count_tokens, estimate_prompt_tokens, prompt_token_bound, warm};

const PARAGRAPH: &str = "The gateway counts what passed with the model's tokenizer when the \
    upstream reports no usage, so a request is never charged zero because usage was missing. ";

fn chat_body(paragraphs: usize) -> Vec<u8> {
    let text = PARAGRAPH.repeat(paragraphs);
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o",
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": [{"type": "text", "text": PARAGRAPH}]},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look a thing up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    warm();
    let short = PARAGRAPH;
    let long = PARAGRAPH.repeat(400); // ~60 KB, ~10k tokens
    c.bench_function("count_tokens/o200k/short", |b| b.iter(|| count_tokens("gpt-4o", black_box(short))));
    c.bench_function("count_tokens/o200k/60KB", |b| b.iter(|| count_tokens("gpt-4o", black_box(&long))));
    c.bench_function("count_tokens/cl100k/60KB", |b| b.iter(|| count_tokens("gpt-4", black_box(&long))));
    c.bench_function("count_tokens/estimate/60KB", |b| b.iter(|| count_tokens("claude-sonnet-4-5", black_box(&long))));
    let small_body = chat_body(1);
    let big_body = chat_body(400);
    c.bench_function("estimate_prompt_tokens/gpt-4o/1KB-body", |b| {
        b.iter(|| estimate_prompt_tokens("gpt-4o", black_box(&small_body)))
    });
    c.bench_function("estimate_prompt_tokens/gpt-4o/60KB-body", |b| {
        b.iter(|| estimate_prompt_tokens("gpt-4o", black_box(&big_body)))
    });
    c.bench_function("estimate_prompt_tokens/claude/60KB-body", |b| {
        b.iter(|| estimate_prompt_tokens("claude-sonnet-4-5", black_box(&big_body)))
    });
    let parts = PartMaxTokens::default();
    let body_1k = chat_body(4);
    let body_100k = chat_body(670);
    eprintln!("prompt_token_bound bodies: {} and {} bytes", body_1k.len(), body_100k.len());
    for (name, body) in [("1KB", &body_1k), ("100KB", &body_100k)] {
        for model in ["gpt-4o", "claude-sonnet-4-5"] {
            c.bench_function(&format!("prompt_token_bound/{model}/{name}-body"), |b| {
                b.iter(|| prompt_token_bound(model, black_box(body), &parts).unwrap())
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
