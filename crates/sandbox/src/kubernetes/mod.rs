//! The Kubernetes backend: one Pod per sandboxed process, through the
//! Kubernetes API (`kube`, rustls, one API version).
//!
//! **Only tested against the in-process fake API server of
//! `crates/sandbox/tests/kubernetes/`, not against a real cluster.**
//!
//! # Objects
//!
//! Each [`Sandbox::spawn`] makes, in the configured namespace, a Pod, a Secret
//! and (with `network_policy`) a NetworkPolicy, all named
//! `errand-<run>-<random>` and labelled `errand.managed=true`,
//! `errand.run=<spec.name>`, `errand.scope=<installation>` (the scope as a label
//! value: itself when it is a valid one, else `h-` and a hash of it; the whole
//! scope is in the `errand.scope` annotation) and `errand.pod=<name>`.
//!
//! The order is **Secret, NetworkPolicy, Pod, then a merge patch** giving the
//! Secret and the NetworkPolicy an `ownerReferences` entry pointing at the
//! Pod: the Pod starts with its Secret in place (no `CreateContainerConfigError`
//! window) and its egress already restricted; Kubernetes' garbage collector
//! deletes both with the Pod, and errand deletes all three itself when the
//! process ends. A crash between two steps leaves labelled objects that
//! [`KubernetesSandbox::cleanup_orphans`] removes.
//!
//! # The Pod
//!
//! `restartPolicy: Never`, `activeDeadlineSeconds` (a backstop: the runner
//! kills on its own timeout first), `automountServiceAccountToken: false`,
//! `enableServiceLinks: false` (nothing errand did not name enters the
//! environment), no host namespaces, and every process as [`AGENT_UID`]:
//! pod `securityContext` {runAsNonRoot, runAsUser/runAsGroup/fsGroup 10001,
//! seccomp `RuntimeDefault`}; the container's {allowPrivilegeEscalation false,
//! readOnlyRootFilesystem, capabilities drop ALL, privileged false}. Memory and
//! CPU limits (requests equal to them) come from [`Limits`](crate::Limits); Kubernetes has no
//! per-pod process limit, so `max_pids` is reported as a notice (the kubelet's
//! `--pod-max-pids` is the cluster-wide equivalent). The command and its
//! arguments are escaped (`$` → `$$`) so Kubernetes' `$(VAR)` expansion leaves
//! them as given.
//!
//! # Files
//!
//! The cluster's nodes cannot see errand's disk, so the run directories live
//! on a shared ReadWriteMany volume: the PersistentVolumeClaim `runs_claim`,
//! which errand's worker mounts at `runs_root` (its `ERRAND_HOME`, where
//! `runs/<id>/{workspace,home,tmp}` and the harness cache are). The workspace,
//! HOME, `/tmp` and every read-only mount must lie strictly under that root; each
//! becomes a `volumeMounts` entry of the one claim with a `subPath` (read-only
//! for the read-only mounts). A path elsewhere, or one that reaches the root
//! through a symbolic link, is a [`SandboxError::Setup`] before any API call.
//! There are no hostPath volumes. errand's worker should run as [`AGENT_UID`]
//! too (as `deploy/kubernetes/errand.yaml` does), so the files it creates are
//! the agent's; a root errand gets a notice saying so (unlike the Docker
//! backend, this one does not chown the run's files).
//!
//! # Secrets
//!
//! The whole environment goes into the per-spawn Secret (key = the variable's
//! name, or `env-<n>` for names a Secret key cannot be), and the container's
//! `env` only refers to it (`valueFrom.secretKeyRef`): no value is in the Pod
//! spec, which anyone who may read pods could see.
//!
//! # Network
//!
//! With `network_policy`, a NetworkPolicy selects the Pod (`errand.pod`),
//! denies all ingress, and allows egress only to the `egress` entries (CIDRs,
//! addresses, or host names resolved to /32 and /128 at spawn time), to the
//! cluster DNS (pods labelled `k8s-app=kube-dns`, UDP and TCP 53) and, for a
//! [`crate::NetworkPolicy::Isolated`] spawn, to the run's allowlist
//! ([`allowlist_destinations`]): by address, names resolved at spawn time, an
//! entry's `:port` as that TCP port, `*` as every address; `*.suffix` entries
//! and loopback destinations cannot be expressed and are skipped with a notice,
//! a name that does not resolve fails the spawn. There is no egress proxy.
//! Cloud metadata and credential endpoints ([`METADATA`]: 169.254.169.254 and
//! the ECS/EKS ones) are never allowed: a broader block gets them as `except`,
//! an entry inside one of them is dropped with a notice. Enforcement needs a CNI
//! that implements NetworkPolicy. Without `network_policy` the Pod has the
//! namespace's network, whatever the run's allowlist says.
//!
//! # Output and exit
//!
//! Kubernetes keeps one log per container, stdout and stderr merged: the
//! process's stdout stream is that log (`follow=true`, opened once the
//! container has started), and its stderr stream is always empty: what the
//! process writes to stderr reaches errand as stdout lines (a harness's parser
//! keeps what it does not understand as raw events). The log lives on the node
//! and is subject to the kubelet's rotation (`containerLogMaxSize`, 10 MiB by
//! default), so output written much faster than errand reads it can be cut.
//! Waiting polls the Pod (backing off to `poll`; a watch would need more of the
//! API for little gain) until its container has terminated; [`ExitInfo`](crate::ExitInfo)
//! comes from `state.terminated` (`exitCode`, `signal`, 128+N as signal N,
//! `reason: OOMKilled`), a Pod ended by its deadline (`reason:
//! DeadlineExceeded`) as signal 9. A container that cannot start (image pull,
//! configuration) within `start_timeout` of the spawn ends the stdout stream
//! and fails the wait. Killing deletes the Pod with `gracePeriodSeconds: 0`,
//! and its Secret and NetworkPolicy; after a wait all three are deleted too.

mod manifest;
mod netpol;
mod pod;

pub use manifest::{escape_expansion, label_value};
pub use netpol::{allowlist_destinations, egress_blocks, Allowed, Cidr};
pub use pod::{pod_outcome, PodOutcome};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams};
use kube::Client;

use crate::docker::AGENT_UID;
use crate::{CommandLine, Sandbox, SandboxError, SandboxProcess, SandboxSpec};
use manifest::{check_resolved, has_dots, is_dns_label, is_dns_subdomain, object_name};
use netpol::{loopback_urls, parse_destination};
use pod::KubernetesProcess;

/// The container's name inside each Pod.
pub const CONTAINER: &str = "agent";

/// The Pod's one volume: the runs claim.
const VOLUME: &str = "runs";

/// Addresses no agent may reach, whatever `egress` says: cloud instance
/// metadata (AWS, GCP, Azure, OpenStack: 169.254.169.254; AWS IPv6
/// fd00:ec2::254) and the ECS task and EKS Pod Identity credential endpoints.
pub const METADATA: &[&str] = &[
    "169.254.169.254/32",
    "169.254.170.2/32",
    "169.254.170.23/32",
    "fd00:ec2::254/128",
    "fd00:ec2::23/128",
];

/// Every API call the backend makes, as (API group, resource, verbs): what
/// `deploy/kubernetes/rbac.yaml`'s Role grants, no more (checked by the tests).
pub const API_CALLS: &[(&str, &str, &[&str])] = &[
    ("", "namespaces", &["get"]),
    ("", "persistentvolumeclaims", &["get"]),
    ("", "pods", &["create", "get", "list", "delete"]),
    ("", "pods/log", &["get"]),
    (
        "",
        "secrets",
        &["create", "patch", "delete", "deletecollection"],
    ),
    (
        "networking.k8s.io",
        "networkpolicies",
        &["create", "patch", "delete", "deletecollection"],
    ),
];

/// How Pods are made.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// The namespace every object goes into.
    pub namespace: String,
    /// The agent image.
    pub image: String,
    /// The ReadWriteMany PersistentVolumeClaim holding the run directories.
    pub runs_claim: String,
    /// Where errand sees that claim (its `ERRAND_HOME`).
    pub runs_root: PathBuf,
    /// Whether each Pod gets a NetworkPolicy restricting its egress to `egress`.
    pub network_policy: bool,
    /// CIDRs, addresses or host names the agent may reach (with `network_policy`).
    pub egress: Vec<String>,
    /// Marks the objects of one errand installation, so orphan clean-up never
    /// touches another installation's.
    pub scope: String,
    /// The Pod's `activeDeadlineSeconds`.
    pub deadline_secs: u64,
    /// How often a Pod's state is read while waiting.
    pub poll: Duration,
    /// How long a container may fail to start (image pull, configuration)
    /// before the wait gives up.
    pub start_timeout: Duration,
}

/// `errand-runs`: the claim `deploy/kubernetes/storage.yaml` makes.
pub const DEFAULT_CLAIM: &str = "errand-runs";

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            namespace: "errand".into(),
            image: crate::docker::default_image(),
            runs_claim: DEFAULT_CLAIM.into(),
            runs_root: PathBuf::from("/var/lib/errand"),
            network_policy: false,
            egress: Vec::new(),
            scope: "default".into(),
            deadline_secs: 3 * 3600,
            poll: Duration::from_secs(1),
            start_timeout: Duration::from_secs(300),
        }
    }
}

impl KubernetesConfig {
    /// Problems with the configuration, each as a sentence.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !is_dns_label(&self.namespace) {
            out.push(format!(
                "sandbox.kubernetes_namespace '{}' is not a namespace name (lowercase letters, digits and '-')",
                self.namespace
            ));
        }
        if self.image.trim().is_empty() {
            out.push("sandbox.kubernetes_image is empty".into());
        }
        if !is_dns_subdomain(&self.runs_claim) {
            out.push(format!(
                "sandbox.kubernetes_runs_claim '{}' is not a claim name",
                self.runs_claim
            ));
        }
        if !self.runs_root.is_absolute() || has_dots(&self.runs_root) {
            out.push(format!(
                "sandbox.kubernetes_runs_root '{}' is not an absolute path",
                self.runs_root.display()
            ));
        }
        for e in &self.egress {
            if parse_destination(e).is_none() {
                out.push(format!(
                    "sandbox.kubernetes_egress entry '{e}' is not a CIDR, an address or a host name"
                ));
            }
        }
        if self.deadline_secs == 0 {
            out.push(
                "sandbox.kubernetes_deadline_secs is 0: every Pod would be stopped at once".into(),
            );
        }
        out
    }
}

fn unreachable(source: &str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Unavailable(format!(
        "the Kubernetes API is not reachable with {source} ({e}): set KUBECONFIG (or \
         ~/.kube/config) to a cluster errand may use, or run errand in the cluster with the \
         service account of deploy/kubernetes/rbac.yaml"
    ))
}

fn api_error(what: &str, e: kube::Error) -> SandboxError {
    SandboxError::Setup(format!("{what}: {e}"))
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// Where `Client::try_default` takes its configuration from, for messages.
fn inferred_source() -> String {
    if let Some(k) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return format!("the kubeconfig {} (KUBECONFIG)", k.to_string_lossy());
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".kube/config");
        if p.exists() {
            return format!("the kubeconfig {}", p.display());
        }
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return "the in-cluster service account".into();
    }
    "no configuration (neither KUBECONFIG, ~/.kube/config nor an in-cluster service account)".into()
}

/// The Kubernetes backend: one Pod per sandboxed process (see the module).
pub struct KubernetesSandbox {
    config: KubernetesConfig,
    client: tokio::sync::OnceCell<Client>,
    /// Which configuration the client came from, for error messages.
    source: std::sync::Mutex<String>,
}

impl KubernetesSandbox {
    /// Nothing is contacted until the first use; the client is configured the
    /// way kubectl is (`KUBECONFIG`, `~/.kube/config`, else in-cluster).
    pub fn new(config: KubernetesConfig) -> Self {
        KubernetesSandbox {
            config,
            client: tokio::sync::OnceCell::new(),
            source: std::sync::Mutex::new(inferred_source()),
        }
    }

    /// With a client made elsewhere (tests, or an explicit configuration).
    pub fn with_client(client: Client, config: KubernetesConfig) -> Self {
        KubernetesSandbox {
            config,
            client: tokio::sync::OnceCell::new_with(Some(client)),
            source: std::sync::Mutex::new("the given client".into()),
        }
    }

    /// Talks to the API server at `url` without authentication (plain HTTP
    /// works): for tests and `kubectl proxy`.
    pub fn at_url(url: &str, config: KubernetesConfig) -> Result<Self, SandboxError> {
        let uri = url
            .parse()
            .map_err(|e| SandboxError::Setup(format!("'{url}' is not a URL: {e}")))?;
        let mut kc = kube::Config::new(uri);
        kc.default_namespace = config.namespace.clone();
        let client = Client::try_from(kc)
            .map_err(|e| SandboxError::Setup(format!("no client for {url}: {e}")))?;
        let sb = Self::with_client(client, config);
        *sb.source.lock().unwrap_or_else(|p| p.into_inner()) = format!("the API server {url}");
        Ok(sb)
    }

    /// Its configuration.
    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    fn source(&self) -> String {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn client(&self) -> Result<Client, SandboxError> {
        self.client
            .get_or_try_init(|| async {
                Client::try_default()
                    .await
                    .map_err(|e| unreachable(&self.source(), e))
            })
            .await
            .cloned()
    }

    fn api<K>(&self, client: Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(client, &self.config.namespace)
    }

    /// The labels of every object of a run.
    fn labels(&self, run: &str, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("errand.managed".to_string(), "true".to_string()),
            ("errand.run".to_string(), label_value(run)),
            ("errand.scope".to_string(), label_value(&self.config.scope)),
            ("errand.pod".to_string(), name.to_string()),
        ])
    }

    fn metadata(&self, run: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.config.namespace.clone()),
            labels: Some(self.labels(run, name)),
            annotations: Some(BTreeMap::from([(
                "errand.scope".to_string(),
                self.config.scope.clone(),
            )])),
            ..Default::default()
        }
    }

    /// The label selector of this installation's objects.
    fn scope_selector(&self) -> String {
        format!(
            "errand.managed=true,errand.scope={}",
            label_value(&self.config.scope)
        )
    }

    /// Deletes every Pod of this installation (`errand.scope`) whose run is not
    /// in `live`, and such Secrets and NetworkPolicies: what a killed errand left
    /// behind. Returns what it deleted, as `pod/NAME` (Secrets and
    /// NetworkPolicies are deleted by label, unnamed).
    pub async fn cleanup_orphans(&self, live: &[String]) -> Result<Vec<String>, SandboxError> {
        let client = self.client().await?;
        let live: Vec<String> = live.iter().map(|r| label_value(r)).collect();
        let pods: Api<Pod> = self.api(client.clone());
        let list = pods
            .list(&ListParams::default().labels(&self.scope_selector()))
            .await
            .map_err(|e| api_error("listing errand's pods failed", e))?;
        let mut removed = Vec::new();
        for pod in list.items {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let run = labels.get("errand.run").cloned().unwrap_or_default();
            if live.contains(&run) {
                continue;
            }
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            match pods.delete(&name, &delete_now()).await {
                Ok(_) => removed.push(format!("pod/{name}")),
                Err(e) if is_not_found(&e) => {}
                Err(e) => tracing::warn!("deleting pod {name} failed: {e}"),
            }
        }
        // Secrets and policies by label: errand never needs to read Secrets back.
        let mut selector = self.scope_selector();
        if !live.is_empty() {
            selector.push_str(&format!(",errand.run notin ({})", live.join(",")));
        }
        let lp = ListParams::default().labels(&selector);
        let secrets: Api<Secret> = self.api(client.clone());
        secrets
            .delete_collection(&DeleteParams::background(), &lp)
            .await
            .map_err(|e| api_error("deleting errand's stray secrets failed", e))?;
        if self.config.network_policy {
            let policies: Api<NetworkPolicy> = self.api(client);
            policies
                .delete_collection(&DeleteParams::background(), &lp)
                .await
                .map_err(|e| api_error("deleting errand's stray network policies failed", e))?;
        }
        Ok(removed)
    }
}

/// Deletes at once, without a grace period.
fn delete_now() -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::background()
    }
}

#[async_trait]
impl Sandbox for KubernetesSandbox {
    fn allowlists_by_address(&self) -> bool {
        self.config.network_policy
    }

    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// The API is reachable, the namespace and the runs claim exist.
    async fn check(&self) -> Result<(), SandboxError> {
        let client = self.client().await?;
        let source = self.source();
        let ns = &self.config.namespace;
        match Api::<Namespace>::all(client.clone()).get(ns).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                return Err(SandboxError::Unavailable(format!(
                    "the namespace {ns} does not exist in the cluster of {source}: \
                     kubectl apply -f deploy/kubernetes/namespace.yaml, or set sandbox.kubernetes_namespace"
                )))
            }
            Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => {
                return Err(SandboxError::Unavailable(format!(
                    "the Kubernetes API refused errand with {source} ({}): grant the Role of \
                     deploy/kubernetes/rbac.yaml",
                    s.message
                )))
            }
            Err(e) => return Err(unreachable(&source, e)),
        }
        let claims: Api<PersistentVolumeClaim> = self.api(client);
        match claims.get(&self.config.runs_claim).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(SandboxError::Unavailable(format!(
                "the claim {} does not exist in the namespace {ns} (cluster of {source}): \
                 kubectl apply -f deploy/kubernetes/storage.yaml, or set sandbox.kubernetes_runs_claim",
                self.config.runs_claim
            ))),
            Err(e) => Err(api_error(
                &format!("reading the claim {} failed", self.config.runs_claim),
                e,
            )),
        }
    }

    async fn spawn(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
    ) -> Result<SandboxProcess, SandboxError> {
        spec.plain_workspace("kubernetes")?;
        let name = object_name(&spec.name);
        let cmd = &spec.entered(cmd);
        // Every path is checked before anything is created, here or in the cluster.
        let pod = self.pod_spec(spec, cmd, &name)?;
        self.make_dirs(spec)?;
        let isolated = match &spec.network {
            crate::NetworkPolicy::Isolated(egress) => Some(egress),
            crate::NetworkPolicy::Open => None,
        };
        let mut notices = self.notices(spec, isolated.is_some());
        let policy = if self.config.network_policy {
            let (policy, more) = self.policy_for(spec, &name, isolated).await?;
            notices.extend(more);
            Some(policy)
        } else {
            None
        };

        let client = self.client().await?;
        let mut process = KubernetesProcess::new(self, client, &name);
        process
            .create(&self.secret(spec, &name), policy.as_ref(), &pod)
            .await?;
        process.start_logs();
        Ok(SandboxProcess::new(notices, Box::new(process)))
    }
}

impl KubernetesSandbox {
    /// Creates the run's directories and checks that each mounted path is
    /// where the Pod will mount it from, with no symbolic link on the way.
    fn make_dirs(&self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        let mounts = self.mounts(spec)?;
        for dir in [&spec.workspace, &spec.home, &spec.tmp] {
            std::fs::create_dir_all(dir).map_err(|e| {
                SandboxError::Setup(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        for (host, m) in &mounts {
            check_resolved(
                &self.config.runs_root,
                host,
                m.sub_path.as_deref().unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    /// What this backend cannot apply of `spec`, to be recorded on the run.
    fn notices(&self, spec: &SandboxSpec, isolated: bool) -> Vec<String> {
        let mut notices = Vec::new();
        if let Some(p) = spec.limits.max_pids {
            notices.push(format!(
                "the kubernetes sandbox cannot limit the number of processes of one pod (max {p} not \
                 applied; the kubelet's --pod-max-pids applies cluster-wide)"
            ));
        }
        // SAFETY: plain system call.
        if unsafe { libc::geteuid() } == 0 {
            notices.push(format!(
                "errand runs as root, so the run's files are root's and the agent (uid {AGENT_UID}) \
                 may not write them: run errand as uid {AGENT_UID} (deploy/kubernetes/errand.yaml does)"
            ));
        }
        let vars = loopback_urls(&spec.env);
        if !vars.is_empty() {
            notices.push(format!(
                "{} point(s) at a loopback address, which in a pod is the pod itself: use an \
                 address the cluster can reach",
                vars.join(", ")
            ));
        }
        if isolated {
            notices.push(if self.config.network_policy {
                "the kubernetes sandbox has no egress proxy: the run's egress allowlist is \
                 enforced by the pod's NetworkPolicy, by address (host names resolved at start, \
                 *.suffix entries skipped), with sandbox.kubernetes_egress"
                    .into()
            } else {
                "the kubernetes sandbox has no egress proxy and no NetworkPolicy: the pod has the \
                 namespace's network, not the run's egress allowlist (enable \
                 sandbox.kubernetes_network_policy to enforce it)"
                    .into()
            });
        }
        notices
    }

    /// The NetworkPolicy of Pod `name`: `sandbox.kubernetes_egress` and, when
    /// `isolated`, its allowlist; with notices for what it skipped or dropped.
    async fn policy_for(
        &self,
        spec: &SandboxSpec,
        name: &str,
        isolated: Option<&crate::Egress>,
    ) -> Result<(NetworkPolicy, Vec<String>), SandboxError> {
        let mut notices = Vec::new();
        let mut allowed: Vec<Allowed> = self
            .resolve_egress()
            .await?
            .into_iter()
            .map(|cidr| Allowed { cidr, port: None })
            .collect();
        if let Some(egress) = isolated {
            let (more, skipped) = allowlist_destinations(&egress.allow).await?;
            allowed.extend(more);
            notices.extend(skipped);
        }
        let (policy, dropped) = self.network_policy(&spec.name, name, &allowed);
        notices.extend(dropped);
        Ok((policy, notices))
    }
}

#[cfg(test)]
mod testing {
    use std::path::{Path, PathBuf};

    use super::{KubernetesConfig, KubernetesSandbox};
    use crate::{paths, Limits, SandboxSpec};

    pub(super) fn spec(root: &Path) -> SandboxSpec {
        SandboxSpec {
            name: "r1".into(),
            workspace: root.join("runs/r1/workspace"),
            home: root.join("runs/r1/home"),
            tmp: root.join("runs/r1/tmp"),
            ro_mounts: vec![(root.join("cache/h/1"), PathBuf::from(paths::HARNESS))],
            env: vec![
                ("TOKEN".into(), "s3cret".into()),
                ("PATH".into(), "/bin".into()),
            ],
            limits: Limits {
                memory_bytes: Some(1 << 30),
                max_pids: None,
                cpus: Some(1.5),
                lifetime_secs: None,
            },
            network: Default::default(),
            entry: Vec::new(),
            layers: None,
        }
    }

    pub(super) fn sandbox() -> KubernetesSandbox {
        KubernetesSandbox::new(KubernetesConfig {
            runs_root: PathBuf::from("/data/errand"),
            scope: "/data/errand".into(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems() {
        let mut c = KubernetesConfig::default();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        c.namespace = "Bad_NS".into();
        c.runs_root = PathBuf::from("relative");
        c.egress = vec![
            "0.0.0.0/0".into(),
            "api.example.com".into(),
            "not a host".into(),
        ];
        assert_eq!(c.problems().len(), 3, "{:?}", c.problems());
    }
}
