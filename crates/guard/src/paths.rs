//! Lexical path handling: normalising, relating paths to the workspace,
//! recognising secret files, raw devices and system directories, and a
//! small shell-glob matcher.
//!
//! Everything here is purely lexical. Symlinks are not followed (the guard
//! never touches the file system), which is one of the documented limits.

/// Normalise `path` against `cwd`: absolute result with `.`/`..`/empty
/// components removed. `None` when `path` is relative and `cwd` is unknown.
pub(crate) fn resolve(cwd: Option<&str>, path: &str) -> Option<String> {
    let joined;
    let full = if path.starts_with('/') {
        path
    } else {
        let base = cwd?;
        joined = format!("{base}/{path}");
        &joined
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in full.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Components of a normalised absolute path (`/` has none).
pub(crate) fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// `path` is `root` or below it (both normalised).
pub(crate) fn within(path: &str, root: &str) -> bool {
    if root == "/" {
        return true;
    }
    path == root || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// `path` is a strict ancestor of `other`.
pub(crate) fn is_ancestor(path: &str, other: &str) -> bool {
    path != other && within(other, path)
}

/// Does the text contain unquoted-glob metacharacters?
pub(crate) fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell glob match of one path component (`*`, `?`, `[...]`, `[!...]`).
/// Leading dots are matched by wildcards too (as with `dotglob`): the guard
/// errs towards "this pattern could name that file".
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_match_from(&p, &t)
}

fn glob_match_from(p: &[char], t: &[char]) -> bool {
    // Iterative matcher with single-star backtracking.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == t[ti] {
                        pi += 2;
                        ti += 1;
                        continue;
                    }
                }
                c => {
                    if c == t[ti] {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Match a `[...]` class starting at `p[start] == '['`. Returns
/// `(matched, index after the class)`, or `None` if the class is unterminated.
fn class_match(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Could glob component `a` and component `b` (either may be a pattern)
/// name the same file? Errs towards yes.
pub(crate) fn components_overlap(a: &str, b: &str) -> bool {
    let (ga, gb) = (has_glob_chars(a), has_glob_chars(b));
    match (ga, gb) {
        (false, false) => a == b,
        (true, false) => glob_match(a, b),
        (false, true) => glob_match(b, a),
        (true, true) => true,
    }
}

/// Raw block/char devices whose overwrite destroys a disk or memory.
pub(crate) fn is_raw_device(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/dev/") else {
        return false;
    };
    const PREFIXES: &[&str] = &[
        "sd", "hd", "vd", "xvd", "nvme", "mmcblk", "md", "dm-", "loop", "sr", "nbd", "rbd", "zd",
        "disk/", "mapper/", "block/", "mem", "kmem", "port", "nvram", "mtd", "ubi", "bcache",
        "drbd", "rsxx", "fd0",
    ];
    PREFIXES.iter().any(|p| rest.starts_with(p)) || rest.starts_with("root")
}

/// System directories that must never be chmod/chown'ed recursively.
pub(crate) fn system_path(path: &str, home: &str) -> Option<&'static str> {
    const TREES: &[&str] = &[
        "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/sys",
        "/proc", "/dev", "/var", "/root",
    ];
    const EXACT: &[&str] = &["/home", "/opt", "/srv", "/mnt", "/media", "/run", "/tmp"];
    if path == "/" {
        return Some("the file-system root");
    }
    if path == home || is_ancestor(path, home) {
        return Some("the home directory");
    }
    if TREES.iter().any(|t| within(path, t)) {
        return Some("a system directory");
    }
    if EXACT.contains(&path) {
        return Some("a system directory");
    }
    None
}

/// A secret location, as path components from `/`; components may be
/// glob patterns (`*` for "any user").
pub(crate) struct SecretPattern {
    pub comps: Vec<String>,
    pub what: &'static str,
}

/// Secret files relative to a home directory.
const HOME_SECRETS: &[(&[&str], &str)] = &[
    (&[".ssh"], "SSH keys (~/.ssh)"),
    (&[".aws"], "AWS credentials (~/.aws)"),
    (
        &[".config", "gcloud"],
        "Google Cloud credentials (~/.config/gcloud)",
    ),
    (&[".netrc"], "~/.netrc credentials"),
    (&["_netrc"], "~/_netrc credentials"),
    (
        &[".git-credentials"],
        "git credentials (~/.git-credentials)",
    ),
    (
        &[".docker", "config.json"],
        "Docker registry credentials (~/.docker/config.json)",
    ),
    (
        &[".config", "errand"],
        "errand's own configuration (~/.config/errand)",
    ),
    (&[".gnupg"], "GnuPG keys (~/.gnupg)"),
    (&[".kube"], "Kubernetes credentials (~/.kube)"),
    (&[".azure"], "Azure credentials (~/.azure)"),
    (&[".config", "gh"], "GitHub CLI tokens (~/.config/gh)"),
    (&[".pypirc"], "PyPI credentials (~/.pypirc)"),
    (&[".npmrc"], "npm tokens (~/.npmrc)"),
    (
        &[".cargo", "credentials"],
        "crates.io token (~/.cargo/credentials)",
    ),
    (
        &[".cargo", "credentials.toml"],
        "crates.io token (~/.cargo/credentials.toml)",
    ),
    (
        &[".codex", "auth.json"],
        "Codex credentials (~/.codex/auth.json)",
    ),
    (
        &[".claude", ".credentials.json"],
        "Claude credentials (~/.claude/.credentials.json)",
    ),
    (&[".vault-token"], "Vault token (~/.vault-token)"),
    (
        &[".terraform.d", "credentials.tfrc.json"],
        "Terraform credentials",
    ),
];

/// Secret files at fixed absolute locations.
const ABSOLUTE_SECRETS: &[(&[&str], &str)] = &[
    (&["etc", "shadow"], "/etc/shadow"),
    (&["etc", "shadow-"], "/etc/shadow-"),
    (&["etc", "gshadow"], "/etc/gshadow"),
    (&["etc", "gshadow-"], "/etc/gshadow-"),
    (&["etc", "ssh", "ssh_host_*"], "SSH host keys"),
    (
        &["proc", "*", "environ"],
        "another process's environment (/proc/*/environ)",
    ),
    (
        &["proc", "*", "task", "*", "environ"],
        "another process's environment",
    ),
];

/// Home-relative secret entries (component lists), for matching the
/// literal tail of a path whose start is unknown (`"$X/.ssh/id_rsa"`).
pub(crate) fn home_secret_entries() -> impl Iterator<Item = (&'static [&'static str], &'static str)>
{
    HOME_SECRETS.iter().copied()
}

/// Build the secret patterns for one home directory (plus `/root` and
/// every `/home/*`).
pub(crate) fn secret_patterns(home: &str) -> Vec<SecretPattern> {
    let mut homes: Vec<Vec<String>> = vec![
        components(home).into_iter().map(str::to_owned).collect(),
        vec!["root".to_owned()],
        vec!["home".to_owned(), "*".to_owned()],
    ];
    homes.dedup();
    let mut out = Vec::new();
    for h in &homes {
        for (rel, what) in HOME_SECRETS {
            let mut comps = h.clone();
            comps.extend(rel.iter().map(|s| (*s).to_owned()));
            out.push(SecretPattern { comps, what });
        }
    }
    for (abs, what) in ABSOLUTE_SECRETS {
        out.push(SecretPattern {
            comps: abs.iter().map(|s| (*s).to_owned()).collect(),
            what,
        });
    }
    out
}

/// How a path relates to a secret pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecretRelation {
    /// The path is the secret or lies inside it.
    Inside,
    /// The path is a directory that contains the secret.
    Ancestor,
}

/// Relate normalised path components (possibly glob patterns) to a secret.
pub(crate) fn relate(path: &[&str], secret: &SecretPattern) -> Option<SecretRelation> {
    if !path
        .iter()
        .zip(&secret.comps)
        .all(|(p, s)| components_overlap(p, s))
    {
        return None;
    }
    if path.len() >= secret.comps.len() {
        Some(SecretRelation::Inside)
    } else {
        Some(SecretRelation::Ancestor)
    }
}

/// `.env`-style dotenv file names (`.env`, `.env.local`, …) but not the
/// checked-in templates (`.env.example`, `.env.sample`, `.env.template`).
pub(crate) fn is_dotenv_name(name: &str) -> bool {
    if name == ".env" {
        return true;
    }
    match name.strip_prefix(".env.") {
        Some(rest) => !matches!(
            rest,
            "example" | "sample" | "template" | "dist" | "defaults"
        ),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_normalises() {
        assert_eq!(
            resolve(Some("/workspace"), "./build/").as_deref(),
            Some("/workspace/build")
        );
        assert_eq!(resolve(Some("/workspace"), "../..").as_deref(), Some("/"));
        assert_eq!(
            resolve(Some("/workspace"), "a/../b").as_deref(),
            Some("/workspace/b")
        );
        assert_eq!(resolve(None, "x"), None);
        assert_eq!(resolve(None, "/x//y/").as_deref(), Some("/x/y"));
    }

    #[test]
    fn within_and_ancestor() {
        assert!(within("/workspace/a", "/workspace"));
        assert!(within("/workspace", "/workspace"));
        assert!(!within("/workspace2", "/workspace"));
        assert!(is_ancestor("/", "/workspace"));
        assert!(!is_ancestor("/workspace", "/workspace"));
    }

    #[test]
    fn globbing() {
        assert!(glob_match("*", ".git"));
        assert!(glob_match(".g*", ".git"));
        assert!(glob_match("?git", ".git"));
        assert!(glob_match("[.]git", ".git"));
        assert!(!glob_match("*.rs", ".git"));
        assert!(glob_match("ssh_host_*", "ssh_host_rsa_key"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("[!a]x", "bx"));
        assert!(!glob_match("[!a]x", "ax"));
    }

    #[test]
    fn devices() {
        assert!(is_raw_device("/dev/sda"));
        assert!(is_raw_device("/dev/nvme0n1p1"));
        assert!(is_raw_device("/dev/disk/by-id/x"));
        assert!(!is_raw_device("/dev/null"));
        assert!(!is_raw_device("/dev/stdout"));
        assert!(!is_raw_device("/dev/tty"));
        assert!(!is_raw_device("/dev/zero"));
    }

    #[test]
    fn dotenv() {
        assert!(is_dotenv_name(".env"));
        assert!(is_dotenv_name(".env.production"));
        assert!(!is_dotenv_name(".env.example"));
        assert!(!is_dotenv_name(".envrc"));
    }
}
