//! Claude Code (`@anthropic-ai/claude-code`), headless:
//! `claude -p PROMPT --output-format stream-json --verbose --max-turns N [--model M]`
//! with a generated settings file passed by `--settings` (flag settings are
//! honoured even in a workspace Claude has not been told to trust).

use errand_sandbox::{paths, CommandLine};
use errand_trace::ClaudeStreamParser;
use serde_json::json;

use crate::{
    declared_env, Capabilities, EnvVar, Harness, HarnessError, Invocation, NpmPackage, Outcome,
    OutputParser, RunContext,
};

/// Claude Code (`@anthropic-ai/claude-code`).
pub struct ClaudeCode;

const PACKAGE: NpmPackage = NpmPackage {
    name: "@anthropic-ai/claude-code",
    version: "2.1.197",
    bin: "node_modules/.bin/claude",
};

const ENV: &[EnvVar] = &[
    EnvVar {
        name: "ANTHROPIC_API_KEY",
        required: true,
        secret: true,
    },
    EnvVar {
        name: "ANTHROPIC_BASE_URL",
        required: false,
        secret: false,
    },
];

/// Where the generated settings live, under the sandbox's HOME.
const SETTINGS_REL: &str = ".errand/claude-settings.json";

/// What an unattended agent may do without asking, and what it may never do.
/// errand's sandbox is the real boundary; these rules keep the agent on its task.
/// With `agent_git` the agent may push (errand's guard keeps it to its branch).
pub fn settings(agent_git: bool) -> serde_json::Value {
    let mut s = json!({
        "permissions": {
            "allow": [
                "Read", "Edit", "MultiEdit", "Write", "NotebookEdit", "Glob", "Grep", "LS",
                "TodoWrite", "Task", "Bash"
            ],
            "deny": [
                "Bash(git push:*)", "Bash(git push)",
                "Bash(git remote add:*)", "Bash(git remote set-url:*)",
                "Bash(git credential:*)",
                "Read(~/.ssh/**)", "Read(~/.aws/**)", "Read(~/.config/gcloud/**)",
                "Read(~/.netrc)", "Read(~/.git-credentials)", "Read(//etc/shadow)"
            ],
            "defaultMode": "acceptEdits"
        },
        "env": { "DISABLE_AUTOUPDATER": "1" },
        // errand's guard decides on every shell command before it runs.
        "hooks": {
            "PreToolUse": [{
                "matcher": "Bash",
                "hooks": [{ "type": "command", "command": format!("{}/errand guard hook", paths::TOOLS), "timeout": 10 }]
            }]
        },
        "includeCoAuthoredBy": false
    });
    if agent_git {
        if let Some(deny) = s["permissions"]["deny"].as_array_mut() {
            deny.retain(|d| !d.as_str().is_some_and(|d| d.starts_with("Bash(git push")));
        }
    }
    s
}

fn system_prompt(ctx: &RunContext) -> String {
    format!(
        "You are running unattended inside errand, a sandbox for background coding runs. \
         Nobody will answer questions: make reasonable decisions and finish the task. \
         Your working directory {ws} is a git repository checked out on branch `{branch}`; \
         stay on it. Commit your work with git when you are done, with a message that \
         says what changed and why. With the remote: {remote}. End with a short summary of what you did.",
        ws = paths::WORKSPACE,
        branch = ctx.branch,
        remote = crate::git_remote_rule(ctx),
    )
}

impl Harness for ClaudeCode {
    fn name(&self) -> &'static str {
        "claude-code"
    }

    fn package(&self) -> Option<NpmPackage> {
        Some(PACKAGE)
    }

    fn env_vars(&self) -> &'static [EnvVar] {
        ENV
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            follow_up: true,
            reports_cost: true,
            model_choice: true,
            max_turns: true,
            guard_hook: true,
        }
    }

    fn invocation(&self, ctx: &RunContext) -> Result<Invocation, HarnessError> {
        let crate::DeclaredEnv { mut env, secrets } = declared_env(
            "claude-code",
            ENV,
            ctx,
            " to reach its model: export ANTHROPIC_API_KEY=… (or try `errand run --demo`, which needs no key)",
        )?;
        env.extend(crate::common_env(ctx));
        env.extend([
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_string(),
                "1".to_string(),
            ),
            ("DISABLE_AUTOUPDATER".to_string(), "1".to_string()),
        ]);

        let settings_path = format!("{}/{SETTINGS_REL}", paths::HOME);
        let mut args = vec![
            "-p".to_string(),
            ctx.prompt.clone(),
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
            "--settings".into(),
            settings_path,
            "--max-turns".into(),
            ctx.max_turns.to_string(),
            "--append-system-prompt".into(),
            system_prompt(ctx),
        ];
        if let Some(m) = &ctx.model {
            args.extend(["--model".to_string(), m.clone()]);
        }
        let command = CommandLine::new(format!("{}/{}", paths::HARNESS, PACKAGE.bin), args);
        // Trust and onboarding state, so the first start in a fresh HOME asks nothing.
        let state = json!({
            "hasCompletedOnboarding": true,
            "projects": { paths::WORKSPACE: { "hasTrustDialogAccepted": true, "allowedTools": [] } }
        });
        Ok(Invocation {
            command,
            env,
            home_files: vec![
                (
                    SETTINGS_REL.to_string(),
                    settings(ctx.agent_git).to_string(),
                ),
                (".claude.json".to_string(), state.to_string()),
            ],
            secrets,
        })
    }

    fn follow_up_invocation(
        &self,
        ctx: &RunContext,
        session: &str,
    ) -> Result<Invocation, HarnessError> {
        let mut inv = self.invocation(ctx)?;
        inv.command
            .args
            .extend(["--resume".to_string(), session.to_string()]);
        Ok(inv)
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(ClaudeParser(ClaudeStreamParser::new()))
    }
}

struct ClaudeParser(ClaudeStreamParser);

impl OutputParser for ClaudeParser {
    fn push_line(&mut self, line: &str) -> Vec<errand_core::EventKind> {
        self.0.push_line(line)
    }

    fn outcome(&self) -> Option<Outcome> {
        let o = self.0.outcome()?;
        let mut usage = o.usage.clone();
        usage.cost_usd = o.total_cost_usd.or(usage.cost_usd);
        Some(Outcome {
            is_error: o.is_error,
            error: o.error_message(),
            text: o.result.clone(),
            turns: o.num_turns,
            usage,
            session_id: o
                .session_id
                .clone()
                .or_else(|| self.0.session_id().map(String::from)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ctx(env: &[(&str, &str)]) -> RunContext {
        RunContext {
            prompt: "fix the typo".into(),
            model: Some("claude-sonnet-4-5".into()),
            max_turns: 7,
            branch: "errand/abcd1234".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            install_dir: "/cache/claude".into(),
            extra_path: vec![],
            extra_env: vec![],
            agent_git: false,
        }
    }

    #[test]
    fn a_missing_key_is_a_clear_error() {
        let err = ClaudeCode.invocation(&ctx(&[])).unwrap_err().to_string();
        assert!(
            err.starts_with("ANTHROPIC_API_KEY is not set: claude-code needs it"),
            "{err}"
        );
    }

    #[test]
    fn only_declared_variables_are_passed() {
        let inv = ClaudeCode
            .invocation(&ctx(&[
                ("ANTHROPIC_API_KEY", "sk-1"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
                ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ]))
            .unwrap();
        let names: Vec<&str> = inv.env.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"ANTHROPIC_API_KEY") && names.contains(&"ANTHROPIC_BASE_URL"));
        assert!(!names.contains(&"AWS_SECRET_ACCESS_KEY"));
        assert_eq!(inv.secrets, ["sk-1"]);
        let args = inv.command.args.join(" ");
        assert!(
            args.contains("--output-format stream-json --verbose"),
            "{args}"
        );
        assert!(
            args.contains("--max-turns 7") && args.contains("--model claude-sonnet-4-5"),
            "{args}"
        );
        assert!(args.contains("errand/abcd1234"));
    }

    #[test]
    fn settings_deny_pushing_and_secrets() {
        let s = settings(false);
        let deny: Vec<&str> = s["permissions"]["deny"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(deny.contains(&"Bash(git push:*)"));
        assert!(deny.iter().any(|d| d.contains(".ssh")));
        // With --agent-git pushing is the guard's to judge; the rest stays denied.
        let s = settings(true);
        let deny: Vec<&str> = s["permissions"]["deny"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(!deny.iter().any(|d| d.starts_with("Bash(git push")));
        assert!(
            deny.contains(&"Bash(git credential:*)")
                && deny.contains(&"Bash(git remote set-url:*)")
        );
        let mut c = ctx(&[("ANTHROPIC_API_KEY", "sk-1")]);
        assert!(system_prompt(&c).contains("do not push"));
        c.agent_git = true;
        let p = system_prompt(&c);
        assert!(p.contains("push your branch `errand/abcd1234`"), "{p}");
    }
}
