//! The in-process harness: [`World`] builds the wire snapshot a control plane would send
//! (providers, priced models, keys with their secrets, budgets); [`Gateway`] serves a
//! `DataPlane` loaded with it on `127.0.0.1:0` and records its ledger in a `MemorySink`.

use bytes::Bytes;
use http::Method;
use std::sync::Arc;
use std::time::Duration;
use tollgate_dataplane::{Config, DataPlane};
use tollgate_keys::{KeyHasher, Pepper, mint_secret};
use tollgate_metering::{LedgerConfig, LedgerEntry, LedgerWriter, MemorySink};
use tollgate_proto::v1;
use tollgate_testkit::http_client::{TestResponse, send, send_cut};
use tollgate_testkit::process::{eventually, temp_dir};

const PEPPER: [u8; 32] = [7; 32];

/// $1 per million input tokens, $2 per million output tokens.
pub(crate) const PRICE: v1::Pricing = v1::Pricing {
    input_per_mtok_nanos: 1_000_000_000,
    output_per_mtok_nanos: 2_000_000_000,
    cached_input_per_mtok_nanos: None,
    cache_write_per_mtok_nanos: None,
};

/// A configuration as the control plane publishes it, built up by the test.
pub(crate) struct World {
    pub(crate) wire: v1::Snapshot,
    hasher: KeyHasher,
}

impl World {
    pub(crate) fn new() -> World {
        World {
            wire: v1::Snapshot { revision: 1, key_pepper: PEPPER.to_vec(), ..Default::default() },
            hasher: KeyHasher::new(&Pepper::new(PEPPER)),
        }
    }

    /// A provider credential named `name` of `kind` at `base_url`.
    pub(crate) fn provider(&mut self, name: &str, kind: &str, base_url: &str) -> &mut v1::Provider {
        self.wire.providers.push(v1::Provider {
            id: format!("prov_{name}"),
            name: name.into(),
            kind: kind.into(),
            base_url: base_url.into(),
            api_key: format!("sk-{name}-not-a-secret"),
            ..Default::default()
        });
        self.wire.providers.last_mut().unwrap()
    }

    /// A model served by `deployments` (provider, upstream model), tried in that order,
    /// at [`PRICE`].
    pub(crate) fn model(&mut self, name: &str, deployments: &[(&str, &str)]) {
        let deployments = deployments
            .iter()
            .enumerate()
            .map(|(i, (provider, model))| v1::Deployment {
                provider: (*provider).into(),
                model: (*model).into(),
                priority: i as u32,
                ..Default::default()
            })
            .collect();
        self.wire.models.push(v1::Model {
            id: format!("mdl_{name}"),
            name: name.into(),
            deployments,
            pricing: Some(PRICE),
            max_output_tokens: Some(1_000),
            ..Default::default()
        });
    }

    /// An active key allowed every model (an empty allowlist); returns its secret. `edit`
    /// sets limits.
    pub(crate) fn key(&mut self, id: &str, edit: impl FnOnce(&mut v1::Key)) -> String {
        let secret = mint_secret();
        let mut key = v1::Key {
            id: id.into(),
            name: Some(format!("{id}-name")),
            org_id: "org_1".into(),
            team_id: "team_1".into(),
            project_id: "prj_1".into(),
            status: "active".into(),
            key_hash: self.hasher.hash(secret.expose()).0.to_vec(),
            hint: "tg_…test".into(),
            ..Default::default()
        };
        edit(&mut key);
        self.wire.keys.push(key);
        secret.expose().to_owned()
    }

    /// A monthly block budget of `limit_nanos` on a key.
    pub(crate) fn key_budget(&mut self, key_id: &str, limit_nanos: i64) {
        self.wire.budgets.push(v1::Budget {
            id: format!("bud_{key_id}"),
            scope: "virtual_key".into(),
            scope_id: key_id.into(),
            limit_nanos,
            window: "month".into(),
            on_breach: "block".into(),
            ..Default::default()
        });
    }
}

/// A data plane serving `World`'s snapshot on a loopback port.
pub(crate) struct Gateway {
    pub(crate) base: String,
    pub(crate) sink: Arc<MemorySink>,
    ledger: LedgerWriter,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Gateway {
    pub(crate) async fn start(world: &World) -> Gateway {
        let dp = DataPlane::new(Config::default()).unwrap();
        let problems = dp.apply(&world.wire);
        assert!(problems.is_empty(), "the test's snapshot loads whole: {problems:?}");
        let sink = Arc::new(MemorySink::new());
        let mut config = LedgerConfig::new(temp_dir("dataplane-it").join("ledger.spool"));
        config.max_delay = Duration::from_millis(5);
        let (ledger, _) = LedgerWriter::start(sink.clone(), config).unwrap();
        assert!(dp.set_ledger(ledger.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(tollgate_dataplane::serve(dp.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Gateway { base, sink, ledger, _stop: stop }
    }

    /// POSTs `body` to `path` with the key in `Authorization: Bearer`.
    pub(crate) async fn post(&self, path: &str, secret: &str, body: &serde_json::Value) -> TestResponse {
        let auth = format!("Bearer {secret}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        send(Method::POST, &format!("{}{path}", self.base), &headers, Bytes::from(body.to_string())).await
    }

    /// Like [`Gateway::post`] for a body that may break off: what arrived, and whether
    /// it ended cleanly.
    pub(crate) async fn post_cut(&self, path: &str, secret: &str, body: &serde_json::Value) -> (TestResponse, bool) {
        let auth = format!("Bearer {secret}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        send_cut(Method::POST, &format!("{}{path}", self.base), &headers, Bytes::from(body.to_string())).await
    }

    /// The ledger's entries once `n` have been recorded (a stream's is recorded after
    /// its body ends, off the response path).
    pub(crate) async fn ledger_entries(&self, n: usize) -> Vec<LedgerEntry> {
        eventually(Duration::from_secs(5), "the ledger entries are recorded", || async {
            self.ledger.flush().await.unwrap();
            self.sink.len() >= n
        })
        .await;
        let entries = self.sink.entries();
        assert_eq!(entries.len(), n, "{entries:#?}");
        entries
    }
}

/// An OpenAI chat request for `model`.
pub(crate) fn chat(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// The `error.code` of an error response.
pub(crate) fn error_code(r: &TestResponse) -> String {
    r.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
}
