//! Rules on one expanded argv: wrapper stripping, shells and interpreters,
//! rm, find, chmod/chown, raw devices, secret files, cd tracking.

use crate::paths::{self, SecretRelation};
use crate::shell::{Checker, Effects, Stdin};
use crate::words::{self, Arg, DYN};
use crate::Denial;

/// Programs that run another program given on their command line.
struct Wrapper {
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

/// Shells: `-c` bodies and here-documents are parsed as shell code.
pub(crate) const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish", "yash", "posh", "csh", "tcsh",
    "rbash", "hush",
];

/// Other interpreters: their code is not inspected, but feeding them a
/// download is denied.
const INTERPRETERS: &[&str] = &[
    "python",
    "pypy",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "php",
    "lua",
    "luajit",
    "tclsh",
    "osascript",
    "deno",
    "bun",
    "irb",
    "jshell",
    "rscript",
    "pwsh",
];

/// Programs that write what they download to stdout (by default).
const DOWNLOADERS: &[&str] = &[
    "curl",
    "wget",
    "fetch",
    "aria2c",
    "http",
    "https",
    "xh",
    "lwp-request",
    "get",
    "lynx",
    "elinks",
    "links",
    "w3m",
];

/// Commands that do not read their file arguments' contents (names only).
const NON_READING: &[&str] = &[
    "echo", "printf", "ls", "dir", "vdir", "test", "[", "true", "false", "cd", "pushd", "popd",
    "mkdir", "touch", "stat", "realpath", "readlink", "dirname", "basename", "which", "type",
    "whereis", "file", "du", "df", "wc", "chmod", "chown", "chgrp", "export", "declare", "local",
    "readonly", "typeset", "unset", "rm", "rmdir",
];

/// Whether a command prints decoded or transformed text, which a shell
/// downstream would run unchecked.
fn decodes(name: &str, rest: &[Arg]) -> bool {
    let has = |f: &str| rest.iter().any(|a| a.text == f);
    let short = |c: char| {
        rest.iter()
            .any(|a| a.text.starts_with('-') && !a.text.starts_with("--") && a.text.contains(c))
    };
    match name {
        "base64" | "base32" | "basenc" => short('d') || has("--decode"),
        "xxd" => short('r') || has("-revert"),
        "openssl" => rest
            .iter()
            .any(|a| matches!(a.text.as_str(), "base64" | "enc" | "-d" | "-a")),
        "rev" | "tr" | "uudecode" | "zcat" | "gunzip" | "bzcat" | "xzcat" | "zstdcat" | "unxz" => {
            true
        }
        "gzip" | "bzip2" | "xz" | "zstd" | "brotli" => short('d') || has("--decode") || short('c'),
        "printf" => rest.iter().any(|a| {
            a.text.contains("\\x")
                || a.text.contains("\\0")
                || a.text.contains("%b")
                || a.text.contains("\\u")
        }),
        "echo" => {
            short('e')
                && rest
                    .iter()
                    .any(|a| a.text.contains("\\x") || a.text.contains("\\0"))
        }
        "python" | "python3" | "perl" | "ruby" | "node" => rest.iter().any(|a| {
            a.text.contains("b64decode")
                || a.text.contains("decode_base64")
                || a.text.contains("unpack")
                || a.text.contains("from(") && a.text.contains("base64")
        }),
        _ => false,
    }
}

/// What `echo`/`printf` prints when every argument is known.
fn printed_text(name: &str, rest: &[Arg]) -> Option<String> {
    if rest.iter().any(|a| a.dynamic || a.leading_dynamic || a.unquoted_dynamic) {
        return None;
    }
    match name {
        "echo" => {
            let mut args = rest.iter().map(|a| a.text.as_str()).peekable();
            let mut escapes = false;
            while let Some(f) = args.peek() {
                if f.len() > 1 && f.starts_with('-') && f[1..].chars().all(|c| "neE".contains(c)) {
                    escapes |= f.contains('e');
                    args.next();
                } else {
                    break;
                }
            }
            let text = args.collect::<Vec<_>>().join(" ");
            Some(if escapes { text.replace("\\n", "\n") } else { text })
        }
        "printf" => {
            let (fmt, args) = rest.split_first()?;
            let fmt = fmt.text.replace("\\n", "\n").replace("\\t", "\t");
            let args: Vec<&str> = args.iter().map(|a| a.text.as_str()).collect();
            if !fmt.contains('%') {
                Some(fmt)
            } else if fmt.trim_end() == "%s" {
                Some(args.join(""))
            } else if fmt.trim_end() == "%s\\n" || fmt.replace('\n', "").trim() == "%s" {
                Some(args.join("\n"))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Command name as the shell resolves it: basename of a path.
pub(crate) fn command_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Normalise interpreter names: `python3.11` → `python`, `perl5.36` → `perl`.
fn interpreter_base(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
}

/// Split a short-option cluster like `-rfv` into its letters.
fn short_letters(t: &str) -> impl Iterator<Item = char> + '_ {
    t.strip_prefix('-').unwrap_or("").chars()
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

        if let Some(w) = WRAPPERS.iter().find(|w| w.names.contains(&name.as_str())) {
            return self.check_wrapper(&name, w, rest, stdin);
        }
        match name.as_str() {
            "xargs" => {
                self.check_secret_args("xargs", rest)?; // `xargs -a file`
                return self.check_xargs(rest);
            }
            "eval" => return self.check_eval(rest),
            // `at`/`batch` run the commands they read on stdin (later).
            "at" | "batch" if !rest.iter().any(|a| a.text == "-f" || a.text.starts_with("-l") || a.text == "-r" || a.text == "-d" || a.text == "-c") => {
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
            "alias" => {
                for a in rest {
                    if let Some((_, v)) = a.text.split_once('=') {
                        self.check_code_arg(
                            &Arg {
                                text: v.to_owned(),
                                ..a.clone()
                            },
                            "alias",
                        )?;
                    }
                }
                return Ok(Effects::default());
            }
            "trap" => {
                if let Some(code) = rest.iter().find(|a| !a.text.starts_with('-') || a.dynamic) {
                    self.check_code_arg(code, "trap")?;
                }
                return Ok(Effects::default());
            }
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

    /// `sh f`, `bash f`, `python f`, `source f`, `./f` where `f` was written
    /// earlier in the same line: check what was written.
    fn check_written_run(&mut self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        if self.state.written.is_empty() {
            return Ok(());
        }
        let base = interpreter_base(name).to_ascii_lowercase();
        let lang = crate::inline::Lang::of(&base);
        let is_shell = SHELLS.contains(&name) || matches!(name, "source" | ".");
        let script = if is_shell || lang.is_some() {
            if rest
                .iter()
                .any(|a| matches!(a.text.as_str(), "-c" | "-e" | "-E"))
            {
                return Ok(());
            }
            rest.iter().find(|a| !a.text.starts_with('-'))
        } else {
            None
        };
        let (path, lang) = match script {
            Some(s) => (s.text.clone(), lang),
            // `./f`: run directly, read as shell unless it has a shebang.
            None if self.current_argv0.contains('/') => (self.current_argv0.clone(), None),
            None => return Ok(()),
        };
        let Some(key) = self.written_key(&path) else {
            return Ok(());
        };
        let Some(content) = self.state.written.get(&key).cloned() else {
            return Ok(());
        };
        let Some(text) = content else {
            return Err(Denial::new(
                "written-script",
                format!("`{path}` was written in this command line from output the guard cannot read, then run"),
            ));
        };
        let lang = lang.or_else(|| {
            let first = text.lines().next().unwrap_or("");
            first
                .strip_prefix("#!")
                .and_then(|l| {
                    l.split_whitespace()
                        .find(|w| !w.ends_with("/env") && *w != "-S")
                })
                .and_then(|w| {
                    crate::inline::Lang::of(&interpreter_base(command_name(w)).to_ascii_lowercase())
                })
        });
        let r = match lang {
            Some(l) => self.check_program_text(name, l, &text).map(|_| ()),
            None => self.check_nested(&text, true).map(|_| ()),
        };
        r.map_err(|d| Denial {
            reason: format!(
                "{}: the script `{path}` written in this command line would run: {}",
                d.rule, d.reason
            ),
            rule: d.rule,
        })
    }

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

    fn check_wrapper(
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
        let chdir_opts: &[&str] = match name {
            "env" => &["-C", "--chdir"],
            "sudo" => &["-D", "--chdir"],
            _ => &[],
        };
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
            if t.starts_with("--") {
                let opt = t.split('=').next().unwrap_or(t);
                let attached = words::attached_value(t);
                if name == "env" && opt == "--split-string" {
                    let v = match attached {
                        Some(v) => Arg {
                            text: v.to_owned(),
                            ..a.clone()
                        },
                        None => {
                            i += 1;
                            rest.get(i).cloned().unwrap_or_default()
                        }
                    };
                    return self.check_split_string(&v, &rest[(i + 1).min(rest.len())..]);
                }
                if chdir_opts.contains(&opt) {
                    chdir = match attached {
                        Some(v) => Some(Arg {
                            text: v.to_owned(),
                            ..a.clone()
                        }),
                        None => rest.get(i + 1).cloned(),
                    };
                }
                if attached.is_none() && (w.value_opts.contains(&opt) || w.code_opts.contains(&opt))
                {
                    i += 1;
                }
                i += 1;
                continue;
            }
            // Short cluster: `-u root`, `-uroot`, `-n10`, `-ec`.
            let letters: Vec<char> = short_letters(t).collect();
            let mut consumed_next = false;
            for (k, c) in letters.iter().enumerate() {
                let opt = format!("-{c}");
                let tail: String = letters[k + 1..].iter().collect();
                if name == "env" && opt == "-S" {
                    let v = if tail.is_empty() {
                        i += 1;
                        rest.get(i).cloned().unwrap_or_default()
                    } else {
                        Arg {
                            text: tail,
                            ..a.clone()
                        }
                    };
                    return self.check_split_string(&v, &rest[(i + 1).min(rest.len())..]);
                }
                if w.value_opts.contains(&opt.as_str()) || w.code_opts.contains(&opt.as_str()) {
                    consumed_next = tail.is_empty();
                    if chdir_opts.contains(&opt.as_str()) {
                        chdir = if tail.is_empty() {
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
            i += if consumed_next { 2 } else { 1 };
        }
        if w.assignments {
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
            // watch runs its arguments joined with spaces through `sh -c`.
            let code = inner
                .iter()
                .map(|a| a.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let dynamic = inner.iter().any(|a| a.dynamic);
            let dl = inner.iter().any(|a| a.from_download);
            return self
                .check_code_arg(
                    &Arg {
                        text: code,
                        dynamic,
                        from_download: dl,
                        ..Arg::default()
                    },
                    "watch",
                )
                .map(|_| Effects::default());
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

    /// Code given as an argument (`sh -c BODY`, `su -c`, `alias x=BODY` …).
    pub(crate) fn check_code_arg(&mut self, code: &Arg, what: &str) -> Result<Effects, Denial> {
        if code.from_download {
            return Err(Denial::new(
                "pipe-to-shell",
                format!("{what} runs code that was downloaded"),
            ));
        }
        if code.dynamic {
            return Err(Denial::new(
                "dynamic-code",
                format!("{what} runs shell code that is known only at run time"),
            ));
        }
        self.check_nested(&code.text, true)
    }

    fn check_eval(&mut self, rest: &[Arg]) -> Result<Effects, Denial> {
        let args: Vec<&Arg> = rest.iter().filter(|a| a.text != "--").collect();
        if args.iter().any(|a| a.from_download) {
            return Err(Denial::new("pipe-to-shell", "eval runs downloaded code"));
        }
        if args.iter().any(|a| a.dynamic) {
            return Err(Denial::new(
                "dynamic-code",
                "eval of text known only at run time",
            ));
        }
        let code = args
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        // eval runs in the current shell: keep state changes.
        self.check_nested(&code, false)
    }

    fn check_xargs(&mut self, rest: &[Arg]) -> Result<Effects, Denial> {
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

    // ----- shells and interpreters --------------------------------------

    fn check_shell(&mut self, rest: &[Arg], stdin: &Stdin) -> Result<Effects, Denial> {
        let mut i = 0;
        let mut has_c = false;
        let mut stdin_flag = false;
        while let Some(a) = rest.get(i) {
            if a.leading_dynamic {
                if has_c {
                    break; // the -c body
                }
                if a.from_download {
                    return Err(Denial::new(
                        "pipe-to-shell",
                        "a shell runs a downloaded script",
                    ));
                }
                if i + 1 < rest.len() || has_c {
                    return Err(Denial::new(
                        "dynamic-code",
                        "shell options known only at run time",
                    ));
                }
                break;
            }
            let t = a.text.as_str();
            if t == "--" || t == "-" {
                stdin_flag |= t == "-";
                i += 1;
                break;
            }
            if (t.starts_with('-') || t.starts_with('+')) && t.len() > 1 {
                if t.starts_with("--") {
                    if matches!(t, "--rcfile" | "--init-file") {
                        i += 1;
                    }
                    i += 1;
                    continue;
                }
                for c in t[1..].chars() {
                    match c {
                        'c' => has_c = true,
                        's' => stdin_flag = true,
                        'o' | 'O' => i += 1,
                        _ => {}
                    }
                }
                i += 1;
                continue;
            }
            break;
        }
        let operand = rest.get(i);
        if has_c {
            return match operand {
                Some(body) => self.check_code_arg(body, "sh -c"),
                None => Ok(Effects::default()),
            };
        }
        if !stdin_flag {
            if let Some(script) = operand {
                if script.from_download {
                    return Err(Denial::new(
                        "pipe-to-shell",
                        "a shell runs a downloaded script (bash <(curl …))",
                    ));
                }
                if script.text != "/dev/stdin" {
                    return Ok(Effects::default()); // a script file: not inspected
                }
            }
        }
        self.stdin_reader = Some(None);
        self.program_from_stdin(stdin, true)
    }

    fn check_interpreter(
        &mut self,
        name: &str,
        rest: &[Arg],
        stdin: &Stdin,
    ) -> Result<Effects, Denial> {
        let base = interpreter_base(name).to_ascii_lowercase();
        // `deno eval CODE`
        if base == "deno" {
            if let Some(pos) = rest.iter().position(|a| a.text == "eval") {
                if let Some(code) = rest.get(pos + 1) {
                    return self.check_inline_code(name, crate::inline::Lang::Node, code);
                }
            }
        }
        let code_flags: &[&str] = match base.as_str() {
            "python" | "pypy" => &["-c", "-m"],
            "perl" => &["-e", "-E"],
            "ruby" | "irb" => &["-e"],
            "node" | "nodejs" | "bun" | "deno" => &["-e", "--eval", "-p", "--print"],
            "php" => &["-r"],
            "lua" | "luajit" => &["-e"],
            "rscript" => &["-e"],
            "osascript" => &["-e"],
            "pwsh" => &["-c", "-command", "-Command"],
            _ => &[],
        };
        let value_opts: &[&str] = &[
            "-W",
            "-X",
            "-I",
            "-r",
            "--require",
            "-x",
            "-i",
            "-M",
            "-l",
            "--input-type",
            "-f",
        ];
        let mut i = 0;
        while let Some(a) = rest.get(i) {
            let t = a.text.as_str();
            if a.leading_dynamic {
                if a.from_download {
                    return Err(Denial::new(
                        "pipe-to-shell",
                        format!("{name} runs a downloaded program"),
                    ));
                }
                return Ok(Effects::default());
            }
            if t == "-" {
                break; // the program is read from stdin: checked below
            }
            if t == "--" {
                i += 1;
                break;
            }
            if !t.starts_with('-') || t.len() < 2 {
                break;
            }
            let flag = t.split('=').next().unwrap_or(t);
            let short2 = t.get(..2).unwrap_or(t);
            if code_flags.contains(&flag) || (!t.starts_with("--") && code_flags.contains(&short2))
            {
                let attached = if t.contains('=') && t.starts_with("--") {
                    true
                } else {
                    !t.starts_with("--") && t.len() > 2
                };
                let code = if attached { Some(a) } else { rest.get(i + 1) };
                if code.is_some_and(|c| c.from_download) {
                    return Err(Denial::new(
                        "pipe-to-shell",
                        format!("{name} runs downloaded code"),
                    ));
                }
                if let (Some(lang), Some(c)) = (crate::inline::Lang::of(&base), code) {
                    if flag != "-m" {
                        let c = if attached {
                            let t = c
                                .text
                                .split_once('=')
                                .filter(|_| c.text.starts_with("--"))
                                .map_or(&c.text[2..], |(_, v)| v);
                            Arg {
                                text: t.to_owned(),
                                ..c.clone()
                            }
                        } else {
                            c.clone()
                        };
                        return self.check_inline_code(name, lang, &c);
                    }
                }
                return Ok(Effects::default());
            }
            if value_opts.contains(&t) {
                i += 1;
            }
            i += 1;
        }
        // A here-document / here-string program: scan it like -c code.
        let reads_stdin = match rest.get(i) {
            None => true,
            Some(s) => s.text == "-" || s.text == "/dev/stdin",
        };
        if let (
            true,
            Some(lang),
            Stdin::Doc {
                text: Some(t),
                from_download: false,
            },
        ) = (reads_stdin, crate::inline::Lang::of(&base), stdin)
        {
            let t = t.clone();
            self.check_program_text(name, lang, &t)?;
        }
        match rest.get(i) {
            Some(script) if script.from_download => Err(Denial::new(
                "pipe-to-shell",
                format!("{name} runs a downloaded program"),
            )),
            Some(script) if script.text == "/dev/stdin" || script.text == "-" => {
                self.stdin_reader = crate::inline::Lang::of(&base).map(Some);
                self.program_from_stdin(stdin, false)
            }
            Some(_) => Ok(Effects::default()),
            None => {
                self.stdin_reader = crate::inline::Lang::of(&base).map(Some);
                self.program_from_stdin(stdin, false)
            }
        }
    }

    /// The interpreter reads its program from stdin.
    fn program_from_stdin(&mut self, stdin: &Stdin, is_shell: bool) -> Result<Effects, Denial> {
        match stdin {
            Stdin::Inherited => Ok(Effects {
                stdin_interpreter: true,
                ..Effects::default()
            }),
            Stdin::Closed => Ok(Effects::default()),
            Stdin::File { from_download } => {
                if *from_download {
                    Err(Denial::new(
                        "pipe-to-shell",
                        "an interpreter reads a download on stdin (sh < <(curl …))",
                    ))
                } else {
                    Ok(Effects::default())
                }
            }
            Stdin::Doc {
                text,
                from_download,
            } => {
                if *from_download {
                    return Err(Denial::new(
                        "pipe-to-shell",
                        "an interpreter is fed a download as a here-document",
                    ));
                }
                if !is_shell {
                    return Ok(Effects::default());
                }
                match text {
                    Some(t) => {
                        let t = t.clone();
                        self.check_nested(&t, true)
                    }
                    None => Err(Denial::new(
                        "dynamic-code",
                        "a shell is fed a here-document whose text is known only at run time",
                    )),
                }
            }
        }
    }

    // ----- rm -------------------------------------------------------------

    fn check_rm(&mut self, rest: &[Arg]) -> Result<(), Denial> {
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

    /// `mv` that takes the repository, the workspace, the home directory or
    /// the root away from its place (`mv .git /tmp/x`, `mv /workspace …`).
    fn check_mv(&self, rest: &[Arg]) -> Result<(), Denial> {
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
        let sources = if target_dir { &pos[..] } else { &pos[..pos.len().saturating_sub(1)] };
        let cwd = self.state.cwd.as_deref();
        for a in sources.iter().filter(|a| !a.dynamic) {
            let Some(p) = crate::paths::resolve(cwd, &a.text) else { continue };
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

    // ----- find -----------------------------------------------------------

    fn check_find(&mut self, rest: &[Arg]) -> Result<(), Denial> {
        let mut i = 0;
        // Leading options -H -L -P -D debugopts -Olevel.
        while let Some(a) = rest.get(i) {
            match a.text.as_str() {
                "-H" | "-L" | "-P" => i += 1,
                "-D" => i += 2,
                t if t.starts_with("-O") => i += 1,
                _ => break,
            }
        }
        let mut starts: Vec<&Arg> = Vec::new();
        while let Some(a) = rest.get(i) {
            let t = a.text.as_str();
            if (t.starts_with('-') && !a.leading_dynamic) || t == "(" || t == "!" || t == "," {
                break;
            }
            starts.push(a);
            i += 1;
        }
        let dot = Arg::lit(".");
        if starts.is_empty() {
            starts.push(&dot);
        }
        const FILTERS: &[&str] = &[
            "-name",
            "-iname",
            "-path",
            "-ipath",
            "-wholename",
            "-iwholename",
            "-regex",
            "-iregex",
            "-empty",
            "-newer",
            "-mtime",
            "-mmin",
            "-atime",
            "-amin",
            "-ctime",
            "-cmin",
            "-size",
            "-lname",
            "-ilname",
            "-user",
            "-group",
            "-perm",
            "-links",
            "-inum",
            "-samefile",
        ];
        let mut deleting = false;
        let mut filtered = false;
        let mut git_named = false;
        let mut execs: Vec<Vec<Arg>> = Vec::new();
        while let Some(a) = rest.get(i) {
            let t = a.text.as_str();
            if a.dynamic && a.leading_dynamic {
                return Err(Denial::new(
                    "dynamic-argument",
                    "find expression known only at run time",
                ));
            }
            match t {
                "-delete" => deleting = true,
                "-exec" | "-execdir" | "-ok" | "-okdir" => {
                    let mut cmd = Vec::new();
                    i += 1;
                    while let Some(c) = rest.get(i) {
                        if c.text == ";" || c.text == "+" {
                            break;
                        }
                        cmd.push(c.clone());
                        i += 1;
                    }
                    execs.push(cmd);
                }
                "-name" | "-iname" | "-path" | "-ipath" | "-wholename" | "-iwholename"
                | "-regex" | "-iregex" => {
                    filtered = true;
                    if let Some(v) = rest.get(i + 1) {
                        // A filter that can select repository metadata: the
                        // matches are what gets deleted.
                        let last = v
                            .text
                            .trim_end_matches("/*")
                            .rsplit('/')
                            .next()
                            .unwrap_or("");
                        let git = if t.ends_with("regex") {
                            v.text.contains("\\.git") || v.text.contains(".git")
                        } else if t.ends_with("name") {
                            paths::glob_match(&v.text, ".git")
                        } else {
                            paths::glob_match(last, ".git") || v.text.contains("/.git/")
                        };
                        // `-path ./.git -prune`, `-not -path './.git/*'`,
                        // `! -name .git`: the filter excludes .git.
                        let excludes = (rest.get(i + 2).is_some_and(|n| n.text == "-prune")
                            && rest
                                .get(i + 3)
                                .is_some_and(|n| n.text == "-o" || n.text == "-or"))
                            || i.checked_sub(1)
                                .and_then(|p| rest.get(p))
                                .is_some_and(|p| p.text == "-not" || p.text == "!");
                        if (git || v.dynamic) && !excludes {
                            git_named = true;
                        }
                    }
                }
                _ if FILTERS.contains(&t) || t.starts_with("-newer") => filtered = true,
                _ => {}
            }
            i += 1;
        }
        for cmd in &execs {
            if let Some(first) = cmd.first() {
                let inner = unwrap_simple_wrappers(cmd);
                let n = inner.first().map(|a| command_name(&a.text)).unwrap_or("");
                if matches!(n, "rm" | "unlink" | "shred" | "rmdir") || first.dynamic {
                    deleting = true;
                }
            }
        }
        if deleting {
            for s in &starts {
                self.check_find_start(s, filtered)?;
            }
            if git_named {
                return Err(Denial::new(
                    "find-delete",
                    "find deletes what a -name/-path filter selects, and the filter matches .git",
                ));
            }
        }
        // Check what -exec runs, with `{}` standing for a file under each start.
        for cmd in &execs {
            for s in &starts {
                let found = if s.dynamic {
                    Arg::unknown(false, false)
                } else {
                    Arg::lit(&format!("{}/{}", s.text.trim_end_matches('/'), "__found__"))
                };
                let argv: Vec<Arg> = cmd
                    .iter()
                    .map(|a| {
                        if a.text.contains("{}") {
                            found.clone()
                        } else {
                            a.clone()
                        }
                    })
                    .collect();
                let reads = argv
                    .first()
                    .is_some_and(|a| !NON_READING.contains(&command_name(&a.text)));
                if reads {
                    // find walks the tree: the command sees every file under it.
                    self.check_secret_path(s, true, &format!("find -exec {}", argv[0].text))?;
                }
                self.check_argv(&argv, &Stdin::Closed)?;
            }
        }
        Ok(())
    }

    fn check_find_start(&self, s: &Arg, filtered: bool) -> Result<(), Denial> {
        if s.dynamic {
            return Err(Denial::new(
                "find-delete",
                format!(
                    "find deletes under `{}`, which depends on a variable",
                    show(s)
                ),
            ));
        }
        let Some(p) = paths::resolve(self.state.cwd.as_deref(), &s.text) else {
            return Err(Denial::new(
                "find-delete",
                "find deletes under a relative path after `cd` to an unknown directory",
            ));
        };
        let ws = &self.workspace;
        if !paths::within(&p, ws) {
            return Err(Denial::new(
                "find-delete",
                format!("find deletes under {p}, outside the workspace {ws}"),
            ));
        }
        if paths::components(&p[ws.len()..]).contains(&".git") {
            return Err(Denial::new("find-delete", "find deletes inside .git"));
        }
        if &p == ws && !filtered {
            return Err(Denial::new(
                "find-delete",
                "find deletes everything under the workspace root (no -name/-path filter)",
            ));
        }
        Ok(())
    }

    // ----- chmod / chown --------------------------------------------------

    fn check_chmod(&mut self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
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

    // ----- raw devices ----------------------------------------------------

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

    fn check_device_command(&mut self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
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

    // ----- secrets --------------------------------------------------------

    fn check_secret_args(&self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
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

/// Strip the simplest wrappers (for classifying `find -exec` commands).
fn unwrap_simple_wrappers(cmd: &[Arg]) -> &[Arg] {
    let mut c = cmd;
    while let Some(first) = c.first() {
        let n = command_name(&first.text);
        if matches!(
            n,
            "sudo" | "command" | "nice" | "nohup" | "env" | "exec" | "doas"
        ) {
            c = &c[1..];
            while c
                .first()
                .is_some_and(|a| a.text.starts_with('-') || a.text.contains('='))
            {
                c = &c[1..];
            }
        } else {
            break;
        }
    }
    c
}

/// Split a glob path into the literal directory before the first glob
/// component and the rest (`build/*/x` → (`build`, `*/x`)).
fn split_glob(raw: &str) -> (String, Option<String>) {
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

/// A word for messages, with unknown parts shown as `…`.
pub(crate) fn show(a: &Arg) -> String {
    a.text.replace(DYN, "…")
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

    #[test]
    fn interpreter_names() {
        assert_eq!(interpreter_base("python3.11"), "python");
        assert_eq!(interpreter_base("perl5.36"), "perl");
        assert_eq!(interpreter_base("node"), "node");
    }
}
