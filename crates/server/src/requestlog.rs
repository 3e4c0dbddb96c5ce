//! One log line per API request, at info: method, path (secrets masked),
//! status and latency. Probes and scrapes (`/healthz`, `/readyz`, `/metrics`)
//! log at debug, so they do not drown the rest.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

const MASK: &str = "***";

/// Query parameters whose values are never logged.
fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["token", "key", "secret", "password", "sig", "code", "auth"]
        .iter()
        .any(|w| n.contains(w))
}

/// The request's path and query as logged: share links' tokens and
/// secret-looking query values masked.
pub fn loggable(path: &str, query: Option<&str>) -> String {
    let mut out = match path.strip_prefix("/share/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, tail)) => format!("/share/{MASK}/{tail}"),
            None => format!("/share/{MASK}"),
        },
        None => path.to_string(),
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        let masked: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_param(k) => format!("{k}={MASK}"),
                _ if secret_param(pair) => MASK.to_string(),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
}

/// The middleware ([`crate::app`] wraps every route in it).
pub async fn log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = loggable(req.uri().path(), req.uri().query());
    let quiet = matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    if quiet {
        tracing::debug!(%method, %path, status, latency_ms, "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_paths_and_queries_are_masked() {
        assert_eq!(loggable("/api/runs", None), "/api/runs");
        assert_eq!(
            loggable("/api/runs", Some("state=running&limit=5")),
            "/api/runs?state=running&limit=5"
        );
        assert_eq!(
            loggable("/api/runs/abc/events/stream", Some("token=s3cr3t&after=4")),
            "/api/runs/abc/events/stream?token=***&after=4"
        );
        assert_eq!(
            loggable("/github/manifest", Some("code=xyz")),
            "/github/manifest?code=***"
        );
        assert_eq!(loggable("/share/tok123", None), "/share/***");
        assert_eq!(
            loggable("/share/tok123/events/stream", Some("access_key")),
            "/share/***/events/stream?***"
        );
    }
}
