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
    /// The whole comment (the run's context marks it as the request).
    pub body: String,
    /// A review comment's place in the diff: the file, lines and hunk.
    pub review: Option<ReviewSpot>,
    /// The pull request's head, when the delivery carries it (review
    /// comments and reviews; an `issue_comment` on a pull request does not).
    pub head: Option<PullHead>,
}

/// Where a review comment is: a file, a range of lines, and the diff hunk shown around them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSpot {
    /// The file.
    pub path: String,
    /// The first line of a multi-line comment.
    pub start_line: Option<u64>,
    /// The (last) line.
    pub line: Option<u64>,
    /// `RIGHT` (the change) or `LEFT` (the base).
    pub side: Option<String>,
    /// The diff around the lines, as GitHub shows it.
    pub diff_hunk: String,
    /// The commit the comment was made on.
    pub commit_id: String,
}

/// A pull request's head, as a delivery names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullHead {
    /// The branch.
    pub branch: String,
    /// Its commit.
    pub sha: String,
    /// `owner/repo` it lives in (a fork's when it differs from the base's); `None`: deleted.
    pub repo: Option<String>,
}

/// An issue or pull request got the label errand is configured to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labeled {
    /// Repository owner login.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// Issue or pull request number.
    pub number: u64,
    /// Whether it is a pull request.
    pub is_pull_request: bool,
    /// The label.
    pub label: String,
    /// Who added it.
    pub sender: String,
    /// The App installation the delivery came through, if present.
    pub installation_id: Option<u64>,
}

/// A check (a check run, a check suite or an Actions workflow run) completed with a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// Repository owner login.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// `check_run`, `check_suite` or `workflow_run`.
    pub kind: &'static str,
    /// The check run's, suite's or workflow run's id.
    pub id: u64,
    /// Its name (a suite has none: its App's).
    pub name: String,
    /// The branch checked, when GitHub names it.
    pub head_branch: Option<String>,
    /// The commit checked.
    pub head_sha: String,
    /// `failure` or `timed_out`.
    pub conclusion: String,
    /// The pull requests of this repository whose head it checked.
    pub pull_requests: Vec<u64>,
    /// The App installation the delivery came through, if present.
    pub installation_id: Option<u64>,
}

/// What errand acts on in a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `@errand …` in a comment, a review comment or a review.
    Mention(Mention),
    /// The configured label was added.
    Labeled(Labeled),
    /// A check failed.
    CheckFailed(CheckFailure),
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
struct ReviewCommentEvent {
    comment: ReviewCommentBody,
    pull_request: PullBody,
    repository: Repository,
    sender: Account,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct ReviewCommentBody {
    id: u64,
    body: Option<String>,
    user: Option<Account>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    start_line: Option<u64>,
    #[serde(default)]
    original_line: Option<u64>,
    #[serde(default)]
    side: Option<String>,
    #[serde(default)]
    diff_hunk: String,
    #[serde(default)]
    commit_id: String,
}

#[derive(Deserialize)]
struct ReviewEvent {
    review: ReviewBody,
    pull_request: PullBody,
    repository: Repository,
    sender: Account,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct ReviewBody {
    id: u64,
    body: Option<String>,
    user: Option<Account>,
}

#[derive(Deserialize)]
struct PullBody {
    number: u64,
    head: HeadBody,
}

#[derive(Deserialize)]
struct HeadBody {
    #[serde(rename = "ref")]
    branch: String,
    #[serde(default)]
    sha: String,
    repo: Option<FullName>,
}

#[derive(Deserialize)]
struct FullName {
    full_name: String,
}

#[derive(Deserialize)]
struct LabeledEvent {
    issue: Issue,
    label: Option<LabelBody>,
    repository: Repository,
    sender: Account,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct LabelBody {
    name: String,
}

#[derive(Deserialize)]
struct CheckRunEvent {
    check_run: CheckBody,
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct CheckSuiteEvent {
    check_suite: CheckBody,
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct WorkflowRunEvent {
    workflow_run: CheckBody,
    repository: Repository,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct CheckBody {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    head_branch: Option<String>,
    #[serde(default)]
    head_sha: String,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    pull_requests: Vec<PullNumber>,
    #[serde(default)]
    check_suite: Option<SuiteRef>,
    #[serde(default)]
    app: Option<AppRef>,
}

#[derive(Deserialize)]
struct SuiteRef {
    #[serde(default)]
    head_branch: Option<String>,
}

#[derive(Deserialize)]
struct AppRef {
    #[serde(default)]
    slug: Option<String>,
}

#[derive(Deserialize)]
struct PullNumber {
    number: u64,
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
/// `issue_comment` and `pull_request_review_comment` events with action
/// `created`, and `pull_request_review` events with action `submitted`, by
/// non-bot senders count; anything else is `Ok(None)`. Mentions in quoted
/// lines (`> …`) and fenced code blocks are ignored. Verify the signature first.
pub fn parse_mention(
    event: &str,
    body: &[u8],
    handle: &str,
) -> Result<Option<Mention>, WebhookError> {
    let wanted = match event {
        "issue_comment" | "pull_request_review_comment" => "created",
        "pull_request_review" => "submitted",
        _ => return Ok(None),
    };
    if handle.is_empty() {
        return Ok(None);
    }
    let bad = |e: serde_json::Error| WebhookError::Payload {
        event: event.to_string(),
        message: e.to_string(),
    };
    let action: ActionOnly = serde_json::from_slice(body).map_err(bad)?;
    if action.action != wanted {
        return Ok(None);
    }
    let is_bot = |a: &Account| a.kind.eq_ignore_ascii_case("Bot");
    let head_of = |p: &PullBody| PullHead {
        branch: p.head.branch.clone(),
        sha: p.head.sha.clone(),
        repo: p.head.repo.as_ref().map(|r| r.full_name.clone()),
    };
    let (repository, sender, installation, number, is_pr, id, user, text, review, head) =
        match event {
            "issue_comment" => {
                let ev: IssueCommentEvent = serde_json::from_slice(body).map_err(bad)?;
                (
                    ev.repository,
                    ev.sender,
                    ev.installation,
                    ev.issue.number,
                    ev.issue.pull_request.is_some(),
                    ev.comment.id,
                    ev.comment.user,
                    ev.comment.body,
                    None,
                    None,
                )
            }
            "pull_request_review_comment" => {
                let ev: ReviewCommentEvent = serde_json::from_slice(body).map_err(bad)?;
                let c = ev.comment;
                let spot = ReviewSpot {
                    path: c.path,
                    start_line: c.start_line,
                    line: c.line.or(c.original_line),
                    side: c.side,
                    diff_hunk: c.diff_hunk,
                    commit_id: c.commit_id,
                };
                let head = head_of(&ev.pull_request);
                (
                    ev.repository,
                    ev.sender,
                    ev.installation,
                    ev.pull_request.number,
                    true,
                    c.id,
                    c.user,
                    c.body,
                    Some(spot),
                    Some(head),
                )
            }
            _ => {
                let ev: ReviewEvent = serde_json::from_slice(body).map_err(bad)?;
                let head = head_of(&ev.pull_request);
                (
                    ev.repository,
                    ev.sender,
                    ev.installation,
                    ev.pull_request.number,
                    true,
                    ev.review.id,
                    ev.review.user,
                    ev.review.body,
                    None,
                    Some(head),
                )
            }
        };
    if is_bot(&sender) || user.as_ref().is_some_and(is_bot) {
        return Ok(None);
    }
    let text = text.unwrap_or_default();
    let Some(end) = find_mention(&text, handle) else {
        return Ok(None);
    };
    let instruction = text[end..]
        .trim_start()
        .trim_start_matches([':', ','])
        .trim()
        .to_string();
    Ok(Some(Mention {
        owner: repository.owner.login,
        repo: repository.name,
        issue_number: number,
        is_pull_request: is_pr,
        author: sender.login,
        instruction,
        comment_id: id,
        installation_id: installation.map(|i| i.id),
        body: text,
        review,
        head,
    }))
}

/// What errand acts on in a delivery: a mention of `handle` ([`parse_mention`]),
/// `label` added to an issue (`issues` with action `labeled`, by a non-bot
/// sender; `None`: no label triggers), or a
/// check that completed with `failure` or `timed_out` (`check_run`,
/// `check_suite`, `workflow_run`). Anything else is `Ok(None)`. Verify the
/// signature first.
pub fn parse_event(
    event: &str,
    body: &[u8],
    handle: &str,
    label: Option<&str>,
) -> Result<Option<Event>, WebhookError> {
    let bad = |e: serde_json::Error| WebhookError::Payload {
        event: event.to_string(),
        message: e.to_string(),
    };
    match event {
        "issue_comment" | "pull_request_review_comment" | "pull_request_review" => {
            Ok(parse_mention(event, body, handle)?.map(Event::Mention))
        }
        "issues" => {
            let Some(wanted) = label.filter(|l| !l.trim().is_empty()) else {
                return Ok(None);
            };
            let action: ActionOnly = serde_json::from_slice(body).map_err(bad)?;
            if action.action != "labeled" {
                return Ok(None);
            }
            let ev: LabeledEvent = serde_json::from_slice(body).map_err(bad)?;
            let Some(got) = ev
                .label
                .filter(|l| l.name.eq_ignore_ascii_case(wanted.trim()))
            else {
                return Ok(None);
            };
            if ev.sender.kind.eq_ignore_ascii_case("Bot") {
                return Ok(None);
            }
            Ok(Some(Event::Labeled(Labeled {
                owner: ev.repository.owner.login,
                repo: ev.repository.name,
                number: ev.issue.number,
                is_pull_request: ev.issue.pull_request.is_some(),
                label: got.name,
                sender: ev.sender.login,
                installation_id: ev.installation.map(|i| i.id),
            })))
        }
        "check_run" | "check_suite" | "workflow_run" => {
            let action: ActionOnly = serde_json::from_slice(body).map_err(bad)?;
            if action.action != "completed" {
                return Ok(None);
            }
            let (kind, check, repository, installation) = match event {
                "check_run" => {
                    let ev: CheckRunEvent = serde_json::from_slice(body).map_err(bad)?;
                    ("check_run", ev.check_run, ev.repository, ev.installation)
                }
                "check_suite" => {
                    let ev: CheckSuiteEvent = serde_json::from_slice(body).map_err(bad)?;
                    (
                        "check_suite",
                        ev.check_suite,
                        ev.repository,
                        ev.installation,
                    )
                }
                _ => {
                    let ev: WorkflowRunEvent = serde_json::from_slice(body).map_err(bad)?;
                    (
                        "workflow_run",
                        ev.workflow_run,
                        ev.repository,
                        ev.installation,
                    )
                }
            };
            let conclusion = check.conclusion.unwrap_or_default();
            if !matches!(conclusion.as_str(), "failure" | "timed_out") {
                return Ok(None);
            }
            let name = check
                .name
                .or_else(|| check.app.and_then(|a| a.slug))
                .unwrap_or_else(|| kind.to_string());
            Ok(Some(Event::CheckFailed(CheckFailure {
                owner: repository.owner.login,
                repo: repository.name,
                kind,
                id: check.id,
                name,
                head_branch: check
                    .head_branch
                    .or_else(|| check.check_suite.and_then(|s| s.head_branch)),
                head_sha: check.head_sha,
                conclusion,
                pull_requests: check.pull_requests.into_iter().map(|p| p.number).collect(),
                installation_id: installation.map(|i| i.id),
            })))
        }
        _ => Ok(None),
    }
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
