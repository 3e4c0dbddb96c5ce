//! `find`: `-delete` and `-exec rm` under the workspace only, never on
//! `.git`, and every `-exec` command checked with `{}` as a found file.

use super::{command_name, show, NON_READING};
use crate::paths;
use crate::shell::{Checker, Stdin};
use crate::words::Arg;
use crate::Denial;

impl Checker<'_> {
    /// `find`: what it deletes (`-delete`, `-exec rm`) must lie inside the
    /// workspace and outside `.git`; what `-exec` runs is checked as a command.
    pub(super) fn check_find(&mut self, rest: &[Arg]) -> Result<(), Denial> {
        let (mut starts, i) = start_points(rest);
        let dot = Arg::lit(".");
        if starts.is_empty() {
            starts.push(&dot);
        }
        let expr = scan_expression(rest, i)?;
        if expr.deleting {
            for s in &starts {
                self.check_find_start(s, expr.filtered)?;
            }
            if expr.git_named {
                return Err(Denial::new(
                    "find-delete",
                    "find deletes what a -name/-path filter selects, and the filter matches .git",
                ));
            }
        }
        self.check_find_execs(&starts, &expr.execs)
    }

    /// Check what -exec runs, with `{}` standing for a file under each start.
    fn check_find_execs(&mut self, starts: &[&Arg], execs: &[Vec<Arg>]) -> Result<(), Denial> {
        for cmd in execs {
            for s in starts {
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

    /// A start point under which find deletes: a known path inside the workspace,
    /// outside `.git`, and not the workspace root without a filter.
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

/// Tests that narrow what find selects (a `-delete` without one takes
/// everything under the start).
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

/// A find expression, as far as the rules need it.
#[derive(Default)]
struct Expression {
    /// `-delete`, or an `-exec` of rm/unlink/shred/rmdir or of an unknown command.
    deleting: bool,
    /// A test narrows what is selected (`-name`, `-path`, `-mtime` …).
    filtered: bool,
    /// A name or path filter can select `.git` (and does not exclude it).
    git_named: bool,
    /// The commands of `-exec`/`-execdir`/`-ok`/`-okdir`, without `;`/`+`.
    execs: Vec<Vec<Arg>>,
}

/// The starting points after find's leading options (`-H -L -P -D debugopts
/// -Olevel`), and the index where the expression begins.
fn start_points(rest: &[Arg]) -> (Vec<&Arg>, usize) {
    let mut i = 0;
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
    (starts, i)
}

/// Read the expression from `rest[i]` on.
fn scan_expression(rest: &[Arg], mut i: usize) -> Result<Expression, Denial> {
    let mut e = Expression::default();
    while let Some(a) = rest.get(i) {
        let t = a.text.as_str();
        if a.dynamic && a.leading_dynamic {
            return Err(Denial::new(
                "dynamic-argument",
                "find expression known only at run time",
            ));
        }
        match t {
            "-delete" => e.deleting = true,
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
                e.execs.push(cmd);
            }
            "-name" | "-iname" | "-path" | "-ipath" | "-wholename" | "-iwholename" | "-regex"
            | "-iregex" => {
                e.filtered = true;
                if filter_selects_git(rest, i) {
                    e.git_named = true;
                }
            }
            _ if FILTERS.contains(&t) || t.starts_with("-newer") => e.filtered = true,
            _ => {}
        }
        i += 1;
    }
    for cmd in &e.execs {
        if let Some(first) = cmd.first() {
            let inner = unwrap_simple_wrappers(cmd);
            let n = inner.first().map(|a| command_name(&a.text)).unwrap_or("");
            if matches!(n, "rm" | "unlink" | "shred" | "rmdir") || first.dynamic {
                e.deleting = true;
            }
        }
    }
    Ok(e)
}

/// Whether the name or path filter at `rest[i]` can select repository
/// metadata (the matches are what gets deleted), and does not exclude it.
fn filter_selects_git(rest: &[Arg], i: usize) -> bool {
    let t = rest[i].text.as_str();
    let Some(v) = rest.get(i + 1) else {
        return false;
    };
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
    (git || v.dynamic) && !excludes
}
