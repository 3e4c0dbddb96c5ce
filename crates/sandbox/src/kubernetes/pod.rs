//! A started Pod as a process: its state read as an outcome, its log as
//! stdout, waiting and killing ([`KubernetesProcess`]).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::AsyncReadExt as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use kube::Client;
use tokio::io::AsyncWriteExt;

use super::{api_error, delete_now, is_not_found, KubernetesSandbox, CONTAINER};
use crate::{ExitInfo, OutputStream, ProcessHandle, SandboxError};

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

pub(super) struct KubernetesProcess {
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
    /// The process of Pod `name` of `sandbox`, nothing created yet.
    pub(super) fn new(
        sandbox: &KubernetesSandbox,
        client: Client,
        name: &str,
    ) -> KubernetesProcess {
        KubernetesProcess {
            pods: sandbox.api(client.clone()),
            secrets: sandbox.api(client.clone()),
            policies: sandbox.api(client),
            name: name.to_string(),
            has_policy: false,
            stdout: None,
            stderr: None,
            logs: None,
            poll: sandbox.config.poll,
            start_timeout: sandbox.config.start_timeout,
            created: Instant::now(),
            finished: false,
        }
    }

    /// Creates the Secret, the NetworkPolicy (if any) and the Pod, in that
    /// order, and makes the Pod the owner of the other two. When the policy
    /// or the Pod cannot be created, what was created is deleted.
    pub(super) async fn create(
        &mut self,
        secret: &Secret,
        policy: Option<&NetworkPolicy>,
        pod: &Pod,
    ) -> Result<(), SandboxError> {
        let pp = PostParams::default();
        self.secrets
            .create(&pp, secret)
            .await
            .map_err(|e| api_error("creating the sandbox's secret failed", e))?;
        if let Some(policy) = policy {
            self.has_policy = true;
            if let Err(e) = self.policies.create(&pp, policy).await {
                self.remove().await;
                return Err(api_error("creating the sandbox's network policy failed", e));
            }
        }
        let created = match self.pods.create(&pp, pod).await {
            Ok(p) => p,
            Err(e) => {
                self.remove().await;
                return Err(api_error("creating the sandbox's pod failed", e));
            }
        };
        // Kubernetes deletes the Secret and the policy with the Pod, should errand not.
        if let Some(uid) = created.metadata.uid.clone() {
            self.own(&uid).await;
        }
        Ok(())
    }

    /// Makes the Pod (uid `uid`) the owner of its Secret and policy.
    async fn own(&mut self, uid: &str) {
        let name = &self.name;
        let patch = serde_json::json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "uid": uid,
        }]}});
        let params = PatchParams::default();
        if let Err(e) = self
            .secrets
            .patch(name, &params, &Patch::Merge(&patch))
            .await
        {
            tracing::warn!("making pod {name} the owner of its secret failed: {e}");
        }
        if self.has_policy {
            if let Err(e) = self
                .policies
                .patch(name, &params, &Patch::Merge(&patch))
                .await
            {
                tracing::warn!("making pod {name} the owner of its network policy failed: {e}");
            }
        }
    }

    /// Offers the container's log as stdout (stderr stays empty), copied
    /// from once the container has started.
    pub(super) fn start_logs(&mut self) {
        let (out_w, out_r) = tokio::io::duplex(256 << 10);
        self.stdout = Some(Box::new(out_r));
        self.stderr = Some(Box::new(tokio::io::empty()));
        self.logs = Some(tokio::spawn(pump_logs(
            self.pods.clone(),
            self.name.clone(),
            self.poll,
            (self.created, self.start_timeout),
            out_w,
        )));
    }

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

    #[test]
    fn exit_codes_map_like_docker() {
        assert_eq!(exit_info(3, None, false).code, Some(3));
        assert_eq!(exit_info(137, None, false).signal, Some(9));
        assert_eq!(exit_info(1, Some(15), false).signal, Some(15));
        assert!(exit_info(137, None, true).oom_killed);
    }
}
