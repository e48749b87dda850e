//! Routing configured on the control plane, seen through the standalone binary: weighted
//! load balancing within tolerance, policy precedence (key over project) taking effect
//! on the live gateway, and aliases.

use crate::standalone::Gateway;
use http::StatusCode;
use serde_json::json;
use std::time::Duration;
use tollgate_testkit::http_client::get;
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, Reply};

async fn counts(ups: &[FakeUpstream]) -> Vec<usize> {
    ups.iter().map(FakeUpstream::request_count).collect()
}

#[tokio::test]
async fn policies_from_the_control_plane_route_live_weighted_within_tolerance_key_over_project() {
    let gw = Gateway::start().await;
    let first = FakeUpstream::start().await;
    let (key_id, secret) = gw.setup(&first, json!({})).await;
    let ups = [
        FakeUpstream::start_with(Reply::chat_completion()).await,
        FakeUpstream::start_with(Reply::chat_completion()).await,
        FakeUpstream::start_with(Reply::chat_completion()).await,
    ];
    let mut deployments = Vec::new();
    for (i, (up, weight)) in ups.iter().zip([70, 20, 10]).enumerate() {
        let name = format!("w{i}");
        gw.created(
            "/api/v1/providers",
            json!({"name": name, "kind": "openai-compatible", "base_url": up.base_url(), "api_key": "sk-x"}),
        )
        .await;
        deployments.push(json!({"provider": name, "model": format!("m{i}"), "weight": weight}));
    }
    let pricing = json!({"input_per_mtok": "1", "output_per_mtok": "2"});
    gw.created("/api/v1/models", json!({"name": "spread", "deployments": deployments, "pricing": pricing})).await;
    gw.created("/api/v1/aliases", json!({"name": "fast", "model": "spread"})).await;
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    eventually(Duration::from_secs(10), "the model routes", || async {
        gw.chat(Some(&secret), &ask("spread")).await.status == StatusCode::OK
    })
    .await;

    // No policy: the gateway's default, ordered fallback — the first deployment serves.
    let before = counts(&ups).await;
    for _ in 0..20 {
        assert_eq!(gw.chat(Some(&secret), &ask("spread")).await.status, StatusCode::OK);
    }
    let after = counts(&ups).await;
    assert_eq!((after[0] - before[0], after[1] - before[1], after[2] - before[2]), (20, 0, 0));

    // A weighted policy on the project reaches the live gateway.
    gw.created(
        "/api/v1/routing-policies",
        json!({"scope": "project", "scope_id": "web", "policy": {"strategy": "weighted"}}),
    )
    .await;
    eventually(Duration::from_secs(10), "the policy reaches the gateway", || async {
        let before = counts(&ups).await;
        for _ in 0..10 {
            gw.chat(Some(&secret), &ask("spread")).await;
        }
        let after = counts(&ups).await;
        after[0] - before[0] < 10
    })
    .await;
    // 70 / 20 / 10 over 500 requests: each share within 5 standard deviations.
    let before = counts(&ups).await;
    let n = 500;
    for _ in 0..n {
        // Through the alias too: it resolves to the same model and policy.
        let r = gw.chat(Some(&secret), &ask("fast")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let after = counts(&ups).await;
    let got: Vec<usize> = (0..3).map(|i| after[i] - before[i]).collect();
    assert_eq!(got.iter().sum::<usize>(), n);
    for (i, share) in [0.7_f64, 0.2, 0.1].into_iter().enumerate() {
        let (mean, sd) = (n as f64 * share, (n as f64 * share * (1.0 - share)).sqrt());
        let g = got[i] as f64;
        assert!((g - mean).abs() <= 5.0 * sd, "deployment {i}: {g} of {n}, expected {mean} ± {}", 5.0 * sd);
    }

    // A policy on the key wins over the project's: back to ordered, one attempt.
    gw.created(
        "/api/v1/routing-policies",
        json!({"scope": "virtual_key", "scope_id": key_id, "policy": {"strategy": "priority", "max_attempts": 1}}),
    )
    .await;
    eventually(Duration::from_secs(10), "the key's policy reaches the gateway", || async {
        let before = counts(&ups).await;
        for _ in 0..20 {
            gw.chat(Some(&secret), &ask("spread")).await;
        }
        let after = counts(&ups).await;
        after[0] - before[0] == 20
    })
    .await;
    // max_attempts 1: a failing first deployment is not fallen back from.
    ups[0].set_reply(Reply::raw(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "down"));
    let before = counts(&ups).await;
    let r = gw.chat(Some(&secret), &ask("spread")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let after = counts(&ups).await;
    assert_eq!((after[0] - before[0], after[1] - before[1], after[2] - before[2]), (1, 0, 0));

    // The alias is listed to a key allowed its model.
    let models = get(&format!("{}/v1/models", gw.data), Some(&secret)).await.json();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&"fast") && ids.contains(&"spread"), "{ids:?}");
}
