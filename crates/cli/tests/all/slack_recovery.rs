//! A Slack run whose server dies mid-run still ends in its Slack thread: a
//! signed `/agent` starts a run whose agent hangs, the server is killed with
//! SIGKILL (its lease left behind), and the next server, knowing nothing of
//! the run but what the store holds, fails it and says so, once, on the run's
//! card and in its thread.

use std::time::{Duration, Instant};

use crate::common::github::{world, World};
use crate::common::*;
use serde_json::Value;

/// An agent that starts, then hangs until its sandbox is killed.
const HANGING_AGENT: &str = r#"echo '{"type":"session_start","session_id":"hang"}'
sleep 3307
"#;

/// Hang detector for every wait below.
const PATIENCE: Duration = Duration::from_secs(90);

async fn run(http: &reqwest::Client, base: &str, token: &str, id: &str) -> Option<Value> {
    let r = http
        .get(format!("{base}/api/runs/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Polls run `id` until `pred` holds; panics with what it saw after [`PATIENCE`].
async fn wait_run(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = run(http, base, token, id).await;
        if let Some(v) = v.as_ref().filter(|v| pred(v)) {
            return v.clone();
        }
        assert!(Instant::now() < deadline, "gave up waiting: {v:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Thread replies (`chat.postMessage` with a `thread_ts`) about run `short`.
fn thread_replies(w: &World, short: &str) -> Vec<Value> {
    w.slack
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["thread_ts"].is_string())
        .filter(|c| c.body["text"].as_str().unwrap_or("").contains(short))
        .map(|c| c.body)
        .collect()
}

/// Starts a hanging Slack run under a server with worker id `before`, kills
/// that server, starts another with worker id `after` on the same data, and
/// checks the run fails with `reason` (a prefix) and Slack hears it once.
async fn a_killed_run_is_told_in_its_thread(before: &str, after: &str, reason: &str) {
    let mut w = world(Env::new()).await;
    let agent = w.env.dir.path().join("agent");
    std::fs::create_dir_all(&agent).expect("agent dir");
    std::fs::write(agent.join("agent.sh"), HANGING_AGENT).expect("agent");
    let config = w.env.home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[[harness]]\nname = \"hang\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\"]\nformat = \"errand\"\ndir = \"{}\"\n\n[queue]\nlease_secs = 3\n",
        agent.display()
    ));
    std::fs::write(&config, text).expect("config");
    let token = api_token(&w.env, "tests");
    let http = reqwest::Client::new();

    w.env
        .vars
        .push(("ERRAND_SERVER_WORKER_ID".into(), before.into()));
    let (mut server, base) = serve(&w.env, "1");
    let fields = w.slack.agent_command_fields(
        "U1",
        "C1",
        "--harness hang acme/widgets wait for ever",
        "k1",
    );
    let (headers, body) = w
        .slack
        .signed_command(&fields, chrono::Utc::now().timestamp());
    let mut rb = http.post(format!("{base}/slack/commands")).body(body);
    for (k, v) in &headers {
        rb = rb.header(k, v);
    }
    let resp = rb.send().await.expect("slash command");
    assert_eq!(resp.status().as_u16(), 200);
    let ack = resp.text().await.expect("ack");
    assert!(ack.contains("Queued run"), "{ack}");
    let listed: Value = http
        .get(format!("{base}/api/runs"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let id = listed["runs"][0]["id"]
        .as_str()
        .expect("the run")
        .to_string();
    let short = id[..8].to_string();
    // Running, and its card posted (the thread errand must answer in).
    let v = wait_run(&http, &base, &token, &id, |v| {
        v["state"] == "running" && v["origin"]["message_ts"].is_string()
    })
    .await;
    let card_ts = v["origin"]["message_ts"].as_str().expect("ts").to_string();
    assert!(
        thread_replies(&w, &short).is_empty(),
        "no outcome before the run ended"
    );

    // SIGKILL: the server has no chance to end the run or tell anyone.
    server.0.kill().expect("kill");
    server.0.wait().expect("wait");
    drop(server);
    let calls_before = w.slack.calls().len();

    w.env.vars.retain(|(k, _)| k != "ERRAND_SERVER_WORKER_ID");
    w.env
        .vars
        .push(("ERRAND_SERVER_WORKER_ID".into(), after.into()));
    let (_server, base) = serve(&w.env, "1");
    let v = wait_run(&http, &base, &token, &id, |v| {
        v["state"].as_str().is_some_and(|s| s != "running")
    })
    .await;
    assert_eq!(v["state"], "failed", "{v:#}");
    let why = v["reason"].as_str().unwrap_or("").to_string();
    assert!(why.starts_with(reason), "{v:#}");

    // The thread hears how the run ended, with the reason.
    let deadline = Instant::now() + PATIENCE;
    while thread_replies(&w, &short).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the thread never heard the run failed: {:#?}",
            w.slack.calls()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the new server a few more release rounds (lease 3 s, poll 0.2 s)
    // to tell it again, which it must not.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let replies = thread_replies(&w, &short);
    assert_eq!(replies.len(), 1, "told once: {replies:#?}");
    let said = replies[0]["text"].as_str().unwrap_or("");
    assert_eq!(replies[0]["thread_ts"], card_ts.as_str());
    assert_eq!(replies[0]["channel"], "C1");
    assert!(
        said.contains("<@U1>") && said.contains("failed") && said.contains(&why),
        "{said}"
    );
    // The card, updated by the new server, shows the failure and its reason.
    let calls = w.slack.calls();
    let updates: Vec<_> = calls[calls_before..]
        .iter()
        .filter(|c| c.method == "chat.update" && c.body["ts"] == card_ts.as_str())
        .collect();
    assert_eq!(updates.len(), 1, "{updates:#?}");
    let card = updates[0].body.to_string();
    assert!(
        card.contains("failed") && !card.contains("errand_cancel"),
        "{card}"
    );
    assert!(
        card.contains(&why[..20]),
        "the reason is on the card: {card}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_lease_expired_ends_in_its_slack_thread() {
    if !sandbox_available() {
        return;
    }
    a_killed_run_is_told_in_its_thread(
        "recovery-before",
        "recovery-after",
        "the worker running it stopped (lease expired)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_failed_by_its_restarted_worker_ends_in_its_slack_thread() {
    if !sandbox_available() {
        return;
    }
    a_killed_run_is_told_in_its_thread("recovery-same", "recovery-same", "orchestrator restarted")
        .await;
}
