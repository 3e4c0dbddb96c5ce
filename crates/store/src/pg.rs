//! The PostgreSQL backend, for several errand nodes sharing one database.
//!
//! Same tables and semantics as the SQLite backend (timestamps are unix
//! milliseconds). Claims use `FOR UPDATE SKIP LOCKED` so workers never wait on
//! each other nor claim the same run; when queue limits are given, claims also
//! take a transaction-scoped advisory lock so the counts they check cannot be
//! raced by another claimer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{Event, RunId, RunRecord, RunSpec, RunState, RunSummary, Transition};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use crate::common::{
    active_states, all_state_counts, clean_line, decode_event, encode_event, expiry, from_millis,
    lease_end, millis, new_token_id, opt_time, parse_run_id, parse_scopes, parse_state, sql_limit,
    state_list, terminal_states, to_i64, to_u64, FOLLOW_UP_REASON, LEASE_EXPIRED_REASON,
};
use crate::{QueueLimits, Result, RunFilter, Scope, Store, StoreError, TokenInfo};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Key of the advisory lock that serializes limited claims ("errand" in ASCII).
const CLAIM_LOCK: i64 = 0x6572_7261_6e64;

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

    /// Closes every connection (waiting for those in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn row_to_run(row: &PgRow) -> Result<RunRecord> {
    let id = parse_run_id(&row.try_get::<String, _>("id")?)?;
    let spec: String = row.try_get("spec")?;
    let spec: RunSpec = serde_json::from_str(&spec)
        .map_err(|e| StoreError::Corrupt(format!("spec of {id}: {e}")))?;
    let state = parse_state(&row.try_get::<String, _>("state")?)?;
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
        cancel_requested: row.try_get("cancel_requested")?,
        owner_pid: owner.and_then(|p| u32::try_from(p).ok()),
    })
}

fn row_to_token(row: &PgRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        scopes: parse_scopes(&row.try_get::<String, _>("scopes")?),
    })
}

fn ids(rows: &[PgRow]) -> Result<Vec<RunId>> {
    rows.iter()
        .map(|r| parse_run_id(&r.try_get::<String, _>("id")?))
        .collect()
}

/// Appends a transition to the run's history, inside the caller's transaction
/// (which holds the run's row lock through its UPDATE, so `seq` cannot be raced).
async fn record_transition(
    conn: &mut sqlx::PgConnection,
    id: RunId,
    to: RunState,
    at: i64,
    reason: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_transitions (run_id, seq, state, at, reason) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_transitions WHERE run_id = $1), $2, $3, $4)",
    )
    .bind(id.to_string())
    .bind(to.as_str())
    .bind(at)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn create_run(&self, id: RunId, spec: &RunSpec) -> Result<RunRecord> {
        let now = Utc::now();
        let spec_json = serde_json::to_string(spec)
            .map_err(|e| StoreError::Corrupt(format!("spec does not serialize: {e}")))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO runs (id, spec, repo, harness, model, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6)",
        )
        .bind(id.to_string())
        .bind(spec_json)
        .bind(spec.repo.as_ref().map(|r| r.location().to_string()))
        .bind(&spec.harness)
        .bind(&spec.model)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        record_transition(&mut tx, id, RunState::Queued, millis(now), None).await?;
        tx.commit().await?;
        self.get_run(id).await
    }

    async fn get_run(&self, id: RunId) -> Result<RunRecord> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1")
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
            sqlx::query("SELECT * FROM runs WHERE id LIKE $1 ORDER BY created_at DESC LIMIT 2")
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
            "SELECT * FROM runs WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR repo = $2) \
             AND ($3::text IS NULL OR harness = $3) AND ($6::text IS NULL OR (spec::jsonb ->> 'group') = $6) \
             AND ($7::text IS NULL OR (spec::jsonb ->> 'requested_by') = $7) \
             AND ($8::text IS NULL OR (spec::jsonb -> 'origin' ->> 'message_ts') = $8) \
             ORDER BY created_at DESC, id LIMIT $4 OFFSET $5",
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
        // Compare-and-set: the state machine check is part of the UPDATE, which
        // also locks the row until the transition is recorded.
        let allowed_from = state_list(|s| s.can_move_to(to));
        if allowed_from.is_empty() {
            let current = self.get_run(id).await?;
            return Err(current.state.transition(to).err().map_or_else(
                || StoreError::Corrupt(format!("run {id} changed state concurrently")),
                StoreError::InvalidTransition,
            ));
        }
        let now = millis(Utc::now());
        let started = (to == RunState::Preparing).then_some(now);
        let finished = to.is_terminal().then_some(now);
        let sql = format!(
            "UPDATE runs SET state = $1, reason = COALESCE($2, reason), \
             started_at = COALESCE(started_at, $3), finished_at = COALESCE($4, finished_at) \
             WHERE id = $5 AND state IN ({allowed_from})"
        );
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(reason)
            .bind(started)
            .bind(finished)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
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
            "SELECT state, at, reason FROM run_transitions WHERE run_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Transition {
                    state: parse_state(&r.try_get::<String, _>("state")?)?,
                    at: from_millis(r.try_get("at")?)?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    async fn update_summary(&self, id: RunId, summary: &RunSummary) -> Result<()> {
        let json = serde_json::to_string(summary)
            .map_err(|e| StoreError::Corrupt(format!("summary does not serialize: {e}")))?;
        sqlx::query("UPDATE runs SET summary = $1 WHERE id = $2")
            .bind(json)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_origin(&self, id: RunId, origin: &errand_core::Origin) -> Result<()> {
        let json = serde_json::to_string(origin)
            .map_err(|e| StoreError::Corrupt(format!("origin does not serialize: {e}")))?;
        let done = sqlx::query(
            "UPDATE runs SET spec = jsonb_set(spec::jsonb, '{origin}', $1::jsonb)::text WHERE id = $2",
        )
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
        sqlx::query("UPDATE runs SET cancel_requested = TRUE WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        self.get_run(id).await
    }

    async fn set_owner(&self, id: RunId, pid: Option<u32>) -> Result<()> {
        sqlx::query("UPDATE runs SET owner_pid = $1 WHERE id = $2")
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
        let terminal = terminal_states();
        let sql = format!(
            "SELECT r.id FROM runs r \
             WHERE r.state = 'queued' AND NOT r.cancel_requested AND r.claimed_by IS NULL \
               AND ($1::bigint IS NULL OR (SELECT COUNT(*) FROM runs c \
                    WHERE c.claimed_by IS NOT NULL AND c.state NOT IN ({terminal})) < $1) \
               AND ($2::bigint IS NULL OR r.repo IS NULL OR (SELECT COUNT(*) FROM runs c \
                    WHERE c.claimed_by IS NOT NULL AND c.state NOT IN ({terminal}) AND c.repo = r.repo) < $2) \
             ORDER BY r.created_at, r.id LIMIT 1 FOR UPDATE OF r SKIP LOCKED"
        );
        let mut tx = self.pool.begin().await?;
        if limits.global.is_some() || limits.per_repo.is_some() {
            // Claims that check limits take turns, so each one counts the
            // claims committed before it (READ COMMITTED: every statement
            // below sees them).
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CLAIM_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let picked: Option<String> = sqlx::query_scalar(&sql)
            .bind(limits.global.map(i64::from))
            .bind(limits.per_repo.map(i64::from))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(picked) = picked else {
            tx.rollback().await?;
            return Ok(None);
        };
        let row = sqlx::query(
            "UPDATE runs SET claimed_by = $1, lease_until = $2 \
             WHERE id = $3 AND claimed_by IS NULL AND state = 'queued' RETURNING *",
        )
        .bind(worker)
        .bind(lease_end(lease))
        .bind(&picked)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(row_to_run).transpose()
    }

    async fn renew_lease(
        &self,
        id: RunId,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE runs SET lease_until = $1 WHERE id = $2 AND claimed_by = $3 AND state NOT IN ({})",
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
        let requeued = sqlx::query(
            "UPDATE runs SET claimed_by = NULL, lease_until = NULL \
             WHERE state = 'queued' AND claimed_by IS NOT NULL AND lease_until < $1 RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let sql = format!(
            "UPDATE runs SET state = 'failed', reason = $1, finished_at = COALESCE(finished_at, $2) \
             WHERE state IN ({}) AND claimed_by IS NOT NULL AND lease_until < $3 RETURNING id",
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
             WHERE state = 'queued' AND claimed_by = $1 RETURNING id",
        )
        .bind(worker)
        .fetch_all(&mut *tx)
        .await?;
        let sql = format!(
            "UPDATE runs SET state = 'failed', reason = $1, finished_at = COALESCE(finished_at, $2) \
             WHERE state IN ({}) AND claimed_by = $3 RETURNING id",
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
        let row = sqlx::query("SELECT claimed_by, lease_until FROM runs WHERE id = $1")
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
                "INSERT INTO run_events (run_id, seq, ts, kind, body) VALUES ($1, $2, $3, $4, $5)",
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
            "SELECT seq, body FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
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
        let seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0)::bigint FROM run_events WHERE run_id = $1",
        )
        .bind(run.to_string())
        .fetch_one(&self.pool)
        .await?;
        to_u64(seq, "event seq")
    }

    async fn append_raw(&self, run: RunId, line_no: u64, line: &str) -> Result<()> {
        sqlx::query("INSERT INTO run_raw_lines (run_id, line_no, line) VALUES ($1, $2, $3)")
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
            "SELECT line_no, line FROM run_raw_lines WHERE run_id = $1 AND line_no > $2 \
             ORDER BY line_no LIMIT $3",
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
            "INSERT INTO api_tokens (id, name, token_hash, created_at, scopes) VALUES ($1, $2, $3, $4, $5) RETURNING *",
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
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1")
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
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .bind(millis(Utc::now()))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_share(&self, run: RunId, link_hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO share_links (link_hash, run_id, created_at) VALUES ($1, $2, $3)")
            .bind(link_hash)
            .bind(run.to_string())
            .bind(millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn share_by_hash(&self, link_hash: &str) -> Result<Option<RunId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT run_id FROM share_links WHERE link_hash = $1 AND revoked_at IS NULL",
        )
        .bind(link_hash)
        .fetch_optional(&self.pool)
        .await?;
        id.as_deref().map(parse_run_id).transpose()
    }

    async fn put_secret(&self, name: &str, sealed: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO secrets (name, sealed, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at")
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
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_shares(&self, run: RunId) -> Result<u32> {
        let done = sqlx::query(
            "UPDATE share_links SET revoked_at = $1 WHERE run_id = $2 AND revoked_at IS NULL",
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
        let updated = sqlx::query(
            "UPDATE runs SET state = 'queued', reason = NULL, finished_at = NULL, pending_message = $1, \
             claimed_by = NULL, lease_until = NULL, cancel_requested = FALSE, owner_pid = NULL \
             WHERE id = $2 AND state IN ('succeeded', 'failed')",
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
        let row = sqlx::query("SELECT pending_message FROM runs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        Ok(row.try_get("pending_message")?)
    }

    async fn take_pending_message(&self, id: RunId) -> Result<Option<String>> {
        // The subquery locks the row and yields the value from before the UPDATE.
        let row = sqlx::query(
            "UPDATE runs r SET pending_message = NULL \
             FROM (SELECT id, pending_message FROM runs WHERE id = $1 FOR UPDATE) old \
             WHERE r.id = old.id RETURNING old.pending_message",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        Ok(row.try_get("pending_message")?)
    }

    async fn first_time(
        &self,
        key: &str,
        now: DateTime<Utc>,
        keep: std::time::Duration,
    ) -> Result<bool> {
        // Inserted, or an expired row taken over: one row changed. Already
        // there and still remembered: none (a concurrent insert of the same
        // key waits for the first to commit, then changes nothing).
        let done = sqlx::query(
            "INSERT INTO replay_keys (replay_key, seen_at, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (replay_key) DO UPDATE SET seen_at = excluded.seen_at, expires_at = excluded.expires_at \
             WHERE replay_keys.expires_at <= excluded.seen_at",
        )
        .bind(key)
        .bind(millis(now))
        .bind(expiry(now, keep))
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM replay_keys WHERE expires_at <= $1")
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
