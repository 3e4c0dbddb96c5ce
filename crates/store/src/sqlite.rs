//! The embedded SQLite backend.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use errand_core::{RunId, RunRecord, RunSpec, RunState, RunSummary, Transition};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};

use crate::{Result, RunFilter, Store, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Runs in one SQLite file, WAL mode, so `errand ls` in one terminal and a run in
/// another never block each other for long.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// A private in-memory database, for tests.
    pub async fn in_memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("bad timestamp {ms}")))
}

fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_millis).transpose()
}

fn row_to_run(row: &SqliteRow) -> Result<RunRecord> {
    let id: String = row.try_get("id")?;
    let id = RunId::from_str(&id).map_err(|e| StoreError::Corrupt(format!("run id {id}: {e}")))?;
    let spec: String = row.try_get("spec")?;
    let spec: RunSpec = serde_json::from_str(&spec)
        .map_err(|e| StoreError::Corrupt(format!("spec of {id}: {e}")))?;
    let state: String = row.try_get("state")?;
    let state = RunState::from_str(&state).map_err(StoreError::Corrupt)?;
    let summary: String = row.try_get("summary")?;
    let summary: RunSummary = serde_json::from_str(&summary)
        .map_err(|e| StoreError::Corrupt(format!("summary of {id}: {e}")))?;
    let owner: Option<i64> = row.try_get("owner_pid")?;
    Ok(RunRecord {
        id,
        spec,
        state,
        reason: row.try_get("reason")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        started_at: opt_time(row.try_get("started_at")?)?,
        finished_at: opt_time(row.try_get("finished_at")?)?,
        summary,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        owner_pid: owner.and_then(|p| u32::try_from(p).ok()),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, id: RunId, spec: &RunSpec) -> Result<RunRecord> {
        let now = Utc::now();
        let spec_json = serde_json::to_string(spec)
            .map_err(|e| StoreError::Corrupt(format!("spec does not serialize: {e}")))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO runs (id, spec, repo, harness, model, state, created_at) \
             VALUES (?, ?, ?, ?, ?, 'queued', ?)",
        )
        .bind(id.to_string())
        .bind(spec_json)
        .bind(spec.repo.as_ref().map(|r| r.location().to_string()))
        .bind(&spec.harness)
        .bind(&spec.model)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO run_transitions (run_id, seq, state, at) VALUES (?, 1, 'queued', ?)",
        )
        .bind(id.to_string())
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_run(id).await
    }

    async fn get_run(&self, id: RunId) -> Result<RunRecord> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        row_to_run(&row)
    }

    async fn find_run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        let needle = id_or_prefix.trim().to_ascii_lowercase().replace('-', "");
        if needle.is_empty() || !needle.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound(id_or_prefix.to_string()));
        }
        let rows =
            sqlx::query("SELECT * FROM runs WHERE id LIKE ? ORDER BY created_at DESC LIMIT 2")
                .bind(format!("{needle}%"))
                .fetch_all(&self.pool)
                .await?;
        match rows.as_slice() {
            [] => Err(StoreError::NotFound(id_or_prefix.to_string())),
            [one] => row_to_run(one),
            _ => Err(StoreError::Ambiguous(id_or_prefix.to_string())),
        }
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let limit = if filter.limit == 0 { 50 } else { filter.limit };
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE (?1 IS NULL OR state = ?1) ORDER BY created_at DESC, id LIMIT ?2",
        )
        .bind(filter.state.map(|s| s.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_run).collect()
    }

    async fn transition(&self, id: RunId, to: RunState, reason: Option<&str>) -> Result<RunRecord> {
        // The write comes first in the transaction: a read followed by a write
        // would have to upgrade its lock, which SQLite refuses at once (without
        // waiting) when another connection is writing. The state machine check
        // is part of the UPDATE, so it is atomic too.
        let allowed_from: Vec<&str> = RunState::ALL
            .into_iter()
            .filter(|s| s.can_move_to(to))
            .map(RunState::as_str)
            .collect();
        let now = millis(Utc::now());
        let started = (to == RunState::Preparing).then_some(now);
        let finished = to.is_terminal().then_some(now);
        let placeholders = vec!["?"; allowed_from.len()].join(", ");
        let sql = format!(
            "UPDATE runs SET state = ?, reason = COALESCE(?, reason), \
             started_at = COALESCE(started_at, ?), finished_at = COALESCE(?, finished_at) \
             WHERE id = ? AND state IN ({placeholders})"
        );
        let mut tx = self.pool.begin().await?;
        let mut update = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(reason)
            .bind(started)
            .bind(finished)
            .bind(id.to_string());
        for s in &allowed_from {
            update = update.bind(*s);
        }
        let updated = update.execute(&mut *tx).await?;
        if updated.rows_affected() != 1 {
            tx.rollback().await?;
            let current = self.get_run(id).await?;
            return Err(current.state.transition(to).err().map_or_else(
                || StoreError::Corrupt(format!("run {id} changed state concurrently")),
                StoreError::InvalidTransition,
            ));
        }
        sqlx::query(
            "INSERT INTO run_transitions (run_id, seq, state, at, reason) \
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_transitions WHERE run_id = ?1), ?2, ?3, ?4)",
        )
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_run(id).await
    }

    async fn transitions(&self, id: RunId) -> Result<Vec<Transition>> {
        let rows = sqlx::query(
            "SELECT state, at, reason FROM run_transitions WHERE run_id = ? ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(Transition {
                    state: RunState::from_str(&state).map_err(StoreError::Corrupt)?,
                    at: from_millis(r.try_get("at")?)?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    async fn update_summary(&self, id: RunId, summary: &RunSummary) -> Result<()> {
        let json = serde_json::to_string(summary)
            .map_err(|e| StoreError::Corrupt(format!("summary does not serialize: {e}")))?;
        sqlx::query("UPDATE runs SET summary = ? WHERE id = ?")
            .bind(json)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn request_cancel(&self, id: RunId) -> Result<RunRecord> {
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        self.get_run(id).await
    }

    async fn set_owner(&self, id: RunId, pid: Option<u32>) -> Result<()> {
        sqlx::query("UPDATE runs SET owner_pid = ? WHERE id = ?")
            .bind(pid.map(i64::from))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errand_core::RepoSource;

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
        let s = std::sync::Arc::new(SqliteStore::open(&dir.path().join("errand.db")).await.unwrap());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let id = RunId::new();
                s.create_run(id, &RunSpec::new("p", "claude-code")).await?;
                for st in [RunState::Preparing, RunState::Running, RunState::Finishing, RunState::Succeeded] {
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
