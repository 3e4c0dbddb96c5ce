//! Which repositories a run started through the API may name.
//!
//! A run's repository is cloned by errand's own user on the server, so a
//! repository string that reaches the server's filesystem would let any
//! caller read any directory errand can read. Through the API:
//!
//! * `github:owner/repo` and network URLs (`https://`, `http://`, `ssh://`,
//!   `git@host:path`) are taken, once they cannot be read as git options and
//!   do not name this machine (`localhost`, loopback and unspecified
//!   addresses in any literal form: that is the server's filesystem again);
//! * everything else is local (a path, `file://`, `~`, a relative path, a
//!   `transport::address` form such as `ext::`, a string starting with `-`)
//!   and is refused with `local_repo_not_allowed`, unless it is an absolute
//!   path or `file:///` URL whose canonical form (symlinks and `..` resolved)
//!   lies under one of the canonical prefixes in `server.local_repos`. The run
//!   then records that canonical path.
//!
//! The local `errand run` does not come here: it may clone what its user can.

use std::path::{Path, PathBuf};

use errand_core::RepoSource;

use crate::ApiError;

/// The canonical forms of the configured prefixes; a prefix that does not
/// exist (or cannot be resolved) is dropped, with the reason returned.
pub fn canonical_prefixes(prefixes: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut ok = Vec::new();
    let mut problems = Vec::new();
    for p in prefixes {
        if !p.is_absolute() {
            problems.push(format!(
                "server.local_repos: '{}' is not an absolute path",
                p.display()
            ));
            continue;
        }
        match p.canonicalize() {
            Ok(c) => ok.push(c),
            Err(e) => problems.push(format!(
                "server.local_repos: '{}' cannot be resolved: {e}",
                p.display()
            )),
        }
    }
    (ok, problems)
}

/// Refusal of a local form, saying what an administrator could change.
fn local_refused(repo: &str, why: &str) -> ApiError {
    ApiError::local_repo_not_allowed(format!(
        "repo '{}' {why}: through the API a run may clone github:owner/repo or a network URL \
         (https://, ssh://), or a local path under one of the server's server.local_repos",
        printable(repo)
    ))
}

/// The repo as it may be echoed back: at most 200 characters, no control characters.
fn printable(repo: &str) -> String {
    repo.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A host name git would not read as an option and that names something.
fn plain_host(host: &str) -> bool {
    !host.is_empty() && !host.starts_with('-') && !host.contains(char::is_whitespace)
}

/// Whether `host` (as written in the URL: maybe `[v6]`, maybe with `:port`)
/// is this machine by its literal form: `localhost`, a loopback or unspecified
/// address, or a numeric form (`2130706433`, `0x7f.1`, `127.1`) that resolvers
/// read as one. Cloning from there is reading the server's own repositories
/// (over ssh with errand's keys, or a git daemon bound to loopback). Names that
/// merely resolve to loopback are not caught here.
fn this_machine(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h),
    };
    let bare = bare.trim_end_matches('.');
    if bare == "localhost" || bare.ends_with(".localhost") || bare.is_empty() {
        return true;
    }
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        let v4_mapped = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified()),
            std::net::IpAddr::V4(_) => false,
        };
        return ip.is_loopback() || ip.is_unspecified() || v4_mapped;
    }
    // inet_aton's forms: 1 to 4 parts, each decimal, octal or 0x hex.
    let numeric = |p: &str| {
        !p.is_empty()
            && (p.chars().all(|c| c.is_ascii_digit())
                || p.strip_prefix("0x")
                    .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit())))
    };
    bare.split('.').count() <= 4 && bare.split('.').all(numeric)
}

/// `owner/repo` as GitHub spells names.
fn github_name(full: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['-', '.'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(full.split_once('/'), Some((o, r)) if ok(o) && ok(r))
}

/// Checks `repo` (as the API request gave it) against `allowed` (canonical
/// prefixes) and returns what the run records.
pub async fn check(repo: &str, allowed: &[PathBuf]) -> Result<RepoSource, ApiError> {
    if repo.trim().is_empty() {
        return Err(ApiError::invalid(
            "repo is empty: leave it out for a run without a repository",
        ));
    }
    if repo.chars().any(char::is_control) {
        return Err(local_refused(repo, "contains control characters"));
    }
    let lower = repo.to_ascii_lowercase();
    let parsed = RepoSource::parse(repo);
    match &parsed {
        RepoSource::Github(full) => {
            if github_name(full) {
                return Ok(parsed);
            }
            return Err(ApiError::invalid(format!(
                "repo '{}' is not a GitHub owner/repo",
                printable(repo)
            )));
        }
        RepoSource::Url(url) if !lower.starts_with("file:") => {
            let host = if let Some(rest) = lower.strip_prefix("git@") {
                rest.split_once(':').map(|(h, p)| (h, !p.is_empty()))
            } else {
                url.split_once("://").map(|(_, rest)| {
                    let authority = rest.split('/').next().unwrap_or("");
                    let host = authority.rsplit('@').next().unwrap_or("");
                    (host, true)
                })
            };
            return match host {
                Some((h, true)) if this_machine(h) => Err(local_refused(
                    repo,
                    "names this server itself (a loopback host)",
                )),
                Some((h, true)) if plain_host(h) && !url.contains(char::is_whitespace) => {
                    Ok(parsed)
                }
                _ => Err(ApiError::invalid(format!(
                    "repo '{}' is not a URL git can clone safely",
                    printable(repo)
                ))),
            };
        }
        _ => {}
    }
    // From here on the repository is on the server's own filesystem.
    let path = if lower.starts_with("file:") {
        let Some(rest) = repo
            .get("file://".len()..)
            .filter(|_| lower.starts_with("file://"))
        else {
            return Err(local_refused(repo, "is not a file:/// URL"));
        };
        if !rest.starts_with('/') {
            return Err(local_refused(repo, "names a host or a relative path"));
        }
        if rest.contains(['%', '?', '#']) {
            return Err(local_refused(repo, "is an encoded file URL"));
        }
        rest
    } else {
        repo
    };
    if path.starts_with('-') {
        return Err(local_refused(
            repo,
            "starts with '-' (git would read it as an option)",
        ));
    }
    if path.contains("::") {
        return Err(local_refused(
            repo,
            "names a git transport (transport::address)",
        ));
    }
    if path.starts_with('~') {
        return Err(local_refused(repo, "is relative to a home directory"));
    }
    if !Path::new(path).is_absolute() {
        return Err(local_refused(repo, "is a relative path"));
    }
    if allowed.is_empty() {
        return Err(local_refused(
            repo,
            "is a local path, and this server allows none (server.local_repos is empty)",
        ));
    }
    let canonical = tokio::fs::canonicalize(path)
        .await
        .map_err(|_| local_refused(repo, "does not exist or is not reachable"))?;
    if !allowed.iter().any(|prefix| canonical.starts_with(prefix)) {
        return Err(local_refused(repo, "is not under server.local_repos"));
    }
    let Some(canonical) = canonical.to_str() else {
        return Err(local_refused(repo, "resolves to a path that is not UTF-8"));
    };
    // Its canonical form again (it may not start with '-', and so on).
    if canonical.starts_with('-') || canonical.contains("::") {
        return Err(local_refused(repo, "resolves to a path git could misread"));
    }
    Ok(RepoSource::Local(canonical.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn code(repo: &str, allowed: &[PathBuf]) -> &'static str {
        match check(repo, allowed).await {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[tokio::test]
    async fn network_and_github_repositories_pass() {
        for repo in [
            "github:acme/widgets",
            "gh:acme/widgets.git",
            "https://github.com/acme/widgets.git",
            "http://git.example/x",
            "ssh://git@git.example/x.git",
            "git@github.com:acme/widgets.git",
        ] {
            assert_eq!(code(repo, &[]).await, "ok", "{repo}");
        }
        for repo in [
            "ssh://localhost/etc",
            "ssh://git@127.0.0.1:22/srv/secret.git",
            "git@localhost:/srv/secret.git",
            "git@LOCALHOST.:x",
            "http://127.1/x",
            "http://2130706433/x",
            "http://0x7f000001/x",
            "https://[::1]:8080/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://0.0.0.0/x",
            "http://user@localhost:9418/x",
            "ssh://a.localhost/x",
        ] {
            assert_eq!(code(repo, &[]).await, "local_repo_not_allowed", "{repo}");
        }
        for repo in [
            "ssh://-oProxyCommand=touch%20/tmp/pwned/x",
            "git@-oProxyCommand=x:y",
            "git@host:",
            "github:-x/y",
            "github:acme/../etc",
            "https:// host/x",
        ] {
            assert_eq!(code(repo, &[]).await, "invalid_request", "{repo}");
        }
    }

    #[tokio::test]
    async fn local_forms_are_refused_without_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        for repo in [
            d.to_string(),
            format!("file://{d}"),
            "/etc".into(),
            "file:///etc".into(),
            "FILE:///etc".into(),
            "file://localhost/etc".into(),
            "file:/etc".into(),
            "../../etc".into(),
            "relative/dir".into(),
            ".".into(),
            "~".into(),
            "~root/x".into(),
            "--upload-pack=touch /tmp/pwned".into(),
            "-u touch /tmp/pwned".into(),
            "ext::sh -c touch% /tmp/pwned".into(),
            "fd::17".into(),
            "localhost:/etc".into(),
            "/tmp/x\n/etc".into(),
        ] {
            assert_eq!(code(&repo, &[]).await, "local_repo_not_allowed", "{repo}");
        }
    }

    #[tokio::test]
    async fn local_paths_pass_only_under_a_canonical_prefix() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("repos");
        let inside = allowed.join("a");
        let outside = root.path().join("repos2");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A symlink inside the prefix that leads out of it.
        std::os::unix::fs::symlink(&outside, allowed.join("out")).unwrap();
        let (prefixes, problems) = canonical_prefixes(std::slice::from_ref(&allowed));
        assert!(problems.is_empty(), "{problems:?}");
        let p = |x: &Path| x.to_str().unwrap().to_string();

        match check(&p(&inside), &prefixes).await.unwrap() {
            RepoSource::Local(l) => assert_eq!(l, p(&inside.canonicalize().unwrap())),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            code(&format!("file://{}", p(&inside)), &prefixes).await,
            "ok"
        );
        for refused in [
            p(&outside),
            format!("{}/a/../../repos2", p(&allowed)),
            p(&allowed.join("out")),
            format!("file://{}", p(&allowed.join("out"))),
            p(&allowed.join("missing")),
            "/etc".into(),
            format!("file://{}%2f..", p(&inside)),
        ] {
            assert_eq!(
                code(&refused, &prefixes).await,
                "local_repo_not_allowed",
                "{refused}"
            );
        }
        let (none, problems) = canonical_prefixes(&["relative".into(), root.path().join("nope")]);
        assert!(none.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
