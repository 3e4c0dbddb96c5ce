//! errand's start-up overhead: the time from `errand run` to the harness's first
//! model request, against starting the bare `claude -p` on the same scenario.
//! Both are measured in the same process against the same scripted model, and
//! reported as medians, a difference in milliseconds and a ratio, because these
//! machines are shared and noisy. Run with `cargo bench -p errand-cli --bench overhead`
//! (ERRAND_BENCH_ITERS sets the number of samples, default 7).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use errand_model::{Scenario, ScriptedModel};

const SCENARIO: &str = r#"{"steps":[{"text":"Nothing to do."}]}"#;
const KEY: &str = "sk-bench-0000";

fn first_message_after(model: &ScriptedModel, skip: usize, start: Instant) -> Option<Duration> {
    model
        .requests()
        .into_iter()
        .skip(skip)
        .find(|r| r.method == "POST" && r.path == "/v1/messages")
        .map(|r| r.at.saturating_duration_since(start))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?}");
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let iters: usize = std::env::var("ERRAND_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let errand = env!("CARGO_BIN_EXE_errand");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("errand-cache");
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("errand-home");

    let install = Command::new(errand)
        .args(["harness", "install", "claude-code"])
        .env("ERRAND_CACHE_DIR", &cache)
        .env("ERRAND_HOME", &home)
        .output()
        .expect("errand harness install");
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let claude =
        String::from_utf8_lossy(&install.stdout).trim().to_string() + "/node_modules/.bin/claude";

    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(repo.join("README.md"), "bench\n").expect("write");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(
        &repo,
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-q",
            "-m",
            "init",
        ],
    );

    let model = rt
        .block_on(ScriptedModel::start(
            Scenario::from_json(SCENARIO).expect("scenario"),
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("model");
    let path = std::env::var("PATH").unwrap_or_default();

    let mut bare_first = Vec::new();
    let mut bare_total = Vec::new();
    let mut errand_first = Vec::new();
    let mut errand_total = Vec::new();
    // One untimed warm-up of each, then alternate so drift affects both alike.
    for i in 0..=iters {
        let claude_home = tmp.path().join(format!("claude-home-{i}"));
        let ws = tmp.path().join(format!("bare-ws-{i}"));
        std::fs::create_dir_all(&claude_home).expect("mkdir");
        std::fs::create_dir_all(&ws).expect("mkdir");
        let skip = model.requests().len();
        let start = Instant::now();
        let st = Command::new(&claude)
            .args([
                "-p",
                "do nothing",
                "--output-format",
                "stream-json",
                "--verbose",
                "--model",
                "claude-sonnet-4-5",
            ])
            .current_dir(&ws)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &claude_home)
            .env("ANTHROPIC_BASE_URL", model.base_url())
            .env("ANTHROPIC_API_KEY", KEY)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("claude");
        let total = start.elapsed();
        assert!(st.success(), "bare claude failed");
        let first = first_message_after(&model, skip, start).expect("bare claude made no request");

        let skip = model.requests().len();
        let start = Instant::now();
        let out = Command::new(errand)
            .args(["run", "--json", "--model", "claude-sonnet-4-5", "--repo"])
            .arg(&repo)
            .arg("do nothing")
            .env_clear()
            .env("PATH", &path)
            .env("HOME", tmp.path())
            .env("ERRAND_HOME", &home)
            .env("ERRAND_CACHE_DIR", &cache)
            .env("ANTHROPIC_BASE_URL", model.base_url())
            .env("ANTHROPIC_API_KEY", KEY)
            .stdin(Stdio::null())
            .output()
            .expect("errand run");
        let etotal = start.elapsed();
        assert!(
            out.status.success(),
            "errand run failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let efirst =
            first_message_after(&model, skip, start).expect("errand's claude made no request");
        if i > 0 {
            bare_first.push(first.as_secs_f64() * 1000.0);
            bare_total.push(total.as_secs_f64() * 1000.0);
            errand_first.push(efirst.as_secs_f64() * 1000.0);
            errand_total.push(etotal.as_secs_f64() * 1000.0);
        }
    }
    let (bf, ef) = (median(&mut bare_first), median(&mut errand_first));
    let (bt, et) = (median(&mut bare_total), median(&mut errand_total));
    println!("errand start-up overhead, median of {iters} runs each (Claude Code 2.1.197, scripted model, text-only turn)");
    println!("  to first model request:  bare claude -p {bf:7.0} ms   errand run {ef:7.0} ms   overhead {:+6.0} ms   ratio {:.2}x", ef - bf, ef / bf);
    println!("  whole run:               bare claude -p {bt:7.0} ms   errand run {et:7.0} ms   overhead {:+6.0} ms   ratio {:.2}x", et - bt, et / bt);
    println!("  (errand's whole run adds the clone, the commit of leftovers in the sandbox, and the fetch into the outbox)");
    rt.block_on(model.shutdown());
}
