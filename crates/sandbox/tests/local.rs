//! The local sandbox against the real bubblewrap: what a process inside can
//! and cannot see, and that killing it kills everything it started.
#![allow(clippy::disallowed_methods)] // tests start their own fixtures

use std::time::Duration;

use errand_sandbox::{CommandLine, Limits, LocalSandbox, Sandbox, SandboxSpec};
use tokio::io::AsyncReadExt;

async fn available() -> Option<LocalSandbox> {
    let sb = LocalSandbox::new();
    match sb.check().await {
        Ok(()) => Some(sb),
        Err(e) => {
            eprintln!("skipped: local sandbox unavailable: {e}");
            None
        }
    }
}

fn spec(root: &std::path::Path, env: Vec<(String, String)>) -> SandboxSpec {
    SandboxSpec {
        name: "t".into(),
        workspace: root.join("workspace"),
        home: root.join("home"),
        tmp: root.join("tmp"),
        ro_mounts: vec![],
        env,
        limits: Limits::default(),
        network: Default::default(),
        entry: Vec::new(),
        layers: None,
    }
}

async fn sh(sb: &LocalSandbox, spec: &SandboxSpec, script: &str) -> (i32, String) {
    let mut p = sb
        .spawn(spec, &CommandLine::new("/bin/sh", ["-c", script]))
        .await
        .expect("spawn");
    let mut out = String::new();
    let mut stdout = p.take_stdout().expect("stdout");
    stdout.read_to_string(&mut out).await.expect("read");
    let status = p.wait().await.expect("wait");
    (status.code.unwrap_or(-1), out)
}

#[tokio::test]
async fn sees_only_its_workspace_and_declared_environment() {
    let Some(sb) = available().await else { return };
    let host = tempfile::tempdir().unwrap();
    // A secret on the host, beside the run's directories (like errand's database).
    std::fs::write(host.path().join("errand.db"), "secret").unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("theirs.txt"), "other run").unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let s = spec(
        host.path(),
        vec![
            ("ONLY_THIS".into(), "1".into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ],
    );
    std::fs::create_dir_all(&s.workspace).unwrap();
    std::fs::write(s.workspace.join("mine.txt"), "mine").unwrap();
    let script = format!(
        "cat /workspace/mine.txt; echo; \
         cat {db} 2>/dev/null && echo LEAK-db; \
         cat {other}/theirs.txt 2>/dev/null && echo LEAK-other; \
         ls {home} 2>/dev/null | head -1 | grep . && echo LEAK-home; \
         cat /etc/shadow 2>/dev/null && echo LEAK-shadow; \
         echo pid1=$(cat /proc/1/comm); \
         env | sort; echo id=$(id -u); echo touch > /workspace/new.txt",
        db = host.path().join("errand.db").display(),
        other = other.path().display(),
    );
    let (code, out) = sh(&sb, &s, &script).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("mine\n"), "{out}");
    assert!(!out.contains("LEAK"), "{out}");
    let env: Vec<&str> = out
        .lines()
        .filter(|l| l.contains('=') && !l.starts_with("pid1=") && !l.starts_with("id="))
        .collect();
    let names: Vec<&str> = env.iter().filter_map(|l| l.split('=').next()).collect();
    // The shell itself adds PWD (and may add SHLVL / _); nothing of errand's own environment.
    for n in &names {
        assert!(
            ["ONLY_THIS", "PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(n),
            "unexpected env {n}: {out}"
        );
    }
    assert!(out.contains("ONLY_THIS=1"));
    assert!(out.contains("id=1000"), "{out}");
    assert!(
        !out.contains("pid1=systemd") && !out.contains("pid1=init"),
        "own PID namespace: {out}"
    );
    assert!(
        s.workspace.join("new.txt").exists(),
        "workspace is writable"
    );
}

#[tokio::test]
async fn kill_takes_down_the_whole_tree() {
    let Some(sb) = available().await else { return };
    let host = tempfile::tempdir().unwrap();
    let s = spec(host.path(), vec![("PATH".into(), "/usr/bin:/bin".into())]);
    // Sleep lengths unique to this test process, so another test run on the
    // machine cannot be mistaken for a survivor.
    let a = 3_000 + std::process::id() % 50_000;
    let b = a + 1;
    let mut p = sb
        .spawn(
            &s,
            &CommandLine::new(
                "/bin/sh",
                [
                    "-c",
                    &format!("(sleep {a}; echo done) & (sh -c 'sleep {b}') & wait"),
                ],
            ),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.kill().await;
    drop(p);
    // The kernel tears down the sandbox's PID namespace after its init dies:
    // give it time (a generous deadline detects a leak; it is not a speed target).
    let survivors = || {
        let ps = std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains(&format!("sleep {a}")) || l.contains(&format!("sleep {b}")))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut left = survivors();
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = survivors();
    }
    assert!(left.is_empty(), "survivors: {left:?}");
}

#[tokio::test]
async fn process_limit_is_applied_or_reported() {
    let Some(sb) = available().await else { return };
    let host = tempfile::tempdir().unwrap();
    let mut s = spec(host.path(), vec![("PATH".into(), "/usr/bin:/bin".into())]);
    s.limits = Limits {
        memory_bytes: Some(256 << 20),
        max_pids: Some(20),
        cpus: None,
        lifetime_secs: None,
    };
    let mut p = sb
        .spawn(
            &s,
            &CommandLine::new(
                "/bin/sh",
                [
                    "-c",
                    "for i in $(seq 60); do sleep 2 & done; wait; echo done",
                ],
            ),
        )
        .await
        .unwrap();
    let notices = p.notices.clone();
    let mut err = String::new();
    if let Some(mut e) = p.take_stderr() {
        let _ = e.read_to_string(&mut err).await;
    }
    let _ = p.wait().await;
    if notices.is_empty() {
        assert!(
            err.contains("fork")
                || err.contains("Resource temporarily unavailable")
                || err.contains("retry"),
            "60 background processes under a 20-process limit should fail to fork: {err}"
        );
    } else {
        assert!(notices[0].contains("not applied"), "{notices:?}");
    }
}

/// An overlay workspace: the run's layer over a shared checkout. The process
/// sees both, writes only its layer, and the checkout, the view and the host's
/// mount table stay as they were.
#[tokio::test]
async fn an_overlay_workspace_writes_only_the_runs_layer() {
    let Some(sb) = available().await else { return };
    assert!(
        sb.layers_workspaces().await,
        "overlay workspaces mount here (Linux ≥ 5.11)"
    );
    let host = tempfile::tempdir().unwrap();
    let lower = host.path().join("checkout");
    std::fs::create_dir_all(lower.join("src")).unwrap();
    std::fs::write(lower.join("README.md"), "shared\n").unwrap();
    std::fs::write(lower.join("src/lib.rs"), "fn a() {}\n").unwrap();
    let mut s = spec(host.path(), vec![("PATH".into(), "/usr/bin:/bin".into())]);
    s.layers = Some(errand_sandbox::WorkspaceLayers {
        lower: lower.clone(),
        work: host.path().join("workspace.work"),
        view: host.path().join("workspace.view"),
    });
    let (code, out) = sh(
        &sb,
        &s,
        "cat /workspace/README.md; echo mine > /workspace/README.md; rm -r /workspace/src; \
         echo new > /workspace/new.txt; ls /workspace | tr '\\n' ' '",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "shared\nREADME.md new.txt ");
    // The checkout is untouched; the run's layer holds its writes.
    assert_eq!(
        std::fs::read_to_string(lower.join("README.md")).unwrap(),
        "shared\n"
    );
    assert!(lower.join("src/lib.rs").is_file());
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("README.md")).unwrap(),
        "mine\n"
    );
    // Nothing is mounted on the host: the view is an empty directory here.
    let view = s.layers.as_ref().unwrap().view.clone();
    assert_eq!(std::fs::read_dir(&view).unwrap().count(), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&view.display().to_string()), "{mounts}");
    // The checkout's host path (the agent can read it in its mount table) is
    // not in the sandbox, and the overlay cannot be unmounted or remounted.
    let script = format!(
        "grep -q lowerdir= /proc/self/mountinfo && echo listed; \
         ls {lower} 2>/dev/null && echo LEAK-lower; \
         umount /workspace 2>/dev/null && echo LEAK-umount; \
         mount -o remount,rw /workspace 2>/dev/null && echo LEAK-remount; \
         mount -t overlay overlay -o lowerdir=/workspace,upperdir=/tmp/u,workdir=/tmp/w /tmp 2>/dev/null && echo LEAK-mount; \
         true",
        lower = lower.display()
    );
    let (code, out) = sh(&sb, &s, &script).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("LEAK"), "{out}");
    // The next process of the run sees the same workspace.
    let (code, out) = sh(
        &sb,
        &s,
        "cat /workspace/README.md; test ! -e /workspace/src && echo gone",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "mine\ngone\n"));
}
