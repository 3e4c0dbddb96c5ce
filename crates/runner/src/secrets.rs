//! Secrets at rest: values errand hands to runs (API keys, tokens) are sealed
//! with XChaCha20-Poly1305 before they reach the database, with the secret's
//! name as associated data (a sealed value cannot be moved to another name).
//! The key comes from `ERRAND_SECRET_KEY` (64 hex digits; set the same on every
//! node sharing a database) or from `$ERRAND_HOME/secret.key`, created with mode
//! 0600 on first use. A run gets a stored secret only when its harness declares
//! the variable.

use std::collections::BTreeMap;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use errand_store::Store;

const NONCE: usize = 24;

/// Why a secret could not be sealed, opened or stored.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key is not 32 bytes of hex.
    #[error(
        "ERRAND_SECRET_KEY must be 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`"
    )]
    BadKey,
    /// The key file could not be read or created.
    #[error("the secret key file {path}: {source}")]
    KeyFile {
        /// The key file.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A sealed secret that does not open with this key.
    #[error(
        "secret '{0}' cannot be opened: it was sealed with another key, or it was tampered with"
    )]
    Open(String),
    /// A name that is not an environment variable's.
    #[error("secret names are environment variable names (A-Z, 0-9, _), not '{0}'")]
    BadName(String),
    /// The store holding sealed secrets.
    #[error(transparent)]
    Store(#[from] errand_store::StoreError),
}

/// The key that seals and opens stored secrets.
pub struct SecretKey(XChaCha20Poly1305);

fn from_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl SecretKey {
    /// `ERRAND_SECRET_KEY`, else the key file under `home` (created when missing).
    pub fn load(home: &Path) -> Result<SecretKey, SecretError> {
        if let Ok(v) = std::env::var("ERRAND_SECRET_KEY") {
            return from_hex(&v)
                .map(|k| SecretKey(XChaCha20Poly1305::new(&k.into())))
                .ok_or(SecretError::BadKey);
        }
        let path = home.join("secret.key");
        let err = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => from_hex(&text)
                .map(|k| SecretKey(XChaCha20Poly1305::new(&k.into())))
                .ok_or(SecretError::BadKey),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                std::fs::create_dir_all(home).map_err(err)?;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(err)?;
                f.write_all(hex.as_bytes()).map_err(err)?;
                Ok(SecretKey(XChaCha20Poly1305::new(&key)))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// nonce || ciphertext || tag.
    pub fn seal(&self, name: &str, value: &str) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        // Encryption with a fresh nonce cannot fail for inputs of this size.
        if let Ok(ct) = self.0.encrypt(
            &nonce,
            Payload {
                msg: value.as_bytes(),
                aad: name.as_bytes(),
            },
        ) {
            out.extend(ct);
        }
        out
    }

    /// The value [`SecretKey::seal`] sealed under `name`; fails if another
    /// key or name sealed it, or it was changed.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<String, SecretError> {
        if sealed.len() <= NONCE {
            return Err(SecretError::Open(name.into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE);
        let plain = self
            .0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open(name.into()))?;
        String::from_utf8(plain).map_err(|_| SecretError::Open(name.into()))
    }
}

/// Secret names are environment variable names: `A-Z`, `0-9`, `_`.
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(SecretError::BadName(name.into()))
    }
}

/// Every stored secret, opened.
pub async fn load_all(
    store: &dyn Store,
    key: &SecretKey,
) -> Result<BTreeMap<String, String>, SecretError> {
    let mut out = BTreeMap::new();
    for (name, sealed) in store.sealed_secrets().await? {
        out.insert(name.clone(), key.open(&name, &sealed)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey(XChaCha20Poly1305::new(&[7u8; 32].into()))
    }

    #[test]
    fn sealed_values_open_only_under_their_name_and_key() {
        let k = key();
        let sealed = k.seal("ANTHROPIC_API_KEY", "sk-ant-secret");
        assert!(
            !sealed.windows(6).any(|w| w == b"sk-ant"),
            "no plaintext in the sealed form"
        );
        assert_eq!(
            k.open("ANTHROPIC_API_KEY", &sealed).unwrap(),
            "sk-ant-secret"
        );
        assert!(k.open("OTHER", &sealed).is_err(), "bound to its name");
        let other = SecretKey(XChaCha20Poly1305::new(&[8u8; 32].into()));
        assert!(other.open("ANTHROPIC_API_KEY", &sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(k.open("ANTHROPIC_API_KEY", &tampered).is_err());
        assert_ne!(k.seal("A", "x"), k.seal("A", "x"), "fresh nonces");
    }

    #[test]
    fn keys_and_names_are_validated() {
        assert!(from_hex(&"ab".repeat(32)).is_some());
        assert!(from_hex("abc").is_none());
        assert!(from_hex(&"zz".repeat(32)).is_none());
        assert!(check_name("GITHUB_TOKEN").is_ok());
        assert!(check_name("github-token").is_err());
        assert!(check_name("1X").is_err());
    }

    #[test]
    fn a_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = SecretKey::load(dir.path()).unwrap();
        let sealed = k1.seal("X", "v");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let k2 = SecretKey::load(dir.path()).unwrap();
        assert_eq!(k2.open("X", &sealed).unwrap(), "v");
    }
}
