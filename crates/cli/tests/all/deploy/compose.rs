//! deploy/compose: the stack (errand serve, PostgreSQL, the docker sandbox)
//! built from local images, started with `docker-compose` under a project name
//! of its own, until errand answers `/readyz` from PostgreSQL; then a run from
//! inside the stack whose agent is a sibling container (the demo: the real
//! Claude Code against errand's scripted model, on the docker sandbox); always
//! taken down again with its volumes (a drop guard), whatever the outcome.
//!
//! The images are built once and tagged by the hash of what goes into them
//! (Dockerfile, entrypoint, base image, errand binary), so a second run with
//! the same binary builds nothing. The errand image is built from the test's
//! own `errand` binary in a temporary build context with
//! deploy/compose/errand/Dockerfile, exactly as `docker compose build` does
//! from deploy/compose/errand/bin/errand.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use errand_test_support::{need, on_path};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::*;

/// A command of the test's own, with the test's PATH and HOME and nothing else
/// (no stray ERRAND_* or compose variables from the caller's environment).
fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        )
        .stdin(Stdio::null());
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        c.env("DOCKER_HOST", host);
    }
    c
}

fn output(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// Runs `c`, panicking with its stderr when it fails; its stdout.
fn checked(c: &mut Command) -> String {
    let out = output(c);
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a Docker engine answers.
fn engine() -> Result<(), String> {
    let out = cmd("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("the docker CLI cannot run ({e})"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "no Docker engine answers: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The agent image, which is also the compose images' local base:
/// `errand sandbox prepare docker` (quick when it exists). Its tag and id.
fn agent_image() -> (String, String) {
    let env = Env::new();
    let out = env.run(&["sandbox", "prepare", "docker", "--json"]);
    assert!(
        out.status.success(),
        "errand sandbox prepare docker failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("prepare --json prints an object");
    (
        v["image"].as_str().expect("image").to_string(),
        v["id"].as_str().expect("id").to_string(),
    )
}

/// The first 16 hex digits of the SHA-256 of `parts` and of the files `files`
/// (read by `sha256sum`, quick on errand's large debug binary).
fn content_hash(parts: &[&str], files: &[&Path]) -> String {
    let sums = checked(cmd("sha256sum").args(files));
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    // Only the sums: the same content at another path is the same image.
    for line in sums.lines() {
        h.update(line.split_whitespace().next().unwrap_or_default());
    }
    hex::encode(&h.finalize()[..8])
}

/// Builds `context` as `tag` with `--build-arg BASE=base` unless `tag` exists;
/// removes this repository's older test tags of the same image name.
fn build_once(name: &str, hash: &str, context: &Path, base: &str) -> String {
    let tag = format!("{name}:test-{hash}");
    let exists = output(cmd("docker").args(["image", "inspect", &tag]))
        .status
        .success();
    if !exists {
        eprintln!("deploy: building {tag}");
        checked(
            cmd("docker")
                .args(["build", "-q", "--build-arg"])
                .arg(format!("BASE={base}"))
                .args(["-t", &tag])
                .arg(context),
        );
        let old =
            checked(cmd("docker").args(["images", "--format", "{{.Repository}}:{{.Tag}}", name]));
        for t in old
            .lines()
            .filter(|t| t.starts_with(&format!("{name}:test-")) && *t != tag)
        {
            // Best effort: an image a running container still uses stays.
            let _ = output(cmd("docker").args(["rmi", t]));
        }
    }
    tag
}

/// The stack of one test: `docker-compose -p <project>` on deploy/compose,
/// taken down with its volumes when dropped.
struct Stack {
    project: String,
    files: Vec<PathBuf>,
    env_file: PathBuf,
}

impl Stack {
    fn compose(&self) -> Command {
        let mut c = cmd("docker-compose");
        c.args(["--ansi", "never"]).arg("-p").arg(&self.project);
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        c.arg("--env-file").arg(&self.env_file);
        c
    }

    /// The id of `service`'s container.
    fn container(&self, service: &str) -> String {
        let id = checked(self.compose().args(["ps", "-q", service]));
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn inspect(&self, service: &str) -> Value {
        let id = self.container(service);
        let v: Value = serde_json::from_str(&checked(cmd("docker").args(["inspect", &id])))
            .expect("docker inspect prints JSON");
        v[0].clone()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = output(self.compose().args(["logs", "--tail", "40"]));
            eprintln!(
                "deploy: the stack's logs:\n{}",
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        let out = output(
            self.compose()
                .args(["down", "-v", "--remove-orphans", "-t", "5"]),
        );
        if !out.status.success() {
            eprintln!(
                "deploy: docker-compose down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `GET path` on `addr` over HTTP/1.0: the status and the body, or `None` when
/// nothing answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `addr` every half second until `done` holds of its answer, for at
/// most `limit` (a bound on a broken stack, not an assertion on speed); the
/// last answer.
fn poll(
    addr: &str,
    limit: Duration,
    done: impl Fn(&Option<(u16, String)>) -> bool,
) -> Option<(u16, String)> {
    let start = Instant::now();
    loop {
        let answer = get(addr, "/readyz");
        if done(&answer) || start.elapsed() > limit {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn sources(container: &Value) -> Vec<String> {
    container["Mounts"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["Source"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_compose_stack_serves_readyz_from_postgresql() {
    if !need("Docker engine", engine()) || !need("docker-compose", on_path("docker-compose")) {
        return;
    }
    ensure_claude();
    let dir = super::deploy_dir().join("compose");
    let (agent, agent_id) = agent_image();

    let pg_ctx = dir.join("postgres");
    let pg_hash = content_hash(
        &[&agent_id],
        &[&pg_ctx.join("Dockerfile"), &pg_ctx.join("entrypoint.sh")],
    );
    let pg_image = build_once("errand-postgres", &pg_hash, &pg_ctx, &agent);

    // The errand image's build context, as deploy/compose/errand with bin/errand in it.
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path().join("errand-context");
    std::fs::create_dir_all(ctx.join("bin")).expect("context dir");
    for f in ["Dockerfile", "entrypoint.sh", ".dockerignore"] {
        std::fs::copy(dir.join("errand").join(f), ctx.join(f)).expect("copy the build context");
    }
    let bin = ctx.join("bin/errand");
    if std::fs::hard_link(errand_bin(), &bin).is_err() {
        std::fs::copy(errand_bin(), &bin).expect("copy errand into the context");
    }
    let errand_hash = content_hash(
        &[&agent_id],
        &[
            &ctx.join("Dockerfile"),
            &ctx.join("entrypoint.sh"),
            &ctx.join(".dockerignore"),
            &bin,
        ],
    );
    let errand_image = build_once("errand-server", &errand_hash, &ctx, &agent);

    // ERRAND_HOME: a fresh host directory, bound at the same path inside.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    // A fresh random password for this stack (hex: it goes into a URL).
    let mut raw = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .expect("read /dev/urandom");
    let password = hex::encode(raw);
    let env_file = tmp.path().join("compose.env");
    std::fs::write(
        &env_file,
        format!(
            "POSTGRES_PASSWORD={password}\nERRAND_HOME={}\nERRAND_PUBLISH=127.0.0.1:\n\
             ERRAND_IMAGE={errand_image}\nERRAND_POSTGRES_IMAGE={pg_image}\n\
             ERRAND_BASE_IMAGE={agent}\nERRAND_AGENT_IMAGE={agent}\n",
            home.display()
        ),
    )
    .expect("write the env file");
    // The test's one addition: the host's harness cache (Claude Code, installed
    // once per test process) instead of an install from npm inside the stack,
    // bound at the same path, as everything errand mounts into a sandbox must be.
    let cache = cache_dir();
    std::fs::write(
        tmp.path().join("test.yaml"),
        format!(
            "services:\n  errand:\n    environment:\n      ERRAND_CACHE_DIR: {c}\n    volumes:\n      - {c}:{c}\n",
            c = cache.display()
        ),
    )
    .expect("write the test's compose file");
    let stack = Stack {
        project: format!(
            "errand-deploy-test-{}-{}",
            std::process::id(),
            &password[..6]
        ),
        files: vec![dir.join("compose.yaml"), tmp.path().join("test.yaml")],
        env_file,
    };

    // No build here: the images exist under the tags the env file names.
    checked(stack.compose().args(["up", "-d", "--no-build"]));
    let port = checked(stack.compose().args(["port", "errand", "8080"]));
    let addr = port.trim().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "published on {addr}");

    let ready = poll(&addr, Duration::from_secs(120), |a| {
        matches!(a, Some((200, _)))
    });
    match &ready {
        Some((200, body)) => assert_eq!(body.trim(), "ready", "/readyz said {body:?}"),
        other => panic!("errand's /readyz never answered 200: {other:?}"),
    }

    // The engine's socket reaches errand and nothing else of the stack; errand's
    // container is read-only and cannot gain privileges.
    let errand = stack.inspect("errand");
    let postgres = stack.inspect("postgres");
    assert!(
        sources(&errand).iter().any(|s| s == "/var/run/docker.sock"),
        "errand has no engine socket: {:?}",
        sources(&errand)
    );
    assert!(
        !sources(&postgres).iter().any(|s| s.contains("docker.sock")),
        "the engine socket reached postgres: {:?}",
        sources(&postgres)
    );
    assert!(
        sources(&errand).iter().any(|s| Path::new(s) == home),
        "ERRAND_HOME is not bound from the host: {:?}",
        sources(&errand)
    );
    assert_eq!(errand["HostConfig"]["ReadonlyRootfs"], true);
    assert!(
        errand["HostConfig"]["SecurityOpt"]
            .to_string()
            .contains("no-new-privileges"),
        "{}",
        errand["HostConfig"]["SecurityOpt"]
    );
    // errand copied itself under ERRAND_HOME (what it mounts into sibling
    // sandboxes must have a host path) and made no SQLite store there.
    assert!(
        home.join("bin/errand").is_file(),
        "errand is not under ERRAND_HOME"
    );
    assert!(
        !home.join("errand.db").exists(),
        "errand used SQLite, not PostgreSQL"
    );

    // A run from inside the stack whose agent is a sibling container: the demo
    // (the real Claude Code against errand's scripted model) on the docker
    // sandbox, recorded in the server's PostgreSQL database, where the
    // server's workers must leave it to the process that runs it.
    let out = output(stack.compose().args(["exec", "-T"]).args([
        "errand",
        "errand",
        "run",
        "--json",
        "--demo",
        "--sandbox",
        "docker",
    ]));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "errand run --demo printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && run["state"] == "succeeded",
        "the demo run in the compose stack: {run:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // errand removed its sandbox containers.
    let left = checked(
        cmd("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=errand.scope={}", home.display())),
    );
    assert!(left.is_empty(), "sandbox containers left: {left}");

    // Ready because PostgreSQL answers: without it, errand is not ready.
    checked(stack.compose().args(["stop", "-t", "5", "postgres"]));
    let after = poll(&addr, Duration::from_secs(60), |a| {
        !matches!(a, Some((200, _)))
    });
    assert!(
        !matches!(after, Some((200, _))),
        "/readyz still says ready with PostgreSQL stopped: {after:?}"
    );
    drop(stack);
}
