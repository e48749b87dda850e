//! What operators see: `/metrics` counting requests, refusals, tokens and cost, and the
//! request id carried through.

use crate::standalone::{Gateway, hello};
use http::{Method, StatusCode};
use serde_json::json;
use tollgate_testkit::FakeUpstream;
use tollgate_testkit::http_client::{get, send};

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

#[tokio::test]
async fn metrics_count_requests_refusals_tokens_and_cost() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({"rpm": 2})).await;
    for _ in 0..3 {
        gw.chat(Some(&secret), &hello()).await;
    }
    let r = send(
        Method::POST,
        &format!("{}/v1/chat/completions", gw.data),
        &[("authorization", &format!("Bearer {secret}")), ("x-request-id", "trace-abc-123")],
        hello().to_string(),
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "trace-abc-123", "a caller's request id is kept");

    let m = get(&format!("{}/metrics", gw.data), None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = m.text();
    let ok = r#"tollgate_requests_total{endpoint="chat",model="gpt-4o-mini",provider="up",status="200",error=""}"#;
    assert_eq!(value(&text, ok), Some(2.0), "{text}");
    let limited = r#"tollgate_requests_total{endpoint="chat",model="gpt-4o-mini",provider="up",status="429",error="rate_limit_exceeded"}"#;
    assert_eq!(value(&text, limited), Some(2.0), "{text}");
    assert_eq!(
        value(&text, r#"tollgate_rate_limit_refusals_total{dimension="rpm",limit_of="virtual_key"}"#),
        Some(2.0)
    );
    // The fake upstream reports 12 prompt and 5 completion tokens per call; $0.15 / $0.60 per 1M.
    let labels = r#"endpoint="chat",model="gpt-4o-mini",provider="up""#;
    assert_eq!(value(&text, &format!("tollgate_tokens_total{{{labels},kind=\"input\"}}")), Some(24.0));
    assert_eq!(value(&text, &format!("tollgate_tokens_total{{{labels},kind=\"output\"}}")), Some(10.0));
    assert_eq!(value(&text, &format!("tollgate_cost_usd_total{{{labels}}}")), Some(0.0000096));
    assert_eq!(value(&text, r#"tollgate_gateway_overhead_seconds_count{endpoint="chat"}"#), Some(2.0));
    assert!(value(&text, "tollgate_snapshot_revision").unwrap_or(0.0) > 0.0);
    assert!(!text.contains(&secret), "no secret on /metrics");
}
