//! Target `github`: the input is a webhook delivery posted to
//! `/github/webhook`.
//!
//! - Signatures: the input's first line is the `X-Hub-Signature-256`
//!   header, the rest the body; [`verify_signature`] must answer without
//!   panicking, accept the body signed with the secret (in either hex case)
//!   and refuse it signed with another secret or with one byte changed.
//! - The whole input as an `issue_comment` body for [`parse_mention`], with
//!   errand's handle and with handles that are odd (non-ASCII, markup,
//!   a lone `@`).
//! - The whole input as a delivery of every event errand reads and some it
//!   does not, for [`parse_event`] (review comments and reviews, `issues`
//!   with a configured label or none, `check_run`, `check_suite`,
//!   `workflow_run`).
//!
//! Invariants checked: nothing panics; a mention comes only from a
//! `created` comment whose body names the handle, and its instruction is
//! trimmed text that follows the mention in that body; [`parse_event`]
//! agrees with [`parse_mention`] for comments and reviews; a label trigger
//! comes only from an `issues` delivery whose action is `labeled`, whose
//! label is the configured one (any case), and whose sender is not a bot;
//! a check failure only from a `completed` delivery of its own kind whose
//! conclusion is `failure` or `timed_out`; any other event is nothing.

use errand_github::webhook::{parse_event, parse_mention, verify_signature, Event};
use errand_github::WebhookError;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

const SECRET: &[u8] = b"It's a Secret to Everybody";

pub fn run(data: &[u8]) {
    signatures(data);
    for handle in ["@errand", "@Errand-Bot", "@", "@é", "<@U1>"] {
        mention(data, handle);
    }
    events(data);
    if let Some((first, body)) = split_line(data) {
        if let Ok(handle) = std::str::from_utf8(first) {
            mention(body, handle);
        }
    }
}

fn mention(body: &[u8], handle: &str) {
    let _ = parse_mention("ping", body, handle);
    let _ = parse_mention("pull_request", body, handle);
    let Ok(Some(m)) = parse_mention("issue_comment", body, handle) else {
        return;
    };
    // Read as leniently as `parse_mention` does (serde skips ignored values
    // without checking a string's UTF-8 or a number's range, so a body can
    // be a valid delivery and not a valid `Value`).
    let Ok(delivery) = serde_json::from_slice::<Delivery>(body) else {
        panic!("a mention from a body that is not a delivery");
    };
    assert_eq!(
        delivery.action.as_deref(),
        Some("created"),
        "a mention from a comment not created"
    );
    let text = delivery.comment.body.unwrap_or_default();
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains(&handle.to_ascii_lowercase()),
        "a mention of {handle:?} in a body without it"
    );
    assert_eq!(m.instruction, m.instruction.trim(), "untrimmed instruction");
    assert!(
        text.contains(&m.instruction),
        "an instruction that is not in the comment"
    );
}

/// Every event name errand reads, and some it must ignore.
const EVENTS: &[&str] = &[
    "issue_comment",
    "pull_request_review_comment",
    "pull_request_review",
    "issues",
    "check_run",
    "check_suite",
    "workflow_run",
    "pull_request",
    "push",
    "",
];

fn events(body: &[u8]) {
    for event in EVENTS {
        for label in [None, Some("errand"), Some(" Errand "), Some(""), Some("é")] {
            let got = parse_event(event, body, "@errand", label);
            match *event {
                "issue_comment" | "pull_request_review_comment" | "pull_request_review" => {
                    let alone =
                        parse_mention(event, body, "@errand").map(|m| m.map(Event::Mention));
                    assert_eq!(
                        got, alone,
                        "parse_event and parse_mention disagree on {event}"
                    );
                }
                _ => {}
            }
            let Ok(Some(found)) = got else { continue };
            match found {
                Event::Mention(_) => assert!(
                    matches!(
                        *event,
                        "issue_comment" | "pull_request_review_comment" | "pull_request_review"
                    ),
                    "a mention from a {event:?} delivery"
                ),
                Event::Labeled(l) => {
                    assert_eq!(
                        *event, "issues",
                        "a label trigger from a {event:?} delivery"
                    );
                    let wanted = label.map(str::trim).unwrap_or_default();
                    assert!(
                        !wanted.is_empty(),
                        "a label trigger with no label configured"
                    );
                    assert!(
                        l.label.eq_ignore_ascii_case(wanted),
                        "{:?} is not {wanted:?}",
                        l.label
                    );
                    let Ok(d) = serde_json::from_slice::<LabelDelivery>(body) else {
                        panic!("a label trigger from a body that is not a delivery");
                    };
                    assert_eq!(d.action.as_deref(), Some("labeled"));
                    assert_eq!(
                        d.label.and_then(|x| x.name).as_deref(),
                        Some(l.label.as_str())
                    );
                    let kind = d.sender.and_then(|x| x.kind).unwrap_or_default();
                    assert!(!kind.eq_ignore_ascii_case("bot"), "a label added by a bot");
                }
                Event::CheckFailed(f) => {
                    assert_eq!(
                        f.kind, *event,
                        "a {} failure from a {event:?} delivery",
                        f.kind
                    );
                    assert!(
                        matches!(f.conclusion.as_str(), "failure" | "timed_out"),
                        "a check that {:?} is not a failure",
                        f.conclusion
                    );
                    let Ok(d) = serde_json::from_slice::<ActionDelivery>(body) else {
                        panic!("a check failure from a body that is not a delivery");
                    };
                    assert_eq!(d.action.as_deref(), Some("completed"));
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct ActionDelivery {
    action: Option<String>,
}

#[derive(Deserialize)]
struct LabelDelivery {
    action: Option<String>,
    label: Option<Named>,
    sender: Option<Sender>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Sender {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Delivery {
    action: Option<String>,
    comment: Comment,
}

#[derive(Deserialize)]
struct Comment {
    body: Option<String>,
}

fn signatures(data: &[u8]) {
    let (header, body) = match split_line(data) {
        Some((h, b)) => (std::str::from_utf8(h).ok(), b),
        None => (None, data),
    };
    let _ = verify_signature(SECRET, body, header);
    let _ = verify_signature(b"", body, header);
    let _ = verify_signature(SECRET, data, None);

    let good = signature(SECRET, body);
    assert_eq!(verify_signature(SECRET, body, Some(&good)), Ok(()));
    assert_eq!(
        verify_signature(
            SECRET,
            body,
            Some(&good.to_uppercase().replace("SHA256=", "sha256="))
        ),
        Ok(())
    );
    assert_eq!(
        verify_signature(b"another secret", body, Some(&good)),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify_signature(b"", body, Some(&good)),
        Err(WebhookError::EmptySecret)
    );
    if let Some((first, rest)) = body.split_first() {
        let mut changed = vec![first ^ 1];
        changed.extend_from_slice(rest);
        assert_eq!(
            verify_signature(SECRET, &changed, Some(&good)),
            Err(WebhookError::BadSignature)
        );
    }
}

fn signature(secret: &[u8], body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC takes keys of any length");
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn split_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|&b| b == b'\n')?;
    Some((&data[..at], &data[at + 1..]))
}
