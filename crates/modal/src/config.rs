//! Where the client connects and with which token: `MODAL_*` variables over
//! a profile of `~/.modal.toml`, as the official SDKs read them (Go SDK
//! `config.go` `getProfile`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ModalError;

/// The default API endpoint.
pub const DEFAULT_SERVER_URL: &str = "https://api.modal.com:443";

/// The settings of one profile, with the environment's overrides applied.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (empty when none was read).
    pub name: String,
    /// `MODAL_SERVER_URL`, else the profile's `server_url`, else [`DEFAULT_SERVER_URL`].
    pub server_url: String,
    /// `MODAL_TOKEN_ID`, else the profile's `token_id`.
    pub token_id: String,
    /// `MODAL_TOKEN_SECRET`, else the profile's `token_secret`.
    pub token_secret: String,
    /// `MODAL_ENVIRONMENT`, else the profile's `environment` (empty: the default one).
    pub environment: String,
    /// `MODAL_IMAGE_BUILDER_VERSION`, else the profile's `image_builder_version`.
    pub image_builder_version: Option<String>,
    /// The file the profile came from, if any.
    pub source: Option<PathBuf>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("server_url", &self.server_url)
            .field("token_id", &self.token_id)
            .field("token_secret", &"[redacted]")
            .field("environment", &self.environment)
            .field("image_builder_version", &self.image_builder_version)
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
struct FileProfile {
    server_url: Option<String>,
    token_id: Option<String>,
    token_secret: Option<String>,
    environment: Option<String>,
    image_builder_version: Option<String>,
    #[serde(default)]
    active: bool,
}

impl Profile {
    /// Reads the process's environment and `MODAL_CONFIG_PATH` or `~/.modal.toml`.
    pub fn from_env() -> Result<Profile, ModalError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Profile::load(&|k| std::env::var(k).ok(), home.as_deref())
    }

    /// Reads `var` (the environment) and the profile file it or `home` names.
    pub fn load(
        var: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<Profile, ModalError> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let path = var("MODAL_CONFIG_PATH")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".modal.toml")));
        let mut profiles: BTreeMap<String, FileProfile> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut source = None;
        if let Some(p) = &path {
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    let table: toml::Table = text.parse().map_err(|e| {
                        ModalError::Config(format!("{} is not valid TOML: {e}", p.display()))
                    })?;
                    for (name, value) in table {
                        let fp: FileProfile = value.try_into().map_err(|e| {
                            ModalError::Config(format!(
                                "profile [{name}] of {} is not a Modal profile: {e}",
                                p.display()
                            ))
                        })?;
                        order.push(name.clone());
                        profiles.insert(name, fp);
                    }
                    source = Some(p.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ModalError::Config(format!(
                        "cannot read {}: {e}",
                        p.display()
                    )))
                }
            }
        }
        let name = match var("MODAL_PROFILE") {
            Some(n) => {
                if source.is_some() && !profiles.contains_key(&n) {
                    return Err(ModalError::Config(format!(
                        "MODAL_PROFILE names the profile '{n}', which {} does not have",
                        path.as_deref()
                            .map(Path::display)
                            .map(|d| d.to_string())
                            .unwrap_or_default()
                    )));
                }
                n
            }
            None => order
                .iter()
                .find(|n| profiles.get(*n).is_some_and(|p| p.active))
                .cloned()
                .unwrap_or_default(),
        };
        let fp = profiles.remove(&name).unwrap_or_default();
        Ok(Profile {
            server_url: var("MODAL_SERVER_URL")
                .or(fp.server_url)
                .unwrap_or_else(|| DEFAULT_SERVER_URL.to_string()),
            token_id: var("MODAL_TOKEN_ID").or(fp.token_id).unwrap_or_default(),
            token_secret: var("MODAL_TOKEN_SECRET")
                .or(fp.token_secret)
                .unwrap_or_default(),
            environment: var("MODAL_ENVIRONMENT")
                .or(fp.environment)
                .unwrap_or_default(),
            image_builder_version: var("MODAL_IMAGE_BUILDER_VERSION").or(fp.image_builder_version),
            source: if name.is_empty() { None } else { source },
            name,
        })
    }

    /// What is missing for a connection, each as a sentence.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.token_id.is_empty() || self.token_secret.is_empty() {
            out.push(
                "no Modal token: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, or run `modal token new` \
                 (which writes ~/.modal.toml)"
                    .to_string(),
            );
        }
        if let Err(e) = Endpoint::parse(&self.server_url) {
            out.push(e.to_string());
        }
        out
    }
}

/// A parsed server URL: TLS or plaintext h2c, and the host:port dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://` (TLS with the system's roots) rather than `http://` (h2c).
    pub tls: bool,
    /// The host, without brackets.
    pub host: String,
    /// The port (443 or 80 when the URL names none).
    pub port: u16,
}

impl Endpoint {
    /// Parses `url`: `https://host[:port]` or `http://host[:port]`; any other scheme is an error.
    pub fn parse(url: &str) -> Result<Endpoint, ModalError> {
        let bad = |why: &str| ModalError::Config(format!("the Modal server URL '{url}' {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("must start with https:// or http://"));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("names no host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("has an unclosed '['"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| bad("has a port that is not a number"))?,
            None if tls => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(bad("names no host"));
        }
        Ok(Endpoint { tls, host, port })
    }

    /// `scheme://host:port`, what the channel dials.
    pub fn uri(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{}://{host}:{}",
            if self.tls { "https" } else { "http" },
            self.port
        )
    }

    /// Whether the host is one the Go SDK treats as local (`isLocalhost`):
    /// its command router is then reached without TLS.
    pub fn is_localhost(&self) -> bool {
        matches!(
            self.host.as_str(),
            "localhost" | "127.0.0.1" | "::1" | "172.21.0.1"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)], file: Option<&str>) -> Result<Profile, ModalError> {
        let dir = tempfile::tempdir().map_err(|e| ModalError::Config(e.to_string()))?;
        if let Some(text) = file {
            std::fs::write(dir.path().join(".modal.toml"), text)
                .map_err(|e| ModalError::Config(e.to_string()))?;
        }
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Profile::load(&get, Some(dir.path()))
    }

    const FILE: &str = r#"
[first]
token_id = "ak-first"
token_secret = "as-first"

[work]
token_id = "ak-work"
token_secret = "as-work"
environment = "staging"
server_url = "http://localhost:8889"
active = true
"#;

    #[test]
    fn the_active_profile_is_read_and_the_environment_overrides_it() {
        let p = load(&[], Some(FILE)).expect("profile");
        assert_eq!(p.name, "work");
        assert_eq!(p.token_id, "ak-work");
        assert_eq!(p.environment, "staging");
        assert_eq!(p.server_url, "http://localhost:8889");
        let p = load(
            &[("MODAL_PROFILE", "first"), ("MODAL_TOKEN_SECRET", "as-env")],
            Some(FILE),
        )
        .expect("profile");
        assert_eq!(
            (p.token_id.as_str(), p.token_secret.as_str()),
            ("ak-first", "as-env")
        );
        assert_eq!(p.server_url, DEFAULT_SERVER_URL);
        let p = load(&[("MODAL_SERVER_URL", "https://example.test")], Some(FILE)).expect("p");
        assert_eq!(p.server_url, "https://example.test");
        assert!(
            !format!("{p:?}").contains("as-work"),
            "the secret is not printed"
        );
    }

    #[test]
    fn a_missing_file_means_environment_only_and_a_missing_profile_is_an_error() {
        let p = load(
            &[("MODAL_TOKEN_ID", "ak"), ("MODAL_TOKEN_SECRET", "as")],
            None,
        )
        .expect("p");
        assert!(p.missing().is_empty(), "{:?}", p.missing());
        let p = load(&[], None).expect("p");
        assert_eq!(p.missing().len(), 1);
        assert!(load(&[("MODAL_PROFILE", "nope")], Some(FILE)).is_err());
        assert!(load(&[], Some("not = [toml")).is_err());
    }

    #[test]
    fn server_urls() {
        let e = Endpoint::parse("https://api.modal.com:443").expect("url");
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (true, "api.modal.com", 443)
        );
        let e = Endpoint::parse("http://127.0.0.1:5000").expect("url");
        assert!(!e.tls && e.is_localhost());
        assert_eq!(Endpoint::parse("https://h").expect("url").port, 443);
        assert_eq!(
            Endpoint::parse("http://[::1]:9").expect("url").uri(),
            "http://[::1]:9"
        );
        for bad in ["grpc://h:1", "https://", "http://h:port", "api.modal.com"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
