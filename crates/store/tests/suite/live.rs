//! Pushed events ([`Store::subscribe`]): what one process stores reaches its
//! own watchers at once, and what another process stores in the same
//! database (another node on PostgreSQL, an `errand run` beside `errand
//! serve` on SQLite) reaches them too, woken by the database, exactly once
//! and in order. Two stores opened on one database play the two processes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use errand_core::{Event, EventKind, EventSource, RunId, RunSpec};
use errand_store::{PgStore, SqliteStore, Store, Subscription};

fn event(seq: u64) -> Event {
    Event {
        seq,
        ts: Utc::now(),
        source: EventSource::Errand,
        raw_line: None,
        kind: EventKind::Notice {
            message: format!("event {seq}"),
        },
    }
}

fn events(range: std::ops::RangeInclusive<u64>) -> Vec<Event> {
    range.map(event).collect()
}

/// The seqs received until `want` arrives (or a generous limit passes).
async fn receive_until(rx: &mut Subscription, want: u64) -> Vec<u64> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.last() != Some(&want) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(batch)) => got.extend(batch.iter().map(|e| e.seq)),
            Ok(Err(e)) => panic!("receiving: {e} after {got:?}"),
            Err(_) => panic!("nothing pushed for seq {want}; got {got:?}"),
        }
    }
    got
}

async fn pushes_what_any_process_stores(here: Arc<dyn Store>, there: Arc<dyn Store>) {
    let run = RunId::new();
    let other = RunId::new();
    here.create_run(run, &RunSpec::new("p", "claude-code"))
        .await
        .unwrap();
    here.create_run(other, &RunSpec::new("o", "claude-code"))
        .await
        .unwrap();
    let mut rx = here.subscribe(run).await;

    // Stored by this process: pushed at once.
    here.append_events(run, &events(1..=2)).await.unwrap();
    assert_eq!(receive_until(&mut rx, 2).await, [1, 2]);

    // Stored by another process: the database wakes this one.
    there.append_events(run, &events(3..=4)).await.unwrap();
    assert_eq!(receive_until(&mut rx, 4).await, [3, 4]);

    // A refused batch is not pushed; another run's events are not pushed
    // to this run's watcher.
    assert!(here
        .append_events(run, &[event(5), event(4)])
        .await
        .unwrap_err()
        .is_conflict());
    there.append_events(other, &events(1..=3)).await.unwrap();
    here.append_events(run, &events(5..=5)).await.unwrap();
    assert_eq!(receive_until(&mut rx, 5).await, [5]);

    // Many at once from the other process (more than one read's worth), in
    // order, none twice, interleaved with this process's own.
    there.append_events(run, &events(6..=1305)).await.unwrap();
    let got = receive_until(&mut rx, 1305).await;
    assert_eq!(got, (6..=1305).collect::<Vec<_>>());
    here.append_events(run, &events(1306..=1306)).await.unwrap();
    assert_eq!(receive_until(&mut rx, 1306).await, [1306]);
    // Nothing else is waiting: no duplicate of anything sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "a batch was pushed twice");

    // A watcher of a run nobody writes gets nothing.
    let mut quiet = there.subscribe(RunId::new()).await;
    there.append_events(other, &events(4..=4)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(quiet.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_pushes_what_any_process_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("errand.db");
    let here = SqliteStore::open(&path).await.unwrap();
    let there = SqliteStore::open(&path).await.unwrap();
    pushes_what_any_process_stores(Arc::new(here), Arc::new(there)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_pushes_what_any_node_stores() {
    let Some(db) = crate::backends::TestDb::create().await else {
        return;
    };
    let here = PgStore::connect_with(db.options.clone()).await.unwrap();
    let there = PgStore::connect_with(db.options.clone()).await.unwrap();
    let outcome = tokio::spawn(pushes_what_any_process_stores(
        Arc::new(here.clone()),
        Arc::new(there.clone()),
    ))
    .await;
    here.close().await;
    there.close().await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
