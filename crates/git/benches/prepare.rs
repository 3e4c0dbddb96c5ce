//! Workspace preparation for a large repository, cold and warm.
//!
//! Builds a repository of N files (default 100,000), serves it with
//! `git daemon` on loopback (a network remote, so errand mirrors it), and
//! times, median of R rounds each:
//! - baseline: a plain `git clone git://…` of it;
//! - errand, cold mirror: `errand_git::prepare` with an empty mirror cache;
//! - errand, warm mirror: `prepare` again after one new commit upstream (an
//!   incremental fetch into the mirror, then a local copy and a checkout);
//! - errand, copy-on-write: `prepare` through the shared checkouts: the first
//!   run at a commit (which makes the checkout), then another run at the same
//!   commit as an overlay's layer (what the local sandbox does), and as a
//!   copy of the checkout (the other backends' fallback).
//!
//! `cargo bench -p errand-git --bench prepare` — ERRAND_PREP_FILES (default
//! 100000), ERRAND_PREP_ROUNDS (default 3).

#![allow(clippy::disallowed_methods)] // tests start their own fixtures

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use errand_git::{prepare, Checkouts, LayerMode, Mirrors, Remote};

fn run(dir: Option<&Path>, args: &[&str]) {
    let mut c = Command::new("git");
    if let Some(d) = dir {
        c.arg("-C").arg(d);
    }
    let out = c
        .args(["-c", "user.name=b", "-c", "user.email=b@b"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `prepare` of run `name` through the shared checkouts under `dir`: seconds.
async fn layered_prepare(
    dir: &Path,
    name: &str,
    url: &str,
    mirrors: &Mirrors,
    mode: LayerMode,
) -> f64 {
    let checkouts = Checkouts::new(dir.join("checkouts"), mode);
    let remote = Remote {
        url,
        auth: None,
        mirrors: Some(mirrors),
        checkouts: Some(&checkouts),
    };
    let run_dir = dir.join(name);
    let t = Instant::now();
    prepare(
        Some(remote),
        None,
        None,
        &run_dir,
        &run_dir.join("workspace"),
        "errand/layered",
    )
    .await
    .expect("layered prepare");
    t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let files: usize = std::env::var("ERRAND_PREP_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rounds: usize = std::env::var("ERRAND_PREP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    run(None, &["init", "-q", "-b", "main", &src.to_string_lossy()]);
    let per_dir = 200;
    for i in 0..files {
        let d = src.join(format!("d{}", i / per_dir));
        if i % per_dir == 0 {
            std::fs::create_dir_all(&d).expect("mkdir");
        }
        std::fs::write(d.join(format!("f{i}.txt")), format!("file {i}\n")).expect("write");
    }
    run(Some(&src), &["add", "-A"]);
    run(Some(&src), &["commit", "-qm", "init"]);
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    let bare = served.join("big.git");
    run(
        None,
        &[
            "clone",
            "-q",
            "--bare",
            &src.to_string_lossy(),
            &bare.to_string_lossy(),
        ],
    );
    run(Some(&bare), &["repack", "-adq"]);
    let port = free_port();
    let daemon = Daemon(
        Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", served.display()),
                &served.to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon"),
    );
    let url = format!("git://127.0.0.1:{port}/big.git");
    // Wait until the daemon answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new("git")
        .args(["ls-remote", &url])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(Instant::now() < deadline, "git daemon did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut plain = Vec::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut first = Vec::new();
    let mut layered = Vec::new();
    let mut copied = Vec::new();
    for r in 0..rounds {
        let dir = tmp.path().join(format!("round{r}"));
        let t = Instant::now();
        run(
            None,
            &["clone", "-q", &url, &dir.join("plain").to_string_lossy()],
        );
        plain.push(t.elapsed().as_secs_f64());

        let mirrors = Mirrors::new(dir.join("mirrors"));
        let remote = Remote {
            url: &url,
            auth: None,
            mirrors: Some(&mirrors),
            checkouts: None,
        };
        let t = Instant::now();
        prepare(
            Some(remote),
            None,
            None,
            &dir.join("run-cold"),
            &dir.join("run-cold/workspace"),
            "errand/cold",
        )
        .await
        .expect("cold prepare");
        cold.push(t.elapsed().as_secs_f64());

        // Upstream moves on by one commit; the warm run fetches just that.
        let work = dir.join("upstream");
        run(
            None,
            &[
                "clone",
                "-q",
                "--no-checkout",
                &bare.to_string_lossy(),
                &work.to_string_lossy(),
            ],
        );
        run(
            Some(&work),
            &["commit", "-q", "--allow-empty", "-m", "next"],
        );
        run(Some(&work), &["push", "-q", "origin", "HEAD:main"]);
        let t = Instant::now();
        prepare(
            Some(remote),
            None,
            None,
            &dir.join("run-warm"),
            &dir.join("run-warm/workspace"),
            "errand/warm",
        )
        .await
        .expect("warm prepare");
        warm.push(t.elapsed().as_secs_f64());

        let timed = |name, mode| layered_prepare(&dir, name, &url, &mirrors, mode);
        first.push(timed("run-first", LayerMode::Overlay).await);
        layered.push(timed("run-layered", LayerMode::Overlay).await);
        copied.push(timed("run-copied", LayerMode::Copy).await);
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop(daemon);
    let (p, c, w) = (median(plain), median(cold), median(warm));
    println!("workspace preparation, {files} files, median of {rounds} (seconds)");
    println!("{:<34} {:>8} {:>8}", "", "time", "ratio");
    println!("{:<34} {p:>8.3} {:>7.2}x", "git clone (baseline)", 1.0);
    println!(
        "{:<34} {c:>8.3} {:>7.2}x",
        "errand prepare, cold mirror",
        c / p
    );
    println!(
        "{:<34} {w:>8.3} {:>7.2}x",
        "errand prepare, warm mirror",
        w / p
    );
    let (f, l, k) = (median(first), median(layered), median(copied));
    println!(
        "{:<34} {f:>8.3} {:>7.2}x",
        "copy-on-write, first at a commit",
        f / p
    );
    println!(
        "{:<34} {l:>8.3} {:>7.2}x   ({:.1}x faster than git clone)",
        "copy-on-write, overlay layer",
        l / p,
        p / l
    );
    println!(
        "{:<34} {k:>8.3} {:>7.2}x",
        "copy-on-write, copy (fallback)",
        k / p
    );
    println!(
        "(a warm run fetches only new objects over the network; the rest is a local copy of \
         the mirror's packs and the checkout of {files} files; with copy-on-write the \
         checkout is made once per commit and each run writes only its own .git files)"
    );
}
