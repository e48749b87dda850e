//! `tollctl budgets ...` against an in-process control plane over gRPC: what the CLI
//! prints, and what it changed (the published snapshot and the audit trail).

use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tollgate_controlplane::service::{Actor, CreateTeam};
use tollgate_controlplane::{Config, ControlPlane, SecretSources};
use tollgate_testkit::process::temp_dir;

const ADMIN: &str = "cli-budget-admin-token-0123456789";

/// A control plane serving gRPC on a free port, with a team `payments`.
async fn control_plane() -> (Arc<ControlPlane>, String, String) {
    let cfg = Config {
        database_url: "sqlite::memory:".into(),
        data_dir: temp_dir("cli-budgets"),
        secrets: SecretSources { admin_token: Some(ADMIN.into()), ..SecretSources::default() },
    };
    let cp = Arc::new(ControlPlane::start(&cfg).await.unwrap());
    let team = cp
        .service()
        .create_team(&Actor::system("test"), CreateTeam { name: "payments".into(), organization: None })
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = cp.clone();
    tokio::spawn(async move { server.serve_grpc(listener, std::future::pending()).await });
    (cp, endpoint, team.unwrap().id.to_string())
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

async fn fails(endpoint: &str, args: &[&str]) -> String {
    let (ok, out, err) = tollctl(endpoint, args).await;
    assert!(!ok, "tollctl {args:?} should fail: {out}");
    err
}

#[tokio::test]
async fn budgets_can_be_created_listed_reset_and_changed_from_the_cli() {
    let (cp, ep, team_id) = control_plane().await;

    let created = json_of(
        &ep,
        &[
            "budgets",
            "create",
            "--scope",
            "team",
            "--scope-id",
            "payments",
            "--limit-usd",
            "500",
            "--window",
            "month",
            "--alert-threshold",
            "0.8",
            "--alert-threshold",
            "0.5",
        ],
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["scope_id"], team_id.as_str(), "the team name is stored as its id");
    assert_eq!(created["limit_usd"], "500.00");
    assert_eq!(created["limit_tokens"], Value::Null);
    assert_eq!(created["alert_thresholds"], json!(["0.5", "0.8"]));
    assert_eq!((created["epoch"].clone(), created["temporary_increase"].clone()), (json!(0), Value::Null));
    let tokens = json_of(
        &ep,
        &[
            "budgets",
            "create",
            "--scope",
            "principal",
            "--scope-id",
            "acme:7",
            "--limit-tokens",
            "100000",
            "--window",
            "day",
            "--on-breach",
            "warn",
        ],
    )
    .await;
    assert_eq!((tokens["limit_tokens"].clone(), tokens["on_breach"].clone()), (json!(100000), json!("warn")));

    // List: filters and the table.
    let listed = json_of(&ep, &["budgets", "list", "--scope", "team", "--scope-id", "payments"]).await;
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().filter_map(|b| b["id"].as_str()).collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(listed["data"][0], created);
    let all = json_of(&ep, &["budgets", "list"]).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let (ok, table, err) = tollctl(&ep, &["budgets", "list"]).await;
    assert!(ok, "{err}");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{table}");
    assert!(table.contains(&id) && table.contains("$500.00") && table.contains("100000 tokens"), "{table}");

    // Reset twice: each bumps the epoch, and the snapshot carries it.
    let reset = json_of(&ep, &["budgets", "reset", &id]).await;
    assert_eq!(reset["epoch"], 1);
    let reset = json_of(&ep, &["budgets", "reset", &id]).await;
    assert_eq!(reset["epoch"], 2, "a second identical reset bumps the epoch again");
    let rev = cp.service().store().revision().await.unwrap();
    let mut rx = cp.snapshots();
    let snap = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.revision >= rev))
        .await
        .unwrap()
        .unwrap()
        .clone();
    let published = snap.budgets.iter().find(|b| b.id == id).unwrap();
    assert_eq!((published.epoch, published.limit_nanos), (2, 500_000_000_000));

    // Increase, then change the limit and end the increase.
    let inc = json_of(&ep, &["budgets", "increase", &id, "--amount-usd", "25", "--duration-s", "3600"]).await;
    assert_eq!(inc["temporary_increase"]["amount"], "25.00");
    let inc =
        json_of(&ep, &["budgets", "increase", tokens["id"].as_str().unwrap(), "--tokens", "500", "--duration-s", "60"])
            .await;
    assert_eq!(inc["temporary_increase"]["amount"], 500);
    let upd =
        json_of(&ep, &["budgets", "update", &id, "--limit-usd", "600", "--clear-increase", "--clear-alert-thresholds"])
            .await;
    assert_eq!(upd["limit_usd"], "600.00");
    assert_eq!(upd["temporary_increase"], Value::Null);
    assert_eq!(upd["alert_thresholds"], json!([]));
    assert_eq!(upd["epoch"], 2, "an update keeps the epoch");
    let got = json_of(&ep, &["budgets", "get", &id]).await;
    assert_eq!(got, upd);

    // Delete, then it is gone.
    let deleted = json_of(&ep, &["budgets", "delete", &id]).await;
    assert_eq!(deleted, json!({"id": id, "deleted": true}));
    let err = fails(&ep, &["budgets", "get", &id]).await;
    assert!(err.contains("not found") && err.contains(&id), "{err}");

    let events = cp.service().store().list_audit(Some("budget"), None, 100, None).await.unwrap();
    let mut actions: Vec<&str> = events.iter().filter(|e| e.target_id == id).map(|e| e.action.as_str()).collect();
    actions.reverse();
    assert_eq!(
        actions,
        ["budget.create", "budget.reset", "budget.reset", "budget.increase", "budget.update", "budget.delete"]
    );
    assert!(events.iter().all(|e| e.actor == "bootstrap"), "the token is the actor");
}

#[tokio::test]
async fn the_cli_reports_bad_budget_input_clearly() {
    let (_cp, ep, _) = control_plane().await;
    let create = |extra: &[&'static str]| {
        let mut args = vec!["budgets", "create", "--scope", "team", "--scope-id", "payments", "--window", "day"];
        args.extend_from_slice(extra);
        args
    };
    let err = fails(&ep, &create(&["--limit-usd", "-5"])).await;
    assert!(err.contains("limit_usd") && err.contains("negative"), "{err}");
    let err = fails(&ep, &create(&[])).await;
    assert!(err.contains("limit_usd"), "{err}");
    let err = fails(&ep, &create(&["--limit-usd", "1", "--alert-threshold", "1.5"])).await;
    assert!(err.contains("alert_thresholds"), "{err}");
    let err = fails(
        &ep,
        &["budgets", "create", "--scope", "team", "--scope-id", "nope", "--window", "day", "--limit-usd", "1"],
    )
    .await;
    assert!(err.contains("team \"nope\" not found"), "{err}");
    let err = fails(&ep, &["budgets", "reset", "bud_nope"]).await;
    assert!(err.contains("not found"), "{err}");
    // clap refuses contradictory flags before any call.
    let err = fails(&ep, &create(&["--limit-usd", "1", "--limit-tokens", "5"])).await;
    assert!(err.contains("cannot be used with"), "{err}");
    let err = fails(&ep, &["budgets", "increase", "bud_x", "--amount-usd", "1"]).await;
    assert!(err.contains("--expires-at") || err.contains("--duration-s"), "{err}");
}
