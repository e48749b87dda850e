//! Upstreams that lie about usage or break their streams, through the standalone binary,
//! with the ledger as the books (issue 15, parts 3 and 4).
//!
//! An upstream that reports an absurd, negative or fractional token count is not
//! believed: the caller is still served, and the request is charged from the gateway's
//! own tokenizer count, marked `estimated`, and counted on `/metrics`. An upstream that
//! sends garbage mid-stream, resets, or stalls past the idle timeout: the caller's body
//! ends with an error event in its dialect and a clean end of the body, none of the
//! garbage reaches it, and the ledger blames the upstream (502, the attempt's outcome)
//! while charging what passed. Only a caller that hung up is recorded as 499.

use crate::standalone::{ADMIN, Gateway};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_metering::tokens::{count_tokens, estimate_prompt_tokens};
use tollgate_testkit::http_client::{TestResponse, get, send_cut};
use tollgate_testkit::process::eventually;
use tollgate_testkit::{CHAT_STREAM, FakeUpstream, RESPONSES_STREAM, Reply};

/// The deployments' upstream model name: it picks the tokenizer of the gateway's count.
const SERVED: &str = "gpt-4o-mini";
/// $1 / $2 per 1M input / output tokens, in nano-dollars a token.
const INPUT_NANOS: u64 = 1_000;
const OUTPUT_NANOS: u64 = 2_000;

/// A gateway with a 1 s stream idle timeout and no breaker (every fault reaches the
/// upstream), a key, and two priced models: `oa` on an OpenAI-compatible upstream and
/// `an` on an Anthropic one.
struct Rig {
    gw: Gateway,
    secret: String,
    openai: FakeUpstream,
    anthropic: FakeUpstream,
    _first: FakeUpstream,
}

impl Rig {
    async fn start() -> Rig {
        let gw =
            Gateway::start_with_env(&[("TOLLGATE_STREAM_IDLE_TIMEOUT_S", "1"), ("TOLLGATE_COOLDOWN_FAILURES", "0")])
                .await;
        let first = FakeUpstream::start().await;
        let (_, secret) = gw.setup(&first, json!({})).await;
        let (openai, anthropic) = (FakeUpstream::start().await, FakeUpstream::start().await);
        let pricing = json!({"input_per_mtok": "1", "output_per_mtok": "2"});
        gw.provider_and_model("oa", "openai-compatible", &openai, SERVED, pricing.clone()).await;
        gw.provider_and_model("an", "anthropic", &anthropic, SERVED, pricing).await;
        eventually(Duration::from_secs(10), "both models route", || async {
            let models = get(&format!("{}/v1/models", gw.data), Some(&secret)).await.text();
            models.contains("\"oa\"") && models.contains("\"an\"")
        })
        .await;
        Rig { gw, secret, openai, anthropic, _first: first }
    }

    /// Sends `body` to `path` with the caller's request id `id`; returns what arrived and
    /// whether the body ended cleanly (an HTTP client reading it whole saw no error).
    async fn call(&self, path: &str, id: &str, body: &str) -> (TestResponse, bool) {
        let auth = format!("Bearer {}", self.secret);
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("x-request-id", id)];
        send_cut(Method::POST, &format!("{}{path}", self.gw.data), &headers, body.to_owned()).await
    }
}

/// The ledger entry of the request sent with `x-request-id: id` (kept as the entry's
/// `client_request_id`; the ledger's own key is the gateway's id).
async fn ledger_entry(gw: &Gateway, id: &str) -> Value {
    let url = format!("{}/api/v1/ledger?window=24h&limit=1000", gw.admin);
    let find = |page: Value| page["entries"].as_array()?.iter().find(|e| e["client_request_id"] == id).cloned();
    eventually(Duration::from_secs(10), &format!("the ledger has the entry of {id}"), || {
        let url = url.clone();
        async move { find(get(&url, Some(ADMIN)).await.json()).is_some() }
    })
    .await;
    find(get(&url, Some(ADMIN)).await.json()).unwrap_or_default()
}

/// The value of one sample on `/metrics`.
async fn metric(gw: &Gateway, series: &str) -> Option<u64> {
    let text = get(&format!("{}/metrics", gw.data), None).await.text();
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn chat_body(model: &str, stream: bool) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "Tell me about the sea."}], "stream": stream})
        .to_string()
}

fn messages_body(model: &str, stream: bool) -> String {
    json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Tell me about the sea."}],
           "stream": stream})
    .to_string()
}

fn openai_answer(usage: &str) -> String {
    format!(
        r#"{{"id":"c1","object":"chat.completion","created":1,"model":"{SERVED}","choices":[{{"index":0,"message":{{"role":"assistant","content":"The sea is large and full of fish."}},"finish_reason":"stop"}}],"usage":{usage}}}"#
    )
}

fn anthropic_answer(usage: &str) -> String {
    format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"{SERVED}","content":[{{"type":"text","text":"The sea is large and full of fish."}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{usage}}}"#
    )
}

/// What the gateway charges when it counts itself: the prompt it was sent and the
/// generated text, each with the model's tokenizer, at $1 / $2 per 1M tokens.
fn counted_cost(input_tokens: u64, output_text: &str) -> (u64, u64, u64) {
    let output = count_tokens(SERVED, output_text);
    (input_tokens, output, input_tokens * INPUT_NANOS + output * OUTPUT_NANOS)
}

#[tokio::test]
async fn implausible_upstream_usage_is_charged_from_the_gateways_own_count() {
    let rig = Rig::start().await;
    let lies = [("u64-max", "18446744073709551615"), ("negative", "-5"), ("fractional", "12.5")];
    let mut rejected = [0u64; 2];
    for (what, lie) in lies {
        // Whole answers, both dialects: the lie in the input count, then in the output.
        for (path, model, body, upstream, answer, i) in [
            (
                "/v1/chat/completions",
                "oa",
                chat_body("oa", false),
                &rig.openai,
                openai_answer(&format!(r#"{{"prompt_tokens":12,"completion_tokens":{lie},"total_tokens":17}}"#)),
                0,
            ),
            (
                "/v1/messages",
                "an",
                messages_body("an", false),
                &rig.anthropic,
                anthropic_answer(&format!(r#"{{"input_tokens":{lie},"output_tokens":7}}"#)),
                1,
            ),
        ] {
            upstream.set_reply(Reply::json(StatusCode::OK, &answer));
            let id = format!("usage-{what}-{model}");
            let (r, clean) = rig.call(path, &id, &body).await;
            assert_eq!((r.status, clean), (StatusCode::OK, true), "{id}: the caller is still served: {}", r.text());
            assert_eq!(r.text(), answer, "{id}: the answer itself passes as it came");
            rejected[i] += 1;

            let e = ledger_entry(&rig.gw, &id).await;
            assert_eq!(e["usage_source"], "estimated", "{id}: {e}");
            let (input, output, cost) = counted_cost(estimate_prompt_tokens(SERVED, body.as_bytes()), &answer);
            assert_eq!(
                (e["input_tokens"].as_u64(), e["output_tokens"].as_u64()),
                (Some(input), Some(output)),
                "{id}: {e}"
            );
            assert_eq!(e["cost_nanos"].as_u64(), Some(cost), "{id}: the tokenizer's count, priced: {e}");
            assert_eq!(e["status"], 200, "{id}: {e}");
        }

        // A stream whose usage chunk lies: charged for the prompt and the text it streamed.
        let stream = CHAT_STREAM.replace(r#""prompt_tokens":9"#, &format!(r#""prompt_tokens":{lie}"#));
        assert_ne!(stream, CHAT_STREAM);
        rig.openai.set_reply(Reply::raw(StatusCode::OK, "text/event-stream", &stream));
        let id = format!("usage-{what}-stream");
        let body = chat_body("oa", true);
        let (r, clean) = rig.call("/v1/chat/completions", &id, &body).await;
        assert_eq!((r.status, clean), (StatusCode::OK, true), "{id}: {}", r.text());
        assert!(r.text().ends_with("data: [DONE]\n\n"), "{id}: served to the end: {}", r.text());
        rejected[0] += 1;
        let e = ledger_entry(&rig.gw, &id).await;
        assert_eq!(e["usage_source"], "estimated", "{id}: {e}");
        let (_, _, cost) = counted_cost(estimate_prompt_tokens(SERVED, body.as_bytes()), "Hello");
        assert_eq!(e["cost_nanos"].as_u64(), Some(cost), "{id}: {e}");
        assert_eq!(e["status"], 200, "{id}: {e}");
    }

    for (provider, n) in [("p-oa", rejected[0]), ("p-an", rejected[1])] {
        let series = format!("tollgate_upstream_usage_rejected_total{{provider=\"{provider}\"}}");
        assert_eq!(metric(&rig.gw, &series).await, Some(n), "{series}");
    }
}

/// How an upstream breaks a stream after its first events.
#[derive(Debug, Clone, Copy)]
enum Fault {
    BrokenJson,
    Binary,
    Reset,
    Stall,
}

impl Fault {
    /// The ledger's outcome for the attempt.
    fn outcome(self) -> &'static str {
        match self {
            Fault::BrokenJson | Fault::Binary => "stream_garbage",
            Fault::Reset => "stream_broken",
            Fault::Stall => "stream_idle",
        }
    }

    /// The reply: `passed`, then the fault, then (for garbage) more events that must not
    /// reach the caller either.
    fn reply(self, passed: &str, rest: &str, garbage_event: &str) -> Reply {
        // What passed arrives on its own first: garbage in the very first bytes is a failed
        // try judged before the caller sees anything (data plane `routing.rs`), not a
        // stream broken midway.
        let sse = |body: Vec<u8>| {
            Reply::raw_bytes(StatusCode::OK, "text/event-stream", body).trickle(passed.len(), Duration::from_millis(30))
        };
        match self {
            Fault::BrokenJson => sse([passed, garbage_event, rest].concat().into_bytes()),
            Fault::Binary => {
                let mut body = passed.as_bytes().to_vec();
                body.extend_from_slice(b"\xff\xfe\x00GARBAGE\x01\x02\xc3\x28\n\n");
                body.extend_from_slice(rest.as_bytes());
                sse(body)
            }
            Fault::Reset => sse([passed, rest].concat().into_bytes()).reset_after(passed.len()),
            Fault::Stall => sse([passed, rest].concat().into_bytes()).stall_after(passed.len()),
        }
    }
}

/// The events of a caller's body, each checked to be well formed: SSE fields only, and
/// data that is JSON (or OpenAI's `[DONE]`).
fn well_formed_events(body: &str) -> Vec<(Option<String>, Value)> {
    assert!(body.ends_with("\n\n"), "the body ends with a whole event: {body:?}");
    body.split_terminator("\n\n")
        .map(|event| {
            let mut name = None;
            let mut data = None;
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d);
                } else {
                    assert!(line.starts_with(':'), "not an SSE line: {line:?} in {body}");
                }
            }
            let data = data.unwrap_or_else(|| panic!("an event without data: {event:?}"));
            let v = if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"))
            };
            (name, v)
        })
        .collect()
}

#[tokio::test]
async fn a_stream_the_upstream_breaks_ends_with_an_error_event_and_the_upstream_is_blamed() {
    let rig = Rig::start().await;
    // OpenAI: the first chunk ("Hel") passes; no usage has been reported when it breaks.
    let first = CHAT_STREAM.find("\n\n").unwrap() + 2;
    let (oa_passed, oa_rest) = CHAT_STREAM.split_at(first);
    let oa_garbage = "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"GARBAGE\"\n\n";
    // Anthropic: message_start reports 11 input and 1 output token, then text passes.
    let text = "The sea is large, deep and salty. ";
    let delta = |t: &str| {
        format!(
            "event: content_block_delta\ndata: {}\n\n",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})
        )
    };
    let an_passed = [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"gpt-4o-mini\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n".to_owned(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_owned(),
        delta(text),
        delta(text),
    ]
    .concat();
    let an_rest = [
        delta("GARBAGE after"),
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":20}}\n\n".to_owned(),
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned(),
    ]
    .concat();
    let an_garbage = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"GARBAGE\n\n";
    let an_output = text.repeat(2);
    assert!(count_tokens(SERVED, &an_output) > 1, "more text than message_start claimed");
    // OpenAI Responses: response.created and one text delta ("Hello") pass.
    let second = RESPONSES_STREAM.match_indices("\n\n").nth(1).unwrap().0 + 2;
    let (rs_passed, rs_rest) = RESPONSES_STREAM.split_at(second);
    let rs_garbage =
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"GARBAGE\n\n";

    for fault in [Fault::BrokenJson, Fault::Binary, Fault::Reset, Fault::Stall] {
        for caller in ["chat", "messages", "responses"] {
            let id = format!("{fault:?}-{caller}");
            let (path, body, upstream, reply) = match caller {
                "chat" => (
                    "/v1/chat/completions",
                    chat_body("oa", true),
                    &rig.openai,
                    fault.reply(oa_passed, oa_rest, oa_garbage),
                ),
                "messages" => (
                    "/v1/messages",
                    messages_body("an", true),
                    &rig.anthropic,
                    fault.reply(&an_passed, &an_rest, an_garbage),
                ),
                _ => (
                    "/v1/responses",
                    json!({"model": "oa", "input": "Tell me about the sea.", "stream": true}).to_string(),
                    &rig.openai,
                    fault.reply(rs_passed, rs_rest, rs_garbage),
                ),
            };
            upstream.set_reply(reply);
            let (r, clean) = rig.call(path, &id, &body).await;
            assert_eq!(r.status, StatusCode::OK, "{id}: the stream had started: {}", r.text());
            assert!(clean, "{id}: the caller's body ends cleanly, not with a cut connection: {}", r.text());
            assert!(!r.body.windows(7).any(|w| w == b"GARBAGE"), "{id}: no garbage reached the caller: {}", r.text());
            assert!(!r.body.contains(&0xff), "{id}: no binary reached the caller");
            let events = well_formed_events(&r.text());
            let (name, last) = events.last().cloned().unwrap();
            match caller {
                "chat" => {
                    assert!(r.text().contains("\"Hel\""), "{id}: what passed reached the caller: {}", r.text());
                    assert_eq!((name, last["error"]["type"].as_str()), (None, Some("upstream_error")), "{id}: {last}");
                    assert!(last["error"]["message"].is_string(), "{id}: {last}");
                    assert!(!r.text().contains("[DONE]"), "{id}: a broken stream does not claim to have finished");
                }
                "responses" => {
                    assert!(r.text().contains("\"Hello\""), "{id}: what passed reached the caller: {}", r.text());
                    assert_eq!(name.as_deref(), Some("error"), "{id}: {}", r.text());
                    assert_eq!(
                        (last["type"].as_str(), last["error"]["type"].as_str()),
                        (Some("error"), Some("upstream_error"))
                    );
                    assert!(last["message"].is_string(), "{id}: {last}");
                    assert!(
                        !r.text().contains("response.completed"),
                        "{id}: a broken stream does not claim to have finished"
                    );
                }
                _ => {
                    assert!(r.text().contains("The sea is large"), "{id}: what passed reached the caller");
                    assert_eq!(name.as_deref(), Some("error"), "{id}: {}", r.text());
                    assert_eq!(
                        (last["type"].as_str(), last["error"]["type"].as_str()),
                        (Some("error"), Some("api_error"))
                    );
                    assert!(
                        !r.text().contains("message_stop"),
                        "{id}: a broken stream does not claim to have finished"
                    );
                }
            }

            let e = ledger_entry(&rig.gw, &id).await;
            assert_eq!(e["status"], 502, "{id}: the upstream's failure, not the caller's: {e}");
            let outcomes: Vec<&str> =
                e["attempts"].as_array().unwrap().iter().filter_map(|a| a["outcome"].as_str()).collect();
            assert!(outcomes.contains(&fault.outcome()), "{id}: {e}");
            assert_eq!(e["usage_source"], "estimated", "{id}: {e}");
            let (input, output, cost) = match caller {
                "chat" => counted_cost(estimate_prompt_tokens(SERVED, body.as_bytes()), "Hel"),
                "responses" => counted_cost(estimate_prompt_tokens(SERVED, body.as_bytes()), "Hello"),
                // The prompt as reported; the output counted, as message_start's 1 is too few.
                _ => counted_cost(11, &an_output),
            };
            assert_eq!(
                (e["input_tokens"].as_u64(), e["output_tokens"].as_u64()),
                (Some(input), Some(output)),
                "{id}: {e}"
            );
            assert_eq!(e["cost_nanos"].as_u64(), Some(cost), "{id}: what passed is charged: {e}");
        }
    }
    eventually(Duration::from_secs(5), "no upstream call is left open", || async {
        rig.openai.open_bodies() == 0 && rig.anthropic.open_bodies() == 0
    })
    .await;
}

#[tokio::test]
async fn a_caller_that_hangs_up_mid_stream_is_recorded_as_499() {
    let rig = Rig::start().await;
    rig.openai.set_reply(Reply::chat_stream().trickle(8, Duration::from_millis(300)));
    let addr = rig.gw.data.trim_start_matches("http://").to_owned();
    let body = chat_body("oa", true);
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\nx-request-id: hung-up\r\ncontent-length: {}\r\n\r\n{body}",
        rig.secret,
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut head)).await.unwrap().unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
    drop(sock);
    let e = ledger_entry(&rig.gw, "hung-up").await;
    assert_eq!(e["status"], 499, "the caller left: {e}");
    assert!(
        e["attempts"]
            .as_array()
            .is_none_or(|a| a.iter().all(|a| !a["outcome"].as_str().unwrap_or("").starts_with("stream_"))),
        "nothing blamed on the upstream: {e}"
    );
}
