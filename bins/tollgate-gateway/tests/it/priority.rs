//! A provider's `priority` orders deployments of equal deployment priority, through the
//! standalone binary: the lower-priority provider serves every request, a live change of
//! priority reaches routing, and when the preferred provider is down the other serves.

use crate::standalone::Gateway;
use http::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, Reply};

#[tokio::test]
async fn the_provider_with_the_lower_priority_serves_and_the_other_takes_over_when_it_is_down() {
    let gw = Gateway::start().await;
    let first = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&first, json!({})).await;
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let provider = |name: &str, up: &FakeUpstream, priority: i32| json!({"name": name, "kind": "openai-compatible", "base_url": up.base_url(), "api_key": "sk-x", "priority": priority});
    gw.created("/api/v1/providers", provider("pa", &a, 5)).await;
    let pb = gw.created("/api/v1/providers", provider("pb", &b, 1)).await;
    let pb = pb["id"].as_str().unwrap().to_owned();
    // Catalog order puts A first, at the same deployment priority as B.
    let model = json!({"name": "prio", "deployments": [{"provider": "pa", "model": "m"}, {"provider": "pb", "model": "m"}],
                       "pricing": {"input_per_mtok": "1", "output_per_mtok": "2"}});
    gw.created("/api/v1/models", model).await;
    let ask = json!({"model": "prio", "messages": [{"role": "user", "content": "hi"}]});
    eventually(Duration::from_secs(10), "the model routes", || async {
        gw.chat(Some(&secret), &ask).await.status == StatusCode::OK
    })
    .await;
    let hits = || (a.request_count(), b.request_count());

    // Provider B (priority 1) before A (priority 5): every request goes to B.
    let before = hits();
    for _ in 0..10 {
        let r = gw.chat(Some(&secret), &ask).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let after = hits();
    assert_eq!((after.0 - before.0, after.1 - before.1), (0, 10), "B serves every request");
    assert_eq!(after.0, 0, "A was never asked");

    // A live change of B's priority reaches routing: A (5) now comes before B (9).
    let r = gw.admin_send(Method::PATCH, &format!("/api/v1/providers/{pb}"), json!({"priority": 9})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(Duration::from_secs(10), "A serves once B's priority is 9", || async {
        let before = hits();
        gw.chat(Some(&secret), &ask).await.status == StatusCode::OK && hits() == (before.0 + 1, before.1)
    })
    .await;
    let r = gw.admin_send(Method::PATCH, &format!("/api/v1/providers/{pb}"), json!({"priority": 1})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(Duration::from_secs(10), "B serves again at priority 1", || async {
        let before = hits();
        gw.chat(Some(&secret), &ask).await.status == StatusCode::OK && hits() == (before.0, before.1 + 1)
    })
    .await;

    // B down: A serves every request.
    b.set_reply(Reply::json(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":{"message":"down"}}"#));
    let served_by_a = a.request_count();
    for _ in 0..10 {
        let r = gw.chat(Some(&secret), &ask).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(a.request_count() - served_by_a, 10, "A served each request B could not");
}
