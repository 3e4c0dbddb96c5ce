//! Stable-toolchain fuzzing: 20,000 command strings mutated from the corpus
//! with a seeded RNG go through `check`. Nothing may panic, the parser must
//! never fail internally, and the whole run must stay within a few seconds.
//! (The coverage-guided target is `fuzz/fuzz_targets/parse.rs`.)

// Helpers outside #[test] fns may unwrap too: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use errand_guard::{check, pretooluse_hook, Policy};

const CORPUS: &str = include_str!("../corpus.jsonl");

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const SNIPPETS: &[&str] = &[
    "'",
    "\"",
    "\\",
    "$(",
    ")",
    "`",
    "${",
    "}",
    "{",
    "(",
    "((",
    "))",
    "[[",
    "]]",
    "|",
    "||",
    "&&",
    ";",
    ";;",
    "\n",
    " ",
    "\t",
    "<<EOF\n",
    "\nEOF\n",
    "<<<",
    "<(",
    ">(",
    ">",
    ">>",
    "<",
    "&>",
    "2>&1",
    "#",
    "!",
    "*",
    "?",
    "~",
    "$HOME",
    "$'\\x41'",
    "--",
    "-rf",
    "-f",
    "--force",
    "+main",
    ":",
    "sh -c ",
    "eval ",
    "env X=1 ",
    "sudo ",
    "xargs ",
    "git ",
    "rm ",
    "push ",
    "/",
    "..",
    ".git",
    "\\\n",
    "=",
    "@",
    "\u{e9}",
    "\u{1f600}",
    "\u{0}",
    "\r",
    "for x in a; do ",
    "; done",
    "if true; then ",
    "; fi",
    "case x in x) ",
    ";; esac",
];

fn mutate(rng: &mut Rng, seeds: &[String]) -> String {
    let mut chars: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                let at = rng.below(chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            1 if !chars.is_empty() => {
                let a = rng.below(chars.len());
                let b = (a + 1 + rng.below(8)).min(chars.len());
                chars.drain(a..b);
            }
            2 if !chars.is_empty() => {
                let a = rng.below(chars.len());
                let b = (a + 1 + rng.below(16)).min(chars.len());
                let dup: Vec<char> = chars[a..b].to_vec();
                let at = rng.below(chars.len() + 1);
                chars.splice(at..at, dup);
            }
            3 => {
                // Splice with another corpus line.
                let other: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
                let cut = rng.below(chars.len() + 1);
                let from = rng.below(other.len() + 1);
                chars.truncate(cut);
                chars.extend_from_slice(&other[from..]);
            }
            4 if chars.len() > 1 => {
                let a = rng.below(chars.len());
                let b = rng.below(chars.len());
                chars.swap(a, b);
            }
            _ => {
                let c = char::from_u32((rng.next() % 0x80) as u32).unwrap_or('x');
                let at = rng.below(chars.len() + 1);
                chars.insert(at, c);
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn twenty_thousand_mutated_commands_never_panic() {
    let seeds: Vec<String> = CORPUS
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["command"].as_str().map(str::to_owned))
        .collect();
    assert!(seeds.len() > 100);
    let policy = Policy {
        run_branch: Some("errand/abc".into()),
        ..Policy::default()
    };
    let mut rng = Rng(0x5eed_0fe7_7a2d);
    let start = Instant::now();
    let (mut allowed, mut denied) = (0usize, 0usize);
    for i in 0..20_000 {
        let cmd = mutate(&mut rng, &seeds);
        let d = check(&cmd, &policy);
        if let Some(reason) = d.reason() {
            assert!(
                !reason.contains("the shell parser failed"),
                "parser panicked on {cmd:?}"
            );
            denied += 1;
        } else {
            allowed += 1;
        }
        if i % 10 == 0 {
            // The hook path too, with the command embedded in JSON.
            let stdin = serde_json::json!({
                "hook_event_name": "PreToolUse",
                "tool_name": "Bash",
                "tool_input": {"command": cmd},
            })
            .to_string();
            let _ = pretooluse_hook(&stdin, &policy);
        }
    }
    let took = start.elapsed();
    eprintln!("20000 mutated commands: {allowed} allowed, {denied} denied in {took:?}");
    assert!(
        allowed > 1000 && denied > 1000,
        "mutations too uniform: {allowed}/{denied}"
    );
}

/// Runs `f` on its own thread and fails if it has not returned within a
/// minute: a hang detector (the inputs below once looped forever), not a
/// speed target — the guard's speed is measured by `benches/guard.rs`.
fn terminates<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(_) => panic!("no decision within a minute on {what}"),
    }
}

/// Inputs on which cargo-fuzz found brush-parser panics and hangs (fd and
/// `~` number overflows, exponential backtracking on `((`, endless loops on
/// here-document tags). Each must now be decided quickly.
#[test]
fn fuzz_regressions_are_decided_quickly() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fuzz-regressions"
    );
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        // libFuzzer's &str input is the longest valid UTF-8 prefix.
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t.to_owned(),
            Err(e) => String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned(),
        };
        let what = format!("{text:?}");
        terminates(&what, move || check(&text, &Policy::default()));
        n += 1;
    }
    assert!(n >= 6, "{n} regression inputs");
}
