//! The event pipeline alone, without sandboxes or harnesses: events fed
//! straight into the store of a server process (as a run's pump does), stored
//! durably (group commit), pushed to its SSE clients. Three figures per
//! database:
//!
//! * **latency**: N runs each emitting 20 events at 5 a second, one SSE client
//!   per run; p50/p99 from an event's hand-over to the store to its arrival at
//!   the client;
//! * **capacity**: 100 runs writing as fast as they can (batches of 20 events,
//!   like a busy pump): durable events per second, and per second delivered to
//!   the clients;
//! * **watchers**: 10,000 SSE clients (100 per run) while events flow: the
//!   server's resident memory, against the same server idle.
//!
//! The server is a child process (this binary again), so its memory is its
//! own. `cargo bench -p errand-cli --bench pipeline`; ERRAND_PIPELINE_DATABASES
//! (default "sqlite,postgres"), ERRAND_PIPELINE_N (latency runs, default
//! "100,1000"), ERRAND_PIPELINE_WATCHERS (default 10000). PostgreSQL from
//! ERRAND_TEST_DATABASE_URL or the scripts/setup default.

#![allow(clippy::disallowed_methods)] // benchmarks start their own fixtures

mod common;
use common::{now_ns, pct, rss_kib};

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use errand_core::{Event, EventKind, EventSource, RunId, RunSpec, RunState};
use futures::StreamExt;

/// 10,000 clients and their server need more descriptors than the default.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a valid, owned struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn main() {
    raise_fd_limit();
    if std::env::var_os("ERRAND_PIPELINE_SERVER").is_some() {
        server();
        return;
    }
    let list = |var: &str, default: &str| -> Vec<String> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let dbs = list("ERRAND_PIPELINE_DATABASES", "sqlite,postgres");
    let ns: Vec<usize> = list("ERRAND_PIPELINE_N", "100,1000")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let watchers: usize = std::env::var("ERRAND_PIPELINE_WATCHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!("errand's event pipeline (store → push → SSE), no sandboxes");
    for db in &dbs {
        for &n in &ns {
            match rt.block_on(latency(db, n)) {
                Ok(line) => println!("{line}"),
                Err(e) => println!("{db:<9} latency {n:>5} runs: not run: {e}"),
            }
        }
        match rt.block_on(capacity(db)) {
            Ok(line) => println!("{line}"),
            Err(e) => println!("{db:<9} capacity: not run: {e}"),
        }
        if watchers > 0 {
            match rt.block_on(many_watchers(db, watchers)) {
                Ok(line) => println!("{line}"),
                Err(e) => println!("{db:<9} watchers: not run: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------- server ---

/// The child: a server on its own store, feeding events when told.
/// Prints `ready ADDR TOKEN RUN…`, then for each stdin line
/// `go RUNS EVENTS INTERVAL_MS BATCH` feeds the first RUNS runs and prints
/// `fed SECONDS EVENTS` once every write is stored.
fn server() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = std::env::var("ERRAND_PIPELINE_URL").expect("url");
        let runs_n: usize = std::env::var("ERRAND_PIPELINE_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        let store = errand_store::open_url(&url).await.expect("store");
        let secret = "errand_bench_token";
        store
            .create_token(
                "bench",
                &errand_server::auth::hash(secret),
                &[errand_store::Scope::Read],
            )
            .await
            .expect("token");
        let mut runs = Vec::with_capacity(runs_n);
        for i in 0..runs_n {
            let id = RunId::new();
            store
                .create_run(id, &RunSpec::new(format!("bench {i}"), "claude-code"))
                .await
                .expect("run");
            runs.push(id);
        }
        let state = errand_server::AppState::new(store.clone(), Default::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, errand_server::app(state).into_make_service())
                .await
                .ok();
        });
        let ids: Vec<String> = runs.iter().map(|r| r.to_string()).collect();
        println!("ready {addr} {secret} {}", ids.join(" "));
        std::io::stdout().flush().ok();
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let mut line = String::new();
        let mut next_seq = vec![1u64; runs.len()];
        loop {
            line.clear();
            use tokio::io::AsyncBufReadExt;
            if stdin.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let w: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|s| s.parse().ok())
                .collect();
            let [count, events, interval_ms, batch] = w[..] else {
                continue;
            };
            let started = Instant::now();
            let mut tasks = Vec::new();
            for (i, run) in runs.iter().take(count as usize).enumerate() {
                let (store, run, first) = (store.clone(), *run, next_seq[i]);
                next_seq[i] += events + 1;
                tasks.push(tokio::spawn(async move {
                    let mut seq = first;
                    let end = first + events;
                    while seq < end {
                        let upto = (seq + batch).min(end);
                        let evs: Vec<Event> = (seq..upto)
                            .map(|s| Event {
                                seq: s,
                                ts: chrono::Utc::now(),
                                source: EventSource::Harness,
                                raw_line: None,
                                kind: EventKind::Notice {
                                    message: now_ns().to_string(),
                                },
                            })
                            .collect();
                        store.append_events(run, &evs).await.expect("append");
                        seq = upto;
                        if interval_ms > 0 {
                            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
                        }
                    }
                    // The final state: its stream ends.
                    let fin = Event {
                        seq: end,
                        ts: chrono::Utc::now(),
                        source: EventSource::Errand,
                        raw_line: None,
                        kind: EventKind::State {
                            state: RunState::Succeeded,
                            reason: None,
                        },
                    };
                    store.append_events(run, &[fin]).await.expect("append");
                }));
            }
            for t in tasks {
                t.await.ok();
            }
            println!(
                "fed {:.3} {}",
                started.elapsed().as_secs_f64(),
                count * (events + 1)
            );
            std::io::stdout().flush().ok();
        }
    });
}

// ---------------------------------------------------------------- parent ---

struct Server {
    child: Child,
    addr: String,
    token: String,
    runs: Vec<String>,
    out: std::io::Lines<BufReader<std::process::ChildStdout>>,
    _tmp: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(db: &str, runs: usize) -> Result<Server, String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let name = format!("errand_pipeline_{}_{runs}", std::process::id());
        let url = common::database_url(db, &name, tmp.path())?;
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env("ERRAND_PIPELINE_SERVER", "1")
            .env("ERRAND_PIPELINE_URL", &url)
            .env("ERRAND_PIPELINE_RUNS", runs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?).lines();
        let ready = out
            .next()
            .ok_or("the server exited")?
            .map_err(|e| e.to_string())?;
        let mut parts = ready.split_whitespace().skip(1);
        let addr = parts.next().ok_or("no address")?.to_string();
        let token = parts.next().ok_or("no token")?.to_string();
        let runs = parts.map(str::to_string).collect();
        Ok(Server {
            child,
            addr,
            token,
            runs,
            out,
            _tmp: tmp,
        })
    }

    /// Feeds `count` runs and waits until every write is stored: seconds, events.
    fn feed(&mut self, count: usize, events: u64, interval_ms: u64, batch: u64) -> (f64, u64) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "go {count} {events} {interval_ms} {batch}").expect("go");
        stdin.flush().ok();
        let line = self.out.next().and_then(Result::ok).unwrap_or_default();
        let mut w = line.split_whitespace().skip(1);
        let secs = w.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
        let n = w.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        (secs, n)
    }
}

/// One SSE client: connects, says so, then collects emit→arrival latencies
/// (ms) until the stream's end. Returns the latencies and the events seen.
async fn client(
    http: reqwest::Client,
    url: String,
    token: String,
    connected: Arc<tokio::sync::Semaphore>,
) -> (Vec<f64>, usize) {
    let mut lat = Vec::new();
    let mut seen = 0;
    let resp = http.get(url).bearer_auth(token).send().await;
    connected.add_permits(1);
    let Ok(resp) = resp else {
        return (lat, seen);
    };
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        let arrived = now_ns();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            if block.lines().any(|l| l == "event: end") {
                return (lat, seen);
            }
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                seen += 1;
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
    (lat, seen)
}

/// Connects `per_run` clients to each of the server's runs and waits until
/// every one has its response headers.
async fn connect(s: &Server, per_run: usize) -> Vec<tokio::task::JoinHandle<(Vec<f64>, usize)>> {
    let total = s.runs.len() * per_run;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(total + 10)
        .build()
        .expect("client");
    let connected = Arc::new(tokio::sync::Semaphore::new(0));
    let mut clients = Vec::with_capacity(total);
    for run in &s.runs {
        for _ in 0..per_run {
            clients.push(tokio::spawn(client(
                http.clone(),
                format!("http://{}/api/v1/runs/{run}/events/stream", s.addr),
                s.token.clone(),
                connected.clone(),
            )));
        }
    }
    let _ = connected.acquire_many(total as u32).await;
    clients
}

async fn latency(db: &str, n: usize) -> Result<String, String> {
    let mut s = Server::start(db, n)?;
    let clients = connect(&s, 1).await;
    let feed = tokio::task::block_in_place(|| s.feed(n, 20, 200, 1));
    let mut lat = Vec::new();
    for c in clients {
        lat.extend(c.await.map(|r| r.0).unwrap_or_default());
    }
    let got = lat.len();
    Ok(format!(
        "{db:<9} latency  {n:>5} runs × 20 events at 5/s: p50 {:>7.1} ms  p99 {:>7.1} ms  ({got} events timed, fed in {:.1} s)",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        feed.0
    ))
}

async fn capacity(db: &str) -> Result<String, String> {
    const RUNS: usize = 100;
    const EVENTS: u64 = 2000;
    let mut s = Server::start(db, RUNS)?;
    let clients = connect(&s, 1).await;
    let started = Instant::now();
    let (secs, stored) = tokio::task::block_in_place(|| s.feed(RUNS, EVENTS, 0, 20));
    let mut seen = 0;
    for c in clients {
        seen += c.await.map(|r| r.1).unwrap_or(0);
    }
    let delivered = started.elapsed().as_secs_f64();
    Ok(format!(
        "{db:<9} capacity {RUNS} runs × {EVENTS} events in batches of 20: {:>8.0} events/s stored durably, {:>8.0} events/s delivered to their clients ({seen} of {stored})",
        stored as f64 / secs,
        seen as f64 / delivered
    ))
}

async fn many_watchers(db: &str, watchers: usize) -> Result<String, String> {
    const RUNS: usize = 100;
    let per_run = watchers.div_ceil(RUNS);
    let mut s = Server::start(db, RUNS)?;
    let pid = s.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib(pid);
    let clients = connect(&s, per_run).await;
    let connected = rss_kib(pid);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(connected));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (secs, _) = tokio::task::block_in_place(|| s.feed(RUNS, 20, 100, 1));
    let mut lat = Vec::new();
    for c in clients {
        lat.extend(c.await.map(|r| r.0).unwrap_or_default());
    }
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    Ok(format!(
        "{db:<9} watchers {:>6} SSE clients on {RUNS} runs: server RSS {:.0} MiB idle, {:.0} MiB connected, {:.0} MiB peak while events flow ({:.1}× idle); p99 {:.1} ms over {} deliveries, fed in {secs:.1} s",
        per_run * RUNS,
        idle as f64 / 1024.0,
        connected as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak as f64 / idle.max(1) as f64,
        pct(&mut lat, 0.99),
        lat.len()
    ))
}
