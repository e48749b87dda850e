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

/// A tiny OTLP/gRPC collector: every export request, as received.
mod collector {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Collector(pub(crate) Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            self.0.lock().unwrap().push(req.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
        }
    }

    /// Starts the collector; returns its endpoint.
    pub(crate) async fn start(c: Collector) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder().add_service(TraceServiceServer::new(c)).serve_with_incoming(incoming),
        );
        format!("http://{addr}")
    }
}

/// The string value of a span attribute, ints as decimal.
fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let v = span.attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
    match v {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Waits for the exported span of the request the caller sent as `x-request-id: id`.
async fn exported_span(
    received: &collector::Collector,
    gw: &Gateway,
    id: &str,
) -> opentelemetry_proto::tonic::trace::v1::Span {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let found = received
            .0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .find(|s| attr(s, "tollgate.client_request_id").as_deref() == Some(id))
            .cloned();
        if let Some(s) = found {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "no span exported for {id}\n{}", gw.proc.output());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_streams_span_lasts_until_it_is_charged_and_carries_its_usage() {
    let received = collector::Collector::default();
    let endpoint = collector::start(received.clone()).await;
    let gw =
        Gateway::start_with_env(&[("TOLLGATE_OTLP_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100")]).await;
    let upstream = FakeUpstream::start_with(tollgate_testkit::Reply::chat_stream()).await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = send(
        Method::POST,
        &format!("{}/v1/chat/completions", gw.data),
        &[("authorization", &format!("Bearer {secret}")), ("x-request-id", "otel-stream-1")],
        body.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let span = exported_span(&received, &gw, "otel-stream-1").await;
    // The stream's usage chunk reports 9 prompt and 2 completion tokens; they are
    // metered after the response head, in the charge task, on the same span.
    assert_eq!(attr(&span, "gen_ai.usage.input_tokens").as_deref(), Some("9"));
    assert_eq!(attr(&span, "gen_ai.usage.output_tokens").as_deref(), Some("2"));
    assert_eq!(attr(&span, "gen_ai.request.model").as_deref(), Some("gpt-4o-mini"));
}

#[tokio::test]
async fn request_spans_reach_an_otlp_collector_with_genai_attributes_and_no_secret() {
    use prost::Message as _;
    let received = collector::Collector::default();
    let endpoint = collector::start(received.clone()).await;
    let gw = Gateway::start_with_env(&[
        ("TOLLGATE_OTLP_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("TOLLGATE_METRICS_PRINCIPAL_LABELS", "5"),
    ])
    .await;
    let upstream = FakeUpstream::start().await;
    let (key_id, secret) = gw.setup(&upstream, json!({})).await;
    let r = send(
        Method::POST,
        &format!("{}/v1/chat/completions", gw.data),
        &[("authorization", &format!("Bearer {secret}")), ("x-request-id", "otel-req-1")],
        hello().to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    let span = exported_span(&received, &gw, "otel-req-1").await;
    assert_eq!(span.name, "chat gpt-4o-mini");
    assert_eq!(attr(&span, "gen_ai.request.model").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(attr(&span, "gen_ai.response.model").as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(attr(&span, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(attr(&span, "gen_ai.system").as_deref(), Some("openai-compatible"));
    // The fake upstream reports 12 prompt and 5 completion tokens.
    assert_eq!(attr(&span, "gen_ai.usage.input_tokens").as_deref(), Some("12"));
    assert_eq!(attr(&span, "gen_ai.usage.output_tokens").as_deref(), Some("5"));
    assert_eq!(attr(&span, "http.response.status_code").as_deref(), Some("200"));

    let exported: Vec<u8> = received.0.lock().unwrap().iter().flat_map(|r| r.encode_to_vec()).collect();
    for needle in [secret.as_str(), crate::standalone::UPSTREAM_KEY, crate::standalone::ADMIN] {
        assert!(!exported.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} exported");
    }

    // The access log: one line per request with its id and key id, never the secret.
    let logs = gw.proc.output();
    let line = logs.lines().find(|l| l.contains("otel-req-1") && l.contains("status=200")).unwrap_or_default();
    assert!(line.contains(&key_id) && line.contains("gpt-4o-mini"), "no access log line: {logs}");
    assert!(!logs.contains(&secret));

    // Per-principal series, opted in.
    let text = get(&format!("{}/metrics", gw.data), None).await.text();
    assert_eq!(value(&text, r#"tollgate_principal_requests_total{principal="acme:user-42"}"#), Some(1.0), "{text}");
}
