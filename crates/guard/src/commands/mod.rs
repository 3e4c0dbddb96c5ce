//! Rules on one expanded argv. Every simple command arrives at
//! [`Checker::check_argv`], which applies the caller's extra rules and the
//! command classes, then hands the command to its family: wrappers, shells
//! and interpreters, rm, find, devices and chmod, secret files, git. The
//! builtins that change the tracked state (`cd`, `export`, `unset`) are
//! handled here.

mod find;
mod interpreters;
mod output;
mod rm;
mod secrets;
mod system;
mod wrappers;

pub(crate) use interpreters::SHELLS;

use crate::paths;
use crate::shell::{Checker, Effects, Stdin};
use crate::words::{Arg, DYN};
use crate::Denial;

use interpreters::{interpreter_base, INTERPRETERS};
use output::{decodes, printed_text, DOWNLOADERS};

/// Commands that do not read their file arguments' contents (names only).
const NON_READING: &[&str] = &[
    "echo", "printf", "ls", "dir", "vdir", "test", "[", "true", "false", "cd", "pushd", "popd",
    "mkdir", "touch", "stat", "realpath", "readlink", "dirname", "basename", "which", "type",
    "whereis", "file", "du", "df", "wc", "chmod", "chown", "chgrp", "export", "declare", "local",
    "readonly", "typeset", "unset", "rm", "rmdir",
];

/// Command name as the shell resolves it: basename of a path.
pub(crate) fn command_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Split a short-option cluster like `-rfv` into its letters.
fn short_letters(t: &str) -> impl Iterator<Item = char> + '_ {
    t.strip_prefix('-').unwrap_or("").chars()
}

/// `at`/`batch` read the commands they run (later) from stdin, unless
/// given a file (`-f`) or asked to list, remove or show jobs.
fn at_reads_stdin(rest: &[Arg]) -> bool {
    !rest.iter().any(|a| {
        a.text == "-f"
            || a.text.starts_with("-l")
            || a.text == "-r"
            || a.text == "-d"
            || a.text == "-c"
    })
}

/// A word for messages, with unknown parts shown as `…`.
pub(crate) fn show(a: &Arg) -> String {
    a.text.replace(DYN, "…")
}

impl Checker<'_> {
    /// Every simple command ends up here, wrappers first.
    pub(crate) fn check_argv(&mut self, argv: &[Arg], stdin: &Stdin) -> Result<Effects, Denial> {
        if self.argv_depth >= crate::shell::MAX_ARGV_DEPTH {
            return Err(Denial::new(
                "too-complex",
                "wrapper commands nested too deep",
            ));
        }
        self.argv_depth += 1;
        let r = self.check_argv_inner(argv, stdin);
        self.argv_depth -= 1;
        r
    }

    /// [`Checker::check_argv`] below the depth budget: the command word, the
    /// caller's rules and the classes every command goes through.
    fn check_argv_inner(&mut self, argv: &[Arg], stdin: &Stdin) -> Result<Effects, Denial> {
        let Some(first) = argv.first() else {
            return Ok(Effects::default());
        };
        if first.dynamic {
            if first.from_download {
                return Err(Denial::new(
                    "pipe-to-shell",
                    "a download is run as a command",
                ));
            }
            return Err(Denial::new(
                "dynamic-command",
                "the command name comes from a variable or command output",
            ));
        }
        let rest = &argv[1..];
        if let Some((var, value)) = first.text.split_once('=') {
            if !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                // `command X=1 curl …`: bash would fail on `X=1`, but treat
                // it like an assignment prefix and check the rest (over-approximation).
                self.check_code_env(var, Some(value))?;
                return self.check_argv(rest, stdin);
            }
        }
        let name = command_name(&first.text).to_owned();
        self.current_argv0.clone_from(&first.text);
        self.check_extra_rules(&name, rest)?;
        self.check_any_command(&name, rest)?;
        let pre = Effects {
            env_dump: Self::dumps_env(&name, rest),
            secret_filter: Self::filters_secrets(&name, rest),
            decodes: decodes(&name, rest),
            ..Effects::default()
        };
        self.check_argv_classes(&name, rest, stdin).map(|mut e| {
            e |= pre;
            e
        })
    }

    /// The rules for the command `name` (after wrappers and assignments): its
    /// classes, then its family (wrappers, builtins, git, rm, find …), then
    /// what it prints and which files it reads.
    fn check_argv_classes(
        &mut self,
        name: &str,
        rest: &[Arg],
        stdin: &Stdin,
    ) -> Result<Effects, Denial> {
        let name = name.to_owned();
        self.piped_text = printed_text(&name, rest);
        self.check_host_control(&name, rest)?;
        self.check_secret_print(&name, rest)?;
        self.check_dotenv_args(&name, rest)?;
        self.check_written_run(&name, rest)?;
        self.check_command_options(&name, rest)?;
        match name.as_str() {
            "gh" => self.check_gh(rest)?,
            "curl" | "wget" | "http" | "https" | "xh" | "curlie" => {
                self.check_http_client(&name, rest)?
            }
            _ => {}
        }

        if let Some(w) = wrappers::wrapper(&name) {
            return self.check_wrapper(&name, w, rest, stdin);
        }
        match name.as_str() {
            "xargs" => {
                self.check_secret_args("xargs", rest)?; // `xargs -a file`
                return self.check_xargs(rest);
            }
            "eval" => return self.check_eval(rest),
            // `at`/`batch` run the commands they read on stdin (later).
            "at" | "batch" if at_reads_stdin(rest) => {
                self.stdin_reader = Some(None);
                return self.program_from_stdin(stdin, true);
            }
            "." | "source" => {
                if let Some(f) = rest.first() {
                    if f.from_download {
                        return Err(Denial::new(
                            "pipe-to-shell",
                            "`source <(download)` runs downloaded code",
                        ));
                    }
                }
            }
            "alias" => return self.check_alias(rest),
            "trap" => return self.check_trap(rest),
            "cd" | "pushd" => self.change_dir(rest),
            "popd" => self.state.cwd = None,
            "export" | "declare" | "local" | "readonly" | "typeset" => self.assign_vars(rest)?,
            "unset" => {
                for a in rest.iter().filter(|a| !a.text.starts_with('-')) {
                    if let Some(n) = a.known() {
                        self.state.vars.insert(n.to_owned(), Some(String::new()));
                    }
                }
            }
            "git" => self.check_git(rest)?,
            n if n.starts_with("git-") && n.len() > 4 => {
                let mut v = vec![Arg::lit(&n[4..])];
                v.extend_from_slice(rest);
                self.check_git(&v)?;
            }
            "rm" => self.check_rm(rest)?,
            "find" => self.check_find(rest)?,
            "mv" => self.check_mv(rest)?,
            "chmod" | "chown" | "chgrp" => self.check_chmod(&name, rest)?,
            _ => self.check_device_command(&name, rest)?,
        }

        let mut eff = Effects::default();
        if SHELLS.contains(&name.as_str()) {
            eff |= self.check_shell(rest, stdin)?;
        } else if INTERPRETERS.contains(&interpreter_base(&name).to_ascii_lowercase().as_str()) {
            eff |= self.check_interpreter(&name, rest, stdin)?;
        }
        // Downloaders print what they fetch; any command may print a
        // downloaded argument (`echo "$(curl …)" | sh`).
        if DOWNLOADERS.contains(&name.to_ascii_lowercase().as_str())
            || rest.iter().any(|a| a.from_download)
        {
            eff.downloads = true;
        }
        if !NON_READING.contains(&name.as_str()) {
            self.check_secret_args(&name, rest)?;
        }
        Ok(eff)
    }

    /// The caller's [`crate::ExtraRule`]s for the command `name`.
    fn check_extra_rules(&self, name: &str, args: &[Arg]) -> Result<(), Denial> {
        for r in &self.policy.extra_rules {
            if r.command != name {
                continue;
            }
            let all = r.args.iter().all(|pat| {
                args.iter()
                    .any(|a| a.dynamic || paths::glob_match(pat, &a.text))
            });
            if all {
                return Err(Denial {
                    rule: r.id.clone(),
                    reason: format!("{}: {}", r.id, r.reason),
                });
            }
        }
        Ok(())
    }

    /// `export`/`declare`/`local` … `NAME=value`: remembered like plain assignments.
    fn assign_vars(&mut self, rest: &[Arg]) -> Result<(), Denial> {
        for a in rest {
            if let Some((n, v)) = a.text.split_once('=') {
                if n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !n.is_empty() {
                    let value = (!a.dynamic).then(|| v.to_owned());
                    self.check_code_env(n, value.as_deref())?;
                    self.set_var(n.to_owned(), value, a.from_download);
                }
            }
        }
        Ok(())
    }

    /// `cd`/`pushd`: the new working directory (unknown when it is).
    fn change_dir(&mut self, rest: &[Arg]) {
        let target = rest
            .iter()
            .find(|a| !(a.text.starts_with('-') && a.text.len() > 1 && !a.dynamic));
        self.state.cwd = match target {
            None => Some(self.home.clone()),
            Some(a) if a.dynamic || a.text == "-" => None,
            Some(a) => paths::resolve(self.state.cwd.as_deref(), &a.text),
        };
    }
}
