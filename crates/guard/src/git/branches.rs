//! Subcommands that move branches or change which one is checked out:
//! `checkout`, `switch`, `branch`, `merge`, `rebase`. The default branch is
//! never reset, renamed, deleted, merged into or rewritten, and the branch
//! the line switches to is tracked for later pushes.

use super::scan::{Scanned, Spec};
use crate::paths;
use crate::shell::Checker;
use crate::Denial;

/// `git checkout`.
pub(super) const CHECKOUT: Spec = Spec {
    short_value: "bB",
    long: &[
        "--force",
        "--merge",
        "--patch",
        "--quiet",
        "--detach",
        "--orphan",
        "--track",
        "--guess",
        "--ours",
        "--theirs",
        "--conflict",
        "--ignore-skip-worktree-bits",
        "--ignore-other-worktrees",
        "--overwrite-ignore",
        "--recurse-submodules",
        "--progress",
        "--pathspec-from-file",
        "--pathspec-file-nul",
        "--overlay",
    ],
    long_value: &["--orphan"],
};

/// `git switch`.
pub(super) const SWITCH: Spec = Spec {
    short_value: "cC",
    long: &[
        "--create",
        "--force-create",
        "--detach",
        "--guess",
        "--force",
        "--discard-changes",
        "--merge",
        "--conflict",
        "--quiet",
        "--progress",
        "--track",
        "--orphan",
        "--ignore-other-worktrees",
        "--recurse-submodules",
    ],
    long_value: &["--create", "--force-create", "--orphan"],
};

/// `git branch`.
pub(super) const BRANCH: Spec = Spec {
    short_value: "u",
    long: &[
        "--delete",
        "--force",
        "--move",
        "--copy",
        "--remotes",
        "--all",
        "--verbose",
        "--quiet",
        "--list",
        "--set-upstream-to",
        "--unset-upstream",
        "--track",
        "--contains",
        "--merged",
        "--sort",
        "--points-at",
        "--format",
        "--color",
        "--column",
        "--abbrev",
        "--ignore-case",
        "--create-reflog",
        "--edit-description",
        "--show-current",
        "--omit-empty",
        "--recurse-submodules",
    ],
    long_value: &["--set-upstream-to", "--sort", "--points-at", "--format"],
};

/// `git merge`.
pub(super) const MERGE: Spec = Spec {
    short_value: "msXF",
    long: &[
        "--abort",
        "--quit",
        "--continue",
        "--message",
        "--strategy",
        "--strategy-option",
        "--file",
        "--into-name",
    ],
    long_value: &[
        "--message",
        "--strategy",
        "--strategy-option",
        "--file",
        "--into-name",
    ],
};

/// `git rebase`.
pub(super) const REBASE: Spec = Spec {
    short_value: "xsX",
    long: &["--exec", "--strategy", "--strategy-option", "--onto"],
    long_value: &["--exec", "--strategy", "--strategy-option", "--onto"],
};

impl Checker<'_> {
    /// Whether the line checked out the default branch.
    pub(super) fn on_default_branch(&self) -> bool {
        let d = &self.policy.default_branch;
        self.state
            .branch
            .as_deref()
            .is_some_and(|b| b == d || b.strip_prefix("refs/heads/") == Some(d))
    }

    /// `main`, `refs/heads/main`, `heads/main` for the policy's default branch.
    pub(super) fn is_default_branch(&self, name: &str) -> bool {
        let d = self.policy.default_branch.as_str();
        let n = name
            .trim_start_matches("refs/")
            .trim_start_matches("heads/");
        n == d
    }

    /// `git checkout`: discarding changes (`--force`, paths), resetting the
    /// default branch (`-B main`), and the branch it switches to.
    pub(super) fn check_checkout(&mut self, s: &Scanned) -> Result<(), Denial> {
        if s.short('f') || s.long("--force") {
            return Err(Denial::new("git-discard-changes", "git checkout --force"));
        }
        if s.long("--pathspec-from-file") {
            return Err(Denial::new(
                "git-discard-changes",
                "git checkout --pathspec-from-file",
            ));
        }
        if s.dashdash && !s.after_dashdash.is_empty() {
            return Err(Denial::new(
                "git-discard-changes",
                "git checkout -- <paths>",
            ));
        }
        if (s.long("--ours") || s.long("--theirs")) && !s.positionals.is_empty() {
            return Err(Denial::new(
                "git-discard-changes",
                "git checkout --ours/--theirs <paths>",
            ));
        }
        let new = s
            .short_value('b')
            .or(s.short_value('B'))
            .or(s.long_value("--orphan"))
            .map(str::to_owned);
        if let Some(n) = new {
            let force_create = s.short_value('B').is_some();
            if force_create && self.is_default_branch(&n) {
                return Err(Denial::new(
                    "git-default-branch-move",
                    format!("git checkout -B {n} resets the default branch"),
                ));
            }
            if s.positionals.len() > 1 {
                return Err(Denial::new(
                    "git-discard-changes",
                    "git checkout -b <branch> <start> <paths>",
                ));
            }
            self.state.branch = Some(n);
            self.state.branch_set = true;
            return Ok(());
        }
        match s.positionals.as_slice() {
            [] => Ok(()),
            [one] => {
                let p = one.text.as_str();
                let pathlike = p == "."
                    || p == ".."
                    || p.starts_with("./")
                    || p.starts_with("../")
                    || p.starts_with('/')
                    || p.starts_with(":(")
                    || p.starts_with(":/")
                    || paths::has_glob_chars(p);
                if pathlike {
                    return Err(Denial::new(
                        "git-discard-changes",
                        format!("git checkout {p}"),
                    ));
                }
                self.state.branch_set = true;
                self.state.branch = if p == "-" || s.long("--detach") || s.short('d') {
                    None
                } else {
                    Some(p.to_owned())
                };
                Ok(())
            }
            _ => Err(Denial::new(
                "git-discard-changes",
                "git checkout <tree-ish> <paths>",
            )),
        }
    }

    /// `git switch`: discarding changes, resetting the default branch (`-C main`),
    /// and the branch it switches to.
    pub(super) fn check_switch(&mut self, s: &Scanned) -> Result<(), Denial> {
        if s.short('f') || s.long("--force") || s.long("--discard-changes") {
            return Err(Denial::new(
                "git-discard-changes",
                "git switch --force/--discard-changes",
            ));
        }
        if let Some(n) = s.short_value('C').or(s.long_value("--force-create")) {
            if self.is_default_branch(n) {
                return Err(Denial::new(
                    "git-default-branch-move",
                    format!("git switch -C {n} resets the default branch"),
                ));
            }
        }
        let new = s
            .short_value('c')
            .or(s.short_value('C'))
            .or(s.long_value("--create"))
            .or(s.long_value("--force-create"))
            .or(s.long_value("--orphan"))
            .map(str::to_owned);
        self.state.branch_set = true;
        self.state.branch = match new {
            Some(n) => Some(n),
            None if s.short('d') || s.long("--detach") => None,
            None => s
                .positionals
                .first()
                .map(|p| p.text.clone())
                .filter(|p| p != "-"),
        };
        Ok(())
    }

    /// `git branch`: force deletes, and deleting, moving or overwriting the default branch.
    pub(super) fn check_branch(&self, s: &Scanned) -> Result<(), Denial> {
        let delete = s.short('d') || s.long("--delete");
        let force = s.short('f') || s.long("--force");
        if s.short('D') || (delete && force) {
            return Err(Denial::new(
                "git-branch-force-delete",
                "git branch -D / --delete --force",
            ));
        }
        let moves = s.short('m') || s.short('M') || s.long("--move");
        let copies = s.short('C') || (s.long("--copy") && force);
        if force || moves || copies || delete {
            if let Some(p) = s
                .positionals
                .iter()
                .find(|p| self.is_default_branch(&p.text))
            {
                return Err(Denial::new(
                    "git-default-branch-move",
                    format!(
                        "git branch {} of the default branch `{}`",
                        if delete {
                            "--delete"
                        } else if moves {
                            "--move"
                        } else {
                            "--force"
                        },
                        p.text
                    ),
                ));
            }
            if moves && s.positionals.len() == 1 && self.on_default_branch() {
                return Err(Denial::new(
                    "git-default-branch-move",
                    "git branch -m renames the checked-out default branch",
                ));
            }
        }
        Ok(())
    }

    /// `git merge` after the line checked out the default branch.
    pub(super) fn check_merge(&self, s: &Scanned) -> Result<(), Denial> {
        let control = s.long("--abort") || s.long("--quit") || s.long("--continue");
        if !control && self.on_default_branch() {
            return Err(Denial::new(
                "merge-default-branch",
                format!(
                    "git merge after checking out the default branch `{}` in the same command",
                    self.policy.default_branch
                ),
            ));
        }
        Ok(())
    }

    /// `git rebase`: its `--exec` code, and rewriting the default branch.
    pub(super) fn check_rebase(&mut self, s: &Scanned) -> Result<(), Denial> {
        for (_, v) in s.short_values.iter().filter(|(c, _)| *c == 'x') {
            self.check_nested(v, true)?;
        }
        if let Some(v) = s.long_value("--exec") {
            self.check_nested(v, true)?;
        }
        // `git rebase <upstream> <branch>` checks out <branch> and
        // rewrites it: the default branch is never the agent's to rewrite.
        if let Some(b) = s.positionals.get(1) {
            if !b.dynamic && self.is_default_branch(&b.text) {
                return Err(Denial::new(
                    "git-default-branch-move",
                    format!("git rebase rewrites the default branch `{}`", b.text),
                ));
            }
        }
        Ok(())
    }
}
