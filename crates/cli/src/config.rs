//! errand's configuration file: `$ERRAND_CONFIG`, or `$ERRAND_HOME/config.toml`
//! when that exists. Optional: errand runs on its defaults without one.
//!
//! ```toml
//! [[harness]]            # a custom harness: any command that prints JSON lines
//! name = "my-agent"
//! command = ["/opt/errand/harness/run.sh", "{prompt}"]
//! format = "errand"      # errand's own events, or "claude-stream-json"
//! env = ["MY_AGENT_KEY"]
//! dir = "/srv/my-agent"  # mounted read-only at /opt/errand/harness
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use errand_harness::{CustomHarness, Registry};
use errand_runner::Paths;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub harness: Vec<CustomHarness>,
}

pub fn path(paths: &Paths) -> PathBuf {
    std::env::var_os("ERRAND_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| paths.home.join("config.toml"))
}

/// Reads the configuration; a missing default file is an empty configuration,
/// a missing `$ERRAND_CONFIG` or a malformed file is an error naming the file.
pub fn load(paths: &Paths) -> Result<Config> {
    let p = path(paths);
    let explicit = std::env::var_os("ERRAND_CONFIG").is_some_and(|v| !v.is_empty());
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Config::default())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the configuration {}", p.display()))
        }
    };
    toml::from_str(&text).with_context(|| format!("the configuration {} is not valid", p.display()))
}

impl Config {
    pub fn registry(&self) -> Registry {
        Registry {
            custom: self.harness.clone(),
        }
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
        out
    }
}
