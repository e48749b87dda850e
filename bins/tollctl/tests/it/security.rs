//! `tollctl tokens ...` and `tollctl audit ...` against an in-process control plane.

use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tollgate_controlplane::ControlPlane;

use crate::ADMIN;

async fn control_plane() -> (Arc<ControlPlane>, String) {
    let p = crate::InProcess::start().await;
    (p.cp, p.endpoint)
}

/// Runs tollctl with `token` off the runtime's threads; `(exit code, stdout, stderr)`.
async fn tollctl(endpoint: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(Path::new(env!("CARGO_BIN_EXE_tollctl")));
    cmd.args(["--endpoint", endpoint, "--token", token]).args(args);
    cmd.env_remove("TOLLGATE_TOKEN").env_remove("TOLLGATE_OUTPUT").env_remove("TOLLGATE_ENDPOINT");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run tollctl")).await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn tokens_are_minted_listed_and_revoked_from_the_cli() {
    let (_cp, ep) = control_plane().await;
    let (code, out, err) =
        tollctl(&ep, ADMIN, &["--output", "json", "tokens", "create", "--name", "ops", "--scope", "keys:read"]).await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tga_"));

    let (code, out, _) = tollctl(&ep, ADMIN, &["tokens", "list"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("keys:read") && !out.contains(&secret), "{out}");

    // The new token works for what it may do, and is refused the rest.
    assert_eq!(tollctl(&ep, &secret, &["keys", "list"]).await.0, 0);
    let (code, _, err) = tollctl(&ep, &secret, &["tokens", "list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("tokens:write"), "{err}");

    let (code, out, _) = tollctl(&ep, ADMIN, &["--output", "json", "tokens", "revoke", &id]).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["status"], "revoked");
    let (code, _, err) = tollctl(&ep, &secret, &["keys", "list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Unauthenticated"), "{err}");
}

#[tokio::test]
async fn audit_verify_exits_1_naming_the_tampered_row() {
    let (cp, ep) = control_plane().await;
    for name in ["a", "b", "c"] {
        tollctl(&ep, ADMIN, &["tokens", "create", "--name", name, "--scope", "keys:read"]).await;
    }
    let (code, out, _) = tollctl(&ep, ADMIN, &["--output", "json", "audit", "list", "--target-kind", "token"]).await;
    assert_eq!(code, 0);
    let events: Value = serde_json::from_str(&out).unwrap();
    let events = events["data"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["actor"] == "bootstrap" && e["action"] == "token.create"));

    let (code, out, _) = tollctl(&ep, ADMIN, &["audit", "verify"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("3 events verified"), "{out}");

    let middle = &events[1];
    let seq = middle["seq"].as_i64().unwrap();
    let store = cp.service().store();
    store.execute_unchecked(&format!("UPDATE audit_events SET actor = 'mallory' WHERE seq = {seq}")).await.unwrap();
    let (code, out, err) = tollctl(&ep, ADMIN, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN"), "{out}");
    assert!(err.contains(&format!("seq {seq}")) && err.contains(middle["id"].as_str().unwrap()), "{err}");
}
