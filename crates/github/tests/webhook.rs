//! Webhook signatures, mention parsing and the App manifest.

use errand_github::webhook::{parse_event, parse_mention, verify_signature, Event, WebhookError};
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
            body: m.body.clone(),
            review: None,
            head: None,
        }
    );
    assert!(m.body.starts_with("Looks good overall."), "{}", m.body);
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
        json!({
            "contents": "write", "pull_requests": "write", "issues": "write",
            "checks": "read", "actions": "read", "metadata": "read"
        })
    );
    assert_eq!(
        m["default_events"],
        json!([
            "issue_comment",
            "pull_request_review_comment",
            "pull_request_review",
            "issues",
            "check_run",
            "check_suite",
            "workflow_run"
        ])
    );
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

fn repo_and_sender(sender: &str, kind: &str) -> (Value, Value) {
    (
        json!({ "name": "hello-world", "full_name": "octo-org/hello-world", "owner": { "login": "octo-org", "type": "Organization" } }),
        json!({ "login": sender, "type": kind }),
    )
}

/// The fields GitHub's `pull_request_review_comment` delivery carries (as in
/// GitHub's documented example), the rest left out.
fn review_comment(body: &str, sender: &str) -> Vec<u8> {
    let (repository, sender) = repo_and_sender(sender, "User");
    serde_json::to_vec(&json!({
        "action": "created",
        "comment": {
            "id": 284312630, "pull_request_review_id": 237895671,
            "diff_hunk": "@@ -1,3 +1,4 @@\n fn main() {\n+    let items = vec![];", "path": "src/main.rs",
            "commit_id": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
            "user": sender.clone(), "body": body,
            "created_at": "2019-05-15T15:20:37Z",
            "start_line": 2, "original_start_line": 2, "start_side": "RIGHT",
            "line": 3, "original_line": 3, "side": "RIGHT"
        },
        "pull_request": {
            "number": 2, "state": "open", "title": "Update the README",
            "head": { "label": "octo-org:errand/3f2a9c1b", "ref": "errand/3f2a9c1b", "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                      "repo": { "name": "hello-world", "full_name": "octo-org/hello-world" } },
            "base": { "ref": "main", "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e" }
        },
        "repository": repository, "sender": sender, "installation": { "id": 7 }
    }))
    .expect("well-formed test input")
}

#[test]
fn review_comments_carry_their_file_lines_and_hunk() {
    let m = parse_mention(
        "pull_request_review_comment",
        &review_comment("@errand handle the empty list", "monalisa"),
        "@errand",
    )
    .expect("parse")
    .expect("a mention");
    assert_eq!(m.issue_number, 2);
    assert!(m.is_pull_request);
    assert_eq!(m.instruction, "handle the empty list");
    let spot = m.review.expect("a review spot");
    assert_eq!(spot.path, "src/main.rs");
    assert_eq!((spot.start_line, spot.line), (Some(2), Some(3)));
    assert!(spot.diff_hunk.contains("let items"));
    let head = m.head.expect("the head");
    assert_eq!(head.branch, "errand/3f2a9c1b");
    assert_eq!(head.repo.as_deref(), Some("octo-org/hello-world"));
    // Edited comments and bots are not requests.
    let mut edited: Value = serde_json::from_slice(&review_comment("@errand x", "monalisa"))
        .expect("well-formed test input");
    edited["action"] = json!("edited");
    assert_eq!(
        parse_mention(
            "pull_request_review_comment",
            &serde_json::to_vec(&edited).expect("well-formed test input"),
            "@errand"
        ),
        Ok(None)
    );
    let mut bot: Value = serde_json::from_slice(&review_comment("@errand x", "errand[bot]"))
        .expect("well-formed test input");
    bot["sender"]["type"] = json!("Bot");
    assert_eq!(
        parse_mention(
            "pull_request_review_comment",
            &serde_json::to_vec(&bot).expect("well-formed test input"),
            "@errand"
        ),
        Ok(None)
    );
}

#[test]
fn a_review_whose_body_mentions_errand_is_a_request() {
    let (repository, sender) = repo_and_sender("monalisa", "User");
    let body = serde_json::to_vec(&json!({
        "action": "submitted",
        "review": { "id": 80, "user": sender.clone(), "body": "@errand also rename `foo`", "state": "commented", "commit_id": "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091" },
        "pull_request": { "number": 8, "head": { "ref": "feature", "sha": "ecdd80bb", "repo": { "full_name": "mallory/hello-world" } }, "base": { "ref": "main", "sha": "x" } },
        "repository": repository, "sender": sender
    }))
    .expect("well-formed test input");
    let Some(Event::Mention(m)) =
        parse_event("pull_request_review", &body, "@errand", None).expect("well-formed test input")
    else {
        panic!("a mention")
    };
    assert_eq!(m.instruction, "also rename `foo`");
    assert_eq!(m.review, None);
    assert_eq!(
        m.head.and_then(|h| h.repo).as_deref(),
        Some("mallory/hello-world")
    );
}

#[test]
fn the_configured_label_on_an_issue_is_a_trigger() {
    let (repository, sender) = repo_and_sender("monalisa", "User");
    let labeled = |name: &str, action: &str| {
        serde_json::to_vec(&json!({
            "action": action,
            "issue": { "number": 5, "title": "Crash on empty input", "body": "Steps…", "labels": [{ "name": name }] },
            "label": { "name": name },
            "repository": repository.clone(), "sender": sender.clone(), "installation": { "id": 7 }
        }))
        .expect("well-formed test input")
    };
    let Some(Event::Labeled(l)) = parse_event(
        "issues",
        &labeled("Errand", "labeled"),
        "@errand",
        Some("errand"),
    )
    .expect("well-formed test input") else {
        panic!("a label trigger")
    };
    assert_eq!(
        (l.number, l.sender.as_str(), l.is_pull_request),
        (5, "monalisa", false)
    );
    assert_eq!(
        parse_event(
            "issues",
            &labeled("bug", "labeled"),
            "@errand",
            Some("errand")
        ),
        Ok(None)
    );
    assert_eq!(
        parse_event(
            "issues",
            &labeled("errand", "unlabeled"),
            "@errand",
            Some("errand")
        ),
        Ok(None)
    );
    assert_eq!(
        parse_event("issues", &labeled("errand", "labeled"), "@errand", None),
        Ok(None)
    );
}

#[test]
fn failed_checks_of_every_kind_are_recognized_and_passing_ones_are_not() {
    let (repository, sender) = repo_and_sender("github-actions[bot]", "Bot");
    let prs = json!([{ "number": 2, "head": { "ref": "errand/3f2a9c1b", "sha": "abc" }, "base": { "ref": "main", "sha": "def" } }]);
    let bodies = [
        (
            "check_run",
            json!({ "action": "completed", "check_run": {
            "id": 128620228, "name": "test", "head_sha": "abc", "status": "completed", "conclusion": "failure",
            "check_suite": { "id": 118578147, "head_branch": "errand/3f2a9c1b", "head_sha": "abc" },
            "pull_requests": prs.clone(), "app": { "slug": "github-actions" } } }),
        ),
        (
            "check_suite",
            json!({ "action": "completed", "check_suite": {
            "id": 118578147, "head_branch": "errand/3f2a9c1b", "head_sha": "abc", "status": "completed", "conclusion": "failure",
            "pull_requests": prs.clone(), "app": { "slug": "github-actions" } } }),
        ),
        (
            "workflow_run",
            json!({ "action": "completed", "workflow_run": {
            "id": 30433642, "name": "CI", "head_branch": "errand/3f2a9c1b", "head_sha": "abc", "status": "completed", "conclusion": "timed_out",
            "pull_requests": prs.clone() } }),
        ),
    ];
    for (event, mut v) in bodies {
        v["repository"] = repository.clone();
        v["sender"] = sender.clone();
        let body = serde_json::to_vec(&v).expect("well-formed test input");
        let Some(Event::CheckFailed(f)) =
            parse_event(event, &body, "@errand", None).expect("well-formed test input")
        else {
            panic!("{event}: a failure")
        };
        assert_eq!(f.kind, event);
        assert_eq!(f.head_branch.as_deref(), Some("errand/3f2a9c1b"));
        assert_eq!(f.pull_requests, [2]);
        for field in ["check_run", "check_suite", "workflow_run"] {
            if v.get(field).is_some() {
                v[field]["conclusion"] = json!("success");
            }
        }
        assert_eq!(
            parse_event(
                event,
                &serde_json::to_vec(&v).expect("well-formed test input"),
                "@errand",
                None
            ),
            Ok(None),
            "{event}"
        );
    }
}
