//! Gemini CLI (`@google/gemini-cli`), headless:
//! `gemini -p PROMPT --output-format stream-json --yolo --skip-trust -m MODEL`.
//! `--yolo` is what makes it offer its shell and write tools headless;
//! `--skip-trust` keeps that in a folder it has never seen. The settings file
//! selects API-key auth, which keeps `GOOGLE_GEMINI_BASE_URL` in force (with
//! only the URL set, headless validation rejects the "gateway" auth type).

use errand_sandbox::CommandLine;
use errand_trace::{pricing, GeminiStreamParser};

use crate::{
    declared_env, Capabilities, EnvVar, Harness, HarnessError, Invocation, NpmPackage, Outcome,
    OutputParser, RunContext,
};

/// Google's Gemini CLI (`@google/gemini-cli`).
pub struct GeminiCli;

const PACKAGE: NpmPackage = NpmPackage {
    name: "@google/gemini-cli",
    version: "0.61.0",
    bin: "node_modules/.bin/gemini",
};

const ENV: &[EnvVar] = &[
    EnvVar {
        name: "GEMINI_API_KEY",
        required: true,
        secret: true,
    },
    EnvVar {
        name: "GOOGLE_GEMINI_BASE_URL",
        required: false,
        secret: false,
    },
];

/// Naming a model also skips Gemini CLI's router side call.
pub const DEFAULT_MODEL: &str = "gemini-2.5-pro";

const SETTINGS: &str = r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"general":{"disableAutoUpdate":true,"disableUpdateNag":true},"privacy":{"usageStatisticsEnabled":false},"telemetry":{"enabled":false}}"#;

impl Harness for GeminiCli {
    fn name(&self) -> &'static str {
        "gemini"
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
            reports_cost: false,
            model_choice: true,
            max_turns: false,
            guard_hook: false,
        }
    }

    fn invocation(&self, ctx: &RunContext) -> Result<Invocation, HarnessError> {
        let crate::DeclaredEnv { mut env, secrets } = declared_env(
            "gemini",
            ENV,
            ctx,
            " to reach its model: export GEMINI_API_KEY=… (and GOOGLE_GEMINI_BASE_URL for another endpoint)",
        )?;
        env.extend(crate::common_env(ctx));
        let model = ctx
            .model
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_string());
        let args = vec![
            "-p".to_string(),
            format!("{}{}", crate::unattended_preamble(ctx), ctx.prompt),
            "--output-format".into(),
            "stream-json".into(),
            "--yolo".into(),
            "--skip-trust".into(),
            "-m".into(),
            model,
        ];
        Ok(Invocation {
            command: CommandLine::new(
                format!("{}/{}", errand_sandbox::paths::HARNESS, PACKAGE.bin),
                args,
            ),
            env,
            home_files: vec![(".gemini/settings.json".to_string(), SETTINGS.to_string())],
            secrets,
        })
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(GeminiParser {
            inner: GeminiStreamParser::new(),
            model: DEFAULT_MODEL.to_string(),
        })
    }

    fn parser_for(&self, ctx: &RunContext) -> Box<dyn OutputParser> {
        let model = ctx
            .model
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_string());
        Box::new(GeminiParser {
            inner: GeminiStreamParser::new(),
            model,
        })
    }
}

struct GeminiParser {
    inner: GeminiStreamParser,
    model: String,
}

impl OutputParser for GeminiParser {
    fn push_line(&mut self, line: &str) -> Vec<errand_core::EventKind> {
        self.inner.push_line(line)
    }

    fn finish(&mut self, _exit_success: bool) -> Vec<errand_core::EventKind> {
        self.inner.flush()
    }

    fn outcome(&self) -> Option<Outcome> {
        let o = self.inner.outcome()?;
        let mut usage = o.usage.clone();
        if usage.cost_usd.is_none() {
            usage.cost_usd = pricing::estimate_cost_usd(&self.model, &usage);
        }
        Some(Outcome {
            is_error: o.is_error,
            error: o.error_message(),
            text: o.last_message.clone(),
            turns: None,
            usage,
            session_id: o.session_id.clone(),
        })
    }
}
