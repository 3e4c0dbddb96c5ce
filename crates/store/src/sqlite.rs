//! The embedded SQLite backend: its connection and migrations; the SQL is
//! shared with PostgreSQL (`sql.rs`).

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;

use crate::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Runs in one SQLite file, WAL mode, so `errand ls` in one terminal and a run in
/// another never block each other for long.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    live: std::sync::Arc<crate::live::Live>,
    writer: std::sync::Arc<crate::commit::Writer>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &MIGRATOR).await
    }

    async fn open_with(path: &Path, migrator: &sqlx::migrate::Migrator) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        // sqlx takes no lock while creating or migrating SQLite, so two
        // processes opening a new database at once (an `errand run` and an
        // `errand ls`) would race: switching a fresh file to WAL needs an
        // exclusive lock that SQLite refuses at once, without waiting out the
        // busy timeout, and both would try to create the tables. An OS file
        // lock held from the first connection to the end of the migrations
        // serialises them.
        let lock_path = path.with_extension("migrate.lock");
        let lock = std::fs::File::create(&lock_path).map_err(|source| StoreError::Io {
            path: lock_path.display().to_string(),
            source,
        })?;
        let locked = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| StoreError::Corrupt(format!("migration lock task failed: {e}")))?
            .map_err(|source| StoreError::Io {
                path: lock_path.display().to_string(),
                source,
            })?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        let migrated = migrator.run(&pool).await;
        drop(locked);
        migrated?;
        Ok(SqliteStore {
            pool,
            live: Default::default(),
            writer: Default::default(),
        })
    }

    /// Closes every connection (waiting for those in use to be returned);
    /// calls made afterwards fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The connections, for backups and copies (`moving.rs`).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A private in-memory database, for tests.
    pub async fn in_memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore {
            pool,
            live: Default::default(),
            writer: Default::default(),
        })
    }
}

/// How often the watcher looks for rows other processes stored while anyone
/// watches (one query per process, whatever the number of watchers), and how
/// often it notes where the table ends while nobody does.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(10);
const IDLE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl SqliteStore {
    /// The hub's watcher: SQLite has no notifications, so one task per
    /// process follows the events table's rowid (new rows only, an index
    /// range) and publishes the watched runs' new events, whoever stored them.
    async fn watch(live: std::sync::Weak<crate::live::Live>, pool: SqlitePool) {
        use std::collections::HashMap;
        let start: std::result::Result<i64, sqlx::Error> =
            sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM run_events")
                .fetch_one(&pool)
                .await;
        let Some(hub) = live.upgrade() else { return };
        let mut last = match start {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("event watcher could not start: {e}");
                hub.watcher_stopped();
                return;
            }
        };
        hub.set_primed();
        drop(hub);
        let mut idle_since = std::time::Instant::now();
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let Some(hub) = live.upgrade() else { return };
            let watched = hub.watched();
            if watched.is_empty() {
                if idle_since.elapsed() >= IDLE_EVERY {
                    idle_since = std::time::Instant::now();
                    if let Ok(v) = sqlx::query_scalar::<_, i64>(
                        "SELECT COALESCE(MAX(rowid), 0) FROM run_events",
                    )
                    .fetch_one(&pool)
                    .await
                    {
                        last = last.max(v);
                    }
                }
                continue;
            }
            let rows: Vec<(i64, String, i64)> = match sqlx::query_as(
                "SELECT rowid, run_id, seq FROM run_events WHERE rowid > ?1 ORDER BY rowid LIMIT 5000",
            )
            .bind(last)
            .fetch_all(&pool)
            .await
            {
                Ok(rows) => rows,
                Err(sqlx::Error::PoolClosed) => {
                    hub.watcher_stopped();
                    return;
                }
                Err(e) => {
                    tracing::warn!("event watcher: {e}");
                    continue;
                }
            };
            let Some((end, _, _)) = rows.last() else {
                continue;
            };
            last = *end;
            let mut seen: HashMap<&str, (u64, u64)> = HashMap::new();
            for (_, run, seq) in &rows {
                let seq = u64::try_from(*seq).unwrap_or(0);
                let e = seen.entry(run.as_str()).or_insert((seq, seq));
                e.0 = e.0.min(seq);
                e.1 = e.1.max(seq);
            }
            let store = SqliteStore {
                pool: pool.clone(),
                live: hub,
                writer: Default::default(),
            };
            for (run, published) in watched {
                if let Some(&(first, newest)) = seen.get(run.to_string().as_str()) {
                    if newest > published {
                        let after = crate::live::resume_after(published, first);
                        if let Err(e) = store.publish_stored(run, after).await {
                            tracing::warn!(run = %run, "event watcher: {e}");
                        }
                    }
                }
            }
        }
    }
}

crate::sql::impl_store!(SqliteStore, sqlx::Sqlite, crate::sql::Dialect::Sqlite);
crate::release::impl_release!(SqliteStore, sqlx::Sqlite);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RunFilter, Store};
    use errand_core::{RepoSource, RunId, RunSpec, RunState, RunSummary};

    async fn store() -> SqliteStore {
        SqliteStore::in_memory().await.expect("in-memory store")
    }

    #[tokio::test]
    async fn create_and_read_back() {
        let s = store().await;
        let id = RunId::new();
        let mut spec = RunSpec::new("fix it", "claude-code");
        spec.repo = Some(RepoSource::Local("/tmp/x".into()));
        let rec = s.create_run(id, &spec).await.unwrap();
        assert_eq!(rec.state, RunState::Queued);
        assert_eq!(rec.spec, spec);
        assert_eq!(s.find_run(&id.short()).await.unwrap().id, id);
        assert!(matches!(
            s.find_run("zz").await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn transitions_follow_the_state_machine_and_are_recorded() {
        let s = store().await;
        let id = RunId::new();
        s.create_run(id, &RunSpec::new("p", "claude-code"))
            .await
            .unwrap();
        s.transition(id, RunState::Preparing, None).await.unwrap();
        let err = s
            .transition(id, RunState::Succeeded, None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidTransition(_)), "{err}");
        let rec = s
            .transition(id, RunState::Failed, Some("clone failed"))
            .await
            .unwrap();
        assert_eq!(rec.state, RunState::Failed);
        assert_eq!(rec.reason.as_deref(), Some("clone failed"));
        assert!(rec.started_at.is_some() && rec.finished_at.is_some());
        let ts = s.transitions(id).await.unwrap();
        let states: Vec<_> = ts.iter().map(|t| t.state).collect();
        assert_eq!(
            states,
            [RunState::Queued, RunState::Preparing, RunState::Failed]
        );
        assert_eq!(ts[2].reason.as_deref(), Some("clone failed"));
        assert!(s.transition(id, RunState::Cancelled, None).await.is_err());
    }

    #[tokio::test]
    async fn list_filters_and_cancel_flag() {
        let s = store().await;
        let a = RunId::new();
        let b = RunId::new();
        s.create_run(a, &RunSpec::new("a", "claude-code"))
            .await
            .unwrap();
        s.create_run(b, &RunSpec::new("b", "claude-code"))
            .await
            .unwrap();
        s.transition(b, RunState::Cancelled, Some("by user"))
            .await
            .unwrap();
        let all = s.list_runs(&RunFilter::default()).await.unwrap();
        assert_eq!(all.len(), 2);
        let queued = s
            .list_runs(&RunFilter {
                state: Some(RunState::Queued),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(queued.iter().map(|r| r.id).collect::<Vec<_>>(), [a]);
        assert!(s.request_cancel(a).await.unwrap().cancel_requested);
        let sum = RunSummary {
            cost_usd: Some(0.25),
            ..Default::default()
        };
        s.update_summary(a, &sum).await.unwrap();
        assert_eq!(s.get_run(a).await.unwrap().summary.cost_usd, Some(0.25));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_runs_move_through_their_states_without_lock_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(
            SqliteStore::open(&dir.path().join("errand.db"))
                .await
                .unwrap(),
        );
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let id = RunId::new();
                s.create_run(id, &RunSpec::new("p", "claude-code")).await?;
                for st in [
                    RunState::Preparing,
                    RunState::Running,
                    RunState::Finishing,
                    RunState::Succeeded,
                ] {
                    s.transition(id, st, None).await?;
                    s.set_owner(id, Some(1)).await?;
                    s.update_summary(id, &RunSummary::default()).await?;
                }
                Ok::<_, StoreError>(id)
            }));
        }
        for t in tasks {
            let id = t.await.unwrap().unwrap();
            assert_eq!(s.get_run(id).await.unwrap().state, RunState::Succeeded);
            assert_eq!(s.transitions(id).await.unwrap().len(), 5);
        }
    }

    #[tokio::test]
    async fn a_database_from_the_first_release_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first");
        std::fs::create_dir(&first).unwrap();
        std::fs::write(
            first.join("20261126000001_runs.sql"),
            include_str!("../migrations/sqlite/20261126000001_runs.sql"),
        )
        .unwrap();
        let path = dir.path().join("errand.db");
        let id = RunId::new();
        {
            let first_release = sqlx::migrate::Migrator::new(first.as_path()).await.unwrap();
            let old = SqliteStore::open_with(&path, &first_release).await.unwrap();
            sqlx::query(
                "INSERT INTO runs (id, spec, harness, state, created_at) VALUES (?, ?, 'claude-code', 'succeeded', 0)",
            )
            .bind(id.to_string())
            .bind(serde_json::to_string(&RunSpec::new("old", "claude-code")).unwrap())
            .execute(&old.pool)
            .await
            .unwrap();
        }
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(s.get_run(id).await.unwrap().spec.prompt, "old");
        assert_eq!(s.claim_info(id).await.unwrap(), None);
        s.requeue_for_follow_up(id, "more").await.unwrap();
        assert_eq!(
            s.take_pending_message(id).await.unwrap().as_deref(),
            Some("more")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_processes_may_open_a_new_database_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("errand.db");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let path = path.clone();
            tasks.push(tokio::spawn(async move {
                SqliteStore::open(&path).await.map(|_| ())
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn file_database_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("errand.db");
        let id = RunId::new();
        {
            let s = SqliteStore::open(&path).await.unwrap();
            s.create_run(id, &RunSpec::new("p", "claude-code"))
                .await
                .unwrap();
        }
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(s.get_run(id).await.unwrap().spec.prompt, "p");
    }
}
