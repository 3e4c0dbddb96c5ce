//! The behaviour every backend must have. Each case gets a fresh, empty store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use errand_core::{
    Event, EventKind, EventSource, RepoSource, RunId, RunSpec, RunState, RunSummary,
};
use errand_store::{QueueLimits, RunFilter, Scope, Store, StoreError, LEASE_EXPIRED_REASON};

const LEASE: Duration = Duration::from_secs(60);

fn spec(prompt: &str) -> RunSpec {
    RunSpec::new(prompt, "claude-code")
}

fn spec_in(repo: &str) -> RunSpec {
    let mut s = spec("p");
    s.repo = Some(RepoSource::Local(repo.into()));
    s
}

async fn new_run(s: &Arc<dyn Store>, spec: &RunSpec) -> RunId {
    let id = RunId::new();
    s.create_run(id, spec).await.unwrap();
    // Distinct creation times (milliseconds), so "oldest first" is well defined.
    tokio::time::sleep(Duration::from_millis(3)).await;
    id
}

async fn run_to(s: &Arc<dyn Store>, id: RunId, last: RunState) {
    for st in [
        RunState::Preparing,
        RunState::Running,
        RunState::Finishing,
        RunState::Succeeded,
    ] {
        if st == RunState::Succeeded && last == RunState::Failed {
            s.transition(id, RunState::Failed, Some("broke"))
                .await
                .unwrap();
            return;
        }
        s.transition(id, st, None).await.unwrap();
        if st == last {
            return;
        }
    }
}

fn states(ts: &[errand_core::Transition]) -> Vec<RunState> {
    ts.iter().map(|t| t.state).collect()
}

fn no_limits() -> QueueLimits {
    QueueLimits::default()
}

pub async fn create_and_read_back(s: Arc<dyn Store>) {
    let id = RunId::new();
    let mut sp = spec("fix it");
    sp.repo = Some(RepoSource::Url("https://host/o/r.git".into()));
    sp.model = Some("m".into());
    sp.group = Some("g".into());
    let rec = s.create_run(id, &sp).await.unwrap();
    assert_eq!(rec.state, RunState::Queued);
    assert_eq!(rec.spec, sp);
    assert!(!rec.cancel_requested);
    assert_eq!(rec.owner_pid, None);
    assert!(rec.started_at.is_none() && rec.finished_at.is_none());
    assert_eq!(s.get_run(id).await.unwrap(), rec);
    assert_eq!(s.find_run(&id.short()).await.unwrap().id, id);
    assert_eq!(
        s.find_run(&id.to_string().to_uppercase()).await.unwrap().id,
        id
    );
    assert_eq!(
        s.find_run(&id.0.hyphenated().to_string()).await.unwrap().id,
        id
    );
    assert!(matches!(
        s.find_run("zz").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(s.find_run("").await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        s.get_run(RunId::new()).await,
        Err(StoreError::NotFound(_))
    ));
    let ts = s.transitions(id).await.unwrap();
    assert_eq!(states(&ts), [RunState::Queued]);
    // The same id twice is refused.
    assert!(s.create_run(id, &sp).await.is_err());
}

pub async fn find_run_by_prefix_reports_ambiguity(s: Arc<dyn Store>) {
    let a: RunId = "abcdef01000040008000000000000001".parse().unwrap();
    let b: RunId = "abcdef02000040008000000000000002".parse().unwrap();
    s.create_run(a, &spec("a")).await.unwrap();
    s.create_run(b, &spec("b")).await.unwrap();
    assert!(matches!(
        s.find_run("abcdef").await,
        Err(StoreError::Ambiguous(_))
    ));
    assert_eq!(s.find_run("abcdef01").await.unwrap().id, a);
    assert_eq!(s.find_run("ABCDEF02").await.unwrap().id, b);
    // LIKE wildcards are not hex digits, so they match nothing.
    assert!(matches!(
        s.find_run("abc%").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn transitions_follow_the_state_machine_and_are_recorded(s: Arc<dyn Store>) {
    let id = new_run(&s, &spec("p")).await;
    let rec = s.transition(id, RunState::Preparing, None).await.unwrap();
    assert!(rec.started_at.is_some() && rec.finished_at.is_none());
    let err = s
        .transition(id, RunState::Succeeded, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition(_)), "{err}");
    let rec = s
        .transition(id, RunState::Failed, Some("clone failed"))
        .await
        .unwrap();
    assert_eq!(rec.state, RunState::Failed);
    assert_eq!(rec.reason.as_deref(), Some("clone failed"));
    assert!(rec.started_at.is_some() && rec.finished_at.is_some());
    let ts = s.transitions(id).await.unwrap();
    assert_eq!(
        states(&ts),
        [RunState::Queued, RunState::Preparing, RunState::Failed]
    );
    assert_eq!(ts[2].reason.as_deref(), Some("clone failed"));
    assert!(ts.windows(2).all(|w| w[0].at <= w[1].at));
    let err = s
        .transition(id, RunState::Cancelled, None)
        .await
        .unwrap_err();
    match err {
        StoreError::InvalidTransition(t) => {
            assert_eq!((t.from, t.to), (RunState::Failed, RunState::Cancelled));
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        s.transition(RunId::new(), RunState::Preparing, None).await,
        Err(StoreError::NotFound(_))
    ));
    // The happy path, to the end.
    let id = new_run(&s, &spec("q")).await;
    run_to(&s, id, RunState::Succeeded).await;
    assert_eq!(s.transitions(id).await.unwrap().len(), 5);
    assert!(s.transition(id, RunState::Queued, None).await.is_err());
}

pub async fn concurrent_transitions_of_one_run_let_exactly_one_win(s: Arc<dyn Store>) {
    let id = new_run(&s, &spec("p")).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let to = if i % 2 == 0 {
                RunState::Preparing
            } else {
                RunState::Cancelled
            };
            s.transition(id, to, None).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::InvalidTransition(_)) => {}
            // Preparing → Cancelled is allowed, so a cancel may land after a prepare.
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let ts = s.transitions(id).await.unwrap();
    assert_eq!(ts.len(), 1 + won, "every success recorded once");
    let seqs: Vec<_> = states(&ts);
    assert_eq!(seqs[0], RunState::Queued);
    assert!((1..=2).contains(&won), "won {won}: {seqs:?}");
}

pub async fn cancel_flag_summary_and_owner(s: Arc<dyn Store>) {
    let a = new_run(&s, &spec("a")).await;
    assert!(s.request_cancel(a).await.unwrap().cancel_requested);
    let sum = RunSummary {
        cost_usd: Some(0.25),
        branch: Some("errand/x".into()),
        turns: Some(3),
        tests_passed: Some(true),
        ..Default::default()
    };
    s.update_summary(a, &sum).await.unwrap();
    assert_eq!(s.get_run(a).await.unwrap().summary, sum);
    s.set_owner(a, Some(4242)).await.unwrap();
    assert_eq!(s.get_run(a).await.unwrap().owner_pid, Some(4242));
    s.set_owner(a, None).await.unwrap();
    assert_eq!(s.get_run(a).await.unwrap().owner_pid, None);
    assert!(matches!(
        s.request_cancel(RunId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn concurrent_runs_move_through_their_states_without_lock_errors(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let id = RunId::new();
            s.create_run(id, &spec("p")).await?;
            for st in [
                RunState::Preparing,
                RunState::Running,
                RunState::Finishing,
                RunState::Succeeded,
            ] {
                s.transition(id, st, None).await?;
                s.set_owner(id, Some(1)).await?;
                s.update_summary(id, &RunSummary::default()).await?;
                let seq = s.last_event_seq(id).await?;
                s.append_events(id, &[event(seq + 1, "x")]).await?;
            }
            Ok::<_, StoreError>(id)
        }));
    }
    for t in tasks {
        let id = t.await.unwrap().unwrap();
        assert_eq!(s.get_run(id).await.unwrap().state, RunState::Succeeded);
        assert_eq!(s.transitions(id).await.unwrap().len(), 5);
        assert_eq!(s.last_event_seq(id).await.unwrap(), 4);
    }
}

pub async fn list_filters_and_paging(s: Arc<dyn Store>) {
    let mut codex = spec_in("/src/a");
    codex.harness = "codex".into();
    codex.group = Some("g1".into());
    let mut claude_a = spec_in("/src/a");
    claude_a.group = Some("g1".into());
    let a1 = new_run(&s, &claude_a).await;
    let a2 = new_run(&s, &codex).await;
    let b1 = new_run(&s, &spec_in("/src/b")).await;
    let n1 = new_run(&s, &spec("none")).await;
    s.transition(b1, RunState::Cancelled, Some("by user"))
        .await
        .unwrap();

    let ids = |v: Vec<errand_core::RunRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = s.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(ids(all), [n1, b1, a2, a1], "newest first");
    let queued = s
        .list_runs(&RunFilter {
            state: Some(RunState::Queued),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(queued), [n1, a2, a1]);
    let in_a = RunFilter {
        repo: Some("/src/a".into()),
        ..Default::default()
    };
    assert_eq!(ids(s.list_runs(&in_a).await.unwrap()), [a2, a1]);
    let codex_in_a = RunFilter {
        harness: Some("codex".into()),
        ..in_a.clone()
    };
    assert_eq!(ids(s.list_runs(&codex_in_a).await.unwrap()), [a2]);
    let claude = RunFilter {
        harness: Some("claude-code".into()),
        ..Default::default()
    };
    assert_eq!(ids(s.list_runs(&claude).await.unwrap()), [n1, b1, a1]);
    let nothing = RunFilter {
        repo: Some("/src/a".into()),
        state: Some(RunState::Cancelled),
        ..Default::default()
    };
    assert!(s.list_runs(&nothing).await.unwrap().is_empty());
    let group = |g: &str| RunFilter {
        group: Some(g.into()),
        ..Default::default()
    };
    assert_eq!(ids(s.list_runs(&group("g1")).await.unwrap()), [a2, a1]);
    assert!(s.list_runs(&group("g2")).await.unwrap().is_empty());

    // Paging walks the same order without overlap.
    let page = |offset| RunFilter {
        limit: 3,
        offset,
        ..Default::default()
    };
    assert_eq!(ids(s.list_runs(&page(0)).await.unwrap()), [n1, b1, a2]);
    assert_eq!(ids(s.list_runs(&page(3)).await.unwrap()), [a1]);
    assert!(s.list_runs(&page(4)).await.unwrap().is_empty());

    // limit 0 means 50.
    for _ in 0..52 {
        s.create_run(RunId::new(), &spec("many")).await.unwrap();
    }
    assert_eq!(s.list_runs(&RunFilter::default()).await.unwrap().len(), 50);
    let big = RunFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.list_runs(&big).await.unwrap().len(), 56);
}

pub async fn runs_are_found_by_requester_and_slack_message(s: Arc<dyn Store>) {
    let ids = |v: Vec<errand_core::RunRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    new_run(&s, &spec_in("/src/other")).await;
    // Slack runs are found by requester and by their message.
    let mut from_slack = spec_in("/src/c");
    from_slack.requested_by = Some("slack:T1/U1".into());
    let mut origin = errand_core::Origin::Slack {
        team: "T1".into(),
        channel: "C1".into(),
        user: "U1".into(),
        message_ts: None,
    };
    from_slack.origin = Some(origin.clone());
    let c1 = new_run(&s, &from_slack).await;
    let by = |f: RunFilter| {
        let s = s.clone();
        async move { ids(s.list_runs(&f).await.unwrap()) }
    };
    let mine = RunFilter {
        requested_by: Some("slack:T1/U1".into()),
        ..Default::default()
    };
    assert_eq!(by(mine).await, [c1]);
    let thread = RunFilter {
        slack_message: Some("1700000000.000100".into()),
        ..Default::default()
    };
    assert!(by(thread.clone()).await.is_empty());
    if let errand_core::Origin::Slack { message_ts, .. } = &mut origin {
        *message_ts = Some("1700000000.000100".into());
    }
    s.set_origin(c1, &origin).await.unwrap();
    assert_eq!(by(thread).await, [c1]);
    assert_eq!(
        s.get_run(c1).await.unwrap().spec.origin,
        Some(origin.clone())
    );
    assert!(s.set_origin(RunId::new(), &origin).await.is_err());
    s.transition(c1, RunState::Cancelled, None).await.unwrap();
}

pub async fn count_by_state_covers_every_state(s: Arc<dyn Store>) {
    let empty = s.count_by_state().await.unwrap();
    assert_eq!(empty.len(), RunState::ALL.len());
    assert!(empty.iter().all(|(_, n)| *n == 0));
    assert_eq!(
        empty.iter().map(|(st, _)| *st).collect::<Vec<_>>(),
        RunState::ALL
    );
    for _ in 0..3 {
        new_run(&s, &spec("q")).await;
    }
    let r = new_run(&s, &spec("r")).await;
    run_to(&s, r, RunState::Running).await;
    let f = new_run(&s, &spec("f")).await;
    run_to(&s, f, RunState::Failed).await;
    let counts = s.count_by_state().await.unwrap();
    let get = |st| counts.iter().find(|(x, _)| *x == st).unwrap().1;
    assert_eq!(get(RunState::Queued), 3);
    assert_eq!(get(RunState::Running), 1);
    assert_eq!(get(RunState::Failed), 1);
    assert_eq!(get(RunState::Succeeded), 0);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 5);
}

pub async fn claim_next_takes_the_oldest_claimable_run(s: Arc<dyn Store>) {
    assert!(s
        .claim_next("w", LEASE, &no_limits())
        .await
        .unwrap()
        .is_none());
    let cancelled_flag = new_run(&s, &spec("c")).await;
    s.request_cancel(cancelled_flag).await.unwrap();
    let running = new_run(&s, &spec("r")).await;
    s.transition(running, RunState::Preparing, None)
        .await
        .unwrap();
    let first = new_run(&s, &spec("1")).await;
    let second = new_run(&s, &spec("2")).await;

    let before = Utc::now();
    let got = s
        .claim_next("w1", LEASE, &no_limits())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, first);
    assert_eq!(
        got.state,
        RunState::Queued,
        "claiming does not change the state"
    );
    let (worker, until) = s.claim_info(first).await.unwrap().unwrap();
    assert_eq!(worker, "w1");
    assert!(
        until >= before + TimeDelta::seconds(59) && until <= Utc::now() + TimeDelta::seconds(61)
    );
    assert_eq!(
        s.claim_next("w2", LEASE, &no_limits())
            .await
            .unwrap()
            .unwrap()
            .id,
        second
    );
    assert!(s
        .claim_next("w3", LEASE, &no_limits())
        .await
        .unwrap()
        .is_none());
    assert_eq!(s.claim_info(cancelled_flag).await.unwrap(), None);
    assert_eq!(s.claim_info(running).await.unwrap(), None);
    assert!(matches!(
        s.claim_info(RunId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn claim_next_under_concurrency_claims_every_run_exactly_once(s: Arc<dyn Store>) {
    let mut all = HashSet::new();
    for _ in 0..100 {
        let id = RunId::new();
        s.create_run(id, &spec("p")).await.unwrap();
        all.insert(id);
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("worker-{w}");
            let mut mine = Vec::new();
            for _ in 0..50 {
                if let Some(r) = s
                    .claim_next(&worker, LEASE, &QueueLimits::default())
                    .await
                    .unwrap()
                {
                    mine.push(r.id);
                }
            }
            (worker, mine)
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        let (worker, mine) = t.await.unwrap();
        for id in &mine {
            assert_eq!(s.claim_info(*id).await.unwrap().unwrap().0, worker);
        }
        claimed.extend(mine);
    }
    let unique: HashSet<RunId> = claimed.iter().copied().collect();
    assert_eq!(unique.len(), claimed.len(), "a run was claimed twice");
    assert_eq!(claimed.len(), 100, "every run claimed");
    assert_eq!(unique, all);
    assert!(s
        .claim_next("late", LEASE, &no_limits())
        .await
        .unwrap()
        .is_none());
}

pub async fn global_limit_is_respected(s: Arc<dyn Store>) {
    let limits = QueueLimits {
        global: Some(2),
        per_repo: None,
    };
    let runs: Vec<RunId> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(new_run(&s, &spec_in(&format!("/src/{i}"))).await);
        }
        v
    };
    assert_eq!(
        s.claim_next("w", LEASE, &limits).await.unwrap().unwrap().id,
        runs[0]
    );
    assert_eq!(
        s.claim_next("w", LEASE, &limits).await.unwrap().unwrap().id,
        runs[1]
    );
    assert!(
        s.claim_next("w", LEASE, &limits).await.unwrap().is_none(),
        "2 claimed"
    );
    // A claimed run that moves on still counts; one that finishes does not.
    run_to(&s, runs[0], RunState::Running).await;
    assert!(s.claim_next("w", LEASE, &limits).await.unwrap().is_none());
    s.transition(runs[0], RunState::Failed, Some("x"))
        .await
        .unwrap();
    assert_eq!(
        s.claim_next("w", LEASE, &limits).await.unwrap().unwrap().id,
        runs[2]
    );
    assert!(s.claim_next("w", LEASE, &limits).await.unwrap().is_none());
    // Without limits the last one can be claimed.
    assert_eq!(
        s.claim_next("w", LEASE, &no_limits())
            .await
            .unwrap()
            .unwrap()
            .id,
        runs[3]
    );
    // A limit of 0 claims nothing.
    new_run(&s, &spec("z")).await;
    let zero = QueueLimits {
        global: Some(0),
        per_repo: None,
    };
    assert!(s.claim_next("w", LEASE, &zero).await.unwrap().is_none());
}

pub async fn global_limit_holds_under_concurrent_claims(s: Arc<dyn Store>) {
    for _ in 0..20 {
        s.create_run(RunId::new(), &spec("p")).await.unwrap();
    }
    let limits = QueueLimits {
        global: Some(5),
        per_repo: None,
    };
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for _ in 0..10 {
                if s.claim_next(&format!("w{w}"), LEASE, &limits)
                    .await
                    .unwrap()
                    .is_some()
                {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 5);
}

pub async fn per_repo_limit_is_respected(s: Arc<dyn Store>) {
    let limits = QueueLimits {
        global: Some(10),
        per_repo: Some(1),
    };
    let a1 = new_run(&s, &spec_in("/src/a")).await;
    let a2 = new_run(&s, &spec_in("/src/a")).await;
    let b1 = new_run(&s, &spec_in("/src/b")).await;
    let n1 = new_run(&s, &spec("no repo")).await;
    let n2 = new_run(&s, &spec("no repo")).await;
    let mut got = Vec::new();
    while let Some(r) = s.claim_next("w", LEASE, &limits).await.unwrap() {
        got.push(r.id);
    }
    assert_eq!(
        got,
        [a1, b1, n1, n2],
        "a2 waits for a1; runs without a repo are not limited"
    );
    run_to(&s, a1, RunState::Succeeded).await;
    assert_eq!(
        s.claim_next("w", LEASE, &limits).await.unwrap().unwrap().id,
        a2
    );
}

pub async fn renew_lease_only_for_the_holder(s: Arc<dyn Store>) {
    let id = new_run(&s, &spec("p")).await;
    assert!(
        !s.renew_lease(id, "w1", LEASE).await.unwrap(),
        "not claimed"
    );
    s.claim_next("w1", Duration::from_secs(1), &no_limits())
        .await
        .unwrap()
        .unwrap();
    let (_, short) = s.claim_info(id).await.unwrap().unwrap();
    assert!(s
        .renew_lease(id, "w1", Duration::from_secs(3600))
        .await
        .unwrap());
    let (_, long) = s.claim_info(id).await.unwrap().unwrap();
    assert!(long > short + TimeDelta::minutes(50));
    assert!(
        !s.renew_lease(id, "w2", LEASE).await.unwrap(),
        "someone else's run"
    );
    run_to(&s, id, RunState::Running).await;
    assert!(s.renew_lease(id, "w1", LEASE).await.unwrap());
    s.transition(id, RunState::Finishing, None).await.unwrap();
    s.transition(id, RunState::Succeeded, None).await.unwrap();
    assert!(!s.renew_lease(id, "w1", LEASE).await.unwrap(), "finished");
    assert!(!s.renew_lease(RunId::new(), "w1", LEASE).await.unwrap());
}

pub async fn expired_leases_requeue_queued_runs_and_fail_running_ones(s: Arc<dyn Store>) {
    let queued = new_run(&s, &spec("q")).await;
    let running = new_run(&s, &spec("r")).await;
    let finishing = new_run(&s, &spec("f")).await;
    let fresh = new_run(&s, &spec("fresh")).await;
    let done = new_run(&s, &spec("done")).await;
    let unclaimed = new_run(&s, &spec("u")).await;
    let short = Duration::from_secs(10);
    for id in [queued, running, finishing, fresh, done] {
        let lease = if id == fresh {
            Duration::from_secs(3600)
        } else {
            short
        };
        assert_eq!(
            s.claim_next("w1", lease, &no_limits())
                .await
                .unwrap()
                .unwrap()
                .id,
            id
        );
    }
    run_to(&s, running, RunState::Running).await;
    run_to(&s, finishing, RunState::Finishing).await;
    run_to(&s, fresh, RunState::Running).await;
    run_to(&s, done, RunState::Succeeded).await;

    assert!(
        s.release_expired(Utc::now()).await.unwrap().is_empty(),
        "nothing expired yet"
    );
    let mut released = s
        .release_expired(Utc::now() + TimeDelta::minutes(1))
        .await
        .unwrap();
    released.sort_by_key(|(id, _)| id.to_string());
    let mut expected = vec![
        (queued, RunState::Queued),
        (running, RunState::Failed),
        (finishing, RunState::Failed),
    ];
    expected.sort_by_key(|(id, _)| id.to_string());
    assert_eq!(released, expected);

    let q = s.get_run(queued).await.unwrap();
    assert_eq!(q.state, RunState::Queued);
    assert_eq!(s.claim_info(queued).await.unwrap(), None);
    for id in [running, finishing] {
        let r = s.get_run(id).await.unwrap();
        assert_eq!(r.state, RunState::Failed);
        assert_eq!(r.reason.as_deref(), Some(LEASE_EXPIRED_REASON));
        assert!(r.finished_at.is_some());
        let ts = s.transitions(id).await.unwrap();
        let last = ts.last().unwrap();
        assert_eq!(last.state, RunState::Failed);
        assert_eq!(last.reason.as_deref(), Some(LEASE_EXPIRED_REASON));
    }
    assert_eq!(s.get_run(fresh).await.unwrap().state, RunState::Running);
    assert_eq!(s.get_run(done).await.unwrap().state, RunState::Succeeded);
    assert_eq!(s.get_run(unclaimed).await.unwrap().state, RunState::Queued);
    // The requeued run is claimed again before the never-claimed (newer) one.
    assert_eq!(
        s.claim_next("w2", LEASE, &no_limits())
            .await
            .unwrap()
            .unwrap()
            .id,
        queued
    );
    assert!(s
        .release_expired(Utc::now() + TimeDelta::seconds(30))
        .await
        .unwrap()
        .is_empty());
}

pub async fn release_worker_fails_its_runs_and_unclaims_queued_ones(s: Arc<dyn Store>) {
    let q = new_run(&s, &spec("q")).await;
    let r = new_run(&s, &spec("r")).await;
    let other = new_run(&s, &spec("other")).await;
    let done = new_run(&s, &spec("done")).await;
    s.claim_next("w1", LEASE, &no_limits())
        .await
        .unwrap()
        .unwrap();
    s.claim_next("w1", LEASE, &no_limits())
        .await
        .unwrap()
        .unwrap();
    s.claim_next("w2", LEASE, &no_limits())
        .await
        .unwrap()
        .unwrap();
    s.claim_next("w1", LEASE, &no_limits())
        .await
        .unwrap()
        .unwrap();
    run_to(&s, r, RunState::Preparing).await;
    run_to(&s, other, RunState::Running).await;
    run_to(&s, done, RunState::Succeeded).await;

    let mut released = s.release_worker("w1", "errand restarted").await.unwrap();
    released.sort_by_key(|id| id.to_string());
    let mut expected = vec![q, r];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(released, expected);
    assert_eq!(s.get_run(q).await.unwrap().state, RunState::Queued);
    assert_eq!(s.claim_info(q).await.unwrap(), None);
    let rr = s.get_run(r).await.unwrap();
    assert_eq!(rr.state, RunState::Failed);
    assert_eq!(rr.reason.as_deref(), Some("errand restarted"));
    assert_eq!(
        s.transitions(r)
            .await
            .unwrap()
            .last()
            .unwrap()
            .reason
            .as_deref(),
        Some("errand restarted")
    );
    assert_eq!(s.get_run(other).await.unwrap().state, RunState::Running);
    assert_eq!(s.claim_info(other).await.unwrap().unwrap().0, "w2");
    assert_eq!(s.get_run(done).await.unwrap().state, RunState::Succeeded);
    assert!(s.release_worker("w1", "again").await.unwrap().is_empty());
    assert!(s.release_worker("nobody", "x").await.unwrap().is_empty());
}

fn event(seq: u64, message: &str) -> Event {
    Event {
        seq,
        ts: Utc::now(),
        source: EventSource::Errand,
        raw_line: None,
        kind: EventKind::Notice {
            message: message.into(),
        },
    }
}

pub async fn events_append_read_and_reject_duplicates(s: Arc<dyn Store>) {
    let run = new_run(&s, &spec("p")).await;
    let other = new_run(&s, &spec("o")).await;
    assert_eq!(s.last_event_seq(run).await.unwrap(), 0);
    assert!(s.events_after(run, 0, 10).await.unwrap().is_empty());
    s.append_events(run, &[]).await.unwrap();
    let mut tool = event(2, "");
    tool.source = EventSource::Harness;
    tool.raw_line = Some(7);
    tool.kind = EventKind::ToolCall {
        id: "t1".into(),
        name: "Bash".into(),
        input: serde_json::json!({"command": "ls", "nul": "a\u{0}b"}),
        parent_id: None,
    };
    let evs = vec![event(1, "one"), tool, event(3, "three \u{1F600}")];
    s.append_events(run, &evs).await.unwrap();
    s.append_events(other, &[event(1, "other")]).await.unwrap();

    let back = s.events_after(run, 0, 0).await.unwrap();
    assert_eq!(back.len(), 3);
    for (a, b) in back.iter().zip(&evs) {
        assert_eq!(a.seq, b.seq);
        assert_eq!(a.kind, b.kind);
        assert_eq!(a.raw_line, b.raw_line);
        assert_eq!(a.source, b.source);
        assert_eq!(a.ts.timestamp_millis(), b.ts.timestamp_millis());
    }
    assert_eq!(
        s.events_after(run, 1, 1)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(
        s.events_after(run, 1, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(s.events_after(run, 3, 10).await.unwrap().is_empty());
    assert_eq!(s.last_event_seq(run).await.unwrap(), 3);
    assert_eq!(s.last_event_seq(other).await.unwrap(), 1);

    // A batch with a stored seq is refused whole.
    let err = s
        .append_events(run, &[event(4, "four"), event(2, "again")])
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(s.last_event_seq(run).await.unwrap(), 3);
    assert_eq!(
        s.events_after(run, 1, 1).await.unwrap()[0].kind,
        evs[1].kind
    );
    s.append_events(run, &[event(4, "four")]).await.unwrap();
    assert_eq!(s.last_event_seq(run).await.unwrap(), 4);
    // Events of an unknown run are refused.
    assert!(s
        .append_events(RunId::new(), &[event(1, "x")])
        .await
        .is_err());
}

pub async fn raw_lines_append_read_and_reject_duplicates(s: Arc<dyn Store>) {
    let run = new_run(&s, &spec("p")).await;
    assert!(s.raw_after(run, 0, 0).await.unwrap().is_empty());
    s.append_raw(run, 1, "{\"type\":\"system\"}").await.unwrap();
    s.append_raw(run, 2, "not json \u{0} at all").await.unwrap();
    s.append_raw(run, 3, "").await.unwrap();
    assert_eq!(
        s.raw_after(run, 0, 0).await.unwrap(),
        [
            (1, "{\"type\":\"system\"}".to_string()),
            (2, "not json \u{FFFD} at all".to_string()),
            (3, String::new()),
        ]
    );
    assert_eq!(
        s.raw_after(run, 1, 1).await.unwrap(),
        [(2, "not json \u{FFFD} at all".to_string())]
    );
    let err = s.append_raw(run, 2, "dup").await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        s.raw_after(run, 1, 1).await.unwrap()[0].1,
        "not json \u{FFFD} at all"
    );
    let other = new_run(&s, &spec("o")).await;
    s.append_raw(other, 1, "mine").await.unwrap();
    assert_eq!(
        s.raw_after(other, 0, 10).await.unwrap(),
        [(1, "mine".to_string())]
    );
}

pub async fn tokens_create_lookup_list_revoke(s: Arc<dyn Store>) {
    assert!(s.list_tokens().await.unwrap().is_empty());
    let h1 = "a".repeat(64);
    let h2 = "b".repeat(64);
    let t1 = s
        .create_token("laptop", &h1, &[Scope::Run, Scope::Read, Scope::Run])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let t2 = s.create_token("ci", &h2, &[Scope::Admin]).await.unwrap();
    assert_eq!(t1.scopes, [Scope::Read, Scope::Run], "sorted, no repeats");
    assert!(t1.has(Scope::Run) && !t1.has(Scope::Admin));
    assert_eq!(t2.scopes, [Scope::Admin]);
    assert!(!t2.has(Scope::Read), "admin does not imply read");
    assert_ne!(t1.id, t2.id);
    assert_eq!(t1.name, "laptop");
    assert!(!t1.revoked);
    assert!((Utc::now() - t1.created_at).num_seconds().abs() < 60);
    assert_eq!(s.token_by_hash(&h1).await.unwrap(), Some(t1.clone()));
    assert_eq!(s.token_by_hash(&"c".repeat(64)).await.unwrap(), None);
    assert_eq!(s.list_tokens().await.unwrap(), [t1.clone(), t2.clone()]);
    let err = s
        .create_token("again", &h1, &[Scope::Read])
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");

    assert!(s.revoke_token(&t1.id).await.unwrap());
    assert!(
        s.revoke_token(&t1.id).await.unwrap(),
        "revoking twice is fine"
    );
    assert!(!s.revoke_token("no-such-token").await.unwrap());
    let after = s.token_by_hash(&h1).await.unwrap().unwrap();
    assert!(after.revoked);
    assert_eq!(after.id, t1.id);
    let listed = s.list_tokens().await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.revoked).collect::<Vec<_>>(),
        [true, false]
    );
    assert!(!s.token_by_hash(&h2).await.unwrap().unwrap().revoked);
}

pub async fn share_links_create_lookup_revoke(s: Arc<dyn Store>) {
    let run = new_run(&s, &spec("p")).await;
    let other = new_run(&s, &spec("o")).await;
    s.create_share(run, "h1").await.unwrap();
    s.create_share(run, "h2").await.unwrap();
    s.create_share(other, "h3").await.unwrap();
    assert!(s.create_share(other, "h1").await.unwrap_err().is_conflict());
    assert!(
        s.create_share(RunId::new(), "h4").await.is_err(),
        "unknown run"
    );
    assert_eq!(s.share_by_hash("h1").await.unwrap(), Some(run));
    assert_eq!(s.share_by_hash("h3").await.unwrap(), Some(other));
    assert_eq!(s.share_by_hash("nope").await.unwrap(), None);
    assert_eq!(s.revoke_shares(run).await.unwrap(), 2);
    assert_eq!(s.share_by_hash("h1").await.unwrap(), None);
    assert_eq!(s.share_by_hash("h2").await.unwrap(), None);
    assert_eq!(s.share_by_hash("h3").await.unwrap(), Some(other));
    assert_eq!(s.revoke_shares(run).await.unwrap(), 0);
    s.create_share(run, "h5").await.unwrap();
    assert_eq!(s.share_by_hash("h5").await.unwrap(), Some(run));
}

pub async fn follow_up_requeues_only_succeeded_or_failed_runs(s: Arc<dyn Store>) {
    let ok = new_run(&s, &spec("ok")).await;
    let queued = new_run(&s, &spec("q")).await;
    let running = new_run(&s, &spec("r")).await;
    run_to(&s, running, RunState::Running).await;
    let cancelled = new_run(&s, &spec("c")).await;
    s.transition(cancelled, RunState::Cancelled, None)
        .await
        .unwrap();
    let timed_out = new_run(&s, &spec("t")).await;
    s.transition(timed_out, RunState::TimedOut, None)
        .await
        .unwrap();
    for (id, from) in [
        (queued, RunState::Queued),
        (running, RunState::Running),
        (cancelled, RunState::Cancelled),
        (timed_out, RunState::TimedOut),
    ] {
        match s.requeue_for_follow_up(id, "more").await {
            Err(StoreError::InvalidTransition(t)) => {
                assert_eq!((t.from, t.to), (from, RunState::Queued));
            }
            other => panic!("{from}: {other:?}"),
        }
        assert_eq!(s.pending_message(id).await.unwrap(), None);
    }
    assert!(matches!(
        s.requeue_for_follow_up(RunId::new(), "x").await,
        Err(StoreError::NotFound(_))
    ));

    s.claim_next("w1", LEASE, &no_limits()).await.unwrap();
    let claimed = s.claim_info(ok).await.unwrap();
    assert_eq!(claimed.map(|c| c.0).as_deref(), Some("w1"));
    run_to(&s, ok, RunState::Succeeded).await;
    s.set_owner(ok, Some(7)).await.unwrap();
    s.request_cancel(ok).await.unwrap();
    let rec = s.requeue_for_follow_up(ok, "now add tests").await.unwrap();
    assert_eq!(rec.state, RunState::Queued);
    assert!(rec.finished_at.is_none());
    assert!(rec.started_at.is_some(), "the first start is kept");
    assert!(!rec.cancel_requested);
    assert_eq!(rec.owner_pid, None);
    assert_eq!(s.claim_info(ok).await.unwrap(), None);
    assert_eq!(
        s.pending_message(ok).await.unwrap().as_deref(),
        Some("now add tests")
    );
    let ts = s.transitions(ok).await.unwrap();
    assert_eq!(
        states(&ts),
        [
            RunState::Queued,
            RunState::Preparing,
            RunState::Running,
            RunState::Finishing,
            RunState::Succeeded,
            RunState::Queued
        ]
    );
    assert!(ts.last().unwrap().reason.is_some());
    // It is claimable again and goes around once more.
    assert_eq!(
        s.claim_next("w2", LEASE, &no_limits())
            .await
            .unwrap()
            .unwrap()
            .id,
        ok
    );
    assert_eq!(
        s.take_pending_message(ok).await.unwrap().as_deref(),
        Some("now add tests")
    );
    assert_eq!(s.take_pending_message(ok).await.unwrap(), None);
    assert_eq!(s.pending_message(ok).await.unwrap(), None);
    run_to(&s, ok, RunState::Failed).await;
    // Failed runs take follow-ups too.
    s.requeue_for_follow_up(ok, "try again").await.unwrap();
    assert_eq!(
        s.pending_message(ok).await.unwrap().as_deref(),
        Some("try again")
    );
    // Twice in a row: the second finds it queued.
    assert!(matches!(
        s.requeue_for_follow_up(ok, "x").await,
        Err(StoreError::InvalidTransition(_))
    ));
    assert!(matches!(
        s.pending_message(RunId::new()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.take_pending_message(RunId::new()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn pending_message_is_taken_exactly_once(s: Arc<dyn Store>) {
    let id = new_run(&s, &spec("p")).await;
    run_to(&s, id, RunState::Succeeded).await;
    s.requeue_for_follow_up(id, "once").await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.take_pending_message(id).await },
        ));
    }
    let mut got = Vec::new();
    for t in tasks {
        if let Some(m) = t.await.unwrap().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, ["once"]);
}

pub async fn secrets_are_stored_sealed_listed_without_values_and_deleted(s: Arc<dyn Store>) {
    s.put_secret("ANTHROPIC_API_KEY", &[1, 2, 3]).await.unwrap();
    s.put_secret("GITHUB_TOKEN", &[9]).await.unwrap();
    s.put_secret("ANTHROPIC_API_KEY", &[4, 5]).await.unwrap();
    let all = s.sealed_secrets().await.unwrap();
    assert_eq!(
        all,
        vec![
            ("ANTHROPIC_API_KEY".to_string(), vec![4, 5]),
            ("GITHUB_TOKEN".to_string(), vec![9])
        ]
    );
    let names: Vec<String> = s
        .secret_names()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["ANTHROPIC_API_KEY", "GITHUB_TOKEN"]);
    assert!(s.delete_secret("GITHUB_TOKEN").await.unwrap());
    assert!(!s.delete_secret("GITHUB_TOKEN").await.unwrap());
    assert_eq!(s.sealed_secrets().await.unwrap().len(), 1);
}

pub async fn replay_keys_are_first_time_once_until_they_expire(s: Arc<dyn Store>) {
    let now = Utc::now();
    let keep = Duration::from_secs(300);
    assert!(s.first_time("slack:cmd:T1", now, keep).await.unwrap());
    assert!(
        !s.first_time("slack:cmd:T1", now, keep).await.unwrap(),
        "the same key twice"
    );
    let later = now + TimeDelta::seconds(299);
    assert!(
        !s.first_time("slack:cmd:T1", later, keep).await.unwrap(),
        "still remembered within its window"
    );
    assert!(s.first_time("slack:cmd:T2", now, keep).await.unwrap());
    // Past its time a key is new again (and the old row was pruned, not kept).
    let past = now + TimeDelta::seconds(301);
    assert!(s.first_time("slack:cmd:T1", past, keep).await.unwrap());
    assert!(!s.first_time("slack:cmd:T1", past, keep).await.unwrap());
    // A long-kept key outlives short-kept ones.
    let week = Duration::from_secs(7 * 24 * 3600);
    assert!(s.first_time("github:body:abc", now, week).await.unwrap());
    let six_days = now + TimeDelta::days(6);
    assert!(!s
        .first_time("github:body:abc", six_days, week)
        .await
        .unwrap());
    assert!(s.first_time("slack:cmd:T2", six_days, keep).await.unwrap());
}

pub async fn replay_keys_under_concurrency_are_first_exactly_once(s: Arc<dyn Store>) {
    let now = Utc::now();
    for round in 0..5 {
        let key = format!("github:body:{round}");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = s.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                s.first_time(&key, now, Duration::from_secs(60))
                    .await
                    .unwrap()
            }));
        }
        let mut firsts = 0;
        for t in tasks {
            firsts += usize::from(t.await.unwrap());
        }
        assert_eq!(firsts, 1, "{key}");
    }
}

// ---- where the two backends' code used to differ, pinned on both ----

/// `create_run` records exactly one transition, `queued` at the creation time
/// with no reason; an id stored twice is a conflict that records nothing.
pub async fn create_run_records_one_queued_transition_and_refuses_a_duplicate(s: Arc<dyn Store>) {
    let id = RunId::new();
    let rec = s.create_run(id, &spec("p")).await.unwrap();
    let ts = s.transitions(id).await.unwrap();
    assert_eq!(states(&ts), [RunState::Queued]);
    assert_eq!(ts[0].reason, None);
    assert_eq!(ts[0].at, rec.created_at);
    let err = s.create_run(id, &spec("again")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(s.get_run(id).await.unwrap().spec.prompt, "p");
    assert_eq!(s.transitions(id).await.unwrap().len(), 1);
}

/// A move no state allows (to `queued`: only a follow-up requeues) is an
/// invalid transition from the run's state, whatever that is, and changes
/// nothing; on a missing run it is "not found".
pub async fn a_move_no_state_allows_is_an_invalid_transition(s: Arc<dyn Store>) {
    let queued = new_run(&s, &spec("q")).await;
    let running = new_run(&s, &spec("r")).await;
    run_to(&s, running, RunState::Running).await;
    let done = new_run(&s, &spec("d")).await;
    run_to(&s, done, RunState::Succeeded).await;
    for (id, from) in [
        (queued, RunState::Queued),
        (running, RunState::Running),
        (done, RunState::Succeeded),
    ] {
        let before = s.transitions(id).await.unwrap().len();
        match s.transition(id, RunState::Queued, Some("again")).await {
            Err(StoreError::InvalidTransition(t)) => {
                assert_eq!((t.from, t.to), (from, RunState::Queued));
            }
            other => panic!("{from}: {other:?}"),
        }
        let rec = s.get_run(id).await.unwrap();
        assert_eq!(rec.state, from);
        assert_eq!(rec.reason, None);
        assert_eq!(s.transitions(id).await.unwrap().len(), before);
    }
    assert!(matches!(
        s.transition(RunId::new(), RunState::Queued, None).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A replay key is remembered until exactly `now + keep`: at that instant it
/// is new again; a key kept for no time is always new.
pub async fn replay_keys_expire_exactly_at_their_time(s: Arc<dyn Store>) {
    let now = Utc::now();
    let keep = Duration::from_secs(300);
    assert!(s.first_time("k", now, keep).await.unwrap());
    let just_before = now + TimeDelta::milliseconds(299_999);
    assert!(!s.first_time("k", just_before, keep).await.unwrap());
    let at_expiry = now + TimeDelta::seconds(300);
    assert!(s.first_time("k", at_expiry, keep).await.unwrap());
    assert!(!s.first_time("k", at_expiry, keep).await.unwrap());
    for _ in 0..2 {
        assert!(s.first_time("zero", now, Duration::ZERO).await.unwrap());
    }
}

/// `set_origin` changes only the origin (the rest of the spec reads back
/// equal) and a missing run is "not found".
pub async fn set_origin_changes_only_the_origin(s: Arc<dyn Store>) {
    let mut sp = spec_in("/src/a");
    sp.requested_by = Some("api:ci".into());
    sp.group = Some("g1".into());
    let id = new_run(&s, &sp).await;
    let origin = errand_core::Origin::Slack {
        team: "T1".into(),
        channel: "C1".into(),
        user: "U1".into(),
        message_ts: Some("1700000000.000200".into()),
    };
    s.set_origin(id, &origin).await.unwrap();
    let mut expected = sp.clone();
    expected.origin = Some(origin.clone());
    assert_eq!(s.get_run(id).await.unwrap().spec, expected);
    assert!(matches!(
        s.set_origin(RunId::new(), &origin).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Database errors come back as kinds callers can match: a duplicate is a
/// conflict, a row about a run that does not exist is invalid.
pub async fn store_errors_are_sorted_into_kinds(s: Arc<dyn Store>) {
    let run = new_run(&s, &spec("p")).await;
    s.append_events(run, &[event(1, "one")]).await.unwrap();
    let dup = s
        .append_events(run, &[event(1, "again")])
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
    s.append_raw(run, 1, "line").await.unwrap();
    let dup = s.append_raw(run, 1, "line").await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
    s.create_token("a", "h", &[Scope::Read]).await.unwrap();
    let dup = s.create_token("b", "h", &[Scope::Read]).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");

    let missing = RunId::new();
    let err = s
        .append_events(missing, &[event(1, "x")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = s.append_raw(missing, 1, "x").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = s.create_share(missing, "link").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

pub async fn release_claim_requeues_a_held_run_and_unclaim_lets_any_worker_take_it(
    s: Arc<dyn Store>,
) {
    let held = new_run(&s, &spec("held")).await;
    let waiting = new_run(&s, &spec("waiting")).await;
    let theirs = new_run(&s, &spec("theirs")).await;
    for w in ["w1", "w1", "w2"] {
        s.claim_next(w, LEASE, &no_limits()).await.unwrap().unwrap();
    }
    run_to(&s, held, RunState::Running).await;
    s.set_owner(held, Some(42)).await.unwrap();
    run_to(&s, theirs, RunState::Running).await;
    let reason = "released: node draining";

    // Only the holder may give a run back, and a claimed run not yet started counts.
    assert!(!s.release_claim(theirs, "w1", reason).await.unwrap());
    assert_eq!(s.get_run(theirs).await.unwrap().state, RunState::Running);
    assert!(s.release_claim(waiting, "w1", reason).await.unwrap());
    assert!(s.release_claim(held, "w1", reason).await.unwrap());
    let rec = s.get_run(held).await.unwrap();
    assert_eq!(rec.state, RunState::Queued);
    assert_eq!(rec.reason.as_deref(), Some(reason));
    assert_eq!(rec.owner_pid, None);
    let last = s.transitions(held).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.state, last.reason.as_deref()),
        (RunState::Queued, Some(reason))
    );

    // Still held until unclaimed: nobody else may start it meanwhile.
    assert_eq!(s.claim_info(held).await.unwrap().unwrap().0, "w1");
    assert!(s
        .claim_next("w3", LEASE, &no_limits())
        .await
        .unwrap()
        .is_none());
    assert!(!s.unclaim(held, "w2").await.unwrap());
    assert!(s.unclaim(held, "w1").await.unwrap());
    assert!(s.unclaim(waiting, "w1").await.unwrap());
    let mut taken = HashSet::new();
    while let Some(r) = s.claim_next("w3", LEASE, &no_limits()).await.unwrap() {
        taken.insert(r.id);
    }
    assert_eq!(taken, HashSet::from([held, waiting]));
    // A released run starts again like any queued one.
    s.transition(held, RunState::Preparing, None).await.unwrap();

    // A finished run is not given back.
    for st in [RunState::Finishing, RunState::Succeeded] {
        s.transition(theirs, st, None).await.unwrap();
    }
    assert!(!s.release_claim(theirs, "w2", reason).await.unwrap());
    assert!(!s.unclaim(theirs, "w2").await.unwrap());
}

pub async fn pruning_is_recorded_and_deletes_only_that_runs_logs(s: Arc<dyn Store>) {
    use errand_store::Pruned;
    let run = new_run(&s, &spec("p")).await;
    let other = new_run(&s, &spec("o")).await;
    s.append_events(run, &[event(1, "a"), event(2, "b")])
        .await
        .unwrap();
    s.append_raw(run, 1, "raw").await.unwrap();
    s.append_events(other, &[event(1, "kept")]).await.unwrap();
    let fresh = s.get_run(run).await.unwrap();
    assert_eq!(
        (fresh.workspace_pruned_at, fresh.logs_pruned_at),
        (None, None)
    );

    let at = Utc::now() - TimeDelta::days(3);
    s.set_pruned(run, Pruned::Workspace, Some(at))
        .await
        .unwrap();
    assert_eq!(s.delete_logs(run).await.unwrap(), 3);
    s.set_pruned(run, Pruned::Logs, Some(at)).await.unwrap();
    let r = s.get_run(run).await.unwrap();
    assert_eq!(
        r.workspace_pruned_at.map(|t| t.timestamp_millis()),
        Some(at.timestamp_millis())
    );
    assert_eq!(
        r.logs_pruned_at.map(|t| t.timestamp_millis()),
        Some(at.timestamp_millis())
    );
    assert!(s.events_after(run, 0, 0).await.unwrap().is_empty());
    assert!(s.raw_after(run, 0, 0).await.unwrap().is_empty());
    assert_eq!(s.events_after(other, 0, 0).await.unwrap().len(), 1);
    assert_eq!(s.get_run(other).await.unwrap().logs_pruned_at, None);
    // A follow-up that re-creates the workspace clears its mark.
    s.set_pruned(run, Pruned::Workspace, None).await.unwrap();
    assert_eq!(s.get_run(run).await.unwrap().workspace_pruned_at, None);
    assert!(matches!(
        s.set_pruned(RunId::new(), Pruned::Logs, None).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A run `errand run` executes itself is never claimed by a worker on the same database.
pub async fn an_own_run_is_never_claimed_by_a_worker(s: Arc<dyn Store>) {
    let own = RunId::new();
    s.create_own_run(own, &spec("own"), "cli:42").await.unwrap();
    let queued = new_run(&s, &spec("queued")).await;
    let first = s.claim_next("w1", LEASE, &no_limits()).await.unwrap();
    assert_eq!(first.map(|r| r.id), Some(queued));
    let second = s.claim_next("w1", LEASE, &no_limits()).await.unwrap();
    assert!(second.is_none(), "the own run was claimed: {second:?}");
    assert_eq!(s.get_run(own).await.unwrap().state, RunState::Queued);
}

/// Writes of many runs at once are committed in groups; each caller still
/// gets its own answer (a duplicate in one run's batch fails only that
/// batch), and what was answered `Ok` is stored, in order, raw lines too.
pub async fn concurrent_writes_are_grouped_and_each_answered(s: Arc<dyn Store>) {
    let mut runs = Vec::new();
    for i in 0..12 {
        runs.push(new_run(&s, &spec(&format!("r{i}"))).await);
    }
    s.append_events(runs[0], &[event(1, "first")])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (i, run) in runs.iter().copied().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let start = if i == 0 { 2 } else { 1 };
            for round in 0..10u64 {
                let from = start + round * 7;
                let lines: Vec<(u64, String)> = (from..from + 7)
                    .map(|n| (n, format!("raw {n} of {i}")))
                    .collect();
                s.append_raw_lines(run, &lines).await.unwrap();
                let evs: Vec<Event> = (from..from + 7).map(|n| event(n, "e")).collect();
                s.append_events(run, &evs).await.unwrap();
            }
            start + 69
        }));
    }
    // Meanwhile a batch that repeats a stored seq of run 0 is refused alone.
    let bad = s
        .append_events(runs[0], &[event(1, "again"), event(1000, "x")])
        .await
        .unwrap_err();
    assert!(bad.is_conflict(), "{bad}");
    for (run, t) in runs.iter().zip(tasks) {
        let last = t.await.unwrap();
        let evs = s.events_after(*run, 0, 0).await.unwrap();
        assert_eq!(
            evs.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>()
        );
        let raw = s.raw_after(*run, 0, 0).await.unwrap();
        assert_eq!(raw.len() as u64, 70, "raw lines of {run}");
        assert!(raw.windows(2).all(|w| w[0].0 < w[1].0));
    }
    assert_eq!(
        s.events_after(runs[0], 0, 1).await.unwrap()[0].kind,
        event(1, "first").kind
    );
    // A batch of raw lines is all or none.
    let err = s
        .append_raw_lines(runs[1], &[(500, "new".into()), (3, "stored".into())])
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(s.raw_after(runs[1], 70, 0).await.unwrap().is_empty());
}

pub async fn a_groups_pick_is_claimed_by_exactly_one_run(s: Arc<dyn Store>) {
    use errand_store::PickClaim;
    let long = Duration::from_secs(600);
    let runs: Vec<RunId> = (0..6).map(|_| RunId::new()).collect();
    // Twelve picks of one group at once, two per run: one caller holds the
    // claim; its run's twin is told it is under way, the rest who holds it.
    let tasks: Vec<_> = runs
        .iter()
        .chain(runs.iter())
        .map(|&r| {
            let s = s.clone();
            tokio::spawn(async move { (r, s.claim_pick("g1", r, long).await.unwrap()) })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let won: Vec<RunId> = answers
        .iter()
        .filter(|(_, c)| *c == PickClaim::Claimed)
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(won.len(), 1, "exactly one claim wins: {answers:?}");
    let won = won[0];
    for (r, c) in &answers {
        match c {
            PickClaim::Claimed => {}
            PickClaim::Busy => assert_eq!(*r, won, "{answers:?}"),
            PickClaim::Other(h) => assert!(*r != won && *h == won, "{answers:?}"),
            PickClaim::Done => panic!("nothing finished yet: {answers:?}"),
        }
    }
    let other = *runs.iter().find(|r| **r != won).unwrap();
    // Another run can neither finish nor release it.
    s.finish_pick("g1", other).await.unwrap();
    s.release_pick("g1", other).await.unwrap();
    assert_eq!(
        s.claim_pick("g1", won, long).await.unwrap(),
        PickClaim::Busy
    );
    // Released, another may claim it.
    s.release_pick("g1", won).await.unwrap();
    assert_eq!(
        s.claim_pick("g1", other, long).await.unwrap(),
        PickClaim::Claimed
    );
    // Finished, it is kept: a retry of the same run is told so, release is a no-op.
    s.finish_pick("g1", other).await.unwrap();
    s.release_pick("g1", other).await.unwrap();
    assert_eq!(
        s.claim_pick("g1", other, long).await.unwrap(),
        PickClaim::Done
    );
    assert_eq!(
        s.claim_pick("g1", won, Duration::ZERO).await.unwrap(),
        PickClaim::Other(other)
    );
    // An unfinished claim older than `stale` is taken over (its process died);
    // a fresh one is not.
    assert_eq!(
        s.claim_pick("g2", won, long).await.unwrap(),
        PickClaim::Claimed
    );
    assert_eq!(
        s.claim_pick("g2", other, long).await.unwrap(),
        PickClaim::Other(won)
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        s.claim_pick("g2", other, Duration::from_millis(1))
            .await
            .unwrap(),
        PickClaim::Claimed
    );
    assert_eq!(
        s.claim_pick("g2", won, long).await.unwrap(),
        PickClaim::Other(other)
    );
}

pub async fn runs_and_replay_keys_created_at_once_are_each_answered(s: Arc<dyn Store>) {
    // A burst as 64 Slack commands make it: each records its replay key, then
    // creates its run; some keys are sent twice, one run id is reused. All go
    // through the group commit; every caller gets its own answer.
    let now = Utc::now();
    let keep = Duration::from_secs(600);
    let taken = RunId::new();
    s.create_run(taken, &spec("already")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..64usize {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let first = s
                .first_time(&format!("slack:cmd:{}", i % 48), now, keep)
                .await
                .unwrap();
            let id = if i == 7 { taken } else { RunId::new() };
            let created = s.create_run(id, &spec(&format!("cmd {i}"))).await;
            (i, first, id, created)
        }));
    }
    let mut firsts = std::collections::HashMap::<usize, usize>::new();
    for t in tasks {
        let (i, first, id, created) = t.await.unwrap();
        if first {
            *firsts.entry(i % 48).or_default() += 1;
        }
        if i == 7 {
            let e = created.unwrap_err();
            assert!(e.is_conflict(), "a reused run id is refused alone: {e}");
            assert_eq!(s.get_run(taken).await.unwrap().spec.prompt, "already");
            continue;
        }
        let rec = created.unwrap();
        assert_eq!((rec.id, rec.state), (id, RunState::Queued));
        assert_eq!(rec.spec.prompt, format!("cmd {i}"));
        assert_eq!(
            states(&s.transitions(id).await.unwrap()),
            [RunState::Queued]
        );
    }
    assert_eq!(firsts.len(), 48, "every key was first once: {firsts:?}");
    assert!(firsts.values().all(|n| *n == 1), "{firsts:?}");

    // Key and run in one write: a command sent eight times at once (and a
    // key already seen) creates exactly one run; the others create nothing.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let id = RunId::new();
                let got = s
                    .create_run_once("slack:cmd:once", now, keep, id, &spec(&format!("once {i}")))
                    .await
                    .unwrap();
                (id, got)
            })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        let (id, got) = t.await.unwrap();
        match got {
            Some(rec) => {
                assert_eq!((rec.id, rec.state), (id, RunState::Queued));
                created.push(id);
            }
            None => assert!(matches!(
                s.get_run(id).await.unwrap_err(),
                StoreError::NotFound(_)
            )),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    let id = RunId::new();
    assert!(s
        .create_run_once("slack:cmd:0", now, keep, id, &spec("seen"))
        .await
        .unwrap()
        .is_none());
    assert!(s.get_run(id).await.is_err());
    // Once its time has passed, the key counts as new again.
    let later = now + TimeDelta::seconds(601);
    assert!(s
        .create_run_once("slack:cmd:once", later, keep, id, &spec("later"))
        .await
        .unwrap()
        .is_some());
    // A refused run gives its key back (one transaction): tried again, it
    // is still the first time.
    let err = s
        .create_run_once("slack:cmd:new", now, keep, taken, &spec("dup"))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(s.first_time("slack:cmd:new", now, keep).await.unwrap());
}
