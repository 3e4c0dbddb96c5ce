//! The embedded SQLite backend.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{Event, RunId, RunRecord, RunSpec, RunState, RunSummary, Transition};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};

use crate::common::{
    active_states, all_state_counts, clean_line, decode_event, encode_event, expiry, from_millis,
    lease_end, millis, new_token_id, opt_time, parse_run_id, parse_scopes, parse_state, sql_limit,
    terminal_states, to_i64, to_u64, FOLLOW_UP_REASON, LEASE_EXPIRED_REASON,
};
use crate::{QueueLimits, Result, RunFilter, Scope, Store, StoreError, TokenInfo};

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

fn row_to_run(row: &SqliteRow) -> Result<RunRecord> {
    let id = parse_run_id(&row.try_get::<String, _>("id")?)?;
    let spec: String = row.try_get("spec")?;
    let spec: RunSpec = serde_json::from_str(&spec)
        .map_err(|e| StoreError::Corrupt(format!("spec of {id}: {e}")))?;
    let state: String = row.try_get("state")?;
    let state = parse_state(&state)?;
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

/// Appends a transition to the run's history (inside the caller's transaction,
/// after its write).
async fn record_transition(
    conn: &mut sqlx::SqliteConnection,
    id: RunId,
    to: RunState,
    at: i64,
    reason: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_transitions (run_id, seq, state, at, reason) \
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_transitions WHERE run_id = ?1), ?2, ?3, ?4)",
    )
    .bind(id.to_string())
    .bind(to.as_str())
    .bind(at)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

fn row_to_token(row: &SqliteRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        scopes: parse_scopes(&row.try_get::<String, _>("scopes")?),
    })
}

fn ids(rows: &[SqliteRow]) -> Result<Vec<RunId>> {
    rows.iter()
        .map(|r| parse_run_id(&r.try_get::<String, _>("id")?))
        .collect()
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
            "SELECT * FROM runs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR repo = ?2) \
             AND (?3 IS NULL OR harness = ?3) AND (?6 IS NULL OR json_extract(spec, '$.group') = ?6) \
             AND (?7 IS NULL OR json_extract(spec, '$.requested_by') = ?7) \
             AND (?8 IS NULL OR json_extract(spec, '$.origin.message_ts') = ?8) \
             ORDER BY created_at DESC, id LIMIT ?4 OFFSET ?5",
        )
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.repo.as_deref())
        .bind(filter.harness.as_deref())
        .bind(i64::from(limit))
        .bind(i64::from(filter.offset))
        .bind(filter.group.as_deref())
        .bind(filter.requested_by.as_deref())
        .bind(filter.slack_message.as_deref())
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
        record_transition(&mut tx, id, to, now, reason).await?;
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
                    state: parse_state(&state)?,
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

    async fn set_origin(&self, id: RunId, origin: &errand_core::Origin) -> Result<()> {
        let json = serde_json::to_string(origin)
            .map_err(|e| StoreError::Corrupt(format!("origin does not serialize: {e}")))?;
        let done =
            sqlx::query("UPDATE runs SET spec = json_set(spec, '$.origin', json(?)) WHERE id = ?")
                .bind(json)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
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

    async fn claim_next(
        &self,
        worker: &str,
        lease: std::time::Duration,
        limits: &QueueLimits,
    ) -> Result<Option<RunRecord>> {
        // One statement: SQLite takes its write lock before reading, so the
        // choice, the limit counts and the claim are atomic together, and the
        // `claimed_by IS NULL` guard makes a double claim impossible anyway.
        let terminal = terminal_states();
        let sql = format!(
            "UPDATE runs SET claimed_by = ?1, lease_until = ?2 WHERE claimed_by IS NULL AND id = ( \
               SELECT r.id FROM runs r \
               WHERE r.state = 'queued' AND r.cancel_requested = 0 AND r.claimed_by IS NULL \
                 AND (?3 IS NULL OR (SELECT COUNT(*) FROM runs c \
                      WHERE c.claimed_by IS NOT NULL AND c.state NOT IN ({terminal})) < ?3) \
                 AND (?4 IS NULL OR r.repo IS NULL OR (SELECT COUNT(*) FROM runs c \
                      WHERE c.claimed_by IS NOT NULL AND c.state NOT IN ({terminal}) AND c.repo = r.repo) < ?4) \
               ORDER BY r.created_at, r.id LIMIT 1) \
             RETURNING *"
        );
        let row = sqlx::query(&sql)
            .bind(worker)
            .bind(lease_end(lease))
            .bind(limits.global.map(i64::from))
            .bind(limits.per_repo.map(i64::from))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_run).transpose()
    }

    async fn renew_lease(
        &self,
        id: RunId,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE runs SET lease_until = ? WHERE id = ? AND claimed_by = ? AND state NOT IN ({})",
            terminal_states()
        );
        let done = sqlx::query(&sql)
            .bind(lease_end(lease))
            .bind(id.to_string())
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_expired(&self, now: DateTime<Utc>) -> Result<Vec<(RunId, RunState)>> {
        let now = millis(now);
        let at = millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        // Writes only (RETURNING), so the transaction never upgrades a read lock.
        let requeued = sqlx::query(
            "UPDATE runs SET claimed_by = NULL, lease_until = NULL \
             WHERE state = 'queued' AND claimed_by IS NOT NULL AND lease_until < ? RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let sql = format!(
            "UPDATE runs SET state = 'failed', reason = ?, finished_at = COALESCE(finished_at, ?) \
             WHERE state IN ({}) AND claimed_by IS NOT NULL AND lease_until < ? RETURNING id",
            active_states()
        );
        let failed = sqlx::query(&sql)
            .bind(LEASE_EXPIRED_REASON)
            .bind(at)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        let failed = ids(&failed)?;
        for id in &failed {
            record_transition(
                &mut tx,
                *id,
                RunState::Failed,
                at,
                Some(LEASE_EXPIRED_REASON),
            )
            .await?;
        }
        tx.commit().await?;
        let mut out: Vec<(RunId, RunState)> = ids(&requeued)?
            .into_iter()
            .map(|id| (id, RunState::Queued))
            .collect();
        out.extend(failed.into_iter().map(|id| (id, RunState::Failed)));
        Ok(out)
    }

    async fn release_worker(&self, worker: &str, reason: &str) -> Result<Vec<RunId>> {
        let at = millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        let requeued = sqlx::query(
            "UPDATE runs SET claimed_by = NULL, lease_until = NULL \
             WHERE state = 'queued' AND claimed_by = ? RETURNING id",
        )
        .bind(worker)
        .fetch_all(&mut *tx)
        .await?;
        let sql = format!(
            "UPDATE runs SET state = 'failed', reason = ?, finished_at = COALESCE(finished_at, ?) \
             WHERE state IN ({}) AND claimed_by = ? RETURNING id",
            active_states()
        );
        let failed = sqlx::query(&sql)
            .bind(reason)
            .bind(at)
            .bind(worker)
            .fetch_all(&mut *tx)
            .await?;
        let failed = ids(&failed)?;
        for id in &failed {
            record_transition(&mut tx, *id, RunState::Failed, at, Some(reason)).await?;
        }
        tx.commit().await?;
        let mut out = ids(&requeued)?;
        out.extend(failed);
        Ok(out)
    }

    async fn claim_info(&self, id: RunId) -> Result<Option<(String, DateTime<Utc>)>> {
        let row = sqlx::query("SELECT claimed_by, lease_until FROM runs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let worker: Option<String> = row.try_get("claimed_by")?;
        let until: Option<i64> = row.try_get("lease_until")?;
        match (worker, until) {
            (Some(w), Some(u)) => Ok(Some((w, from_millis(u)?))),
            _ => Ok(None),
        }
    }

    async fn append_events(&self, run: RunId, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO run_events (run_id, seq, ts, kind, body) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(run.to_string())
            .bind(to_i64(e.seq, "event seq")?)
            .bind(millis(e.ts))
            .bind(e.kind.name())
            .bind(encode_event(e)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn events_after(&self, run: RunId, after_seq: u64, limit: u32) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, body FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(run.to_string())
        .bind(to_i64(after_seq, "event seq")?)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| decode_event(run, r.try_get("seq")?, &r.try_get::<String, _>("body")?))
            .collect()
    }

    async fn last_event_seq(&self, run: RunId) -> Result<u64> {
        let seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = ?")
                .bind(run.to_string())
                .fetch_one(&self.pool)
                .await?;
        to_u64(seq, "event seq")
    }

    async fn append_raw(&self, run: RunId, line_no: u64, line: &str) -> Result<()> {
        sqlx::query("INSERT INTO run_raw_lines (run_id, line_no, line) VALUES (?, ?, ?)")
            .bind(run.to_string())
            .bind(to_i64(line_no, "raw line number")?)
            .bind(clean_line(line).as_ref())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn raw_after(
        &self,
        run: RunId,
        after_line: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>> {
        let rows = sqlx::query(
            "SELECT line_no, line FROM run_raw_lines WHERE run_id = ? AND line_no > ? ORDER BY line_no LIMIT ?",
        )
        .bind(run.to_string())
        .bind(to_i64(after_line, "raw line number")?)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    to_u64(r.try_get("line_no")?, "raw line number")?,
                    r.try_get("line")?,
                ))
            })
            .collect()
    }

    async fn create_token(
        &self,
        name: &str,
        token_hash: &str,
        scopes: &[Scope],
    ) -> Result<TokenInfo> {
        let row = sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, created_at, scopes) VALUES (?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(new_token_id())
        .bind(name)
        .bind(token_hash)
        .bind(millis(Utc::now()))
        .bind(Scope::join(scopes))
        .fetch_one(&self.pool)
        .await?;
        row_to_token(&row)
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenInfo>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_token).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_token).collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                .bind(millis(Utc::now()))
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_share(&self, run: RunId, link_hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO share_links (link_hash, run_id, created_at) VALUES (?, ?, ?)")
            .bind(link_hash)
            .bind(run.to_string())
            .bind(millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn share_by_hash(&self, link_hash: &str) -> Result<Option<RunId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT run_id FROM share_links WHERE link_hash = ? AND revoked_at IS NULL",
        )
        .bind(link_hash)
        .fetch_optional(&self.pool)
        .await?;
        id.as_deref().map(parse_run_id).transpose()
    }

    async fn put_secret(&self, name: &str, sealed: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO secrets (name, sealed, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at")
            .bind(name)
            .bind(sealed)
            .bind(millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sealed_secrets(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT name, sealed FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("sealed")?)))
            .collect()
    }

    async fn secret_names(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query("SELECT name, updated_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, from_millis(r.try_get("updated_at")?)?)))
            .collect()
    }

    async fn delete_secret(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_shares(&self, run: RunId) -> Result<u32> {
        let done = sqlx::query(
            "UPDATE share_links SET revoked_at = ? WHERE run_id = ? AND revoked_at IS NULL",
        )
        .bind(millis(Utc::now()))
        .bind(run.to_string())
        .execute(&self.pool)
        .await?;
        Ok(u32::try_from(done.rows_affected()).unwrap_or(u32::MAX))
    }

    async fn requeue_for_follow_up(&self, id: RunId, message: &str) -> Result<RunRecord> {
        let now = millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        // Compare-and-set, write first (see `transition`).
        let updated = sqlx::query(
            "UPDATE runs SET state = 'queued', reason = NULL, finished_at = NULL, pending_message = ?, \
             claimed_by = NULL, lease_until = NULL, cancel_requested = 0, owner_pid = NULL \
             WHERE id = ? AND state IN ('succeeded', 'failed')",
        )
        .bind(message)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            tx.rollback().await?;
            let current = self.get_run(id).await?;
            return Err(StoreError::InvalidTransition(
                errand_core::InvalidTransition {
                    from: current.state,
                    to: RunState::Queued,
                },
            ));
        }
        record_transition(&mut tx, id, RunState::Queued, now, Some(FOLLOW_UP_REASON)).await?;
        tx.commit().await?;
        self.get_run(id).await
    }

    async fn pending_message(&self, id: RunId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT pending_message FROM runs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        Ok(row.try_get("pending_message")?)
    }

    async fn take_pending_message(&self, id: RunId) -> Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        // A no-op write first takes the write lock, so the read below cannot be
        // raced and the transaction never has to upgrade a read lock.
        let touched = sqlx::query("UPDATE runs SET pending_message = pending_message WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() != 1 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let message: Option<String> =
            sqlx::query_scalar("SELECT pending_message FROM runs WHERE id = ?")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if message.is_some() {
            sqlx::query("UPDATE runs SET pending_message = NULL WHERE id = ?")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(message)
    }

    async fn first_time(
        &self,
        key: &str,
        now: DateTime<Utc>,
        keep: std::time::Duration,
    ) -> Result<bool> {
        // Inserted, or an expired row taken over: one row changed. Already
        // there and still remembered: none.
        let done = sqlx::query(
            "INSERT INTO replay_keys (replay_key, seen_at, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (replay_key) DO UPDATE SET seen_at = excluded.seen_at, expires_at = excluded.expires_at \
             WHERE replay_keys.expires_at <= excluded.seen_at",
        )
        .bind(key)
        .bind(millis(now))
        .bind(expiry(now, keep))
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM replay_keys WHERE expires_at <= ?")
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_by_state(&self) -> Result<Vec<(RunState, u64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM runs GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        all_state_counts(rows)
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
