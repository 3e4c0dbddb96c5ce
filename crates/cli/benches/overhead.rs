//! errand's start-up overhead, per harness: the time from `errand run` to the
//! harness's first model request, against starting the same harness CLI bare
//! (same generated config, same scenario, no errand, no sandbox). Both are
//! measured in this process against one scripted model and reported as
//! medians, a difference in milliseconds and a ratio, because these machines
//! are shared and noisy.
//!
//! `cargo bench -p errand-cli --bench overhead` (ERRAND_BENCH_ITERS samples per
//! side, default 5; ERRAND_BENCH_HARNESSES, default "claude-code,codex,gemini,opencode").

#![allow(clippy::disallowed_methods)] // benchmarks start their own fixtures

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use errand_harness::RunContext;
use errand_model::{Scenario, ScriptedModel};
use errand_sandbox::paths as inside;

const SCENARIO: &str = r#"{"steps":[{"text":"Nothing to do."}]}"#;
const KEY: &str = "sk-bench-0000";

fn first_post_after(model: &ScriptedModel, skip: usize, start: Instant) -> Option<Duration> {
    model
        .requests()
        .into_iter()
        .skip(skip)
        .find(|r| r.method == "POST")
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

/// Rewrites a path as the sandbox sees it into the bare run's host path.
fn host_path(s: &str, install: &Path, home: &Path, ws: &Path) -> String {
    s.replace(inside::HARNESS, &install.to_string_lossy())
        .replace(inside::HOME, &home.to_string_lossy())
        .replace(inside::WORKSPACE, &ws.to_string_lossy())
}

struct Row {
    harness: String,
    bare_first: f64,
    errand_first: f64,
    bare_total: f64,
    errand_total: f64,
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let iters: usize = std::env::var("ERRAND_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let harnesses = std::env::var("ERRAND_BENCH_HARNESSES")
        .unwrap_or_else(|_| "claude-code,codex,gemini,opencode".into());
    let errand = env!("CARGO_BIN_EXE_errand");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("errand-cache");
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("errand-home");
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
    let model_env: Vec<(&str, String)> = vec![
        ("ANTHROPIC_BASE_URL", model.base_url()),
        ("ANTHROPIC_API_KEY", KEY.into()),
        ("OPENAI_BASE_URL", model.openai_base_url()),
        ("OPENAI_API_KEY", KEY.into()),
        ("GOOGLE_GEMINI_BASE_URL", model.base_url()),
        ("GEMINI_API_KEY", KEY.into()),
    ];
    let path = std::env::var("PATH").unwrap_or_default();
    let mut rows = Vec::new();

    for name in harnesses
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let install = Command::new(errand)
            .args(["harness", "install", name])
            .env("ERRAND_CACHE_DIR", &cache)
            .env("ERRAND_HOME", &home)
            .output()
            .expect("errand harness install");
        assert!(
            install.status.success(),
            "{}",
            String::from_utf8_lossy(&install.stderr)
        );
        let install_dir = PathBuf::from(String::from_utf8_lossy(&install.stdout).trim());
        let harness = errand_harness::by_name(name).expect("harness");
        let model_name = match name {
            "claude-code" => "claude-sonnet-4-5",
            "gemini" => "gemini-2.5-pro",
            _ => "gpt-5",
        };
        let mut r = Row {
            harness: name.into(),
            bare_first: 0.0,
            errand_first: 0.0,
            bare_total: 0.0,
            errand_total: 0.0,
        };
        let (mut bf, mut bt, mut ef, mut et) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // One untimed warm-up of each side, then alternate so drift affects both alike.
        for i in 0..=iters {
            let bare_home = tmp.path().join(format!("{name}-home-{i}"));
            let ws = tmp.path().join(format!("{name}-ws-{i}"));
            std::fs::create_dir_all(&bare_home).expect("mkdir");
            // The bare harness works in a clone too, as it does under errand.
            let ok = Command::new("git")
                .args(["clone", "-q"])
                .arg(&repo)
                .arg(&ws)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "git clone");
            let ctx = RunContext {
                prompt: "do nothing".into(),
                model: Some(model_name.into()),
                max_turns: 5,
                branch: "main".into(),
                env: model_env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect::<BTreeMap<_, _>>(),
                install_dir: install_dir.clone(),
                extra_path: vec![],
                extra_env: vec![],
                agent_git: false,
            };
            let inv = harness.invocation(&ctx).expect("invocation");
            for (rel, contents) in &inv.home_files {
                let p = bare_home.join(rel);
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(p, host_path(contents, &install_dir, &bare_home, &ws))
                    .expect("write");
            }
            let mut cmd = Command::new(host_path(
                &inv.command.program,
                &install_dir,
                &bare_home,
                &ws,
            ));
            cmd.args(
                inv.command
                    .args
                    .iter()
                    .map(|a| host_path(a, &install_dir, &bare_home, &ws)),
            )
            .current_dir(&ws)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            for (k, v) in &inv.env {
                cmd.env(k, host_path(v, &install_dir, &bare_home, &ws));
            }
            let skip = model.requests().len();
            let start = Instant::now();
            let st = cmd.status().expect("bare harness");
            let total = start.elapsed();
            assert!(st.success(), "bare {name} failed");
            let first =
                first_post_after(&model, skip, start).expect("bare harness made no request");

            let skip = model.requests().len();
            let start = Instant::now();
            let mut run = Command::new(errand);
            run.args([
                "run",
                "--json",
                "--harness",
                name,
                "--model",
                model_name,
                "--repo",
            ])
            .arg(&repo)
            .arg("do nothing")
            .env_clear()
            .env("PATH", &path)
            .env("HOME", tmp.path())
            .env("ERRAND_HOME", &home)
            .env("ERRAND_CACHE_DIR", &cache)
            .stdin(Stdio::null());
            for (k, v) in &model_env {
                run.env(k, v);
            }
            let out = run.output().expect("errand run");
            let etotal = start.elapsed();
            assert!(
                out.status.success(),
                "errand run --harness {name} failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            let efirst =
                first_post_after(&model, skip, start).expect("errand's harness made no request");
            if i > 0 {
                bf.push(first.as_secs_f64() * 1000.0);
                bt.push(total.as_secs_f64() * 1000.0);
                ef.push(efirst.as_secs_f64() * 1000.0);
                et.push(etotal.as_secs_f64() * 1000.0);
            }
        }
        r.bare_first = median(&mut bf);
        r.bare_total = median(&mut bt);
        r.errand_first = median(&mut ef);
        r.errand_total = median(&mut et);
        rows.push(r);
    }
    println!("errand start-up overhead, median of {iters} runs per side (scripted model, text-only turn)");
    println!(
        "{:<12} {:>15} {:>15} {:>10} {:>7}   {:>12} {:>12} {:>10} {:>7}",
        "harness",
        "bare→request",
        "errand→request",
        "overhead",
        "ratio",
        "bare total",
        "errand total",
        "overhead",
        "ratio"
    );
    for r in &rows {
        println!(
            "{:<12} {:>12.0} ms {:>12.0} ms {:>+7.0} ms {:>6.2}x   {:>9.0} ms {:>9.0} ms {:>+7.0} ms {:>6.2}x",
            r.harness,
            r.bare_first,
            r.errand_first,
            r.errand_first - r.bare_first,
            r.errand_first / r.bare_first,
            r.bare_total,
            r.errand_total,
            r.errand_total - r.bare_total,
            r.errand_total / r.bare_total
        );
    }
    println!("(errand's total adds the clone, the commit of leftovers in the sandbox and the fetch into the outbox)");
    rt.block_on(model.shutdown());
}
