//! End-to-end: `tollctl keys ...` against a standalone gateway over gRPC, and the other
//! commands (`budgets`, `apply`, ...) against an in-process control plane.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test helper is a failed test

mod apply;
mod budgets;
mod resources;
mod routing;
mod security;
mod usage;

use http::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tollgate_controlplane::{Config, ControlPlane, SecretSources};
use tollgate_testkit::http_client::post_json;
use tollgate_testkit::process::{Proc, eventually, free_port, sibling_binary, temp_dir, wait_ready};

const ADMIN: &str = "cli-admin-token-0123456789";

/// A control plane in this process on an empty in-memory database, serving gRPC on a
/// free port until the test ends; `ADMIN` is its bootstrap token.
struct InProcess {
    cp: Arc<ControlPlane>,
    endpoint: String,
}

/// What one tollctl run did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout as JSON, after asserting the run succeeded.
    fn json(&self) -> Value {
        assert!(self.ok, "tollctl failed: {}{}", self.stdout, self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl InProcess {
    async fn start() -> InProcess {
        let cfg = Config {
            database_url: "sqlite::memory:".into(),
            data_dir: temp_dir("cli-inprocess"),
            secrets: SecretSources { admin_token: Some(ADMIN.into()), ..SecretSources::default() },
        };
        let cp = Arc::new(ControlPlane::start(&cfg).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = cp.clone();
        tokio::spawn(async move { server.serve_grpc(listener, std::future::pending()).await });
        InProcess { cp, endpoint }
    }

    /// Runs tollctl with `token` and extra environment `env`, off the runtime's threads
    /// (the control plane serves on them meanwhile).
    async fn run(&self, token: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(Path::new(env!("CARGO_BIN_EXE_tollctl")));
        cmd.args(["--endpoint", &self.endpoint, "--token", token]).args(args);
        for var in ["TOLLGATE_TOKEN", "TOLLGATE_ADMIN_TOKEN", "TOLLGATE_OUTPUT", "TOLLGATE_ENDPOINT"] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("run tollctl")).await.unwrap();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `--output json` as the admin; the parsed output of a run that must succeed.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        self.run(ADMIN, &all, &[]).await.json()
    }

    /// The configuration revision in the database.
    async fn revision(&self) -> i64 {
        self.cp.service().store().revision().await.unwrap()
    }

    /// How many audit events there are.
    async fn audit_len(&self) -> usize {
        self.cp.service().store().list_audit(None, None, 10_000, None).await.unwrap().len()
    }

    /// The published snapshot (what every gateway serves) at the current revision.
    async fn snapshot(&self) -> Arc<tollgate_proto::v1::Snapshot> {
        let rev = self.revision().await;
        let mut rx = self.cp.snapshots();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.revision >= rev))
            .await
            .expect("snapshot published")
            .unwrap()
            .clone()
    }
}

struct Env {
    _gw: Proc,
    data: String,
    grpc: String,
}

async fn start() -> Env {
    let dir = temp_dir("cli");
    let (d, a, g) = (free_port(), free_port(), free_port());
    let (data, admin, grpc) = (format!("127.0.0.1:{d}"), format!("127.0.0.1:{a}"), format!("127.0.0.1:{g}"));
    let bin = sibling_binary(env!("CARGO_BIN_EXE_tollctl"), "tollgate-gateway");
    let dir_s = dir.to_string_lossy().into_owned();
    let mut gw = Proc::spawn(
        &bin,
        &[
            "--standalone",
            "--demo",
            "--data-dir",
            &dir_s,
            "--listen",
            &data,
            "--admin-listen",
            &admin,
            "--grpc-listen",
            &grpc,
        ],
        &[("TOLLGATE_ADMIN_TOKEN", ADMIN)],
    );
    wait_ready(&mut gw, &format!("http://{data}/readyz"), Duration::from_secs(30)).await;
    Env { _gw: gw, data: format!("http://{data}"), grpc: format!("http://{grpc}") }
}

fn tollctl(env: &Env, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(Path::new(env!("CARGO_BIN_EXE_tollctl")))
        .args(["--endpoint", &env.grpc, "--token", token])
        .args(args)
        .env_remove("TOLLGATE_TOKEN")
        .output()
        .expect("run tollctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let (ok, out, err) = tollctl(env, ADMIN, &all);
    assert!(ok, "tollctl {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

async fn chat(env: &Env, key: &str) -> StatusCode {
    let body = json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]});
    post_json(&format!("{}/v1/chat/completions", env.data), Some(key), &body).await.status
}

#[tokio::test]
async fn keys_can_be_created_listed_rotated_and_revoked_from_the_cli() {
    let env = start().await;
    let created = json_of(
        &env,
        &[
            "keys",
            "create",
            "--project",
            "demo",
            "--name",
            "cli",
            "--principal",
            "acme:7",
            "--model",
            "demo",
            "--metadata",
            "tier=gold",
            "--tag",
            "env:prod",
            "--tag",
            "feature:chat",
            "--budget-usd",
            "5.00",
        ],
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tg_"));
    assert_eq!(created["info"]["metadata"]["tier"], "gold");
    assert_eq!(created["info"]["tags"], json!(["env:prod", "feature:chat"]));
    eventually(Duration::from_secs(10), "key works", || async { chat(&env, &secret).await == StatusCode::OK }).await;

    let listed = json_of(&env, &["keys", "list", "--principal", "acme:7"]);
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!(ids, [id.as_str()]);
    assert!(!listed.to_string().contains(&secret), "list never returns the secret");
    let by_tag = json_of(&env, &["keys", "list", "--tag", "feature:chat"]);
    assert_eq!(by_tag["data"].as_array().map(Vec::len), Some(1), "{by_tag}");
    assert_eq!(by_tag["data"][0]["id"], id.as_str());

    let (ok, table, _) = tollctl(&env, ADMIN, &["keys", "get", &id]);
    assert!(ok);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(table.contains(&id) && table.contains("active") && table.contains("env:prod,feature:chat"), "{table}");

    let rotated = json_of(&env, &["keys", "rotate", &id]);
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "rotation applied", || async {
        chat(&env, &new_secret).await == StatusCode::OK && chat(&env, &secret).await == StatusCode::UNAUTHORIZED
    })
    .await;

    let revoked = json_of(&env, &["keys", "revoke", &id]);
    assert_eq!(revoked["status"], "revoked");
    eventually(Duration::from_secs(10), "revocation applied", || async {
        chat(&env, &new_secret).await == StatusCode::FORBIDDEN
    })
    .await;
}

#[tokio::test]
async fn the_cli_reports_bad_tokens_and_unknown_keys_clearly() {
    let env = start().await;
    let (ok, _, err) = tollctl(&env, "wrong-token-xxxxxxxxxxxx", &["keys", "list"]);
    assert!(!ok);
    assert!(err.contains("admin token"), "{err}");
    let (ok, _, err) = tollctl(&env, ADMIN, &["keys", "get", "key_nope"]);
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    let (ok, _, err) = tollctl(&env, ADMIN, &["keys", "create", "--project", "demo", "--budget-usd", "-3"]);
    assert!(!ok);
    assert!(err.contains("budget.limit_usd"), "{err}");
}
