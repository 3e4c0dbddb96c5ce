//! A strict fake of Modal's API, for tests only (feature `fake`): it serves
//! the RPCs errand's Modal backend uses, from the same protos, and checks
//! what `shared/docs/modal.md`'s checklist names. Each broken rule is
//! answered with an error *and* recorded in [`Fake::violations`], which a
//! test asserts empty.
//!
//! A "sandbox" is a directory; each exec is a local process in bubblewrap
//! (as uid 10001, the agent image's user) with that directory's `workspace`,
//! `home/agent`, `tmp` and `opt` bound at `/workspace`, `/home/agent`, `/tmp`
//! and `/opt`, and the host's `/usr`, `/etc` read-only. BLOCKED networks get
//! `--unshare-net`; ALLOWLIST cannot be enforced by CIDR here and runs on the
//! host's network (recorded in [`Fake::unenforced`]).
//!
//! Injected trouble, each once: `Unavailable` on the first `AppGetOrCreate`,
//! `ResourceExhausted` with an `RPCRetryPolicy` on the first
//! `SandboxCreate`, `Unauthenticated` on the first router call, an image
//! build stream that ends without a result, and every exec's stdout stream
//! broken by `Unavailable` after its first message. Auth tokens live
//! [`FakeOptions::token_life`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::proto::client as pb;
use crate::proto::client::modal_client_server::{ModalClient, ModalClientServer};
use crate::proto::task_command_router as tcr;
use crate::proto::task_command_router::task_command_router_server::{
    TaskCommandRouter, TaskCommandRouterServer,
};

/// The builder version the fake's environment reports.
pub const BUILDER_VERSION: &str = "2025.06";

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// How long an auth token lives (its `exp`).
    pub token_life: Duration,
    /// Registry tags that exist (others fail to build).
    pub registry: Vec<String>,
    /// The token id and secret it accepts.
    pub token: (String, String),
    /// Whether to inject the trouble the module lists.
    pub inject: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            token_life: Duration::from_secs(3),
            registry: vec!["errand-agent:test".into()],
            token: ("ak-fake".into(), "as-fake".into()),
            inject: true,
        }
    }
}

#[derive(Default)]
struct Output {
    data: Vec<u8>,
    done: bool,
}

/// How an exec ended: (code, signal), once it has.
type ExitSlot = Arc<Mutex<Option<(Option<i32>, Option<i32>)>>>;

struct Exec {
    out: [Arc<Mutex<Output>>; 2],
    notify: Arc<Notify>,
    stdin: Option<tokio::process::ChildStdin>,
    stdin_offset: u64,
    stdin_closed: bool,
    exit: ExitSlot,
    exited: Arc<Notify>,
    broke_once: bool,
    pid: Option<u32>,
}

struct Sbx {
    app_id: String,
    task_id: String,
    root: PathBuf,
    created_at: f64,
    tags: Vec<(String, String)>,
    polls: u32,
    result: Option<pb::GenericResult>,
    deadline: Instant,
    /// The `timeout_secs` it was created with.
    timeout_secs: u32,
    blocked: bool,
    finished: Arc<Notify>,
}

#[derive(Default)]
struct State {
    apps: BTreeMap<String, String>,
    images: HashMap<String, (String, bool)>,
    secrets: HashMap<String, HashMap<String, String>>,
    sandboxes: BTreeMap<String, Sbx>,
    execs: HashMap<(String, String), Exec>,
    tokens: HashMap<String, u64>,
    router_jwts: HashMap<String, String>,
    idempotent: HashMap<String, String>,
    violations: Vec<String>,
    unenforced: Vec<String>,
    calls: Vec<String>,
    injected: HashSet<&'static str>,
    counter: u64,
    token_fetches: u32,
}

/// A running fake (see the module); stops when dropped.
pub struct Fake {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    _server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

struct Inner {
    opts: FakeOptions,
    state: Mutex<State>,
    dir: PathBuf,
    addr: SocketAddr,
    bwrap: PathBuf,
}

#[derive(Clone)]
struct Svc(Arc<Inner>);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn jwt(claims: serde_json::Value) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        e.encode(r#"{"alg":"none"}"#),
        e.encode(claims.to_string()),
        e.encode("fake")
    )
}

impl Fake {
    /// Starts a fake on a free loopback port; `bwrap` runs its sandboxes.
    pub async fn start(opts: FakeOptions, bwrap: PathBuf) -> std::io::Result<Fake> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let dir = tempfile::tempdir()?;
        let inner = Arc::new(Inner {
            opts,
            state: Mutex::new(State::default()),
            dir: dir.path().to_path_buf(),
            addr,
            bwrap,
        });
        let svc = Svc(inner.clone());
        let server = tokio::spawn(async move {
            // Nagle off, as a server's sockets should be: with it on, each
            // small answer waited for the client's delayed ACK (about 40 ms
            // a call), and a 256 KiB stdin write cost that much again.
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |s| {
                    if let Ok(s) = &s {
                        let _ = s.set_nodelay(true);
                    }
                    s
                },
            );
            let _ = tonic::transport::Server::builder()
                .add_service(
                    ModalClientServer::new(svc.clone()).max_decoding_message_size(100 << 20),
                )
                .add_service(TaskCommandRouterServer::new(svc).max_decoding_message_size(100 << 20))
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Fake {
            addr,
            inner,
            _server: server,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:port`, for `MODAL_SERVER_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token it accepts.
    pub fn token(&self) -> (String, String) {
        self.inner.opts.token.clone()
    }

    /// The rules the client broke.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().violations.clone()
    }

    /// What the fake could not enforce.
    pub fn unenforced(&self) -> Vec<String> {
        self.inner.lock().unenforced.clone()
    }

    /// The RPCs called, in order.
    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().calls.clone()
    }

    /// How many auth tokens were issued.
    pub fn token_fetches(&self) -> u32 {
        self.inner.lock().token_fetches
    }

    /// Which injected faults happened.
    pub fn injected(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.inner.lock().injected.iter().copied().collect();
        v.sort();
        v
    }

    /// The ids of sandboxes not finished, with their tags.
    pub fn running(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.inner
            .lock()
            .sandboxes
            .iter()
            .filter(|(_, s)| s.result.is_none())
            .map(|(id, s)| (id.clone(), s.tags.clone()))
            .collect()
    }

    /// Each sandbox's definition fields the tests look at: (id, blocked network).
    pub fn networks(&self) -> Vec<(String, bool)> {
        self.inner
            .lock()
            .sandboxes
            .iter()
            .map(|(id, s)| (id.clone(), s.blocked))
            .collect()
    }

    /// Each sandbox's lifetime as created: (id, `timeout_secs`).
    pub fn lifetimes(&self) -> Vec<(String, u32)> {
        self.inner
            .lock()
            .sandboxes
            .iter()
            .map(|(id, s)| (id.clone(), s.timeout_secs))
            .collect()
    }

    /// Creates a sandbox directly (an orphan a killed errand left), tagged.
    pub fn plant(&self, app: &str, tags: &[(&str, &str)]) -> String {
        let mut st = self.inner.lock();
        let app_id = st
            .apps
            .entry(app.to_string())
            .or_insert_with(|| "ap-planted".into())
            .clone();
        let id = format!("sb-planted{:016}", st.sandboxes.len());
        st.sandboxes.insert(
            id.clone(),
            Sbx {
                app_id,
                task_id: format!("ta-{id}"),
                root: self.inner.dir.join(&id),
                created_at: now() - 100.0,
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                polls: 2,
                result: None,
                deadline: Instant::now() + Duration::from_secs(3600),
                timeout_secs: 3600,
                blocked: true,
                finished: Arc::new(Notify::new()),
            },
        );
        id
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn violate(&mut self, what: String) -> Status {
        self.violations.push(what.clone());
        Status::invalid_argument(format!("fake Modal: {what}"))
    }

    fn id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        // `sb-` plus 22 base62 characters, as Modal's V1 ids.
        format!("{prefix}-{:022}", self.counter)
    }

    fn once(&mut self, what: &'static str, inject: bool) -> bool {
        inject && self.injected.insert(what)
    }
}

impl Svc {
    /// The checks of every ModalClient call: headers, and for unary calls
    /// (`unary`) other than AuthTokenGet a live token of the fake's.
    fn check<T>(&self, rpc: &str, r: &Request<T>, unary: bool) -> Result<(), Status> {
        let md = r.metadata();
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut st = self.0.lock();
        st.calls.push(rpc.to_string());
        for h in [
            "x-modal-client-type",
            "x-modal-client-version",
            "x-modal-libmodal-version",
            "x-modal-token-id",
            "x-modal-token-secret",
        ] {
            if get(h).is_none() {
                return Err(st.violate(format!("{rpc} without the header {h}")));
            }
        }
        if get("x-modal-client-type").as_deref() != Some("9")
            || get("x-modal-client-version").as_deref() != Some("1.0.0")
        {
            return Err(st.violate(format!(
                "{rpc} with client type/version {:?}/{:?}",
                get("x-modal-client-type"),
                get("x-modal-client-version")
            )));
        }
        if (get("x-modal-token-id"), get("x-modal-token-secret"))
            != (
                Some(self.0.opts.token.0.clone()),
                Some(self.0.opts.token.1.clone()),
            )
        {
            return Err(Status::unauthenticated("invalid token id or secret"));
        }
        if unary {
            for h in [
                "x-idempotency-key",
                "x-retry-attempt",
                "x-throttle-retry-attempt",
            ] {
                if get(h).is_none() {
                    return Err(st.violate(format!("{rpc} without the header {h}")));
                }
            }
            if get("x-idempotency-key")
                .and_then(|k| uuid::Uuid::parse_str(&k).ok())
                .is_none()
            {
                return Err(st.violate(format!("{rpc} with an idempotency key that is not a UUID")));
            }
        }
        if rpc == "AuthTokenGet" {
            return Ok(());
        }
        match get("x-modal-auth-token") {
            None if unary => Err(st.violate(format!("{rpc} without x-modal-auth-token"))),
            None => Ok(()),
            Some(t) => match st.tokens.get(&t) {
                None => Err(st.violate(format!("{rpc} with an auth token the fake never issued"))),
                Some(exp) if (*exp as f64) < now() => {
                    Err(st.violate(format!("{rpc} with an expired auth token (not refreshed)")))
                }
                Some(_) => Ok(()),
            },
        }
    }

    /// A repeated idempotency key on a retry gets the first attempt's object.
    fn replay<T>(&self, r: &Request<T>) -> Option<String> {
        let key = r.metadata().get("x-idempotency-key")?.to_str().ok()?;
        self.0.lock().idempotent.get(key).cloned()
    }

    fn remember<T>(&self, r: &Request<T>, id: &str) {
        if let Some(k) = r
            .metadata()
            .get("x-idempotency-key")
            .and_then(|v| v.to_str().ok())
        {
            self.0
                .lock()
                .idempotent
                .insert(k.to_string(), id.to_string());
        }
    }

    /// The router's checks: a live JWT issued for this task.
    fn router_check<T>(&self, rpc: &str, r: &Request<T>, task_id: &str) -> Result<(), Status> {
        let auth = r
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut st = self.0.lock();
        st.calls.push(rpc.to_string());
        if r.metadata().get("x-modal-token-secret").is_some() {
            return Err(st.violate(format!(
                "{rpc} sent the Modal token secret to the command router"
            )));
        }
        let Some(jwt) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) else {
            return Err(st.violate(format!("{rpc} without a Bearer JWT")));
        };
        if st.router_jwts.get(jwt).map(String::as_str) != Some(task_id) {
            return Err(st.violate(format!("{rpc} with a JWT not issued for task {task_id}")));
        }
        if st.once("router-unauthenticated", self.0.opts.inject) {
            return Err(Status::unauthenticated("fake: token rejected once"));
        }
        if !st.sandboxes.values().any(|s| s.task_id == task_id) {
            return Err(Status::not_found(format!("no task {task_id}")));
        }
        Ok(())
    }

    fn sandbox_of_task(&self, task_id: &str) -> Option<String> {
        let st = self.0.lock();
        st.sandboxes
            .iter()
            .find(|(_, s)| s.task_id == task_id)
            .map(|(id, _)| id.clone())
    }

    /// Ends sandbox `id` with `status` (killing its processes).
    fn finish(&self, id: &str, status: pb::generic_result::GenericStatus) {
        let mut st = self.0.lock();
        let Some(sb) = st.sandboxes.get_mut(id) else {
            return;
        };
        if sb.result.is_some() {
            return;
        }
        sb.result = Some(pb::GenericResult {
            status: status as i32,
            ..Default::default()
        });
        sb.finished.notify_waiters();
        let task = sb.task_id.clone();
        for ((t, _), e) in st.execs.iter_mut() {
            if *t == task {
                if let Some(pid) = e.pid {
                    // SAFETY: signalling a process of ours (bwrap, which takes its children along).
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
    }

    fn live(&self, id: &str) -> Result<(), Status> {
        let expired = {
            let st = self.0.lock();
            let Some(sb) = st.sandboxes.get(id) else {
                return Err(Status::not_found(format!("no sandbox {id}")));
            };
            if sb.result.is_some() {
                return Err(Status::failed_precondition(format!(
                    "sandbox {id} has finished"
                )));
            }
            Instant::now() > sb.deadline
        };
        if expired {
            self.finish(id, pb::generic_result::GenericStatus::Timeout);
            return Err(Status::failed_precondition(format!(
                "sandbox {id} timed out"
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl ModalClient for Svc {
    async fn auth_token_get(
        &self,
        r: Request<pb::AuthTokenGetRequest>,
    ) -> Result<Response<pb::AuthTokenGetResponse>, Status> {
        self.check("AuthTokenGet", &r, true)?;
        let exp = (now() + self.0.opts.token_life.as_secs_f64()).ceil() as u64;
        let mut st = self.0.lock();
        st.token_fetches += 1;
        let token = jwt(serde_json::json!({"exp": exp, "n": st.token_fetches}));
        st.tokens.insert(token.clone(), exp);
        Ok(Response::new(pb::AuthTokenGetResponse { token }))
    }

    async fn app_get_or_create(
        &self,
        r: Request<pb::AppGetOrCreateRequest>,
    ) -> Result<Response<pb::AppGetOrCreateResponse>, Status> {
        self.check("AppGetOrCreate", &r, true)?;
        let mut st = self.0.lock();
        if st.once("app-unavailable", self.0.opts.inject) {
            return Err(Status::unavailable("fake: try again"));
        }
        let q = r.into_inner();
        if q.app_name.is_empty() {
            return Err(st.violate("AppGetOrCreate without a name".into()));
        }
        if let Some(id) = st.apps.get(&q.app_name) {
            return Ok(Response::new(pb::AppGetOrCreateResponse {
                app_id: id.clone(),
            }));
        }
        if q.object_creation_type != pb::ObjectCreationType::CreateIfMissing as i32 {
            return Err(Status::not_found(format!("app {} not found", q.app_name)));
        }
        let id = st.id("ap");
        st.apps.insert(q.app_name, id.clone());
        Ok(Response::new(pb::AppGetOrCreateResponse { app_id: id }))
    }

    async fn environment_get_or_create(
        &self,
        r: Request<pb::EnvironmentGetOrCreateRequest>,
    ) -> Result<Response<pb::EnvironmentGetOrCreateResponse>, Status> {
        self.check("EnvironmentGetOrCreate", &r, true)?;
        Ok(Response::new(pb::EnvironmentGetOrCreateResponse {
            environment_id: "en-main".into(),
            metadata: Some(pb::EnvironmentMetadata {
                settings: Some(pb::EnvironmentSettings {
                    image_builder_version: BUILDER_VERSION.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }))
    }

    async fn image_get_or_create(
        &self,
        r: Request<pb::ImageGetOrCreateRequest>,
    ) -> Result<Response<pb::ImageGetOrCreateResponse>, Status> {
        self.check("ImageGetOrCreate", &r, true)?;
        let q = r.into_inner();
        let mut st = self.0.lock();
        if !st.apps.values().any(|a| *a == q.app_id) {
            return Err(st.violate(format!(
                "ImageGetOrCreate for an app that does not exist ({})",
                q.app_id
            )));
        }
        if q.builder_version != BUILDER_VERSION {
            return Err(st.violate(format!(
                "ImageGetOrCreate with builder version {:?}",
                q.builder_version
            )));
        }
        let cmds = q.image.map(|i| i.dockerfile_commands).unwrap_or_default();
        let Some(from) = cmds.first().and_then(|c| c.strip_prefix("FROM ")) else {
            return Err(Status::invalid_argument(
                "an image needs dockerfile commands starting with FROM",
            ));
        };
        let ok = self.0.opts.registry.iter().any(|t| t == from.trim());
        let id = st.id("im");
        st.images.insert(id.clone(), (from.to_string(), ok));
        Ok(Response::new(pb::ImageGetOrCreateResponse {
            image_id: id,
            result: None,
            metadata: None,
        }))
    }

    async fn image_join_streaming(
        &self,
        r: Request<pb::ImageJoinStreamingRequest>,
    ) -> Result<Response<BoxStream<pb::ImageJoinStreamingResponse>>, Status> {
        self.check("ImageJoinStreaming", &r, false)?;
        let q = r.into_inner();
        let mut st = self.0.lock();
        let Some((tag, ok)) = st.images.get(&q.image_id).cloned() else {
            return Err(Status::not_found(format!("no image {}", q.image_id)));
        };
        if q.timeout <= 0.0 {
            return Err(st.violate("ImageJoinStreaming without a timeout".into()));
        }
        let (tx, rx) = mpsc::channel(4);
        let log = |n: u32, data: String| pb::ImageJoinStreamingResponse {
            entry_id: format!("{n}-0"),
            task_logs: vec![pb::TaskLogs {
                data,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut msgs = Vec::new();
        if q.last_entry_id.is_empty() {
            msgs.push(log(1, format!("Step 1/1 : FROM {tag}\n")));
            if st.once("image-stream-ends", self.0.opts.inject) {
                // A stream that ends without a result: the client must reopen it after entry 1.
                let _ = tx.try_send(Ok(msgs.remove(0)));
                return Ok(Response::new(Box::pin(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )));
            }
        } else if q.last_entry_id != "1-0" {
            return Err(st.violate(format!(
                "ImageJoinStreaming resumed from {:?}, not the last entry 1-0",
                q.last_entry_id
            )));
        }
        let status = if ok {
            pb::generic_result::GenericStatus::Success
        } else {
            pb::generic_result::GenericStatus::Failure
        };
        msgs.push(pb::ImageJoinStreamingResponse {
            entry_id: "2-0".into(),
            result: Some(pb::GenericResult {
                status: status as i32,
                exception: if ok {
                    String::new()
                } else {
                    format!("pull access denied for {tag}")
                },
                ..Default::default()
            }),
            eof: true,
            ..Default::default()
        });
        if let Some(img) = st.images.get_mut(&q.image_id) {
            img.1 = ok;
        }
        for m in msgs {
            let _ = tx.try_send(Ok(m));
        }
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn secret_get_or_create(
        &self,
        r: Request<pb::SecretGetOrCreateRequest>,
    ) -> Result<Response<pb::SecretGetOrCreateResponse>, Status> {
        self.check("SecretGetOrCreate", &r, true)?;
        if let Some(id) = self.replay(&r) {
            return Ok(Response::new(pb::SecretGetOrCreateResponse {
                secret_id: id,
                metadata: None,
            }));
        }
        let key = r.metadata().clone();
        let q = r.into_inner();
        let mut st = self.0.lock();
        if q.object_creation_type != pb::ObjectCreationType::Ephemeral as i32 {
            return Err(
                st.violate("SecretGetOrCreate of the run's environment not EPHEMERAL".into())
            );
        }
        if let Some(k) = q.env_dict.keys().find(|k| !crate::api::valid_env_key(k)) {
            return Err(Status::invalid_argument(format!(
                "bad environment variable name {k:?}"
            )));
        }
        let id = st.id("st");
        st.secrets.insert(id.clone(), q.env_dict);
        drop(st);
        self.remember(&Request::from_parts(key, Default::default(), ()), &id);
        Ok(Response::new(pb::SecretGetOrCreateResponse {
            secret_id: id,
            metadata: None,
        }))
    }

    async fn sandbox_create(
        &self,
        r: Request<pb::SandboxCreateRequest>,
    ) -> Result<Response<pb::SandboxCreateResponse>, Status> {
        self.check("SandboxCreate", &r, true)?;
        {
            let mut st = self.0.lock();
            if st.once("create-throttled", self.0.opts.inject) {
                let policy = pb::RpcRetryPolicy {
                    retry_after_secs: 0.2,
                };
                let details = crate::client::RpcStatus {
                    code: tonic::Code::ResourceExhausted as i32,
                    message: "slow down".into(),
                    details: vec![prost_types::Any {
                        type_url: crate::client::RETRY_POLICY_TYPE.into(),
                        value: policy.encode_to_vec(),
                    }],
                };
                return Err(Status::with_details(
                    tonic::Code::ResourceExhausted,
                    "slow down",
                    details.encode_to_vec().into(),
                ));
            }
        }
        if let Some(id) = self.replay(&r) {
            return Ok(Response::new(pb::SandboxCreateResponse {
                sandbox_id: id,
                metadata: None,
            }));
        }
        let md = r.metadata().clone();
        let q = r.into_inner();
        let mut st = self.0.lock();
        if !st.apps.values().any(|a| *a == q.app_id) {
            return Err(st.violate(format!(
                "SandboxCreate in an app that does not exist ({})",
                q.app_id
            )));
        }
        let Some(d) = q.definition else {
            return Err(st.violate("SandboxCreate without a definition".into()));
        };
        match st.images.get(&d.image_id) {
            Some((_, true)) => {}
            _ => {
                return Err(st.violate(format!(
                    "SandboxCreate with image {:?}, not one built to SUCCESS",
                    d.image_id
                )))
            }
        }
        for s in &d.secret_ids {
            if !st.secrets.contains_key(s) {
                return Err(st.violate(format!(
                    "SandboxCreate with a secret that does not exist ({s})"
                )));
            }
        }
        if d.workdir.as_deref().is_some_and(|w| !w.starts_with('/')) {
            return Err(Status::invalid_argument("workdir must be absolute"));
        }
        if let Some(res) = &d.resources {
            if (res.memory_mb_max > 0 && res.memory_mb_max < res.memory_mb)
                || (res.milli_cpu_max > 0 && res.milli_cpu_max < res.milli_cpu)
            {
                return Err(Status::invalid_argument("a limit is below its request"));
            }
        }
        if d.timeout_secs == 0 {
            return Err(st.violate("SandboxCreate with timeout_secs 0 (the SDK sends 300)".into()));
        }
        if d.block_network {
            return Err(st.violate("SandboxCreate set the deprecated block_network".into()));
        }
        if d.name.is_none() || d.open_ports_oneof.is_none() {
            return Err(st.violate(
                "SandboxCreate without name or open_ports (the SDK always sends them)".into(),
            ));
        }
        let net = d.network_access.unwrap_or_default();
        use pb::network_access::NetworkAccessType as T;
        let blocked = match T::try_from(net.network_access_type).unwrap_or(T::Unspecified) {
            T::Blocked => true,
            T::Open => false,
            T::Allowlist => {
                if net
                    .allowed_cidrs
                    .iter()
                    .any(|c| errand_sandbox::kubernetes::Cidr::parse(c).is_none())
                {
                    return Err(Status::invalid_argument("an allowed CIDR is not a CIDR"));
                }
                st.unenforced.push(format!(
                    "ALLOWLIST {:?} runs on the host's network",
                    net.allowed_cidrs
                ));
                false
            }
            T::Unspecified => return Err(st.violate("SandboxCreate without network_access".into())),
        };
        let id = st.id("sb");
        let root = self.0.dir.join(&id);
        for d in ["workspace", "home/agent", "tmp", "opt"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| Status::internal(e.to_string()))?;
        }
        let task_id = format!("ta-{id}");
        st.sandboxes.insert(
            id.clone(),
            Sbx {
                app_id: q.app_id,
                task_id,
                root,
                created_at: now(),
                tags: q
                    .tags
                    .into_iter()
                    .map(|t| (t.tag_name, t.tag_value))
                    .collect(),
                polls: 0,
                result: None,
                deadline: Instant::now() + Duration::from_secs(d.timeout_secs.into()),
                timeout_secs: d.timeout_secs,
                blocked,
                finished: Arc::new(Notify::new()),
            },
        );
        drop(st);
        self.remember(&Request::from_parts(md, Default::default(), ()), &id);
        Ok(Response::new(pb::SandboxCreateResponse {
            sandbox_id: id,
            metadata: None,
        }))
    }

    async fn sandbox_get_task_id(
        &self,
        r: Request<pb::SandboxGetTaskIdRequest>,
    ) -> Result<Response<pb::SandboxGetTaskIdResponse>, Status> {
        self.check("SandboxGetTaskId", &r, true)?;
        let q = r.into_inner();
        let mut st = self.0.lock();
        let Some(sb) = st.sandboxes.get_mut(&q.sandbox_id) else {
            return Err(Status::not_found(format!("no sandbox {}", q.sandbox_id)));
        };
        sb.polls += 1;
        // Pending on the first poll: no task yet.
        let resp = if let Some(res) = &sb.result {
            pb::SandboxGetTaskIdResponse {
                task_id: None,
                task_result: Some(res.clone()),
            }
        } else if sb.polls < 2 {
            pb::SandboxGetTaskIdResponse::default()
        } else {
            pb::SandboxGetTaskIdResponse {
                task_id: Some(sb.task_id.clone()),
                task_result: None,
            }
        };
        Ok(Response::new(resp))
    }

    async fn task_get_command_router_access(
        &self,
        r: Request<pb::TaskGetCommandRouterAccessRequest>,
    ) -> Result<Response<pb::TaskGetCommandRouterAccessResponse>, Status> {
        self.check("TaskGetCommandRouterAccess", &r, true)?;
        let q = r.into_inner();
        let mut st = self.0.lock();
        if !st.sandboxes.values().any(|s| s.task_id == q.task_id) {
            return Err(Status::not_found(format!("no task {}", q.task_id)));
        }
        let token = jwt(
            serde_json::json!({"exp": now() as u64 + 3600, "task_id": q.task_id, "n": st.counter}),
        );
        st.counter += 1;
        st.router_jwts.insert(token.clone(), q.task_id);
        Ok(Response::new(pb::TaskGetCommandRouterAccessResponse {
            jwt: token,
            url: format!("https://{}", self.0.addr),
        }))
    }

    async fn sandbox_wait(
        &self,
        r: Request<pb::SandboxWaitRequest>,
    ) -> Result<Response<pb::SandboxWaitResponse>, Status> {
        self.check("SandboxWait", &r, true)?;
        let q = r.into_inner();
        let finished = {
            let st = self.0.lock();
            let Some(sb) = st.sandboxes.get(&q.sandbox_id) else {
                return Err(Status::not_found(format!("no sandbox {}", q.sandbox_id)));
            };
            if let Some(res) = &sb.result {
                return Ok(Response::new(pb::SandboxWaitResponse {
                    result: Some(res.clone()),
                    metadata: None,
                }));
            }
            sb.finished.clone()
        };
        let wait = Duration::from_secs_f32(q.timeout.clamp(0.0, 60.0));
        let _ = tokio::time::timeout(wait, finished.notified()).await;
        let st = self.0.lock();
        let result = st
            .sandboxes
            .get(&q.sandbox_id)
            .and_then(|s| s.result.clone());
        Ok(Response::new(pb::SandboxWaitResponse {
            result,
            metadata: None,
        }))
    }

    async fn sandbox_terminate(
        &self,
        r: Request<pb::SandboxTerminateRequest>,
    ) -> Result<Response<pb::SandboxTerminateResponse>, Status> {
        self.check("SandboxTerminate", &r, true)?;
        let q = r.into_inner();
        let existing = {
            let st = self.0.lock();
            let Some(sb) = st.sandboxes.get(&q.sandbox_id) else {
                return Err(Status::not_found(format!("no sandbox {}", q.sandbox_id)));
            };
            sb.result.clone()
        };
        self.finish(&q.sandbox_id, pb::generic_result::GenericStatus::Terminated);
        Ok(Response::new(pb::SandboxTerminateResponse {
            existing_result: existing,
        }))
    }

    async fn sandbox_list(
        &self,
        r: Request<pb::SandboxListRequest>,
    ) -> Result<Response<pb::SandboxListResponse>, Status> {
        self.check("SandboxList", &r, true)?;
        let q = r.into_inner();
        let st = self.0.lock();
        let mut found: Vec<pb::SandboxInfo> = st
            .sandboxes
            .iter()
            .filter(|(_, s)| s.app_id == q.app_id && (q.include_finished || s.result.is_none()))
            .filter(|(_, s)| q.before_timestamp == 0.0 || s.created_at < q.before_timestamp)
            .filter(|(_, s)| {
                q.tags.iter().all(|t| {
                    s.tags
                        .iter()
                        .any(|(k, v)| *k == t.tag_name && *v == t.tag_value)
                })
            })
            .map(|(id, s)| pb::SandboxInfo {
                id: id.clone(),
                created_at: s.created_at,
                app_id: s.app_id.clone(),
                tags: s
                    .tags
                    .iter()
                    .map(|(k, v)| pb::SandboxTag {
                        tag_name: k.clone(),
                        tag_value: v.clone(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        found.sort_by(|a, b| b.created_at.total_cmp(&a.created_at));
        // Pages of two, so that clients must page.
        found.truncate(2);
        Ok(Response::new(pb::SandboxListResponse { sandboxes: found }))
    }
}

#[tonic::async_trait]
impl TaskCommandRouter for Svc {
    async fn task_exec_start(
        &self,
        r: Request<tcr::TaskExecStartRequest>,
    ) -> Result<Response<tcr::TaskExecStartResponse>, Status> {
        let task = r.get_ref().task_id.clone();
        self.router_check("TaskExecStart", &r, &task)?;
        let q = r.into_inner();
        let sandbox = self
            .sandbox_of_task(&task)
            .ok_or_else(|| Status::not_found("no task"))?;
        self.live(&sandbox)?;
        let (root, blocked, env) = {
            let mut st = self.0.lock();
            if st.execs.contains_key(&(task.clone(), q.exec_id.clone())) {
                // The same exec_id again: the same exec, not a second one.
                return Ok(Response::new(tcr::TaskExecStartResponse {}));
            }
            if uuid::Uuid::parse_str(&q.exec_id).is_err() {
                return Err(st.violate("TaskExecStart with an exec_id that is not a UUID".into()));
            }
            if q.command_args.is_empty()
                || q.command_args.iter().map(String::len).sum::<usize>() > 65536
            {
                return Err(Status::invalid_argument(
                    "command_args empty or over 65536 bytes",
                ));
            }
            if q.workdir.as_deref().is_some_and(|w| !w.starts_with('/')) {
                return Err(Status::invalid_argument("workdir must be absolute"));
            }
            let mut env: Vec<(String, String)> = Vec::new();
            for s in &q.secret_ids {
                match st.secrets.get(s) {
                    Some(e) => env.extend(e.iter().map(|(k, v)| (k.clone(), v.clone()))),
                    None => {
                        return Err(st.violate(format!(
                            "TaskExecStart with a secret that does not exist ({s})"
                        )))
                    }
                }
            }
            env.extend(q.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            let sb = st
                .sandboxes
                .get(&sandbox)
                .ok_or_else(|| Status::not_found("no sandbox"))?;
            (sb.root.clone(), sb.blocked, env)
        };
        let mut cmd = errand_proc::Cmd::new(&self.0.bwrap);
        cmd.args([
            "--die-with-parent",
            "--new-session",
            "--unshare-user",
            "--uid",
            "10001",
            "--gid",
            "10001",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
        ]);
        if blocked {
            cmd.arg("--unshare-net");
        }
        for d in ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32"] {
            cmd.args(["--ro-bind-try", d, d]);
        }
        cmd.args(["--proc", "/proc", "--dev", "/dev"]);
        for (host, inside) in [
            ("workspace", "/workspace"),
            ("home/agent", "/home/agent"),
            ("tmp", "/tmp"),
            ("opt", "/opt"),
        ] {
            cmd.arg("--bind").arg(root.join(host)).arg(inside);
        }
        cmd.args(["--chdir", q.workdir.as_deref().unwrap_or("/")]);
        cmd.arg("--").args(&q.command_args);
        cmd.envs(env);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .tokio()
            .spawn()
            .map_err(|e| Status::internal(format!("bwrap: {e}")))?;
        let notify = Arc::new(Notify::new());
        let out = [
            Arc::new(Mutex::new(Output::default())),
            Arc::new(Mutex::new(Output::default())),
        ];
        let pipes: [Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for (pipe, buf) in pipes.into_iter().zip(out.iter().cloned()) {
            let notify = notify.clone();
            tokio::spawn(async move {
                let Some(mut pipe) = pipe else { return };
                let mut chunk = vec![0u8; 64 << 10];
                loop {
                    let n = pipe.read(&mut chunk).await.unwrap_or(0);
                    let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
                    if n == 0 {
                        b.done = true;
                        drop(b);
                        notify.notify_waiters();
                        return;
                    }
                    b.data.extend_from_slice(&chunk[..n]);
                    drop(b);
                    notify.notify_waiters();
                }
            });
        }
        let exit = Arc::new(Mutex::new(None));
        let exited = Arc::new(Notify::new());
        let pid = child.id();
        let stdin = child.stdin.take();
        {
            let (exit, exited) = (exit.clone(), exited.clone());
            let timeout = q.timeout_secs.map(|s| Duration::from_secs(s.into()));
            tokio::spawn(async move {
                let status = match timeout {
                    Some(t) => match tokio::time::timeout(t, child.wait()).await {
                        Ok(s) => s.ok(),
                        Err(_) => {
                            let _ = child.kill().await;
                            child.wait().await.ok()
                        }
                    },
                    None => child.wait().await.ok(),
                };
                use std::os::unix::process::ExitStatusExt;
                *exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(match status {
                    Some(s) => (s.code(), s.signal()),
                    None => (None, Some(9)),
                });
                exited.notify_waiters();
            });
        }
        self.0.lock().execs.insert(
            (task, q.exec_id),
            Exec {
                out,
                notify,
                stdin,
                stdin_offset: 0,
                stdin_closed: false,
                exit,
                exited,
                broke_once: false,
                pid,
            },
        );
        Ok(Response::new(tcr::TaskExecStartResponse {}))
    }

    async fn task_exec_stdin_write(
        &self,
        r: Request<tcr::TaskExecStdinWriteRequest>,
    ) -> Result<Response<tcr::TaskExecStdinWriteResponse>, Status> {
        let task = r.get_ref().task_id.clone();
        self.router_check("TaskExecStdinWrite", &r, &task)?;
        let q = r.into_inner();
        let (stdin, eof) = {
            let mut st = self.0.lock();
            let Some(e) = st.execs.get_mut(&(task.clone(), q.exec_id.clone())) else {
                return Err(Status::not_found("no such exec"));
            };
            if e.stdin_closed {
                let what = "TaskExecStdinWrite after eof".to_string();
                return Err(st.violate(what));
            }
            if q.offset != e.stdin_offset {
                let what = format!(
                    "TaskExecStdinWrite at offset {} after {} bytes (a gap or a repeat)",
                    q.offset, e.stdin_offset
                );
                return Err(st.violate(what));
            }
            e.stdin_offset += q.data.len() as u64;
            if q.eof {
                e.stdin_closed = true;
            }
            (e.stdin.take(), q.eof)
        };
        let mut stdin = stdin;
        if let Some(s) = stdin.as_mut() {
            if !q.data.is_empty() {
                let _ = s.write_all(&q.data).await;
            }
        }
        if !eof {
            if let Some(e) = self.0.lock().execs.get_mut(&(task, q.exec_id)) {
                e.stdin = stdin;
            }
        }
        Ok(Response::new(tcr::TaskExecStdinWriteResponse {}))
    }

    async fn task_exec_stdio_read(
        &self,
        r: Request<tcr::TaskExecStdioReadRequest>,
    ) -> Result<Response<BoxStream<tcr::TaskExecStdioReadResponse>>, Status> {
        let task = r.get_ref().task_id.clone();
        self.router_check("TaskExecStdioRead", &r, &task)?;
        let q = r.into_inner();
        let fd = usize::from(q.file_descriptor == tcr::TaskExecStdioFileDescriptor::Stderr as i32);
        let (buf, notify, break_after) = {
            let mut st = self.0.lock();
            let inject = self.0.opts.inject;
            let Some(e) = st.execs.get_mut(&(task.clone(), q.exec_id.clone())) else {
                return Err(Status::not_found("no such exec"));
            };
            let len = e.out[fd]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .data
                .len() as u64;
            if q.offset > len {
                let what = format!(
                    "TaskExecStdioRead from offset {} beyond the {len} bytes written",
                    q.offset
                );
                return Err(st.violate(what));
            }
            // Stdout's first stream breaks after its first message.
            let brk = inject && fd == 0 && !e.broke_once && q.offset == 0;
            if brk {
                e.broke_once = true;
            }
            (e.out[fd].clone(), e.notify.clone(), brk)
        };
        let inner = self.0.clone();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut offset = q.offset as usize;
            loop {
                let waiting = notify.notified();
                let (chunk, done) = {
                    let b = buf.lock().unwrap_or_else(|p| p.into_inner());
                    let end = b.data.len().min(offset + (256 << 10));
                    (
                        b.data[offset.min(end)..end].to_vec(),
                        b.done && end == b.data.len(),
                    )
                };
                if !chunk.is_empty() {
                    offset += chunk.len();
                    if tx
                        .send(Ok(tcr::TaskExecStdioReadResponse { data: chunk }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if break_after {
                        inner.lock().injected.insert("stdout-stream-broken");
                        let _ = tx
                            .send(Err(Status::unavailable("fake: stream broken")))
                            .await;
                        return;
                    }
                    continue;
                }
                if done {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), waiting).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn task_exec_wait(
        &self,
        r: Request<tcr::TaskExecWaitRequest>,
    ) -> Result<Response<tcr::TaskExecWaitResponse>, Status> {
        let task = r.get_ref().task_id.clone();
        self.router_check("TaskExecWait", &r, &task)?;
        let q = r.into_inner();
        let (exit, exited) = {
            let st = self.0.lock();
            let Some(e) = st.execs.get(&(task, q.exec_id)) else {
                return Err(Status::not_found("no such exec"));
            };
            (e.exit.clone(), e.exited.clone())
        };
        let deadline = Instant::now() + Duration::from_secs(55);
        loop {
            let waiting = exited.notified();
            if let Some((code, signal)) = *exit.lock().unwrap_or_else(|p| p.into_inner()) {
                use tcr::task_exec_wait_response::ExitStatus;
                let s = match (code, signal) {
                    (Some(c), _) => ExitStatus::Code(c),
                    (None, Some(s)) => ExitStatus::Signal(s),
                    (None, None) => ExitStatus::Code(-1),
                };
                return Ok(Response::new(tcr::TaskExecWaitResponse {
                    exit_status: Some(s),
                }));
            }
            if Instant::now() > deadline {
                // A long poll ends with an empty answer, not an error.
                return Ok(Response::new(tcr::TaskExecWaitResponse {
                    exit_status: None,
                }));
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), waiting).await;
        }
    }
}
