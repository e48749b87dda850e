//! `GET /metrics` of the control plane: management requests by route pattern and
//! status, latency, the published revision and ledger entries received.

use crate::{ADMIN, Cp};
use http::{Method, StatusCode};
use serde_json::json;
use tollgate_proto::v1;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

#[tokio::test]
async fn control_plane_metrics_count_routes_statuses_revision_and_ledger_entries() {
    use tollgate_proto::v1::ledger_service_client::LedgerServiceClient;
    let cp = Cp::start().await;
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "acme"})), StatusCode::CREATED).await;
    cp.expect(Method::GET, "/api/v1/keys/key_nope", None, StatusCode::NOT_FOUND).await;
    cp.expect(Method::GET, "/api/v1/keys/key_other", None, StatusCode::NOT_FOUND).await;
    assert_eq!(cp.call(Method::GET, "/api/v1/keys", Some("wrong-token"), None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(cp.call(Method::GET, "/no/such/path", None, None).await.status, StatusCode::NOT_FOUND);

    let mut client = LedgerServiceClient::connect(cp.grpc.clone()).await.unwrap();
    let batch = v1::LedgerBatch { entries: vec![crate::models::wire_entry("m1"), crate::models::wire_entry("m2")] };
    let mut req = tonic::Request::new(tokio_stream::iter(vec![batch]));
    req.metadata_mut().insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    client.push_ledger(req).await.unwrap();

    let r = cp.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text();
    let series = |route: &str, method: &str, status: u16| {
        format!("tollgate_control_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}")
    };
    assert_eq!(value(&text, &series("/api/v1/teams", "POST", 201)), Some(1.0), "{text}");
    // Routes are patterns, never concrete ids.
    assert_eq!(value(&text, &series("/api/v1/keys/{id}", "GET", 404)), Some(2.0), "{text}");
    assert_eq!(value(&text, &series("/api/v1/keys", "GET", 401)), Some(1.0), "{text}");
    assert_eq!(value(&text, &series("unmatched", "GET", 404)), Some(1.0), "{text}");
    assert!(!text.contains("key_nope"), "{text}");
    assert_eq!(
        value(&text, r#"tollgate_control_request_duration_seconds_count{route="/api/v1/keys/{id}"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(value(&text, "tollgate_control_ledger_entries_received_total"), Some(2.0), "{text}");
    assert!(!text.contains(ADMIN));
    // The team's creation bumped the revision; the gauge shows the published one.
    let revision = cp.revision().await;
    cp.snapshot_at(revision).await;
    let text = cp.call(Method::GET, "/metrics", None, None).await.text();
    assert_eq!(value(&text, "tollgate_control_revision"), Some(revision as f64), "{text}");
}
