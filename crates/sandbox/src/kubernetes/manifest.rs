//! The objects of one sandboxed process: its Pod (mounts under the runs claim,
//! security context, limits) and its Secret; names and labels as Kubernetes
//! accepts them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, Pod,
    PodSecurityContext, PodSpec, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{KubernetesSandbox, CONTAINER, VOLUME};
use crate::docker::AGENT_UID;
use crate::{paths, CommandLine, Limits, SandboxError, SandboxSpec};

impl KubernetesSandbox {
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
    pub(super) fn mounts(
        &self,
        spec: &SandboxSpec,
    ) -> Result<Vec<(PathBuf, VolumeMount)>, SandboxError> {
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

    /// The Pod for `spec` and `cmd`, named `name`: what [`Sandbox::spawn`](crate::Sandbox::spawn)
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

pub(super) fn has_dots(p: &Path) -> bool {
    p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn is_dns_subdomain(s: &str) -> bool {
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
pub(super) fn object_name(run: &str) -> String {
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

/// `path` must resolve to `root`/`rel` exactly: no symbolic link on the way.
pub(super) fn check_resolved(root: &Path, path: &Path, rel: &str) -> Result<(), SandboxError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::testing::{sandbox, spec};

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
}
