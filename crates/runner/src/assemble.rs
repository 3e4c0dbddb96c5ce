//! Assembling a run's sandbox: the guard's shims and errand's git gate, the
//! network (the egress allowlist, the model endpoints, the git proxy's
//! route), and the virtualenv of a run without a repository.

use super::*;

/// How a run's git proxy is served while its agent works.
pub(crate) enum ProxyServing {
    /// On a private Unix socket, reached through the egress proxy.
    Socket(gitproxy::Serving),
    /// In the process's TCP hub under the run's capability (kubernetes).
    Hub {
        /// Held for its drop, which removes the run's capability.
        _registration: gitproxy::Registration,
    },
}

/// The variables that name a harness's model endpoint, with the public endpoint used without them.
pub(crate) const MODEL_ENDPOINTS: &[(&str, &str)] = &[
    ("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
    ("OPENAI_BASE_URL", "https://api.openai.com"),
    (
        "GOOGLE_GEMINI_BASE_URL",
        "https://generativelanguage.googleapis.com",
    ),
    ("AMP_URL", "https://ampcode.com"),
];

/// The model endpoints of a harness, as allowlist entries: the variables it
/// declares or passes, from the run's environment, else their public default.
pub(crate) fn model_endpoints(
    harness: &dyn errand_harness::Harness,
    ctx: &RunContext,
    inv: &Invocation,
) -> Vec<String> {
    let mut out = Vec::new();
    for (var, default) in MODEL_ENDPOINTS {
        let passed = inv.env.iter().find(|(k, _)| k == var).map(|(_, v)| v);
        let declared = harness.env_vars().iter().any(|v| v.name == *var);
        if !declared && passed.is_none() {
            continue;
        }
        let url = ctx
            .env
            .get(*var)
            .or(passed)
            .filter(|v| !v.trim().is_empty())
            .map_or(*default, String::as_str);
        if let Some(d) = egress::url_destination(url) {
            out.push(d);
        }
    }
    out
}

/// One line naming what the egress proxy refused.
pub(crate) fn refusal_notice(refused: &[egress::Refusal]) -> Option<String> {
    if refused.is_empty() {
        return None;
    }
    let list: Vec<String> = refused
        .iter()
        .map(|r| {
            let times = if r.count > 1 {
                format!(" ×{}", r.count)
            } else {
                String::new()
            };
            format!("{}{times} ({})", r.destination, r.reason)
        })
        .collect();
    Some(format!(
        "egress: errand's proxy refused {} destination(s): {}",
        refused.len(),
        list.join("; ")
    ))
}

/// `GIT_CONFIG_*` entries, appended to any already in `env`, that make git
/// use `proxy_url` wherever the repository is named `remote_url`.
/// Configuration only, no secret.
pub(crate) fn insteadof_env(env: &mut Vec<(String, String)>, proxy_url: &str, remote_url: &str) {
    let count = env
        .iter()
        .rev()
        .find(|(k, _)| k == "GIT_CONFIG_COUNT")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    env.retain(|(k, _)| k != "GIT_CONFIG_COUNT");
    let entries = [
        (format!("url.{proxy_url}.insteadOf"), remote_url.to_string()),
        // No helper: there is nothing to ask for, and nothing to prompt.
        ("credential.helper".to_string(), String::new()),
    ];
    for (i, (k, v)) in entries.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{}", count + i), k.clone()));
        env.push((format!("GIT_CONFIG_VALUE_{}", count + i), v.clone()));
    }
    env.push((
        "GIT_CONFIG_COUNT".to_string(),
        (count + entries.len()).to_string(),
    ));
}

/// How the sandbox reaches the run's git proxy, as an egress allowlist entry.
pub(crate) enum GitRoute {
    /// A route of the egress proxy to the proxy's Unix socket.
    Socket(String),
    /// errand's hub, `host:port`, allowed by address (kubernetes).
    Address(String),
}

impl GitRoute {
    pub(crate) fn entry(&self) -> &str {
        match self {
            GitRoute::Socket(e) | GitRoute::Address(e) => e,
        }
    }
}

/// Whether this machine's kernel can confine a sandbox's git (Landlock, any ABI).
pub(crate) fn git_confinement_available() -> bool {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no pointer and creates nothing.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi >= 1
}

impl Runner {
    /// Where pods reach errand's git proxy hub, as an allowlist entry (`host:port`).
    pub(crate) fn hub_destination(&self) -> Option<String> {
        self.kubernetes_git_proxy()
            .ok()
            .and_then(|(_, base)| egress::url_destination(base))
    }

    /// `[sandbox] kubernetes_git_proxy_listen` and `kubernetes_git_proxy_url`,
    /// which `--agent-git` needs on kubernetes.
    pub(crate) fn kubernetes_git_proxy(&self) -> Result<(&str, &str), RunError> {
        let listen = self
            .kubernetes_git_proxy_listen
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        let url = self
            .kubernetes_git_proxy_url
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        let (Some(listen), Some(url)) = (listen, url) else {
            return Err(RunError::invalid(
                "--agent-git with the kubernetes sandbox needs sandbox.kubernetes_git_proxy_listen \
                 (where errand serves the git proxy, e.g. \"0.0.0.0:8471\") and \
                 sandbox.kubernetes_git_proxy_url (the URL pods reach it at, e.g. \
                 \"http://errand.errand.svc.cluster.local:8471\"): its pods have no egress proxy",
            ));
        };
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://"))
            || egress::url_destination(url).is_none()
        {
            return Err(RunError::invalid(format!(
                "sandbox.kubernetes_git_proxy_url must be an http:// or https:// URL with a host, not {url:?}"
            )));
        }
        Ok((listen, url))
    }

    /// The run's network, and a notice saying which applies.
    pub(crate) fn network(
        &self,
        harness: &dyn errand_harness::Harness,
        ctx: &RunContext,
        inv: &Invocation,
        remote: Option<&str>,
        git_route: Option<&GitRoute>,
    ) -> Result<(NetworkPolicy, String), RunError> {
        let backend = self.sandbox.name();
        let by_address = self.sandbox.allowlists_by_address();
        if let Some(GitRoute::Address(a)) = git_route {
            // The kubernetes pod reaches errand's hub over the cluster's
            // network: with a NetworkPolicy, it must allow errand's address.
            if self.egress.allowlist && by_address && a.is_empty() {
                return Err(RunError::invalid(
                    "--agent-git: sandbox.kubernetes_git_proxy_url names no host and port the pod's \
                     network policy could allow",
                ));
            }
        }
        // Without a NetworkPolicy the pod has the namespace's network: nothing to allow.
        let git_route = git_route.filter(|r| by_address || !matches!(r, GitRoute::Address(_)));
        if !self.egress.allowlist && matches!(git_route, Some(GitRoute::Socket(_))) {
            return Err(RunError::invalid(
                "--agent-git needs sandbox.egress = \"allowlist\": git in the sandbox reaches errand's git proxy \
                 through the egress proxy",
            ));
        }
        if !self.egress.allowlist {
            return Ok((
                NetworkPolicy::Open,
                format!(
                    "egress: open (sandbox.egress = \"open\"): the {backend} sandbox's own network"
                ),
            ));
        }
        if matches!(git_route, Some(GitRoute::Socket(_)))
            && (by_address || !self.sandbox.isolates_network())
        {
            return Err(RunError::invalid(format!(
                "--agent-git needs errand's egress proxy, which the {backend} sandbox does not have"
            )));
        }
        if !self.sandbox.isolates_network() && !by_address {
            return Ok((
                NetworkPolicy::Open,
                format!(
                    "egress: the {backend} sandbox has no egress proxy: its own network policy applies \
                     (for kubernetes: enable sandbox.kubernetes_network_policy to enforce the allowlist)"
                ),
            ));
        }
        let mut allow = model_endpoints(harness, ctx, inv);
        // The agent reaches the forge's git host only when configured; with
        // --agent-git it reaches errand's git proxy instead, which holds the token.
        if self.egress.git_host {
            if let Some(d) = remote.and_then(egress::url_destination) {
                allow.push(d);
            }
        }
        allow.extend(self.egress.allow.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        allow.retain(|a| seen.insert(a.clone()));
        let exe = std::env::current_exe().map_err(|e| {
            RunError::host(format!(
                "errand's own path is unknown ({e}), and the sandbox's egress bridge is errand: \
                 set sandbox.egress = \"open\" to run without it"
            ))
        })?;
        let mut listed = if allow.is_empty() {
            "nothing".to_string()
        } else {
            allow.join(", ")
        };
        match git_route {
            Some(GitRoute::Socket(r)) => {
                allow.push(r.clone());
                listed.push_str(&format!(
                    ", and errand's git proxy as http://{}",
                    gitproxy::MAGIC_HOST
                ));
            }
            Some(GitRoute::Address(a)) => {
                if !allow.contains(a) {
                    allow.push(a.clone());
                }
                listed.push_str(&format!(", and errand's git proxy at {a}"));
            }
            None => {}
        }
        let notice = if by_address {
            format!(
                "egress: allowlist (sandbox.egress = \"allowlist\"): the {backend} sandbox's network policy \
                 allows {listed}, by address (names resolved when it starts, wildcards not enforced)"
            )
        } else {
            format!(
                "egress: allowlist (sandbox.egress = \"allowlist\"): no network in the {backend} sandbox \
                 but errand's proxy to {listed}"
            )
        };
        Ok((
            NetworkPolicy::Isolated(errand_sandbox::Egress {
                allow,
                protected: self.egress.protected.clone(),
                bridge: errand_sandbox::Bridge {
                    exe,
                    args: vec!["sandbox".into(), "bridge".into()],
                },
            }),
            notice,
        ))
    }

    /// errand's own binary (for `errand guard hook` and the shims) and the
    /// shims directory, as read-only mounts. Every shim checks its argv with
    /// the guard and then runs the real program.
    pub(crate) fn guard_mounts(
        &self,
        run_dir: &Path,
        policy: &[String],
    ) -> Result<(Vec<(PathBuf, PathBuf)>, PathBuf), String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("errand's own path is unknown: {e}"))?;
        let shims = run_dir.join("shims");
        std::fs::create_dir_all(&shims)
            .map_err(|e| format!("cannot create {}: {e}", shims.display()))?;
        // In the local sandbox, which shows the host's /usr, the shims also
        // cover the binaries' absolute paths (`/usr/bin/git`): the real ones are
        // mounted elsewhere and reached only through the guard.
        let cover_paths = self.sandbox.name() == "local";
        let mut extra = Vec::new();
        let mut real_git = PathBuf::from("/usr/bin/git");
        for name in ["git", "rm"] {
            let real = which_executable(name).ok_or_else(|| format!("{name} is not on PATH"))?;
            let real_inside = if cover_paths {
                let inside_path = PathBuf::from(format!("{GUARD_REAL}/{name}"));
                extra.push((real.clone(), inside_path.clone()));
                for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
                    let p = Path::new(dir).join(name);
                    // `/bin` is often a link to `/usr/bin`: mount each file once.
                    let is_file = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file());
                    let parent_real = std::fs::canonicalize(dir).is_ok_and(|d| d == Path::new(dir));
                    if is_file && parent_real {
                        extra.push((shims.join(name), p));
                    }
                }
                inside_path
            } else {
                // Other backends run their own (Debian) image: its git and rm, not the host's paths.
                Path::new("/usr/bin").join(name)
            };
            if name == "git" {
                real_git = real_inside.clone();
            }
            let policy: Vec<String> = policy.iter().map(|a| sh_quote(a)).collect();
            // git's exec path links its dashed names (`git-add`) to the shim.
            let called = if name == "git" { "\"${0##*/}\"" } else { name };
            let script = format!(
                "#!/bin/sh\nexec {bin}/errand guard shim {policy} --real {real} -- {called} \"$@\"\n",
                bin = inside::TOOLS,
                policy = policy.join(" "),
                real = sh_quote(&real_inside.to_string_lossy()),
            );
            let path = shims.join(name);
            std::fs::write(&path, script)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("cannot make {} executable: {e}", path.display()))?;
        }
        let mut mounts = vec![
            (exe, PathBuf::from(format!("{}/errand", inside::TOOLS))),
            (shims, PathBuf::from(GUARD_SHIMS)),
        ];
        mounts.extend(extra);
        Ok((mounts, real_git))
    }

    pub(crate) async fn make_venv(
        &self,
        sb: &SandboxSpec,
        have_uv: bool,
        em: &mut Emitter,
        until: &Until,
    ) -> Result<(), RunError> {
        // The workspace's .git is written from inside the sandbox only.
        let script = if have_uv {
            format!("{}/uv venv --quiet /workspace/.venv", inside::TOOLS)
        } else {
            "python3 -m venv /workspace/.venv".to_string()
        } + " && printf '\\n.venv/\\n' >> /workspace/.git/info/exclude";
        let mut env = sb.env.clone();
        env.push(("UV_CACHE_DIR".into(), "/tmp/uv-cache".into()));
        let spec = SandboxSpec { env, ..sb.clone() };
        match self.sandboxed_sh(&spec, &script, until).await {
            Err(stop) if stop.state() != RunState::Failed => Err(stop),
            Ok(_) => em
                .notice(format!(
                    "created a Python virtual environment in /workspace/.venv{}",
                    if have_uv {
                        " with uv (uv is on PATH)"
                    } else {
                        " (uv not found on this machine)"
                    }
                ))
                .map_err(log_failed),
            Err(stop) => em
                .notice(format!("no Python virtual environment: {stop}"))
                .map_err(log_failed),
        }
    }
}
