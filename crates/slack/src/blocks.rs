//! Block Kit rendering of a run (<https://api.slack.com/block-kit>).
//!
//! One message per run, posted when it is queued and updated in place
//! (`chat.update`) as it progresses. While the run is not terminal the
//! message carries a Cancel button whose click arrives as an
//! [`crate::Interaction`] with `action_id` [`CANCEL_ACTION_ID`] and the run id
//! as `value`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use crate::text::escape;
use crate::text::truncate;

/// `action_id` of errand's Cancel button.
pub const CANCEL_ACTION_ID: &str = "errand_cancel";
/// `block_id` of the actions block holding the Cancel button.
pub const ACTIONS_BLOCK_ID: &str = "errand_run_actions";

const MAX_INSTRUCTION_CHARS: usize = 300;
const MAX_REASON_CHARS: usize = 500;
const MAX_SHORT_CHARS: usize = 200;

/// What the run message shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunCard {
    /// Full run id (the Cancel button's value).
    pub run_id: String,
    /// Short id shown to people.
    pub short_id: String,
    /// `owner/repo`.
    pub repo: String,
    /// The instruction as typed (plain text; escaped here).
    pub instruction: String,
    /// Slack user id of the requester (`U…`).
    pub requested_by: String,
    /// Link to the live trace viewer.
    pub viewer_url: String,
    /// Run state, e.g. `queued`, `running`, `succeeded`, `failed`,
    /// `cancelled`, `timed_out`.
    pub state: String,
    /// Why the run failed or was cancelled.
    pub reason: Option<String>,
    /// The pull request, once opened.
    pub pr_url: Option<String>,
    /// The pushed branch.
    pub branch: Option<String>,
    /// e.g. `3 files changed, +40 −2`.
    pub diffstat: Option<String>,
    /// Agent turns so far.
    pub turns: Option<u32>,
    /// Model cost so far, in US dollars.
    pub cost_usd: Option<f64>,
    /// Wall-clock duration so far.
    pub duration_secs: Option<u64>,
    /// Whether the run has finished (no Cancel button).
    pub terminal: bool,
}

/// Emoji for a run state.
pub fn state_emoji(state: &str) -> &'static str {
    match state {
        "queued" => ":hourglass_flowing_sand:",
        "preparing" => ":package:",
        "running" => ":gear:",
        "finishing" => ":arrow_up:",
        "succeeded" => ":white_check_mark:",
        "failed" => ":x:",
        "cancelled" | "canceled" => ":no_entry_sign:",
        "timed_out" => ":alarm_clock:",
        _ => ":grey_question:",
    }
}

/// `$0.0123` below one dollar, `$12.34` above.
pub fn format_cost(usd: f64) -> Option<String> {
    if !usd.is_finite() || usd < 0.0 {
        return None;
    }
    Some(if usd < 1.0 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    })
}

/// `45s`, `2m 05s`, `1h 02m 05s`.
pub fn format_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A URL usable inside `<url|label>`: escaped, with `|` percent-encoded.
/// Returns `None` for anything that is not http(s).
fn link_target(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://"))
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    Some(escape(&url.replace('|', "%7C")))
}

fn link(url: &str, label: &str) -> String {
    match link_target(url) {
        Some(target) => format!("<{target}|{}>", escape(label)),
        None => escape(label),
    }
}

fn mention(user_id: &str) -> String {
    let looks_like_id = !user_id.is_empty()
        && user_id.len() <= 32
        && user_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if looks_like_id {
        format!("<@{user_id}>")
    } else {
        escape(user_id)
    }
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

fn plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": text, "emoji": true})
}

/// Renders `card` as `(fallback text, blocks)` for `chat.postMessage` /
/// `chat.update`. All user-supplied text is escaped.
pub fn run_message(card: &RunCard) -> (String, Value) {
    let repo_link = link(&format!("https://github.com/{}", card.repo), &card.repo);
    let instruction = escape(&truncate(card.instruction.trim(), MAX_INSTRUCTION_CHARS));
    let quoted: Vec<String> = instruction.lines().map(|l| format!(">{l}")).collect();
    let short_id = escape(&truncate(&card.short_id, 40));
    let state = escape(&truncate(&card.state, 40));

    let mut blocks = vec![
        json!({"type": "section", "text": mrkdwn(format!("*{repo_link}*\n{}", quoted.join("\n")))}),
        json!({"type": "context", "elements": [mrkdwn(format!(
            "requested by {} · run `{short_id}`",
            mention(&card.requested_by)
        ))]}),
    ];

    let mut state_line = format!("{} *{state}*", state_emoji(&card.state));
    if link_target(&card.viewer_url).is_some() {
        state_line.push_str(&format!(" · {}", link(&card.viewer_url, "View live trace")));
    }
    blocks.push(json!({"type": "section", "text": mrkdwn(state_line)}));

    let mut outcome: Vec<String> = Vec::new();
    if let Some(pr) = card.pr_url.as_deref() {
        outcome.push(format!(":link: {}", link(pr, "Pull request")));
    }
    if let Some(branch) = card.branch.as_deref() {
        outcome.push(format!(
            "branch `{}`",
            escape(&truncate(branch, MAX_SHORT_CHARS))
        ));
    }
    if let Some(diffstat) = card.diffstat.as_deref() {
        outcome.push(escape(&truncate(diffstat, MAX_SHORT_CHARS)));
    }
    let mut stats: Vec<String> = Vec::new();
    if let Some(turns) = card.turns {
        stats.push(format!("{turns} turn{}", if turns == 1 { "" } else { "s" }));
    }
    if let Some(cost) = card.cost_usd.and_then(format_cost) {
        stats.push(cost);
    }
    if let Some(d) = card.duration_secs {
        stats.push(format_duration(d));
    }
    if !stats.is_empty() {
        outcome.push(stats.join(" · "));
    }
    if let Some(reason) = card.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        outcome.push(format!(
            "*Reason:* {}",
            escape(&truncate(reason.trim(), MAX_REASON_CHARS))
        ));
    }
    if !outcome.is_empty() {
        blocks.push(json!({"type": "section", "text": mrkdwn(outcome.join("\n"))}));
    }

    if !card.terminal {
        blocks.push(json!({
            "type": "actions",
            "block_id": ACTIONS_BLOCK_ID,
            "elements": [{
                "type": "button",
                "action_id": CANCEL_ACTION_ID,
                "text": plain("Cancel"),
                "style": "danger",
                "value": card.run_id,
                "confirm": {
                    "title": plain("Cancel this run?"),
                    "text": mrkdwn(format!("The agent working on *{}* will be stopped.", escape(&card.repo))),
                    "confirm": plain("Cancel run"),
                    "deny": plain("Keep running"),
                    "style": "danger"
                }
            }]
        }));
    }

    let mut fallback = format!("errand run {short_id} on {}: {state}", escape(&card.repo));
    if let Some(pr) = card.pr_url.as_deref().and_then(link_target) {
        fallback.push_str(&format!(" — {pr}"));
    }
    (fallback, Value::Array(blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> RunCard {
        RunCard {
            run_id: "0190f3a2-7c4e-7a1b-9d2e-3f4a5b6c7d8e".into(),
            short_id: "7c4e".into(),
            repo: "acme/widgets".into(),
            instruction: "fix the flaky test".into(),
            requested_by: "U2CERLKJA".into(),
            viewer_url: "https://errand.example.com/runs/7c4e".into(),
            state: "running".into(),
            ..RunCard::default()
        }
    }

    fn cancel_buttons(blocks: &Value) -> Vec<&Value> {
        blocks
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap())
            .filter(|e| e["action_id"] == CANCEL_ACTION_ID)
            .collect()
    }

    fn all_text(blocks: &Value) -> String {
        blocks.to_string()
    }

    #[test]
    fn running_card_has_cancel_button() {
        let (fallback, blocks) = run_message(&card());
        assert_eq!(fallback, "errand run 7c4e on acme/widgets: running");
        let buttons = cancel_buttons(&blocks);
        assert_eq!(buttons.len(), 1);
        let b = buttons[0];
        assert_eq!(b["value"], "0190f3a2-7c4e-7a1b-9d2e-3f4a5b6c7d8e");
        assert_eq!(b["style"], "danger");
        assert_eq!(b["type"], "button");
        assert!(b["confirm"]["title"]["text"].is_string());
        assert!(b["confirm"]["confirm"]["text"].is_string());
        assert!(b["confirm"]["deny"]["text"].is_string());
        let text = all_text(&blocks);
        assert!(
            text.contains("<https://github.com/acme/widgets|acme/widgets>"),
            "{text}"
        );
        assert!(text.contains(">fix the flaky test"), "{text}");
        assert!(text.contains("requested by <@U2CERLKJA>"), "{text}");
        assert!(text.contains(":gear: *running*"), "{text}");
        assert!(
            text.contains("<https://errand.example.com/runs/7c4e|View live trace>"),
            "{text}"
        );
    }

    #[test]
    fn terminal_card_has_outcome_and_no_button() {
        let c = RunCard {
            state: "succeeded".into(),
            terminal: true,
            pr_url: Some("https://github.com/acme/widgets/pull/12".into()),
            branch: Some("errand/7c4e-fix-flaky".into()),
            diffstat: Some("2 files changed, +14 −3".into()),
            turns: Some(9),
            cost_usd: Some(0.0123),
            duration_secs: Some(125),
            ..card()
        };
        let (fallback, blocks) = run_message(&c);
        assert!(cancel_buttons(&blocks).is_empty());
        assert!(!all_text(&blocks).contains("\"actions\""));
        let text = all_text(&blocks);
        for needle in [
            ":white_check_mark: *succeeded*",
            "<https://github.com/acme/widgets/pull/12|Pull request>",
            "branch `errand/7c4e-fix-flaky`",
            "2 files changed, +14 −3",
            "9 turns · $0.0123 · 2m 05s",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(
            fallback.ends_with("— https://github.com/acme/widgets/pull/12"),
            "{fallback}"
        );
    }

    #[test]
    fn failed_card_shows_reason() {
        let c = RunCard {
            state: "failed".into(),
            terminal: true,
            reason: Some("agent exited with code 1 <see log>".into()),
            ..card()
        };
        let text = all_text(&run_message(&c).1);
        assert!(text.contains(":x: *failed*"));
        assert!(
            text.contains("*Reason:* agent exited with code 1 &lt;see log&gt;"),
            "{text}"
        );
    }

    #[test]
    fn user_text_is_escaped_and_truncated() {
        let c = RunCard {
            instruction: format!("<!channel> & <https://evil|click> {}", "x".repeat(1000)),
            requested_by: "<!here>".into(),
            short_id: "<b>".into(),
            viewer_url: "javascript:alert(1)".into(),
            pr_url: Some("https://github.com/a/b/pull/1|evil>".into()),
            ..card()
        };
        let (fallback, blocks) = run_message(&c);
        let text = all_text(&blocks);
        assert!(
            !text.contains("<!channel>") && !text.contains("<!here>"),
            "{text}"
        );
        assert!(
            text.contains("&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"),
            "{text}"
        );
        assert!(!text.contains("javascript:"), "{text}");
        assert!(
            text.contains("<https://github.com/a/b/pull/1%7Cevil&gt;|Pull request>"),
            "{text}"
        );
        assert!(!text.contains(&"x".repeat(400)));
        assert!(text.contains('…'));
        assert!(!fallback.contains("<b>"));
        // Every section text stays under Slack's 3000-char limit.
        for b in blocks.as_array().unwrap() {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() < 3000);
            }
        }
    }

    #[test]
    fn multi_line_instruction_is_quoted_per_line() {
        let c = RunCard {
            instruction: "one\ntwo".into(),
            ..card()
        };
        let text = run_message(&c).1[0]["text"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.ends_with(">one\n>two"), "{text}");
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(format_cost(0.0123).as_deref(), Some("$0.0123"));
        assert_eq!(format_cost(0.0).as_deref(), Some("$0.0000"));
        assert_eq!(format_cost(12.5).as_deref(), Some("$12.50"));
        assert_eq!(format_cost(f64::NAN), None);
        assert_eq!(format_cost(-1.0), None);
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(125), "2m 05s");
        assert_eq!(format_duration(3725), "1h 02m 05s");
        assert_eq!(state_emoji("timed_out"), ":alarm_clock:");
        assert_eq!(state_emoji("weird"), ":grey_question:");
    }
}
