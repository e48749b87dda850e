//! `tollctl apply -f FILE [--dry-run]` against an in-process control plane: what it
//! creates (read back from the snapshot gateways serve), that a second apply writes
//! nothing, that a dry run writes nothing, that a changed field changes only that, and
//! that a bad file or a weak token is refused before any write.

use crate::{ADMIN, InProcess};
use serde_json::{Value, json};
use tollgate_proto::v1;
use tollgate_testkit::process::temp_dir;

const KEY_VAR: &str = "TG_APPLY_TEST_UPSTREAM_KEY";
const SECRET_1: &str = "sk-apply-test-secret-one-0123456789";
const SECRET_2: &str = "sk-apply-test-secret-two-0123456789";

/// Every kind of object, with the values the tests change as parameters.
fn file(rpm: &str, input_price: &str, local_weight: u32, team_limit: &str, key_rpm: &str) -> String {
    format!(
        r#"
version: 1
providers:
  - name: local
    kind: mock
    extra: {{latency_ms: 1}}
  - name: upstream
    kind: openai-compatible
    base_url: http://127.0.0.1:9/v1/
    api_key_env: {KEY_VAR}
    rpm: {rpm}
models:
  - name: chat
    deployments:
      - {{provider: upstream, model: gpt-4o}}
      - {{provider: local, model: echo, priority: 1, weight: {local_weight}}}
    pricing: {{input_per_mtok: "{input_price}", output_per_mtok: "10.00", cached_input_per_mtok: "1.25"}}
    max_output_tokens: 4096
organizations:
  - name: acme
teams:
  - name: payments
    organization: acme
    projects: [{{name: checkout}}, {{name: refunds}}]
  - name: ops
    projects: [{{name: tools}}]
budgets:
  - {{scope: team, target: payments, window: month, limit_usd: "{team_limit}", alert_thresholds: [0.8, 0.5]}}
  - {{scope: project, target: payments/checkout, window: day, limit_tokens: 100000, on_breach: warn}}
  - {{scope: organization, target: acme, window: total, limit_usd: 1000}}
  - {{scope: principal, target: "acme:user-42", window: week, limit_usd: "5"}}
keys:
  - name: checkout-backend
    project: payments/checkout
    principal: "acme:user-42"
    models_allowed: [chat]
    rpm: {key_rpm}
    metadata: {{tier: gold}}
    tags: ["env:prod"]
    budget: {{window: month, limit_usd: "50.00"}}
  - name: tools
    project: ops/tools
"#
    )
}

fn base() -> String {
    file("600", "2.50", 2, "500.00", "60")
}

/// Writes `text` to a fresh file; returns its path.
fn write(text: &str) -> String {
    let path = temp_dir("cli-apply").join("tollgate.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

async fn apply(cp: &InProcess, text: &str, extra: &[&str], secret: &str) -> crate::Run {
    let path = write(text);
    let mut args = vec!["apply", "-f", path.as_str()];
    args.extend_from_slice(extra);
    cp.run(ADMIN, &args, &[(KEY_VAR, secret)]).await
}

/// `(action, kind, name, [fields])` of each change of an apply's JSON output.
fn changes(out: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    out["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let fields = c["fields"].as_array().unwrap().iter().map(|f| text(&f["field"])).collect();
            (text(&c["action"]), text(&c["kind"]), text(&c["name"]), fields)
        })
        .collect()
}

fn budget_of<'a>(snap: &'a v1::Snapshot, scope: &str, scope_id: &str) -> &'a v1::Budget {
    snap.budgets.iter().find(|b| b.scope == scope && b.scope_id == scope_id).unwrap()
}

#[tokio::test]
async fn apply_creates_everything_and_a_second_apply_writes_nothing() {
    let cp = InProcess::start().await;
    let out = apply(&cp, &base(), &["--output", "json"], SECRET_1).await.json();
    assert_eq!(out["summary"], json!({"create": 15, "update": 0, "unchanged": 0}), "{out:#}");
    let order: Vec<String> = changes(&out).into_iter().map(|c| c.1).collect();
    let mut sorted = order.clone();
    let rank = ["provider", "model", "organization", "team", "project", "budget", "key"];
    sorted.sort_by_key(|k| rank.iter().position(|r| r == k));
    assert_eq!(order, sorted, "creates go in dependency order");
    assert!(out["changes"].as_array().unwrap().iter().all(|c| c["status"] == "applied"), "{out:#}");
    assert!(!out.to_string().contains(SECRET_1), "the provider key is never printed");
    let minted = out["keys"].as_array().unwrap();
    assert_eq!(minted.len(), 2);
    let backend = minted.iter().find(|k| k["name"] == "payments/checkout/checkout-backend").unwrap();
    let secret = backend["key"].as_str().unwrap();
    assert!(secret.starts_with("tg_"), "{backend}");

    // What gateways are sent.
    let snap = cp.snapshot().await;
    let upstream = snap.providers.iter().find(|p| p.name == "upstream").unwrap();
    assert_eq!((upstream.api_key.as_str(), upstream.rpm), (SECRET_1, Some(600)));
    assert_eq!(upstream.base_url, "http://127.0.0.1:9/v1");
    let local = snap.providers.iter().find(|p| p.name == "local").unwrap();
    assert_eq!(serde_json::from_str::<Value>(&local.extra_json).unwrap(), json!({"latency_ms": 1}));
    let [chat] = snap.models.as_slice() else { panic!("one model: {:?}", snap.models) };
    let deployed: Vec<(&str, u32, Option<u32>)> =
        chat.deployments.iter().map(|d| (d.provider.as_str(), d.priority, d.weight)).collect();
    assert_eq!(deployed, [("upstream", 0, Some(1)), ("local", 1, Some(2))]);
    let price = chat.pricing.unwrap();
    assert_eq!((price.input_per_mtok_nanos, price.cached_input_per_mtok_nanos), (2_500_000_000, Some(1_250_000_000)));
    assert_eq!(chat.max_output_tokens, Some(4096));
    let key = snap.keys.iter().find(|k| k.name.as_deref() == Some("checkout-backend")).unwrap();
    assert_eq!(
        (key.principal.as_deref(), key.rpm, key.models_allowed.as_slice()),
        (Some("acme:user-42"), Some(60), &["chat".to_owned()][..])
    );
    assert_eq!(key.id, backend["id"].as_str().unwrap());
    assert!(secret.ends_with(key.hint.rsplit('…').next().unwrap()), "the printed secret is the key's");
    let orgs = cp.json(&["orgs", "list"]).await;
    let acme = orgs["data"].as_array().unwrap().iter().find(|o| o["name"] == "acme").unwrap()["id"].clone();
    assert_eq!(key.org_id, acme.as_str().unwrap(), "payments is in acme");
    assert_eq!(snap.keys.len(), 2);
    let team = budget_of(&snap, "team", &key.team_id);
    assert_eq!((team.limit_nanos, team.alert_thresholds_permille.as_slice()), (500_000_000_000, &[500, 800][..]));
    let project = budget_of(&snap, "project", &key.project_id);
    assert_eq!((project.limit_tokens, project.on_breach.as_str()), (Some(100_000), "warn"));
    assert_eq!(budget_of(&snap, "organization", &key.org_id).window, "total");
    assert_eq!(budget_of(&snap, "principal", "acme:user-42").limit_nanos, 5_000_000_000);
    assert_eq!(budget_of(&snap, "virtual_key", &key.id).limit_nanos, 50_000_000_000);
    assert_eq!(snap.budgets.len(), 5);

    // The same file again: nothing to do, nothing written.
    let (rev, audit) = (cp.revision().await, cp.audit_len().await);
    let again = apply(&cp, &base(), &[], SECRET_1).await;
    assert!(again.ok, "{}", again.stderr);
    assert!(again.stdout.contains("No changes: 16 object(s)"), "{}", again.stdout);
    assert!(!again.stdout.contains("tg_"), "no secret is printed again");
    assert_eq!((cp.revision().await, cp.audit_len().await), (rev, audit), "a second apply writes nothing");
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_writes_nothing_then_a_changed_field_changes_only_that() {
    let cp = InProcess::start().await;
    let (rev, audit) = (cp.revision().await, cp.audit_len().await);
    let dry = apply(&cp, &base(), &["--dry-run"], SECRET_1).await;
    assert!(dry.ok, "{}", dry.stderr);
    for line in [
        "+ create provider upstream",
        "    api_key: (set)",
        "+ create model chat",
        "+ create project payments/checkout",
        "+ create budget team payments month",
        "+ create key payments/checkout/checkout-backend",
        "    secret: (minted on apply, shown once)",
        "Plan: 15 to create, 0 to update, 0 unchanged.",
        "Dry run: nothing was written.",
    ] {
        assert!(dry.stdout.lines().any(|l| l == line), "{line:?} not in\n{}", dry.stdout);
    }
    assert!(!dry.stdout.contains(SECRET_1) && !dry.stdout.contains("tg_"), "{}", dry.stdout);
    assert_eq!((cp.revision().await, cp.audit_len().await), (rev, audit), "a dry run writes nothing");
    assert!(cp.snapshot().await.providers.is_empty());

    assert!(apply(&cp, &base(), &[], SECRET_1).await.ok);
    let before = cp.snapshot().await;
    let changed = file("900", "3.00", 5, "600", "null");

    // Dry run of a change: field-level differences, the new credential only as "(changed)".
    let (rev, audit) = (cp.revision().await, cp.audit_len().await);
    let plan = apply(&cp, &changed, &["--dry-run", "--output", "json"], SECRET_2).await.json();
    let want = [
        ("update", "provider", "upstream", vec!["api_key", "rpm"]),
        ("update", "model", "chat", vec!["deployments", "pricing.input_per_mtok"]),
        ("update", "budget", "team payments month", vec!["limit"]),
        ("update", "key", "payments/checkout/checkout-backend", vec!["rpm"]),
    ];
    let want: Vec<(String, String, String, Vec<String>)> = want
        .into_iter()
        .map(|(a, k, n, f)| (a.into(), k.into(), n.into(), f.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(changes(&plan), want, "{plan:#}");
    let fields = &plan["changes"][0]["fields"];
    assert_eq!(fields[0], json!({"field": "api_key", "old": "(hidden)", "new": "(changed)"}));
    assert_eq!(fields[1], json!({"field": "rpm", "old": "600", "new": "900"}));
    assert_eq!(plan["changes"][3]["fields"][0], json!({"field": "rpm", "old": "60", "new": null}));
    assert!(!plan.to_string().contains(SECRET_2));
    assert_eq!((cp.revision().await, cp.audit_len().await), (rev, audit));

    // Applied: one write per changed object, and only those fields move.
    let out = apply(&cp, &changed, &["--output", "json"], SECRET_2).await.json();
    assert_eq!(out["summary"], json!({"create": 0, "update": 4, "unchanged": 12}), "{out:#}");
    assert_eq!(cp.audit_len().await, audit + 4);
    let after = cp.snapshot().await;
    let upstream = after.providers.iter().find(|p| p.name == "upstream").unwrap();
    assert_eq!(
        (upstream.api_key.as_str(), upstream.rpm, upstream.base_url.as_str()),
        (SECRET_2, Some(900), "http://127.0.0.1:9/v1")
    );
    let chat = &after.models[0];
    assert_eq!(chat.pricing.unwrap().input_per_mtok_nanos, 3_000_000_000);
    assert_eq!(chat.pricing.unwrap().output_per_mtok_nanos, before.models[0].pricing.unwrap().output_per_mtok_nanos);
    assert_eq!(chat.deployments[1].weight, Some(5));
    assert_eq!(chat.max_output_tokens, Some(4096));
    let key = after.keys.iter().find(|k| k.name.as_deref() == Some("checkout-backend")).unwrap();
    let old_key = before.keys.iter().find(|k| k.id == key.id).expect("the same key, updated in place");
    assert_eq!((key.rpm, key.hint.as_str(), &key.metadata), (None, old_key.hint.as_str(), &old_key.metadata));
    let team = budget_of(&after, "team", &key.team_id);
    assert_eq!((team.limit_nanos, &team.id), (600_000_000_000, &budget_of(&before, "team", &key.team_id).id));
    for b in &before.budgets {
        if b.scope != "team" {
            let now = after.budgets.iter().find(|x| x.id == b.id).unwrap();
            assert_eq!((now.limit_nanos, now.limit_tokens), (b.limit_nanos, b.limit_tokens), "{} unchanged", b.id);
        }
    }
    let again = apply(&cp, &changed, &[], SECRET_2).await;
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
}

#[tokio::test]
async fn a_bad_file_is_refused_naming_the_path_and_nothing_is_written() {
    let cp = InProcess::start().await;
    let base = base();
    let cases = [
        (base.replace("    rpm: 60\n", "    rpm: 60\n    colour: red\n"), "keys[0]", "colour"),
        (base.replace(KEY_VAR, "TG_APPLY_TEST_UNSET_VAR"), "providers[1].api_key_env", "TG_APPLY_TEST_UNSET_VAR"),
        (base.replace("project: ops/tools", "project: payments/nope"), "keys[1].project", "payments/nope"),
        (base.replace("limit_usd: 1000", "limit_usd: -1000"), "budgets[2].limit_usd", "negative"),
        (base.replace("target: payments,", "target: nobody,"), "budgets[0].target", "nobody"),
        (base.replace("provider: local,", "provider: elsewhere,"), "models[0].deployments[1].provider", "elsewhere"),
    ];
    let (rev, audit) = (cp.revision().await, cp.audit_len().await);
    for (text, path, detail) in cases {
        let run = apply(&cp, &text, &[], SECRET_1).await;
        assert!(!run.ok, "{path}: {}", run.stdout);
        assert!(run.stderr.contains(path) && run.stderr.contains(detail), "{path} / {detail} not in {}", run.stderr);
        assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
        assert_eq!((cp.revision().await, cp.audit_len().await), (rev, audit), "{path}: nothing written");
    }
    // Once applied, a change that cannot be made is refused the same way.
    assert!(apply(&cp, &base, &[], SECRET_1).await.ok);
    let (rev, audit) = (cp.revision().await, cp.audit_len().await);
    let run =
        apply(&cp, &base.replace("\"acme:user-42\"\n    models", "\"acme:user-7\"\n    models"), &[], SECRET_1).await;
    assert!(!run.ok && run.stderr.contains("keys[0].principal"), "{}", run.stderr);
    let run = apply(&cp, &base.replace("kind: mock", "kind: openai-compatible"), &[], SECRET_1).await;
    assert!(!run.ok && run.stderr.contains("providers[0].kind"), "{}", run.stderr);
    assert_eq!((cp.revision().await, cp.audit_len().await), (rev, audit));
}

#[tokio::test]
async fn a_token_lacking_a_scope_is_refused_before_any_write() {
    let cp = InProcess::start().await;
    let token = cp.json(&["tokens", "create", "--name", "keys-only", "--scope", "keys:write"]).await;
    let token = token["token"].as_str().unwrap().to_owned();
    let (rev, audit) = (cp.revision().await, cp.audit_len().await);
    let path = write(&base());
    let run = cp.run(&token, &["apply", "-f", &path], &[(KEY_VAR, SECRET_1)]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("reading providers") && run.stderr.contains("providers:write"), "{}", run.stderr);
    assert_eq!((cp.revision().await, cp.audit_len().await), (rev, audit));
}

#[tokio::test]
async fn a_failed_write_stops_apply_and_reports_what_was_and_was_not_applied() {
    let cp = InProcess::start().await;
    // The control plane refuses the second provider's URL; only it can tell.
    let text = "
providers:
  - {name: first, kind: mock}
  - {name: second, kind: openai-compatible, base_url: 'ftp://example'}
models:
  - {name: m, deployments: [{provider: first, model: x}], pricing: {input_per_mtok: 1, output_per_mtok: 1}}
";
    let run = apply(&cp, text, &[], SECRET_1).await;
    assert!(!run.ok);
    assert!(run.stdout.contains("created provider first"), "{}", run.stdout);
    assert!(run.stdout.contains("Not applied:"), "{}", run.stdout);
    assert!(run.stdout.contains("create provider second: FAILED") && run.stdout.contains("base_url"), "{}", run.stdout);
    assert!(run.stdout.lines().any(|l| l == "  create model m"), "{}", run.stdout);
    assert!(run.stderr.contains("1 change(s) applied, 2 not applied"), "{}", run.stderr);
    let snap = cp.snapshot().await;
    assert_eq!(snap.providers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["first"]);
    assert!(snap.models.is_empty());
}

#[tokio::test]
async fn apply_manages_clamp_budgets_and_per_part_maxima() {
    let cp = InProcess::start().await;
    let text = |floor: u64, parts: &str| {
        format!(
            r#"
providers: [{{name: local, kind: mock}}]
models:
  - name: vision
    deployments: [{{provider: local, model: echo}}]
    pricing: {{input_per_mtok: "1", output_per_mtok: "2"}}
    max_tokens_per_part: {parts}
teams: [{{name: payments}}]
budgets:
  - {{scope: team, target: payments, window: day, limit_tokens: 100000, on_breach: clamp, clamp_floor_tokens: {floor}}}
"#
        )
    };
    let out = apply(&cp, &text(32, "{image: 1500, file: 20000}"), &["--output", "json"], SECRET_1).await.json();
    assert_eq!(out["summary"], json!({"create": 4, "update": 0, "unchanged": 0}), "{out:#}");
    let snap = cp.snapshot().await;
    let team_id = snap.budgets[0].scope_id.clone();
    let b = budget_of(&snap, "team", &team_id);
    assert_eq!((b.on_breach.as_str(), b.clamp_floor_tokens), ("clamp", Some(32)));
    let m = &snap.models[0];
    assert_eq!((m.max_image_tokens, m.max_audio_tokens, m.max_file_tokens), (Some(1500), None, Some(20000)));

    let again = apply(&cp, &text(32, "{image: 1500, file: 20000}"), &["--output", "json"], SECRET_1).await.json();
    assert_eq!(again["summary"], json!({"create": 0, "update": 0, "unchanged": 4}), "{again:#}");

    let out = apply(&cp, &text(64, "{audio: 300}"), &["--output", "json"], SECRET_1).await.json();
    let updated: Vec<_> = changes(&out).into_iter().filter(|c| c.0 == "update").map(|c| (c.1, c.3)).collect();
    assert_eq!(
        updated,
        [
            ("model".to_owned(), vec!["max_tokens_per_part".to_owned()]),
            ("budget".to_owned(), vec!["clamp_floor_tokens".to_owned()])
        ],
        "{out:#}"
    );
    let snap = cp.snapshot().await;
    assert_eq!(budget_of(&snap, "team", &team_id).clamp_floor_tokens, Some(64));
    let m = &snap.models[0];
    assert_eq!((m.max_image_tokens, m.max_audio_tokens, m.max_file_tokens), (None, Some(300), None));

    let out = apply(&cp, &text(64, "null"), &["--output", "json"], SECRET_1).await.json();
    assert_eq!(out["summary"]["update"], 1, "{out:#}");
    let m = &cp.snapshot().await.models[0];
    assert_eq!((m.max_image_tokens, m.max_audio_tokens, m.max_file_tokens), (None, None, None));
}
