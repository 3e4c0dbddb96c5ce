//! A small Slack Web API client: the four calls errand makes.
//!
//! - JSON bodies with `Authorization: Bearer xoxb-…` and
//!   `Content-Type: application/json; charset=utf-8`;
//! - HTTP 429 → wait `Retry-After` seconds (capped) and retry, up to
//!   [`MAX_ATTEMPTS`] attempts in all;
//! - `{"ok": false, "error": "…"}` → [`SlackError::Api`].
//!
//! The bot token is never sent to `response_url`s and never appears in
//! `Debug` output or errors.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::blocks::{run_message, RunCard};
use crate::text::truncate;

/// Slack's Web API base URL.
pub const DEFAULT_API_BASE: &str = "https://slack.com/api";
/// Attempts per call when Slack answers 429 (the first try included).
pub const MAX_ATTEMPTS: u32 = 5;
/// Default cap on a single `Retry-After` wait.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// Wait used when a 429 has no usable `Retry-After`.
const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(1);

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A failed Slack call.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// Slack answered `{"ok": false, "error": CODE}` (e.g. `invalid_auth`,
    /// `channel_not_found`, `message_not_found`, `expired_url`).
    #[error("Slack API error: {0}")]
    Api(String),
    /// The request could not be sent or the response not read (connection,
    /// TLS, timeout). URLs are stripped from the source error.
    #[error("HTTP error calling Slack {method}: {source}")]
    Http {
        /// The Web API method, or `response_url`.
        method: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// Still HTTP 429 after [`MAX_ATTEMPTS`] attempts.
    #[error("Slack {method} is still rate limited after {attempts} attempts")]
    RateLimited {
        /// The Web API method, or `response_url`.
        method: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A non-success HTTP status without a Slack error code.
    #[error("Slack {method} returned HTTP {status}: {body}")]
    Status {
        /// The Web API method, or `response_url`.
        method: String,
        /// HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// A success status but a body that is not what Slack sends.
    #[error("Slack {method} returned an unexpected response: {message}")]
    Decode {
        /// The Web API method, or `response_url`.
        method: String,
        /// What was wrong.
        message: String,
    },
}

impl SlackError {
    /// The Slack error code of an [`SlackError::Api`] error.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            SlackError::Api(code) => Some(code),
            _ => None,
        }
    }
}

/// A message to post or update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Channel id.
    pub channel: String,
    /// Reply in this thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
    /// Text; the notification/fallback text when `blocks` is set.
    pub text: String,
    /// Block Kit blocks (a JSON array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Value>,
}

impl Message {
    /// A plain text message.
    pub fn new(channel: impl Into<String>, text: impl Into<String>) -> Self {
        Message {
            channel: channel.into(),
            text: text.into(),
            ..Message::default()
        }
    }

    /// The run card for `card` ([`run_message`]).
    pub fn run_card(channel: impl Into<String>, card: &RunCard) -> Self {
        let (text, blocks) = run_message(card);
        Message {
            channel: channel.into(),
            thread_ts: None,
            text,
            blocks: Some(blocks),
        }
    }

    /// Posts into the thread `thread_ts`.
    pub fn in_thread(mut self, thread_ts: impl Into<String>) -> Self {
        self.thread_ts = Some(thread_ts.into());
        self
    }

    /// Sets the blocks.
    pub fn with_blocks(mut self, blocks: Value) -> Self {
        self.blocks = Some(blocks);
        self
    }
}

/// Where a posted message ended up (the pair `chat.update` needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    /// Channel id.
    pub channel: String,
    /// Message timestamp (its id within the channel).
    pub ts: String,
}

/// Slack Web API client. Cheap to clone.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    api_base: String,
    bot_token: String,
    max_retry_wait: Duration,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackClient")
            .field("api_base", &self.api_base)
            .field("bot_token", &"<redacted>")
            .field("max_retry_wait", &self.max_retry_wait)
            .finish()
    }
}

impl SlackClient {
    /// A client for `api_base` (normally [`DEFAULT_API_BASE`]; the fake's
    /// `api_base()` in tests) authenticating with `bot_token` (`xoxb-…`).
    pub fn new(api_base: &str, bot_token: String) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self::with_http_client(api_base, bot_token, http)
    }

    /// Like [`SlackClient::new`] with your own `reqwest::Client`.
    pub fn with_http_client(api_base: &str, bot_token: String, http: reqwest::Client) -> Self {
        SlackClient {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            bot_token,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
        }
    }

    /// Caps each `Retry-After` wait at `max` (default 30 s).
    pub fn with_max_retry_wait(mut self, max: Duration) -> Self {
        self.max_retry_wait = max;
        self
    }

    /// The API base URL, without a trailing `/`.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// `chat.postMessage`.
    pub async fn post_message(&self, message: &Message) -> Result<Posted, SlackError> {
        let body = serde_json::to_value(message).map_err(|e| decode("chat.postMessage", e))?;
        let resp = self.call("chat.postMessage", &body).await?;
        let channel = resp["channel"].as_str().unwrap_or(&message.channel);
        match resp["ts"].as_str() {
            Some(ts) if !ts.is_empty() => Ok(Posted {
                channel: channel.to_string(),
                ts: ts.to_string(),
            }),
            _ => Err(SlackError::Decode {
                method: "chat.postMessage".into(),
                message: "response has no `ts`".into(),
            }),
        }
    }

    /// `chat.update`: replaces the text/blocks of message `ts` in `channel`
    /// (`message.channel` and `message.thread_ts` are ignored).
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        message: &Message,
    ) -> Result<(), SlackError> {
        let mut body = json!({"channel": channel, "ts": ts, "text": message.text});
        if let Some(blocks) = &message.blocks {
            body["blocks"] = blocks.clone();
        }
        self.call("chat.update", &body).await.map(drop)
    }

    /// `chat.postEphemeral`: a message only `user` sees, in `channel`
    /// (`message.channel` is ignored).
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        message: &Message,
    ) -> Result<(), SlackError> {
        let mut body = json!({"channel": channel, "user": user, "text": message.text});
        if let Some(blocks) = &message.blocks {
            body["blocks"] = blocks.clone();
        }
        if let Some(thread_ts) = &message.thread_ts {
            body["thread_ts"] = json!(thread_ts);
        }
        self.call("chat.postEphemeral", &body).await.map(drop)
    }

    /// Posts `body` (e.g. `{"text": …, "response_type": "in_channel"}` or
    /// `{"replace_original": true, …}`) to a `response_url` from a slash
    /// command or interaction. No bot token is sent. Slack allows 5 posts per
    /// URL within 30 minutes.
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        let method = "response_url";
        let (status, bytes) = self
            .send_with_retries(method, response_url, body, false)
            .await?;
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if let Some(code) = parsed.as_ref().and_then(error_code) {
            return Err(SlackError::Api(code));
        }
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        // Slack answers some response_url failures with a bare code, e.g. `expired_url`.
        if !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(SlackError::Api(text));
        }
        Err(SlackError::Status {
            method: method.into(),
            status: status.as_u16(),
            body: truncate(&text, 200),
        })
    }

    /// Calls any Web API `method` with a JSON body and returns the response
    /// object of a successful (`"ok": true`) call.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let url = format!("{}/{}", self.api_base, method);
        let (status, bytes) = self.send_with_retries(method, &url, body, true).await?;
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        match parsed {
            Ok(v) if v["ok"] == Value::Bool(true) => Ok(v),
            Ok(v) if v["ok"] == Value::Bool(false) => Err(SlackError::Api(
                error_code(&v).unwrap_or_else(|| "unknown_error".into()),
            )),
            _ if !status.is_success() => Err(SlackError::Status {
                method: method.into(),
                status: status.as_u16(),
                body: truncate(String::from_utf8_lossy(&bytes).trim(), 200),
            }),
            Ok(_) => Err(SlackError::Decode {
                method: method.into(),
                message: "response has no boolean `ok`".into(),
            }),
            Err(e) => Err(decode(method, e)),
        }
    }

    async fn send_with_retries(
        &self,
        method: &str,
        url: &str,
        body: &Value,
        with_token: bool,
    ) -> Result<(StatusCode, Vec<u8>), SlackError> {
        let payload = serde_json::to_vec(body).map_err(|e| decode(method, e))?;
        let http_err = |e: reqwest::Error| SlackError::Http {
            method: method.to_string(),
            source: e.without_url(),
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let mut request = self
                .http
                .post(url)
                .header(CONTENT_TYPE, JSON_UTF8)
                .body(payload.clone());
            if with_token {
                request = request.bearer_auth(&self.bot_token);
            }
            let response = request.send().await.map_err(http_err)?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                if attempt == MAX_ATTEMPTS {
                    break;
                }
                let wait = retry_after(response.headers()).min(self.max_retry_wait);
                tracing::warn!(
                    method,
                    attempt,
                    wait_secs = wait.as_secs_f64(),
                    "Slack rate limit (HTTP 429); retrying after Retry-After"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let bytes = response.bytes().await.map_err(http_err)?;
            return Ok((status, bytes.to_vec()));
        }
        Err(SlackError::RateLimited {
            method: method.to_string(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

fn retry_after(headers: &HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RETRY_WAIT)
}

fn error_code(v: &Value) -> Option<String> {
    if v["ok"] != Value::Bool(false) {
        return None;
    }
    Some(
        v["error"]
            .as_str()
            .filter(|e| !e.is_empty())
            .unwrap_or("unknown_error")
            .to_string(),
    )
}

fn decode(method: &str, e: serde_json::Error) -> SlackError {
    SlackError::Decode {
        method: method.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_token() {
        let c = SlackClient::new("https://slack.com/api/", "xoxb-secret-123".into());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("xoxb-secret-123"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert_eq!(c.api_base(), "https://slack.com/api");
    }

    #[test]
    fn retry_after_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), DEFAULT_RETRY_WAIT);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(7));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), DEFAULT_RETRY_WAIT);
        h.insert(RETRY_AFTER, "-3".parse().unwrap());
        assert_eq!(retry_after(&h), DEFAULT_RETRY_WAIT);
    }

    #[test]
    fn message_serialization() {
        let m = Message::new("C1", "hi");
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"channel": "C1", "text": "hi"})
        );
        let m = Message::new("C1", "hi")
            .in_thread("1.2")
            .with_blocks(json!([]));
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"channel": "C1", "text": "hi", "thread_ts": "1.2", "blocks": []})
        );
    }
}
