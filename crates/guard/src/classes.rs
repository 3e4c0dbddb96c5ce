//! Host control, secret hunting, forge-destructive API calls and cloud
//! metadata endpoints: per-command checks on the already-expanded argv.

use crate::shell::Checker;
use crate::words::Arg;
use crate::Denial;

/// Hosts that serve cloud instance credentials.
const METADATA_HOSTS: &[&str] = &[
    "169.254.169.254",
    "metadata.google.internal",
    "fd00:ec2::254",
    "169.254.170.2",
    "100.100.100.200", // Alibaba
    "metadata.azure.com",
];

/// Words in a variable name that mark it as a credential.
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "KEY",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "PAT",
];

/// Whether an environment variable name looks like it holds a credential.
pub(crate) fn is_secret_var(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    up.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .any(|w| {
            SECRET_WORDS.iter().any(|s| match *s {
                "PAT" => w == "PAT",
                // APIKEY, SIGNING_KEY, KEYS — but not KEYBOARD or KEYMAP.
                "KEY" => w.ends_with("KEY") || w.ends_with("KEYS"),
                _ => w.contains(s),
            })
        })
}

/// Whether `pattern` (a grep/awk argument) searches for a credential word.
fn is_secret_pattern(pattern: &str) -> bool {
    let up = pattern.to_ascii_uppercase();
    [
        "TOKEN", "KEY", "SECRET", "PASS", "CRED", "AUTH", "AWS", "GH_", "GITHUB",
    ]
    .iter()
    .any(|w| up.contains(w))
}

/// A URL or text mentions a cloud metadata endpoint.
pub(crate) fn metadata_host(text: &str) -> Option<&'static str> {
    let low = text.to_ascii_lowercase();
    if let Some(h) = METADATA_HOSTS.iter().copied().find(|h| low.contains(h)) {
        return Some(h);
    }
    // The same addresses written another way: decimal, hex or octal
    // (`http://2852039166/`, `0xa9fea9fe`, `0251.0376.0251.0376`), or as an
    // IPv4-mapped IPv6 address (`[::ffff:a9fe:a9fe]`).
    low.match_indices("://")
        .map(|(i, _)| {
            let rest = &low[i + 3..];
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or("");
            match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or("").to_owned(),
                None => host.split(':').next().unwrap_or("").to_owned(),
            }
        })
        .find_map(|w| {
            let ip = loose_ipv4(w.trim_matches('.'))?;
            match ip {
                [169, 254, 169, 254] => Some("169.254.169.254"),
                [169, 254, 170, 2] => Some("169.254.170.2"),
                [100, 100, 100, 200] => Some("100.100.100.200"),
                _ => None,
            }
        })
}

/// An IPv4 address as `inet_aton` reads it (one to four parts, each decimal,
/// `0x` hex or `0` octal), or the IPv4 inside `::ffff:…`.
fn loose_ipv4(w: &str) -> Option<[u8; 4]> {
    if let Some(rest) = w.strip_prefix("::ffff:") {
        if rest.contains('.') {
            return loose_ipv4(rest);
        }
        let (hi, lo) = rest.split_once(':')?;
        let (hi, lo) = (
            u16::from_str_radix(hi, 16).ok()?,
            u16::from_str_radix(lo, 16).ok()?,
        );
        return Some(((u32::from(hi) << 16) | u32::from(lo)).to_be_bytes());
    }
    if w.contains(':') {
        return None;
    }
    let parts: Vec<u64> = w
        .split('.')
        .map(|p| {
            if let Some(h) = p.strip_prefix("0x") {
                u64::from_str_radix(h, 16).ok()
            } else if p.len() > 1 && p.starts_with('0') {
                u64::from_str_radix(&p[1..], 8).ok()
            } else {
                p.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    // A bare small number (a port, a count) is no address.
    let n: u64 = match parts.as_slice() {
        [a] if *a > 0xffffff => *a,
        [a, b] if *a < 256 && *b < 1 << 24 => (a << 24) | b,
        [a, b, c] if *a < 256 && *b < 256 && *c < 1 << 16 => (a << 24) | (b << 16) | c,
        [a, b, c, d] if [a, b, c, d].iter().all(|x| **x < 256) => {
            (a << 24) | (b << 16) | (c << 8) | d
        }
        _ => return None,
    };
    u32::try_from(n).ok().map(u32::to_be_bytes)
}

impl Checker<'_> {
    /// Checks that apply to every command, whatever its name.
    pub(crate) fn check_any_command(&self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        for a in rest {
            if let Some(h) = metadata_host(&a.text) {
                return Err(Denial::new(
                    "cloud-metadata",
                    format!("`{name}` reaches the cloud metadata endpoint {h}"),
                ));
            }
        }
        Ok(())
    }

    /// A `.env` file read inside the workspace (`.env.example` and the like
    /// are fine; outside the workspace `secret-read` already applies).
    pub(crate) fn check_dotenv_read(&self, a: &Arg, how: &str) -> Result<(), Denial> {
        let last = a.text.rsplit('/').next().unwrap_or("");
        let dotenv = crate::paths::is_dotenv_name(last)
            || (a.glob && last.starts_with(".env") && crate::paths::glob_match(last, ".env"));
        if dotenv {
            return Err(Denial::new(
                "secret-read",
                format!("`{how}` reads {}: .env files hold credentials", a.text),
            ));
        }
        Ok(())
    }

    /// Commands that print or copy a file's content: `.env` must not be one.
    pub(crate) fn check_dotenv_args(&self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        const READERS: &[&str] = &[
            "cat", "tac", "less", "more", "most", "head", "tail", "bat", "batcat", "nl", "od",
            "xxd", "hexdump", "strings", "base64", "base32", "grep", "egrep", "fgrep", "rg", "ag",
            "awk", "gawk", "sed", "cut", "sort", "uniq", "paste", "column", "jq", "yq", "view",
            "diff", "cp", "mv", "scp", "rsync", "tee", "dd", "curl", "wget", "nc", "sort", "zip",
            "tar", "gzip", "vim", "vi", "nano", "emacs", "code", "column", "pr", "fold", "iconv",
            "openssl", "gpg",
        ];
        if !READERS.contains(&name) {
            return Ok(());
        }
        // The destination of a copy is written, not read (`cp .env.example .env`).
        let n = match name {
            "cp" | "scp" | "rsync" => rest.len().saturating_sub(1),
            _ => rest.len(),
        };
        for a in &rest[..n] {
            if a.text.starts_with('-') && !a.text.starts_with("--data") && !a.text.contains('@') {
                // `curl -d @.env`, `curl --data-binary @.env` handled below
                continue;
            }
            let t = a
                .text
                .trim_start_matches("--data-binary=")
                .trim_start_matches('@');
            let b = Arg {
                text: t.to_owned(),
                ..a.clone()
            };
            let b = if name == "dd" {
                match b.text.strip_prefix("if=") {
                    Some(p) => Arg {
                        text: p.to_owned(),
                        ..b.clone()
                    },
                    None => continue,
                }
            } else {
                b
            };
            self.check_dotenv_read(&b, name)?;
        }
        Ok(())
    }

    /// kill/pkill/killall/shutdown/reboot/systemctl/crontab -r.
    pub(crate) fn check_host_control(&self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        let deny = |what: String| Err(Denial::new("host-control", what));
        match name {
            "kill" => {
                let mut signal_next = false;
                for a in rest {
                    let t = a.text.as_str();
                    if signal_next {
                        signal_next = false;
                        continue;
                    }
                    if matches!(t, "-s" | "-n") {
                        signal_next = true;
                        continue;
                    }
                    if t == "-l" || t == "-L" {
                        return Ok(());
                    }
                    if t == "--" {
                        continue;
                    }
                    // `-9`, `-KILL`, `-SIGTERM`: signal options, not targets.
                    let is_opt = t.starts_with('-')
                        && t.len() > 1
                        && !t[1..].chars().all(|c| c.is_ascii_digit());
                    let signal_num = t.starts_with('-')
                        && t.len() > 1
                        && t[1..].chars().all(|c| c.is_ascii_digit())
                        && !rest.iter().any(|b| b.text == "--")
                        && std::ptr::eq(a, &rest[0]);
                    if is_opt || signal_num {
                        continue;
                    }
                    if a.dynamic {
                        continue; // `kill $PID`: a process the agent started
                    }
                    match t {
                        "-1" => {
                            return deny("kill -1 signals every process the user may signal".into())
                        }
                        "0" => return deny(
                            "kill 0 signals the whole process group, including the agent's harness"
                                .into(),
                        ),
                        "1" => return deny("kill 1 signals init".into()),
                        _ if t.starts_with('-') && t[1..].chars().all(|c| c.is_ascii_digit()) => {
                            return deny(format!("kill {t} signals a whole process group"));
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            "pkill" | "killall" | "killall5" | "skill" | "slay" => deny(format!(
                "`{name}` kills processes by name, including ones the agent did not start"
            )),
            "shutdown" | "reboot" | "halt" | "poweroff" | "telinit" | "init" => {
                if name == "init" && rest.is_empty() {
                    return Ok(());
                }
                deny(format!("`{name}` stops or restarts the machine"))
            }
            "systemctl" | "service" | "rc-service" | "loginctl" => {
                let read_only = rest
                    .iter()
                    .find(|a| !a.text.starts_with('-'))
                    .is_some_and(|a| {
                        matches!(
                            a.text.as_str(),
                            "status"
                                | "show"
                                | "list-units"
                                | "list-unit-files"
                                | "is-active"
                                | "is-enabled"
                                | "is-failed"
                                | "cat"
                                | "list-timers"
                                | "list-sessions"
                                | "--status-all"
                        )
                    })
                    || rest
                        .iter()
                        .any(|a| a.text == "--status-all" || a.text == "--version");
                if read_only {
                    return Ok(());
                }
                deny(format!("`{name}` controls system services"))
            }
            "crontab" => {
                for a in rest {
                    if a.text.starts_with('-') && !a.text.starts_with("--") && a.text.contains('r')
                    {
                        return deny("crontab -r removes the user's crontab".into());
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `echo $GITHUB_TOKEN`, `printenv AWS_SECRET_ACCESS_KEY`.
    pub(crate) fn check_secret_print(&self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        match name {
            "echo" | "printf" | "print" => {
                if let Some(a) = rest.iter().find(|a| a.secret_var.is_some()) {
                    return Err(Denial::new(
                        "secret-env",
                        format!(
                            "`{name}` prints the variable ${}",
                            a.secret_var.as_deref().unwrap_or("")
                        ),
                    ));
                }
            }
            "printenv" => {
                if let Some(a) = rest.iter().find(|a| is_secret_var(&a.text)) {
                    return Err(Denial::new(
                        "secret-env",
                        format!("printenv prints the variable {}", a.text),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// gh subcommands that delete or bypass review, or print the token.
    pub(crate) fn check_gh(&mut self, rest: &[Arg]) -> Result<(), Denial> {
        let pos: Vec<&str> = rest
            .iter()
            .filter(|a| !a.text.starts_with('-'))
            .map(|a| a.text.as_str())
            .collect();
        let has = |f: &str| {
            rest.iter()
                .any(|a| a.text == f || a.text.starts_with(&format!("{f}=")))
        };
        let forge = |what: String| Err(Denial::new("forge-destructive", what));
        if has("--help") || has("-h") {
            return Ok(());
        }
        match pos.as_slice() {
            ["auth", "token", ..] => {
                return Err(Denial::new(
                    "credential-dump",
                    "`gh auth token` prints the forge token",
                ));
            }
            ["auth", "status", ..] if has("--show-token") || has("-t") => {
                return Err(Denial::new(
                    "credential-dump",
                    "`gh auth status --show-token` prints the forge token",
                ));
            }
            ["repo", "delete", ..] => return forge("gh repo delete".into()),
            ["repo", "archive", ..] => return forge("gh repo archive".into()),
            ["repo", "rename", ..] => return forge("gh repo rename".into()),
            ["repo", "edit", ..] if has("--visibility") || has("--default-branch") => {
                return forge("gh repo edit of visibility or default branch".into());
            }
            ["release", "delete", ..] | ["release", "delete-asset", ..] => {
                return forge("gh release delete".into());
            }
            ["pr", "merge", ..] if has("--admin") => {
                return forge("gh pr merge --admin bypasses branch protection".into());
            }
            ["pr", "merge", ..] => {
                return forge("gh pr merge: only the orchestrator merges".into());
            }
            ["secret", "list", ..] => {}
            ["secret", ..] | ["variable", "delete", ..] => {
                return forge("gh secret changes the repository's secrets".into());
            }
            ["ruleset", "delete", ..] | ["workflow", "disable", ..] => {
                return forge(format!("gh {} {}", pos[0], pos[1]));
            }
            ["run", "delete", ..] | ["cache", "delete", ..] | ["label", "delete", ..] => {
                return forge(format!("gh {} delete", pos[0]));
            }
            ["api", ..] => return self.check_gh_api(rest),
            _ => {}
        }
        Ok(())
    }

    fn check_gh_api(&self, rest: &[Arg]) -> Result<(), Denial> {
        let mut method: Option<String> = None;
        let mut endpoint: Option<&Arg> = None;
        let mut fields = false;
        let mut i = 0;
        while let Some(a) = rest.get(i) {
            let t = a.text.as_str();
            if t == "api" && endpoint.is_none() && i == 0 {
                i += 1;
                continue;
            }
            if t == "-X" || t == "--method" {
                method = rest.get(i + 1).map(|m| m.text.to_ascii_uppercase());
                if rest.get(i + 1).is_some_and(|m| m.dynamic) {
                    method = Some("DELETE".into());
                }
                i += 2;
                continue;
            }
            if let Some(m) = t
                .strip_prefix("--method=")
                .or_else(|| t.strip_prefix("-X"))
                .filter(|m| !m.is_empty())
            {
                method = Some(m.to_ascii_uppercase());
            } else if matches!(t, "-f" | "-F" | "--field" | "--raw-field" | "--input") {
                fields = true;
                i += 2;
                continue;
            } else if matches!(
                t,
                "-H" | "--header"
                    | "-q"
                    | "--jq"
                    | "-t"
                    | "--template"
                    | "--hostname"
                    | "--cache"
                    | "-p"
                    | "--preview"
            ) {
                i += 2;
                continue;
            } else if !t.starts_with('-') && endpoint.is_none() {
                endpoint = Some(a);
            }
            i += 1;
        }
        let method = method.unwrap_or_else(|| if fields { "POST".into() } else { "GET".into() });
        let Some(ep) = endpoint else { return Ok(()) };
        if is_destructive_api(&method, &ep.text, ep.dynamic) {
            return Err(Denial::new(
                "forge-destructive",
                format!("gh api -X {method} {}", ep.text),
            ));
        }
        Ok(())
    }

    /// curl/wget/http with a writing method against the forge's API.
    pub(crate) fn check_http_client(&self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        let mut method: Option<String> = None;
        let mut urls: Vec<&Arg> = Vec::new();
        let mut i = 0;
        while let Some(a) = rest.get(i) {
            let t = a.text.as_str();
            match t {
                "-X" | "--request" => {
                    method = rest.get(i + 1).map(|m| {
                        if m.dynamic {
                            "DELETE".into()
                        } else {
                            m.text.to_ascii_uppercase()
                        }
                    });
                    i += 2;
                    continue;
                }
                _ if t.starts_with("--method=") || t.starts_with("--request=") => {
                    method = t.split_once('=').map(|(_, m)| m.to_ascii_uppercase());
                }
                "--method" => {
                    method = rest.get(i + 1).map(|m| m.text.to_ascii_uppercase());
                    i += 2;
                    continue;
                }
                _ if t.starts_with("-X") && t.len() > 2 => {
                    method = Some(t[2..].to_ascii_uppercase());
                }
                _ if name.starts_with("http") || name == "xh" => {
                    // httpie: `http DELETE url`
                    let up = t.to_ascii_uppercase();
                    if matches!(up.as_str(), "DELETE" | "PUT" | "PATCH" | "POST")
                        && method.is_none()
                    {
                        method = Some(up);
                    } else if !t.starts_with('-') {
                        urls.push(a);
                    }
                }
                _ if !t.starts_with('-') => urls.push(a),
                _ => {}
            }
            i += 1;
        }
        let Some(method) = method else { return Ok(()) };
        for u in urls {
            let low = u.text.to_ascii_lowercase();
            let path = if let Some(p) = low.split_once("api.github.com").map(|(_, p)| p) {
                p.to_owned()
            } else if let Some((_, p)) = low.split_once("/api/v3") {
                p.to_owned()
            } else if low.contains("/pulls/") && low.ends_with("/merge")
                || low.contains("/git/refs")
            {
                low.clone()
            } else {
                continue;
            };
            if is_destructive_api(&method, &path, u.dynamic) {
                return Err(Denial::new(
                    "forge-destructive",
                    format!("{name} -X {method} {}", u.text),
                ));
            }
        }
        Ok(())
    }

    /// `env | grep -i token`: a pipeline stage dumping the environment.
    pub(crate) fn dumps_env(name: &str, rest: &[Arg]) -> bool {
        match name {
            "env" | "printenv" => rest.iter().all(|a| a.text.starts_with('-')),
            "set" => rest.is_empty(),
            "export" | "declare" | "typeset" => {
                rest.iter().all(|a| a.text == "-p" || a.text == "-x")
            }
            "compgen" => rest.iter().any(|a| a.text == "-v" || a.text == "-e"),
            _ => false,
        }
    }

    /// A filter stage looking for credential names (`grep -i token`).
    pub(crate) fn filters_secrets(name: &str, rest: &[Arg]) -> bool {
        matches!(
            name,
            "grep" | "egrep" | "fgrep" | "rg" | "ag" | "awk" | "sed" | "ack"
        ) && rest
            .iter()
            .any(|a| !a.text.starts_with('-') && is_secret_pattern(&a.text))
    }
}

/// A write method on an endpoint that deletes, merges, or changes
/// protection, refs or repository settings.
fn is_destructive_api(method: &str, endpoint: &str, dynamic: bool) -> bool {
    if !matches!(method, "DELETE" | "PUT" | "PATCH" | "POST") {
        return false;
    }
    if dynamic {
        return method != "POST";
    }
    let ep = endpoint.trim_start_matches('/').to_ascii_lowercase();
    let ep = ep.split('?').next().unwrap_or("");
    let is_repo = ep.starts_with("repos/")
        || ep.starts_with("orgs/")
        || ep.starts_with("user/repos")
        || ep.starts_with("enterprises/");
    if !is_repo {
        return method == "DELETE";
    }
    let parts: Vec<&str> = ep.split('/').collect();
    if method == "DELETE" {
        // Deleting comments or reactions is ordinary; everything else is not.
        return !(ep.contains("/comments/")
            || ep.contains("/reactions/")
            || ep.contains("/labels/"));
    }
    let sensitive = ep.contains("/git/refs")
        || ep.ends_with("/merge")
        || ep.contains("/merges")
        || ep.contains("/protection")
        || ep.contains("/rulesets")
        || ep.contains("/branches/")
        || ep.contains("/collaborators")
        || ep.contains("/keys")
        || ep.contains("/hooks")
        || ep.contains("/actions/secrets")
        || ep.contains("/transfer");
    // PATCH repos/o/r: renames, visibility, default branch.
    let repo_settings = parts.len() == 3 && method == "PATCH";
    sensitive || repo_settings
}

/// A shell command in one of `args`: `--opt=CMD`, `--opt CMD`, or `-o CMD`
/// (short options given separately).
fn option_value(args: &[Arg], i: usize, long: &[&str], short: &[&str]) -> Option<Arg> {
    let a = &args[i];
    let t = a.text.as_str();
    for l in long {
        if let Some(v) = t.strip_prefix(l).and_then(|r| r.strip_prefix('=')) {
            return Some(Arg {
                text: v.to_owned(),
                ..a.clone()
            });
        }
        if t == *l {
            return args.get(i + 1).cloned();
        }
    }
    if short.contains(&t) {
        return args.get(i + 1).cloned();
    }
    None
}

/// The shell command after `!` in an editor command (`:!rm -rf x`,
/// `:r !cmd`, `:w !cmd`, `:silent !cmd`).
fn editor_shell(cmd: &str) -> Option<&str> {
    let c = cmd.trim_start().trim_start_matches(':').trim_start();
    let c = c
        .strip_prefix("silent!")
        .or_else(|| c.strip_prefix("silent"))
        .unwrap_or(c)
        .trim_start();
    let after_rw = ["r ", "read ", "w ", "write ", "r!", "w!"]
        .iter()
        .find_map(|p| c.strip_prefix(p))
        .unwrap_or(c)
        .trim_start();
    after_rw.strip_prefix('!').or_else(|| {
        c.find("!")
            .filter(|_| c.starts_with(['%', '.', '\'', '$', '0', '1']))
            .map(|i| &c[i + 1..])
    })
}

impl Checker<'_> {
    /// Programs whose options run a shell command: `tar
    /// --checkpoint-action=exec=…`, `--to-command`, `-I`; an editor's `-c
    /// ':!…'`; `awk`'s `system()` and pipes; `ssh -o ProxyCommand=…`;
    /// `rsync -e`; `zip -TT`. The command is judged like any other.
    pub(crate) fn check_command_options(&mut self, name: &str, rest: &[Arg]) -> Result<(), Denial> {
        let base = name.rsplit('/').next().unwrap_or(name);
        for i in 0..rest.len() {
            let code = match base {
                "tar" | "gtar" | "bsdtar" => {
                    let a = &rest[i].text;
                    if let Some(v) = a
                        .strip_prefix("--checkpoint-action=exec=")
                        .or_else(|| a.strip_prefix("--checkpoint-action=exec:"))
                    {
                        Some(Arg {
                            text: v.to_owned(),
                            ..rest[i].clone()
                        })
                    } else if a == "--checkpoint-action" {
                        rest.get(i + 1).and_then(|n| {
                            n.text.strip_prefix("exec=").map(|v| Arg {
                                text: v.to_owned(),
                                ..n.clone()
                            })
                        })
                    } else {
                        option_value(
                            rest,
                            i,
                            &[
                                "--to-command",
                                "--use-compress-program",
                                "--rsh-command",
                                "--info-script",
                                "--new-volume-script",
                            ],
                            &["-I", "-F"],
                        )
                    }
                }
                "vim" | "vi" | "nvim" | "ex" | "view" | "vimdiff" | "rvim" => {
                    let t = rest[i].text.as_str();
                    let cmd = if let Some(c) = t.strip_prefix('+') {
                        Some(rest[i].clone()).map(|a| Arg {
                            text: c.to_owned(),
                            ..a
                        })
                    } else {
                        option_value(rest, i, &["--cmd"], &["-c"])
                    };
                    cmd.and_then(|c| {
                        editor_shell(&c.text).map(|s| Arg {
                            text: s.to_owned(),
                            ..c.clone()
                        })
                    })
                }
                "ssh" | "scp" | "sftp" => option_value(rest, i, &[], &["-o"]).and_then(|o| {
                    let (k, v) = o.text.split_once(['=', ' '])?;
                    matches!(
                        k.to_ascii_lowercase().as_str(),
                        "proxycommand" | "localcommand" | "knownhostscommand"
                    )
                    .then(|| Arg {
                        text: v.trim().to_owned(),
                        ..o.clone()
                    })
                }),
                "rsync" => option_value(rest, i, &["--rsh", "--rsync-path"], &["-e"]),
                "zip" => option_value(rest, i, &["--unzip-command"], &["-TT"]),
                _ => None,
            };
            if let Some(code) = code {
                self.check_code_arg(&code, &format!("{base} option {}", rest[i].text))
                    .map_err(|d| {
                        wrapped(
                            d,
                            &format!("{base} runs `{}` through its options", code.text),
                        )
                    })?;
            }
        }
        if matches!(base, "awk" | "gawk" | "mawk" | "nawk" | "busybox-awk") {
            self.check_awk(base, rest)?;
        }
        Ok(())
    }

    /// awk's program text: `system("…")` and `print … | "…"` / `"…" | getline`
    /// run shell commands.
    fn check_awk(&mut self, base: &str, rest: &[Arg]) -> Result<(), Denial> {
        let mut i = 0;
        let mut program = None;
        while i < rest.len() {
            let t = rest[i].text.as_str();
            if matches!(
                t,
                "-F" | "-v" | "-f" | "--file" | "--assign" | "--field-separator"
            ) {
                i += 2;
                continue;
            }
            if t.starts_with('-') && t.len() > 1 {
                i += 1;
                continue;
            }
            program = Some(&rest[i]);
            break;
        }
        let Some(p) = program else { return Ok(()) };
        let code = p.text.as_str();
        let mut rest_code = code;
        while let Some(pos) = rest_code.find("system") {
            let after = rest_code[pos + 6..].trim_start();
            rest_code = &rest_code[pos + 6..];
            let Some(args) = after.strip_prefix('(') else {
                continue;
            };
            let inner = args.trim_start();
            match inner
                .strip_prefix('"')
                .and_then(|s| s.find('"').map(|e| &s[..e]))
            {
                Some(lit) if inner[lit.len() + 2..].trim_start().starts_with(')') => {
                    self.check_nested(lit, true).map_err(|d| {
                        wrapped(d, &format!("{base} code runs `{lit}` with system()"))
                    })?;
                }
                _ => {
                    return Err(Denial::new(
                        "dynamic-code",
                        format!("{base} code runs a command built at run time with system()"),
                    ))
                }
            }
        }
        // Pipes to and from commands: `print | "sh"`, `"cmd" | getline`.
        let bytes: Vec<char> = code.chars().collect();
        let mut strings: Vec<(usize, usize, String)> = Vec::new();
        let mut k = 0;
        while k < bytes.len() {
            if bytes[k] == '"' {
                let start = k;
                let mut s = String::new();
                k += 1;
                while k < bytes.len() && bytes[k] != '"' {
                    if bytes[k] == '\\' && k + 1 < bytes.len() {
                        k += 1;
                    }
                    s.push(bytes[k]);
                    k += 1;
                }
                strings.push((start, k, s));
            }
            k += 1;
        }
        for (start, end, s) in strings {
            let before = bytes[..start].iter().rev().find(|c| !c.is_whitespace());
            let after = bytes
                .get(end + 1..)
                .and_then(|r| r.iter().find(|c| !c.is_whitespace()));
            if before == Some(&'|') || after == Some(&'|') {
                let first = s.split_whitespace().next().unwrap_or("");
                let first = first.rsplit('/').next().unwrap_or(first);
                if before == Some(&'|')
                    && (crate::commands::SHELLS.contains(&first)
                        || crate::inline::Lang::of(
                            first.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.'),
                        )
                        .is_some())
                {
                    return Err(Denial::new(
                        "dynamic-code",
                        format!("{base} code pipes its output into `{s}`, which runs it as code"),
                    ));
                }
                self.check_nested(&s, true)
                    .map_err(|d| wrapped(d, &format!("{base} code pipes through `{s}`")))?;
            }
        }
        Ok(())
    }
}

/// A denial of a command found inside another one, keeping its rule:
/// `rule: <where it was found> (<the inner reason>)`.
fn wrapped(d: Denial, how: &str) -> Denial {
    if d.rule == "dynamic-code" || d.rule == "parse-error" {
        return d;
    }
    Denial {
        reason: format!("{}: {how} ({})", d.rule, d.reason),
        rule: d.rule,
    }
}
