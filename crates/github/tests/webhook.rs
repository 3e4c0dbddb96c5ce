//! Webhook signatures, mention parsing and the App manifest.

use errand_github::webhook::{parse_mention, verify_signature, WebhookError};
use errand_github::{app_manifest, Mention};
use serde_json::{json, Value};

const FIXTURE: &str = include_str!("fixtures/issue_comment.json");
const SECRET: &[u8] = b"It's a Secret to Everybody";
const VECTOR: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn signature_vector_from_github_docs() {
    assert_eq!(
        verify_signature(SECRET, b"Hello, World!", Some(VECTOR)),
        Ok(())
    );
}

#[test]
fn wrong_signatures_are_rejected() {
    assert_eq!(
        verify_signature(SECRET, b"Hello, World?", Some(VECTOR)),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify_signature(b"another secret", b"Hello, World!", Some(VECTOR)),
        Err(WebhookError::BadSignature)
    );
    let flipped = VECTOR.replace("757107", "757108");
    assert_eq!(
        verify_signature(SECRET, b"Hello, World!", Some(&flipped)),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn missing_or_malformed_headers_are_rejected() {
    let body = b"Hello, World!";
    assert_eq!(
        verify_signature(SECRET, body, None),
        Err(WebhookError::MissingSignature)
    );
    for bad in [
        "",
        "sha256=",
        "sha256=zz",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
        &VECTOR[..VECTOR.len() - 2],
    ] {
        assert_eq!(
            verify_signature(SECRET, body, Some(bad)),
            Err(WebhookError::MalformedSignature),
            "{bad:?}"
        );
    }
    assert_eq!(
        verify_signature(b"", body, Some(VECTOR)),
        Err(WebhookError::EmptySecret)
    );
}

fn with(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    edit(&mut v);
    serde_json::to_vec(&v).expect("serialize")
}

#[test]
fn parses_a_mention_from_a_pull_request_comment() {
    let m = parse_mention("issue_comment", FIXTURE.as_bytes(), "@errand")
        .expect("parse")
        .expect("a mention");
    assert_eq!(
        m,
        Mention {
            owner: "octo-org".into(),
            repo: "hello-world".into(),
            issue_number: 42,
            is_pull_request: true,
            author: "monalisa".into(),
            instruction: "please add a regression test for empty input\nand run the benchmarks."
                .into(),
            comment_id: 2033620911,
            installation_id: Some(48212345),
        }
    );
}

#[test]
fn issue_comments_are_not_pull_requests() {
    let body = with(|v| {
        v["issue"]
            .as_object_mut()
            .expect("issue")
            .remove("pull_request");
    });
    let m = parse_mention("issue_comment", &body, "@errand")
        .expect("parse")
        .expect("a mention");
    assert!(!m.is_pull_request);
}

#[test]
fn ignored_deliveries() {
    let handle = "@errand";
    // Other events, even with the same body.
    assert_eq!(
        parse_mention("issues", FIXTURE.as_bytes(), handle),
        Ok(None)
    );
    assert_eq!(
        parse_mention("ping", b"{\"zen\":\"Keep it logically awesome.\"}", handle),
        Ok(None)
    );
    // Edited or deleted comments.
    for action in ["edited", "deleted"] {
        assert_eq!(
            parse_mention(
                "issue_comment",
                &with(|v| v["action"] = json!(action)),
                handle
            ),
            Ok(None)
        );
    }
    // Bots, e.g. errand's own replies.
    let bot = with(|v| {
        v["sender"]["type"] = json!("Bot");
        v["sender"]["login"] = json!("errand[bot]");
    });
    assert_eq!(parse_mention("issue_comment", &bot, handle), Ok(None));
    // No mention, or only a longer handle.
    for text in [
        "LGTM",
        "cc @errand-dev please look",
        "> @errand do it\n\nnot again",
    ] {
        assert_eq!(
            parse_mention(
                "issue_comment",
                &with(|v| v["comment"]["body"] = json!(text)),
                handle
            ),
            Ok(None)
        );
    }
}

#[test]
fn malformed_payloads_are_errors() {
    let err = parse_mention("issue_comment", b"{not json", "@errand").expect_err("must fail");
    assert!(matches!(err, WebhookError::Payload { .. }));
    assert!(
        err.to_string().contains("malformed issue_comment payload"),
        "{err}"
    );
    let missing_issue = with(|v| {
        v.as_object_mut().expect("object").remove("issue");
    });
    let err = parse_mention("issue_comment", &missing_issue, "@errand").expect_err("must fail");
    assert!(err.to_string().contains("issue"), "{err}");
}

#[test]
fn manifest_has_exactly_the_intended_permissions() {
    let m = app_manifest(
        "errand-acme",
        "https://errand.acme.example",
        "https://errand.acme.example/webhooks/github",
    );
    assert_eq!(
        m["default_permissions"],
        json!({ "contents": "write", "pull_requests": "write", "issues": "write", "metadata": "read" })
    );
    assert_eq!(m["default_events"], json!(["issue_comment"]));
    assert_eq!(
        m["hook_attributes"]["url"],
        "https://errand.acme.example/webhooks/github"
    );
    assert_eq!(m["hook_attributes"]["active"], true);
    assert_eq!(m["public"], false);
    assert_eq!(m["name"], "errand-acme");
    assert_eq!(m["url"], "https://errand.acme.example");
    assert!(m["redirect_url"]
        .as_str()
        .expect("redirect_url")
        .starts_with("https://errand.acme.example/"));
}
