//! Secret files: arguments that name a credential file (`~/.ssh/id_rsa`,
//! a `.env` outside the workspace), or a directory holding one for
//! commands that read trees (`grep -r`, `tar`, `rsync -a`).

use super::{short_letters, show};
use crate::paths::{self, SecretRelation};
use crate::shell::Checker;
use crate::words::{Arg, DYN};
use crate::Denial;

impl Checker<'_> {
    /// Every argument of `name` that could name a secret file (or, for
    /// recursive readers, a directory holding one).
    pub(super) fn check_secret_args(&self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        let recursive = is_recursive_reader(name, rest);
        for a in rest {
            self.check_secret_path(a, recursive, name)?;
        }
        Ok(())
    }

    /// Deny if `a` names a secret file (or, for recursive readers, a
    /// directory containing one).
    pub(crate) fn check_secret_path(
        &self,
        a: &Arg,
        recursive: bool,
        how: &str,
    ) -> Result<(), Denial> {
        if a.dynamic {
            return self.check_secret_tail(a, how);
        }
        let t = a.text.as_str();
        let mut cands: Vec<&str> = vec![t];
        if let Some((_, v)) = t.split_once('=') {
            cands.push(v);
        }
        for c in cands.clone() {
            if let Some(v) = c.strip_prefix('@') {
                cands.push(v);
            }
        }
        if t.starts_with('-') {
            if let Some(pos) = t.find(['/', '~']) {
                cands.push(&t[pos..]);
            }
        }
        for c in cands {
            if c.is_empty() {
                continue;
            }
            let expanded;
            let c = if c == "~" {
                self.home.as_str()
            } else if let Some(r) = c.strip_prefix("~/") {
                expanded = format!("{}/{r}", self.home);
                expanded.as_str()
            } else {
                c
            };
            let (dir, glob) = if a.glob && paths::has_glob_chars(c) {
                (c.to_owned(), true)
            } else {
                (c.to_owned(), false)
            };
            let Some(p) = paths::resolve(self.state.cwd.as_deref(), &dir) else {
                continue;
            };
            let comps = paths::components(&p);
            for s in self.secrets.iter() {
                match paths::relate(&comps, s) {
                    Some(SecretRelation::Inside) => {
                        return Err(Denial::new(
                            "secret-read",
                            format!("`{how}` reads {p}: {}", s.what),
                        ));
                    }
                    Some(SecretRelation::Ancestor) if recursive => {
                        return Err(Denial::new(
                            "secret-read",
                            format!("`{how}` reads {p} recursively, which contains {}", s.what),
                        ));
                    }
                    _ => {}
                }
            }
            if let Some(last) = comps.last() {
                let dotenv =
                    paths::is_dotenv_name(last) || (glob && paths::glob_match(last, ".env"));
                if dotenv && !paths::within(&p, &self.workspace) {
                    return Err(Denial::new(
                        "secret-read",
                        format!("`{how}` reads {p}: a .env file outside the workspace"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// For words with an unknown start (`"$X/.ssh/id_rsa"`), look at the
    /// known tail for a secret location.
    fn check_secret_tail(&self, a: &Arg, how: &str) -> Result<(), Denial> {
        let tail = a.text.rsplit(DYN).next().unwrap_or("");
        let comps: Vec<&str> = tail.split('/').filter(|c| !c.is_empty()).collect();
        for (entry, what) in paths::home_secret_entries() {
            if comps.windows(entry.len()).any(|w| w == entry) {
                return Err(Denial::new(
                    "secret-read",
                    format!("`{how}` may read {what} through `{}`", show(a)),
                ));
            }
        }
        Ok(())
    }
}

/// Commands that read directory trees when given a directory.
fn is_recursive_reader(name: &str, rest: &[Arg]) -> bool {
    let has_short = |letters: &[char]| {
        rest.iter().any(|a| {
            let t = a.text.as_str();
            t.starts_with('-')
                && !t.starts_with("--")
                && short_letters(t).any(|c| letters.contains(&c))
        })
    };
    let has_long = |l: &[&str]| rest.iter().any(|a| l.iter().any(|x| a.text.starts_with(x)));
    match name {
        "rg" | "ag" | "ack" | "tar" | "zip" | "7z" | "7za" | "bsdtar" | "gtar" | "rclone" => true,
        "grep" | "egrep" | "fgrep" => {
            has_short(&['r', 'R'])
                || has_long(&[
                    "--recursive",
                    "--dereference-recursive",
                    "--directories=recurse",
                ])
        }
        "cp" | "scp" => has_short(&['r', 'R', 'a']) || has_long(&["--recursive", "--archive"]),
        "rsync" => has_short(&['r', 'a']) || has_long(&["--recursive", "--archive"]),
        _ => false,
    }
}
