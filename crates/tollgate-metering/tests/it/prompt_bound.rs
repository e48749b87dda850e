//! The prompt bound a reservation is computed from: never below what the model is
//! billed for, over generated conversations, and close to it for plain text.

use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_metering::tokens::{PartMaxTokens, Tokenizer, prompt_bound_with, prompt_token_bound};

/// One generated message: role, optional name, content and tool calls (name, arguments).
#[derive(Debug, Clone)]
struct Msg {
    role: &'static str,
    name: Option<String>,
    content: String,
    calls: Vec<(String, String)>,
}

fn bpe(model: &str) -> &'static tiktoken_rs::CoreBPE {
    if model.starts_with("gpt-4o") { tiktoken_rs::o200k_base_singleton() } else { tiktoken_rs::cl100k_base_singleton() }
}

/// What the model is billed for: the conversation rendered in ChatML, special tokens one
/// each; a tool call is a message of its own addressed to the function.
fn actual(model: &str, msgs: &[Msg]) -> u64 {
    let bpe = bpe(model);
    let tok = |s: &str| bpe.encode_ordinary(s).len() as u64;
    let mut n = 0;
    for m in msgs {
        let head = match &m.name {
            Some(name) => format!("{} name={name}", m.role),
            None => m.role.to_owned(),
        };
        n += 1 + tok(&format!("{head}\n{}", m.content)) + 1 + tok("\n");
        for (name, args) in &m.calls {
            n += 1 + tok(&format!("assistant to=functions.{name}\n{args}")) + 1 + tok("\n");
        }
    }
    n + 1 + tok("assistant\n")
}

fn body(model: &str, msgs: &[Msg]) -> Vec<u8> {
    let messages: Vec<Value> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut v = json!({"role": m.role, "content": m.content});
            if let Some(name) = &m.name {
                v["name"] = json!(name);
            }
            if !m.calls.is_empty() {
                let calls: Vec<Value> = m
                    .calls
                    .iter()
                    .enumerate()
                    .map(|(j, (name, args))| {
                        json!({"id": format!("call_{i}_{j}"), "type": "function",
                               "function": {"name": name, "arguments": args}})
                    })
                    .collect();
                v["tool_calls"] = Value::Array(calls);
            }
            v
        })
        .collect();
    serde_json::to_vec(&json!({"model": model, "max_tokens": 64, "messages": messages})).unwrap()
}

/// Text the way conversations have it: words, unicode, emoji, code, whitespace runs.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z]{1,12}( [a-zA-Z,.]{1,12}){0,20}",
        "\\PC{0,40}",
        "[😀🎉🚀👩‍💻🇫🇷❤️]{1,6}",
        "[ ]{1,300}",
        "[\n\t ]{1,40}",
        Just("fn main() {\n    let x = vec![1, 2, 3];\n    println!(\"{x:?}\");\n}\n".to_owned()),
        Just("def f(a, b):\n\treturn {'k': [a, b]}  # comment\n".to_owned()),
        "[0-9]{1,30}",
        "[{}\\[\\]\"':,<>|=_-]{1,20}",
        "[\u{4e00}-\u{4e50}\u{0600}-\u{0620}\u{0900}-\u{0920}]{1,30}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..6).prop_map(|f| f.concat())
}

fn msg() -> impl Strategy<Value = Msg> {
    let role = prop_oneof![Just("system"), Just("user"), Just("assistant"), Just("tool")];
    let name = prop::option::of("[a-zA-Z0-9_-]{1,16}");
    let call = ("[a-z_]{1,20}", text().prop_map(|t| json!({"q": t, "n": 3, "flag": true}).to_string()));
    let calls = prop::collection::vec(call, 0..3);
    (role, name, text(), calls).prop_map(|(role, name, content, calls)| Msg {
        role,
        name,
        content,
        calls: if role == "assistant" { calls } else { Vec::new() },
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_bound_is_never_below_what_the_model_is_billed_for(
        msgs in prop::collection::vec(msg(), 0..8),
        model in prop_oneof![Just("gpt-4o-mini"), Just("gpt-4-turbo")],
    ) {
        let body = body(model, &msgs);
        let counted = prompt_token_bound(model, &body, &PartMaxTokens::default()).unwrap();
        let actual = actual(model, &msgs);
        prop_assert!(counted >= actual, "{model}: counted {counted} < actual {actual} for {msgs:?}");
        // The byte bound the gateway reserves with first holds for these models too.
        let bytes = prompt_bound_with(Tokenizer::Estimate, &body, &PartMaxTokens::default()).unwrap();
        prop_assert!(bytes >= actual, "{model}: byte bound {bytes} < actual {actual} for {msgs:?}");
    }

    #[test]
    fn other_models_are_bounded_by_the_bytes_of_their_text(msgs in prop::collection::vec(msg(), 0..8)) {
        // No tokenizer makes a token of less than one byte: the text bytes bound any.
        let counted = prompt_token_bound("claude-sonnet-4-5", &body("claude-sonnet-4-5", &msgs), &PartMaxTokens::default()).unwrap();
        let bytes: u64 = msgs.iter().map(|m| (m.content.len() + m.role.len()) as u64).sum();
        prop_assert!(counted >= bytes, "counted {counted} < text bytes {bytes}");
    }
}

const ENGLISH: &str = "The committee met on Tuesday to review the quarterly results. Revenue grew in every \
    region except the north, where a late shipment pushed two large orders into the next quarter. ";

fn english_conversation() -> Vec<Msg> {
    let m = |role, content: String| Msg { role, name: None, content, calls: Vec::new() };
    vec![
        m("system", "You are a concise assistant that summarizes business reports.".to_owned()),
        m("user", ENGLISH.repeat(3)),
        m("assistant", "Revenue grew everywhere but the north, where orders slipped a quarter.".to_owned()),
        m("user", format!("And next quarter? {}", ENGLISH)),
    ]
}

#[test]
fn the_bound_of_plain_english_is_tight_and_the_body_length_was_not() {
    let msgs = english_conversation();
    for model in ["gpt-4o", "gpt-4"] {
        let body = body(model, &msgs);
        let counted = prompt_token_bound(model, &body, &PartMaxTokens::default()).unwrap();
        let actual = actual(model, &msgs);
        assert!(counted >= actual, "{model}: {counted} < {actual}");
        // Within 1.3x plus a few tokens a message.
        assert!(counted * 10 <= actual * 13 + 10 * 4 * msgs.len() as u64, "{model}: {counted} vs actual {actual}");
        // The old bound, the body's byte length, reserved several times as much.
        let old = body.len() as u64;
        println!("{model}: actual {actual}, bound {counted}, body length {old} ({:.1}x)", old as f64 / actual as f64);
        assert!(old >= 3 * actual, "{model}: the body-length bound was {old} for {actual}");
    }
}
