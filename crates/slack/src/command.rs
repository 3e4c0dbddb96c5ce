//! The `/agent` slash command: the form Slack posts, and the text after
//! `/agent`.
//!
//! ```
//! use errand_slack::{parse_agent_text, AgentCommand};
//! let cmd = parse_agent_text("--push <https://github.com/acme/widgets|acme/widgets> fix the “flaky” test").unwrap();
//! let AgentCommand::Run(run) = cmd else { panic!() };
//! assert_eq!(run.repo, "acme/widgets");
//! assert!(run.push);
//! assert_eq!(run.instruction, "fix the \"flaky\" test");
//! ```

use serde::{Deserialize, Serialize};

use crate::error::PayloadError;
use crate::text;

pub use crate::replay::ReplayGuard;

/// A slash-command request (`application/x-www-form-urlencoded`), see
/// <https://api.slack.com/interactivity/slash-commands>.
///
/// Authorize on `team_id` + `user_id`, never on `user_name`. The legacy
/// verification `token` field is ignored: verify the signature instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashCommand {
    /// Workspace id (`T…`).
    pub team_id: String,
    /// Workspace subdomain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_domain: Option<String>,
    /// Enterprise Grid org id (`E…`), when installed org-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_id: Option<String>,
    /// Channel the command was typed in (`C…`, `G…`, `D…`).
    pub channel_id: String,
    /// Channel name (informational only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_name: Option<String>,
    /// The invoking user (`U…`/`W…`).
    pub user_id: String,
    /// The invoking user's name (informational only; never authorize on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The command, e.g. `/agent`.
    pub command: String,
    /// Everything after the command (may be empty); raw Slack text.
    #[serde(default)]
    pub text: String,
    /// URL for delayed responses (up to 5 within 30 minutes).
    pub response_url: String,
    /// Short-lived id for opening modals; also the replay key.
    pub trigger_id: String,
    /// The Slack app id (`A…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_app_id: Option<String>,
}

#[derive(Deserialize)]
struct RawSlashCommand {
    team_id: Option<String>,
    team_domain: Option<String>,
    enterprise_id: Option<String>,
    channel_id: Option<String>,
    channel_name: Option<String>,
    user_id: Option<String>,
    user_name: Option<String>,
    command: Option<String>,
    text: Option<String>,
    response_url: Option<String>,
    trigger_id: Option<String>,
    api_app_id: Option<String>,
}

fn required(value: Option<String>, name: &'static str) -> Result<String, PayloadError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(PayloadError::MissingField(name)),
    }
}

fn optional(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl SlashCommand {
    /// Decodes the raw form body. Verify the signature over the same bytes
    /// first. Unknown fields are ignored; a missing or empty required field
    /// is [`PayloadError::MissingField`]; `text` may be absent (= empty).
    pub fn from_form(body: &[u8]) -> Result<Self, PayloadError> {
        let raw: RawSlashCommand =
            serde_urlencoded::from_bytes(body).map_err(|e| PayloadError::Form(e.to_string()))?;
        Ok(SlashCommand {
            team_id: required(raw.team_id, "team_id")?,
            team_domain: optional(raw.team_domain),
            enterprise_id: optional(raw.enterprise_id),
            channel_id: required(raw.channel_id, "channel_id")?,
            channel_name: optional(raw.channel_name),
            user_id: required(raw.user_id, "user_id")?,
            user_name: optional(raw.user_name),
            command: required(raw.command, "command")?,
            text: raw.text.unwrap_or_default(),
            response_url: required(raw.response_url, "response_url")?,
            trigger_id: required(raw.trigger_id, "trigger_id")?,
            api_app_id: optional(raw.api_app_id),
        })
    }

    /// [`parse_agent_text`] on this command's text.
    pub fn agent_command(&self) -> Result<AgentCommand, UsageError> {
        parse_agent_text(&self.text)
    }
}

/// What the person asked for with `/agent …`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentCommand {
    /// `/agent`, `/agent help`: show [`usage`].
    Help,
    /// `/agent status`: list runs.
    Status,
    /// `/agent cancel ID`.
    Cancel {
        /// The run id as typed (a leading `#` removed).
        id: String,
    },
    /// `/agent [options] owner/repo instruction…`.
    Run(RunRequest),
}

/// A request to start a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// `--push`: push the branch and open a pull request.
    pub push: bool,
    /// `--harness NAME`.
    pub harness: Option<String>,
    /// `--model NAME`.
    pub model: Option<String>,
    /// `--base BRANCH`.
    pub base: Option<String>,
    /// `owner/repo` on GitHub.
    pub repo: String,
    /// What the agent should do, as plain text (Slack markup decoded,
    /// line breaks kept).
    pub instruction: String,
    /// The issue or pull request the text names by its address
    /// (`https://github.com/owner/repo/issues/12`): the run is given its
    /// context. Its host is checked against the configured GitHub by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadUrl>,
}

/// An issue or pull request named by its web address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadUrl {
    /// The address's host, lowercased (`github.com`, a GitHub Enterprise host, with its port if any).
    pub host: String,
    /// The issue or pull request number.
    pub number: u64,
    /// Whether the address is a pull request's (`/pull/N`).
    pub pull_request: bool,
}

/// Why the text after `/agent` could not be understood. `Display` is a
/// one-line message meant for the person (user-typed parts are escaped and
/// shortened, so it is safe to post as Slack text); follow it with
/// [`usage`] if you like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// Options but no repository.
    #[error("missing the repository: write `/agent owner/repo what to do` (try `/agent help`)")]
    MissingRepo,
    /// The repository position does not hold `owner/repo`.
    #[error("`{}` is not a GitHub repository ({reason}); write it as `owner/repo`, e.g. `/agent acme/widgets fix the flaky test`", shown(.value))]
    InvalidRepo {
        /// What was typed.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A repository but nothing to do.
    #[error("tell the agent what to do in {}, e.g. `/agent {} fix the flaky test`", shown(.repo), shown(.repo))]
    MissingInstruction {
        /// The parsed `owner/repo`.
        repo: String,
    },
    /// An option errand does not know.
    #[error("unknown option `{}`; options are --push, --harness NAME, --model NAME and --base BRANCH, before owner/repo", shown(.0))]
    UnknownFlag(String),
    /// An option that needs a value got none.
    #[error("option `{0}` needs a value, e.g. `{0} {example}`", example = value_example(.0))]
    MissingValue(&'static str),
    /// `--push=…`.
    #[error("option `{0}` takes no value")]
    UnexpectedValue(&'static str),
    /// An option's value is malformed.
    #[error("invalid value `{}` for `{flag}`: {reason}", shown(.value))]
    InvalidValue {
        /// The option.
        flag: &'static str,
        /// What was typed.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same option twice.
    #[error("option `{0}` was given twice")]
    DuplicateFlag(&'static str),
    /// `cancel` without an id.
    #[error("which run? write `/agent cancel RUN_ID` (the id is on the run's message)")]
    MissingRunId,
    /// `cancel` with something that is not a run id.
    #[error("`{}` is not a run id; write `/agent cancel RUN_ID`", shown(.0))]
    InvalidRunId(String),
    /// Extra words after `status` or `cancel ID`.
    #[error("`{command}` takes no further arguments, but got `{}`", shown(.extra))]
    UnexpectedArgument {
        /// `status` or `cancel`.
        command: &'static str,
        /// The unexpected text.
        extra: String,
    },
}

/// A typed part as it appears inside a one-line message: line breaks, tabs
/// and other control characters become one space each run (the message must
/// stay one line whatever was typed), then it is cut and escaped.
fn shown(value: &str) -> String {
    let mut flat = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() || c.is_whitespace() {
            if !flat.ends_with(' ') {
                flat.push(' ');
            }
        } else {
            flat.push(c);
        }
    }
    text::escape(&text::truncate(flat.trim(), 60))
}

fn value_example(flag: &str) -> &'static str {
    match flag {
        "--harness" => "claude-code",
        "--model" => "MODEL_NAME",
        "--base" => "main",
        _ => "VALUE",
    }
}

const USAGE: &str = "\
Usage:
  /agent [--push] [--harness NAME] [--model NAME] [--base BRANCH] owner/repo instruction…
      start an agent on owner/repo (options go before the repo)
  /agent [options] [instruction…] https://github.com/owner/repo/issues/N
      start an agent on an issue (or a pull request: …/pull/N), given what it says
  /agent status        list runs
  /agent cancel RUN_ID cancel a run
  /agent help          show this help
Options:
  --push            push the branch and open a pull request
  --harness NAME    which agent CLI to run (also --harness=NAME)
  --model NAME      which model the agent uses
  --base BRANCH     branch to start from (default: the repository's default branch)
Example:
  /agent --push acme/widgets fix the flaky test in tests/api.rs";

/// Help text listing every form of `/agent`, with an example.
pub fn usage() -> &'static str {
    USAGE
}

/// Parses the text after `/agent`:
///
/// - empty, `help`, `--help`, `-h`, `?` → [`AgentCommand::Help`];
/// - `status` → [`AgentCommand::Status`];
/// - `cancel ID` → [`AgentCommand::Cancel`];
/// - otherwise `[--push] [--harness NAME] [--model NAME] [--base BRANCH]
///   owner/repo instruction…` → [`AgentCommand::Run`]. Options only before
///   the repo (`--opt=VALUE` works too; a leading em/en dash typed by
///   autocorrect counts as `--`). The repo may be `owner/repo`, a
///   `https://github.com/owner/repo` URL, or Slack link markup around either.
///
/// Slack markup (links, mentions, `&amp;`-style entities, typographic quotes)
/// is decoded first. Never panics.
pub fn parse_agent_text(text: &str) -> Result<AgentCommand, UsageError> {
    let text = text::normalize(text);
    let Some((first, after_first)) = next_token(&text) else {
        return Ok(AgentCommand::Help);
    };
    match first.to_lowercase().as_str() {
        "help" | "--help" | "-h" | "?" => Ok(AgentCommand::Help),
        "status" => match after_first.trim() {
            "" => Ok(AgentCommand::Status),
            extra => Err(UsageError::UnexpectedArgument {
                command: "status",
                extra: extra.to_string(),
            }),
        },
        "cancel" => parse_cancel(after_first),
        _ => parse_run(&text).map(AgentCommand::Run),
    }
}

/// Splits off the first whitespace-separated token: `(token, rest)`.
fn next_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn parse_cancel(rest: &str) -> Result<AgentCommand, UsageError> {
    let Some((id, extra)) = next_token(rest) else {
        return Err(UsageError::MissingRunId);
    };
    let id = id.strip_prefix('#').unwrap_or(id);
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(UsageError::InvalidRunId(id.to_string()));
    }
    match extra.trim() {
        "" => Ok(AgentCommand::Cancel { id: id.to_string() }),
        extra => Err(UsageError::UnexpectedArgument {
            command: "cancel",
            extra: extra.to_string(),
        }),
    }
}

/// `—push` / `–push` (autocorrected `--`) → `--push`.
fn fix_dashes(token: &str) -> String {
    for dash in ['\u{2014}', '\u{2013}'] {
        if let Some(rest) = token.strip_prefix(dash) {
            return format!(
                "--{}",
                rest.trim_start_matches(['-', '\u{2014}', '\u{2013}'])
            );
        }
    }
    token.to_string()
}

fn parse_run(text: &str) -> Result<RunRequest, UsageError> {
    let mut push = false;
    let mut harness: Option<String> = None;
    let mut model: Option<String> = None;
    let mut base: Option<String> = None;
    let mut rest = text;

    loop {
        let Some((token, after)) = next_token(rest) else {
            return Err(UsageError::MissingRepo);
        };
        let token = fix_dashes(token);
        if !token.starts_with('-') {
            let run = |repo: String, instruction: String, thread: Option<ThreadUrl>| RunRequest {
                push,
                harness: harness.clone(),
                model: model.clone(),
                base: base.clone(),
                repo,
                instruction,
                thread,
            };
            // `/agent https://github.com/o/r/issues/12 [instruction…]`
            if let Some((repo, thread)) = parse_thread_url(&token) {
                let mut instruction = clean_instruction(after);
                if instruction.is_empty() {
                    instruction = default_instruction(&thread);
                }
                return Ok(run(repo, instruction, Some(thread)));
            }
            return match parse_repo(&token) {
                Ok(repo) => {
                    let instruction = clean_instruction(after);
                    if instruction.is_empty() {
                        return Err(UsageError::MissingInstruction { repo });
                    }
                    // An address of an issue of the same repository in the instruction.
                    let thread = instruction
                        .split_whitespace()
                        .filter_map(parse_thread_url)
                        .find(|(r, _)| r.eq_ignore_ascii_case(&repo))
                        .map(|(_, t)| t);
                    Ok(run(repo, instruction, thread))
                }
                // `/agent fix https://github.com/o/r/issues/12`: the address names the repository.
                Err(e) => {
                    let instruction = clean_instruction(rest);
                    match instruction.split_whitespace().find_map(parse_thread_url) {
                        Some((repo, thread)) => Ok(run(repo, instruction, Some(thread))),
                        None => Err(e),
                    }
                }
            };
        }

        let (name, inline_value) = match token.split_once('=') {
            Some((name, value)) => (name.to_lowercase(), Some(value.to_string())),
            None => (token.to_lowercase(), None),
        };
        let flag: &'static str = match name.as_str() {
            "--push" => "--push",
            "--harness" => "--harness",
            "--model" => "--model",
            "--base" => "--base",
            _ => return Err(UsageError::UnknownFlag(name)),
        };
        rest = after;

        if flag == "--push" {
            if inline_value.is_some() {
                return Err(UsageError::UnexpectedValue(flag));
            }
            if push {
                return Err(UsageError::DuplicateFlag(flag));
            }
            push = true;
            continue;
        }

        let value = match inline_value {
            Some(v) => v,
            None => match next_token(rest) {
                Some((v, after_value))
                    if !v.starts_with('-') && !v.starts_with(['\u{2014}', '\u{2013}']) =>
                {
                    rest = after_value;
                    v.to_string()
                }
                _ => return Err(UsageError::MissingValue(flag)),
            },
        };
        if value.is_empty() {
            return Err(UsageError::MissingValue(flag));
        }
        let slot = match flag {
            "--harness" => {
                check_name(flag, &value, 64, b"._-")?;
                &mut harness
            }
            "--model" => {
                check_name(flag, &value, 128, b"._-:/@+")?;
                &mut model
            }
            _ => {
                check_branch(&value)?;
                &mut base
            }
        };
        if slot.is_some() {
            return Err(UsageError::DuplicateFlag(flag));
        }
        *slot = Some(value);
    }
}

fn check_name(flag: &'static str, value: &str, max: usize, extra: &[u8]) -> Result<(), UsageError> {
    let invalid = |reason| UsageError::InvalidValue {
        flag,
        value: value.to_string(),
        reason,
    };
    if value.len() > max {
        return Err(invalid("too long"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("must start with a letter or digit"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        return Err(invalid("use only letters, digits and . _ -"));
    }
    Ok(())
}

/// A conservative subset of `git check-ref-format` for branch names.
fn check_branch(value: &str) -> Result<(), UsageError> {
    let invalid = |reason| UsageError::InvalidValue {
        flag: "--base",
        value: value.to_string(),
        reason,
    };
    if value.len() > 255 {
        return Err(invalid("too long"));
    }
    if value
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Err(invalid(
            "branch names cannot contain spaces or any of ~ ^ : ? * [ \\",
        ));
    }
    if value.starts_with(['-', '/']) || value.ends_with(['/', '.']) || value.ends_with(".lock") {
        return Err(invalid("not a valid branch name"));
    }
    if value == "@" || value.contains("..") || value.contains("//") || value.contains("@{") {
        return Err(invalid("not a valid branch name"));
    }
    if value.split('/').any(|part| part.starts_with('.')) {
        return Err(invalid("branch name parts cannot start with ."));
    }
    Ok(())
}

/// Accepts `owner/repo`, `owner/repo.git`, `https://github.com/owner/repo`
/// (optionally with `www.`, `http`, trailing `/` or `.git`) and returns
/// `owner/repo`.
fn parse_repo(token: &str) -> Result<String, UsageError> {
    let invalid = |reason| UsageError::InvalidRepo {
        value: token.to_string(),
        reason,
    };
    let mut s = token.trim_end_matches([',', ';', ':']);
    // Quotes or code formatting around the repo.
    loop {
        let stripped = ['"', '\'', '`']
            .iter()
            .find_map(|q| s.strip_prefix(*q).and_then(|inner| inner.strip_suffix(*q)));
        match stripped {
            Some(inner) => s = inner,
            None => break,
        }
    }

    let lower = s.to_ascii_lowercase();
    let without_scheme = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let is_url = without_scheme.is_some()
        || lower.starts_with("github.com/")
        || lower.starts_with("www.github.com/");
    if is_url {
        let host_and_path = without_scheme.unwrap_or(&lower);
        let host_len = host_and_path.find('/').unwrap_or(host_and_path.len());
        let host = &host_and_path[..host_len];
        if host != "github.com" && host != "www.github.com" {
            return Err(invalid("only github.com repositories are supported"));
        }
        // Same offsets in the original (case-preserving) string: the prefix
        // we removed is ASCII.
        let path_start = s.len() - host_and_path.len() + host_len;
        s = &s[path_start..];
        s = s.trim_start_matches('/');
        s = s.split(['?', '#']).next().unwrap_or_default();
        s = s.trim_end_matches('/');
    } else if s.contains("://") {
        return Err(invalid("only github.com repositories are supported"));
    }

    let mut parts = s.split('/');
    let (Some(owner), Some(repo), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(if s.contains('/') {
            "expected exactly one `/` between owner and repo"
        } else {
            "expected `owner/repo` before the instruction"
        }));
    };
    let repo = repo.strip_suffix(".git").unwrap_or(repo);

    if owner.is_empty() || owner.len() > 39 {
        return Err(invalid("the owner must be 1–39 characters"));
    }
    if !owner
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || owner.starts_with('-')
    {
        return Err(invalid(
            "the owner may contain only letters, digits and -, not at the start",
        ));
    }
    if repo.is_empty() || repo.len() > 100 {
        return Err(invalid("the repository name must be 1–100 characters"));
    }
    if !repo
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "the repository name may contain only letters, digits, ., _ and -",
        ));
    }
    if repo == "." || repo.contains("..") {
        return Err(invalid("the repository name cannot be . or contain .."));
    }
    Ok(format!("{owner}/{repo}"))
}

/// `http(s)://HOST/owner/repo/issues/N` or `…/pull/N` (anything after the
/// number, a query or a fragment ignored; quotes and trailing punctuation
/// around it too): the repository and the thread. Never panics.
fn parse_thread_url(token: &str) -> Option<(String, ThreadUrl)> {
    let mut s = token.trim_end_matches([',', ';', ':', '.', ')', '>']);
    s = s.trim_start_matches(['(', '<']);
    loop {
        let stripped = ['"', '\'', '`']
            .iter()
            .find_map(|q| s.strip_prefix(*q).and_then(|inner| inner.strip_suffix(*q)));
        match stripped {
            Some(inner) => s = inner,
            None => break,
        }
    }
    let scheme_len = if s
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    {
        8
    } else if s
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
    {
        7
    } else {
        return None;
    };
    let rest = s.get(scheme_len..)?;
    let (host, path) = rest.split_once('/')?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if !host_ok {
        return None;
    }
    let path = path.split(['?', '#']).next()?;
    let mut parts = path.split('/');
    let (owner, repo, kind, number) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let pull_request = match kind {
        "issues" => false,
        "pull" | "pulls" => true,
        _ => return None,
    };
    if number.is_empty() || number.len() > 12 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let repo = parse_repo(&format!("{owner}/{repo}")).ok()?;
    Some((
        repo,
        ThreadUrl {
            host: host.to_ascii_lowercase(),
            number,
            pull_request,
        },
    ))
}

/// The instruction of a command that gives only an issue's or pull request's address.
fn default_instruction(thread: &ThreadUrl) -> String {
    if thread.pull_request {
        format!("Address what pull request #{} asks for.", thread.number)
    } else {
        format!("Resolve issue #{}.", thread.number)
    }
}

/// Trims, and removes one pair of quotes wrapping the whole instruction.
fn clean_instruction(rest: &str) -> String {
    let s = rest.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|i| i.strip_suffix(q)) {
            if !inner.contains(q) {
                return inner.trim().to_string();
            }
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> RunRequest {
        match parse_agent_text(text) {
            Ok(AgentCommand::Run(r)) => r,
            other => panic!("{text:?} → {other:?}"),
        }
    }

    fn err(text: &str) -> UsageError {
        match parse_agent_text(text) {
            Err(e) => e,
            Ok(other) => panic!("{text:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn usage_errors_stay_on_one_line_whatever_was_typed() {
        // Found by the slack fuzz target: `status` followed by a line break
        // and a control character.
        for text in [
            "status\n\u{fffd}\n\u{1e}%",
            "cancel abc\r\nmore",
            "cancel a\u{85}b",
            "--model\tx y\u{2028}z acme/widgets go",
            "--base a\x0bb acme/widgets go",
            "no/\u{7}repo/x\nfix",
        ] {
            let message = err(text).to_string();
            assert!(
                !message.contains(|c: char| c.is_control() || c == '\u{2028}'),
                "{text:?} → {message:?}"
            );
        }
        assert_eq!(
            err("status\n  two\n\nlines").to_string(),
            "`status` takes no further arguments, but got `two lines`"
        );
    }

    const SLACK_FORM: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    #[test]
    fn slash_command_from_slack_example() {
        let c = SlashCommand::from_form(SLACK_FORM.as_bytes()).unwrap();
        assert_eq!(c.team_id, "T1DC2JH3J");
        assert_eq!(c.team_domain.as_deref(), Some("testteamnow"));
        assert_eq!(c.channel_id, "G8PSS9T3V");
        assert_eq!(c.channel_name.as_deref(), Some("foobar"));
        assert_eq!(c.user_id, "U2CERLKJA");
        assert_eq!(c.user_name.as_deref(), Some("roadrunner"));
        assert_eq!(c.command, "/webhook-collect");
        assert_eq!(c.text, "");
        assert_eq!(
            c.response_url,
            "https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rGlfmibIGlgcZRskXaIFfN"
        );
        assert_eq!(
            c.trigger_id,
            "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
        );
        assert_eq!(c.enterprise_id, None);
        assert_eq!(c.api_app_id, None);
        assert_eq!(c.agent_command(), Ok(AgentCommand::Help));
    }

    #[test]
    fn slash_command_text_is_form_decoded() {
        let body = "team_id=T1&channel_id=C1&user_id=U1&command=%2Fagent&text=acme%2Fwidgets+fix+the+%E2%80%9Cflaky%E2%80%9D+test+%26amp%3B+more&response_url=https%3A%2F%2Fhooks.slack.com%2Fx&trigger_id=1.2.3&api_app_id=A1&enterprise_id=";
        let c = SlashCommand::from_form(body.as_bytes()).unwrap();
        assert_eq!(c.text, "acme/widgets fix the “flaky” test &amp; more");
        assert_eq!(c.api_app_id.as_deref(), Some("A1"));
        assert_eq!(c.enterprise_id, None);
        let r = match c.agent_command().unwrap() {
            AgentCommand::Run(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.instruction, "fix the \"flaky\" test & more");
    }

    #[test]
    fn slash_command_missing_fields() {
        for field in [
            "team_id",
            "channel_id",
            "user_id",
            "command",
            "response_url",
            "trigger_id",
        ] {
            let without: Vec<&str> = SLACK_FORM
                .split('&')
                .filter(|kv| !kv.starts_with(&format!("{field}=")))
                .collect();
            let body = without.join("&");
            assert_eq!(
                SlashCommand::from_form(body.as_bytes()),
                Err(PayloadError::MissingField(field)),
                "{field}"
            );
            let emptied = SLACK_FORM.replace(&format!("{field}="), &format!("{field}=&x_{field}="));
            assert_eq!(
                SlashCommand::from_form(emptied.as_bytes()),
                Err(PayloadError::MissingField(field)),
                "{field} empty"
            );
        }
        // `text` may be absent.
        let no_text = SLACK_FORM.replace("text=&", "");
        assert_eq!(
            SlashCommand::from_form(no_text.as_bytes()).unwrap().text,
            ""
        );
    }

    #[test]
    fn slash_command_malformed_bodies() {
        assert_eq!(
            SlashCommand::from_form(b""),
            Err(PayloadError::MissingField("team_id"))
        );
        assert_eq!(
            SlashCommand::from_form(b"{\"team_id\":\"T1\"}"),
            Err(PayloadError::MissingField("team_id"))
        );
        let dup = format!("{SLACK_FORM}&team_id=T2");
        assert!(matches!(
            SlashCommand::from_form(dup.as_bytes()),
            Err(PayloadError::Form(_))
        ));
        // Invalid UTF-8 and stray percent signs are decoded lossily, never panic.
        let _ = SlashCommand::from_form(b"team_id=%ff%fe&text=%&&&==");
        let _ = SlashCommand::from_form(&[0xff, 0xfe, 0x00, b'=', b'&']);
    }

    #[test]
    fn help_status_cancel() {
        for t in [
            "", "   ", "help", "HELP", "--help", "-h", "?", "help me", "\n",
        ] {
            assert_eq!(parse_agent_text(t), Ok(AgentCommand::Help), "{t:?}");
        }
        assert_eq!(parse_agent_text(" status "), Ok(AgentCommand::Status));
        assert_eq!(parse_agent_text("Status"), Ok(AgentCommand::Status));
        assert_eq!(
            parse_agent_text("cancel 7f3a-91"),
            Ok(AgentCommand::Cancel {
                id: "7f3a-91".into()
            })
        );
        assert_eq!(
            parse_agent_text("cancel #42"),
            Ok(AgentCommand::Cancel { id: "42".into() })
        );
        assert_eq!(err("cancel"), UsageError::MissingRunId);
        assert_eq!(err("cancel   "), UsageError::MissingRunId);
        assert_eq!(err("cancel #"), UsageError::InvalidRunId("".into()));
        assert_eq!(err("cancel a/b"), UsageError::InvalidRunId("a/b".into()));
        assert_eq!(
            err("cancel 42 now"),
            UsageError::UnexpectedArgument {
                command: "cancel",
                extra: "now".into()
            }
        );
        assert_eq!(
            err("status of everything"),
            UsageError::UnexpectedArgument {
                command: "status",
                extra: "of everything".into()
            }
        );
    }

    #[test]
    fn run_minimal() {
        assert_eq!(
            run("acme/widgets fix the flaky test"),
            RunRequest {
                push: false,
                harness: None,
                model: None,
                base: None,
                repo: "acme/widgets".into(),
                instruction: "fix the flaky test".into(),
                thread: None,
            }
        );
    }

    #[test]
    fn issue_and_pull_request_addresses_name_the_repository_and_the_thread() {
        let r = run("fix https://github.com/o/r/issues/12");
        assert_eq!(r.repo, "o/r");
        assert_eq!(r.instruction, "fix https://github.com/o/r/issues/12");
        let t = r.thread.expect("a thread");
        assert_eq!(
            (t.host.as_str(), t.number, t.pull_request),
            ("github.com", 12, false)
        );
        let r = run("--push https://GHE.example:8443/Acme/widgets/pull/7/files?x=1#y");
        assert!(r.push);
        assert_eq!(r.repo, "Acme/widgets");
        assert_eq!(r.instruction, "Address what pull request #7 asks for.");
        let t = r.thread.expect("a thread");
        assert_eq!(
            (t.host.as_str(), t.number, t.pull_request),
            ("ghe.example:8443", 7, true)
        );
        // Slack's link markup, and an address in the instruction of a named repository.
        let r = run("acme/widgets please look at <https://github.com/acme/widgets/issues/3>");
        assert_eq!(r.thread.map(|t| t.number), Some(3));
        let r = run("acme/widgets see https://github.com/other/repo/issues/3");
        assert_eq!(
            r.thread, None,
            "another repository's issue is not this run's thread"
        );
        // Not a thread's address: the usual errors, on one line.
        for text in [
            "fix https://github.com/o/r/blob/main/x",
            "fix https://github.com/o/r/issues/0",
            "fix https://github.com/o/r/issues/+1",
            "fix https://github.com/../r/issues/1",
            "fix https:///o/r/issues/1",
        ] {
            let e = err(text).to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn run_with_all_options() {
        let r = run("--push --harness codex --model=gpt-5.1-codex --base release/1.2 acme/widgets.rs fix it");
        assert!(r.push);
        assert_eq!(r.harness.as_deref(), Some("codex"));
        assert_eq!(r.model.as_deref(), Some("gpt-5.1-codex"));
        assert_eq!(r.base.as_deref(), Some("release/1.2"));
        assert_eq!(r.repo, "acme/widgets.rs");
        assert_eq!(r.instruction, "fix it");

        let r = run("--harness=claude-code --model anthropic/claude-sonnet-4@2025 o/r x");
        assert_eq!(r.harness.as_deref(), Some("claude-code"));
        assert_eq!(r.model.as_deref(), Some("anthropic/claude-sonnet-4@2025"));
        assert!(!r.push);
    }

    #[test]
    fn autocorrected_dashes_count_as_double_dash() {
        let r = run("—push –harness codex o/r go");
        assert!(r.push);
        assert_eq!(r.harness.as_deref(), Some("codex"));
    }

    #[test]
    fn options_after_the_repo_are_instruction_text() {
        let r = run("o/r run cargo test --push");
        assert!(!r.push);
        assert_eq!(r.instruction, "run cargo test --push");
    }

    #[test]
    fn instruction_keeps_line_breaks_and_decodes_markup() {
        let r = run("o/r  first line\nsecond &lt;line&gt; see <https://ci.example.com/1|ci>  ");
        assert_eq!(
            r.instruction,
            "first line\nsecond <line> see https://ci.example.com/1"
        );
        let r = run("o/r “fix the test”");
        assert_eq!(r.instruction, "fix the test");
        let r = run("o/r \"a\" and \"b\"");
        assert_eq!(r.instruction, "\"a\" and \"b\"");
    }

    #[test]
    fn repo_forms() {
        for (input, want) in [
            ("acme/widgets", "acme/widgets"),
            ("Acme-Co/My_Repo.js", "Acme-Co/My_Repo.js"),
            ("acme/widgets.git", "acme/widgets"),
            (
                "<https://github.com/acme/widgets|acme/widgets>",
                "acme/widgets",
            ),
            ("<https://github.com/acme/widgets>", "acme/widgets"),
            ("https://github.com/acme/widgets", "acme/widgets"),
            ("https://github.com/acme/widgets/", "acme/widgets"),
            ("https://github.com/acme/widgets.git", "acme/widgets"),
            (
                "http://www.github.com/Acme/Widgets?tab=readme#top",
                "Acme/Widgets",
            ),
            ("HTTPS://GitHub.com/Acme/Widgets", "Acme/Widgets"),
            (
                "<http://github.com/acme/widgets|github.com/acme/widgets>",
                "acme/widgets",
            ),
            ("github.com/acme/widgets", "acme/widgets"),
            ("`acme/widgets`", "acme/widgets"),
            ("“acme/widgets”", "acme/widgets"),
            ("acme/widgets:", "acme/widgets"),
        ] {
            assert_eq!(run(&format!("{input} do it")).repo, want, "{input:?}");
        }
    }

    #[test]
    fn bad_repos() {
        for input in [
            "widgets",
            "acme/widgets/extra",
            "https://github.com/acme/widgets/tree/3",
            "https://github.com/acme",
            "https://gitlab.com/acme/widgets",
            "<https://example.com/acme/widgets|acme/widgets>",
            "ssh://git@github.com/acme/widgets",
            "/widgets",
            "acme/",
            "https://github.com/-acme/widgets",
            "ac_me/widgets",
            "acme/wid%20gets",
            "acme/..",
            "acme/.",
            "acme/a..b",
            "acme/.git",
            "acme/wid$gets",
            "acme/wïdgets",
            "0123456789012345678901234567890123456789/r",
        ] {
            let e = err(&format!("{input} do it"));
            assert!(
                matches!(e, UsageError::InvalidRepo { .. }),
                "{input:?} → {e:?}"
            );
        }
    }

    #[test]
    fn usage_errors() {
        assert_eq!(err("--push"), UsageError::MissingRepo);
        assert_eq!(err("--base main"), UsageError::MissingRepo);
        assert_eq!(
            err("acme/widgets"),
            UsageError::MissingInstruction {
                repo: "acme/widgets".into()
            }
        );
        assert_eq!(
            err("acme/widgets   \"\""),
            UsageError::MissingInstruction {
                repo: "acme/widgets".into()
            }
        );
        assert_eq!(
            err("--force o/r x"),
            UsageError::UnknownFlag("--force".into())
        );
        assert_eq!(err("-p o/r x"), UsageError::UnknownFlag("-p".into()));
        assert_eq!(
            err("-acme/widgets x"),
            UsageError::UnknownFlag("-acme/widgets".into())
        );
        assert_eq!(err("--harness"), UsageError::MissingValue("--harness"));
        assert_eq!(
            err("--harness= o/r x"),
            UsageError::MissingValue("--harness")
        );
        assert_eq!(
            err("--model --push o/r x"),
            UsageError::MissingValue("--model")
        );
        assert_eq!(
            err("--push=yes o/r x"),
            UsageError::UnexpectedValue("--push")
        );
        assert_eq!(
            err("--push --push o/r x"),
            UsageError::DuplicateFlag("--push")
        );
        assert_eq!(
            err("--harness a --harness=b o/r x"),
            UsageError::DuplicateFlag("--harness")
        );
        for bad_base in [
            "-x", "a..b", "a.lock", "a/", "x^", "a:b", "@", "a@{1}", ".hidden", "a/.b", "a//b",
            "b~",
        ] {
            let e = err(&format!("--base={bad_base} o/r x"));
            assert!(
                matches!(e, UsageError::InvalidValue { flag: "--base", .. }),
                "{bad_base:?} → {e:?}"
            );
        }
        assert!(matches!(
            err("--harness ../../bin o/r x"),
            UsageError::InvalidValue {
                flag: "--harness",
                ..
            }
        ));
        assert!(matches!(
            err("--model 'x' o/r x"),
            UsageError::InvalidValue {
                flag: "--model",
                ..
            }
        ));
    }

    #[test]
    fn error_messages_are_helpful_and_escaped() {
        let msg = err("--frobnicate o/r x").to_string();
        assert!(
            msg.contains("--frobnicate") && msg.contains("--push"),
            "{msg}"
        );
        let msg = err("--harness").to_string();
        assert_eq!(
            msg,
            "option `--harness` needs a value, e.g. `--harness claude-code`"
        );
        let msg = err("fix the flaky test").to_string();
        assert!(msg.contains("`fix`") && msg.contains("owner/repo"), "{msg}");
        // User text that would be markup is escaped back.
        let msg = err("&lt;!channel&gt; hi").to_string();
        assert!(msg.contains("&lt;!channel&gt;"), "{msg}");
        assert!(!msg.contains("<!channel>"), "{msg}");
        let long = format!("--{} o/r x", "x".repeat(500));
        assert!(err(&long).to_string().len() < 250);
        for e in [
            err("--push"),
            err("o/r"),
            err("cancel"),
            err("--push=1 o/r x"),
        ] {
            let m = e.to_string();
            assert!(!m.contains('\n'), "{m}");
        }
    }

    #[test]
    fn usage_lists_every_form() {
        let u = usage();
        for needle in [
            "--push",
            "--harness",
            "--model",
            "--base",
            "owner/repo",
            "status",
            "cancel",
            "help",
            "Example",
        ] {
            assert!(u.contains(needle), "{needle}");
        }
    }

    #[test]
    fn nasty_inputs_never_panic() {
        let long_a = "a".repeat(100_000);
        let many_flags = "--push ".repeat(1000);
        let nested = "<".repeat(5000) + &">".repeat(5000);
        let nasty: Vec<String> = vec![
            "".into(),
            " ".into(),
            "\0".into(),
            "\u{FEFF}".into(),
            "\u{200B}o/r\u{200B} x".into(),
            "/".into(),
            "//".into(),
            "o/".into(),
            "/r x".into(),
            "--".into(),
            "---".into(),
            "-".into(),
            "—".into(),
            "–".into(),
            "—— o/r x".into(),
            "--=".into(),
            "--harness=".into(),
            "--harness=--model".into(),
            "=".into(),
            "<".into(),
            ">".into(),
            "<>".into(),
            "<|>".into(),
            "<https://github.com/|>".into(),
            "<https://github.com/o/r|".into(),
            "https://".into(),
            "https://github.com".into(),
            "https://github.com/".into(),
            "https://github.com//r x".into(),
            "https://github.com/o/r/ x".into(),
            "http://github.com:443/o/r x".into(),
            "&amp;&lt;&gt;&".into(),
            "&lt;@U123&gt; o/r x".into(),
            "cancel \u{1F600}".into(),
            "\u{1F600}/\u{1F600} \u{1F600}".into(),
            "o/r \u{1F600}".into(),
            "ö/ü x".into(),
            "o/r.git.git x".into(),
            "\"\" o/r".into(),
            "\"o/r x".into(),
            "'".into(),
            "`".into(),
            "``".into(),
            "o/r \"".into(),
            "--base=é o/r x".into(),
            "--model=\u{0301} o/r x".into(),
            "\u{0301}\u{0301}".into(),
            "\r\n\t".into(),
            "status\0".into(),
            "cancel\u{00A0}42".into(),
            long_a.clone(),
            format!("o/{long_a} x"),
            format!("{long_a}/r x"),
            format!("o/r {long_a}"),
            many_flags,
            nested,
            "%00%ff o/r x".into(),
            "\u{2028}o/r\u{2029}x".into(),
        ];
        assert!(nasty.len() >= 30);
        for input in &nasty {
            let result = std::panic::catch_unwind(|| parse_agent_text(input));
            let result =
                result.unwrap_or_else(|_| panic!("panicked on {:?}", text::truncate(input, 80)));
            if let Err(e) = result {
                // Every error renders to a non-empty, single-line message.
                let msg = e.to_string();
                assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
            }
        }
    }
}
