//! Run keys and the registry of live grants.
//!
//! A run key is `errand-run-` followed by 32 bytes from the operating
//! system's CSPRNG, hex-encoded. The registry stores grants by the SHA-256
//! of the key, so a lookup compares hashes, never the secret itself (no
//! timing signal about the secret's bytes). A [`RunKey`] holds its run's
//! state, so totals stay readable after revoke.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::policy::Book;
use crate::{Grant, Usage};

/// Prefix of every run key.
pub const KEY_PREFIX: &str = "errand-run-";

static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(1);

/// A run's secret key for the gateway. `Debug` does not show the secret.
#[derive(Clone)]
pub struct RunKey {
    secret: String,
    pub(crate) state: Arc<RunState>,
}

impl RunKey {
    /// The secret, to hand to the harness as its API key.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The run id this key was granted for.
    pub fn run(&self) -> &str {
        &self.state.grant.run
    }
}

impl fmt::Debug for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunKey")
            .field("run", &self.state.grant.run)
            .field("secret", &"***")
            .finish()
    }
}

/// One granted run: what it may use and what it has used.
pub(crate) struct RunState {
    pub(crate) registry: u64,
    pub(crate) hash: [u8; 32],
    pub(crate) grant: Grant,
    pub(crate) book: Mutex<Book>,
    /// Cancelled on revoke: ends the run's in-flight requests and streams.
    pub(crate) revoked: CancellationToken,
}

impl RunState {
    /// The run's book, even if a thread panicked while holding it (the
    /// book's figures stay consistent: every update is a few additions).
    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live grants, by the SHA-256 of their key.
pub(crate) struct Registry {
    id: u64,
    runs: RwLock<HashMap<[u8; 32], Arc<RunState>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            runs: RwLock::default(),
        }
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

impl Registry {
    pub(crate) fn grant(&self, grant: Grant) -> RunKey {
        let secret = new_secret();
        let hash = hash(&secret);
        let state = Arc::new(RunState {
            registry: self.id,
            hash,
            book: Mutex::new(Book::default()),
            grant,
            revoked: CancellationToken::new(),
        });
        self.write().insert(hash, Arc::clone(&state));
        RunKey { secret, state }
    }

    pub(crate) fn revoke(&self, key: &RunKey) {
        if key.state.registry != self.id {
            return;
        }
        self.write().remove(&key.state.hash);
        key.state.revoked.cancel();
    }

    pub(crate) fn totals(&self, key: &RunKey) -> Option<Usage> {
        (key.state.registry == self.id).then(|| key.state.book().totals.clone())
    }

    /// The live run whose key is `secret`.
    pub(crate) fn lookup(&self, secret: &str) -> Option<Arc<RunState>> {
        let runs = self.runs.read().unwrap_or_else(|e| e.into_inner());
        runs.get(&hash(secret)).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], Arc<RunState>>> {
        self.runs.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Credential, Limits, Protocol, Upstream};

    fn grant() -> Grant {
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        Grant {
            run: "r1".into(),
            harness: "codex".into(),
            upstreams: vec![Upstream {
                id: "openai".into(),
                protocol: Protocol::OpenAi,
                base_url: "http://127.0.0.1:9/v1".into(),
                credential: Credential::ApiKey("sk-real".into()),
            }],
            limits: Limits::default(),
            events,
        }
    }

    #[test]
    fn keys_are_random_prefixed_and_never_printed() {
        let registry = Registry::default();
        let (a, b) = (registry.grant(grant()), registry.grant(grant()));
        assert_ne!(a.secret(), b.secret());
        let hex = a.secret().strip_prefix(KEY_PREFIX).unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
        let shown = format!("{a:?} {:?}", a.state.grant.upstreams);
        assert!(
            !shown.contains(a.secret()) && !shown.contains("sk-real"),
            "{shown}"
        );
        assert_eq!(a.run(), "r1");
    }

    #[test]
    fn lookup_revoke_and_totals_per_registry() {
        let registry = Registry::default();
        let key = registry.grant(grant());
        assert!(registry.lookup(key.secret()).is_some());
        assert!(registry.lookup("errand-run-00").is_none());
        registry.revoke(&key);
        assert!(registry.lookup(key.secret()).is_none());
        assert!(key.state.revoked.is_cancelled());
        assert_eq!(registry.totals(&key), Some(Usage::default()));
        // Another gateway's registry knows nothing of this key.
        let other = Registry::default();
        assert_eq!(other.totals(&key), None);
        other.revoke(&key);
    }
}
