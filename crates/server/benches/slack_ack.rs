//! How fast `/agent` is acknowledged: Slack gives errand three seconds.
//!
//! Serves errand's router in-process on a real socket (SQLite store, no
//! workers, the Slack Web API pointed at the fake Slack), fires N signed
//! `/agent owner/repo …` commands with C in flight at once, and prints the
//! p50/p99/max time to the acknowledgement. Each acknowledged command has
//! verified its signature, parsed, checked access, and written a queued run.
//! Baseline in the same run: `GET /healthz` under the same concurrency, so the
//! ratio is errand's own cost over the HTTP stack's.
//!
//! `cargo bench -p errand-server --bench slack_ack` — ERRAND_ACK_N (default
//! 400), ERRAND_ACK_CONCURRENCY (default "1,16,64").

use std::sync::Arc;
use std::time::{Duration, Instant};

use errand_harness::Registry;
use errand_server::access::{AccessPolicy, AccessRule};
use errand_server::integrations::{Integrations, SlackIntegration};
use errand_server::{app, AppState};
use errand_slack::fake::{FakeSlack, FakeSlackConfig};
use futures::stream::{self, StreamExt};

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn timed(
    n: usize,
    concurrency: usize,
    make: impl Fn(usize) -> reqwest::RequestBuilder,
    ok: u16,
) -> Vec<f64> {
    let make = &make;
    stream::iter(0..n)
        .map(|i| async move {
            let t = Instant::now();
            let resp = make(i).send().await.expect("request");
            assert_eq!(resp.status().as_u16(), ok);
            let _ = resp.bytes().await;
            t.elapsed().as_secs_f64() * 1000.0
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("ERRAND_ACK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let levels: Vec<usize> = std::env::var("ERRAND_ACK_CONCURRENCY")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn errand_store::Store> = Arc::new(
        errand_store::SqliteStore::open(&dir.path().join("errand.db"))
            .await
            .expect("store"),
    );
    let slack = FakeSlack::start(FakeSlackConfig::default())
        .await
        .expect("fake Slack");
    let mut state = AppState::new(store, Registry::default());
    state.integrations = Some(Arc::new(Integrations {
        public_url: "http://errand.test".into(),
        slack: Some(SlackIntegration {
            signing_secret: slack.signing_secret().to_string(),
            client: errand_slack::SlackClient::new(&slack.api_base(), slack.bot_token().into()),
        }),
        github: None,
        access: AccessPolicy::new(vec![AccessRule {
            slack_team: Some("T0FAKE".into()),
            repos: vec!["acme/*".into()],
            push: true,
            ..Default::default()
        }]),
        default_harness: "claude-code".into(),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    println!("Slack /agent acknowledgement, {n} commands per level (ms)");
    println!(
        "{:>11} {:>9} {:>9} {:>9} {:>13} {:>13}",
        "concurrency", "p50", "p99", "max", "healthz p50", "ratio p50"
    );
    let mut seq = 0usize;
    for c in levels {
        let mut base_ms = timed(n, c, |_| http.get(format!("{base}/healthz")), 200).await;
        // Sign every request up front, so signing is not timed.
        let bodies: Vec<_> = (0..n)
            .map(|i| {
                seq += 1;
                let fields = slack.agent_command_fields(
                    "U1",
                    "C1",
                    &format!("--push acme/widgets task number {i}"),
                    &format!("b{seq}"),
                );
                slack.signed_command(&fields, chrono::Utc::now().timestamp())
            })
            .collect();
        let mut ack = timed(
            n,
            c,
            |i| {
                let (headers, body) = &bodies[i];
                let mut rb = http
                    .post(format!("{base}/slack/commands"))
                    .body(body.clone());
                for (k, v) in headers {
                    rb = rb.header(k, v);
                }
                rb
            },
            200,
        )
        .await;
        let p50 = pct(&mut ack, 0.5);
        let b50 = pct(&mut base_ms, 0.5);
        println!(
            "{c:>11} {p50:>9.2} {:>9.2} {:>9.2} {b50:>13.2} {:>12.1}x",
            pct(&mut ack, 0.99),
            pct(&mut ack, 1.0),
            p50 / b50
        );
    }
    println!("(Slack's deadline: 3000 ms)");
}
