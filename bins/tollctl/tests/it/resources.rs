//! `tollctl orgs|teams|projects|principals|providers|models|keys update` against an
//! in-process control plane: JSON in the REST shapes, tables with a header, and a
//! provider credential that never comes back.

use crate::{ADMIN, InProcess};
use serde_json::{Value, json};

const KEY_VAR: &str = "TG_RESOURCES_TEST_KEY";
const SECRET: &str = "sk-resources-test-secret-0123456789";

fn ids(list: &Value) -> Vec<&str> {
    list["data"].as_array().unwrap().iter().filter_map(|x| x["name"].as_str().or(x["id"].as_str())).collect()
}

#[tokio::test]
async fn every_resource_can_be_created_read_and_listed_from_the_cli() {
    let cp = InProcess::start().await;
    let org = cp.json(&["orgs", "create", "acme"]).await;
    assert!(org["id"].as_str().unwrap().starts_with("org_"), "{org}");
    assert_eq!(cp.json(&["orgs", "get", "acme"]).await, org);
    let team = cp.json(&["teams", "create", "payments", "--org", "acme"]).await;
    assert_eq!(team["org_id"], org["id"]);
    cp.json(&["teams", "create", "ops"]).await;
    assert_eq!(ids(&cp.json(&["teams", "list", "--org", "acme"]).await), ["payments"]);
    let project = cp.json(&["projects", "create", "checkout", "--team", "payments"]).await;
    assert_eq!(project["team_id"], team["id"]);
    assert_eq!(cp.json(&["projects", "get", "checkout"]).await, project);
    assert_eq!(ids(&cp.json(&["projects", "list", "--team", "ops"]).await), Vec::<&str>::new());

    // A provider credential goes in from the environment and never comes back.
    let create = ["providers", "create", "up", "--kind", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1"];
    let args = [&["--output", "json"][..], &create[..], &["--api-key-env", KEY_VAR, "--rpm", "60"][..]].concat();
    let provider = cp.run(ADMIN, &args, &[(KEY_VAR, SECRET)]).await.json();
    assert!(provider["api_key_fingerprint"].as_str().unwrap().starts_with("sha256:"), "{provider}");
    assert_eq!(provider["rpm"], 60);
    let missing = cp.run(ADMIN, &[&create[..], &["--api-key-env", KEY_VAR]].concat(), &[]).await;
    assert!(!missing.ok && missing.stderr.contains("TG_RESOURCES_TEST_KEY"), "{}", missing.stderr);
    let cleared = cp.json(&["providers", "update", "up", "--clear-rpm", "--extra", r#"{"x":1}"#]).await;
    assert_eq!((cleared["rpm"].clone(), cleared["extra"].clone()), (Value::Null, json!({"x": 1})));
    let listed = cp.run(ADMIN, &["providers", "list"], &[]).await;
    assert!(listed.ok && listed.stdout.starts_with("ID") && listed.stdout.contains("openai-compatible"));
    assert!(
        !listed.stdout.contains(SECRET) && !cp.json(&["providers", "get", "up"]).await.to_string().contains(SECRET)
    );

    let model = cp
        .json(&[
            "models",
            "create",
            "chat",
            "--deployment",
            "up/gpt-4o",
            "--input-per-mtok",
            "2.5",
            "--output-per-mtok",
            "10",
        ])
        .await;
    assert_eq!(model["pricing"]["input_per_mtok"], "2.50");
    let model =
        cp.json(&["models", "update", "chat", "--deployment", "up/gpt-4o-mini", "--max-output-tokens", "512"]).await;
    assert_eq!(
        (model["deployments"][0]["model"].clone(), model["max_output_tokens"].clone()),
        (json!("gpt-4o-mini"), json!(512))
    );
    assert_eq!(cp.json(&["models", "get", "chat"]).await, model);
    let nothing = cp.run(ADMIN, &["models", "update", "chat"], &[]).await;
    assert!(!nothing.ok && nothing.stderr.contains("nothing to change"), "{}", nothing.stderr);

    // Keys: update sets and clears; list filters by metadata.
    let key = cp
        .json(&[
            "keys",
            "create",
            "--project",
            "checkout",
            "--name",
            "k",
            "--principal",
            "acme:1",
            "--rpm",
            "5",
            "--metadata",
            "tier=gold",
        ])
        .await;
    let id = key["id"].as_str().unwrap();
    let updated = cp.json(&["keys", "update", id, "--clear-rpm", "--tpm", "900", "--tag", "env:prod"]).await;
    assert_eq!(
        (updated["rpm"].clone(), updated["tpm"].clone(), updated["tags"].clone()),
        (Value::Null, json!(900), json!(["env:prod"]))
    );
    assert_eq!(updated["metadata"], json!({"tier": "gold"}), "metadata left alone");
    let both = cp.run(ADMIN, &["keys", "update", id, "--rpm", "1", "--clear-rpm"], &[]).await;
    assert!(!both.ok, "clap refuses setting and clearing at once");
    let by_meta = cp.json(&["keys", "list", "--metadata", "tier=gold"]).await;
    assert_eq!(by_meta["data"].as_array().unwrap().len(), 1);
    assert_eq!(cp.json(&["keys", "list", "--metadata", "tier=silver"]).await["data"], json!([]));

    // Principals: who holds keys, and offboarding in one call.
    let principal = cp.json(&["principals", "get", "acme:1"]).await;
    assert_eq!((principal["keys_active"].clone(), principal["projects"].clone()), (json!(1), json!([project["id"]])));
    assert_eq!(ids(&cp.json(&["principals", "list"]).await), ["acme:1"]);
    let revoked = cp.json(&["principals", "revoke-keys", "acme:1"]).await;
    assert_eq!(revoked["revoked"], json!([id]));
    assert_eq!(cp.json(&["keys", "get", id]).await["status"], "revoked");
    let table = cp.run(ADMIN, &["principals", "list"], &[]).await;
    assert!(table.ok && table.stdout.starts_with("ID") && table.stdout.contains("acme:1"), "{}", table.stdout);
}

#[tokio::test]
async fn clamp_budgets_and_per_part_maxima_are_set_from_the_cli() {
    let cp = InProcess::start().await;
    cp.json(&["teams", "create", "payments"]).await;
    let clamp = [
        "budgets",
        "create",
        "--scope",
        "team",
        "--scope-id",
        "payments",
        "--limit-tokens",
        "50000",
        "--window",
        "day",
        "--on-breach",
        "clamp",
        "--clamp-floor-tokens",
        "64",
    ];
    let b = cp.json(&clamp).await;
    assert_eq!((b["on_breach"].clone(), b["clamp_floor_tokens"].clone()), (json!("clamp"), json!(64)));
    let id = b["id"].as_str().unwrap().to_owned();
    let b = cp.json(&["budgets", "update", &id, "--clear-clamp-floor-tokens"]).await;
    assert_eq!(b["clamp_floor_tokens"], 16, "back to the default");
    let b = cp.json(&["budgets", "update", &id, "--clamp-floor-tokens", "128"]).await;
    assert_eq!(b["clamp_floor_tokens"], 128);
    let table = cp.run(ADMIN, &["budgets", "get", &id], &[]).await;
    assert!(table.ok && table.stdout.contains("clamp (floor 128)"), "{}", table.stdout);
    let refused =
        cp.run(ADMIN, &["budgets", "update", &id, "--on-breach", "warn", "--clamp-floor-tokens", "5"], &[]).await;
    assert!(!refused.ok && refused.stderr.contains("clamp_floor_tokens"), "{}", refused.stderr);

    cp.json(&["providers", "create", "up", "--kind", "mock"]).await;
    let create =
        ["models", "create", "vision", "--deployment", "up/gpt-4o", "--max-tokens-per-part", "image=1500,file=20000"];
    let m = cp.json(&create).await;
    assert_eq!(m["max_tokens_per_part"], json!({"image": 1500, "file": 20000}));
    let m = cp.json(&["models", "update", "vision", "--max-tokens-per-part", "audio=300"]).await;
    assert_eq!(m["max_tokens_per_part"], json!({"audio": 300}));
    let m = cp.json(&["models", "update", "vision", "--clear-max-tokens-per-part"]).await;
    assert!(m.get("max_tokens_per_part").is_none(), "{m}");
    let bad = cp.run(ADMIN, &["models", "update", "vision", "--max-tokens-per-part", "video=5"], &[]).await;
    assert!(!bad.ok && bad.stderr.contains("video"), "{}", bad.stderr);
}
