//! Load benchmark of `errand serve`, in two modes (ERRAND_LOAD_MODE):
//!
//! * `events` (default): N synthetic runs at once, each a scripted harness (no
//!   model) that emits events at a set rate from inside its sandbox, every run
//!   followed by its own SSE client. Prints, per N and per database: events per
//!   second ingested into the store, p50/p99 latency from an event's emission
//!   inside the sandbox to its arrival at an SSE client, and the server's
//!   resident memory per active run. ERRAND_LOAD_N (default "10,100"),
//!   ERRAND_LOAD_EVENTS per run (default 20), ERRAND_LOAD_INTERVAL seconds
//!   between events (default 0.2).
//! * `start`: run start throughput. ERRAND_LOAD_STARTS runs (default 200) are
//!   queued at once through the API on a server with ERRAND_LOAD_WORKERS
//!   workers (default "16"); each run's harness is trivial (it prints the time
//!   it started, inside its local sandbox, and exits). Prints runs started per
//!   second (first queued → last started) and p50/p99 from queued (the
//!   request sent) to harness started (the time the harness printed).
//!
//! `cargo bench -p errand-cli --bench load`; ERRAND_LOAD_DATABASES (default
//! "sqlite,postgres"; PostgreSQL from ERRAND_TEST_DATABASE_URL or the
//! scripts/setup default).

#![allow(clippy::disallowed_methods)] // benchmarks start their own fixtures

mod common;
use common::{now_ns, pct, rss_kib};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let ns: Vec<usize> = std::env::var("ERRAND_LOAD_N")
        .unwrap_or_else(|_| "10,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let events: usize = std::env::var("ERRAND_LOAD_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let interval: f64 = std::env::var("ERRAND_LOAD_INTERVAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.2);
    let dbs = std::env::var("ERRAND_LOAD_DATABASES").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if std::env::var("ERRAND_LOAD_MODE").as_deref() == Ok("start") {
        let runs: usize = std::env::var("ERRAND_LOAD_STARTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let workers: Vec<usize> = std::env::var("ERRAND_LOAD_WORKERS")
            .unwrap_or_else(|_| "16".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        println!("errand serve run start throughput: {runs} runs queued at once, trivial harness, local sandbox");
        println!(
            "{:<9} {:>7} {:>8} {:>10} {:>14} {:>14}",
            "database", "workers", "runs", "runs/s", "p50 q→started", "p99 q→started"
        );
        for db in dbs.split(',').map(str::trim) {
            for &w in &workers {
                match rt.block_on(start(db, runs, w)) {
                    Ok(line) => println!("{line}"),
                    Err(e) => println!("{db:<9} {w:>7}  skipped: {e}"),
                }
            }
        }
        return;
    }
    println!("errand serve under load: {events} events per run, one every {interval}s, one SSE client per run");
    println!(
        "{:<9} {:>5} {:>14} {:>12} {:>12} {:>16}",
        "database", "runs", "events/s in", "p50 latency", "p99 latency", "server RSS/run"
    );
    for db in dbs.split(',').map(str::trim) {
        for &n in &ns {
            match rt.block_on(one(db, n, events, interval)) {
                Ok(line) => println!("{line}"),
                Err(e) => println!("{db:<9} {n:>5}  skipped: {e}"),
            }
        }
    }
}

/// A running `errand serve` with its own home, database, repository and a
/// `synthetic` harness running `script`.
struct Fixture {
    base: String,
    token: String,
    pid: u32,
    repo: PathBuf,
    _server: Proc,
    _tmp: tempfile::TempDir,
}

fn git(repo: &Path, args: &[&str]) -> Result<(), String> {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .status()
        .map_err(|e| e.to_string())
        .map(drop)
}

async fn serve(db: &str, name: &str, script: &str, workers: usize) -> Result<Fixture, String> {
    let errand = env!("CARGO_BIN_EXE_errand");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let agent = tmp.path().join("agent");
    std::fs::create_dir_all(&agent).map_err(|e| e.to_string())?;
    std::fs::write(agent.join("agent.sh"), script).map_err(|e| e.to_string())?;
    let url = common::database_url(db, name, tmp.path())?;
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[[harness]]\nname = \"synthetic\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\"]\nformat = \"errand\"\ndir = \"{}\"\n", agent.display()),
    )
    .map_err(|e| e.to_string())?;
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).map_err(|e| e.to_string())?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    git(
        &repo,
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
    )?;
    let env = |c: &mut Command| {
        c.env("ERRAND_HOME", tmp.path().join("home"))
            .env("ERRAND_CONFIG", &config)
            .env("ERRAND_DATABASE_URL", &url)
            .env("ERRAND_SERVER_LOCAL_REPOS", &repo);
    };
    let mut tok = Command::new(errand);
    tok.args(["token", "create", "load"]);
    env(&mut tok);
    let out = tok.output().map_err(|e| e.to_string())?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut serve = Command::new(errand);
    serve
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            &workers.to_string(),
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    env(&mut serve);
    let mut child = serve.spawn().map_err(|e| e.to_string())?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().ok_or("stderr")?).lines();
    let base = loop {
        let line = lines
            .next()
            .ok_or("serve exited")?
            .map_err(|e| e.to_string())?;
        if let Some(rest) = line.strip_prefix("errand serve: listening on ") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let server = Proc(child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Fixture {
        base,
        token,
        pid,
        repo,
        _server: server,
        _tmp: tmp,
    })
}

async fn one(db: &str, n: usize, events: usize, interval: f64) -> Result<String, String> {
    // Each event carries the time it was emitted inside the sandbox.
    let script = format!(
        "echo '{{\"type\":\"session_start\"}}'\ni=0\nwhile [ $i -lt {events} ]; do\n  echo \"{{\\\"type\\\":\\\"notice\\\",\\\"message\\\":\\\"$(date +%s%N)\\\"}}\"\n  i=$((i+1)); sleep {interval}\ndone\necho '{{\"type\":\"result\",\"is_error\":false,\"usage\":{{}}}}'\n"
    );
    let name = format!("errand_load_{}_{}", std::process::id(), n);
    let fx = serve(db, &name, &script, n).await?;
    let (base, token, pid, repo) = (fx.base.clone(), fx.token.clone(), fx.pid, fx.repo.clone());
    let idle_rss = rss_kib(pid);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n + 10)
        .build()
        .map_err(|e| e.to_string())?;
    // Sample the server's memory while the runs are active.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = Instant::now();
    // Each run's SSE client connects as soon as the run is created, before it starts.
    let mut clients = Vec::new();
    for i in 0..n {
        let r: serde_json::Value = http
            .post(format!("{base}/api/v1/runs"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"prompt": format!("load {i}"), "harness": "synthetic", "repo": repo.to_string_lossy()}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let id = r["id"].as_str().ok_or("no id")?.to_string();
        let http = http.clone();
        let (base, token) = (base.clone(), token.clone());
        clients.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let Ok(resp) = http
                .get(format!("{base}/api/v1/runs/{id}/events/stream"))
                .bearer_auth(&token)
                .send()
                .await
            else {
                return lat;
            };
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                let arrived = now_ns();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(i) = buf.find("\n\n") {
                    let block: String = buf.drain(..i + 2).collect();
                    if block.contains("event: end") {
                        return lat;
                    }
                    if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
                            if let Some(emitted) =
                                v["message"].as_str().and_then(|m| m.parse::<u128>().ok())
                            {
                                lat.push(arrived.saturating_sub(emitted) as f64 / 1e6);
                            }
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    sampler.abort();
    let m: String = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let succeeded = m
        .lines()
        .find(|l| l.starts_with("errand_runs{state=\"succeeded\"}"))
        .unwrap_or("")
        .to_string();
    let total_events = latencies.len();
    let per_run = (peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(idle_rss)) as f64
        / n as f64;
    let p50 = pct(&mut latencies, 0.5);
    let p99 = pct(&mut latencies, 0.99);
    Ok(format!(
        "{db:<9} {n:>5} {:>14.0} {:>9.1} ms {:>9.1} ms {:>12.0} KiB   ({total_events} timed events, {elapsed:.1}s; {succeeded})",
        total_events as f64 / elapsed,
        p50,
        p99,
        per_run
    ))
}

/// Run start throughput: `runs` runs queued at once, each harness printing
/// the time it started and exiting.
async fn start(db: &str, runs: usize, workers: usize) -> Result<String, String> {
    let script = "echo \"{\\\"type\\\":\\\"notice\\\",\\\"message\\\":\\\"$(date +%s%N)\\\"}\"\necho '{\"type\":\"result\",\"is_error\":false,\"usage\":{}}'\n";
    let name = format!("errand_start_{}_{}", std::process::id(), workers);
    let fx = serve(db, &name, script, workers).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = fx.repo.to_string_lossy().into_owned();
    let first = now_ns();
    let queued: Vec<(String, u128)> = futures::stream::iter(0..runs)
        .map(|i| {
            let (http, fx, repo) = (&http, &fx, &repo);
            async move {
                let sent = now_ns();
                let r: serde_json::Value = http
                    .post(format!("{}/api/v1/runs", fx.base))
                    .bearer_auth(&fx.token)
                    .json(&serde_json::json!({"prompt": format!("start {i}"), "harness": "synthetic", "repo": repo}))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let id = r["id"].as_str().ok_or("no id")?.to_string();
                Ok::<_, String>((id, sent))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    // Wait until every run has ended.
    let deadline = Instant::now() + Duration::from_secs(120 + runs as u64);
    loop {
        let m = http
            .get(format!("{}/metrics", fx.base))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let count = |state: &str| -> usize {
            m.lines()
                .find_map(|l| l.strip_prefix(&format!("errand_runs{{state=\"{state}\"}} ")))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        let ended = count("succeeded") + count("failed") + count("cancelled") + count("timed_out");
        if ended >= runs {
            if count("succeeded") < runs {
                return Err(format!(
                    "only {} of {runs} runs succeeded",
                    count("succeeded")
                ));
            }
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {ended} of {runs} runs ended in time"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut waits = Vec::new();
    let mut last = 0u128;
    for (id, sent) in &queued {
        let body = http
            .get(format!("{}/api/v1/runs/{id}/events", fx.base))
            .bearer_auth(&fx.token)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let started = body
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["message"].as_str().and_then(|m| m.parse::<u128>().ok()))
            .ok_or_else(|| format!("run {id} has no start time"))?;
        last = last.max(started);
        waits.push(started.saturating_sub(*sent) as f64 / 1e6);
    }
    let span = last.saturating_sub(first) as f64 / 1e9;
    Ok(format!(
        "{db:<9} {workers:>7} {runs:>8} {:>10.1} {:>11.1} ms {:>11.1} ms",
        runs as f64 / span,
        pct(&mut waits, 0.5),
        pct(&mut waits, 0.99)
    ))
}
