//! `[retention]`: how long errand keeps finished runs' workspaces and logs,
//! an optional disk budget for `runs/`, how long unused git mirrors stay, and
//! how often a service prunes (see `errand_runner::retention`).

use std::time::Duration;

use errand_runner::retention::Policy;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// How long after a run ends its workspace (and the agent's home) is kept.
    pub workspaces: String,
    /// How long after a run ends a follow-up is expected: its workspace is
    /// kept at least this long, even over `max_disk`.
    pub follow_up_window: String,
    /// How long after a run ends its event and raw logs are kept.
    pub logs: String,
    /// The most `runs/` may hold (`50G`, `500MB`); unset: no budget.
    pub max_disk: Option<String>,
    /// How long a git mirror no run used is kept.
    pub mirrors: String,
    /// How often `errand serve`/`worker` prunes; `0` never (then `errand gc`).
    pub interval: String,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            workspaces: "7d".into(),
            follow_up_window: "1d".into(),
            logs: "90d".into(),
            max_disk: None,
            mirrors: "30d".into(),
            interval: "1h".into(),
        }
    }
}

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("retention.{key} '{text}' is not a duration such as 7d or 12h: {e}"))
}

/// `50G`, `50GB`, `50GiB`, `500M`, `1T`, or bytes: powers of 1024.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("'{text}' is not a size such as 500M or 50G")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("'{text}' is not a size such as 500M or 50G"))
}

impl Retention {
    /// The policy these settings say.
    pub fn policy(&self) -> Result<Policy, String> {
        Ok(Policy {
            workspaces: duration("workspaces", &self.workspaces)?,
            follow_up_window: duration("follow_up_window", &self.follow_up_window)?,
            logs: duration("logs", &self.logs)?,
            max_disk: self
                .max_disk
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_bytes(s).map_err(|e| format!("retention.max_disk: {e}")))
                .transpose()?,
            mirrors: duration("mirrors", &self.mirrors)?,
        })
    }

    /// How often a service prunes; `None`: never.
    pub fn interval(&self) -> Result<Option<Duration>, String> {
        let d = duration("interval", &self.interval)?;
        Ok((!d.is_zero()).then_some(d))
    }

    /// What is wrong with the settings, each as a sentence.
    pub fn problems(&self) -> Vec<String> {
        [self.policy().err(), self.interval().err()]
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_week_a_day_three_months_and_no_budget() {
        let r = Retention::default();
        let p = r.policy().unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(r.interval().unwrap(), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn sizes_and_durations_are_read_or_refused_with_the_key() {
        assert_eq!(parse_bytes("50G"), Ok(50 << 30));
        assert_eq!(parse_bytes("500 MB"), Ok(500 << 20));
        assert_eq!(parse_bytes("1TiB"), Ok(1 << 40));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        let r = Retention {
            workspaces: "2 days".into(),
            max_disk: Some("10G".into()),
            interval: "0".into(),
            ..Retention::default()
        };
        let p = r.policy().unwrap();
        assert_eq!(p.workspaces, Duration::from_secs(2 * 86400));
        assert_eq!(p.max_disk, Some(10 << 30));
        assert_eq!(r.interval().unwrap(), None);
        let bad = Retention {
            logs: "forever".into(),
            ..Retention::default()
        };
        let problems = bad.problems();
        assert!(problems[0].contains("retention.logs"), "{problems:?}");
    }
}
