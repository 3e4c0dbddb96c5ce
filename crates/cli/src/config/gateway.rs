//! `[gateway]`: errand's model gateway. Runs reach their model provider through
//! it with a key of their own, so no real key enters a sandbox; it meters each
//! request and holds runs to their budgets (see `errand_gateway`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gateway {
    /// Route runs' model traffic through the gateway (default). `false` gives
    /// harnesses the real keys, as before the gateway existed.
    pub enabled: bool,
    /// Where it listens: a loopback address of the host (`127.0.0.1:0`, any
    /// free port). Sandboxes reach it through their egress bridge.
    pub listen: String,
    /// The most a run may cost in US dollars, unless it sets its own `--max-cost`.
    pub max_cost_usd: Option<f64>,
    /// The most tokens a run may use, unless it sets its own `--max-tokens`.
    pub max_tokens: Option<u64>,
    /// The models runs may use: exact names or prefixes ending in `*`; empty: any.
    pub models: Vec<String>,
    /// The most model requests a run may make per minute; unset: no limit.
    pub requests_per_minute: Option<u32>,
    /// Harnesses that must talk to their provider directly (they get the real
    /// key, and their runs' traces say so).
    pub direct: Vec<String>,
    /// For the kubernetes sandbox: where errand also serves the gateway to
    /// agent pods (`0.0.0.0:8472`); pods cannot reach the host's loopback.
    pub kubernetes_listen: Option<String>,
    /// The base URL pods reach that listener at
    /// (`http://errand-git.errand.svc.cluster.local:8472`).
    pub kubernetes_url: Option<String>,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            enabled: true,
            listen: "127.0.0.1:0".into(),
            max_cost_usd: None,
            max_tokens: None,
            models: Vec::new(),
            requests_per_minute: None,
            direct: Vec::new(),
            kubernetes_listen: None,
            kubernetes_url: None,
        }
    }
}

impl Gateway {
    /// Every problem with the section, for `errand config check`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.listen.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => {}
            Ok(a) => out.push(format!(
                "gateway.listen {a}: must be a loopback address (sandboxes reach it through their egress bridge, \
                 and nothing else should)"
            )),
            Err(e) => out.push(format!(
                "gateway.listen '{}': not an address such as 127.0.0.1:0: {e}",
                self.listen
            )),
        }
        if self
            .max_cost_usd
            .is_some_and(|c| !(c > 0.0 && c.is_finite()))
        {
            out.push("gateway.max_cost_usd: must be a positive number of US dollars".into());
        }
        if self.max_tokens == Some(0) {
            out.push("gateway.max_tokens: must be positive".into());
        }
        match (&self.kubernetes_listen, &self.kubernetes_url) {
            (Some(l), Some(u)) => {
                if l.parse::<std::net::SocketAddr>().is_err() {
                    out.push(format!(
                        "gateway.kubernetes_listen '{l}': not an address such as 0.0.0.0:8472"
                    ));
                }
                if !u.starts_with("http://") || u.trim_start_matches("http://").is_empty() {
                    out.push(format!(
                        "gateway.kubernetes_url '{u}': an http:// URL pods reach errand at"
                    ));
                }
            }
            (None, None) => {}
            _ => {
                out.push("gateway.kubernetes_listen and gateway.kubernetes_url go together".into())
            }
        }
        if self.requests_per_minute == Some(0) {
            out.push("gateway.requests_per_minute: must be positive".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_listens_on_loopback_only() {
        let g = Gateway {
            listen: "0.0.0.0:8090".into(),
            ..Default::default()
        };
        assert_eq!(g.problems().len(), 1);
        assert!(g.problems()[0].contains("loopback"));
        assert!(Gateway::default().problems().is_empty());
        let g = Gateway {
            max_cost_usd: Some(-1.0),
            max_tokens: Some(0),
            ..Default::default()
        };
        assert_eq!(g.problems().len(), 2);
    }
}
