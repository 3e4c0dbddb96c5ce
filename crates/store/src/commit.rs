//! Group commit: every run's events and raw lines, new runs and the replay
//! keys of signed requests go through one writer task per store, which
//! stores whatever is waiting, from every caller, in one transaction.
//!
//! A run's pump hands its batch over and waits for the answer, so the
//! promise is the same as one transaction per call: when `append_events`
//! returns `Ok`, the events are stored (and only then pushed to watchers).
//! What differs is the cost: 1000 runs writing at once take a handful of
//! commits (each one a sync to disk) instead of 1000, and 64 Slack commands
//! acknowledged at once wait for a few syncs, not 128. The writer does not
//! wait to fill a group: while one transaction commits, the next group
//! gathers. When a group fails (one run's duplicate `seq`, say), each of its
//! writes is tried again alone, so every caller gets its own answer.

use std::sync::{Mutex, PoisonError};

use errand_core::{Event, RunId};
use tokio::sync::{mpsc, oneshot};

use crate::Result;

/// Rows per group: enough to amortise a commit, small enough to keep the
/// first caller's wait short.
pub(crate) const GROUP_ROWS: usize = 5000;

/// What one caller writes for one run.
pub(crate) enum Rows {
    /// Events, consecutive, in order.
    Events(Vec<Event>),
    /// Raw harness lines: number and text.
    Raw(Vec<(u64, String)>),
    /// A new queued run and its first transition.
    NewRun(NewRun),
    /// The run's origin (where it reports back), set in its spec; the
    /// answer says whether the run was there.
    Origin(String),
    /// A signed request's replay key: recorded unless it is still
    /// remembered (the answer says whether this is its first time).
    ReplayKey(ReplayKey),
}

/// The columns of a new run (the run's id is the write's).
pub(crate) struct NewRun {
    pub(crate) spec_json: String,
    pub(crate) repo: Option<String>,
    pub(crate) harness: String,
    pub(crate) model: Option<String>,
    /// Unix ms.
    pub(crate) created_at: i64,
    pub(crate) claimed_by: Option<String>,
    /// A replay key to record first: the run is created only if it is new.
    pub(crate) once: Option<ReplayKey>,
}

/// A signed request's replay key (all times unix ms).
pub(crate) struct ReplayKey {
    pub(crate) key: String,
    pub(crate) now: i64,
    pub(crate) expires: i64,
}

impl ReplayKey {
    /// `key`, seen at `now`, remembered for `keep`.
    pub(crate) fn new(
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
        keep: std::time::Duration,
    ) -> Self {
        ReplayKey {
            key: key.to_string(),
            now: crate::common::millis(now),
            expires: crate::common::expiry(now, keep),
        }
    }
}

impl Rows {
    pub(crate) fn len(&self) -> usize {
        match self {
            Rows::Events(e) => e.len(),
            Rows::Raw(r) => r.len(),
            Rows::NewRun(_) | Rows::Origin(_) | Rows::ReplayKey(_) => 1,
        }
    }
}

/// One caller's write and where its answer goes: whether it changed the
/// store (`false` only for a replay key still remembered, a run whose key
/// is, or an origin for a run that is not there).
pub(crate) struct Write {
    pub(crate) run: RunId,
    pub(crate) rows: Rows,
    pub(crate) done: oneshot::Sender<Result<bool>>,
}

/// The way to a store's writer task, started by the first write.
#[derive(Default)]
pub(crate) struct Writer {
    tx: Mutex<Option<mpsc::UnboundedSender<Write>>>,
}

impl Writer {
    /// Hands `write` to the writer task, calling `start` with a new queue
    /// when none runs (the first write, or the task ended with its runtime).
    pub(crate) fn send(&self, write: Write, start: impl FnOnce(mpsc::UnboundedReceiver<Write>)) {
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let write = match tx.as_ref() {
            Some(sender) => match sender.send(write) {
                Ok(()) => return,
                Err(mpsc::error::SendError(w)) => w,
            },
            None => write,
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        // The receiver is alive until `start` hands it over.
        let _ = sender.send(write);
        *tx = Some(sender);
        start(receiver);
    }
}

/// Takes the next group from the queue: the first write waiting (waiting for
/// one if none is), then whatever else is already there, up to
/// [`GROUP_ROWS`] rows. `None` when the queue is closed (the store is gone).
pub(crate) async fn next_group(rx: &mut mpsc::UnboundedReceiver<Write>) -> Option<Vec<Write>> {
    let first = rx.recv().await?;
    let mut rows = first.rows.len();
    let mut group = vec![first];
    while rows < GROUP_ROWS {
        match rx.try_recv() {
            Ok(w) => {
                rows += w.rows.len();
                group.push(w);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(n: usize) -> (Write, oneshot::Receiver<Result<bool>>) {
        let (done, rx) = oneshot::channel();
        let w = Write {
            run: RunId::new(),
            rows: Rows::Raw((0..n as u64).map(|i| (i + 1, String::new())).collect()),
            done,
        };
        (w, rx)
    }

    #[tokio::test]
    async fn groups_what_waits_up_to_a_bound_and_restarts_a_dead_writer() {
        let writer = Writer::default();
        let mut started = Vec::new();
        let mut answers = Vec::new();
        for n in [1, 2, GROUP_ROWS, 7] {
            let (w, a) = write(n);
            answers.push(a);
            writer.send(w, |rx| started.push(rx));
        }
        assert_eq!(started.len(), 1, "one writer for every write");
        let mut rx = started.pop().unwrap();
        let g = next_group(&mut rx).await.unwrap();
        assert_eq!(
            g.iter().map(|w| w.rows.len()).collect::<Vec<_>>(),
            [1, 2, GROUP_ROWS],
            "a group stops once it holds enough rows"
        );
        let g2 = next_group(&mut rx).await.unwrap();
        assert_eq!(g2.len(), 1);
        // The writer task ended (its runtime went away): the next write
        // starts another instead of being lost.
        drop(rx);
        let (w, _a) = write(1);
        writer.send(w, |rx| started.push(rx));
        assert_eq!(started.len(), 1);
        assert_eq!(next_group(&mut started[0]).await.unwrap().len(), 1);
    }
}
