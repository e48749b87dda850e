//! Golden-file tests of every dialect pair: a fixture request in the caller's dialect →
//! the exact upstream body; a recorded upstream response → the exact caller response; a
//! recorded upstream SSE stream → the exact caller stream, whatever the network reads'
//! boundaries; and the usage read on the way.
//!
//! Fixtures live in `tests/golden/<caller>_to_<upstream>/` (or `<dialect>_passthrough/`):
//! `request*.in.json`, `response*.in.json` and `stream*.in.sse` are inputs; the matching
//! `*.out.*` files (`stream*.stripped.sse` for an OpenAI caller who did not ask for the
//! usage chunk) and `usage.out.json` are the reviewed expectations.
//! `UPDATE_GOLDEN=1 cargo test -p tollgate-providers --test it golden` rewrites the
//! expectations: review the diff before committing it.

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tollgate_providers::openai::RequestHead;
use tollgate_providers::translate::{chat_request, chat_response};
use tollgate_providers::{
    CapField, Dialect, OutputCap, SseFramer, StreamOptions, Usage, check_event, stream_adapter, usage_of,
};

fn dir(pair: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(pair)
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
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
/// JSON files compare as values unless `exact`; everything else byte for byte.
fn check(pair: &str, file: &str, actual: &str, exact: bool) {
    let path = dir(pair).join(file);
    let actual = normalize(actual);
    if updating() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if file.ends_with(".json") && !exact {
        let (a, e): (Value, Value) = (serde_json::from_str(&actual).unwrap(), serde_json::from_str(&expected).unwrap());
        assert_eq!(a, e, "{pair}/{file}");
    } else {
        assert_eq!(actual, expected, "{pair}/{file}");
    }
}

fn read(pair: &str, file: &str) -> Bytes {
    Bytes::from(std::fs::read(dir(pair).join(file)).unwrap())
}

fn pretty(b: &[u8]) -> String {
    let v: Value = serde_json::from_slice(b).unwrap();
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

fn usage_json(u: Option<Usage>) -> Value {
    match u {
        None => Value::Null,
        Some(u) => json!({
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cached_input_tokens": u.cached_input_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "reasoning_tokens": u.reasoning_tokens,
        }),
    }
}

/// What an adapter produced for one stream.
#[derive(Debug, PartialEq)]
struct Streamed {
    out: String,
    usage: Option<Usage>,
    generated: String,
}

/// Feeds a recorded SSE stream through the adapter, framed from network reads of
/// `read` bytes (the data plane's framing), and ends it.
fn run_stream(upstream: Dialect, caller: Dialect, input: &[u8], strip: bool, read: usize) -> Streamed {
    let opts = StreamOptions { public_model: "public-model".into(), strip_usage_chunk: strip };
    let mut a = stream_adapter(upstream, caller, opts).unwrap();
    let mut out = BytesMut::new();
    let mut framer = SseFramer::default();
    for chunk in input.chunks(read.max(1)) {
        framer.push(chunk, |e| a.on_event(e, &mut out));
    }
    framer.finish(|e| a.on_event(e, &mut out));
    a.on_end(&mut out);
    Streamed {
        out: normalize(std::str::from_utf8(&out).unwrap()),
        usage: a.usage().expect("recorded usage is plausible"),
        generated: a.generated_text().to_owned(),
    }
}

/// The stream through the adapter, checked to be the same whatever the read sizes and
/// line endings (a translated stream's output does not depend on the upstream's `\r\n`).
fn stream_all_ways(upstream: Dialect, caller: Dialect, input: &[u8], strip: bool) -> Streamed {
    let whole = run_stream(upstream, caller, input, strip, input.len());
    for read in [1, 2, 3, 7, 64, 1000] {
        assert_eq!(run_stream(upstream, caller, input, strip, read), whole, "read size {read}");
    }
    let crlf = String::from_utf8(input.to_vec()).unwrap().replace("\r\n", "\n").replace('\n', "\r\n");
    let with_crlf = run_stream(upstream, caller, crlf.as_bytes(), strip, 5);
    if upstream == caller {
        // Same dialect: forwarded byte for byte, line endings included.
        assert_eq!(with_crlf.out, whole.out.replace('\n', "\r\n"));
        assert_eq!(with_crlf.usage, whole.usage);
    } else {
        assert_eq!(with_crlf, whole, "\\r\\n line endings");
    }
    whole
}

/// The cap a fixture is forwarded with: the caller's own, else 4096, so the expectations
/// show the caller's requests as they were (the cap tests below change it).
fn fixture_cap(body: &[u8]) -> OutputCap {
    let tokens = RequestHead::parse(body).ok().and_then(|h| h.smallest_cap()).unwrap_or(4096);
    OutputCap { tokens, chat_field: CapField::MaxCompletionTokens }
}

fn files(pair: &str, prefix: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir(pair))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Runs every fixture of a pair directory and returns the usage read from each.
fn golden(pair: &str, caller: Dialect, upstream: Dialect) -> BTreeMap<String, Value> {
    let same = caller == upstream;
    let mut usage = BTreeMap::new();
    for name in files(pair, "request", ".in.json") {
        let body = read(pair, &name);
        let out = chat_request(caller, upstream, &body, "upstream-model", fixture_cap(&body)).unwrap();
        let out_name = name.replace(".in.", ".out.");
        // Same dialect: the exact bytes (nothing re-serialized); else the JSON value.
        let text = if same { String::from_utf8(out.to_vec()).unwrap() } else { pretty(&out) };
        check(pair, &out_name, &text, same);
    }
    for name in files(pair, "response", ".in.json") {
        let body = read(pair, &name);
        usage.insert(name.clone(), usage_json(usage_of(upstream, &body).expect("recorded usage is plausible")));
        let out = chat_response(upstream, caller, &body, "public-model").unwrap();
        if same {
            assert_eq!(out, body, "{pair}/{name}: same dialect answers are forwarded as they are");
        } else {
            check(pair, &name.replace(".in.", ".out."), &pretty(&out), false);
        }
    }
    for name in files(pair, "stream", ".in.sse") {
        let input = read(pair, &name);
        for event in SseFramer::split_all(&input) {
            let ok = check_event(&event, upstream);
            assert!(ok.is_ok(), "{pair}/{name}: a recorded event passes the framing rules: {ok:?}");
        }
        let s = stream_all_ways(upstream, caller, &input, false);
        assert!(!s.generated.is_empty(), "{pair}/{name}: generated text is tracked for estimates");
        usage.insert(name.clone(), usage_json(s.usage));
        if same {
            assert_eq!(s.out, normalize(std::str::from_utf8(&input).unwrap()), "{pair}/{name}: byte for byte");
        } else {
            check(pair, &name.replace(".in.", ".out."), &s.out, false);
        }
        if caller == Dialect::OpenAiChat {
            let stripped = stream_all_ways(upstream, caller, &input, true);
            assert!(!stripped.out.contains("\"usage\""), "{pair}/{name}: the usage chunk is stripped");
            assert_eq!(stripped.usage, s.usage, "{pair}/{name}: usage is read even when stripped");
            check(pair, &name.replace(".in.sse", ".stripped.sse"), &stripped.out, false);
        }
    }
    let text = serde_json::to_string_pretty(&usage).unwrap() + "\n";
    check(pair, "usage.out.json", &text, false);
    usage
}

fn tokens(usage: &BTreeMap<String, Value>, file: &str) -> (u64, u64, u64, u64, u64) {
    let u = &usage[file];
    let n = |k: &str| u[k].as_u64().unwrap();
    (n("input_tokens"), n("output_tokens"), n("cached_input_tokens"), n("cache_write_tokens"), n("reasoning_tokens"))
}

#[test]
fn openai_caller_anthropic_upstream() {
    let usage = golden("openai_to_anthropic", Dialect::OpenAiChat, Dialect::AnthropicMessages);
    // input includes cache reads (200) and writes (100).
    assert_eq!(tokens(&usage, "response.in.json"), (350, 30, 200, 100, 0));
    assert_eq!(tokens(&usage, "stream.in.sse"), (350, 88, 200, 100, 0));
}

#[test]
fn anthropic_caller_openai_upstream() {
    let usage = golden("anthropic_to_openai", Dialect::AnthropicMessages, Dialect::OpenAiChat);
    assert_eq!(tokens(&usage, "response.in.json"), (120, 15, 100, 0, 0));
    assert_eq!(tokens(&usage, "stream.in.sse"), (120, 40, 100, 0, 25));
}

#[test]
fn openai_caller_gemini_upstream() {
    let usage = golden("openai_to_gemini", Dialect::OpenAiChat, Dialect::Gemini);
    // Gemini's candidatesTokenCount excludes thoughts: output = candidates + thoughts.
    assert_eq!(tokens(&usage, "response.in.json"), (40, 42, 8, 0, 30));
    assert_eq!(tokens(&usage, "stream.in.sse"), (40, 8, 0, 0, 3));
}

#[test]
fn anthropic_caller_gemini_upstream_composes_through_openai_chat() {
    let usage = golden("anthropic_to_gemini", Dialect::AnthropicMessages, Dialect::Gemini);
    assert_eq!(tokens(&usage, "stream.in.sse"), (60, 31, 0, 0, 12));
}

#[test]
fn openai_same_dialect_is_spliced_and_forwarded_byte_for_byte() {
    let usage = golden("openai_passthrough", Dialect::OpenAiChat, Dialect::OpenAiChat);
    assert_eq!(tokens(&usage, "stream.in.sse"), (120, 15, 100, 0, 0));
    // The spliced request differs from the caller's only in the model value and the
    // usage request a stream needs.
    let req = read("openai_passthrough", "request.in.json");
    let out = chat_request(Dialect::OpenAiChat, Dialect::OpenAiChat, &req, "gpt-4o-mini", fixture_cap(&req)).unwrap();
    let want = String::from_utf8(req.to_vec()).unwrap().replacen("\"fast\"", "\"gpt-4o-mini\"", 1).replacen(
        '{',
        "{\"max_completion_tokens\":4096,\"stream_options\":{\"include_usage\":true},",
        1,
    );
    assert_eq!(String::from_utf8(out.to_vec()).unwrap(), want);
    let unchanged = chat_request(Dialect::OpenAiChat, Dialect::OpenAiChat, &req, "fast", fixture_cap(&req)).unwrap();
    assert!(!unchanged.starts_with(b"{\"model\""), "the usage request is added even when the model is unchanged");
}

#[test]
fn anthropic_same_dialect_is_spliced_and_forwarded_byte_for_byte() {
    let usage = golden("anthropic_passthrough", Dialect::AnthropicMessages, Dialect::AnthropicMessages);
    // message_start's input (with cache reads and writes) and message_delta's cumulative output.
    assert_eq!(tokens(&usage, "stream.in.sse"), (2510, 503, 2000, 500, 0));
    assert_eq!(tokens(&usage, "response.in.json"), (2510, 503, 2000, 500, 0));
}

#[test]
fn responses_pass_through_with_usage_from_response_completed() {
    let usage = golden("responses_passthrough", Dialect::OpenAiResponses, Dialect::OpenAiResponses);
    assert_eq!(tokens(&usage, "stream.in.sse"), (900, 620, 800, 0, 512));
    assert_eq!(tokens(&usage, "response.in.json"), (900, 620, 800, 0, 512));
}

#[test]
fn embeddings_pass_through_with_usage() {
    let usage = golden("embeddings_passthrough", Dialect::OpenAiEmbeddings, Dialect::OpenAiEmbeddings);
    assert_eq!(tokens(&usage, "response.in.json"), (8, 0, 0, 0, 0));
}

/// The output caps a forwarded body carries, wherever its dialect keeps them.
fn caps(to: Dialect, out: &[u8]) -> Vec<(&'static str, Value)> {
    let v: Value = serde_json::from_slice(out).unwrap();
    if to == Dialect::Gemini {
        assert!(v.get("max_tokens").is_none() && v.get("max_completion_tokens").is_none());
        return vec![("generationConfig.maxOutputTokens", v["generationConfig"]["maxOutputTokens"].clone())];
    }
    ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .into_iter()
        .filter_map(|k| v.get(k).map(|x| (k, x.clone())))
        .collect()
}

#[test]
fn every_forwarded_request_carries_exactly_the_cap_given_in_its_dialects_field() {
    use Dialect::*;
    let fixtures = [
        ("openai_to_anthropic", OpenAiChat, AnthropicMessages),
        ("openai_to_gemini", OpenAiChat, Gemini),
        ("anthropic_to_openai", AnthropicMessages, OpenAiChat),
        ("anthropic_to_gemini", AnthropicMessages, Gemini),
        ("openai_passthrough", OpenAiChat, OpenAiChat),
        ("anthropic_passthrough", AnthropicMessages, AnthropicMessages),
        ("responses_passthrough", OpenAiResponses, OpenAiResponses),
    ];
    let no_cap = |from: Dialect| -> Bytes {
        let text = match from {
            AnthropicMessages => r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
            OpenAiResponses => r#"{"model":"fast","input":"hi"}"#,
            _ => r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
        };
        Bytes::from_static(text.as_bytes())
    };
    for (pair, from, to) in fixtures {
        for body in [read(pair, "request.in.json"), no_cap(from)] {
            let caller_cap = RequestHead::parse(&body).ok().and_then(|h| h.smallest_cap());
            // Below the caller's cap, above it, and with none given.
            for tokens in [1, 77, 100_000] {
                for chat_field in [CapField::MaxCompletionTokens, CapField::MaxTokens] {
                    let cap = OutputCap { tokens, chat_field };
                    let out = chat_request(from, to, &body, "upstream-model", cap).unwrap();
                    let got = caps(to, &out);
                    let want_key = match to {
                        Gemini => "generationConfig.maxOutputTokens",
                        AnthropicMessages => "max_tokens",
                        OpenAiResponses => "max_output_tokens",
                        _ => chat_field.key(),
                    };
                    assert!(!got.is_empty(), "{pair} {caller_cap:?} -> {tokens}: no cap in {out:?}");
                    assert!(
                        got.iter().all(|(_, v)| *v == json!(tokens)),
                        "{pair} {caller_cap:?} -> {tokens}: every cap is the one given: {got:?}"
                    );
                    if caller_cap.is_none() || from != to {
                        assert_eq!(got, [(want_key, json!(tokens))], "{pair}: the dialect's own field");
                    }
                }
            }
        }
    }
}

#[test]
fn a_same_dialect_cap_changes_only_the_cap_bytes() {
    let req = read("anthropic_passthrough", "request.in.json");
    let head = RequestHead::parse(&req).unwrap();
    let caller = head.smallest_cap().unwrap();
    let cap = OutputCap { tokens: caller - 1, chat_field: CapField::MaxTokens };
    let out = chat_request(Dialect::AnthropicMessages, Dialect::AnthropicMessages, &req, "claude-fast", cap).unwrap();
    let span = head.cap_fields[0].span.clone();
    let digits = (caller - 1).to_string();
    assert_eq!(&out[..span.start], &req[..span.start]);
    assert_eq!(&out[span.start..span.start + digits.len()], digits.as_bytes());
    assert_eq!(&out[span.start + digits.len()..], &req[span.end..]);
}
