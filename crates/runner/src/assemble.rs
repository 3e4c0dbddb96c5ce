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

/// The model endpoints of a harness, as allowlist entries: the variables it
/// declares or passes, from the run's environment, else their public default.
pub(crate) fn model_endpoints(
    harness: &dyn errand_harness::Harness,
    ctx: &RunContext,
    inv: &Invocation,
) -> Vec<String> {
    let mut out = Vec::new();
    for (var, default) in harness.model_endpoints() {
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
                let inside_path = PathBuf::from(format!("{}/{name}", inside::REAL));
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
            (shims, PathBuf::from(inside::SHIMS)),
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

/// The sandbox a run's agent works in, as the assemble phase leaves it.
pub(crate) struct Assembled {
    pub(crate) spec: SandboxSpec,
    /// errand has `uv` for the virtualenv of a run without a repository.
    pub(crate) has_uv: bool,
    /// The environment of the steps after the agent's, which get no route to the git proxy.
    pub(crate) env_after: Vec<(String, String)>,
    /// An `--agent-git` run's git proxy, while the agent works.
    pub(crate) git_proxy: Option<(gitproxy::GitProxy, ProxyServing)>,
    /// How the sandbox reaches that proxy.
    pub(crate) route: Option<GitRoute>,
    /// The run's deadline, from when its sandbox was assembled.
    pub(crate) until: Until,
}

impl Runner {
    /// The assemble phase: the sandbox the agent works in (mounts, the
    /// guard's shims and errand's git gate, the environment, the git proxy of
    /// an `--agent-git` run, the network).
    pub(crate) async fn assemble(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
    ) -> Result<Assembled, RunError> {
        let Scope {
            rec,
            ctx,
            harness,
            inv,
            prepared,
            cancel,
            ..
        } = *s;
        let id = rec.id;
        let spec = &rec.spec;
        let run_dir = self.paths.run_dir(id);
        let workspace = run_dir.join("workspace");
        let home = run_dir.join("home");
        let tmp = run_dir.join("tmp");
        let run_until = Until {
            id,
            cancel: cancel.clone(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(spec.timeout_secs),
        };
        // A real executable only: wrapper scripts (pyenv shims) would not work inside the sandbox.
        let uv = which_executable("uv");
        let mut ro_mounts = vec![(ctx.install_dir.clone(), PathBuf::from(inside::HARNESS))];
        if let Some(uv) = &uv {
            ro_mounts.push((uv.clone(), PathBuf::from(format!("{}/uv", inside::TOOLS))));
        }
        let mut env = inv.env.clone();
        let shim_policy = Self::shim_policy(s)?;
        let entry = self.guard(s, em, &run_dir, &shim_policy, &mut ro_mounts, &mut env)?;
        // The environment of the steps after the agent's, which get no git credentials.
        let env_after = env.clone();
        let git_proxy = self.agent_git(s, em, &run_dir, &mut env).await?;
        let route = git_proxy.as_ref().map(|(_, serving)| match serving {
            ProxyServing::Socket(s) => GitRoute::Socket(errand_sandbox::egress::route_entry(
                gitproxy::MAGIC_HOST,
                s.path(),
            )),
            ProxyServing::Hub { .. } => {
                GitRoute::Address(self.hub_destination().unwrap_or_default())
            }
        });
        let (network, policy) = self.network(
            harness,
            ctx,
            inv,
            prepared.remote.as_deref(),
            route.as_ref(),
        )?;
        em.notice(policy).map_err(log_failed)?;
        let sb_spec = SandboxSpec {
            name: id.short(),
            workspace: workspace.clone(),
            home: home.clone(),
            tmp: tmp.clone(),
            ro_mounts,
            env,
            limits: errand_sandbox::Limits {
                // The agent's time, then the steps after it, and a minute
                // to bring the work back: past that the run is over anyway.
                lifetime_secs: Some(
                    spec.timeout_secs
                        + crate::steps::finish_grace(spec.timeout_secs).as_secs()
                        + 60,
                ),
                ..self.limits.clone()
            },
            network,
            entry,
            layers: prepared.layers.as_ref().map(|l| {
                errand_git::Checkouts::mark_used(&l.lower);
                errand_sandbox::WorkspaceLayers {
                    lower: l.lower.clone(),
                    work: l.work.clone(),
                    view: l.view.clone(),
                }
            }),
        };
        Ok(Assembled {
            spec: sb_spec,
            has_uv: uv.is_some(),
            env_after,
            git_proxy,
            route,
            until: run_until,
        })
    }

    /// The guard's policy for the shims and the gate: the run's branch, the
    /// default branch, and for `--agent-git` what the agent may push.
    fn shim_policy(s: &Scope<'_>) -> Result<Vec<String>, RunError> {
        let (spec, prepared) = (&s.rec.spec, s.prepared);
        // The shims' policy is fixed in their scripts: the environment also
        // carries it (for the hooks, which the harness runs with its own), but
        // a command could override a variable for the shim it starts.
        let mut shim_policy = vec![
            "--workspace".to_string(),
            inside::WORKSPACE.to_string(),
            "--home".to_string(),
            inside::HOME.to_string(),
            "--branch".to_string(),
            prepared.branch.clone(),
            "--default-branch".to_string(),
            prepared.base_branch.clone(),
        ];
        if spec.agent_git {
            shim_policy.push("--push-only-run-branch".to_string());
            if let Some(b) = spec
                .agent_branches
                .iter()
                .find(|b| **b == prepared.base_branch)
            {
                return Err(RunError::invalid(format!(
                    "--agent-branch {b}: the default branch is never the agent's to push"
                )));
            }
            for b in &spec.agent_branches {
                shim_policy.extend(["--push-branch".to_string(), b.clone()]);
            }
            if spec.allow_force_push {
                shim_policy.push("--allow-force-push-to-run-branch".to_string());
            }
        }
        Ok(shim_policy)
    }

    /// The guard in the sandbox: its shims and errand's binary mounted, the
    /// git gate every command starts behind (the returned entry), and the
    /// guard's variables for the hooks.
    fn guard(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
        run_dir: &Path,
        shim_policy: &[String],
        ro_mounts: &mut Vec<(PathBuf, PathBuf)>,
        env: &mut Vec<(String, String)>,
    ) -> Result<Vec<String>, RunError> {
        let (spec, prepared) = (&s.rec.spec, s.prepared);
        let mut entry = Vec::new();
        match self.guard_mounts(run_dir, shim_policy) {
            Ok((mounts, real_git)) => {
                ro_mounts.extend(mounts);
                // Every sandboxed command starts behind errand's git gate: the
                // real git is reachable only through the shim (see the cli's gate.rs).
                let confinable = git_confinement_available();
                entry = vec![
                    format!("{}/errand", inside::TOOLS),
                    "guard".into(),
                    "enter".into(),
                ];
                entry.extend(shim_policy.iter().cloned());
                entry.extend(["--real".into(), real_git.to_string_lossy().into_owned()]);
                // Where this machine's kernel confines, a sandbox that cannot is
                // a failure, never a silent fallback (the kubernetes nodes' and
                // Modal's kernels are not this one's).
                if confinable && !matches!(self.sandbox.name(), "kubernetes" | "modal") {
                    entry.push("--require".into());
                }
                entry.push("--".into());
                em.notice(if confinable {
                    "git: the sandbox's git binaries run only through errand's guard (Landlock); \
                     a git the agent brings itself is still held by the git proxy and the forge"
                        .to_string()
                } else {
                    "git: this kernel has no Landlock, so the sandbox's git binaries are reachable \
                     by path; the guard sees only git on PATH"
                        .to_string()
                })
                .map_err(log_failed)?;
                env.extend([
                    (
                        "ERRAND_GUARD_WORKSPACE".to_string(),
                        inside::WORKSPACE.to_string(),
                    ),
                    ("ERRAND_GUARD_HOME".to_string(), inside::HOME.to_string()),
                    ("ERRAND_GUARD_BRANCH".to_string(), prepared.branch.clone()),
                    (
                        "ERRAND_GUARD_DEFAULT_BRANCH".to_string(),
                        prepared.base_branch.clone(),
                    ),
                    // The guard runs as errand inside the sandbox: it must stay quiet and local.
                    ("ERRAND_LOG".to_string(), "error".to_string()),
                ]);
            }
            Err(why) => {
                // The agent's pushes are kept to its branch by the guard alone.
                if spec.agent_git {
                    return Err(RunError::invalid(format!(
                        "--agent-git needs errand's command guard in the sandbox, which is not available: {why}"
                    )));
                }
                em.notice(format!(
                    "the command guard is not available in this sandbox: {why}"
                ))
                .map_err(log_failed)?
            }
        }
        Ok(entry)
    }

    /// An `--agent-git` run's git proxy, served on a private socket (local,
    /// docker) or in the process's hub (kubernetes), and the sandbox's git
    /// pointed at it.
    async fn agent_git(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
        run_dir: &Path,
        env: &mut Vec<(String, String)>,
    ) -> Result<Option<(gitproxy::GitProxy, ProxyServing)>, RunError> {
        let (spec, prepared) = (&s.rec.spec, s.prepared);
        let git_proxy = match (spec.agent_git, s.access) {
            (true, Some(a)) => {
                let kubernetes = self.sandbox.name() == "kubernetes";
                let current = a.clone();
                let proxy = gitproxy::GitProxy::new(gitproxy::Config {
                    owner: a.owner.clone(),
                    repo: a.repo.clone(),
                    upstream: a.url.clone(),
                    branches: std::iter::once(prepared.branch.clone())
                        .chain(spec.agent_branches.iter().cloned())
                        .collect(),
                    allow_force: spec.allow_force_push,
                    auth: Arc::new(move || current.credential().auth_header),
                    scratch: run_dir.join("git-proxy"),
                    max_push: gitproxy::DEFAULT_MAX_PUSH,
                })
                .map_err(|e| RunError::host(e.to_string()))?;
                // git in the sandbox reaches the run's repository only as errand's
                // proxy URL; it holds no token, the proxy adds it outside.
                let (serving, url, shown) = if kubernetes {
                    // Pods have no egress proxy: they reach errand's hub over the
                    // cluster network, under a capability that is the run's alone.
                    let (listen, base) = self.kubernetes_git_proxy()?;
                    let reg = gitproxy::Hub::shared(listen)
                        .register(proxy.clone())
                        .await
                        .map_err(|e| RunError::host(format!("agent git: {e}")))?;
                    // A secret for the run's life: never in events or output.
                    em.redactor.add(reg.capability());
                    let url = reg.url(base, &proxy);
                    let shown = format!(
                        "{}/<run capability>{}",
                        base.trim_end_matches('/'),
                        proxy.repo_path()
                    );
                    (ProxyServing::Hub { _registration: reg }, url, shown)
                } else {
                    let socket = errand_sandbox::socket::private_path("git-proxy")
                        .map_err(|e| RunError::host(format!("agent git: {e}")))?;
                    let serving = proxy
                        .serve_unix(&socket)
                        .map_err(|e| RunError::host(e.to_string()))?;
                    let url = proxy.sandbox_url();
                    (ProxyServing::Socket(serving), url.clone(), url)
                };
                insteadof_env(env, &url, &a.url);
                env.push(("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()));
                env.push((
                    "ERRAND_GUARD_PUSH_ONLY_RUN_BRANCH".to_string(),
                    "1".to_string(),
                ));
                // The same policy for Claude Code's hook, which reads its variables.
                if !spec.agent_branches.is_empty() {
                    env.push((
                        "ERRAND_GUARD_PUSH_BRANCHES".to_string(),
                        spec.agent_branches.join(","),
                    ));
                }
                if spec.allow_force_push {
                    env.push((
                        "ERRAND_GUARD_ALLOW_FORCE_PUSH_TO_RUN_BRANCH".to_string(),
                        "true".to_string(),
                    ));
                }
                if kubernetes {
                    em.notice(format!(
                        "agent git: the pod reaches errand's git proxy at {shown} over the cluster network; \
                         the capability in that URL is a secret of this run, ends with it and grants only \
                         this run's ref rules; the token never enters the pod"
                    ))
                    .map_err(log_failed)?;
                }
                let mut may_push = vec![prepared.branch.clone()];
                may_push.extend(spec.agent_branches.iter().cloned());
                em.notice(format!(
                    "agent git: git in the sandbox reaches {}/{} through errand's git proxy ({shown}) and holds no token; \
                     the proxy adds it outside the sandbox ({}) and lets it push {} only: no other ref, no deletion, \
                     {}",
                    a.owner,
                    a.repo,
                    if spec.push { "fetch and push" } else { "fetch; the token is read-only without --push" },
                    may_push.join(", "),
                    if spec.allow_force_push { "force pushes allowed (--allow-force-push)" } else { "no force push" },
                ))
                .map_err(log_failed)?;
                Some((proxy, serving))
            }
            (true, _) => {
                return Err(RunError::forge(
                    "--agent-git needs the run's GitHub token, and this run has none",
                ))
            }
            (false, _) => None,
        };
        Ok(git_proxy)
    }
}
