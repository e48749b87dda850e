//! What counting tokens costs when an upstream reports no usage: tiktoken on a short and
//! a long prompt, the character estimate, and a whole chat body through
//! `estimate_prompt_tokens`. Run with `cargo bench -p tollgate-metering --bench tokens`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_metering::tokens::{count_tokens, estimate_prompt_tokens, warm};

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
