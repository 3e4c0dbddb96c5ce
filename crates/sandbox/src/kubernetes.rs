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
//! CPU limits (requests equal to them) come from [`Limits`]; Kubernetes has no
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
//! API for little gain) until its container has terminated; [`ExitInfo`]
//! comes from `state.terminated` (`exitCode`, `signal`, 128+N as signal N,
//! `reason: OOMKilled`), a Pod ended by its deadline (`reason:
//! DeadlineExceeded`) as signal 9. A container that cannot start (image pull,
//! configuration) within `start_timeout` of the spawn ends the stdout stream
//! and fails the wait. Killing deletes the Pod with `gracePeriodSeconds: 0`,
//! and its Secret and NetworkPolicy; after a wait all three are deleted too.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::AsyncReadExt as _;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, Namespace, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, Secret, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::Client;
use tokio::io::AsyncWriteExt;

use crate::docker::AGENT_UID;
use crate::egress::{canonical, is_loopback, refused_address, AllowEntry, Pattern};
use crate::{
    paths, CommandLine, ExitInfo, Limits, OutputStream, ProcessHandle, Sandbox, SandboxError,
    SandboxProcess, SandboxSpec,
};

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

    /// `path` relative to the runs root, checked without touching the disk:
    /// absolute, no `..`, strictly under the root.
    fn sub_path(&self, what: &str, path: &Path) -> Result<String, SandboxError> {
        let root = &self.config.runs_root;
        let outside = || {
            SandboxError::Setup(format!(
                "{what} {} is not under the Kubernetes runs root {} (sandbox.kubernetes_runs_root, \
                 where errand mounts the claim {}): the cluster's nodes cannot see any other path",
                path.display(),
                root.display(),
                self.config.runs_claim
            ))
        };
        if !path.is_absolute() || has_dots(path) {
            return Err(outside());
        }
        let rel = path.strip_prefix(root).map_err(|_| outside())?;
        let rel: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if rel.is_empty() {
            return Err(outside());
        }
        Ok(rel.join("/"))
    }

    /// The volume mounts of `spec`: (host path, mount).
    fn mounts(&self, spec: &SandboxSpec) -> Result<Vec<(PathBuf, VolumeMount)>, SandboxError> {
        let mount = |what: &str, host: &Path, inside: &str, read_only: bool| {
            Ok::<_, SandboxError>((
                host.to_path_buf(),
                VolumeMount {
                    name: VOLUME.into(),
                    mount_path: inside.to_string(),
                    sub_path: Some(self.sub_path(what, host)?),
                    read_only: Some(read_only),
                    ..Default::default()
                },
            ))
        };
        let mut out = vec![
            mount("the workspace", &spec.workspace, paths::WORKSPACE, false)?,
            mount("HOME", &spec.home, paths::HOME, false)?,
            mount("/tmp", &spec.tmp, "/tmp", false)?,
        ];
        for (host, inside) in &spec.ro_mounts {
            let inside = inside.to_string_lossy();
            if !inside.starts_with('/') {
                return Err(SandboxError::Setup(format!(
                    "the mount point {inside} is not an absolute path"
                )));
            }
            out.push(mount("the read-only mount", host, &inside, true)?);
        }
        Ok(out)
    }

    /// The Pod for `spec` and `cmd`, named `name`: what [`Sandbox::spawn`]
    /// creates. Paths are checked (see the module docs) without touching the disk.
    pub fn pod_spec(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
        name: &str,
    ) -> Result<Pod, SandboxError> {
        let mounts = self.mounts(spec)?.into_iter().map(|(_, m)| m).collect();
        let env = secret_keys(&spec.env)
            .into_iter()
            .map(|(var, key, _)| EnvVar {
                name: var,
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: name.to_string(),
                        key,
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            })
            .collect();
        let uid = i64::from(AGENT_UID);
        let container = Container {
            name: CONTAINER.into(),
            image: Some(self.config.image.clone()),
            command: Some(vec![escape_expansion(&cmd.program)]),
            args: Some(cmd.args.iter().map(|a| escape_expansion(a)).collect()),
            working_dir: Some(cmd.cwd.clone().unwrap_or_else(|| paths::WORKSPACE.into())),
            env: Some(env),
            volume_mounts: Some(mounts),
            resources: resources(&spec.limits),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                privileged: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                run_as_user: Some(uid),
                run_as_group: Some(uid),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            stdin: Some(false),
            tty: Some(false),
            termination_message_policy: Some("File".into()),
            ..Default::default()
        };
        Ok(Pod {
            metadata: self.metadata(&spec.name, name),
            spec: Some(PodSpec {
                containers: vec![container],
                restart_policy: Some("Never".into()),
                active_deadline_seconds: Some(
                    i64::try_from(self.config.deadline_secs).unwrap_or(i64::MAX),
                ),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                host_network: Some(false),
                host_pid: Some(false),
                host_ipc: Some(false),
                share_process_namespace: Some(false),
                hostname: Some("errand-sandbox".into()),
                termination_grace_period_seconds: Some(5),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(uid),
                    run_as_group: Some(uid),
                    fs_group: Some(uid),
                    seccomp_profile: Some(runtime_default()),
                    ..Default::default()
                }),
                volumes: Some(vec![Volume {
                    name: VOLUME.into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: self.config.runs_claim.clone(),
                        read_only: Some(false),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        })
    }

    /// The Secret holding the whole environment of `spec`, named `name`.
    pub fn secret(&self, spec: &SandboxSpec, name: &str) -> Secret {
        Secret {
            metadata: self.metadata(&spec.name, name),
            type_: Some("Opaque".into()),
            immutable: Some(true),
            string_data: Some(
                secret_keys(&spec.env)
                    .into_iter()
                    .map(|(_, key, value)| (key, value))
                    .collect(),
            ),
            data: None,
        }
    }

    /// The NetworkPolicy of Pod `name`, allowing egress to `allowed` (and DNS):
    /// one rule per port (all ports first), never [`METADATA`]; with the
    /// notices for entries it dropped.
    pub fn network_policy(
        &self,
        run: &str,
        name: &str,
        allowed: &[Allowed],
    ) -> (NetworkPolicy, Vec<String>) {
        let mut by_port: BTreeMap<Option<u16>, Vec<Cidr>> = BTreeMap::new();
        for a in allowed {
            let cidrs = by_port.entry(a.port).or_default();
            if !cidrs.contains(&a.cidr) {
                cidrs.push(a.cidr);
            }
        }
        let mut egress = vec![NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "k8s-app".to_string(),
                        "kube-dns".to_string(),
                    )])),
                    ..Default::default()
                }),
                ip_block: None,
            }]),
            ports: Some(
                ["UDP", "TCP"]
                    .iter()
                    .map(|p| NetworkPolicyPort {
                        port: Some(IntOrString::Int(53)),
                        protocol: Some((*p).into()),
                        end_port: None,
                    })
                    .collect(),
            ),
        }];
        let mut notices: Vec<String> = Vec::new();
        for (port, cidrs) in by_port {
            let (blocks, dropped) = egress_blocks(&cidrs);
            for n in dropped {
                if !notices.contains(&n) {
                    notices.push(n);
                }
            }
            if blocks.is_empty() {
                continue;
            }
            egress.push(NetworkPolicyEgressRule {
                to: Some(
                    blocks
                        .into_iter()
                        .map(|ip_block| NetworkPolicyPeer {
                            ip_block: Some(ip_block),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ports: port.map(|p| {
                    vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(i32::from(p))),
                        protocol: Some("TCP".into()),
                        end_port: None,
                    }]
                }),
            });
        }
        let policy = NetworkPolicy {
            metadata: self.metadata(run, name),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "errand.pod".to_string(),
                        name.to_string(),
                    )])),
                    ..Default::default()
                }),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: None,
                egress: Some(egress),
            }),
        };
        (policy, notices)
    }

    /// `egress` as CIDRs, host names resolved now.
    async fn resolve_egress(&self) -> Result<Vec<Cidr>, SandboxError> {
        let mut out = Vec::new();
        for entry in &self.config.egress {
            match parse_destination(entry) {
                Some(Destination::Cidr(c)) => out.push(c),
                Some(Destination::Host(h)) => {
                    let addrs = tokio::net::lookup_host((h.as_str(), 443))
                        .await
                        .map_err(|e| {
                            SandboxError::Setup(format!(
                                "cannot resolve the egress host {h} (sandbox.kubernetes_egress): {e}"
                            ))
                        })?;
                    for a in addrs {
                        let c = Cidr::host(a.ip());
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
                None => {
                    return Err(SandboxError::Setup(format!(
                        "sandbox.kubernetes_egress entry '{entry}' is not a CIDR, an address or a host name"
                    )))
                }
            }
        }
        Ok(out)
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

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn resources(limits: &Limits) -> Option<ResourceRequirements> {
    let mut map = BTreeMap::new();
    if let Some(m) = limits.memory_bytes {
        map.insert("memory".to_string(), Quantity(m.to_string()));
    }
    if let Some(c) = limits.cpus.filter(|c| *c > 0.0) {
        let milli = ((c * 1000.0).round() as u64).max(1);
        map.insert("cpu".to_string(), Quantity(format!("{milli}m")));
    }
    (!map.is_empty()).then(|| ResourceRequirements {
        limits: Some(map.clone()),
        requests: Some(map),
        claims: None,
    })
}

/// Kubernetes expands `$(VAR)` in a container's command and arguments and
/// turns `$$` into `$`: doubling every `$` keeps the text as given.
pub fn escape_expansion(s: &str) -> String {
    s.replace('$', "$$")
}

/// (variable, Secret key, value) for each variable, the last of duplicates winning.
fn secret_keys(env: &[(String, String)]) -> Vec<(String, String, String)> {
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (k, _)) in env.iter().enumerate() {
        last.insert(k, i);
    }
    env.iter()
        .enumerate()
        .filter(|(i, (k, _))| last.get(k.as_str()) == Some(i))
        .map(|(i, (k, v))| {
            let valid = !k.is_empty()
                && k.len() <= 253
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
            let key = if valid { k.clone() } else { format!("env-{i}") };
            (k.clone(), key, v.clone())
        })
        .collect()
}

fn has_dots(p: &Path) -> bool {
    p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// `s` as a label value: itself when it is one, else `h-` and a hash of it.
pub fn label_value(s: &str) -> String {
    if is_label_value(s) {
        return s.to_string();
    }
    // FNV-1a: stable across Rust releases, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("h-{h:016x}")
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// `errand-<run>-<8 random hex digits>`: a DNS label (Pod, Secret, policy and
/// label value at once). Random, as workers in different Pods share pids.
fn object_name(run: &str) -> String {
    let run: String = run
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let run = run.trim_matches('-');
    let mut bytes = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    let n = if random {
        u32::from_le_bytes(bytes)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        (t as u32)
            ^ std::process::id().rotate_left(16)
            ^ (SEQ.fetch_add(1, Ordering::Relaxed) as u32)
    };
    if run.is_empty() {
        format!("errand-{n:08x}")
    } else {
        format!("errand-{run}-{n:08x}")
    }
}

/// An address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    /// `a.b.c.d/n`, `x::y/n` or a bare address; host bits are cleared.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && self.prefix <= other.prefix
            && mask(other.addr, self.prefix) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

enum Destination {
    Cidr(Cidr),
    Host(String),
}

fn parse_destination(s: &str) -> Option<Destination> {
    let s = s.trim();
    if let Some(c) = Cidr::parse(s) {
        return Some(Destination::Cidr(c));
    }
    let host_like = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && !s.chars().all(|c| c.is_ascii_digit() || c == '.');
    host_like.then(|| Destination::Host(s.to_ascii_lowercase()))
}

/// A destination a Pod may reach: an address block, on one TCP port or on any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    pub cidr: Cidr,
    /// `None`: every port and protocol.
    pub port: Option<u16>,
}

/// How long resolving one allowlisted name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(15);

/// The run's egress allowlist ([`crate::Egress::allow`], parsed as the egress
/// proxy parses it) as destinations a NetworkPolicy can allow, with a notice
/// for each entry or address skipped. A host name is resolved now, to /32 and
/// /128 blocks; an address is its block; `*` is `0.0.0.0/0` and `::/0`
/// (less loopback, link-local and [`crate::egress::INTERNAL`], see [`egress_blocks`]); an
/// entry's `:port` limits it to that TCP port. Skipped: `*.suffix` (a
/// NetworkPolicy has no names), loopback (in a pod, the pod itself), and what
/// the proxy refuses too (link-local, metadata: a name's addresses always, an
/// address unless allowlisted with its port; [`egress_blocks`] drops
/// [`METADATA`] in any case). A name that does not resolve, or an entry that
/// does not parse, is a [`SandboxError::Setup`].
pub async fn allowlist_destinations(
    allow: &[String],
) -> Result<(Vec<Allowed>, Vec<String>), SandboxError> {
    fn add(out: &mut Vec<Allowed>, cidr: Cidr, port: Option<u16>) {
        let a = Allowed { cidr, port };
        if !out.contains(&a) {
            out.push(a);
        }
    }
    let loopback = |entry: &str, what: &str| {
        format!(
            "the egress allowlist entry '{entry}' was skipped: {what} is a loopback address, which \
             in a pod is the pod itself (give the pod an address the cluster can reach)"
        )
    };
    let mut out = Vec::new();
    let mut notices = Vec::new();
    for entry in allow {
        let e = AllowEntry::parse(entry)
            .map_err(|why| SandboxError::Setup(format!("{why} (the run's egress allowlist)")))?;
        let port = e.port();
        match e.pattern() {
            Pattern::Any => {
                for any in ["0.0.0.0/0", "::/0"] {
                    if let Some(c) = Cidr::parse(any) {
                        add(&mut out, c, port);
                    }
                }
            }
            Pattern::Suffix(suffix) => notices.push(format!(
                "the egress allowlist entry '{entry}' was skipped: a NetworkPolicy allows \
                 addresses, not names, so the subdomains of {} cannot be allowed (allowlist each \
                 host, or add their addresses to sandbox.kubernetes_egress)",
                suffix.trim_start_matches('.')
            )),
            Pattern::Ip(ip) => {
                if is_loopback(*ip) {
                    notices.push(loopback(entry, &ip.to_string()));
                } else if let (Some(why), None) = (refused_address(*ip), port) {
                    notices.push(format!(
                        "the egress allowlist entry '{entry}' was skipped: {why}"
                    ));
                } else {
                    add(&mut out, Cidr::host(*ip), port);
                }
            }
            Pattern::Exact(host) => {
                let unresolved = |e: &dyn std::fmt::Display| {
                    SandboxError::Setup(format!(
                        "cannot resolve the egress host {host} (the run's egress allowlist entry \
                         '{entry}'): {e}"
                    ))
                };
                let addrs = tokio::time::timeout(
                    RESOLVE_TIMEOUT,
                    tokio::net::lookup_host((host.as_str(), port.unwrap_or(443))),
                )
                .await
                .map_err(|_| unresolved(&"resolving timed out"))?
                .map_err(|e| unresolved(&e))?;
                let mut loopbacks: Vec<String> = Vec::new();
                for a in addrs {
                    let ip = canonical(a.ip());
                    if is_loopback(ip) {
                        if !loopbacks.contains(&ip.to_string()) {
                            loopbacks.push(ip.to_string());
                        }
                    } else if let Some(why) = refused_address(ip) {
                        notices.push(format!(
                            "the address {ip} of the egress allowlist entry '{entry}' was \
                             skipped: {why}"
                        ));
                    } else {
                        add(&mut out, Cidr::host(ip), port);
                    }
                }
                if !loopbacks.is_empty() {
                    notices.push(loopback(entry, &loopbacks.join(", ")));
                }
            }
        }
    }
    Ok((out, notices))
}

/// The `ipBlock`s allowing `allowed`, never [`METADATA`]; with notices for the
/// entries dropped because they lie inside it.
pub fn egress_blocks(allowed: &[Cidr]) -> (Vec<IPBlock>, Vec<String>) {
    let forbidden: Vec<Cidr> = METADATA.iter().filter_map(|s| Cidr::parse(s)).collect();
    let mut blocks = Vec::new();
    let mut notices = Vec::new();
    for c in allowed {
        if let Some(f) = forbidden.iter().find(|f| f.contains(c)) {
            notices.push(format!(
                "the egress entry {c} was dropped: {f} (cloud metadata or credentials) is never reachable from a sandbox"
            ));
            continue;
        }
        let mut except: Vec<String> = forbidden
            .iter()
            .filter(|f| c.contains(f))
            .map(|f| f.to_string())
            .collect();
        // A wildcard (`*`, the whole address space) leaves out what the egress
        // proxy refuses to wildcards: loopback, link-local, private, CGNAT and
        // reserved ranges. Only an entry naming an address (its own block) opens one.
        if c.prefix == 0 {
            let wild_off = crate::egress::INTERNAL
                .iter()
                .map(|b| Cidr::parse(&format!("{}/{}", b.net, b.len)))
                .chain(
                    ["127.0.0.0/8", "169.254.0.0/16", "::1/128", "fe80::/10"]
                        .iter()
                        .map(|s| Cidr::parse(s)),
                )
                .flatten()
                .filter(|b| c.contains(b))
                .map(|b| b.to_string());
            // The metadata blocks stay listed first, by name, even where a
            // range below covers them too.
            for b in wild_off {
                if !except.contains(&b) {
                    except.push(b);
                }
            }
        }
        blocks.push(IPBlock {
            cidr: c.to_string(),
            except: (!except.is_empty()).then_some(except),
        });
    }
    (blocks, notices)
}

/// Variables that point at this machine's loopback, which a Pod cannot reach.
fn loopback_urls(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .filter(|(_, v)| {
            ["://127.", "://localhost", "://[::1]"]
                .iter()
                .any(|l| v.contains(l))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Where a Pod is, as far as errand cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOutcome {
    /// Not started yet, or running; with the container's waiting reason.
    Pending(Option<String>),
    /// The container has started (it may have ended since).
    Started,
    /// The process ended.
    Exited(ExitInfo),
    /// The Pod failed without running the process to its end: why.
    Failed(String),
}

/// Reasons a container waits for that do not fix themselves quickly.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What `pod`'s status says about its process.
pub fn pod_outcome(pod: &Pod) -> PodOutcome {
    let status = pod.status.clone().unwrap_or_default();
    let container = status.container_statuses.as_ref().and_then(|cs| {
        cs.iter()
            .find(|c| c.name == CONTAINER)
            .or_else(|| cs.first())
            .cloned()
    });
    let state = container.as_ref().and_then(|c| c.state.clone());
    let deadline = status.reason.as_deref() == Some("DeadlineExceeded");
    if let Some(t) = state.as_ref().and_then(|s| s.terminated.as_ref()) {
        if deadline {
            tracing::warn!("a sandbox pod reached its activeDeadlineSeconds and was stopped");
        }
        let oom = t.reason.as_deref() == Some("OOMKilled");
        return PodOutcome::Exited(exit_info(t.exit_code, t.signal, oom));
    }
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if phase == "Failed" || phase == "Succeeded" {
        if deadline {
            tracing::warn!("a sandbox pod reached its activeDeadlineSeconds and was stopped");
            return PodOutcome::Exited(ExitInfo {
                code: None,
                signal: Some(9),
                oom_killed: false,
            });
        }
        let waiting = state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .map(|w| {
                format!(
                    "; the container: {} {}",
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        return PodOutcome::Failed(format!(
            "the pod {phase} before its process ran: {} {}{waiting}",
            status.reason.unwrap_or_default(),
            status.message.unwrap_or_default()
        ));
    }
    if state.as_ref().is_some_and(|s| s.running.is_some()) {
        return PodOutcome::Started;
    }
    PodOutcome::Pending(state.and_then(|s| s.waiting).and_then(|w| w.reason))
}

/// A terminated container's exit: 128+N is signal N, as with Docker.
fn exit_info(code: i32, signal: Option<i32>, oom_killed: bool) -> ExitInfo {
    if let Some(s) = signal.filter(|s| *s > 0) {
        return ExitInfo {
            code: None,
            signal: Some(s),
            oom_killed,
        };
    }
    if (129..=128 + 31).contains(&code) {
        ExitInfo {
            code: None,
            signal: Some(code - 128),
            oom_killed,
        }
    } else {
        ExitInfo {
            code: Some(code),
            signal: None,
            oom_killed,
        }
    }
}

/// `path` must resolve to `root`/`rel` exactly: no symbolic link on the way.
fn check_resolved(root: &Path, path: &Path, rel: &str) -> Result<(), SandboxError> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| SandboxError::Setup(format!("cannot resolve {}: {e}", path.display())))?;
    let root_real = std::fs::canonicalize(root).map_err(|e| {
        SandboxError::Setup(format!(
            "the Kubernetes runs root {} is not usable (is the claim mounted?): {e}",
            root.display()
        ))
    })?;
    if real != root_real.join(rel) {
        return Err(SandboxError::Setup(format!(
            "{} resolves to {}, not to the same place under the runs root {}: no symbolic links \
             on the way to a mounted path",
            path.display(),
            real.display(),
            root.display()
        )));
    }
    Ok(())
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
        let name = object_name(&spec.name);
        let cmd = &spec.entered(cmd);
        // Every path is checked before anything is created, here or in the cluster.
        let pod = self.pod_spec(spec, cmd, &name)?;
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
        let isolated = match &spec.network {
            crate::NetworkPolicy::Isolated(egress) => Some(egress),
            crate::NetworkPolicy::Open => None,
        };
        if isolated.is_some() {
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
        let policy = if self.config.network_policy {
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
            let (policy, dropped) = self.network_policy(&spec.name, &name, &allowed);
            notices.extend(dropped);
            Some(policy)
        } else {
            None
        };

        let client = self.client().await?;
        let mut process = KubernetesProcess {
            pods: self.api(client.clone()),
            secrets: self.api(client.clone()),
            policies: self.api(client),
            name: name.clone(),
            has_policy: false,
            stdout: None,
            stderr: None,
            logs: None,
            poll: self.config.poll,
            start_timeout: self.config.start_timeout,
            created: Instant::now(),
            finished: false,
        };
        let pp = PostParams::default();
        process
            .secrets
            .create(&pp, &self.secret(spec, &name))
            .await
            .map_err(|e| api_error("creating the sandbox's secret failed", e))?;
        if let Some(policy) = &policy {
            process.has_policy = true;
            if let Err(e) = process.policies.create(&pp, policy).await {
                process.remove().await;
                return Err(api_error("creating the sandbox's network policy failed", e));
            }
        }
        let created = match process.pods.create(&pp, &pod).await {
            Ok(p) => p,
            Err(e) => {
                process.remove().await;
                return Err(api_error("creating the sandbox's pod failed", e));
            }
        };
        // Kubernetes deletes the Secret and the policy with the Pod, should errand not.
        if let Some(uid) = created.metadata.uid.clone() {
            let patch = serde_json::json!({"metadata": {"ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "uid": uid,
            }]}});
            let params = PatchParams::default();
            if let Err(e) = process
                .secrets
                .patch(&name, &params, &Patch::Merge(&patch))
                .await
            {
                tracing::warn!("making pod {name} the owner of its secret failed: {e}");
            }
            if process.has_policy {
                if let Err(e) = process
                    .policies
                    .patch(&name, &params, &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!("making pod {name} the owner of its network policy failed: {e}");
                }
            }
        }
        let (out_w, out_r) = tokio::io::duplex(256 << 10);
        process.stdout = Some(Box::new(out_r));
        process.stderr = Some(Box::new(tokio::io::empty()));
        process.logs = Some(tokio::spawn(pump_logs(
            process.pods.clone(),
            name,
            self.config.poll,
            (process.created, process.start_timeout),
            out_w,
        )));
        Ok(SandboxProcess::new(notices, Box::new(process)))
    }
}

/// Whether a container waiting for `reason` since `created` has waited too long.
fn stuck(reason: &Option<String>, (created, start_timeout): (Instant, Duration)) -> bool {
    reason
        .as_deref()
        .is_some_and(|r| STUCK.contains(&r) && created.elapsed() > start_timeout)
}

/// Copies the container's log into `out` once it has started, until it ends
/// (or until the container has failed to start for the start timeout).
async fn pump_logs(
    pods: Api<Pod>,
    name: String,
    poll: Duration,
    start: (Instant, Duration),
    mut out: tokio::io::DuplexStream,
) {
    // The log API refuses a container that has not started.
    let mut delay = Duration::from_millis(20).min(poll);
    loop {
        match pods.get_opt(&name).await {
            Ok(Some(p)) => match pod_outcome(&p) {
                PodOutcome::Started | PodOutcome::Exited(_) => break,
                PodOutcome::Failed(_) => return,
                PodOutcome::Pending(reason) if stuck(&reason, start) => return,
                PodOutcome::Pending(_) => {}
            },
            Ok(None) => return,
            Err(e) => tracing::debug!("reading pod {name} failed: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(poll);
    }
    let params = LogParams {
        follow: true,
        container: Some(CONTAINER.into()),
        ..Default::default()
    };
    let stream = match pods.log_stream(&name, &params).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("reading the log of pod {name} failed: {e}");
            return;
        }
    };
    let mut stream = Box::pin(stream);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!("the log of pod {name} broke off: {e}");
                break;
            }
        }
    }
    let _ = out.shutdown().await;
}

/// How long a finished process's log may take to reach the reader.
const LOG_DRAIN: Duration = Duration::from_secs(30);

struct KubernetesProcess {
    pods: Api<Pod>,
    secrets: Api<Secret>,
    policies: Api<NetworkPolicy>,
    name: String,
    has_policy: bool,
    stdout: Option<OutputStream>,
    stderr: Option<OutputStream>,
    logs: Option<tokio::task::JoinHandle<()>>,
    poll: Duration,
    start_timeout: Duration,
    /// When the Pod was made: the start timeout counts from here.
    created: Instant,
    /// Deleted already: nothing to do on drop.
    finished: bool,
}

impl KubernetesProcess {
    /// Deletes the Pod (at once), its Secret and its policy.
    async fn remove(&mut self) {
        self.finished = true;
        let name = self.name.clone();
        let warn = |what: &str, r: Result<(), kube::Error>| match r {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!("deleting {what} {name} failed: {e}"),
        };
        let now = delete_now();
        warn("pod", self.pods.delete(&self.name, &now).await.map(|_| ()));
        warn(
            "secret",
            self.secrets.delete(&self.name, &now).await.map(|_| ()),
        );
        if self.has_policy {
            warn(
                "network policy",
                self.policies.delete(&self.name, &now).await.map(|_| ()),
            );
        }
    }
}

/// Polls Pod `name` until its process has ended.
async fn wait_for_exit(
    pods: Api<Pod>,
    name: String,
    poll: Duration,
    start: (Instant, Duration),
) -> std::io::Result<ExitInfo> {
    let mut errors = 0;
    let mut delay = Duration::from_millis(20).min(poll);
    loop {
        match pods.get_opt(&name).await {
            Ok(Some(pod)) => {
                errors = 0;
                match pod_outcome(&pod) {
                    PodOutcome::Exited(info) => return Ok(info),
                    PodOutcome::Failed(why) => return Err(std::io::Error::other(why)),
                    PodOutcome::Pending(reason) if stuck(&reason, start) => {
                        return Err(std::io::Error::other(format!(
                            "the pod {name} could not start its container within {}s: {}",
                            start.1.as_secs(),
                            reason.unwrap_or_default()
                        )))
                    }
                    _ => {}
                }
            }
            Ok(None) => {
                return Err(std::io::Error::other(format!(
                    "the pod {name} was deleted before its process ended"
                )))
            }
            Err(e) => {
                errors += 1;
                if errors >= 30 {
                    return Err(std::io::Error::other(format!(
                        "reading the pod {name} failed: {e}"
                    )));
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(poll);
    }
}

#[async_trait]
impl ProcessHandle for KubernetesProcess {
    fn take_stdout(&mut self) -> Option<OutputStream> {
        self.stdout.take()
    }

    fn take_stderr(&mut self) -> Option<OutputStream> {
        self.stderr.take()
    }

    async fn wait(&mut self) -> std::io::Result<ExitInfo> {
        if self.finished {
            return Err(std::io::Error::other("the pod was already deleted"));
        }
        let result = wait_for_exit(
            self.pods.clone(),
            self.name.clone(),
            self.poll,
            (self.created, self.start_timeout),
        )
        .await;
        // The log ends with the container; let it reach the reader first.
        if let Some(mut logs) = self.logs.take() {
            if tokio::time::timeout(LOG_DRAIN, &mut logs).await.is_err() {
                logs.abort();
            }
        }
        self.remove().await;
        result
    }

    async fn kill(&mut self) {
        if let Some(logs) = self.logs.take() {
            logs.abort();
        }
        if self.finished {
            return;
        }
        self.remove().await;
    }
}

impl Drop for KubernetesProcess {
    fn drop(&mut self) {
        if let Some(logs) = self.logs.take() {
            logs.abort();
        }
        if self.finished {
            return;
        }
        // Best effort: an errand that exits before this runs leaves the objects
        // to `cleanup_orphans` at its next start (and the Secret and policy to
        // Kubernetes' garbage collector once the Pod is gone).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let pods = self.pods.clone();
            let secrets = self.secrets.clone();
            let policies = self.has_policy.then(|| self.policies.clone());
            let name = std::mem::take(&mut self.name);
            rt.spawn(async move {
                let now = delete_now();
                let _ = pods.delete(&name, &now).await;
                let _ = secrets.delete(&name, &now).await;
                if let Some(p) = policies {
                    let _ = p.delete(&name, &now).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &Path) -> SandboxSpec {
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
            },
            network: Default::default(),
            entry: Vec::new(),
        }
    }

    fn sandbox() -> KubernetesSandbox {
        KubernetesSandbox::new(KubernetesConfig {
            runs_root: PathBuf::from("/data/errand"),
            scope: "/data/errand".into(),
            ..Default::default()
        })
    }

    #[test]
    fn the_metadata_endpoints_are_never_allowed() {
        let meta = Cidr::parse("169.254.169.254/32").expect("cidr");
        for entry in [
            "0.0.0.0/0",
            "169.254.0.0/16",
            "169.254.169.0/24",
            "169.254.169.254",
            "169.254.169.254/32",
            "10.0.0.0/8",
            "::/0",
            "fd00:ec2::/64",
        ] {
            let c = Cidr::parse(entry).expect("cidr");
            let (blocks, _) = egress_blocks(&[c]);
            for b in &blocks {
                let cidr = Cidr::parse(&b.cidr).expect("cidr");
                let except: Vec<Cidr> = b
                    .except
                    .iter()
                    .flatten()
                    .map(|e| Cidr::parse(e).expect("except"))
                    .collect();
                for f in METADATA {
                    let f = Cidr::parse(f).expect("cidr");
                    if cidr.contains(&f) {
                        assert!(
                            except.iter().any(|e| e.contains(&f)),
                            "{entry}: {f} allowed by {b:?}"
                        );
                    }
                    // Every except lies strictly inside its block (else Kubernetes refuses it).
                    for e in &except {
                        assert!(cidr.contains(e) && cidr != *e, "{entry}: bad except {e}");
                    }
                }
                assert!(!(cidr.contains(&meta) && except.is_empty()));
            }
        }
        let (blocks, notices) = egress_blocks(&[Cidr::parse("169.254.169.254").expect("cidr")]);
        assert!(blocks.is_empty());
        assert_eq!(notices.len(), 1);
        let (blocks, _) = egress_blocks(&[Cidr::parse("0.0.0.0/0").expect("cidr")]);
        let except = blocks[0].except.clone().unwrap_or_default();
        // The metadata addresses first, then what a wildcard never reaches.
        assert_eq!(
            except[..3],
            [
                "169.254.169.254/32",
                "169.254.170.2/32",
                "169.254.170.23/32"
            ]
        );
        for wild_off in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
        ] {
            assert!(
                except.iter().any(|e| e == wild_off),
                "{wild_off}: {except:?}"
            );
        }
        let (blocks, _) = egress_blocks(&[Cidr::parse("::/0").expect("cidr")]);
        let except = blocks[0].except.clone().unwrap_or_default();
        for wild_off in ["fc00::/7", "fe80::/10", "::1/128"] {
            assert!(
                except.iter().any(|e| e == wild_off),
                "{wild_off}: {except:?}"
            );
        }
        // An address entry is its own block, with nothing excepted: it stays reachable.
        let (blocks, _) = egress_blocks(&[Cidr::parse("10.1.2.3").expect("cidr")]);
        assert_eq!(
            (blocks[0].cidr.as_str(), &blocks[0].except),
            ("10.1.2.3/32", &None)
        );

        // And the whole policy: DNS only to the cluster DNS, nothing else but the blocks.
        let sb = sandbox();
        let (policy, _) = sb.network_policy(
            "r1",
            "errand-r1-00000000",
            &[Allowed {
                cidr: Cidr::parse("0.0.0.0/0").expect("cidr"),
                port: None,
            }],
        );
        let json = serde_json::to_value(&policy).expect("json");
        let egress = json["spec"]["egress"].as_array().expect("egress");
        assert!(egress[0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"] == "kube-dns");
        assert_eq!(
            egress[1]["to"][0]["ipBlock"]["except"][0],
            "169.254.169.254/32"
        );
        assert_eq!(
            json["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
    }

    #[tokio::test]
    async fn the_allowlist_maps_to_address_rules() {
        let cidr = |s: &str| Cidr::parse(s).expect("cidr");
        let allow: Vec<String> = [
            "127.0.0.1:9",
            "203.0.113.7:443",
            "*.example.com",
            "localhost",
            "[2001:db8::1]:8443",
            "198.51.100.9",
            "169.254.169.254",
            "169.254.169.254:80",
            "*:22",
            "203.0.113.7:443",
        ]
        .map(String::from)
        .to_vec();
        let (allowed, notices) = allowlist_destinations(&allow).await.expect("mapped");
        let a = |c: &str, port| Allowed {
            cidr: cidr(c),
            port,
        };
        assert_eq!(
            allowed,
            vec![
                a("203.0.113.7/32", Some(443)),
                a("2001:db8::1/128", Some(8443)),
                a("198.51.100.9/32", None),
                a("169.254.169.254/32", Some(80)),
                a("0.0.0.0/0", Some(22)),
                a("::/0", Some(22)),
            ]
        );
        assert_eq!(notices.len(), 4, "{notices:?}");
        for (entry, why) in [
            ("127.0.0.1:9", "loopback"),
            ("*.example.com", "example.com cannot be allowed"),
            ("localhost", "127.0.0.1 is a loopback"),
            ("169.254.169.254", "link-local"),
        ] {
            assert!(
                notices
                    .iter()
                    .any(|n| n.contains(&format!("'{entry}' was skipped")) && n.contains(why)),
                "{entry}: {notices:?}"
            );
        }

        // Into the policy, with a configured block: one rule per port, all ports first.
        let mut all = vec![a("10.0.0.0/8", None)];
        all.extend(allowed);
        let (policy, dropped) = sandbox().network_policy("r1", "errand-r1-00000000", &all);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].contains("169.254.169.254/32"), "{dropped:?}");
        let json = serde_json::to_value(&policy).expect("json");
        let egress = json["spec"]["egress"].as_array().expect("egress");
        assert_eq!(egress.len(), 5, "{json}");
        assert_eq!(egress[0]["ports"][0]["port"], 53);
        assert!(egress[1]["ports"].is_null());
        assert_eq!(
            egress[1]["to"],
            serde_json::json!([{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"ipBlock": {"cidr": "198.51.100.9/32"}}])
        );
        for (rule, port, cidrs) in [
            (2, 22, &["0.0.0.0/0", "::/0"][..]),
            (3, 443, &["203.0.113.7/32"][..]),
            (4, 8443, &["2001:db8::1/128"][..]),
        ] {
            assert_eq!(
                egress[rule]["ports"],
                serde_json::json!([{"port": port, "protocol": "TCP"}])
            );
            let got: Vec<&str> = egress[rule]["to"]
                .as_array()
                .expect("to")
                .iter()
                .map(|p| p["ipBlock"]["cidr"].as_str().expect("cidr"))
                .collect();
            assert_eq!(got, cidrs);
        }
        assert_eq!(
            egress[2]["to"][0]["ipBlock"]["except"][0],
            "169.254.169.254/32"
        );

        // A name that does not resolve, or an entry that does not parse, fails.
        for bad in ["no-such-host.invalid", "https://x.example"] {
            let err = allowlist_destinations(&[bad.to_string()])
                .await
                .expect_err(bad);
            assert!(matches!(err, SandboxError::Setup(_)), "{err}");
            assert!(
                err.to_string().contains("the run's egress allowlist"),
                "{err}"
            );
        }
    }

    #[test]
    fn cidrs_parse_and_nest() {
        let c = Cidr::parse("10.1.2.3/8").expect("cidr");
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(&Cidr::parse("10.9.9.9").expect("cidr")));
        assert!(!c.contains(&Cidr::parse("11.0.0.1").expect("cidr")));
        assert!(!c.contains(&Cidr::parse("::1").expect("cidr")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
        assert!(matches!(
            parse_destination("api.anthropic.com"),
            Some(Destination::Host(_))
        ));
        assert!(parse_destination("1.2.3").is_none());
        assert!(parse_destination("http://x").is_none());
    }

    #[test]
    fn paths_outside_the_runs_root_are_refused() {
        let sb = sandbox();
        let root = Path::new("/data/errand");
        let cmd = CommandLine::new("/bin/true", Vec::<String>::new());
        assert!(sb.pod_spec(&spec(root), &cmd, "errand-r1-1").is_ok());
        for bad in [
            "/etc",
            "/data/errand",
            "/data/errand/../etc",
            "/data/errandx/a",
            "runs/x",
        ] {
            let mut s = spec(root);
            s.workspace = PathBuf::from(bad);
            let err = sb.pod_spec(&s, &cmd, "errand-r1-1").expect_err(bad);
            assert!(
                err.to_string()
                    .contains("not under the Kubernetes runs root"),
                "{err}"
            );
            let mut s = spec(root);
            s.ro_mounts
                .push((PathBuf::from(bad), PathBuf::from("/opt/x")));
            assert!(sb.pod_spec(&s, &cmd, "errand-r1-1").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pod_carries_no_value_and_escapes_expansion() {
        let sb = sandbox();
        let cmd = CommandLine::new("/bin/sh", ["-c", "echo $$ $(X)"]);
        let pod = sb
            .pod_spec(&spec(Path::new("/data/errand")), &cmd, "errand-r1-1")
            .expect("pod");
        let json = serde_json::to_string(&pod).expect("json");
        assert!(!json.contains("s3cret"));
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        assert_eq!(c.args.as_ref().expect("args")[1], "echo $$$$ $$(X)");
        let limits = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .expect("limits");
        assert_eq!(limits["memory"].0, "1073741824");
        assert_eq!(limits["cpu"].0, "1500m");
        let labels = pod.metadata.labels.expect("labels");
        assert_eq!(labels["errand.scope"], label_value("/data/errand"));
        assert!(labels.values().all(|v| is_label_value(v)));
        let mounts = c.volume_mounts.as_ref().expect("mounts");
        assert_eq!(mounts[0].sub_path.as_deref(), Some("runs/r1/workspace"));
        assert_eq!(mounts[3].read_only, Some(true));
    }

    #[test]
    fn names_and_labels_are_valid() {
        for run in ["abc123", "ABC_def.9", "", "---", &"x".repeat(100)] {
            let n = object_name(run);
            assert!(is_dns_label(&n), "{n}");
        }
        assert_eq!(label_value("abc"), "abc");
        assert!(label_value("/var/lib/errand").starts_with("h-"));
        assert_eq!(label_value("/a"), label_value("/a"));
        assert_ne!(label_value("/a"), label_value("/b"));
    }

    #[test]
    fn secret_keys_are_valid_and_last_wins() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("weird name".to_string(), "2".to_string()),
            ("A".to_string(), "3".to_string()),
        ];
        let keys = secret_keys(&env);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], ("weird name".into(), "env-1".into(), "2".into()));
        assert_eq!(keys[1], ("A".into(), "A".into(), "3".into()));
    }

    #[test]
    fn exit_codes_map_like_docker() {
        assert_eq!(exit_info(3, None, false).code, Some(3));
        assert_eq!(exit_info(137, None, false).signal, Some(9));
        assert_eq!(exit_info(1, Some(15), false).signal, Some(15));
        assert!(exit_info(137, None, true).oom_killed);
    }

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
