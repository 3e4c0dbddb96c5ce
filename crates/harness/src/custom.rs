//! Custom harnesses: any command that prints JSON lines, declared in errand's
//! configuration:
//!
//! ```toml
//! [[harness]]
//! name = "my-agent"
//! command = ["python3", "/opt/errand/harness/agent.py", "{prompt}"]
//! format = "errand"            # or "claude-stream-json"
//! env = ["MY_AGENT_API_KEY"]   # taken from errand's environment; required
//! dir = "/srv/my-agent"        # optional: mounted read-only at /opt/errand/harness
//! ```
//!
//! `{prompt}` in an argument is replaced by the instruction (which is also in
//! `ERRAND_PROMPT`), `{branch}` by the run's branch. With `format = "errand"`
//! each line is one of errand's own events (`{"type":"tool_call",…}`, see
//! `errand_core::EventKind`), and the run succeeds when a `result` event with
//! `"is_error": false` was printed and the command exited 0.

use std::path::PathBuf;

use errand_core::{EventKind, Usage};
use errand_sandbox::CommandLine;
use errand_trace::ClaudeStreamParser;
use serde::Deserialize;

use crate::{
    Capabilities, EnvVar, Harness, HarnessError, Invocation, NpmPackage, Outcome, OutputParser,
    RunContext,
};

/// What a custom harness prints (`format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustomFormat {
    /// errand's own normalized events, one per line.
    Errand,
    /// Claude Code's `--output-format stream-json`.
    ClaudeStreamJson,
}

/// A harness declared in errand's configuration (`[[harness]]`, see the module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomHarness {
    /// The name `--harness` takes; not a built-in one.
    pub name: String,
    /// The command line inside, `{prompt}` and `{branch}` replaced.
    pub command: Vec<String>,
    /// What it prints.
    pub format: CustomFormat,
    /// The variables it takes from errand's environment; all required.
    #[serde(default)]
    pub env: Vec<String>,
    /// A host directory mounted read-only at `/opt/errand/harness`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

impl CustomHarness {
    /// Problems with the definition, each as a sentence (for `errand config check`).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.name.trim().is_empty() {
            out.push("a [[harness]] has an empty name".to_string());
        }
        if crate::KNOWN.contains(&self.name.as_str()) {
            out.push(format!(
                "harness '{}' has the name of a built-in harness; choose another",
                self.name
            ));
        }
        if self.command.is_empty() {
            out.push(format!("harness '{}' has an empty command", self.name));
        }
        if let Some(d) = &self.dir {
            if !d.is_dir() {
                out.push(format!(
                    "harness '{}': dir {} does not exist",
                    self.name,
                    d.display()
                ));
            }
        }
        out
    }
}

impl Harness for CustomHarness {
    fn name(&self) -> &'static str {
        // Names of configured harnesses live as long as the process.
        Box::leak(self.name.clone().into_boxed_str())
    }

    fn package(&self) -> Option<NpmPackage> {
        None
    }

    fn host_dir(&self) -> Option<PathBuf> {
        self.dir.clone()
    }

    fn env_vars(&self) -> &'static [EnvVar] {
        &[]
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            follow_up: false,
            reports_cost: true,
            model_choice: false,
            max_turns: false,
            guard_hook: false,
        }
    }

    fn invocation(&self, ctx: &RunContext) -> Result<Invocation, HarnessError> {
        let mut env = Vec::new();
        let mut secrets = Vec::new();
        for var in &self.env {
            match ctx.env.get(var).filter(|v| !v.is_empty()) {
                Some(v) => {
                    env.push((var.clone(), v.clone()));
                    secrets.push(v.clone());
                }
                None => {
                    return Err(HarnessError::Unsupported {
                        harness: "custom harness",
                        what: format!("running '{}' without {var}: export {var}=… (its configuration requires it)", self.name),
                    })
                }
            }
        }
        env.extend(crate::common_env(ctx));
        env.push(("ERRAND_PROMPT".to_string(), ctx.prompt.clone()));
        env.push(("ERRAND_BRANCH".to_string(), ctx.branch.clone()));
        let fill = |a: &String| {
            a.replace("{prompt}", &ctx.prompt)
                .replace("{branch}", &ctx.branch)
        };
        let (program, args) =
            self.command
                .split_first()
                .ok_or_else(|| HarnessError::Unsupported {
                    harness: "custom harness",
                    what: format!("an empty command (harness '{}')", self.name),
                })?;
        Ok(Invocation {
            command: CommandLine::new(fill(program), args.iter().map(fill)),
            env,
            home_files: vec![],
            secrets,
        })
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        match self.format {
            CustomFormat::Errand => Box::new(ErrandParser::default()),
            CustomFormat::ClaudeStreamJson => Box::new(ClaudeFormat(ClaudeStreamParser::new())),
        }
    }
}

/// Lines that are errand's own events.
#[derive(Default)]
struct ErrandParser {
    outcome: Option<Outcome>,
    last_text: Option<String>,
}

impl OutputParser for ErrandParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        if line.trim().is_empty() {
            return vec![];
        }
        let kind = match serde_json::from_str::<EventKind>(line.trim()) {
            // errand records its own lifecycle; a harness may not forge it.
            Ok(EventKind::State { .. }) | Err(_) => EventKind::Raw {
                line: line.to_string(),
            },
            Ok(k) => k,
        };
        match &kind {
            EventKind::AssistantMessage { text } => self.last_text = Some(text.clone()),
            EventKind::Result {
                is_error,
                text,
                turns,
                usage,
                ..
            } => {
                self.outcome = Some(Outcome {
                    is_error: *is_error,
                    error: is_error.then(|| {
                        text.clone()
                            .unwrap_or_else(|| "the harness reported an error".into())
                    }),
                    text: text.clone().or_else(|| self.last_text.clone()),
                    turns: *turns,
                    usage: usage.clone(),
                    session_id: None,
                })
            }
            _ => {}
        }
        vec![kind]
    }

    fn outcome(&self) -> Option<Outcome> {
        self.outcome.clone()
    }
}

struct ClaudeFormat(ClaudeStreamParser);

impl OutputParser for ClaudeFormat {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        self.0.push_line(line)
    }

    fn outcome(&self) -> Option<Outcome> {
        let o = self.0.outcome()?;
        let mut usage: Usage = o.usage.clone();
        usage.cost_usd = o.total_cost_usd.or(usage.cost_usd);
        Some(Outcome {
            is_error: o.is_error,
            error: o.error_message(),
            text: o.result.clone(),
            turns: o.num_turns,
            usage,
            session_id: o.session_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errand_format_lines_are_events_and_garbage_is_raw() {
        let mut p = ErrandParser::default();
        let ev =
            p.push_line(r#"{"type":"tool_call","id":"1","name":"Bash","input":{"command":"ls"}}"#);
        assert!(matches!(ev[0], EventKind::ToolCall { .. }));
        let ev = p.push_line("not json {");
        assert!(matches!(ev[0], EventKind::Raw { .. }));
        let ev = p.push_line(r#"{"type":"state","state":"succeeded"}"#);
        assert!(
            matches!(ev[0], EventKind::Raw { .. }),
            "a harness cannot forge errand's states"
        );
        assert!(p.outcome().is_none());
        p.push_line(r#"{"type":"result","is_error":false,"text":"done","usage":{"input_tokens":3,"output_tokens":1}}"#);
        let o = p.outcome().unwrap();
        assert!(!o.is_error);
        assert_eq!(o.text.as_deref(), Some("done"));
    }

    #[test]
    fn definitions_are_checked() {
        let h: CustomHarness =
            toml::from_str("name = \"codex\"\ncommand = []\nformat = \"errand\"").unwrap();
        let p = h.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        let bad =
            toml::from_str::<CustomHarness>("name = \"x\"\ncommand = [\"a\"]\nformat = \"yaml\"");
        assert!(bad.is_err());
    }
}
