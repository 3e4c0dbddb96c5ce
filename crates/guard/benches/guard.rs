//! Per-command cost of `check` over the corpus, against parsing the same
//! `{"command": "…"}` JSON line with serde_json as a baseline.
//!
//! `cargo bench -p errand-guard` (or `cargo test -p errand-guard --release
//! --bench guard -- --bench`) runs the full measurement; without `--bench`
//! it does one quick pass so `cargo test --benches` stays fast.

// Helpers outside #[test] fns may unwrap too: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use errand_guard::{check, Policy};

const CORPUS: &str = include_str!("../tests/corpus.jsonl");

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let commands: Vec<String> = CORPUS
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["command"].as_str().map(str::to_owned))
        .collect();
    let lines: Vec<String> = commands
        .iter()
        .map(|c| serde_json::json!({ "command": c }).to_string())
        .collect();
    let policy = Policy::default();
    let rounds = if full { 200 } else { 1 };

    // Warm up (and fill the parser's small word cache the same way for both runs).
    for c in &commands {
        black_box(check(c, &policy));
    }

    let baseline = time(rounds, &lines, |l| {
        black_box(serde_json::from_str::<serde_json::Value>(l).ok());
    });
    let guard = time(rounds, &commands, |c| {
        black_box(check(c, &policy));
    });

    let n = (rounds * commands.len()) as f64;
    let base_ns = baseline.as_nanos() as f64 / n;
    let guard_ns = guard.as_nanos() as f64 / n;

    // Slowest single commands (mean over a few runs each).
    let mut per: Vec<(f64, &String)> = commands
        .iter()
        .map(|c| {
            let reps = if full { 20 } else { 1 };
            let t = Instant::now();
            for _ in 0..reps {
                black_box(check(c, &policy));
            }
            (t.elapsed().as_nanos() as f64 / reps as f64, c)
        })
        .collect();
    per.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut sorted: Vec<f64> = per.iter().map(|p| p.0).collect();
    sorted.sort_by(f64::total_cmp);
    let pct = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];

    println!(
        "errand-guard bench: {} corpus commands x {rounds} rounds",
        commands.len()
    );
    println!("  serde_json::from_str baseline: {base_ns:>10.0} ns/command");
    println!("  errand_guard::check:           {guard_ns:>10.0} ns/command");
    println!(
        "  ratio check / baseline:        {:>10.1}x",
        guard_ns / base_ns
    );
    println!(
        "  per-command p50 {:.0} ns, p99 {:.0} ns, max {:.0} ns",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    for (ns, c) in per.iter().take(3) {
        let shown: String = c.chars().take(60).collect::<String>().replace('\n', "\\n");
        println!("  slowest: {ns:>10.0} ns  {shown}");
    }
    if full {
        assert!(
            guard_ns < 1_000_000.0,
            "mean cost {guard_ns} ns is not far below a millisecond"
        );
    }
}

fn time<T>(rounds: usize, items: &[T], mut f: impl FnMut(&T)) -> Duration {
    let start = Instant::now();
    for _ in 0..rounds {
        for i in items {
            f(i);
        }
    }
    start.elapsed()
}
