//! The SQL of [`crate::Store`], written once for both backends.
//!
//! Statements are written with PostgreSQL's `$1`-style parameters (a number
//! may be used twice) and portable SQL: `RETURNING`, `ON CONFLICT … DO UPDATE`,
//! `TRUE`/`FALSE`, `CAST(… AS BIGINT)` mean the same on SQLite (3.35+) and
//! PostgreSQL. What differs is isolated in [`Dialect`]: SQLite's `?1`
//! parameters, how a JSON field is read and set, and how a worker claims a run
//! (one statement under SQLite's single writer; `FOR UPDATE SKIP LOCKED` and,
//! with limits, an advisory lock on PostgreSQL).
//!
//! sqlx has no practical way to be generic over the driver inside `async_trait`
//! methods, so [`impl_store!`] stamps the one implementation onto each store
//! type (`SqliteStore`, `PgStore`) with its sqlx database type and dialect.

use std::borrow::Cow;

use crate::common::terminal_states;

/// The SQL differences between the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `text` (with `$1`-style parameters) in this dialect: on SQLite every
    /// `$N` becomes `?N`. A `$` not followed by a digit (`'$.origin'`) is kept.
    pub(crate) fn sql(self, text: &str) -> Cow<'_, str> {
        match self {
            Dialect::Postgres => Cow::Borrowed(text),
            Dialect::Sqlite => {
                let bytes = text.as_bytes();
                let mut out = String::with_capacity(text.len());
                for (i, c) in text.char_indices() {
                    let param = c == '$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
                    out.push(if param { '?' } else { c });
                }
                Cow::Owned(out)
            }
        }
    }

    /// A string field of the JSON text column `column`, as SQL text; `path`
    /// names the keys from the top (`["origin", "message_ts"]`).
    pub(crate) fn json_text(self, column: &str, path: &[&str]) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.{}')", path.join(".")),
            Dialect::Postgres => format!("({column}::jsonb #>> '{{{}}}')", path.join(",")),
        }
    }

    /// The JSON text column `column` with its top-level `key` set to the JSON
    /// text of parameter `param` (added when missing).
    pub(crate) fn json_set(self, column: &str, key: &str, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_set({column}, '$.{key}', json({param}))"),
            Dialect::Postgres => {
                format!("jsonb_set({column}::jsonb, '{{{key}}}', {param}::jsonb)::text")
            }
        }
    }
}

/// The run `claim_next` takes (`runs r`, in claim order, one): queued, not
/// cancel-requested, not claimed, within the global limit `global` and the
/// per-repository limit `per_repo` (parameters; NULL is no limit).
pub(crate) fn claimable(global: &str, per_repo: &str) -> String {
    let terminal = terminal_states();
    format!(
        "r.state = 'queued' AND r.cancel_requested = FALSE AND r.claimed_by IS NULL \
         AND ({global} IS NULL OR (SELECT COUNT(*) FROM runs c \
              WHERE c.claimed_by IS NOT NULL AND c.state NOT IN ({terminal})) < {global}) \
         AND ({per_repo} IS NULL OR r.repo IS NULL OR (SELECT COUNT(*) FROM runs c \
              WHERE c.claimed_by IS NOT NULL AND c.state NOT IN ({terminal}) AND c.repo = r.repo) < {per_repo}) \
         ORDER BY r.created_at, r.id LIMIT 1"
    )
}

/// Key of the PostgreSQL advisory lock that serializes limited claims
/// ("errand" in ASCII).
pub(crate) const CLAIM_LOCK: i64 = 0x6572_7261_6e64;

/// `impl Store for $store`, whose `pool` field is a `sqlx::Pool<$db>`, in
/// `$dialect`.
macro_rules! impl_store {
    ($store:ty, $db:ty, $dialect:expr) => {
        impl $store {
            const DIALECT: $crate::sql::Dialect = $dialect;

            /// Stores `rows` through the store's writer task (group commit,
            /// `commit.rs`) and waits until they are stored or refused.
            async fn write(&self, run: errand_core::RunId, rows: $crate::commit::Rows) -> $crate::Result<bool> {
                let (done, answer) = tokio::sync::oneshot::channel();
                let write = $crate::commit::Write { run, rows, done };
                self.writer.send(write, |queue| {
                    tokio::spawn(Self::writer_task(self.pool.clone(), self.live.clone(), queue));
                });
                answer.await.unwrap_or_else(|_| {
                    Err($crate::StoreError::Unavailable("the event writer stopped".into()))
                })
            }

            /// The writer task: one transaction per group of waiting writes,
            /// then each caller's answer and the events pushed to watchers.
            async fn writer_task(
                pool: sqlx::Pool<$db>,
                live: std::sync::Arc<$crate::live::Live>,
                mut queue: tokio::sync::mpsc::UnboundedReceiver<$crate::commit::Write>,
            ) {
                while let Some(group) = $crate::commit::next_group(&mut queue).await {
                    let outcome = Self::store_group(&pool, &group, &live.id).await;
                    let answers: Vec<$crate::Result<bool>> = match outcome {
                        Ok(changed) => changed.into_iter().map(Ok).collect(),
                        Err(e) if group.len() == 1 => vec![Err(e)],
                        // One write spoiled the group: each alone, for its own answer.
                        Err(_) => {
                            let mut v = Vec::with_capacity(group.len());
                            for w in &group {
                                v.push(
                                    Self::store_group(&pool, std::slice::from_ref(w), &live.id)
                                        .await
                                        .map(|c| c.first().copied().unwrap_or(true)),
                                );
                            }
                            v
                        }
                    };
                    for (w, answer) in group.into_iter().zip(answers) {
                        if answer.is_ok() {
                            if let $crate::commit::Rows::Events(events) = &w.rows {
                                live.publish(w.run, events);
                            }
                        }
                        // A caller that stopped waiting needs no answer.
                        let _ = w.done.send(answer);
                    }
                }
            }

            /// Stores a group of writes in one transaction (all or none),
            /// answering for each whether it changed the store; `origin`
            /// names the hub in PostgreSQL's notices.
            async fn store_group(
                pool: &sqlx::Pool<$db>,
                group: &[$crate::commit::Write],
                origin: &str,
            ) -> $crate::Result<Vec<bool>> {
                use $crate::commit::Rows;
                use $crate::common::{clean_line, encode_event, millis, to_i64};
                let mut tx = pool.begin().await?;
                let mut changed = Vec::with_capacity(group.len());
                for w in group {
                    let run = w.run.to_string();
                    let this = match &w.rows {
                        Rows::NewRun(n) => {
                            let first = match &n.once {
                                Some(k) => Self::record_replay_key(&mut tx, k).await?,
                                None => true,
                            };
                            if !first {
                                changed.push(false);
                                continue;
                            }
                            sqlx::query(&Self::DIALECT.sql(
                                "INSERT INTO runs (id, spec, repo, harness, model, state, created_at, claimed_by) \
                                 VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)",
                            ))
                            .bind(run.as_str())
                            .bind(n.spec_json.as_str())
                            .bind(n.repo.as_deref())
                            .bind(n.harness.as_str())
                            .bind(n.model.as_deref())
                            .bind(n.created_at)
                            .bind(n.claimed_by.as_deref())
                            .execute(&mut *tx)
                            .await?;
                            Self::record_transition(&mut tx, w.run, errand_core::RunState::Queued, n.created_at, None)
                                .await?;
                            true
                        }
                        Rows::Origin(json) => {
                            let d = Self::DIALECT;
                            let sql = format!(
                                "UPDATE runs SET spec = {} WHERE id = $2",
                                d.json_set("spec", "origin", "$1")
                            );
                            let done = sqlx::query(&d.sql(&sql))
                                .bind(json.as_str())
                                .bind(run.as_str())
                                .execute(&mut *tx)
                                .await?;
                            done.rows_affected() > 0
                        }
                        Rows::ReplayKey(k) => Self::record_replay_key(&mut tx, k).await?,
                        Rows::Events(events) => {
                            let mut rows = Vec::with_capacity(events.len());
                            for e in events {
                                rows.push((to_i64(e.seq, "event seq")?, millis(e.ts), e.kind.name(), encode_event(e)?));
                            }
                            // One statement per chunk, not per event (5
                            // parameters a row, well inside both limits).
                            for chunk in rows.chunks(500) {
                                let mut q = sqlx::QueryBuilder::<$db>::new(
                                    "INSERT INTO run_events (run_id, seq, ts, kind, body) ",
                                );
                                q.push_values(chunk, |mut b, (seq, ts, kind, body)| {
                                    b.push_bind(run.as_str())
                                        .push_bind(*seq)
                                        .push_bind(*ts)
                                        .push_bind(*kind)
                                        .push_bind(body.as_str());
                                });
                                q.build().execute(&mut *tx).await?;
                            }
                            if let (Some(first), Some(last), $crate::sql::Dialect::Postgres) =
                                (events.first(), events.last(), Self::DIALECT)
                            {
                                // Delivered to every listening node when (and only if) this commits.
                                sqlx::query("SELECT pg_notify($1, $2)")
                                    .bind($crate::live::PG_CHANNEL)
                                    .bind($crate::live::notice(w.run, first.seq, last.seq, origin))
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            true
                        }
                        Rows::Raw(lines) => {
                            let mut rows = Vec::with_capacity(lines.len());
                            for (n, line) in lines {
                                rows.push((to_i64(*n, "raw line number")?, clean_line(line)));
                            }
                            for chunk in rows.chunks(1000) {
                                let mut q = sqlx::QueryBuilder::<$db>::new(
                                    "INSERT INTO run_raw_lines (run_id, line_no, line) ",
                                );
                                q.push_values(chunk, |mut b, (n, line)| {
                                    b.push_bind(run.as_str()).push_bind(*n).push_bind(line.as_ref());
                                });
                                q.build().execute(&mut *tx).await?;
                            }
                            true
                        }
                    };
                    changed.push(this);
                }
                tx.commit().await?;
                Ok(changed)
            }

            /// Records a replay key inside the caller's transaction: `true`
            /// when inserted or an expired row taken over; `false` when it is
            /// still remembered (from an earlier group, or earlier in this
            /// one). Keys past their time are pruned.
            async fn record_replay_key(
                conn: &mut <$db as sqlx::Database>::Connection,
                k: &$crate::commit::ReplayKey,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(&Self::DIALECT.sql(
                    "INSERT INTO replay_keys (replay_key, seen_at, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (replay_key) DO UPDATE SET seen_at = excluded.seen_at, expires_at = excluded.expires_at \
                     WHERE replay_keys.expires_at <= excluded.seen_at",
                ))
                .bind(k.key.as_str())
                .bind(k.now)
                .bind(k.expires)
                .execute(&mut *conn)
                .await?;
                sqlx::query(&Self::DIALECT.sql("DELETE FROM replay_keys WHERE expires_at <= $1"))
                    .bind(k.now)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            /// Publishes to the hub what is stored of `run` after `after`
            /// (for the watcher: events another process stored).
            async fn publish_stored(&self, run: errand_core::RunId, mut after: u64) -> $crate::Result<()> {
                use $crate::Store as _;
                loop {
                    let batch = self.events_after(run, after, 1000).await?;
                    let Some(last) = batch.last() else {
                        return Ok(());
                    };
                    after = last.seq;
                    self.live.publish(run, &batch);
                    if batch.len() < 1000 {
                        return Ok(());
                    }
                }
            }

            fn row_to_run(row: &<$db as sqlx::Database>::Row) -> $crate::Result<errand_core::RunRecord> {
                use sqlx::Row;
                use $crate::common::{from_millis, opt_time, parse_run_id, parse_state};
                use $crate::StoreError;
                let id = parse_run_id(&row.try_get::<String, _>("id")?)?;
                let spec: String = row.try_get("spec")?;
                let spec: errand_core::RunSpec = serde_json::from_str(&spec)
                    .map_err(|e| StoreError::Corrupt(format!("spec of {id}: {e}")))?;
                let state = parse_state(&row.try_get::<String, _>("state")?)?;
                let summary: String = row.try_get("summary")?;
                let summary: errand_core::RunSummary = serde_json::from_str(&summary)
                    .map_err(|e| StoreError::Corrupt(format!("summary of {id}: {e}")))?;
                let owner: Option<i64> = row.try_get("owner_pid")?;
                Ok(errand_core::RunRecord {
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
                    workspace_pruned_at: opt_time(row.try_get("workspace_pruned_at")?)?,
                    logs_pruned_at: opt_time(row.try_get("logs_pruned_at")?)?,
                })
            }

            fn row_to_token(row: &<$db as sqlx::Database>::Row) -> $crate::Result<$crate::TokenInfo> {
                use sqlx::Row;
                use $crate::common::{from_millis, parse_scopes};
                Ok($crate::TokenInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_at: from_millis(row.try_get("created_at")?)?,
                    revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                    scopes: parse_scopes(&row.try_get::<String, _>("scopes")?),
                })
            }

            fn ids(rows: &[<$db as sqlx::Database>::Row]) -> $crate::Result<Vec<errand_core::RunId>> {
                use sqlx::Row;
                rows.iter()
                    .map(|r| $crate::common::parse_run_id(&r.try_get::<String, _>("id")?))
                    .collect()
            }

            /// Appends a transition to the run's history, inside the caller's
            /// transaction and after its write to the run (which holds the
            /// run's row, or SQLite's write lock, so `seq` cannot be raced).
            async fn record_transition(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: errand_core::RunId,
                to: errand_core::RunState,
                at: i64,
                reason: Option<&str>,
            ) -> $crate::Result<()> {
                sqlx::query(&Self::DIALECT.sql(
                    "INSERT INTO run_transitions (run_id, seq, state, at, reason) \
                     VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_transitions WHERE run_id = $1), $2, $3, $4)",
                ))
                .bind(id.to_string())
                .bind(to.as_str())
                .bind(at)
                .bind(reason)
                .execute(conn)
                .await?;
                Ok(())
            }

            /// Why a compare-and-set write to run `id` changed nothing: the run
            /// is missing, or its state does not allow the move to `to`, or it
            /// changed meanwhile to one that does (a conflict: try again).
            async fn refused_move(
                &self,
                id: errand_core::RunId,
                to: errand_core::RunState,
            ) -> $crate::StoreError {
                use $crate::Store;
                match self.get_run(id).await {
                    Err(e) => e,
                    Ok(current) => match current.state.transition(to) {
                        Err(invalid) => $crate::StoreError::InvalidTransition(invalid),
                        Ok(_) => $crate::StoreError::Conflict(format!(
                            "run {id} changed state while it was being moved to {to}; try again"
                        )),
                    },
                }
            }
        }

        impl $store {
            /// A run with no replay key is always created or refused with an
            /// error: this answers the "not created" that cannot happen.
            fn not_created() -> $crate::StoreError {
                $crate::StoreError::Unavailable("the store answered that a new run was not created".into())
            }

            /// A new queued run, claimed from the start by `claimed_by` when given.
            async fn insert_run(
                &self,
                id: errand_core::RunId,
                spec: &errand_core::RunSpec,
                claimed_by: Option<&str>,
                once: Option<$crate::commit::ReplayKey>,
            ) -> $crate::Result<Option<errand_core::RunRecord>> {
                use $crate::Store;
                let spec_json = serde_json::to_string(spec).map_err(|e| {
                    $crate::StoreError::Corrupt(format!("spec does not serialize: {e}"))
                })?;
                // Through the group commit: runs created at once (a burst of
                // Slack commands) share their syncs to disk.
                let new = $crate::commit::NewRun {
                    spec_json,
                    repo: spec.repo.as_ref().map(|r| r.location().to_string()),
                    harness: spec.harness.clone(),
                    model: spec.model.clone(),
                    created_at: $crate::common::millis(chrono::Utc::now()),
                    claimed_by: claimed_by.map(str::to_string),
                    once,
                };
                if !self.write(id, $crate::commit::Rows::NewRun(new)).await? {
                    return Ok(None);
                }
                self.get_run(id).await.map(Some)
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn create_run(
                &self,
                id: errand_core::RunId,
                spec: &errand_core::RunSpec,
            ) -> $crate::Result<errand_core::RunRecord> {
                self.insert_run(id, spec, None, None).await?.ok_or_else(Self::not_created)
            }

            async fn create_own_run(
                &self,
                id: errand_core::RunId,
                spec: &errand_core::RunSpec,
                by: &str,
            ) -> $crate::Result<errand_core::RunRecord> {
                self.insert_run(id, spec, Some(by), None).await?.ok_or_else(Self::not_created)
            }

            async fn get_run(&self, id: errand_core::RunId) -> $crate::Result<errand_core::RunRecord> {
                let row = sqlx::query(&Self::DIALECT.sql("SELECT * FROM runs WHERE id = $1"))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| $crate::StoreError::NotFound(id.to_string()))?;
                Self::row_to_run(&row)
            }

            async fn find_run(&self, id_or_prefix: &str) -> $crate::Result<errand_core::RunRecord> {
                use $crate::StoreError;
                let needle = id_or_prefix.trim().to_ascii_lowercase().replace('-', "");
                if needle.is_empty() || !needle.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(StoreError::NotFound(id_or_prefix.to_string()));
                }
                let rows = sqlx::query(&Self::DIALECT.sql(
                    "SELECT * FROM runs WHERE id LIKE $1 ORDER BY created_at DESC LIMIT 2",
                ))
                .bind(format!("{needle}%"))
                .fetch_all(&self.pool)
                .await?;
                match rows.as_slice() {
                    [] => Err(StoreError::NotFound(id_or_prefix.to_string())),
                    [one] => Self::row_to_run(one),
                    _ => Err(StoreError::Ambiguous(id_or_prefix.to_string())),
                }
            }

            async fn list_runs(
                &self,
                filter: &$crate::RunFilter,
            ) -> $crate::Result<Vec<errand_core::RunRecord>> {
                let d = Self::DIALECT;
                let limit = if filter.limit == 0 { 50 } else { filter.limit };
                let sql = format!(
                    "SELECT * FROM runs WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR repo = $2) \
                     AND ($3 IS NULL OR harness = $3) AND ($6 IS NULL OR {} = $6) \
                     AND ($7 IS NULL OR {} = $7) AND ($8 IS NULL OR {} = $8) \
                     ORDER BY created_at DESC, id LIMIT $4 OFFSET $5",
                    d.json_text("spec", &["group"]),
                    d.json_text("spec", &["requested_by"]),
                    d.json_text("spec", &["origin", "message_ts"]),
                );
                let rows = sqlx::query(&d.sql(&sql))
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
                rows.iter().map(Self::row_to_run).collect()
            }

            async fn transition(
                &self,
                id: errand_core::RunId,
                to: errand_core::RunState,
                reason: Option<&str>,
            ) -> $crate::Result<errand_core::RunRecord> {
                use errand_core::RunState;
                // Compare-and-set: the state machine check is part of the
                // UPDATE, which comes first in the transaction (SQLite refuses
                // at once, without waiting, to upgrade a read lock to a write
                // lock while another connection writes) and holds the row until
                // the transition is recorded.
                let allowed_from = $crate::common::state_list(|s| s.can_move_to(to));
                if allowed_from.is_empty() {
                    return Err(self.refused_move(id, to).await);
                }
                let now = $crate::common::millis(chrono::Utc::now());
                let started = (to == RunState::Preparing).then_some(now);
                let finished = to.is_terminal().then_some(now);
                let sql = format!(
                    "UPDATE runs SET state = $1, reason = COALESCE($2, reason), \
                     started_at = COALESCE(started_at, $3), finished_at = COALESCE($4, finished_at) \
                     WHERE id = $5 AND state IN ({allowed_from})"
                );
                let mut tx = self.pool.begin().await?;
                let updated = sqlx::query(&Self::DIALECT.sql(&sql))
                    .bind(to.as_str())
                    .bind(reason)
                    .bind(started)
                    .bind(finished)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                if updated.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Err(self.refused_move(id, to).await);
                }
                Self::record_transition(&mut tx, id, to, now, reason).await?;
                tx.commit().await?;
                self.get_run(id).await
            }

            async fn transitions(
                &self,
                id: errand_core::RunId,
            ) -> $crate::Result<Vec<errand_core::Transition>> {
                use sqlx::Row;
                let rows = sqlx::query(&Self::DIALECT.sql(
                    "SELECT state, at, reason FROM run_transitions WHERE run_id = $1 ORDER BY seq",
                ))
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(errand_core::Transition {
                            state: $crate::common::parse_state(&r.try_get::<String, _>("state")?)?,
                            at: $crate::common::from_millis(r.try_get("at")?)?,
                            reason: r.try_get("reason")?,
                        })
                    })
                    .collect()
            }

            async fn update_summary(
                &self,
                id: errand_core::RunId,
                summary: &errand_core::RunSummary,
            ) -> $crate::Result<()> {
                let json = serde_json::to_string(summary).map_err(|e| {
                    $crate::StoreError::Corrupt(format!("summary does not serialize: {e}"))
                })?;
                sqlx::query(&Self::DIALECT.sql("UPDATE runs SET summary = $1 WHERE id = $2"))
                    .bind(json)
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn claim_pick(
                &self,
                group: &str,
                run: errand_core::RunId,
                stale: std::time::Duration,
            ) -> $crate::Result<$crate::PickClaim> {
                use $crate::common::millis;
                let d = Self::DIALECT;
                // A claim given back between the insert and the read leaves
                // nothing to read: try again (a few times; each round is a
                // whole pick failing elsewhere).
                for _ in 0..3 {
                    let now = chrono::Utc::now();
                    let stale_before = millis(now).saturating_sub(i64::try_from(stale.as_millis()).unwrap_or(i64::MAX));
                    let took = sqlx::query(&d.sql(
                        "INSERT INTO group_picks (group_id, run_id, claimed_at, done) VALUES ($1, $2, $3, FALSE) \
                         ON CONFLICT (group_id) DO UPDATE SET run_id = excluded.run_id, claimed_at = excluded.claimed_at \
                         WHERE group_picks.done = FALSE AND group_picks.claimed_at < $4",
                    ))
                    .bind(group)
                    .bind(run.to_string())
                    .bind(millis(now))
                    .bind(stale_before)
                    .execute(&self.pool)
                    .await?;
                    if took.rows_affected() == 1 {
                        return Ok($crate::PickClaim::Claimed);
                    }
                    let held: Option<(String, bool)> = sqlx::query_as(&d.sql(
                        "SELECT run_id, done FROM group_picks WHERE group_id = $1",
                    ))
                    .bind(group)
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some((holder, done)) = held else {
                        continue;
                    };
                    let holder: errand_core::RunId = holder.parse().map_err(|_| {
                        $crate::StoreError::Corrupt(format!("group {group} is claimed by a bad run id {holder}"))
                    })?;
                    return Ok(match (holder == run, done) {
                        (true, true) => $crate::PickClaim::Done,
                        (true, false) => $crate::PickClaim::Busy,
                        (false, _) => $crate::PickClaim::Other(holder),
                    });
                }
                Err($crate::StoreError::Conflict(format!(
                    "the pick of group {group} kept changing hands; try again"
                )))
            }

            async fn finish_pick(&self, group: &str, run: errand_core::RunId) -> $crate::Result<()> {
                sqlx::query(&Self::DIALECT.sql(
                    "UPDATE group_picks SET done = TRUE WHERE group_id = $1 AND run_id = $2",
                ))
                .bind(group)
                .bind(run.to_string())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn release_pick(&self, group: &str, run: errand_core::RunId) -> $crate::Result<()> {
                sqlx::query(&Self::DIALECT.sql(
                    "DELETE FROM group_picks WHERE group_id = $1 AND run_id = $2 AND done = FALSE",
                ))
                .bind(group)
                .bind(run.to_string())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn set_origin(
                &self,
                id: errand_core::RunId,
                origin: &errand_core::Origin,
            ) -> $crate::Result<()> {
                let json = serde_json::to_string(origin).map_err(|e| {
                    $crate::StoreError::Corrupt(format!("origin does not serialize: {e}"))
                })?;
                // Through the group commit: a burst of runs posting their
                // Slack messages does not queue a sync each behind it.
                if !self.write(id, $crate::commit::Rows::Origin(json)).await? {
                    return Err($crate::StoreError::NotFound(id.to_string()));
                }
                Ok(())
            }

            async fn request_cancel(
                &self,
                id: errand_core::RunId,
            ) -> $crate::Result<errand_core::RunRecord> {
                sqlx::query(&Self::DIALECT.sql(
                    "UPDATE runs SET cancel_requested = TRUE WHERE id = $1",
                ))
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
                self.get_run(id).await
            }

            async fn set_owner(&self, id: errand_core::RunId, pid: Option<u32>) -> $crate::Result<()> {
                sqlx::query(&Self::DIALECT.sql("UPDATE runs SET owner_pid = $1 WHERE id = $2"))
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
                limits: &$crate::QueueLimits,
            ) -> $crate::Result<Option<errand_core::RunRecord>> {
                use $crate::sql::{claimable, Dialect};
                let d = Self::DIALECT;
                let until = $crate::common::lease_end(lease);
                let global = limits.global.map(i64::from);
                let per_repo = limits.per_repo.map(i64::from);
                match d {
                    // One statement: SQLite takes its write lock before
                    // reading, so the choice, the limit counts and the claim
                    // are atomic together, and the `claimed_by IS NULL` guard
                    // makes a double claim impossible anyway.
                    Dialect::Sqlite => {
                        let sql = format!(
                            "UPDATE runs SET claimed_by = $1, lease_until = $2 \
                             WHERE claimed_by IS NULL AND id = (SELECT r.id FROM runs r WHERE {}) \
                             RETURNING *",
                            claimable("$3", "$4")
                        );
                        let row = sqlx::query(&d.sql(&sql))
                            .bind(worker)
                            .bind(until)
                            .bind(global)
                            .bind(per_repo)
                            .fetch_optional(&self.pool)
                            .await?;
                        row.as_ref().map(Self::row_to_run).transpose()
                    }
                    // Pick with `FOR UPDATE SKIP LOCKED`, so claimers never
                    // wait on each other nor take the same run, then claim.
                    Dialect::Postgres => {
                        let sql = format!(
                            "SELECT r.id FROM runs r WHERE {} FOR UPDATE OF r SKIP LOCKED",
                            claimable("$1", "$2")
                        );
                        let mut tx = self.pool.begin().await?;
                        if global.is_some() || per_repo.is_some() {
                            // Claims that check limits take turns, so each one
                            // counts the claims committed before it (READ
                            // COMMITTED: every statement below sees them).
                            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                                .bind($crate::sql::CLAIM_LOCK)
                                .execute(&mut *tx)
                                .await?;
                        }
                        let picked: Option<String> = sqlx::query_scalar(&d.sql(&sql))
                            .bind(global)
                            .bind(per_repo)
                            .fetch_optional(&mut *tx)
                            .await?;
                        let Some(picked) = picked else {
                            tx.rollback().await?;
                            return Ok(None);
                        };
                        let row = sqlx::query(&d.sql(
                            "UPDATE runs SET claimed_by = $1, lease_until = $2 \
                             WHERE id = $3 AND claimed_by IS NULL AND state = 'queued' RETURNING *",
                        ))
                        .bind(worker)
                        .bind(until)
                        .bind(&picked)
                        .fetch_optional(&mut *tx)
                        .await?;
                        tx.commit().await?;
                        row.as_ref().map(Self::row_to_run).transpose()
                    }
                }
            }

            async fn renew_lease(
                &self,
                id: errand_core::RunId,
                worker: &str,
                lease: std::time::Duration,
            ) -> $crate::Result<bool> {
                let sql = format!(
                    "UPDATE runs SET lease_until = $1 WHERE id = $2 AND claimed_by = $3 AND state NOT IN ({})",
                    $crate::common::terminal_states()
                );
                let done = sqlx::query(&Self::DIALECT.sql(&sql))
                    .bind($crate::common::lease_end(lease))
                    .bind(id.to_string())
                    .bind(worker)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_expired(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Vec<(errand_core::RunId, errand_core::RunState)>> {
                use errand_core::RunState;
                use $crate::common::{millis, LEASE_EXPIRED_REASON};
                let d = Self::DIALECT;
                let now = millis(now);
                let at = millis(chrono::Utc::now());
                let mut tx = self.pool.begin().await?;
                // Writes only (RETURNING), so the transaction never upgrades a read lock.
                let requeued = sqlx::query(&d.sql(
                    "UPDATE runs SET claimed_by = NULL, lease_until = NULL \
                     WHERE state = 'queued' AND claimed_by IS NOT NULL AND lease_until < $1 RETURNING id",
                ))
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                let sql = format!(
                    "UPDATE runs SET state = 'failed', reason = $1, finished_at = COALESCE(finished_at, $2) \
                     WHERE state IN ({}) AND claimed_by IS NOT NULL AND lease_until < $3 RETURNING id",
                    $crate::common::active_states()
                );
                let failed = sqlx::query(&d.sql(&sql))
                    .bind(LEASE_EXPIRED_REASON)
                    .bind(at)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                let failed = Self::ids(&failed)?;
                for id in &failed {
                    Self::record_transition(&mut tx, *id, RunState::Failed, at, Some(LEASE_EXPIRED_REASON))
                        .await?;
                }
                tx.commit().await?;
                let mut out: Vec<(errand_core::RunId, RunState)> = Self::ids(&requeued)?
                    .into_iter()
                    .map(|id| (id, RunState::Queued))
                    .collect();
                out.extend(failed.into_iter().map(|id| (id, RunState::Failed)));
                Ok(out)
            }

            async fn release_worker(
                &self,
                worker: &str,
                reason: &str,
            ) -> $crate::Result<Vec<errand_core::RunId>> {
                let d = Self::DIALECT;
                let at = $crate::common::millis(chrono::Utc::now());
                let mut tx = self.pool.begin().await?;
                let requeued = sqlx::query(&d.sql(
                    "UPDATE runs SET claimed_by = NULL, lease_until = NULL \
                     WHERE state = 'queued' AND claimed_by = $1 RETURNING id",
                ))
                .bind(worker)
                .fetch_all(&mut *tx)
                .await?;
                let sql = format!(
                    "UPDATE runs SET state = 'failed', reason = $1, finished_at = COALESCE(finished_at, $2) \
                     WHERE state IN ({}) AND claimed_by = $3 RETURNING id",
                    $crate::common::active_states()
                );
                let failed = sqlx::query(&d.sql(&sql))
                    .bind(reason)
                    .bind(at)
                    .bind(worker)
                    .fetch_all(&mut *tx)
                    .await?;
                let failed = Self::ids(&failed)?;
                for id in &failed {
                    Self::record_transition(&mut tx, *id, errand_core::RunState::Failed, at, Some(reason))
                        .await?;
                }
                tx.commit().await?;
                let mut out = Self::ids(&requeued)?;
                out.extend(failed);
                Ok(out)
            }

            async fn release_claim(
                &self,
                id: errand_core::RunId,
                worker: &str,
                reason: &str,
            ) -> $crate::Result<bool> {
                self.release_claim_sql(id, worker, reason).await
            }

            async fn unclaim(&self, id: errand_core::RunId, worker: &str) -> $crate::Result<bool> {
                self.unclaim_sql(id, worker).await
            }

            async fn claim_info(
                &self,
                id: errand_core::RunId,
            ) -> $crate::Result<Option<(String, chrono::DateTime<chrono::Utc>)>> {
                use sqlx::Row;
                let row = sqlx::query(&Self::DIALECT.sql(
                    "SELECT claimed_by, lease_until FROM runs WHERE id = $1",
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| $crate::StoreError::NotFound(id.to_string()))?;
                let worker: Option<String> = row.try_get("claimed_by")?;
                let until: Option<i64> = row.try_get("lease_until")?;
                match (worker, until) {
                    (Some(w), Some(u)) => Ok(Some((w, $crate::common::from_millis(u)?))),
                    _ => Ok(None),
                }
            }

            async fn append_events(
                &self,
                run: errand_core::RunId,
                events: &[errand_core::Event],
            ) -> $crate::Result<()> {
                if events.is_empty() {
                    return Ok(());
                }
                self.write(run, $crate::commit::Rows::Events(events.to_vec())).await.map(|_| ())
            }

            async fn subscribe(&self, run: errand_core::RunId) -> $crate::Subscription {
                let rx = self.live.subscribe(run);
                if self.live.start_watching() {
                    tokio::spawn(Self::watch(
                        std::sync::Arc::downgrade(&self.live),
                        self.pool.clone(),
                    ));
                }
                self.live.wait_primed(std::time::Duration::from_secs(2)).await;
                rx
            }

            async fn events_after(
                &self,
                run: errand_core::RunId,
                after_seq: u64,
                limit: u32,
            ) -> $crate::Result<Vec<errand_core::Event>> {
                use sqlx::Row;
                let rows = sqlx::query(&Self::DIALECT.sql(
                    "SELECT seq, body FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                ))
                .bind(run.to_string())
                .bind($crate::common::to_i64(after_seq, "event seq")?)
                .bind($crate::common::sql_limit(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        $crate::common::decode_event(
                            run,
                            r.try_get("seq")?,
                            &r.try_get::<String, _>("body")?,
                        )
                    })
                    .collect()
            }

            async fn last_event_seq(&self, run: errand_core::RunId) -> $crate::Result<u64> {
                let seq: i64 = sqlx::query_scalar(&Self::DIALECT.sql(
                    "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM run_events WHERE run_id = $1",
                ))
                .bind(run.to_string())
                .fetch_one(&self.pool)
                .await?;
                $crate::common::to_u64(seq, "event seq")
            }

            async fn append_raw(
                &self,
                run: errand_core::RunId,
                line_no: u64,
                line: &str,
            ) -> $crate::Result<()> {
                self.write(run, $crate::commit::Rows::Raw(vec![(line_no, line.to_string())])).await.map(|_| ())
            }

            async fn append_raw_lines(
                &self,
                run: errand_core::RunId,
                lines: &[(u64, String)],
            ) -> $crate::Result<()> {
                if lines.is_empty() {
                    return Ok(());
                }
                self.write(run, $crate::commit::Rows::Raw(lines.to_vec())).await.map(|_| ())
            }

            async fn raw_after(
                &self,
                run: errand_core::RunId,
                after_line: u64,
                limit: u32,
            ) -> $crate::Result<Vec<(u64, String)>> {
                use sqlx::Row;
                let rows = sqlx::query(&Self::DIALECT.sql(
                    "SELECT line_no, line FROM run_raw_lines WHERE run_id = $1 AND line_no > $2 \
                     ORDER BY line_no LIMIT $3",
                ))
                .bind(run.to_string())
                .bind($crate::common::to_i64(after_line, "raw line number")?)
                .bind($crate::common::sql_limit(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            $crate::common::to_u64(r.try_get("line_no")?, "raw line number")?,
                            r.try_get("line")?,
                        ))
                    })
                    .collect()
            }

            async fn create_token(
                &self,
                name: &str,
                token_hash: &str,
                scopes: &[$crate::Scope],
            ) -> $crate::Result<$crate::TokenInfo> {
                let row = sqlx::query(&Self::DIALECT.sql(
                    "INSERT INTO api_tokens (id, name, token_hash, created_at, scopes) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING *",
                ))
                .bind($crate::common::new_token_id())
                .bind(name)
                .bind(token_hash)
                .bind($crate::common::millis(chrono::Utc::now()))
                .bind($crate::Scope::join(scopes))
                .fetch_one(&self.pool)
                .await?;
                Self::row_to_token(&row)
            }

            async fn token_by_hash(&self, token_hash: &str) -> $crate::Result<Option<$crate::TokenInfo>> {
                let row = sqlx::query(&Self::DIALECT.sql(
                    "SELECT * FROM api_tokens WHERE token_hash = $1",
                ))
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::row_to_token).transpose()
            }

            async fn list_tokens(&self) -> $crate::Result<Vec<$crate::TokenInfo>> {
                let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::row_to_token).collect()
            }

            async fn revoke_token(&self, id: &str) -> $crate::Result<bool> {
                let done = sqlx::query(&Self::DIALECT.sql(
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                ))
                .bind($crate::common::millis(chrono::Utc::now()))
                .bind(id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn create_share(&self, run: errand_core::RunId, link_hash: &str) -> $crate::Result<()> {
                sqlx::query(&Self::DIALECT.sql(
                    "INSERT INTO share_links (link_hash, run_id, created_at) VALUES ($1, $2, $3)",
                ))
                .bind(link_hash)
                .bind(run.to_string())
                .bind($crate::common::millis(chrono::Utc::now()))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn share_by_hash(&self, link_hash: &str) -> $crate::Result<Option<errand_core::RunId>> {
                let id: Option<String> = sqlx::query_scalar(&Self::DIALECT.sql(
                    "SELECT run_id FROM share_links WHERE link_hash = $1 AND revoked_at IS NULL",
                ))
                .bind(link_hash)
                .fetch_optional(&self.pool)
                .await?;
                id.as_deref().map($crate::common::parse_run_id).transpose()
            }

            async fn revoke_shares(&self, run: errand_core::RunId) -> $crate::Result<u32> {
                let done = sqlx::query(&Self::DIALECT.sql(
                    "UPDATE share_links SET revoked_at = $1 WHERE run_id = $2 AND revoked_at IS NULL",
                ))
                .bind($crate::common::millis(chrono::Utc::now()))
                .bind(run.to_string())
                .execute(&self.pool)
                .await?;
                Ok(u32::try_from(done.rows_affected()).unwrap_or(u32::MAX))
            }

            async fn requeue_for_follow_up(
                &self,
                id: errand_core::RunId,
                message: &str,
            ) -> $crate::Result<errand_core::RunRecord> {
                use errand_core::RunState;
                let now = $crate::common::millis(chrono::Utc::now());
                let mut tx = self.pool.begin().await?;
                // Compare-and-set, write first (see `transition`).
                let updated = sqlx::query(&Self::DIALECT.sql(
                    "UPDATE runs SET state = 'queued', reason = NULL, finished_at = NULL, pending_message = $1, \
                     claimed_by = NULL, lease_until = NULL, cancel_requested = FALSE, owner_pid = NULL \
                     WHERE id = $2 AND state IN ('succeeded', 'failed')",
                ))
                .bind(message)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    tx.rollback().await?;
                    let current = self.get_run(id).await?;
                    return Err($crate::StoreError::InvalidTransition(
                        errand_core::InvalidTransition {
                            from: current.state,
                            to: RunState::Queued,
                        },
                    ));
                }
                Self::record_transition(
                    &mut tx,
                    id,
                    RunState::Queued,
                    now,
                    Some($crate::common::FOLLOW_UP_REASON),
                )
                .await?;
                tx.commit().await?;
                self.get_run(id).await
            }

            async fn pending_message(&self, id: errand_core::RunId) -> $crate::Result<Option<String>> {
                use sqlx::Row;
                let row = sqlx::query(&Self::DIALECT.sql(
                    "SELECT pending_message FROM runs WHERE id = $1",
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| $crate::StoreError::NotFound(id.to_string()))?;
                Ok(row.try_get("pending_message")?)
            }

            async fn set_pruned(
                &self,
                id: errand_core::RunId,
                what: $crate::Pruned,
                at: Option<chrono::DateTime<chrono::Utc>>,
            ) -> $crate::Result<()> {
                let column = match what {
                    $crate::Pruned::Workspace => "workspace_pruned_at",
                    $crate::Pruned::Logs => "logs_pruned_at",
                };
                let sql = format!("UPDATE runs SET {column} = $1 WHERE id = $2");
                let done = sqlx::query(&Self::DIALECT.sql(&sql))
                    .bind(at.map($crate::common::millis))
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound(id.to_string()));
                }
                Ok(())
            }

            async fn delete_logs(&self, id: errand_core::RunId) -> $crate::Result<u64> {
                let d = Self::DIALECT;
                let mut tx = self.pool.begin().await?;
                let events = sqlx::query(&d.sql("DELETE FROM run_events WHERE run_id = $1"))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                let raw = sqlx::query(&d.sql("DELETE FROM run_raw_lines WHERE run_id = $1"))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(events.rows_affected() + raw.rows_affected())
            }

            async fn take_pending_message(&self, id: errand_core::RunId) -> $crate::Result<Option<String>> {
                let d = Self::DIALECT;
                let mut tx = self.pool.begin().await?;
                // A no-op write first takes the run (SQLite's write lock, or
                // PostgreSQL's row lock), so the read below cannot be raced and
                // the transaction never has to upgrade a read lock.
                let touched = sqlx::query(&d.sql(
                    "UPDATE runs SET pending_message = pending_message WHERE id = $1",
                ))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                if touched.rows_affected() != 1 {
                    return Err($crate::StoreError::NotFound(id.to_string()));
                }
                let message: Option<String> =
                    sqlx::query_scalar(&d.sql("SELECT pending_message FROM runs WHERE id = $1"))
                        .bind(id.to_string())
                        .fetch_one(&mut *tx)
                        .await?;
                if message.is_some() {
                    sqlx::query(&d.sql("UPDATE runs SET pending_message = NULL WHERE id = $1"))
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(message)
            }

            async fn put_secret(&self, name: &str, sealed: &[u8]) -> $crate::Result<()> {
                sqlx::query(&Self::DIALECT.sql(
                    "INSERT INTO secrets (name, sealed, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                ))
                .bind(name)
                .bind(sealed)
                .bind($crate::common::millis(chrono::Utc::now()))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn sealed_secrets(&self) -> $crate::Result<Vec<(String, Vec<u8>)>> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT name, sealed FROM secrets ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("name")?, r.try_get("sealed")?)))
                    .collect()
            }

            async fn secret_names(&self) -> $crate::Result<Vec<(String, chrono::DateTime<chrono::Utc>)>> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT name, updated_at FROM secrets ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get("name")?,
                            $crate::common::from_millis(r.try_get("updated_at")?)?,
                        ))
                    })
                    .collect()
            }

            async fn delete_secret(&self, name: &str) -> $crate::Result<bool> {
                let done = sqlx::query(&Self::DIALECT.sql("DELETE FROM secrets WHERE name = $1"))
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn first_time(
                &self,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
                keep: std::time::Duration,
            ) -> $crate::Result<bool> {
                // Through the group commit: a Slack command waits on this
                // before it is acknowledged, and a burst of them shares the
                // syncs to disk. Not tied to a run: the nil id.
                let write = $crate::commit::Rows::ReplayKey($crate::commit::ReplayKey::new(key, now, keep));
                self.write(errand_core::RunId(uuid::Uuid::nil()), write).await
            }

            async fn create_run_once(
                &self,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
                keep: std::time::Duration,
                id: errand_core::RunId,
                spec: &errand_core::RunSpec,
            ) -> $crate::Result<Option<errand_core::RunRecord>> {
                let once = $crate::commit::ReplayKey::new(key, now, keep);
                self.insert_run(id, spec, None, Some(once)).await
            }

            async fn count_by_state(&self) -> $crate::Result<Vec<(errand_core::RunState, u64)>> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT state, COUNT(*) FROM runs GROUP BY state")
                        .fetch_all(&self.pool)
                        .await?;
                $crate::common::all_state_counts(rows)
            }
        }
    };
}

pub(crate) use impl_store;

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn sqlite_parameters_are_numbered_question_marks() {
        assert_eq!(
            Dialect::Sqlite
                .sql("SELECT json_extract(spec, '$.group') WHERE a = $1 AND b = $12 OR $1"),
            "SELECT json_extract(spec, '$.group') WHERE a = ?1 AND b = ?12 OR ?1"
        );
        assert_eq!(Dialect::Postgres.sql("a = $1"), "a = $1");
    }

    #[test]
    fn json_fields_in_each_dialect() {
        assert_eq!(
            Dialect::Sqlite.json_text("spec", &["origin", "message_ts"]),
            "json_extract(spec, '$.origin.message_ts')"
        );
        assert_eq!(
            Dialect::Postgres.json_text("spec", &["origin", "message_ts"]),
            "(spec::jsonb #>> '{origin,message_ts}')"
        );
        assert_eq!(
            Dialect::Postgres.json_set("spec", "origin", "$1"),
            "jsonb_set(spec::jsonb, '{origin}', $1::jsonb)::text"
        );
    }
}
