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
//!
//! Invariants checked: nothing panics; a mention comes only from a
//! `created` comment whose body names the handle, and its instruction is
//! trimmed text that follows the mention in that body.

use errand_github::webhook::{parse_mention, verify_signature};
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
