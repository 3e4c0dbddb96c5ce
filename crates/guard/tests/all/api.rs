//! Public API beyond `check`: extra rules, shims, policy knobs, the rule table.

// Helpers outside #[test] fns may unwrap too: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use errand_guard::{check, rule, shim_decision, Decision, ExtraRule, Policy, RULES};

fn deny_rule(cmd: &str, p: &Policy) -> Option<String> {
    check(cmd, p).rule().map(str::to_owned)
}

#[test]
fn extra_rules_match_command_and_argument_patterns() {
    let p = Policy {
        extra_rules: vec![
            ExtraRule::new(
                "npm-publish",
                "npm",
                &["publish"],
                "publishing is the release pipeline's job",
            ),
            ExtraRule::new("no-sudo", "sudo", &[], "no privilege escalation"),
            ExtraRule::new(
                "docker-privileged",
                "docker",
                &["run", "--privileged*"],
                "no privileged containers",
            ),
        ],
        ..Policy::default()
    };
    assert_eq!(deny_rule("npm publish", &p).as_deref(), Some("npm-publish"));
    assert_eq!(
        deny_rule("cd pkg && npm publish --access public", &p).as_deref(),
        Some("npm-publish")
    );
    // Through wrappers, shells and substitutions, like the built-in rules.
    assert_eq!(
        deny_rule("env X=1 n'p'm publish", &p).as_deref(),
        Some("npm-publish")
    );
    assert_eq!(
        deny_rule("bash -c 'npm publish'", &p).as_deref(),
        Some("npm-publish")
    );
    // An argument known only at run time matches (fail closed).
    assert_eq!(
        deny_rule("npm \"$CMD\"", &p).as_deref(),
        Some("npm-publish")
    );
    assert_eq!(deny_rule("sudo ls", &p).as_deref(), Some("no-sudo"));
    assert_eq!(
        deny_rule("docker run --privileged=true img", &p).as_deref(),
        Some("docker-privileged")
    );
    assert!(check("npm install", &p).is_allow());
    assert!(check("docker run img", &p).is_allow());
    let d = check("npm publish", &p);
    assert_eq!(
        d.reason(),
        Some("npm-publish: publishing is the release pipeline's job")
    );
}

#[test]
fn force_push_to_the_run_branch_follows_the_policy() {
    let mut p = Policy {
        run_branch: Some("errand/abc".into()),
        ..Policy::default()
    };
    assert_eq!(
        deny_rule("git push -f origin errand/abc", &p).as_deref(),
        Some("push-force")
    );
    p.allow_force_push_to_run_branch = true;
    assert!(check("git push -f origin errand/abc", &p).is_allow());
    assert!(check("git push origin +HEAD:refs/heads/errand/abc", &p).is_allow());
    assert!(check("git push origin :errand/abc", &p).is_allow());
    assert!(check("git checkout errand/abc && git push -f", &p).is_allow());
    // Never for other branches, never for the default branch, never blind.
    assert_eq!(
        deny_rule("git push -f origin errand/other", &p).as_deref(),
        Some("push-force")
    );
    assert_eq!(deny_rule("git push -f", &p).as_deref(), Some("push-force"));
    assert_eq!(
        deny_rule("git push -f origin errand/abc main", &p).as_deref(),
        Some("push-force")
    );
    assert_eq!(
        deny_rule("git push --mirror", &p).as_deref(),
        Some("push-force")
    );
    let main_run = Policy {
        run_branch: Some("main".into()),
        allow_force_push_to_run_branch: true,
        ..Policy::default()
    };
    assert_eq!(
        deny_rule("git push -f origin main", &main_run).as_deref(),
        Some("push-force")
    );
}

#[test]
fn workspace_and_home_come_from_the_policy() {
    let p = Policy {
        workspace: "/src/repo/".into(),
        home: "/Users/me".into(),
        ..Policy::default()
    };
    assert!(check("rm -rf build", &p).is_allow());
    assert!(check("rm -rf /src/repo/target", &p).is_allow());
    assert_eq!(
        deny_rule("rm -rf /workspace/build", &p).as_deref(),
        Some("rm-recursive")
    );
    assert_eq!(
        deny_rule("rm -rf /src/repo", &p).as_deref(),
        Some("rm-recursive")
    );
    assert_eq!(
        deny_rule("cat ~/.ssh/id_rsa", &p).as_deref(),
        Some("secret-read")
    );
    assert_eq!(
        deny_rule("cat /Users/me/.aws/credentials", &p).as_deref(),
        Some("secret-read")
    );
    let master = Policy {
        default_branch: "master".into(),
        ..Policy::default()
    };
    assert_eq!(
        deny_rule("git push origin master", &master).as_deref(),
        Some("push-default-branch")
    );
    assert!(check("git push origin main", &master).is_allow());
}

#[test]
fn shims_check_an_argv_with_the_same_rules() {
    let cwd = std::env::current_dir().unwrap();
    let p = Policy {
        workspace: cwd.clone(),
        ..Policy::default()
    };
    let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        shim_decision("git", &argv("push -f origin x"), &p).rule(),
        Some("push-force")
    );
    assert_eq!(
        shim_decision("/usr/bin/git", &argv("reset --hard"), &p).rule(),
        Some("git-reset-hard")
    );
    assert_eq!(
        shim_decision("rm", &argv("-rf /"), &p).rule(),
        Some("rm-recursive")
    );
    assert!(shim_decision("rm", &argv("-rf target-does-not-matter"), &p).is_allow());
    assert!(shim_decision("git", &argv("status"), &p).is_allow());
    // Already-expanded words are literal: no second round of expansion.
    assert!(shim_decision(
        "git",
        &["commit".into(), "-m".into(), "$(rm -rf /)".into()],
        &p
    )
    .is_allow());
    assert!(
        shim_decision("rm", &["-rf".into(), "$HOME".into()], &p).is_allow(),
        "a directory literally named $HOME"
    );
    assert_eq!(
        shim_decision("git", &["push".into(), "origin".into(), "main".into()], &p).rule(),
        Some("push-default-branch")
    );
}

#[test]
fn rule_table_is_documented() {
    assert!(RULES.len() >= 20);
    for r in RULES {
        assert!(
            !r.description.is_empty() && !r.reason.is_empty(),
            "{}",
            r.id
        );
        assert_eq!(rule(r.id), Some(r));
    }
    assert_eq!(rule("nope"), None);
}

#[test]
fn decision_display() {
    assert_eq!(Decision::Allow.to_string(), "allow");
    let d = check("git reset --hard", &Policy::default());
    assert!(d.to_string().starts_with("deny: git-reset-hard: "), "{d}");
}

#[test]
fn oversized_and_deeply_nested_input_is_refused_without_crashing() {
    let p = Policy::default();
    let long = "echo x; ".repeat(40_000);
    assert_eq!(deny_rule(&long, &p).as_deref(), Some("too-complex"));
    let deep = format!("{}{}{}", "(".repeat(5000), "ls", ")".repeat(5000));
    assert_eq!(deny_rule(&deep, &p).as_deref(), Some("too-complex"));
    let nested = format!("echo {}x{}", "$(".repeat(30), ")".repeat(30));
    assert_eq!(deny_rule(&nested, &p).as_deref(), Some("too-complex"));
    assert_eq!(deny_rule("echo a\0b", &p).as_deref(), Some("parse-error"));
    // brush-parser panics on fd numbers beyond i32 (found by cargo-fuzz).
    assert_eq!(
        deny_rule("echo 44444444444444444>|x", &p).as_deref(),
        Some("parse-error")
    );
    assert!(check("echo 2147483647", &p).is_allow());
    // … and on `~<huge number>` in a word, also when brace expansion builds it.
    for w in [
        "cd ~111111111111111111111111111",
        "echo ~+99999999999999999999999",
        "ls ~{1,2}111111111111111111111",
    ] {
        assert_eq!(deny_rule(w, &p).as_deref(), Some("parse-error"), "{w}");
    }
    assert!(check("cd ~1", &p).is_allow());
    // … and loops forever on `$((` in an unterminated here-document tag.
    for w in [
        "cat <<$(( )",
        "x <<$((  )",
        "cat <<-E$(( )",
        "<<$(  ",
        "<<\"$(  ",
        "<<$[  ",
        "x <<-$(  ",
        "<<'' ",
        "<<\"\" ",
        "cat <<'' > x",
        // brush-parser allocated without bound (gigabytes in seconds) on
        // these: the tag runs into a parenthesis.
        "c <<< t <<-E$(( )\\",
        "c <<-E$(( )\\",
        "c <<E$( x)\\",
        "c <<E( )",
    ] {
        assert_eq!(deny_rule(w, &p).as_deref(), Some("parse-error"), "{w}");
    }
    assert!(check("echo $((1 << 2))", &p).is_allow());
    assert!(check("echo $((1 << $n))", &p).is_allow());
    // These once looped forever: they must be decided at all (a hang fails
    // the test through `terminates`; speed is the benchmark's business).
    for w in [
        "\\<<<$(  ",
        "\\<<<<<<<<<$(( )",
        "5<<\u{c}<<||<\\",
        "cat <<\u{c}",
        "cat <<\u{b}EOF\nx\n\u{b}EOF",
        "cat <<E\u{c}F > x",
        "cat <<\rEOF",
        "x <<|| y",
        "x <<- ; y",
    ] {
        let p2 = p.clone();
        assert!(!terminates(w, move || check(w, &p2).is_allow()), "{w}");
    }
    // brush backtracks exponentially on unbalanced `(` after `((` (cargo-fuzz timeout).
    let parens = format!("(({}x", "( ".repeat(40));
    let p2 = p.clone();
    assert_eq!(
        terminates("40 open parens", move || deny_rule(&parens, &p2)).as_deref(),
        Some("too-complex")
    );
    let fuzz = "((((((pYx((( ((=( += $()d ((((((((-u,(((((((((((FH\u{dc})(";
    let p2 = p.clone();
    assert_eq!(
        terminates(fuzz, move || deny_rule(fuzz, &p2)).as_deref(),
        Some("too-complex")
    );
    assert!(check("echo $(( (1 + (2 * (3 + 4))) ))", &p).is_allow());
    // Keyword nesting (not brackets) used to overflow the parser's stack;
    // deep code is parsed on a big stack and refused by the frame budget.
    for n in [100, 400, 2000] {
        let ifs = format!("{}echo x{}", "if true; then ".repeat(n), "; fi".repeat(n));
        assert_eq!(
            deny_rule(&ifs, &p).as_deref(),
            Some("too-complex"),
            "if x{n}"
        );
        let cases = format!("{}echo{}", "case x in x) ".repeat(n), ";; esac".repeat(n));
        assert_eq!(
            deny_rule(&cases, &p).as_deref(),
            Some("too-complex"),
            "case x{n}"
        );
        let whiles = format!(
            "{}echo x{}",
            "while true; do ".repeat(n),
            "; done".repeat(n)
        );
        assert_eq!(
            deny_rule(&whiles, &p).as_deref(),
            Some("too-complex"),
            "while x{n}"
        );
    }
    let braces = format!("{}echo x{}", "{ ".repeat(20_000), "; }".repeat(20_000));
    assert_eq!(deny_rule(&braces, &p).as_deref(), Some("too-complex"));
    let unclosed = "{ if ".repeat(20_000);
    assert!(!check(&unclosed, &p).is_allow());
    // Recursion that no bracket/keyword count sees: `[[ ! ! … ]]` in the
    // parser, wrapper chains in the checker.
    for n in [250, 8000] {
        let nots = format!("[[ {}x ]]", "! ".repeat(n));
        assert_eq!(
            deny_rule(&nots, &p).as_deref(),
            Some("too-complex"),
            "[[ ! x{n}"
        );
        let nice = format!("{}git status", "nice ".repeat(n));
        assert_eq!(
            deny_rule(&nice, &p).as_deref(),
            Some("too-complex"),
            "nice x{n}"
        );
        let cmdx = format!("{}git status", "command X=1 ".repeat(n));
        assert_eq!(
            deny_rule(&cmdx, &p).as_deref(),
            Some("too-complex"),
            "command X=1 x{n}"
        );
    }
    // A here-document full of code keywords is just text.
    let py = format!(
        "cat > gen.py <<'EOF'\n{}EOF\n",
        "if x:\n    for y in z: {\n".repeat(300)
    );
    assert!(check(&py, &p).is_allow());
    // Moderate nesting is fine.
    let ifs = format!(
        "{}git status{}",
        "if true; then ".repeat(20),
        "; fi".repeat(20)
    );
    assert!(check(&ifs, &p).is_allow());
    // Nesting summed over sh -c strings is bounded too.
    let mut c = "echo x".to_owned();
    for _ in 0..7 {
        c = format!(
            "{}sh -c '{}'{}",
            "if true; then ".repeat(12),
            c.replace('\'', "'\\''"),
            "; fi".repeat(12)
        );
    }
    assert_eq!(deny_rule(&c, &p).as_deref(), Some("too-complex"));
    // Long flat command lists are fine (and linear).
    let long = vec!["git status"; 2000].join(" && ");
    assert!(check(&long, &p).is_allow());
}

/// Runs `f` on its own thread and fails if it has not returned within a
/// minute: a hang detector, not a speed target (see `benches/guard.rs`).
fn terminates<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(v) => v,
        Err(_) => panic!("no decision within a minute on {what}"),
    }
}

#[test]
fn push_only_run_branch_reads_the_checked_out_branch() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git/objects")).unwrap();
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/errand/abc\n").unwrap();
    assert_eq!(
        errand_guard::current_branch_at(&repo.join("src"), None).as_deref(),
        Some("errand/abc")
    );
    // A worktree's `.git` file points at its own git directory.
    let wt = dir.path().join("wt");
    std::fs::create_dir_all(dir.path().join("wtgit")).unwrap();
    std::fs::create_dir_all(&wt).unwrap();
    std::fs::write(wt.join(".git"), "gitdir: ../wtgit\n").unwrap();
    std::fs::write(dir.path().join("wtgit/HEAD"), "ref: refs/heads/main\n").unwrap();
    assert_eq!(
        errand_guard::current_branch_at(&wt, None).as_deref(),
        Some("main")
    );
    // Detached: no branch.
    std::fs::write(repo.join(".git/HEAD"), "0123abcd\n").unwrap();
    assert_eq!(errand_guard::current_branch_at(&repo, None), None);
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/errand/abc\n").unwrap();

    // The hook reads the branch in the hook's cwd.
    let p = Policy {
        run_branch: Some("errand/abc".into()),
        push_only_run_branch: true,
        ..Policy::default()
    };
    let hook = |cwd: &std::path::Path, cmd: &str| {
        let stdin = serde_json::json!({
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": { "command": cmd },
            "cwd": cwd.to_str().unwrap(),
        })
        .to_string();
        errand_guard::pretooluse_hook(&stdin, &p)
    };
    assert_eq!(hook(&repo, "git push origin HEAD"), None);
    let denied = hook(&wt, "git push origin HEAD").expect("main is not the run's branch");
    assert!(denied.contains("push-other-branch"), "{denied}");
    assert!(hook(&repo, "git push origin HEAD:feature").is_some());
    // Without the flag, nothing changes.
    let open = Policy {
        push_only_run_branch: false,
        ..p.clone()
    };
    assert!(check("git push origin feature", &open).is_allow());
    assert!(rule("push-other-branch").is_some());
}
