//! The kubernetes backend against the strict in-process fake API server
//! (`fake.rs`): no real cluster is involved.

#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // the fake kubelet starts the pod's command

mod fake;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use errand_sandbox::kubernetes::{pod_outcome, PodOutcome, API_CALLS, DEFAULT_CLAIM};
use errand_sandbox::{
    Bridge, CommandLine, Egress, KubernetesConfig, KubernetesSandbox, Limits, NetworkPolicy,
    Sandbox, SandboxError, SandboxSpec,
};
use fake::{Fake, Kind, Options};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

/// A generous bound that only catches hangs; no test asserts a speed.
const HANG: Duration = Duration::from_secs(120);

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    fake: Fake,
    sb: KubernetesSandbox,
}

impl Env {
    async fn new(configure: impl FnOnce(&mut KubernetesConfig)) -> Env {
        Env::with(configure, None).await
    }

    async fn with(configure: impl FnOnce(&mut KubernetesConfig), stall: Option<&str>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("errand");
        std::fs::create_dir_all(root.join("cache/harness")).unwrap();
        let fake = Fake::start(Options {
            namespace: "errand".into(),
            claim: DEFAULT_CLAIM.into(),
            claim_dir: root.clone(),
            require_memory_limit: true,
            start_delay: Duration::from_millis(100),
            stall: stall.map(str::to_string),
        })
        .await;
        let mut config = KubernetesConfig {
            namespace: "errand".into(),
            runs_root: root.clone(),
            scope: root.to_string_lossy().into_owned(),
            network_policy: true,
            egress: vec!["0.0.0.0/0".into(), "localhost".into()],
            poll: Duration::from_millis(50),
            ..Default::default()
        };
        configure(&mut config);
        let sb = KubernetesSandbox::at_url(&fake.url, config).unwrap();
        Env {
            _dir: dir,
            root,
            fake,
            sb,
        }
    }

    fn spec(&self, run: &str, env: &[(&str, &str)]) -> SandboxSpec {
        let run_dir = self.root.join("runs").join(run);
        SandboxSpec {
            name: run.into(),
            workspace: run_dir.join("workspace"),
            home: run_dir.join("home"),
            tmp: run_dir.join("tmp"),
            ro_mounts: vec![(
                self.root.join("cache/harness"),
                PathBuf::from(errand_sandbox::paths::HARNESS),
            )],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("PATH".to_string(), "/usr/bin:/bin".to_string())])
                .collect(),
            limits: Limits {
                memory_bytes: Some(512 << 20),
                max_pids: None,
                cpus: Some(1.0),
                lifetime_secs: None,
            },
            network: Default::default(),
            entry: Vec::new(),
            layers: None,
        }
    }

    fn client(&self) -> kube::Client {
        let mut c = kube::Config::new(self.fake.url.parse().unwrap());
        c.default_namespace = "errand".into();
        kube::Client::try_from(c).unwrap()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client(), "errand")
    }

    /// The one pod there is, once it runs.
    async fn running_pod(&self) -> String {
        self.fake
            .until("a running pod", |f| {
                f.names(Kind::Pod)
                    .first()
                    .is_some_and(|p| f.pgid(p).is_some())
            })
            .await;
        self.fake.names(Kind::Pod)[0].clone()
    }
}

fn sh(script: &str) -> CommandLine {
    CommandLine::new("/bin/sh", ["-c", script])
}

/// Whether any process of group `g` lives.
fn group_alive(g: i32) -> bool {
    // SAFETY: signal 0 only checks.
    unsafe { libc::killpg(g, 0) == 0 }
}

#[tokio::test]
async fn a_process_streams_its_log_exits_and_leaves_nothing_behind() {
    let env = Env::new(|_| {}).await;
    let spec = env.spec("r1", &[("TOKEN", "tok-5ecret-value")]);
    let mut p = env
        .sb
        .spawn(
            &spec,
            &sh("echo hello; echo \"$TOKEN\"; echo to-stderr >&2; exit 3"),
        )
        .await
        .unwrap();
    let mut out = String::new();
    let mut err = String::new();
    let status = tokio::time::timeout(HANG, async {
        p.take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        p.take_stderr()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        p.wait().await.unwrap()
    })
    .await
    .expect("the process ends");
    // stdout and stderr arrive merged, in the pod's one log.
    assert!(out.starts_with("hello\ntok-5ecret-value\n"), "{out:?}");
    assert!(out.contains("to-stderr\n"), "{out:?}");
    assert_eq!(err, "");
    assert_eq!(status.code, Some(3));
    assert!(!status.oom_killed);

    // The value reached the process through the Secret, never the Pod spec.
    let posted = env.fake.state().posted_pods.clone();
    assert_eq!(posted.len(), 1);
    let pod_json = posted[0].to_string();
    assert!(!pod_json.contains("tok-5ecret-value"), "{pod_json}");
    let name = posted[0]["metadata"]["name"].as_str().unwrap().to_string();
    let token = posted[0]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TOKEN")
        .cloned()
        .unwrap();
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], name.as_str());

    // Secret and policy were given to the pod, and everything is gone now.
    let st = env.fake.state();
    let patched: BTreeSet<Kind> = st
        .patches
        .iter()
        .filter(|(_, n, p)| *n == name && p["metadata"]["ownerReferences"][0]["kind"] == "Pod")
        .map(|(k, _, _)| *k)
        .collect();
    assert_eq!(patched, BTreeSet::from([Kind::Secret, Kind::Policy]));
    assert!(
        st.objects.is_empty(),
        "left behind: {:?}",
        st.objects.keys()
    );
    let deleted: BTreeSet<Kind> = st
        .deletes
        .iter()
        .filter(|(_, n, _)| *n == name)
        .map(|(k, _, _)| *k)
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from([Kind::Pod, Kind::Secret, Kind::Policy])
    );
    assert!(st.unknown.is_empty(), "{:?}", st.unknown);
}

#[tokio::test]
async fn arguments_reach_the_process_unexpanded() {
    let env = Env::new(|c| c.network_policy = false).await;
    let spec = env.spec("r2", &[("TOKEN", "x")]);
    let mut p = env
        .sb
        .spawn(
            &spec,
            &CommandLine::new(
                "/bin/sh",
                [
                    "-c",
                    "printf '%s|%s|%s\\n' \"$1\" \"$2\" \"$PWD\"",
                    "sh",
                    "$(TOKEN)",
                    "a$$b",
                ],
            ),
        )
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(HANG, async {
        p.take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert!(p.wait().await.unwrap().success());
    })
    .await
    .unwrap();
    let ws = std::fs::canonicalize(&spec.workspace).unwrap();
    assert_eq!(out, format!("$(TOKEN)|a$$b|{}\n", ws.display()));
    assert!(env.fake.state().objects.is_empty());
}

#[tokio::test]
async fn kill_deletes_a_sleeping_pod() {
    let env = Env::new(|_| {}).await;
    let spec = env.spec("r3", &[]);
    let mut p = env
        .sb
        .spawn(&spec, &CommandLine::new("sleep", ["600"]))
        .await
        .unwrap();
    let mut stdout = p.take_stdout().unwrap();
    let name = env.running_pod().await;
    let group = env.fake.pgid(&name).unwrap();
    assert!(group_alive(group));
    tokio::time::timeout(HANG, p.kill())
        .await
        .expect("kill returns");
    // The log ends, the process is gone, and so is every object.
    let mut rest = Vec::new();
    tokio::time::timeout(HANG, stdout.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    env.fake
        .until("the process group to die", |_| !group_alive(group))
        .await;
    {
        let st = env.fake.state();
        assert!(st.objects.is_empty(), "{:?}", st.objects.keys());
        assert!(st
            .deletes
            .iter()
            .any(|(k, n, g)| *k == Kind::Pod && *n == name && *g == Some(0)));
    }
    assert!(p.wait().await.is_err(), "waiting after kill is an error");
}

/// `spec` isolated with the allowlist `allow`.
fn isolated(mut spec: SandboxSpec, allow: &[&str]) -> SandboxSpec {
    spec.network = NetworkPolicy::Isolated(Egress {
        allow: allow.iter().map(|a| a.to_string()).collect(),
        protected: Vec::new(),
        bridge: Bridge {
            exe: PathBuf::from("/bin/false"),
            args: Vec::new(),
        },
    });
    spec
}

/// Spawns `spec` (`true`), waits, and returns the notices and the one NetworkPolicy posted.
async fn policy_of(env: &Env, spec: &SandboxSpec) -> (Vec<String>, Value) {
    let mut p = env.sb.spawn(spec, &sh("true")).await.unwrap();
    let status = tokio::time::timeout(HANG, p.wait()).await.unwrap().unwrap();
    assert_eq!(status.code, Some(0));
    let st = env.fake.state();
    assert_eq!(st.posted_policies.len(), 1);
    assert!(st.objects.is_empty(), "{:?}", st.objects.keys());
    (p.notices.clone(), st.posted_policies[0].clone())
}

/// The policy's ipBlocks: (cidr, except, TCP ports or `None` for all).
fn ip_blocks(policy: &Value) -> Vec<(String, Vec<String>, Option<Vec<i64>>)> {
    let mut out = Vec::new();
    for rule in policy["spec"]["egress"].as_array().unwrap() {
        if rule["to"].as_array().unwrap()[0]["ipBlock"].is_null() {
            continue; // the DNS rule
        }
        let ports = rule["ports"].as_array().map(|ps| {
            ps.iter()
                .map(|p| {
                    assert_eq!(p["protocol"], "TCP", "{rule}");
                    p["port"].as_i64().unwrap()
                })
                .collect::<Vec<_>>()
        });
        for peer in rule["to"].as_array().unwrap() {
            let b = &peer["ipBlock"];
            if b.is_null() {
                continue;
            }
            let except = b["except"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e.as_str().unwrap().to_string())
                .collect();
            out.push((
                b["cidr"].as_str().unwrap().to_string(),
                except,
                ports.clone(),
            ));
        }
    }
    out
}

/// The cluster-DNS rule, first, as before.
fn assert_dns_first(policy: &Value) {
    let dns = &policy["spec"]["egress"][0];
    assert_eq!(
        dns["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    assert_eq!(
        dns["ports"],
        json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
    );
}

#[tokio::test]
async fn the_runs_allowlist_is_the_pods_network_policy_by_address() {
    let env = Env::new(|c| c.egress = vec!["10.0.0.0/8".into()]).await;
    let spec = isolated(
        env.spec("r20", &[]),
        &[
            "127.0.0.1:9",
            "203.0.113.7:443",
            "*.example.com",
            "localhost",
            "198.51.100.9",
        ],
    );
    let (notices, policy) = policy_of(&env, &spec).await;
    assert_dns_first(&policy);
    let blocks = ip_blocks(&policy);
    assert_eq!(
        blocks,
        vec![
            ("10.0.0.0/8".to_string(), vec![], None),
            ("198.51.100.9/32".to_string(), vec![], None),
            ("203.0.113.7/32".to_string(), vec![], Some(vec![443])),
        ],
        "{policy}"
    );
    let text = policy.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("::1/"),
        "{text}"
    );
    let skipped = |entry: &str, why: &str| {
        notices
            .iter()
            .any(|n| n.contains(&format!("'{entry}' was skipped")) && n.contains(why))
    };
    assert!(skipped("*.example.com", "not names"), "{notices:?}");
    assert!(skipped("127.0.0.1:9", "loopback"), "{notices:?}");
    assert!(skipped("localhost", "loopback"), "{notices:?}");
    assert!(
        notices
            .iter()
            .any(|n| n.contains("enforced by the pod's NetworkPolicy")),
        "{notices:?}"
    );
}

#[tokio::test]
async fn an_allowlist_of_anything_still_excepts_the_metadata_addresses() {
    let env = Env::new(|c| c.egress = Vec::new()).await;
    let spec = isolated(
        env.spec("r21", &[]),
        &[
            "*",
            "169.254.169.254",
            "169.254.169.254:80",
            "[fd00:ec2::254]:80",
        ],
    );
    let (notices, policy) = policy_of(&env, &spec).await;
    assert_dns_first(&policy);
    let blocks = ip_blocks(&policy);
    assert_eq!(blocks.len(), 2, "{policy}");
    let (v4, v4_except, v4_ports) = &blocks[0];
    assert_eq!((v4.as_str(), v4_ports), ("0.0.0.0/0", &None));
    assert!(
        v4_except.contains(&"169.254.169.254/32".to_string()),
        "{v4_except:?}"
    );
    let (v6, v6_except, _) = &blocks[1];
    assert_eq!(v6, "::/0");
    assert!(
        v6_except.contains(&"fd00:ec2::254/128".to_string()),
        "{v6_except:?}"
    );
    // The metadata address is never a block of its own, on any port.
    assert!(
        blocks
            .iter()
            .all(|(c, _, _)| !c.starts_with("169.254.") && !c.starts_with("fd00:ec2")),
        "{blocks:?}"
    );
    assert!(
        notices
            .iter()
            .any(|n| n.contains("'169.254.169.254' was skipped")),
        "{notices:?}"
    );
    assert!(
        notices
            .iter()
            .any(|n| n.contains("169.254.169.254/32 was dropped")),
        "{notices:?}"
    );
}

#[tokio::test]
async fn an_allowlisted_name_that_does_not_resolve_fails_the_spawn() {
    let env = Env::new(|c| c.egress = Vec::new()).await;
    let spec = isolated(env.spec("r22", &[]), &["no-such-host.invalid:443"]);
    let err = env.sb.spawn(&spec, &sh("true")).await.err().unwrap();
    assert!(matches!(err, SandboxError::Setup(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("'no-such-host.invalid:443'") && msg.contains("the run's egress allowlist"),
        "{msg}"
    );
    let st = env.fake.state();
    assert_eq!(st.request_count, 0, "{:?}", st.requests);
}

#[tokio::test]
async fn without_a_network_policy_the_allowlist_is_only_a_notice() {
    let env = Env::new(|c| c.network_policy = false).await;
    let spec = isolated(env.spec("r23", &[]), &["203.0.113.7:443"]);
    let mut p = env.sb.spawn(&spec, &sh("true")).await.unwrap();
    tokio::time::timeout(HANG, p.wait()).await.unwrap().unwrap();
    assert!(env.fake.state().posted_policies.is_empty());
    assert!(
        p.notices.iter().any(|n| n.contains("namespace's network")
            && n.contains("sandbox.kubernetes_network_policy")),
        "{:?}",
        p.notices
    );
}

#[tokio::test]
async fn an_oom_kill_is_reported() {
    let env = Env::new(|c| c.network_policy = false).await;
    let mut p = env
        .sb
        .spawn(&env.spec("r4", &[]), &CommandLine::new("sleep", ["600"]))
        .await
        .unwrap();
    let name = env.running_pod().await;
    env.fake.terminate(&name, "OOMKilled", 137);
    let status = tokio::time::timeout(HANG, p.wait()).await.unwrap().unwrap();
    assert!(status.oom_killed);
    assert_eq!(status.signal, Some(9));
    assert_eq!(status.to_string(), "killed: out of memory");
    assert!(env.fake.state().objects.is_empty());
}

#[tokio::test]
async fn the_deadline_stops_a_pod() {
    let env = Env::new(|c| {
        c.network_policy = false;
        c.deadline_secs = 1;
    })
    .await;
    let mut p = env
        .sb
        .spawn(&env.spec("r5", &[]), &CommandLine::new("sleep", ["600"]))
        .await
        .unwrap();
    let status = tokio::time::timeout(HANG, p.wait()).await.unwrap().unwrap();
    assert_eq!((status.code, status.signal), (None, Some(9)));
    assert!(env.fake.state().objects.is_empty());
}

#[tokio::test]
async fn a_container_that_cannot_start_ends_the_wait() {
    let env = Env::with(
        |c| c.start_timeout = Duration::from_secs(1),
        Some("ImagePullBackOff"),
    )
    .await;
    let mut p = env
        .sb
        .spawn(&env.spec("r11", &[]), &sh("echo never"))
        .await
        .unwrap();
    let mut out = String::new();
    let err = tokio::time::timeout(HANG, async {
        p.take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        p.wait().await.unwrap_err()
    })
    .await
    .unwrap();
    assert_eq!(out, "");
    assert!(err.to_string().contains("ImagePullBackOff"), "{err}");
    assert!(env.fake.state().objects.is_empty());
}

#[tokio::test]
async fn a_path_outside_the_runs_root_is_refused_before_any_api_call() {
    let env = Env::new(|_| {}).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let mut spec = env.spec("r6", &[]);
    spec.workspace = elsewhere.path().join("workspace");
    let err = env.sb.spawn(&spec, &sh("true")).await.err().unwrap();
    assert!(matches!(err, SandboxError::Setup(_)), "{err}");
    assert!(
        err.to_string()
            .contains("not under the Kubernetes runs root"),
        "{err}"
    );
    assert!(!spec.workspace.exists(), "nothing was created");

    let mut spec = env.spec("r6", &[]);
    spec.ro_mounts.push(("/usr/bin".into(), "/opt/x".into()));
    assert!(env.sb.spawn(&spec, &sh("true")).await.is_err());

    // A symbolic link under the root that leads out of it.
    let mut spec = env.spec("r6", &[]);
    std::os::unix::fs::symlink(elsewhere.path(), env.root.join("escape")).unwrap();
    spec.ro_mounts
        .push((env.root.join("escape"), "/opt/x".into()));
    let err = env.sb.spawn(&spec, &sh("true")).await.err().unwrap();
    assert!(err.to_string().contains("symbolic link"), "{err}");

    let st = env.fake.state();
    assert_eq!(st.request_count, 0, "{:?}", st.requests);
}

#[tokio::test]
async fn orphans_of_this_installation_are_cleaned_up() {
    let env = Env::new(|_| {}).await;
    let other = KubernetesSandbox::at_url(
        &env.fake.url,
        KubernetesConfig {
            scope: "another-installation".into(),
            ..env.sb.config().clone()
        },
    )
    .unwrap();
    // Three pods as a dead errand would leave them: spawned, then forgotten.
    let mut keep = Vec::new();
    for (sb, run) in [(&env.sb, "dead"), (&env.sb, "live"), (&other, "dead")] {
        let p = sb
            .spawn(
                &env.spec(run, &[("K", "v")]),
                &CommandLine::new("sleep", ["600"]),
            )
            .await
            .unwrap();
        keep.push(p);
    }
    env.fake
        .until("three running pods", |f| {
            f.names(Kind::Pod)
                .iter()
                .filter(|p| f.pgid(p).is_some())
                .count()
                == 3
        })
        .await;
    // A secret whose pod was never created.
    let stray = env.sb.secret(&env.spec("dead", &[]), "errand-dead-stray");
    Api::<Secret>::namespaced(env.client(), "errand")
        .create(&PostParams::default(), &stray)
        .await
        .unwrap();
    let label = |kind: Kind, run: &str, mine: bool| {
        let st = env.fake.state();
        st.objects
            .iter()
            .filter(|((k, _), v)| {
                *k == kind
                    && v["metadata"]["labels"]["errand.run"] == run
                    && (v["metadata"]["annotations"]["errand.scope"] == "another-installation")
                        != mine
            })
            .count()
    };
    assert_eq!(label(Kind::Secret, "dead", true), 2);

    let removed = tokio::time::timeout(HANG, env.sb.cleanup_orphans(&["live".to_string()]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].starts_with("pod/errand-dead-"), "{removed:?}");
    for kind in [Kind::Pod, Kind::Secret, Kind::Policy] {
        assert_eq!(label(kind, "dead", true), 0, "{kind:?} of the dead run");
        assert_eq!(label(kind, "live", true), 1, "{kind:?} of the live run");
        assert_eq!(
            label(kind, "dead", false),
            1,
            "{kind:?} of another installation"
        );
    }
    // With no live run at all, the live one goes too.
    env.sb.cleanup_orphans(&[]).await.unwrap();
    assert_eq!(label(Kind::Pod, "live", true), 0);
    assert_eq!(label(Kind::Secret, "live", true), 0);
    for mut p in keep {
        p.kill().await;
    }
    assert!(env.fake.state().objects.is_empty());
}

#[tokio::test]
async fn a_pod_without_its_secret_fails_to_start() {
    let env = Env::new(|_| {}).await;
    let pod = env
        .sb
        .pod_spec(
            &env.spec("r7", &[("K", "v")]),
            &sh("true"),
            "errand-r7-nosecret",
        )
        .unwrap();
    env.pods()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let pods = env.pods();
    let outcome = tokio::time::timeout(HANG, async {
        loop {
            let p = pods.get("errand-r7-nosecret").await.unwrap();
            match pod_outcome(&p) {
                PodOutcome::Pending(_) | PodOutcome::Started => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => break other,
            }
        }
    })
    .await
    .unwrap();
    match outcome {
        PodOutcome::Failed(why) => assert!(why.contains("CreateContainerConfigError"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// For each setting the fake requires: a spec from the backend without it is refused.
#[tokio::test]
async fn the_fake_refuses_a_pod_missing_any_required_setting() {
    let env = Env::new(|_| {}).await;
    let spec = env.spec("r8", &[("K", "v")]);
    type Mutation = fn(&mut Value);
    let mutations: &[(&str, Mutation)] = &[
        ("restartPolicy removed", |p| {
            drop(p["spec"].as_object_mut().unwrap().remove("restartPolicy"))
        }),
        ("restartPolicy Always", |p| {
            p["spec"]["restartPolicy"] = json!("Always")
        }),
        ("activeDeadlineSeconds removed", |p| {
            drop(
                p["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("activeDeadlineSeconds"),
            )
        }),
        ("automountServiceAccountToken removed", |p| {
            drop(
                p["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("automountServiceAccountToken"),
            )
        }),
        ("automountServiceAccountToken true", |p| {
            p["spec"]["automountServiceAccountToken"] = json!(true)
        }),
        ("enableServiceLinks removed", |p| {
            drop(
                p["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("enableServiceLinks"),
            )
        }),
        ("hostNetwork", |p| p["spec"]["hostNetwork"] = json!(true)),
        ("runAsNonRoot removed", |p| {
            drop(
                p["spec"]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("runAsNonRoot"),
            );
            drop(
                p["spec"]["containers"][0]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("runAsNonRoot"),
            );
        }),
        ("runAsUser 0", |p| {
            p["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("runAsUser removed", |p| {
            drop(
                p["spec"]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("runAsUser"),
            );
            drop(
                p["spec"]["containers"][0]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("runAsUser"),
            );
        }),
        ("seccompProfile removed", |p| {
            drop(
                p["spec"]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("seccompProfile"),
            );
            drop(
                p["spec"]["containers"][0]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("seccompProfile"),
            );
        }),
        ("seccompProfile Unconfined", |p| {
            p["spec"]["containers"][0]["securityContext"]["seccompProfile"] =
                json!({"type": "Unconfined"})
        }),
        ("allowPrivilegeEscalation removed", |p| {
            drop(
                p["spec"]["containers"][0]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("allowPrivilegeEscalation"),
            )
        }),
        ("allowPrivilegeEscalation true", |p| {
            p["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true)
        }),
        ("capabilities not dropped", |p| {
            p["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"] = json!([])
        }),
        ("capability added", |p| {
            p["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
                json!(["SYS_ADMIN"])
        }),
        ("privileged", |p| {
            p["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true)
        }),
        ("readOnlyRootFilesystem removed", |p| {
            drop(
                p["spec"]["containers"][0]["securityContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("readOnlyRootFilesystem"),
            )
        }),
        ("memory limit removed", |p| {
            drop(
                p["spec"]["containers"][0]["resources"]["limits"]
                    .as_object_mut()
                    .unwrap()
                    .remove("memory"),
            )
        }),
        ("hostPath volume", |p| {
            p["spec"]["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "host", "hostPath": {"path": "/"}}));
        }),
        ("emptyDir volume", |p| {
            p["spec"]["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "scratch", "emptyDir": {}}));
        }),
        ("another claim", |p| {
            p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = json!("someone-elses")
        }),
        ("whole claim mounted", |p| {
            drop(
                p["spec"]["containers"][0]["volumeMounts"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("subPath"),
            )
        }),
        ("literal env value", |p| {
            p["spec"]["containers"][0]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "LEAK", "value": "secret"}));
        }),
        ("envFrom a config map", |p| {
            p["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "x"}}])
        }),
    ];
    let pods = env.pods();
    let base = serde_json::to_value(
        env.sb
            .pod_spec(&spec, &sh("true"), "errand-r8-base")
            .unwrap(),
    )
    .unwrap();
    for (i, (what, mutate)) in mutations.iter().enumerate() {
        let mut v = base.clone();
        v["metadata"]["name"] = json!(format!("errand-r8-{i}"));
        mutate(&mut v);
        let pod: Pod = serde_json::from_value(v).unwrap();
        match pods.create(&PostParams::default(), &pod).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(
                    (s.code, s.reason.as_str()),
                    (422, "Invalid"),
                    "{what}: {s:?}"
                )
            }
            other => panic!("{what}: accepted ({:?})", other.map(|p| p.metadata.name)),
        }
    }
    // The backend's own spec passes.
    let pod: Pod = serde_json::from_value(base).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(env.fake.names(Kind::Pod), ["errand-r8-base"]);
}

#[tokio::test]
async fn check_names_the_namespace_and_the_claim() {
    let env = Env::new(|_| {}).await;
    env.sb.check().await.unwrap();
    let with = |f: fn(&mut KubernetesConfig)| {
        let mut c = env.sb.config().clone();
        f(&mut c);
        KubernetesSandbox::at_url(&env.fake.url, c).unwrap()
    };
    let err = with(|c| c.namespace = "elsewhere".into())
        .check()
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Unavailable(_)));
    let msg = err.to_string();
    assert!(msg.contains("namespace elsewhere does not exist"), "{msg}");
    assert!(
        msg.contains(&env.fake.url),
        "names the configuration in use: {msg}"
    );
    let err = with(|c| c.runs_claim = "nope".into())
        .check()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("claim nope does not exist"),
        "{err}"
    );

    // Nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let err = KubernetesSandbox::at_url(&url, env.sb.config().clone())
        .unwrap()
        .check()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not reachable"), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

/// The Role grants exactly what the backend calls: everything it did in a
/// whole session was granted (the fake enforces the Role), and every grant was used.
#[tokio::test]
async fn the_role_grants_exactly_what_the_backend_calls() {
    let declared: BTreeSet<(String, String, String)> = API_CALLS
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(fake::role_grants(), declared);

    let env = Env::new(|_| {}).await;
    env.sb.check().await.unwrap();
    let mut p = env
        .sb
        .spawn(&env.spec("r9", &[("K", "v")]), &sh("echo hi"))
        .await
        .unwrap();
    let mut out = String::new();
    p.take_stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    tokio::time::timeout(HANG, p.wait()).await.unwrap().unwrap();
    let mut p = env
        .sb
        .spawn(&env.spec("r10", &[]), &CommandLine::new("sleep", ["600"]))
        .await
        .unwrap();
    env.running_pod().await;
    env.sb.cleanup_orphans(&["r10".into()]).await.unwrap();
    p.kill().await;
    let st = env.fake.state();
    assert_eq!(st.requests, declared);
    assert!(st.unknown.is_empty(), "{:?}", st.unknown);
}

#[test]
fn the_manifests_parse_and_agree() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut docs: Vec<Value> = Vec::new();
    for f in ["namespace.yaml", "rbac.yaml", "storage.yaml", "errand.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
        for d in &parsed {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{f}: {d}"
            );
            assert!(d["metadata"]["name"].is_string(), "{f}: {d}");
            if d["kind"] != "Namespace" {
                assert_eq!(d["metadata"]["namespace"], "errand", "{f}: {d}");
            }
        }
        docs.extend(parsed);
    }
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    };
    let sa = find("ServiceAccount");
    let binding = find("RoleBinding");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(binding["roleRef"]["name"], find("Role")["metadata"]["name"]);
    let claim = find("PersistentVolumeClaim");
    assert_eq!(claim["metadata"]["name"], DEFAULT_CLAIM);
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteMany"]));

    let deploy = find("Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    let c = &pod["containers"][0];
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    assert_eq!(env("ERRAND_SANDBOX_BACKEND")["value"], "kubernetes");
    assert_eq!(
        env("ERRAND_DATABASE_URL")["valueFrom"]["secretKeyRef"]["key"],
        "url"
    );
    assert_eq!(
        env("ERRAND_SANDBOX_KUBERNETES_RUNS_CLAIM")["value"],
        DEFAULT_CLAIM
    );
    let root = env("ERRAND_SANDBOX_KUBERNETES_RUNS_ROOT")["value"].clone();
    assert_eq!(
        env("ERRAND_HOME")["value"],
        root,
        "the runs root is errand's home"
    );
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"] == DEFAULT_CLAIM)
        .expect("the claim is mounted")
        .clone();
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("mounted")
        .clone();
    assert_eq!(mount["mountPath"], root);
    // --agent-git: errand's git proxy hub listens on the container port the
    // headless Service named in the URL targets.
    let listen = env("ERRAND_SANDBOX_KUBERNETES_GIT_PROXY_LISTEN")["value"].clone();
    let port: u64 = listen
        .as_str()
        .and_then(|l| l.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .expect("listen is host:port");
    let git_port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "git-proxy")
        .expect("a git-proxy port")
        .clone();
    assert_eq!(git_port["containerPort"], port);
    let url = env("ERRAND_SANDBOX_KUBERNETES_GIT_PROXY_URL")["value"].clone();
    let git_service = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["spec"]["clusterIP"] == "None")
        .expect("a headless Service for the git proxy")
        .clone();
    let host = format!(
        "http://{}.errand.svc.cluster.local:{port}",
        git_service["metadata"]["name"].as_str().unwrap()
    );
    assert_eq!(url, host);
    assert_eq!(git_service["spec"]["ports"][0]["targetPort"], "git-proxy");
    // The model gateway: its pod listener on the container port the same
    // headless Service targets, at the URL pods are given.
    let listen = env("ERRAND_GATEWAY_KUBERNETES_LISTEN")["value"].clone();
    let gw_port: u64 = listen
        .as_str()
        .and_then(|l| l.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .expect("listen is host:port");
    let container_port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "model-gateway")
        .expect("a model-gateway port")
        .clone();
    assert_eq!(container_port["containerPort"], gw_port);
    let service_port = git_service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["targetPort"] == "model-gateway")
        .expect("the Service targets the gateway")
        .clone();
    assert_eq!(service_port["port"], gw_port);
    assert_eq!(
        env("ERRAND_GATEWAY_KUBERNETES_URL")["value"],
        format!(
            "http://{}.errand.svc.cluster.local:{gw_port}",
            git_service["metadata"]["name"].as_str().unwrap()
        )
    );
    assert_eq!(
        pod["securityContext"]["runAsUser"], 10001,
        "the agents' uid"
    );
    let service = find("Service");
    assert_eq!(
        service["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
}
