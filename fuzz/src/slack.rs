//! Target `slack`: the input is a request body someone posted to
//! `/slack/commands`, `/slack/interactions` or `/slack/events`, and its
//! headers.
//!
//! - Signatures: the input split at its first two newlines is the
//!   `X-Slack-Request-Timestamp`, the `X-Slack-Signature` and the body;
//!   [`verify_parts`] and [`verify_request`] must answer without panicking,
//!   accept the body signed with the right secret and refuse it signed with
//!   another secret, at another time or with one byte changed.
//! - The whole input as a slash-command form ([`SlashCommand::from_form`]),
//!   an interaction form and its JSON ([`Interaction`]), an Events API body
//!   ([`EventEnvelope`]), and as the text after `/agent`
//!   ([`parse_agent_text`]).
//!
//! Invariants checked (see `crates/slack/src/lib.rs`): nothing panics; a
//! decoded command has every required field non-empty; a run request names
//! an `owner/repo` of GitHub's characters (no `..`), has an instruction, and
//! options that cannot be read as options or paths by what runs them (no
//! leading `-`, no whitespace or control characters); a usage error is a
//! short message with every `<`/`>` the user typed escaped, safe to post.

use errand_slack::text;
use errand_slack::verify::{verify_parts, VerifyError, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use errand_slack::{
    parse_agent_text, run_message, sign, verify_request, AgentCommand, EventEnvelope, Interaction,
    ReplayGuard, RunCard, SlashCommand,
};
use serde_json::Value;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const NOW: i64 = 1_700_000_000;

pub fn run(data: &[u8]) {
    signatures(data);
    if let Ok(cmd) = SlashCommand::from_form(data) {
        for field in [
            &cmd.team_id,
            &cmd.channel_id,
            &cmd.user_id,
            &cmd.command,
            &cmd.response_url,
            &cmd.trigger_id,
        ] {
            assert!(!field.trim().is_empty(), "an empty required field: {cmd:?}");
        }
        agent_command(cmd.agent_command());
        let replay = ReplayGuard::new();
        assert!(replay.first_time(&cmd.trigger_id, NOW));
        assert!(
            !replay.first_time(&cmd.trigger_id, NOW + 1),
            "a replay passed"
        );
    }
    if let Ok(i) = Interaction::from_form(data) {
        assert!(!i.team_id.is_empty() && !i.user_id.is_empty());
        let _ = i.cancel_run_ids().count();
    }
    if let Ok(i) = Interaction::from_json(data) {
        assert!(!i.actions.iter().any(|a| a.action_id.is_empty()));
        let _ = i.cancel_run_ids().count();
    }
    if let Ok(envelope) = EventEnvelope::from_json(data) {
        if let Some(reply) = envelope.thread_reply() {
            assert_ne!(reply.ts, reply.thread_ts, "a top-level message as a reply");
            let _ = reply.plain_text();
        }
    }
    let text = String::from_utf8_lossy(data);
    agent_command(parse_agent_text(&text));
    let _ = text::strip_leading_mention(&text);
    let escaped = text::escape(&text);
    assert!(!escaped.contains(['<', '>']), "escape left a < or >");
    let cut = text::truncate(&text, 60);
    assert!(cut.chars().count() <= 60, "truncate kept {cut:?}");
    // Every text field of a run card from hostile text (a run's failure
    // reason, for one, comes from what the agent printed).
    let hostile = text.to_string();
    card(&RunCard {
        run_id: hostile.clone(),
        short_id: hostile.clone(),
        repo: hostile.clone(),
        instruction: hostile.clone(),
        requested_by: hostile.clone(),
        viewer_url: hostile.clone(),
        state: hostile.clone(),
        reason: Some(hostile.clone()),
        pr_url: Some(hostile.clone()),
        branch: Some(hostile.clone()),
        diffstat: Some(hostile),
        turns: Some(u32::MAX),
        cost_usd: Some(f64::MAX),
        duration_secs: Some(u64::MAX),
        terminal: data.first().is_some_and(|b| b & 1 == 1),
    });
}

/// A rendered run card holds no markup but errand's own: every `<` opens a
/// link (`<http…|…>`) or a user mention (`<@U…>`), so no text can ping a
/// channel (`<!channel>`) or forge a mention.
fn card(card: &RunCard) {
    let (fallback, blocks) = run_message(card);
    let mut texts = vec![fallback];
    strings(&blocks, &mut texts);
    for t in &texts {
        for (at, _) in t.match_indices('<') {
            let after = &t[at + 1..];
            let mention = after
                .strip_prefix('@')
                .and_then(|m| m.split_once('>'))
                .is_some_and(|(id, _)| {
                    !id.is_empty()
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                });
            // errand's links take any http(s) URL, its scheme in any case.
            let scheme = |p: &str| {
                after
                    .get(..p.len())
                    .is_some_and(|a| a.eq_ignore_ascii_case(p))
            };
            let link = scheme("http://") || scheme("https://");
            assert!(mention || link, "markup from the card's text: {t:?}");
        }
    }
}

/// The texts Slack reads markup in: `mrkdwn` text objects (a button's
/// `value` or a `plain_text` label is shown as it is).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) == Some("mrkdwn") {
                if let Some(text) = o.get("text").and_then(Value::as_str) {
                    out.push(text.to_owned());
                }
            }
            o.values().for_each(|v| strings(v, out));
        }
        _ => {}
    }
}

fn agent_command(parsed: Result<AgentCommand, errand_slack::UsageError>) {
    match parsed {
        Ok(AgentCommand::Run(run)) => {
            let (owner, repo) = run.repo.split_once('/').unwrap_or_default();
            assert!(!owner.is_empty() && !repo.is_empty(), "repo {:?}", run.repo);
            assert!(
                owner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !owner.starts_with('-'),
                "owner {owner:?}"
            );
            assert!(
                repo.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                    && !repo.contains(".."),
                "repo {repo:?}"
            );
            assert!(!run.instruction.trim().is_empty(), "an empty instruction");
            for value in [&run.harness, &run.model, &run.base].into_iter().flatten() {
                assert!(
                    !value.is_empty()
                        && !value.starts_with('-')
                        && !value.chars().any(|c| c.is_whitespace() || c.is_control()),
                    "option value {value:?}"
                );
            }
            if let Some(base) = &run.base {
                assert!(!base.contains(".."), "base {base:?}");
            }
        }
        Ok(AgentCommand::Cancel { id }) => {
            assert!(
                !id.is_empty()
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "run id {id:?}"
            );
        }
        Ok(AgentCommand::Help | AgentCommand::Status) => {}
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.contains(['<', '>']),
                "unescaped markup: {message:?}"
            );
            assert!(!message.contains('\n'), "a usage error of two lines");
            // At most two typed parts, each cut to 60 characters and then
            // escaped (`&` → `&amp;`: up to 300), around a sentence.
            assert!(message.chars().count() <= 1000, "a long usage error");
        }
    }
}

fn signatures(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let ts = parts.next().unwrap_or_default();
    let sig = parts.next();
    let body = parts.next().unwrap_or_default();
    let ts_str = std::str::from_utf8(ts).ok();
    let sig_str = sig.and_then(|s| std::str::from_utf8(s).ok());
    let _ = verify_parts(SECRET, ts_str, sig_str, body, NOW);
    let _ = verify_parts("", ts_str, sig_str, body, NOW);

    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(ts) {
        headers.insert(TIMESTAMP_HEADER, v);
    }
    if let Some(Ok(v)) = sig.map(http::HeaderValue::from_bytes) {
        headers.insert(SIGNATURE_HEADER, v);
    }
    let _ = verify_request(SECRET, &headers, body, NOW);

    // The body signed properly passes; anything else about it does not.
    let now = NOW.to_string();
    let good = sign(SECRET, NOW, body);
    assert_eq!(
        verify_parts(SECRET, Some(&now), Some(&good), body, NOW),
        Ok(())
    );
    let other = sign("another secret", NOW, body);
    assert_eq!(
        verify_parts(SECRET, Some(&now), Some(&other), body, NOW),
        Err(VerifyError::BadSignature)
    );
    let later = (NOW + 1).to_string();
    assert_eq!(
        verify_parts(SECRET, Some(&later), Some(&good), body, NOW),
        Err(VerifyError::BadSignature)
    );
    if let Some((first, rest)) = body.split_first() {
        let mut changed = vec![first ^ 1];
        changed.extend_from_slice(rest);
        assert_eq!(
            verify_parts(SECRET, Some(&now), Some(&good), &changed, NOW),
            Err(VerifyError::BadSignature)
        );
    }
    assert_eq!(
        verify_parts(SECRET, Some(&now), Some(&good), body, NOW + 301),
        Err(VerifyError::Stale)
    );
}
