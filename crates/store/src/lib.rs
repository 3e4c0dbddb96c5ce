//! errand's persistence.
//!
//! * [`Store`]: runs and their state changes, the queue workers claim runs from
//!   (with leases), durable events and raw lines, API tokens and share links —
//!   behind a trait so that the SQLite backend ([`SqliteStore`], the embedded
//!   default) and the PostgreSQL backend ([`PgStore`], for several nodes) share
//!   one interface, one implementation of it (`sql.rs`: the SQL written once,
//!   the dialects' differences in `Dialect`) and one test suite
//!   (`tests/suite/`). [`open_url`] picks one. Errors are [`StoreError`]s whose
//!   kind callers match (not found, conflict, invalid, unavailable…).
//! * [`EventLog`]: one append-only JSONL file of normalized events per run, and
//!   [`RawLog`] beside it with the harness's own lines; both are written a whole
//!   line at a time and read so that a torn final line (a crash mid-write) is
//!   ignored, never fatal.

#![warn(missing_docs)]

mod commit;
mod common;
mod eventlog;
mod live;
mod moving;
mod pg;
mod release;
mod sql;
mod sqlite;

pub use common::LEASE_EXPIRED_REASON;
pub use eventlog::{read_events, read_raw_lines, EventLog, LogTail, RawLog};
pub use live::{Batch, Subscription};
pub use moving::{backup_sqlite, copy_to_postgres, sqlite_path, TableCount};
pub use pg::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errand_core::{
    Event, InvalidTransition, RunId, RunRecord, RunSpec, RunState, RunSummary, Transition,
};
use serde::{Deserialize, Serialize};

/// What can go wrong in the store. Callers match on the kind: [`NotFound`],
/// [`Conflict`] (a duplicate, or a run changed meanwhile), [`Invalid`] (data
/// the database refuses), [`Unavailable`] (the database cannot be reached or
/// is overloaded: try again later); the rest are faults of errand or its data.
///
/// [`NotFound`]: StoreError::NotFound
/// [`Conflict`]: StoreError::Conflict
/// [`Invalid`]: StoreError::Invalid
/// [`Unavailable`]: StoreError::Unavailable
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No run has this id, or no id starts with this prefix.
    #[error("no run matches '{0}'")]
    NotFound(String),
    /// More than one run's id starts with this prefix.
    #[error("'{0}' matches more than one run; give more characters of the id")]
    Ambiguous(String),
    /// The state machine does not allow the run's move to the new state.
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    /// A uniqueness violation (an event `seq` or raw line number stored
    /// twice, a token or share-link hash that already exists), or a run that
    /// changed while it was being written.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database refused the data (a reference to a missing row, a
    /// constraint) or the configuration (a bad database URL).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database could not be reached, timed out, is shutting down, or
    /// gave up on a busy lock or a deadlock: worth trying again later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A migration could not be applied when the store opened.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value that does not serialize for storing, or that the store holds
    /// and that does not parse back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Reading or writing a run's log file failed.
    #[error("event log {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// The result of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Whether the error is a [`StoreError::Conflict`]: e.g. an event `seq`
    /// or raw line number stored twice, a token or share-link hash that
    /// already exists.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }
}

impl From<sqlx::Error> for StoreError {
    /// Sorts a database error into the kinds callers act on.
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &e {
            sqlx::Error::Database(db) => {
                match db.kind() {
                    ErrorKind::UniqueViolation => return StoreError::Conflict(db.to_string()),
                    ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation => return StoreError::Invalid(db.to_string()),
                    _ => {}
                }
                let code = db.code().unwrap_or_default();
                let transient = if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
                    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
                } else {
                    // PostgreSQL: connection exceptions (08), insufficient
                    // resources (53), operator intervention (57P: shutting
                    // down, cannot connect now), serialization failure and
                    // deadlock (40001, 40P01).
                    code.starts_with("08")
                        || code.starts_with("53")
                        || code.starts_with("57P")
                        || code == "40001"
                        || code == "40P01"
                };
                if transient {
                    StoreError::Unavailable(db.to_string())
                } else {
                    StoreError::Database(e)
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Configuration(_) => StoreError::Invalid(e.to_string()),
            _ => StoreError::Database(e),
        }
    }
}

/// Filters for [`Store::list_runs`]. Build it with `..Default::default()` so new
/// filters do not break callers.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// At most this many runs; 0 means 50.
    pub limit: u32,
    /// Only runs of this repository, exactly as stored (`RepoSource::location()`).
    pub repo: Option<String>,
    /// Only runs of this harness.
    pub harness: Option<String>,
    /// Only runs of this fan-out group (`RunSpec::group`).
    pub group: Option<String>,
    /// Only runs asked for by this requester (`RunSpec::requested_by`).
    pub requested_by: Option<String>,
    /// Only the run whose Slack message has this `ts` (`Origin::Slack::message_ts`).
    pub slack_message: Option<String>,
    /// Skip this many runs (paging, in the same newest-first order).
    pub offset: u32,
}

/// How many runs may be claimed and not yet finished (in a terminal state) at
/// once, for [`Store::claim_next`]. `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLimits {
    /// Across every worker of every node sharing the store.
    pub global: Option<u32>,
    /// Per repository (runs with the same `repo`); runs without a repository
    /// are not limited by it.
    pub per_repo: Option<u32>,
}

/// What of a run retention removes, each recorded with its time
/// ([`Store::set_pruned`], `RunRecord::{workspace,logs}_pruned_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pruned {
    /// The agent's workspace, home and tmp (and the outbox once the branch was pushed).
    Workspace,
    /// The event log, raw log and stderr, on disk and in the store.
    Logs,
}

/// The answer to [`Store::claim_pick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickClaim {
    /// This caller holds the claim: go on, then finish or release it.
    Claimed,
    /// This run's pick already finished: a retry, which changes nothing new.
    Done,
    /// A pick of this run is under way elsewhere.
    Busy,
    /// Another run holds the group's pick (finished or under way).
    Other(RunId),
}

/// What an API token may do. Scopes are independent: each route of the API
/// needs exactly one, and a token holds any set of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read runs, their events and streams.
    Read,
    /// Start, cancel and continue runs, and share them.
    Run,
    /// Manage API tokens and anything else administrative.
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Run, Scope::Admin];

    /// The scope's name (`read`, `run`, `admin`), as stored and as tokens are created with.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Admin => "admin",
        }
    }

    /// `read,run` → the scopes, sorted and without repeats; an empty list or
    /// an unknown name is an error that names what is allowed.
    pub fn parse_list(text: &str) -> std::result::Result<Vec<Scope>, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            out.push(part.parse::<Scope>()?);
        }
        if out.is_empty() {
            return Err("no scope given: use read, run and/or admin".into());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The stored form: `read,run`.
    pub fn join(scopes: &[Scope]) -> String {
        let mut v = scopes.to_vec();
        v.sort();
        v.dedup();
        v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Scope::Read),
            "run" => Ok(Scope::Run),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope '{other}': use read, run and/or admin"
            )),
        }
    }
}

/// An API token as the store keeps it (never the secret, only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The token's id (not its secret).
    pub id: String,
    /// The name it was created with.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Whether it was revoked; a revoked token is refused.
    pub revoked: bool,
    /// Sorted, without repeats. Tokens from before scopes existed have
    /// `read,run` (what the API let them do then).
    pub scopes: Vec<Scope>,
}

impl TokenInfo {
    /// Whether the token has `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Opens the store a URL names: `postgres://…` or `postgresql://…` is
/// PostgreSQL ([`PgStore::connect`]); `sqlite::memory:` is a private in-memory
/// SQLite database; `sqlite://PATH`, `sqlite:PATH` or a plain path is an SQLite
/// file ([`SqliteStore::open`], created if missing). Migrations are applied.
pub async fn open_url(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(PgStore::connect(url).await?));
    }
    if lower == "sqlite::memory:" || lower == "sqlite://:memory:" {
        return Ok(std::sync::Arc::new(SqliteStore::in_memory().await?));
    }
    // In a `sqlite:` URL, connection parameters (`?mode=rwc`…) are errand's to
    // choose, so they are dropped; a plain path is taken as it is.
    fn without_params(rest: &str) -> &str {
        rest.split_once('?').map_or(rest, |(p, _)| p)
    }
    let path = if lower.starts_with("sqlite://") {
        without_params(&url["sqlite://".len()..])
    } else if lower.starts_with("sqlite:") {
        without_params(&url["sqlite:".len()..])
    } else if let Some((scheme, _)) = url.split_once("://") {
        return Err(StoreError::Invalid(format!(
            "unsupported database URL scheme '{scheme}': use postgres://, postgresql:// or sqlite:"
        )));
    } else {
        url
    };
    if path.is_empty() {
        return Err(StoreError::Invalid(
            "the SQLite database URL names no file".into(),
        ));
    }
    Ok(std::sync::Arc::new(
        SqliteStore::open(std::path::Path::new(path)).await?,
    ))
}

/// Where runs live. Every method is atomic on its own.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts a new run in state `queued`, recording that transition.
    async fn create_run(&self, id: RunId, spec: &errand_core::RunSpec) -> Result<RunRecord>;
    /// Like [`Store::create_run`], for a run this process executes itself
    /// (`errand run`): it is claimed by `by` from the start, with no lease, so
    /// no worker sharing the database claims it too. A dead owner is found by
    /// its pid, as before, not by a lease.
    async fn create_own_run(
        &self,
        id: RunId,
        spec: &errand_core::RunSpec,
        by: &str,
    ) -> Result<RunRecord>;
    /// The run with this id.
    async fn get_run(&self, id: RunId) -> Result<RunRecord>;
    /// Finds a run by its full id or a unique prefix of it (as printed by `errand ls`).
    async fn find_run(&self, id_or_prefix: &str) -> Result<RunRecord>;
    /// Newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// Moves a run to `to` if the state machine allows it from its current state,
    /// atomically (compare-and-set), and records the transition.
    async fn transition(&self, id: RunId, to: RunState, reason: Option<&str>) -> Result<RunRecord>;
    /// The run's state changes, oldest first.
    async fn transitions(&self, id: RunId) -> Result<Vec<Transition>>;
    /// Replaces the run's summary (branch, commit, cost, tokens, …).
    async fn update_summary(&self, id: RunId, summary: &RunSummary) -> Result<()>;
    /// Claims fan-out `group`'s pick for `run`, atomically across processes
    /// (see [`PickClaim`]). An unfinished claim older than `stale` is taken over.
    async fn claim_pick(
        &self,
        group: &str,
        run: RunId,
        stale: std::time::Duration,
    ) -> Result<PickClaim>;
    /// Marks `run`'s claim on `group` done: the pick is recorded.
    async fn finish_pick(&self, group: &str, run: RunId) -> Result<()>;
    /// Gives back `run`'s unfinished claim on `group` (the pick failed before
    /// it changed anything); a finished claim or another run's stays.
    async fn release_pick(&self, group: &str, run: RunId) -> Result<()>;
    /// Records where the run reports back (e.g. the Slack message, once posted).
    async fn set_origin(&self, id: RunId, origin: &errand_core::Origin) -> Result<()>;
    /// Marks a run for cancellation; the process executing it notices and stops it.
    async fn request_cancel(&self, id: RunId) -> Result<RunRecord>;
    /// Records the process executing the run (`None`: no process), so a run
    /// whose process died can be found and ended.
    async fn set_owner(&self, id: RunId, pid: Option<u32>) -> Result<()>;

    // ---- the queue and its leases ----

    /// Atomically claims the oldest run that is `queued`, not cancel-requested
    /// and not claimed, and whose claim keeps within `limits` (counting runs
    /// that are claimed and not in a terminal state), for `worker` until
    /// now + `lease`. Two workers never claim the same run. `None` when there
    /// is nothing to claim (or the limits are reached).
    async fn claim_next(
        &self,
        worker: &str,
        lease: std::time::Duration,
        limits: &QueueLimits,
    ) -> Result<Option<RunRecord>>;
    /// Extends the lease to now + `lease`; `false` when `worker` no longer
    /// holds the run (claimed by another, released, or the run is finished).
    async fn renew_lease(
        &self,
        id: RunId,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<bool>;
    /// Releases runs whose lease ended before `now`: a `queued` one is unclaimed
    /// (it will be claimed again), a `preparing`/`running`/`finishing` one fails
    /// with [`LEASE_EXPIRED_REASON`] (the transition is recorded). Returns each
    /// run released and the state it was left in.
    async fn release_expired(&self, now: DateTime<Utc>) -> Result<Vec<(RunId, RunState)>>;
    /// For a worker (re)starting under the same id: every non-terminal run it
    /// had claimed fails with `reason`, except `queued` ones, which are
    /// unclaimed. Returns every run released (failed or unclaimed).
    async fn release_worker(&self, worker: &str, reason: &str) -> Result<Vec<RunId>>;
    /// Gives back a run `worker` holds and will not finish (its node is
    /// draining): a `preparing`/`running`/`finishing` run goes back to
    /// `queued` with `reason` (the transition is recorded, the owner cleared).
    /// The run stays claimed by `worker`, so no other worker starts it while
    /// this one stops it; [`Store::unclaim`] then lets it go (and if the worker
    /// dies first, its lease expiring does). `true` when the run is now queued
    /// and held by `worker`; `false` when `worker` does not hold it or it ended.
    async fn release_claim(&self, id: RunId, worker: &str, reason: &str) -> Result<bool>;
    /// Lets go of a `queued` run `worker` holds, so any worker may claim it at
    /// once; `false` when `worker` does not hold it or it is not queued.
    async fn unclaim(&self, id: RunId, worker: &str) -> Result<bool>;
    /// Who holds a run and until when; `None` when it is not claimed.
    async fn claim_info(&self, id: RunId) -> Result<Option<(String, DateTime<Utc>)>>;

    // ---- durable events and raw lines, shared by every node ----

    /// Stores events (all or none). An event whose `(run, seq)` is already
    /// stored is an error ([`StoreError::is_conflict`]). Writes of every run
    /// are committed together (group commit) and the call returns once its
    /// own are stored; they are then pushed to [`Store::subscribe`]rs.
    async fn append_events(&self, run: RunId, events: &[Event]) -> Result<()>;
    /// `run`'s events as they are stored from now on, by this process or any
    /// other sharing the database, pushed (no polling per watcher): a batch
    /// is sent once it is stored. When this returns, events stored later are
    /// on their way to the receiver, so a watcher subscribes first and then
    /// reads what it missed with [`Store::events_after`]. Delivery is best
    /// effort: a receiver that lags, or gets a batch that does not follow
    /// what it holds, reads the gap from the store.
    async fn subscribe(&self, run: RunId) -> Subscription;
    /// Events with `seq > after_seq`, in order, at most `limit` (0: no limit).
    async fn events_after(&self, run: RunId, after_seq: u64, limit: u32) -> Result<Vec<Event>>;
    /// The highest stored `seq`, 0 when there is none.
    async fn last_event_seq(&self, run: RunId) -> Result<u64>;
    /// Stores raw harness line number `line_no` (from 1); a line number already
    /// stored is an error. NUL characters are replaced by U+FFFD.
    async fn append_raw(&self, run: RunId, line_no: u64, line: &str) -> Result<()>;
    /// Stores raw harness lines `(number, text)` (all or none), as
    /// [`Store::append_raw`] does one.
    async fn append_raw_lines(&self, run: RunId, lines: &[(u64, String)]) -> Result<()>;
    /// Raw lines numbered after `after_line`, in order, at most `limit` (0: no limit).
    async fn raw_after(
        &self,
        run: RunId,
        after_line: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>>;

    // ---- API tokens (the caller hashes: SHA-256, hex) ----

    /// A token hash already stored is an error ([`StoreError::is_conflict`]).
    async fn create_token(
        &self,
        name: &str,
        token_hash: &str,
        scopes: &[Scope],
    ) -> Result<TokenInfo>;
    /// The token with this hash, revoked ones included (`revoked: true`).
    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenInfo>>;
    /// Every token, revoked ones included, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenInfo>>;
    /// Revokes a token; `false` when no token has this id (revoking twice is `true`).
    async fn revoke_token(&self, id: &str) -> Result<bool>;

    // ---- share links: read-only access to one run ----

    /// Records a share link to `run`, by the hash of its secret.
    async fn create_share(&self, run: RunId, link_hash: &str) -> Result<()>;
    /// The run a link gives access to; `None` when unknown or revoked.
    async fn share_by_hash(&self, link_hash: &str) -> Result<Option<RunId>>;
    /// Revokes every live link of a run; returns how many.
    async fn revoke_shares(&self, run: RunId) -> Result<u32>;

    // ---- follow-ups ----

    /// Puts a `succeeded` or `failed` run back to `queued` with `message`
    /// pending (unclaimed, cancel flag, owner, reason and finish time cleared),
    /// atomically, and records the transition. Any other state is
    /// [`StoreError::InvalidTransition`] (to `queued`).
    async fn requeue_for_follow_up(&self, id: RunId, message: &str) -> Result<RunRecord>;
    /// The follow-up message waiting for the run, if any.
    async fn pending_message(&self, id: RunId) -> Result<Option<String>>;
    /// Takes (returns and clears) the pending follow-up message, atomically.
    async fn take_pending_message(&self, id: RunId) -> Result<Option<String>>;

    // ---- retention ----

    /// Records when retention removed the run's `what` (`None`: it is back,
    /// e.g. a follow-up re-created the workspace).
    async fn set_pruned(&self, id: RunId, what: Pruned, at: Option<DateTime<Utc>>) -> Result<()>;
    /// Deletes the run's stored events and raw lines; returns how many rows.
    async fn delete_logs(&self, id: RunId) -> Result<u64>;

    // ---- secrets, sealed by the caller (the store never sees plaintext) ----

    /// Stores or replaces a sealed secret.
    async fn put_secret(&self, name: &str, sealed: &[u8]) -> Result<()>;
    /// Every sealed secret, by name.
    async fn sealed_secrets(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Names and last update times, never values.
    async fn secret_names(&self) -> Result<Vec<(String, DateTime<Utc>)>>;
    /// Removes a secret; false when there was none by that name.
    async fn delete_secret(&self, name: &str) -> Result<bool>;

    // ---- replay protection for signed requests (Slack, GitHub) ----

    /// Records `key` as seen at `now`, to be remembered until `now + keep`;
    /// `true` only for the first caller, on any node, while it is remembered
    /// (atomic: an insert that does nothing when the key is already there).
    /// A key whose time has passed counts as new again. Keys past their time
    /// are pruned as a side effect.
    async fn first_time(
        &self,
        key: &str,
        now: DateTime<Utc>,
        keep: std::time::Duration,
    ) -> Result<bool>;
    /// [`Store::first_time`] and [`Store::create_run`] in one transaction:
    /// the run is created only if `key` is seen for the first time (`None`
    /// when it is not). A signed command acted on once costs one durable
    /// write instead of two.
    async fn create_run_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
        keep: std::time::Duration,
        id: RunId,
        spec: &RunSpec,
    ) -> Result<Option<RunRecord>>;

    // ---- metrics ----

    /// How many runs are in each state: every state, in [`RunState::ALL`] order, zeros included.
    async fn count_by_state(&self) -> Result<Vec<(RunState, u64)>>;
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn connection_troubles_are_unavailable_and_bad_settings_invalid() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
        ] {
            let e = StoreError::from(e);
            assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        }
        let e = StoreError::from(sqlx::Error::Configuration("bad port".into()));
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
        let e = StoreError::from(sqlx::Error::RowNotFound);
        assert!(matches!(e, StoreError::Database(_)), "{e}");
        assert!(StoreError::Conflict("dup".into()).is_conflict());
        assert!(!StoreError::Invalid("fk".into()).is_conflict());
    }
}
