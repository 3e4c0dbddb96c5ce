//! Subcommands that can throw away uncommitted work: `reset --hard`,
//! `clean -f`, `restore`, `stash drop`, `rm -f .`, `worktree remove
//! --force`, `submodule deinit --force` (and the code `submodule foreach` runs).

use super::config::GitConfig;
use super::scan::{Scanned, Spec};
use crate::shell::Checker;
use crate::words::Arg;
use crate::Denial;

/// `git reset`.
pub(super) const RESET: Spec = Spec {
    short_value: "",
    long: &[
        "--hard",
        "--soft",
        "--mixed",
        "--merge",
        "--keep",
        "--quiet",
        "--patch",
        "--pathspec-from-file",
        "--pathspec-file-nul",
        "--intent-to-add",
        "--recurse-submodules",
        "--refresh",
    ],
    long_value: &[],
};

/// `git clean`.
pub(super) const CLEAN: Spec = Spec {
    short_value: "e",
    long: &[
        "--force",
        "--dry-run",
        "--quiet",
        "--interactive",
        "--exclude",
    ],
    long_value: &["--exclude"],
};

/// `git restore`.
pub(super) const RESTORE: Spec = Spec {
    short_value: "s",
    long: &[
        "--source",
        "--staged",
        "--worktree",
        "--patch",
        "--quiet",
        "--progress",
        "--ours",
        "--theirs",
        "--merge",
        "--conflict",
        "--ignore-unmerged",
        "--ignore-skip-worktree-bits",
        "--recurse-submodules",
        "--overlay",
        "--pathspec-from-file",
        "--pathspec-file-nul",
    ],
    long_value: &["--source"],
};

/// `git reset --hard`/`--merge` overwrite the working tree.
pub(super) fn check_reset(s: &Scanned) -> Result<(), Denial> {
    for opt in ["--hard", "--merge"] {
        if s.long(opt) {
            return Err(Denial::new("git-reset-hard", format!("git reset {opt}")));
        }
    }
    Ok(())
}

/// `git clean` that deletes (forced, or with `clean.requireForce=false`).
pub(super) fn check_clean(s: &Scanned, cfg: &GitConfig) -> Result<(), Denial> {
    let force = s.short('f') || s.long("--force");
    let dry = s.short('n') || s.long("--dry-run");
    if (force || cfg.require_force_off) && !dry {
        let how = if force {
            "git clean with -f"
        } else {
            "git clean with clean.requireForce=false"
        };
        return Err(Denial::new("git-clean-force", how));
    }
    Ok(())
}

/// `git restore` of working-tree files (only `--staged` alone is allowed).
pub(super) fn check_restore(s: &Scanned) -> Result<(), Denial> {
    let staged = s.short('S') || s.long("--staged");
    let worktree = s.short('W') || s.long("--worktree");
    if !staged || worktree {
        return Err(Denial::new(
            "git-discard-changes",
            "git restore of working-tree files (only `git restore --staged` is allowed)",
        ));
    }
    Ok(())
}

/// `git stash drop`/`clear`.
pub(super) fn check_stash(s: &Scanned) -> Result<(), Denial> {
    match s.positionals.first().map(|p| p.text.as_str()) {
        Some(op @ ("drop" | "clear")) => {
            Err(Denial::new("git-stash-drop", format!("git stash {op}")))
        }
        _ => Ok(()),
    }
}

/// `git rm -f` of everything (`.`, `*`, `:/`) without `--cached`.
pub(super) fn check_rm(s: &Scanned) -> Result<(), Denial> {
    let cached = s.long("--cached");
    let force = s.short('f') || s.long("--force");
    let all = s
        .positionals
        .iter()
        .chain(&s.after_dashdash)
        .any(|p| matches!(p.text.as_str(), "." | "*" | ":/" | "./" | ":/*" | "./*"));
    if force && !cached && all {
        return Err(Denial::new(
            "git-discard-changes",
            "git rm -rf . deletes every tracked file with its uncommitted changes",
        ));
    }
    Ok(())
}

/// `git worktree remove --force`.
pub(super) fn check_worktree(s: &Scanned, rest: &[Arg]) -> Result<(), Denial> {
    let op = s.positionals.first().map(|p| p.text.as_str());
    let force = rest.iter().any(|a| {
        a.text == "--force"
            || (a.text.starts_with('-') && !a.text.starts_with("--") && a.text.contains('f'))
    });
    if op == Some("remove") && force {
        return Err(Denial::new(
            "git-discard-changes",
            "git worktree remove --force deletes a worktree with uncommitted changes",
        ));
    }
    Ok(())
}

impl Checker<'_> {
    /// `git submodule deinit --force`, and the command `git submodule foreach` runs.
    pub(super) fn check_submodule(&mut self, rest: &[Arg]) -> Result<(), Denial> {
        if rest.iter().any(|a| a.text == "deinit")
            && rest.iter().any(|a| a.text == "-f" || a.text == "--force")
        {
            return Err(Denial::new(
                "git-discard-changes",
                "git submodule deinit --force removes submodule work trees with local changes",
            ));
        }
        if let Some(pos) = rest.iter().position(|a| a.text == "foreach") {
            let cmd: Vec<&Arg> = rest[pos + 1..]
                .iter()
                .skip_while(|a| a.text.starts_with('-'))
                .collect();
            if cmd.iter().any(|a| a.dynamic) {
                return Err(Denial::new(
                    "dynamic-code",
                    "git submodule foreach with a command known only at run time",
                ));
            }
            let code = cmd
                .iter()
                .map(|a| a.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            self.check_nested(&code, true)?;
        }
        Ok(())
    }
}
