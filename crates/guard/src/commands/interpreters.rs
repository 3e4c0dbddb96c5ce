//! Code run by shells and interpreters: `sh -c` bodies, `eval`, code
//! arguments of wrappers, `python -c`/`node -e` programs, programs read
//! from stdin or here-documents, and scripts written earlier in the line.

use super::command_name;
use crate::inline::Lang;
use crate::shell::{Checker, Effects, Stdin};
use crate::words::Arg;
use crate::Denial;

/// Shells: `-c` bodies and here-documents are parsed as shell code.
pub(crate) const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish", "yash", "posh", "csh", "tcsh",
    "rbash", "hush",
];

/// Other interpreters: their code is not inspected, but feeding them a
/// download is denied.
pub(super) const INTERPRETERS: &[&str] = &[
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

/// Normalise interpreter names: `python3.11` → `python`, `perl5.36` → `perl`.
pub(super) fn interpreter_base(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
}

/// Interpreter options that take a value (`-W error`, `-I dir`, `-r mod`).
const INTERPRETER_VALUE_OPTS: &[&str] = &[
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

/// The options whose value is the program, for the interpreter `base`.
fn code_flags(base: &str) -> &'static [&'static str] {
    match base {
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
    }
}

impl Checker<'_> {
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

    /// `alias name=BODY`: the body runs as shell code wherever the alias is used.
    pub(super) fn check_alias(&mut self, rest: &[Arg]) -> Result<Effects, Denial> {
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
        Ok(Effects::default())
    }

    /// `trap CODE SIGNAL…`: CODE runs as shell code when a signal comes.
    pub(super) fn check_trap(&mut self, rest: &[Arg]) -> Result<Effects, Denial> {
        if let Some(code) = rest.iter().find(|a| !a.text.starts_with('-') || a.dynamic) {
            self.check_code_arg(code, "trap")?;
        }
        Ok(Effects::default())
    }

    /// `eval ARGS`: the joined arguments run as code in the current shell.
    pub(super) fn check_eval(&mut self, rest: &[Arg]) -> Result<Effects, Denial> {
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

    /// `sh`, `bash` …: the `-c` body, a downloaded script, or the program the
    /// shell reads from stdin (`-s`, `-`, `/dev/stdin`, no script).
    pub(super) fn check_shell(&mut self, rest: &[Arg], stdin: &Stdin) -> Result<Effects, Denial> {
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

    /// `python`, `node`, `perl` …: code given with `-c`/`-e` and programs
    /// read from stdin are scanned; downloaded programs are refused.
    pub(super) fn check_interpreter(
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
                    return self.check_inline_code(name, Lang::Node, code);
                }
            }
        }
        let code_flags = code_flags(&base);
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
                return self.check_interpreter_code(name, &base, rest, i);
            }
            if INTERPRETER_VALUE_OPTS.contains(&t) {
                i += 1;
            }
            i += 1;
        }
        self.check_interpreter_program(name, &base, rest.get(i), stdin)
    }

    /// The code option at `rest[i]` (`-c CODE`, `-eCODE`, `--eval=CODE`)
    /// gives the program: scan it (a `-m` module name is not code).
    fn check_interpreter_code(
        &mut self,
        name: &str,
        base: &str,
        rest: &[Arg],
        i: usize,
    ) -> Result<Effects, Denial> {
        let a = &rest[i];
        let t = a.text.as_str();
        let flag = t.split('=').next().unwrap_or(t);
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
        if let (Some(lang), Some(c)) = (Lang::of(base), code) {
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
        Ok(Effects::default())
    }

    /// No code option: the interpreter runs `script` (its first operand), or
    /// reads its program from stdin when there is none or it is `-` or
    /// `/dev/stdin`.
    fn check_interpreter_program(
        &mut self,
        name: &str,
        base: &str,
        script: Option<&Arg>,
        stdin: &Stdin,
    ) -> Result<Effects, Denial> {
        // A here-document / here-string program: scan it like -c code.
        let reads_stdin = match script {
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
        ) = (reads_stdin, Lang::of(base), stdin)
        {
            let t = t.clone();
            self.check_program_text(name, lang, &t)?;
        }
        match script {
            Some(script) if script.from_download => Err(Denial::new(
                "pipe-to-shell",
                format!("{name} runs a downloaded program"),
            )),
            Some(script) if script.text == "/dev/stdin" || script.text == "-" => {
                self.stdin_reader = Lang::of(base).map(Some);
                self.program_from_stdin(stdin, false)
            }
            Some(_) => Ok(Effects::default()),
            None => {
                self.stdin_reader = Lang::of(base).map(Some);
                self.program_from_stdin(stdin, false)
            }
        }
    }

    /// The interpreter reads its program from stdin.
    pub(super) fn program_from_stdin(
        &mut self,
        stdin: &Stdin,
        is_shell: bool,
    ) -> Result<Effects, Denial> {
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

    /// `sh f`, `bash f`, `python f`, `source f`, `./f` where `f` was written
    /// earlier in the same line: check what was written.
    pub(super) fn check_written_run(&mut self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        if self.state.written.is_empty() {
            return Ok(());
        }
        let base = interpreter_base(name).to_ascii_lowercase();
        let lang = Lang::of(&base);
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
                .and_then(|w| Lang::of(&interpreter_base(command_name(w)).to_ascii_lowercase()))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_names() {
        assert_eq!(interpreter_base("python3.11"), "python");
        assert_eq!(interpreter_base("perl5.36"), "perl");
        assert_eq!(interpreter_base("node"), "node");
    }
}
