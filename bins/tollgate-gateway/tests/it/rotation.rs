//! Key rotation through the standalone binary: two rotations inside one grace keep both
//! rotated-out secrets working, each until its own end (the earlier one here outlives the
//! later one), and revocation refuses every secret at once.

use crate::standalone::{Gateway, error_code, hello};
use http::StatusCode;
use serde_json::json;
use std::time::Duration;
use tollgate_testkit::FakeUpstream;
use tollgate_testkit::process::eventually;

/// Rotates key `id` with `grace` seconds and waits until the new secret works; returns it.
async fn rotate(gw: &Gateway, id: &str, grace: u64) -> String {
    let r = gw.admin_post(&format!("/api/v1/keys/{id}/rotate"), json!({"grace_period_s": grace})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let secret = r.json()["key"].as_str().unwrap().to_owned();
    gw.wait_key_live(&secret).await;
    secret
}

#[tokio::test]
async fn every_rotated_out_secret_works_until_its_own_grace_ends() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (id, s0) = gw.setup(&upstream, json!({})).await;
    let s1 = rotate(&gw, &id, 6).await; // s0 until ~6 s from now
    let s2 = rotate(&gw, &id, 3).await; // s1 until ~3 s from now: before s0's end

    // All three work: the second rotation did not cut the first one's grace short.
    for (name, s) in [("s1", &s1), ("s0", &s0), ("s2", &s2)] {
        let r = gw.chat(Some(s), &hello()).await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text());
    }

    // s1 stops at its own end; s0's grace goes on.
    eventually(Duration::from_secs(15), "s1's grace ends", || async {
        gw.chat(Some(&s1), &hello()).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let r = gw.chat(Some(&s0), &hello()).await;
    assert_eq!(r.status, StatusCode::OK, "s0 outlives s1: {}", r.text());

    // Then s0 stops at its own end, and the current secret keeps working.
    eventually(Duration::from_secs(15), "s0's grace ends", || async {
        let r = gw.chat(Some(&s0), &hello()).await;
        r.status == StatusCode::UNAUTHORIZED && error_code(&r) == "invalid_api_key"
    })
    .await;
    assert_eq!(gw.chat(Some(&s2), &hello()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn revocation_refuses_every_secret_at_once_grace_or_not() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (id, s0) = gw.setup(&upstream, json!({})).await;
    let s1 = rotate(&gw, &id, 3600).await;
    let s2 = rotate(&gw, &id, 3600).await;
    for s in [&s0, &s1, &s2] {
        assert_eq!(gw.chat(Some(s), &hello()).await.status, StatusCode::OK);
    }
    let r = gw.admin_post(&format!("/api/v1/keys/{id}/revoke"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(Duration::from_secs(10), "revocation reaches the data plane", || async {
        let r = gw.chat(Some(&s2), &hello()).await;
        r.status == StatusCode::FORBIDDEN && error_code(&r) == "virtual_key_revoked"
    })
    .await;
    for s in [&s0, &s1] {
        let r = gw.chat(Some(s), &hello()).await;
        assert!(matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "{}", r.text());
    }
    let before = upstream.request_count();
    gw.chat(Some(&s0), &hello()).await;
    assert_eq!(upstream.request_count(), before, "nothing reaches the upstream");
}
