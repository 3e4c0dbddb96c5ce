//! `errand view [FILE|DIR…]`: finds the trace files, serves
//! [`errand_server::localview`] on 127.0.0.1 and opens a browser. Without
//! an argument it shows the user's own sessions: Claude Code's
//! (`$CLAUDE_CONFIG_DIR` or `~/.claude`, `projects/`), Codex's
//! (`$CODEX_HOME` or `~/.codex`, `sessions/`) and Gemini CLI's (`~/.gemini/tmp/`),
//! listed by project and time.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use errand_server::localview::LocalView;

use crate::args::ViewArgs;
use crate::signal;

/// The most files a directory search lists.
const MAX_FILES: usize = 20_000;

/// Whether `p` is a trace file a directory search takes: `*.jsonl`, or one of
/// Gemini CLI's older one-document chats (`chats/session-*.json`).
fn is_trace_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let in_chats = p
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "chats");
    name.ends_with(".jsonl")
        || (in_chats && name.starts_with("session-") && name.ends_with(".json"))
}

/// The directories of the user's own sessions that exist, from `env` (a
/// variable's value by name) and `home`.
pub fn own_session_dirs(
    env: impl Fn(&str) -> Option<PathBuf>,
    home: Option<PathBuf>,
) -> Vec<PathBuf> {
    let under_home = |rest: &str| home.as_ref().map(|h| h.join(rest));
    [
        env("CLAUDE_CONFIG_DIR")
            .map(|d| d.join("projects"))
            .or_else(|| under_home(".claude/projects")),
        env("CODEX_HOME")
            .map(|d| d.join("sessions"))
            .or_else(|| under_home(".codex/sessions")),
        under_home(".gemini/tmp"),
    ]
    .into_iter()
    .flatten()
    .filter(|d| d.is_dir())
    .collect()
}

/// The `*.jsonl` files (and Gemini CLI's `chats/session-*.json`) under `dir`, recursively (symbolic links to directories are not followed).
fn find_jsonl(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 32 || out.len() >= MAX_FILES {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            find_jsonl(&p, out, depth + 1);
        } else if (ft.is_file() || ft.is_symlink()) && is_trace_name(&p) && p.is_file() {
            out.push(p);
        }
        if out.len() >= MAX_FILES {
            return;
        }
    }
}

/// The files the arguments name: files as given, directories searched.
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            let before = found.len();
            find_jsonl(p, &mut found, 0);
            if found.len() == before {
                eprintln!("errand view: no *.jsonl file under {}", p.display());
            }
        } else {
            found.push(p.clone());
        }
    }
    Ok(found)
}

fn open_browser(url: &str) {
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    if !display {
        return;
    }
    // The user's desktop opens it: xdg-open needs the session's environment,
    // and the browser it starts may outlive this viewer.
    let spawned = errand_proc::Cmd::new("xdg-open")
        .arg(url)
        .inherit_all_env()
        .die_with_parent(false)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = spawned {
        // Reap it so it does not linger as a zombie.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}

pub async fn run(args: ViewArgs) -> Result<std::process::ExitCode> {
    let paths = if args.paths.is_empty() {
        let env = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dirs = own_session_dirs(env, env("HOME"));
        if dirs.is_empty() {
            bail!(
                "no sessions of yours to show: none of ~/.claude/projects, ~/.codex/sessions, \
                 ~/.gemini/tmp exists; name trace files or directories"
            );
        }
        dirs
    } else {
        args.paths.clone()
    };
    let view = LocalView::new(collect(&paths)?);
    if view.is_empty() {
        bail!("no trace file to show: name .jsonl files or directories holding some");
    }
    let count = view.len();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    let url = if count == 1 {
        format!("http://{addr}/local/0")
    } else {
        format!("http://{addr}/local")
    };
    // Parse every file in the background, newest first, so the list fills in.
    let bg = view.clone();
    let parsing = tokio::spawn(async move { bg.parse_all().await });
    if args.json {
        // Scripts get the files' summaries too: wait for them.
        let _ = parsing.await;
        let list = view.listing().await;
        println!("{}", serde_json::json!({ "url": url, "files": list }));
    } else {
        println!(
            "errand view: {url}  ({count} file{}; Ctrl-C to stop)",
            if count == 1 { "" } else { "s" }
        );
    }
    if !args.no_open {
        open_browser(&url);
    }
    let shutdown = signal::shutdown_token();
    axum::serve(listener, view.router().into_make_service())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the viewer's HTTP server failed")?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_names_are_jsonl_or_gemini_chats() {
        assert!(is_trace_name(Path::new("/h/.claude/projects/-w/a.jsonl")));
        assert!(is_trace_name(Path::new(
            "/h/.gemini/tmp/p/chats/session-2026-x.json"
        )));
        assert!(!is_trace_name(Path::new("/h/.gemini/tmp/p/logs.json")));
        assert!(!is_trace_name(Path::new("/h/.gemini/settings.json")));
        assert!(!is_trace_name(Path::new("/h/notes.txt")));
    }

    #[test]
    fn own_session_dirs_follow_the_harnesses_variables() {
        let home = tempfile::tempdir().expect("tempdir");
        let codex = tempfile::tempdir().expect("tempdir");
        for d in [".claude/projects", ".codex/sessions", ".gemini/tmp"] {
            std::fs::create_dir_all(home.path().join(d)).expect("mkdir");
        }
        std::fs::create_dir_all(codex.path().join("sessions")).expect("mkdir");
        let none = |_: &str| None;
        assert_eq!(
            own_session_dirs(none, Some(home.path().to_path_buf())),
            [".claude/projects", ".codex/sessions", ".gemini/tmp"].map(|d| home.path().join(d))
        );
        let codex_home = codex.path().to_path_buf();
        let env = |name: &str| (name == "CODEX_HOME").then(|| codex_home.clone());
        assert_eq!(
            own_session_dirs(env, Some(home.path().to_path_buf()))[1],
            codex.path().join("sessions")
        );
        assert!(own_session_dirs(none, None).is_empty());
    }
}
