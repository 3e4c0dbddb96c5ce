//! GitHub App credentials and the App JWT.

use std::fmt;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::error::{GithubError, Result};

/// How far `iat` is backdated to absorb clock drift (GitHub recommends 60 s).
pub const JWT_BACKDATE_SECS: i64 = 60;
/// How far in the future `exp` is set; GitHub's limit is 10 minutes.
pub const JWT_LIFETIME_SECS: i64 = 540;

/// A GitHub App's identity: its id (or client id) and its private key.
#[derive(Clone)]
pub struct AppCredentials {
    /// The App id or client id; used as the JWT `iss`.
    pub app_id: String,
    /// The App's RSA private key, PEM (PKCS#1 as GitHub issues it, or PKCS#8).
    pub private_key_pem: String,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

impl AppCredentials {
    /// Credentials from an App id (or client id) and a PEM private key.
    pub fn new(app_id: impl Into<String>, private_key_pem: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            private_key_pem: private_key_pem.into(),
        }
    }

    /// The App JWT for `now`: RS256, `iat = now - 60 s`, `exp = now + 540 s`, `iss = app_id`.
    pub fn jwt(&self, now: DateTime<Utc>) -> Result<String> {
        sign(&self.encoding_key()?, &self.app_id, now)
    }

    pub(crate) fn encoding_key(&self) -> Result<EncodingKey> {
        EncodingKey::from_rsa_pem(self.private_key_pem.as_bytes())
            .map_err(|e| GithubError::InvalidKey(e.to_string()))
    }
}

pub(crate) fn sign(key: &EncodingKey, iss: &str, now: DateTime<Utc>) -> Result<String> {
    let now = now.timestamp();
    let claims = Claims {
        iat: now - JWT_BACKDATE_SECS,
        exp: now + JWT_LIFETIME_SECS,
        iss,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
        .map_err(|e| GithubError::InvalidKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_an_invalid_key_error_without_the_key() {
        let creds = AppCredentials::new(
            "1",
            "-----BEGIN RSA PRIVATE KEY-----\nnotakey\n-----END RSA PRIVATE KEY-----\n",
        );
        let err = creds.jwt(Utc::now()).expect_err("must fail");
        assert!(matches!(err, GithubError::InvalidKey(_)));
        assert!(!err.to_string().contains("notakey"));
        assert!(!format!("{creds:?}").contains("notakey"));
    }
}
