//! End-to-end: `tollgate-control` plus `tollgate-gateway --control-plane` replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test helper is a failed test

use http::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tollgate_testkit::http_client::{TestResponse, get, post_json};
use tollgate_testkit::process::{Proc, eventually, free_port, sibling_binary, temp_dir, wait_ready};
use tollgate_testkit::{CHAT_COMPLETION, FakeUpstream};

const ADMIN: &str = "split-admin-token-0123456789";

fn start_control(dir: &Path, database_url: &str) -> (Proc, String, String) {
    let (a, g) = (free_port(), free_port());
    let (admin, grpc) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{g}"));
    let dir_s = dir.to_string_lossy().into_owned();
    let bin = Path::new(env!("CARGO_BIN_EXE_tollgate-control"));
    let proc = Proc::spawn(
        bin,
        &["--database-url", database_url, "--data-dir", &dir_s, "--admin-listen", &admin, "--grpc-listen", &grpc],
        &[("TOLLGATE_ADMIN_TOKEN", ADMIN)],
    );
    (proc, format!("http://{admin}"), format!("http://{grpc}"))
}

fn start_gateway(grpc: &str) -> (Proc, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let bin = sibling_binary(env!("CARGO_BIN_EXE_tollgate-control"), "tollgate-gateway");
    let proc =
        Proc::spawn(&bin, &["--control-plane", grpc, "--listen", &listen], &[("TOLLGATE_CONTROL_PLANE_TOKEN", ADMIN)]);
    (proc, format!("http://{listen}"))
}

async fn created(admin: &str, path: &str, body: Value) -> Value {
    let r = post_json(&format!("{admin}{path}"), Some(ADMIN), &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.text());
    r.json()
}

async fn chat(gateway: &str, key: &str) -> TestResponse {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    post_json(&format!("{gateway}/v1/chat/completions"), Some(key), &body).await
}

#[tokio::test]
async fn a_key_minted_on_the_control_plane_works_on_every_gateway_until_revoked() {
    let dir = temp_dir("split");
    let db = format!("sqlite://{}?mode=rwc", dir.join("control.db").display());
    let (mut control, admin, grpc) = start_control(&dir, &db);
    wait_ready(&mut control, &format!("{admin}/healthz"), Duration::from_secs(30)).await;

    let (mut gw1, url1) = start_gateway(&grpc);
    let (mut gw2, url2) = start_gateway(&grpc);
    wait_ready(&mut gw1, &format!("{url1}/readyz"), Duration::from_secs(30)).await;
    wait_ready(&mut gw2, &format!("{url2}/readyz"), Duration::from_secs(30)).await;

    let upstream = FakeUpstream::start().await;
    created(
        &admin,
        "/api/v1/providers",
        json!({"name": "up", "kind": "openai-compatible", "base_url": upstream.base_url(), "api_key": "sk-up"}),
    )
    .await;
    created(
        &admin,
        "/api/v1/models",
        json!({"name": "gpt-4o-mini", "deployments": [{"provider": "up", "model": "gpt-4o-mini"}]}),
    )
    .await;
    created(&admin, "/api/v1/teams", json!({"name": "t"})).await;
    created(&admin, "/api/v1/projects", json!({"name": "p", "team": "t"})).await;
    let key = created(&admin, "/api/v1/keys", json!({"project": "p"})).await;
    let (id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());

    for url in [&url1, &url2] {
        eventually(Duration::from_secs(10), "key reaches the gateway", || async {
            chat(url, &secret).await.status == StatusCode::OK
        })
        .await;
        assert_eq!(chat(url, &secret).await.text(), CHAT_COMPLETION);
    }
    assert!(upstream.requests().iter().all(|r| r.header("authorization") == Some("Bearer sk-up")));

    let r = post_json(&format!("{admin}/api/v1/keys/{id}/revoke"), Some(ADMIN), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    for url in [&url1, &url2] {
        eventually(Duration::from_secs(10), "revocation reaches the gateway", || async {
            let r = chat(url, &secret).await;
            r.status == StatusCode::FORBIDDEN && r.json()["error"]["code"] == "virtual_key_revoked"
        })
        .await;
    }

    // The gateways keep serving their last snapshot while the control plane is down, and
    // catch up after it returns.
    control.kill();
    let r = chat(&url1, &secret).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "gateway keeps its snapshot without the control plane");
    let (mut control, admin2, _) = {
        // Same ports are not guaranteed free; restart on the same gRPC port the gateways know.
        let grpc_addr = grpc.trim_start_matches("http://").to_owned();
        let a = free_port();
        let admin = format!("127.0.0.1:{a}");
        let dir_s = dir.to_string_lossy().into_owned();
        let bin = Path::new(env!("CARGO_BIN_EXE_tollgate-control"));
        let proc = Proc::spawn(
            bin,
            &["--database-url", &db, "--data-dir", &dir_s, "--admin-listen", &admin, "--grpc-listen", &grpc_addr],
            &[("TOLLGATE_ADMIN_TOKEN", ADMIN)],
        );
        (proc, format!("http://{admin}"), grpc.clone())
    };
    wait_ready(&mut control, &format!("{admin2}/healthz"), Duration::from_secs(30)).await;
    let key2 = created(&admin2, "/api/v1/keys", json!({"project": "p"})).await;
    let secret2 = key2["key"].as_str().unwrap().to_owned();
    for url in [&url1, &url2] {
        eventually(Duration::from_secs(20), "gateway resumes after the control plane restarts", || async {
            chat(url, &secret2).await.status == StatusCode::OK
        })
        .await;
    }
    gw1.assert_running();
    gw2.assert_running();
}

#[tokio::test]
async fn a_gateway_with_a_wrong_token_is_not_ready_and_refuses_traffic() {
    let dir = temp_dir("split-bad-token");
    let db = format!("sqlite://{}?mode=rwc", dir.join("control.db").display());
    let (mut control, admin, grpc) = start_control(&dir, &db);
    wait_ready(&mut control, &format!("{admin}/healthz"), Duration::from_secs(30)).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let bin = sibling_binary(env!("CARGO_BIN_EXE_tollgate-control"), "tollgate-gateway");
    let mut gw = Proc::spawn(
        &bin,
        &["--control-plane", &grpc, "--listen", &listen],
        &[("TOLLGATE_CONTROL_PLANE_TOKEN", "wrong-token-xxxxxxxxxx")],
    );
    wait_ready(&mut gw, &format!("http://{listen}/healthz"), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = get(&format!("http://{listen}/readyz"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(gw.output().contains("invalid admin token"), "{}", gw.output());
}
