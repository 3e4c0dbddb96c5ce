//! Programs that run another program given on their command line (`env`,
//! `sudo`, `timeout`, `flock -c`, `watch`, `xargs` …): their options are
//! skipped and the wrapped command is checked as if run directly.

use super::short_letters;
use crate::paths;
use crate::shell::{Checker, Effects, Stdin};
use crate::words::{self, Arg, DYN};
use crate::Denial;

/// Programs that run another program given on their command line.
pub(super) struct Wrapper {
    names: &'static [&'static str],
    /// Options that take a value (short `-u` or long `--user`).
    value_opts: &'static [&'static str],
    /// Options whose value is shell code (`flock -c`, `su -c` …).
    code_opts: &'static [&'static str],
    /// Leading operands before the command (`timeout DURATION`, `chroot DIR`).
    operands: usize,
    /// `NAME=value` words may precede the command (env, sudo).
    assignments: bool,
}

/// Every wrapper the guard sees through, with the options it knows.
const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        names: &["env"],
        value_opts: &[
            "-u",
            "--unset",
            "-C",
            "--chdir",
            "-S",
            "--split-string",
            "-P",
            "--default-signal",
            "--ignore-signal",
            "--block-signal",
        ],
        code_opts: &[],
        operands: 0,
        assignments: true,
    },
    Wrapper {
        names: &["sudo"],
        value_opts: &[
            "-u",
            "--user",
            "-g",
            "--group",
            "-h",
            "--host",
            "-p",
            "--prompt",
            "-C",
            "--close-from",
            "-D",
            "--chdir",
            "-r",
            "--role",
            "-t",
            "--type",
            "-T",
            "--command-timeout",
            "-U",
            "--other-user",
            "-R",
            "--chroot",
        ],
        code_opts: &[],
        operands: 0,
        assignments: true,
    },
    Wrapper {
        names: &["doas"],
        value_opts: &["-u", "-C"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &[
            "command",
            "builtin",
            "nohup",
            "unbuffer",
            "eatmydata",
            "catchsegv",
            "chronic",
            "torsocks",
            "tsocks",
            "nocache",
            "caffeinate",
            "dbus-run-session",
            "then",
            "do",
            "else",
        ],
        value_opts: &[],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["exec"],
        value_opts: &["-a"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["nice"],
        value_opts: &["-n", "--adjustment"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["timeout"],
        value_opts: &["-s", "--signal", "-k", "--kill-after"],
        code_opts: &[],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["stdbuf"],
        value_opts: &["-i", "--input", "-o", "--output", "-e", "--error"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["time"],
        value_opts: &["-f", "--format", "-o", "--output"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["setsid"],
        value_opts: &[],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["ionice"],
        value_opts: &["-c", "--class", "-n", "--classdata"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["chrt"],
        value_opts: &[
            "-T",
            "--sched-runtime",
            "-P",
            "--sched-period",
            "-D",
            "--sched-deadline",
        ],
        code_opts: &[],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["taskset"],
        value_opts: &[],
        code_opts: &[],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["chroot"],
        value_opts: &["--userspec", "--groups"],
        code_opts: &[],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["flock"],
        value_opts: &["-w", "--timeout", "-E", "--conflict-exit-code"],
        code_opts: &["-c", "--command"],
        operands: 1,
        assignments: false,
    },
    Wrapper {
        names: &["su"],
        value_opts: &[
            "-s",
            "--shell",
            "-g",
            "--group",
            "-G",
            "--supp-group",
            "-w",
            "--whitelist-environment",
        ],
        code_opts: &["-c", "--command", "--session-command"],
        operands: 99,
        assignments: false,
    },
    Wrapper {
        names: &["runuser"],
        value_opts: &[
            "-u",
            "--user",
            "-s",
            "--shell",
            "-g",
            "--group",
            "-G",
            "--supp-group",
            "-w",
        ],
        code_opts: &["-c", "--command", "--session-command"],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["script"],
        value_opts: &[
            "-E",
            "--echo",
            "-I",
            "--log-in",
            "-O",
            "--log-out",
            "-B",
            "--log-io",
            "-T",
            "--log-timing",
            "-m",
            "--logging-format",
        ],
        code_opts: &["-c", "--command"],
        operands: 99,
        assignments: false,
    },
    Wrapper {
        names: &["busybox", "toybox"],
        value_opts: &[],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["fakeroot"],
        value_opts: &["-l", "--lib", "--faked", "-s", "-i"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["proxychains", "proxychains4"],
        value_opts: &["-f"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["xvfb-run"],
        value_opts: &[
            "-n",
            "--server-num",
            "-s",
            "--server-args",
            "-f",
            "--auth-file",
            "-e",
            "--error-file",
            "-p",
            "--xauth-protocol",
            "-w",
            "--wait",
        ],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["strace", "ltrace"],
        value_opts: &[
            "-o", "-e", "-p", "-s", "-u", "-E", "-a", "-b", "-I", "-O", "-S", "-X", "-P", "-n",
        ],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["unshare"],
        value_opts: &[
            "-S", "--setuid", "-G", "--setgid", "-R", "--root", "-w", "--wd",
        ],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
    Wrapper {
        names: &["watch"],
        value_opts: &["-n", "--interval", "-q", "--equexit"],
        code_opts: &[],
        operands: 0,
        assignments: false,
    },
];

/// The wrapper named `name`, if it is one.
pub(super) fn wrapper(name: &str) -> Option<&'static Wrapper> {
    WRAPPERS.iter().find(|w| w.names.contains(&name))
}

impl Checker<'_> {
    /// Check the command `w` wraps (`sudo -u x CMD`, `env -C dir CMD`,
    /// `timeout 5 CMD`), and any code its options carry (`flock -c CODE`).
    pub(super) fn check_wrapper(
        &mut self,
        name: &str,
        w: &Wrapper,
        rest: &[Arg],
        stdin: &Stdin,
    ) -> Result<Effects, Denial> {
        // `command -v x` and friends only look the name up.
        if name == "command"
            && rest
                .first()
                .is_some_and(|a| a.text == "-v" || a.text == "-V")
        {
            return Ok(Effects::default());
        }
        // Options whose value is shell code may come anywhere (getopt permutes).
        if !w.code_opts.is_empty() {
            self.check_wrapper_code_opts(name, w, rest)?;
        }
        let (mut i, chdir) = match skip_options(name, w, rest) {
            OptionsEnd::Command { at, chdir } => (at, chdir),
            OptionsEnd::SplitString { string, after } => {
                return self.check_split_string(&string, &rest[after..]);
            }
        };
        if w.assignments {
            i = self.check_wrapper_assignments(rest, i)?;
        }
        if w.operands == 99 {
            // su/script: the remaining operands are users and files.
            return Ok(Effects::default());
        }
        i = (i + w.operands).min(rest.len());
        let inner = &rest[i..];
        if inner.is_empty() {
            return Ok(Effects::default());
        }
        if name == "watch" {
            return self.check_watch(inner);
        }
        match chdir {
            None => self.check_argv(inner, stdin),
            Some(dir) => {
                // `env -C dir cmd`: the command runs in `dir`.
                let saved = self.state.cwd.clone();
                self.state.cwd = match dir.known() {
                    Some(d) => paths::resolve(saved.as_deref(), d),
                    None => None,
                };
                let r = self.check_argv(inner, stdin);
                self.state.cwd = saved;
                r
            }
        }
    }

    /// `env`/`sudo` `NAME=value` words from `rest[i]` on: each is checked as
    /// an environment assignment. Returns where they end.
    fn check_wrapper_assignments(&mut self, rest: &[Arg], mut i: usize) -> Result<usize, Denial> {
        while let Some(a) = rest.get(i) {
            let Some((n, v)) = a.text.split_once('=') else {
                break;
            };
            if n.is_empty()
                || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || a.leading_dynamic
            {
                break;
            }
            let value = (!a.dynamic).then(|| v.to_owned());
            self.check_code_env(n, value.as_deref())?;
            i += 1;
        }
        Ok(i)
    }

    /// `watch CMD…`: watch runs its arguments joined with spaces through `sh -c`.
    fn check_watch(&mut self, inner: &[Arg]) -> Result<Effects, Denial> {
        let code = inner
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let dynamic = inner.iter().any(|a| a.dynamic);
        let dl = inner.iter().any(|a| a.from_download);
        self.check_code_arg(
            &Arg {
                text: code,
                dynamic,
                from_download: dl,
                ..Arg::default()
            },
            "watch",
        )
        .map(|_| Effects::default())
    }

    /// Options of `w` whose value is shell code (`flock -c CODE`, `su -c CODE`),
    /// wherever they are.
    fn check_wrapper_code_opts(
        &mut self,
        name: &str,
        w: &Wrapper,
        rest: &[Arg],
    ) -> Result<(), Denial> {
        let mut i = 0;
        while i < rest.len() {
            let a = &rest[i];
            let t = a.text.as_str();
            if t == "--" && w.operands != 99 {
                break;
            }
            let code = if t.starts_with("--") {
                let opt = t.split('=').next().unwrap_or(t);
                if w.code_opts.contains(&opt) {
                    match words::attached_value(t) {
                        Some(v) => Some(Arg {
                            text: v.to_owned(),
                            ..a.clone()
                        }),
                        None => {
                            i += 1;
                            rest.get(i).cloned()
                        }
                    }
                } else {
                    None
                }
            } else if t.starts_with('-') && t.len() > 1 {
                let letters: Vec<char> = short_letters(t).collect();
                let mut found = None;
                for (k, c) in letters.iter().enumerate() {
                    let opt = format!("-{c}");
                    if w.code_opts.contains(&opt.as_str()) {
                        let tail: String = letters[k + 1..].iter().collect();
                        found = if tail.is_empty() {
                            i += 1;
                            rest.get(i).cloned()
                        } else {
                            Some(Arg {
                                text: tail,
                                ..a.clone()
                            })
                        };
                        break;
                    }
                    if w.value_opts.contains(&opt.as_str()) {
                        break;
                    }
                }
                found
            } else {
                None
            };
            if let Some(code) = code {
                self.check_code_arg(&code, &format!("{name} -c"))?;
            }
            i += 1;
        }
        Ok(())
    }

    /// `env -S 'git push -f' …`: the string is split into words.
    fn check_split_string(&mut self, s: &Arg, rest: &[Arg]) -> Result<Effects, Denial> {
        if s.dynamic {
            return Err(Denial::new(
                "dynamic-code",
                "env -S with a string known only at run time",
            ));
        }
        let mut code = s.text.clone();
        for a in rest {
            code.push(' ');
            code.push_str(&words::shell_quote(a));
        }
        self.check_nested(&code, true)
    }

    /// `xargs CMD…`: CMD runs with the items read from stdin (unknown words),
    /// in place of `-I` replace strings or after its arguments.
    pub(super) fn check_xargs(&mut self, rest: &[Arg]) -> Result<Effects, Denial> {
        const VALUE: &[&str] = &[
            "-a",
            "--arg-file",
            "-d",
            "--delimiter",
            "-E",
            "-I",
            "-L",
            "--max-lines",
            "-n",
            "--max-args",
            "-P",
            "--max-procs",
            "-s",
            "--max-chars",
            "--process-slot-var",
        ];
        let mut i = 0;
        let mut replace: Option<String> = None;
        while let Some(a) = rest.get(i) {
            let t = a.text.as_str();
            if a.leading_dynamic || !t.starts_with('-') || t == "-" {
                break;
            }
            if t == "--" {
                i += 1;
                break;
            }
            if t == "-I" {
                replace = rest.get(i + 1).map(|r| r.text.clone());
                i += 2;
                continue;
            }
            if let Some(r) = t.strip_prefix("--replace") {
                replace = Some(r.strip_prefix('=').unwrap_or("{}").to_owned());
            } else if t == "-i" || (t.starts_with("-i") && !t.starts_with("--")) {
                replace = Some(
                    t.get(2..)
                        .filter(|s| !s.is_empty())
                        .unwrap_or("{}")
                        .to_owned(),
                );
            } else if VALUE.contains(&t) {
                i += 1;
            }
            i += 1;
        }
        let mut inner: Vec<Arg> = rest[i.min(rest.len())..].to_vec();
        if inner.is_empty() {
            return Ok(Effects::default()); // echo
        }
        // Items read from stdin: unknown words (not options: xargs passes
        // them after the given arguments).
        let item = Arg {
            text: DYN.to_string(),
            dynamic: true,
            ..Arg::default()
        };
        match replace {
            Some(r) if !r.is_empty() => {
                for a in inner.iter_mut().skip(1) {
                    if a.text.contains(&r) {
                        a.text = a.text.replace(&r, &DYN.to_string());
                        a.dynamic = true;
                    }
                }
            }
            _ => inner.push(item),
        }
        self.check_argv(&inner, &Stdin::Closed)
    }
}

/// Where a wrapper's own options end.
enum OptionsEnd {
    /// The wrapped part starts at `at` (`NAME=value` words and leading
    /// operands still to skip); `chdir` is the directory it runs in
    /// (`env -C`, `sudo -D`).
    Command { at: usize, chdir: Option<Arg> },
    /// `env -S STRING`: STRING is split into words, and the words from
    /// `after` on follow them.
    SplitString { string: Arg, after: usize },
}

/// What one option word of a wrapper amounts to.
enum OptionStep {
    /// The option takes this many words (itself and maybe its value).
    Words(usize),
    /// It is `env -S`/`--split-string`.
    SplitString { string: Arg, after: usize },
}

/// The options that set the wrapped command's directory.
fn chdir_options(name: &str) -> &'static [&'static str] {
    match name {
        "env" => &["-C", "--chdir"],
        "sudo" => &["-D", "--chdir"],
        _ => &[],
    }
}

/// Skip `w`'s options at the start of `rest` (`-u root`, `-uroot`,
/// `--user=root`, up to `--` or the first operand).
fn skip_options(name: &str, w: &Wrapper, rest: &[Arg]) -> OptionsEnd {
    let mut chdir: Option<Arg> = None;
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        if a.leading_dynamic {
            break; // becomes the command name below: fails closed
        }
        let t = a.text.as_str();
        if t == "--" {
            i += 1;
            break;
        }
        if !t.starts_with('-') || t.len() < 2 {
            break;
        }
        let step = if t.starts_with("--") {
            long_option(name, w, rest, i, &mut chdir)
        } else {
            short_cluster(name, w, rest, i, &mut chdir)
        };
        match step {
            OptionStep::Words(n) => i += n,
            OptionStep::SplitString { string, after } => {
                return OptionsEnd::SplitString { string, after }
            }
        }
    }
    OptionsEnd::Command { at: i, chdir }
}

/// The long option `rest[i]` (`--user root`, `--user=root`).
fn long_option(
    name: &str,
    w: &Wrapper,
    rest: &[Arg],
    mut i: usize,
    chdir: &mut Option<Arg>,
) -> OptionStep {
    let a = &rest[i];
    let t = a.text.as_str();
    let opt = t.split('=').next().unwrap_or(t);
    let attached = words::attached_value(t);
    if name == "env" && opt == "--split-string" {
        let string = match attached {
            Some(v) => Arg {
                text: v.to_owned(),
                ..a.clone()
            },
            None => {
                i += 1;
                rest.get(i).cloned().unwrap_or_default()
            }
        };
        let after = (i + 1).min(rest.len());
        return OptionStep::SplitString { string, after };
    }
    if chdir_options(name).contains(&opt) {
        *chdir = match attached {
            Some(v) => Some(Arg {
                text: v.to_owned(),
                ..a.clone()
            }),
            None => rest.get(i + 1).cloned(),
        };
    }
    if attached.is_none() && (w.value_opts.contains(&opt) || w.code_opts.contains(&opt)) {
        OptionStep::Words(2)
    } else {
        OptionStep::Words(1)
    }
}

/// The short-option cluster `rest[i]` (`-u root`, `-uroot`, `-n10`, `-ec`).
fn short_cluster(
    name: &str,
    w: &Wrapper,
    rest: &[Arg],
    mut i: usize,
    chdir: &mut Option<Arg>,
) -> OptionStep {
    let a = &rest[i];
    let letters: Vec<char> = short_letters(&a.text).collect();
    let mut consumed_next = false;
    for (k, c) in letters.iter().enumerate() {
        let opt = format!("-{c}");
        let tail: String = letters[k + 1..].iter().collect();
        if name == "env" && opt == "-S" {
            let string = if tail.is_empty() {
                i += 1;
                rest.get(i).cloned().unwrap_or_default()
            } else {
                Arg {
                    text: tail,
                    ..a.clone()
                }
            };
            let after = (i + 1).min(rest.len());
            return OptionStep::SplitString { string, after };
        }
        if w.value_opts.contains(&opt.as_str()) || w.code_opts.contains(&opt.as_str()) {
            consumed_next = tail.is_empty();
            if chdir_options(name).contains(&opt.as_str()) {
                *chdir = if tail.is_empty() {
                    rest.get(i + 1).cloned()
                } else {
                    Some(Arg {
                        text: tail,
                        ..a.clone()
                    })
                };
            }
            break;
        }
    }
    OptionStep::Words(if consumed_next { 2 } else { 1 })
}
