//! `--agent-git` against a malicious agent: a custom harness that first tries
//! the sandbox's real git binaries by every path (they must be the guard's
//! shim or unreachable: errand's git gate), then every way around the push
//! rule with a git of its own that no guard sees, an alias, raw HTTP and a
//! force push or deletion of its own branch. errand's git proxy, outside the sandbox, is the
//! only route to the remote and the only holder of the token, so each is
//! refused there; the run's own branch is pushed; no token is anywhere in the
//! sandbox (environment, files, `/proc`). On the local and Docker backends.

use crate::common::github::world;
use crate::common::*;

/// The malicious agent (errand's own event format). `@DIRECT@` is the forge's
/// clone URL. Its result is a list of `NAME=exit:proxy|other` (whether the
/// output carries the proxy's `errand: ` reason) and counts of token hits.
const SCRIPT: &str = r#"export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=agent@example.invalid
export GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=agent@example.invalid
R=
note() { R="$R $1"; }
# The sandbox's own git binaries, by every path they have, from the shell and
# from Python: each must be the guard's shim (which refuses `reset --hard`) or
# unreachable; a real one would obey.
ALLGIT="/opt/errand/real/git /usr/lib/git-core/git /usr/libexec/git-core/git /usr/bin/git /bin/git
  /usr/local/bin/git /usr/local/libexec/git-core/git /usr/local/libexec/git-core/git-reset
  /usr/lib/git-core/git-reset $(git --exec-path)/git $(git --exec-path)/git-reset"
mkdir -p /tmp/scratch && cd /tmp/scratch && git init -q && echo x > f && git add f \
  && git -c user.name=a -c user.email=a@b commit -qm s && cd - >/dev/null
N=0
for g in $ALLGIT; do
  [ -e "$g" ] || continue
  N=$((N + 1))
  echo changed > /tmp/scratch/f
  "$g" -C /tmp/scratch reset -q --hard >/dev/null 2>&1; c=$?
  [ "$(cat /tmp/scratch/f)" = x ] && c="$c-obeyed"
  py=$(python3 -c 'import subprocess,sys; print(subprocess.run([sys.argv[1], "-C", "/tmp/scratch", "reset", "-q", "--hard"], capture_output=True).returncode)' "$g" 2>/dev/null || echo 126)
  [ "$(cat /tmp/scratch/f)" = x ] && py="$py-obeyed"
  note "REACH:$g=$c/$py"
done
note "REACHED=$N"
# The real git reading its own binary (then running the copy): refused, the
# memfd git runs from is execute-only.
git hash-object -w /proc/self/exe >/dev/null 2>&1; note "SELFEXE=$?"
# A git the agent brings itself (here: a copy shipped in its harness
# directory, with an exec path of its own), which no guard sees.
mkdir -p /tmp/own && ln -sf /opt/errand/harness/git /tmp/own/git
for h in /usr/lib/git-core/git-remote-http /usr/lib/git-core/git-remote-https; do
  ln -sf "$h" /tmp/own/
done
export GIT_EXEC_PATH=/tmp/own
REAL=/tmp/own/git
note "REAL=$REAL"
try() {
  name=$1; shift
  "$@" > /tmp/out.$name 2>&1; c=$?
  if grep -q 'errand: ' /tmp/out.$name; then p=proxy; else p=other; fi
  note "$name=$c:$p"
}
BR=$($REAL rev-parse --abbrev-ref HEAD)
echo agent > AGENT.md
$REAL add AGENT.md && $REAL commit -qm agent
try RUN $REAL push origin HEAD
PUSHED=$($REAL rev-parse HEAD)
note "PUSHED=$PUSHED"
$REAL config alias.p push
try ALIAS $REAL p origin HEAD:main
try ABS $REAL push origin HEAD:refs/heads/main
try OTHERBRANCH $REAL push origin HEAD:refs/heads/feature
try DELETE $REAL push origin :refs/heads/$BR
$REAL reset -q --hard HEAD~1
echo rewritten > REWRITE.md
$REAL add REWRITE.md && $REAL commit -qm rewrite
try FORCE $REAL push --force origin HEAD:refs/heads/$BR
$REAL reset -q --hard $PUSHED
try OTHERREPO $REAL ls-remote http://git.errand.internal/acme/other.git
# Straight to the forge, without errand's URL rewrite: not reachable, and no token.
try DIRECT env -u GIT_CONFIG_COUNT $REAL ls-remote @DIRECT@
Z=0000000000000000000000000000000000000000
L=$(printf '%s %s refs/heads/main\n' $Z $PUSHED | wc -c)
printf '%04x%s %s refs/heads/main\n0000' $((L + 4)) $Z $PUSHED > /tmp/req
URL=http://git.errand.internal/acme/widgets.git/git-receive-pack
if command -v python3 >/dev/null; then
  CODE=$(python3 - "$URL" <<'PY'
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], data=open('/tmp/req', 'rb').read(),
                             headers={'Content-Type': 'application/x-git-receive-pack-request'})
try:
    r = urllib.request.urlopen(req)
    code, text = r.status, r.read()
except urllib.error.HTTPError as e:
    code, text = e.code, e.read()
open('/tmp/resp', 'wb').write(text)
print(code)
PY
)
else
  CODE=$(curl -s -o /tmp/resp -w '%{http_code}' --data-binary @/tmp/req \
    -H 'Content-Type: application/x-git-receive-pack-request' "$URL")
fi
note "RAW=$CODE"
grep -q 'push refused' /tmp/resp && note RAW-REASON
# The patterns are built here, so this script and grep's own command line do not match.
G=gh; X=x-access; B=eC1hY2Nlc3Mt
printf '%s\n%s\n%s\n' "${G}s_" "$X-token" "${B}dG9rZW4" > /tmp/pat
E=$(env | grep -c -f /tmp/pat)
P=$(cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' | grep -c -f /tmp/pat)
F=$(grep -rlIs -f /tmp/pat "$HOME" /tmp . /opt/errand 2>/dev/null | grep -v -e '^/tmp/pat$' -e '^/tmp/out\.' | wc -l)
note "TOKEN-ENV=$E TOKEN-PROC=$P TOKEN-FILES=$F"
R=$(printf '%s' "$R" | tr -d '"\\' | tr '\n' ' ')
echo '{"type":"session_start","session_id":"malicious-1"}'
echo '{"type":"result","is_error":false,"text":"'"$R"'","turns":1,"usage":{"input_tokens":1,"output_tokens":1,"cost_usd":0.0}}'
"#;

fn malicious(env: Env, script: &str) -> Env {
    use std::io::Write;
    let dir = env.dir.path().join("agent-malicious");
    std::fs::create_dir_all(&dir).expect("set up the harness");
    std::fs::write(dir.join("agent.sh"), script).expect("set up the harness");
    // The agent's own git: Debian's, which runs on the host and in the image.
    std::fs::copy("/usr/bin/git", dir.join("git")).expect("a git to bring");
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(env.home.join("config.toml"))
        .expect("set up the harness");
    write!(
        config,
        "\n[[harness]]\nname = \"malicious\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\"]\nformat = \"errand\"\ndir = \"{}\"\n",
        dir.display()
    )
    .expect("set up the harness");
    env
}

/// `NAME=value` from the agent's result.
fn field<'a>(result: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}=");
    result
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in the agent's result: {result}"))
}

fn refused_by_proxy(result: &str, name: &str) {
    let v = field(result, name);
    assert!(
        !v.starts_with("0:") && v.ends_with(":proxy"),
        "{name} was not refused by errand's git proxy ({v}): {result}"
    );
}

async fn malicious_agent_is_held_by_the_proxy(backend: Backend) {
    let env = Env::new();
    let Some(extra) = backend.args(&env) else {
        return;
    };
    let w = world(env).await;
    let (env, github) = (w.env, w.github);
    github
        .create_repo("acme", "other", "main")
        .expect("other repo");
    github.install(7, "acme/other");
    let script = SCRIPT.replace("@DIRECT@", &github.clone_url("acme", "widgets"));
    let env = malicious(env, &script);
    let bare = github.repo_path("acme", "widgets");
    let main_before = git(&bare, &["rev-parse", "refs/heads/main"]);

    let mut args = vec!["--harness", "malicious", "--agent-git", "--push"];
    args.extend(extra);
    args.extend(["--repo", "github:acme/widgets", "do what you must"]);
    let (ok, v) = tokio::task::spawn_blocking(move || {
        let r = env.run_json(&args);
        (r, env)
    })
    .await
    .map(|((ok, v), env)| {
        let id = v["id"].as_str().unwrap_or("").to_string();
        let events = if id.is_empty() {
            vec![]
        } else {
            env.events(&id)
        };
        // The token is in no file errand or the agent wrote.
        let tokens: Vec<String> = github.tokens().into_iter().map(|t| t.token).collect();
        assert!(!tokens.is_empty(), "no token was minted: {v:#}");
        for t in &tokens {
            let leaked = files_containing(&env.home, t.as_bytes());
            assert!(leaked.is_empty(), "the token is in {leaked:#?}");
        }
        (ok, (v, events))
    })
    .expect("join");
    let (v, events) = v;
    assert!(ok, "{v:#}");
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let result = v["result"].as_str().unwrap_or("").to_string();
    assert!(!field(&result, "REAL").is_empty(), "no git: {result}");
    // The sandbox's real git binaries: the shim at every path, or unreachable.
    let reached: usize = field(&result, "REACHED").parse().expect("a count");
    assert!(reached >= 3, "too few git paths in the sandbox: {result}");
    let obeyed: Vec<&str> = result
        .split_whitespace()
        .filter(|w| {
            w.starts_with("REACH:")
                && (w.contains("obeyed") || w.contains("=0/") || w.ends_with("/0"))
        })
        .collect();
    assert!(
        obeyed.is_empty(),
        "a real git obeyed the agent: {obeyed:?} in {result}"
    );
    assert_ne!(
        field(&result, "SELFEXE"),
        "0",
        "git read its own binary: {result}"
    );

    // The run's own branch, pushed by the agent through the proxy.
    assert_eq!(field(&result, "RUN"), "0:other", "{result}");
    let pushed = field(&result, "PUSHED").to_string();
    let branch = v["branch"].as_str().expect("branch").to_string();
    // Everything else: refused by the proxy, with its reason shown to the agent.
    for name in ["ALIAS", "ABS", "OTHERBRANCH", "DELETE", "FORCE"] {
        refused_by_proxy(&result, name);
    }
    assert!(!field(&result, "OTHERREPO").starts_with("0:"), "{result}");
    assert!(!field(&result, "DIRECT").starts_with("0:"), "{result}");
    assert_eq!(field(&result, "RAW"), "403", "{result}");
    assert!(result.contains("RAW-REASON"), "{result}");
    for place in ["TOKEN-ENV", "TOKEN-PROC", "TOKEN-FILES"] {
        assert_eq!(
            field(&result, place),
            "0",
            "a token in the sandbox: {result}"
        );
    }

    // On the remote: main untouched, no other branch, the run's branch holds
    // the agent's commit and not the rewrite.
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]), main_before);
    let heads = git(
        &bare,
        &["for-each-ref", "--format=%(refname)", "refs/heads"],
    );
    assert!(!heads.contains("refs/heads/feature"), "{heads}");
    let on_branch = git(&bare, &["rev-parse", &format!("refs/heads/{branch}")]);
    assert!(
        git(&bare, &["merge-base", "--is-ancestor", &pushed, &on_branch]).is_empty(),
        "the agent's push is on {branch}"
    );
    assert_eq!(
        git(&bare, &["show", &format!("{branch}:AGENT.md")]),
        "agent"
    );
    let files = git(&bare, &["ls-tree", "--name-only", &on_branch]);
    assert!(!files.contains("REWRITE.md"), "{files}");

    // errand said what the proxy refused.
    let notices: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "notice")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect();
    let refused = notices
        .iter()
        .find(|n| n.contains("errand's git proxy answered"))
        .unwrap_or_else(|| panic!("{notices:#?}"));
    assert!(
        refused.contains("push refs/heads/main") && refused.contains("acme/other.git"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_malicious_agent_pushes_only_its_branch_through_the_git_proxy() {
    malicious_agent_is_held_by_the_proxy(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_malicious_agent_pushes_only_its_branch_through_the_git_proxy() {
    malicious_agent_is_held_by_the_proxy(Backend::Docker).await;
}

/// `--agent-branch` and `--allow-force-push`: the agent brings its own git (no
/// guard sees it) and the proxy alone decides. A listed branch is pushed, the
/// run's branch is rewritten by a force push, an unlisted branch and a
/// deletion are refused.
const BRANCHES_SCRIPT: &str = r#"export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=agent@example.invalid
export GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=agent@example.invalid
R=
note() { R="$R $1"; }
try() {
  name=$1; shift
  "$@" > /tmp/out.$name 2>&1; c=$?
  if grep -q 'errand: ' /tmp/out.$name; then p=proxy; else p=other; fi
  note "$name=$c:$p"
}
mkdir -p /tmp/own && ln -sf /opt/errand/harness/git /tmp/own/git
for h in /usr/lib/git-core/git-remote-http /usr/lib/git-core/git-remote-https; do ln -sf "$h" /tmp/own/; done
export GIT_EXEC_PATH=/tmp/own
G=/tmp/own/git
BR=$($G rev-parse --abbrev-ref HEAD)
echo one > ONE.md && $G add ONE.md && $G commit -qm one
try RUN $G push origin HEAD
try EXTRA $G push origin HEAD:refs/heads/feat/extra
try UNLISTED $G push origin HEAD:refs/heads/feat/other
$G reset -q --hard HEAD~1
echo two > TWO.md && $G add TWO.md && $G commit -qm two
try FORCE $G push --force origin HEAD:refs/heads/$BR
note "REWRITTEN=$($G rev-parse HEAD)"
try DELETE $G push origin :refs/heads/feat/extra
# Through the guard's shim too: the listed branch is allowed there as well.
try SHIMEXTRA git push origin HEAD:refs/heads/feat/more
R=$(printf '%s' "$R" | tr -d '"\\' | tr '\n' ' ')
echo '{"type":"session_start","session_id":"branches-1"}'
echo '{"type":"result","is_error":false,"text":"'"$R"'","turns":1,"usage":{"input_tokens":1,"output_tokens":1,"cost_usd":0.0}}'
"#;

#[tokio::test(flavor = "multi_thread")]
async fn configured_branches_and_force_are_the_proxys_to_allow() {
    let env = Env::new();
    let Some(extra) = Backend::Local.args(&env) else {
        return;
    };
    let w = world(env).await;
    let (env, github) = (w.env, w.github);
    let env = malicious(env, BRANCHES_SCRIPT);
    let bare = github.repo_path("acme", "widgets");
    let main_before = git(&bare, &["rev-parse", "refs/heads/main"]);

    // The default branch is never the agent's, and the flags need --agent-git.
    let (ok, v) = env.run_json(&[
        "--harness",
        "malicious",
        "--agent-git",
        "--push",
        "--agent-branch",
        "main",
        "--repo",
        "github:acme/widgets",
        "x",
    ]);
    assert!(!ok, "{v:#}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("default branch"),
        "{v:#}"
    );
    let out = env.run(&[
        "run",
        "--agent-branch",
        "feat/x",
        "--repo",
        "github:acme/widgets",
        "x",
    ]);
    assert!(!out.status.success());
    let (ok, v) = env.run_json(&[
        "--harness",
        "malicious",
        "--agent-git",
        "--agent-branch",
        "bad..name",
        "--repo",
        "github:acme/widgets",
        "x",
    ]);
    assert!(
        !ok && v["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a valid branch name"),
        "{v:#}"
    );

    let mut args = vec![
        "--harness",
        "malicious",
        "--agent-git",
        "--push",
        "--agent-branch",
        "feat/extra",
        "--agent-branch",
        "feat/more",
        "--allow-force-push",
    ];
    args.extend(extra);
    args.extend(["--repo", "github:acme/widgets", "push what you may"]);
    let (ok, v) = tokio::task::spawn_blocking(move || env.run_json(&args))
        .await
        .expect("join");
    assert!(ok, "{v:#}");
    let result = v["result"].as_str().unwrap_or("").to_string();
    for ok_step in ["RUN", "EXTRA", "FORCE", "SHIMEXTRA"] {
        assert!(
            field(&result, ok_step).starts_with("0:"),
            "{ok_step}: {result}"
        );
    }
    refused_by_proxy(&result, "UNLISTED");
    refused_by_proxy(&result, "DELETE");
    let branch = v["branch"].as_str().expect("branch").to_string();
    let rewritten = field(&result, "REWRITTEN").to_string();
    assert_eq!(
        git(&bare, &["rev-parse", &format!("refs/heads/{branch}")]),
        rewritten
    );
    let heads = git(
        &bare,
        &["for-each-ref", "--format=%(refname)", "refs/heads"],
    );
    assert!(heads.contains("refs/heads/feat/extra"), "{heads}");
    assert!(!heads.contains("refs/heads/feat/other"), "{heads}");
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]), main_before);
}
