//! Inline interpreter code (`python -c`, `node -e`, `perl -e`, `ruby -e`)
//! and scripts written in the same line.
//!
//! Not a parser of those languages: a small tokenizer splits the code into
//! identifiers (with `.` and `::` kept, `shutil.rmtree`), string literals
//! (`'…'`, `"…"`, perl/ruby/js backticks, ruby `%x(…)`, perl `qx{…}`, with
//! simple backslash escapes), and punctuation. A call is a known name
//! followed by `(` or, for perl/ruby, directly by a string. What it
//! recognises:
//!
//! * deletes — python `shutil.rmtree`, `os.remove`/`unlink`/`rmdir`/
//!   `removedirs`, `Path(...).unlink/rmdir`; node `fs.rmSync`/`rmdirSync`/
//!   `unlinkSync`/`rm`/`rmdir`/`unlink`, `rimraf`; perl `unlink`, `rmtree`,
//!   `remove_tree`, `rmdir`; ruby `FileUtils.rm_rf`/`rm_r`/`rm`/
//!   `remove_dir`/`remove_entry`, `File.delete`/`unlink`, `Dir.rmdir`:
//!   the first string argument is judged like an `rm -r` target (root,
//!   home, outside the workspace, `.git`); a target that is no literal is
//!   denied (it cannot be checked);
//! * commands — python `os.system`/`os.popen`/`os.exec*`/`os.spawn*`/
//!   `subprocess.*`/`pty.spawn`; node `child_process` `exec`/`execSync`/
//!   `spawn`/`spawnSync`/`execFile*`; perl `system`/`exec`/backticks/`qx`;
//!   ruby `system`/`exec`/`spawn`/backticks/`%x`/`IO.popen`/`Open3.*`:
//!   string arguments are joined with spaces and checked by the guard as a
//!   shell command line; a command that is no literal is `dynamic-code`;
//! * every string literal is also checked as a credential path (`open('.env')`).

use crate::classes::is_secret_var;
use crate::shell::{Checker, Effects};
use crate::words::Arg;
use crate::Denial;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// A backtick / `qx` / `%x` string: a shell command.
    Cmd(String),
    Punct(char),
}

/// Interpreter families with inline code checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Lang {
    Python,
    Node,
    Perl,
    Ruby,
}

impl Lang {
    pub(crate) fn of(base: &str) -> Option<Lang> {
        match base {
            "python" | "pypy" => Some(Lang::Python),
            "node" | "nodejs" | "bun" | "deno" => Some(Lang::Node),
            // php, lua and R: their calls (`system`, `shell_exec`, `os.execute`,
            // `unlink`) are read with perl's rules.
            "perl" | "php" | "lua" | "luajit" | "rscript" => Some(Lang::Perl),
            "ruby" | "irb" => Some(Lang::Ruby),
            _ => None,
        }
    }
}

fn closing(c: char) -> char {
    match c {
        '(' => ')',
        '{' => '}',
        '[' => ']',
        '<' => '>',
        o => o,
    }
}

fn tokenize(code: &str, lang: Lang) -> Vec<Tok> {
    let cs: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let read_str = |i: &mut usize, close: char, open: Option<char>| -> String {
        let mut s = String::new();
        let mut depth = 0usize;
        while *i < cs.len() {
            let c = cs[*i];
            *i += 1;
            if c == '\\' && *i < cs.len() {
                let n = cs[*i];
                *i += 1;
                s.push(match n {
                    'n' => '\n',
                    't' => '\t',
                    o => o,
                });
                continue;
            }
            if Some(c) == open && open != Some(close) {
                depth += 1;
            } else if c == close {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            s.push(c);
        }
        s
    };
    while i < cs.len() {
        let c = cs[i];
        if c == '#' && matches!(lang, Lang::Python | Lang::Perl | Lang::Ruby) {
            // A comment (perl `$#a` is rare in one-liners).
            while i < cs.len() && cs[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' || c == '$' || c == '@' {
            let start = i;
            while i < cs.len()
                && (cs[i].is_alphanumeric()
                    || matches!(cs[i], '_' | '$' | '@' | '.')
                    || (cs[i] == ':' && cs.get(i + 1) == Some(&':')))
            {
                if cs[i] == ':' {
                    i += 1;
                }
                i += 1;
            }
            let w: String = cs[start..i].iter().collect();
            // python string prefixes: r'…', b"…", f'…'
            if lang == Lang::Python
                && i < cs.len()
                && matches!(cs[i], '\'' | '"')
                && w.len() <= 2
                && w.chars().all(|c| "rRbBfFuU".contains(c))
            {
                continue;
            }
            // perl qx{…} / q{…} / qq{…}, ruby %x(…)
            if matches!(lang, Lang::Perl) && matches!(w.as_str(), "qx" | "q" | "qq" | "qw") {
                if let Some(&o) = cs.get(i) {
                    if "{([</|!'\"".contains(o) {
                        i += 1;
                        let s = read_str(&mut i, closing(o), Some(o));
                        out.push(if w == "qx" { Tok::Cmd(s) } else { Tok::Str(s) });
                        continue;
                    }
                }
            }
            out.push(Tok::Ident(w));
            continue;
        }
        if c == '%' && lang == Lang::Ruby && cs.get(i + 1) == Some(&'x') {
            if let Some(&o) = cs.get(i + 2) {
                if "{([<|!".contains(o) {
                    i += 3;
                    let s = read_str(&mut i, closing(o), Some(o));
                    out.push(Tok::Cmd(s));
                    continue;
                }
            }
        }
        if c == '\'' || c == '"' || c == '`' {
            i += 1;
            let s = read_str(&mut i, c, None);
            if c == '`' && lang != Lang::Node && lang != Lang::Python {
                out.push(Tok::Cmd(s));
            } else {
                out.push(Tok::Str(s));
            }
            continue;
        }
        if !c.is_whitespace() {
            out.push(Tok::Punct(c));
        }
        i += 1;
    }
    out
}

/// The last segment of a dotted name: `shutil.rmtree` → `rmtree`.
fn last(name: &str) -> &str {
    name.rsplit(['.', ':']).next().unwrap_or(name)
}

fn is_delete_call(lang: Lang, name: &str) -> bool {
    let l = last(name);
    match lang {
        Lang::Python => {
            matches!(l, "rmtree" | "remove" | "unlink" | "rmdir" | "removedirs")
                && (name.contains("os.")
                    || name.contains("shutil")
                    || name == "rmtree"
                    || name.starts_with('.')
                    || name.contains(").")
                    || name.contains("Path")
                    || name.contains("path.")
                    // a method on any object: `p.unlink()`, `d.rmdir()`
                    || (name.contains('.') && matches!(l, "unlink" | "rmdir")))
        }
        Lang::Node => {
            matches!(
                l,
                "rmSync"
                    | "rmdirSync"
                    | "unlinkSync"
                    | "rimraf"
                    | "rimrafSync"
                    | "removeSync"
                    | "emptyDirSync"
            ) || (matches!(l, "rm" | "rmdir" | "unlink" | "remove") && name.contains('.'))
        }
        Lang::Perl => {
            matches!(l, "unlink" | "rmtree" | "remove_tree" | "rmdir")
                || (l == "remove" && (name.starts_with("os.") || name.starts_with("file.")))
        }
        Lang::Ruby => {
            matches!(
                l,
                "rm_rf"
                    | "rm_r"
                    | "rm"
                    | "remove_dir"
                    | "remove_entry"
                    | "remove_entry_secure"
                    | "rmtree"
                    | "rm_f"
            ) || (matches!(l, "delete" | "unlink" | "rmdir")
                && (name.starts_with("File")
                    || name.starts_with("Dir")
                    || name.starts_with("Pathname")))
        }
    }
}

fn is_exec_call(lang: Lang, name: &str) -> bool {
    let l = last(name);
    match lang {
        Lang::Python => {
            // Any module alias (`import os as o; o.system(…)`).
            matches!(
                l,
                "system"
                    | "popen"
                    | "Popen"
                    | "check_output"
                    | "check_call"
                    | "getoutput"
                    | "getstatusoutput"
                    | "posix_spawn"
                    | "posix_spawnp"
            ) || ["execv", "execl", "spawnv", "spawnl"]
                .iter()
                .any(|p| l.starts_with(p))
                || (name.starts_with("os.")
                    && (matches!(l, "system" | "popen")
                        || l.starts_with("exec")
                        || l.starts_with("spawn")
                        || l.starts_with("posix_spawn")))
                || (name.starts_with("subprocess.")
                    && matches!(
                        l,
                        "run"
                            | "call"
                            | "check_call"
                            | "check_output"
                            | "Popen"
                            | "getoutput"
                            | "getstatusoutput"
                    ))
                || matches!(
                    name,
                    "system" | "Popen" | "check_call" | "check_output" | "pty.spawn" | "getoutput"
                )
        }
        Lang::Node => {
            matches!(
                l,
                "exec" | "execSync" | "spawn" | "spawnSync" | "execFile" | "execFileSync" | "fork"
            ) && !name.starts_with("RegExp")
                && !name.ends_with("re.exec")
                && !name.contains("/")
        }
        Lang::Perl => {
            matches!(
                l,
                "system" | "exec" | "shell_exec" | "passthru" | "proc_open" | "popen" | "system2"
            ) || (l == "execute" && name.starts_with("os."))
        }
        Lang::Ruby => matches!(
            l,
            "system"
                | "exec"
                | "spawn"
                | "popen"
                | "popen3"
                | "capture2"
                | "capture2e"
                | "capture3"
                | "pipeline"
        ),
    }
}

/// The arguments of a call starting at `toks[i]` (just after the name):
/// the string literals, and whether anything else appears before the first.
fn call_args(toks: &[Tok], i: usize, lang: Lang) -> Option<(Vec<String>, bool)> {
    let mut j = i;
    let paren = matches!(toks.get(j), Some(Tok::Punct('(')));
    if paren {
        j += 1;
    } else if !matches!(lang, Lang::Perl | Lang::Ruby)
        || !matches!(
            toks.get(j),
            Some(Tok::Str(_) | Tok::Ident(_) | Tok::Punct('['))
        )
    {
        return None;
    }
    let mut strs: Vec<String> = Vec::new();
    let mut nonliteral_first = false;
    let mut depth = 0i32;
    let mut first = true;
    while let Some(t) = toks.get(j) {
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            Tok::Punct(';') if depth == 0 => break,
            Tok::Punct(',') if depth == 0 && !paren => {}
            Tok::Str(s) | Tok::Cmd(s) => {
                // `"r" + "m -rf /"`, perl `"r" . "m"`: one string.
                let joined = j >= 2
                    && matches!(toks.get(j - 1), Some(Tok::Punct('+' | '.')))
                    && matches!(toks.get(j - 2), Some(Tok::Str(_) | Tok::Cmd(_)));
                match strs.last_mut() {
                    Some(prev) if joined => prev.push_str(s),
                    // `' '.join([…])`: the separator is no argument.
                    _ if s.trim().is_empty() => {}
                    _ => strs.push(s.clone()),
                }
                first = false;
            }
            Tok::Ident(w) => {
                if first && !strs.is_empty() {
                    // nothing
                } else if first && !matches!(w.as_str(), "shell" | "True" | "true") {
                    // a keyword argument name (`cwd=`) after the command is fine.
                    nonliteral_first = true;
                    first = false;
                }
                if !paren && depth == 0 && strs.is_empty() && !nonliteral_first {
                    break;
                }
                if !paren && matches!(w.as_str(), "if" | "unless" | "or" | "and") && depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        j += 1;
    }
    Some((strs, nonliteral_first))
}

impl Checker<'_> {
    /// Check inline code of `lang` passed with `-c`/`-e`.
    pub(crate) fn check_inline_code(
        &mut self,
        interp: &str,
        lang: Lang,
        code: &Arg,
    ) -> Result<Effects, Denial> {
        if code.dynamic {
            // `python -c "$CODE"`: nothing to check but the literal part.
            return Ok(Effects::default());
        }
        self.check_program_text(interp, lang, &code.text)
    }

    pub(crate) fn check_program_text(
        &mut self,
        interp: &str,
        lang: Lang,
        code: &str,
    ) -> Result<Effects, Denial> {
        let toks = tokenize(code, lang);
        let aliases = match lang {
            Lang::Python => python_aliases(&toks),
            Lang::Node => node_aliases(&toks),
            _ => Vec::new(),
        };
        self.check_code_secrets(interp, lang, code, &toks)?;
        // Code that walks a whole tree (`os.walk`, `rglob('*')`,
        // `glob('**', recursive=True)`) and deletes what it finds without
        // picking by name deletes the tree, whatever each call names.
        let walks = matches!(lang, Lang::Python | Lang::Ruby) && walks_whole_tree(&toks);
        for (i, t) in toks.iter().enumerate() {
            match t {
                Tok::Cmd(s) => self.check_embedded(interp, s)?,
                Tok::Str(s) => {
                    if s.len() < 4096 && !s.contains('\n') {
                        let a = Arg::lit(s);
                        let how = format!("{interp} code");
                        self.check_secret_path(&a, false, &how)?;
                        self.check_dotenv_read(&a, &how)?;
                    }
                }
                Tok::Ident(name) => {
                    let resolved = resolve_alias(&aliases, name);
                    let name = &resolved;
                    if lang == Lang::Python {
                        self.check_python_dynamic(interp, name, &toks, i)?;
                    }
                    let deletes = is_delete_call(lang, name);
                    let execs = !deletes && is_exec_call(lang, name);
                    if !deletes && !execs {
                        continue;
                    }
                    // `exec` in perl/ruby/python without a call shape is a keyword.
                    let Some((strs, nonlit)) = call_args(&toks, i + 1, lang) else {
                        continue;
                    };
                    if deletes {
                        if walks && (nonlit || strs.is_empty()) {
                            return Err(Denial::new(
                                "interpreter-delete",
                                format!(
                                    "{interp} code deletes with `{name}` every path a walk of the tree finds"
                                ),
                            ));
                        }
                        self.check_code_delete(interp, name, &strs, nonlit)?;
                    } else if nonlit || strs.is_empty() {
                        if lang == Lang::Perl && name == "exec" && strs.is_empty() {
                            continue;
                        }
                        return Err(Denial::new(
                            "dynamic-code",
                            format!("{interp} code runs a command built at run time with `{name}`"),
                        ));
                    } else {
                        // os.execvp(file, [argv0, …]): the file repeats as argv0.
                        let l = last(name);
                        let skip = usize::from(
                            lang == Lang::Python
                                && (l.starts_with("exec") || l.starts_with("spawn"))
                                && strs.len() > 1,
                        );
                        let strs = &strs[skip..];
                        let cmd = strs
                            .iter()
                            .map(|s| {
                                if strs.len() > 1 && s.contains([' ', '\'', '"', ';', '|', '&']) {
                                    format!("'{}'", s.replace('\'', "'\\''"))
                                } else {
                                    s.clone()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(" ");
                        self.check_embedded(interp, &cmd)?;
                    }
                }
                Tok::Punct(_) => {}
            }
        }
        Ok(Effects::default())
    }

    /// A shell command embedded in interpreter code, fed back through the guard.
    fn check_embedded(&mut self, interp: &str, cmd: &str) -> Result<(), Denial> {
        self.check_nested(cmd, true).map(|_| ()).map_err(|d| {
            if d.rule == "dynamic-code" || d.rule == "parse-error" {
                return d;
            }
            let shown: String = cmd.chars().take(80).collect();
            let reason = format!("{}: {interp} code runs `{shown}` ({})", d.rule, d.reason);
            Denial {
                rule: d.rule,
                reason,
            }
        })
    }

    fn check_code_delete(
        &mut self,
        interp: &str,
        name: &str,
        strs: &[String],
        nonlit: bool,
    ) -> Result<(), Denial> {
        let Some(target) = strs.first().filter(|_| !nonlit) else {
            // A single file removed by a computed name (`os.remove(f)` in a
            // loop over `*.tmp`) is ordinary; a recursive delete of a
            // computed path is `rm -rf $DIR`.
            let recursive = matches!(
                last(name),
                "rmtree"
                    | "rmSync"
                    | "rm"
                    | "rm_rf"
                    | "rm_r"
                    | "remove_tree"
                    | "rimraf"
                    | "rimrafSync"
                    | "removeSync"
                    | "remove_dir"
                    | "remove_entry"
                    | "remove_entry_secure"
                    | "removedirs"
                    | "emptyDirSync"
            );
            if !recursive {
                // Still judge any literal path inside (`unlink glob(".git/…")`).
                for t in strs {
                    self.check_rm_target(&Arg::lit(t)).map_err(|d| {
                        Denial::new(
                            "interpreter-delete",
                            format!("{interp} code `{name}(… \"{t}\" …)`: {}", detail(&d.reason)),
                        )
                    })?;
                }
                return Ok(());
            }
            return Err(Denial::new(
                "interpreter-delete",
                format!("{interp} code deletes with `{name}` a path computed at run time"),
            ));
        };
        let a = Arg::lit(target);
        self.check_rm_target(&a).map_err(|d| {
            Denial::new(
                "interpreter-delete",
                format!(
                    "{interp} code `{name}(\"{target}\")`: {}",
                    detail(&d.reason)
                ),
            )
        })
    }
}

/// Node's `const { execSync: run } = require(...)`: each renamed binding.
fn node_aliases(toks: &[Tok]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for w in toks.windows(3) {
        if let [Tok::Ident(from), Tok::Punct(':'), Tok::Ident(to)] = w {
            if is_exec_call(Lang::Node, from) || is_delete_call(Lang::Node, from) {
                out.push((to.clone(), from.clone()));
            }
        }
    }
    out
}

/// Names whose output a program prints.
fn prints(code: &str) -> bool {
    [
        "print", "console.", "puts", "write", "say", "echo", "log(", "p ", "pp ", "dump", "repr(",
    ]
    .iter()
    .any(|w| code.contains(w))
}

impl Checker<'_> {
    /// Python code run from a string (`exec('…')`, `eval(compile('…'))`) is
    /// checked as python; a function looked up by name (`getattr(os,
    /// 'system')`, `__import__('os').system`) is refused when the name is one
    /// that deletes or runs commands.
    fn check_python_dynamic(
        &mut self,
        interp: &str,
        name: &str,
        toks: &[Tok],
        i: usize,
    ) -> Result<(), Denial> {
        let l = last(name);
        if !matches!(l, "exec" | "eval" | "compile" | "getattr") || name.contains("os.") {
            return Ok(());
        }
        let Some((strs, nonlit)) = call_args(toks, i + 1, Lang::Python) else {
            return Ok(());
        };
        if l == "getattr" {
            if let Some(f) = strs.iter().find(|f| {
                is_exec_call(Lang::Python, f)
                    || is_delete_call(Lang::Python, &format!("os.{f}"))
                    || matches!(f.as_str(), "rmtree" | "call" | "run")
            }) {
                return Err(Denial::new(
                    "dynamic-code",
                    format!(
                        "{interp} code looks up `{f}` by name, so what it runs cannot be checked"
                    ),
                ));
            }
            return Ok(());
        }
        if strs.is_empty() {
            if nonlit && l != "compile" {
                return Err(Denial::new(
                    "dynamic-code",
                    format!("{interp} code runs python built at run time with `{l}`"),
                ));
            }
            return Ok(());
        }
        for s in strs.iter().filter(|s| s.len() < 64 * 1024) {
            self.check_program_text(interp, Lang::Python, s)?;
        }
        Ok(())
    }

    /// A credential variable read by interpreter code that also prints:
    /// `print(os.environ['OPENAI_API_KEY'])`, `console.log(process.env.X_TOKEN)`,
    /// `puts ENV['…']`, `print $ENV{…}`.
    fn check_code_secrets(
        &mut self,
        interp: &str,
        lang: Lang,
        code: &str,
        toks: &[Tok],
    ) -> Result<(), Denial> {
        if !prints(code) {
            return Ok(());
        }
        let _ = lang;
        for (i, t) in toks.iter().enumerate() {
            let var = match t {
                // process.env.GITHUB_TOKEN, ENV.fetch, os.environ.get
                Tok::Ident(n) if n.contains("env.") || n.contains("ENV.") => {
                    let v = last(n);
                    is_secret_var(v).then(|| v.to_owned())
                }
                Tok::Str(s) => {
                    let before = toks[i.saturating_sub(3)..i].iter().any(|b| {
                        matches!(b, Tok::Ident(n) if {
                            let l = last(n);
                            l == "environ" || l == "getenv" || l == "env" || l == "ENV"
                                || n.ends_with("environ.get") || n.ends_with("ENV.fetch")
                                || n.ends_with("env.get") || n == "Sys.getenv" || n == "os.getenv"
                                || n.ends_with("$ENV")
                        })
                    });
                    (before && is_secret_var(s)).then(|| s.clone())
                }
                _ => None,
            };
            if let Some(v) = var {
                return Err(Denial::new(
                    "secret-env",
                    format!("{interp} code prints the variable {v}"),
                ));
            }
        }
        // perl's $ENV{NAME}
        if let Some(pos) = code.find("$ENV{") {
            let v: String = code[pos + 5..].chars().take_while(|c| *c != '}').collect();
            let v = v.trim_matches(|c| c == '\'' || c == '"');
            if is_secret_var(v) {
                return Err(Denial::new(
                    "secret-env",
                    format!("{interp} code prints the variable {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// Whether python code walks a whole tree without picking entries by name:
/// `os.walk`, or `rglob`/`glob`/`iglob` of everything (`*`, `**`, `**/*`),
/// with no `endswith`/`suffix`/`fnmatch`/`match` filter in sight.
fn walks_whole_tree(toks: &[Tok]) -> bool {
    let mut whole = false;
    for (i, t) in toks.iter().enumerate() {
        let Tok::Ident(n) = t else { continue };
        match last(n) {
            "walk" if n.contains("os.") || n == "walk" => whole = true,
            "find" if n.starts_with("Find.") => whole = true,
            "rglob" | "glob" | "iglob" => {
                let pattern = toks.get(i + 2).and_then(|t| match t {
                    Tok::Str(s) => Some(s.as_str()),
                    _ => None,
                });
                let everything = matches!(pattern, Some("*" | "**" | "**/*" | "./**" | "./**/*"));
                let recursive = last(n) == "rglob" || pattern.is_some_and(|p| p.contains("**"));
                if everything && recursive {
                    whole = true;
                }
            }
            "endswith" | "suffix" | "fnmatch" | "match" | "startswith" | "search" | "end_with?"
            | "extname" | "start_with?" => return false,
            _ => {}
        }
    }
    whole
}

/// Python's `import m as a` and `from m import n [as a]`: each alias with
/// the dotted name it stands for.
fn python_aliases(toks: &[Tok]) -> Vec<(String, String)> {
    let ident = |i: usize| match toks.get(i) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match ident(i) {
            Some("import") => {
                // import a [as b], c [as d]
                let mut j = i + 1;
                while let Some(m) = ident(j) {
                    if ident(j + 1) == Some("as") {
                        if let Some(a) = ident(j + 2) {
                            out.push((a.to_owned(), m.to_owned()));
                        }
                        j += 3;
                    } else {
                        j += 1;
                    }
                    if !matches!(toks.get(j), Some(Tok::Punct(','))) {
                        break;
                    }
                    j += 1;
                }
                i = j;
            }
            Some("from") => {
                let (Some(m), Some("import")) = (ident(i + 1), ident(i + 2)) else {
                    i += 1;
                    continue;
                };
                let mut j = i + 3;
                if matches!(toks.get(j), Some(Tok::Punct('('))) {
                    j += 1;
                }
                while let Some(n) = ident(j) {
                    if ident(j + 1) == Some("as") {
                        if let Some(a) = ident(j + 2) {
                            out.push((a.to_owned(), format!("{m}.{n}")));
                        }
                        j += 3;
                    } else {
                        out.push((n.to_owned(), format!("{m}.{n}")));
                        j += 1;
                    }
                    if !matches!(toks.get(j), Some(Tok::Punct(','))) {
                        break;
                    }
                    j += 1;
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

/// `name` with an alias at its head replaced by what it stands for
/// (`sp.call` → `subprocess.call`, `rmtree` → `shutil.rmtree`).
fn resolve_alias(aliases: &[(String, String)], name: &str) -> String {
    let (head, tail) = match name.split_once('.') {
        Some((h, t)) => (h, Some(t)),
        None => (name, None),
    };
    match aliases.iter().rev().find(|(a, _)| a == head) {
        Some((_, full)) => match tail {
            Some(t) => format!("{full}.{t}"),
            None => full.clone(),
        },
        None => name.to_owned(),
    }
}

/// The middle of a denial reason `id: detail; why`.
fn detail(reason: &str) -> &str {
    let r = reason.split_once(": ").map_or(reason, |(_, r)| r);
    r.split_once("; ").map_or(r, |(d, _)| d)
}
