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
    /// For the modal sandbox: where errand also serves the gateway to Modal
    /// Sandboxes (`0.0.0.0:8473`, or a loopback address a tunnel forwards to).
    pub modal_listen: Option<String>,
    /// The base URL Modal Sandboxes reach that listener at, over the internet
    /// (`https://gateway.example.com`; put TLS in front of it). Its address is
    /// added to each Sandbox's ALLOWLIST, which has no ports: it must not
    /// also serve errand's API.
    pub modal_url: Option<String>,
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
            modal_listen: None,
            modal_url: None,
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
        remote_listener(
            &mut out,
            ("kubernetes_listen", &self.kubernetes_listen),
            ("kubernetes_url", &self.kubernetes_url),
            "0.0.0.0:8472",
            &["http://"],
            "pods reach errand at",
        );
        remote_listener(
            &mut out,
            ("modal_listen", &self.modal_listen),
            ("modal_url", &self.modal_url),
            "0.0.0.0:8473",
            &["https://", "http://"],
            "Modal Sandboxes reach errand at",
        );
        if self.requests_per_minute == Some(0) {
            out.push("gateway.requests_per_minute: must be positive".into());
        }
        out
    }
}

/// The problems of a listener for sandboxes off the host (`gateway.<x>_listen`
/// and `gateway.<x>_url`, which go together).
fn remote_listener(
    out: &mut Vec<String>,
    (listen_key, listen): (&str, &Option<String>),
    (url_key, url): (&str, &Option<String>),
    example: &str,
    schemes: &[&str],
    what: &str,
) {
    match (listen, url) {
        (Some(l), Some(u)) => {
            if l.parse::<std::net::SocketAddr>().is_err() {
                out.push(format!(
                    "gateway.{listen_key} '{l}': not an address such as {example}"
                ));
            }
            let host = schemes.iter().find_map(|s| u.strip_prefix(s));
            if !host.is_some_and(|h| !h.is_empty() && !h.starts_with('/')) {
                out.push(format!(
                    "gateway.{url_key} '{u}': a {} URL {what}",
                    schemes.join(" or ")
                ));
            }
        }
        (None, None) => {}
        _ => out.push(format!(
            "gateway.{listen_key} and gateway.{url_key} go together"
        )),
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

    #[test]
    fn listeners_for_sandboxes_off_the_host_need_an_address_and_a_url() {
        let g = Gateway {
            modal_listen: Some("0.0.0.0:8473".into()),
            modal_url: Some("https://gateway.example.com".into()),
            kubernetes_listen: Some("0.0.0.0:8472".into()),
            kubernetes_url: Some("http://errand.errand.svc:8472".into()),
            ..Default::default()
        };
        assert!(g.problems().is_empty(), "{:?}", g.problems());
        let g = Gateway {
            modal_listen: Some("everywhere".into()),
            modal_url: Some("ftp://x".into()),
            kubernetes_url: Some("https://pods-cannot-do-tls".into()),
            ..Default::default()
        };
        let p = g.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("kubernetes_listen and gateway.kubernetes_url go together"));
        assert!(p[1].contains("gateway.modal_listen 'everywhere'"), "{p:?}");
        assert!(
            p[2].contains("https:// or http:// URL Modal Sandboxes reach"),
            "{p:?}"
        );
    }
}
