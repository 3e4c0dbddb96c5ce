//! Walking the shell AST: every simple command, wherever it is nested,
//! reaches [`Checker::check_argv`] with its words statically expanded.

use std::collections::HashMap;

use brush_parser::ast;
use brush_parser::word::{Parameter, ParameterExpr, TildeExpr, WordPiece, WordPieceWithSource};

use crate::paths;
use crate::words::{self, Arg, ArgBuilder};
use crate::{Denial, Policy};

/// Environment variables whose value git, bash or pagers run as shell code.
pub(crate) const CODE_VARS: &[&str] = &[
    "GIT_SSH_COMMAND",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
    "GIT_PAGER",
    "GIT_EXTERNAL_DIFF",
    "GIT_ASKPASS",
    "PAGER",
    "EDITOR",
    "VISUAL",
    "PROMPT_COMMAND",
];

/// Nesting limit for code inside code (`sh -c`, `eval`, `$(…)`, aliases …).
pub(crate) const MAX_DEPTH: usize = 8;
/// Longest command line the guard will look at.
pub(crate) const MAX_LEN: usize = 128 * 1024;
/// Length up to which code is parsed on the caller's stack (bounds the
/// parser's recursion to a few dozen levels).
const INLINE_LEN: usize = 128;
/// Wrapper commands and `[[ … ]]` operators nested in one command.
pub(crate) const MAX_ARGV_DEPTH: usize = 64;
/// Stack for parsing deeper or longer code (reserved, touched only as used).
const BIG_STACK: usize = 1 << 30;
/// Open `(` at once when the code contains `((` or `( (`: brush's grammar
/// backtracks exponentially on unbalanced parentheses in an arithmetic
/// command, doubling per level (found by cargo-fuzz).
const MAX_PARENS: usize = 14;
/// Compound commands open at once, summed over nested code.
const MAX_FRAMES: usize = 64;

/// What a command does that matters to its neighbours in a pipeline.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Effects {
    /// Writes something downloaded (curl, wget …) to its stdout.
    pub downloads: bool,
    /// Executes program text read from its stdin (sh, bash -s, python - …).
    pub stdin_interpreter: bool,
    /// Writes decoded or transformed text (base64 -d, xxd -r, rev, printf '\x…').
    pub decodes: bool,
    /// Prints the whole environment (env, printenv, set, export -p).
    pub env_dump: bool,
    /// Filters its input for credential names (grep -i token).
    pub secret_filter: bool,
}

impl std::ops::BitOrAssign for Effects {
    fn bitor_assign(&mut self, o: Self) {
        self.downloads |= o.downloads;
        self.stdin_interpreter |= o.stdin_interpreter;
        self.decodes |= o.decodes;
        self.env_dump |= o.env_dump;
        self.secret_filter |= o.secret_filter;
    }
}

/// Where a command's standard input comes from.
#[derive(Clone, Debug)]
pub(crate) enum Stdin {
    /// Inherited: the previous pipeline stage or the caller.
    Inherited,
    /// Not a program source (xargs children, /dev/null …).
    Closed,
    /// `< file` or `< <(…)`.
    File { from_download: bool },
    /// Here-document or here-string: its text if fully known.
    Doc {
        text: Option<String>,
        from_download: bool,
    },
}

/// Shell state the guard tracks along one command line.
#[derive(Clone, Debug)]
pub(crate) struct State {
    /// Working directory, `None` once unknown (`cd "$x"`).
    pub cwd: Option<String>,
    /// Variables assigned in the line: `Some(value)` if known.
    pub vars: HashMap<String, Option<String>>,
    /// Branch explicitly checked out earlier in the line (`None`: unknown).
    pub branch: Option<String>,
    /// Whether the line switched branches (so `branch`, not the policy's
    /// current branch, is what is checked out).
    pub branch_set: bool,
    /// Variables whose value came from a download (`S=$(curl …)`).
    pub tainted: std::collections::HashSet<String>,
    /// git aliases defined earlier in the line (`git config alias.p push`).
    pub git_aliases: HashMap<String, String>,
    /// Files written earlier in the line: `Some(text)` when the content is
    /// known (heredoc, echo, printf), `None` when it is not.
    pub written: HashMap<String, Option<String>>,
}

/// The checker: policy, tracked state and nesting depth.
pub(crate) struct Checker<'p> {
    pub policy: &'p Policy,
    pub workspace: String,
    pub home: String,
    pub state: State,
    pub depth: usize,
    /// Compound commands currently open, across nested code (stack budget).
    pub frames: usize,
    /// Wrapper / `[[ ]]` recursion in the current command (stack budget).
    pub argv_depth: usize,
    /// Running on the big-stack thread already.
    pub on_big_stack: bool,
    pub secrets: std::sync::Arc<Vec<paths::SecretPattern>>,
    /// The directory the line starts in: where [`Policy::current_branch`] applies.
    pub start_cwd: Option<String>,
    /// The git command being checked names another repository (`-C`,
    /// `--git-dir`, `--work-tree`).
    pub git_elsewhere: bool,
    /// The command word of the simple command being checked (`./run.sh`).
    pub current_argv0: String,
    /// What the last `echo`/`printf` printed, when every argument is known
    /// (for a pipeline's next stage that runs its stdin as code).
    pub piped_text: Option<String>,
    /// The last command that runs its stdin as code: a shell (`None`) or an
    /// interpreter of this language.
    pub stdin_reader: Option<Option<crate::inline::Lang>>,
    opts: brush_parser::ParserOptions,
}

/// Secret patterns depend only on the home directory: build them once.
fn cached_secret_patterns(home: &str) -> std::sync::Arc<Vec<paths::SecretPattern>> {
    type Cache = std::sync::Mutex<Option<(String, std::sync::Arc<Vec<paths::SecretPattern>>)>>;
    static CACHE: Cache = std::sync::Mutex::new(None);
    let mut guard = match CACHE.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some((h, pats)) = guard.as_ref() {
        if h == home {
            return pats.clone();
        }
    }
    let pats = std::sync::Arc::new(paths::secret_patterns(home));
    *guard = Some((home.to_owned(), pats.clone()));
    pats
}

fn norm(p: &std::path::Path, fallback: &str) -> String {
    let s = p.to_string_lossy();
    paths::resolve(Some("/"), &s).unwrap_or_else(|| fallback.to_owned())
}

impl<'p> Checker<'p> {
    pub(crate) fn new(policy: &'p Policy) -> Self {
        let workspace = norm(&policy.workspace, "/workspace");
        let home = norm(&policy.home, "/home/agent");
        Checker {
            policy,
            state: State {
                cwd: Some(workspace.clone()),
                vars: HashMap::new(),
                branch: None,
                branch_set: false,
                tainted: std::collections::HashSet::new(),
                git_aliases: HashMap::new(),
                written: HashMap::new(),
            },
            start_cwd: Some(workspace.clone()),
            git_elsewhere: false,
            current_argv0: String::new(),
            piped_text: None,
            stdin_reader: None,
            secrets: cached_secret_patterns(&home),
            workspace,
            home,
            depth: 0,
            frames: 0,
            argv_depth: 0,
            on_big_stack: false,
            opts: brush_parser::ParserOptions::default(),
        }
    }

    pub(crate) fn set_cwd(&mut self, cwd: &str) {
        self.state.cwd = paths::resolve(Some(&self.workspace), cwd);
        self.start_cwd = self.state.cwd.clone();
    }

    /// Check a whole command line.
    pub(crate) fn check_script(&mut self, script: &str) -> Result<(), Denial> {
        self.check_code(script).map(|_| ())
    }

    /// Check an argv whose words are already final (no shell expansion).
    pub(crate) fn check_literal_argv(
        &mut self,
        argv0: &str,
        args: &[String],
    ) -> Result<(), Denial> {
        let mut argv = vec![Arg::lit(argv0)];
        argv.extend(args.iter().map(|a| Arg::lit(a)));
        self.check_argv(&argv, &Stdin::Inherited).map(|_| ())
    }

    /// Parse and walk shell code at the current depth.
    pub(crate) fn check_code(&mut self, script: &str) -> Result<Effects, Denial> {
        if script.len() > MAX_LEN {
            return Err(Denial::new(
                "too-complex",
                format!(
                    "command is {} bytes, more than the {MAX_LEN}-byte limit",
                    script.len()
                ),
            ));
        }
        if script.contains('\0') {
            return Err(Denial::new(
                "parse-error",
                "could not parse: NUL byte in command",
            ));
        }
        let (depth, parens, substs) = nesting(script);
        if substs > MAX_DEPTH {
            return Err(Denial::new(
                "too-complex",
                format!("command substitutions nested more than {MAX_DEPTH} deep"),
            ));
        }
        if parens > MAX_PARENS && has_double_paren(script) {
            return Err(Denial::new(
                "too-complex",
                format!("more than {MAX_PARENS} nested parentheses after `((`"),
            ));
        }
        if heredoc_tag_with_arith(script) {
            // brush-parser 0.4 loops forever on `<<'' `, `<<$(( )`,
            // `<<"$(  `, `<<$[  ` … at end of input: an empty end tag always
            // "matches" (found by cargo-fuzz).
            return Err(Denial::new(
                "parse-error",
                "could not parse: empty here-document delimiter or an expansion in one",
            ));
        }
        if oversized_fd(script) {
            // brush-parser 0.4 panics on an fd number that overflows i32.
            return Err(Denial::new(
                "parse-error",
                "could not parse: file descriptor number too large",
            ));
        }
        let _ = depth;
        if self.on_big_stack || script.len() <= INLINE_LEN {
            return self.parse_and_walk(script);
        }
        // The parser (and dropping its AST) recurses once per nesting level,
        // by up to several KiB per level in a debug build, for constructs no
        // cheap pre-scan bounds (`[[ ! ! ! … ]]`). A stack overflow would
        // abort the hook process, which agents treat as "no decision" (fail
        // open). So anything but short code is parsed on a thread whose stack
        // is large enough for any input under MAX_LEN; nested code then stays
        // on it, and the walk's own budgets refuse real deep nesting.
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("errand-guard-deep".to_owned())
                .stack_size(BIG_STACK)
                .spawn_scoped(scope, || {
                    self.on_big_stack = true;
                    let r = self.parse_and_walk(script);
                    self.on_big_stack = false;
                    r
                });
            match worker {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    Err(Denial::new(
                        "parse-error",
                        "could not parse: the checker failed",
                    ))
                }),
                Err(e) => Err(Denial::new(
                    "too-complex",
                    format!("could not start a checker thread: {e}"),
                )),
            }
        })
    }

    fn parse_and_walk(&mut self, script: &str) -> Result<Effects, Denial> {
        let program = self.parse(script)?;
        let mut eff = Effects::default();
        for cc in &program.complete_commands {
            eff |= self.check_list(cc)?;
        }
        Ok(eff)
    }

    fn parse(&self, script: &str) -> Result<ast::Program, Denial> {
        let opts = self.opts.clone();
        // brush-parser 0.4 can loop forever when input ends inside a
        // here-document tag (`\<<<$(  `); a final newline, which changes
        // nothing for the shell, avoids its end-of-input path.
        let text = if script.ends_with('\n') {
            script.to_owned()
        } else {
            format!("{script}\n")
        };
        let result = std::panic::catch_unwind(move || {
            let mut parser =
                brush_parser::Parser::new(std::io::Cursor::new(text.as_bytes()), &opts);
            parser.parse_program()
        });
        match result {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(Denial::new("parse-error", format!("could not parse: {e}"))),
            Err(_) => Err(Denial::new(
                "parse-error",
                "could not parse: the shell parser failed",
            )),
        }
    }

    /// Check code nested in other code (`sh -c`, `eval`, `$(…)`).
    /// `isolated`: it runs in another process, so state changes are dropped.
    pub(crate) fn check_nested(&mut self, script: &str, isolated: bool) -> Result<Effects, Denial> {
        if self.depth >= MAX_DEPTH {
            return Err(Denial::new(
                "too-complex",
                format!("code nested more than {MAX_DEPTH} levels deep (sh -c / eval / $(…))"),
            ));
        }
        let saved = isolated.then(|| self.state.clone());
        self.depth += 1;
        let r = self.check_code(script);
        self.depth -= 1;
        if let Some(s) = saved {
            self.state = s;
        }
        r
    }

    // ----- AST walk -------------------------------------------------------

    fn check_list(&mut self, list: &ast::CompoundList) -> Result<Effects, Denial> {
        let mut eff = Effects::default();
        for item in &list.0 {
            eff |= self.check_and_or(&item.0)?;
        }
        Ok(eff)
    }

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
            if let (Some(reader), Some(Some(text))) = (self.stdin_reader.take(), printed.get(j.wrapping_sub(1))) {
                if e.stdin_interpreter {
                    let text = text.clone();
                    match reader {
                        None => self.check_nested(&text, true).map(|_| ())?,
                        Some(lang) => self.check_program_text("the piped program", lang, &text).map(|_| ())?,
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
    fn check_arith(&mut self, expr: &str) -> Result<(), Denial> {
        if expr.contains("$(") || expr.contains('`') {
            return Err(Denial::new(
                "dynamic-code",
                "command substitution inside an arithmetic expression",
            ));
        }
        Ok(())
    }

    fn check_simple(&mut self, sc: &ast::SimpleCommand) -> Result<Effects, Denial> {
        let mut assignments: Vec<(String, Option<String>, bool)> = Vec::new();
        let mut argv: Vec<Arg> = Vec::new();
        let mut redirects: Vec<&ast::IoRedirect> = Vec::new();

        if let Some(prefix) = &sc.prefix {
            for item in &prefix.0 {
                match item {
                    ast::CommandPrefixOrSuffixItem::AssignmentWord(a, _) => {
                        let name = match &a.name {
                            ast::AssignmentName::VariableName(n) => n.clone(),
                            ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
                        };
                        let mut download = false;
                        let value = match &a.value {
                            ast::AssignmentValue::Scalar(w) => {
                                let args = self.expand_word_raw(&w.value)?;
                                download = args.iter().any(|a| a.from_download);
                                match args.as_slice() {
                                    [one] => one.known().map(str::to_owned),
                                    _ => None,
                                }
                            }
                            ast::AssignmentValue::Array(items) => {
                                for (k, v) in items {
                                    if let Some(k) = k {
                                        self.expand_word(&k.value)?;
                                    }
                                    self.expand_word(&v.value)?;
                                }
                                None
                            }
                        };
                        assignments.push((name, value, download));
                    }
                    ast::CommandPrefixOrSuffixItem::Word(w) => {
                        argv.extend(self.expand_word(&w.value)?)
                    }
                    ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r),
                    ast::CommandPrefixOrSuffixItem::ProcessSubstitution(_, s) => {
                        argv.push(self.process_substitution(s)?);
                    }
                }
            }
        }
        if let Some(w) = &sc.word_or_name {
            argv.extend(self.expand_word(&w.value)?);
        }
        if let Some(suffix) = &sc.suffix {
            for item in &suffix.0 {
                match item {
                    ast::CommandPrefixOrSuffixItem::Word(w)
                    | ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                        argv.extend(self.expand_word(&w.value)?);
                    }
                    ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r),
                    ast::CommandPrefixOrSuffixItem::ProcessSubstitution(_, s) => {
                        argv.push(self.process_substitution(s)?);
                    }
                }
            }
        }

        let mut stdin = Stdin::Inherited;
        for r in &redirects {
            self.check_redirect(r, &mut stdin)?;
        }
        for (name, value, download) in &assignments {
            if *download && CODE_VARS.contains(&name.as_str()) {
                return Err(Denial::new(
                    "pipe-to-shell",
                    format!("{name} (run as a command) is set from a download"),
                ));
            }
            self.check_code_env(name, value.as_deref())?;
        }
        if argv.is_empty() {
            // Plain assignments persist in the shell.
            for (name, value, download) in assignments {
                self.set_var(name, value, download);
            }
            return Ok(Effects::default());
        }
        let eff = self.check_argv(&argv, &stdin)?;
        self.record_written(&argv, &stdin, &redirects, eff)?;
        Ok(eff)
    }

    /// Remember files written by `echo … > f`, `printf … > f`, `cat > f <<EOF`
    /// so a later `sh f` / `python f` / `./f` in the same line is checked.
    fn record_written(
        &mut self,
        argv: &[Arg],
        stdin: &Stdin,
        redirects: &[&ast::IoRedirect],
        eff: Effects,
    ) -> Result<(), Denial> {
        use ast::IoFileRedirectKind as K;
        let mut targets: Vec<(String, bool)> = Vec::new();
        for r in redirects {
            if let ast::IoRedirect::File(fd, kind, ast::IoFileRedirectTarget::Filename(w)) = r {
                if matches!(fd, None | Some(1)) && matches!(kind, K::Write | K::Append | K::Clobber)
                {
                    let a = self.expand_single(&w.value)?;
                    if let Some(k) = a.known().and_then(|t| self.written_key(t)) {
                        targets.push((k, matches!(kind, K::Append)));
                    }
                }
            }
        }
        let name = argv
            .first()
            .map(|a| crate::commands::command_name(&a.text))
            .unwrap_or("");
        // Downloads saved to a file: `curl -o x.sh …`, `wget -O x.sh …`.
        if matches!(name, "curl" | "wget") {
            let mut it = argv.iter().skip(1);
            while let Some(a) = it.next() {
                let t = a.text.as_str();
                let takes_value = matches!(t, "-o" | "--output" | "--output-document")
                    || (name == "wget" && t == "-O")
                    || (t.starts_with('-')
                        && !t.starts_with("--")
                        && (t.ends_with('o') || (name == "wget" && t.ends_with('O'))));
                let v = if takes_value {
                    it.next().and_then(|v| v.known())
                } else {
                    t.strip_prefix("--output=")
                        .or_else(|| t.strip_prefix("--output-document="))
                };
                if let Some(k) = v.and_then(|v| self.written_key(v)) {
                    self.state.written.insert(k, None);
                }
            }
        }
        if name == "tee" {
            for a in argv.iter().skip(1).filter(|a| !a.text.starts_with('-')) {
                if let Some(k) = a.known().and_then(|t| self.written_key(t)) {
                    targets.push((k, argv.iter().any(|a| a.text == "-a")));
                }
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        let known = argv.iter().all(|a| !a.dynamic);
        let content: Option<String> = if eff.decodes || !known {
            None
        } else {
            match name {
                "echo" => {
                    let words: Vec<&str> = argv[1..]
                        .iter()
                        .map(|a| a.text.as_str())
                        .skip_while(|t| matches!(*t, "-n" | "-e" | "-E" | "-ne" | "-en"))
                        .collect();
                    Some(format!("{}\n", words.join(" ")).replace("\\n", "\n"))
                }
                "printf" => Some(
                    argv[1..]
                        .iter()
                        .map(|a| {
                            a.text
                                .replace("\\n", "\n")
                                .replace("%s", " ")
                                .replace("%b", " ")
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                "cat" | "tee" => match stdin {
                    Stdin::Doc {
                        text,
                        from_download: false,
                    } if argv.len() == 1 || name == "tee" => text.clone(),
                    _ => None,
                },
                _ => None,
            }
        };
        for (k, append) in targets {
            let c = match (append, self.state.written.get(&k)) {
                (true, Some(Some(old))) => content.as_ref().map(|c| format!("{old}{c}")),
                (true, Some(None)) => None,
                _ => content.clone(),
            };
            self.state.written.insert(k, c);
        }
        Ok(())
    }

    /// The normalised path of a file for [`State::written`].
    pub(crate) fn written_key(&self, text: &str) -> Option<String> {
        crate::paths::resolve(self.state.cwd.as_deref(), text)
    }

    /// Environment variables whose value is executed as shell code by git,
    /// bash or pagers.
    pub(crate) fn check_code_env(&mut self, name: &str, value: Option<&str>) -> Result<(), Denial> {
        if !CODE_VARS.contains(&name) {
            return Ok(());
        }
        match value {
            Some(code) => self.check_nested(code, true).map(|_| ()),
            None => Err(Denial::new(
                "dynamic-code",
                format!("{name} (run as a command) is set from a value known only at run time"),
            )),
        }
    }

    fn process_substitution(&mut self, s: &ast::SubshellCommand) -> Result<Arg, Denial> {
        if self.depth >= MAX_DEPTH {
            return Err(Denial::new(
                "too-complex",
                "process substitutions nested too deep",
            ));
        }
        let saved = self.state.clone();
        self.depth += 1;
        let r = self.check_list(&s.list);
        self.depth -= 1;
        self.state = saved;
        let eff = r?;
        // `<(…)` becomes a /dev/fd path: a file whose content is unknown.
        // Decoded text read as a script is as unreadable as a download
        // (`bash <(base64 -d <<< …)`).
        Ok(Arg::unknown(false, eff.downloads || eff.decodes))
    }

    fn check_redirect(&mut self, r: &ast::IoRedirect, stdin: &mut Stdin) -> Result<(), Denial> {
        use ast::IoFileRedirectKind as K;
        let is_stdin = |fd: &Option<i32>| fd.is_none() || *fd == Some(0);
        match r {
            ast::IoRedirect::File(fd, kind, target) => {
                let arg = match target {
                    ast::IoFileRedirectTarget::Filename(w) => self.expand_single(&w.value)?,
                    ast::IoFileRedirectTarget::ProcessSubstitution(_, s) => {
                        self.process_substitution(s)?
                    }
                    ast::IoFileRedirectTarget::Duplicate(w) => {
                        let a = self.expand_single(&w.value)?;
                        if a.text.chars().all(|c| c.is_ascii_digit() || c == '-') {
                            return Ok(());
                        }
                        a
                    }
                    ast::IoFileRedirectTarget::Fd(_) => return Ok(()),
                };
                match kind {
                    K::Read | K::ReadAndWrite | K::DuplicateInput => {
                        self.check_secret_path(&arg, false, "<")?;
                        if matches!(kind, K::ReadAndWrite) {
                            self.check_device_target(&arg, "redirection `<>`")?;
                        }
                        if is_stdin(fd) {
                            *stdin = Stdin::File {
                                from_download: arg.from_download,
                            };
                        }
                    }
                    K::Write | K::Append | K::Clobber | K::DuplicateOutput => {
                        self.check_device_target(&arg, "output redirection `>`")?;
                    }
                }
            }
            ast::IoRedirect::OutputAndError(w, _) => {
                let arg = self.expand_single(&w.value)?;
                self.check_device_target(&arg, "output redirection `&>`")?;
            }
            ast::IoRedirect::HereDocument(fd, doc) => {
                let (text, dl) = if doc.requires_expansion {
                    let pieces = self.parse_word(&doc.doc.value, true)?;
                    let mut b = ArgBuilder::default();
                    self.expand_pieces(&pieces, true, &mut b)?;
                    let a = b.finish();
                    (a.known().map(str::to_owned), a.from_download)
                } else {
                    (Some(doc.doc.value.clone()), false)
                };
                if is_stdin(fd) {
                    *stdin = Stdin::Doc {
                        text,
                        from_download: dl,
                    };
                }
            }
            ast::IoRedirect::HereString(fd, w) => {
                let a = self.expand_single(&w.value)?;
                if is_stdin(fd) {
                    *stdin = Stdin::Doc {
                        text: a.known().map(|t| format!("{t}\n")),
                        from_download: a.from_download,
                    };
                }
            }
        }
        Ok(())
    }

    // ----- word expansion -------------------------------------------------

    /// Expand one shell word into the words it becomes (brace expansion can
    /// make several).
    pub(crate) fn expand_word(&mut self, raw: &str) -> Result<Vec<Arg>, Denial> {
        if words::may_brace_expand(raw) {
            match words::brace_expand(raw) {
                Some(alts) if alts.len() > 1 => {
                    let mut out = Vec::new();
                    for alt in alts {
                        out.extend(self.expand_word_raw(&alt)?);
                    }
                    return Ok(out);
                }
                Some(_) => {}
                None => return Ok(vec![Arg::unknown(true, false)]),
            }
        }
        self.expand_word_raw(raw)
    }

    /// Expand a word that must stay one word (redirection targets).
    fn expand_single(&mut self, raw: &str) -> Result<Arg, Denial> {
        let mut args = self.expand_word(raw)?;
        if args.len() == 1 {
            Ok(args.remove(0))
        } else {
            Ok(Arg::unknown(true, args.iter().any(|a| a.from_download)))
        }
    }

    fn expand_word_raw(&mut self, raw: &str) -> Result<Vec<Arg>, Denial> {
        let pieces = self.parse_word(raw, false)?;
        let mut b = ArgBuilder::default();
        self.expand_pieces(&pieces, false, &mut b)?;
        Ok(vec![b.finish()])
    }

    /// brush's word parser, guarded: it panics on `~` followed by a number
    /// that overflows (brush-parser 0.4, word.rs:909; found by cargo-fuzz).
    fn parse_word(&self, raw: &str, heredoc: bool) -> Result<Vec<WordPieceWithSource>, Denial> {
        if long_tilde_number(raw) {
            return Err(Denial::new(
                "parse-error",
                "could not parse: `~` followed by an oversized number",
            ));
        }
        let opts = &self.opts;
        let r = std::panic::catch_unwind(|| {
            if heredoc {
                brush_parser::word::parse_heredoc(raw, opts)
            } else {
                brush_parser::word::parse(raw, opts)
            }
        });
        match r {
            Ok(Ok(pieces)) => Ok(pieces),
            Ok(Err(e)) => Err(Denial::new("parse-error", format!("could not parse: {e}"))),
            Err(_) => Err(Denial::new(
                "parse-error",
                "could not parse: the word parser failed",
            )),
        }
    }

    fn expand_pieces(
        &mut self,
        pieces: &[WordPieceWithSource],
        quoted: bool,
        b: &mut ArgBuilder,
    ) -> Result<(), Denial> {
        for p in pieces {
            match &p.piece {
                WordPiece::Text(s) => b.push_lit(s, quoted),
                WordPiece::SingleQuotedText(s) => b.push_lit(s, true),
                WordPiece::AnsiCQuotedText(s) => b.push_lit(&words::decode_ansi_c(s), true),
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    self.expand_pieces(inner, true, b)?;
                }
                WordPiece::TildeExpansion(t) => match t {
                    TildeExpr::Home => b.push_lit(&self.home.clone(), true),
                    TildeExpr::UserHome(u) => {
                        let h = if u == "root" {
                            "/root".to_owned()
                        } else {
                            format!("/home/{u}")
                        };
                        b.push_lit(&h, true);
                    }
                    TildeExpr::WorkingDir => match self.state.cwd.clone() {
                        Some(c) => b.push_lit(&c, true),
                        None => b.push_dyn(true, false),
                    },
                    _ => b.push_dyn(true, false), // ~-, ~N: directory stack
                },
                WordPiece::ParameterExpansion(pe) => {
                    self.check_parameter_expr(pe)?;
                    if let Some(n) = secret_param(pe) {
                        b.mark_secret(n);
                    }
                    match self.parameter_value(pe) {
                        Some(v)
                            if quoted
                                || !v.chars().any(|c| c.is_whitespace() || "*?[".contains(c)) =>
                        {
                            b.push_lit(&v, true)
                        }
                        _ => b.push_dyn(quoted, self.parameter_tainted(pe)),
                    }
                }
                WordPiece::CommandSubstitution(code) => {
                    let eff = self.check_nested(code, true)?;
                    b.push_dyn(quoted, eff.downloads);
                }
                WordPiece::BackquotedCommandSubstitution(code) => {
                    let eff = self.check_nested(&words::unescape_backticks(code, quoted), true)?;
                    b.push_dyn(quoted, eff.downloads);
                }
                WordPiece::EscapeSequence(s) => {
                    let rest = s.strip_prefix('\\').unwrap_or(s);
                    if rest != "\n" {
                        b.push_lit(rest, true);
                    }
                }
                WordPiece::ArithmeticExpression(e) => {
                    self.check_arith(&e.value)?;
                    b.push_dyn(quoted, false);
                }
            }
        }
        Ok(())
    }

    /// Default/alternative values inside `${…}` may hold command substitutions.
    fn check_parameter_expr(&mut self, pe: &ParameterExpr) -> Result<(), Denial> {
        let texts: Vec<&String> = match pe {
            ParameterExpr::UseDefaultValues { default_value, .. }
            | ParameterExpr::AssignDefaultValues { default_value, .. } => {
                default_value.iter().collect()
            }
            ParameterExpr::IndicateErrorIfNullOrUnset { error_message, .. } => {
                error_message.iter().collect()
            }
            ParameterExpr::UseAlternativeValue {
                alternative_value, ..
            } => alternative_value.iter().collect(),
            ParameterExpr::Parameter { .. } => Vec::new(),
            other => {
                // Patterns, replacements, offsets …: substitutions there are
                // exotic; refuse rather than model every operator.
                let dbg = format!("{other:?}");
                if dbg.contains("$(") || dbg.contains('`') {
                    return Err(Denial::new(
                        "dynamic-code",
                        "command substitution inside a ${…} operator",
                    ));
                }
                Vec::new()
            }
        };
        for t in texts {
            if t.contains("$(") || t.contains('`') || t.contains("${") {
                self.expand_word_raw(t)?;
            }
        }
        Ok(())
    }

    fn parameter_value(&self, pe: &ParameterExpr) -> Option<String> {
        match pe {
            ParameterExpr::Parameter {
                parameter: Parameter::Named(n),
                indirect: false,
            } => self.var(n),
            ParameterExpr::UseDefaultValues {
                parameter: Parameter::Named(n),
                indirect: false,
                ..
            } => self.var(n).filter(|v| !v.is_empty()),
            _ => None,
        }
    }

    /// Record a shell variable assignment.
    pub(crate) fn set_var(&mut self, name: String, value: Option<String>, download: bool) {
        if download {
            self.state.tainted.insert(name.clone());
        } else {
            self.state.tainted.remove(&name);
        }
        self.state.vars.insert(name, value);
    }

    fn parameter_tainted(&self, pe: &ParameterExpr) -> bool {
        match pe {
            ParameterExpr::Parameter {
                parameter: Parameter::Named(n),
                ..
            }
            | ParameterExpr::UseDefaultValues {
                parameter: Parameter::Named(n),
                ..
            } => self.state.tainted.contains(n),
            _ => false,
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        if let Some(v) = self.state.vars.get(name) {
            return v.clone();
        }
        match name {
            "HOME" => Some(self.home.clone()),
            "PWD" => self.state.cwd.clone(),
            // errand's own config directory: treat as the secret it is.
            "ERRAND_HOME" => Some(format!("{}/.config/errand", self.home)),
            _ => None,
        }
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

/// The name of a credential-looking variable a parameter expansion reads.
fn secret_param(pe: &ParameterExpr) -> Option<&str> {
    let n = match pe {
        ParameterExpr::Parameter {
            parameter: Parameter::Named(n),
            ..
        }
        | ParameterExpr::UseDefaultValues {
            parameter: Parameter::Named(n),
            ..
        }
        | ParameterExpr::UseAlternativeValue {
            parameter: Parameter::Named(n),
            ..
        } => n.as_str(),
        _ => return None,
    };
    crate::classes::is_secret_var(n).then_some(n)
}

/// Deepest nesting of brackets and compound-command keywords (`if`,
/// `while`, `for`, `case`, `{`, `(` …) in raw text, skipping quoted text.
/// Rough (an over-estimate is fine): it only has to bound the parser's
/// recursion before the parser runs.
fn nesting(s: &str) -> (usize, usize, usize) {
    const OPEN: &[&str] = &[
        "if", "elif", "while", "until", "for", "select", "case", "function", "coproc",
    ];
    const CLOSE: &[&str] = &["fi", "done", "esac"];
    // Separate counters: a `)` after a case pattern must not cancel `case`.
    let (mut kw, mut paren, mut brace, mut bracket, mut tick) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut max, mut max_paren) = (0usize, 0usize);
    // Which open `(` are `$(` (command substitutions).
    let mut parens: Vec<bool> = Vec::new();
    let (mut subst, mut max_subst) = (0usize, 0usize);
    let mut prev = ' ';
    let mut word = String::new();
    let (mut sq, mut dq) = (false, false);
    let mut chars = s.chars().peekable();
    let end_word = |word: &mut String, kw: &mut usize| {
        if OPEN.contains(&word.as_str()) {
            *kw += 1;
        } else if CLOSE.contains(&word.as_str()) {
            *kw = kw.saturating_sub(1);
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        if sq {
            sq = c != '\'';
            continue;
        }
        match c {
            '\\' => {
                chars.next();
                word.push('x');
            }
            '\'' if !dq => sq = true,
            '"' => dq = !dq,
            '(' | '{' | '[' | '`' | ')' | '}' | ']' => {
                end_word(&mut word, &mut kw);
                match c {
                    '(' => {
                        paren += 1;
                        parens.push(prev == '$');
                        if prev == '$' {
                            subst += 1;
                            max_subst = max_subst.max(subst);
                        }
                    }
                    '{' => brace += 1,
                    '[' => bracket += 1,
                    '`' => tick = 1 - tick.min(1),
                    ')' => {
                        paren = paren.saturating_sub(1);
                        if parens.pop() == Some(true) {
                            subst -= 1;
                        }
                    }
                    '}' => brace = brace.saturating_sub(1),
                    _ => bracket = bracket.saturating_sub(1),
                }
            }
            c if !dq && (c.is_whitespace() || ";|&<>".contains(c)) => end_word(&mut word, &mut kw),
            c => {
                if !dq {
                    word.push(c);
                }
            }
        }
        max = max.max(kw + paren + brace + bracket + tick);
        max_paren = max_paren.max(paren);
        prev = c;
    }
    end_word(&mut word, &mut kw);
    (
        max.max(kw + paren + brace + bracket + tick),
        max_paren,
        max_subst,
    )
}

/// A run of 10+ digits right before `<` or `>` (an fd number that does not
/// fit in an i32).
fn oversized_fd(s: &str) -> bool {
    let b = s.as_bytes();
    let mut run = 0usize;
    for &c in b {
        if c.is_ascii_digit() {
            run += 1;
        } else {
            if run >= 10 && (c == b'<' || c == b'>') {
                return true;
            }
            run = 0;
        }
    }
    false
}

/// `((` or `( (`: where brush tries an arithmetic command.
fn has_double_paren(s: &str) -> bool {
    let mut after_paren = false;
    for c in s.chars() {
        match c {
            '(' if after_paren => return true,
            '(' => after_paren = true,
            c if c.is_whitespace() => {}
            _ => after_paren = false,
        }
    }
    false
}

/// `~`, `~+` or `~-` followed by 10+ digits.
fn long_tilde_number(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'~')
        .any(|(i, _)| {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+') | Some(b'-')) {
                j += 1;
            }
            b[j.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
                >= 10
        })
}

/// `<<` (not `<<<`), optional `-` and blanks, then a word that is empty
/// after quote removal (`''`, `""`) or contains `$(`, `$[`, `${` or a
/// backtick.
fn heredoc_tag_with_arith(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'<' && b[i + 1] == b'<' {
            if b.get(i + 2) == Some(&b'<') {
                i += 3;
                continue;
            }
            let mut j = i + 2;
            if b.get(j) == Some(&b'-') {
                j += 1;
            }
            while matches!(b.get(j), Some(b' ') | Some(b'\t')) {
                j += 1;
            }
            let start = j;
            // A word ends at the shell's metacharacters only: a form feed or
            // a vertical tab is part of it (and of the tag).
            while j < b.len() && !b" \t\n;|&<>()".contains(&b[j]) {
                j += 1;
            }
            let tag = s.get(start..j).unwrap_or("");
            let unquoted_empty =
                !tag.is_empty() && tag.chars().all(|c| matches!(c, '\'' | '"' | '\\' | '$'));
            // brush-parser also loops on a tag holding a control character
            // (`<<\x0c<<`, found by cargo-fuzz): no real delimiter has one.
            let control = tag.bytes().any(|c| c.is_ascii_control());
            if unquoted_empty || control || ["$(", "$[", "${", "`"].iter().any(|m| tag.contains(m))
            {
                return true;
            }
            i = j.max(i + 2);
        } else {
            i += 1;
        }
    }
    false
}
