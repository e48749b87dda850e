//! `tollctl usage` and `tollctl models ...` against an in-process control plane: the
//! same numbers as the REST report, as a table and as JSON; prices set exactly.

use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tollgate_controlplane::ControlPlane;
use tollgate_controlplane::service::{Actor, CreateModel, CreateProvider, DeploymentInput};
use tollgate_core::{Money, Timestamp};
use tollgate_metering::{LedgerEntry, LedgerSink};
use tollgate_testkit::ledger::spend_entry;

use crate::ADMIN;

async fn control_plane() -> (Arc<ControlPlane>, String) {
    let p = crate::InProcess::start().await;
    (p.cp, p.endpoint)
}

async fn tollctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(Path::new(env!("CARGO_BIN_EXE_tollctl")));
    cmd.args(["--endpoint", endpoint, "--token", ADMIN]).args(args);
    cmd.env_remove("TOLLGATE_TOKEN").env_remove("TOLLGATE_OUTPUT").env_remove("TOLLGATE_ENDPOINT");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run tollctl")).await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn entry(id: &str, at: &str, model: &str, nanos: i64) -> LedgerEntry {
    spend_entry(id, "key_1", "prj_1", model, Timestamp::parse_rfc3339(at).unwrap(), (100, 10), nanos)
}

#[tokio::test]
async fn usage_prints_the_ledger_sums_as_a_table_and_as_json() {
    let (cp, endpoint) = control_plane().await;
    let batch = [
        entry("r1", "2026-03-01T23:59:59.999Z", "gpt-4o", 1_500_000_001),
        entry("r2", "2026-03-02T00:00:00Z", "gpt-4o", 2),
        entry("r3", "2026-03-02T10:00:00Z", "claude", 3),
        entry("r4", "2026-03-05T00:00:00Z", "gpt-4o", 1_000), // outside the range
    ];
    cp.service().store().write_batch(&batch).await.unwrap();
    let range = ["--from", "2026-03-01T00:00:00Z", "--to", "2026-03-03T00:00:00Z"];

    let args = [&["usage", "--group-by", "model,day", "--output", "json"][..], &range].concat();
    let (ok, out, err) = tollctl(&endpoint, &args).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["requests"], 3);
    assert_eq!(Money::parse_usd(v["summary"]["cost_usd"].as_str().unwrap()).unwrap(), Money::from_nanos(1_500_000_006));
    let days: Vec<(&str, u64)> = v["by_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["day"].as_str().unwrap(), d["requests"].as_u64().unwrap()))
        .collect();
    assert_eq!(days, [("2026-03-01", 1), ("2026-03-02", 2)]);
    let models: Vec<&str> = v["by_model"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["claude", "gpt-4o"]);

    let args = [&["usage", "--group-by", "model"][..], &range].concat();
    let (ok, out, err) = tollctl(&endpoint, &args).await;
    assert!(ok, "{err}");
    let total = out.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(total.contains("$1.500000006") && total.split_whitespace().nth(1) == Some("3"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("claude") && l.contains("$0.000000003")), "{out}");

    // A bad window is refused naming the parameter.
    let (ok, _, err) = tollctl(&endpoint, &["usage", "--window", "fortnight"]).await;
    assert!(!ok && err.contains("window"), "{err}");
}

#[tokio::test]
async fn models_list_and_set_price_from_the_cli() {
    let (cp, endpoint) = control_plane().await;
    let actor = Actor::system("test");
    let svc = cp.service();
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
    let model = |name: &str, upstream: &str| CreateModel {
        name: name.into(),
        deployments: vec![DeploymentInput {
            provider: "up".into(),
            model: upstream.into(),
            priority: 0,
            weight: 1,
            pricing: None,
        }],
        pricing: None,
        max_output_tokens: None,
        max_tokens_per_part: None,
    };
    svc.create_model(&actor, model("sonnet", "claude-sonnet-4-5")).await.unwrap();
    svc.create_model(&actor, model("local", "llama-local")).await.unwrap();

    let (ok, out, err) = tollctl(&endpoint, &["models", "list"]).await;
    assert!(ok, "{err}");
    let local = out.lines().find(|l| l.starts_with("local")).unwrap();
    assert!(local.contains("unpriced"), "{out}");
    let sonnet = out.lines().find(|l| l.starts_with("sonnet")).unwrap();
    assert!(sonnet.contains("$3.75") && sonnet.contains("catalog:"), "{out}");

    let set = ["models", "set-price", "local", "--input-per-mtok", "0.000000001", "--output-per-mtok", "2"];
    let (ok, out, err) = tollctl(&endpoint, &[&["--output", "json"][..], &set].concat()).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["price_source"], "explicit");
    assert_eq!(Money::parse_usd(v[0]["pricing"]["input_per_mtok"].as_str().unwrap()).unwrap(), Money::from_nanos(1));
    let stored = svc.get_model("local").await.unwrap();
    assert_eq!(stored.pricing.unwrap().output_per_mtok, Money::from_usd(2).unwrap());

    let (ok, _, err) =
        tollctl(&endpoint, &["models", "set-price", "local", "--input-per-mtok", "-1", "--output-per-mtok", "1"]).await;
    assert!(!ok && err.contains("input_per_mtok"), "{err}");
    let (ok, _, err) =
        tollctl(&endpoint, &["models", "set-price", "nope", "--input-per-mtok", "1", "--output-per-mtok", "1"]).await;
    assert!(!ok && err.contains("not found"), "{err}");
}
