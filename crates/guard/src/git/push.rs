//! `git push`: no force, delete, tag or mirror pushes and nothing to the
//! default branch; under the push-only-run-branch policy, only the run's
//! branches.

use super::config::GitConfig;
use super::scan::{Scanned, Spec};
use crate::paths;
use crate::shell::Checker;
use crate::words::Arg;
use crate::Denial;

/// `git push`.
pub(super) const PUSH: Spec = Spec {
    short_value: "o",
    long: &[
        "--all",
        "--branches",
        "--mirror",
        "--delete",
        "--tags",
        "--follow-tags",
        "--dry-run",
        "--porcelain",
        "--force",
        "--force-with-lease",
        "--force-if-includes",
        "--repo",
        "--set-upstream",
        "--thin",
        "--receive-pack",
        "--exec",
        "--push-option",
        "--quiet",
        "--verbose",
        "--progress",
        "--recurse-submodules",
        "--verify",
        "--ipv4",
        "--ipv6",
        "--signed",
        "--atomic",
        "--prune",
    ],
    long_value: &[
        "--repo",
        "--receive-pack",
        "--exec",
        "--push-option",
        "--recurse-submodules",
    ],
};

impl Checker<'_> {
    /// `git push` with its arguments `s`, under the settings `cfg`.
    pub(super) fn check_push(&mut self, s: &Scanned, cfg: &GitConfig) -> Result<(), Denial> {
        let default = self.policy.default_branch.clone();
        check_push_mode(s, cfg, &default)?;
        let force = s.short('f')
            || s.long("--force")
            || s.long("--force-with-lease")
            || s.long("--force-if-includes");
        let delete = s.short('d') || s.long("--delete");
        let mut operands: Vec<&Arg> = s.positionals.iter().collect();
        operands.extend(s.after_dashdash.iter());
        let mut refspecs: Vec<&Arg> = operands.iter().skip(1).copied().collect();
        if refspecs.is_empty() {
            // Configured push refspecs apply to a push without refspecs.
            refspecs.extend(cfg.push_refspecs.iter());
            if cfg.push_matching {
                return Err(Denial::new(
                    "push-default-branch",
                    format!(
                        "push.default=matching pushes every matching branch, including `{default}`"
                    ),
                ));
            }
        }
        if refspecs.is_empty() {
            return self.check_bare_push(force, delete, cfg);
        }
        for r in refspecs {
            self.check_push_refspec(&r.text, force, delete)?;
        }
        Ok(())
    }

    /// A push without refspecs (none given, none configured): it pushes the
    /// checked-out branch, or its upstream under `push.default=upstream`.
    fn check_bare_push(&self, force: bool, delete: bool, cfg: &GitConfig) -> Result<(), Denial> {
        let default = &self.policy.default_branch;
        let run = self.policy.run_branch.clone();
        let allow_run = self.policy.allow_force_push_to_run_branch;
        let flag_name = if force { "force" } else { "delete" };
        let current = self.state.branch.clone();
        if force || delete {
            let to_run = allow_run
                && run.is_some()
                && current.is_some()
                && current == run
                && current.as_deref() != Some(default.as_str());
            if !to_run {
                let rule = if force { "push-force" } else { "push-delete" };
                return Err(Denial::new(
                    rule,
                    format!("git push with --{flag_name} and no explicit refspec naming the run's branch"),
                ));
            }
        }
        if self.on_default_branch() {
            return Err(Denial::new(
                "push-default-branch",
                format!("git push after checking out the default branch `{default}`"),
            ));
        }
        if self.policy.push_only_run_branch {
            if cfg.push_upstream {
                return self.only_run_branch(
                    None,
                    "git push with push.default=upstream (to the branch's upstream)",
                );
            }
            let current = self.branch_for_push();
            return self.only_run_branch(current.as_deref(), "git push without a refspec");
        }
        Ok(())
    }

    /// One refspec `r` of a push (`feature`, `HEAD:feature`, `+a:b`, `:gone`),
    /// with `--force`/`--delete` given or not.
    fn check_push_refspec(&self, r: &str, force: bool, delete: bool) -> Result<(), Denial> {
        let default = self.policy.default_branch.as_str();
        if r == "tag" {
            return Err(Denial::new("push-tags", "git push … tag <name>"));
        }
        if r.starts_with('^') {
            return Ok(()); // negative refspec: excludes refs
        }
        let (plus, body) = match r.strip_prefix('+') {
            Some(b) => (true, b),
            None => (false, r),
        };
        if body == ":" || body.is_empty() {
            return Err(Denial::new(
                "push-default-branch",
                format!("git push origin : pushes every matching branch, including `{default}`"),
            ));
        }
        let (src_empty, dst) = match body.split_once(':') {
            Some((src, dst)) => (src.is_empty(), dst),
            None => (false, body),
        };
        if dst.starts_with("refs/tags/") || (!body.contains(':') && body.starts_with("refs/tags/"))
        {
            return Err(Denial::new(
                "push-tags",
                format!("git push of the tag ref `{dst}`"),
            ));
        }
        let dst_name: Option<String> = match dst.strip_prefix("refs/heads/").unwrap_or(dst) {
            "HEAD" | "@" => self.state.branch.clone(),
            other => Some(other.to_owned()),
        };
        let is_default = dst_name.as_deref().is_some_and(|n| {
            n == default || (paths::has_glob_chars(n) && paths::glob_match(n, default))
        });
        let forced = plus || force;
        let deleting = src_empty || delete;
        if forced || deleting {
            let run = &self.policy.run_branch;
            let to_run = self.policy.allow_force_push_to_run_branch
                && !is_default
                && run.is_some()
                && dst_name == *run;
            if !to_run {
                let what = if !forced {
                    if src_empty {
                        format!("`:{dst}` deletes the remote branch")
                    } else {
                        "--delete".to_owned()
                    }
                } else if plus {
                    format!("`+{body}` forces the update")
                } else {
                    "--force".to_owned()
                };
                return Err(self.push_rewrite_denial(forced, &what, dst_name.as_deref()));
            }
        }
        if is_default {
            return Err(Denial::new(
                "push-default-branch",
                format!("git push to the default branch `{default}` (refspec `{r}`)"),
            ));
        }
        if self.policy.push_only_run_branch {
            let target = match dst.strip_prefix("refs/heads/").unwrap_or(dst) {
                "HEAD" | "@" => self.branch_for_push(),
                other => Some(other.to_owned()),
            };
            self.only_run_branch(target.as_deref(), &format!("git push of `{r}`"))?;
        }
        Ok(())
    }

    /// The denial of a push that forces (`forced`) or deletes `target`
    /// (`None`: unknown), described by `what`.
    fn push_rewrite_denial(&self, forced: bool, what: &str, target: Option<&str>) -> Denial {
        let rule = if forced { "push-force" } else { "push-delete" };
        let target = target.unwrap_or("an unknown branch");
        let why_not = match (
            &self.policy.run_branch,
            self.policy.allow_force_push_to_run_branch,
        ) {
            (Some(rb), true) => format!(" (only the run's branch `{rb}` may be)"),
            _ => String::new(),
        };
        Denial::new(rule, format!("git push {what} on `{target}`{why_not}"))
    }

    /// The branch `HEAD` is when a push runs: one the line switched to, else
    /// the policy's current branch if the line is still where it started and
    /// git is not pointed at another repository.
    fn branch_for_push(&self) -> Option<String> {
        if self.state.branch_set {
            return self.state.branch.clone();
        }
        if self.git_elsewhere || self.state.cwd.is_none() || self.state.cwd != self.start_cwd {
            return None;
        }
        self.policy.current_branch.clone()
    }

    /// Under the push-only-run-branch policy: `target` (`None`: unknown) must be the run's branch.
    fn only_run_branch(&self, target: Option<&str>, what: &str) -> Result<(), Denial> {
        let Some(run) = self.policy.run_branch.as_deref() else {
            return Err(Denial::new(
                "push-other-branch",
                format!("{what}: this run has no branch of its own to push"),
            ));
        };
        match target {
            Some(t) if t == run => Ok(()),
            Some(t) if self.policy.push_branches.iter().any(|b| b == t) => Ok(()),
            Some(t) => Err(Denial::new(
                "push-other-branch",
                format!("{what} pushes `{t}`; only the run's branch `{run}` may be pushed"),
            )),
            None => Err(Denial::new(
                "push-other-branch",
                format!(
                    "{what}: the guard cannot tell which branch it pushes; name the run's branch (`git push origin {run}`)"
                ),
            )),
        }
    }
}

/// Push modes that are denied whatever they push: mirrors (`--mirror`, a
/// mirror remote), tags, `--all` and `--prune`.
fn check_push_mode(s: &Scanned, cfg: &GitConfig, default: &str) -> Result<(), Denial> {
    if cfg.mirror {
        return Err(Denial::new(
            "push-force",
            "remote.<name>.mirror=true makes every push a mirror push",
        ));
    }
    if s.long("--mirror") {
        return Err(Denial::new(
            "push-force",
            "git push --mirror overwrites and deletes every remote ref",
        ));
    }
    if s.long("--tags") || s.long("--follow-tags") {
        return Err(Denial::new("push-tags", "git push --tags/--follow-tags"));
    }
    if s.long("--all") || s.long("--branches") {
        return Err(Denial::new(
            "push-default-branch",
            format!("git push --all also pushes the default branch `{default}`"),
        ));
    }
    if s.long("--prune") {
        return Err(Denial::new(
            "push-delete",
            "git push --prune deletes remote branches",
        ));
    }
    Ok(())
}
