//! Who may start runs from Slack and GitHub, on which repositories, and
//! whether they may push. Configured as `[[access]]` rules; anything no rule
//! allows is refused with a message that says why.
//!
//! ```toml
//! [[access]]
//! slack_team = "T0123"          # this workspace …
//! slack_channels = ["C0456"]    # … in these channels (empty: any channel)
//! slack_users = []              # … by these users (empty: anyone there)
//! repos = ["acme/*", "tools/cli"]
//! push = true                   # may push a branch and open a pull request
//!
//! [[access]]
//! github_users = ["octocat"]    # `@errand …` comments by these GitHub users
//! repos = ["acme/widgets"]
//! push = true
//! ```
//!
//! A rule applies to Slack requests only if it names a Slack team, channel or
//! user, and to GitHub comments only if it names GitHub users (`"*"` is any
//! user): a rule written for one never lets the other in.

use serde::Deserialize;

/// One `[[access]]` rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// The Slack workspace (team id) the rule applies to; `None`: any workspace.
    #[serde(default)]
    pub slack_team: Option<String>,
    /// The Slack channels the rule applies to; empty: any channel. A rule
    /// names a Slack requester by at least one of team, channels and users.
    #[serde(default)]
    pub slack_channels: Vec<String>,
    /// The Slack users the rule applies to; empty: any user.
    #[serde(default)]
    pub slack_users: Vec<String>,
    /// The GitHub logins the rule applies to (`*`: anyone); empty: no GitHub user.
    #[serde(default)]
    pub github_users: Vec<String>,
    /// `owner/repo`, `owner/*` or `*`.
    pub repos: Vec<String>,
    /// Whether the rule also lets its requesters push (`--push`).
    #[serde(default)]
    pub push: bool,
    /// The most a run of its requesters may cost in US dollars (metered by the
    /// model gateway); a smaller budget of the run itself still applies.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// The most tokens a run of its requesters may use.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The models its requesters' runs may use (exact names or prefixes ending
    /// in `*`); empty: those the configuration allows.
    #[serde(default)]
    pub models: Vec<String>,
}

/// What the rule that lets a request run says of its budget and models.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleLimits {
    /// The rule's budget in US dollars.
    pub max_cost_usd: Option<f64>,
    /// The rule's budget in tokens.
    pub max_tokens: Option<u64>,
    /// The rule's model allowlist; empty: no rule of its own.
    pub models: Vec<String>,
}

impl RuleLimits {
    /// Puts the rule's limits on `spec`: the smaller budget wins, and a model
    /// the run names must be on the rule's list. The error is for the person.
    pub fn apply(&self, spec: &mut errand_core::RunSpec) -> Result<(), String> {
        spec.max_cost_usd = match (spec.max_cost_usd, self.max_cost_usd) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        spec.max_tokens = match (spec.max_tokens, self.max_tokens) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        if !self.models.is_empty() {
            if let Some(m) = &spec.model {
                let ok = self.models.iter().any(|a| match a.strip_suffix('*') {
                    Some(prefix) => m.starts_with(prefix),
                    None => a == m,
                });
                if !ok {
                    return Err(format!(
                        "model {m} is not allowed for you here (allowed: {})",
                        self.models.join(", ")
                    ));
                }
            }
            spec.allowed_models = self.models.clone();
        }
        Ok(())
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester<'a> {
    /// A Slack user in a channel.
    Slack {
        /// The Slack workspace (team id).
        team: &'a str,
        /// The channel the command came from.
        channel: &'a str,
        /// The Slack user id.
        user: &'a str,
    },
    /// A GitHub user (a comment mentioning errand).
    Github {
        /// Their GitHub login.
        login: &'a str,
    },
}

/// Why a request was refused; `Display` is meant for the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No rule lets this requester run on `repo`.
    #[error("you may not start runs on {repo} from here (ask an errand admin to add an [[access]] rule)")]
    Repo {
        /// The repository asked for.
        repo: String,
    },
    /// A rule lets this requester run on `repo`, but none lets them push.
    #[error("you may run on {repo} but not push to it: drop --push, or ask an errand admin for push access")]
    Push {
        /// The repository asked for.
        repo: String,
    },
}

/// The configured rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessPolicy {
    /// The `[[access]]` rules, in the order of the configuration.
    pub rules: Vec<AccessRule>,
}

fn listed(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v == "*" || v == value)
}

fn repo_matches(pattern: &str, repo: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let repo = repo.to_ascii_lowercase();
    match pattern.strip_suffix("/*") {
        _ if pattern == "*" => true,
        Some(owner) => repo.split_once('/').is_some_and(|(o, _)| o == owner),
        None => pattern == repo,
    }
}

impl AccessRule {
    fn applies_to(&self, who: Requester<'_>) -> bool {
        match who {
            Requester::Slack {
                team,
                channel,
                user,
            } => {
                let names_slack = self.slack_team.is_some()
                    || !self.slack_channels.is_empty()
                    || !self.slack_users.is_empty();
                names_slack
                    && self.slack_team.as_deref().is_none_or(|t| t == team)
                    && listed(&self.slack_channels, channel)
                    && listed(&self.slack_users, user)
            }
            Requester::Github { login } => {
                !self.github_users.is_empty()
                    && self
                        .github_users
                        .iter()
                        .any(|u| u == "*" || u.eq_ignore_ascii_case(login))
            }
        }
    }
}

impl AccessPolicy {
    /// A policy of these rules.
    pub fn new(rules: Vec<AccessRule>) -> Self {
        AccessPolicy { rules }
    }

    /// Whether `who` may run on `repo` (and push to it when `push`).
    pub fn check(&self, who: Requester<'_>, repo: &str, push: bool) -> Result<(), Denied> {
        let mut may_run = false;
        for rule in self.rules.iter().filter(|r| r.applies_to(who)) {
            if rule.repos.iter().any(|p| repo_matches(p, repo)) {
                if rule.push || !push {
                    return Ok(());
                }
                may_run = true;
            }
        }
        Err(if may_run {
            Denied::Push { repo: repo.into() }
        } else {
            Denied::Repo { repo: repo.into() }
        })
    }

    /// The budget and models of the first rule that lets `who` run on `repo`
    /// (the rule [`AccessPolicy::check`] grants by).
    pub fn limits(&self, who: Requester<'_>, repo: &str, push: bool) -> RuleLimits {
        self.rules
            .iter()
            .filter(|r| r.applies_to(who))
            .find(|r| r.repos.iter().any(|p| repo_matches(p, repo)) && (r.push || !push))
            .map(|r| RuleLimits {
                max_cost_usd: r.max_cost_usd,
                max_tokens: r.max_tokens,
                models: r.models.clone(),
            })
            .unwrap_or_default()
    }

    /// Whether `who` may push to `repo` (a GitHub comment run pushes when allowed).
    pub fn may_push(&self, who: Requester<'_>, repo: &str) -> bool {
        self.check(who, repo, true).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        AccessPolicy::new(vec![
            AccessRule {
                slack_team: Some("T1".into()),
                slack_channels: vec!["C1".into()],
                repos: vec!["acme/*".into()],
                push: true,
                ..Default::default()
            },
            AccessRule {
                slack_team: Some("T1".into()),
                repos: vec!["tools/cli".into()],
                ..Default::default()
            },
            AccessRule {
                github_users: vec!["octocat".into()],
                repos: vec!["acme/widgets".into()],
                push: true,
                ..Default::default()
            },
        ])
    }

    fn slack<'a>(team: &'a str, channel: &'a str) -> Requester<'a> {
        Requester::Slack {
            team,
            channel,
            user: "U1",
        }
    }

    #[test]
    fn a_rule_s_budget_and_models_go_on_the_run() {
        let p = AccessPolicy::new(vec![AccessRule {
            slack_team: Some("T1".into()),
            repos: vec!["acme/*".into()],
            max_cost_usd: Some(2.0),
            max_tokens: Some(1000),
            models: vec!["claude-sonnet-*".into()],
            ..Default::default()
        }]);
        let limits = p.limits(slack("T1", "C9"), "acme/app", false);
        let mut spec = errand_core::RunSpec::new("x", "claude-code");
        spec.max_cost_usd = Some(5.0);
        spec.max_tokens = Some(10);
        limits.apply(&mut spec).unwrap();
        assert_eq!(spec.max_cost_usd, Some(2.0));
        assert_eq!(spec.max_tokens, Some(10));
        assert_eq!(spec.allowed_models, ["claude-sonnet-*"]);
        spec.model = Some("gpt-5".into());
        assert_eq!(
            limits.apply(&mut spec).err().as_deref(),
            Some("model gpt-5 is not allowed for you here (allowed: claude-sonnet-*)")
        );
        // Another team's requester is held by no rule.
        assert_eq!(
            p.limits(slack("T2", "C9"), "acme/app", false),
            RuleLimits::default()
        );
    }

    #[test]
    fn rules_grant_repos_and_push_per_place() {
        let p = policy();
        assert_eq!(p.check(slack("T1", "C1"), "acme/widgets", true), Ok(()));
        assert_eq!(p.check(slack("T1", "C1"), "ACME/Widgets", false), Ok(()));
        // Another channel of the same team: only tools/cli, read-only.
        assert!(matches!(
            p.check(slack("T1", "C2"), "acme/widgets", false),
            Err(Denied::Repo { .. })
        ));
        assert_eq!(p.check(slack("T1", "C2"), "tools/cli", false), Ok(()));
        assert!(matches!(
            p.check(slack("T1", "C2"), "tools/cli", true),
            Err(Denied::Push { .. })
        ));
        // Another workspace: nothing.
        assert!(p.check(slack("T9", "C1"), "acme/widgets", false).is_err());
        // `acme/*` does not match `acmeco/x`.
        assert!(p.check(slack("T1", "C1"), "acmeco/x", false).is_err());
    }

    #[test]
    fn slack_rules_never_admit_github_users_and_back() {
        let p = policy();
        assert_eq!(
            p.check(Requester::Github { login: "OctoCat" }, "acme/widgets", true),
            Ok(())
        );
        assert!(p
            .check(
                Requester::Github { login: "mallory" },
                "acme/widgets",
                false
            )
            .is_err());
        assert!(p
            .check(Requester::Github { login: "octocat" }, "tools/cli", false)
            .is_err());
        let only_github = AccessPolicy::new(vec![AccessRule {
            github_users: vec!["*".into()],
            repos: vec!["*".into()],
            ..Default::default()
        }]);
        assert!(only_github
            .check(slack("T1", "C1"), "acme/widgets", false)
            .is_err());
        assert!(AccessPolicy::default()
            .check(slack("T1", "C1"), "a/b", false)
            .is_err());
    }
}
