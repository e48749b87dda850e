//! Hard caps: every forwarded request carries the output cap its reservation was made
//! for, multimodal parts are bounded or refused, `clamp` budgets lower the cap to what
//! they afford, and — over random request shapes and budgets — no request is ever
//! charged more than it reserved, nor a budget past its limit.

use crate::support::{Gateway, World, chat, error_code, metric};
use http::StatusCode;
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_testkit::{FakeUpstream, PromptTokens, Reply};

/// $1 per million input tokens, $2 per million output tokens (support's `PRICE`).
const INPUT_NANOS: i64 = 1_000;
const OUTPUT_NANOS: i64 = 2_000;

/// The forwarded body of the upstream's `i`-th request.
fn forwarded(upstream: &FakeUpstream, i: usize) -> Value {
    upstream.requests()[i].json()
}

#[tokio::test]
async fn a_request_without_a_cap_is_forwarded_with_the_models_own_in_its_dialects_field() {
    let upstream = FakeUpstream::start_with(Reply::capped(20, PromptTokens::Fixed(10))).await;
    let mut w = World::new();
    w.provider("compat", "openai-compatible", &upstream.base_url());
    w.provider("openai", "openai", &upstream.base_url());
    w.provider("claude", "anthropic", &upstream.base_url());
    // Configured cap; the catalog's (gpt-4o-mini lists 16,384); neither (the default).
    w.model("configured", &[("compat", "some-model")]);
    w.model_with("catalogued", &[("compat", "gpt-4o-mini")], |m| m.max_output_tokens = None);
    w.model_with("unknown", &[("compat", "no-such-model")], |m| m.max_output_tokens = None);
    w.model("official", &[("openai", "gpt-4o-mini")]);
    w.model("translated", &[("claude", "claude-sonnet-4")]);
    let secret = w.key("key_caps", |_| {});
    let gw = Gateway::start(&w).await;
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    let cases: [(&str, &str, Value, &str, u64); 6] = [
        ("/v1/chat/completions", "configured", ask("configured"), "max_tokens", 1_000),
        ("/v1/chat/completions", "catalogued", ask("catalogued"), "max_tokens", 16_384),
        ("/v1/chat/completions", "unknown", ask("unknown"), "max_tokens", 4_096),
        // OpenAI's own API: the field its reasoning models accept.
        ("/v1/chat/completions", "official", ask("official"), "max_completion_tokens", 1_000),
        // Translated to Anthropic, whose cap is required.
        ("/v1/chat/completions", "translated", ask("translated"), "max_tokens", 1_000),
        // The caller's own cap wins over the model's, and is not raised.
        (
            "/v1/chat/completions",
            "configured",
            json!({"model": "configured", "max_tokens": 7,
            "messages": [{"role": "user", "content": "hi"}]}),
            "max_tokens",
            7,
        ),
    ];
    for (i, (path, model, body, field, cap)) in cases.into_iter().enumerate() {
        let r = gw.post(path, &secret, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{model}: {}", r.text());
        let sent = forwarded(&upstream, i);
        assert_eq!(sent[field], cap, "{model}: forwarded {sent}");
        assert_eq!(upstream.last_cap(), Some(cap), "{model}");
        for other in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
            assert!(other == field || sent.get(other).is_none(), "{model}: one cap field only: {sent}");
        }
    }
}

#[tokio::test]
async fn a_caller_sending_two_cap_fields_gets_both_held_to_the_smaller() {
    let upstream = FakeUpstream::start_with(Reply::capped(500, PromptTokens::Fixed(10))).await;
    let mut w = World::new();
    w.provider("compat", "openai-compatible", &upstream.base_url());
    w.model("m", &[("compat", "some-model")]);
    let secret = w.key("key_two", |_| {});
    w.key_budget("key_two", 1_000_000_000);
    let gw = Gateway::start(&w).await;
    let body = json!({"model": "m", "max_tokens": 300, "max_completion_tokens": 40,
        "messages": [{"role": "user", "content": "hi"}]});

    let r = gw.post("/v1/chat/completions", &secret, &body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let sent = forwarded(&upstream, 0);
    assert_eq!((sent["max_tokens"].as_u64(), sent["max_completion_tokens"].as_u64()), (Some(40), Some(40)));
    assert_eq!(gw.ledger_entries(1).await[0].output_tokens, 40);
    assert_eq!(metric(&gw.dp, "tollgate_reservation_overruns_total"), 0);
}

#[tokio::test]
async fn an_image_is_refused_naming_its_place_unless_the_model_bounds_images() {
    let upstream = FakeUpstream::start_with(Reply::capped(5, PromptTokens::Fixed(900))).await;
    let mut w = World::new();
    w.provider("compat", "openai-compatible", &upstream.base_url());
    w.model("text-only", &[("compat", "gpt-4o-mini")]);
    w.model_with("vision", &[("compat", "gpt-4o-mini")], |m| m.max_image_tokens = Some(1_105));
    let secret = w.key("key_img", |_| {});
    w.key_budget("key_img", 1_000_000_000);
    let gw = Gateway::start(&w).await;
    let ask = |model: &str| {
        json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}]})
    };

    let refused = gw.post("/v1/chat/completions", &secret, &ask("text-only")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text());
    let err = refused.json();
    assert_eq!(err["error"]["code"], "unsupported_content", "{err}");
    assert_eq!(err["error"]["param"], "messages[0].content[1]", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("image") && message.contains("max_tokens_per_part.image"), "{message}");
    assert!(upstream.requests().is_empty(), "nothing was forwarded");

    let served = gw.post("/v1/chat/completions", &secret, &ask("vision")).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text());
    // The 900 prompt tokens reported fit in the image's 1,105 reserved for it.
    assert_eq!(gw.ledger_entries(1).await[0].input_tokens, 900);
    assert_eq!(metric(&gw.dp, "tollgate_reservation_overruns_total"), 0);
}

/// The figure: a 32-token call ($0.032 at $1,000 per million tokens either way)
/// with `max_tokens: 50` against a $0.50 budget. Reserving the body's length admitted
/// 12 calls (77 % of the budget); the tight bound admits more, and `clamp` fills it.
async fn calls_admitted(on_breach: &str) -> (u32, i64, Vec<u64>) {
    let upstream = FakeUpstream::start_with(Reply::capped(20, PromptTokens::Fixed(12))).await;
    let mut w = World::new();
    w.provider("compat", "openai-compatible", &upstream.base_url());
    w.model_with("m", &[("compat", "gpt-4o-mini")], |m| {
        m.pricing = Some(tollgate_proto::v1::Pricing {
            input_per_mtok_nanos: 1_000_000_000_000,
            output_per_mtok_nanos: 1_000_000_000_000,
            cached_input_per_mtok_nanos: None,
            cache_write_per_mtok_nanos: None,
        });
    });
    let secret = w.key("key_fig", |_| {});
    w.budget("key_fig", 500_000_000, on_breach);
    let gw = Gateway::start(&w).await;
    let body =
        json!({"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello to the gateway"}]});
    let (mut admitted, mut capped) = (0, Vec::new());
    loop {
        let r = gw.post("/v1/chat/completions", &secret, &body).await;
        if r.status != StatusCode::OK {
            assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
            assert_eq!(error_code(&r), "budget_exceeded");
            break;
        }
        admitted += 1;
        if let Some(n) = r.headers.get("x-tollgate-output-capped") {
            capped.push(n.to_str().unwrap().parse().unwrap());
            let reason = r.headers["x-tollgate-budget-warning"].to_str().unwrap();
            assert!(reason.contains("budget=") && reason.contains("output_capped="), "{reason}");
        }
        assert!(admitted < 100, "the budget never refused");
    }
    let spent: i64 = gw.ledger_entries(admitted as usize).await.iter().map(|e| e.cost.nanos()).sum();
    assert_eq!(metric(&gw.dp, "tollgate_reservation_overruns_total"), 0);
    (admitted, spent, capped)
}

#[tokio::test]
async fn a_tight_bound_admits_more_calls_and_clamp_fills_the_budget() {
    let (block, block_spent, none) = calls_admitted("block").await;
    assert!(none.is_empty(), "a block budget never lowers the cap");
    let (clamp, clamp_spent, capped) = calls_admitted("clamp").await;
    eprintln!(
        "$0.50 at $0.032 a call: block admits {block} (${block_spent}n), clamp {clamp} (${clamp_spent}n), caps {capped:?}"
    );
    assert!(block >= 14, "the body-length bound admitted 12; the tight bound {block}");
    assert!(block_spent <= 500_000_000 && clamp_spent <= 500_000_000, "never past the limit");
    assert!(clamp > block, "clamp admits the calls block refuses ({clamp} vs {block})");
    assert!(!capped.is_empty() && capped.iter().all(|&n| (16..50).contains(&n)), "{capped:?}");
    assert!(clamp_spent * 100 >= 95 * 500_000_000, "clamp leaves the budget ≥ 95 % used: {clamp_spent}");
}

#[tokio::test]
async fn a_clamped_answer_ends_as_the_provider_ends_a_capped_one_and_below_the_floor_is_402() {
    // Answers are 200 tokens long unless capped; each request reserves its prompt bound
    // plus 200 output tokens (400,000 nanos of output at $2/M).
    let upstream = FakeUpstream::start_with(Reply::capped(200, PromptTokens::Fixed(10))).await;
    let mut w = World::new();
    w.provider("compat", "openai-compatible", &upstream.base_url());
    w.model("m", &[("compat", "gpt-4o-mini")]);
    let secret = w.key("key_clamp", |_| {});
    // Room for one whole answer and about half another.
    w.budget("key_clamp", 10 * INPUT_NANOS + 200 * OUTPUT_NANOS + 40 * INPUT_NANOS + 100 * OUTPUT_NANOS, "clamp")
        .clamp_floor_tokens = Some(16);
    let gw = Gateway::start(&w).await;
    let mut body = chat("m");
    body["max_tokens"] = 200.into();

    let whole = gw.post("/v1/chat/completions", &secret, &body).await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.text());
    assert!(whole.headers.get("x-tollgate-output-capped").is_none());
    assert_eq!(whole.json()["choices"][0]["finish_reason"], "stop");

    body["stream"] = true.into();
    let clamped = gw.post("/v1/chat/completions", &secret, &body).await;
    assert_eq!(clamped.status, StatusCode::OK, "{}", clamped.text());
    let cap: u64 = clamped.headers["x-tollgate-output-capped"].to_str().unwrap().parse().unwrap();
    assert!((16..200).contains(&cap), "lowered to what the budget affords: {cap}");
    assert_eq!(upstream.last_cap(), Some(cap), "the lowered cap is what the upstream was told");
    assert!(clamped.text().contains("\"finish_reason\":\"length\""), "{}", clamped.text());
    let warning = clamped.headers["x-tollgate-budget-warning"].to_str().unwrap();
    assert!(
        warning.starts_with("virtual_key=key_clamp;") && warning.contains(&format!("output_capped={cap}")),
        "{warning}"
    );

    // What is left affords fewer than 16 output tokens: refused like a block budget.
    body["stream"] = false.into();
    let refused = gw.post("/v1/chat/completions", &secret, &body).await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED, "{}", refused.text());
    assert_eq!(error_code(&refused), "budget_exceeded");
    assert_eq!(upstream.requests().len(), 2, "the refusal reached no upstream");
    let entries = gw.ledger_entries(2).await;
    assert_eq!(entries[1].output_tokens, cap);
    assert_eq!(metric(&gw.dp, "tollgate_output_capped_total"), 1);
    assert_eq!(metric(&gw.dp, "tollgate_reservation_overruns_total"), 0);
}

/// One generated request: its endpoint, body, and whether it streams.
#[derive(Debug, Clone)]
struct Shape {
    anthropic: bool,
    stream: bool,
    cap: Option<u64>,
    messages: Vec<(bool, String)>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let text = prop_oneof![
        "[a-zA-Z ,.!?]{0,200}",
        "\\PC{0,80}",
        "(fn [a-z]{1,8}\\(\\) \\{ return [0-9]{1,4}; \\}\n){0,6}",
        "[ \t\n]{0,64}",
        "[😀-🙏]{0,20}",
    ];
    (
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(1u64..3_000),
        proptest::collection::vec((any::<bool>(), text), 1..6),
    )
        .prop_map(|(anthropic, stream, cap, messages)| Shape { anthropic, stream, cap, messages })
}

impl Shape {
    fn request(&self) -> (&'static str, Value) {
        let messages: Vec<Value> = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, (assistant, text))| {
                // Anthropic needs the first turn to be the user's.
                let role = if *assistant && i > 0 { "assistant" } else { "user" };
                json!({"role": role, "content": text})
            })
            .collect();
        let mut body = json!({"model": "m", "messages": messages, "stream": self.stream});
        if let Some(cap) = self.cap {
            body["max_tokens"] = cap.into();
        }
        if self.anthropic {
            if self.cap.is_none() {
                body["max_tokens"] = 1_000.into(); // required by the dialect
            }
            ("/v1/messages", body)
        } else {
            ("/v1/chat/completions", body)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the request and whatever the budgets, an upstream that honours the
    /// forwarded cap and reports at most the true prompt tokens is never charged past
    /// the reservation, and no block or clamp budget ends past its limit.
    #[test]
    fn committed_never_exceeds_reserved(
        shapes in proptest::collection::vec(shape(), 1..8),
        length in 1u64..4_000,
        limit in 1_000i64..3_000_000,
        on_breach in prop_oneof![Just("block"), Just("clamp"), Just("warn")],
        floor in 1u64..64,
        upstream_model in prop_oneof![Just("gpt-4o-mini"), Just("gpt-4-turbo"), Just("claude-sonnet-4"), Just("mystery")],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let upstream = FakeUpstream::start_with(Reply::capped(length, PromptTokens::FromBody)).await;
            let mut w = World::new();
            w.provider("compat", "openai-compatible", &upstream.base_url());
            w.model_with("m", &[("compat", upstream_model)], |m| m.max_output_tokens = None);
            let secret = w.key("key_prop", |_| {});
            w.budget("key_prop", limit, on_breach).clamp_floor_tokens = Some(floor);
            let gw = Gateway::start(&w).await;
            let mut served = 0;
            for s in &shapes {
                let (path, body) = s.request();
                let r = gw.post(path, &secret, &body).await;
                match r.status {
                    StatusCode::OK => served += 1,
                    StatusCode::PAYMENT_REQUIRED => assert_ne!(on_breach, "warn", "{}", r.text()),
                    other => panic!("{other}: {} for {body}", r.text()),
                }
                if let Some(cap) = r.headers.get("x-tollgate-output-capped") {
                    assert_eq!(on_breach, "clamp");
                    assert_eq!(upstream.last_cap().map(|c| c.to_string()), Some(cap.to_str().unwrap().to_owned()));
                }
            }
            let entries = gw.ledger_entries(served).await;
            assert_eq!(metric(&gw.dp, "tollgate_reservation_overruns_total"), 0, "{entries:#?}");
            let spent: i64 = entries.iter().map(|e| e.cost.nanos()).sum();
            if on_breach != "warn" {
                assert!(spent <= limit, "{on_breach} budget of {limit} spent {spent}");
            }
        });
    }
}
