//! The walk over the parsed AST: lists, pipelines (what flows from one
//! stage into the next), compound commands, functions and `[[ … ]]`, down
//! to each simple command.

use brush_parser::ast;

use super::{Checker, Effects, Stdin, MAX_ARGV_DEPTH, MAX_DEPTH};
use crate::words::Arg;
use crate::Denial;

/// Compound commands open at once, summed over nested code.
const MAX_FRAMES: usize = 64;

impl Checker<'_> {
    /// A list of commands (`a; b`, a script, a compound body).
    pub(super) fn check_list(&mut self, list: &ast::CompoundList) -> Result<Effects, Denial> {
        let mut eff = Effects::default();
        for item in &list.0 {
            eff |= self.check_and_or(&item.0)?;
        }
        Ok(eff)
    }

    /// `a && b || c`.
    fn check_and_or(&mut self, l: &ast::AndOrList) -> Result<Effects, Denial> {
        let mut eff = self.check_pipeline(&l.first)?;
        for next in &l.additional {
            let p = match next {
                ast::AndOr::And(p) | ast::AndOr::Or(p) => p,
            };
            eff |= self.check_pipeline(p)?;
        }
        Ok(eff)
    }

    /// A pipeline: each stage, then what flows between them (a download or
    /// decoded text into an interpreter, the environment into a credential filter).
    fn check_pipeline(&mut self, p: &ast::Pipeline) -> Result<Effects, Denial> {
        let n = p.seq.len();
        let mut stages = Vec::with_capacity(n);
        let mut printed: Vec<Option<String>> = Vec::with_capacity(n);
        for (j, cmd) in p.seq.iter().enumerate() {
            // Stages of a real pipeline run in subshells.
            let saved = (n > 1).then(|| self.state.clone());
            self.piped_text = None;
            self.stdin_reader = None;
            let e = self.check_command(cmd)?;
            // Known text piped into a stage that runs its stdin as code
            // (`echo 'rm -rf ~' | sh`) is that code.
            if let (Some(reader), Some(Some(text))) =
                (self.stdin_reader.take(), printed.get(j.wrapping_sub(1)))
            {
                if e.stdin_interpreter {
                    let text = text.clone();
                    match reader {
                        None => self.check_nested(&text, true).map(|_| ())?,
                        Some(lang) => self
                            .check_program_text("the piped program", lang, &text)
                            .map(|_| ())?,
                    }
                }
            }
            printed.push(self.piped_text.take());
            if let Some(mut s) = saved {
                // Files written by a stage exist after the pipeline.
                for (k, v) in std::mem::take(&mut self.state.written) {
                    s.written.insert(k, v);
                }
                self.state = s;
            }
            stages.push(e);
        }
        for j in 1..n {
            if stages[j].stdin_interpreter && stages[..j].iter().any(|e| e.downloads) {
                return Err(Denial::new(
                    "pipe-to-shell",
                    "a download is piped into an interpreter (curl/wget … | sh)",
                ));
            }
            if stages[j].stdin_interpreter && stages[..j].iter().any(|e| e.decodes) {
                return Err(Denial::new(
                    "decode-to-shell",
                    "decoded or transformed text is piped into an interpreter (base64 -d | sh), so the code it runs cannot be checked",
                ));
            }
            if stages[j].secret_filter && stages[..j].iter().any(|e| e.env_dump) {
                return Err(Denial::new(
                    "secret-env",
                    "the environment is searched for credentials (env | grep token)",
                ));
            }
        }
        let mut eff = Effects::default();
        for e in &stages {
            eff.downloads |= e.downloads;
            eff.decodes |= e.decodes;
        }
        eff.stdin_interpreter = stages.first().is_some_and(|e| e.stdin_interpreter);
        Ok(eff)
    }

    /// One command of a pipeline: simple, compound, a function definition or `[[ … ]]`.
    fn check_command(&mut self, cmd: &ast::Command) -> Result<Effects, Denial> {
        match cmd {
            ast::Command::Simple(sc) => self.check_simple(sc),
            ast::Command::Compound(c, redirects) => {
                let mut stdin = Stdin::Inherited;
                if let Some(r) = redirects {
                    for io in &r.0 {
                        self.check_redirect(io, &mut stdin)?;
                    }
                }
                let mut eff = self.check_compound(c)?;
                if !matches!(stdin, Stdin::Inherited) {
                    eff.stdin_interpreter = false;
                }
                Ok(eff)
            }
            ast::Command::Function(f) => {
                let fname = f.fname.value.as_str();
                let body = f.body.0.to_string();
                if calls_itself_in_parallel(fname, &body) {
                    return Err(Denial::new(
                        "fork-bomb",
                        format!(
                            "function `{fname}` calls itself in a pipeline or in the background"
                        ),
                    ));
                }
                // The body may run later under any name: check it now.
                let saved = self.state.clone();
                let r = self.check_compound(&f.body.0);
                self.state = saved;
                r?;
                if let Some(r) = &f.body.1 {
                    let mut stdin = Stdin::Inherited;
                    for io in &r.0 {
                        self.check_redirect(io, &mut stdin)?;
                    }
                }
                Ok(Effects::default())
            }
            ast::Command::ExtendedTest(t, redirects) => {
                self.check_ext_test(&t.expr)?;
                if let Some(r) = redirects {
                    let mut stdin = Stdin::Inherited;
                    for io in &r.0 {
                        self.check_redirect(io, &mut stdin)?;
                    }
                }
                Ok(Effects::default())
            }
        }
    }

    /// `[[ … ]]` (its words may run command substitutions), within the depth budget.
    fn check_ext_test(&mut self, e: &ast::ExtendedTestExpr) -> Result<(), Denial> {
        if self.argv_depth >= MAX_ARGV_DEPTH {
            return Err(Denial::new(
                "too-complex",
                "`[[ … ]]` expression nested too deep",
            ));
        }
        self.argv_depth += 1;
        let r = self.check_ext_test_inner(e);
        self.argv_depth -= 1;
        r
    }

    /// One `[[ … ]]` operator and its operands.
    fn check_ext_test_inner(&mut self, e: &ast::ExtendedTestExpr) -> Result<(), Denial> {
        use ast::ExtendedTestExpr as E;
        match e {
            E::And(a, b) | E::Or(a, b) => {
                self.check_ext_test(a)?;
                self.check_ext_test(b)
            }
            E::Not(a) | E::Parenthesized(a) => self.check_ext_test(a),
            E::UnaryTest(_, w) => self.expand_word(&w.value).map(|_| ()),
            E::BinaryTest(_, a, b) => {
                self.expand_word(&a.value)?;
                self.expand_word(&b.value).map(|_| ())
            }
        }
    }

    /// A compound command, within the budget of open frames.
    fn check_compound(&mut self, c: &ast::CompoundCommand) -> Result<Effects, Denial> {
        if self.frames >= MAX_FRAMES {
            return Err(Denial::new(
                "too-complex",
                format!("compound commands nested more than {MAX_FRAMES} deep"),
            ));
        }
        self.frames += 1;
        let r = self.check_compound_inner(c);
        self.frames -= 1;
        r
    }

    /// `( … )`, `{ …; }`, `if`, `case`, loops, `(( … ))` and coprocesses.
    fn check_compound_inner(&mut self, c: &ast::CompoundCommand) -> Result<Effects, Denial> {
        use ast::CompoundCommand as C;
        match c {
            C::Arithmetic(a) => {
                self.check_arith(&a.expr.value)?;
                // brush reads `( (cmd) )` as `(( … ))`; bash runs it as two
                // nested subshells. Check the text as commands too.
                if self.depth < MAX_DEPTH {
                    if let Ok(program) = self.parse(&a.expr.value) {
                        let saved = self.state.clone();
                        self.depth += 1;
                        let mut r = Ok(Effects::default());
                        for cc in &program.complete_commands {
                            r = self.check_list(cc);
                            if r.is_err() {
                                break;
                            }
                        }
                        self.depth -= 1;
                        self.state = saved;
                        r?;
                    }
                }
                Ok(Effects::default())
            }
            C::ArithmeticForClause(f) => {
                for e in [&f.initializer, &f.condition, &f.updater]
                    .into_iter()
                    .flatten()
                {
                    self.check_arith(&e.value)?;
                }
                self.check_list(&f.body.list)
            }
            C::BraceGroup(b) => self.check_list(&b.list),
            C::Subshell(s) => {
                let saved = self.state.clone();
                let r = self.check_list(&s.list);
                self.state = saved;
                r
            }
            C::ForClause(f) => self.check_for(f),
            C::CaseClause(cc) => {
                self.expand_word(&cc.value.value)?;
                let mut eff = Effects::default();
                for item in &cc.cases {
                    for p in &item.patterns {
                        self.expand_word(&p.value)?;
                    }
                    if let Some(cmd) = &item.cmd {
                        eff |= self.check_list(cmd)?;
                    }
                }
                Ok(eff)
            }
            C::IfClause(i) => {
                let mut eff = self.check_list(&i.condition)?;
                eff |= self.check_list(&i.then)?;
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        eff |= self.check_list(c)?;
                    }
                    eff |= self.check_list(&e.body)?;
                }
                Ok(eff)
            }
            C::WhileClause(w) | C::UntilClause(w) => {
                let mut eff = self.check_list(&w.0)?;
                eff |= self.check_list(&w.1.list)?;
                Ok(eff)
            }
            C::Coprocess(c) => {
                let saved = self.state.clone();
                let r = self.check_command(&c.body);
                self.state = saved;
                r.map(|_| Effects::default())
            }
        }
    }

    /// `for x in …`: the body once per known value (up to 16), else once with
    /// `x` unknown.
    fn check_for(&mut self, f: &ast::ForClauseCommand) -> Result<Effects, Denial> {
        let mut values: Vec<Arg> = Vec::new();
        let mut known = true;
        match &f.values {
            Some(ws) => {
                for w in ws {
                    let args = self.expand_word(&w.value)?;
                    for a in args {
                        known &= !a.dynamic && !a.glob;
                        values.push(a);
                    }
                }
            }
            None => known = false, // `for x; do` iterates "$@"
        }
        let name = f.variable_name.clone();
        let download = values.iter().any(|v| v.from_download);
        let mut eff = Effects::default();
        if known && !values.is_empty() && values.len() <= 16 {
            // Check the body once per literal value.
            for v in &values {
                self.set_var(name.clone(), Some(v.text.clone()), false);
                eff |= self.check_list(&f.body.list)?;
            }
        } else {
            self.set_var(name.clone(), None, download);
            eff |= self.check_list(&f.body.list)?;
        }
        self.set_var(name, None, download);
        Ok(eff)
    }

    /// Arithmetic text can run commands through `$(…)` and array subscripts.
    pub(super) fn check_arith(&mut self, expr: &str) -> Result<(), Denial> {
        if expr.contains("$(") || expr.contains('`') {
            return Err(Denial::new(
                "dynamic-code",
                "command substitution inside an arithmetic expression",
            ));
        }
        Ok(())
    }
}

/// A function body that runs the function's own name in a pipeline or in
/// the background: a fork bomb (`:(){ :|:& };:`, `bomb(){ bomb|bomb& }`).
fn calls_itself_in_parallel(name: &str, body: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let is_name_char = |c: char| !(c.is_whitespace() || "|&;(){}<>".contains(c));
    let mut calls = 0;
    let mut rest = body;
    while let Some(p) = rest.find(name) {
        let before = rest[..p].chars().next_back();
        let after = rest[p + name.len()..].chars().next();
        let cmd_pos = rest[..p]
            .trim_end()
            .chars()
            .next_back()
            .is_none_or(|c| "{|&;(".contains(c));
        if cmd_pos && !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char) {
            calls += 1;
        }
        rest = &rest[p + name.len()..];
    }
    calls >= 1 && (body.contains('|') || body.contains('&'))
}
