//! `errand view FILE|DIR…`: the trace viewer for trace files on this machine
//! (Claude Code transcripts and stream-json, Codex rollouts and `exec --json`,
//! Gemini CLI, OpenCode, errand's own event logs).
//!
//! Files are parsed with `errand_trace::parse_trace` and served from memory
//! on 127.0.0.1 only, with the same pages as `errand serve` plus local-only
//! routes: `/local` (the files), `/local/{n}` (one file's trace), backed by
//! `/api/local/files`, `/api/local/files/{n}` and `/api/local/files/{n}/events`.
//! A file dropped on a page goes to `POST /api/local/parse` on this same
//! loopback server and never leaves the machine. Requests must name a
//! loopback host (`Host:`), so a web page cannot reach the server through
//! DNS rebinding.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use errand_server::api::EventsQuery;
use errand_server::viewer::{self, LocalTrace, Mode};
use errand_server::ApiError;

#[derive(Args)]
pub struct ViewArgs {
    /// Trace files, or directories searched for *.jsonl (e.g. ~/.claude/projects, ~/.codex/sessions).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Port on 127.0.0.1 (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Do not open a browser.
    #[arg(long)]
    pub no_open: bool,
    /// Print the address and the files as one JSON object (for scripts), then serve.
    #[arg(long)]
    pub json: bool,
}

/// The most files a directory search lists.
const MAX_FILES: usize = 20_000;
/// Parsed files are kept in memory up to this many bytes of trace text (the
/// file being looked at is always kept).
const KEEP_BYTES: u64 = 2 << 30;

struct LocalFile {
    path: PathBuf,
    size: u64,
    modified: Option<SystemTime>,
    slot: tokio::sync::Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    summary: Option<serde_json::Value>,
    full: Option<Arc<LocalTrace>>,
}

/// The file looked at last, always kept in memory.
type Hot = Arc<tokio::sync::Mutex<Option<(usize, Arc<LocalTrace>)>>>;

#[derive(Clone)]
struct ViewState {
    files: Arc<Vec<LocalFile>>,
    kept: Arc<AtomicU64>,
    hot: Hot,
}

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

/// The files the arguments name: files as given, directories searched; newest first.
fn collect(paths: &[PathBuf]) -> Result<Vec<LocalFile>> {
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
    let mut files: Vec<LocalFile> = found
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            LocalFile {
                size: meta.as_ref().map_or(0, |m| m.len()),
                modified: meta.and_then(|m| m.modified().ok()),
                path,
                slot: Default::default(),
            }
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.modified));
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.path.clone()));
    if files.is_empty() {
        bail!("no trace file to show: name .jsonl files or directories holding some");
    }
    Ok(files)
}

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
}

impl ViewState {
    fn file(&self, n: usize) -> Result<&LocalFile, ApiError> {
        self.files
            .get(n)
            .ok_or_else(|| ApiError::not_found(format!("no file number {n}")))
    }

    /// File `n` parsed (reading and parsing it if it is not in memory).
    async fn parsed(&self, n: usize) -> Result<Arc<LocalTrace>, ApiError> {
        {
            let hot = self.hot.lock().await;
            if let Some((k, t)) = hot.as_ref() {
                if *k == n {
                    return Ok(t.clone());
                }
            }
        }
        let f = self.file(n)?;
        let mut slot = f.slot.lock().await;
        let trace = match &slot.full {
            Some(t) => t.clone(),
            None => {
                let t = Arc::new(parse_file(&f.path).await?);
                slot.summary = Some(t.summary_json());
                if self.kept.fetch_add(t.size, Ordering::Relaxed) + t.size <= KEEP_BYTES {
                    slot.full = Some(t.clone());
                } else {
                    self.kept.fetch_sub(t.size, Ordering::Relaxed);
                }
                t
            }
        };
        *self.hot.lock().await = Some((n, trace.clone()));
        Ok(trace)
    }

    fn describe(
        &self,
        n: usize,
        f: &LocalFile,
        summary: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let mut v = serde_json::json!({
            "n": n,
            "name": f.path.display().to_string(),
            "size": f.size,
            "modified": rfc3339(f.modified),
            "parsed": summary.is_some(),
        });
        if let Some(s) = summary {
            v["format"] = s["format"].clone();
            v["events"] = s["events"].clone();
            v["lines"] = s["lines"].clone();
            v["problems"] = s["problems"].as_array().map_or(0, |p| p.len()).into();
        }
        v
    }
}

async fn parse_file(path: &Path) -> Result<LocalTrace, ApiError> {
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unreadable",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let name = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        LocalTrace::parse(&name, text)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

async fn list_files(State(st): State<ViewState>) -> Json<serde_json::Value> {
    let mut out = Vec::with_capacity(st.files.len());
    for (n, f) in st.files.iter().enumerate() {
        let summary = match f.slot.try_lock() {
            Ok(slot) => slot.summary.clone(),
            Err(_) => None,
        };
        out.push(st.describe(n, f, summary.as_ref()));
    }
    Json(serde_json::json!({ "files": out }))
}

async fn file_info(
    State(st): State<ViewState>,
    UrlPath(n): UrlPath<usize>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = st.parsed(n).await?;
    let f = st.file(n)?;
    let mut v = t.summary_json();
    v["n"] = n.into();
    v["modified"] = rfc3339(f.modified).into();
    Ok(Json(v))
}

async fn file_events(
    State(st): State<ViewState>,
    UrlPath(n): UrlPath<usize>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    Ok(st.parsed(n).await?.events_response(&q))
}

/// Only requests addressed to a loopback name are served.
async fn loopback_only(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host,
    };
    if matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "errand view answers only requests to 127.0.0.1 or localhost",
        )
        .into_response()
    }
}

fn router(st: ViewState) -> Router {
    let api = Router::new()
        .route("/api/local/files", get(list_files))
        .route("/api/local/files/{n}", get(file_info))
        .route("/api/local/files/{n}/events", get(file_events))
        .route(
            "/api/local/parse",
            post(viewer::parse_upload)
                .layer(axum::extract::DefaultBodyLimit::max(viewer::MAX_UPLOAD)),
        )
        .with_state(st);
    viewer::routes::<()>(Mode::Local)
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such page or endpoint") })
        .layer(axum::middleware::from_fn(loopback_only))
}

fn open_browser(url: &str) {
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    if !display {
        return;
    }
    let spawned = std::process::Command::new("xdg-open")
        .arg(url)
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
    let files = collect(&args.paths)?;
    let count = files.len();
    let st = ViewState {
        files: Arc::new(files),
        kept: Arc::new(AtomicU64::new(0)),
        hot: Arc::new(tokio::sync::Mutex::new(None)),
    };
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
    let bg = st.clone();
    let parsing = tokio::spawn(async move {
        for n in 0..bg.files.len() {
            let has = bg.files[n].slot.lock().await.summary.is_some();
            if !has {
                if let Err(e) = bg.parsed(n).await {
                    tracing::warn!("{}", e.message);
                }
            }
        }
    });
    if args.json {
        // Scripts get the files' summaries too: wait for them.
        let _ = parsing.await;
        let mut list = Vec::new();
        for (n, f) in st.files.iter().enumerate() {
            let s = f.slot.lock().await.summary.clone();
            let mut v = st.describe(n, f, s.as_ref());
            if let Some(s) = s {
                v["problems"] = s["problems"].clone();
            }
            list.push(v);
        }
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
    let shutdown = tokio_util::sync::CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    axum::serve(listener, router(st))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the viewer's HTTP server failed")?;
    Ok(std::process::ExitCode::SUCCESS)
}
