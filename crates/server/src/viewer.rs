//! The trace viewer: static pages and their assets, embedded in the binary
//! (`crates/server/assets`, no build step), served by `errand serve` and by
//! `errand view`.
//!
//! * Page routes (`/`, `/runs/{id}`, `/groups/{group}`, `/login`, and in
//!   `errand view` `/local`, `/local/{n}`) all answer the same HTML shell; the
//!   scripts route on the path and read their data from the API with the
//!   token the browser keeps (pages themselves are public: they hold no data).
//! * `/assets/*` answers with an `ETag` (the embedded file's SHA-256), so a
//!   browser revalidates cheaply (`304`).
//! * Every page carries `Content-Security-Policy: default-src 'self'`: no
//!   inline script or style, no third-party origin.
//! * [`LocalTrace`] is a trace file parsed in memory (`errand view`, and
//!   files dropped on a page: `POST /api/v1/local/parse`), answered in the same
//!   JSON-lines shape as a run's events.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::api::EventsQuery;
use crate::ApiError;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The policy of every page: only this origin's scripts, styles and data.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The largest trace file a page may send to `POST /api/v1/local/parse`.
pub const MAX_UPLOAD: usize = 512 << 20;

/// Which server serves the pages; the scripts read it from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `errand serve`: runs from the store, behind API tokens.
    Serve,
    /// `errand view`: trace files from this machine, on loopback only.
    Local,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Serve => "serve",
            Mode::Local => "local",
        }
    }
}

/// Headers every page and asset carries.
fn common_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Share links carry their secret in the path: never send it anywhere.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The HTML shell every page route answers with.
pub fn page(mode: Mode) -> Response {
    let Some(file) = Assets::get("index.html") else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the viewer is missing").into_response();
    };
    let html = String::from_utf8_lossy(&file.data).replace("{{mode}}", mode.name());
    let mut resp = html.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    common_headers(h);
    resp
}

/// Whether a request asks for a page rather than data: its `Accept` names
/// `text/html` (as a browser's navigation does) before any JSON type.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut html = None;
    let mut json = None;
    for (i, part) in accept.split(',').enumerate() {
        let mut it = part.split(';');
        let ty = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        // q has three decimals at most: as an integer it orders totally.
        let rank = ((q * 1000.0).round() as u32, std::cmp::Reverse(i));
        match ty.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(Some(rank)),
            "application/json" => json = json.max(Some(rank)),
            _ => {}
        }
    }
    match (html, json) {
        (Some(h), Some(j)) => h > j,
        (Some(_), None) => true,
        _ => false,
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /assets/{*path}`: an embedded file, with an `ETag` from its hash.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return ApiError::not_found(format!("no asset {path}")).into_response();
    };
    let etag: String = file
        .metadata
        .sha256_hash()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let etag = format!("\"{}\"", &etag[..32]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.data.into_owned().into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    // Always revalidate: a new errand binary brings new assets under the same names.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    common_headers(h);
    resp
}

/// The page routes and `/assets/*` for `mode`, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>(mode: Mode) -> Router<S> {
    let p = move || async move { page(mode) };
    let mut r = Router::new()
        .route("/", get(p))
        .route("/login", get(p))
        .route("/assets/{*path}", get(asset));
    r = match mode {
        Mode::Serve => r
            .route("/new", get(p))
            .route("/runs/{id}", get(p))
            .route("/groups/{group}", get(p)),
        Mode::Local => r.route("/local", get(p)).route("/local/{n}", get(p)),
    };
    r
}

/// A trace file parsed in memory: its events as JSON lines, numbered from 1
/// like a run's, and the problems the parser met.
#[derive(Debug)]
pub struct LocalTrace {
    /// What the file is called (its path, for `errand view`).
    pub name: String,
    /// The file's size, in bytes.
    pub size: u64,
    /// The format the parser recognised; `None` when none.
    pub format: Option<String>,
    /// One JSON object per event: `seq`, `source`, and the event's fields.
    pub events: Vec<String>,
    /// `(line, message)`: lines that could not be read.
    pub problems: Vec<(u64, String)>,
    /// How many lines the file has.
    pub lines: u64,
    text: String,
    line_starts: Vec<usize>,
}

impl LocalTrace {
    /// Parses `text` (a whole trace file) with [`errand_trace::parse_trace`].
    pub fn parse(name: &str, text: String) -> LocalTrace {
        let parsed = errand_trace::parse_trace(&text);
        let format = parsed.format.and_then(|f| {
            serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        let events = parsed
            .events
            .iter()
            .enumerate()
            .map(|(i, ev)| {
                let mut v = serde_json::to_value(&ev.kind).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("seq".into(), (i as u64 + 1).into());
                    o.insert(
                        "source".into(),
                        serde_json::to_value(ev.source).unwrap_or_default(),
                    );
                    o.insert("raw_line".into(), (ev.line as u64).into());
                    if let Some(ts) = ev.ts {
                        o.insert("ts".into(), serde_json::to_value(ts).unwrap_or_default());
                    }
                }
                serde_json::to_string(&v).unwrap_or_default()
            })
            .collect();
        let problems = parsed
            .problems
            .iter()
            .map(|p| (p.line as u64, p.message.clone()))
            .collect();
        let mut line_starts = vec![0];
        line_starts.extend(
            text.match_indices('\n')
                .map(|(i, _)| i + 1)
                .filter(|&i| i < text.len()),
        );
        if text.is_empty() {
            line_starts.clear();
        }
        LocalTrace {
            name: name.to_owned(),
            size: text.len() as u64,
            format,
            events,
            problems,
            lines: line_starts.len() as u64,
            text,
            line_starts,
        }
    }

    /// `GET …/events?after=&limit=&tail=&raw=1`, as for a run.
    pub fn events_response(&self, q: &EventsQuery) -> Response {
        let mut body = String::new();
        if q.raw.as_deref().is_some_and(|r| r == "1" || r == "true") {
            let after = q.after.unwrap_or(0) as usize;
            let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000) as usize;
            for n in after..self.line_starts.len().min(after.saturating_add(limit)) {
                if let Some(line) = self.line(n as u64 + 1) {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        } else {
            let total = self.events.len() as u64;
            let (after, limit) = window(q, total);
            for line in self.events.iter().skip(after as usize).take(limit as usize) {
                body.push_str(line);
                body.push('\n');
            }
        }
        ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
    }

    /// Line `n` (from 1) of the file, without its line break.
    pub fn line(&self, n: u64) -> Option<&str> {
        let i = usize::try_from(n).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(i)?;
        let end = self
            .line_starts
            .get(i + 1)
            .copied()
            .unwrap_or(self.text.len());
        Some(self.text.get(start..end)?.trim_end_matches(['\n', '\r']))
    }

    /// A summary for listings: name, size, format, counts and problems.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "size": self.size,
            "format": self.format,
            "events": self.events.len(),
            "lines": self.lines,
            "problems": self.problems.iter().map(|(line, message)| serde_json::json!({"line": line, "message": message})).collect::<Vec<_>>(),
        })
    }
}

/// `(after, limit)` of an events request over `total` events numbered from 1:
/// `tail=N` is the last N (after `after`, if given too).
pub fn window(q: &EventsQuery, total: u64) -> (u64, u32) {
    let mut after = q.after.unwrap_or(0);
    let mut limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    if let Some(tail) = q.tail {
        let tail = tail.clamp(1, 100_000);
        after = after.max(total.saturating_sub(u64::from(tail)));
        limit = limit.min(tail);
        if q.limit.is_none() {
            limit = tail;
        }
    }
    (after, limit)
}

/// `POST /api/v1/local/parse`: a trace file sent by a page (dropped on it),
/// parsed in memory and answered at once; nothing is stored.
#[utoipa::path(post, path = "/local/parse", summary = "Parse a trace file in memory (a file dropped on a viewer page)",
    description = "The body is a whole trace file (Claude Code transcript or stream-json, Codex rollout or exec --json, Gemini CLI, OpenCode, errand event log). It is parsed in memory and answered at once; nothing is stored. At most 512 MiB.",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses(
    (status = 200, description = "The parsed trace: its events and the problems met", content_type = "application/json", body = Object),
    (status = 413, description = "The file is larger than 512 MiB"),
    (status = 422, description = "invalid_request: the file is empty", body = crate::views::ErrorBody),
))]
pub async fn parse_upload(body: Bytes) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("the file is empty"));
    }
    let parsed = tokio::task::spawn_blocking(move || {
        let text = String::from_utf8_lossy(&body).into_owned();
        LocalTrace::parse("upload", text)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("parsing failed: {e}"),
        )
    })?;
    let mut out = serde_json::to_string(&parsed.summary_json()).unwrap_or_else(|_| "{}".into());
    // Splice the events in without building one more copy of them as values.
    out.pop();
    out.push_str(",\"trace\":[");
    for (i, ev) in parsed.events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(ev);
    }
    out.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use errand_core::{Event, EventKind, EventSource, RunId, RunSpec};
    use errand_store::{SqliteStore, Store};
    use tower::ServiceExt;

    use super::*;
    use crate::{app, auth, AppState};

    async fn setup() -> (AppState, String, RunId) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.expect("store"));
        let token = auth::new_secret("errand");
        store
            .create_token("t", &auth::hash(&token), &errand_store::Scope::ALL)
            .await
            .expect("token");
        let id = RunId::new();
        store
            .create_run(id, &RunSpec::new("p", "claude-code"))
            .await
            .expect("run");
        let events: Vec<Event> = (1..=10)
            .map(|seq| Event {
                seq,
                ts: chrono::Utc::now(),
                source: EventSource::Errand,
                raw_line: None,
                kind: EventKind::Notice {
                    message: format!("n{seq}"),
                },
            })
            .collect();
        store.append_events(id, &events).await.expect("events");
        (AppState::new(store, Default::default()), token, id)
    }

    async fn get(st: &AppState, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        app(st.clone())
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    async fn body(resp: Response) -> String {
        let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8_lossy(&b).into_owned()
    }

    fn header<'a>(resp: &'a Response, name: &str) -> &'a str {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn pages_carry_the_policy_and_assets_an_etag() {
        let (st, _, _) = setup().await;
        for path in ["/", "/new", "/runs/abc", "/groups/g1", "/login"] {
            let resp = get(&st, path, &[]).await;
            assert_eq!(resp.status(), 200, "{path}");
            assert!(header(&resp, "content-security-policy").starts_with("default-src 'self'"));
            assert!(header(&resp, "content-type").starts_with("text/html"));
            let html = body(resp).await;
            assert!(html.contains(r#"content="serve""#), "{html}");
            assert!(!html.contains("<script>"), "no inline script");
        }
        // Local-file pages exist only in `errand view`.
        assert_eq!(get(&st, "/local/0", &[]).await.status(), 404);

        let resp = get(&st, "/assets/js/app.js", &[]).await;
        assert_eq!(resp.status(), 200);
        assert!(header(&resp, "content-type").starts_with("text/javascript"));
        let etag = header(&resp, "etag").to_string();
        assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
        assert_eq!(header(&resp, "cache-control"), "no-cache");
        let again = get(&st, "/assets/js/app.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), 304);
        assert_eq!(header(&again, "etag"), etag);
        let css = get(&st, "/assets/app.css", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(css.status(), 200);
        assert!(header(&css, "content-type").starts_with("text/css"));
        assert_eq!(get(&st, "/assets/nope.js", &[]).await.status(), 404);
        assert_eq!(get(&st, "/assets/../Cargo.toml", &[]).await.status(), 404);
    }

    #[tokio::test]
    async fn share_links_answer_a_page_to_browsers_and_json_otherwise() {
        let (st, _, id) = setup().await;
        let secret = auth::new_secret("share");
        st.store
            .create_share(id, &auth::hash(&secret))
            .await
            .expect("share");
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let resp = get(&st, &format!("/share/{secret}"), &[("accept", browser)]).await;
        assert_eq!(resp.status(), 200);
        assert!(header(&resp, "content-security-policy").contains("default-src 'self'"));
        assert!(body(resp).await.contains("/assets/js/app.js"));
        for accept in [None, Some("application/json"), Some("*/*")] {
            let h: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let resp = get(&st, &format!("/share/{secret}"), &h).await;
            assert_eq!(resp.status(), 200);
            assert!(header(&resp, "content-type").starts_with("application/json"));
            let v: serde_json::Value = serde_json::from_str(&body(resp).await).expect("json");
            assert_eq!(v["id"], id.to_string());
        }
        let resp = get(
            &st,
            "/share/share_unknown",
            &[("accept", "application/json")],
        )
        .await;
        assert_eq!(resp.status(), 404);
        let events = body(get(&st, &format!("/share/{secret}/events?tail=2"), &[]).await).await;
        assert_eq!(events.lines().count(), 2);
    }

    #[test]
    fn accept_headers_are_read_by_preference() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_str(v).expect("header"));
            wants_html(&m)
        };
        assert!(h("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(!h("application/json"));
        assert!(!h("*/*"));
        assert!(!h("application/json, text/html;q=0.9"));
        assert!(h("application/json;q=0.5, text/html"));
        assert!(!h("text/html;q=0"));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn tail_gives_the_last_events() {
        let (st, token, id) = setup().await;
        let auth = format!("Bearer {token}");
        let seqs = |text: String| -> Vec<u64> {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["seq"].as_u64())
                .collect()
        };
        let q = |s: &str| format!("/api/v1/runs/{id}/events?{s}");
        let h = [("authorization", auth.as_str())];
        assert_eq!(
            seqs(body(get(&st, &q("tail=3"), &h).await).await),
            [8, 9, 10]
        );
        assert_eq!(
            seqs(body(get(&st, &q("tail=50"), &h).await).await),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(
            seqs(body(get(&st, &q("tail=3&after=8"), &h).await).await),
            [9, 10]
        );
        assert_eq!(
            seqs(body(get(&st, &q("tail=3&limit=2"), &h).await).await),
            [8, 9]
        );
        assert_eq!(
            seqs(body(get(&st, &q("after=2&limit=2"), &h).await).await),
            [3, 4]
        );
        assert_eq!(get(&st, &q("tail=3"), &[]).await.status(), 401);
    }

    #[tokio::test]
    async fn dropped_files_are_parsed_in_memory_for_token_holders() {
        let (st, token, _) = setup().await;
        let post = |body: &'static str, auth: Option<String>| {
            let mut req = Request::post("/api/v1/local/parse");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            app(st.clone()).oneshot(req.body(Body::from(body)).expect("request"))
        };
        let trace = concat!(
            r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"s1","tools":["Bash"],"model":"m"}"#,
            "\n",
            r#"{"type":"assistant","message":{"id":"m1","type":"message","role":"assistant","model":"m","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":1,"output_tokens":1}},"session_id":"s1"}"#,
            "\n"
        );
        let resp = post(trace, None).await.expect("response");
        assert_eq!(resp.status(), 401);
        let resp = post(trace, Some(format!("Bearer {token}")))
            .await
            .expect("response");
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = serde_json::from_str(&body(resp).await).expect("json");
        assert_eq!(v["format"], "claude_stream_json");
        let calls: Vec<&serde_json::Value> = v["trace"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["type"] == "tool_call")
            .collect();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["input"]["command"], "ls");
        assert_eq!(calls[0]["raw_line"], 2);
        let resp = post("hello\nworld\n", Some(format!("Bearer {token}")))
            .await
            .expect("response");
        let v: serde_json::Value = serde_json::from_str(&body(resp).await).expect("json");
        assert!(v["format"].is_null(), "{v}");
        assert!(v["problems"].as_array().is_some_and(|p| !p.is_empty()));
        // Nothing was stored: the store still holds the one run.
        let runs = st.store.list_runs(&Default::default()).await.expect("runs");
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn a_local_trace_pages_its_events_and_raw_lines() {
        let text = "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s\",\"model\":\"m\"}\nnot json\n";
        let t = LocalTrace::parse("f.jsonl", text.to_string());
        assert_eq!(t.lines, 2);
        assert_eq!(t.line(2), Some("not json"));
        assert_eq!(t.line(3), None);
        assert_eq!(t.line(0), None);
        assert_eq!(t.problems.len(), 1);
        let q = |after, limit, tail| EventsQuery {
            after,
            raw: None,
            limit,
            tail,
        };
        assert_eq!(window(&q(None, None, Some(300)), 1000), (700, 300));
        assert_eq!(window(&q(Some(900), None, Some(300)), 1000), (900, 300));
        assert_eq!(window(&q(None, Some(10), None), 1000), (0, 10));
        assert_eq!(window(&q(None, None, Some(5)), 3), (0, 5));
    }
}
