//! `/api/v1/usage` and `/api/v1/ledger`: grouping, exact money, CSV that parses back,
//! parameter errors naming their field, authentication, and pagination.

use crate::{ADMIN, Cp};
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};
use tollgate_core::Timestamp;
use tollgate_metering::{LedgerEntry, LedgerSink};
use tollgate_testkit::ledger::spend_entry;

/// 2026-11-23T00:00:00Z.
const DAY: i64 = 1_795_392_000_000;
const HOUR: i64 = 3_600_000;
const RANGE: &str = "from=2026-11-22T00:00:00Z&to=2026-11-24T00:00:00Z";

fn entry(id: &str, at_ms: i64, key: &str, principal: &str, model: &str, nanos: i64, io: (u64, u64)) -> LedgerEntry {
    spend_entry(id, key, "prj_1", model, Timestamp::from_unix_millis(at_ms), io, nanos).with_principal(principal)
}

async fn seed(cp: &Cp) {
    let batch = [
        entry("r1", DAY - 1, "key_a", "alice", "gpt-4o", 1_000_000_001, (10, 5)),
        entry("r2", DAY, "key_a", "alice", "gpt-4o", 2, (20, 10)),
        entry("r3", DAY + HOUR, "key_b", "x,\"y\"", "claude", 300, (1, 1)),
        entry("r4", DAY + HOUR, "key_b", "bob", "gpt-4o", 4_000, (3, 4)),
        entry("r5", DAY + 2 * DAY, "key_a", "alice", "gpt-4o", 9, (9, 9)), // outside RANGE
    ];
    let sink: &dyn LedgerSink = cp.cp.service().store();
    sink.write_batch(&batch).await.unwrap();
}

async fn get(cp: &Cp, path: &str) -> Value {
    cp.expect(Method::GET, path, None, S::OK).await
}

#[tokio::test]
async fn usage_sums_exactly_and_groups_by_day_model_key_and_principal() {
    let cp = Cp::start().await;
    seed(&cp).await;
    let r = get(&cp, &format!("/api/v1/usage?{RANGE}&group_by=day,model")).await;
    assert_eq!(r["window"], json!({"from": "2026-11-22T00:00:00Z", "to": "2026-11-24T00:00:00Z"}));
    assert_eq!(
        r["summary"],
        json!({"requests": 4, "input_tokens": 34, "output_tokens": 20, "cached_input_tokens": 0,
               "cost_usd": "1.000004303"})
    );
    assert_eq!(
        r["by_day"],
        json!([
            {"day": "2026-11-22", "requests": 1, "input_tokens": 10, "output_tokens": 5, "cached_input_tokens": 0,
             "cost_usd": "1.000000001"},
            {"day": "2026-11-23", "requests": 3, "input_tokens": 24, "output_tokens": 15, "cached_input_tokens": 0,
             "cost_usd": "0.000004302"},
        ])
    );
    let models: Vec<(&str, &str)> = r["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["model"].as_str().unwrap(), m["cost_usd"].as_str().unwrap()))
        .collect();
    assert_eq!(models, [("claude", "0.0000003"), ("gpt-4o", "1.000004003")]);
    assert!(r.get("by_hour").is_none() && r.get("by_key").is_none(), "only asked-for groups: {r}");

    let scoped = get(&cp, &format!("/api/v1/usage?{RANGE}&scope=key&scope_id=key_b&group_by=principal,hour")).await;
    assert_eq!(scoped["summary"]["requests"], 2);
    assert_eq!(scoped["by_hour"][0]["hour"], "2026-11-23T01:00:00Z");
    let principals: Vec<&str> =
        scoped["by_principal"].as_array().unwrap().iter().map(|p| p["principal"].as_str().unwrap()).collect();
    assert_eq!(principals, ["bob", "x,\"y\""]);
}

#[tokio::test]
async fn usage_groups_by_the_model_asked_for_as_well_as_the_one_that_served() {
    let cp = Cp::start().await;
    // `fast` is an alias served by gpt-4o-mini; one request fell back to claude.
    let batch = [
        entry("a1", DAY, "key_a", "alice", "fast", 100, (1, 1)).with_served_by("openai", "gpt-4o-mini"),
        entry("a2", DAY, "key_a", "alice", "fast", 200, (1, 1)).with_served_by("anthropic", "claude"),
        entry("a3", DAY, "key_b", "bob", "gpt-4o-mini", 400, (1, 1)).with_served_by("openai", "gpt-4o-mini"),
    ];
    let sink: &dyn LedgerSink = cp.cp.service().store();
    sink.write_batch(&batch).await.unwrap();
    let r = get(&cp, &format!("/api/v1/usage?{RANGE}&group_by=requested_model,model")).await;
    let rows = |group: &str, field: &str| -> Vec<(String, String)> {
        r[group]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m[field].as_str().unwrap().to_owned(), m["cost_usd"].as_str().unwrap().to_owned()))
            .collect()
    };
    let asked = rows("by_requested_model", "requested_model");
    assert_eq!(asked, [("fast".into(), "0.0000003".into()), ("gpt-4o-mini".into(), "0.0000004".into())]);
    let served = rows("by_model", "model");
    assert_eq!(served, [("claude".into(), "0.0000002".into()), ("gpt-4o-mini".into(), "0.0000005".into())]);
    let csv = cp.admin(Method::GET, &format!("/api/v1/usage?{RANGE}&group_by=requested_model&format=csv"), None).await;
    assert!(csv.text().contains("requested_model"), "{}", csv.text());
}

/// A minimal RFC 4180 reader: quoted fields with doubled quotes, CRLF records.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
            (false, '\n') => panic!("bare LF in {text:?}"),
            (false, c) => field.push(c),
        }
        if !quoted && c == '\r' {
            row.push(std::mem::take(&mut field));
            rows.push(std::mem::take(&mut row));
        }
    }
    assert!(!quoted && row.is_empty() && field.is_empty(), "unterminated record in {text:?}");
    rows
}

#[tokio::test]
async fn usage_as_csv_has_one_quoted_row_per_group() {
    let cp = Cp::start().await;
    seed(&cp).await;
    let r = cp.admin(Method::GET, &format!("/api/v1/usage?{RANGE}&group_by=principal&format=csv"), None).await;
    assert_eq!(r.status, S::OK, "{}", r.text());
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let rows = parse_csv(&r.text());
    let want: Vec<Vec<&str>> = vec![
        vec!["group", "value", "requests", "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd"],
        vec!["total", "", "4", "34", "20", "0", "1.000004303"],
        vec!["principal", "alice", "2", "30", "15", "0", "1.000000003"],
        vec!["principal", "bob", "1", "3", "4", "0", "0.000004"],
        vec!["principal", "x,\"y\"", "1", "1", "1", "0", "0.0000003"],
    ];
    assert_eq!(rows, want);
}

#[tokio::test]
async fn bad_usage_and_ledger_parameters_are_400_naming_the_field() {
    let cp = Cp::start().await;
    for (query, field) in [
        ("/api/v1/usage?window=fortnight", "window"),
        ("/api/v1/usage?group_by=model,colour", "group_by"),
        ("/api/v1/usage?scope=planet&scope_id=x", "scope"),
        ("/api/v1/usage?scope=project", "scope_id"),
        ("/api/v1/usage?from=not-a-time", "from"),
        ("/api/v1/usage?format=xlsx", "format"),
        ("/api/v1/usage?surprise=1", "surprise"),
        ("/api/v1/ledger?limit=5000", "limit"),
        ("/api/v1/ledger?cursor=%00%01", "cursor"),
    ] {
        let body = cp.expect(Method::GET, query, None, S::BAD_REQUEST).await;
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn usage_and_ledger_need_the_admin_token() {
    let cp = Cp::start().await;
    for path in ["/api/v1/usage", "/api/v1/ledger"] {
        assert_eq!(cp.call(Method::GET, path, None, None).await.status, S::UNAUTHORIZED, "{path}");
        let wrong = cp.call(Method::GET, path, Some("not-the-admin-token"), None).await;
        assert_eq!(wrong.status, S::UNAUTHORIZED, "{path}");
        assert!(!wrong.text().contains(ADMIN));
    }
}

#[tokio::test]
async fn ledger_pages_return_every_entry_exactly_once() {
    let cp = Cp::start().await;
    seed(&cp).await;
    let mut seen = Vec::new();
    let mut next = String::new();
    for _ in 0..10 {
        let page = get(&cp, &format!("/api/v1/ledger?{RANGE}&limit=3&cursor={next}")).await;
        seen.extend(page["entries"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => next = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["r1", "r2", "r3", "r4"]);
}

#[tokio::test]
async fn key_tags_are_validated_stored_listed_patched_and_published() {
    let cp = Cp::start().await;
    cp.expect(Method::POST, "/api/v1/teams", Some(json!({"name": "t"})), S::CREATED).await;
    cp.expect(Method::POST, "/api/v1/projects", Some(json!({"name": "p", "team": "t"})), S::CREATED).await;
    let too_many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    for tags in [json!(["ok", "env prod"]), json!([""]), json!(["x".repeat(65)]), json!(too_many), json!(["é"])] {
        let body = json!({"project": "p", "tags": tags});
        let r = cp.expect(Method::POST, "/api/v1/keys", Some(body), S::BAD_REQUEST).await;
        assert_eq!(r["error"]["field"], "tags", "{tags}: {r}");
    }
    let tags = json!(["env:prod", "feature/chat_v2.1-beta"]);
    let key = cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "p", "tags": tags})), S::CREATED).await;
    assert_eq!(key["tags"], tags);
    let other = cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "p"})), S::CREATED).await;
    assert_eq!(other["tags"], json!([]));
    let id = key["id"].as_str().unwrap();
    assert_eq!(get(&cp, &format!("/api/v1/keys/{id}")).await["tags"], tags);
    let listed = get(&cp, "/api/v1/keys?tag=env:prod").await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["data"][0]["id"], id);

    let path = format!("/api/v1/keys/{id}");
    let bad = cp.expect(Method::PATCH, &path, Some(json!({"tags": ["a;b"]})), S::BAD_REQUEST).await;
    assert_eq!(bad["error"]["field"], "tags");
    let patched = cp.expect(Method::PATCH, &path, Some(json!({"tags": ["env:dev"]})), S::OK).await;
    assert_eq!(patched["tags"], json!(["env:dev"]));
    // Gateways get the tags with the key.
    let snap = cp.snapshot_at(cp.revision().await).await;
    let wire = snap.keys.iter().find(|k| k.id == id).unwrap();
    assert_eq!(wire.tags, ["env:dev"]);
}

async fn seed_tagged(cp: &Cp) {
    let tagged = |id: &str, key: &str, nanos: i64, tags: &[&str]| {
        entry(id, DAY + HOUR, key, "alice", "gpt-4o", nanos, (1, 2)).with_tags(tags.iter().copied())
    };
    let batch = [
        tagged("g0", "key_a", 1, &[]),
        tagged("g1", "key_a", 10, &["env:prod"]),
        tagged("g2", "key_b", 100, &["env:prod", "feature,chat"]),
        tagged("g3", "key_b", 1_000, &["feature,chat"]),
    ];
    let sink: &dyn LedgerSink = cp.cp.service().store();
    sink.write_batch(&batch).await.unwrap();
    // A replayed batch counts once.
    sink.write_batch(&batch).await.unwrap();
}

#[tokio::test]
async fn usage_filters_and_groups_by_tag_in_json_and_csv() {
    let cp = Cp::start().await;
    seed_tagged(&cp).await;
    let r = get(&cp, &format!("/api/v1/usage?{RANGE}&group_by=tag,key")).await;
    assert_eq!(r["summary"]["requests"], 4);
    let sums = |rows: &Value, field: &str| -> Vec<(String, u64, String)> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let name = g[field].as_str().unwrap().to_owned();
                (name, g["requests"].as_u64().unwrap(), g["cost_usd"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    // The untagged request is in no tag group; the two-tag one is in both.
    assert_eq!(
        sums(&r["by_tag"], "tag"),
        [("env:prod".to_owned(), 2, "0.00000011".to_owned()), ("feature,chat".to_owned(), 2, "0.0000011".to_owned())]
    );
    assert_eq!(sums(&r["by_key"], "key").len(), 2);

    let prod = get(&cp, &format!("/api/v1/usage?{RANGE}&scope=tag&scope_id=env:prod&group_by=tag,model")).await;
    assert_eq!(prod["summary"]["requests"], 2);
    assert_eq!(prod["summary"]["cost_usd"], "0.00000011");
    assert_eq!(prod["by_model"][0]["requests"], 2);
    assert_eq!(
        sums(&prod["by_tag"], "tag"),
        [("env:prod".to_owned(), 2, "0.00000011".to_owned()), ("feature,chat".to_owned(), 1, "0.0000001".to_owned())]
    );
    let none = get(&cp, &format!("/api/v1/usage?{RANGE}&scope=tag&scope_id=env:dev")).await;
    assert_eq!(none["summary"]["requests"], 0);
    let page = get(&cp, &format!("/api/v1/ledger?{RANGE}&scope=tag&scope_id=feature,chat")).await;
    let ids: Vec<&str> =
        page["entries"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["g2", "g3"]);
    assert_eq!(page["entries"][0]["tags"], json!(["env:prod", "feature,chat"]));

    let r = cp.admin(Method::GET, &format!("/api/v1/usage?{RANGE}&group_by=tag&format=csv"), None).await;
    assert_eq!(r.status, S::OK, "{}", r.text());
    let want: Vec<Vec<&str>> = vec![
        vec!["group", "value", "requests", "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd"],
        vec!["total", "", "4", "4", "8", "0", "0.000001111"],
        vec!["tag", "env:prod", "2", "2", "4", "0", "0.00000011"],
        vec!["tag", "feature,chat", "2", "2", "4", "0", "0.0000011"],
    ];
    assert_eq!(parse_csv(&r.text()), want);
}

#[tokio::test]
async fn ledger_entries_carry_their_exact_cost_usd_the_callers_id_and_priced_and_filter_by_either_id() {
    let cp = Cp::start().await;
    // A minute ago: "now" is the window's exclusive end.
    let at = Timestamp::now().plus_millis(-60_000);
    let e = |id: &str, nanos: i64| spend_entry(id, "key_a", "prj_1", "gpt-4o", at, (1, 1), nanos);
    let batch = [
        e("r1", 1).with_client_request_id("mine-1"),
        // Two entries under one caller id: both stored, both listed.
        e("r2", 999_999_999).with_client_request_id("mine-1").with_priced(false),
        e("r3", 1_000_000_000).with_client_request_id("other"),
        e("r4", 9_007_199_254_740_993),
        e("r5", -1_234_500),
    ];
    let sink: &dyn LedgerSink = cp.cp.service().store();
    sink.write_batch(&batch).await.unwrap();

    let all = get(&cp, "/api/v1/ledger?window=1h").await;
    let entries = all["entries"].as_array().unwrap();
    let row = |id: &str| entries.iter().find(|e| e["request_id"] == id).unwrap_or_else(|| panic!("{id}: {all}"));
    for (id, nanos, usd) in [
        ("r1", 1_i64, "0.000000001"),
        ("r2", 999_999_999, "0.999999999"),
        ("r3", 1_000_000_000, "1.00"),
        ("r4", 9_007_199_254_740_993, "9007199.254740993"),
        ("r5", -1_234_500, "-0.0012345"),
    ] {
        let r = row(id);
        assert_eq!((r["cost_nanos"].as_i64(), r["cost_usd"].as_str()), (Some(nanos), Some(usd)), "{r}");
        let parsed = tollgate_core::Money::parse_usd(r["cost_usd"].as_str().unwrap()).unwrap();
        assert_eq!(parsed.nanos(), nanos, "cost_usd reads back to cost_nanos exactly");
    }
    assert_eq!((row("r1")["client_request_id"].as_str(), row("r1")["priced"].as_bool()), (Some("mine-1"), Some(true)));
    assert_eq!((row("r2")["client_request_id"].as_str(), row("r2")["priced"].as_bool()), (Some("mine-1"), Some(false)));
    assert_eq!((&row("r4")["client_request_id"], row("r4")["priced"].as_bool()), (&Value::Null, Some(true)));

    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> =
            v["entries"].as_array().unwrap().iter().map(|e| e["request_id"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&get(&cp, "/api/v1/ledger?window=1h&client_request_id=mine-1").await), ["r1", "r2"]);
    assert_eq!(ids(&get(&cp, "/api/v1/ledger?window=1h&client_request_id=other").await), ["r3"]);
    assert!(ids(&get(&cp, "/api/v1/ledger?window=1h&client_request_id=nobody").await).is_empty());
    assert!(ids(&get(&cp, "/api/v1/ledger?window=1h&client_request_id=mine").await).is_empty(), "exact match");
    assert_eq!(ids(&get(&cp, "/api/v1/ledger?window=1h&request_id=r4").await), ["r4"]);
    // The caller's id is not ours: it never names an entry by request_id.
    assert!(ids(&get(&cp, "/api/v1/ledger?window=1h&request_id=mine-1").await).is_empty());
}
