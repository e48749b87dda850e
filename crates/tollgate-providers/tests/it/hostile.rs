//! Hostile and malformed input: refused with a reason the caller can act on, never a
//! panic; upstream errors reach the caller in its own dialect's shape.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde_json::Value;
use tollgate_providers::translate::{chat_request, chat_response, error_body};
use tollgate_providers::{CapField, Dialect, OutputCap, StreamOptions, stream_adapter};

const CAP: OutputCap = OutputCap { tokens: 256, chat_field: CapField::MaxCompletionTokens };

const TARGETS: [(Dialect, Dialect); 4] = [
    (Dialect::OpenAiChat, Dialect::AnthropicMessages),
    (Dialect::OpenAiChat, Dialect::Gemini),
    (Dialect::AnthropicMessages, Dialect::OpenAiChat),
    (Dialect::AnthropicMessages, Dialect::Gemini),
];

fn refused(from: Dialect, to: Dialect, body: &[u8]) -> String {
    match chat_request(from, to, &Bytes::copy_from_slice(body), "m", CAP) {
        Ok(out) => {
            panic!("{from:?}->{to:?} accepted {}: {}", String::from_utf8_lossy(body), String::from_utf8_lossy(&out))
        }
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_openai_bodies_are_refused_with_a_reason() {
    let cases: &[(&[u8], &str)] = &[
        (b"not json", "invalid JSON"),
        (b"[1,2]", "JSON object"),
        (br#"{"model":"m","messages":"hi"}"#, "must be an array"),
        (br#"{"model":"m"}"#, "messages"),
        (br#"{"model":"m","messages":[{"content":"x"}]}"#, "role"),
        (br#"{"model":"m","messages":[{"role":7,"content":"x"}]}"#, "role"),
        (br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#, "unknown message role 'wizard'"),
        (br#"{"model":"m","messages":[{"role":"user","content":42}]}"#, "content"),
    ];
    for to in [Dialect::AnthropicMessages, Dialect::Gemini] {
        for (body, want) in cases {
            let err = refused(Dialect::OpenAiChat, to, body);
            assert!(err.contains(want), "{to:?}: {err:?} should mention {want:?}");
        }
    }
}

#[test]
fn tool_arguments_that_are_not_a_json_object_are_refused_not_guessed() {
    for args in [r#""{not json""#, r#""[1,2]""#, r#""42""#, "17"] {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}},{{"role":"assistant","tool_calls":[{{"id":"c","type":"function","function":{{"name":"f","arguments":{args}}}}}]}}]}}"#
        );
        let err = refused(Dialect::OpenAiChat, Dialect::AnthropicMessages, body.as_bytes());
        assert!(err.contains("arguments"), "{args}: {err}");
    }
}

#[test]
fn unsupported_content_and_parameters_are_refused_for_anthropic() {
    let cases: &[(&[u8], &str)] = &[
        (br#"{"model":"m","n":3,"messages":[{"role":"user","content":"x"}]}"#, "'n'"),
        (
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
            "content parts",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
            "file_data",
        ),
        (br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#, "url"),
    ];
    for (body, want) in cases {
        let err = refused(Dialect::OpenAiChat, Dialect::AnthropicMessages, body);
        assert!(err.contains(want), "{err:?} should mention {want:?}");
    }
}

#[test]
fn malformed_anthropic_bodies_are_refused_with_a_reason() {
    let cases: &[(&[u8], &str)] = &[
        (br#"{"model":"m","max_tokens":5,"messages":{"role":"user"}}"#, "must be an array"),
        (br#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#, "unknown message role"),
        (br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":3.5}]}"#, "content"),
        (
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x"}}]}]}"#,
            "document",
        ),
    ];
    for to in [Dialect::OpenAiChat, Dialect::Gemini] {
        for (body, want) in cases {
            let err = refused(Dialect::AnthropicMessages, to, body);
            assert!(err.contains(want), "{to:?}: {err:?} should mention {want:?}");
        }
    }
}

#[test]
fn deep_nesting_and_huge_strings_are_handled_without_a_crash() {
    let deep = format!("{{\"model\":\"m\",\"messages\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_content = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":{}{}}}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for (from, to) in TARGETS {
        let err = refused(from, to, deep.as_bytes());
        assert!(err.contains("invalid JSON"), "{err}");
        let _ = refused(from, to, deep_content.as_bytes());
    }
    let huge = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "é".repeat(2 << 20));
    for to in [Dialect::AnthropicMessages, Dialect::Gemini] {
        let out = chat_request(Dialect::OpenAiChat, to, &Bytes::from(huge.clone()), "m", CAP).unwrap();
        assert!(out.len() > 4 << 20, "{to:?}: the text is kept whole");
    }
    // A model name that needs escaping stays valid JSON in every target.
    let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#;
    let out = chat_request(Dialect::AnthropicMessages, Dialect::OpenAiChat, &Bytes::from_static(body), "a\"b\\c", CAP)
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "a\"b\\c");
}

#[test]
fn upstream_answers_that_are_not_json_are_refused() {
    for (from, to) in [
        (Dialect::AnthropicMessages, Dialect::OpenAiChat),
        (Dialect::OpenAiChat, Dialect::AnthropicMessages),
        (Dialect::Gemini, Dialect::OpenAiChat),
    ] {
        assert!(chat_response(from, to, b"<html>502</html>", "m").is_err());
    }
    // Wrong types inside a JSON answer degrade to an empty answer, never a panic.
    let odd = br#"{"content":"not blocks","usage":[],"candidates":7,"choices":{"x":1}}"#;
    for (from, to) in [
        (Dialect::AnthropicMessages, Dialect::OpenAiChat),
        (Dialect::OpenAiChat, Dialect::AnthropicMessages),
        (Dialect::Gemini, Dialect::OpenAiChat),
        (Dialect::Gemini, Dialect::AnthropicMessages),
    ] {
        let out = chat_response(from, to, odd, "m").unwrap();
        let _: Value = serde_json::from_slice(&out).unwrap();
    }
}

#[test]
fn unsupported_pairs_are_refused_not_served_wrongly() {
    let body = Bytes::from_static(br#"{"model":"m","input":"x"}"#);
    for (from, to) in [
        (Dialect::OpenAiResponses, Dialect::AnthropicMessages),
        (Dialect::OpenAiEmbeddings, Dialect::Gemini),
        (Dialect::Gemini, Dialect::OpenAiChat),
    ] {
        assert!(chat_request(from, to, &body, "m", CAP).is_err(), "{from:?}->{to:?}");
    }
    let opts = || StreamOptions { public_model: "m".into(), strip_usage_chunk: false };
    assert!(stream_adapter(Dialect::OpenAiResponses, Dialect::AnthropicMessages, opts()).is_err());
    assert!(stream_adapter(Dialect::AnthropicMessages, Dialect::Gemini, opts()).is_err());
}

#[test]
fn garbage_events_in_a_stream_are_skipped_never_fatal() {
    let garbage: &[&[u8]] = &[
        b"data: {not json\n\n",
        b": comment\n\n",
        b"event: mystery\ndata: {\"type\":\"mystery\"}\n\n",
        b"data: \xff\xfe\n\n",
        b"retry: 100\n\n",
        b"data: [1,2,3]\n\n",
        b"data: {\"type\":\"content_block_delta\",\"index\":\"x\",\"delta\":7}\n\n",
        b"data: {\"choices\":[{\"delta\":{\"tool_calls\":\"x\",\"content\":5}}]}\n\n",
        b"data: {\"candidates\":[{\"content\":{\"parts\":\"x\"}}]}\n\n",
    ];
    for (up, caller) in [
        (Dialect::AnthropicMessages, Dialect::OpenAiChat),
        (Dialect::OpenAiChat, Dialect::AnthropicMessages),
        (Dialect::Gemini, Dialect::OpenAiChat),
        (Dialect::Gemini, Dialect::AnthropicMessages),
    ] {
        let mut a =
            stream_adapter(up, caller, StreamOptions { public_model: "m".into(), strip_usage_chunk: false }).unwrap();
        let mut out = BytesMut::new();
        for g in garbage {
            a.on_event(g, &mut out);
        }
        a.on_end(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(a.usage(), Ok(None), "{up:?}->{caller:?}");
        // Whatever was emitted is well-formed events in the caller's dialect.
        for event in text.split_terminator("\n\n") {
            let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            if data != "[DONE]" {
                let _: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{up:?}->{caller:?}: {e}: {data}"));
            }
        }
        match caller {
            Dialect::OpenAiChat => assert!(text.ends_with("data: [DONE]\n\n"), "{text}"),
            _ => assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"), "{text}"),
        }
    }
}

#[test]
fn generated_text_is_capped() {
    let mut a = stream_adapter(
        Dialect::AnthropicMessages,
        Dialect::OpenAiChat,
        StreamOptions { public_model: "m".into(), strip_usage_chunk: false },
    )
    .unwrap();
    let piece = "ü".repeat(100_000);
    let event = format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{piece}\"}}}}\n\n"
    );
    let mut out = BytesMut::new();
    for _ in 0..10 {
        a.on_event(event.as_bytes(), &mut out);
        out.clear();
    }
    let n = a.generated_text().len();
    assert!(n <= 1 << 20 && n > (1 << 20) - 4, "{n}");
}

#[test]
fn upstream_errors_reach_the_caller_in_its_own_shape() {
    let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
    let openai = br#"{"error":{"message":"maximum context length is 128000 tokens","type":"invalid_request_error","code":"context_length_exceeded","param":"messages"}}"#;
    let gemini = br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
    let json = |b: Option<Bytes>| -> Value { serde_json::from_slice(&b.unwrap()).unwrap() };

    let v = json(error_body(Dialect::AnthropicMessages, Dialect::OpenAiChat, StatusCode::BAD_REQUEST, anthropic));
    assert_eq!(v["error"]["message"], "prompt is too long: 210000 tokens > 200000 maximum");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v.get("type").is_none());

    let v = json(error_body(Dialect::OpenAiChat, Dialect::AnthropicMessages, StatusCode::BAD_REQUEST, openai));
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["message"], "maximum context length is 128000 tokens");

    let v = json(error_body(Dialect::Gemini, Dialect::AnthropicMessages, StatusCode::TOO_MANY_REQUESTS, gemini));
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let v = json(error_body(Dialect::Gemini, Dialect::OpenAiChat, StatusCode::TOO_MANY_REQUESTS, gemini));
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
        (Some("rate_limit_error"), Some("RESOURCE_EXHAUSTED"))
    );
    let v = json(error_body(Dialect::OpenAiChat, Dialect::OpenAiChat, StatusCode::BAD_REQUEST, openai));
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["param"].as_str()),
        (Some("context_length_exceeded"), Some("messages"))
    );
    let v = json(error_body(Dialect::AnthropicMessages, Dialect::Gemini, StatusCode::NOT_FOUND, anthropic));
    assert_eq!((v["error"]["code"].as_u64(), v["error"]["status"].as_str()), (Some(404), Some("NOT_FOUND")));

    // Not an error of the upstream's dialect: the data plane answers its own 502.
    for body in [&b"<html>"[..], b"{\"x\":1}", b"{\"error\":{\"code\":5}}", b"{\"error\":[1]}"] {
        for (from, to) in
            [(Dialect::OpenAiChat, Dialect::AnthropicMessages), (Dialect::AnthropicMessages, Dialect::OpenAiChat)]
        {
            assert_eq!(error_body(from, to, StatusCode::BAD_REQUEST, body), None, "{}", String::from_utf8_lossy(body));
        }
    }
    assert_eq!(
        error_body(Dialect::AnthropicMessages, Dialect::OpenAiChat, StatusCode::BAD_REQUEST, b"{\"error\":\"x\"}"),
        None
    );
}
