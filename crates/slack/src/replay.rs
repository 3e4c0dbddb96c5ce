//! De-duplication of Slack deliveries.
//!
//! A valid signature proves a request came from Slack, not that it is the
//! first delivery: Slack retries events it thinks were not acknowledged, and a
//! captured request can be replayed within the 5-minute timestamp window.
//! Key slash commands and interactions by `trigger_id` and events by
//! `event_id`.

use std::collections::HashMap;
use std::sync::Mutex;

/// How long a key is remembered: the same window as signature freshness.
pub const DEFAULT_TTL_SECS: i64 = 60 * 5;

/// In-memory set of recently seen keys; entries expire after a TTL
/// (default 5 minutes). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ReplayGuard {
    ttl_secs: i64,
    seen: Mutex<HashMap<String, i64>>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayGuard {
    /// A guard remembering keys for [`DEFAULT_TTL_SECS`].
    pub fn new() -> Self {
        Self::with_ttl_secs(DEFAULT_TTL_SECS)
    }

    /// A guard remembering keys for `ttl_secs` seconds.
    pub fn with_ttl_secs(ttl_secs: i64) -> Self {
        Self {
            ttl_secs: ttl_secs.max(0),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `true` the first time `key` is seen within the TTL (and records it);
    /// `false` for a repeat. `now_unix` is the current time in Unix seconds.
    /// An empty key cannot be de-duplicated and always returns `true`.
    pub fn first_time(&self, key: &str, now_unix: i64) -> bool {
        if key.is_empty() {
            return true;
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ttl = self.ttl_secs;
        seen.retain(|_, first_seen| now_unix.saturating_sub(*first_seen) < ttl);
        if seen.contains_key(key) {
            return false;
        }
        seen.insert(key.to_string(), now_unix);
        true
    }

    /// Number of keys currently remembered (expired ones are dropped lazily).
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no keys are remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_rejected_until_expiry() {
        let g = ReplayGuard::new();
        assert!(g.first_time("398738663015.47445629121.803a", 1000));
        assert!(!g.first_time("398738663015.47445629121.803a", 1000));
        assert!(!g.first_time("398738663015.47445629121.803a", 1299));
        assert!(g.first_time("other", 1299));
        // 300 s after first sight the entry has expired.
        assert!(g.first_time("398738663015.47445629121.803a", 1300));
        assert!(!g.first_time("398738663015.47445629121.803a", 1301));
    }

    #[test]
    fn expired_entries_are_pruned() {
        let g = ReplayGuard::with_ttl_secs(10);
        for i in 0..100 {
            assert!(g.first_time(&format!("k{i}"), 0));
        }
        assert_eq!(g.len(), 100);
        assert!(g.first_time("late", 10));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn empty_key_is_never_deduplicated() {
        let g = ReplayGuard::new();
        assert!(g.first_time("", 0));
        assert!(g.first_time("", 0));
        assert!(g.is_empty());
    }
}
