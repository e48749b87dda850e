//! `/api/v1/usage` and `/api/v1/ledger`: grouping, exact money, CSV that parses back,
//! parameter errors naming their field, authentication, and pagination.

use crate::{ADMIN, Cp};
use http::Method;
use http::StatusCode as S;
use serde_json::{Value, json};
use tollgate_core::{KeyId, Money, ProjectId, Timestamp};
use tollgate_metering::{LedgerEntry, LedgerSink, Usage, UsageSource};

/// 2026-11-23T00:00:00Z.
const DAY: i64 = 1_795_392_000_000;
const HOUR: i64 = 3_600_000;
const RANGE: &str = "from=2026-11-22T00:00:00Z&to=2026-11-24T00:00:00Z";

fn entry(id: &str, at_ms: i64, key: &str, principal: &str, model: &str, nanos: i64, io: (u64, u64)) -> LedgerEntry {
    LedgerEntry::new(id, KeyId::new(key), ProjectId::new("prj_1"), model)
        .with_at(Timestamp::from_unix_millis(at_ms))
        .with_principal(principal)
        .with_usage(
            &Usage {
                input_tokens: io.0,
                output_tokens: io.1,
                cached_input_tokens: 0,
                reasoning_tokens: 0,
                cache_write_tokens: 0,
            },
            UsageSource::Reported,
        )
        .with_cost(Money::from_nanos(nanos))
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
