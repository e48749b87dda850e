//! Helpers for tests of crates above the store (feature `test-util`): raw SQL to tamper
//! with stored rows, and throwaway PostgreSQL databases.

use super::Store;
use crate::error::StoreError;
use sea_orm::{ConnectionTrait, Database};

impl Store {
    /// Runs SQL as is and returns the rows it touched: for tests that tamper with stored
    /// rows (the audit chain) behind the store's back.
    pub async fn execute_unchecked(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(self.db().execute_unprepared(sql).await?.rows_affected())
    }

    /// Creates an empty PostgreSQL database with a fresh name on the server of
    /// `admin_url` and returns its URL, for tests that need a database of their own.
    /// Drop it with [`Store::drop_postgres_database`].
    pub async fn create_postgres_database(admin_url: &str) -> Result<String, StoreError> {
        let name = format!("tollgate_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(admin_url).await?;
        admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await?;
        admin.close().await?;
        let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(b, q)| (b, Some(q)));
        let host_start = base.find("://").map_or(0, |i| i + 3);
        let base = base[host_start..].find('/').map_or(base, |i| &base[..host_start + i]);
        Ok(match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        })
    }

    /// Drops the database at `url` made by [`Store::create_postgres_database`].
    pub async fn drop_postgres_database(admin_url: &str, url: &str) -> Result<(), StoreError> {
        let name = url.split('?').next().and_then(|b| b.rsplit('/').next()).unwrap_or_default();
        let admin = Database::connect(admin_url).await?;
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
        admin.close().await?;
        Ok(())
    }
}
