//! `rm -r` targets (only inside the workspace, never `.git`, the root or
//! home) and `mv` that takes the workspace, `.git` or home away.

use super::{short_letters, show};
use crate::paths;
use crate::shell::Checker;
use crate::words::{self, Arg};
use crate::Denial;

impl Checker<'_> {
    /// `rm`: with `-r` (or an unknown word that may be it), every target must
    /// be a known path that [`Checker::check_rm_target`] accepts.
    pub(super) fn check_rm(&mut self, rest: &[Arg]) -> Result<(), Denial> {
        const LONG: &[&str] = &[
            "--recursive",
            "--force",
            "--interactive",
            "--one-file-system",
            "--no-preserve-root",
            "--preserve-root",
            "--dir",
            "--verbose",
            "--help",
            "--version",
        ];
        let mut recursive = false;
        let mut maybe_recursive = false;
        let mut targets: Vec<&Arg> = Vec::new();
        let mut maybe_flags: Vec<&Arg> = Vec::new();
        let mut end_opts = false;
        for a in rest {
            if !end_opts && a.unquoted_dynamic {
                return Err(Denial::new(
                    "rm-unresolved",
                    "rm gets an unquoted variable or command output that could expand to options and paths",
                ));
            }
            if !end_opts && a.leading_dynamic {
                // Could be `-r` or a target: decided after the loop.
                maybe_recursive = true;
                maybe_flags.push(a);
                continue;
            }
            let t = a.text.as_str();
            if !end_opts && t == "--" {
                end_opts = true;
                continue;
            }
            if !end_opts && t.starts_with("--") {
                let c = words::long_candidates(t, LONG);
                if c.contains(&"--no-preserve-root") {
                    return Err(Denial::new("rm-recursive", "rm --no-preserve-root"));
                }
                if c.contains(&"--recursive") {
                    recursive = true;
                }
                continue;
            }
            if !end_opts && t.starts_with('-') && t.len() > 1 {
                if short_letters(t).any(|c| c == 'r' || c == 'R') {
                    recursive = true;
                }
                continue;
            }
            targets.push(a);
        }
        if !recursive && !maybe_recursive {
            return Ok(());
        }
        if recursive {
            // With a literal -r, unknown words are targets (or more options).
            targets.extend(maybe_flags);
        }
        for a in targets {
            if a.dynamic {
                return Err(Denial::new(
                    "rm-unresolved",
                    format!(
                        "rm -r target `{}` depends on a variable or command output",
                        show(a)
                    ),
                ));
            }
            self.check_rm_target(a)?;
        }
        Ok(())
    }

    /// One `rm -r` target (globs included): inside the workspace, not its
    /// root or `.git`, and no glob at the root that matches `.git` or
    /// everything, or that can match `..`.
    pub(crate) fn check_rm_target(&self, a: &Arg) -> Result<(), Denial> {
        let ws = self.workspace.as_str();
        let raw = a.text.as_str();
        let (dir_part, glob_part) = if a.glob {
            split_glob(raw)
        } else {
            (raw.to_owned(), None)
        };
        let dir_text = if dir_part.is_empty() {
            ".".to_owned()
        } else {
            dir_part
        };
        let Some(path) = paths::resolve(self.state.cwd.as_deref(), &dir_text) else {
            return Err(Denial::new(
                "rm-unresolved",
                format!("rm -r of relative path `{raw}` after a `cd` to an unknown directory"),
            ));
        };
        let deny = |what: String| {
            Err(Denial::new(
                "rm-recursive",
                format!("rm -r of `{raw}`: {what}"),
            ))
        };
        if path == "/" && glob_part.is_none() {
            return deny("the file-system root".to_owned());
        }
        if path == self.home || paths::is_ancestor(&path, &self.home) && glob_part.is_none() {
            return deny("the home directory".to_owned());
        }
        if !paths::within(&path, ws) {
            return deny(format!("{path} is outside the workspace {ws}"));
        }
        if paths::components(&path[ws.len()..]).contains(&".git") {
            return deny("the repository's .git directory".to_owned());
        }
        match glob_part {
            None => {
                if path == ws {
                    return deny("the workspace root".to_owned());
                }
            }
            Some(glob) => {
                let first = glob.split('/').next().unwrap_or("");
                if path == ws {
                    if paths::glob_match(first, ".git") {
                        return deny(format!(
                            "the glob `{first}` at the workspace root also matches .git"
                        ));
                    }
                    if first.chars().all(|c| "*?.[]!".contains(c)) {
                        return deny(format!(
                            "the glob `{first}` matches everything at the workspace root"
                        ));
                    }
                }
                if first.starts_with('.') && paths::glob_match(first, "..") {
                    return deny(format!("the glob `{first}` can match `..`"));
                }
            }
        }
        Ok(())
    }

    /// `mv` that takes the repository, the workspace, the home directory or
    /// the root away from its place (`mv .git /tmp/x`, `mv /workspace …`).
    pub(super) fn check_mv(&self, rest: &[Arg]) -> Result<(), Denial> {
        let mut pos: Vec<&Arg> = Vec::new();
        let mut target_dir = false;
        let mut skip = false;
        for a in rest {
            if skip {
                skip = false;
                continue;
            }
            let t = a.text.as_str();
            if t == "-t" || t == "--target-directory" {
                target_dir = true;
                skip = true;
            } else if t.starts_with("--target-directory=") {
                target_dir = true;
            } else if t.starts_with('-') && t.len() > 1 && !a.dynamic {
                continue;
            } else {
                pos.push(a);
            }
        }
        let sources = if target_dir {
            &pos[..]
        } else {
            &pos[..pos.len().saturating_sub(1)]
        };
        let cwd = self.state.cwd.as_deref();
        for a in sources.iter().filter(|a| !a.dynamic) {
            let Some(p) = crate::paths::resolve(cwd, &a.text) else {
                continue;
            };
            let p = p.trim_end_matches('/');
            let p = if p.is_empty() { "/" } else { p };
            let ws = self.workspace.as_str();
            let what = if p == "/" || ws.starts_with(&format!("{p}/")) {
                Some("a directory that holds the workspace")
            } else if p == ws {
                Some("the workspace")
            } else if p == format!("{ws}/.git") || p.ends_with("/.git") {
                Some("the repository's .git directory")
            } else if p == self.home {
                Some("the home directory")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(Denial::new(
                    "rm-recursive",
                    format!("mv of `{}`: {what}; moving it away removes it from its place as surely as rm -r", a.text),
                ));
            }
        }
        Ok(())
    }
}

/// Split a glob path into the literal directory before the first glob
/// component and the rest (`build/*/x` → (`build`, `*/x`)).
pub(super) fn split_glob(raw: &str) -> (String, Option<String>) {
    let first_glob = raw.find(['*', '?', '[']).unwrap_or(raw.len());
    match raw[..first_glob].rfind('/') {
        Some(slash) => {
            let dir = if slash == 0 {
                "/".to_owned()
            } else {
                raw[..slash].to_owned()
            };
            (dir, Some(raw[slash + 1..].to_owned()))
        }
        None => (String::new(), Some(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_glob_parts() {
        assert_eq!(split_glob("*"), (String::new(), Some("*".to_owned())));
        assert_eq!(split_glob("/*"), ("/".to_owned(), Some("*".to_owned())));
        assert_eq!(
            split_glob("build/*.o"),
            ("build".to_owned(), Some("*.o".to_owned()))
        );
    }
}
