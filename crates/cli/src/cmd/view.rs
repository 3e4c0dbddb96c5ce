//! `errand view FILE|DIR…`: finds the trace files, serves
//! [`errand_server::localview`] on 127.0.0.1 and opens a browser.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use errand_server::localview::LocalView;

use crate::args::ViewArgs;
use crate::signal;

/// The most files a directory search lists.
const MAX_FILES: usize = 20_000;

/// The `*.jsonl` files under `dir`, recursively (symbolic links to directories are not followed).
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
        } else if (ft.is_file() || ft.is_symlink())
            && p.extension().is_some_and(|x| x == "jsonl")
            && p.is_file()
        {
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
    let view = LocalView::new(collect(&args.paths)?);
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
    axum::serve(listener, view.router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the viewer's HTTP server failed")?;
    Ok(std::process::ExitCode::SUCCESS)
}
