//! `/api/v1/budgets`: every endpoint's happy path, authentication, input errors naming
//! their field, unknown ids, and what a change does to the revision, the published
//! snapshot and the audit trail.

use crate::{ADMIN, Cp};
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};
use tollgate_core::Timestamp;

/// A team `payments` with a project `checkout` and one key in it; returns their ids.
pub(crate) struct Tenancy {
    pub(crate) team: String,
    pub(crate) project: String,
    pub(crate) key: String,
}

pub(crate) async fn tenancy(cp: &Cp) -> Tenancy {
    let team = cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "payments"})), S::CREATED).await;
    let project = cp
        .expect(Method::POST, "/api/v1/projects", Some(json!({"name": "checkout", "team": "payments"})), S::CREATED)
        .await;
    let key = cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "checkout"})), S::CREATED).await;
    Tenancy {
        team: team["id"].as_str().unwrap().to_owned(),
        project: project["id"].as_str().unwrap().to_owned(),
        key: key["id"].as_str().unwrap().to_owned(),
    }
}

async fn create(cp: &Cp, body: Value) -> Value {
    cp.expect(Method::POST, "/api/v1/budgets", Some(body), S::CREATED).await
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(id_of).collect()
}

/// A budget view without its timestamps and id, to compare whole.
fn shape(v: &Value) -> Value {
    let mut v = v.clone();
    let obj = v.as_object_mut().unwrap();
    for k in ["id", "created_at", "updated_at"] {
        assert!(obj.remove(k).is_some_and(|x| x.is_string()), "{k} is a string in {obj:?}");
    }
    v
}

#[tokio::test]
async fn budgets_can_be_created_read_listed_changed_and_deleted() {
    let cp = Cp::start().await;
    let t = tenancy(&cp).await;

    // A team given by name is stored by id; thresholds are read from numbers and strings.
    let team_budget = create(
        &cp,
        json!({"scope": "team", "scope_id": "payments", "limit_usd": 500, "window": "month",
               "alert_thresholds": [0.8, "0.5"]}),
    )
    .await;
    assert!(id_of(&team_budget).starts_with("bud_"), "{team_budget}");
    assert_eq!(
        shape(&team_budget),
        json!({"scope": "team", "scope_id": t.team, "limit_usd": "500.00", "limit_tokens": null,
               "window": "month", "on_breach": "block", "alert_thresholds": ["0.5", "0.8"], "epoch": 0,
               "temporary_increase": null})
    );
    let project_budget = create(
        &cp,
        json!({"scope": "project", "scope_id": "checkout", "limit_tokens": 1_000_000, "window": "day",
               "on_breach": "warn"}),
    )
    .await;
    assert_eq!(
        shape(&project_budget),
        json!({"scope": "project", "scope_id": t.project, "limit_usd": null, "limit_tokens": 1_000_000,
               "window": "day", "on_breach": "warn", "alert_thresholds": [], "epoch": 0,
               "temporary_increase": null})
    );
    let org_budget = create(
        &cp,
        json!({"scope": "organization", "scope_id": "default", "limit_usd": "0.000000001", "window": "total"}),
    )
    .await;
    assert!(org_budget["scope_id"].as_str().unwrap().starts_with("org_"), "{org_budget}");
    assert_eq!(org_budget["limit_usd"], "0.000000001", "money is exact to the nano-dollar");
    let key_budget =
        create(&cp, json!({"scope": "virtual_key", "scope_id": t.key, "limit_usd": "2.5", "window": "hour"})).await;
    assert_eq!(key_budget["scope_id"], t.key.as_str());
    let principal_budget =
        create(&cp, json!({"scope": "principal", "scope_id": "acme:user-42", "limit_usd": 0.1, "window": "week"}))
            .await;
    assert_eq!(
        (principal_budget["scope_id"].clone(), principal_budget["limit_usd"].clone()),
        (json!("acme:user-42"), json!("0.10"))
    );

    // Read back: the same view.
    let id = id_of(&team_budget);
    assert_eq!(cp.expect(Method::GET, &format!("/api/v1/budgets/{id}"), None, S::OK).await, team_budget);

    // The key's own view lists its budget in the same shape.
    let key_view = cp.expect(Method::GET, &format!("/api/v1/keys/{}", t.key), None, S::OK).await;
    assert_eq!(key_view["budgets"], json!([key_budget]));

    // Listing: everything by id, filters (names resolve like on create), pages.
    let all = [&team_budget, &project_budget, &org_budget, &key_budget, &principal_budget];
    let mut want: Vec<String> = all.iter().map(|b| id_of(b)).collect();
    want.sort();
    let page = cp.expect(Method::GET, "/api/v1/budgets", None, S::OK).await;
    assert_eq!(ids(&page), want);
    assert_eq!(page["next_after"], Value::Null);
    let page = cp.expect(Method::GET, "/api/v1/budgets?scope=team&scope_id=payments", None, S::OK).await;
    assert_eq!(ids(&page), std::slice::from_ref(&id));
    let page = cp.expect(Method::GET, &format!("/api/v1/budgets?scope=team&scope_id={}", t.team), None, S::OK).await;
    assert_eq!(ids(&page), std::slice::from_ref(&id));
    let page = cp.expect(Method::GET, "/api/v1/budgets?scope=principal", None, S::OK).await;
    assert_eq!(ids(&page), [id_of(&principal_budget)]);
    let page = cp.expect(Method::GET, "/api/v1/budgets?scope=team&scope_id=nobody", None, S::OK).await;
    assert_eq!(ids(&page), Vec::<String>::new());
    let mut seen = Vec::new();
    let mut path = "/api/v1/budgets?limit=2".to_owned();
    loop {
        let page = cp.expect(Method::GET, &path, None, S::OK).await;
        assert!(page["data"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&page));
        match page["next_after"].as_str() {
            Some(next) => path = format!("/api/v1/budgets?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, want, "pages cover every budget once, in order");

    // Change: a money budget becomes a token budget; fields left out stay.
    let changed = cp
        .expect(
            Method::PATCH,
            &format!("/api/v1/budgets/{id}"),
            Some(json!({"limit_tokens": 5000, "on_breach": "warn", "alert_thresholds": ["0.9"]})),
            S::OK,
        )
        .await;
    assert_eq!(
        shape(&changed),
        json!({"scope": "team", "scope_id": t.team, "limit_usd": null, "limit_tokens": 5000,
               "window": "month", "on_breach": "warn", "alert_thresholds": ["0.9"], "epoch": 0,
               "temporary_increase": null})
    );
    assert_eq!(changed["created_at"], team_budget["created_at"]);
    let changed = cp
        .expect(
            Method::PATCH,
            &format!("/api/v1/budgets/{id}"),
            Some(json!({"limit_usd": "7.25", "window": "day"})),
            S::OK,
        )
        .await;
    assert_eq!((changed["limit_usd"].clone(), changed["limit_tokens"].clone()), (json!("7.25"), Value::Null));
    assert_eq!(changed["window"], "day");
    assert_eq!(cp.expect(Method::GET, &format!("/api/v1/budgets/{id}"), None, S::OK).await, changed);

    // An empty patch changes nothing, not even the revision.
    let rev = cp.revision().await;
    let same = cp.expect(Method::PATCH, &format!("/api/v1/budgets/{id}"), Some(json!({})), S::OK).await;
    assert_eq!(same, changed);
    assert_eq!(cp.revision().await, rev);

    // Delete: 204 with no body, then gone everywhere.
    let r = cp.admin(Method::DELETE, &format!("/api/v1/budgets/{id}"), None).await;
    assert_eq!(r.status, S::NO_CONTENT, "{}", r.text());
    assert!(r.body.is_empty());
    cp.expect(Method::GET, &format!("/api/v1/budgets/{id}"), None, S::NOT_FOUND).await;
    let page = cp.expect(Method::GET, "/api/v1/budgets", None, S::OK).await;
    assert!(!ids(&page).contains(&id));
    assert_eq!(ids(&page).len(), 4);
}

#[tokio::test]
async fn every_budget_endpoint_refuses_a_missing_or_wrong_token() {
    let cp = Cp::start().await;
    let b = create(&cp, json!({"scope": "principal", "scope_id": "p", "limit_usd": 1, "window": "day"})).await;
    let id = id_of(&b);
    let rev = cp.revision().await;
    let audit = cp.budget_audit().await;
    let increase = json!({"amount_usd": "1", "duration_s": 60});
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/budgets".into(),
            Some(json!({"scope": "principal", "scope_id": "q", "limit_usd": 1, "window": "day"})),
        ),
        (Method::GET, "/api/v1/budgets".into(), None),
        (Method::GET, format!("/api/v1/budgets/{id}"), None),
        (Method::PATCH, format!("/api/v1/budgets/{id}"), Some(json!({"limit_usd": 9}))),
        (Method::DELETE, format!("/api/v1/budgets/{id}"), None),
        (Method::POST, format!("/api/v1/budgets/{id}/reset"), Some(json!({}))),
        (Method::POST, format!("/api/v1/budgets/{id}/increase"), Some(increase)),
    ];
    for (method, path, body) in &endpoints {
        for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
            let r = cp.call(method.clone(), path, token, body.as_ref()).await;
            assert_eq!(r.status, S::UNAUTHORIZED, "{method} {path} with {token:?}: {}", r.text());
            assert_eq!(r.headers.get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
            assert_eq!(r.json()["error"]["code"], "unauthenticated");
        }
    }
    assert_eq!(cp.revision().await, rev, "refused calls change nothing");
    assert_eq!(cp.budget_audit().await, audit, "refused calls are not audited as writes");
    assert_eq!(cp.expect(Method::GET, &format!("/api/v1/budgets/{id}"), None, S::OK).await, b);
}

#[tokio::test]
async fn bad_budget_input_is_refused_naming_the_field() {
    let cp = Cp::start().await;
    tenancy(&cp).await;
    let money =
        id_of(&create(&cp, json!({"scope": "team", "scope_id": "payments", "limit_usd": 5, "window": "day"})).await);
    let tokens =
        id_of(&create(&cp, json!({"scope": "team", "scope_id": "payments", "limit_tokens": 5, "window": "day"})).await);
    let rev = cp.revision().await;
    let audit = cp.budget_audit().await;

    let base = json!({"scope": "team", "scope_id": "payments", "window": "day"});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Some(b)
    };
    let past = "2020-01-01T00:00:00Z";
    let far = "2999-01-01T00:00:00Z";
    let create_path = "/api/v1/budgets".to_owned();
    let patch = format!("/api/v1/budgets/{money}");
    let inc = format!("/api/v1/budgets/{money}/increase");
    let inc_tokens = format!("/api/v1/budgets/{tokens}/increase");
    let cases: Vec<(Method, String, Option<Value>, &str)> = vec![
        // create
        (Method::POST, create_path.clone(), with(json!({"limit_usd": "-1"})), "limit_usd"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": -0.5})), "limit_usd"),
        (Method::POST, create_path.clone(), with(json!({"limit_tokens": -5})), "limit_tokens"),
        (Method::POST, create_path.clone(), with(json!({"limit_tokens": "many"})), "limit_tokens"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": "1.0000000001"})), "limit_usd"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "limit_tokens": 1})), "limit_tokens"),
        (Method::POST, create_path.clone(), with(json!({})), "limit_usd"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "window": "fortnight"})), "window"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "window": 7})), "window"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "scope": "galaxy"})), "scope"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "scope_id": 42})), "scope_id"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "scope_id": ""})), "scope_id"),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "on_breach": "explode"})), "on_breach"),
        (
            Method::POST,
            create_path.clone(),
            with(json!({"limit_usd": 1, "alert_thresholds": [1.5]})),
            "alert_thresholds",
        ),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "alert_thresholds": [0]})), "alert_thresholds"),
        (
            Method::POST,
            create_path.clone(),
            with(json!({"limit_usd": 1, "alert_thresholds": "0.8"})),
            "alert_thresholds",
        ),
        (
            Method::POST,
            create_path.clone(),
            with(json!({"limit_usd": 1, "alert_thresholds": [0.8, 0.8]})),
            "alert_thresholds",
        ),
        (Method::POST, create_path.clone(), with(json!({"limit_usd": 1, "colour": "red"})), "colour"),
        (
            Method::POST,
            create_path.clone(),
            Some(json!({"scope": "principal", "scope_id": "a\nb", "limit_usd": 1, "window": "day"})),
            "scope_id",
        ),
        (Method::POST, create_path.clone(), Some(json!({"scope_id": "x", "limit_usd": 1, "window": "day"})), "scope"),
        // patch
        (Method::PATCH, patch.clone(), Some(json!({"limit_usd": "-3"})), "limit_usd"),
        (Method::PATCH, patch.clone(), Some(json!({"limit_usd": null})), "limit_usd"),
        (Method::PATCH, patch.clone(), Some(json!({"limit_usd": 1, "limit_tokens": 2})), "limit_tokens"),
        (Method::PATCH, patch.clone(), Some(json!({"window": "year"})), "window"),
        (Method::PATCH, patch.clone(), Some(json!({"scope": "project"})), "scope"),
        (Method::PATCH, patch.clone(), Some(json!({"temporary_increase": {"amount": "5"}})), "temporary_increase"),
        (Method::PATCH, patch.clone(), Some(json!({"alert_thresholds": ["1.1"]})), "alert_thresholds"),
        // increase
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "5", "expires_at": past})), "expires_at"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "5", "expires_at": far})), "expires_at"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "5", "expires_at": "tomorrow"})), "expires_at"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "5", "duration_s": 0})), "duration_s"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "5", "duration_s": 91 * 24 * 3600})), "duration_s"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "5", "duration_s": -1})), "duration_s"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "5"})), "expires_at"),
        (
            Method::POST,
            inc.clone(),
            Some(json!({"amount_usd": "5", "duration_s": 60, "expires_at": far})),
            "duration_s",
        ),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "0", "duration_s": 60})), "amount_usd"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "-1", "duration_s": 60})), "amount_usd"),
        (Method::POST, inc.clone(), Some(json!({"tokens": 100, "duration_s": 60})), "tokens"),
        (Method::POST, inc.clone(), Some(json!({"duration_s": 60})), "amount_usd"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "1", "tokens": 1, "duration_s": 60})), "tokens"),
        (Method::POST, inc.clone(), Some(json!({"amount_usd": "1", "duration_s": 60, "note": "x"})), "note"),
        (Method::POST, inc_tokens.clone(), Some(json!({"amount_usd": "1", "duration_s": 60})), "amount_usd"),
        (Method::POST, inc_tokens.clone(), Some(json!({"tokens": 0, "duration_s": 60})), "tokens"),
        // reset takes no options
        (Method::POST, format!("/api/v1/budgets/{money}/reset"), Some(json!({"hard": true})), "hard"),
        // list
        (Method::GET, "/api/v1/budgets?scope=galaxy".into(), None, "scope"),
        (Method::GET, "/api/v1/budgets?limit=lots".into(), None, "limit"),
        (Method::GET, "/api/v1/budgets?colour=red".into(), None, "colour"),
    ];
    for (method, path, body, field) in cases {
        let r = cp.admin(method.clone(), &path, body.clone()).await;
        assert_eq!(r.status, S::BAD_REQUEST, "{method} {path} {body:?}: {}", r.text());
        let err = r.json()["error"].clone();
        assert_eq!(err["code"], "invalid_request", "{err}");
        assert_eq!(err["field"], field, "{method} {path} {body:?}: {err}");
        assert!(err["message"].as_str().unwrap().contains(field), "the message names the field too: {err}");
    }

    // Bodies that are not JSON objects.
    for (method, path) in
        [(Method::POST, create_path.as_str()), (Method::PATCH, patch.as_str()), (Method::POST, inc.as_str())]
    {
        for body in ["", "not json", "[1]", "null"] {
            let r = tollgate_testkit::http_client::send(
                method.clone(),
                &format!("{}{path}", cp.rest),
                &[("authorization", &format!("Bearer {ADMIN}")), ("content-type", "application/json")],
                body.to_owned(),
            )
            .await;
            assert_eq!(r.status, S::BAD_REQUEST, "{method} {path} {body:?}: {}", r.text());
        }
    }

    assert_eq!(cp.revision().await, rev, "refused writes change nothing");
    assert_eq!(cp.budget_audit().await, audit, "refused writes are not audited");
    let b = cp.expect(Method::GET, &format!("/api/v1/budgets/{money}"), None, S::OK).await;
    assert_eq!(
        (b["limit_usd"].clone(), b["epoch"].clone(), b["temporary_increase"].clone()),
        (json!("5.00"), json!(0), Value::Null)
    );
}

#[tokio::test]
async fn unknown_budgets_and_scope_targets_are_not_found() {
    let cp = Cp::start().await;
    tenancy(&cp).await;
    let rev = cp.revision().await;
    let ghost = "bud_0000ghost";
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/budgets/{ghost}"), None),
        (Method::PATCH, format!("/api/v1/budgets/{ghost}"), Some(json!({"limit_usd": 1}))),
        (Method::DELETE, format!("/api/v1/budgets/{ghost}"), None),
        (Method::POST, format!("/api/v1/budgets/{ghost}/reset"), None),
        (Method::POST, format!("/api/v1/budgets/{ghost}/increase"), Some(json!({"amount_usd": 1, "duration_s": 60}))),
    ];
    for (method, path, body) in cases {
        let r = cp.admin(method.clone(), &path, body).await;
        assert_eq!(r.status, S::NOT_FOUND, "{method} {path}: {}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("budget") && msg.contains(ghost), "{msg}");
    }
    for (scope, target, kind) in [
        ("team", "nope-team", "team"),
        ("project", "nope-project", "project"),
        ("organization", "nope-org", "organization"),
        ("virtual_key", "key_nope", "key"),
    ] {
        let body = json!({"scope": scope, "scope_id": target, "limit_usd": 1, "window": "day"});
        let r = cp.admin(Method::POST, "/api/v1/budgets", Some(body)).await;
        assert_eq!(r.status, S::NOT_FOUND, "{scope}: {}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(kind) && msg.contains(target), "{msg}");
    }
    assert_eq!(cp.revision().await, rev);
    assert!(cp.budget_audit().await.is_empty());
}

#[tokio::test]
async fn a_second_identical_reset_bumps_the_epoch_again_and_reaches_the_snapshot() {
    let cp = Cp::start().await;
    let b = create(&cp, json!({"scope": "principal", "scope_id": "acme:1", "limit_usd": "3", "window": "month"})).await;
    let id = id_of(&b);
    assert_eq!(cp.published_budget(&id).await.unwrap().epoch, 0);

    let rev = cp.revision().await;
    let first = cp.expect(Method::POST, &format!("/api/v1/budgets/{id}/reset"), Some(json!({})), S::OK).await;
    assert_eq!(first["epoch"], 1);
    assert_eq!(cp.revision().await, rev + 1);
    // An empty body works as well as `{}`.
    let second = cp.expect(Method::POST, &format!("/api/v1/budgets/{id}/reset"), None, S::OK).await;
    assert_eq!(second["epoch"], 2, "the same reset again starts the window again");
    assert_eq!(cp.revision().await, rev + 2);
    let mut want = shape(&b);
    want["epoch"] = json!(2);
    assert_eq!(shape(&second), want, "a reset changes only the epoch");
    assert_eq!(cp.expect(Method::GET, &format!("/api/v1/budgets/{id}"), None, S::OK).await["epoch"], 2);

    let published = cp.published_budget(&id).await.unwrap();
    assert_eq!(published.epoch, 2);
    assert_eq!(published.limit_nanos, 3_000_000_000, "a reset leaves the limit alone");
    let snap = cp.snapshot_at(rev + 2).await;
    assert_eq!(snap.revision, rev + 2);

    let resets: Vec<_> = cp.budget_audit().await.into_iter().filter(|(a, _, _)| a == "budget.reset").collect();
    assert_eq!(resets.len(), 2, "{resets:?}");
}

fn ts_ms(v: &Value) -> i64 {
    Timestamp::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"))).unwrap().unix_millis()
}

#[tokio::test]
async fn a_temporary_increase_is_published_expires_by_itself_and_can_be_ended() {
    let cp = Cp::start().await;
    let money =
        id_of(&create(&cp, json!({"scope": "principal", "scope_id": "a", "limit_usd": "10", "window": "day"})).await);
    let tokens = id_of(
        &create(&cp, json!({"scope": "principal", "scope_id": "a", "limit_tokens": 1000, "window": "day"})).await,
    );

    // By duration, on a money budget: the amount shows in USD.
    let before = Timestamp::now().unix_millis();
    let rev = cp.revision().await;
    let v = cp
        .expect(
            Method::POST,
            &format!("/api/v1/budgets/{money}/increase"),
            Some(json!({"amount_usd": "2.50", "duration_s": 3600})),
            S::OK,
        )
        .await;
    let after = Timestamp::now().unix_millis();
    assert_eq!(cp.revision().await, rev + 1);
    assert_eq!(v["temporary_increase"]["amount"], "2.50");
    let until = ts_ms(&v["temporary_increase"]["until"]);
    assert!((before + 3_600_000..=after + 3_600_000).contains(&until), "{v}");
    assert_eq!(v["limit_usd"], "10.00", "the limit itself is unchanged");
    let published = cp.published_budget(&money).await.unwrap();
    assert_eq!((published.temporary_increase, published.temporary_increase_until_ms), (2_500_000_000, Some(until)));
    assert_eq!(published.limit_nanos, 10_000_000_000);

    // By instant, on a token budget: the amount is a token count.
    let expires = Timestamp::now().plus_millis(86_400_000);
    let v = cp
        .expect(
            Method::POST,
            &format!("/api/v1/budgets/{tokens}/increase"),
            Some(json!({"tokens": 500, "expires_at": expires.to_rfc3339()})),
            S::OK,
        )
        .await;
    assert_eq!(v["temporary_increase"], json!({"amount": 500, "until": expires.to_rfc3339()}));
    let published = cp.published_budget(&tokens).await.unwrap();
    assert_eq!(published.limit_tokens, Some(1000));
    assert_eq!(
        (published.temporary_increase, published.temporary_increase_until_ms),
        (500, Some(expires.unix_millis()))
    );

    // A second increase replaces the first.
    let v = cp
        .expect(
            Method::POST,
            &format!("/api/v1/budgets/{tokens}/increase"),
            Some(json!({"tokens": 7, "duration_s": 60})),
            S::OK,
        )
        .await;
    assert_eq!(v["temporary_increase"]["amount"], 7);

    // `temporary_increase: null` ends it, on the API and in the snapshot.
    let v = cp
        .expect(Method::PATCH, &format!("/api/v1/budgets/{money}"), Some(json!({"temporary_increase": null})), S::OK)
        .await;
    assert_eq!(v["temporary_increase"], Value::Null);
    let published = cp.published_budget(&money).await.unwrap();
    assert_eq!((published.temporary_increase, published.temporary_increase_until_ms), (0, None));

    // Switching the unit of the limit ends an increase counted in the old unit.
    let v =
        cp.expect(Method::PATCH, &format!("/api/v1/budgets/{tokens}"), Some(json!({"limit_usd": "1"})), S::OK).await;
    assert_eq!((v["limit_usd"].clone(), v["temporary_increase"].clone()), (json!("1.00"), Value::Null));
    assert_eq!(cp.published_budget(&tokens).await.unwrap().temporary_increase, 0);

    // An increase expires by itself: nothing has to run at its end.
    let v = cp
        .expect(
            Method::POST,
            &format!("/api/v1/budgets/{money}/increase"),
            Some(json!({"amount_usd": 1, "duration_s": 1})),
            S::OK,
        )
        .await;
    assert_eq!(v["temporary_increase"]["amount"], "1.00");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let v = cp.expect(Method::GET, &format!("/api/v1/budgets/{money}"), None, S::OK).await;
    assert_eq!(v["temporary_increase"], Value::Null, "expired increases no longer show");
    let published = cp.published_budget(&money).await.unwrap();
    assert!(published.temporary_increase_until_ms.unwrap() <= Timestamp::now().unix_millis(), "its end is in the past");
}

#[tokio::test]
async fn every_budget_change_bumps_the_revision_and_is_published_with_its_new_values() {
    let cp = Cp::start().await;
    let t = tenancy(&cp).await;
    let mut rev = cp.revision().await;

    let b = create(
        &cp,
        json!({"scope": "team", "scope_id": "payments", "limit_usd": "12.5", "window": "month",
               "alert_thresholds": [0.5, 0.8]}),
    )
    .await;
    let id = id_of(&b);
    assert_eq!(cp.revision().await, rev + 1);
    rev += 1;
    let p = cp.snapshot_at(rev).await.budgets.iter().find(|x| x.id == id).cloned().unwrap();
    assert_eq!(
        p,
        tollgate_proto::v1::Budget {
            id: id.clone(),
            scope: "team".into(),
            scope_id: t.team.clone(),
            limit_nanos: 12_500_000_000,
            window: "month".into(),
            on_breach: "block".into(),
            alert_thresholds_permille: vec![500, 800],
            limit_tokens: None,
            epoch: 0,
            temporary_increase: 0,
            temporary_increase_until_ms: None,
            clamp_floor_tokens: None,
        }
    );

    cp.expect(
        Method::PATCH,
        &format!("/api/v1/budgets/{id}"),
        Some(json!({"limit_tokens": 42, "window": "hour", "on_breach": "warn", "alert_thresholds": [0.25]})),
        S::OK,
    )
    .await;
    assert_eq!(cp.revision().await, rev + 1);
    rev += 1;
    let p = cp.snapshot_at(rev).await.budgets.iter().find(|x| x.id == id).cloned().unwrap();
    assert_eq!((p.limit_tokens, p.limit_nanos), (Some(42), 0));
    assert_eq!((p.window.as_str(), p.on_breach.as_str()), ("hour", "warn"));
    assert_eq!(p.alert_thresholds_permille, [250]);

    cp.expect(
        Method::POST,
        &format!("/api/v1/budgets/{id}/increase"),
        Some(json!({"tokens": 8, "duration_s": 600})),
        S::OK,
    )
    .await;
    assert_eq!(cp.revision().await, rev + 1);
    rev += 1;
    assert_eq!(cp.snapshot_at(rev).await.budgets.iter().find(|x| x.id == id).unwrap().temporary_increase, 8);

    cp.expect(Method::POST, &format!("/api/v1/budgets/{id}/reset"), None, S::OK).await;
    assert_eq!(cp.revision().await, rev + 1);
    rev += 1;
    assert_eq!(cp.snapshot_at(rev).await.budgets.iter().find(|x| x.id == id).unwrap().epoch, 1);

    cp.expect(Method::DELETE, &format!("/api/v1/budgets/{id}"), None, S::NO_CONTENT).await;
    assert_eq!(cp.revision().await, rev + 1);
    rev += 1;
    let snap = cp.snapshot_at(rev).await;
    assert_eq!(snap.revision, rev);
    assert!(snap.budgets.iter().all(|x| x.id != id), "a deleted budget leaves the snapshot");
}

#[tokio::test]
async fn every_budget_write_leaves_an_audit_event_with_the_token_as_actor() {
    let cp = Cp::start().await;
    let b = create(&cp, json!({"scope": "principal", "scope_id": "acme:9", "limit_usd": 4, "window": "week"})).await;
    let id = id_of(&b);
    let path = format!("/api/v1/budgets/{id}");
    cp.expect(Method::PATCH, &path, Some(json!({"limit_usd": "6"})), S::OK).await;
    cp.expect(Method::POST, &format!("{path}/increase"), Some(json!({"amount_usd": "2", "duration_s": 60})), S::OK)
        .await;
    cp.expect(Method::PATCH, &path, Some(json!({"temporary_increase": null})), S::OK).await;
    cp.expect(Method::POST, &format!("{path}/reset"), None, S::OK).await;
    cp.expect(Method::POST, &format!("{path}/reset"), None, S::OK).await;
    // Reads are not audited.
    cp.expect(Method::GET, &path, None, S::OK).await;
    cp.expect(Method::GET, "/api/v1/budgets", None, S::OK).await;
    cp.expect(Method::DELETE, &path, None, S::NO_CONTENT).await;

    let got = cp.budget_audit().await;
    let want: Vec<(String, String, String)> = [
        "budget.create",
        "budget.update",
        "budget.increase",
        "budget.update",
        "budget.reset",
        "budget.reset",
        "budget.delete",
    ]
    .iter()
    .map(|a| ((*a).to_owned(), "bootstrap".to_owned(), id.clone()))
    .collect();
    assert_eq!(got, want);

    let events = cp.cp.service().store().list_audit(Some("budget"), None, 100, None).await.unwrap();
    let by_action = |a: &str| events.iter().filter(|e| e.action == a).map(|e| e.metadata.clone()).collect::<Vec<_>>();
    assert_eq!(by_action("budget.create")[0]["limit_usd"], "4.00");
    assert_eq!(by_action("budget.increase")[0]["amount"], "2.00");
    let mut reset_epochs: Vec<_> = by_action("budget.reset").iter().map(|m| m["epoch"].clone()).collect();
    reset_epochs.sort_by_key(|e| e.as_i64());
    assert_eq!(reset_epochs, [json!(1), json!(2)]);

    // The events are chained.
    let mut all = cp.cp.service().store().list_audit(None, None, 1000, None).await.unwrap();
    all.reverse();
    assert!(all.windows(2).all(|w| w[1].prev_hash == w[0].hash), "the audit trail is one hash chain");
}

#[tokio::test]
async fn a_key_can_still_be_minted_with_an_inline_budget_now_with_thresholds() {
    let cp = Cp::start().await;
    tenancy(&cp).await;
    let key = cp
        .expect(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"project": "checkout",
                        "budget": {"limit_usd": "5", "window": "day", "on_breach": "warn",
                                   "alert_thresholds": [0.9, "0.5"]}})),
            S::CREATED,
        )
        .await;
    let key_id = key["id"].as_str().unwrap().to_owned();
    let budget = key["budgets"][0].clone();
    assert_eq!(
        shape(&budget),
        json!({"scope": "virtual_key", "scope_id": key_id, "limit_usd": "5.00", "limit_tokens": null,
               "window": "day", "on_breach": "warn", "alert_thresholds": ["0.5", "0.9"], "epoch": 0,
               "temporary_increase": null})
    );
    let page =
        cp.expect(Method::GET, &format!("/api/v1/budgets?scope=virtual_key&scope_id={key_id}"), None, S::OK).await;
    assert_eq!(page["data"], json!([budget]));
    let published = cp.published_budget(budget["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(published.alert_thresholds_permille, [500, 900]);

    // The old shape (limit_usd, window, on_breach only) still works, and so does a token limit.
    let key = cp
        .expect(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"project": "checkout", "budget": {"limit_usd": 1, "window": "month", "on_breach": "block"}})),
            S::CREATED,
        )
        .await;
    assert_eq!(key["budgets"][0]["limit_usd"], "1.00");
    let key = cp
        .expect(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"project": "checkout", "budget": {"limit_tokens": 100, "window": "month"}})),
            S::CREATED,
        )
        .await;
    assert_eq!(
        (key["budgets"][0]["limit_tokens"].clone(), key["budgets"][0]["limit_usd"].clone()),
        (json!(100), Value::Null)
    );

    for (budget, field) in [
        (json!({"limit_usd": "-1", "window": "day"}), "budget.limit_usd"),
        (json!({"limit_usd": "1", "limit_tokens": 1, "window": "day"}), "budget.limit_tokens"),
        (json!({"window": "day"}), "budget.limit_usd"),
        (json!({"limit_usd": "1", "window": "day", "alert_thresholds": [0.5, 0.5]}), "budget.alert_thresholds"),
    ] {
        let r = cp.admin(Method::POST, "/api/v1/keys", Some(json!({"project": "checkout", "budget": budget}))).await;
        assert_eq!(r.status, S::BAD_REQUEST, "{budget}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], field, "{budget}: {}", r.text());
    }
}

#[tokio::test]
async fn budget_spend_counts_only_the_ledger_of_the_current_window_since_the_last_reset() {
    use tollgate_core::{BudgetId, Money, OnBreach, ScopeKind, Window};
    use tollgate_metering::LedgerSink;
    use tollgate_store::BudgetRecord;

    let cp = Cp::start().await;
    let service = cp.cp.service();
    let store = service.store();
    let ts = |text: &str| Timestamp::parse_rfc3339(text).unwrap();
    let entry = |id: &str, at: Timestamp, principal: &str, nanos: i64| {
        tollgate_testkit::ledger::spend_entry(id, "key_1", "proj_1", "m", at, (1, 2), nanos).with_principal(principal)
    };
    let day_budget = |id: &str, last_reset_at: Option<Timestamp>| BudgetRecord {
        id: BudgetId::new(id),
        scope: ScopeKind::Principal,
        scope_id: "acme:1".into(),
        limit_nanos: 1_000_000_000,
        limit_tokens: None,
        window: Window::Day,
        on_breach: OnBreach::Block,
        alert_thresholds: Vec::new(),
        epoch: 0,
        temporary_increase: 0,
        temporary_increase_until: None,
        last_reset_at,
        clamp_floor_tokens: None,
        created_at: ts("2026-03-01T00:00:00Z"),
        updated_at: ts("2026-03-01T00:00:00Z"),
    };
    // One day's budgets of principal acme:1: one last reset before today's window, one
    // reset at 06:00 today.
    store.create_budget(&day_budget("bud_old_reset", Some(ts("2026-03-09T12:00:00Z")))).await.unwrap();
    store.create_budget(&day_budget("bud_reset_at_six", Some(ts("2026-03-10T06:00:00Z")))).await.unwrap();
    let sink: &dyn LedgerSink = store;
    sink.write_batch(&[
        entry("yesterday", ts("2026-03-09T23:59:59.999Z"), "acme:1", 1),
        entry("midnight", ts("2026-03-10T00:00:00Z"), "acme:1", 10),
        entry("before_six", ts("2026-03-10T05:59:59.999Z"), "acme:1", 100),
        entry("at_six", ts("2026-03-10T06:00:00Z"), "acme:1", 1_000),
        entry("late", ts("2026-03-10T23:59:59.999Z"), "acme:1", 10_000),
        entry("tomorrow", ts("2026-03-11T00:00:00Z"), "acme:1", 100_000),
        entry("someone_else", ts("2026-03-10T12:00:00Z"), "acme:2", 1_000_000),
    ])
    .await
    .unwrap();

    let now = ts("2026-03-10T12:00:00Z");
    let spend = |id: &'static str| async move { service.budget_spend(&BudgetId::new(id), now).await.unwrap() };
    // Only today's window; a reset before it changes nothing.
    assert_eq!(spend("bud_old_reset").await, (Money::from_nanos(11_110), 12));
    // Since the reset only: what came before it today does not count.
    assert_eq!(spend("bud_reset_at_six").await, (Money::from_nanos(11_000), 6));
    let other_day = service.budget_spend(&BudgetId::new("bud_old_reset"), ts("2026-03-11T08:00:00Z")).await.unwrap();
    assert_eq!(other_day, (Money::from_nanos(100_000), 3), "the window is the one containing `now`");

    // A reset through the API sets the instant spend counts from; a total budget counts
    // everything after it.
    let b = create(&cp, json!({"scope": "principal", "scope_id": "acme:3", "limit_usd": "1", "window": "total"})).await;
    let id = BudgetId::new(id_of(&b));
    sink.write_batch(&[entry("old", ts("2026-01-01T00:00:00Z"), "acme:3", 5)]).await.unwrap();
    assert_eq!(service.budget_spend(&id, Timestamp::now()).await.unwrap(), (Money::from_nanos(5), 3));
    cp.expect(Method::POST, &format!("/api/v1/budgets/{id}/reset"), None, S::OK).await;
    let reset_at = store.get_budget(&id).await.unwrap().unwrap().last_reset_at.expect("a reset sets last_reset_at");
    sink.write_batch(&[
        entry("just_before_reset", reset_at.plus_millis(-1), "acme:3", 50),
        entry("at_reset", reset_at, "acme:3", 500),
    ])
    .await
    .unwrap();
    assert_eq!(service.budget_spend(&id, reset_at.plus_millis(1)).await.unwrap(), (Money::from_nanos(500), 3));

    let missing = service.budget_spend(&BudgetId::new("bud_ghost"), now).await.unwrap_err();
    assert!(matches!(missing, tollgate_controlplane::ControlError::NotFound { .. }), "{missing:?}");
}

/// One validation rule per value: whatever budget or key the API accepts, a gateway's
/// conversion (the same domain constructors) loads; what it refuses never reaches one.
#[tokio::test]
async fn every_budget_and_key_the_api_accepts_loads_on_a_gateway() {
    let cp = Cp::start().await;
    let t = tenancy(&cp).await;
    let limits = [
        json!({"limit_usd": "0"}),
        json!({"limit_usd": "0.000000001"}),
        json!({"limit_usd": "-1"}),
        json!({"limit_usd": "9223372036.854775807"}),
        json!({"limit_usd": "9223372036.854775808"}),
        json!({"limit_usd": 1e300}),
        json!({"limit_tokens": 0}),
        json!({"limit_tokens": -5}),
        json!({"limit_tokens": u64::MAX}),
        json!({"limit_tokens": 1, "limit_usd": "1"}),
        json!({}),
    ];
    let thresholds = [
        json!(null),
        json!([]),
        json!([0]),
        json!([1]),
        json!([1.5]),
        json!([-0.1]),
        json!(["0.999999999"]),
        json!([0.5, 0.5]),
        json!((1..=17).map(|i| f64::from(i) / 20.0).collect::<Vec<_>>()),
    ];
    let (mut accepted, mut refused) = (0, 0);
    for (i, limit) in limits.iter().enumerate() {
        for (j, th) in thresholds.iter().enumerate() {
            let window = ["minute", "day", "month", "total"][(i + j) % 4];
            let mut body = json!({"scope": "project", "scope_id": t.project, "window": window,
                                   "on_breach": if j % 2 == 0 { "block" } else { "warn" }});
            body.as_object_mut().unwrap().extend(limit.as_object().unwrap().clone());
            if !th.is_null() {
                body["alert_thresholds"] = th.clone();
            }
            let r = cp.admin(Method::POST, "/api/v1/budgets", Some(body.clone())).await;
            match r.status {
                S::CREATED => accepted += 1,
                S::BAD_REQUEST => refused += 1,
                other => panic!("{body}: {other} {}", r.text()),
            }
            // The same budget on a key, as the key's inline budget.
            let mut key = json!({"project": "checkout", "budget": body});
            for k in ["scope", "scope_id"] {
                key["budget"].as_object_mut().unwrap().remove(k);
            }
            let r = cp.admin(Method::POST, "/api/v1/keys", Some(key.clone())).await;
            assert!(matches!(r.status, S::CREATED | S::BAD_REQUEST), "{key}: {} {}", r.status, r.text());
        }
    }
    assert!(accepted > 0 && refused > 0, "the inputs cover both sides: {accepted} accepted, {refused} refused");
    let snap = cp.snapshot_at(cp.revision().await).await;
    for b in &snap.budgets {
        if let Err(e) = tollgate_proto::convert::budget(b) {
            panic!("the control plane accepted a budget no gateway loads: {e} ({b:?})");
        }
    }
    for k in &snap.keys {
        if let Err(e) = tollgate_proto::convert::key(k) {
            panic!("the control plane accepted a key no gateway loads: {e}");
        }
    }
    assert!(snap.budgets.len() >= accepted, "every accepted budget is published");
}

#[tokio::test]
async fn clamp_budgets_take_a_bounded_floor_show_it_publish_it_and_audit_it() {
    let cp = Cp::start().await;
    let t = tenancy(&cp).await;
    // Without a floor a clamp budget shows (and publishes) the default, 16.
    let plain = create(
        &cp,
        json!({"scope": "project", "scope_id": "checkout", "limit_tokens": 10_000, "window": "day",
               "on_breach": "clamp"}),
    )
    .await;
    assert_eq!((plain["on_breach"].clone(), plain["clamp_floor_tokens"].clone()), (json!("clamp"), json!(16)));
    let published = cp.published_budget(&id_of(&plain)).await.unwrap();
    assert_eq!((published.on_breach.as_str(), published.clamp_floor_tokens), ("clamp", None));

    let b = create(
        &cp,
        json!({"scope": "team", "scope_id": "payments", "limit_usd": "20", "window": "day",
               "on_breach": "clamp", "clamp_floor_tokens": 64}),
    )
    .await;
    let id = id_of(&b);
    assert_eq!(
        shape(&b),
        json!({"scope": "team", "scope_id": t.team, "limit_usd": "20.00", "limit_tokens": null, "window": "day",
               "on_breach": "clamp", "clamp_floor_tokens": 64, "alert_thresholds": [], "epoch": 0,
               "temporary_increase": null})
    );
    assert_eq!(cp.published_budget(&id).await.unwrap().clamp_floor_tokens, Some(64));
    let path = format!("/api/v1/budgets/{id}");
    assert_eq!(cp.expect(Method::GET, &path, None, S::OK).await, b);

    // Changed, back to the default with null, then dropped with the clamp behaviour.
    let changed = cp.expect(Method::PATCH, &path, Some(json!({"clamp_floor_tokens": 1_000_000})), S::OK).await;
    assert_eq!(changed["clamp_floor_tokens"], 1_000_000);
    assert_eq!(cp.published_budget(&id).await.unwrap().clamp_floor_tokens, Some(1_000_000));
    let default = cp.expect(Method::PATCH, &path, Some(json!({"clamp_floor_tokens": null})), S::OK).await;
    assert_eq!(default["clamp_floor_tokens"], 16);
    cp.expect(Method::PATCH, &path, Some(json!({"clamp_floor_tokens": 32})), S::OK).await;
    let block = cp.expect(Method::PATCH, &path, Some(json!({"on_breach": "block"})), S::OK).await;
    assert!(block.get("clamp_floor_tokens").is_none(), "a block budget has no floor: {block}");
    assert_eq!(cp.published_budget(&id).await.unwrap().clamp_floor_tokens, None);
    let again = cp.expect(Method::PATCH, &path, Some(json!({"on_breach": "clamp"})), S::OK).await;
    assert_eq!(again["clamp_floor_tokens"], 16, "the old floor did not survive the switch");

    let events = cp.cp.service().store().list_audit(Some("budget"), None, 100, None).await.unwrap();
    let create_event = events.iter().find(|e| e.action == "budget.create" && e.target_id == id).unwrap();
    assert_eq!(create_event.metadata["clamp_floor_tokens"], 64, "the audit records the floor");

    // Refused: out of range, or on a budget that does not clamp; nothing is written.
    let rev = cp.revision().await;
    let audit = cp.budget_audit().await;
    let base = json!({"scope": "team", "scope_id": "payments", "limit_usd": "1", "window": "day"});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    for body in [
        with(json!({"on_breach": "clamp", "clamp_floor_tokens": 0})),
        with(json!({"on_breach": "clamp", "clamp_floor_tokens": 1_000_001})),
        with(json!({"on_breach": "clamp", "clamp_floor_tokens": -1})),
        with(json!({"on_breach": "block", "clamp_floor_tokens": 16})),
        with(json!({"clamp_floor_tokens": 16})),
        with(json!({"on_breach": "warn", "clamp_floor_tokens": 16})),
    ] {
        let r = cp.admin(Method::POST, "/api/v1/budgets", Some(body.clone())).await;
        assert_eq!(r.status, S::BAD_REQUEST, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "clamp_floor_tokens", "{body}: {}", r.text());
    }
    for patch in [json!({"clamp_floor_tokens": 0}), json!({"on_breach": "warn", "clamp_floor_tokens": 20})] {
        let r = cp.admin(Method::PATCH, &path, Some(patch.clone())).await;
        assert_eq!(r.status, S::BAD_REQUEST, "{patch}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "clamp_floor_tokens", "{patch}: {}", r.text());
    }
    let warn = id_of(&create(&cp, with(json!({"on_breach": "warn"}))).await);
    let r = cp.admin(Method::PATCH, &format!("/api/v1/budgets/{warn}"), Some(json!({"clamp_floor_tokens": 20}))).await;
    assert_eq!(r.status, S::BAD_REQUEST, "a warn budget takes no floor: {}", r.text());
    assert_eq!(cp.revision().await, rev + 1, "only the warn budget was written");
    assert_eq!(cp.budget_audit().await.len(), audit.len() + 1);
}

#[tokio::test]
async fn a_key_inline_budget_may_clamp_with_a_floor() {
    let cp = Cp::start().await;
    tenancy(&cp).await;
    let key = cp
        .expect(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"project": "checkout",
                        "budget": {"limit_tokens": 5000, "window": "day", "on_breach": "clamp",
                                   "clamp_floor_tokens": 32}})),
            S::CREATED,
        )
        .await;
    let budget = &key["budgets"][0];
    assert_eq!((budget["on_breach"].clone(), budget["clamp_floor_tokens"].clone()), (json!("clamp"), json!(32)));
    let published = cp.published_budget(budget["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(published.clamp_floor_tokens, Some(32));
    let r = cp
        .admin(
            Method::POST,
            "/api/v1/keys",
            Some(json!({"project": "checkout",
                        "budget": {"limit_tokens": 5000, "window": "day", "clamp_floor_tokens": 32}})),
        )
        .await;
    assert_eq!(r.status, S::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "budget.clamp_floor_tokens");
}
