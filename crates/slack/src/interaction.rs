//! Interactive component callbacks (button clicks): `block_actions` payloads
//! (<https://api.slack.com/reference/interaction-payloads/block-actions>).
//!
//! Slack posts `application/x-www-form-urlencoded` with a single `payload`
//! field holding JSON. errand's cancel button has `action_id = "errand_cancel"`
//! and `value = <run id>` ([`crate::blocks::CANCEL_ACTION_ID`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blocks::CANCEL_ACTION_ID;
use crate::error::PayloadError;

/// A decoded `block_actions` interaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    /// Workspace of the clicking user (`team.id`, or `user.team_id` for
    /// org-wide installs where `team` is null).
    pub team_id: String,
    /// Enterprise Grid org id, when present.
    pub enterprise_id: Option<String>,
    /// The clicking user (authorize on this, with `team_id`).
    pub user_id: String,
    /// The clicking user's name (informational only).
    pub user_name: Option<String>,
    /// Channel holding the message (`channel.id` or `container.channel_id`);
    /// absent for clicks in modals or the App Home.
    pub channel_id: Option<String>,
    /// `ts` of the message holding the button (`container.message_ts` or
    /// `message.ts`).
    pub message_ts: Option<String>,
    /// Thread of that message, if it is a reply.
    pub thread_ts: Option<String>,
    /// For replying/replacing the message (up to 5 times in 30 minutes).
    pub response_url: Option<String>,
    /// Replay key.
    pub trigger_id: Option<String>,
    /// The Slack app id.
    pub api_app_id: Option<String>,
    /// The actions, usually exactly one.
    pub actions: Vec<Action>,
}

/// One action in a `block_actions` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The element's `action_id`.
    pub action_id: String,
    /// The block the element is in.
    pub block_id: Option<String>,
    /// The element type (`button`, `static_select`, …).
    pub kind: Option<String>,
    /// A button's `value`, or a select's `selected_option.value`.
    pub value: Option<String>,
}

#[derive(Deserialize)]
struct Form {
    payload: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: Option<String>,
    team: Option<RawTeam>,
    enterprise: Option<RawTeam>,
    user: Option<RawUser>,
    channel: Option<RawId>,
    container: Option<RawContainer>,
    message: Option<RawMessage>,
    response_url: Option<String>,
    trigger_id: Option<String>,
    api_app_id: Option<String>,
    actions: Option<Vec<RawAction>>,
}

#[derive(Deserialize)]
struct RawTeam {
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawUser {
    id: Option<String>,
    username: Option<String>,
    name: Option<String>,
    team_id: Option<String>,
}

#[derive(Deserialize)]
struct RawId {
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawContainer {
    channel_id: Option<String>,
    message_ts: Option<String>,
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    ts: Option<String>,
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct RawAction {
    action_id: Option<String>,
    block_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
    selected_option: Option<RawOption>,
}

#[derive(Deserialize)]
struct RawOption {
    value: Option<String>,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

impl Interaction {
    /// Decodes the raw form body (`payload=<json>`). Verify the signature over
    /// the same bytes first.
    ///
    /// Errors: no `payload` field → [`PayloadError::MissingField`]; bad JSON →
    /// [`PayloadError::Json`]; a type other than `block_actions` →
    /// [`PayloadError::UnsupportedType`]; missing user/team/actions →
    /// [`PayloadError::MissingField`].
    pub fn from_form(body: &[u8]) -> Result<Self, PayloadError> {
        let form: Form =
            serde_urlencoded::from_bytes(body).map_err(|e| PayloadError::Form(e.to_string()))?;
        let payload = non_empty(form.payload).ok_or(PayloadError::MissingField("payload"))?;
        Self::from_json(payload.as_bytes())
    }

    /// Decodes the JSON inside the `payload` field.
    pub fn from_json(json: &[u8]) -> Result<Self, PayloadError> {
        let raw: Raw =
            serde_json::from_slice(json).map_err(|e| PayloadError::Json(e.to_string()))?;
        let kind = non_empty(raw.kind).ok_or(PayloadError::MissingField("type"))?;
        if kind != "block_actions" {
            return Err(PayloadError::UnsupportedType(kind));
        }
        let user = raw.user.ok_or(PayloadError::MissingField("user"))?;
        let user_id = non_empty(user.id).ok_or(PayloadError::MissingField("user.id"))?;
        let team_id = raw
            .team
            .and_then(|t| non_empty(t.id))
            .or_else(|| non_empty(user.team_id))
            .ok_or(PayloadError::MissingField("team.id"))?;
        let (container_channel, container_ts, container_thread) = match raw.container {
            Some(c) => (c.channel_id, c.message_ts, c.thread_ts),
            None => (None, None, None),
        };
        let (message_ts, message_thread) = match raw.message {
            Some(m) => (m.ts, m.thread_ts),
            None => (None, None),
        };
        let raw_actions = raw.actions.ok_or(PayloadError::MissingField("actions"))?;
        let mut actions = Vec::with_capacity(raw_actions.len());
        for a in raw_actions {
            let action_id =
                non_empty(a.action_id).ok_or(PayloadError::MissingField("actions[].action_id"))?;
            actions.push(Action {
                action_id,
                block_id: non_empty(a.block_id),
                kind: non_empty(a.kind),
                value: a.value.or_else(|| a.selected_option.and_then(|o| o.value)),
            });
        }
        Ok(Interaction {
            team_id,
            enterprise_id: raw.enterprise.and_then(|e| non_empty(e.id)),
            user_id,
            user_name: non_empty(user.username).or_else(|| non_empty(user.name)),
            channel_id: non_empty(raw.channel.and_then(|c| c.id))
                .or_else(|| non_empty(container_channel)),
            message_ts: non_empty(container_ts).or_else(|| non_empty(message_ts)),
            thread_ts: non_empty(container_thread).or_else(|| non_empty(message_thread)),
            response_url: non_empty(raw.response_url),
            trigger_id: non_empty(raw.trigger_id),
            api_app_id: non_empty(raw.api_app_id),
            actions,
        })
    }

    /// Run ids of errand cancel buttons in this interaction
    /// (actions with `action_id == "errand_cancel"` and a non-empty value).
    pub fn cancel_run_ids(&self) -> impl Iterator<Item = &str> {
        self.actions
            .iter()
            .filter(|a| a.action_id == CANCEL_ACTION_ID)
            .filter_map(|a| a.value.as_deref())
            .filter(|v| !v.is_empty())
    }
}

/// Builds the JSON of a `block_actions` payload for one button click, as
/// Slack would send it (for tests and the fake).
pub fn block_actions_payload(
    team_id: &str,
    user_id: &str,
    channel_id: &str,
    message_ts: &str,
    action_id: &str,
    value: &str,
) -> Value {
    serde_json::json!({
        "type": "block_actions",
        "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": team_id},
        "api_app_id": "A0ERRAND",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": false
        },
        "trigger_id": "1234567890.0987654321.abcdef0123456789",
        "team": {"id": team_id, "domain": "example"},
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": {"id": channel_id, "name": "general"},
        "message": {"type": "message", "ts": message_ts, "text": "run", "user": "U0BOT", "bot_id": "B0BOT"},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0/1/abc",
        "actions": [{
            "action_id": action_id,
            "block_id": "errand_run_actions",
            "text": {"type": "plain_text", "text": "Cancel", "emoji": true},
            "value": value,
            "style": "danger",
            "type": "button",
            "action_ts": "1700000000.123456"
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(payload: &Value) -> Vec<u8> {
        serde_urlencoded::to_string([("payload", payload.to_string())])
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn decodes_cancel_click() {
        let p = block_actions_payload(
            "T1",
            "U1",
            "C1",
            "1700000000.000100",
            "errand_cancel",
            "run-42",
        );
        let i = Interaction::from_form(&form(&p)).unwrap();
        assert_eq!(i.team_id, "T1");
        assert_eq!(i.user_id, "U1");
        assert_eq!(i.user_name.as_deref(), Some("someone"));
        assert_eq!(i.channel_id.as_deref(), Some("C1"));
        assert_eq!(i.message_ts.as_deref(), Some("1700000000.000100"));
        assert_eq!(i.enterprise_id, None);
        assert_eq!(
            i.response_url.as_deref(),
            Some("https://hooks.slack.com/actions/T0/1/abc")
        );
        assert_eq!(i.actions.len(), 1);
        assert_eq!(i.actions[0].action_id, "errand_cancel");
        assert_eq!(i.actions[0].value.as_deref(), Some("run-42"));
        assert_eq!(i.actions[0].kind.as_deref(), Some("button"));
        assert_eq!(i.cancel_run_ids().collect::<Vec<_>>(), vec!["run-42"]);
    }

    #[test]
    fn other_buttons_are_not_cancels() {
        let p = block_actions_payload("T1", "U1", "C1", "1.2", "something_else", "x");
        let i = Interaction::from_form(&form(&p)).unwrap();
        assert_eq!(i.cancel_run_ids().count(), 0);
    }

    #[test]
    fn falls_back_to_container_and_user_team() {
        let p = serde_json::json!({
            "type": "block_actions",
            "team": null,
            "user": {"id": "U9", "team_id": "T9"},
            "container": {"type": "message", "channel_id": "C9", "message_ts": "5.6", "thread_ts": "1.0"},
            "actions": [{"action_id": "pick", "type": "static_select", "selected_option": {"value": "v"}}]
        });
        let i = Interaction::from_json(p.to_string().as_bytes()).unwrap();
        assert_eq!(i.team_id, "T9");
        assert_eq!(i.channel_id.as_deref(), Some("C9"));
        assert_eq!(i.message_ts.as_deref(), Some("5.6"));
        assert_eq!(i.thread_ts.as_deref(), Some("1.0"));
        assert_eq!(i.actions[0].value.as_deref(), Some("v"));
        assert_eq!(i.response_url, None);
    }

    #[test]
    fn malformed_payloads() {
        use PayloadError::*;
        let cases: Vec<(Vec<u8>, PayloadError)> = vec![
            (b"".to_vec(), MissingField("payload")),
            (b"payload=".to_vec(), MissingField("payload")),
            (b"other=1".to_vec(), MissingField("payload")),
            (
                form(&serde_json::json!({"type": "view_submission", "user": {"id": "U"}})),
                UnsupportedType("view_submission".into()),
            ),
            (
                form(&serde_json::json!({"user": {"id": "U"}})),
                MissingField("type"),
            ),
            (
                form(
                    &serde_json::json!({"type": "block_actions", "team": {"id": "T"}, "actions": []}),
                ),
                MissingField("user"),
            ),
            (
                form(
                    &serde_json::json!({"type": "block_actions", "user": {}, "team": {"id": "T"}, "actions": []}),
                ),
                MissingField("user.id"),
            ),
            (
                form(
                    &serde_json::json!({"type": "block_actions", "user": {"id": "U"}, "actions": []}),
                ),
                MissingField("team.id"),
            ),
            (
                form(
                    &serde_json::json!({"type": "block_actions", "user": {"id": "U"}, "team": {"id": "T"}}),
                ),
                MissingField("actions"),
            ),
            (
                form(
                    &serde_json::json!({"type": "block_actions", "user": {"id": "U"}, "team": {"id": "T"}, "actions": [{"value": "x"}]}),
                ),
                MissingField("actions[].action_id"),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                Interaction::from_form(&body),
                Err(want.clone()),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        for body in [
            &b"payload=%7B"[..],
            b"payload=not-json",
            b"payload=%5B%5D",
            b"payload=null",
            b"payload=%7B%22type%22%3A5%7D",
            b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%22U1%22%7D",
        ] {
            assert!(
                matches!(Interaction::from_form(body), Err(PayloadError::Json(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            Interaction::from_form(b"payload=a&payload=b"),
            Err(PayloadError::Form(_))
        ));
    }
}
