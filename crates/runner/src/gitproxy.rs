//! A git smart-HTTP proxy that holds a run's token outside the sandbox and
//! enforces its push rule there (issue 13).
//!
//! The agent's git talks to this proxy (`http://<magic host>/<owner>/<repo>.git`)
//! instead of the forge. The proxy serves only the run's own repository and
//! forwards the three smart-HTTP requests (`info/refs?service=…`,
//! `git-upload-pack`, `git-receive-pack`) to the real remote with the run's
//! `Authorization` header, read fresh for every request so renewals apply.
//!
//! A push (`git-receive-pack`) is spooled to a capped temporary file, its
//! ref-update commands (pkt-lines) are parsed, and the push is refused unless
//! every command:
//! - updates `refs/heads/<b>` for a branch `b` the run may push;
//! - is not a deletion (new id all zeros);
//! - names as its old id the remote's current value of the ref, as the remote
//!   advertises it at push time (zeros if the ref does not exist yet);
//! - is a fast-forward (unless the run allows force): the proxy fetches the
//!   ref's current commit from the remote into a host-side scratch repository,
//!   indexes the pushed pack there (`index-pack --fix-thin`, so thin packs
//!   resolve against the fetched objects) and asks `merge-base --is-ancestor old
//!   new`. `old == current` alone would not stop a force push, since git sends
//!   the current value as old for `--force` too; the ancestry check does.
//!
//! The remote re-checks `old` under its own lock when it applies the update, so
//! a ref moved by someone else between the check and the forward is refused
//! there, and the fast-forward proven here still holds for what is applied.
//!
//! A refusal is a receive-pack result with `ng <ref> <reason>` when the client
//! asked for `report-status` (git prints `! [remote rejected] … (reason)`), in
//! side-band if it asked for that; otherwise an HTTP 403 with the reason.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

/// The host name the sandbox's remote URL uses; the egress proxy hands requests
/// for it to the run's git proxy and never resolves it.
pub const MAGIC_HOST: &str = "git.errand.internal";

/// Largest pkt-line section of commands (plus push options) accepted before the pack.
pub const MAX_COMMANDS: usize = 64 * 1024;
/// Largest push body (commands and pack) spooled by default.
pub const DEFAULT_MAX_PUSH: u64 = 1 << 30;
const ZERO_SHA1: &str = "0000000000000000000000000000000000000000";

/// Errors of the proxy's set-up and of a push's parsing.
#[derive(Debug, thiserror::Error)]
pub enum GitProxyError {
    #[error("git proxy: {0}")]
    Io(#[from] std::io::Error),
    #[error("git proxy: http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("git proxy: bad upstream URL {0:?}")]
    Upstream(String),
}

/// Why a pkt-line section could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PktError {
    #[error("truncated pkt-line")]
    Truncated,
    #[error("bad pkt-line length {0:?}")]
    BadLength(String),
    #[error("pkt-line section larger than {MAX_COMMANDS} bytes")]
    TooLarge,
    #[error("malformed command line: {0}")]
    BadCommand(String),
    #[error("no ref-update commands")]
    Empty,
}

/// One pkt-line: data, or one of the special packets.
#[derive(Debug, PartialEq, Eq)]
pub enum Pkt<'a> {
    Data(&'a [u8]),
    /// `0000`
    Flush,
    /// `0001`
    Delim,
    /// `0002`
    ResponseEnd,
}

/// Reads one pkt-line at the start of `buf`: the packet and the bytes it took.
/// `Truncated` when `buf` ends before the packet does.
pub fn read_pkt(buf: &[u8]) -> Result<(Pkt<'_>, usize), PktError> {
    let head = buf.get(..4).ok_or(PktError::Truncated)?;
    let text = std::str::from_utf8(head)
        .map_err(|_| PktError::BadLength(String::from_utf8_lossy(head).into_owned()))?;
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PktError::BadLength(text.to_string()));
    }
    let len = usize::from_str_radix(text, 16).map_err(|_| PktError::BadLength(text.into()))?;
    match len {
        0 => return Ok((Pkt::Flush, 4)),
        1 => return Ok((Pkt::Delim, 4)),
        2 => return Ok((Pkt::ResponseEnd, 4)),
        3 => return Err(PktError::BadLength(text.to_string())),
        _ => {}
    }
    if len > 65520 {
        return Err(PktError::BadLength(text.to_string()));
    }
    let data = buf.get(4..len).ok_or(PktError::Truncated)?;
    Ok((Pkt::Data(data), len))
}

/// Writes `data` as one pkt-line.
pub fn pkt(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

/// One ref update of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub old: String,
    pub new: String,
    pub name: String,
}

impl Update {
    pub fn is_delete(&self) -> bool {
        is_zero(&self.new)
    }
}

fn is_zero(oid: &str) -> bool {
    oid.bytes().all(|b| b == b'0')
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The command section of a receive-pack request.
#[derive(Debug, PartialEq, Eq)]
pub struct Commands {
    pub updates: Vec<Update>,
    pub capabilities: Vec<String>,
    /// Bytes of the request before the pack (commands, push options, flushes).
    pub consumed: usize,
}

impl Commands {
    pub fn has(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }
}

/// Parses the commands at the start of a receive-pack body: optional `shallow`
/// lines, `<old> <new> <ref>\0<caps>`, more commands, a flush; then, with the
/// `push-options` capability, option lines and a flush. `buf` holds at most
/// [`MAX_COMMANDS`] bytes; a section that does not end within them is `TooLarge`
/// when `more` (the body goes on), else `Truncated`.
pub fn parse_commands(buf: &[u8], more: bool) -> Result<Commands, PktError> {
    let window = &buf[..buf.len().min(MAX_COMMANDS)];
    let cut = |e: PktError| match e {
        PktError::Truncated if more || buf.len() > MAX_COMMANDS => PktError::TooLarge,
        e => e,
    };
    let mut at = 0;
    let mut updates = Vec::new();
    let mut capabilities: Vec<String> = Vec::new();
    loop {
        let (p, n) = read_pkt(&window[at..]).map_err(cut)?;
        at += n;
        let data = match p {
            Pkt::Flush => break,
            Pkt::Delim | Pkt::ResponseEnd => {
                return Err(PktError::BadCommand("unexpected special packet".into()))
            }
            Pkt::Data(d) => d,
        };
        let line = data.strip_suffix(b"\n").unwrap_or(data);
        let (line, caps) = match line.iter().position(|&b| b == 0) {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        let text = std::str::from_utf8(line)
            .map_err(|_| PktError::BadCommand(String::from_utf8_lossy(line).into_owned()))?;
        if updates.is_empty() && caps.is_none() {
            if let Some(oid) = text.strip_prefix("shallow ") {
                if is_oid(oid) {
                    continue;
                }
            }
        }
        let mut parts = text.splitn(3, ' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(PktError::BadCommand(text.to_string()));
        };
        if !is_oid(old) || !is_oid(new) || name.is_empty() || name.contains(' ') {
            return Err(PktError::BadCommand(text.to_string()));
        }
        if let Some(caps) = caps {
            if !updates.is_empty() {
                return Err(PktError::BadCommand(
                    "capabilities after the first command".into(),
                ));
            }
            let caps = std::str::from_utf8(caps)
                .map_err(|_| PktError::BadCommand("capabilities are not UTF-8".into()))?;
            capabilities = caps
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
        }
        updates.push(Update {
            old: old.to_string(),
            new: new.to_string(),
            name: name.to_string(),
        });
    }
    if updates.is_empty() {
        return Err(PktError::Empty);
    }
    if capabilities.iter().any(|c| c == "push-options") {
        loop {
            let (p, n) = read_pkt(&window[at..]).map_err(cut)?;
            at += n;
            match p {
                Pkt::Flush => break,
                Pkt::Data(_) => {}
                Pkt::Delim | Pkt::ResponseEnd => {
                    return Err(PktError::BadCommand("unexpected special packet".into()))
                }
            }
        }
    }
    Ok(Commands {
        updates,
        capabilities,
        consumed: at,
    })
}

/// The refs of a receive-pack advertisement (`info/refs?service=git-receive-pack`).
pub fn parse_advertisement(body: &[u8]) -> Result<Vec<(String, String)>, PktError> {
    let mut at = 0;
    let mut refs = Vec::new();
    let mut flushes = 0;
    while at < body.len() {
        let (p, n) = read_pkt(&body[at..])?;
        at += n;
        match p {
            Pkt::Flush => {
                flushes += 1;
                if flushes == 2 {
                    break;
                }
            }
            Pkt::Data(d) => {
                let d = d.strip_suffix(b"\n").unwrap_or(d);
                let d = d.split(|&b| b == 0).next().unwrap_or(d);
                let text = String::from_utf8_lossy(d);
                if text.starts_with('#') || text.starts_with("version ") {
                    continue;
                }
                if let Some((oid, name)) = text.split_once(' ') {
                    if is_oid(oid) && name != "capabilities^{}" {
                        refs.push((name.to_string(), oid.to_string()));
                    }
                }
            }
            Pkt::Delim | Pkt::ResponseEnd => {}
        }
    }
    Ok(refs)
}

/// Where the run's repository lives and what its pushes may do.
pub struct Config {
    /// The repository as the sandbox names it: `/<owner>/<repo>.git`.
    pub owner: String,
    pub repo: String,
    /// The real remote, `https://…/owner/repo.git`.
    pub upstream: String,
    /// Branches the run may push (the run's branch and any extra ones), without `refs/heads/`.
    pub branches: Vec<String>,
    /// Allow non-fast-forward updates of those branches.
    pub allow_force: bool,
    /// The header that authenticates to the remote, as git's `http.extraHeader`
    /// (`Authorization: Basic …`, [`crate::forge::RepoAccess::git_auth`]'s form), read per request.
    pub auth: Arc<dyn Fn() -> String + Send + Sync>,
    /// Host-side directory for spooled pushes and the scratch repository.
    pub scratch: PathBuf,
    /// Largest push body accepted.
    pub max_push: u64,
}

struct Inner {
    cfg: Config,
    http: reqwest::Client,
    /// Serialises the scratch repository's use.
    scratch_lock: tokio::sync::Mutex<()>,
    /// What was refused, for the run's notices (capped).
    refused: std::sync::Mutex<Vec<String>>,
    forwarded: std::sync::atomic::AtomicU64,
}

/// The most refusals remembered.
const MAX_REFUSALS: usize = 100;

/// A run's git proxy; [`GitProxy::router`] serves it.
#[derive(Clone)]
pub struct GitProxy {
    inner: Arc<Inner>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }
}

/// A proxy being served on a socket; dropping it stops serving and removes the socket.
pub struct Serving {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("errand git proxy: {text}\n"),
    )
        .into_response()
}

impl GitProxy {
    pub fn new(cfg: Config) -> Result<GitProxy, GitProxyError> {
        let up = cfg.upstream.trim_end_matches('/');
        if !(up.starts_with("https://") || up.starts_with("http://")) || !up.ends_with(".git") {
            return Err(GitProxyError::Upstream(cfg.upstream.clone()));
        }
        std::fs::create_dir_all(&cfg.scratch)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(GitProxy {
            inner: Arc::new(Inner {
                cfg,
                http,
                scratch_lock: tokio::sync::Mutex::new(()),
                refused: std::sync::Mutex::new(Vec::new()),
                forwarded: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The remote URL the sandbox uses.
    pub fn sandbox_url(&self) -> String {
        let c = &self.inner.cfg;
        format!("http://{MAGIC_HOST}/{}/{}.git", c.owner, c.repo)
    }

    /// What the proxy refused so far: `<what>: <why>`.
    pub fn refused(&self) -> Vec<String> {
        self.inner
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many requests it forwarded to the remote.
    pub fn forwarded(&self) -> u64 {
        self.inner
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn note_refusal(&self, what: String) {
        let mut r = self
            .inner
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.len() < MAX_REFUSALS {
            r.push(what);
        }
    }

    /// Serves on a new Unix socket at `path` (mode 0600) until the returned
    /// handle is dropped. Must be called inside a tokio runtime.
    pub fn serve_unix(&self, path: &Path) -> Result<Serving, GitProxyError> {
        use std::os::unix::fs::PermissionsExt as _;
        let listener = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let router = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Serving {
            path: path.to_path_buf(),
            task,
        })
    }

    /// Routes every path; anything but the run's repository is 404.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .with_state(self.clone())
    }
}

async fn handle(
    State(p): State<GitProxy>,
    method: Method,
    uri: axum::http::Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let c = &p.inner.cfg;
    let prefix = format!("/{}/{}.git/", c.owner, c.repo);
    let Some(rest) = uri.path().strip_prefix(&prefix) else {
        let mut path: String = uri.path().chars().take(200).collect();
        path.retain(|c| !c.is_control());
        p.note_refusal(format!("{path}: not this run's repository"));
        return plain(
            StatusCode::NOT_FOUND,
            "repository not found (errand serves only this run's repository)",
        );
    };
    let query = query.unwrap_or_default();
    let requested = query.split('&').find_map(|kv| kv.strip_prefix("service="));
    let (service, refs) = match (&method, rest, requested) {
        (&Method::GET, "info/refs", Some("git-upload-pack")) => (Service::UploadPack, true),
        (&Method::GET, "info/refs", Some("git-receive-pack")) => (Service::ReceivePack, true),
        (&Method::POST, "git-upload-pack", _) => (Service::UploadPack, false),
        (&Method::POST, "git-receive-pack", _) => (Service::ReceivePack, false),
        _ => return plain(StatusCode::NOT_FOUND, "only git smart HTTP is served"),
    };
    p.inner
        .forwarded
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let result = if refs {
        p.forward_get(service, &headers).await
    } else if service == Service::UploadPack {
        p.forward_post(
            service,
            &headers,
            reqwest::Body::wrap_stream(body.into_data_stream()),
        )
        .await
    } else {
        p.receive_pack(&headers, body).await
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "git proxy: forwarding failed");
            plain(StatusCode::BAD_GATEWAY, "the remote could not be reached")
        }
    }
}

fn upstream_response(resp: reqwest::Response) -> Response {
    let mut out = Response::builder().status(resp.status().as_u16());
    for name in [
        header::CONTENT_TYPE,
        header::CACHE_CONTROL,
        header::CONTENT_ENCODING,
    ] {
        if let Some(v) = resp.headers().get(name.as_str()) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                out = out.header(name, v);
            }
        }
    }
    let stream = resp
        .bytes_stream()
        .map(|r| r.map_err(std::io::Error::other));
    out.body(Body::from_stream(stream))
        .unwrap_or_else(|_| plain(StatusCode::BAD_GATEWAY, "bad upstream response"))
}

/// Request headers passed to the remote (never the client's Authorization).
const PASSED: [&str; 4] = ["content-type", "content-encoding", "accept", "git-protocol"];

impl GitProxy {
    fn request(
        &self,
        method: reqwest::Method,
        url: String,
        headers: &HeaderMap,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .inner
            .http
            .request(method, url)
            .header("User-Agent", "git/errand-proxy");
        let auth = (self.inner.cfg.auth)();
        if let Some((name, value)) = auth.split_once(':') {
            req = req.header(name.trim(), value.trim());
        }
        for name in PASSED {
            if let Some(v) = headers.get(name) {
                req = req.header(name, v.as_bytes());
            }
        }
        req
    }

    fn upstream(&self) -> &str {
        self.inner.cfg.upstream.trim_end_matches('/')
    }

    async fn forward_get(
        &self,
        service: Service,
        headers: &HeaderMap,
    ) -> Result<Response, GitProxyError> {
        let url = format!("{}/info/refs?service={}", self.upstream(), service.name());
        let resp = self
            .request(reqwest::Method::GET, url, headers)
            .send()
            .await?;
        Ok(upstream_response(resp))
    }

    async fn forward_post(
        &self,
        service: Service,
        headers: &HeaderMap,
        body: reqwest::Body,
    ) -> Result<Response, GitProxyError> {
        let url = format!("{}/{}", self.upstream(), service.name());
        let resp = self
            .request(reqwest::Method::POST, url, headers)
            .body(body)
            .send()
            .await?;
        Ok(upstream_response(resp))
    }

    async fn receive_pack(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, GitProxyError> {
        if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
            if enc.as_bytes() != b"identity" {
                return Ok(plain(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "compressed pushes are not accepted",
                ));
            }
        }
        // Spool the body, capped.
        let spool = tempfile::NamedTempFile::new_in(&self.inner.cfg.scratch)?;
        let mut file = tokio::fs::File::from_std(spool.reopen()?);
        let mut size: u64 = 0;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = match chunk {
                Ok(c) => c,
                Err(e) => {
                    return Ok(plain(
                        StatusCode::BAD_REQUEST,
                        &format!("reading the push: {e}"),
                    ))
                }
            };
            size += chunk.len() as u64;
            if size > self.inner.cfg.max_push {
                return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "push too large"));
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.seek(std::io::SeekFrom::Start(0)).await?;
        let mut head = vec![0u8; (MAX_COMMANDS as u64).min(size) as usize];
        file.read_exact(&mut head).await?;
        let commands = match parse_commands(&head, size > head.len() as u64) {
            Ok(c) => c,
            Err(e) => {
                return Ok(plain(
                    StatusCode::BAD_REQUEST,
                    &format!("bad push request: {e}"),
                ))
            }
        };
        let refusals = self.check(&commands, spool.path()).await?;
        if !refusals.is_empty() {
            for (r, why) in &refusals {
                self.note_refusal(format!("push {r}: {why}"));
            }
            return Ok(refuse(&commands, &refusals));
        }
        file.seek(std::io::SeekFrom::Start(0)).await?;
        let stream = tokio_util::io::ReaderStream::new(file);
        let mut headers = headers.clone();
        headers.remove(header::CONTENT_LENGTH);
        let req = self
            .request(
                reqwest::Method::POST,
                format!("{}/git-receive-pack", self.upstream()),
                &headers,
            )
            .header(header::CONTENT_LENGTH.as_str(), size)
            .body(reqwest::Body::wrap_stream(stream));
        let resp = req.send().await?;
        drop(spool);
        Ok(upstream_response(resp))
    }

    /// The reason each refused update is refused, by ref name; empty when all pass.
    async fn check(
        &self,
        commands: &Commands,
        spool: &Path,
    ) -> Result<Vec<(String, String)>, GitProxyError> {
        let cfg = &self.inner.cfg;
        let mut refused = Vec::new();
        let allowed = |name: &str| {
            name.strip_prefix("refs/heads/")
                .is_some_and(|b| cfg.branches.iter().any(|x| x == b))
        };
        for u in &commands.updates {
            if !allowed(&u.name) {
                let only = cfg
                    .branches
                    .iter()
                    .map(|b| format!("refs/heads/{b}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                refused.push((
                    u.name.clone(),
                    format!("errand: this run may push only {only}"),
                ));
            } else if u.is_delete() {
                refused.push((
                    u.name.clone(),
                    "errand: deleting a branch is not allowed".into(),
                ));
            }
        }
        if !refused.is_empty() {
            return Ok(refused);
        }
        // The remote's current values.
        let resp = self
            .request(
                reqwest::Method::GET,
                format!("{}/info/refs?service=git-receive-pack", self.upstream()),
                &HeaderMap::new(),
            )
            .send()
            .await?;
        if !resp.status().is_success() {
            for u in &commands.updates {
                refused.push((
                    u.name.clone(),
                    format!("errand: the remote answered {}", resp.status()),
                ));
            }
            return Ok(refused);
        }
        let body = resp.bytes().await?;
        let current = match parse_advertisement(&body) {
            Ok(r) => r,
            Err(e) => {
                for u in &commands.updates {
                    refused.push((
                        u.name.clone(),
                        format!("errand: bad advertisement from the remote: {e}"),
                    ));
                }
                return Ok(refused);
            }
        };
        let mut need_ancestry = Vec::new();
        for u in &commands.updates {
            let now = current
                .iter()
                .find(|(n, _)| n == &u.name)
                .map(|(_, o)| o.as_str())
                .unwrap_or(ZERO_SHA1);
            if u.old != now {
                refused.push((
                    u.name.clone(),
                    "errand: stale old value (the branch moved; fetch first)".into(),
                ));
            } else if !is_zero(&u.old) && !cfg.allow_force {
                need_ancestry.push(u.clone());
            }
        }
        if !refused.is_empty() || need_ancestry.is_empty() {
            return Ok(refused);
        }
        let _guard = self.inner.scratch_lock.lock().await;
        let repo = cfg.scratch.join("repo.git");
        if !repo.join("HEAD").exists() {
            git(
                &cfg.scratch,
                &["init", "--quiet", "--bare", "repo.git"],
                None,
                None,
            )
            .await?;
        }
        for u in &need_ancestry {
            let ok = self
                .fast_forward(&repo, u, commands.consumed as u64, spool)
                .await?;
            if !ok {
                refused.push((
                    u.name.clone(),
                    "errand: non-fast-forward updates (force pushes) are not allowed".into(),
                ));
            }
        }
        Ok(refused)
    }

    /// Whether `u.new` descends from `u.old`, using the remote's objects for
    /// `u.name` and the pushed pack.
    async fn fast_forward(
        &self,
        repo: &Path,
        u: &Update,
        pack_at: u64,
        spool: &Path,
    ) -> Result<bool, GitProxyError> {
        let auth = (self.inner.cfg.auth)();
        let refspec = format!("+{}:refs/errand/current", u.name);
        let fetched = git(
            repo,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                self.upstream(),
                &refspec,
            ],
            Some(&auth),
            None,
        )
        .await?;
        if !fetched {
            return Ok(false);
        }
        let mut pack = std::fs::File::open(spool)?;
        std::io::Seek::seek(&mut pack, std::io::SeekFrom::Start(pack_at))?;
        let len = pack.metadata()?.len();
        if len > pack_at {
            let indexed = git(
                repo,
                &["index-pack", "--stdin", "--fix-thin", "--strict"],
                None,
                Some(pack),
            )
            .await?;
            if !indexed {
                return Ok(false);
            }
        }
        git(
            repo,
            &["merge-base", "--is-ancestor", &u.old, &u.new],
            None,
            None,
        )
        .await
        .map_err(Into::into)
    }
}

/// Runs git hermetically in `dir`; whether it succeeded.
async fn git(
    dir: &Path,
    args: &[&str],
    auth: Option<&str>,
    stdin: Option<std::fs::File>,
) -> std::io::Result<bool> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(a) = auth {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", a);
    }
    match stdin {
        Some(f) => cmd.stdin(Stdio::from(f)),
        None => cmd.stdin(Stdio::null()),
    };
    let out = cmd.output().await?;
    if !out.status.success() {
        tracing::debug!(?args, stderr = %String::from_utf8_lossy(&out.stderr), "git proxy: git failed");
    }
    Ok(out.status.success())
}

/// A receive-pack result refusing the push, or a 403 for a client that did
/// not ask for a report.
fn refuse(commands: &Commands, refused: &[(String, String)]) -> Response {
    if !commands.has("report-status") && !commands.has("report-status-v2") {
        let text = refused
            .iter()
            .map(|(r, why)| format!("{r}: {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        return plain(StatusCode::FORBIDDEN, &format!("push refused: {text}"));
    }
    let mut report = pkt(b"unpack ok\n");
    for u in &commands.updates {
        let why = refused
            .iter()
            .find(|(r, _)| r == &u.name)
            .map(|(_, w)| w.as_str())
            .unwrap_or("errand: refused with the rest of the push");
        report.extend(pkt(
            format!("ng {} {}\n", u.name, why.replace('\n', " ")).as_bytes()
        ));
    }
    report.extend_from_slice(b"0000");
    let body = if commands.has("side-band-64k") || commands.has("side-band") {
        let max = if commands.has("side-band-64k") {
            65515
        } else {
            995
        };
        let mut out = Vec::new();
        for (_, why) in refused {
            let mut msg = vec![2u8];
            msg.extend_from_slice(format!("{why}\n").as_bytes());
            out.extend(pkt(&msg));
        }
        for chunk in report.chunks(max) {
            let mut data = vec![1u8];
            data.extend_from_slice(chunk);
            out.extend(pkt(&data));
        }
        out.extend_from_slice(b"0000");
        out
    } else {
        report
    };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "application/x-git-receive-pack-result",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn cmd(old: &str, new: &str, name: &str, caps: Option<&str>) -> Vec<u8> {
        let mut line = format!("{old} {new} {name}").into_bytes();
        if let Some(c) = caps {
            line.push(0);
            line.extend_from_slice(c.as_bytes());
        }
        line.push(b'\n');
        pkt(&line)
    }

    #[test]
    fn parses_commands_and_capabilities() {
        let mut body = cmd(A, B, "refs/heads/run", Some("report-status side-band-64k"));
        body.extend(cmd(ZERO_SHA1, B, "refs/heads/main", None));
        body.extend_from_slice(b"0000PACK...");
        let c = parse_commands(&body, false).expect("parse");
        assert_eq!(c.updates.len(), 2);
        assert_eq!(c.updates[1].name, "refs/heads/main");
        assert!(c.has("report-status"));
        assert_eq!(&body[c.consumed..], b"PACK...");
        assert!(!c.updates[0].is_delete());
        let del = cmd(A, ZERO_SHA1, "refs/heads/run", Some(""));
        let mut body = del.clone();
        body.extend_from_slice(b"0000");
        assert!(parse_commands(&body, false).expect("parse").updates[0].is_delete());
    }

    #[test]
    fn push_options_and_shallow_are_skipped() {
        let mut body = pkt(format!("shallow {A}").as_bytes());
        body.extend(cmd(
            A,
            B,
            "refs/heads/run",
            Some("report-status push-options"),
        ));
        body.extend_from_slice(b"0000");
        body.extend(pkt(b"ci.skip"));
        body.extend_from_slice(b"0000PACK");
        let c = parse_commands(&body, false).expect("parse");
        assert_eq!(c.updates.len(), 1);
        assert_eq!(&body[c.consumed..], b"PACK");
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert_eq!(parse_commands(b"", false), Err(PktError::Truncated));
        assert_eq!(parse_commands(b"00", false), Err(PktError::Truncated));
        assert!(matches!(
            parse_commands(b"zzzz", false),
            Err(PktError::BadLength(_))
        ));
        assert!(matches!(
            parse_commands(b"0003", false),
            Err(PktError::BadLength(_))
        ));
        assert!(matches!(
            parse_commands(b"fff1abc", false),
            Err(PktError::BadLength(_))
        ));
        assert_eq!(parse_commands(b"0000", false), Err(PktError::Empty));
        assert!(matches!(
            parse_commands(b"0001", false),
            Err(PktError::BadCommand(_))
        ));
        // Truncated inside a line, or no flush.
        let line = cmd(A, B, "refs/heads/run", Some("report-status"));
        assert_eq!(parse_commands(&line[..20], false), Err(PktError::Truncated));
        assert_eq!(parse_commands(&line, false), Err(PktError::Truncated));
        // Bad ids, missing ref, a space in the ref, caps on a later line.
        for bad in [
            pkt(format!("{A} zz {B}").as_bytes()),
            pkt(format!("{A} {B}").as_bytes()),
            pkt(format!("{A} {B} refs/heads/a b").as_bytes()),
            pkt(format!("{} {B} refs/heads/x", &A[..39]).as_bytes()),
        ] {
            let mut body = bad;
            body.extend_from_slice(b"0000");
            assert!(
                matches!(parse_commands(&body, false), Err(PktError::BadCommand(_))),
                "{body:?}"
            );
        }
        let mut body = cmd(A, B, "refs/heads/a", Some("x"));
        body.extend(cmd(A, B, "refs/heads/b", Some("y")));
        body.extend_from_slice(b"0000");
        assert!(matches!(
            parse_commands(&body, false),
            Err(PktError::BadCommand(_))
        ));
        let mut body = pkt(&[0xff, 0xfe, b' ']);
        body.extend_from_slice(b"0000");
        assert!(matches!(
            parse_commands(&body, false),
            Err(PktError::BadCommand(_))
        ));
    }

    #[test]
    fn huge_sections_are_refused() {
        let mut body = Vec::new();
        for i in 0..2000 {
            body.extend(cmd(
                A,
                B,
                &format!("refs/heads/branch-{i:05}"),
                if i == 0 { Some("") } else { None },
            ));
        }
        assert!(body.len() > MAX_COMMANDS);
        assert_eq!(parse_commands(&body, true), Err(PktError::TooLarge));
        assert_eq!(parse_commands(&body, false), Err(PktError::TooLarge));
        // A section that fits but whose body goes on without a flush.
        let line = cmd(A, B, "refs/heads/run", Some(""));
        assert_eq!(parse_commands(&line, true), Err(PktError::TooLarge));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        for n in 0..5000usize {
            let len = n % 300;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.push(if seed.is_multiple_of(3) {
                    b'0' + (seed % 10) as u8
                } else {
                    seed as u8
                });
            }
            let _ = parse_commands(&buf, n % 2 == 0);
            let _ = parse_advertisement(&buf);
        }
    }

    #[test]
    fn advertisement_refs() {
        let mut body = pkt(b"# service=git-receive-pack\n");
        body.extend_from_slice(b"0000");
        body.extend(pkt(format!(
            "{A} refs/heads/main\0report-status delete-refs\n"
        )
        .as_bytes()));
        body.extend(pkt(format!("{B} refs/heads/run\n").as_bytes()));
        body.extend_from_slice(b"0000");
        let refs = parse_advertisement(&body).expect("parse");
        assert_eq!(
            refs,
            vec![
                ("refs/heads/main".into(), A.into()),
                ("refs/heads/run".into(), B.into())
            ]
        );
        let mut empty = pkt(b"# service=git-receive-pack\n");
        empty.extend_from_slice(b"0000");
        empty.extend(pkt(format!(
            "{ZERO_SHA1} capabilities^{{}}\0report-status\n"
        )
        .as_bytes()));
        empty.extend_from_slice(b"0000");
        assert_eq!(parse_advertisement(&empty).expect("parse"), vec![]);
    }
}
