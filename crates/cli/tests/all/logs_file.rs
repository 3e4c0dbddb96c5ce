//! `errand logs --file FILE`: the real binary on the real trace fixtures of
//! `errand-trace` (a Claude Code transcript and a Codex rollout, both
//! captured from the real CLIs), on damaged copies of them, and on files
//! that are not traces.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../trace/tests/fixtures")
        .join(name)
}

/// `errand ARGS` with its own empty ERRAND_HOME and no server.
fn errand(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_errand"))
        .args(args)
        .env("ERRAND_HOME", home.path())
        .env_remove("ERRAND_SERVER")
        .env("NO_COLOR", "1")
        .output()
        .expect("run errand")
}

fn logs_file(path: &Path, json: bool) -> Output {
    let path = path.to_str().expect("utf-8 path");
    let mut args = vec!["logs", "--file", path];
    if json {
        args.push("--json");
    }
    errand(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `(name, is_error, exit_code)` of the tool calls in `events`, by id.
fn calls(events: &[Value]) -> Vec<(String, Option<bool>, Option<i64>)> {
    events
        .iter()
        .filter(|e| e["type"] == "tool_call")
        .map(|call| {
            let result = events
                .iter()
                .find(|e| e["type"] == "tool_result" && e["id"] == call["id"]);
            (
                call["name"].as_str().unwrap_or_default().to_owned(),
                result.and_then(|r| r["is_error"].as_bool()),
                result.and_then(|r| r["exit_code"].as_i64()),
            )
        })
        .collect()
}

#[test]
fn a_claude_transcript_gives_its_tool_calls() {
    let out = logs_file(&fixture("claude_transcript_edits.jsonl"), true);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out);
    let calls = calls(&events);
    let expected = [
        ("Write", Some(false), None),
        ("Edit", Some(false), None),
        ("Bash", Some(false), Some(0)),
        ("Bash", Some(true), Some(1)),
        ("Read", Some(false), None),
    ]
    .map(|(n, e, c)| (n.to_owned(), e, c));
    assert_eq!(calls, expected);
    // Shaped like `errand logs RUN --json`: numbered from 1, harness events
    // with the line they came from and the line's own timestamp.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["source"], "harness");
        assert!(e["raw_line"].as_u64().is_some_and(|l| l >= 1), "{e}");
        let ev: errand_core::Event = serde_json::from_value(e.clone()).expect("an Event");
        assert_eq!(ev.ts.to_rfc3339().get(..10), Some("2026-11-26"));
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "file_edit")
            .map(|e| e["path"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["/tmp/ws-cc/notes.txt", "/tmp/ws-cc/notes.txt"]
    );
    assert!(
        stderr(&out).contains("claude_transcript, 17 lines, 21 events"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_codex_rollout_gives_its_tool_calls() {
    let out = logs_file(&fixture("codex_rollout_patch.jsonl"), true);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out);
    let expected = [
        ("apply_patch", Some(false), Some(0)),
        ("apply_patch", Some(false), Some(0)),
        ("Bash", Some(false), Some(0)),
        ("Bash", Some(true), Some(3)),
    ]
    .map(|(n, e, c)| (n.to_owned(), e, c));
    assert_eq!(calls(&events), expected);
    assert_eq!(events[0]["type"], "session_start");
    assert_eq!(events[0]["model"], "gpt-5.5");
    let last = events.last().expect("events");
    assert_eq!(last["type"], "result");
    assert_eq!(last["usage"]["input_tokens"], 48679);
}

#[test]
fn without_json_the_events_are_rendered() {
    let out = logs_file(&fixture("claude_transcript_edits.jsonl"), false);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "Task   do it",
        "Write  /tmp/ws-cc/notes.txt +3 -0",
        "Edit   /tmp/ws-cc/notes.txt +2 -1",
        "Bash   cat notes.txt && ls (exit 0,",
        "Bash   false (exit 1,",
        "Read   /tmp/ws-cc/notes.txt (",
        "Done: wrote, edited and read notes.txt.",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    assert!(
        stderr(&out).contains("claude_transcript"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_truncated_file_prints_what_it_can_and_says_where_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(fixture("codex_rollout_patch.jsonl")).expect("fixture");
    // Cut in the middle of line 23 (the first command's output).
    let start: usize = text.lines().take(22).map(|l| l.len() + 1).sum();
    let line_23 = text.lines().nth(22).expect("line 23");
    let cut = &text[..start + line_23.len() / 2];
    let path = dir.path().join("rollout-cut.jsonl");
    std::fs::write(&path, cut).expect("write");

    let out = logs_file(&path, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out);
    // Both patches and their results, and the call whose result was cut.
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "tool_call")
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["apply_patch", "apply_patch", "Bash"]);
    assert_eq!(
        events.iter().filter(|e| e["type"] == "file_edit").count(),
        3
    );
    let err = stderr(&out);
    assert!(
        err.contains("line 23 is truncated: the file ends in the middle of it"),
        "{err}"
    );
    assert!(err.contains("1 problem"), "{err}");

    // Rendered, the cut call shows as one without a result.
    let out = logs_file(&path, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("cat notes.txt && ls (no result)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_bad_line_in_the_middle_is_reported_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(fixture("claude_transcript_edits.jsonl")).expect("fixture");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(9, "Warning: this is not JSON");
    let path = dir.path().join("session.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let out = logs_file(&path, true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(calls(&json_lines(&out)).len(), 5);
    assert!(
        stderr(&out).contains("line 10 is not JSON: expected value at column 1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_file_that_is_not_a_trace_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("notes.txt");
    std::fs::write(&garbage, "hello\nthis is not a trace\n{\"a\":1}\n").expect("write");
    let out = logs_file(&garbage, false);
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("could not tell the format of this file"),
        "{}",
        stderr(&out)
    );

    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    let out = logs_file(&empty, true);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("it is empty"), "{}", stderr(&out));

    let missing = dir.path().join("missing.jsonl");
    let out = logs_file(&missing, false);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.jsonl"), "{}", stderr(&out));

    let out = logs_file(dir.path(), false);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

#[test]
fn exactly_one_of_run_or_file() {
    let file = fixture("claude_transcript_edits.jsonl");
    let file = file.to_str().expect("utf-8 path");
    let neither = errand(&["logs"]);
    assert_eq!(neither.status.code(), Some(2), "{}", stderr(&neither));
    let both = errand(&["logs", "abc123", "--file", file]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let follow = errand(&["logs", "--file", file, "--follow"]);
    assert_eq!(follow.status.code(), Some(2), "{}", stderr(&follow));
    // A run id alone still means a run (none here).
    let run = errand(&["logs", "abc123"]);
    assert!(!run.status.success());
    assert_ne!(run.status.code(), Some(2), "{}", stderr(&run));
    // A file is read here even when a server is configured.
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_errand"))
        .args([
            "--server",
            "http://127.0.0.1:9",
            "logs",
            "--file",
            file,
            "--json",
        ])
        .env("ERRAND_HOME", home.path())
        .output()
        .expect("run errand");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(calls(&json_lines(&out)).len(), 5);
}
