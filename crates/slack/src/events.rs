//! Events API callbacks (<https://api.slack.com/apis/events-api>).
//!
//! errand listens for replies in a run's thread. Everything else is
//! [`InnerEvent::Other`]: acknowledge it with HTTP 200 and move on (Slack
//! retries unacknowledged events; de-duplicate on `event_id` with a
//! [`crate::ReplayGuard`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::PayloadError;
use crate::text;

/// The outer envelope of an Events API request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventEnvelope {
    /// Sent once when the request URL is configured: answer with the
    /// challenge (verify the signature first).
    UrlVerification {
        /// Echo this back as the response body (or `{"challenge": …}`).
        challenge: String,
    },
    /// A subscribed event happened.
    EventCallback {
        /// Unique per event; the replay key.
        event_id: String,
        /// Workspace id.
        team_id: String,
        /// The Slack app id, if sent.
        api_app_id: Option<String>,
        /// When the event happened (Unix seconds), if sent.
        event_time: Option<i64>,
        /// The inner event.
        event: InnerEvent,
    },
    /// Another envelope type (e.g. `app_rate_limited`); acknowledge it.
    Other {
        /// The envelope's `type`.
        kind: String,
    },
}

/// The inner event of an `event_callback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InnerEvent {
    /// A person replied in a thread.
    ThreadReply(ThreadReply),
    /// Anything else: top-level messages, bot messages, edits/deletes
    /// (messages with a `subtype`), other event types. The raw event is kept.
    Other(Value),
}

/// A person's reply in a thread (`type: "message"` with `thread_ts != ts`,
/// no `bot_id`, no `subtype`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadReply {
    /// Channel id.
    pub channel: String,
    /// `ts` of the thread's parent message (errand's run message).
    pub thread_ts: String,
    /// `ts` of this reply.
    pub ts: String,
    /// Author's user id.
    pub user: String,
    /// The reply's text with a leading `<@BOT>` mention removed and trimmed;
    /// otherwise raw Slack markup (see [`ThreadReply::plain_text`]).
    pub text: String,
}

impl ThreadReply {
    /// The text with Slack markup decoded ([`crate::text::normalize`]).
    pub fn plain_text(&self) -> String {
        text::normalize(&self.text)
    }
}

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    challenge: Option<String>,
    event_id: Option<String>,
    team_id: Option<String>,
    api_app_id: Option<String>,
    event_time: Option<i64>,
    event: Option<Value>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(rename = "type")]
    kind: Option<String>,
    subtype: Option<Value>,
    bot_id: Option<Value>,
    channel: Option<String>,
    user: Option<String>,
    text: Option<String>,
    ts: Option<String>,
    thread_ts: Option<String>,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

impl EventEnvelope {
    /// Decodes a raw Events API body (JSON). Verify the signature over the
    /// same bytes first.
    ///
    /// Errors: invalid JSON → [`PayloadError::Json`]; no `type` →
    /// [`PayloadError::MissingField`]; `url_verification` without
    /// `challenge`, or `event_callback` without `event_id`/`team_id`/`event`
    /// → [`PayloadError::MissingField`]. Unknown types are not errors.
    pub fn from_json(body: &[u8]) -> Result<EventEnvelope, PayloadError> {
        let raw: RawEnvelope =
            serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
        let kind = non_empty(raw.kind).ok_or(PayloadError::MissingField("type"))?;
        match kind.as_str() {
            "url_verification" => Ok(EventEnvelope::UrlVerification {
                challenge: non_empty(raw.challenge)
                    .ok_or(PayloadError::MissingField("challenge"))?,
            }),
            "event_callback" => {
                let event_id =
                    non_empty(raw.event_id).ok_or(PayloadError::MissingField("event_id"))?;
                let team_id =
                    non_empty(raw.team_id).ok_or(PayloadError::MissingField("team_id"))?;
                let event = match raw.event {
                    Some(e @ Value::Object(_)) => e,
                    _ => return Err(PayloadError::MissingField("event")),
                };
                Ok(EventEnvelope::EventCallback {
                    event_id,
                    team_id,
                    api_app_id: non_empty(raw.api_app_id),
                    event_time: raw.event_time,
                    event: classify(event),
                })
            }
            _ => Ok(EventEnvelope::Other { kind }),
        }
    }

    /// The thread reply, if this is one.
    pub fn thread_reply(&self) -> Option<&ThreadReply> {
        match self {
            EventEnvelope::EventCallback {
                event: InnerEvent::ThreadReply(r),
                ..
            } => Some(r),
            _ => None,
        }
    }
}

fn classify(event: Value) -> InnerEvent {
    let Ok(m) = RawMessage::deserialize(&event) else {
        return InnerEvent::Other(event);
    };
    if m.kind.as_deref() != Some("message") || m.subtype.is_some() || m.bot_id.is_some() {
        return InnerEvent::Other(event);
    }
    let (Some(channel), Some(user), Some(ts), Some(thread_ts)) = (
        non_empty(m.channel),
        non_empty(m.user),
        non_empty(m.ts),
        non_empty(m.thread_ts),
    ) else {
        return InnerEvent::Other(event);
    };
    if thread_ts == ts {
        return InnerEvent::Other(event);
    }
    let text = text::strip_leading_mention(m.text.as_deref().unwrap_or_default()).to_string();
    InnerEvent::ThreadReply(ThreadReply {
        channel,
        thread_ts,
        ts,
        user,
        text,
    })
}

/// Builds an `event_callback` body carrying a thread reply, as Slack would
/// send it (for tests and the fake).
pub fn thread_reply_event(
    team_id: &str,
    event_id: &str,
    channel: &str,
    thread_ts: &str,
    ts: &str,
    user: &str,
    text: &str,
) -> Value {
    serde_json::json!({
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": "A0ERRAND",
        "event": {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "thread_ts": thread_ts,
            "parent_user_id": "U0BOT",
            "channel_type": "channel",
            "event_ts": ts
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_700_000_000,
        "authorizations": [{"team_id": team_id, "user_id": "U0BOT", "is_bot": true}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<EventEnvelope, PayloadError> {
        EventEnvelope::from_json(v.to_string().as_bytes())
    }

    fn inner(event: Value) -> InnerEvent {
        match parse(
            json!({"type": "event_callback", "event_id": "Ev1", "team_id": "T1", "event": event}),
        ) {
            Ok(EventEnvelope::EventCallback { event, .. }) => event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn url_verification() {
        let e = parse(
            json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}),
        );
        assert_eq!(
            e,
            Ok(EventEnvelope::UrlVerification {
                challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into()
            })
        );
        assert_eq!(
            parse(json!({"type": "url_verification"})),
            Err(PayloadError::MissingField("challenge"))
        );
    }

    #[test]
    fn thread_reply_with_mention() {
        let body = thread_reply_event(
            "T1",
            "Ev42",
            "C1",
            "1700000000.000100",
            "1700000050.000200",
            "U7",
            "<@U0BOT> also fix the &lt;docs&gt;",
        );
        let e = parse(body).unwrap();
        let EventEnvelope::EventCallback {
            event_id,
            team_id,
            api_app_id,
            event_time,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(event_id, "Ev42");
        assert_eq!(team_id, "T1");
        assert_eq!(api_app_id.as_deref(), Some("A0ERRAND"));
        assert_eq!(*event_time, Some(1_700_000_000));
        let r = e.thread_reply().unwrap();
        assert_eq!(
            r,
            &ThreadReply {
                channel: "C1".into(),
                thread_ts: "1700000000.000100".into(),
                ts: "1700000050.000200".into(),
                user: "U7".into(),
                text: "also fix the &lt;docs&gt;".into(),
            }
        );
        assert_eq!(r.plain_text(), "also fix the <docs>");
    }

    #[test]
    fn non_replies_are_other() {
        let base = json!({"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "2.0", "thread_ts": "1.0"});
        assert!(matches!(inner(base.clone()), InnerEvent::ThreadReply(_)));
        let with = |k: &str, v: Value| {
            let mut e = base.clone();
            e[k] = v;
            e
        };
        let without = |k: &str| {
            let mut e = base.clone();
            e.as_object_mut().unwrap().remove(k);
            e
        };
        for (name, event) in [
            ("top-level message", without("thread_ts")),
            ("thread parent", with("thread_ts", json!("2.0"))),
            ("bot message", with("bot_id", json!("B1"))),
            ("edit", with("subtype", json!("message_changed"))),
            ("broadcast", with("subtype", json!("thread_broadcast"))),
            ("no user", without("user")),
            ("no channel", without("channel")),
            ("app_mention", with("type", json!("app_mention"))),
            ("reaction", json!({"type": "reaction_added", "user": "U1"})),
            ("wrong types", with("ts", json!(2.0))),
        ] {
            assert!(matches!(inner(event), InnerEvent::Other(_)), "{name}");
        }
        // Missing text is an empty reply, not an error.
        match inner(without("text")) {
            InnerEvent::ThreadReply(r) => assert_eq!(r.text, ""),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_envelopes_and_malformed_bodies() {
        assert_eq!(
            parse(json!({"type": "app_rate_limited", "minute_rate_limited": 1})),
            Ok(EventEnvelope::Other {
                kind: "app_rate_limited".into()
            })
        );
        assert_eq!(parse(json!({})), Err(PayloadError::MissingField("type")));
        assert_eq!(
            parse(json!({"type": "event_callback", "team_id": "T", "event": {}})),
            Err(PayloadError::MissingField("event_id"))
        );
        assert_eq!(
            parse(json!({"type": "event_callback", "event_id": "E", "event": {}})),
            Err(PayloadError::MissingField("team_id"))
        );
        assert_eq!(
            parse(json!({"type": "event_callback", "event_id": "E", "team_id": "T"})),
            Err(PayloadError::MissingField("event"))
        );
        assert_eq!(
            parse(json!({"type": "event_callback", "event_id": "E", "team_id": "T", "event": "x"})),
            Err(PayloadError::MissingField("event"))
        );
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"\"x\"",
            b"{\"type\": 1}",
            b"\xff\xfe",
            b"{\"type\":\"event_callback\",\"event_time\":\"soon\"}",
        ] {
            assert!(
                matches!(EventEnvelope::from_json(body), Err(PayloadError::Json(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
