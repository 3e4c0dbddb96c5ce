//! Amp (`@sourcegraph/amp`), headless: `amp -x PROMPT --stream-json
//! --dangerously-allow-all`. Amp sends inference through Sourcegraph's own
//! server (threads live there), so it cannot be pointed at a local model:
//! errand needs `AMP_API_KEY` and says so plainly when it is missing. Its
//! stream is Claude Code-compatible and parsed as such.

use errand_sandbox::{paths, CommandLine};
use errand_trace::AmpStreamParser;

use crate::{
    declared_env, Capabilities, EnvVar, Harness, HarnessError, Invocation, NpmPackage, Outcome,
    OutputParser, RunContext,
};

/// Amp (`@sourcegraph/amp`).
pub struct Amp;

const PACKAGE: NpmPackage = NpmPackage {
    name: "@sourcegraph/amp",
    version: "0.0.1790142911-g7618fb",
    bin: "node_modules/.bin/amp",
};

const ENV: &[EnvVar] = &[
    EnvVar {
        name: "AMP_API_KEY",
        required: true,
        secret: true,
    },
    EnvVar {
        name: "AMP_URL",
        required: false,
        secret: false,
    },
];

impl Harness for Amp {
    fn name(&self) -> &'static str {
        "amp"
    }

    fn package(&self) -> Option<NpmPackage> {
        Some(PACKAGE)
    }

    fn env_vars(&self) -> &'static [EnvVar] {
        ENV
    }

    fn capabilities(&self) -> Capabilities {
        // Amp picks its own model on its server.
        Capabilities {
            follow_up: false,
            reports_cost: false,
            model_choice: false,
            max_turns: false,
            guard_hook: false,
        }
    }

    fn invocation(&self, ctx: &RunContext) -> Result<Invocation, HarnessError> {
        let crate::DeclaredEnv { mut env, secrets } = declared_env(
            "amp",
            ENV,
            ctx,
            ": Amp runs its models on Sourcegraph's servers and cannot use a local endpoint; \
             create a key at ampcode.com and export AMP_API_KEY=…",
        )?;
        env.extend(crate::common_env(ctx));
        let args = vec![
            "-x".to_string(),
            format!("{}{}", crate::unattended_preamble(ctx), ctx.prompt),
            "--stream-json".into(),
            "--dangerously-allow-all".into(),
        ];
        Ok(Invocation {
            command: CommandLine::new(format!("{}/{}", paths::HARNESS, PACKAGE.bin), args),
            env,
            home_files: vec![],
            secrets,
        })
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(AmpParser(AmpStreamParser::new()))
    }
}

struct AmpParser(AmpStreamParser);

impl OutputParser for AmpParser {
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

    #[test]
    fn a_missing_key_explains_why_amp_needs_one() {
        let ctx = RunContext {
            prompt: "x".into(),
            model: None,
            max_turns: 1,
            branch: "errand/x".into(),
            env: Default::default(),
            install_dir: "/c".into(),
            extra_path: vec![],
            extra_env: vec![],
            agent_git: false,
        };
        let err = Amp.invocation(&ctx).unwrap_err().to_string();
        assert!(
            err.starts_with("AMP_API_KEY is not set: amp needs it: Amp runs its models"),
            "{err}"
        );
    }
}
