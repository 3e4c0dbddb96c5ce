//! OpenCode (`opencode-ai`), headless: `opencode run --format json --auto -m errand/MODEL PROMPT`
//! with a generated config naming an OpenAI-compatible provider `errand`
//! whose base URL comes from `OPENAI_BASE_URL` and whose key is read from the
//! environment at run time (`{env:OPENAI_API_KEY}`), so it is never written to disk.
//! OpenCode prints no final result event: its parser synthesizes one when the
//! process exits.

use errand_sandbox::{paths, CommandLine};
use errand_trace::{pricing, OpenCodeStreamParser};
use serde_json::json;

use crate::{
    declared_env, Capabilities, EnvVar, Harness, HarnessError, Invocation, NpmPackage, Outcome,
    OutputParser, RunContext,
};

/// OpenCode (`opencode-ai`).
pub struct OpenCode;

const PACKAGE: NpmPackage = NpmPackage {
    name: "opencode-ai",
    version: "1.18.33",
    bin: "node_modules/.bin/opencode",
};

const ENV: &[EnvVar] = &[
    EnvVar {
        name: "OPENAI_API_KEY",
        required: true,
        secret: true,
    },
    EnvVar {
        name: "OPENAI_BASE_URL",
        required: false,
        secret: false,
    },
];

pub const DEFAULT_MODEL: &str = "gpt-5";

const CONFIG_REL: &str = ".errand/opencode.json";

fn config(base_url: &str, model: &str) -> serde_json::Value {
    json!({
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "errand": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "errand",
                "options": { "baseURL": base_url, "apiKey": "{env:OPENAI_API_KEY}" },
                "models": { model: { "name": model, "tool_call": true } }
            }
        },
        "model": format!("errand/{model}"),
        "autoupdate": false,
        "share": "disabled"
    })
}

impl Harness for OpenCode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    fn package(&self) -> Option<NpmPackage> {
        Some(PACKAGE)
    }

    fn env_vars(&self) -> &'static [EnvVar] {
        ENV
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            follow_up: false,
            reports_cost: true,
            model_choice: true,
            max_turns: false,
            guard_hook: false,
        }
    }

    fn invocation(&self, ctx: &RunContext) -> Result<Invocation, HarnessError> {
        let crate::DeclaredEnv { mut env, secrets } = declared_env(
            "opencode",
            ENV,
            ctx,
            " to reach its model: export OPENAI_API_KEY=… (and OPENAI_BASE_URL for another endpoint)",
        )?;
        let base_url = env
            .iter()
            .find(|(k, _)| k == "OPENAI_BASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "https://api.openai.com/v1".to_string());
        env.retain(|(k, _)| k != "OPENAI_BASE_URL");
        env.extend(crate::common_env(ctx));
        env.extend([
            (
                "OPENCODE_CONFIG".to_string(),
                format!("{}/{CONFIG_REL}", paths::HOME),
            ),
            ("OPENCODE_DISABLE_MODELS_FETCH".to_string(), "1".to_string()),
            ("OPENCODE_DISABLE_AUTOUPDATE".to_string(), "1".to_string()),
        ]);
        let model = ctx
            .model
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_string());
        let args = vec![
            "run".to_string(),
            "--format".into(),
            "json".into(),
            "--auto".into(),
            "-m".into(),
            format!("errand/{model}"),
            format!("{}{}", crate::unattended_preamble(ctx), ctx.prompt),
        ];
        Ok(Invocation {
            command: CommandLine::new(format!("{}/{}", paths::HARNESS, PACKAGE.bin), args),
            env,
            home_files: vec![(
                CONFIG_REL.to_string(),
                config(&base_url, &model).to_string(),
            )],
            secrets,
        })
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(OpenCodeParser {
            inner: OpenCodeStreamParser::new(),
            model: DEFAULT_MODEL.to_string(),
        })
    }

    fn parser_for(&self, ctx: &RunContext) -> Box<dyn OutputParser> {
        let model = ctx
            .model
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_string());
        Box::new(OpenCodeParser {
            inner: OpenCodeStreamParser::new(),
            model,
        })
    }
}

struct OpenCodeParser {
    inner: OpenCodeStreamParser,
    model: String,
}

impl OutputParser for OpenCodeParser {
    fn push_line(&mut self, line: &str) -> Vec<errand_core::EventKind> {
        self.inner.push_line(line)
    }

    fn finish(&mut self, exit_success: bool) -> Vec<errand_core::EventKind> {
        self.inner.finish(exit_success)
    }

    fn outcome(&self) -> Option<Outcome> {
        let o = self.inner.outcome();
        if !o.finished {
            return None;
        }
        let mut usage = o.usage.clone();
        if usage.cost_usd.is_none_or(|c| c == 0.0) {
            usage.cost_usd = pricing::estimate_cost_usd(&self.model, &usage).or(usage.cost_usd);
        }
        Some(Outcome {
            is_error: o.is_error,
            error: o.error_message(),
            text: o.last_message.clone(),
            turns: Some(o.steps),
            usage,
            session_id: o.session_id.clone(),
        })
    }
}
