//! The shell side of the guard: the [`Checker`] and the state it tracks
//! along one command line, parsing (on a big stack when needed) and code
//! nested in code. The walk over the AST ([`walk`]), simple commands
//! ([`simple`]) and word expansion ([`expand`]) bring every simple command,
//! wherever it is nested, to [`Checker::check_argv`] with its words
//! statically expanded.

mod expand;
mod prescan;
mod simple;
mod walk;

use std::collections::HashMap;

use brush_parser::ast;

use crate::paths;
use crate::words::Arg;
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

/// `p` as a normalised absolute path, or `fallback`.
fn norm(p: &std::path::Path, fallback: &str) -> String {
    let s = p.to_string_lossy();
    paths::resolve(Some("/"), &s).unwrap_or_else(|| fallback.to_owned())
}

impl<'p> Checker<'p> {
    /// A checker for `policy`, starting in the workspace.
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

    /// Start in `cwd` (relative to the workspace) instead of the workspace.
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
        prescan::refuse_before_parsing(script)?;
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

    /// Parse `script` and walk each of its commands.
    fn parse_and_walk(&mut self, script: &str) -> Result<Effects, Denial> {
        let program = self.parse(script)?;
        let mut eff = Effects::default();
        for cc in &program.complete_commands {
            eff |= self.check_list(cc)?;
        }
        Ok(eff)
    }

    /// brush's parser, guarded: its panics become denials.
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
}
