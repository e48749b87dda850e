//! The standalone binary, driven over real sockets.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_testkit::http_client::{TestResponse, get, post_json, send};
use tollgate_testkit::process::{Proc, eventually, free_port, temp_dir, wait_ready};
use tollgate_testkit::{CHAT_COMPLETION, CHAT_STREAM, FakeUpstream, Reply};

pub(crate) const ADMIN: &str = "test-admin-token-0123456789";
pub(crate) const UPSTREAM_KEY: &str = "sk-upstream-credential-abcdef123456";

/// Where a standalone gateway keeps its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// SQLite in the data dir (the default).
    Sqlite,
    /// A fresh database on `TOLLGATE_TEST_POSTGRES_URL`'s server (SQLite, said so, when
    /// the variable is unset: the README's test command runs on a bare machine).
    Postgres,
}

impl Backend {
    /// Both backends, for tests about what storage keeps.
    pub(crate) const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// The `TOLLGATE_DATABASE_URL` to start with, if not the default.
    async fn database_url(self) -> Option<String> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => match std::env::var("TOLLGATE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) {
                Some(admin) => Some(tollgate_store::Store::create_postgres_database(&admin).await.unwrap()),
                None => {
                    #[allow(clippy::print_stdout)] // says why this run is not on PostgreSQL
                    {
                        println!("TOLLGATE_TEST_POSTGRES_URL not set: the PostgreSQL case runs on SQLite");
                    }
                    None
                }
            },
        }
    }
}

pub(crate) struct Gateway {
    pub(crate) proc: Proc,
    pub(crate) data: String,
    pub(crate) admin: String,
    /// The gRPC listener, `http://127.0.0.1:<port>`.
    pub(crate) grpc: String,
    pub(crate) dir: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// A `--control-plane` replica (see [`gateways_on_redis`]): `admin` and `grpc` are
    /// its control plane's, and it is ready when its data plane's `/readyz` says so.
    replica: bool,
}

impl Gateway {
    pub(crate) async fn start() -> Gateway {
        Self::start_with_env(&[]).await
    }

    /// Starts the standalone binary with extra environment variables.
    pub(crate) async fn start_with_env(extra_env: &[(&str, &str)]) -> Gateway {
        Self::start_on(Backend::Sqlite, extra_env).await
    }

    /// Starts the standalone binary on `backend`, with extra environment variables.
    pub(crate) async fn start_on(backend: Backend, extra_env: &[(&str, &str)]) -> Gateway {
        Self::start_in(backend, &temp_dir("standalone"), extra_env).await
    }

    /// Starts the standalone binary on `backend` with `dir` as its data dir (which may
    /// hold what an earlier run left), with extra environment variables.
    pub(crate) async fn start_in(backend: Backend, dir: &std::path::Path, extra_env: &[(&str, &str)]) -> Gateway {
        let database_url = backend.database_url().await;
        let mut extra: Vec<(&str, &str)> = extra_env.to_vec();
        if let Some(url) = &database_url {
            extra.push(("TOLLGATE_DATABASE_URL", url.as_str()));
        }
        let extra_env = extra.as_slice();
        let dir = dir.to_path_buf();
        let (d, a, g) = (free_port(), free_port(), free_port());
        let (data, admin, grpc) = (format!("127.0.0.1:{d}"), format!("127.0.0.1:{a}"), format!("127.0.0.1:{g}"));
        let dir_s = dir.to_string_lossy().into_owned();
        let args: Vec<String> =
            ["--standalone", "--data-dir", &dir_s, "--listen", &data, "--admin-listen", &admin, "--grpc-listen", &grpc]
                .iter()
                .map(|a| (*a).to_owned())
                .collect();
        let env: Vec<(String, String)> =
            [&[("TOLLGATE_ADMIN_TOKEN", ADMIN), ("TOLLGATE_MAX_BODY_BYTES", "65536")], extra_env]
                .concat()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        let proc = Self::spawn(&args, &env);
        let mut gw = Gateway {
            proc,
            data: format!("http://{data}"),
            admin: format!("http://{admin}"),
            grpc: format!("http://{grpc}"),
            dir,
            args,
            env,
            replica: false,
        };
        gw.wait_ready().await;
        gw
    }

    /// Starts a data-plane replica fed by `control`'s embedded control plane over Watch
    /// (`--control-plane`), with its own data dir and the extra arguments and
    /// environment. Its `admin` and `grpc` are `control`'s, so management calls made on
    /// either reach the same control plane.
    pub(crate) async fn start_replica(control: &Gateway, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Gateway {
        let dir = temp_dir("replica");
        let data = format!("127.0.0.1:{}", free_port());
        let dir_s = dir.to_string_lossy().into_owned();
        let args: Vec<String> =
            [&["--control-plane", control.grpc.as_str(), "--data-dir", &dir_s, "--listen", &data][..], extra_args]
                .concat()
                .iter()
                .map(|a| (*a).to_owned())
                .collect();
        let env: Vec<(String, String)> =
            [&[("TOLLGATE_CONTROL_PLANE_TOKEN", ADMIN), ("TOLLGATE_MAX_BODY_BYTES", "65536")], extra_env]
                .concat()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        let proc = Self::spawn(&args, &env);
        let mut gw = Gateway {
            proc,
            data: format!("http://{data}"),
            admin: control.admin.clone(),
            grpc: control.grpc.clone(),
            dir,
            args,
            env,
            replica: true,
        };
        gw.wait_ready().await;
        gw
    }

    fn spawn(args: &[String], env: &[(String, String)]) -> Proc {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tollgate-gateway"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Proc::spawn(bin, &args, &env)
    }

    async fn wait_ready(&mut self) {
        if self.replica {
            wait_ready(&mut self.proc, &format!("{}/readyz", self.data), Duration::from_secs(30)).await;
            return;
        }
        wait_ready(&mut self.proc, &format!("{}/healthz", self.data), Duration::from_secs(30)).await;
        wait_ready(&mut self.proc, &format!("{}/healthz", self.admin), Duration::from_secs(30)).await;
    }

    /// Stops the gateway the way an operator does (SIGTERM) and starts it again on the
    /// same data dir and ports.
    pub(crate) async fn restart(&mut self) {
        assert!(self.proc.terminate(Duration::from_secs(15)), "the gateway stops cleanly on SIGTERM");
        self.proc = Self::spawn(&self.args, &self.env);
        self.wait_ready().await;
    }

    /// Kills the gateway with SIGKILL — no shutdown, no flush, no drop guard — and
    /// starts it again on the same data dir, database and ports.
    pub(crate) async fn crash_and_restart(&mut self) {
        self.proc.kill();
        self.proc = Self::spawn(&self.args, &self.env);
        self.wait_ready().await;
    }

    pub(crate) async fn admin_post(&self, path: &str, body: Value) -> TestResponse {
        post_json(&format!("{}{path}", self.admin), Some(ADMIN), &body).await
    }

    /// A management call with any method, as the bootstrap admin.
    pub(crate) async fn admin_send(&self, method: Method, path: &str, body: Value) -> TestResponse {
        let auth = format!("Bearer {ADMIN}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        send(method, &format!("{}{path}", self.admin), &headers, body.to_string()).await
    }

    pub(crate) async fn created(&self, path: &str, body: Value) -> Value {
        let r = self.admin_post(path, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.text());
        r.json()
    }

    pub(crate) async fn chat(&self, key: Option<&str>, body: &Value) -> TestResponse {
        post_json(&format!("{}/v1/chat/completions", self.data), key, body).await
    }

    /// Sets up provider → model → team → project and mints a key.
    pub(crate) async fn setup(&self, upstream: &FakeUpstream, key_extra: Value) -> (String, String) {
        self.created(
            "/api/v1/providers",
            json!({"name": "up", "kind": "openai-compatible", "base_url": upstream.base_url(), "api_key": UPSTREAM_KEY}),
        )
        .await;
        self.created(
            "/api/v1/models",
            json!({"name": "gpt-4o-mini", "deployments": [{"provider": "up", "model": "gpt-4o-mini-2024-07-18"}],
                   "pricing": {"input_per_mtok": "0.15", "output_per_mtok": 0.6}}),
        )
        .await;
        self.created("/api/v1/models", json!({"name": "other", "deployments": [{"provider": "up", "model": "x"}]}))
            .await;
        self.created("/api/v1/teams", json!({"name": "acme"})).await;
        self.created("/api/v1/projects", json!({"name": "web", "team": "acme"})).await;
        let mut body =
            json!({"project": "web", "name": "k1", "principal": "acme:user-42", "metadata": {"tier": "gold"}});
        if let (Some(b), Some(extra)) = (body.as_object_mut(), key_extra.as_object()) {
            b.extend(extra.clone());
        }
        let key = self.created("/api/v1/keys", body).await;
        let secret = key["key"].as_str().expect("secret returned at creation").to_owned();
        let id = key["id"].as_str().expect("id").to_owned();
        self.wait_key_live(&secret).await;
        (id, secret)
    }

    /// A provider `p-{name}` of `kind` at `upstream` (its root for native dialects) and a
    /// model `name` on it, served as `served`, at `pricing`.
    pub(crate) async fn provider_and_model(
        &self,
        name: &str,
        kind: &str,
        upstream: &FakeUpstream,
        served: &str,
        pricing: Value,
    ) {
        let base = if kind == "openai-compatible" { upstream.base_url() } else { upstream.root_url() };
        self.created(
            "/api/v1/providers",
            json!({"name": format!("p-{name}"), "kind": kind, "base_url": base, "api_key": UPSTREAM_KEY}),
        )
        .await;
        self.created(
            "/api/v1/models",
            json!({"name": name, "deployments": [{"provider": format!("p-{name}"), "model": served}], "pricing": pricing}),
        )
        .await;
    }

    pub(crate) async fn wait_key_live(&self, secret: &str) {
        let url = format!("{}/v1/models", self.data);
        eventually(Duration::from_secs(10), "key reaches the data plane", || {
            let url = url.clone();
            async move { get(&url, Some(secret)).await.status == StatusCode::OK }
        })
        .await;
    }
}

/// The Redis the shared-counter tests use: `TOLLGATE_TEST_REDIS_URL`, or `None` (and the
/// test says it is skipped) when unset.
pub(crate) fn test_redis_url() -> Option<String> {
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        #[allow(clippy::print_stdout)] // says why this test did nothing
        {
            println!("skipped: TOLLGATE_TEST_REDIS_URL is not set");
        }
    }
    url
}

/// A Redis key prefix no other test (in this run, a parallel one or an earlier one) uses,
/// so counters never leak between tests.
pub(crate) fn unique_redis_prefix() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("tg-test-{}-{n}-{nanos}:", std::process::id())
}

/// `n` (at least 1) gateways sharing budget and rate-limit counters in one Redis
/// (`TOLLGATE_TEST_REDIS_URL`) under a key prefix unique to this call: the first is a
/// standalone gateway on `backend` (its embedded control plane serves the management
/// REST API and feeds the others), the rest are `--control-plane` replicas of it. Every
/// one gets `extra_env`. A key, budget or model made through any of them reaches all
/// (wait for it on each: [`Gateway::wait_key_live`]). `None`, said so, when the variable
/// is unset.
pub(crate) async fn gateways_on_redis(n: usize, backend: Backend, extra_env: &[(&str, &str)]) -> Option<Vec<Gateway>> {
    let redis = test_redis_url()?;
    let prefix = unique_redis_prefix();
    let mut env: Vec<(&str, &str)> =
        vec![("TOLLGATE_REDIS_URL", redis.as_str()), ("TOLLGATE_REDIS_KEY_PREFIX", prefix.as_str())];
    env.extend_from_slice(extra_env);
    let first = Gateway::start_on(backend, &env).await;
    let replicas = (1..n.max(1)).map(|_| Gateway::start_replica(&first, &[], &env));
    let replicas = futures_util::future::join_all(replicas).await;
    Some(std::iter::once(first).chain(replicas).collect())
}

/// Two gateways on one Redis: [`gateways_on_redis`] with `n = 2`.
pub(crate) async fn two_gateways_on_redis(backend: Backend, extra_env: &[(&str, &str)]) -> Option<(Gateway, Gateway)> {
    let mut gws = gateways_on_redis(2, backend, extra_env).await?;
    let second = gws.pop()?;
    let first = gws.pop()?;
    Some((first, second))
}

pub(crate) fn hello() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "seed": 7})
}

pub(crate) fn error_code(r: &TestResponse) -> String {
    r.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_minted_key_reaches_the_upstream_with_the_provider_credential_only() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;

    let resp = gw.chat(Some(&secret), &hello()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.text(), CHAT_COMPLETION, "the caller gets the upstream's body byte for byte");
    assert!(resp.headers.contains_key("x-request-id"));

    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));
    for (name, value) in &req.headers {
        assert!(
            !value.as_bytes().windows(secret.len()).any(|w| w == secret.as_bytes()),
            "virtual key leaked in {name}"
        );
    }
    // Only the model was rewritten and the output cap the reservation was made for
    // inserted (the catalog's 16,384 for gpt-4o-mini, in the field an OpenAI-compatible
    // server knows); every other byte passed through untouched.
    let sent = req.json();
    assert_eq!(sent["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(sent["max_tokens"], 16_384);
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["tools"][0]["function"]["name"], "f");
    let original = hello().to_string().replace("\"gpt-4o-mini\"", "\"gpt-4o-mini-2024-07-18\"");
    let capped = format!("{{\"max_tokens\":16384,{}", &original[1..]);
    assert_eq!(String::from_utf8_lossy(&req.body), capped);
}

#[tokio::test]
async fn missing_malformed_and_unknown_keys_get_401_in_the_openai_shape() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    gw.setup(&upstream, json!({})).await;
    let unknown = tollgate_keys::mint_secret();
    for key in [None, Some("tg_not-a-key"), Some("sk-openai-style"), Some(unknown.expose())] {
        let r = gw.chat(key, &hello()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{key:?}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string());
    }
    assert!(upstream.requests().is_empty(), "no unauthenticated request may reach the upstream");
}

#[tokio::test]
async fn keys_work_from_anthropic_and_azure_headers() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    for header in ["x-api-key", "api-key"] {
        let r = send(
            Method::POST,
            &format!("{}/v1/chat/completions", gw.data),
            &[(header, &secret), ("content-type", "application/json")],
            hello().to_string(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{header}: {}", r.text());
    }
}

#[tokio::test]
async fn policy_refusals_revocation_and_rotation() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (id, secret) = gw.setup(&upstream, json!({"models_allowed": ["gpt-4o*"]})).await;

    let r = gw.chat(Some(&secret), &json!({"model": "other", "messages": []})).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::FORBIDDEN, "model_not_allowed".into()));
    let r = gw.chat(Some(&secret), &json!({"model": "gpt-4o-nonexistent", "messages": []})).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::NOT_FOUND, "model_not_found".into()));
    let models = get(&format!("{}/v1/models", gw.data), Some(&secret)).await.json();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["gpt-4o-mini"], "only models the key may use are listed");

    // Rotation with a grace period: both secrets work until the grace ends.
    let rotated = gw.admin_post(&format!("/api/v1/keys/{id}/rotate"), json!({"grace_period_s": 3600})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let new_secret = rotated.json()["key"].as_str().unwrap().to_owned();
    gw.wait_key_live(&new_secret).await;
    assert_eq!(gw.chat(Some(&secret), &hello()).await.status, StatusCode::OK, "old secret works during grace");
    assert_eq!(gw.chat(Some(&new_secret), &hello()).await.status, StatusCode::OK);

    // Rotation without grace: the previous secret dies at once.
    let rotated = gw.admin_post(&format!("/api/v1/keys/{id}/rotate"), json!({})).await.json();
    let newest = rotated["key"].as_str().unwrap().to_owned();
    gw.wait_key_live(&newest).await;
    assert_eq!(gw.chat(Some(&new_secret), &hello()).await.status, StatusCode::UNAUTHORIZED);

    let r = gw.admin_post(&format!("/api/v1/keys/{id}/revoke"), json!({})).await;
    assert_eq!(r.json()["status"], "revoked");
    eventually(Duration::from_secs(10), "revocation reaches the data plane", || async {
        let r = gw.chat(Some(&newest), &hello()).await;
        r.status == StatusCode::FORBIDDEN && error_code(&r) == "virtual_key_revoked"
    })
    .await;
}

#[tokio::test]
async fn expired_keys_are_refused() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let soon = tollgate_core::Timestamp::now().plus_millis(2000).to_rfc3339();
    let (_, secret) = gw.setup(&upstream, json!({"expires_at": soon})).await;
    assert_eq!(gw.chat(Some(&secret), &hello()).await.status, StatusCode::OK);
    eventually(Duration::from_secs(10), "key expires", || async {
        let r = gw.chat(Some(&secret), &hello()).await;
        r.status == StatusCode::FORBIDDEN && error_code(&r) == "virtual_key_expired"
    })
    .await;
}

#[tokio::test]
async fn bad_request_bodies_get_400_or_413_and_never_reach_the_upstream() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let url = format!("{}/v1/chat/completions", gw.data);
    let auth = format!("Bearer {secret}");
    let cases: Vec<(Vec<u8>, StatusCode)> = vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST),
        (b"[]".to_vec(), StatusCode::BAD_REQUEST),
        (br#"{"messages": []}"#.to_vec(), StatusCode::BAD_REQUEST),
        (br#"{"model": 42}"#.to_vec(), StatusCode::BAD_REQUEST),
        (br#"{"model": "gpt-4o-mini", "stream": "yes"}"#.to_vec(), StatusCode::BAD_REQUEST),
        (b"{\"model\": \"gpt-4o-mini\", \"x\": \"\xff\"}".to_vec(), StatusCode::BAD_REQUEST),
        (
            format!(r#"{{"model":"gpt-4o-mini","pad":"{}"}}"#, "a".repeat(70_000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, want) in cases {
        let r =
            send(Method::POST, &url, &[("authorization", &auth), ("content-type", "application/json")], body.clone())
                .await;
        assert_eq!(r.status, want, "{}: {}", String::from_utf8_lossy(&body[..body.len().min(60)]), r.text());
        assert!(r.json()["error"]["message"].is_string());
    }

    // A chunked body declares no length: it is refused once it passes the cap, without
    // waiting for the rest (the caller here would go on sending for a long time).
    let addr = gw.data.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("2000\r\n{}\r\n", "a".repeat(0x2000));
    for _ in 0..12 {
        // 96 KiB in all, over the 64 KiB cap; the gateway may answer and close first.
        if sock.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut got)).await.unwrap().unwrap_or(0);
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("request_too_large"), "{text}");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn upstream_failures_map_to_502_504_and_request_errors_pass_through() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;

    upstream.set_reply(Reply::raw(StatusCode::OK, "text/html", "<html>oops</html>"));
    let r = gw.chat(Some(&secret), &hello()).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::BAD_GATEWAY, "upstream_error".into()));
    assert!(!r.text().contains("oops"), "upstream garbage must not be echoed");

    upstream.set_reply(Reply::raw(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "boom"));
    assert_eq!(gw.chat(Some(&secret), &hello()).await.status, StatusCode::BAD_GATEWAY);

    let ctx =
        r#"{"error":{"message":"context too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    upstream.set_reply(Reply::json(StatusCode::BAD_REQUEST, ctx));
    let r = gw.chat(Some(&secret), &hello()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&r), "context_length_exceeded");

    // An upstream that is gone: connection refused.
    let gone = FakeUpstream::start().await;
    let base = gone.base_url();
    drop(gone);
    gw.created(
        "/api/v1/providers",
        json!({"name": "gone", "kind": "openai-compatible", "base_url": base, "api_key": "sk-x"}),
    )
    .await;
    gw.created("/api/v1/models", json!({"name": "dead", "deployments": [{"provider": "gone", "model": "m"}]})).await;
    eventually(Duration::from_secs(10), "dead model routes", || async {
        let r = gw.chat(Some(&secret), &json!({"model": "dead", "messages": []})).await;
        r.status == StatusCode::BAD_GATEWAY && error_code(&r) == "upstream_error"
    })
    .await;
}

#[tokio::test]
async fn secrets_never_reach_the_database_or_the_logs_in_clear() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start().await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    assert_eq!(gw.chat(Some(&secret), &hello()).await.status, StatusCode::OK);
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&gw.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("tollgate.db")) {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!stored.is_empty());
    for needle in [secret.as_str(), UPSTREAM_KEY, ADMIN] {
        assert!(!stored.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} stored in clear");
        assert!(!gw.proc.output().contains(needle), "{needle} in logs");
    }
    // The REST API shows only hints.
    let providers = get(&format!("{}/api/v1/providers", gw.admin), Some(ADMIN)).await.text();
    assert!(!providers.contains(UPSTREAM_KEY), "{providers}");
}

#[tokio::test]
async fn the_management_api_refuses_bad_tokens_and_bad_input_with_the_field_named() {
    let gw = Gateway::start().await;
    let url = format!("{}/api/v1/teams", gw.admin);
    assert_eq!(post_json(&url, None, &json!({"name": "a"})).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post_json(&url, Some("wrong-token-xxxxxxxxxxxx"), &json!({"name": "a"})).await.status,
        StatusCode::UNAUTHORIZED
    );

    let r = gw.admin_post("/api/v1/teams", json!({"name": "a", "colour": "red"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("colour"), "{}", r.text());

    gw.created("/api/v1/teams", json!({"name": "a"})).await;
    let r = gw.admin_post("/api/v1/teams", json!({"name": "a"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());

    let r = gw.admin_post("/api/v1/keys", json!({"project": "nope"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["field"], "project");

    let r = gw.admin_post("/api/v1/providers", json!({"name": "p", "kind": "carrier-pigeon"})).await;
    assert_eq!(r.json()["error"]["field"], "kind");

    let r = gw.admin_post("/api/v1/teams", json!({"name": "x".repeat(10_000)})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let huge = "x".repeat(2 * 1024 * 1024);
    let r = send(Method::POST, &url, &[("authorization", &format!("Bearer {ADMIN}"))], huge).await;
    assert!(r.status.is_client_error(), "{}", r.status);

    let r = get(&format!("{}/api/v1/keys/key_missing", gw.admin), Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_demo_serves_the_mock_model_with_usage() {
    let dir = temp_dir("demo");
    let (d, a, g) = (free_port(), free_port(), free_port());
    let data = format!("127.0.0.1:{d}");
    let dir_s = dir.to_string_lossy().into_owned();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tollgate-gateway"));
    let (admin, grpc) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{g}"));
    let args = [
        "--standalone",
        "--demo",
        "--data-dir",
        &dir_s,
        "--listen",
        &data,
        "--admin-listen",
        &admin,
        "--grpc-listen",
        &grpc,
    ];
    let mut proc = Proc::spawn(bin, &args, &[]);
    wait_ready(&mut proc, &format!("http://{data}/readyz"), Duration::from_secs(30)).await;
    let out = proc.output();
    let key = out.split_whitespace().find(|w| w.starts_with("tg_")).expect("demo key printed").to_owned();
    let token = std::fs::read_to_string(dir.join("admin_token")).unwrap();
    assert!(out.contains(token.trim()), "the generated admin token is shown once");
    let body = json!({"model": "demo", "messages": [{"role": "user", "content": "hello there"}]});
    let r = post_json(&format!("http://{data}/v1/chat/completions"), Some(&key), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("hello there"));
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // The demo key carries a budget and a rate limit, so the quickstart shows both.
    assert_eq!(r.headers["x-ratelimit-remaining-requests"], "599");
    assert!(r.headers.contains_key("x-tollgate-budget-remaining"), "{:?}", r.headers);
    let own = get(&format!("http://{data}/v1/key"), Some(&key)).await.json();
    assert_eq!(own["budgets"][0]["window"], "day", "{own}");
    drop(proc);

    // A second start reuses the data dir and prints a fresh working key.
    let mut proc = Proc::spawn(bin, &args, &[]);
    wait_ready(&mut proc, &format!("http://{data}/readyz"), Duration::from_secs(30)).await;
    let out = proc.output();
    let key2 = out.split_whitespace().find(|w| w.starts_with("tg_")).expect("demo key printed").to_owned();
    assert_ne!(key, key2);
    assert!(!out.contains("Generated admin token"));
    let r = post_json(&format!("http://{data}/v1/chat/completions"), Some(&key2), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn streams_always_carry_usage_upstream_and_only_show_it_when_asked() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start_with(Reply::chat_stream()).await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;

    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = gw.chat(Some(&secret), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers.get("content-type").unwrap(), "text/event-stream");
    let text = r.text();
    assert!(!text.contains("usage"), "the caller did not ask for usage: {text}");
    assert!(text.contains("Hel") && text.ends_with("data: [DONE]\n\n"), "{text}");
    let sent = upstream.requests()[0].json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "the gateway asks for usage to meter the stream");

    let mut asked = body.clone();
    asked["stream_options"] = json!({"include_usage": true});
    let r = gw.chat(Some(&secret), &asked).await;
    assert_eq!(r.text(), CHAT_STREAM, "with include_usage the stream passes through byte for byte");
}

#[tokio::test]
async fn every_provider_kind_gets_its_own_url_and_credential_header() {
    let gw = Gateway::start().await;
    let upstream = FakeUpstream::start_with(Reply::auto()).await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    let root = upstream.root_url();
    for (name, kind, extra) in [
        ("anth", "anthropic", json!({})),
        ("gem", "gemini", json!({})),
        ("az", "azure-openai", json!({"api_version": "2024-10-21"})),
    ] {
        gw.created(
            "/api/v1/providers",
            json!({"name": name, "kind": kind, "base_url": root, "api_key": UPSTREAM_KEY, "extra": extra}),
        )
        .await;
        gw.created(
            "/api/v1/models",
            json!({"name": format!("m-{name}"), "deployments": [{"provider": name, "model": "up-model"}]}),
        )
        .await;
    }
    let mut seen = Vec::new();
    for name in ["anth", "gem", "az"] {
        let body = json!({"model": format!("m-{name}"), "messages": [{"role": "user", "content": "hi"}]});
        eventually(Duration::from_secs(10), "the new model routes", || async {
            gw.chat(Some(&secret), &body).await.status == StatusCode::OK
        })
        .await;
        let last = upstream.requests().pop().unwrap();
        seen.push(last);
    }
    let (anth, gem, az) = (&seen[0], &seen[1], &seen[2]);
    assert_eq!(anth.path, "/v1/messages");
    assert_eq!(anth.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(anth.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(anth.json()["model"], "up-model");
    assert_eq!(anth.json()["max_tokens"], 4096, "Anthropic requires a cap; the default is sent");
    assert_eq!(gem.path, "/v1beta/models/up-model:generateContent");
    assert_eq!(gem.header("x-goog-api-key"), Some(UPSTREAM_KEY));
    assert!(gem.json().get("model").is_none(), "Gemini takes the model in the URL");
    assert_eq!(az.path, "/openai/deployments/up-model/chat/completions?api-version=2024-10-21");
    assert_eq!(az.header("api-key"), Some(UPSTREAM_KEY));
    for r in &seen {
        assert_eq!(
            r.header("authorization"),
            None,
            "{}: only the provider's own header carries the credential",
            r.path
        );
        assert!(!r.path.contains(UPSTREAM_KEY), "a credential never goes in a URL");
        assert!(!String::from_utf8_lossy(&r.body).contains(&secret), "the virtual key never leaves the gateway");
    }
}

#[tokio::test]
async fn a_tls_upstream_behind_a_private_ca_is_reached_over_http2() {
    let upstream = FakeUpstream::start_tls(Reply::chat_either()).await;
    let ca = temp_dir("upstream-ca").join("ca.pem");
    std::fs::write(&ca, tollgate_testkit::TEST_CA_PEM).unwrap();
    let ca = ca.to_string_lossy().into_owned();

    // Trusting the private CA: the upstream offers h2 by ALPN and the gateway takes it.
    let gw = Gateway::start_with_env(&[("TOLLGATE_UPSTREAM_CA_FILE", &ca)]).await;
    let (_, secret) = gw.setup(&upstream, json!({})).await;
    gw.created(
        "/api/v1/providers",
        json!({"name": "tls", "kind": "openai-compatible", "base_url": upstream.tls_base_url(), "api_key": UPSTREAM_KEY}),
    )
    .await;
    let pricing = json!({"input_per_mtok": "1", "output_per_mtok": "2"});
    gw.created(
        "/api/v1/models",
        json!({"name": "private", "deployments": [{"provider": "tls", "model": "m"}], "pricing": pricing}),
    )
    .await;
    let ask =
        |stream: bool| json!({"model": "private", "messages": [{"role": "user", "content": "hi"}], "stream": stream});
    eventually(Duration::from_secs(10), "the model routes", || async {
        gw.chat(Some(&secret), &ask(false)).await.status != StatusCode::NOT_FOUND
    })
    .await;
    let r = gw.chat(Some(&secret), &ask(false)).await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, CHAT_COMPLETION.to_owned()));
    let r = gw.chat(Some(&secret), &ask(true)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("[DONE]"), "{}", r.text());
    let seen = upstream.requests();
    assert!(seen.len() >= 2);
    assert!(
        seen.iter().all(|r| r.version == http::Version::HTTP_2),
        "{:?}",
        seen.iter().map(|r| r.version).collect::<Vec<_>>()
    );
    assert_eq!(seen.last().unwrap().header("authorization"), Some(format!("Bearer {UPSTREAM_KEY}").as_str()));

    // Without the CA the certificate is refused: a connect failure, never a request sent.
    let plain = Gateway::start().await;
    let (_, secret) = plain.setup(&upstream, json!({})).await;
    plain
        .created(
            "/api/v1/providers",
            json!({"name": "tls", "kind": "openai-compatible", "base_url": upstream.tls_base_url(), "api_key": UPSTREAM_KEY}),
        )
        .await;
    plain
        .created(
            "/api/v1/models",
            json!({"name": "private", "deployments": [{"provider": "tls", "model": "m"}], "pricing": pricing}),
        )
        .await;
    let before = upstream.request_count();
    let r = eventually_status(&plain, &secret, &ask(false)).await;
    assert_eq!((r.status, error_code(&r)), (StatusCode::BAD_GATEWAY, "upstream_error".to_owned()), "{}", r.text());
    assert_eq!(upstream.request_count(), before, "no request over an untrusted connection");
}

/// The first answer for `body` that is not a 404 (the model has reached the data plane).
async fn eventually_status(gw: &Gateway, secret: &str, body: &Value) -> TestResponse {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw.chat(Some(secret), body).await;
        if r.status != StatusCode::NOT_FOUND || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
