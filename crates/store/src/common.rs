//! What both backends share: timestamps as unix milliseconds, events as JSON,
//! the reasons they record, the SQL lists of states.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use errand_core::{Event, RunId, RunState};

use crate::{Result, StoreError};

/// Why [`crate::Store::release_expired`] fails a run.
pub const LEASE_EXPIRED_REASON: &str =
    "the worker running it stopped (lease expired); errand restarted or lost the worker";

/// Recorded with the `queued` transition of [`crate::Store::requeue_for_follow_up`].
pub(crate) const FOLLOW_UP_REASON: &str = "follow-up message";

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("bad timestamp {ms}")))
}

pub(crate) fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_millis).transpose()
}

/// Unix milliseconds of now + `lease` (saturating).
pub(crate) fn lease_end(lease: std::time::Duration) -> i64 {
    let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    millis(Utc::now()).saturating_add(lease)
}

pub(crate) fn parse_run_id(id: &str) -> Result<RunId> {
    RunId::from_str(id).map_err(|e| StoreError::Corrupt(format!("run id {id}: {e}")))
}

pub(crate) fn parse_state(state: &str) -> Result<RunState> {
    RunState::from_str(state).map_err(StoreError::Corrupt)
}

/// `'a', 'b'` for SQL `IN (...)`: the names of the states matching `pick`.
/// (Fixed identifiers, so inlining them is safe.)
pub(crate) fn state_list(pick: impl Fn(RunState) -> bool) -> String {
    RunState::ALL
        .into_iter()
        .filter(|s| pick(*s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn terminal_states() -> String {
    state_list(RunState::is_terminal)
}

/// preparing, running, finishing: the states a worker holds a run in.
pub(crate) fn active_states() -> String {
    state_list(|s| !s.is_terminal() && s != RunState::Queued)
}

pub(crate) fn encode_event(event: &Event) -> Result<String> {
    serde_json::to_string(event)
        .map_err(|e| StoreError::Corrupt(format!("event does not serialize: {e}")))
}

pub(crate) fn decode_event(run: RunId, seq: i64, body: &str) -> Result<Event> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("event {seq} of run {run}: {e}")))
}

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is too large")))
}

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is negative")))
}

/// 0 means no limit.
pub(crate) fn sql_limit(limit: u32) -> i64 {
    if limit == 0 {
        i64::MAX
    } else {
        i64::from(limit)
    }
}

/// PostgreSQL text cannot hold NUL; neither backend stores it, so both agree.
pub(crate) fn clean_line(line: &str) -> std::borrow::Cow<'_, str> {
    let nuls = line.bytes().filter(|&b| b == 0).count();
    if nuls > 0 {
        // Sized once: a line of NULs triples, and growing by doubling would
        // hold half as much again (an 8 MiB line cost 33 MB, not 25).
        let mut out = String::with_capacity(line.len() + 2 * nuls);
        for (i, part) in line.split('\0').enumerate() {
            if i > 0 {
                out.push('\u{FFFD}');
            }
            out.push_str(part);
        }
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(line)
    }
}

/// The stored `scopes` column as scopes; names this build does not know are
/// dropped (they grant nothing here).
pub(crate) fn parse_scopes(text: &str) -> Vec<crate::Scope> {
    let mut v: Vec<crate::Scope> = text.split(',').filter_map(|p| p.parse().ok()).collect();
    v.sort();
    v.dedup();
    v
}

/// Unix milliseconds of `now + keep` (saturating).
pub(crate) fn expiry(now: DateTime<Utc>, keep: std::time::Duration) -> i64 {
    let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    millis(now).saturating_add(keep)
}

pub(crate) fn new_token_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Puts the counts of `rows` into every state, in [`RunState::ALL`] order.
pub(crate) fn all_state_counts(rows: Vec<(String, i64)>) -> Result<Vec<(RunState, u64)>> {
    let mut out: Vec<(RunState, u64)> = RunState::ALL.into_iter().map(|s| (s, 0)).collect();
    for (state, n) in rows {
        let state = parse_state(&state)?;
        if let Some(slot) = out.iter_mut().find(|(s, _)| *s == state) {
            slot.1 = to_u64(n, "count")?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_becomes_the_replacement_character_and_nothing_else_changes() {
        assert_eq!(clean_line("plain"), "plain");
        assert!(matches!(clean_line("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            clean_line("\0a\0\0b\0"),
            "\u{FFFD}a\u{FFFD}\u{FFFD}b\u{FFFD}"
        );
        let long = "\0".repeat(1000);
        let clean = clean_line(&long);
        assert_eq!(clean.chars().count(), 1000);
        assert_eq!(clean.len(), 3000);
    }
}
