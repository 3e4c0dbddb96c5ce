//! git: global options, `-c` aliases and command-running config keys, and
//! the per-subcommand rules (push, reset, clean, checkout, restore, …).

use crate::paths;
use crate::shell::{Checker, Stdin};
use crate::words::{self, Arg};
use crate::Denial;

/// Options of one git subcommand, as far as the rules need them.
struct Spec {
    /// Short options that take a value (`-o`, `-b` …).
    short_value: &'static str,
    /// Long options git knows for this subcommand (for abbreviations).
    long: &'static [&'static str],
    /// Long options whose value may be the next word.
    long_value: &'static [&'static str],
}

/// A git subcommand's arguments, sorted.
#[derive(Default)]
struct Scanned {
    /// Short flag letters (`-fdx` → f, d, x), excluding option values.
    shorts: Vec<char>,
    /// Values of short value options (`-b name` → ('b', "name")).
    short_values: Vec<(char, String)>,
    /// Long options: every option each one could abbreviate, and its value.
    longs: Vec<(Vec<&'static str>, Option<String>)>,
    /// Operands before `--`.
    positionals: Vec<Arg>,
    /// `--` was given.
    dashdash: bool,
    /// Operands after `--`.
    after_dashdash: Vec<Arg>,
}

impl Scanned {
    fn short(&self, c: char) -> bool {
        self.shorts.contains(&c)
    }

    fn long(&self, name: &str) -> bool {
        self.longs.iter().any(|(c, _)| c.contains(&name))
    }

    fn long_value(&self, name: &str) -> Option<&str> {
        self.longs
            .iter()
            .find(|(c, _)| c.len() == 1 && c[0] == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn short_value(&self, c: char) -> Option<&str> {
        self.short_values
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.as_str())
    }
}

/// Sort a subcommand's arguments. Words whose value is unknown and that
/// could be options or operands make the command uncheckable.
fn scan(sub: &str, args: &[Arg], spec: &Spec) -> Result<Scanned, Denial> {
    let mut s = Scanned::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if s.dashdash {
            if a.unquoted_dynamic || a.leading_dynamic {
                return Err(dynamic(sub, a));
            }
            s.after_dashdash.push(a.clone());
            i += 1;
            continue;
        }
        if a.leading_dynamic || a.unquoted_dynamic {
            return Err(dynamic(sub, a));
        }
        let t = a.text.as_str();
        if t == "--" {
            s.dashdash = true;
        } else if t.starts_with("--") {
            let name = t.split('=').next().unwrap_or(t);
            let mut value = words::attached_value(t).map(str::to_owned);
            let cands = if name.starts_with("--no-") && !spec.long.contains(&name) {
                Vec::new()
            } else {
                words::long_candidates(t, spec.long)
            };
            if value.is_none() && cands.len() == 1 && spec.long_value.contains(&cands[0]) {
                if let Some(v) = args.get(i + 1) {
                    value = Some(v.text.clone());
                    i += 1;
                }
            }
            s.longs.push((cands, value));
        } else if t.starts_with('-') && t.len() > 1 {
            let letters: Vec<char> = t[1..].chars().collect();
            for (k, c) in letters.iter().enumerate() {
                if spec.short_value.contains(*c) {
                    let tail: String = letters[k + 1..].iter().collect();
                    let v = if tail.is_empty() {
                        i += 1;
                        args.get(i).map(|v| v.text.clone()).unwrap_or_default()
                    } else {
                        tail
                    };
                    s.short_values.push((*c, v));
                    break;
                }
                s.shorts.push(*c);
            }
        } else {
            s.positionals.push(a.clone());
        }
        i += 1;
    }
    Ok(s)
}

fn dynamic(sub: &str, a: &Arg) -> Denial {
    Denial::new(
        "dynamic-argument",
        format!(
            "`git {sub}` gets `{}`, whose value is known only at run time",
            crate::commands::show(a)
        ),
    )
}

const PUSH: Spec = Spec {
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

const RESET: Spec = Spec {
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

const CLEAN: Spec = Spec {
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

const CHECKOUT: Spec = Spec {
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

const SWITCH: Spec = Spec {
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

const RESTORE: Spec = Spec {
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

const BRANCH: Spec = Spec {
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

const LENIENT: Spec = Spec {
    short_value: "",
    long: &[],
    long_value: &[],
};

const MERGE: Spec = Spec {
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

const GC: Spec = Spec {
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

const PRUNE: Spec = Spec {
    short_value: "",
    long: &["--dry-run", "--verbose", "--progress", "--expire"],
    long_value: &["--expire"],
};

const UPDATE_REF: Spec = Spec {
    short_value: "m",
    long: &["--no-deref", "--create-reflog", "--stdin"],
    long_value: &[],
};

const REBASE: Spec = Spec {
    short_value: "xsX",
    long: &["--exec", "--strategy", "--strategy-option", "--onto"],
    long_value: &["--exec", "--strategy", "--strategy-option", "--onto"],
};

const CONFIG: Spec = Spec {
    short_value: "f",
    long: &[
        "--file",
        "--blob",
        "--type",
        "--default",
        "--comment",
        "--value",
    ],
    long_value: &[
        "--file",
        "--blob",
        "--type",
        "--default",
        "--comment",
        "--value",
    ],
};

/// `-c` settings (or `git config` writes) that change what git does.
#[derive(Default)]
struct GitConfig {
    require_force_off: bool,
    push_refspecs: Vec<Arg>,
    push_matching: bool,
    /// `push.default=upstream|tracking`: a bare push goes to the upstream branch.
    push_upstream: bool,
    mirror: bool,
}

impl GitConfig {
    fn record(&mut self, key: &str, value: &str) {
        let falsy = matches!(
            value.to_ascii_lowercase().as_str(),
            "false" | "no" | "off" | "0"
        );
        if key == "clean.requireforce" && falsy {
            self.require_force_off = true;
        }
        if key.starts_with("remote.") && key.ends_with(".push") {
            self.push_refspecs.push(Arg::lit(value));
        }
        if key.starts_with("remote.") && key.ends_with(".mirror") && !falsy {
            self.mirror = true;
        }
        if key == "push.default" && value.eq_ignore_ascii_case("matching") {
            self.push_matching = true;
        }
        if key == "push.default"
            && (value.eq_ignore_ascii_case("upstream") || value.eq_ignore_ascii_case("tracking"))
        {
            self.push_upstream = true;
        }
    }

    fn touches_push(&self) -> bool {
        !self.push_refspecs.is_empty() || self.push_matching || self.push_upstream || self.mirror
    }
}

/// Config keys whose value git runs as a shell command. Returns the code.
fn config_code<'v>(key: &str, value: &'v str) -> Option<&'v str> {
    let key = key.to_ascii_lowercase();
    let bang = value.strip_prefix('!');
    if key.starts_with("alias.")
        || key == "credential.helper"
        || key.starts_with("credential.") && key.ends_with(".helper")
    {
        return bang;
    }
    let runs = matches!(
        key.as_str(),
        "core.sshcommand"
            | "core.pager"
            | "core.editor"
            | "core.askpass"
            | "sequence.editor"
            | "diff.external"
            | "gpg.program"
            | "uploadpack.packobjectshook"
            | "core.fsmonitor"
    ) || key.starts_with("pager.")
        || (key.starts_with("filter.")
            && (key.ends_with(".clean") || key.ends_with(".smudge") || key.ends_with(".process")))
        || (key.starts_with("merge.") && key.ends_with(".driver"))
        || (key.starts_with("diff.") && (key.ends_with(".textconv") || key.ends_with(".command")))
        || (key.starts_with("gpg.") && key.ends_with(".program"));
    if !runs || (key == "core.fsmonitor" && matches!(value, "true" | "false")) {
        return None;
    }
    Some(value)
}

impl Checker<'_> {
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
                        let (key, value) = kv.text.split_once('=').unwrap_or((&kv.text, "true"));
                        let key_l = key.to_ascii_lowercase();
                        if kv.dynamic {
                            if key.contains(words::DYN) || config_code(&key_l, "!x").is_some() {
                                return Err(Denial::new(
                                    "dynamic-code",
                                    "git -c with a value known only at run time",
                                ));
                            }
                        } else {
                            if let Some(code) = config_code(&key_l, value) {
                                self.check_nested(code, true)?;
                            }
                            if let Some(name) = key_l.strip_prefix("alias.") {
                                aliases.push((name.to_owned(), Arg::lit(value)));
                            }
                            cfg.record(&key_l, value);
                        }
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
            for (name, v) in &aliases {
                self.state.git_aliases.insert(name.clone(), v.text.clone());
            }
            let judged = self.check_nested(&code, false).map(|_| ());
            self.state.git_aliases = saved;
            return judged;
        }
        self.check_git_sub(&sub.text, rest, &cfg)
    }

    fn check_git_sub(&mut self, sub: &str, rest: &[Arg], cfg: &GitConfig) -> Result<(), Denial> {
        match sub {
            "push" => self.check_push(&scan(sub, rest, &PUSH)?, cfg),
            "reset" => {
                let s = scan(sub, rest, &RESET)?;
                for opt in ["--hard", "--merge"] {
                    if s.long(opt) {
                        return Err(Denial::new("git-reset-hard", format!("git reset {opt}")));
                    }
                }
                Ok(())
            }
            "clean" => {
                let s = scan(sub, rest, &CLEAN)?;
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
            "checkout" => self.check_checkout(&scan(sub, rest, &CHECKOUT)?),
            "switch" => {
                let s = scan(sub, rest, &SWITCH)?;
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
            "restore" => {
                let s = scan(sub, rest, &RESTORE)?;
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
            "branch" => {
                let s = scan(sub, rest, &BRANCH)?;
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
            "stash" => {
                let s = scan(sub, rest, &LENIENT)?;
                match s.positionals.first().map(|p| p.text.as_str()) {
                    Some(op @ ("drop" | "clear")) => {
                        Err(Denial::new("git-stash-drop", format!("git stash {op}")))
                    }
                    _ => Ok(()),
                }
            }
            "filter-branch" | "filter-repo" => {
                Err(Denial::new("git-history-rewrite", format!("git {sub}")))
            }
            "update-ref" => {
                let s = scan(sub, rest, &UPDATE_REF)?;
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
            "reflog" => {
                let s = scan(sub, rest, &LENIENT)?;
                match s.positionals.first().map(|p| p.text.as_str()) {
                    Some(op @ ("expire" | "delete")) => {
                        Err(Denial::new("git-reflog-expire", format!("git reflog {op}")))
                    }
                    _ => Ok(()),
                }
            }
            "gc" => {
                let s = scan(sub, rest, &GC)?;
                if let Some((_, Some(v))) = s
                    .longs
                    .iter()
                    .find(|(c, v)| c.contains(&"--prune") && v.is_some())
                {
                    return Err(Denial::new("git-gc-prune", format!("git gc --prune={v}")));
                }
                Ok(())
            }
            "prune" => {
                let s = scan(sub, rest, &PRUNE)?;
                if !(s.short('n') || s.long("--dry-run")) {
                    return Err(Denial::new("git-gc-prune", "git prune"));
                }
                Ok(())
            }
            "merge" => {
                let s = scan(sub, rest, &MERGE)?;
                let control = s.long("--abort") || s.long("--quit") || s.long("--continue");
                if !control && self.on_default_branch() {
                    return Err(Denial::new(
                        "merge-default-branch",
                        format!("git merge after checking out the default branch `{}` in the same command", self.policy.default_branch),
                    ));
                }
                Ok(())
            }
            "rebase" => {
                let s = scan(sub, rest, &REBASE)?;
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
            "bisect" => {
                if rest.first().is_some_and(|a| a.text == "run") {
                    self.check_argv(&rest[1..], &Stdin::Closed)?;
                }
                Ok(())
            }
            "worktree" => {
                let s = scan(sub, rest, &LENIENT)?;
                let op = s.positionals.first().map(|p| p.text.as_str());
                let force = rest.iter().any(|a| {
                    a.text == "--force"
                        || (a.text.starts_with('-')
                            && !a.text.starts_with("--")
                            && a.text.contains('f'))
                });
                if op == Some("remove") && force {
                    return Err(Denial::new(
                        "git-discard-changes",
                        "git worktree remove --force deletes a worktree with uncommitted changes",
                    ));
                }
                Ok(())
            }
            "rm" => {
                let s = scan(sub, rest, &LENIENT)?;
                let cached = s.long("--cached");
                let force = s.short('f') || s.long("--force");
                let all =
                    s.positionals.iter().chain(&s.after_dashdash).any(|p| {
                        matches!(p.text.as_str(), "." | "*" | ":/" | "./" | ":/*" | "./*")
                    });
                if force && !cached && all {
                    return Err(Denial::new(
                        "git-discard-changes",
                        "git rm -rf . deletes every tracked file with its uncommitted changes",
                    ));
                }
                Ok(())
            }
            "symbolic-ref" => {
                let s = scan(sub, rest, &LENIENT)?;
                if s.short('d') || s.long("--delete") {
                    return Err(Denial::new("git-ref-delete", "git symbolic-ref --delete"));
                }
                Ok(())
            }
            "credential"
            | "credential-store"
            | "credential-cache"
            | "credential-manager"
            | "credential-osxkeychain"
            | "credential-libsecret" => {
                if rest
                    .iter()
                    .any(|a| matches!(a.text.as_str(), "fill" | "get"))
                {
                    return Err(Denial::new(
                        "credential-dump",
                        format!("git {sub} fill/get prints stored credentials"),
                    ));
                }
                Ok(())
            }
            "submodule" => {
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
            "config" => {
                let s = scan(sub, rest, &CONFIG)?;
                let reads = rest.iter().any(|a| {
                    matches!(
                        a.text.as_str(),
                        "--get-regexp" | "--get-all" | "--get" | "-l" | "--list" | "get"
                    )
                });
                if reads
                    && s.positionals.iter().any(|p| {
                        let k = p.text.to_ascii_lowercase();
                        k.contains("credential")
                            || k.contains("token")
                            || k.contains("extraheader")
                            || k.contains("password")
                    })
                {
                    return Err(Denial::new(
                        "credential-dump",
                        "git config prints credential settings",
                    ));
                }
                if let [key, value, ..] = s.positionals.as_slice() {
                    if let Some(name) = key.text.to_ascii_lowercase().strip_prefix("alias.") {
                        if !value.text.starts_with('!') {
                            if value.dynamic {
                                return Err(Denial::new(
                                    "dynamic-code",
                                    "git config defines an alias known only at run time",
                                ));
                            }
                            // The alias persists: judge what it expands to now
                            // and remember it for the rest of the line.
                            let code = format!("git {}", value.text);
                            self.check_nested(&code, true)?;
                            self.state
                                .git_aliases
                                .insert(name.to_owned(), value.text.clone());
                        }
                    }
                    if let Some(code) = config_code(&key.text, &value.text) {
                        if value.dynamic {
                            return Err(Denial::new(
                                "dynamic-code",
                                "git config sets a command known only at run time",
                            ));
                        }
                        self.check_nested(code, true)?;
                    }
                    // Push settings persist and would apply to a later bare
                    // `git push`: judge them now as if pushing.
                    let mut c = GitConfig::default();
                    c.record(&key.text.to_ascii_lowercase(), &value.text);
                    if c.touches_push() {
                        if value.dynamic {
                            return Err(dynamic("config", value));
                        }
                        self.check_push(&Scanned::default(), &c)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_default_branch(&self) -> bool {
        let d = &self.policy.default_branch;
        self.state
            .branch
            .as_deref()
            .is_some_and(|b| b == d || b.strip_prefix("refs/heads/") == Some(d))
    }

    /// `main`, `refs/heads/main`, `heads/main` for the policy's default branch.
    fn is_default_branch(&self, name: &str) -> bool {
        let d = self.policy.default_branch.as_str();
        let n = name
            .trim_start_matches("refs/")
            .trim_start_matches("heads/");
        n == d
    }

    fn check_checkout(&mut self, s: &Scanned) -> Result<(), Denial> {
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

    fn check_push(&mut self, s: &Scanned, cfg: &GitConfig) -> Result<(), Denial> {
        let default = self.policy.default_branch.clone();
        if cfg.mirror {
            return Err(Denial::new(
                "push-force",
                "remote.<name>.mirror=true makes every push a mirror push",
            ));
        }
        let force = s.short('f')
            || s.long("--force")
            || s.long("--force-with-lease")
            || s.long("--force-if-includes");
        let delete = s.short('d') || s.long("--delete");
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
        let run = self.policy.run_branch.clone();
        let allow_run = self.policy.allow_force_push_to_run_branch;
        let flag_name = if force { "force" } else { "delete" };

        if refspecs.is_empty() {
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
            return Ok(());
        }

        let mut k = 0;
        while k < refspecs.len() {
            let r = refspecs[k].text.as_str();
            k += 1;
            if r == "tag" {
                return Err(Denial::new("push-tags", "git push … tag <name>"));
            }
            if r.starts_with('^') {
                continue; // negative refspec: excludes refs
            }
            let (plus, body) = match r.strip_prefix('+') {
                Some(b) => (true, b),
                None => (false, r),
            };
            if body == ":" || body.is_empty() {
                return Err(Denial::new(
                    "push-default-branch",
                    format!(
                        "git push origin : pushes every matching branch, including `{default}`"
                    ),
                ));
            }
            let (src_empty, dst) = match body.split_once(':') {
                Some((src, dst)) => (src.is_empty(), dst),
                None => (false, body),
            };
            if dst.starts_with("refs/tags/")
                || (!body.contains(':') && body.starts_with("refs/tags/"))
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
                n == default || (paths::has_glob_chars(n) && paths::glob_match(n, &default))
            });
            let forced = plus || force;
            let deleting = src_empty || delete;
            if forced || deleting {
                let to_run = allow_run && !is_default && run.is_some() && dst_name == run;
                if !to_run {
                    let (rule, what) = if forced {
                        (
                            "push-force",
                            if plus {
                                format!("`+{body}` forces the update")
                            } else {
                                "--force".to_owned()
                            },
                        )
                    } else {
                        (
                            "push-delete",
                            if src_empty {
                                format!("`:{dst}` deletes the remote branch")
                            } else {
                                "--delete".to_owned()
                            },
                        )
                    };
                    let target = dst_name.as_deref().unwrap_or("an unknown branch");
                    let why_not = match (&run, allow_run) {
                        (Some(rb), true) => format!(" (only the run's branch `{rb}` may be)"),
                        _ => String::new(),
                    };
                    return Err(Denial::new(
                        rule,
                        format!("git push {what} on `{target}`{why_not}"),
                    ));
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
        }
        Ok(())
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
