//! The agent is an adversary: a custom `[[harness]]` script, running in the
//! sandbox as a hostile agent would, attacks errand's host-side code. Each
//! case asserts the host is untouched: host files keep their contents, no
//! byte of them reaches the run's record, no other repository's commits reach
//! the run's branch, and a run the agent tries to wedge still ends at its
//! timeout, with errand's memory bounded. Every case runs on the local
//! (bubblewrap) and Docker backends, and on Modal against the strict fake
//! Modal server where the fake can honestly stand in (the one case it cannot
//! is reported ignored, with why); in CI a missing backend fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// Writes `script` as the harness `evil` (errand's own event format) and
/// returns the environment that declares it.
fn evil(env: Env, script: &str) -> Env {
    let dir = env.dir.path().join("agent-evil");
    std::fs::create_dir_all(&dir).expect("set up the harness");
    std::fs::write(dir.join("agent.sh"), script).expect("set up the harness");
    let config = env.dir.path().join("config-evil.toml");
    std::fs::write(
        &config,
        format!(
            "[[harness]]\nname = \"evil\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\"]\nformat = \"errand\"\nenv = [\"EVIL_KEY\"]\ndir = \"{}\"\n",
            dir.display()
        ),
    )
    .expect("set up the harness");
    env.var("ERRAND_CONFIG", &config.to_string_lossy())
        .var("EVIL_KEY", "evil-key-0123456789abcdef")
}

/// The events that end a successful turn.
const DONE: &str = r#"echo '{"type":"session_start","session_id":"evil-1"}'
echo '{"type":"result","is_error":false,"text":"done","turns":1,"usage":{"input_tokens":1,"output_tokens":1,"cost_usd":0.0}}'
"#;

/// A host file with unique contents the agent must never read or change.
fn canary(dir: &Path, name: &str) -> (PathBuf, String) {
    let text = format!("CANARY-{name}-{}", uuid_like());
    let path = dir.join(format!("canary-{name}"));
    std::fs::write(&path, &text).expect("write the canary");
    (path, text)
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", t, std::process::id())
}

/// Every outbox errand made under its home.
fn outboxes(home: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(home.join("runs"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path().join("outbox.git"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `repo` holds object `sha`.
fn has_object(repo: &Path, sha: &str) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "-e", sha])
        .status()
        .is_ok_and(|s| s.success())
}

/// Asserts that `needle` is nowhere in errand's record of the runs: files
/// under its home (events, raw output, stderr, the database) and `v`.
fn nowhere(env: &Env, v: &serde_json::Value, needle: &str) {
    let hits = files_containing(&env.home, needle.as_bytes());
    assert!(hits.is_empty(), "{needle} found in {hits:?}");
    assert!(!v.to_string().contains(needle), "{needle} in {v:#}");
}

/// A host repository with one commit the run's branch must never contain.
fn foreign_repo(root: &Path) -> (PathBuf, String) {
    let repo = root.join("foreign");
    std::fs::create_dir_all(&repo).expect("foreign repo");
    git(&repo, &["init", "--quiet", "-b", "main"]);
    std::fs::write(repo.join("secret.txt"), "FOREIGN-SECRET\n").expect("foreign repo");
    git(&repo, &["add", "."]);
    git(
        &repo,
        &[
            "-c",
            "user.name=x",
            "-c",
            "user.email=x@x",
            "commit",
            "--quiet",
            "-m",
            "foreign",
        ],
    );
    let sha = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    (repo, sha)
}

fn case_crafted_git_metadata_reaches_no_host_file_or_repository(backend: Backend) {
    let probe = backend.env(Env::new());
    let Some(extra) = backend.args(&probe) else {
        return;
    };
    let root = probe.dir.path().to_path_buf();
    let (canary_path, canary_text) = canary(&root, "git");
    let (foreign, foreign_sha) = foreign_repo(&root);
    let foreign_git = foreign.join(".git");
    // Each way an agent can point the workspace's .git at the host. Where git
    // in the sandbox must keep working, the agent first makes the same
    // absolute path inside its own /tmp (a copy of its repository): a path
    // that means one thing in the sandbox and another on the host.
    let attacks = [
        (
            "alternates and a moved ref",
            format!(
                "git checkout -q --detach\necho '{objects}' > .git/objects/info/alternates\nprintf '%s\\n' {foreign_sha} > \".git/$b\"\n",
                objects = foreign_git.join("objects").display()
            ),
        ),
        (
            "alternates through a symlink",
            format!(
                "rm -f .git/objects/info/alternates; ln -s {canary} .git/objects/info/alternates\nln -sf {canary} .git/packed-refs\n",
                canary = canary_path.display()
            ),
        ),
        (
            "a ref that is a symlink to a host file",
            format!(
                "git checkout -q --detach\nrm -f \".git/$b\"; ln -s {canary} \".git/$b\"\n",
                canary = canary_path.display()
            ),
        ),
        (
            "commondir at another repository",
            format!(
                "mkdir -p '{fgp}' && cp -a .git '{fg}'\necho '{fg}' > .git/commondir\nrm -rf .git/refs .git/objects\n",
                fg = foreign_git.display(),
                fgp = foreign.display()
            ),
        ),
        (
            "a .git file naming another repository",
            format!(
                "mkdir -p '{fgp}' && cp -a .git '{fg}'\nmv .git .git-old; echo 'gitdir: {fg}' > .git\n",
                fg = foreign_git.display(),
                fgp = foreign.display()
            ),
        ),
    ];
    for (what, attack) in attacks {
        let env = backend.env(Env::new());
        let bare = bare_repo(env.dir.path());
        let script = format!(
            "set -e\necho change >> README.md\ngit add README.md\ngit commit -qm mine\nb=$(git symbolic-ref HEAD)\n{attack}{DONE}"
        );
        let env = evil(env, &script);
        let mut args = vec!["--harness", "evil", "--push", "--timeout", "60s"];
        args.extend(&extra);
        let bare_s = bare.to_string_lossy().into_owned();
        args.extend(["--repo", &bare_s, "attack"]);
        let (_ok, v) = env.run_json(&args);
        nowhere(&env, &v, &canary_text);
        nowhere(&env, &v, "FOREIGN-SECRET");
        assert!(!has_object(&bare, &foreign_sha), "{what}: pushed {v:#}");
        for outbox in outboxes(&env.home) {
            assert!(
                !has_object(&outbox, &foreign_sha),
                "{what}: the foreign commit reached {}",
                outbox.display()
            );
        }
        assert_eq!(
            std::fs::read_to_string(&canary_path).unwrap_or_default(),
            canary_text,
            "{what}"
        );
        assert!(ended(&v), "{what}: {v:#}");
    }
}

/// Every entry under `dir`, links not followed: path, kind and mode, contents
/// (a link's target).
fn tree_of(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read the checkout").flatten() {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            let data = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .map(|t| t.as_os_str().as_encoded_bytes().to_vec())
                    .unwrap_or_default()
            } else if meta.is_file() {
                std::fs::read(&path).expect("read")
            } else {
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                Vec::new()
            };
            out.push((rel, meta.mode(), data));
        }
    }
    out.sort();
    out
}

/// The shared checkouts of `repo` that runs' workspaces are made from (one
/// per commit), under errand's cache (which the tests share).
fn checkouts(repo: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = cache_dir().join("checkouts");
    for dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for c in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = c.path();
            let config = std::fs::read_to_string(p.join(".git/config")).unwrap_or_default();
            if p.extension().is_none() && config.contains(&format!("url = {repo}\n")) {
                out.push(p);
            }
        }
    }
    out
}

fn case_a_run_cannot_change_the_checkout_other_runs_start_from(backend: Backend) {
    let env = backend.env(Env::new());
    let Some(extra) = backend.args(&env) else {
        return;
    };
    let bare = bare_repo(env.dir.path());
    let bare_s = bare.to_string_lossy().into_owned();
    // First a run that leaves the shared checkout made.
    let clean = format!("set -e\ntest -z \"$(git status --porcelain)\"\n{DONE}");
    let env = evil(env, &clean);
    let mut args = vec!["--harness", "evil", "--timeout", "60s"];
    args.extend(&extra);
    args.extend(["--repo", &bare_s, "look"]);
    let (ok, v) = env.run_json(&args);
    assert!(ok, "a clean workspace: {v:#}");
    let made = checkouts(&bare_s);
    assert_eq!(made.len(), 1, "one shared checkout: {made:?}");
    let before = tree_of(&made[0]);
    // Then an agent that writes, truncates, removes and replaces everything it
    // can reach in its workspace, .git's objects, index and config included,
    // and plants links and a FIFO where files were.
    let attack = format!(
        "set +e\n\
         chmod -R u+w . 2>/dev/null\n\
         for f in $(find . -type f); do printf 'EVIL' > \"$f\"; done\n\
         for f in $(find .git -type f -name '*.pack'); do : > \"$f\"; done\n\
         rm -rf src .git/index .git/refs .git/packed-refs .git/HEAD\n\
         ln -s /etc/passwd README.md.link; mv README.md.link README.md\n\
         mkfifo .git/config.fifo && mv .git/config.fifo .git/config\n\
         mkdir -p deep && for i in 1 2 3 4 5 6 7 8; do mkdir -p deep/$i; done\n\
         {DONE}"
    );
    let env = evil(env, &attack);
    let (_ok, v) = env.run_json(&args);
    assert!(ended(&v), "{v:#}");
    assert_eq!(
        checkouts(&bare_s),
        made,
        "the attacked run made no checkout of its own"
    );
    assert!(before == tree_of(&made[0]), "the shared checkout changed");
    // And a run after it starts from the untouched commit.
    let after = format!(
        "set -e\ntest -z \"$(git status --porcelain)\"\ngrep -qx '# sample' README.md\ntest -f src/lib.rs\n\
         test \"$(git symbolic-ref HEAD)\" != refs/heads/main\ngit fsck --no-progress\n{DONE}"
    );
    let env = evil(env, &after);
    let (ok, v) = env.run_json(&args);
    assert!(ok, "the next run starts clean: {v:#}");
    if matches!(backend, Backend::Local) {
        // On the local backend the workspace is an overlay on the checkout.
        let runs: Vec<_> = std::fs::read_dir(env.home.join("runs"))
            .expect("runs")
            .flatten()
            .filter(|e| e.path().join("workspace.view").is_dir())
            .collect();
        assert_eq!(runs.len(), 3, "every run's workspace was an overlay");
    }
}

fn case_symlinks_planted_for_errands_files_leave_host_files_untouched(backend: Backend) {
    let env = backend.env(Env::new());
    let Some(extra) = backend.args(&env) else {
        return;
    };
    let root = env.dir.path().to_path_buf();
    let bare = bare_repo(&root);
    let targets = [
        "/tmp/errand-commit-msg",
        "/tmp/.errand-passwd",
        "/tmp/.errand-group",
        "/home/agent/.errand/guard-denials.jsonl",
        "/home/agent/.gitconfig",
    ];
    let mut canaries = Vec::new();
    let mut script = String::from("set -e\nmkdir -p /home/agent/.errand\n");
    for (i, t) in targets.iter().enumerate() {
        let (path, text) = canary(&root, &format!("link{i}"));
        script.push_str(&format!("rm -f {t}; ln -s {} {t}\n", path.display()));
        canaries.push((path, text));
    }
    // Leave something uncommitted, so errand commits it (and writes its message).
    script.push_str("echo leftover > leftover.txt\n");
    script.push_str(DONE);
    let env = evil(env, &script);
    let mut args = vec!["--harness", "evil", "--timeout", "60s"];
    args.extend(&extra);
    let bare_s = bare.to_string_lossy().into_owned();
    args.extend(["--repo", &bare_s, "attack"]);
    let (ok, v) = env.run_json(&args);
    assert!(ok, "the run itself is fine: {v:#}");
    for (path, text) in &canaries {
        assert_eq!(
            std::fs::read_to_string(path).unwrap_or_default(),
            *text,
            "{} was written through a planted link",
            path.display()
        );
        nowhere(&env, &v, text);
    }
    assert_eq!(v["commit"].as_str().map(str::len), Some(40), "{v:#}");
}

fn case_hostile_history_is_refused_and_never_pushed(backend: Backend) {
    let probe = backend.env(Env::new());
    let Some(extra) = backend.args(&probe) else {
        return;
    };
    let attacks = [
        (
            "a .gitmodules that climbs out of .git/modules",
            "printf '[submodule \"../../../hooks\"]\\n\\tpath = x\\n\\turl = https://example.invalid/x\\n' > .gitmodules\ngit add .gitmodules\ngit commit -qm mods\n",
            "object checks",
        ),
        (
            "a branch that does not descend from the base",
            "git checkout -q --orphan other\necho x > x\ngit add x\ngit commit -qm unrelated\ngit branch -f \"${b#refs/heads/}\" other\ngit checkout -q \"${b#refs/heads/}\"\n",
            "does not descend",
        ),
        (
            "a deleted branch",
            "git checkout -q --detach\nmv \".git/$b\" /tmp/gone\n",
            "not in the workspace",
        ),
    ];
    for (what, attack, expect) in attacks {
        let env = backend.env(Env::new());
        let bare = bare_repo(env.dir.path());
        let script = format!("set -e\nb=$(git symbolic-ref HEAD)\n{attack}{DONE}");
        let env = evil(env, &script);
        let mut args = vec!["--harness", "evil", "--push", "--timeout", "60s"];
        args.extend(&extra);
        let bare_s = bare.to_string_lossy().into_owned();
        args.extend(["--repo", &bare_s, "attack"]);
        let (ok, v) = env.run_json(&args);
        assert!(!ok, "{what}: {v:#}");
        assert_eq!(v["state"], "failed", "{what}: {v:#}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(expect),
            "{what}: {v:#}"
        );
        let branches = git(&bare, &["branch", "--list", "errand/*"]);
        assert!(branches.trim().is_empty(), "{what}: pushed {branches}");
    }
}

/// Peak resident memory (VmHWM) of a live process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `errand run --json ARGS`, watching its memory; returns the result,
/// how long it took and its peak memory in MiB. With `term_after`, errand
/// gets SIGTERM then.
fn run_watched(
    env: &Env,
    args: &[&str],
    term_after: Option<Duration>,
) -> (serde_json::Value, Duration, u64) {
    let mut a = vec!["run", "--json"];
    a.extend_from_slice(args);
    let started = Instant::now();
    let mut child = env
        .command(&a)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start errand");
    let pid = child.id();
    let mut peak = 0;
    let mut termed = false;
    loop {
        if let Some(k) = peak_kib(pid) {
            peak = peak.max(k);
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if let Some(after) = term_after {
            if !termed && started.elapsed() >= after {
                // SAFETY: a plain signal to our own child.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                termed = true;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "errand did not end: the agent wedged it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().expect("errand's output");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, took, peak / 1024)
}

fn case_fifos_dev_zero_and_endless_output_end_at_the_timeout(backend: Backend) {
    let probe = backend.env(Env::new());
    let Some(extra) = backend.args(&probe) else {
        return;
    };
    // Where errand polls the guard's log, a FIFO or a link to /dev/zero; then
    // an endless stdout line (no newline, ever: the run's timeout cuts it off
    // mid-line) of bytes text cannot hold as they are (NUL, invalid UTF-8:
    // each becomes three), endless stderr of the same, and a hang.
    let plants = [
        (
            "a FIFO",
            "mkfifo /home/agent/.errand/guard-denials.jsonl",
            "cat /dev/zero",
        ),
        (
            "/dev/zero",
            "ln -s /dev/zero /home/agent/.errand/guard-denials.jsonl",
            "tr '\\0' '\\377' < /dev/zero",
        ),
    ];
    for (what, plant, flood) in plants {
        let env = backend.env(Env::new());
        let script = format!(
            "mkdir -p /home/agent/.errand\n{plant}\necho '{{\"type\":\"session_start\",\"session_id\":\"s\"}}'\n\
             ({flood} >&2) &\n\
             {flood}\necho\nsleep 600\n"
        );
        let env = evil(env, &script);
        let mut args = vec!["--harness", "evil", "--timeout", "8s"];
        args.extend(&extra);
        args.push("attack");
        let (v, took, peak_mib) = run_watched(&env, &args, None);
        assert_eq!(v["state"], "timed_out", "{what}: {v:#}");
        assert!(
            took < Duration::from_secs(90),
            "{what}: took {took:?} for an 8 s timeout"
        );
        assert!(
            peak_mib < 160,
            "{what}: errand's memory grew to {peak_mib} MiB"
        );
        eprintln!("{what}: ended in {took:?}, errand peaked at {peak_mib} MiB");
        let events = env.events(v["id"].as_str().unwrap_or_default());
        assert!(
            events.iter().any(|e| e["type"] == "warning"
                && e["message"].as_str().unwrap_or("").contains("was cut")),
            "{what}: the cut line is recorded"
        );
    }
    // SIGTERM ends a wedged run too, and promptly.
    let env = evil(
        backend.env(Env::new()),
        "mkdir -p /home/agent/.errand\nmkfifo /home/agent/.errand/guard-denials.jsonl\necho '{\"type\":\"session_start\",\"session_id\":\"s\"}'\nsleep 600\n",
    );
    let mut args = vec!["--harness", "evil", "--timeout", "10m"];
    args.extend(&extra);
    args.push("attack");
    let (v, took, _) = run_watched(&env, &args, Some(Duration::from_secs(4)));
    assert_eq!(v["state"], "cancelled", "{v:#}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

fn case_steps_after_the_agent_obey_the_deadline(backend: Backend) {
    let env = backend.env(Env::new());
    let Some(extra) = backend.args(&env) else {
        return;
    };
    let bare = bare_repo(env.dir.path());
    // A clean filter that never returns: errand's commit of leftovers runs it.
    let script = format!(
        "git config filter.hang.clean 'sleep 600'\necho '* filter=hang' > .gitattributes\necho x > new.txt\n{DONE}"
    );
    let env = evil(env, &script);
    let mut args = vec!["--harness", "evil", "--timeout", "5s"];
    args.extend(&extra);
    let bare_s = bare.to_string_lossy().into_owned();
    args.extend(["--repo", &bare_s, "attack"]);
    let (v, took, _) = run_watched(&env, &args, None);
    // The agent finished at once; the finishing steps get the run's deadline
    // or errand's grace period, whichever is later, and never more.
    assert!(
        ["timed_out", "failed"].contains(&v["state"].as_str().unwrap_or("")),
        "{v:#}"
    );
    // 5 s for the agent, then 30 s of grace for the steps after it.
    assert!(took < Duration::from_secs(90), "took {took:?}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("timed out"),
        "{v:#}"
    );
}

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $case() { super::$case(super::Backend::Local) } )*
        }
        mod docker {
            $( #[test] fn $case() { super::$case(super::Backend::Docker) } )*
        }
    };
}

/// Modal, on the strict fake (its rules checked after each case). Errand's
/// host side is the same code as on the other backends: what comes back
/// from the sandbox is handled the same way.
mod modal {
    use crate::common::{modal_fake, Backend};

    fn on_fake(case: fn(Backend)) {
        case(Backend::Modal);
        if let Some(f) = modal_fake() {
            assert_eq!(f.violations(), Vec::<String>::new(), "the fake's rules");
            // The runs went through Modal's API, not another backend.
            let calls = f.calls();
            assert!(
                calls.iter().any(|c| c == "SandboxCreate"),
                "no Modal sandbox was created: {calls:?}"
            );
        }
    }

    #[test]
    fn case_crafted_git_metadata_reaches_no_host_file_or_repository() {
        on_fake(super::case_crafted_git_metadata_reaches_no_host_file_or_repository);
    }

    #[test]
    fn case_symlinks_planted_for_errands_files_leave_host_files_untouched() {
        on_fake(super::case_symlinks_planted_for_errands_files_leave_host_files_untouched);
    }

    #[test]
    fn case_hostile_history_is_refused_and_never_pushed() {
        on_fake(super::case_hostile_history_is_refused_and_never_pushed);
    }

    #[test]
    fn case_a_run_cannot_change_the_checkout_other_runs_start_from() {
        on_fake(super::case_a_run_cannot_change_the_checkout_other_runs_start_from);
    }

    #[test]
    fn case_steps_after_the_agent_obey_the_deadline() {
        on_fake(super::case_steps_after_the_agent_obey_the_deadline);
    }

    /// Not applicable: the fake keeps every exec's whole output in memory
    /// (Modal's servers keep it for the resumable stream), so 600 MB of
    /// endless output would measure the fake, not errand. Reported as
    /// ignored, never as passed.
    #[test]
    #[ignore = "not applicable on the fake Modal server: it holds every exec's whole output in memory"]
    fn case_fifos_dev_zero_and_endless_output_end_at_the_timeout() {
        on_fake(super::case_fifos_dev_zero_and_endless_output_end_at_the_timeout);
    }
}

on_every_backend!(
    case_crafted_git_metadata_reaches_no_host_file_or_repository,
    case_a_run_cannot_change_the_checkout_other_runs_start_from,
    case_symlinks_planted_for_errands_files_leave_host_files_untouched,
    case_hostile_history_is_refused_and_never_pushed,
    case_fifos_dev_zero_and_endless_output_end_at_the_timeout,
    case_steps_after_the_agent_obey_the_deadline,
);
