//! Model prices: catalog defaults with their source, explicit overrides, the listing,
//! the refusal to let a money budget meet an unpriced model, and the gRPC ledger stream.

use crate::{ADMIN, Cp};
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};
use tollgate_core::{Money, Timestamp};
use tollgate_metering::PriceCatalog;
use tollgate_proto::v1;

async fn setup(cp: &Cp) {
    let provider = json!({"name": "up", "kind": "mock"});
    cp.expect(Method::POST, "/api/v1/providers", Some(provider), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "t"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/projects", Some(json!({"name": "p", "team": "t"})), S::CREATED).await;
}

/// A price shown by the API (a USD decimal string), exactly.
fn usd(v: &Value) -> Money {
    Money::parse_usd(v.as_str().unwrap_or_else(|| panic!("not a price: {v}"))).unwrap()
}

fn model(name: &str, upstream: &str) -> Value {
    json!({"name": name, "deployments": [{"provider": "up", "model": upstream}]})
}

#[tokio::test]
async fn a_model_without_pricing_takes_the_catalog_price_of_its_upstream_and_says_so() {
    let cp = Cp::start().await;
    setup(&cp).await;
    let catalog = PriceCatalog::builtin().unwrap();
    let m =
        cp.expect(Method::POST, "/api/v1/models", Some(model("fast", "claude-sonnet-4-5-20250929")), S::CREATED).await;
    assert_eq!(m["price_source"], json!(catalog.source()));
    assert_eq!(usd(&m["pricing"]["input_per_mtok"]), usd(&json!("3")));
    assert_eq!(usd(&m["pricing"]["output_per_mtok"]), usd(&json!("15")));
    assert_eq!(usd(&m["pricing"]["cached_input_per_mtok"]), usd(&json!("0.3")));
    assert_eq!(usd(&m["pricing"]["cache_write_per_mtok"]), usd(&json!("3.75")));
    // The public name is the fallback when the upstream name is unknown.
    let m = cp.expect(Method::POST, "/api/v1/models", Some(model("gpt-4o", "my-deployment")), S::CREATED).await;
    assert_eq!(usd(&m["pricing"]["input_per_mtok"]), usd(&json!("2.5")));
    // Explicit prices win and are recorded as such; zero is a price.
    let mut free = model("free", "gpt-4o");
    free["pricing"] = json!({"input_per_mtok": 0, "output_per_mtok": "0"});
    let m = cp.expect(Method::POST, "/api/v1/models", Some(free), S::CREATED).await;
    assert_eq!((m["price_source"].as_str(), usd(&m["pricing"]["input_per_mtok"])), (Some("explicit"), Money::ZERO));
    // Unknown everywhere: unpriced, no source.
    let m = cp.expect(Method::POST, "/api/v1/models", Some(model("local", "llama-local")), S::CREATED).await;
    assert_eq!((m["pricing"].clone(), m["price_source"].clone()), (Value::Null, Value::Null));

    // The snapshot carries the cache-write price to the gateways.
    let snap = cp.snapshot_at(cp.revision().await).await;
    let fast = snap.models.iter().find(|m| m.name == "fast").unwrap();
    assert_eq!(fast.pricing.unwrap().cache_write_per_mtok_nanos, Some(3_750_000_000));

    let list = cp.expect(Method::GET, "/api/v1/models", None, S::OK).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fast", "free", "gpt-4o", "local"]);
    assert_eq!(cp.call(Method::GET, "/api/v1/models", None, None).await.status, S::UNAUTHORIZED);
    assert_eq!(cp.call(Method::GET, "/api/v1/models", Some("wrong"), None).await.status, S::UNAUTHORIZED);
}

#[tokio::test]
async fn patch_overrides_a_price_exactly_and_bad_prices_name_their_field() {
    let cp = Cp::start().await;
    setup(&cp).await;
    cp.expect(Method::POST, "/api/v1/models", Some(model("local", "llama-local")), S::CREATED).await;
    let rev = cp.revision().await;
    let patch =
        json!({"pricing": {"input_per_mtok": "0.000000001", "output_per_mtok": 2, "cache_write_per_mtok": "1.25"}});
    let m = cp.expect(Method::PATCH, "/api/v1/models/local", Some(patch), S::OK).await;
    assert_eq!(m["price_source"], "explicit");
    assert_eq!(usd(&m["pricing"]["input_per_mtok"]), Money::from_nanos(1));
    assert_eq!(usd(&m["pricing"]["cache_write_per_mtok"]), Money::from_nanos(1_250_000_000));
    assert_eq!(cp.revision().await, rev + 1, "a price change reaches the gateways with the next snapshot");
    let got = cp.expect(Method::GET, "/api/v1/models/local", None, S::OK).await;
    assert_eq!(got, m);

    for (body, field) in [
        (json!({"pricing": {"input_per_mtok": "-1", "output_per_mtok": "1"}}), "pricing.input_per_mtok"),
        (
            json!({"pricing": {"input_per_mtok": "1", "output_per_mtok": "1", "cached_input_per_mtok": "-0.5"}}),
            "pricing.cached_input_per_mtok",
        ),
        (json!({}), "pricing"),
    ] {
        let r = cp.admin(Method::PATCH, "/api/v1/models/local", Some(body.clone())).await;
        assert_eq!(r.status, S::BAD_REQUEST, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], field, "{body}");
    }
    let r = cp.admin(Method::PATCH, "/api/v1/models/local", Some(json!({"pricing": {"input_per_mtok": "1"}}))).await;
    assert_eq!(r.status, S::BAD_REQUEST, "a partial price is refused: {}", r.text());
    let r = cp.admin(Method::PATCH, "/api/v1/models/nope", Some(json!({"max_output_tokens": 5}))).await;
    assert_eq!(r.status, S::NOT_FOUND);
}

#[tokio::test]
async fn a_money_budget_never_meets_an_unpriced_model() {
    let cp = Cp::start().await;
    setup(&cp).await;
    cp.expect(Method::POST, "/api/v1/models", Some(model("local", "llama-local")), S::CREATED).await;
    let budget = json!({"limit_usd": "5", "window": "day"});

    // A key allowed every model, with a money budget: refused, naming the model.
    let r = cp.admin(Method::POST, "/api/v1/keys", Some(json!({"project": "p", "budget": budget}))).await;
    assert_eq!(r.status, S::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "budget.limit_usd");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("\"local\""), "{}", r.text());
    // A token budget, or an allowlist that keeps the model out, is fine.
    let tokens = json!({"project": "p", "budget": {"limit_tokens": 1000, "window": "day"}});
    cp.expect(Method::POST, "/api/v1/keys", Some(tokens), S::CREATED).await;
    let narrow = json!({"project": "p", "models_allowed": ["gpt-*"], "budget": budget});
    cp.expect(Method::POST, "/api/v1/keys", Some(narrow), S::CREATED).await;
    // A project money budget over a key that may use the unpriced model: refused.
    let r = cp
        .admin(
            Method::POST,
            "/api/v1/budgets",
            Some(json!({"scope": "project", "scope_id": "p", "limit_usd": "9", "window": "month"})),
        )
        .await;
    assert_eq!(r.status, S::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "limit_usd");
    // Once priced (zero included), the same budget is accepted.
    let zero = json!({"pricing": {"input_per_mtok": "0", "output_per_mtok": "0"}});
    cp.expect(Method::PATCH, "/api/v1/models/local", Some(zero), S::OK).await;
    let ok = json!({"scope": "project", "scope_id": "p", "limit_usd": "9", "window": "month"});
    cp.expect(Method::POST, "/api/v1/budgets", Some(ok), S::CREATED).await;
    // And a new unpriced model that keys under that budget could reach is refused.
    let r = cp.admin(Method::POST, "/api/v1/models", Some(model("other-local", "qwen-local"))).await;
    assert_eq!(r.status, S::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "pricing");
}

#[tokio::test]
async fn no_later_write_lets_a_money_budget_reach_an_unpriced_model() {
    let cp = Cp::start().await;
    setup(&cp).await;
    cp.expect(Method::POST, "/api/v1/models", Some(model("local", "llama-local")), S::CREATED).await;
    let narrow = json!({"project": "p", "models_allowed": ["gpt-*"]});
    let key = cp.expect(Method::POST, "/api/v1/keys", Some(narrow.clone()), S::CREATED).await;
    let key_path = format!("/api/v1/keys/{}", key["id"].as_str().unwrap());
    let project_budget = json!({"scope": "project", "scope_id": "p", "limit_usd": "9", "window": "month"});
    cp.expect(Method::POST, "/api/v1/budgets", Some(project_budget), S::CREATED).await;

    // Minting a key with no budget of its own, under the project's money budget.
    let r = cp.admin(Method::POST, "/api/v1/keys", Some(json!({"project": "p"}))).await;
    assert_eq!(r.status, S::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "models_allowed");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("\"local\""), "{}", r.text());
    cp.expect(Method::POST, "/api/v1/keys", Some(narrow), S::CREATED).await;

    // Widening an allowlist to the unpriced model.
    let r = cp.admin(Method::PATCH, &key_path, Some(json!({"models_allowed": ["*"]}))).await;
    assert_eq!(r.status, S::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "models_allowed");
    let stored = cp.expect(Method::GET, &key_path, None, S::OK).await;
    assert_eq!(stored["models_allowed"], json!(["gpt-*"]), "a refused update changes nothing");
    // Other updates of the same key go through.
    cp.expect(Method::PATCH, &key_path, Some(json!({"rpm": 10})), S::OK).await;

    // A token budget turned into a money budget over a key that reaches the model.
    cp.expect(Method::POST, "/api/v1/projects", Some(json!({"name": "q", "team": "t"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "q"})), S::CREATED).await;
    let tokens = json!({"scope": "project", "scope_id": "q", "limit_tokens": 1000, "window": "day"});
    let b = cp.expect(Method::POST, "/api/v1/budgets", Some(tokens), S::CREATED).await;
    let budget_path = format!("/api/v1/budgets/{}", b["id"].as_str().unwrap());
    let r = cp.admin(Method::PATCH, &budget_path, Some(json!({"limit_usd": "5"}))).await;
    assert_eq!(r.status, S::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "limit_usd");
    cp.expect(Method::PATCH, &budget_path, Some(json!({"limit_tokens": 2000})), S::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writes_cannot_both_pass_the_unpriced_model_rule() {
    // Alone, each write is fine: an unpriced model (no money budget reaches it yet), and
    // a key allowed every model under a money budget (no unpriced model exists yet).
    // Together they would let a money budget meet an unpriced model. (The race shows on
    // PostgreSQL, whose pool runs both checks at once; in-memory SQLite has one connection.)
    let cp = Cp::start().await;
    setup(&cp).await;
    let budget = json!({"limit_usd": "5", "window": "day"});
    for round in 0..20 {
        let name = format!("local-{round}");
        let (m, k) = tokio::join!(
            cp.admin(Method::POST, "/api/v1/models", Some(model(&name, &format!("llama-{round}")))),
            cp.admin(Method::POST, "/api/v1/keys", Some(json!({"project": "p", "budget": budget}))),
        );
        let passed = [m.status == S::CREATED, k.status == S::CREATED];
        assert_ne!(passed, [true, true], "round {round}: both passed: {} / {}", m.text(), k.text());
        // The next round starts clean: no unpriced model, no `*` money key.
        if passed[0] {
            let price = json!({"pricing": {"input_per_mtok": "1", "output_per_mtok": "1"}});
            cp.expect(Method::PATCH, &format!("/api/v1/models/{name}"), Some(price), S::OK).await;
        }
        let keys = cp.expect(Method::GET, "/api/v1/keys?status=active", None, S::OK).await;
        for k in keys["data"].as_array().unwrap() {
            cp.expect(Method::POST, &format!("/api/v1/keys/{}/revoke", k["id"].as_str().unwrap()), None, S::OK).await;
        }
    }
}

pub(crate) fn wire_entry(id: &str) -> v1::LedgerEntry {
    let e = tollgate_testkit::ledger::spend_entry(id, "key_1", "prj_1", "gpt-4o", Timestamp::now(), (10, 5), 77);
    tollgate_proto::convert::ledger_entry_to_wire(&e)
}

#[tokio::test]
async fn pushed_ledger_batches_are_stored_once_and_need_the_token() {
    use tollgate_proto::v1::ledger_service_client::LedgerServiceClient;
    let cp = Cp::start().await;
    let mut client = LedgerServiceClient::connect(cp.grpc.clone()).await.unwrap();
    let push = |token: &'static str, batches: Vec<v1::LedgerBatch>| {
        let mut req = tonic::Request::new(tokio_stream::iter(batches));
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    };
    let batch = |ids: &[&str]| v1::LedgerBatch { entries: ids.iter().map(|i| wire_entry(i)).collect() };

    let err = client.push_ledger(push("wrong", vec![batch(&["a"])])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert_eq!(cp.cp.service().store().ledger_count().await.unwrap(), 0);

    let ack = client.push_ledger(push(ADMIN, vec![batch(&["a", "b"]), batch(&["c"])])).await.unwrap();
    assert_eq!(ack.into_inner().received, 3);
    // Replayed after a lost answer: stored once.
    client.push_ledger(push(ADMIN, vec![batch(&["b", "c", "d"])])).await.unwrap();
    assert_eq!(cp.cp.service().store().ledger_count().await.unwrap(), 4);
    let stored = cp.cp.service().store().ledger_entry("d").await.unwrap().unwrap();
    assert_eq!(stored.cost, Money::from_nanos(77));

    // An entry that can never be stored is INVALID_ARGUMENT, and nothing of its call is kept.
    let mut bad = batch(&["e"]);
    bad.entries.push(v1::LedgerEntry { usage_source: "guessed".into(), ..wire_entry("f") });
    let err = client.push_ledger(push(ADMIN, vec![bad])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(cp.cp.service().store().ledger_count().await.unwrap(), 4);
}

#[tokio::test]
async fn a_deployment_may_have_its_own_price_and_a_bad_one_names_its_field() {
    let cp = Cp::start().await;
    setup(&cp).await;
    let own = json!({"input_per_mtok": "10", "output_per_mtok": "1000"});
    let body = json!({"name": "pair", "pricing": {"input_per_mtok": "1", "output_per_mtok": "100"}, "deployments": [
        {"provider": "up", "model": "a"}, {"provider": "up", "model": "b", "priority": 1, "pricing": own}]});
    let m = cp.expect(Method::POST, "/api/v1/models", Some(body), S::CREATED).await;
    assert!(m["deployments"][0].get("pricing").is_none(), "no own price: the model's applies: {m}");
    assert_eq!(usd(&m["deployments"][1]["pricing"]["output_per_mtok"]), usd(&json!("1000")));
    let snap = cp.snapshot_at(cp.revision().await).await;
    let wire = snap.models.iter().find(|m| m.name == "pair").unwrap();
    assert_eq!(wire.deployments[1].pricing.unwrap().output_per_mtok_nanos, 1_000_000_000_000);
    assert!(wire.deployments[0].pricing.is_none());

    let bad = json!({"name": "bad", "deployments": [{"provider": "up", "model": "a"},
        {"provider": "up", "model": "b", "pricing": {"input_per_mtok": "-1", "output_per_mtok": "1"}}]});
    let r = cp.admin(Method::POST, "/api/v1/models", Some(bad)).await;
    assert_eq!(r.status, S::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "deployments[1].pricing.input_per_mtok");
}

#[tokio::test]
async fn per_part_token_maxima_are_set_shown_published_replaced_and_cleared() {
    let cp = Cp::start().await;
    setup(&cp).await;
    let mut body = model("vision", "gpt-4o");
    body["max_tokens_per_part"] = json!({"image": 1500, "file": 20_000});
    let m = cp.expect(Method::POST, "/api/v1/models", Some(body), S::CREATED).await;
    assert_eq!(m["max_tokens_per_part"], json!({"image": 1500, "file": 20_000}));
    let published = |snap: &v1::Snapshot| {
        let m = snap.models.iter().find(|m| m.name == "vision").unwrap();
        (m.max_image_tokens, m.max_audio_tokens, m.max_file_tokens)
    };
    assert_eq!(published(&*cp.snapshot_at(cp.revision().await).await), (Some(1500), None, Some(20_000)));
    assert_eq!(
        cp.expect(Method::GET, "/api/v1/models/vision", None, S::OK).await["max_tokens_per_part"],
        m["max_tokens_per_part"]
    );

    // A patch replaces all three; other patches leave them alone; null clears them.
    let m = cp
        .expect(Method::PATCH, "/api/v1/models/vision", Some(json!({"max_tokens_per_part": {"audio": 3000}})), S::OK)
        .await;
    assert_eq!(m["max_tokens_per_part"], json!({"audio": 3000}));
    assert_eq!(published(&*cp.snapshot_at(cp.revision().await).await), (None, Some(3000), None));
    let m = cp.expect(Method::PATCH, "/api/v1/models/vision", Some(json!({"max_output_tokens": 100})), S::OK).await;
    assert_eq!(m["max_tokens_per_part"], json!({"audio": 3000}));
    let m = cp.expect(Method::PATCH, "/api/v1/models/vision", Some(json!({"max_tokens_per_part": null})), S::OK).await;
    assert!(m.get("max_tokens_per_part").is_none(), "{m}");
    assert_eq!(published(&*cp.snapshot_at(cp.revision().await).await), (None, None, None));

    let events = cp.cp.service().store().list_audit(Some("model"), None, 100, None).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "model.update" && e.metadata["max_tokens_per_part"] == json!({"audio": 3000})),
        "the audit records the maxima"
    );

    // Refused, naming the field: out of range, unknown kinds.
    let rev = cp.revision().await;
    for (parts, field) in [
        (json!({"image": 0}), "max_tokens_per_part.image"),
        (json!({"file": 1_000_001}), "max_tokens_per_part.file"),
        (json!({"video": 5}), "max_tokens_per_part"),
        (json!({"audio": -1}), "max_tokens_per_part"),
    ] {
        let r = cp.admin(Method::PATCH, "/api/v1/models/vision", Some(json!({"max_tokens_per_part": parts}))).await;
        assert_eq!(r.status, S::BAD_REQUEST, "{parts}: {}", r.text());
        let got = r.json()["error"]["field"].as_str().unwrap_or_default().to_owned();
        assert!(got.starts_with(field), "{parts}: field {got:?}, want {field}");
    }
    assert_eq!(cp.revision().await, rev, "refused writes change nothing");
}
