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
    live: std::sync::Arc<crate::live::Live>,
    writer: std::sync::Arc<crate::commit::Writer>,
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
        Ok(PgStore {
            pool,
            live: Default::default(),
            writer: Default::default(),
        })
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

impl PgStore {
    /// The hub's watcher: `LISTEN`s for what any node's `append_events`
    /// notifies and publishes the watched runs' new events (read from the
    /// store: a notification carries only the run and the range).
    async fn watch(live: std::sync::Weak<crate::live::Live>, pool: PgPool) {
        use crate::live::{parse_notice, resume_after, PG_CHANNEL};
        let listening = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
            l.listen(PG_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        let Some(hub) = live.upgrade() else { return };
        let mut listener = match listening {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("event watcher could not listen: {e}");
                hub.watcher_stopped();
                return;
            }
        };
        hub.set_primed();
        drop(hub);
        loop {
            let next =
                tokio::time::timeout(std::time::Duration::from_secs(1), listener.try_recv()).await;
            let Some(hub) = live.upgrade() else { return };
            if pool.is_closed() {
                hub.watcher_stopped();
                return;
            }
            let store = PgStore {
                pool: pool.clone(),
                live: hub,
                writer: Default::default(),
            };
            match next {
                Err(_quiet) => {}
                Ok(Ok(Some(n))) => {
                    let Some(notice) = parse_notice(n.payload()) else {
                        continue;
                    };
                    // This process's own writes: its writer publishes them
                    // after the commit, so reading them back is waste.
                    if notice.origin == Some(store.live.id.as_str()) {
                        continue;
                    }
                    let (run, first, last) = (notice.run, notice.first, notice.last);
                    if let Some(published) = store.live.published(run) {
                        if last > published {
                            let after = resume_after(published, first);
                            if let Err(e) = store.publish_stored(run, after).await {
                                tracing::warn!(run = %run, "event watcher: {e}");
                            }
                        }
                    }
                }
                // The connection dropped (sqlx reconnects on the next call):
                // notifications may be lost, so catch up every watched run
                // the hub already follows; subscribers that got nothing yet
                // read the store themselves.
                Ok(Ok(None)) => {
                    for (run, published) in store.live.watched() {
                        if published > 0 {
                            let _ = store.publish_stored(run, published).await;
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("event watcher: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }
}

crate::sql::impl_store!(PgStore, sqlx::Postgres, crate::sql::Dialect::Postgres);
crate::release::impl_release!(PgStore, sqlx::Postgres);
