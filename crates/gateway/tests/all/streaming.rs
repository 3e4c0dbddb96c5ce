//! Streaming through the gateway: chunks pass as they arrive (proved by an
//! upstream that sends its second chunk only after the client has received
//! the first through the gateway), byte for byte; revoking a run ends its
//! streams; a client going away is recorded.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::response::Response;
use errand_gateway::{Credential, Gateway, GatewayEvent, Limits, Protocol, Upstream};
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use crate::support::*;

const CHUNK_1: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":21,\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":800,\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel";
const CHUNK_2: &str = "lo\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":33}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// An upstream that streams [`CHUNK_1`], then [`CHUNK_2`] once the returned
/// sender fires (never, if it is dropped).
async fn two_chunk_upstream() -> Result<(String, oneshot::Sender<()>), Box<dyn std::error::Error>> {
    let (tx, rx) = oneshot::channel::<()>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let app = axum::Router::new().fallback(move || {
        let rx = rx.lock().unwrap().take();
        async move {
            let second = async move {
                let released = match rx {
                    Some(rx) => rx.await.is_ok(),
                    None => false,
                };
                if !released {
                    std::future::pending::<()>().await;
                }
                Some(Ok::<_, std::io::Error>(Bytes::from(CHUNK_2)))
            };
            let body = futures::stream::once(async { Ok(Bytes::from(CHUNK_1)) })
                .chain(futures::stream::once(second).filter_map(|c| async { c }));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(body))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), tx))
}

async fn gateway_to(
    base: String,
) -> Result<
    (
        String,
        Arc<Gateway>,
        errand_gateway::RunKey,
        UnboundedReceiver<GatewayEvent>,
    ),
    Box<dyn std::error::Error>,
> {
    let gateway = Gateway::new();
    let url = serve(&gateway).await?;
    let (g, events) = grant(
        vec![Upstream {
            id: "anthropic".into(),
            protocol: Protocol::Anthropic,
            base_url: base,
            credential: Credential::ApiKey(REAL_KEY.into()),
        }],
        Limits::default(),
    );
    let key = gateway.grant(g);
    Ok((url, gateway, key, events))
}

async fn start_stream(
    url: &str,
    key: &str,
) -> Result<reqwest::Response, Box<dyn std::error::Error>> {
    Ok(client()
        .post(format!("{url}/anthropic/v1/messages"))
        .header("x-api-key", key)
        .body(r#"{"model":"claude-sonnet-4-5","stream":true}"#)
        .send()
        .await?)
}

/// Read from `stream` until `want` bytes arrived in all.
async fn read_until<S>(stream: &mut S, got: &mut Vec<u8>, want: usize) -> TestResult
where
    S: futures::Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    while got.len() < want {
        match stream.next().await {
            Some(chunk) => got.extend_from_slice(&chunk?),
            None => return Err("the stream ended early".into()),
        }
    }
    Ok(())
}

#[tokio::test]
async fn chunks_pass_through_as_they_arrive_byte_for_byte() -> TestResult {
    let (base, release) = two_chunk_upstream().await?;
    let (url, _gateway, key, mut events) = gateway_to(base).await?;
    let run = async {
        let resp = start_stream(&url, key.secret()).await?;
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut got = Vec::new();
        // The upstream has sent only chunk 1: if the gateway held it back
        // (buffering the answer), this would never complete.
        read_until(&mut stream, &mut got, CHUNK_1.len()).await?;
        assert_eq!(got, CHUNK_1.as_bytes());
        release.send(()).map_err(|_| "upstream gone")?;
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk?);
        }
        assert_eq!(got, [CHUNK_1, CHUNK_2].concat().as_bytes());
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    tokio::time::timeout(HANG_GUARD, run)
        .await
        .map_err(|_| "the gateway held chunk 1 back")??;

    let call = next_call(&mut events).await;
    assert!(call.streamed);
    assert_eq!(call.error, None);
    let want = reported_usage(Protocol::Anthropic, &[CHUNK_1, CHUNK_2].concat(), true);
    assert_eq!(
        (
            call.usage.input_tokens,
            call.usage.output_tokens,
            call.usage.cache_read_tokens,
            call.usage.cache_write_tokens
        ),
        (
            want.input_tokens,
            want.output_tokens,
            want.cache_read_tokens,
            want.cache_write_tokens
        )
    );
    assert!(call.ttfb_ms.is_some_and(|t| t <= call.duration_ms));
    Ok(())
}

#[tokio::test]
async fn revoking_the_run_ends_its_stream() -> TestResult {
    let (base, _never) = two_chunk_upstream().await?;
    let (url, gateway, key, mut events) = gateway_to(base).await?;
    let run = async {
        let resp = start_stream(&url, key.secret()).await?;
        let mut stream = resp.bytes_stream();
        let mut got = Vec::new();
        read_until(&mut stream, &mut got, CHUNK_1.len()).await?;
        gateway.revoke(&key);
        // The stream ends (with an error: the answer was cut short).
        let mut failed = false;
        while let Some(chunk) = stream.next().await {
            failed |= chunk.is_err();
        }
        assert!(failed, "a revoked stream must not look complete");
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    tokio::time::timeout(HANG_GUARD, run)
        .await
        .map_err(|_| "revoke did not end the stream")??;
    let call = next_call(&mut events).await;
    assert_eq!(
        call.error.as_deref(),
        Some("errand gateway: the run key was revoked")
    );
    assert_eq!(
        call.usage.input_tokens, 21,
        "usage read before the cut is kept"
    );
    Ok(())
}

#[tokio::test]
async fn a_client_going_away_is_recorded() -> TestResult {
    let (base, release) = two_chunk_upstream().await?;
    let (url, _gateway, key, mut events) = gateway_to(base).await?;
    let resp = start_stream(&url, key.secret()).await?;
    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    tokio::time::timeout(HANG_GUARD, read_until(&mut stream, &mut got, CHUNK_1.len()))
        .await
        .map_err(|_| "no first chunk")??;
    drop(stream);
    // The next write to the gone client fails, whenever the gateway had not
    // noticed the close already.
    let _ = release.send(());
    let call = next_call(&mut events).await;
    assert_eq!(call.error.as_deref(), Some("client closed the stream"));
    assert_eq!(call.usage.cache_read_tokens, 800);
    Ok(())
}
