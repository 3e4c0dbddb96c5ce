//! The agent and other local users are adversaries of errand's host side:
//! while a hostile `[[harness]]` script runs (under a long `$ERRAND_HOME`,
//! where socket paths used to fall back to `/tmp`), the test looks at the
//! host as another local user would.
//!
//! - Every Unix socket the errand process holds is mode 0600 (never
//!   world-writable) in a directory of errand's user with mode 0700.
//! - No host process has the harness's API key on its command line (`ps`
//!   shows every user's; the environment is private to its owner).
//! - The agent plants links at the old passwd and group locations in its
//!   `/tmp`, pointing at a host canary file; errand's next sandbox process of
//!   the run (the branch export) must not write through them.
//!
//! On the local (bubblewrap) and Docker backends; in CI a missing backend
//! fails instead of skipping.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn euid() -> u32 {
    // SAFETY: plain system call.
    unsafe { libc::geteuid() }
}

fn unique(what: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{what}-{}-{t}", std::process::id())
}

/// Declares `script` as the harness `hostile` in `$ERRAND_HOME/config.toml`
/// (after what is there), started with `marker` as its one argument (so the
/// test sees when it runs), needing `HOSTILE_API_KEY`.
fn hostile(env: Env, script: &str, marker: &str, key: &str) -> Env {
    use std::io::Write;
    let dir = env.dir.path().join("agent-hostile");
    std::fs::create_dir_all(&dir).expect("set up the harness");
    std::fs::write(dir.join("agent.sh"), script).expect("set up the harness");
    std::fs::create_dir_all(&env.home).expect("set up the harness");
    let mut config = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.home.join("config.toml"))
        .expect("set up the harness");
    write!(
        config,
        "\n[[harness]]\nname = \"hostile\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\", \"{marker}\"]\nformat = \"errand\"\nenv = [\"HOSTILE_API_KEY\"]\ndir = \"{}\"\n",
        dir.display()
    )
    .expect("set up the harness");
    env.var("HOSTILE_API_KEY", key)
}

/// An `$ERRAND_HOME` far longer than a Unix socket path may be.
fn long_home(mut env: Env) -> Env {
    env.home = env
        .dir
        .path()
        .join("a-long-errand-home-".repeat(5))
        .join("b".repeat(100));
    env
}

/// Every process's command line, with its pid.
fn cmdlines() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            out.push((name, c));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The paths of the Unix sockets process `pid` holds, from its descriptors
/// and `/proc/net/unix` (a socket's inode to its bound path).
fn sockets_of(pid: u32) -> Vec<PathBuf> {
    let mut inodes = Vec::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy().to_string();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.push(n.to_string());
                }
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let mut out: Vec<PathBuf> = Vec::new();
    // Num RefCount Protocol Flags Type St Inode [Path]
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 || !inodes.iter().any(|i| i == cols[6]) {
            continue;
        }
        let path = cols[7..].join(" ");
        if path.starts_with('@') {
            continue;
        }
        let path = PathBuf::from(path);
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// A socket errand holds: mode 0600 (no one else may connect), owned by
/// errand or by the container's user, in a 0700 directory of errand's.
fn check_socket(path: &Path, backend: Backend) {
    let m = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("errand's socket {} is not there: {e}", path.display()));
    assert!(m.file_type().is_socket(), "{}", path.display());
    assert_eq!(
        m.mode() & 0o777,
        0o600,
        "errand's socket {} has mode {:o}: world- or group-accessible",
        path.display(),
        m.mode() & 0o777
    );
    let owner_ok = m.uid() == euid()
        || (matches!(backend, Backend::Docker) && euid() == 0 && m.uid() == 10001);
    assert!(owner_ok, "{} belongs to uid {}", path.display(), m.uid());
    let dir = path.parent().expect("a socket path has a directory");
    let d = std::fs::symlink_metadata(dir).expect("the socket's directory");
    assert!(
        d.is_dir() && !d.file_type().is_symlink(),
        "{}",
        dir.display()
    );
    assert_eq!(
        (d.uid(), d.mode() & 0o777),
        (euid(), 0o700),
        "the directory of errand's socket {} is not errand's private one",
        path.display()
    );
    assert!(path.as_os_str().len() < 108);
}

/// The hostile agent: plants links at the old passwd and group locations,
/// leaves an uncommitted change (so errand exports the branch in another
/// sandbox process), fetches with git (through errand's git proxy on an
/// `--agent-git` run), then waits while the test looks at the host.
/// Its result is what the fetch printed.
fn script(canary: &Path) -> String {
    format!(
        r#"ln -sf '{c}' /tmp/.errand-passwd
ln -sf '{c}' /tmp/.errand-group
echo "hostile" >> README.md
R=$(git fetch -q origin 2>&1 && echo FETCH-OK || echo FETCH-FAILED)
R=$(printf '%s' "$R" | tr -d '"\\' | tr '\n' ' ')
echo '{{"type":"session_start","session_id":"hostile-1"}}'
sleep 4
echo '{{"type":"result","is_error":false,"text":"'"$R"'","turns":1,"usage":{{"input_tokens":1,"output_tokens":1,"cost_usd":0.0}}}}'
"#,
        c = canary.display()
    )
}

/// What the test saw while the harness ran.
struct Watched {
    stdout: String,
    stderr: String,
    sockets: Vec<PathBuf>,
}

/// Runs `errand run --json args…` and, while the harness (`marker`) runs,
/// checks every host process's command line for each of `secrets()` and
/// every socket errand holds. Returns once errand has exited.
fn watch_run(
    env: &Env,
    args: &[&str],
    backend: Backend,
    marker: &str,
    secrets: &dyn Fn() -> Vec<String>,
) -> Watched {
    let out_path = env.dir.path().join("run.out");
    let err_path = env.dir.path().join("run.err");
    let mut child = env
        .command(args)
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .stdin(Stdio::null())
        .spawn()
        .expect("start errand run");
    let errand = child.id();
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut scans, mut sockets) = (0, Vec::<PathBuf>::new());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for errand") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("errand run did not end");
        }
        let all = cmdlines();
        if all.iter().any(|(_, c)| contains(c, marker.as_bytes())) {
            scans += 1;
            let secrets = secrets();
            for (pid, c) in &all {
                for secret in &secrets {
                    assert!(
                        !contains(c, secret.as_bytes()),
                        "a secret is on the command line of process {pid}, visible to every user: {}",
                        String::from_utf8_lossy(c).replace('\0', " ")
                    );
                }
            }
            for s in sockets_of(errand) {
                check_socket(&s, backend);
                if !sockets.contains(&s) {
                    sockets.push(s);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        scans >= 3,
        "the harness was never seen running ({scans} scans): {status}\n{stdout}\n{stderr}"
    );
    // Gone with the run: no socket of errand's is left behind.
    for s in &sockets {
        assert!(!s.exists(), "{} outlived the run", s.display());
    }
    Watched {
        stdout,
        stderr,
        sockets,
    }
}

/// The run's JSON summary, succeeded, with the agent's change exported.
fn succeeded(w: &Watched) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&w.stdout)
        .unwrap_or_else(|e| panic!("no JSON from errand run ({e}):\n{}\n{}", w.stdout, w.stderr));
    assert_eq!(v["state"], "succeeded", "{v:#}\n{}", w.stderr);
    // The export after the harness (a second sandbox process) did happen.
    assert!(
        v["diffstat"]
            .as_str()
            .unwrap_or("")
            .contains("1 file changed"),
        "{v:#}"
    );
    v
}

fn host_side_holds(backend: Backend) {
    let env = long_home(Env::new());
    let Some(extra) = backend.args(&env) else {
        return;
    };
    let bare = bare_repo(env.dir.path());
    let canary = env.dir.path().join("canary");
    let canary_text = unique("CANARY");
    std::fs::write(&canary, &canary_text).expect("write the canary");
    let key = unique("sk-hostile-key");
    let marker = unique("hostile-harness-running");
    let env = hostile(env, &script(&canary), &marker, &key);

    let repo = bare.to_string_lossy().to_string();
    let mut args = vec!["run", "--json", "--harness", "hostile"];
    args.extend(extra);
    args.extend(["--repo", repo.as_str(), "do what you must"]);
    let w = watch_run(&env, &args, backend, &marker, &|| vec![key.clone()]);
    // The default egress allowlist: the egress proxy's socket, at least.
    assert!(
        !w.sockets.is_empty(),
        "errand held no socket while the harness ran\n{}",
        w.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&canary).expect("the canary"),
        canary_text,
        "errand wrote through the agent's link to a host file\n{}\n{}",
        w.stdout,
        w.stderr
    );
    succeeded(&w);
}

/// `--agent-git` on `github:acme/widgets` (fake GitHub): the run's GitHub
/// token is on no command line either, the git proxy's socket is private
/// like the egress socket, and the agent's git still fetches through it
/// (reached over the egress proxy; the sandbox holds no token).
async fn github_token_holds(backend: Backend) {
    let env = long_home(Env::new());
    let Some(extra) = backend.args(&env) else {
        return;
    };
    let w = crate::common::github::world(env).await;
    let (env, github) = (w.env, w.github);
    let canary = env.dir.path().join("canary");
    let canary_text = unique("CANARY");
    std::fs::write(&canary, &canary_text).expect("write the canary");
    let key = unique("sk-hostile-key");
    let marker = unique("hostile-harness-running");
    let env = hostile(env, &script(&canary), &marker, &key);
    let mut args = vec!["run", "--json", "--harness", "hostile", "--agent-git"];
    args.extend(extra);
    args.extend(["--repo", "github:acme/widgets", "do what you must"]);
    let watched = tokio::task::spawn_blocking(move || {
        let secrets = || {
            let mut s: Vec<String> = github.tokens().into_iter().map(|t| t.token).collect();
            s.push(key.clone());
            s
        };
        let w = watch_run(&env, &args, backend, &marker, &secrets);
        assert!(
            !github.tokens().is_empty(),
            "no GitHub token was minted\n{}",
            w.stderr
        );
        (w, env)
    })
    .await
    .expect("watch the run");
    let (w, _env) = watched;
    assert!(
        w.sockets.len() >= 2,
        "the egress and git proxy sockets: {:?}\n{}",
        w.sockets,
        w.stderr
    );
    let v = succeeded(&w);
    assert!(
        v["result"].as_str().unwrap_or("").contains("FETCH-OK"),
        "git in the sandbox did not fetch through errand's git proxy: {v:#}"
    );
    assert_eq!(
        std::fs::read_to_string(&canary).expect("the canary"),
        canary_text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_github_token_stays_off_command_lines_and_its_socket_is_private() {
    github_token_holds(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_github_token_stays_off_command_lines_and_its_socket_is_private() {
    github_token_holds(Backend::Docker).await;
}

#[test]
fn local_sockets_are_private_no_secret_in_ps_no_write_through_links() {
    host_side_holds(Backend::Local);
}

#[test]
fn docker_sockets_are_private_no_secret_in_ps_no_write_through_links() {
    host_side_holds(Backend::Docker);
}
