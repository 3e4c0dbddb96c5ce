//! The rule table. Every denial the guard produces names one of these ids
//! (or the id of a caller-supplied [`crate::ExtraRule`]).

/// One built-in rule: a stable id, what it matches, and why it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable identifier, used in decisions, corpora and logs.
    pub id: &'static str,
    /// What the rule matches.
    pub description: &'static str,
    /// Why the rule exists (appended to every denial reason).
    pub reason: &'static str,
}

/// All built-in rules, in the order they are documented.
pub const RULES: &[Rule] = &[
    Rule {
        id: "parse-error",
        description: "the command line is not valid shell syntax",
        reason: "a command the guard cannot parse cannot be checked, so it is refused (fail closed)",
    },
    Rule {
        id: "too-complex",
        description: "nesting of sh -c / eval / $(…) deeper than the limit, or an oversized command",
        reason: "deep nesting is how checks get evaded; real work never needs it",
    },
    Rule {
        id: "dynamic-command",
        description: "the program to run comes from a variable or command output ($cmd, $(…) …)",
        reason: "the guard cannot see which program would run, so it cannot check it",
    },
    Rule {
        id: "dynamic-code",
        description: "sh -c / eval / a shell fed a here-document whose code is computed at run time",
        reason: "code assembled at run time cannot be checked before it runs",
    },
    Rule {
        id: "dynamic-argument",
        description: "a guarded command (git push/reset/clean/checkout/…, chmod -R, find -delete) gets an argument that depends on a variable or command output",
        reason: "the guard cannot tell whether the hidden value is a destructive option or target",
    },
    Rule {
        id: "push-force",
        description: "git push with -f/--force/--force-with-lease/--force-if-includes/--mirror or a +refspec",
        reason: "force pushes rewrite remote history and can destroy other people's commits; only the run's own branch may be force-pushed, and only when the policy allows it",
    },
    Rule {
        id: "push-delete",
        description: "git push that deletes remote refs (--delete, -d, :branch, --prune)",
        reason: "deleting remote branches loses work for everyone; only the run's own branch may be deleted, and only when the policy allows it",
    },
    Rule {
        id: "push-default-branch",
        description: "git push naming the default branch (origin main, HEAD:main, refs/heads/main, --all, matching ':'), or a bare push after checking out the default branch in the same line",
        reason: "the default branch only changes through a reviewed pull request that errand opens",
    },
    Rule {
        id: "push-other-branch",
        description: "with the push-only-run-branch policy (errand's --agent-git): git push to any branch but the run's own, or one whose destination the guard cannot tell (HEAD or a bare push after cd, -C or a switch to an unknown branch; push.default=upstream)",
        reason: "the run's token may write the whole repository (GitHub cannot limit a token to one branch), so the agent pushes only the run's branch; every other change reaches the repository through the pull request errand opens",
    },
    Rule {
        id: "push-tags",
        description: "git push of tags (--tags, --follow-tags, refs/tags/…, tag <name>)",
        reason: "tags trigger releases and are rarely movable; an agent run never publishes them",
    },
    Rule {
        id: "merge-default-branch",
        description: "git merge after the same command line explicitly checked out the default branch",
        reason: "merging into the default branch bypasses review; only the orchestrator merges (the guard only sees checkouts made in the same command line)",
    },
    Rule {
        id: "git-reset-hard",
        description: "git reset --hard / --merge",
        reason: "discards uncommitted work in the working tree without a way back",
    },
    Rule {
        id: "git-clean-force",
        description: "git clean with -f in any spelling (-fd, -xdf, --force) or with clean.requireForce disabled",
        reason: "deletes untracked files irreversibly (they are in no commit and no reflog)",
    },
    Rule {
        id: "git-discard-changes",
        description: "git checkout -- <paths>, git checkout ., git checkout <ref> <paths>, git checkout/switch -f, git restore without --staged",
        reason: "overwrites uncommitted changes in the working tree without a way back",
    },
    Rule {
        id: "git-branch-force-delete",
        description: "git branch -D / --delete --force",
        reason: "deletes a branch even when its commits are merged nowhere",
    },
    Rule {
        id: "git-stash-drop",
        description: "git stash drop / git stash clear",
        reason: "throws away stashed work",
    },
    Rule {
        id: "git-history-rewrite",
        description: "git filter-branch / git filter-repo",
        reason: "rewrites every commit of the repository",
    },
    Rule {
        id: "git-ref-delete",
        description: "git update-ref -d",
        reason: "deletes refs behind git's back, bypassing the usual safety checks",
    },
    Rule {
        id: "git-reflog-expire",
        description: "git reflog expire / git reflog delete",
        reason: "removes the reflog, the last way to recover lost commits",
    },
    Rule {
        id: "git-gc-prune",
        description: "git gc --prune=<when> / git prune",
        reason: "permanently deletes unreachable objects, including commits only the reflog still pointed to",
    },
    Rule {
        id: "rm-recursive",
        description: "rm -r/-R/--recursive of /, ~, the workspace root, a parent of it, anything outside it, .git, a glob at the workspace root, or with --no-preserve-root",
        reason: "recursive deletes outside regenerable paths inside the workspace destroy the checkout, the repository or the machine",
    },
    Rule {
        id: "rm-unresolved",
        description: "rm -r whose target (or rm whose options) depends on a variable, a command output or an unknown working directory",
        reason: "an empty or unexpected value turns `rm -rf $DIR/` into `rm -rf /`",
    },
    Rule {
        id: "find-delete",
        description: "find … -delete or find … -exec rm … outside the workspace, inside .git, or over the whole workspace unfiltered",
        reason: "find deletes everything it walks; outside the workspace that is someone else's data",
    },
    Rule {
        id: "device-write",
        description: "raw writes to disks: dd of=/dev/sd*, > /dev/sda, tee/cp to a device, mkfs*, mkswap, wipefs, blkdiscard, partitioning tools, shred of a device",
        reason: "overwrites a disk or file system below any file-level protection",
    },
    Rule {
        id: "git-hooks-write",
        description: "writes into .git/hooks or .git/config: redirections, tee, and cp/mv/install/ln destinations",
        reason: "errand runs git on this checkout outside the sandbox; a planted hook or config entry would run the agent's code there, with errand's credentials",
    },
    Rule {
        id: "git-metadata-write",
        description: "writes over the repository's own records: .git/HEAD, .git/refs, .git/objects, .git/packed-refs, .git/index (redirections, tee, cp/mv/install/ln destinations)",
        reason: "the repository's history, branches and staged work live there; git changes them safely, a raw write loses them",
    },
    Rule {
        id: "chmod-system",
        description: "chmod/chown/chgrp -R on /, /usr, /etc, /bin, /lib*, /var, /home, ~ and similar",
        reason: "recursive permission changes on system trees break the machine and can expose secrets",
    },
    Rule {
        id: "pipe-to-shell",
        description: "downloaded content executed: curl … | sh, wget -O- … | bash, bash <(curl …), sh -c \"$(curl …)\", also python/perl/ruby/node",
        reason: "runs code fetched from the network without anyone reading it",
    },
    Rule {
        id: "secret-read",
        description: "reading credentials: ~/.ssh, ~/.aws, ~/.config/gcloud, ~/.netrc, ~/.git-credentials, ~/.docker/config.json, /etc/shadow, .env outside the workspace, errand's config (~/.config/errand, $ERRAND_HOME), /proc/*/environ — as arguments or via `< file`",
        reason: "an agent never needs credentials to do its task; reading them is the first step of exfiltration",
    },
    Rule {
        id: "interpreter-delete",
        description: "python/node/perl/ruby -c/-e code deleting a path that is /, ~, outside the workspace, .git, or computed at run time (shutil.rmtree, os.remove, fs.rmSync, FileUtils.rm_rf, unlink …)",
        reason: "inline interpreter code deletes as surely as rm -rf; the same targets are protected",
    },
    Rule {
        id: "decode-to-shell",
        description: "decoded or transformed text piped into a shell or interpreter (base64 -d | sh, xxd -r -p | bash, printf '\\x…' | sh, rev | sh), or a script written from such output and run",
        reason: "encoding hides the code from review and from this guard; code that cannot be read before it runs is refused",
    },
    Rule {
        id: "written-script",
        description: "a script written in the same command line (heredoc, echo/printf > file) and then run with sh/bash/python/./file, whose content cannot be checked",
        reason: "writing a script and running it at once hides the command from the guard; the written content is checked like the command line itself",
    },
    Rule {
        id: "git-default-branch-move",
        description: "git checkout -B / switch -C / branch -f / branch -m|-M / update-ref of the default branch, or git symbolic-ref HEAD changes",
        reason: "the default branch only changes through a reviewed pull request that errand opens; moving or renaming it locally is the first step of overwriting it",
    },
    Rule {
        id: "host-control",
        description: "signals to every process or the process group (kill -1, kill 0, kill -9 -1), pkill, killall, shutdown, reboot, halt, poweroff, systemctl/service changes, crontab -r",
        reason: "the agent may stop only processes it started (kill %1, kill $PID); the rest of the machine is not its to control",
    },
    Rule {
        id: "fork-bomb",
        description: "a function that calls itself in a pipeline or in the background (:(){ :|:& };: and renamed variants)",
        reason: "exhausts the process table and takes the machine down",
    },
    Rule {
        id: "secret-env",
        description: "printing credential variables (echo $GITHUB_TOKEN, printenv AWS_SECRET_ACCESS_KEY) or searching the environment for them (env | grep -i token, set | grep key)",
        reason: "an agent never needs to see a credential's value; printing it puts it in the transcript and one step from exfiltration",
    },
    Rule {
        id: "credential-dump",
        description: "gh auth token, gh auth status --show-token, git credential fill, git credential-<helper> get, git config --get-regexp credential",
        reason: "these print the forge token the run works with; an agent never needs its value",
    },
    Rule {
        id: "forge-destructive",
        description: "gh repo delete/archive/rename, gh release delete, gh pr merge, gh secret set, gh api / curl / wget with DELETE, PUT or PATCH on repositories, refs, branches, protection or merges",
        reason: "deleting or merging on the forge bypasses review and cannot be undone from the sandbox; errand opens the pull request and people merge it",
    },
    Rule {
        id: "cloud-metadata",
        description: "any command naming a cloud metadata endpoint (169.254.169.254, metadata.google.internal, fd00:ec2::254, 169.254.170.2)",
        reason: "metadata endpoints hand out the host's cloud credentials",
    },
];

/// Look a built-in rule up by id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(n, ids.len());
    }
}
