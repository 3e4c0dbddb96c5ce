//! Events pushed to whoever watches a run, instead of watchers polling the
//! store.
//!
//! Each store holds one [`Live`] hub. A watcher ([`crate::Store::subscribe`])
//! gets a broadcast receiver for one run; [`Live::publish`] hands it every
//! batch of that run's events once the batch is stored (never before: an
//! event a client receives is durable). Events this process stores are
//! published by `append_events` itself; events other processes store (other
//! nodes on PostgreSQL, an `errand run` beside `errand serve` on SQLite) are
//! published by the store's watcher task, woken by the database
//! (`LISTEN/NOTIFY` on PostgreSQL, the table's growing rowid on SQLite), which
//! reads only what the hub has not published yet.
//!
//! Delivery is best effort, exactness is the receiver's: a receiver that lags
//! behind, or sees a batch that does not start right after what it holds,
//! reads the gap from the store (see `errand_server::sse`). A batch never
//! repeats an event the hub already published for the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use errand_core::{Event, RunId};
use tokio::sync::broadcast;

/// Consecutive events of one run, in order, as stored.
pub type Batch = Arc<[Event]>;

/// A run's events as they are stored from the moment of subscribing.
pub type Subscription = broadcast::Receiver<Batch>;

/// The PostgreSQL channel `append_events` notifies on commit, with the
/// payload `RUN_ID FIRST_SEQ LAST_SEQ`.
pub(crate) const PG_CHANNEL: &str = "errand_events";

/// A [`PG_CHANNEL`] payload: events `first..=last` of `run` were stored by
/// the hub `origin` ([`Live::id`]).
pub(crate) fn notice(run: RunId, first: u64, last: u64, origin: &str) -> String {
    format!("{run} {first} {last} {origin}")
}

/// A parsed [`PG_CHANNEL`] payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Notice<'a> {
    pub run: RunId,
    pub first: u64,
    pub last: u64,
    /// The hub whose writer stored them; `None` from a node that does not say
    /// (errand before the origin was added).
    pub origin: Option<&'a str>,
}

/// Parses a [`PG_CHANNEL`] payload ([`notice`], or the older form without the origin).
pub(crate) fn parse_notice(payload: &str) -> Option<Notice<'_>> {
    let mut parts = payload.split(' ');
    let run = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    let origin = parts.next();
    (parts.next().is_none() && first <= last).then_some(Notice {
        run,
        first,
        last,
        origin,
    })
}

/// Where a watcher resumes publishing `run` when the database says events
/// `first..` were stored: after what was published, or, when nothing was yet
/// (the watcher does not know what the subscribers read themselves), right
/// before the new ones.
pub(crate) fn resume_after(published: u64, first: u64) -> u64 {
    if published > 0 {
        published
    } else {
        first.saturating_sub(1)
    }
}

/// Batches a slow receiver may fall behind by before it lags (and reads the
/// store instead).
const CAPACITY: usize = 256;

/// The hub of one store: per watched run, a broadcast channel and the last
/// sequence number published on it.
pub(crate) struct Live {
    /// This hub's random name, carried in its writer's notices so its own
    /// watcher skips them: what this process stored it publishes itself.
    pub(crate) id: String,
    runs: Mutex<HashMap<RunId, Entry>>,
    /// Whether the store's watcher task is running.
    watching: AtomicBool,
    /// Whether the watcher is ready: anything stored from now on reaches it.
    primed: tokio::sync::watch::Sender<bool>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            id: uuid::Uuid::new_v4().simple().to_string(),
            runs: Mutex::default(),
            watching: AtomicBool::new(false),
            primed: tokio::sync::watch::channel(false).0,
        }
    }
}

struct Entry {
    tx: broadcast::Sender<Batch>,
    /// The highest `seq` published for the run (0: none yet).
    published: u64,
}

impl Live {
    /// A receiver of `run`'s batches from now on.
    pub(crate) fn subscribe(&self, run: RunId) -> Subscription {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.entry(run)
            .or_insert_with(|| Entry {
                tx: broadcast::channel(CAPACITY).0,
                published: 0,
            })
            .tx
            .subscribe()
    }

    /// Sends the events of `run` that are newer than what was published for
    /// it, when anyone watches it. `events` are consecutive and stored.
    pub(crate) fn publish(&self, run: RunId, events: &[Event]) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = runs.get_mut(&run) else {
            return;
        };
        if entry.tx.receiver_count() == 0 {
            runs.remove(&run);
            return;
        }
        let fresh: Vec<Event> = events
            .iter()
            .filter(|e| e.seq > entry.published)
            .cloned()
            .collect();
        let Some(last) = fresh.last() else {
            return;
        };
        entry.published = last.seq;
        // No receiver left between the check and here is harmless.
        let _ = entry.tx.send(fresh.into());
    }

    /// The runs someone watches, with what was published for each (0: none
    /// yet). Forgets runs nobody watches any more.
    pub(crate) fn watched(&self) -> Vec<(RunId, u64)> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.retain(|_, e| e.tx.receiver_count() > 0);
        runs.iter().map(|(id, e)| (*id, e.published)).collect()
    }

    /// What was published for `run`, when someone watches it.
    pub(crate) fn published(&self, run: RunId) -> Option<u64> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.get(&run)
            .filter(|e| e.tx.receiver_count() > 0)
            .map(|e| e.published)
    }

    /// Marks the watcher task as started; `true` for the caller that must
    /// start it (one runs per hub, for as long as the hub lives).
    pub(crate) fn start_watching(&self) -> bool {
        !self.watching.swap(true, Ordering::AcqRel)
    }

    /// Called by the watcher once the database will wake it for anything
    /// stored from now on (it listens, or it noted where the table ends).
    pub(crate) fn set_primed(&self) {
        self.primed.send_replace(true);
    }

    /// Called by a watcher that gave up (the database is gone): the next
    /// subscriber starts another.
    pub(crate) fn watcher_stopped(&self) {
        self.primed.send_replace(false);
        self.watching.store(false, Ordering::Release);
    }

    /// Waits, at most `limit`, for the watcher to be primed; a watcher that
    /// cannot start (the database is down) must not hold up a subscriber,
    /// whose own reads of the store cover what it would have sent.
    pub(crate) async fn wait_primed(&self, limit: std::time::Duration) {
        let mut rx = self.primed.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|p| *p)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use errand_core::{EventKind, EventSource};

    fn ev(_run: RunId, seq: u64) -> Event {
        Event {
            seq,
            ts: Utc::now(),
            source: EventSource::Errand,
            raw_line: None,
            kind: EventKind::Notice {
                message: format!("e{seq}"),
            },
        }
    }

    #[test]
    fn notices_name_their_hub_and_older_ones_still_parse() {
        let run = RunId::new();
        let a = Live::default();
        assert_ne!(a.id, Live::default().id, "each hub has its own name");
        let n = notice(run, 3, 7, &a.id);
        let parsed = parse_notice(&n).expect("parses");
        assert_eq!((parsed.run, parsed.first, parsed.last), (run, 3, 7));
        assert_eq!(parsed.origin, Some(a.id.as_str()));
        let older = format!("{run} 3 7");
        let old = parse_notice(&older).expect("the older form parses");
        assert_eq!(old.origin, None);
        assert_eq!(
            parse_notice(&format!("{run} 7 3 x")),
            None,
            "first after last"
        );
        assert_eq!(
            parse_notice(&format!("{run} 3 7 x y")),
            None,
            "too many parts"
        );
        assert_eq!(parse_notice("nonsense 1 2"), None);
    }

    #[test]
    fn publishes_only_what_is_new_and_only_to_watchers() {
        let live = Live::default();
        let run = RunId::new();
        // Nobody watches: nothing is kept.
        live.publish(run, &[ev(run, 1)]);
        assert!(live.watched().is_empty());
        let mut rx = live.subscribe(run);
        live.publish(run, &[ev(run, 1), ev(run, 2)]);
        // The same events again (a watcher task reading what this process
        // published) and one new one: only the new one is sent.
        live.publish(run, &[ev(run, 2), ev(run, 3)]);
        let a = rx.try_recv().unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let b = rx.try_recv().unwrap();
        assert_eq!(b.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        assert!(rx.try_recv().is_err());
        assert_eq!(live.published(run), Some(3));
        drop(rx);
        assert_eq!(live.published(run), None);
        assert!(live.watched().is_empty());
    }

    #[tokio::test]
    async fn one_watcher_at_a_time_and_subscribers_wait_until_it_is_primed() {
        let live = Arc::new(Live::default());
        assert!(live.start_watching());
        assert!(!live.start_watching());
        let waiting = tokio::spawn({
            let live = live.clone();
            async move { live.wait_primed(std::time::Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        live.set_primed();
        waiting.await.unwrap();
        live.watcher_stopped();
        assert!(live.start_watching(), "a stopped watcher is started again");
        // A watcher that never primes holds nobody up past the limit given
        // (the outer limit only detects a hang).
        tokio::time::timeout(
            std::time::Duration::from_secs(300),
            live.wait_primed(std::time::Duration::from_millis(50)),
        )
        .await
        .expect("a subscriber waited for a watcher that never primes");
    }
}
