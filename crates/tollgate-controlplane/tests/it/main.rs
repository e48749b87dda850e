//! Integration tests of the control plane as a library: a real [`ControlPlane`] on an
//! in-memory SQLite database, its REST API and gRPC services on loopback ports, driven
//! by plain HTTP and gRPC clients. The published snapshots and the audit trail are read
//! in-process. `tests/it_pg.rs` runs this same suite on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test helper is a failed test

pub(crate) mod audit;
pub(crate) mod budgets;
pub(crate) mod grpc;
pub(crate) mod key_rotation;
pub(crate) mod metrics;
pub(crate) mod models;
pub(crate) mod names;
pub(crate) mod openapi;
pub(crate) mod rotation;
pub(crate) mod routing;
pub(crate) mod tenancy;
pub(crate) mod tokens;
pub(crate) mod usage;
pub(crate) mod watch;

use http::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tollgate_controlplane::{Config, ControlPlane, SecretSources};
use tollgate_proto::v1;
use tollgate_testkit::http_client::{TestResponse, send};
use tollgate_testkit::process::temp_dir;

/// The database a test control plane runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// A fresh in-memory SQLite database per control plane.
    Sqlite,
    /// A fresh database per control plane on `TOLLGATE_TEST_POSTGRES_URL`'s server,
    /// dropped with it.
    #[allow(dead_code)] // constructed only by it_pg.rs
    Postgres,
}

/// This binary's backend; `tests/it_pg.rs` defines its own at its crate root, which
/// `crate::BACKEND` then names.
#[allow(dead_code)] // shadowed, hence unused, when this file is it_pg's module
pub(crate) const BACKEND: Backend = Backend::Sqlite;

/// The bootstrap admin token of every test control plane.
pub(crate) const ADMIN: &str = "budget-admin-token-0123456789";

/// A control plane serving REST and gRPC on free loopback ports until dropped.
pub(crate) struct Cp {
    pub(crate) cp: Arc<ControlPlane>,
    /// `http://127.0.0.1:PORT` of the management API.
    pub(crate) rest: String,
    /// `http://127.0.0.1:PORT` of the gRPC services.
    pub(crate) grpc: String,
    /// `(admin URL, database URL)` of the PostgreSQL database to drop with it.
    pg: Option<(String, String)>,
}

impl Drop for Cp {
    fn drop(&mut self) {
        let Some((admin, url)) = self.pg.take() else { return };
        // Drop is synchronous and runs inside the test's runtime: drop the database from
        // a thread of its own (WITH (FORCE) ends the servers' open connections).
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(tollgate_store::Store::drop_postgres_database(&admin, &url))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

impl Cp {
    pub(crate) async fn start() -> Cp {
        let (database_url, pg) = match crate::BACKEND {
            Backend::Sqlite => ("sqlite::memory:".to_owned(), None),
            Backend::Postgres => match std::env::var("TOLLGATE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) {
                Some(admin) => {
                    let url = tollgate_store::Store::create_postgres_database(&admin).await.unwrap();
                    (url.clone(), Some((admin, url)))
                }
                None => {
                    // The README's test command works on a machine without PostgreSQL;
                    // .ci/run sets the variable, so CI runs this suite for real.
                    #[allow(clippy::print_stdout)] // says why this run is not on PostgreSQL
                    {
                        println!("TOLLGATE_TEST_POSTGRES_URL not set: it_pg runs on SQLite");
                    }
                    ("sqlite::memory:".to_owned(), None)
                }
            },
        };
        let cfg = Config {
            database_url,
            data_dir: temp_dir("controlplane-it"),
            secrets: SecretSources { admin_token: Some(ADMIN.into()), ..SecretSources::default() },
        };
        let cp = Arc::new(ControlPlane::start(&cfg).await.unwrap());
        let rest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rest = format!("http://{}", rest_listener.local_addr().unwrap());
        let grpc = format!("http://{}", grpc_listener.local_addr().unwrap());
        let (a, b) = (cp.clone(), cp.clone());
        // The servers run until the test's runtime shuts down.
        tokio::spawn(async move { a.serve_rest(rest_listener, std::future::pending()).await });
        tokio::spawn(async move { b.serve_grpc(grpc_listener, std::future::pending()).await });
        Cp { cp, rest, grpc, pg }
    }

    /// One request with `token` as bearer (none when `None`) and an optional JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> TestResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        send(method, &format!("{}{path}", self.rest), &headers, body).await
    }

    /// A request as the admin.
    pub(crate) async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.call(method, path, Some(ADMIN), body.as_ref()).await
    }

    /// A request as the admin that must answer `status`; returns the JSON body (Null for
    /// an empty one).
    pub(crate) async fn expect(&self, method: Method, path: &str, body: Option<Value>, status: StatusCode) -> Value {
        let r = self.admin(method.clone(), path, body).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        if r.body.is_empty() { Value::Null } else { r.json() }
    }

    /// The configuration revision in the database.
    pub(crate) async fn revision(&self) -> i64 {
        self.cp.service().store().revision().await.unwrap()
    }

    /// Waits for the published snapshot of at least `revision`.
    pub(crate) async fn snapshot_at(&self, revision: i64) -> Arc<v1::Snapshot> {
        let mut rx = self.cp.snapshots();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.revision >= revision))
            .await
            .unwrap_or_else(|_| panic!("no snapshot of revision {revision} published"))
            .unwrap()
            .clone()
    }

    /// The published snapshot's budget `id`, once the database's current revision is out.
    pub(crate) async fn published_budget(&self, id: &str) -> Option<v1::Budget> {
        let rev = self.revision().await;
        self.snapshot_at(rev).await.budgets.iter().find(|b| b.id == id).cloned()
    }

    /// `(action, actor, target_id)` of every budget audit event, oldest first.
    pub(crate) async fn budget_audit(&self) -> Vec<(String, String, String)> {
        let mut events = self.cp.service().store().list_audit(Some("budget"), None, 1000, None).await.unwrap();
        events.reverse();
        events.into_iter().map(|e| (e.action, e.actor, e.target_id)).collect()
    }
}
