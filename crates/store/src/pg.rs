//! The PostgreSQL backend, for several errand nodes sharing one database.
//!
//! Same tables, semantics and SQL as the SQLite backend (`sql.rs`; timestamps
//! are unix milliseconds). Claims use `FOR UPDATE SKIP LOCKED` so workers never
//! wait on each other nor claim the same run; when queue limits are given,
//! claims also take a transaction-scoped advisory lock so the counts they check
//! cannot be raced by another claimer.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::Result;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Runs in a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and
    /// applies migrations (under a lock, so nodes starting together are safe).
    pub async fn connect(url: &str) -> Result<Self> {
        let opts: PgConnectOptions = url.parse()?;
        Self::connect_with(opts).await
    }

    /// [`PgStore::connect`] with options built by the caller.
    pub async fn connect_with(opts: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgStore { pool })
    }

    /// The connections, for copies (`moving.rs`).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection (waiting for those in use to be returned);
    /// calls made afterwards fail with [`crate::StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

crate::sql::impl_store!(PgStore, sqlx::Postgres, crate::sql::Dialect::Postgres);
crate::release::impl_release!(PgStore, sqlx::Postgres);
