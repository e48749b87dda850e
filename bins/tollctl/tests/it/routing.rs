//! `tollctl aliases ...` and `tollctl routing-policies ...` against an in-process control
//! plane over gRPC: what the CLI prints, and what reached the published snapshot.

use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tollgate_controlplane::service::{Actor, CreateModel, CreateProvider, CreateTeam, DeploymentInput};
use tollgate_controlplane::{Config, ControlPlane, SecretSources};
use tollgate_testkit::process::temp_dir;

const ADMIN: &str = "cli-routing-admin-token-0123456789";

/// A control plane serving gRPC on a free port, with a model `gpt-4o` and a team `payments`.
async fn control_plane() -> (Arc<ControlPlane>, String) {
    let cfg = Config {
        database_url: "sqlite::memory:".into(),
        data_dir: temp_dir("cli-routing"),
        secrets: SecretSources { admin_token: Some(ADMIN.into()), ..SecretSources::default() },
    };
    let cp = Arc::new(ControlPlane::start(&cfg).await.unwrap());
    let svc = cp.service();
    let actor = Actor::system("test");
    let provider = CreateProvider {
        name: "up".into(),
        kind: "mock".into(),
        base_url: None,
        api_key: None,
        rpm: None,
        tpm: None,
        priority: None,
        extra: None,
    };
    svc.create_provider(&actor, provider).await.unwrap();
    let model = CreateModel {
        name: "gpt-4o".into(),
        deployments: vec![DeploymentInput {
            provider: "up".into(),
            model: "m".into(),
            priority: 0,
            weight: 3,
            pricing: None,
        }],
        pricing: None,
        max_output_tokens: None,
        max_tokens_per_part: None,
    };
    svc.create_model(&actor, model).await.unwrap();
    svc.create_team(&actor, CreateTeam { name: "payments".into(), organization: None }).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = cp.clone();
    tokio::spawn(async move { server.serve_grpc(listener, std::future::pending()).await });
    (cp, endpoint)
}

/// Runs tollctl off the runtime's threads (the control plane serves on them meanwhile).
async fn tollctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(Path::new(env!("CARGO_BIN_EXE_tollctl")));
    cmd.args(["--endpoint", endpoint, "--token", ADMIN]).args(args).env_remove("TOLLGATE_TOKEN");
    cmd.env_remove("TOLLGATE_OUTPUT").env_remove("TOLLGATE_ENDPOINT");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run tollctl")).await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn json_of(endpoint: &str, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let (ok, out, err) = tollctl(endpoint, &all).await;
    assert!(ok, "tollctl {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

async fn published(cp: &ControlPlane) -> Arc<tollgate_proto::v1::Snapshot> {
    let rev = cp.service().store().revision().await.unwrap();
    let mut rx = cp.snapshots();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.revision >= rev)).await.unwrap().unwrap().clone()
}

#[tokio::test]
async fn aliases_and_routing_policies_can_be_managed_from_the_cli() {
    let (cp, ep) = control_plane().await;

    let created = json_of(&ep, &["aliases", "create", "fast", "--model", "gpt-4o"]).await;
    assert_eq!(created["data"][0]["name"], "fast");
    assert_eq!(created["data"][0]["model"], "gpt-4o");
    let (ok, table, err) = tollctl(&ep, &["aliases", "list"]).await;
    assert!(ok, "{err}");
    assert!(table.starts_with("NAME") && table.contains("fast") && table.contains("gpt-4o"), "{table}");
    let (ok, _, err) = tollctl(&ep, &["aliases", "create", "faster", "--model", "fast"]).await;
    assert!(!ok && err.contains("alias"), "an alias to an alias is refused: {err}");
    assert_eq!(published(&cp).await.aliases.len(), 1);

    let policy = r#"{"strategy":"weighted","max_attempts":2,"retry_on":["429","5xx"]}"#;
    let created =
        json_of(&ep, &["routing-policies", "create", "--scope", "team", "--scope-id", "payments", "--policy", policy])
            .await;
    let p = &created["data"][0];
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!((p["scope"].as_str(), p["policy"]["strategy"].as_str()), (Some("team"), Some("weighted")));
    assert_eq!(p["policy"]["retry_on"], json!(["429", "5xx"]));
    json_of(&ep, &["routing-policies", "create", "--scope", "default"]).await;
    let got = json_of(&ep, &["routing-policies", "get", &id]).await;
    assert_eq!(got["data"][0], *p);
    let (ok, table, err) = tollctl(&ep, &["routing-policies", "list"]).await;
    assert!(ok, "{err}");
    assert!(
        table.starts_with("ID") && table.contains(&id) && table.contains("weighted") && table.contains("429,5xx"),
        "{table}"
    );
    assert_eq!(published(&cp).await.routing_policies.len(), 2);

    let (ok, _, err) = tollctl(
        &ep,
        &[
            "routing-policies",
            "create",
            "--scope",
            "project",
            "--scope-id",
            "x",
            "--policy",
            r#"{"backoff":{"base_ms":-1}}"#,
        ],
    )
    .await;
    assert!(!ok && err.contains("policy.backoff.base_ms"), "{err}");
    let (ok, _, err) = tollctl(&ep, &["routing-policies", "create", "--scope", "team", "--scope-id", "payments"]).await;
    assert!(!ok && err.contains("already has a routing policy"), "{err}");

    assert_eq!(json_of(&ep, &["routing-policies", "delete", &id]).await["deleted"], true);
    assert_eq!(json_of(&ep, &["aliases", "delete", "fast"]).await["deleted"], true);
    let snap = published(&cp).await;
    assert!(snap.aliases.is_empty());
    assert_eq!(snap.routing_policies.len(), 1);
    let (ok, _, err) = tollctl(&ep, &["routing-policies", "get", &id]).await;
    assert!(!ok && err.contains("not found"), "{err}");
}
