//! The real `errand` binary: environment overrides typed by the schema,
//! `errand config show`, unknown keys, and the log's formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn errand(home: &Path, vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_errand"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ERRAND_HOME", home.join("errand"))
        .current_dir(home);
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

fn run(home: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    errand(home, vars, args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_numeric_github_app_id_from_the_environment_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("ERRAND_GITHUB_APP_ID", "123456"),
        (
            "ERRAND_GITHUB_PRIVATE_KEY",
            "-----BEGIN RSA PRIVATE KEY-----\nxyz",
        ),
        ("ERRAND_SERVER_WORKERS", "3"),
        ("ERRAND_SANDBOX_EGRESS_GIT_HOST", "true"),
        ("ERRAND_SANDBOX_EGRESS_ALLOW", "a.example, b.example:443"),
    ];
    let out = run(dir.path(), &vars, &["config", "check"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).ends_with(": ok\n"),
        "{}",
        text(&out.stdout)
    );

    let out = run(dir.path(), &vars, &["config", "show", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let values = &v["values"];
    assert_eq!(values["github.app_id"]["value"], "123456");
    assert_eq!(values["github.app_id"]["source"], "environment");
    assert_eq!(values["github.app_id"]["variable"], "ERRAND_GITHUB_APP_ID");
    assert_eq!(values["github.private_key"]["value"], "********");
    assert_eq!(values["server.workers"]["value"], 3);
    assert_eq!(values["sandbox.egress_git_host"]["value"], true);
    assert_eq!(
        values["sandbox.egress_allow"]["value"],
        serde_json::json!(["a.example", "b.example:443"])
    );
    assert_eq!(values["server.listen"]["source"], "default");
    assert!(
        !text(&out.stdout).contains("BEGIN RSA"),
        "the key is masked"
    );
}

#[test]
fn config_show_masks_secrets_and_names_sources() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[database]\nurl = \"postgres://errand:hunter2@db/errand\"\n\
         [slack]\nsigning_secret = \"sig-s3cr3t\"\nbot_token = \"xoxb-s3cr3t\"\n\
         [[harness]]\nname = \"mine\"\ncommand = [\"mine\"]\nformat = \"errand\"\nenv = [\"MINE_API_KEY\"]\n",
    )
    .unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let out = run(
        dir.path(),
        &[("ERRAND_CONFIG", &cfg_s), ("ERRAND_QUEUE_LEASE_SECS", "60")],
        &["config", "show"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(
        shown.contains("database.url = \"postgres://errand:********@db/errand\"  # file"),
        "{shown}"
    );
    assert!(
        shown.contains("queue.lease_secs = 60  # environment (ERRAND_QUEUE_LEASE_SECS)"),
        "{shown}"
    );
    assert!(
        shown.contains("server.listen = \"127.0.0.1:8080\"  # default"),
        "{shown}"
    );
    assert!(shown.contains("[[harness]]"), "{shown}");
}

#[test]
fn unknown_keys_are_named_with_the_nearest_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[sandbox]\nbacknd = \"docker\"\n").unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let vars = [
        ("ERRAND_CONFIG", cfg_s.as_str()),
        ("ERRAND_SERVER_WORKER", "4"),
    ];
    let out = run(dir.path(), &vars, &["config", "check"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown key `sandbox.backnd`; did you mean `sandbox.backend`?"),
        "{err}"
    );
    assert!(
        err.contains(
            "unknown variable `ERRAND_SERVER_WORKER`; did you mean `ERRAND_SERVER_WORKERS`?"
        ),
        "{err}"
    );
    // Other commands warn and go on.
    let out = run(dir.path(), &vars, &["ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did you mean `sandbox.backend`?"),
        "{}",
        text(&out.stderr)
    );
}

/// Every line of `stderr` is one JSON object; returns them.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{stderr}"))
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_from_the_flag_the_variable_or_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[sandbox]\nbacknd = \"docker\"\n").unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let json_cfg = dir.path().join("json.toml");
    std::fs::write(
        &json_cfg,
        "[log]\nformat = \"json\"\n[sandbox]\nbacknd = \"docker\"\n",
    )
    .unwrap();
    let json_cfg_s = json_cfg.to_string_lossy().into_owned();
    for (vars, args) in [
        (
            vec![("ERRAND_CONFIG", cfg_s.as_str())],
            vec!["--log-format", "json", "harness", "list"],
        ),
        (
            vec![("ERRAND_CONFIG", cfg_s.as_str())],
            vec!["harness", "list", "--log-format", "json"],
        ),
        (
            vec![
                ("ERRAND_CONFIG", cfg_s.as_str()),
                ("ERRAND_LOG_FORMAT", "json"),
            ],
            vec!["harness", "list"],
        ),
        (
            vec![("ERRAND_CONFIG", json_cfg_s.as_str())],
            vec!["harness", "list"],
        ),
    ] {
        let mut vars = vars;
        vars.push(("ERRAND_LOG", "debug"));
        let out = run(dir.path(), &vars, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let lines = json_lines(&text(&out.stderr));
        assert!(
            lines.iter().any(|l| l["level"] == "WARN"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("did you mean `sandbox.backend`?"))),
            "{args:?}: {lines:?}"
        );
    }
    // Text into a pipe: no colours.
    let out = run(
        dir.path(),
        &[("ERRAND_CONFIG", &cfg_s), ("ERRAND_LOG", "debug")],
        &["harness", "list"],
    );
    let err = text(&out.stderr);
    assert!(err.contains("did you mean"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI codes in a pipe: {err:?}");
    // A bad format is refused.
    let out = run(
        dir.path(),
        &[],
        &["--log-format", "yaml", "harness", "list"],
    );
    assert!(!out.status.success());
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_api_logs_each_request_as_json_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = errand(
        dir.path(),
        &[("ERRAND_LOG_FORMAT", "json")],
        &["serve", "--listen", "127.0.0.1:0", "--workers", "0"],
    )
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _child = Kill(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("a listening line").unwrap();
        if let Some(rest) = line.strip_prefix("errand serve: listening on http://") {
            break rest.trim().to_string();
        }
        // Everything else errand logs is JSON.
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    };
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /api/openapi.json?token=s3cr3t&x=1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let logged = loop {
        let line = lines.next().expect("a request line").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "request" {
            break v;
        }
    };
    let f = &logged["fields"];
    assert_eq!(logged["level"], "INFO");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["path"], "/api/openapi.json?token=***&x=1");
    assert_eq!(f["status"], 200);
    assert!(f["latency_ms"].as_f64().is_some(), "{logged}");
}
