//! The in-memory request log: one entry per HTTP request the scripted model
//! received, with its arrival time and what it was answered with.
//!
//! The log is shared (`Clone` shares one `Arc`), so tests and the server
//! handle can read it while the server keeps appending. Request bodies are not
//! kept: a long-running `mock-model` would otherwise grow without bound.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// What a request was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Scenario step `k` (including `error` steps).
    Step(usize),
    /// The conversation was past the last step (index given): a final "Done.".
    Exhausted(usize),
    /// A side call without tools (e.g. title generation): short plain text.
    Side,
    /// A token-counting request.
    CountTokens,
    /// The request body could not be understood (HTTP 400).
    Rejected,
    /// Unknown endpoint or method (HTTP 404).
    NotFound,
    /// The request lacked the key the server was started to require (HTTP
    /// 401; only with `ScriptedModel::start_requiring_key`).
    Unauthorized,
}

/// One received request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// When the request arrived (before its body was read).
    pub at: Instant,
    /// The HTTP method (e.g. `POST`).
    pub method: String,
    /// The URI path, without the query string (e.g. `/v1/messages`).
    pub path: String,
    /// The scenario step served; `None` for side calls, token counts, the
    /// final "Done." past the last step, and rejected requests.
    pub step: Option<usize>,
    /// What the request was answered with, in more detail than `step`.
    pub served: Served,
    /// HTTP status of the answer.
    pub status: u16,
}

/// Shared, append-only log of received requests.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    entries: Arc<Mutex<Vec<LoggedRequest>>>,
    /// Request bodies, kept only by a log made with [`RequestLog::keeping_bodies`].
    bodies: Option<Arc<Mutex<Vec<String>>>>,
}

impl RequestLog {
    /// An empty log.
    pub fn new() -> RequestLog {
        RequestLog::default()
    }

    /// An empty log that also keeps each request's body (for tests that check
    /// what a harness sent; a long-running server should not keep them).
    pub fn keeping_bodies() -> RequestLog {
        RequestLog {
            bodies: Some(Arc::default()),
            ..RequestLog::default()
        }
    }

    /// Keeps `body` if this log keeps bodies.
    pub fn record_body(&self, body: &[u8]) {
        if let Some(b) = &self.bodies {
            b.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(String::from_utf8_lossy(body).into_owned());
        }
    }

    /// The bodies kept so far (none unless made with [`RequestLog::keeping_bodies`]).
    pub fn bodies(&self) -> Vec<String> {
        match &self.bodies {
            Some(b) => b
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            None => Vec::new(),
        }
    }

    /// Append an entry.
    pub fn record(&self, at: Instant, method: &str, path: &str, served: Served, status: u16) {
        let step = match served {
            Served::Step(k) => Some(k),
            _ => None,
        };
        self.lock().push(LoggedRequest {
            at,
            method: method.to_string(),
            path: path.to_string(),
            step,
            served,
            status,
        });
    }

    /// A copy of every entry so far, in the order the answers were produced.
    pub fn snapshot(&self) -> Vec<LoggedRequest> {
        self.lock().clone()
    }

    /// Number of entries so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no request has been logged yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<LoggedRequest>> {
        // A panic while holding the lock cannot leave the Vec inconsistent
        // (push is the only mutation), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl From<&crate::scenario::Selection<'_>> for Served {
    fn from(s: &crate::scenario::Selection<'_>) -> Self {
        use crate::scenario::Selection;
        match s {
            Selection::Side => Served::Side,
            Selection::Step { index, .. } => Served::Step(*index),
            Selection::Exhausted { index } => Served::Exhausted(*index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_entries_and_step_mirrors_served() {
        let log = RequestLog::new();
        let other = log.clone();
        let t = Instant::now();
        log.record(t, "POST", "/v1/messages", Served::Step(3), 200);
        other.record(t, "POST", "/v1/messages", Served::Side, 200);
        log.record(t, "POST", "/v1/messages", Served::Exhausted(4), 200);
        let snap = other.snapshot();
        assert_eq!(log.len(), 3);
        assert_eq!(
            snap.iter().map(|r| r.step).collect::<Vec<_>>(),
            [Some(3), None, None]
        );
        assert_eq!(snap[2].served, Served::Exhausted(4));
    }
}
