//! The run: its specification, its identity and its state machine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A run's identity: a random UUID, shown and accepted in its 8-character short form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub uuid::Uuid);

impl RunId {
    /// A new random id.
    pub fn new() -> Self {
        RunId(uuid::Uuid::new_v4())
    }
    /// The first eight hex digits: used in branch names and terminal output.
    pub fn short(&self) -> String {
        self.0.simple().to_string()[..8].to_string()
    }
    /// The branch a run works on: `errand/<short-id>`.
    pub fn branch(&self) -> String {
        format!("errand/{}", self.short())
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(RunId)
    }
}

/// Where the code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "location")]
pub enum RepoSource {
    /// A path on this machine (made absolute before it is stored).
    Local(String),
    /// A `file://`, `https://` or `http://` URL.
    Url(String),
    /// `owner/repo` on the configured GitHub (through the GitHub App: errand
    /// mints a token scoped to this one repository for each run).
    Github(String),
}

impl RepoSource {
    /// Classifies what a user typed after `--repo`.
    pub fn parse(input: &str) -> RepoSource {
        let lower = input.to_ascii_lowercase();
        if let Some(full) = input
            .strip_prefix("github:")
            .or_else(|| input.strip_prefix("gh:"))
        {
            RepoSource::Github(full.trim_end_matches(".git").to_string())
        } else if lower.starts_with("file://")
            || lower.starts_with("https://")
            || lower.starts_with("http://")
            || lower.starts_with("ssh://")
            || lower.starts_with("git@")
        {
            RepoSource::Url(input.to_string())
        } else {
            RepoSource::Local(input.to_string())
        }
    }

    /// The form [`RepoSource::parse`] reads back as this source
    /// (`github:owner/repo` for GitHub), as `--repo` and the API's `repo` take it.
    pub fn input(&self) -> String {
        match self {
            RepoSource::Github(full) => format!("github:{full}"),
            RepoSource::Local(p) | RepoSource::Url(p) => p.clone(),
        }
    }

    /// What git is given to clone from.
    pub fn location(&self) -> &str {
        match self {
            RepoSource::Local(p) | RepoSource::Url(p) | RepoSource::Github(p) => p,
        }
    }
}

impl RepoSource {
    /// `(owner, repo)` of a GitHub source.
    pub fn github(&self) -> Option<(&str, &str)> {
        match self {
            RepoSource::Github(full) => full.split_once('/'),
            _ => None,
        }
    }
}

impl fmt::Display for RepoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.location())
    }
}

/// Everything a run needs to be started; fixed once the run is queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// `None` starts an empty project with git initialised.
    pub repo: Option<RepoSource>,
    /// The instruction given to the agent.
    pub prompt: String,
    /// The harness that runs the agent (`claude`, `codex` …).
    pub harness: String,
    /// `None` lets the harness use its own default model.
    pub model: Option<String>,
    /// Push the run's branch to the repo's remote when the run succeeds.
    pub push: bool,
    /// Branch to start from; `None` means the remote's default branch.
    pub base_branch: Option<String>,
    /// How long the run may take, in seconds.
    pub timeout_secs: u64,
    /// The most turns the agent may take.
    pub max_turns: u32,
    /// Start from exactly this commit (fan-out runs share one), not the branch's tip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    /// The repository's own test command, run in the sandbox after the agent finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_command: Option<String>,
    /// The sandbox backend asked for by name (`local`, `docker`, …); `None`:
    /// the server's `sandbox.backend`. A follow-up stays on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Runs started together (`--harness a,b`) share a group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Who asked for the run, as the trigger names them (`slack:T1/U2`,
    /// `github:octocat`, `api:token-name`, `cli:alice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// Where the request came from, so errand can answer there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// The agent may fetch and push the run's repository itself (`github:`
    /// repositories only): git in the sandbox reaches it only through errand's
    /// git proxy, which holds the token outside the sandbox and lets it push
    /// the run's branch (and [`RunSpec::agent_branches`]) alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent_git: bool,
    /// With `agent_git`: other branches the agent may push besides the run's
    /// own (never the default branch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_branches: Vec<String>,
    /// With `agent_git`: the agent may rewrite (force-push) the branches it
    /// may push. Deletions stay refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_force_push: bool,
    /// The most the run's model requests may cost, in US dollars, as metered
    /// by errand's model gateway (`--max-cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// The most tokens (input, output and cache) the run's model requests may
    /// use, as metered by the gateway (`--max-tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// The models this run may use, from the access rule that let it start
    /// (exact names or prefixes ending in `*`); empty: the configuration's list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_models: Vec<String>,
    /// The forge issue or pull request the run was asked for in: its
    /// context (title, body, labels, discussion …) is gathered into the
    /// agent's instruction, and for a pull request the run may work on its branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadRef>,
}

/// An issue or pull request a run was asked for in ([`RunSpec::thread`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadRef {
    /// Its number in the run's repository.
    pub number: u64,
    /// Whether it is a pull request.
    #[serde(default)]
    pub pull_request: bool,
    /// The comment that asked for the run (its whole text, someone else's
    /// words: the agent gets it as data, marked as the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Its author's login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_author: Option<String>,
    /// The comment's id, so it is not repeated among the discussion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u64>,
    /// For a review comment: the file, lines and diff hunk it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewSpot>,
    /// Work on this existing branch of the repository (the pull request's
    /// head): start from its tip, push there, open no second change request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_branch: Option<String>,
}

/// Where a review comment is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSpot {
    /// The file.
    pub path: String,
    /// The first line of a multi-line comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u64>,
    /// The (last) line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// `RIGHT` (the change) or `LEFT` (the base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// The diff around the lines.
    #[serde(default)]
    pub diff_hunk: String,
}

/// Why a name cannot be a branch the agent pushes.
pub fn check_branch_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 200
        || name.starts_with(['-', '/', '.'])
        || name.ends_with(['/', '.'])
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name.contains("/.")
        || name == "@"
        || name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        return Err(format!("`{name}` is not a valid branch name"));
    }
    if name.starts_with("refs/") || name == "HEAD" {
        return Err(format!(
            "`{name}` is not a branch name: give the short name (e.g. `errand/feature`)"
        ));
    }
    Ok(())
}

/// Where a run was asked for. errand reports back to the same place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The command line.
    Cli {
        /// The user who ran it.
        user: String,
    },
    /// The HTTP API.
    Api {
        /// The name of the API token used.
        token: String,
    },
    /// A Slack slash command: the run's message is `message_ts` in `channel`
    /// (set once posted); follow-ups arrive as replies in that thread.
    Slack {
        /// The workspace (team) id.
        team: String,
        /// The channel the command was given in.
        channel: String,
        /// The user who gave it.
        user: String,
        /// The timestamp of errand's message about the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_ts: Option<String>,
    },
    /// An `@errand` comment on an issue or pull request.
    Github {
        /// The repository's owner.
        owner: String,
        /// The repository's name.
        repo: String,
        /// The issue or pull request number.
        issue: u64,
        /// Who wrote the comment.
        author: String,
        /// errand's comment there that it edits with the run's state (set once posted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_comment: Option<u64>,
    },
}

/// How a request names its options when errand says what is wrong with them:
/// the command line's flags or the API's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// As command-line flags (`--agent-git`).
    Flags,
    /// As API fields (`agent_git`).
    Fields,
}

impl Naming {
    fn name(self, flag: &'static str, field: &'static str) -> &'static str {
        match self {
            Naming::Flags => flag,
            Naming::Fields => field,
        }
    }
}

impl RunSpec {
    /// The timeout of a run that sets none: 30 minutes.
    pub const DEFAULT_TIMEOUT_SECS: u64 = 30 * 60;

    /// Whether the run's push options fit together: a push needs a
    /// repository; `agent_branches` and `allow_force_push` need `agent_git`,
    /// whose repository must be GitHub's; branch names must be branch names.
    /// The message names the options as `naming` does.
    pub fn check_push_options(&self, naming: Naming) -> Result<(), String> {
        let n = |flag, field| naming.name(flag, field);
        if self.push && self.repo.is_none() {
            return Err(format!(
                "{} needs {}: a run without a repository has nowhere to push",
                n("--push", "push"),
                n("--repo", "repo")
            ));
        }
        if !self.agent_git && (!self.agent_branches.is_empty() || self.allow_force_push) {
            return Err(format!(
                "{} and {} need {}: they say what the agent may push itself",
                n("--agent-branch", "agent_branches"),
                n("--allow-force-push", "allow_force_push"),
                n("--agent-git", "agent_git")
            ));
        }
        for name in &self.agent_branches {
            check_branch_name(name)
                .map_err(|e| format!("{}: {e}", n("--agent-branch", "agent_branches")))?;
        }
        if self.agent_git && self.repo.as_ref().is_none_or(|r| r.github().is_none()) {
            return Err(format!(
                "{} needs a github: repository: errand hands the agent a token only for its GitHub App",
                n("--agent-git", "agent_git")
            ));
        }
        Ok(())
    }
    /// The turn limit of a run that sets none.
    pub const DEFAULT_MAX_TURNS: u32 = 50;

    /// A spec for `prompt` on `harness`, with no repository and the defaults.
    pub fn new(prompt: impl Into<String>, harness: impl Into<String>) -> Self {
        RunSpec {
            repo: None,
            prompt: prompt.into(),
            harness: harness.into(),
            model: None,
            push: false,
            base_branch: None,
            timeout_secs: Self::DEFAULT_TIMEOUT_SECS,
            max_turns: Self::DEFAULT_MAX_TURNS,
            base_commit: None,
            test_command: None,
            group: None,
            sandbox: None,
            requested_by: None,
            origin: None,
            agent_git: false,
            agent_branches: Vec::new(),
            allow_force_push: false,
            max_cost_usd: None,
            max_tokens: None,
            allowed_models: Vec::new(),
            thread: None,
        }
    }
}

/// The states of a run.
///
/// ```text
/// queued → preparing → running → finishing → succeeded
///    │          │          │          │
///    └──────────┴──────────┴──────────┴──→ failed | cancelled | timed_out
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting to start.
    Queued,
    /// Getting ready: checking the settings, cloning the repository, setting up the sandbox.
    Preparing,
    /// The agent is working.
    Running,
    /// Collecting the agent's work (commit, diff, tests, push).
    Finishing,
    /// Finished with the agent's work collected.
    Succeeded,
    /// Stopped by an error.
    Failed,
    /// Stopped on request.
    Cancelled,
    /// Stopped at its timeout.
    TimedOut,
}

impl RunState {
    /// Every state, in the order of the diagram above.
    pub const ALL: [RunState; 8] = [
        RunState::Queued,
        RunState::Preparing,
        RunState::Running,
        RunState::Finishing,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::TimedOut,
    ];

    /// The state's name, as stored and shown (`timed_out`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Preparing => "preparing",
            RunState::Running => "running",
            RunState::Finishing => "finishing",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::TimedOut => "timed_out",
        }
    }

    /// Whether the run is over: succeeded, failed, cancelled or timed out.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled | RunState::TimedOut
        )
    }

    /// Whether the state machine allows `self → next`.
    pub fn can_move_to(self, next: RunState) -> bool {
        use RunState::*;
        match (self, next) {
            (Queued, Preparing) | (Preparing, Running) | (Running, Finishing) => true,
            (Finishing, Succeeded) => true,
            (from, Failed | Cancelled | TimedOut) => !from.is_terminal(),
            _ => false,
        }
    }

    /// Checks a transition; the error names both ends so a bug is easy to find.
    pub fn transition(self, next: RunState) -> Result<RunState, InvalidTransition> {
        if self.can_move_to(next) {
            Ok(next)
        } else {
            Err(InvalidTransition {
                from: self,
                to: next,
            })
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown run state '{s}'"))
    }
}

/// A state change the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a run cannot move from {from} to {to}")]
pub struct InvalidTransition {
    /// The state the run was in.
    pub from: RunState,
    /// The state it was asked to move to.
    pub to: RunState,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The state entered.
    pub state: RunState,
    /// When.
    pub at: DateTime<Utc>,
    /// For failures, cancels and timeouts: what happened and what to do about it.
    pub reason: Option<String>,
}

/// What a finished (or running) run produced so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    /// The run's branch.
    pub branch: Option<String>,
    /// The branch's last commit.
    pub commit: Option<String>,
    /// `git diff --shortstat` of the run's change.
    pub diffstat: Option<String>,
    /// Whether errand pushed the branch.
    pub pushed: bool,
    /// How many turns the agent took.
    pub turns: Option<u32>,
    /// Input tokens used, as the harness reports them.
    pub input_tokens: Option<u64>,
    /// Output tokens used.
    pub output_tokens: Option<u64>,
    /// Cost in US dollars, when known.
    pub cost_usd: Option<f64>,
    /// The agent's final message.
    pub result_text: Option<String>,
    /// The harness's session id.
    pub session_id: Option<String>,
    /// Whether the spec's test command passed after the agent finished.
    pub tests_passed: Option<bool>,
    /// The pull request errand opened for the run's branch.
    pub pr_url: Option<String>,
    /// Tokens read from the prompt cache (metered runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u64>,
    /// Tokens written to the prompt cache (metered runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// The tokens and cost above come from errand's model gateway, which read
    /// them from the provider's own answers; `false`: from the harness's report.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub metered: bool,
    /// On a metered run, what the harness itself reported, kept beside the
    /// gateway's figures (the viewer shows both when they differ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harness_usage: Option<crate::Usage>,
    /// How many model requests the gateway forwarded (metered runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_requests: Option<u64>,
    /// The branch the run's branch was made from (and a change request for it
    /// would merge into).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    /// In a fan-out group: `true` for the run picked as the group's result,
    /// `false` for the others, once one was picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picked: Option<bool>,
}

/// A run as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// What was asked for.
    pub spec: RunSpec,
    /// Where the run is now.
    pub state: RunState,
    /// The latest reason recorded with a state change (why it failed …).
    pub reason: Option<String>,
    /// When the run was queued.
    pub created_at: DateTime<Utc>,
    /// When it started preparing.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// What it produced so far.
    pub summary: RunSummary,
    /// Someone asked for the run to be cancelled.
    pub cancel_requested: bool,
    /// Process id of the errand process that executes the run, while it does.
    pub owner_pid: Option<u32>,
    /// When retention removed the run's workspace (and its agent's home); a
    /// follow-up re-creates it from the run's branch. `None`: still on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_pruned_at: Option<DateTime<Utc>>,
    /// When retention removed the run's event and raw logs. `None`: kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_pruned_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// How long the run took since it started (so far, while it is not over).
    pub fn duration(&self) -> Option<chrono::Duration> {
        let start = self.started_at?;
        Some(self.finished_at.unwrap_or_else(Utc::now) - start)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn branch_names_the_agent_may_push_are_checked() {
        for ok in ["errand/feature", "topic", "user/fix-1.2"] {
            assert!(check_branch_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-f",
            "a..b",
            "a b",
            "x.lock",
            "a:b",
            "HEAD",
            "refs/heads/x",
            "a/",
            "/a",
            "a~1",
            "a^",
            "a@{1}",
            "a\\b",
            ".hidden",
            "a/.b",
        ] {
            assert!(check_branch_name(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn happy_path_is_allowed_in_order_only() {
        use RunState::*;
        let path = [Queued, Preparing, Running, Finishing, Succeeded];
        for w in path.windows(2) {
            assert!(w[0].can_move_to(w[1]), "{} -> {}", w[0], w[1]);
        }
        assert!(!Queued.can_move_to(Running));
        assert!(!Running.can_move_to(Succeeded));
        assert!(!Succeeded.can_move_to(Failed));
        assert!(!Failed.can_move_to(Running));
    }

    #[test]
    fn every_live_state_can_fail_cancel_or_time_out() {
        for s in RunState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            for end in [RunState::Failed, RunState::Cancelled, RunState::TimedOut] {
                assert!(s.transition(end).is_ok(), "{s} -> {end}");
            }
        }
        let err = RunState::Cancelled
            .transition(RunState::Failed)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a run cannot move from cancelled to failed"
        );
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("done".parse::<RunState>().is_err());
    }

    #[test]
    fn repo_sources_are_classified() {
        assert_eq!(RepoSource::parse("../p"), RepoSource::Local("../p".into()));
        assert_eq!(
            RepoSource::parse("file:///tmp/x.git"),
            RepoSource::Url("file:///tmp/x.git".into())
        );
        assert_eq!(
            RepoSource::parse("https://host/o/r.git"),
            RepoSource::Url("https://host/o/r.git".into())
        );
        let gh = RepoSource::parse("github:octo/site");
        assert_eq!(gh, RepoSource::Github("octo/site".into()));
        assert_eq!(gh.github(), Some(("octo", "site")));
        assert_eq!(gh.location(), "octo/site");
        assert_eq!(RepoSource::parse("gh:octo/site.git"), gh);
        // Stored specs keep their shape.
        let json = serde_json::to_string(&gh).unwrap();
        assert_eq!(json, r#"{"kind":"github","location":"octo/site"}"#);
    }

    #[test]
    fn agent_git_is_off_unless_stored() {
        let mut spec = RunSpec::new("p", "claude-code");
        let json = serde_json::to_value(&spec).unwrap();
        assert!(json.get("agent_git").is_none(), "{json}");
        let back: RunSpec = serde_json::from_value(json).unwrap();
        assert!(!back.agent_git);
        spec.agent_git = true;
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["agent_git"], true);
        assert_eq!(serde_json::from_value::<RunSpec>(json).unwrap(), spec);
    }

    #[test]
    fn short_ids_name_branches() {
        let id: RunId = "3f2a9c1b0000400080000000000000aa".parse().unwrap();
        assert_eq!(id.short(), "3f2a9c1b");
        assert_eq!(id.branch(), "errand/3f2a9c1b");
    }
}
