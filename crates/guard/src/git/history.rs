//! Subcommands that delete refs or history: `update-ref -d` (or moving the
//! default branch with it), `symbolic-ref --delete`, `reflog expire`,
//! `gc --prune=…`, `prune`.

use super::scan::{dynamic, Scanned, Spec};
use crate::shell::Checker;
use crate::Denial;

/// `git update-ref`.
pub(super) const UPDATE_REF: Spec = Spec {
    short_value: "m",
    long: &["--no-deref", "--create-reflog", "--stdin"],
    long_value: &[],
};

/// `git gc`.
pub(super) const GC: Spec = Spec {
    short_value: "",
    long: &[
        "--aggressive",
        "--auto",
        "--prune",
        "--quiet",
        "--force",
        "--keep-largest-pack",
        "--cruft",
        "--max-cruft-size",
        "--expire-to",
        "--detach",
    ],
    long_value: &[],
};

/// `git prune`.
pub(super) const PRUNE: Spec = Spec {
    short_value: "",
    long: &["--dry-run", "--verbose", "--progress", "--expire"],
    long_value: &["--expire"],
};

impl Checker<'_> {
    /// `git update-ref`: deletes a ref (`-d`), changes refs the guard cannot see
    /// (`--stdin`) or moves the default branch.
    pub(super) fn check_update_ref(&self, sub: &str, s: &Scanned) -> Result<(), Denial> {
        if s.short('d') {
            return Err(Denial::new("git-ref-delete", "git update-ref -d"));
        }
        if s.long("--stdin") {
            return Err(Denial::new(
                "git-default-branch-move",
                "git update-ref --stdin: the refs it changes cannot be checked",
            ));
        }
        if let Some(r) = s.positionals.first() {
            if r.dynamic {
                return Err(dynamic(sub, r));
            }
            if self.is_default_branch(&r.text) {
                return Err(Denial::new(
                    "git-default-branch-move",
                    format!("git update-ref {} moves the default branch", r.text),
                ));
            }
        }
        Ok(())
    }
}

/// `git symbolic-ref --delete`.
pub(super) fn check_symbolic_ref(s: &Scanned) -> Result<(), Denial> {
    if s.short('d') || s.long("--delete") {
        return Err(Denial::new("git-ref-delete", "git symbolic-ref --delete"));
    }
    Ok(())
}

/// `git reflog expire`/`delete`.
pub(super) fn check_reflog(s: &Scanned) -> Result<(), Denial> {
    match s.positionals.first().map(|p| p.text.as_str()) {
        Some(op @ ("expire" | "delete")) => {
            Err(Denial::new("git-reflog-expire", format!("git reflog {op}")))
        }
        _ => Ok(()),
    }
}

/// `git gc --prune=<date>`.
pub(super) fn check_gc(s: &Scanned) -> Result<(), Denial> {
    if let Some((_, Some(v))) = s
        .longs
        .iter()
        .find(|(c, v)| c.contains(&"--prune") && v.is_some())
    {
        return Err(Denial::new("git-gc-prune", format!("git gc --prune={v}")));
    }
    Ok(())
}

/// `git prune` other than a dry run.
pub(super) fn check_prune(s: &Scanned) -> Result<(), Denial> {
    if !(s.short('n') || s.long("--dry-run")) {
        return Err(Denial::new("git-gc-prune", "git prune"));
    }
    Ok(())
}
