//! errand-store's behavioural test suite, written once (`cases.rs`) and run on
//! every backend (`backends.rs`): `sqlite::<case>` on a temporary file and
//! `postgres::<case>` on a fresh database of its own.
//!
//! PostgreSQL: `ERRAND_TEST_DATABASE_URL`, else
//! `postgres://errand:errand@127.0.0.1:5432/errand_test` (what `scripts/setup`
//! creates). The role needs CREATEDB: each test creates `errand_test_<random>`
//! and drops it afterwards. When the server is unreachable the PostgreSQL tests
//! fail if `CI` is set, and otherwise print "skipped: PostgreSQL not reachable"
//! and pass.

#![allow(clippy::unwrap_used)]

mod backends;
mod cases;
mod live;
mod moving;

/// Defines `sqlite::<case>` and `postgres::<case>` for each case in `cases`.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::backends::on_sqlite(crate::cases::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::backends::on_postgres(crate::cases::$case).await;
                }
            )*
        }
    };
}

on_every_backend!(
    create_and_read_back,
    find_run_by_prefix_reports_ambiguity,
    transitions_follow_the_state_machine_and_are_recorded,
    concurrent_transitions_of_one_run_let_exactly_one_win,
    cancel_flag_summary_and_owner,
    an_own_run_is_never_claimed_by_a_worker,
    concurrent_runs_move_through_their_states_without_lock_errors,
    list_filters_and_paging,
    runs_are_found_by_requester_and_slack_message,
    count_by_state_covers_every_state,
    claim_next_takes_the_oldest_claimable_run,
    claim_next_under_concurrency_claims_every_run_exactly_once,
    global_limit_is_respected,
    global_limit_holds_under_concurrent_claims,
    per_repo_limit_is_respected,
    renew_lease_only_for_the_holder,
    expired_leases_requeue_queued_runs_and_fail_running_ones,
    release_worker_fails_its_runs_and_unclaims_queued_ones,
    events_append_read_and_reject_duplicates,
    raw_lines_append_read_and_reject_duplicates,
    tokens_create_lookup_list_revoke,
    share_links_create_lookup_revoke,
    follow_up_requeues_only_succeeded_or_failed_runs,
    secrets_are_stored_sealed_listed_without_values_and_deleted,
    pending_message_is_taken_exactly_once,
    replay_keys_are_first_time_once_until_they_expire,
    replay_keys_under_concurrency_are_first_exactly_once,
    create_run_records_one_queued_transition_and_refuses_a_duplicate,
    a_move_no_state_allows_is_an_invalid_transition,
    replay_keys_expire_exactly_at_their_time,
    set_origin_changes_only_the_origin,
    store_errors_are_sorted_into_kinds,
    release_claim_requeues_a_held_run_and_unclaim_lets_any_worker_take_it,
    pruning_is_recorded_and_deletes_only_that_runs_logs,
    concurrent_writes_are_grouped_and_each_answered,
    a_groups_pick_is_claimed_by_exactly_one_run,
    runs_and_replay_keys_created_at_once_are_each_answered,
);

mod urls {
    use errand_core::{RunId, RunSpec};

    #[tokio::test]
    async fn open_url_opens_sqlite_paths_and_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let id = RunId::new();
        {
            let s = errand_store::open_url(path.to_str().unwrap())
                .await
                .unwrap();
            s.create_run(id, &RunSpec::new("p", "claude-code"))
                .await
                .unwrap();
        }
        for url in [
            format!("sqlite://{}", path.display()),
            format!("sqlite:{}?mode=rwc", path.display()),
        ] {
            let s = errand_store::open_url(&url).await.unwrap();
            assert_eq!(s.get_run(id).await.unwrap().spec.prompt, "p", "{url}");
        }
        let mem = errand_store::open_url("sqlite::memory:").await.unwrap();
        assert!(mem.get_run(id).await.is_err());
    }

    /// A store whose connections are closed reports the database unavailable
    /// (the API answers 503), on both backends.
    #[tokio::test]
    async fn a_closed_store_is_unavailable() {
        use errand_store::{Store, StoreError};
        let sqlite = errand_store::SqliteStore::in_memory().await.unwrap();
        sqlite.close().await;
        let err = sqlite.get_run(RunId::new()).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        let Some(db) = crate::backends::TestDb::create().await else {
            return;
        };
        let pg = errand_store::PgStore::connect(&db.url()).await.unwrap();
        pg.close().await;
        let err = pg.get_run(RunId::new()).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        db.drop_db().await;
    }

    #[tokio::test]
    async fn open_url_rejects_unknown_schemes() {
        let err = errand_store::open_url("mysql://localhost/x")
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("mysql"), "{err}");
    }

    #[tokio::test]
    async fn open_url_connects_to_postgres() {
        let Some(db) = crate::backends::TestDb::create().await else {
            return;
        };
        let id = RunId::new();
        {
            let s = errand_store::open_url(&db.url()).await.unwrap();
            s.create_run(id, &RunSpec::new("p", "claude-code"))
                .await
                .unwrap();
        }
        // Reconnecting applies no migration twice and finds the run.
        let s = errand_store::PgStore::connect(&db.url()).await.unwrap();
        assert_eq!(
            errand_store::Store::get_run(&s, id)
                .await
                .unwrap()
                .spec
                .prompt,
            "p"
        );
        s.close().await;
        db.drop_db().await;
    }
}

/// A database made by the release before scopes existed, opened by this one:
/// its tokens keep exactly what they could do then (read and run, not admin).
mod migrations {
    use errand_store::{Scope, Store};
    use sqlx::Connection;

    /// The migrations of `backend` released before token scopes, in a directory.
    fn before_scopes(backend: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        for name in [
            "20261126000001_runs.sql",
            "20261201000001_queue_events_tokens.sql",
            "20261202000001_secrets.sql",
        ] {
            std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
        }
        dir
    }

    const OLD_TOKEN: &str =
        "INSERT INTO api_tokens (id, name, token_hash, created_at) VALUES ('t1', 'old', 'h-old', 0)";

    async fn check(s: &dyn Store) {
        let t = s.token_by_hash("h-old").await.unwrap().unwrap();
        assert_eq!(t.name, "old");
        assert_eq!(t.scopes, [Scope::Read, Scope::Run]);
        assert!(!t.has(Scope::Admin), "an old token must not gain admin");
    }

    #[tokio::test]
    async fn sqlite_tokens_from_before_scopes_keep_read_and_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("errand.db");
        {
            let old = before_scopes("sqlite");
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
            sqlx::migrate::Migrator::new(old.path())
                .await
                .unwrap()
                .run(&mut conn)
                .await
                .unwrap();
            sqlx::query(OLD_TOKEN).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        let s = errand_store::SqliteStore::open(&path).await.unwrap();
        check(&s).await;
    }

    #[tokio::test]
    async fn postgres_tokens_from_before_scopes_keep_read_and_run() {
        let Some(db) = crate::backends::TestDb::create().await else {
            return;
        };
        {
            let old = before_scopes("postgres");
            let mut conn = sqlx::PgConnection::connect_with(&db.options).await.unwrap();
            sqlx::migrate::Migrator::new(old.path())
                .await
                .unwrap()
                .run(&mut conn)
                .await
                .unwrap();
            sqlx::query(OLD_TOKEN).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        let s = errand_store::PgStore::connect(&db.url()).await.unwrap();
        check(&s).await;
        s.close().await;
        db.drop_db().await;
    }
}
