//! A strict fake of the few Kubernetes API endpoints the kubernetes backend
//! uses, over plain HTTP, in-process (axum).
//!
//! It answers like an API server (objects with `uid`, `resourceVersion` and
//! `status`; `Status` objects for errors), enforces the Role of
//! `deploy/kubernetes/rbac.yaml` (403 for anything it does not grant), and
//! refuses (422 Invalid) a Pod that misses any security setting errand
//! requires. An accepted Pod "runs": after a short `ContainerCreating` its
//! command runs as a local subprocess (own process group) with the
//! environment resolved from the referenced Secret (the Pod fails with
//! `CreateContainerConfigError` when it is missing), in the directory its
//! `workingDir` maps to through the claim's `subPath` mounts; stdout and
//! stderr go to the Pod's log. `activeDeadlineSeconds` is enforced. Deleting
//! the Pod kills the process group. There is no garbage collector: what errand
//! does not delete stays, so the tests see it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State as Ext};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Kind {
    Pod,
    Secret,
    Policy,
}

impl Kind {
    fn group(self) -> &'static str {
        match self {
            Kind::Policy => "networking.k8s.io",
            _ => "",
        }
    }
    fn resource(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Secret => "secrets",
            Kind::Policy => "networkpolicies",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Secret => "Secret",
            Kind::Policy => "NetworkPolicy",
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Kind::Policy => "networking.k8s.io/v1",
            _ => "v1",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub namespace: String,
    pub claim: String,
    /// What the claim holds: the test's runs root.
    pub claim_dir: PathBuf,
    /// Refuse Pods without `resources.limits.memory`.
    pub require_memory_limit: bool,
    /// How long a container is `ContainerCreating`.
    pub start_delay: Duration,
    /// Containers never start, waiting for this reason (e.g. `ImagePullBackOff`).
    pub stall: Option<String>,
}

/// Why a running process is stopped.
#[derive(Debug, Clone)]
enum Stop {
    Deleted,
    Terminated { reason: String, code: i64 },
}

struct Log {
    buf: Mutex<Vec<u8>>,
    /// true once nothing more will be written.
    done: watch::Sender<bool>,
}

impl Log {
    fn push(&self, bytes: &[u8]) {
        self.buf.lock().expect("lock").extend_from_slice(bytes);
        self.done.send_modify(|_| {});
    }
    fn finish(&self) {
        self.done.send_replace(true);
    }
}

struct Running {
    log: Arc<Log>,
    stop: mpsc::UnboundedSender<Stop>,
    pgid: Option<i32>,
}

#[derive(Default)]
pub struct State {
    pub objects: BTreeMap<(Kind, String), Value>,
    running: BTreeMap<String, Running>,
    /// Every Pod body POSTed, accepted or not.
    pub posted_pods: Vec<Value>,
    /// Every NetworkPolicy body POSTed, accepted or not.
    pub posted_policies: Vec<Value>,
    /// (group, resource, verb) of every authorized request.
    pub requests: BTreeSet<(String, String, String)>,
    pub request_count: usize,
    /// (kind, name, gracePeriodSeconds) of every DELETE of one object.
    pub deletes: Vec<(Kind, String, Option<i64>)>,
    /// Merge patches applied: (kind, name, patch).
    pub patches: Vec<(Kind, String, Value)>,
    /// Requests no route matched: "METHOD path".
    pub unknown: Vec<String>,
    rv: u64,
    seq: u64,
}

struct Inner {
    opts: Options,
    rbac: BTreeSet<(String, String, String)>,
    state: Mutex<State>,
}

pub struct Fake {
    pub url: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

/// The Role of `deploy/kubernetes/rbac.yaml` as (group, resource, verb).
pub fn role_grants() -> BTreeSet<(String, String, String)> {
    let text = include_str!("../../../../deploy/kubernetes/rbac.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).expect("rbac.yaml parses");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role")
        .expect("rbac.yaml has a Role");
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let strs = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {k}"))
                .iter()
                .map(|v| v.as_str().expect("string").to_string())
                .collect()
        };
        for g in strs("apiGroups") {
            for r in strs("resources") {
                for v in strs("verbs") {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

impl Fake {
    pub async fn start(opts: Options) -> Fake {
        let inner = Arc::new(Inner {
            opts,
            rbac: role_grants(),
            state: Mutex::new(State::default()),
        });
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}", get(get_namespace))
            .route(
                "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
                get(get_claim),
            )
            .route(
                "/api/v1/namespaces/{ns}/pods",
                get(
                    |s: Ext<Arc<Inner>>, p: UrlPath<String>, q: Query<HashMap<String, String>>| {
                        list(s, p, q, Kind::Pod)
                    },
                )
                .post(|s: Ext<Arc<Inner>>, p: UrlPath<String>, b: Bytes| {
                    create(s, p, b, Kind::Pod)
                }),
            )
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}",
                get(|s: Ext<Arc<Inner>>, p: UrlPath<(String, String)>| get_one(s, p, Kind::Pod))
                    .delete(
                        |s: Ext<Arc<Inner>>, p: UrlPath<(String, String)>, b: Bytes| {
                            delete_one(s, p, b, Kind::Pod)
                        },
                    ),
            )
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .route(
                "/api/v1/namespaces/{ns}/secrets",
                axum::routing::post(|s: Ext<Arc<Inner>>, p: UrlPath<String>, b: Bytes| {
                    create(s, p, b, Kind::Secret)
                })
                .delete(
                    |s: Ext<Arc<Inner>>, p: UrlPath<String>, q: Query<HashMap<String, String>>| {
                        delete_collection(s, p, q, Kind::Secret)
                    },
                ),
            )
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                axum::routing::patch(
                    |s: Ext<Arc<Inner>>, p: UrlPath<(String, String)>, h: HeaderMap, b: Bytes| {
                        patch_one(s, p, h, b, Kind::Secret)
                    },
                )
                .delete(
                    |s: Ext<Arc<Inner>>, p: UrlPath<(String, String)>, b: Bytes| {
                        delete_one(s, p, b, Kind::Secret)
                    },
                ),
            )
            .route(
                "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                axum::routing::post(|s: Ext<Arc<Inner>>, p: UrlPath<String>, b: Bytes| {
                    create(s, p, b, Kind::Policy)
                })
                .delete(
                    |s: Ext<Arc<Inner>>, p: UrlPath<String>, q: Query<HashMap<String, String>>| {
                        delete_collection(s, p, q, Kind::Policy)
                    },
                ),
            )
            .route(
                "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
                axum::routing::patch(
                    |s: Ext<Arc<Inner>>, p: UrlPath<(String, String)>, h: HeaderMap, b: Bytes| {
                        patch_one(s, p, h, b, Kind::Policy)
                    },
                )
                .delete(
                    |s: Ext<Arc<Inner>>, p: UrlPath<(String, String)>, b: Bytes| {
                        delete_one(s, p, b, Kind::Policy)
                    },
                ),
            )
            .fallback(unknown)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Fake { url, inner, server }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("lock")
    }

    pub fn names(&self, kind: Kind) -> Vec<String> {
        self.state()
            .objects
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The process group of a Pod's running process.
    pub fn pgid(&self, pod: &str) -> Option<i32> {
        self.state().running.get(pod).and_then(|r| r.pgid)
    }

    /// Ends a running Pod's process as the kubelet would report `reason`
    /// (e.g. `OOMKilled`, exit 137).
    pub fn terminate(&self, pod: &str, reason: &str, code: i64) {
        let st = self.state();
        let r = st.running.get(pod).expect("a running pod");
        r.stop
            .send(Stop::Terminated {
                reason: reason.into(),
                code,
            })
            .expect("the pod's process is there");
    }

    /// Waits (up to a minute) until `f` holds.
    pub async fn until(&self, what: &str, f: impl Fn(&Fake) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
        if let Ok(st) = self.inner.state.lock() {
            for r in st.running.values() {
                if let Some(g) = r.pgid {
                    // SAFETY: plain system call on a process group this fake started.
                    unsafe { libc::killpg(g, libc::SIGKILL) };
                }
            }
        }
    }
}

// ---------------------------------------------------------------- responses

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        axum::Json(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        })),
    )
        .into_response()
}

fn success(name: &str, kind: Kind) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": kind.resource()},
        })),
    )
        .into_response()
}

fn obj(code: StatusCode, v: Value) -> Response {
    (code, axum::Json(v)).into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{kind} \"{name}\" not found"),
    )
}

impl Inner {
    /// RBAC: the Role of rbac.yaml, nothing else.
    fn authorize(&self, group: &str, resource: &str, verb: &str) -> Result<(), Box<Response>> {
        let key = (group.to_string(), resource.to_string(), verb.to_string());
        if !self.rbac.contains(&key) {
            return Err(Box::new(status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "{resource} is forbidden: User \"system:serviceaccount:{ns}:errand\" cannot {verb} \
                     resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\"",
                    ns = self.opts.namespace
                ),
            )));
        }
        let mut st = self.state.lock().expect("lock");
        st.requests.insert(key);
        st.request_count += 1;
        Ok(())
    }

    fn namespace(&self, ns: &str) -> Result<(), Box<Response>> {
        if ns == self.opts.namespace {
            Ok(())
        } else {
            Err(Box::new(not_found("namespaces", ns)))
        }
    }
}

// ------------------------------------------------------------------ handlers

async fn unknown(Ext(f): Ext<Arc<Inner>>, method: Method, uri: Uri) -> Response {
    f.state
        .lock()
        .unwrap()
        .unknown
        .push(format!("{method} {uri}"));
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the server could not find the requested resource ({method} {uri})"),
    )
}

async fn get_namespace(Ext(f): Ext<Arc<Inner>>, UrlPath(ns): UrlPath<String>) -> Response {
    if let Err(r) = f.authorize("", "namespaces", "get") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    obj(
        StatusCode::OK,
        json!({
            "kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": ns, "uid": "ns-uid", "resourceVersion": "1",
                         "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }),
    )
}

async fn get_claim(
    Ext(f): Ext<Arc<Inner>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    if let Err(r) = f.authorize("", "persistentvolumeclaims", "get") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    if name != f.opts.claim {
        return not_found("persistentvolumeclaims", &name);
    }
    obj(
        StatusCode::OK,
        json!({
            "kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns, "uid": "pvc-uid", "resourceVersion": "2"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "100Gi"}}},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteMany"]},
        }),
    )
}

async fn list(
    Ext(f): Ext<Arc<Inner>>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    kind: Kind,
) -> Response {
    if let Err(r) = f.authorize(kind.group(), kind.resource(), "list") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    let selector = match parse_selector(q.get("labelSelector").map(String::as_str).unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let st = f.state.lock().expect("lock");
    let items: Vec<Value> = st
        .objects
        .iter()
        .filter(|((k, _), v)| *k == kind && selector.matches(v))
        .map(|(_, v)| v.clone())
        .collect();
    obj(
        StatusCode::OK,
        json!({
            "kind": format!("{}List", kind.kind()),
            "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        }),
    )
}

async fn get_one(
    Ext(f): Ext<Arc<Inner>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    kind: Kind,
) -> Response {
    if let Err(r) = f.authorize(kind.group(), kind.resource(), "get") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    match f
        .state
        .lock()
        .expect("lock")
        .objects
        .get(&(kind, name.clone()))
    {
        Some(v) => obj(StatusCode::OK, v.clone()),
        None => not_found(kind.resource(), &name),
    }
}

async fn create(
    Ext(f): Ext<Arc<Inner>>,
    UrlPath(ns): UrlPath<String>,
    body: Bytes,
    kind: Kind,
) -> Response {
    if let Err(r) = f.authorize(kind.group(), kind.resource(), "create") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON".into(),
        );
    };
    match kind {
        Kind::Pod => f.state.lock().expect("lock").posted_pods.push(v.clone()),
        Kind::Policy => f
            .state
            .lock()
            .expect("lock")
            .posted_policies
            .push(v.clone()),
        Kind::Secret => {}
    }
    let mut problems = validate_meta(&v, kind, &ns);
    problems.extend(match kind {
        Kind::Pod => validate_pod(&v, &f.opts),
        Kind::Secret => validate_secret(&mut v),
        Kind::Policy => validate_policy(&v),
    });
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !problems.is_empty() {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {}",
                kind.kind(),
                problems.join("; ")
            ),
        );
    }
    let log = {
        let mut st = f.state.lock().expect("lock");
        if st.objects.contains_key(&(kind, name.clone())) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", kind.resource()),
            );
        }
        st.rv += 1;
        st.seq += 1;
        let (rv, seq) = (st.rv, st.seq);
        let meta = &mut v["metadata"];
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{seq:012x}"));
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(now());
        meta["namespace"] = json!(ns);
        v["kind"] = json!(kind.kind());
        v["apiVersion"] = json!(kind.api_version());
        let log = (kind == Kind::Pod).then(|| {
            v["status"] = json!({
                "phase": "Pending",
                "qosClass": "Burstable",
                "containerStatuses": [container_status(&v, json!({"waiting": {"reason": "ContainerCreating"}}), false)],
            });
            Arc::new(Log {
                buf: Mutex::new(Vec::new()),
                done: watch::channel(false).0,
            })
        });
        st.objects.insert((kind, name.clone()), v.clone());
        log
    };
    if let Some(log) = log {
        let (tx, rx) = mpsc::unbounded_channel();
        f.state.lock().expect("lock").running.insert(
            name.clone(),
            Running {
                log: log.clone(),
                stop: tx,
                pgid: None,
            },
        );
        tokio::spawn(kubelet(f.clone(), name, log, rx));
    }
    obj(StatusCode::CREATED, v)
}

async fn patch_one(
    Ext(f): Ext<Arc<Inner>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Response {
    if let Err(r) = f.authorize(kind.group(), kind.resource(), "patch") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct != "application/merge-patch+json" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format ({ct}): this fake takes merge patches"),
        );
    }
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON".into(),
        );
    };
    // Only metadata may change: Secrets are immutable, policies are replaced by errand never.
    if patch
        .as_object()
        .is_some_and(|o| o.keys().any(|k| k != "metadata"))
    {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} \"{name}\" is invalid: field is immutable", kind.kind()),
        );
    }
    let mut st = f.state.lock().expect("lock");
    st.rv += 1;
    let rv = st.rv;
    let Some(v) = st.objects.get_mut(&(kind, name.clone())) else {
        return not_found(kind.resource(), &name);
    };
    merge(v, &patch);
    v["metadata"]["resourceVersion"] = json!(rv.to_string());
    let out = v.clone();
    st.patches.push((kind, name, patch));
    obj(StatusCode::OK, out)
}

fn grace(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["gracePeriodSeconds"].as_i64())
}

async fn delete_one(
    Ext(f): Ext<Arc<Inner>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    body: Bytes,
    kind: Kind,
) -> Response {
    if let Err(r) = f.authorize(kind.group(), kind.resource(), "delete") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    let mut st = f.state.lock().expect("lock");
    st.deletes.push((kind, name.clone(), grace(&body)));
    let Some(mut v) = st.objects.remove(&(kind, name.clone())) else {
        return not_found(kind.resource(), &name);
    };
    if kind == Kind::Pod {
        if let Some(r) = st.running.remove(&name) {
            let _ = r.stop.send(Stop::Deleted);
            r.log.finish();
        }
        v["metadata"]["deletionTimestamp"] = json!(now());
        v["metadata"]["deletionGracePeriodSeconds"] = json!(grace(&body).unwrap_or(30));
        return obj(StatusCode::OK, v);
    }
    success(&name, kind)
}

async fn delete_collection(
    Ext(f): Ext<Arc<Inner>>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    kind: Kind,
) -> Response {
    if let Err(r) = f.authorize(kind.group(), kind.resource(), "deletecollection") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    let selector = match parse_selector(q.get("labelSelector").map(String::as_str).unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let mut st = f.state.lock().expect("lock");
    let names: Vec<String> = st
        .objects
        .iter()
        .filter(|((k, _), v)| *k == kind && selector.matches(v))
        .map(|((_, n), _)| n.clone())
        .collect();
    let items: Vec<Value> = names
        .iter()
        .filter_map(|n| st.objects.remove(&(kind, n.clone())))
        .collect();
    obj(
        StatusCode::OK,
        json!({
            "kind": format!("{}List", kind.kind()),
            "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        }),
    )
}

async fn pod_log(
    Ext(f): Ext<Arc<Inner>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = f.authorize("", "pods/log", "get") {
        return *r;
    }
    if let Err(r) = f.namespace(&ns) {
        return *r;
    }
    let (pod, log) = {
        let st = f.state.lock().expect("lock");
        let Some(pod) = st.objects.get(&(Kind::Pod, name.clone())).cloned() else {
            return not_found("pods", &name);
        };
        (pod, st.running.get(&name).map(|r| r.log.clone()))
    };
    let container = pod["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or_default();
    if let Some(c) = q.get("container") {
        if c != container {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("container {c} is not valid for pod {name}"),
            );
        }
    }
    let state = &pod["status"]["containerStatuses"][0]["state"];
    if let Some(w) = state.get("waiting") {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
                w["reason"].as_str().unwrap_or_default()
            ),
        );
    }
    let Some(log) = log else {
        return (StatusCode::OK, "").into_response();
    };
    if q.get("follow").map(String::as_str) != Some("true") {
        let bytes = log.buf.lock().expect("lock").clone();
        return (StatusCode::OK, bytes).into_response();
    }
    let rx = log.done.subscribe();
    let stream = futures::stream::unfold((log, rx, 0usize), |(log, mut rx, offset)| async move {
        loop {
            let done = *rx.borrow_and_update();
            let chunk = {
                let buf = log.buf.lock().expect("lock");
                buf[offset..].to_vec()
            };
            if !chunk.is_empty() {
                let next = offset + chunk.len();
                return Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), (log, rx, next)));
            }
            if done || rx.changed().await.is_err() {
                return None;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Body::from_stream(stream))
        .expect("response")
}

// ------------------------------------------------------------------- kubelet

fn container_status(pod: &Value, state: Value, ready: bool) -> Value {
    let c = &pod["spec"]["containers"][0];
    json!({
        "name": c["name"],
        "image": c["image"],
        "imageID": "",
        "ready": ready,
        "restartCount": 0,
        "started": ready,
        "state": state,
    })
}

/// Sets the Pod's status; false when the Pod is gone.
fn set_status(f: &Inner, name: &str, status: impl FnOnce(&Value) -> Value) -> bool {
    let mut st = f.state.lock().expect("lock");
    st.rv += 1;
    let rv = st.rv;
    let Some(pod) = st.objects.get_mut(&(Kind::Pod, name.to_string())) else {
        return false;
    };
    let s = status(pod);
    pod["status"] = s;
    pod["metadata"]["resourceVersion"] = json!(rv.to_string());
    true
}

fn failed_to_start(f: &Inner, name: &str, reason: &str, message: String, log: &Log) {
    set_status(f, name, |pod| {
        json!({
            "phase": "Failed",
            "containerStatuses": [container_status(pod, json!({"waiting": {"reason": reason, "message": message}}), false)],
        })
    });
    log.finish();
}

/// Kubernetes' `$(VAR)` expansion of commands and arguments: `$$` is `$`,
/// `$(NAME)` of a known variable its value, anything else as it is.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(j) if env.contains_key(&r[..j]) => {
                    out.push_str(&env[&r[..j]]);
                    rest = &r[j + 1..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

async fn kubelet(
    f: Arc<Inner>,
    name: String,
    log: Arc<Log>,
    mut stop: mpsc::UnboundedReceiver<Stop>,
) {
    tokio::select! {
        _ = tokio::time::sleep(f.opts.start_delay) => {}
        _ = stop.recv() => return,
    }
    let Some(pod) = f
        .state
        .lock()
        .unwrap()
        .objects
        .get(&(Kind::Pod, name.clone()))
        .cloned()
    else {
        return;
    };
    if let Some(reason) = &f.opts.stall {
        set_status(&f, &name, |pod| {
            json!({
                "phase": "Pending",
                "containerStatuses": [container_status(pod, json!({"waiting": {
                    "reason": reason, "message": "Back-off pulling image"}}), false)],
            })
        });
        let _ = stop.recv().await;
        log.finish();
        return;
    }
    let c = &pod["spec"]["containers"][0];
    // The environment, from the Secret.
    let mut env = BTreeMap::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let var = e["name"].as_str().unwrap_or_default().to_string();
        let r = &e["valueFrom"]["secretKeyRef"];
        let (secret, key) = (
            r["name"].as_str().unwrap_or_default(),
            r["key"].as_str().unwrap_or_default(),
        );
        let value = f
            .state
            .lock()
            .unwrap()
            .objects
            .get(&(Kind::Secret, secret.to_string()))
            .map(|s| s["data"][key].as_str().map(str::to_string));
        match value {
            None => {
                return failed_to_start(
                    &f,
                    &name,
                    "CreateContainerConfigError",
                    format!("secret \"{secret}\" not found"),
                    &log,
                )
            }
            Some(None) => {
                return failed_to_start(
                    &f,
                    &name,
                    "CreateContainerConfigError",
                    format!(
                        "couldn't find key {key} in Secret {}/{secret}",
                        f.opts.namespace
                    ),
                    &log,
                )
            }
            Some(Some(b64)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64 in the fake's store");
                env.insert(var, String::from_utf8(bytes).expect("utf-8"));
            }
        }
    }
    // Where each mount is on this machine.
    let mut mounts: Vec<(String, PathBuf)> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap_or_default().to_string(),
                f.opts
                    .claim_dir
                    .join(m["subPath"].as_str().unwrap_or_default()),
            )
        })
        .collect();
    mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let wd = c["workingDir"].as_str().unwrap_or("/");
    let cwd = mounts
        .iter()
        .find_map(|(inside, local)| {
            Path::new(wd)
                .strip_prefix(inside)
                .ok()
                .map(|rest| local.join(rest))
        })
        .unwrap_or_else(|| f.opts.claim_dir.clone());
    let mut argv: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
        .map(|a| expand(a.as_str().unwrap_or_default(), &env))
        .collect();
    let program = argv.remove(0);
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&argv)
        .env_clear()
        .envs(&env)
        .current_dir(&cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            set_status(&f, &name, |pod| {
                json!({"phase": "Failed", "containerStatuses": [container_status(pod, json!({"terminated": {
                    "exitCode": 128, "reason": "StartError", "message": format!("exec: {program}: {e}"),
                    "startedAt": now(), "finishedAt": now()}}), false)]})
            });
            log.finish();
            return;
        }
    };
    let pid = child.id().map(|p| p as i32);
    let started = now();
    {
        let mut st = f.state.lock().expect("lock");
        match st.running.get_mut(&name) {
            Some(r) => r.pgid = pid,
            None => return, // deleted meanwhile; kill_on_drop ends it
        }
    }
    set_status(&f, &name, |pod| {
        json!({
            "phase": "Running", "startTime": started, "podIP": "10.244.0.7", "qosClass": "Burstable",
            "containerStatuses": [container_status(pod, json!({"running": {"startedAt": started}}), true)],
        })
    });
    let mut readers = Vec::new();
    for mut pipe in [
        Box::new(child.stdout.take().expect("stdout"))
            as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let log = log.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                log.push(&buf[..n]);
            }
        }));
    }
    let deadline = pod["spec"]["activeDeadlineSeconds"]
        .as_u64()
        .unwrap_or(u64::MAX / 4);
    let killpg = |g: Option<i32>| {
        if let Some(g) = g {
            // SAFETY: plain system call on the process group this fake started.
            unsafe { libc::killpg(g, libc::SIGKILL) };
        }
    };
    let (code, reason, pod_reason) = tokio::select! {
        s = child.wait() => {
            let s = s.expect("wait");
            use std::os::unix::process::ExitStatusExt;
            let code = s.code().map(i64::from).or(s.signal().map(|n| 128 + i64::from(n))).unwrap_or(255);
            (code, if code == 0 { "Completed".to_string() } else { "Error".to_string() }, None)
        }
        s = stop.recv() => {
            killpg(pid);
            let _ = child.wait().await;
            match s {
                Some(Stop::Terminated { reason, code }) => (code, reason, None),
                Some(Stop::Deleted) | None => {
                    for r in readers { r.abort(); }
                    log.finish();
                    return;
                }
            }
        }
        _ = tokio::time::sleep(Duration::from_secs(deadline)) => {
            killpg(pid);
            let _ = child.wait().await;
            (137, "Error".to_string(), Some("DeadlineExceeded"))
        }
    };
    // Whatever the process group still holds open is killed with it.
    killpg(pid);
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    let finished = now();
    set_status(&f, &name, |pod| {
        let mut s = json!({
            "phase": if code == 0 && pod_reason.is_none() { "Succeeded" } else { "Failed" },
            "startTime": started, "podIP": "10.244.0.7", "qosClass": "Burstable",
            "containerStatuses": [container_status(pod, json!({"terminated": {
                "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished,
                "containerID": format!("fake://{}", pid.unwrap_or_default()),
            }}), false)],
        });
        if let Some(r) = pod_reason {
            s["reason"] = json!(r);
            s["message"] = json!(format!(
                "Pod was active on the node longer than the specified deadline"
            ));
        }
        s
    });
    if let Some(r) = f.state.lock().expect("lock").running.get_mut(&name) {
        r.pgid = None;
    }
    log.finish();
}

// --------------------------------------------------------------- validation

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_label_key(s: &str) -> bool {
    let name = s.rsplit_once('/').map(|(_, n)| n).unwrap_or(s);
    !name.is_empty() && is_label_value(name)
}

fn validate_meta(v: &Value, kind: Kind, ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    let m = &v["metadata"];
    let name = m["name"].as_str().unwrap_or_default();
    if !is_dns_label(name) {
        out.push(format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 label"
        ));
    }
    if let Some(n) = m["namespace"].as_str() {
        if n != ns {
            out.push(
                "metadata.namespace: Invalid value: does not match the namespace of the request"
                    .into(),
            );
        }
    }
    for (k, val) in m["labels"].as_object().into_iter().flatten() {
        let val = val.as_str().unwrap_or("\u{0}");
        if !is_label_key(k) || !is_label_value(val) {
            out.push(format!("metadata.labels: Invalid value: \"{k}={val}\""));
        }
    }
    if v["kind"].as_str().is_some_and(|k| k != kind.kind()) {
        out.push("kind: Invalid value".into());
    }
    out
}

/// The effective value of a security setting: the container's, else the pod's.
fn effective<'a>(pod: &'a Value, c: &'a Value, key: &str) -> &'a Value {
    let own = &c["securityContext"][key];
    if own.is_null() {
        &pod["spec"]["securityContext"][key]
    } else {
        own
    }
}

/// Every reason the pod is refused.
pub fn validate_pod(pod: &Value, opts: &Options) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &pod["spec"];
    if spec["restartPolicy"] != "Never" {
        out.push("spec.restartPolicy: Required value: errand's pods run once (Never)".into());
    }
    if spec["activeDeadlineSeconds"]
        .as_i64()
        .is_none_or(|d| d <= 0)
    {
        out.push("spec.activeDeadlineSeconds: Required value".into());
    }
    if spec["automountServiceAccountToken"] != false {
        out.push("spec.automountServiceAccountToken: must be false".into());
    }
    if spec["enableServiceLinks"] != false {
        out.push("spec.enableServiceLinks: must be false".into());
    }
    for k in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[k] == true {
            out.push(format!("spec.{k}: Forbidden"));
        }
    }
    for k in ["initContainers", "ephemeralContainers"] {
        if spec[k].as_array().is_some_and(|a| !a.is_empty()) {
            out.push(format!("spec.{k}: Forbidden"));
        }
    }
    let mut volumes = BTreeSet::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        volumes.insert(name.to_string());
        if v.get("hostPath").is_some() {
            out.push(format!(
                "spec.volumes[{name}].hostPath: Forbidden: no hostPath volumes"
            ));
        }
        let keys: Vec<&String> = v
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        if keys != ["persistentVolumeClaim"]
            || v["persistentVolumeClaim"]["claimName"] != opts.claim.as_str()
        {
            out.push(format!(
                "spec.volumes[{name}]: Forbidden: only the claim {}",
                opts.claim
            ));
        }
    }
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        out.push("spec.containers: Required value".into());
    }
    for c in &containers {
        let cn = c["name"].as_str().unwrap_or_default();
        let at = |k: &str| format!("spec.containers[{cn}].{k}");
        if !is_dns_label(cn) {
            out.push(at("name: Invalid value"));
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            out.push(at("image: Required value"));
        }
        if c["command"].as_array().is_none_or(Vec::is_empty) {
            out.push(at("command: Required value"));
        }
        if effective(pod, c, "runAsNonRoot") != true {
            out.push(at("securityContext.runAsNonRoot: must be true"));
        }
        if effective(pod, c, "runAsUser")
            .as_i64()
            .is_none_or(|u| u <= 0)
        {
            out.push(at("securityContext.runAsUser: must be a non-zero uid"));
        }
        if effective(pod, c, "seccompProfile")["type"] != "RuntimeDefault" {
            out.push(at(
                "securityContext.seccompProfile.type: must be RuntimeDefault",
            ));
        }
        let sc = &c["securityContext"];
        if sc["allowPrivilegeEscalation"] != false {
            out.push(at(
                "securityContext.allowPrivilegeEscalation: must be false",
            ));
        }
        if sc["privileged"] == true {
            out.push(at("securityContext.privileged: Forbidden"));
        }
        if sc["readOnlyRootFilesystem"] != true {
            out.push(at("securityContext.readOnlyRootFilesystem: must be true"));
        }
        if !sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        {
            out.push(at("securityContext.capabilities.drop: must contain ALL"));
        }
        if sc["capabilities"]["add"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            out.push(at("securityContext.capabilities.add: Forbidden"));
        }
        if opts.require_memory_limit && c["resources"]["limits"]["memory"].as_str().is_none() {
            out.push(at("resources.limits.memory: Required value"));
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let n = e["name"].as_str().unwrap_or_default();
            if e.get("value").is_some() {
                out.push(at(&format!(
                    "env[{n}].value: Forbidden: every value comes from the Secret"
                )));
            }
            let from = &e["valueFrom"];
            let only_secret = from
                .as_object()
                .is_some_and(|o| o.len() == 1 && o.contains_key("secretKeyRef"));
            if !only_secret
                || from["secretKeyRef"]["name"].as_str().is_none()
                || from["secretKeyRef"]["key"].as_str().is_none()
            {
                out.push(at(&format!(
                    "env[{n}].valueFrom: Required value: a secretKeyRef"
                )));
            }
        }
        if c.get("envFrom").is_some_and(|v| !v.is_null()) {
            out.push(at("envFrom: Forbidden"));
        }
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let mp = m["mountPath"].as_str().unwrap_or_default();
            if !volumes.contains(m["name"].as_str().unwrap_or_default()) {
                out.push(at(&format!("volumeMounts[{mp}].name: Not found")));
            }
            match m["subPath"].as_str() {
                Some(p)
                    if !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|s| s == "..") => {
                }
                _ => out.push(at(&format!(
                    "volumeMounts[{mp}].subPath: Required value: never the whole claim"
                ))),
            }
            if m.get("subPathExpr").is_some_and(|v| !v.is_null()) {
                out.push(at("volumeMounts.subPathExpr: Forbidden"));
            }
        }
    }
    out
}

fn validate_secret(v: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    if v["type"] != "Opaque" {
        out.push("type: must be Opaque".into());
    }
    let mut data: serde_json::Map<String, Value> =
        v["data"].as_object().cloned().unwrap_or_default();
    for (k, val) in v["stringData"].as_object().into_iter().flatten() {
        let s = val.as_str().unwrap_or_default();
        data.insert(
            k.clone(),
            json!(base64::engine::general_purpose::STANDARD.encode(s)),
        );
    }
    for k in data.keys() {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            out.push(format!("data[{k}]: Invalid value: a valid config key"));
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("stringData");
        o.insert("data".into(), Value::Object(data));
    }
    out
}

fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let a: std::net::IpAddr = a.parse().ok()?;
    let p: u8 = p.parse().ok()?;
    (p <= if a.is_ipv4() { 32 } else { 128 }).then_some((a, p))
}

fn cidr_contains(outer: (std::net::IpAddr, u8), ip: std::net::IpAddr) -> bool {
    match (outer.0, ip) {
        (std::net::IpAddr::V4(o), std::net::IpAddr::V4(i)) => {
            let m = if outer.1 == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(outer.1))
            };
            u32::from(o) & m == u32::from(i) & m
        }
        (std::net::IpAddr::V6(o), std::net::IpAddr::V6(i)) => {
            let m = if outer.1 == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(outer.1))
            };
            u128::from(o) & m == u128::from(i) & m
        }
        _ => false,
    }
}

fn validate_policy(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &v["spec"];
    if !spec["podSelector"].is_object() {
        out.push("spec.podSelector: Required value".into());
    }
    if !spec["policyTypes"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == "Egress"))
    {
        out.push("spec.policyTypes: must contain Egress".into());
    }
    let metadata: std::net::IpAddr = "169.254.169.254".parse().expect("ip");
    for rule in spec["egress"].as_array().into_iter().flatten() {
        for port in rule["ports"].as_array().into_iter().flatten() {
            if !["TCP", "UDP", "SCTP"].contains(&port["protocol"].as_str().unwrap_or("TCP")) {
                out.push("spec.egress.ports.protocol: Unsupported value".into());
            }
            let number = port["port"].as_i64();
            if !port["port"].is_null() && !number.is_some_and(|p| (1..=65535).contains(&p)) {
                out.push("spec.egress.ports.port: Invalid value: must be 1-65535".into());
            }
        }
        for peer in rule["to"].as_array().into_iter().flatten() {
            let b = &peer["ipBlock"];
            if b.is_null() {
                continue;
            }
            let Some(c) = b["cidr"].as_str().and_then(parse_cidr) else {
                out.push("spec.egress.to.ipBlock.cidr: Invalid value".into());
                continue;
            };
            let mut excepted = false;
            for e in b["except"].as_array().into_iter().flatten() {
                match e.as_str().and_then(parse_cidr) {
                    Some(x) if cidr_contains(c, x.0) && x.1 > c.1 => {
                        excepted |= cidr_contains(x, metadata);
                    }
                    _ => out.push("spec.egress.to.ipBlock.except: Invalid value: must be strict subsets of cidr".into()),
                }
            }
            if cidr_contains(c, metadata) && !excepted {
                out.push(format!(
                    "spec.egress.to.ipBlock: Forbidden: {} allows the metadata address",
                    b["cidr"]
                ));
            }
        }
    }
    out
}

// ----------------------------------------------------------------- selectors

enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

pub struct Selector(Vec<Req>);

impl Selector {
    fn matches(&self, v: &Value) -> bool {
        let labels = &v["metadata"]["labels"];
        let get = |k: &str| labels[k].as_str();
        self.0.iter().all(|r| match r {
            Req::Eq(k, x) => get(k) == Some(x.as_str()),
            Req::Ne(k, x) => get(k) != Some(x.as_str()),
            Req::In(k, xs) => get(k).is_some_and(|g| xs.iter().any(|x| x == g)),
            Req::NotIn(k, xs) => get(k).is_none_or(|g| !xs.iter().any(|x| x == g)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

fn parse_selector(s: &str) -> Result<Selector, String> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        terms.push(cur);
    }
    let bad = |t: &str| format!("unable to parse requirement: {t:?}");
    let set = |t: &str, rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| bad(t))?;
        let vals: Vec<String> = inner.split(',').map(|x| x.trim().to_string()).collect();
        if vals.iter().any(|v| v.is_empty() || !is_label_value(v)) {
            return Err(bad(t));
        }
        Ok(vals)
    };
    let mut reqs = Vec::new();
    for t in terms {
        let t = t.trim();
        let req = if let Some((k, rest)) = t.split_once(" notin ") {
            Req::NotIn(k.trim().into(), set(t, rest)?)
        } else if let Some((k, rest)) = t.split_once(" in ") {
            Req::In(k.trim().into(), set(t, rest)?)
        } else if let Some((k, x)) = t.split_once("!=") {
            Req::Ne(k.trim().into(), x.trim().into())
        } else if let Some((k, x)) = t.split_once("==").or_else(|| t.split_once('=')) {
            Req::Eq(k.trim().into(), x.trim().into())
        } else if let Some(k) = t.strip_prefix('!') {
            Req::NotExists(k.trim().into())
        } else {
            Req::Exists(t.into())
        };
        let key = match &req {
            Req::Eq(k, _)
            | Req::Ne(k, _)
            | Req::In(k, _)
            | Req::NotIn(k, _)
            | Req::Exists(k)
            | Req::NotExists(k) => k,
        };
        if !is_label_key(key) {
            return Err(bad(t));
        }
        if let Req::Eq(_, x) | Req::Ne(_, x) = &req {
            if !is_label_value(x) {
                return Err(bad(t));
            }
        }
        reqs.push(req);
    }
    Ok(Selector(reqs))
}

// ------------------------------------------------------------------- helpers

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Now as RFC 3339 (UTC, seconds).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
