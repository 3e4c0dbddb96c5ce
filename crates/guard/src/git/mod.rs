//! git: global options (`-C`, `-c key=value`), aliases (from `-c` or saved
//! earlier in the line), and the rules of each subcommand, by family: push,
//! branches, the working tree, refs and history, config.

mod branches;
mod config;
mod history;
mod push;
mod scan;
mod worktree;

use crate::shell::{Checker, Stdin};
use crate::words::{self, Arg};
use crate::Denial;

use config::GitConfig;
use scan::{scan, LENIENT};

impl Checker<'_> {
    /// `git [global options] <subcommand> …` (also `git-<subcommand> …`).
    pub(crate) fn check_git(&mut self, args: &[Arg]) -> Result<(), Denial> {
        let mut i = 0;
        let mut aliases: Vec<(String, Arg)> = Vec::new();
        let mut cfg = GitConfig::default();
        let mut elsewhere = false;
        while let Some(a) = args.get(i) {
            if a.leading_dynamic || a.unquoted_dynamic {
                return Err(Denial::new(
                    "dynamic-argument",
                    format!(
                        "git option or subcommand `{}` is known only at run time",
                        crate::commands::show(a)
                    ),
                ));
            }
            let t = a.text.as_str();
            if matches!(t, "-C" | "--git-dir" | "--work-tree")
                || t.starts_with("--git-dir=")
                || t.starts_with("--work-tree=")
            {
                elsewhere = true;
            }
            match t {
                "-C" | "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix"
                | "--attr-source" | "--config-env" => i += 2,
                "-c" => {
                    if let Some(kv) = args.get(i + 1) {
                        self.check_git_setting(kv, &mut aliases, &mut cfg)?;
                    }
                    i += 2;
                }
                _ if t.starts_with('-') => i += 1,
                _ => break,
            }
        }
        let Some(sub) = args.get(i) else {
            return Ok(());
        };
        let rest = &args[i + 1..];
        self.git_elsewhere = elsewhere;
        let line_alias = self
            .state
            .git_aliases
            .get(&sub.text.to_ascii_lowercase())
            .map(|v| (sub.text.clone(), Arg::lit(v)));
        if let Some((_, value)) = aliases
            .iter()
            .find(|(n, _)| *n == sub.text.to_ascii_lowercase())
            .or(line_alias.as_ref())
        {
            return self.check_git_alias(value, rest, &aliases);
        }
        self.check_git_sub(&sub.text, rest, &cfg)
    }

    /// A git alias used with arguments `rest`: judge what it expands to
    /// (`!code` runs as shell code; anything else as `git <value> <rest>`,
    /// with the `-c` aliases of the same command in effect).
    fn check_git_alias(
        &mut self,
        value: &Arg,
        rest: &[Arg],
        aliases: &[(String, Arg)],
    ) -> Result<(), Denial> {
        if let Some(shell) = value.text.strip_prefix('!') {
            // git runs `<code> "$@"` with the alias's arguments: the code
            // alone was checked where the alias was defined; judge it with
            // what it is given now.
            if rest.is_empty() {
                return Ok(());
            }
            let mut code = shell.to_owned();
            for a in rest {
                code.push(' ');
                code.push_str(&words::shell_quote(a));
            }
            return self.check_nested(&code, false).map(|_| ());
        }
        let mut code = format!("git {}", value.text);
        for a in rest {
            code.push(' ');
            code.push_str(&words::shell_quote(a));
        }
        // An alias may name another one given with `-c`: git expands the
        // chain (and refuses loops, which the depth limit denies here).
        let saved = self.state.git_aliases.clone();
        for (name, v) in aliases {
            self.state.git_aliases.insert(name.clone(), v.text.clone());
        }
        let judged = self.check_nested(&code, false).map(|_| ());
        self.state.git_aliases = saved;
        judged
    }

    /// The rules of the subcommand `sub`, given its arguments `rest` and the
    /// settings from `-c`.
    fn check_git_sub(&mut self, sub: &str, rest: &[Arg], cfg: &GitConfig) -> Result<(), Denial> {
        match sub {
            "push" => self.check_push(&scan(sub, rest, &push::PUSH)?, cfg),
            // branches
            "checkout" => self.check_checkout(&scan(sub, rest, &branches::CHECKOUT)?),
            "switch" => self.check_switch(&scan(sub, rest, &branches::SWITCH)?),
            "branch" => self.check_branch(&scan(sub, rest, &branches::BRANCH)?),
            "merge" => self.check_merge(&scan(sub, rest, &branches::MERGE)?),
            "rebase" => self.check_rebase(&scan(sub, rest, &branches::REBASE)?),
            // the working tree
            "reset" => worktree::check_reset(&scan(sub, rest, &worktree::RESET)?),
            "clean" => worktree::check_clean(&scan(sub, rest, &worktree::CLEAN)?, cfg),
            "restore" => worktree::check_restore(&scan(sub, rest, &worktree::RESTORE)?),
            "stash" => worktree::check_stash(&scan(sub, rest, &LENIENT)?),
            "rm" => worktree::check_rm(&scan(sub, rest, &LENIENT)?),
            "worktree" => worktree::check_worktree(&scan(sub, rest, &LENIENT)?, rest),
            "submodule" => self.check_submodule(rest),
            // refs and history
            "filter-branch" | "filter-repo" => {
                Err(Denial::new("git-history-rewrite", format!("git {sub}")))
            }
            "update-ref" => self.check_update_ref(sub, &scan(sub, rest, &history::UPDATE_REF)?),
            "symbolic-ref" => history::check_symbolic_ref(&scan(sub, rest, &LENIENT)?),
            "reflog" => history::check_reflog(&scan(sub, rest, &LENIENT)?),
            "gc" => history::check_gc(&scan(sub, rest, &history::GC)?),
            "prune" => history::check_prune(&scan(sub, rest, &history::PRUNE)?),
            // settings and credentials
            "config" => self.check_config(&scan(sub, rest, &config::CONFIG)?, rest),
            "credential"
            | "credential-store"
            | "credential-cache"
            | "credential-manager"
            | "credential-osxkeychain"
            | "credential-libsecret" => config::check_credential(sub, rest),
            // code it runs
            "bisect" => {
                if rest.first().is_some_and(|a| a.text == "run") {
                    self.check_argv(&rest[1..], &Stdin::Closed)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
