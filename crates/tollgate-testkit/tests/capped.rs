//! The cap-honouring fake reply answers like a provider: exactly min(cap, length)
//! completion tokens, usage to match, the dialect's "cut short" ending, in every dialect,
//! streamed or not; and the fake records the cap the caller forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use serde_json::{Value, json};
use tollgate_testkit::capped::TOKEN_TEXT;
use tollgate_testkit::http_client::{TestResponse, send};
use tollgate_testkit::{FakeUpstream, PromptTokens, Reply};

async fn post(up: &FakeUpstream, path: &str, body: Value) -> TestResponse {
    let url = format!("{}{path}", up.root_url());
    let resp = send(Method::POST, &url, &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp
}

/// The JSON `data:` payloads of an event stream (without `[DONE]`).
fn events(resp: &TestResponse) -> Vec<Value> {
    assert_eq!(resp.headers["content-type"], "text/event-stream");
    resp.text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event is JSON"))
        .collect()
}

fn tokens_in(text: &str) -> u64 {
    text.matches(TOKEN_TEXT).count() as u64
}

#[tokio::test]
async fn openai_chat_stops_at_the_cap_and_reports_length() {
    let up = FakeUpstream::start_with(Reply::capped(10, PromptTokens::Fixed(7))).await;
    // max_completion_tokens wins over max_tokens, like OpenAI.
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                      "max_completion_tokens": 3, "max_tokens": 9});
    let v = post(&up, "/v1/chat/completions", body).await.json();
    assert_eq!(up.last_cap(), Some(3));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(tokens_in(v["choices"][0]["message"]["content"].as_str().unwrap()), 3);
    assert_eq!(v["usage"], json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}));
    assert_eq!(v["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn openai_chat_under_the_cap_or_uncapped_finishes_with_its_length() {
    let up = FakeUpstream::start_with(Reply::capped(4, PromptTokens::Fixed(2))).await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let v = post(&up, "/v1/chat/completions", json!({"model": "m", "messages": msgs, "max_tokens": 50})).await.json();
    assert_eq!(up.last_cap(), Some(50));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    // A cap equal to the length is not "cut short".
    let v = post(&up, "/v1/chat/completions", json!({"model": "m", "messages": msgs, "max_tokens": 4})).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let v = post(&up, "/v1/chat/completions", json!({"model": "m", "messages": msgs})).await.json();
    assert_eq!(up.last_cap(), None);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(tokens_in(v["choices"][0]["message"]["content"].as_str().unwrap()), 4);
}

#[tokio::test]
async fn openai_chat_stream_sends_one_chunk_per_token_and_usage_only_when_asked() {
    let up = FakeUpstream::start_with(Reply::capped(10, PromptTokens::Fixed(5))).await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let body = json!({"model": "m", "messages": msgs, "stream": true, "max_tokens": 6,
                      "stream_options": {"include_usage": true}});
    let ev = events(&post(&up, "/v1/chat/completions", body).await);
    let content: Vec<&Value> = ev.iter().filter(|e| e["choices"][0]["delta"]["content"] == TOKEN_TEXT).collect();
    assert_eq!(content.len(), 6);
    let finish: Vec<&Value> = ev.iter().filter(|e| e["choices"][0]["finish_reason"].is_string()).collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "length");
    let last = ev.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], json!({"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}));

    let body = json!({"model": "m", "messages": msgs, "stream": true, "max_tokens": 6});
    let resp = post(&up, "/v1/chat/completions", body).await;
    assert!(resp.text().ends_with("data: [DONE]\n\n"));
    assert!(events(&resp).iter().all(|e| e.get("usage").is_none()), "no usage chunk unless asked");
}

#[tokio::test]
async fn responses_api_reads_max_output_tokens_and_ends_incomplete() {
    let up = FakeUpstream::start_with(Reply::capped(8, PromptTokens::Fixed(3))).await;
    let v = post(&up, "/v1/responses", json!({"model": "m", "input": "hi", "max_output_tokens": 2})).await.json();
    assert_eq!(up.last_cap(), Some(2));
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["usage"]["input_tokens"], 3);
    assert_eq!(v["usage"]["output_tokens"], 2);
    let ev = events(&post(&up, "/v1/responses", json!({"model": "m", "input": "hi", "stream": true})).await);
    assert_eq!(ev.iter().filter(|e| e["type"] == "response.output_text.delta").count(), 8);
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["status"], "completed");
    assert_eq!(last["response"]["usage"]["output_tokens"], 8);
}

#[tokio::test]
async fn anthropic_reads_max_tokens_and_stops_with_max_tokens() {
    let up = FakeUpstream::start_with(Reply::capped(5, PromptTokens::Fixed(11))).await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let v = post(&up, "/v1/messages", json!({"model": "claude", "messages": msgs, "max_tokens": 2})).await.json();
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["input_tokens"], 11);
    assert_eq!(v["usage"]["output_tokens"], 2);
    assert_eq!(tokens_in(v["content"][0]["text"].as_str().unwrap()), 2);
    let body = json!({"model": "claude", "messages": msgs, "max_tokens": 100, "stream": true});
    let ev = events(&post(&up, "/v1/messages", body).await);
    assert_eq!(up.last_cap(), Some(100));
    assert_eq!(ev[0]["message"]["usage"]["input_tokens"], 11);
    assert_eq!(ev.iter().filter(|e| e["type"] == "content_block_delta").count(), 5);
    let delta = ev.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn gemini_reads_generation_config_and_stops_with_max_tokens() {
    let up = FakeUpstream::start_with(Reply::capped(6, PromptTokens::Fixed(4))).await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                      "generationConfig": {"maxOutputTokens": 3}, "max_tokens": 99});
    let v = post(&up, "/v1beta/models/gemini-2.5-flash:generateContent", body.clone()).await.json();
    assert_eq!(up.last_cap(), Some(3), "Gemini's cap is generationConfig.maxOutputTokens");
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"], json!({"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7}));
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    let ev = events(&post(&up, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", body).await);
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[2]["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(ev[2]["usageMetadata"]["candidatesTokenCount"], 3);
    assert!(ev[..2].iter().all(|e| e["candidates"][0].get("finishReason").is_none()));
}

#[tokio::test]
async fn prompt_tokens_from_the_body_match_the_gateways_estimate() {
    let up = FakeUpstream::start_with(Reply::capped(1, PromptTokens::FromBody)).await;
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a fairly long prompt with words in it"}]});
    let want = tollgate_metering::tokens::estimate_prompt_tokens("gpt-4o-mini", body.to_string().as_bytes());
    assert!(want > 5, "{want}");
    let v = post(&up, "/v1/chat/completions", body).await.json();
    assert_eq!(v["usage"]["prompt_tokens"], want);
}

#[tokio::test]
async fn a_zero_cap_generates_nothing_and_says_so() {
    let up = FakeUpstream::start_with(Reply::capped(3, PromptTokens::Fixed(1))).await;
    let body = json!({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 0}});
    let ev = events(&post(&up, "/v1beta/models/g:streamGenerateContent?alt=sse", body).await);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(ev[0]["usageMetadata"]["candidatesTokenCount"], 0);
}
