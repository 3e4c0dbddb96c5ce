//! An in-process fake Slack for tests (feature `fake`).
//!
//! Serves, on `127.0.0.1:<random port>`:
//!
//! - `POST /api/chat.postMessage`, `/api/chat.update`, `/api/chat.postEphemeral`
//!   — checks `Authorization: Bearer <bot_token>` (`not_authed` when absent,
//!   `invalid_auth` when wrong), the channel (`channel_not_found`), text or
//!   blocks (`no_text`), blocks shape (`invalid_blocks`), and for updates the
//!   target message (`message_not_found`); returns `ts` values
//!   `1700000000.000100`, `1700000000.000200`, …; any other method →
//!   `unknown_method`. Errors are HTTP 200 with `{"ok": false, …}` like Slack.
//! - `POST /response/{id}` — a `response_url`; answers `ok`; like Slack,
//!   the 6th post to the same URL fails (`used_url`, HTTP 404).
//!
//! Every request is recorded ([`FakeSlack::calls`]), including rejected ones.
//! [`FakeSlack::fail_next_with_429`] makes the next Web API calls answer 429
//! with `Retry-After`. The `signed_*` builders produce requests signed like
//! Slack's for exercising your own endpoints.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use errand_slack::fake::{FakeSlack, FakeSlackConfig};
//! use errand_slack::{Message, SlackClient};
//! let fake = FakeSlack::start(FakeSlackConfig::default()).await?;
//! let client = SlackClient::new(&fake.api_base(), fake.bot_token().to_string());
//! client.post_message(&Message::new("C1", "hello")).await.ok();
//! assert_eq!(fake.calls()[0].method, "chat.postMessage");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::verify::sign;

/// Posts Slack accepts per `response_url`.
pub const RESPONSE_URL_LIMIT: u32 = 5;

/// Secrets the fake expects / signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSlackConfig {
    /// The only bearer token the Web API endpoints accept.
    pub bot_token: String,
    /// Secret used by the `signed_*` request builders.
    pub signing_secret: String,
}

impl Default for FakeSlackConfig {
    fn default() -> Self {
        FakeSlackConfig {
            bot_token: "xoxb-fake-bot-token".into(),
            signing_secret: "fake-signing-secret".into(),
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedCall {
    /// Web API method (`chat.postMessage`, …) or `response/{id}`.
    pub method: String,
    /// The request body (JSON; form bodies are turned into an object;
    /// unparsable bodies are `{"_raw": "…"}`).
    pub body: Value,
    /// HTTP status the fake answered.
    pub status: u16,
    /// The Slack error code the fake answered, if any.
    pub error: Option<String>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<RecordedCall>,
    ts_counter: u64,
    fail_429: u32,
    retry_after_secs: u64,
    /// (channel, ts) → latest posted/updated body.
    messages: HashMap<(String, String), Value>,
    /// response id → posts so far.
    responses: HashMap<String, u32>,
}

struct Shared {
    config: FakeSlackConfig,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake Slack; stops when dropped.
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// Headers of a signed request: `(name, value)` pairs.
pub type Headers = Vec<(String, String)>;

impl FakeSlack {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(config: FakeSlackConfig) -> std::io::Result<FakeSlack> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route("/api/{method}", post(api_call))
            .route("/response/{id}", post(response_call))
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "fake Slack server stopped");
            }
        });
        Ok(FakeSlack {
            addr,
            shared,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT/api`, for [`crate::SlackClient::new`].
    pub fn api_base(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// `http://127.0.0.1:PORT/response/{id}`: a `response_url` to put in
    /// slash commands and interactions.
    pub fn response_url(&self, id: &str) -> String {
        format!("http://{}/response/{id}", self.addr)
    }

    /// The address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bot token the fake accepts.
    pub fn bot_token(&self) -> &str {
        &self.shared.config.bot_token
    }

    /// The signing secret the `signed_*` builders use.
    pub fn signing_secret(&self) -> &str {
        &self.shared.config.signing_secret
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// Requests to one method (`chat.update`, `response/abc`, …).
    pub fn calls_to(&self, method: &str) -> Vec<RecordedCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Forgets recorded calls (messages and limits are kept).
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// The latest body posted or updated for message `ts` in `channel`.
    pub fn message(&self, channel: &str, ts: &str) -> Option<Value> {
        self.shared
            .lock()
            .messages
            .get(&(channel.to_string(), ts.to_string()))
            .cloned()
    }

    /// The next `n` Web API calls answer HTTP 429 with
    /// `Retry-After: retry_after_secs` (and are recorded).
    pub fn fail_next_with_429(&self, n: u32, retry_after_secs: u64) {
        let mut inner = self.shared.lock();
        inner.fail_429 = n;
        inner.retry_after_secs = retry_after_secs;
    }

    /// Polls [`FakeSlack::calls`] every 20 ms until `pred` holds or `timeout`
    /// passes; returns the calls either way (assert on them).
    pub async fn wait_for_calls<F>(&self, pred: F, timeout: Duration) -> Vec<RecordedCall>
    where
        F: Fn(&[RecordedCall]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if pred(&calls) || Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signed(&self, content_type: &str, body: String, now: i64) -> (Headers, String) {
        let signature = sign(&self.shared.config.signing_secret, now, body.as_bytes());
        let headers = vec![
            ("Content-Type".to_string(), content_type.to_string()),
            ("X-Slack-Request-Timestamp".to_string(), now.to_string()),
            ("X-Slack-Signature".to_string(), signature),
        ];
        (headers, body)
    }

    /// A slash-command request as Slack sends it: form-urlencoded
    /// `form_fields`, signed at `now` (Unix seconds).
    pub fn signed_command<K, V>(&self, form_fields: &[(K, V)], now: i64) -> (Headers, String)
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let pairs: Vec<(&str, &str)> = form_fields
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        let body = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        self.signed("application/x-www-form-urlencoded", body, now)
    }

    /// An interaction request: `payload=<json>` form body, signed at `now`.
    pub fn signed_interaction(&self, payload_json: &Value, now: i64) -> (Headers, String) {
        let body = serde_urlencoded::to_string([("payload", payload_json.to_string())])
            .unwrap_or_default();
        self.signed("application/x-www-form-urlencoded", body, now)
    }

    /// An Events API request: JSON body, signed at `now`.
    pub fn signed_event(&self, json: &Value, now: i64) -> (Headers, String) {
        self.signed("application/json", json.to_string(), now)
    }

    /// Form fields of an `/agent` slash command from `user_id` in
    /// `channel_id` whose `response_url` is this fake's
    /// `response_url(response_id)`; `trigger_id` is derived from
    /// `response_id`.
    pub fn agent_command_fields(
        &self,
        user_id: &str,
        channel_id: &str,
        text: &str,
        response_id: &str,
    ) -> Vec<(String, String)> {
        [
            ("token", "legacy-verification-token".to_string()),
            ("team_id", "T0FAKE".to_string()),
            ("team_domain", "fake".to_string()),
            ("channel_id", channel_id.to_string()),
            ("channel_name", "general".to_string()),
            ("user_id", user_id.to_string()),
            ("user_name", "someone".to_string()),
            ("command", "/agent".to_string()),
            ("text", text.to_string()),
            ("response_url", self.response_url(response_id)),
            ("trigger_id", format!("1700000000.1.{response_id}")),
            ("api_app_id", "A0ERRAND".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Turns builder headers into an `http::HeaderMap` (for
/// [`crate::verify_request`]); invalid pairs are skipped.
pub fn header_map(headers: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            map.insert(n, v);
        }
    }
    map
}

/// The value of header `name` (case-insensitive) among builder headers.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn parse_body(headers: &HeaderMap, bytes: &[u8]) -> Value {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes) {
            let map: Map<String, Value> = pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            return Value::Object(map);
        }
    } else if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return v;
    }
    json!({"_raw": String::from_utf8_lossy(bytes)})
}

fn non_empty_str<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Checks text/blocks like Slack: `Err(code)` when unacceptable.
fn check_content(body: &Value) -> Result<(), &'static str> {
    let blocks = match body.get("blocks") {
        None | Some(Value::Null) => None,
        // Form-encoded calls send blocks as a JSON string.
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) => Some(v),
            Err(_) => return Err("invalid_blocks"),
        },
        Some(v) => Some(v.clone()),
    };
    let has_blocks = match &blocks {
        None => false,
        Some(Value::Array(items)) => {
            if items.len() > 50
                || items
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str).is_none())
            {
                return Err("invalid_blocks");
            }
            !items.is_empty()
        }
        Some(_) => return Err("invalid_blocks"),
    };
    let has_text = non_empty_str(body, "text").is_some_and(|t| !t.trim().is_empty());
    if has_text || has_blocks {
        Ok(())
    } else {
        Err("no_text")
    }
}

fn slack_error(code: &str) -> Value {
    json!({"ok": false, "error": code})
}

async fn api_call(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let body = parse_body(&headers, &bytes);
    let mut inner = shared.lock();

    if inner.fail_429 > 0 {
        inner.fail_429 -= 1;
        let retry_after = inner.retry_after_secs;
        inner.calls.push(RecordedCall {
            method,
            body,
            status: 429,
            error: Some("ratelimited".into()),
        });
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after.to_string())],
            Json(slack_error("ratelimited")),
        )
            .into_response();
    }

    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let result = match token {
        None => Err("not_authed"),
        Some(t) if t != shared.config.bot_token => Err("invalid_auth"),
        Some(_) => handle_method(&mut inner, &method, &body),
    };
    let (reply, error) = match result {
        Ok(reply) => (reply, None),
        Err(code) => (slack_error(code), Some(code.to_string())),
    };
    inner.calls.push(RecordedCall {
        method,
        body,
        status: 200,
        error,
    });
    Json(reply).into_response()
}

fn next_ts(inner: &mut Inner) -> String {
    inner.ts_counter += 1;
    let n = inner.ts_counter;
    format!("{}.{:06}", 1_700_000_000 + n / 10_000, (n % 10_000) * 100)
}

fn handle_method(inner: &mut Inner, method: &str, body: &Value) -> Result<Value, &'static str> {
    match method {
        "chat.postMessage" => {
            let channel = non_empty_str(body, "channel").ok_or("channel_not_found")?;
            check_content(body)?;
            let ts = next_ts(inner);
            inner
                .messages
                .insert((channel.to_string(), ts.clone()), body.clone());
            Ok(json!({
                "ok": true,
                "channel": channel,
                "ts": ts,
                "message": {"type": "message", "text": body.get("text"), "ts": ts, "bot_id": "B0FAKE"}
            }))
        }
        "chat.update" => {
            let channel = non_empty_str(body, "channel").ok_or("channel_not_found")?;
            let ts = non_empty_str(body, "ts").ok_or("message_not_found")?;
            let key = (channel.to_string(), ts.to_string());
            if !inner.messages.contains_key(&key) {
                return Err("message_not_found");
            }
            check_content(body)?;
            inner.messages.insert(key, body.clone());
            Ok(json!({"ok": true, "channel": channel, "ts": ts, "text": body.get("text")}))
        }
        "chat.postEphemeral" => {
            non_empty_str(body, "channel").ok_or("channel_not_found")?;
            non_empty_str(body, "user").ok_or("user_not_in_channel")?;
            check_content(body)?;
            Ok(json!({"ok": true, "message_ts": next_ts(inner)}))
        }
        _ => Err("unknown_method"),
    }
}

async fn response_call(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let body = parse_body(&headers, &bytes);
    let mut inner = shared.lock();
    let count = inner.responses.entry(id.clone()).or_insert(0);
    *count += 1;
    let (status, error) = if *count > RESPONSE_URL_LIMIT {
        (StatusCode::NOT_FOUND, Some("used_url"))
    } else if !body.is_object() || body.get("_raw").is_some() {
        (StatusCode::BAD_REQUEST, Some("invalid_payload"))
    } else {
        (StatusCode::OK, None)
    };
    inner.calls.push(RecordedCall {
        method: format!("response/{id}"),
        body,
        status: status.as_u16(),
        error: error.map(str::to_string),
    });
    match error {
        None => (StatusCode::OK, "ok").into_response(),
        Some(code) => (status, Json(slack_error(code))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_values_increment() {
        let mut inner = Inner::default();
        assert_eq!(next_ts(&mut inner), "1700000000.000100");
        assert_eq!(next_ts(&mut inner), "1700000000.000200");
        inner.ts_counter = 9_999;
        assert_eq!(next_ts(&mut inner), "1700000001.000000");
    }

    #[test]
    fn content_checks() {
        assert_eq!(check_content(&json!({"text": "hi"})), Ok(()));
        assert_eq!(
            check_content(&json!({"blocks": [{"type": "section"}]})),
            Ok(())
        );
        assert_eq!(
            check_content(&json!({"blocks": "[{\"type\":\"divider\"}]"})),
            Ok(())
        );
        assert_eq!(check_content(&json!({})), Err("no_text"));
        assert_eq!(
            check_content(&json!({"text": "  ", "blocks": []})),
            Err("no_text")
        );
        assert_eq!(
            check_content(&json!({"text": "x", "blocks": {}})),
            Err("invalid_blocks")
        );
        assert_eq!(
            check_content(&json!({"text": "x", "blocks": [{}]})),
            Err("invalid_blocks")
        );
        assert_eq!(
            check_content(&json!({"text": "x", "blocks": "[oops"})),
            Err("invalid_blocks")
        );
    }
}
