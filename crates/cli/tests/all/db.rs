//! `errand db backup` and `errand db migrate-to`: a store with runs and
//! events, backed up and moved into PostgreSQL with every count equal.

use std::io::Write;
use std::process::Stdio;

use crate::common::*;

/// An SQLite store with three runs and their events (no sandbox needed:
/// the runs are recorded through the store directly).
async fn filled(home: &std::path::Path) -> Vec<errand_core::RunId> {
    use errand_store::Store;
    std::fs::create_dir_all(home).unwrap();
    let store = errand_store::SqliteStore::open(&home.join("errand.db"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3u64 {
        let id = errand_core::RunId::new();
        store
            .create_run(
                id,
                &errand_core::RunSpec::new(format!("p{i}"), "claude-code"),
            )
            .await
            .unwrap();
        let events: Vec<errand_core::Event> = (1..=10 * (i + 1))
            .map(|seq| errand_core::Event {
                seq,
                ts: chrono::Utc::now(),
                source: errand_core::EventSource::Errand,
                raw_line: None,
                kind: errand_core::EventKind::Notice {
                    message: format!("event {seq}"),
                },
            })
            .collect();
        store.append_events(id, &events).await.unwrap();
        ids.push(id);
    }
    store.put_secret("API_KEY", b"sealed").await.unwrap();
    store.close().await;
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_to_moves_runs_and_events_into_postgres_with_equal_counts() {
    let Some(url) = fresh_postgres("migrate_to") else {
        return;
    };
    let env = Env::new();
    let ids = filled(&env.home).await;
    let token = api_token(&env, "ci");
    assert!(!token.is_empty());

    // The URL (with its password) goes in on stdin, never on the command line.
    let mut child = env
        .command(&["db", "migrate-to", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{url}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |table: &str| {
        let t = v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("no {table} in {v:#}"));
        assert_eq!(t["source"], t["target"], "{v:#}");
        t["target"].as_u64().unwrap()
    };
    assert_eq!(count("runs"), 3);
    assert_eq!(count("run_transitions"), 3);
    assert_eq!(count("run_events"), 60);
    assert_eq!(count("api_tokens"), 1);
    assert_eq!(count("secrets"), 1);
    let shown = v["target"].as_str().unwrap();
    assert!(
        !shown.contains(":errand@"),
        "the password is masked: {shown}"
    );

    // errand on the new database sees the same runs and events.
    let moved = Env::new().var("ERRAND_DATABASE_URL", &url);
    let out = moved.run(&["ls", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    for id in &ids {
        assert!(listed.contains(&id.to_string()), "{listed}");
    }
    let pg = errand_store::PgStore::connect(&url).await.unwrap();
    use errand_store::Store;
    assert_eq!(pg.last_event_seq(ids[2]).await.unwrap(), 30);
    pg.close().await;

    // Again into the now full database: refused, nothing changed.
    let mut child = env
        .command(&["db", "migrate-to", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{url}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--replace"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_writes_a_whole_copy_and_keeps_an_existing_file() {
    let env = Env::new();
    let ids = filled(&env.home).await;
    let file = env.dir.path().join("backup.db");
    let path = file.to_string_lossy().into_owned();
    let out = env.run(&["db", "backup", &path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let restored = Env::new().var("ERRAND_DATABASE_URL", &path);
    let out = restored.run(&["show", &ids[1].to_string(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(&file, "keep me").unwrap();
    let out = env.run(&["db", "backup", &path]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    let out = env.run(&["db", "backup", &path, "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(std::fs::read(&file).unwrap(), b"keep me");

    // PostgreSQL has its own tools.
    let pg = Env::new().var("ERRAND_DATABASE_URL", "postgres://u:secret@127.0.0.1:1/db");
    let out = pg.run(&["db", "backup", &path, "--force"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump") && !err.contains("secret"), "{err}");
}
