//! errand's persistence.
//!
//! * [`Store`]: runs and their state changes, behind a trait so that the SQLite
//!   backend ([`SqliteStore`], the embedded default) and a PostgreSQL backend share
//!   one interface and one test suite.
//! * [`EventLog`]: one append-only JSONL file of normalized events per run, and
//!   [`RawLog`] beside it with the harness's own lines; both are written a whole
//!   line at a time and read so that a torn final line (a crash mid-write) is
//!   ignored, never fatal.

mod eventlog;
mod sqlite;

pub use eventlog::{read_events, read_raw_lines, EventLog, LogTail, RawLog};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use errand_core::{InvalidTransition, RunId, RunRecord, RunState, RunSummary, Transition};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no run matches '{0}'")]
    NotFound(String),
    #[error("'{0}' matches more than one run; give more characters of the id")]
    Ambiguous(String),
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("event log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Filters for [`Store::list_runs`].
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub state: Option<RunState>,
    pub limit: u32,
}

/// Where runs live. Every method is atomic on its own.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts a new run in state `queued`, recording that transition.
    async fn create_run(&self, id: RunId, spec: &errand_core::RunSpec) -> Result<RunRecord>;
    async fn get_run(&self, id: RunId) -> Result<RunRecord>;
    /// Finds a run by its full id or a unique prefix of it (as printed by `errand ls`).
    async fn find_run(&self, id_or_prefix: &str) -> Result<RunRecord>;
    /// Newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// Moves a run to `to` if the state machine allows it from its current state,
    /// atomically (compare-and-set), and records the transition.
    async fn transition(&self, id: RunId, to: RunState, reason: Option<&str>) -> Result<RunRecord>;
    async fn transitions(&self, id: RunId) -> Result<Vec<Transition>>;
    async fn update_summary(&self, id: RunId, summary: &RunSummary) -> Result<()>;
    /// Marks a run for cancellation; the process executing it notices and stops it.
    async fn request_cancel(&self, id: RunId) -> Result<RunRecord>;
    async fn set_owner(&self, id: RunId, pid: Option<u32>) -> Result<()>;
}
