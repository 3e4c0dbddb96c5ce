use super::*;
use chrono::TimeZone;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn run(n: u128, ended_days_ago: Option<i64>, now: DateTime<Utc>) -> RunDisk {
    RunDisk {
        id: RunId(uuid::Uuid::from_u128(n)),
        ended: ended_days_ago.map(|d| now - chrono::Duration::days(d)),
        pushed: false,
        workspace: Some(1000),
        logs: Some(10),
        outbox: Some(500),
    }
}

fn whats(items: &[Item]) -> Vec<(u128, Pruned, bool, Why)> {
    items
        .iter()
        .map(|i| (i.run.0.as_u128(), i.what, i.with_outbox, i.why))
        .collect()
}

#[test]
fn a_workspace_goes_after_its_window_and_one_inside_it_stays() {
    let now = t0();
    let p = Policy::default();
    let runs = [
        run(1, Some(6), now),
        run(2, Some(8), now),
        run(3, None, now), // not over (running, or queued for a follow-up)
        run(4, Some(400), now),
    ];
    let items = plan(&runs, &p, now);
    assert_eq!(
        whats(&items),
        [
            (2, Pruned::Workspace, false, Why::Age),
            (4, Pruned::Workspace, false, Why::Age),
            // Not pushed: the outbox is the run's branch, kept with the logs.
            (4, Pruned::Logs, true, Why::Age),
        ]
    );
    assert_eq!(items[0].bytes, 1000);
    assert_eq!(items[2].bytes, 510);
    // The same runs a day earlier: run 2 is inside its window.
    let earlier = plan(&runs, &p, now - chrono::Duration::days(2));
    assert!(
        earlier.iter().all(|i| i.run.0.as_u128() != 2),
        "{earlier:?}"
    );
    // Exactly at the end of the window it goes.
    let edge = [run(5, Some(7), now)];
    assert_eq!(plan(&edge, &p, now).len(), 1);
    // A clock that went back never makes an age negative.
    let future = [run(6, Some(-3), now)];
    assert!(plan(&future, &p, now).is_empty());
}

#[test]
fn a_pushed_runs_outbox_goes_with_its_workspace() {
    let now = t0();
    let mut r = run(1, Some(10), now);
    r.pushed = true;
    let items = plan(&[r], &Policy::default(), now);
    assert_eq!(whats(&items), [(1, Pruned::Workspace, true, Why::Age)]);
    assert_eq!(items[0].bytes, 1500);
}

#[test]
fn the_follow_up_window_holds_a_workspace_past_a_shorter_keep() {
    let now = t0();
    let p = Policy {
        workspaces: Duration::ZERO,
        follow_up_window: 3 * DAY,
        ..Policy::default()
    };
    let items = plan(&[run(1, Some(2), now), run(2, Some(4), now)], &p, now);
    assert_eq!(whats(&items), [(2, Pruned::Workspace, false, Why::Age)]);
}

#[test]
fn a_budget_removes_oldest_ended_first_and_never_inside_the_follow_up_window() {
    let now = t0();
    let p = Policy {
        max_disk: Some(2000),
        ..Policy::default()
    };
    // 4 runs × 1510 bytes; none past its 7 days.
    let runs = [
        run(1, Some(3), now),
        run(2, Some(5), now),
        run(3, Some(0), now), // inside the follow-up window
        run(4, Some(2), now),
    ];
    let items = plan(&runs, &p, now);
    // Oldest-ended first: 2, then 1, then 4 (workspaces), then logs…
    let got = whats(&items);
    assert_eq!(
        got[..3],
        [
            (2, Pruned::Workspace, false, Why::Budget),
            (1, Pruned::Workspace, false, Why::Budget),
            (4, Pruned::Workspace, false, Why::Budget),
        ]
    );
    assert!(got.iter().all(|(n, ..)| *n != 3), "{got:?}");
    // …until what is left fits, or only the protected run is left.
    let left: u64 = 4 * 1510 - items.iter().map(|i| i.bytes).sum::<u64>();
    assert!(left <= 2000 || items.len() == 6, "{left} {got:?}");
    // Under budget: nothing.
    let roomy = Policy {
        max_disk: Some(10_000),
        ..Policy::default()
    };
    assert!(plan(&runs, &roomy, now).is_empty());
}

#[test]
fn what_is_gone_is_not_planned_again() {
    let now = t0();
    let mut r = run(1, Some(100), now);
    r.workspace = None;
    r.logs = None;
    assert!(plan(&[r], &Policy::default(), now).is_empty());
}

#[test]
fn mirrors_go_by_last_use() {
    let now = SystemTime::now();
    let m = |name: &str, days: u64| errand_git::MirrorUse {
        path: PathBuf::from(name),
        last_used: now - Duration::from_secs(days * 86_400),
    };
    let gone = plan_mirrors(&[m("old", 31), m("new", 2)], 30 * DAY, now);
    assert_eq!(gone, [PathBuf::from("old")]);
}

#[test]
fn removal_follows_no_link_and_opens_what_the_agent_locked() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "host file").unwrap();
    let run = dir.path().join("run");
    let ws = run.join("workspace");
    std::fs::create_dir_all(ws.join("a/b")).unwrap();
    std::fs::write(ws.join("a/b/f"), "x").unwrap();
    symlink(&outside, ws.join("link")).unwrap();
    symlink(outside.join("keep.txt"), ws.join("a/filelink")).unwrap();
    // Read-only and unreadable directories.
    std::fs::set_permissions(ws.join("a/b"), std::fs::Permissions::from_mode(0o500)).unwrap();
    std::fs::set_permissions(ws.join("a"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // Deeper than the descriptor budget.
    let mut deep = ws.join("deep");
    for _ in 0..(MAX_DEPTH * 2 + 5) {
        deep = deep.join("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom"), "x").unwrap();
    // A top-level link: removed itself, its target left alone.
    symlink(&outside, run.join("home")).unwrap();

    remove_tree(&run, OsStr::new("workspace")).unwrap();
    remove_tree(&run, OsStr::new("home")).unwrap();
    remove_tree(&run, OsStr::new("tmp")).unwrap(); // missing: fine
    assert!(std::fs::symlink_metadata(&ws).is_err());
    assert!(std::fs::symlink_metadata(run.join("home")).is_err());
    assert_eq!(
        std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "host file"
    );
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0);
}

#[test]
fn usage_counts_blocks_and_follows_no_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), vec![1u8; 64 * 1024]).unwrap();
    std::os::unix::fs::symlink("/usr", dir.path().join("l")).unwrap();
    let n = disk_usage(dir.path());
    assert!((64 * 1024..1024 * 1024).contains(&n), "{n}");
    assert_eq!(disk_usage(&dir.path().join("missing")), 0);
}
