//! `errand view`'s routes: the trace viewer for trace files on this machine
//! (Claude Code transcripts and stream-json, Codex rollouts and `exec --json`,
//! Gemini CLI, OpenCode, errand's own event logs).
//!
//! Files are parsed with `errand_trace::parse_trace` (through [`LocalTrace`])
//! and served from memory, with the same pages as `errand serve` plus
//! local-only routes: `/local` (the files), `/local/{n}` (one file's trace),
//! backed by `/api/v1/local/files`, `/api/v1/local/files/{n}` and
//! `/api/v1/local/files/{n}/events` (also answered without `v1`, as before).
//! A file dropped on a page goes to `POST /api/v1/local/parse` on this same
//! loopback server and never leaves the machine. Requests must name a loopback host (`Host:`), so a web page cannot
//! reach the server through DNS rebinding. The CLI finds the files, binds
//! 127.0.0.1 and serves [`LocalView::router`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::ApiQuery;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::api::EventsQuery;
use crate::viewer::{self, LocalTrace, Mode};
use crate::ApiError;

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

/// The trace files `errand view` shows, and what it has parsed of them.
#[derive(Clone)]
pub struct LocalView {
    files: Arc<Vec<LocalFile>>,
    kept: Arc<AtomicU64>,
    hot: Hot,
}

/// The project a session file belongs to, told from where the harness keeps
/// it: Claude Code's `projects/<cwd with / as ->/`, Gemini CLI's
/// `tmp/<project>/chats/`; Codex files by date (`sessions/YYYY/MM/DD/`) and
/// others by their directory.
fn project_of(path: &Path) -> Option<String> {
    let parts: Vec<&str> = path
        .parent()?
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let after = |dir: &str| {
        parts
            .iter()
            .rposition(|p| *p == dir)
            .and_then(|i| parts.get(i + 1))
            .map(|p| (*p).to_owned())
    };
    if parts.contains(&"projects") {
        if let Some(p) = after("projects") {
            return Some(p);
        }
    }
    if parts.last() == Some(&"chats") && parts.len() >= 2 {
        return Some(parts[parts.len() - 2].to_owned());
    }
    if let Some(i) = parts.iter().rposition(|p| *p == "sessions") {
        if parts.len() > i + 1 {
            return Some(format!("codex {}", parts[i + 1..].join("-")));
        }
    }
    parts.last().map(|p| (*p).to_owned())
}

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
}

impl LocalView {
    /// The files at `paths`, newest first, each once.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let mut files: Vec<LocalFile> = paths
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
        LocalView {
            files: Arc::new(files),
            kept: Arc::new(AtomicU64::new(0)),
            hot: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// How many files there are.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

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

    /// Parses every file not parsed yet, newest first, so the list fills in;
    /// a file that cannot be read is logged and skipped.
    pub async fn parse_all(&self) {
        for n in 0..self.files.len() {
            let has = self.files[n].slot.lock().await.summary.is_some();
            if !has {
                if let Err(e) = self.parsed(n).await {
                    tracing::warn!("{}", e.message);
                }
            }
        }
    }

    /// Every file with its summary and problems (those parsed so far).
    pub async fn listing(&self) -> Vec<serde_json::Value> {
        let mut list = Vec::new();
        for (n, f) in self.files.iter().enumerate() {
            let s = f.slot.lock().await.summary.clone();
            let mut v = self.describe(n, f, s.as_ref());
            if let Some(s) = s {
                v["problems"] = s["problems"].clone();
            }
            list.push(v);
        }
        list
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
            "project": project_of(&f.path),
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

    /// The viewer's pages and the local routes, for requests to a loopback name only.
    pub fn router(self) -> Router {
        let api = Router::new()
            .route("/local/files", get(list_files))
            .route("/local/files/{n}", get(file_info))
            .route("/local/files/{n}/events", get(file_events))
            .route(
                "/local/parse",
                post(viewer::parse_upload)
                    .layer(axum::extract::DefaultBodyLimit::max(viewer::MAX_UPLOAD)),
            )
            .with_state(self);
        // Under /api/v1 like the server's API, and under /api as before.
        viewer::routes::<()>(Mode::Local)
            .nest(crate::routes::V1, api.clone())
            .nest(crate::routes::DEPRECATED, api)
            .fallback(|| async { ApiError::not_found("no such page or endpoint") })
            .layer(axum::middleware::from_fn(loopback_only))
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

async fn list_files(State(st): State<LocalView>) -> Json<serde_json::Value> {
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
    State(st): State<LocalView>,
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
    State(st): State<LocalView>,
    UrlPath(n): UrlPath<usize>,
    ApiQuery(q): ApiQuery<EventsQuery>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_told_from_where_each_harness_keeps_sessions() {
        let p = |s: &str| project_of(Path::new(s));
        assert_eq!(
            p("/h/.claude/projects/-work-app/1.jsonl").as_deref(),
            Some("-work-app")
        );
        assert_eq!(
            p("/h/.gemini/tmp/app/chats/session-1.json").as_deref(),
            Some("app")
        );
        assert_eq!(
            p("/h/.codex/sessions/2026/12/05/rollout-1.jsonl").as_deref(),
            Some("codex 2026-12-05")
        );
        assert_eq!(p("/tmp/traces/x.jsonl").as_deref(), Some("traces"));
    }
}
