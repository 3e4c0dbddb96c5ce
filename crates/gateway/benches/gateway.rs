//! What the gateway adds to a model request: time to first byte (p50, p99)
//! of streaming Anthropic Messages requests to the scripted model directly
//! and through the gateway (its router on TCP), and throughput with 100
//! concurrent streaming requests.
//!
//! `cargo bench -p errand-gateway`
//!
//! Both paths use the same HTTP client with keep-alive and the same
//! scripted model (requiring the real key); the gateway path adds one
//! loopback hop, key lookup, policy, header rewriting and the usage parser.
//! Figures on a shared machine are noisy: compare the ratios.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use errand_gateway::{Credential, Gateway, Grant, Limits, Protocol, Upstream};
use errand_model::{Scenario, ScriptedModel};
use futures::StreamExt;

const REAL_KEY: &str = "sk-bench-real-key";
const TTFB_REQUESTS: usize = 1000;
const WARMUP: usize = 100;
const CONCURRENCY: usize = 100;
const THROUGHPUT_REQUESTS: usize = 5000;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BODY: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

/// One streaming request: time to the first body byte, and the whole body read.
async fn one(client: &reqwest::Client, url: &str, key: &str) -> BenchResult<Duration> {
    let start = Instant::now();
    let resp = client
        .post(url)
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()).into());
    }
    let mut stream = resp.bytes_stream();
    let mut ttfb = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if ttfb.is_none() && !chunk.is_empty() {
            ttfb = Some(start.elapsed());
        }
    }
    ttfb.ok_or_else(|| "empty answer".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn ttfb(client: &reqwest::Client, url: &str, key: &str) -> BenchResult<(Duration, Duration)> {
    for _ in 0..WARMUP {
        one(client, url, key).await?;
    }
    let mut all = Vec::with_capacity(TTFB_REQUESTS);
    for _ in 0..TTFB_REQUESTS {
        all.push(one(client, url, key).await?);
    }
    all.sort();
    Ok((percentile(&all, 0.5), percentile(&all, 0.99)))
}

async fn throughput(client: &reqwest::Client, url: &str, key: &str) -> BenchResult<f64> {
    let start = Instant::now();
    let per_task = THROUGHPUT_REQUESTS / CONCURRENCY;
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let (client, url, key) = (client.clone(), url.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                one(&client, &url, &key).await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((per_task * CONCURRENCY) as f64 / start.elapsed().as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench() -> BenchResult<()> {
    let scenario = Scenario::from_json(r#"{"steps":[{"text":"All done."}]}"#)?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let model = ScriptedModel::start_requiring_key(scenario, listen, REAL_KEY).await?;

    let gateway = Gateway::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway_addr = listener.local_addr()?;
    let app = gateway.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (events, mut drain) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while drain.recv().await.is_some() {} });
    let key = gateway.grant(Grant {
        run: "bench".into(),
        harness: "bench".into(),
        upstreams: vec![Upstream {
            id: "anthropic".into(),
            protocol: Protocol::Anthropic,
            base_url: model.base_url(),
            credential: Credential::ApiKey(REAL_KEY.into()),
        }],
        limits: Limits::default(),
        events,
    });

    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let direct = format!("{}/v1/messages", model.base_url());
    let via = format!("http://{gateway_addr}/anthropic/v1/messages");

    let (d50, d99) = ttfb(&client, &direct, REAL_KEY).await?;
    let (g50, g99) = ttfb(&client, &via, key.secret()).await?;
    println!("time to first byte, {TTFB_REQUESTS} sequential streaming requests (after {WARMUP} warm-up):");
    for (name, d, g) in [("p50", d50, g50), ("p99", d99, g99)] {
        println!(
            "  {name}: direct {:.3} ms, via gateway {:.3} ms, added {:.3} ms, ratio {:.2}x",
            ms(d),
            ms(g),
            ms(g) - ms(d),
            ms(g) / ms(d)
        );
    }
    let direct_rps = throughput(&client, &direct, REAL_KEY).await?;
    let via_rps = throughput(&client, &via, key.secret()).await?;
    println!("throughput, {THROUGHPUT_REQUESTS} streaming requests, {CONCURRENCY} concurrent:");
    println!(
        "  direct {direct_rps:.0} req/s, via gateway {via_rps:.0} req/s, ratio {:.2}",
        via_rps / direct_rps
    );
    let totals = gateway.totals(&key).unwrap_or_default();
    println!(
        "  (the gateway recorded {} output tokens over {} requests)",
        totals.output_tokens,
        gateway.metrics().iter().map(|r| r.requests).sum::<u64>()
    );
    Ok(())
}

fn main() -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}
