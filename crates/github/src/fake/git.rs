//! Git smart HTTP through `git http-backend` (CGI), and bare repository setup.

use std::io;
use std::path::Path as FsPath;
use std::process::Stdio;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;

use super::{git_command, has, run, Denied, Shared};

/// Largest request body accepted (a push pack).
const MAX_BODY: usize = 1 << 30;

/// `pre-receive` hook enforcing GitHub's rule that an App needs `workflows: write`
/// to create or update files under `.github/workflows/`.
const WORKFLOW_HOOK: &str = r#"#!/bin/sh
# Installed by errand-github's fake: GitHub refuses workflow changes without `workflows: write`.
[ "$FAKE_GITHUB_WORKFLOWS" = write ] && exit 0
while read old new ref; do
  case "$new" in *[!0]*) ;; *) continue ;; esac
  case "$old" in *[!0]*) range="$old..$new" ;; *) range="$new --not --all" ;; esac
  file=$(git log --format= --name-only $range | grep '^\.github/workflows/' | head -n 1)
  if [ -n "$file" ]; then
    echo "refusing to allow a GitHub App to create or update workflow \`$file\` without \`workflows\` permission" >&2
    exit 1
  fi
done
exit 0
"#;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    UploadPack,
    ReceivePack,
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("{text}\n"),
    )
        .into_response()
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Basic realm=\"fake-github\""),
            (header::CONTENT_TYPE, "text/plain"),
        ],
        "Invalid username or token.\n",
    )
        .into_response()
}

/// The password of `Authorization: Basic` when the user is `x-access-token`.
fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == "x-access-token" && !password.is_empty()).then(|| password.to_string())
}

/// `/{owner}/{repo}.git/{info/refs|git-upload-pack|git-receive-pack}`.
pub(super) async fn serve(
    State(s): State<Arc<Shared>>,
    Path((owner, repo_git, rest)): Path<(String, String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let query = query.unwrap_or_default();
    let Some(repo) = repo_git.strip_suffix(".git") else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(dir) = s.repo_dir(&owner, repo) else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    let requested = query.split('&').find_map(|kv| kv.strip_prefix("service="));
    let service = match (&method, rest.as_str(), requested) {
        (&Method::GET, "info/refs", Some("git-upload-pack"))
        | (&Method::POST, "git-upload-pack", _) => Service::UploadPack,
        (&Method::GET, "info/refs", Some("git-receive-pack"))
        | (&Method::POST, "git-receive-pack", _) => Service::ReceivePack,
        _ => {
            return plain(
                StatusCode::FORBIDDEN,
                "Only the smart HTTP protocol is supported.",
            )
        }
    };
    let Some(token) = basic_token(&headers) else {
        return challenge();
    };
    let full = format!("{owner}/{repo}");
    let need = match service {
        Service::UploadPack => "read",
        Service::ReceivePack => "write",
    };
    let perms = match s.authorize(&token, &full, |p| has(p, "contents", need)) {
        Ok(p) => p,
        Err(Denied::Unauthorized) => return challenge(),
        Err(Denied::NotCovered | Denied::Forbidden) => {
            return plain(
                StatusCode::FORBIDDEN,
                &format!("Permission to {full}.git denied to x-access-token."),
            );
        }
    };
    if !dir.is_dir() {
        return plain(StatusCode::NOT_FOUND, "Repository not found.");
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("could not read request body: {e}"),
            )
        }
    };
    let workflows = has(&perms, "workflows", "write");
    let cgi = Cgi {
        root: &s.repos_root,
        path_info: format!("/{owner}/{repo_git}/{rest}"),
        query: &query,
        method: method.as_str(),
        headers: &headers,
        workflows,
    };
    match cgi.run(body).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "git http-backend failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed")
        }
    }
}

struct Cgi<'a> {
    root: &'a FsPath,
    path_info: String,
    query: &'a str,
    method: &'a str,
    headers: &'a HeaderMap,
    workflows: bool,
}

impl Cgi<'_> {
    async fn run(&self, body: Bytes) -> io::Result<Response> {
        let header = |name: HeaderName| self.headers.get(name).and_then(|v| v.to_str().ok());
        let mut cmd = git_command(None).tokio();
        cmd.arg("http-backend")
            .env("GIT_PROJECT_ROOT", self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("PATH_INFO", &self.path_info)
            .env("QUERY_STRING", self.query)
            .env("REQUEST_METHOD", self.method)
            .env("REMOTE_USER", "x-access-token")
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("CONTENT_LENGTH", body.len().to_string())
            .env(
                "FAKE_GITHUB_WORKFLOWS",
                if self.workflows { "write" } else { "none" },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(ct) = header(header::CONTENT_TYPE) {
            cmd.env("CONTENT_TYPE", ct);
        }
        if let Some(enc) = header(header::CONTENT_ENCODING) {
            cmd.env("HTTP_CONTENT_ENCODING", enc);
        }
        if let Some(proto) = header(HeaderName::from_static("git-protocol")) {
            cmd.env("GIT_PROTOCOL", proto);
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // The backend may exit without reading everything (e.g. on error); that is fine.
                let _ = stdin.write_all(&body).await;
            }
        };
        let (_, out) = tokio::join!(feed, child.wait_with_output());
        let out = out?;
        if !out.stderr.is_empty() {
            tracing::debug!(stderr = %String::from_utf8_lossy(&out.stderr), "git http-backend");
        }
        parse_cgi(&out.stdout)
    }
}

/// Turns CGI output (headers, blank line, body) into a response.
fn parse_cgi(out: &[u8]) -> io::Result<Response> {
    let crlf = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4));
    let lf = out
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| (p, p + 2));
    let (head_end, body_start) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => return Err(io::Error::other("git http-backend wrote no CGI headers")),
    };
    let head = String::from_utf8_lossy(&out[..head_end]);
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok());
            status = code
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value),
        ) {
            builder = builder.header(n, v);
        }
    }
    builder
        .status(status)
        .body(Body::from(out[body_start..].to_vec()))
        .map_err(io::Error::other)
}

/// Whether `refs/heads/{branch}` exists in the bare repository at `dir`.
pub(super) async fn branch_exists(dir: &FsPath, branch: &str) -> bool {
    let valid = !branch.is_empty()
        && !branch.starts_with(['-', '/'])
        && !branch.contains("..")
        && branch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if !valid {
        return false;
    }
    let mut cmd = git_command(Some(dir)).tokio();
    cmd.args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    matches!(cmd.status().await, Ok(s) if s.success())
}

/// Deletes branch `branch` of the bare repository `dir`; whether it existed.
pub(super) async fn delete_branch(dir: &FsPath, branch: &str) -> bool {
    if !branch_exists(dir, branch).await {
        return false;
    }
    let mut cmd = git_command(Some(dir)).tokio();
    cmd.args(["update-ref", "-d"])
        .arg(format!("refs/heads/{branch}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    matches!(cmd.status().await, Ok(s) if s.success())
}

fn valid_branch(branch: &str) -> bool {
    !branch.is_empty()
        && !branch.starts_with(['-', '/'])
        && !branch.contains("..")
        && branch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

async fn git_output(dir: &FsPath, args: &[&str]) -> Option<String> {
    let mut cmd = git_command(Some(dir)).tokio();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let out = cmd.output().await.ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit `refs/heads/{branch}` points at.
pub(super) async fn branch_sha(dir: &FsPath, branch: &str) -> Option<String> {
    if !valid_branch(branch) {
        return None;
    }
    git_output(
        dir,
        &["rev-parse", "--verify", &format!("refs/heads/{branch}")],
    )
    .await
    .map(|s| s.trim().to_string())
}

/// What `head` changes against its merge base with `base`: (status, added, removed, path).
pub(super) async fn changed_files(
    dir: &FsPath,
    base: &str,
    head: &str,
) -> Vec<(String, u64, u64, String)> {
    if !valid_branch(base) || !valid_branch(head) {
        return Vec::new();
    }
    let range = format!("refs/heads/{base}...refs/heads/{head}");
    let Some(numstat) = git_output(dir, &["diff", "--numstat", &range]).await else {
        return Vec::new();
    };
    let statuses = git_output(dir, &["diff", "--name-status", &range])
        .await
        .unwrap_or_default();
    numstat
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let added = parts.next()?.parse().unwrap_or(0);
            let removed = parts.next()?.parse().unwrap_or(0);
            let path = parts.next()?.to_string();
            let status = statuses
                .lines()
                .find(|s| s.ends_with(&format!("\t{path}")))
                .and_then(|s| s.chars().next())
                .map(|c| match c {
                    'A' => "added",
                    'D' => "removed",
                    'R' => "renamed",
                    _ => "modified",
                })
                .unwrap_or("modified");
            Some((status.to_string(), added, removed, path))
        })
        .collect()
}

/// `git init --bare` with one commit holding a README on `branch`, push over HTTP
/// enabled, and the workflow hook.
pub(super) fn create_bare_repo(
    dir: &FsPath,
    owner: &str,
    repo: &str,
    branch: &str,
) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    run(
        git_command(None)
            .args(["init", "--bare", "--quiet"])
            .arg(format!("--initial-branch={branch}"))
            .arg(dir),
        None,
    )?;
    run(
        git_command(Some(dir)).args(["config", "http.receivepack", "true"]),
        None,
    )?;
    let readme = format!("# {repo}\n\nA repository of {owner}, served by errand-github's fake.\n");
    let blob = run(
        git_command(Some(dir)).args(["hash-object", "-w", "--stdin"]),
        Some(readme.as_bytes()),
    )?;
    let tree = run(
        git_command(Some(dir)).arg("mktree"),
        Some(format!("100644 blob {}\tREADME.md\n", blob.trim()).as_bytes()),
    )?;
    let commit = run(
        git_command(Some(dir))
            .args(["commit-tree", tree.trim(), "-m", "Initial commit"])
            .env("GIT_AUTHOR_NAME", "Fake GitHub")
            .env("GIT_AUTHOR_EMAIL", "fake@github.invalid")
            .env("GIT_COMMITTER_NAME", "Fake GitHub")
            .env("GIT_COMMITTER_EMAIL", "fake@github.invalid"),
        None,
    )?;
    run(
        git_command(Some(dir))
            .args(["update-ref"])
            .arg(format!("refs/heads/{branch}"))
            .arg(commit.trim()),
        None,
    )?;
    let hook = dir.join("hooks").join("pre-receive");
    std::fs::write(&hook, WORKFLOW_HOOK)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgi_status_and_headers() {
        let resp = parse_cgi(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno")
            .expect("parse");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        let resp = parse_cgi(b"Content-Type: application/x-git-upload-pack-advertisement\n\n001e")
            .expect("parse");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(parse_cgi(b"garbage").is_err());
    }
}
