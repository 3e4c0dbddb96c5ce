//! The shim's decision with git's effective configuration: what a config file
//! the agent can write (repository, global, included, `GIT_CONFIG_*`) holds is
//! judged as if given with `-c`, so an alias or a command saved there cannot
//! turn a refused command into an allowed one.

use std::path::Path;

use errand_guard::{shim_decision_in, Decision, Policy};

fn policy() -> Policy {
    Policy {
        run_branch: Some("errand/run-1".into()),
        push_only_run_branch: true,
        current_branch: Some("errand/run-1".into()),
        ..Policy::default()
    }
}

fn decide(args: &[&str], settings: &[(&str, &str)]) -> Decision {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    shim_decision_in(
        "git",
        &args,
        &policy(),
        Some(Path::new("/workspace")),
        None,
        &settings,
    )
}

fn denied(args: &[&str], settings: &[(&str, &str)]) {
    assert!(
        matches!(decide(args, settings), Decision::Deny { .. }),
        "allowed: git {args:?} with {settings:?}"
    );
}

fn allowed(args: &[&str], settings: &[(&str, &str)]) {
    let d = decide(args, settings);
    assert!(
        matches!(d, Decision::Allow),
        "git {args:?} with {settings:?}: {d}"
    );
}

#[test]
fn aliases_from_config_files_expand_to_what_git_runs() {
    denied(&["p", "origin", "HEAD:main"], &[("alias.p", "push")]);
    denied(&["zap"], &[("alias.zap", "reset --hard")]);
    denied(
        &["up", "origin", "errand/run-1"],
        &[("alias.up", "push --force")],
    );
    denied(&["nuke", "-fdx"], &[("alias.nuke", "clean")]);
    // An alias of an alias.
    denied(&["a"], &[("alias.a", "b"), ("alias.b", "reset --hard")]);
    // Aliases that do ordinary work stay allowed.
    allowed(&["st"], &[("alias.st", "status --short")]);
    allowed(&["co", "-b", "topic"], &[("alias.co", "checkout")]);
    allowed(&["p", "origin", "errand/run-1"], &[("alias.p", "push")]);
}

#[test]
fn shell_aliases_are_judged_with_their_arguments() {
    denied(&["sh", "rm -rf /workspace/.git"], &[("alias.sh", "!sh -c")]);
    denied(
        &["run", "git push --force origin main"],
        &[("alias.run", "!bash -c")],
    );
    denied(&["wipe"], &[("alias.wipe", "!rm -rf ~")]);
    allowed(&["hello"], &[("alias.hello", "!echo hello")]);
}

#[test]
fn commands_saved_in_config_are_checked_as_code() {
    denied(&["fetch"], &[("core.sshcommand", "rm -rf ~")]);
    denied(&["log"], &[("core.pager", "sh -c 'rm -rf /workspace'")]);
    denied(&["diff"], &[("diff.external", "rm -rf ~")]);
    allowed(&["log"], &[("core.pager", "less -R")]);
}

#[test]
fn push_settings_in_config_apply_to_a_bare_push() {
    denied(&["push"], &[("remote.origin.push", "HEAD:refs/heads/main")]);
    denied(&["push"], &[("remote.origin.mirror", "true")]);
    allowed(
        &["status"],
        &[("remote.origin.push", "HEAD:refs/heads/main")],
    );
}
