//! Writes that damage the machine or the repository's records: raw
//! devices and file systems (`dd of=/dev/…`, `mkfs`), `.git` hooks,
//! config and refs, and `chmod`/`chown -R` of system paths.

use super::rm::split_glob;
use super::{short_letters, show};
use crate::paths;
use crate::shell::Checker;
use crate::words::{self, Arg};
use crate::Denial;

impl Checker<'_> {
    /// `chmod`/`chown`/`chgrp -R` of a system path or the home directory.
    pub(super) fn check_chmod(&mut self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        let recursive = rest.iter().any(|a| {
            let t = a.text.as_str();
            (t.starts_with("--")
                && words::long_candidates(t, &["--recursive", "--reference", "--reflink"])
                    .contains(&"--recursive"))
                || (t.starts_with('-')
                    && !t.starts_with("--")
                    && short_letters(t).any(|c| c == 'R'))
        });
        if !recursive {
            return Ok(());
        }
        for a in rest
            .iter()
            .filter(|a| !a.text.starts_with('-') || a.leading_dynamic)
        {
            if a.dynamic {
                return Err(Denial::new(
                    "chmod-system",
                    format!("{name} -R on `{}`, which depends on a variable", show(a)),
                ));
            }
            let text = if a.glob {
                split_glob(&a.text).0
            } else {
                a.text.clone()
            };
            let text = if text.is_empty() {
                ".".to_owned()
            } else {
                text
            };
            // The mode/owner operand (`755`, `u+x`, `root:root`) resolves to a
            // harmless relative name; it is skipped only when the working
            // directory is unknown.
            let path_like = text.contains('/') || text.starts_with('.') || a.glob;
            let Some(p) = paths::resolve(self.state.cwd.as_deref(), &text) else {
                if !path_like {
                    continue;
                }
                return Err(Denial::new(
                    "chmod-system",
                    format!("{name} -R on a relative path after `cd` to an unknown directory"),
                ));
            };
            if let Some(what) = paths::system_path(&p, &self.home) {
                return Err(Denial::new(
                    "chmod-system",
                    format!("{name} -R on {p} ({what})"),
                ));
            }
        }
        Ok(())
    }

    /// Deny writes to `.git/hooks/…` and `.git/config` (of any repository:
    /// submodules have their own).
    pub(crate) fn check_git_internal_target(&self, a: &Arg, how: &str) -> Result<(), Denial> {
        let Some(p) = a
            .known()
            .and_then(|t| paths::resolve(self.state.cwd.as_deref(), t))
        else {
            return Ok(());
        };
        let comps = paths::components(&p);
        let hit = comps
            .windows(2)
            .any(|w| w[0] == ".git" && (w[1] == "hooks" || w[1] == "config"));
        if hit {
            return Err(Denial::new(
                "git-hooks-write",
                format!("{how} writes to {p}"),
            ));
        }
        let records = comps.windows(2).any(|w| {
            w[0] == ".git"
                && matches!(
                    w[1],
                    "HEAD" | "refs" | "objects" | "packed-refs" | "index" | "ORIG_HEAD" | "shallow"
                )
        });
        if records {
            return Err(Denial::new(
                "git-metadata-write",
                format!("{how} writes to {p}"),
            ));
        }
        Ok(())
    }

    /// A write target (`>`, `tee`, `cp` …): not `.git` internals, not a raw device.
    pub(crate) fn check_device_target(&self, a: &Arg, how: &str) -> Result<(), Denial> {
        self.check_git_internal_target(a, how)?;
        if a.dynamic {
            return Ok(());
        }
        if let Some(p) = paths::resolve(self.state.cwd.as_deref(), &a.text) {
            if paths::is_raw_device(&p) {
                return Err(Denial::new(
                    "device-write",
                    format!("{how} writes to the raw device {p}"),
                ));
            }
        }
        Ok(())
    }

    /// Disk tools: `mkfs` and friends, repartitioning, and `dd of=`, `shred`,
    /// `tee`, `cp` … onto a raw device.
    pub(super) fn check_device_command(&mut self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        let is_dev = |a: &Arg, cwd: Option<&str>| {
            !a.dynamic && paths::resolve(cwd, &a.text).is_some_and(|p| paths::is_raw_device(&p))
        };
        let cwd = self.state.cwd.clone();
        let cwd = cwd.as_deref();
        if name.starts_with("mkfs")
            || matches!(
                name,
                "mke2fs" | "mkswap" | "wipefs" | "blkdiscard" | "mkntfs" | "mkdosfs" | "mkexfatfs"
            )
        {
            return Err(Denial::new(
                "device-write",
                format!("`{name}` creates or wipes a file system"),
            ));
        }
        match name {
            "dd" | "dcfldd" => {
                for a in rest {
                    if let Some(of) = a.text.strip_prefix("of=") {
                        self.check_device_target(
                            &Arg {
                                text: of.to_owned(),
                                ..a.clone()
                            },
                            name,
                        )?;
                    }
                }
            }
            "fdisk" | "sfdisk" | "cfdisk" | "parted" | "sgdisk" | "gdisk" | "cgdisk"
            | "partprobe" => {
                let listing = rest.iter().any(|a| {
                    matches!(
                        a.text.as_str(),
                        "-l" | "--list" | "print" | "-p" | "--print"
                    )
                });
                if !listing && rest.iter().any(|a| is_dev(a, cwd)) {
                    return Err(Denial::new(
                        "device-write",
                        format!("`{name}` repartitions a disk"),
                    ));
                }
            }
            "shred" => {
                if let Some(a) = rest.iter().find(|a| is_dev(a, cwd)) {
                    return Err(Denial::new(
                        "device-write",
                        format!("shred of the device {}", a.text),
                    ));
                }
            }
            "tee" | "cp" | "mv" | "install" | "rsync" | "ddrescue" | "pv" | "cat" | "ln" => {
                let writes: Vec<&Arg> = match name {
                    "tee" => rest.iter().filter(|a| !a.text.starts_with('-')).collect(),
                    "cat" | "pv" => Vec::new(),
                    _ => rest
                        .iter()
                        .rfind(|a| !a.text.starts_with('-'))
                        .into_iter()
                        .collect(),
                };
                for a in writes {
                    self.check_device_target(a, name)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
