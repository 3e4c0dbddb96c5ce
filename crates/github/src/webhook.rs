//! GitHub webhook deliveries: signature verification and `@handle` mentions.

use hmac::{Hmac, Mac};
use serde::de::IgnoredAny;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The header carrying the delivery's HMAC-SHA256 signature.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// The header naming the event (`issue_comment`, `ping`, ...).
pub const EVENT_HEADER: &str = "X-GitHub-Event";

/// Why a webhook delivery was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The configured webhook secret is empty; refusing to verify against it.
    #[error("webhook secret is empty")]
    EmptySecret,
    /// No `X-Hub-Signature-256` header.
    #[error("missing X-Hub-Signature-256 header")]
    MissingSignature,
    /// The header is not `sha256=<64 hex digits>`.
    #[error("malformed X-Hub-Signature-256 header (expected sha256=<hex>)")]
    MalformedSignature,
    /// The signature does not match the payload and secret.
    #[error("webhook signature does not match")]
    BadSignature,
    /// The payload is not the JSON the event documents.
    #[error("malformed {event} payload: {message}")]
    Payload {
        /// The event name.
        event: String,
        /// What did not parse.
        message: String,
    },
}

/// Checks `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>` in constant time.
///
/// `body` must be the raw request bytes, before any JSON parsing.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::EmptySecret);
    }
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::MalformedSignature)?;
    let given = hex::decode(hex_sig).map_err(|_| WebhookError::MalformedSignature)?;
    if given.len() != 32 {
        return Err(WebhookError::MalformedSignature);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::EmptySecret)?;
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// Someone asked the App to do something in an issue or pull request comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// Repository owner login.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// Issue or pull request number.
    pub issue_number: u64,
    /// Whether the comment is on a pull request.
    pub is_pull_request: bool,
    /// `sender.login` of the commenter.
    pub author: String,
    /// The comment text after the handle, trimmed (a leading `:` or `,` is dropped). May be empty.
    pub instruction: String,
    /// The comment id.
    pub comment_id: u64,
    /// The App installation the delivery came through, if present.
    pub installation_id: Option<u64>,
}

#[derive(Deserialize)]
struct ActionOnly {
    #[serde(default)]
    action: String,
}

#[derive(Deserialize)]
struct IssueCommentEvent {
    issue: Issue,
    comment: Comment,
    repository: Repository,
    sender: Account,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    pull_request: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    body: Option<String>,
    user: Option<Account>,
}

#[derive(Deserialize)]
struct Repository {
    name: String,
    owner: Account,
}

#[derive(Deserialize)]
struct Account {
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

/// Extracts a mention of `handle` (e.g. `"@errand"`, matched case-insensitively as a
/// whole word) from a webhook delivery.
///
/// Only `issue_comment` events with action `created` by non-bot senders count;
/// anything else is `Ok(None)`. Mentions in quoted lines (`> …`) and fenced code
/// blocks are ignored. Verify the signature first.
pub fn parse_mention(
    event: &str,
    body: &[u8],
    handle: &str,
) -> Result<Option<Mention>, WebhookError> {
    if event != "issue_comment" || handle.is_empty() {
        return Ok(None);
    }
    let bad = |e: serde_json::Error| WebhookError::Payload {
        event: event.to_string(),
        message: e.to_string(),
    };
    let action: ActionOnly = serde_json::from_slice(body).map_err(bad)?;
    if action.action != "created" {
        return Ok(None);
    }
    let ev: IssueCommentEvent = serde_json::from_slice(body).map_err(bad)?;
    let is_bot = |a: &Account| a.kind.eq_ignore_ascii_case("Bot");
    if is_bot(&ev.sender) || ev.comment.user.as_ref().is_some_and(is_bot) {
        return Ok(None);
    }
    let text = ev.comment.body.unwrap_or_default();
    let Some(end) = find_mention(&text, handle) else {
        return Ok(None);
    };
    let instruction = text[end..]
        .trim_start()
        .trim_start_matches([':', ','])
        .trim()
        .to_string();
    Ok(Some(Mention {
        owner: ev.repository.owner.login,
        repo: ev.repository.name,
        issue_number: ev.issue.number,
        is_pull_request: ev.issue.pull_request.is_some(),
        author: ev.sender.login,
        instruction,
        comment_id: ev.comment.id,
        installation_id: ev.installation.map(|i| i.id),
    }))
}

/// Byte offset just past the first whole-word, unquoted, out-of-code mention of `handle`.
fn find_mention(text: &str, handle: &str) -> Option<usize> {
    // ASCII lowercasing keeps byte offsets, so indexes into `lower` are valid in `text`.
    let lower = text.to_ascii_lowercase();
    let needle = handle.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let login_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    let mut in_fence = false;
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let start = line_start;
        line_start += line.len();
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || trimmed.starts_with('>') {
            continue;
        }
        let hay = &lower[start..start + line.len()];
        let mut from = 0;
        while let Some(pos) = hay[from..].find(&needle) {
            let at = start + from + pos;
            let end = at + needle.len();
            let before_ok = at == 0
                || !(login_byte(bytes[at - 1]) || matches!(bytes[at - 1], b'@' | b'.' | b'/'));
            let after_ok = end == bytes.len() || !login_byte(bytes[end]);
            if before_ok && after_ok {
                return Some(end);
            }
            from += pos + needle.len();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mention_matching() {
        let f = |t: &str| find_mention(t, "@errand").map(|e| t[e..].trim().to_string());
        assert_eq!(f("@errand fix it").as_deref(), Some("fix it"));
        assert_eq!(f("hey @Errand: fix it").as_deref(), Some(": fix it"));
        assert_eq!(f("(@errand) x").as_deref(), Some(") x"));
        assert_eq!(f("@errandbot fix"), None);
        assert_eq!(f("@errand-dev fix"), None);
        assert_eq!(f("mail me@errand.dev"), None);
        assert_eq!(f("> @errand old quote\nthanks"), None);
        assert_eq!(f("```\n@errand in code\n```\n"), None);
        assert_eq!(
            f("> @errand quoted\n@errand real one").as_deref(),
            Some("real one")
        );
    }
}
