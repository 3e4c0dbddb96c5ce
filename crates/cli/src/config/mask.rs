//! Secrets masked in what `errand config show` prints: secret-looking keys'
//! values, and passwords in URLs.

use super::{Loaded, KEYS};

/// Does `key` (a config key, or a name inside `[[harness]]` such as an
/// environment variable) name a secret? Paths to secrets (`*_file`) do not.
pub(super) fn is_secret(key: &str) -> bool {
    let k = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    !k.ends_with("_file")
        && ["key", "token", "secret", "password", "passwd", "credential"]
            .iter()
            .any(|w| k.contains(w))
}

pub(super) const MASK: &str = "********";

/// `scheme://user:password@host` → `scheme://user:********@host`; anything else unchanged.
pub(super) fn mask_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return s.to_string();
    };
    let user = rest[..at].split(':').next().unwrap_or("");
    let masked = if rest[..at].contains(':') {
        format!("{user}:{MASK}")
    } else {
        MASK.to_string()
    };
    format!("{scheme}://{masked}{}", &rest[at..])
}

/// `v` with every secret-looking key's value masked, and credentials in URLs.
pub(super) fn mask(key: &str, v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Null => J::Null,
        _ if is_secret(key) => J::String(MASK.into()),
        J::String(s) => J::String(mask_url(&s)),
        J::Array(a) => J::Array(a.into_iter().map(|x| mask(key, x)).collect()),
        J::Object(o) => J::Object(
            o.into_iter()
                .map(|(k, x)| {
                    let x = mask(&k, x);
                    (k, x)
                })
                .collect(),
        ),
        other => other,
    }
}

impl Loaded {
    /// Every key's effective value (masked), in [`KEYS`] order; `None` for
    /// `[github]` and `[slack]` keys when that section is not configured.
    pub fn effective(&self) -> Vec<(&'static str, Option<serde_json::Value>)> {
        let c = &self.config;
        let section = |name: &str| -> Option<serde_json::Value> {
            match name {
                "server" => serde_json::to_value(&c.server).ok(),
                "database" => serde_json::to_value(&c.database).ok(),
                "queue" => serde_json::to_value(&c.queue).ok(),
                "models" => serde_json::to_value(&c.models).ok(),
                "sandbox" => serde_json::to_value(&c.sandbox).ok(),
                "github" => c.github.as_ref().and_then(|g| serde_json::to_value(g).ok()),
                "slack" => c.slack.as_ref().and_then(|s| serde_json::to_value(s).ok()),
                "log" => serde_json::to_value(&c.log).ok(),
                "retention" => serde_json::to_value(&c.retention).ok(),
                "gateway" => serde_json::to_value(&c.gateway).ok(),
                _ => None,
            }
        };
        KEYS.iter()
            .map(|(key, _)| {
                let (s, name) = key.split_once('.').unwrap_or((key, key));
                let v = section(s).map(|t| mask(key, t.get(name).cloned().unwrap_or_default()));
                (*key, v)
            })
            .collect()
    }

    /// The `[[harness]]` or `[[access]]` entries as written, masked.
    pub(crate) fn entries(&self, name: &str) -> serde_json::Value {
        self.table
            .get(name)
            .and_then(|v| serde_json::to_value(v).ok())
            .map(|v| mask(name, v))
            .unwrap_or_else(|| serde_json::Value::Array(Vec::new()))
    }
}
