//! The client against the fake Slack, and signed requests from the fake
//! through verification and parsing.

// Helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use errand_slack::events::thread_reply_event;
use errand_slack::fake::{header, header_map, FakeSlack, FakeSlackConfig};
use errand_slack::interaction::block_actions_payload;
use errand_slack::{
    now_unix, parse_agent_text, verify_request, AgentCommand, EventEnvelope, Interaction, Message,
    RunCard, SlackClient, SlackError, SlashCommand, VerifyError, CANCEL_ACTION_ID,
};
use serde_json::json;

async fn setup() -> (FakeSlack, SlackClient) {
    let fake = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
    let client = SlackClient::new(&fake.api_base(), fake.bot_token().to_string());
    (fake, client)
}

fn card(terminal: bool) -> RunCard {
    RunCard {
        run_id: "run-0001".into(),
        short_id: "0001".into(),
        repo: "acme/widgets".into(),
        instruction: "fix the flaky test".into(),
        requested_by: "U123".into(),
        viewer_url: "https://errand.example.com/runs/0001".into(),
        state: if terminal { "succeeded" } else { "running" }.into(),
        terminal,
        ..RunCard::default()
    }
}

fn has_cancel_button(blocks: &serde_json::Value) -> bool {
    blocks.as_array().unwrap().iter().any(|b| {
        b["type"] == "actions"
            && b["elements"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action_id"] == CANCEL_ACTION_ID && e["value"] == "run-0001")
    })
}

#[tokio::test]
async fn post_and_update_are_recorded() {
    let (fake, client) = setup().await;

    let posted = client
        .post_message(&Message::run_card("C1", &card(false)))
        .await
        .unwrap();
    assert_eq!(posted.channel, "C1");
    assert_eq!(posted.ts, "1700000000.000100");

    client
        .update_message(
            &posted.channel,
            &posted.ts,
            &Message::run_card("C1", &card(true)),
        )
        .await
        .unwrap();

    let reply = client
        .post_message(&Message::new("C1", "done").in_thread(posted.ts.clone()))
        .await
        .unwrap();
    assert_eq!(reply.ts, "1700000000.000200");

    client
        .post_ephemeral("C1", "U123", &Message::new("ignored", "only you"))
        .await
        .unwrap();

    let calls = fake.calls();
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "chat.postMessage",
            "chat.update",
            "chat.postMessage",
            "chat.postEphemeral"
        ]
    );
    assert!(
        calls.iter().all(|c| c.status == 200 && c.error.is_none()),
        "{calls:#?}"
    );

    // The card carries the cancel button while running, not once terminal.
    assert!(has_cancel_button(&calls[0].body["blocks"]));
    assert_eq!(calls[1].body["ts"], posted.ts);
    assert_eq!(calls[1].body["channel"], "C1");
    assert!(!has_cancel_button(&calls[1].body["blocks"]));
    assert_eq!(calls[2].body["thread_ts"], posted.ts);
    assert_eq!(calls[3].body["user"], "U123");
    assert_eq!(calls[3].body["channel"], "C1");

    // The fake keeps the latest version of each message.
    let current = fake.message("C1", &posted.ts).unwrap();
    assert!(!has_cancel_button(&current["blocks"]));
}

#[tokio::test]
async fn invalid_token_is_api_invalid_auth() {
    let fake = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
    let client = SlackClient::new(&fake.api_base(), "xoxb-wrong-token".into());
    let err = client
        .post_message(&Message::new("C1", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlackError::Api(code) if code == "invalid_auth"),
        "{err:?}"
    );
    assert_eq!(err.api_code(), Some("invalid_auth"));
    // The token appears neither in the error nor in the client's Debug.
    assert!(!format!("{err} {err:?} {client:?}").contains("xoxb-wrong-token"));
    assert_eq!(fake.calls()[0].error.as_deref(), Some("invalid_auth"));
}

#[tokio::test]
async fn slack_validation_errors_surface_as_api_codes() {
    let (_fake, client) = setup().await;
    let err = client
        .post_message(&Message::new("C1", ""))
        .await
        .unwrap_err();
    assert_eq!(err.api_code(), Some("no_text"));
    let err = client
        .post_message(&Message::new("", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.api_code(), Some("channel_not_found"));
    let err = client
        .update_message("C1", "1.000001", &Message::new("C1", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.api_code(), Some("message_not_found"));
    let err = client.call("chat.delete", &json!({})).await.unwrap_err();
    assert_eq!(err.api_code(), Some("unknown_method"));
}

#[tokio::test]
async fn rate_limit_is_retried_after_retry_after() {
    let (fake, client) = setup().await;
    fake.fail_next_with_429(1, 1);
    let started = Instant::now();
    let posted = client
        .post_message(&Message::new("C1", "hello"))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(posted.ts, "1700000000.000100");
    let calls = fake.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0].status, 429);
    assert_eq!(calls[1].status, 200);
    assert_eq!(calls[0].body, calls[1].body);
    // Sanity floor only: the client waited for Retry-After.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
}

#[tokio::test]
async fn rate_limit_gives_up_after_five_attempts() {
    let (fake, client) = setup().await;
    fake.fail_next_with_429(10, 0);
    let err = client
        .post_message(&Message::new("C1", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlackError::RateLimited { attempts: 5, .. }),
        "{err:?}"
    );
    assert_eq!(fake.calls().len(), 5);
}

#[tokio::test]
async fn retry_wait_is_capped() {
    let (fake, client) = setup().await;
    let client = client.with_max_retry_wait(Duration::from_millis(50));
    fake.fail_next_with_429(1, 3600);
    // Honouring a Retry-After of an hour would hang here: the cap is 50 ms.
    // (A generous deadline detects the hang; it is not a speed target.)
    tokio::time::timeout(
        Duration::from_secs(60),
        client.post_message(&Message::new("C1", "x")),
    )
    .await
    .expect("the capped wait ended")
    .unwrap();
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn respond_posts_to_response_url_without_token() {
    let (fake, client) = setup().await;
    let url = fake.response_url("abc");
    for i in 0..5 {
        client
            .respond(
                &url,
                &json!({"text": format!("update {i}"), "response_type": "in_channel"}),
            )
            .await
            .unwrap();
    }
    // Slack allows five posts per response_url.
    let err = client
        .respond(&url, &json!({"text": "one too many"}))
        .await
        .unwrap_err();
    assert_eq!(err.api_code(), Some("used_url"));

    let calls = fake
        .wait_for_calls(|c| c.len() >= 6, Duration::from_secs(5))
        .await;
    assert_eq!(calls.len(), 6);
    assert!(calls.iter().all(|c| c.method == "response/abc"));
    assert_eq!(calls[0].body["text"], "update 0");
    assert_eq!(calls[0].body["response_type"], "in_channel");
}

#[tokio::test]
async fn network_errors_are_http_errors() {
    let fake = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
    let base = fake.api_base();
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = SlackClient::new(&base, "xoxb-fake-bot-token".into());
    let err = client
        .post_message(&Message::new("C1", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlackError::Http { method, .. } if method == "chat.postMessage"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("xoxb-fake-bot-token"));
}

#[tokio::test]
async fn signed_command_round_trip() {
    let fake = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
    let now = now_unix();
    let fields = fake.agent_command_fields(
        "U123",
        "C1",
        "--push <https://github.com/acme/widgets|acme/widgets> fix “it”",
        "r1",
    );
    let (headers, body) = fake.signed_command(&fields, now);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let map = header_map(&headers);
    assert_eq!(
        verify_request(fake.signing_secret(), &map, body.as_bytes(), now + 5),
        Ok(())
    );
    assert_eq!(
        verify_request(fake.signing_secret(), &map, body.as_bytes(), now + 301),
        Err(VerifyError::Stale)
    );
    assert_eq!(
        verify_request("other-secret", &map, body.as_bytes(), now),
        Err(VerifyError::BadSignature)
    );

    let cmd = SlashCommand::from_form(body.as_bytes()).unwrap();
    assert_eq!(cmd.user_id, "U123");
    assert_eq!(cmd.command, "/agent");
    assert_eq!(cmd.response_url, fake.response_url("r1"));
    let AgentCommand::Run(run) = parse_agent_text(&cmd.text).unwrap() else {
        panic!("{cmd:?}")
    };
    assert!(run.push);
    assert_eq!(run.repo, "acme/widgets");
    assert_eq!(run.instruction, "fix \"it\"");

    // Borrowed pairs work too.
    let (headers, body) = fake.signed_command(&[("team_id", "T1"), ("text", "a b")], now);
    assert_eq!(
        verify_request(
            fake.signing_secret(),
            &header_map(&headers),
            body.as_bytes(),
            now
        ),
        Ok(())
    );
    assert_eq!(body, "team_id=T1&text=a+b");
}

#[tokio::test]
async fn signed_interaction_and_event_round_trip() {
    let fake = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
    let now = now_unix();

    let payload = block_actions_payload(
        "T1",
        "U123",
        "C1",
        "1700000000.000100",
        CANCEL_ACTION_ID,
        "run-0001",
    );
    let (headers, body) = fake.signed_interaction(&payload, now);
    assert_eq!(
        verify_request(
            fake.signing_secret(),
            &header_map(&headers),
            body.as_bytes(),
            now
        ),
        Ok(())
    );
    let interaction = Interaction::from_form(body.as_bytes()).unwrap();
    assert_eq!(
        interaction.cancel_run_ids().collect::<Vec<_>>(),
        ["run-0001"]
    );
    assert_eq!(interaction.message_ts.as_deref(), Some("1700000000.000100"));

    let event = thread_reply_event(
        "T1",
        "Ev1",
        "C1",
        "1700000000.000100",
        "1700000009.000001",
        "U123",
        "<@U0BOT> and the docs",
    );
    let (headers, body) = fake.signed_event(&event, now);
    assert_eq!(header(&headers, "Content-Type"), Some("application/json"));
    assert_eq!(
        verify_request(
            fake.signing_secret(),
            &header_map(&headers),
            body.as_bytes(),
            now
        ),
        Ok(())
    );
    let envelope = EventEnvelope::from_json(body.as_bytes()).unwrap();
    let reply = envelope.thread_reply().unwrap();
    assert_eq!(reply.text, "and the docs");
    assert_eq!(reply.thread_ts, "1700000000.000100");
}
