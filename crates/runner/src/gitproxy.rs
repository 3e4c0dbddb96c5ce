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

use errand_git::pktline::{is_zero, ZERO_SHA1};
pub use errand_git::pktline::{
    parse_advertisement, parse_commands, pkt, read_pkt, Commands, Pkt, PktError, Update,
    MAX_COMMANDS,
};

/// The host name the sandbox's remote URL uses; the egress proxy hands requests
/// for it to the run's git proxy and never resolves it.
pub const MAGIC_HOST: &str = "git.errand.internal";

/// Largest push body (commands and pack) spooled by default.
pub const DEFAULT_MAX_PUSH: u64 = 1 << 30;

/// Errors of the proxy's set-up and of a push's parsing.
#[derive(Debug, thiserror::Error)]
pub enum GitProxyError {
    /// Its scratch directory or socket.
    #[error("git proxy: {0}")]
    Io(#[from] std::io::Error),
    /// Its client to the remote could not be built.
    #[error("git proxy: http client: {0}")]
    Http(#[from] reqwest::Error),
    /// The remote is not an `http(s)://…/….git` URL.
    #[error("git proxy: bad upstream URL {0:?}")]
    Upstream(String),
}

/// Where the run's repository lives and what its pushes may do.
pub struct Config {
    /// The repository as the sandbox names it: `/<owner>/<repo>.git`.
    pub owner: String,
    /// See [`Config::owner`].
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
    /// The socket it serves on.
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
    /// A proxy for `cfg`'s repository (not yet served); fails on a remote
    /// that is not an `http(s)://…/….git` URL.
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
        format!("http://{MAGIC_HOST}{}", self.repo_path())
    }

    /// The path of the run's repository: `/<owner>/<repo>.git`.
    pub fn repo_path(&self) -> String {
        let c = &self.inner.cfg;
        format!("/{}/{}.git", c.owner, c.repo)
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
            let _ = axum::serve(listener, router.into_make_service()).await;
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
    let mut cmd = errand_proc::Cmd::new("git");
    cmd.current_dir(dir)
        .args(args)
        .inherit_env(errand_git::HOST_ENV)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(a) = auth {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", a);
    }
    match stdin {
        Some(f) => cmd.stdin(Stdio::from(f)),
        None => cmd.stdin(Stdio::null()),
    };
    let out = cmd.tokio().output().await?;
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

/// One TCP listener per errand process serving the git proxies of every run
/// whose sandbox reaches errand over the network (the kubernetes backend's
/// pods, which have no egress proxy to hand requests to a Unix socket).
///
/// A run is reached as `/<capability>/<owner>/<repo>.git/…`: the capability
/// is 32 random bytes in hex, registered for the run's life
/// ([`Hub::register`]) and removed when the [`Registration`] drops. The hub
/// strips it and hands the rest to that run's [`GitProxy`], whose own checks
/// (only its repository, only its branches, no deletion, no force) apply
/// unchanged. An unknown or removed capability is a bare 404.
///
/// The capability is a per-run secret: it grants only what the run's proxy
/// allows, the forge token never leaves errand, and it dies with the run.
/// Never log it.
pub struct Hub {
    listen: String,
    runs: Arc<HubRuns>,
    bound: tokio::sync::OnceCell<std::net::SocketAddr>,
}

#[derive(Default)]
struct HubRuns {
    by_capability: std::sync::Mutex<std::collections::HashMap<String, GitProxy>>,
}

impl HubRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, GitProxy>> {
        self.by_capability
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A run's place in the [`Hub`]; dropping it removes the capability.
pub struct Registration {
    capability: String,
    runs: Arc<HubRuns>,
}

impl Registration {
    /// The run's capability (secret: never log it).
    pub fn capability(&self) -> &str {
        &self.capability
    }

    /// `<base>/<capability>/<owner>/<repo>.git`, the URL the sandbox uses.
    pub fn url(&self, base: &str, proxy: &GitProxy) -> String {
        format!(
            "{}/{}{}",
            base.trim_end_matches('/'),
            self.capability,
            proxy.repo_path()
        )
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registration { capability: <secret> }")
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.runs.lock().remove(&self.capability);
    }
}

/// A new capability: 32 random bytes from the OS, in hex.
fn new_capability() -> String {
    use chacha20poly1305::aead::rand_core::RngCore as _;
    let mut bytes = [0u8; 32];
    chacha20poly1305::aead::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Hub {
    /// A hub that will listen on `listen` (`host:port`) once a run registers.
    pub fn new(listen: impl Into<String>) -> Hub {
        Hub {
            listen: listen.into(),
            runs: Arc::default(),
            bound: tokio::sync::OnceCell::new(),
        }
    }

    /// This process's hub for `listen`: the same one for every caller, so the
    /// address is bound once however many runners there are.
    pub fn shared(listen: &str) -> Arc<Hub> {
        static HUBS: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<String, Arc<Hub>>>,
        > = std::sync::OnceLock::new();
        let mut hubs = HUBS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hubs.entry(listen.to_string())
            .or_insert_with(|| Arc::new(Hub::new(listen)))
            .clone()
    }

    /// The address it listens on, once bound.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.bound.get().copied()
    }

    /// Binds the listener if it is not yet (a failed bind is retried by the
    /// next call) and serves it for the rest of the process (the current tokio
    /// runtime's life). Must be called inside a tokio runtime.
    pub async fn start(&self) -> Result<std::net::SocketAddr, GitProxyError> {
        let addr = self
            .bound
            .get_or_try_init(|| async {
                let listener = tokio::net::TcpListener::bind(&self.listen)
                    .await
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot listen on {}: {e}", self.listen),
                        )
                    })?;
                let addr = listener.local_addr()?;
                let router = self.router();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router.into_make_service()).await;
                });
                Ok::<_, GitProxyError>(addr)
            })
            .await?;
        Ok(*addr)
    }

    /// Registers `proxy` under a new capability (starting the listener if
    /// needed) until the returned guard drops.
    pub async fn register(&self, proxy: GitProxy) -> Result<Registration, GitProxyError> {
        self.start().await?;
        Ok(self.insert(proxy))
    }

    fn insert(&self, proxy: GitProxy) -> Registration {
        let mut runs = self.runs.lock();
        let capability = loop {
            let c = new_capability();
            if !runs.contains_key(&c) {
                break c;
            }
        };
        runs.insert(capability.clone(), proxy);
        Registration {
            capability,
            runs: self.runs.clone(),
        }
    }

    /// How many runs are registered.
    pub fn registered(&self) -> usize {
        self.runs.lock().len()
    }

    /// The hub's routes: `/<capability>/…` to that run's proxy, anything else 404.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(hub_handle)
            .with_state(self.runs.clone())
    }
}

async fn hub_handle(
    State(runs): State<Arc<HubRuns>>,
    method: Method,
    uri: axum::http::Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let not_found = || plain(StatusCode::NOT_FOUND, "not found");
    let Some((capability, rest)) = uri.path().strip_prefix('/').and_then(|p| p.split_once('/'))
    else {
        return not_found();
    };
    if capability.len() != 64 || !capability.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found();
    }
    let Some(proxy) = runs.lock().get(capability).cloned() else {
        return not_found();
    };
    // The run's proxy sees the request as if served on its own.
    let path = format!("/{rest}");
    let rewritten = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let Ok(uri) = rewritten.parse::<axum::http::Uri>() else {
        return not_found();
    };
    handle(State(proxy), method, uri, RawQuery(query), headers, body).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn proxy(scratch: &Path, repo: &str) -> GitProxy {
        GitProxy::new(Config {
            owner: "acme".into(),
            repo: repo.into(),
            // Never reached: these requests stop at the proxy's own checks.
            upstream: format!("http://127.0.0.1:9/acme/{repo}.git"),
            branches: vec!["errand/run-1".into()],
            allow_force: false,
            auth: Arc::new(|| "Authorization: Basic eDp5".to_string()),
            scratch: scratch.join(repo),
            max_push: DEFAULT_MAX_PUSH,
        })
        .unwrap()
    }

    async fn get(url: &str) -> (u16, String) {
        let resp = reqwest::get(url).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    const HUB_404: &str = "errand git proxy: not found\n";
    const NOT_SMART: &str = "only git smart HTTP is served";
    const OTHER_REPO: &str = "repository not found";

    #[test]
    fn capabilities_are_32_random_bytes_in_hex() {
        let a = new_capability();
        let b = new_capability();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn the_hub_routes_each_capability_to_its_runs_proxy_only() {
        let scratch = tempfile::tempdir().unwrap();
        let hub = Hub::new("127.0.0.1:0");
        assert_eq!(hub.local_addr(), None, "bound lazily");
        let widgets = proxy(scratch.path(), "widgets");
        let gadgets = proxy(scratch.path(), "gadgets");
        let w = hub.register(widgets.clone()).await.unwrap();
        let g = hub.register(gadgets.clone()).await.unwrap();
        let addr = hub.local_addr().unwrap();
        assert_eq!(hub.start().await.unwrap(), addr, "bound once");
        assert_eq!(hub.registered(), 2);
        assert_ne!(w.capability(), g.capability());
        assert!(!format!("{w:?}").contains(w.capability()));
        let base = format!("http://{addr}");
        assert_eq!(
            w.url(&format!("{base}/"), &widgets),
            format!("{base}/{}/acme/widgets.git", w.capability())
        );

        // Each capability reaches its own run's proxy, which still serves only its repository.
        let (s, t) = get(&format!("{base}/{}/acme/widgets.git/x", w.capability())).await;
        assert_eq!(s, 404);
        assert!(t.contains(NOT_SMART), "{t}");
        let (s, t) = get(&format!("{base}/{}/acme/gadgets.git/x", w.capability())).await;
        assert_eq!(s, 404);
        assert!(t.contains(OTHER_REPO), "{t}");
        let (s, t) = get(&format!("{base}/{}/acme/gadgets.git/x", g.capability())).await;
        assert_eq!(s, 404);
        assert!(t.contains(NOT_SMART), "{t}");
        let (s, t) = get(&format!("{base}/{}/acme/widgets.git/x", g.capability())).await;
        assert_eq!(s, 404);
        assert!(t.contains(OTHER_REPO), "{t}");
        // The proxy noted the path without the capability.
        let refused = widgets.refused();
        assert_eq!(
            refused,
            vec!["/acme/gadgets.git/x: not this run's repository"]
        );

        // Wrong, malformed or missing capabilities are a bare 404.
        let wrong = "0".repeat(64);
        let upper = w.capability().to_ascii_uppercase();
        for path in [
            format!("/{wrong}/acme/widgets.git/info/refs?service=git-upload-pack"),
            format!("/{upper}/acme/widgets.git/info/refs?service=git-upload-pack"),
            format!("/{}/acme/widgets.git/x", &w.capability()[..63]),
            "/acme/widgets.git/info/refs?service=git-upload-pack".to_string(),
            format!("/{}", w.capability()),
            "/".to_string(),
        ] {
            assert_eq!(
                get(&format!("{base}{path}")).await,
                (404, HUB_404.into()),
                "{path}"
            );
        }

        // Once a run's registration drops, its capability is unknown; the other run is still served.
        let gone = w.capability().to_string();
        drop(w);
        assert_eq!(hub.registered(), 1);
        assert_eq!(
            get(&format!("{base}/{gone}/acme/widgets.git/x")).await,
            (404, HUB_404.into())
        );
        let (_, t) = get(&format!("{base}/{}/acme/gadgets.git/x", g.capability())).await;
        assert!(t.contains(NOT_SMART), "{t}");
        drop(g);
        assert_eq!(hub.registered(), 0);
    }

    #[tokio::test]
    async fn a_failed_bind_is_an_error_and_shared_hubs_are_one_per_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hub = Hub::new(taken.local_addr().unwrap().to_string());
        let scratch = tempfile::tempdir().unwrap();
        let err = hub
            .register(proxy(scratch.path(), "widgets"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot listen on"), "{err}");
        assert_eq!(hub.registered(), 0);
        let a = Hub::shared("127.0.0.1:1");
        let b = Hub::shared("127.0.0.1:1");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &Hub::shared("127.0.0.1:2")));
    }
}
