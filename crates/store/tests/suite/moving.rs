//! Backups and moves: an SQLite backup taken while a writer writes, a copy of
//! an SQLite store into PostgreSQL with every table counted, and PostgreSQL
//! migrations run once when many nodes start together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use errand_core::{Event, EventKind, EventSource, RunId, RunSpec, RunState};
use errand_store::{
    backup_sqlite, copy_to_postgres, PgStore, QueueLimits, Scope, SqliteStore, Store, StoreError,
};

use crate::backends::TestDb;

/// A store with a row in every table; returns the run ids.
async fn filled(s: &SqliteStore) -> Vec<RunId> {
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = RunId::new();
        s.create_run(id, &RunSpec::new(format!("p{i}"), "claude-code"))
            .await
            .unwrap();
        ids.push(id);
    }
    s.claim_next("w", Duration::from_secs(60), &QueueLimits::default())
        .await
        .unwrap();
    s.request_cancel(ids[2]).await.unwrap();
    for to in [RunState::Preparing, RunState::Running] {
        s.transition(ids[0], to, None).await.unwrap();
    }
    let events: Vec<Event> = (1..=700)
        .map(|seq| Event {
            seq,
            ts: chrono::Utc::now(),
            source: EventSource::Harness,
            raw_line: Some(seq),
            kind: EventKind::Notice {
                message: format!("line {seq} with \"quotes\" and ünïcode"),
            },
        })
        .collect();
    s.append_events(ids[0], &events).await.unwrap();
    for n in 1..=3 {
        s.append_raw(ids[0], n, &format!("{{\"n\":{n}}}"))
            .await
            .unwrap();
    }
    s.create_token("ci", "ab12", &[Scope::Read, Scope::Admin])
        .await
        .unwrap();
    s.create_share(ids[1], "cd34").await.unwrap();
    s.put_secret("API_KEY", &[0, 1, 2, 255]).await.unwrap();
    s.first_time("slack:cmd:1", chrono::Utc::now(), Duration::from_secs(600))
        .await
        .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sqlite_store_moves_into_postgres_with_every_table_counted() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = SqliteStore::open(&dir.path().join("errand.db"))
        .await
        .unwrap();
    let ids = filled(&src).await;
    let dst = PgStore::connect_with(db.options.clone()).await.unwrap();

    let counts = copy_to_postgres(&src, &dst, false).await;
    let counts: BTreeMap<String, (u64, u64)> = counts
        .unwrap()
        .into_iter()
        .map(|c| (c.table, (c.source, c.target)))
        .collect();
    for (table, rows) in [
        ("runs", 3),
        ("run_transitions", 5),
        ("run_events", 700),
        ("run_raw_lines", 3),
        ("api_tokens", 1),
        ("share_links", 1),
        ("secrets", 1),
        ("replay_keys", 1),
    ] {
        assert_eq!(
            counts.get(table),
            Some(&(rows, rows)),
            "{table}: {counts:?}"
        );
    }

    // What the target holds reads back as the source does.
    for id in &ids {
        let (a, b) = (
            src.get_run(*id).await.unwrap(),
            dst.get_run(*id).await.unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(
            src.transitions(*id).await.unwrap(),
            dst.transitions(*id).await.unwrap()
        );
        assert_eq!(
            src.claim_info(*id).await.unwrap(),
            dst.claim_info(*id).await.unwrap()
        );
    }
    assert!(dst.get_run(ids[2]).await.unwrap().cancel_requested);
    assert_eq!(
        src.events_after(ids[0], 0, 0).await.unwrap(),
        dst.events_after(ids[0], 0, 0).await.unwrap()
    );
    assert_eq!(dst.raw_after(ids[0], 0, 0).await.unwrap().len(), 3);
    assert_eq!(
        dst.sealed_secrets().await.unwrap(),
        vec![("API_KEY".to_string(), vec![0, 1, 2, 255])]
    );
    let token = dst.token_by_hash("ab12").await.unwrap().unwrap();
    assert_eq!(token.scopes, [Scope::Read, Scope::Admin]);
    assert_eq!(dst.share_by_hash("cd34").await.unwrap(), Some(ids[1]));
    let again = dst
        .first_time("slack:cmd:1", chrono::Utc::now(), Duration::from_secs(600))
        .await
        .unwrap();
    assert!(!again, "a replay key moved with the rest");

    // A target with rows is refused unless it is to be replaced.
    let err = copy_to_postgres(&src, &dst, false).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    src.create_run(RunId::new(), &RunSpec::new("later", "claude-code"))
        .await
        .unwrap();
    let counts = copy_to_postgres(&src, &dst, true).await.unwrap();
    let runs = counts.iter().find(|c| c.table == "runs").unwrap();
    assert_eq!((runs.source, runs.target), (4, 4));
    assert_eq!(dst.list_runs(&Default::default()).await.unwrap().len(), 4);

    dst.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_sqlite_backup_taken_while_a_writer_writes_opens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let src = Arc::new(
        SqliteStore::open(&dir.path().join("errand.db"))
            .await
            .unwrap(),
    );
    filled(&src).await;
    let writer = {
        let src = src.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let id = RunId::new();
                src.create_run(id, &RunSpec::new(format!("w{i}"), "claude-code"))
                    .await
                    .unwrap();
                src.transition(id, RunState::Cancelled, Some("x"))
                    .await
                    .unwrap();
            }
        })
    };
    let dest = dir.path().join("backup.db");
    backup_sqlite(&src, &dest, false).await.unwrap();
    writer.await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A snapshot: every run in it has all its transitions.
    let copy = SqliteStore::open(&dest).await.unwrap();
    let runs = copy
        .list_runs(&errand_store::RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(runs.len() >= 3, "{}", runs.len());
    for r in &runs {
        let ts = copy.transitions(r.id).await.unwrap();
        assert_eq!(ts.last().unwrap().state, r.state, "{r:?}");
    }
    assert_eq!(copy.sealed_secrets().await.unwrap().len(), 1);

    // An existing file is kept unless overwriting is asked for.
    let err = backup_sqlite(&src, &dest, false).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    backup_sqlite(&src, &dest, true).await.unwrap();
    let copy = SqliteStore::open(&dest).await.unwrap();
    assert_eq!(
        copy.list_runs(&errand_store::RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        203
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_together_on_a_new_postgres_database_migrate_it_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let mut starts = Vec::new();
    for _ in 0..8 {
        let opts = db.options.clone();
        starts.push(tokio::spawn(
            async move { PgStore::connect_with(opts).await },
        ));
    }
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every node starts"));
    }
    // Each migration recorded once, and the schema works from every node.
    let url = db.url();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, COUNT(*) FROM _sqlx_migrations GROUP BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(rows.len(), migrations);
    assert!(rows.iter().all(|(_, n)| *n == 1), "{rows:?}");
    for s in &stores {
        s.create_run(RunId::new(), &RunSpec::new("p", "claude-code"))
            .await
            .unwrap();
    }
    assert_eq!(
        stores[0]
            .list_runs(&Default::default())
            .await
            .unwrap()
            .len(),
        8
    );
    for s in &stores {
        s.close().await;
    }
    drop(conn);
    db.drop_db().await;
}
