//! errand's configuration: a TOML file (`$ERRAND_CONFIG`, or
//! `$ERRAND_HOME/config.toml` when that exists) plus environment variables:
//! every key `section.key` can also be set as `ERRAND_SECTION_KEY`, which wins
//! over the file. Optional: errand runs on its defaults without any.
//! `errand config check` reports every problem at once. Example: `config.example.toml`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use errand_harness::{CustomHarness, Registry};
use errand_runner::Paths;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub queue: Queue,
    #[serde(default)]
    pub models: Models,
    #[serde(default)]
    pub harness: Vec<CustomHarness>,
}

/// Model endpoints for the harnesses. Each is used only when the variable its
/// harness's users already know (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`,
/// `GOOGLE_GEMINI_BASE_URL`) is not set in errand's environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Models {
    pub anthropic_base_url: Option<String>,
    pub openai_base_url: Option<String>,
    pub google_gemini_base_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address `errand serve` listens on.
    pub listen: String,
    /// Runs one `errand serve` / `errand worker` process executes at once.
    pub workers: u32,
    /// Worker id; defaults to the host name and data directory, so a restart is recognised.
    pub worker_id: Option<String>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            workers: 2,
            worker_id: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `postgres://…`, or a SQLite path; default: `$ERRAND_HOME/errand.db`.
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Queue {
    /// Most runs executing at once across all workers (0: no limit).
    pub global_limit: u32,
    /// Most runs executing at once on one repository (0: no limit).
    pub per_repo_limit: u32,
    /// How long a worker's claim on a run lasts without renewal.
    pub lease_secs: u64,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            global_limit: 0,
            per_repo_limit: 0,
            lease_secs: 30,
        }
    }
}

/// Every scalar key, as `section.key`: what `ERRAND_SECTION_KEY` can set.
const KEYS: &[&str] = &[
    "server.listen",
    "server.workers",
    "server.worker_id",
    "database.url",
    "queue.global_limit",
    "queue.per_repo_limit",
    "queue.lease_secs",
    "models.anthropic_base_url",
    "models.openai_base_url",
    "models.google_gemini_base_url",
];

pub fn path(paths: &Paths) -> PathBuf {
    std::env::var_os("ERRAND_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| paths.home.join("config.toml"))
}

/// The environment variable that sets `key` (`server.listen` → `ERRAND_SERVER_LISTEN`).
pub fn env_name(key: &str) -> String {
    format!("ERRAND_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Reads the file and applies environment overrides. A missing default file is
/// an empty configuration; a missing `$ERRAND_CONFIG` or a malformed file is an
/// error naming the file.
pub fn load(paths: &Paths) -> Result<Config> {
    let p = path(paths);
    let explicit = std::env::var_os("ERRAND_CONFIG").is_some_and(|v| !v.is_empty());
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the configuration {}", p.display()))
        }
    };
    let mut value: toml::Table = toml::from_str(&text)
        .with_context(|| format!("the configuration {} is not valid", p.display()))?;
    for key in KEYS {
        if let Ok(v) = std::env::var(env_name(key)) {
            let (section, name) = key.split_once('.').unwrap_or((key, key));
            let table = value
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = table {
                // Numbers stay numbers, so `ERRAND_SERVER_WORKERS=4` means 4.
                let parsed = v
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .unwrap_or(toml::Value::String(v));
                t.insert(name.to_string(), parsed);
            }
        }
    }
    toml::Value::Table(value).try_into().with_context(|| {
        format!(
            "the configuration ({} and ERRAND_* variables) is not valid",
            p.display()
        )
    })
}

impl Config {
    pub fn registry(&self) -> Registry {
        Registry {
            custom: self.harness.clone(),
        }
    }

    /// errand's environment with the configured model endpoints filled in
    /// where the usual variables are not set: what harnesses take theirs from.
    pub fn harness_env(&self) -> std::collections::BTreeMap<String, String> {
        let mut env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        for (var, value) in [
            ("ANTHROPIC_BASE_URL", &self.models.anthropic_base_url),
            ("OPENAI_BASE_URL", &self.models.openai_base_url),
            (
                "GOOGLE_GEMINI_BASE_URL",
                &self.models.google_gemini_base_url,
            ),
        ] {
            if let Some(v) = value {
                env.entry(var.to_string()).or_insert_with(|| v.clone());
            }
        }
        env
    }

    pub fn database_url(&self, paths: &Paths) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| paths.db().to_string_lossy().into_owned())
    }

    /// Every problem, each as a sentence.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.harness.iter().flat_map(|h| h.problems()).collect();
        let mut names: Vec<&str> = self.harness.iter().map(|h| h.name.as_str()).collect();
        names.sort_unstable();
        for w in names.windows(2) {
            if w[0] == w[1] {
                out.push(format!("harness '{}' is defined twice", w[0]));
            }
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push(format!(
                "server.listen '{}' is not an address such as 127.0.0.1:8080",
                self.server.listen
            ));
        }
        if self.server.workers == 0 {
            out.push("server.workers is 0: no run would ever execute".into());
        }
        if self.queue.lease_secs < 3 {
            out.push(format!(
                "queue.lease_secs {} is too short (at least 3)",
                self.queue.lease_secs
            ));
        }
        for (key, value) in [
            ("models.anthropic_base_url", &self.models.anthropic_base_url),
            ("models.openai_base_url", &self.models.openai_base_url),
            (
                "models.google_gemini_base_url",
                &self.models.google_gemini_base_url,
            ),
        ] {
            if let Some(v) = value {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    out.push(format!("{key} '{v}' is not an http(s) URL"));
                }
            }
        }
        if let Some(url) = &self.database.url {
            let ok = url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:")
                || url.starts_with('/');
            if !ok {
                out.push(format!(
                    "database.url '{url}' is neither postgres://… nor a SQLite path"
                ));
            }
        }
        out
    }
}
