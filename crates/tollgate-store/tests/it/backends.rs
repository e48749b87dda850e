//! The databases the suite runs against. Every test gets its own empty database, since
//! revision counts are global to a database.

use sea_orm::{ConnectionTrait, Database};
use std::path::PathBuf;
use tollgate_store::Store;

/// A store under test, plus what is needed to reconnect to it and clean it up.
pub(crate) struct TestDb {
    pub(crate) store: Store,
    /// The URL to reconnect to the same data, when the backend keeps it across connections.
    pub(crate) url: Option<String>,
    cleanup: Cleanup,
}

enum Cleanup {
    Nothing,
    Files(PathBuf),
    PostgresDatabase { admin_url: String, name: String },
}

fn unique_name() -> String {
    format!("tollgate_test_{}", uuid::Uuid::now_v7().simple())
}

pub(crate) async fn sqlite_file() -> TestDb {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name()));
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.unwrap();
    TestDb { store, url: Some(url), cleanup: Cleanup::Files(path) }
}

pub(crate) async fn sqlite_memory() -> TestDb {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    TestDb { store, url: None, cleanup: Cleanup::Nothing }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

pub(crate) async fn postgres() -> Option<TestDb> {
    let admin_url = std::env::var("TOLLGATE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())?;
    let name = unique_name();
    let admin = Database::connect(admin_url.as_str()).await.unwrap();
    // Prefer a linguistic collation (as production databases often have), under which
    // `key_B` sorts after `key_a`: the schema must still order ids bytewise. Needs
    // PostgreSQL 15+ built with ICU; otherwise the server default is used.
    let icu = format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    );
    if admin.execute_unprepared(&icu).await.is_err() {
        admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
    }
    admin.close().await.unwrap();
    let url = with_database(&admin_url, &name);
    let store = Store::connect(&url).await.unwrap();
    Some(TestDb { store, url: Some(url), cleanup: Cleanup::PostgresDatabase { admin_url, name } })
}

impl TestDb {
    /// Removes what the test created. Only reached when the test passed; a failed test
    /// leaves its database behind for inspection.
    pub(crate) async fn cleanup(self) {
        drop(self.store);
        match self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::Files(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::PostgresDatabase { admin_url, name } => {
                let admin = Database::connect(admin_url.as_str()).await.unwrap();
                admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
                admin.close().await.unwrap();
            }
        }
    }
}

#[test]
fn database_name_is_replaced_in_urls() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
}
