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

/// A control plane on a fresh SQLite file in a new temp dir, answering: the dir, the
/// database URL (to restart it on), the process, and its REST and gRPC addresses.
async fn fresh_control(name: &str) -> (std::path::PathBuf, String, Proc, String, String) {
    let dir = temp_dir(name);
    let db = format!("sqlite://{}?mode=rwc", dir.join("control.db").display());
    let (mut control, admin, grpc) = start_control(&dir, &db);
    wait_ready(&mut control, &format!("{admin}/healthz"), Duration::from_secs(30)).await;
    (dir, db, control, admin, grpc)
}

fn start_gateway(grpc: &str) -> (Proc, String) {
    start_gateway_with(grpc, &[])
}

/// Provider `up` at the fake upstream, model `gpt-4o-mini` (priced when `pricing` is
/// given), team `t` and project `p`.
async fn catalog(admin: &str, upstream: &FakeUpstream, pricing: Option<Value>) {
    created(
        admin,
        "/api/v1/providers",
        json!({"name": "up", "kind": "openai-compatible", "base_url": upstream.base_url(), "api_key": "sk-up"}),
    )
    .await;
    let mut model = json!({"name": "gpt-4o-mini", "deployments": [{"provider": "up", "model": "gpt-4o-mini"}]});
    if let Some(p) = pricing {
        model["pricing"] = p;
    }
    created(admin, "/api/v1/models", model).await;
    created(admin, "/api/v1/teams", json!({"name": "t"})).await;
    created(admin, "/api/v1/projects", json!({"name": "p", "team": "t"})).await;
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
    let (dir, db, mut control, admin, grpc) = fresh_control("split").await;

    let (mut gw1, url1) = start_gateway(&grpc);
    let (mut gw2, url2) = start_gateway(&grpc);
    wait_ready(&mut gw1, &format!("{url1}/readyz"), Duration::from_secs(30)).await;
    wait_ready(&mut gw2, &format!("{url2}/readyz"), Duration::from_secs(30)).await;

    let upstream = FakeUpstream::start().await;
    catalog(&admin, &upstream, None).await;
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
    let (_dir, _db, _control, _admin, grpc) = fresh_control("split-bad-token").await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let bin = sibling_binary(env!("CARGO_BIN_EXE_tollgate-control"), "tollgate-gateway");
    let data = temp_dir("split-bad-token-gw");
    let data = data.to_string_lossy().into_owned();
    let mut gw = Proc::spawn(
        &bin,
        &["--control-plane", &grpc, "--listen", &listen, "--data-dir", &data],
        &[("TOLLGATE_CONTROL_PLANE_TOKEN", "wrong-token-xxxxxxxxxx")],
    );
    wait_ready(&mut gw, &format!("http://{listen}/healthz"), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = get(&format!("http://{listen}/readyz"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(gw.output().contains("invalid admin token"), "{}", gw.output());
}

fn start_gateway_with(grpc: &str, extra_args: &[&str]) -> (Proc, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let bin = sibling_binary(env!("CARGO_BIN_EXE_tollgate-control"), "tollgate-gateway");
    // Each gateway spools its ledger in a data dir of its own.
    let data = temp_dir("split-gw").to_string_lossy().into_owned();
    let args = [&["--control-plane", grpc, "--listen", &listen, "--data-dir", &data][..], extra_args].concat();
    let proc = Proc::spawn(&bin, &args, &[("TOLLGATE_CONTROL_PLANE_TOKEN", ADMIN)]);
    (proc, format!("http://{listen}"))
}

/// Two gateways sharing Redis enforce one budget together: the calls both of them let
/// through never cost more than the cap, and both report the same spend.
#[tokio::test]
async fn two_gateways_on_one_redis_never_overshoot_a_shared_budget() {
    let Some(redis) = std::env::var("TOLLGATE_TEST_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: TOLLGATE_TEST_REDIS_URL is not set");
        return;
    };
    let (_dir, _db, _control, admin, grpc) = fresh_control("split-redis").await;
    // A prefix of its own, so runs and parallel tests never share counters.
    let prefix = format!("tg-test-{}-{}:", std::process::id(), free_port());
    let shared = ["--redis-url", redis.as_str(), "--redis-key-prefix", prefix.as_str()];
    let (mut gw1, url1) = start_gateway_with(&grpc, &shared);
    let (mut gw2, url2) = start_gateway_with(&grpc, &shared);
    wait_ready(&mut gw1, &format!("{url1}/readyz"), Duration::from_secs(30)).await;
    wait_ready(&mut gw2, &format!("{url2}/readyz"), Duration::from_secs(30)).await;

    let upstream = FakeUpstream::start().await;
    // $1 / $100 per 1M tokens: the fake's 12 + 5 tokens cost 512,000 nano-dollars.
    catalog(&admin, &upstream, Some(json!({"input_per_mtok": "1", "output_per_mtok": "100"}))).await;
    let key = created(
        &admin,
        "/api/v1/keys",
        json!({"project": "p", "budget": {"limit_usd": "0.005", "window": "day", "on_breach": "block"}}),
    )
    .await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    for url in [&url1, &url2] {
        eventually(Duration::from_secs(10), "key reaches the gateway", || async {
            get(&format!("{url}/v1/key"), Some(&secret)).await.status == StatusCode::OK
        })
        .await;
    }

    // Both gateways at once, far past what $0.005 affords (about nine calls).
    let calls = (0..40).map(|i| {
        let (url, secret, body) = (if i % 2 == 0 { url1.clone() } else { url2.clone() }, secret.clone(), body.clone());
        async move { post_json(&format!("{url}/v1/chat/completions"), Some(&secret), &body).await.status }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::PAYMENT_REQUIRED).count();
    assert_eq!(ok + refused, statuses.len(), "only 200 and 402: {statuses:?}");
    assert!(refused > 0, "the shared budget refuses once spent");
    let dispatched = upstream.requests().len();
    assert_eq!(dispatched, ok);
    assert!(dispatched as i64 * 512_000 <= 5_000_000, "{dispatched} calls overshoot $0.005");
    assert!(dispatched >= 7, "the budget affords at least 7 calls, {dispatched} went out");

    // Both gateways read the same counters.
    let spent = |v: Value| v["budgets"][0]["spent"]["usd"].as_str().map(str::to_owned);
    let want = tollgate_core::Money::from_nanos(dispatched as i64 * 512_000);
    for url in [&url1, &url2] {
        let v = get(&format!("{url}/v1/key"), Some(&secret)).await.json();
        let got = spent(v.clone()).map(|s| tollgate_core::Money::parse_usd(&s).unwrap());
        assert_eq!(got, Some(want), "{url}: {v}");
    }
    gw1.assert_running();
    gw2.assert_running();
}

/// Restarts the control plane on the gRPC address the gateways know; returns it and its
/// new management URL.
fn restart_control(dir: &Path, db: &str, grpc: &str) -> (Proc, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let dir_s = dir.to_string_lossy().into_owned();
    let bin = Path::new(env!("CARGO_BIN_EXE_tollgate-control"));
    let grpc_addr = grpc.trim_start_matches("http://");
    let proc = Proc::spawn(
        bin,
        &["--database-url", db, "--data-dir", &dir_s, "--admin-listen", &admin, "--grpc-listen", grpc_addr],
        &[("TOLLGATE_ADMIN_TOKEN", ADMIN)],
    );
    (proc, format!("http://{admin}"))
}

/// The requests the control plane's ledger holds for the last hour.
async fn ledger_requests(admin: &str) -> Option<u64> {
    let r = get(&format!("{admin}/api/v1/usage?window=1h"), Some(ADMIN)).await;
    (r.status == StatusCode::OK).then(|| r.json()["summary"]["requests"].as_u64()).flatten()
}

/// Split mode: a gateway streams its ledger to the control plane; while the control plane
/// is down the entries wait in the gateway's spool, and after it returns every request is
/// in the ledger exactly once.
#[tokio::test]
async fn every_request_reaches_the_control_planes_ledger_once_across_an_outage() {
    let (dir, db, mut control, admin, grpc) = fresh_control("split-ledger").await;
    let (mut gw, url) = start_gateway(&grpc);
    wait_ready(&mut gw, &format!("{url}/readyz"), Duration::from_secs(30)).await;
    let upstream = FakeUpstream::start().await;
    catalog(&admin, &upstream, Some(json!({"input_per_mtok": "1", "output_per_mtok": "100"}))).await;
    let key = created(&admin, "/api/v1/keys", json!({"project": "p", "principal": "acme:1"})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "key reaches the gateway", || async {
        get(&format!("{url}/v1/key"), Some(&secret)).await.status == StatusCode::OK
    })
    .await;

    let load = |n: usize| {
        let (url, secret) = (url.clone(), secret.clone());
        async move {
            for _ in 0..n {
                assert_eq!(chat(&url, &secret).await.status, StatusCode::OK);
            }
        }
    };
    // With the control plane up.
    load(10).await;
    eventually(Duration::from_secs(20), "10 entries in the ledger", || async {
        ledger_requests(&admin).await == Some(10)
    })
    .await;
    // The control plane dies in the middle of a load, stays down for more of it, and
    // comes back while the rest runs.
    let running = tokio::spawn(load(15));
    tokio::time::sleep(Duration::from_millis(20)).await;
    control.kill();
    running.await.unwrap();
    let during_restart = tokio::spawn(load(10));
    let (mut control, admin) = restart_control(&dir, &db, &grpc);
    wait_ready(&mut control, &format!("{admin}/healthz"), Duration::from_secs(30)).await;
    during_restart.await.unwrap();

    let total = 35;
    eventually(Duration::from_secs(90), "every entry reaches the ledger after the outage", || async {
        ledger_requests(&admin).await == Some(total)
    })
    .await;
    // Exactly once each: the raw ledger holds `total` distinct request ids, all priced.
    let page = get(&format!("{admin}/api/v1/ledger?window=1h&limit=1000"), Some(ADMIN)).await.json();
    let entries = page["entries"].as_array().unwrap();
    let ids: std::collections::HashSet<&str> = entries.iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    assert_eq!((entries.len(), ids.len()), (total as usize, total as usize));
    assert!(entries.iter().all(|e| e["principal"] == "acme:1" && e["cost_nanos"].as_i64() == Some(512_000)));
    assert_eq!(upstream.requests().len(), total as usize);
    gw.assert_running();
}

/// Split mode rebuilds budget counters from the control plane's ledger, as standalone
/// does: a gateway started after spend was recorded (a restart, a new replica) starts
/// from that spend, not from zero, and refuses at the same point.
#[tokio::test]
async fn a_restarted_split_gateway_seeds_its_budget_counters_from_the_ledger() {
    let (_dir, _db, _control, admin, grpc) = fresh_control("split-seed").await;
    let (mut gw, url) = start_gateway(&grpc);
    wait_ready(&mut gw, &format!("{url}/readyz"), Duration::from_secs(30)).await;
    let upstream = FakeUpstream::start().await;
    // $1 / $100 per 1M tokens: the fake's 12 + 5 tokens cost 512,000 nano-dollars.
    catalog(&admin, &upstream, Some(json!({"input_per_mtok": "1", "output_per_mtok": "100"}))).await;
    let key = created(
        &admin,
        "/api/v1/keys",
        json!({"project": "p", "budget": {"limit_usd": "0.003", "window": "month", "on_breach": "block"}}),
    )
    .await;
    let (id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    let call = |url: String| {
        let (secret, body) = (secret.clone(), body.clone());
        async move { post_json(&format!("{url}/v1/chat/completions"), Some(&secret), &body).await.status }
    };
    let spent = |url: String| {
        let secret = secret.clone();
        async move {
            let v = get(&format!("{url}/v1/key"), Some(&secret)).await.json();
            let usd = v["budgets"][0]["spent"]["usd"].as_str().map(str::to_owned);
            usd.map(|s| tollgate_core::Money::parse_usd(&s).unwrap().nanos())
        }
    };
    eventually(Duration::from_secs(10), "key reaches the gateway", || async {
        get(&format!("{url}/v1/key"), Some(&secret)).await.status == StatusCode::OK
    })
    .await;
    for _ in 0..3 {
        assert_eq!(call(url.clone()).await, StatusCode::OK);
    }
    let before = 3 * 512_000;
    assert_eq!(spent(url.clone()).await, Some(before));
    eventually(Duration::from_secs(20), "3 entries in the ledger", || async {
        ledger_requests(&admin).await == Some(3)
    })
    .await;
    let ledger = get(&format!("{admin}/api/v1/usage?window=1h&scope=key&scope_id={id}"), Some(ADMIN)).await.json();
    assert_eq!(ledger["summary"]["cost_usd"], "0.001536", "{ledger}");

    // The gateway restarts (memory counters lost) and comes back from the control plane.
    gw.kill();
    let (mut gw, url) = start_gateway(&grpc);
    wait_ready(&mut gw, &format!("{url}/readyz"), Duration::from_secs(30)).await;
    assert_eq!(spent(url.clone()).await, Some(before), "counters are rebuilt from the ledger");
    // $0.003 - $0.001536 leaves room for exactly two more calls (each reserves about
    // $0.00058 and costs $0.000512); counters that started from zero would serve five.
    let mut served = 0;
    for _ in 0..6 {
        match call(url.clone()).await {
            StatusCode::OK => served += 1,
            StatusCode::PAYMENT_REQUIRED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(served, 2, "calls served after the restart");
    assert_eq!(spent(url.clone()).await, Some(before + served * 512_000));
    assert_eq!(upstream.requests().len() as i64, 3 + served);
    gw.assert_running();
}

/// Runs `tollgate-control --rotate-master-key` to completion with `env` added.
fn rotate(dir: &Path, database_url: &str, env: &[(&str, &str)]) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_tollgate-control"));
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--rotate-master-key", "--database-url", database_url, "--data-dir", &dir.to_string_lossy()]);
    cmd.env_remove("TOLLGATE_MASTER_KEY").env_remove("TOLLGATE_NEW_MASTER_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn rotating_the_master_key_replaces_the_key_file_and_the_control_plane_starts_with_the_new_key() {
    let (dir, db, mut control, admin, _) = fresh_control("rotate").await;
    let body =
        json!({"name": "up", "kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-up"});
    created(&admin, "/api/v1/providers", body).await;
    control.kill();
    let old_key = std::fs::read_to_string(dir.join("master.key")).unwrap();
    let new_key = "IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI="; // 32 bytes of 0x22

    // No new key: refused, nothing touched.
    let out = rotate(&dir, &db, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOLLGATE_NEW_MASTER_KEY"));
    // A wrong current key: refused by fingerprint, the key file stays.
    let wrong = "MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=";
    let out = rotate(&dir, &db, &[("TOLLGATE_MASTER_KEY", wrong), ("TOLLGATE_NEW_MASTER_KEY", new_key)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("fingerprint") && !stderr.contains(wrong), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("master.key")).unwrap(), old_key);

    // The key in use comes from the data dir's master.key, which is replaced.
    let out = rotate(&dir, &db, &[("TOLLGATE_NEW_MASTER_KEY", new_key)]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 provider credential(s) re-encrypted"), "{stdout}");
    assert!(!stdout.contains(new_key) && !stdout.contains(old_key.trim()), "no key material in the summary");
    assert_eq!(std::fs::read_to_string(dir.join("master.key")).unwrap(), new_key);
    assert_eq!(std::fs::read_to_string(dir.join("master.key.previous")).unwrap(), old_key.trim());

    // The old key is refused at start-up, naming the fingerprint the database expects.
    let bin = Path::new(env!("CARGO_BIN_EXE_tollgate-control"));
    let (a, g) = (free_port(), free_port());
    let out = std::process::Command::new(bin)
        .args(["--database-url", &db, "--data-dir", &dir.to_string_lossy()])
        .args(["--admin-listen", &format!("127.0.0.1:{a}"), "--grpc-listen", &format!("127.0.0.1:{g}")])
        .env("TOLLGATE_MASTER_KEY", old_key.trim())
        .env("TOLLGATE_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && stderr.contains("is not the one the stored provider credentials"), "{stderr}");
    let new_fingerprint = stdout.split("-> ").nth(1).unwrap().split(' ').next().unwrap();
    assert!(stderr.contains(new_fingerprint), "{stderr}");

    // Started normally (the new master.key), it serves the provider.
    let (mut control, admin, _) = start_control(&dir, &db);
    wait_ready(&mut control, &format!("{admin}/healthz"), Duration::from_secs(30)).await;
    let r = get(&format!("{admin}/api/v1/providers"), Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let names: Vec<String> =
        r.json()["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["up"]);
}
