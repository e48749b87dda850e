//! The official `openai` and `anthropic` Python SDKs against the real gateway binary.
//!
//! This test prepares the world — one fake upstream answering every dialect, a
//! standalone gateway with an OpenAI-compatible, an Anthropic and a Gemini provider
//! pointing at it, and keys in each state — then runs the pytest suite in
//! `tests/sdk/` with the Python named by `TOLLGATE_TEST_PYTHON` (a virtualenv with
//! `tests/sdk/requirements.txt`; `.ci/run` creates it). Without that variable it says
//! it is skipped.

use crate::standalone::{Gateway, UPSTREAM_KEY};
use http::StatusCode;
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use tollgate_testkit::process::eventually;
use tollgate_testkit::{FakeUpstream, Reply};

#[tokio::test]
async fn the_official_sdks_work_unchanged_and_raise_their_own_errors() {
    let Ok(python) = std::env::var("TOLLGATE_TEST_PYTHON") else {
        eprintln!("skipped: TOLLGATE_TEST_PYTHON is not set (.ci/run sets it to a virtualenv with the SDKs)");
        return;
    };
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start_with(Reply::auto()).await;
    // An upstream that refuses the platform's own credential, quoting part of it as
    // OpenAI does.
    let locked = FakeUpstream::start_with(Reply::json(
        StatusCode::UNAUTHORIZED,
        r#"{"error":{"message":"Incorrect API key provided: sk-upstr****3456","type":"invalid_request_error","code":"invalid_api_key"}}"#,
    ))
    .await;

    for (name, kind, base) in [
        ("oai", "openai-compatible", upstream.base_url()),
        ("anth", "anthropic", upstream.root_url()),
        ("gem", "gemini", upstream.root_url()),
        ("locked", "openai-compatible", locked.base_url()),
    ] {
        gw.created("/api/v1/providers", json!({"name": name, "kind": kind, "base_url": base, "api_key": UPSTREAM_KEY}))
            .await;
    }
    let pricing = json!({"input_per_mtok": "1.00", "output_per_mtok": "2.00"});
    for (model, provider, upstream_model) in [
        ("gpt-4o-mini", "oai", "gpt-4o-mini-2024-07-18"),
        ("text-embedding-3-small", "oai", "text-embedding-3-small"),
        ("claude-sonnet", "anth", "claude-sonnet-4-5"),
        ("gemini-flash", "gem", "gemini-2.5-flash"),
        ("gpt-locked", "locked", "gpt-4o-mini"),
    ] {
        gw.created(
            "/api/v1/models",
            json!({"name": model, "deployments": [{"provider": provider, "model": upstream_model}], "pricing": pricing}),
        )
        .await;
    }
    gw.created("/api/v1/teams", json!({"name": "acme"})).await;
    gw.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;

    let mint = |body: serde_json::Value| {
        let gw = &gw;
        async move {
            let mut b = json!({"project": "web"});
            b.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
            let k = gw.created("/api/v1/keys", b).await;
            (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned())
        }
    };
    let (_, ok) = mint(json!({"name": "ok"})).await;
    let (revoked_id, revoked) = mint(json!({"name": "revoked"})).await;
    let (_, narrow) = mint(json!({"name": "narrow", "models_allowed": ["gpt-4o-mini"]})).await;
    let (_, rpm) = mint(json!({"name": "rpm", "rpm": 1})).await;
    let (_, broke) =
        mint(json!({"name": "broke", "budget": {"limit_usd": "0.000001", "window": "day", "on_breach": "block"}}))
            .await;
    for k in [&ok, &revoked, &narrow, &rpm, &broke] {
        gw.wait_key_live(k).await;
    }
    let r = gw.admin_post(&format!("/api/v1/keys/{revoked_id}/revoke"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(Duration::from_secs(10), "revocation reaches the data plane", || {
        let (gw, revoked) = (&gw, revoked.clone());
        async move {
            let r = gw.chat(Some(&revoked), &crate::standalone::hello()).await;
            r.status == StatusCode::FORBIDDEN
        }
    })
    .await;

    let suite = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    let gateway = gw.data.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no"])
            .arg(&suite)
            .env("TG_BASE", gateway)
            .env("TG_KEY_OK", ok)
            .env("TG_KEY_REVOKED", revoked)
            .env("TG_KEY_NARROW", narrow)
            .env("TG_KEY_RPM", rpm)
            .env("TG_KEY_BROKE", broke)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("could not run the Python SDK suite: {e}"));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK suite failed:\n{report}");
    assert!(!report.contains(" skipped"), "no SDK test may be skipped when run through cargo:\n{report}");
    eprintln!("{report}");
}
