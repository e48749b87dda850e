//! A synthetic control-plane snapshot as the control plane sends it over Watch: one
//! OpenAI-compatible provider, one priced model, and `n` keys spread over 100 teams and
//! 1,000 projects, each key with a name, a principal, a two-pattern allowlist, an rpm
//! limit, one metadata pair and its own monthly budget (plus one budget per project) —
//! the shape of a SaaS platform that gives every customer a key with a spend cap.

use tollgate_proto::v1;

/// The HMAC pepper of the synthetic snapshot.
pub(crate) const PEPPER: [u8; 32] = [42; 32];

/// 32 well-spread bytes from `i` (splitmix64), standing in for HMAC outputs.
fn fake_hash(i: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    for _ in 0..4 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Ids the length of the control plane's (`prefix_` + 32 hex digits).
fn id(prefix: &str, i: usize) -> String {
    format!("{prefix}_{i:032x}")
}

/// The snapshot with `n` keys, at revision `n + 1`.
pub(crate) fn snapshot(n: usize) -> v1::Snapshot {
    let provider = v1::Provider {
        id: id("prov", 1),
        name: "upstream".into(),
        kind: "openai-compatible".into(),
        base_url: "http://127.0.0.1:9/v1".into(),
        api_key: "sk-bench-not-a-secret".into(),
        ..Default::default()
    };
    let model = v1::Model {
        id: id("mdl", 1),
        name: "bench".into(),
        deployments: vec![v1::Deployment { provider: "upstream".into(), model: "bench".into(), ..Default::default() }],
        pricing: Some(v1::Pricing {
            input_per_mtok_nanos: 1_000_000_000,
            output_per_mtok_nanos: 2_000_000_000,
            cached_input_per_mtok_nanos: None,
            cache_write_per_mtok_nanos: None,
        }),
        max_output_tokens: Some(4_096),
        ..Default::default()
    };
    let mut keys = Vec::with_capacity(n);
    let mut budgets = Vec::with_capacity(n + 1_000);
    for i in 0..n {
        let (key, budget) = customer(i);
        keys.push(key);
        budgets.push(budget);
    }
    for p in 0..1_000.min(n) {
        budgets.push(budget(id("budp", p), "project", id("prj", p), 10_000));
    }
    v1::Snapshot {
        revision: n as i64 + 1,
        key_pepper: PEPPER.to_vec(),
        providers: vec![provider],
        models: vec![model],
        keys,
        budgets,
        ..Default::default()
    }
}

/// Customer `i`: its key and the key's own monthly budget, as a signup mints them.
pub(crate) fn customer(i: usize) -> (v1::Key, v1::Budget) {
    let key_id = id("key", i);
    let key = v1::Key {
        id: key_id.clone(),
        name: Some(format!("customer-{i}")),
        org_id: id("org", 1),
        team_id: id("team", i % 100),
        project_id: id("prj", i % 1_000),
        principal: Some(format!("customer:{i}")),
        status: "active".into(),
        models_allowed: vec!["bench".into(), "gpt-4o*".into()],
        rpm: Some(600),
        metadata: [("plan".to_owned(), "pro".to_owned())].into_iter().collect(),
        key_hash: fake_hash(i as u64),
        hint: format!("tg_…{:04}", i % 10_000),
        ..Default::default()
    };
    (key, budget(id("bud", i), "virtual_key", key_id, 100))
}

fn budget(id: String, scope: &str, scope_id: String, usd: i64) -> v1::Budget {
    v1::Budget {
        id,
        scope: scope.into(),
        scope_id,
        limit_nanos: usd * 1_000_000_000,
        window: "month".into(),
        on_breach: "block".into(),
        alert_thresholds_permille: vec![800],
        ..Default::default()
    }
}
