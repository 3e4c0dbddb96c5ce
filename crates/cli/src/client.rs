//! The CLI as a client of `errand serve` (`--server URL` or `$ERRAND_SERVER`,
//! with `$ERRAND_TOKEN`): the same commands, over the HTTP API.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use errand_core::{Event, EventKind};
use futures::StreamExt;

use crate::render::Renderer;

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Result<Client> {
        let token = std::env::var("ERRAND_TOKEN").ok().filter(|t| !t.is_empty());
        let http = reqwest::Client::builder()
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends a request and turns an API error body into a readable error.
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb
            .send()
            .await
            .with_context(|| format!("cannot reach the errand server at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let msg = body["error"]["message"]
            .as_str()
            .unwrap_or("no details")
            .to_string();
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or("error")
            .to_string();
        if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            bail!("{msg} ({code}); set ERRAND_TOKEN");
        }
        bail!("{msg} ({code}, HTTP {})", status.as_u16())
    }

    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut rb = self.req(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Ok(self.send(rb).await?.json().await?)
    }

    pub async fn text(&self, path: &str) -> Result<String> {
        Ok(self
            .send(self.req(reqwest::Method::GET, path))
            .await?
            .text()
            .await?)
    }

    /// Waits for a run to end (by following its stream) without printing.
    pub async fn follow_quietly(&self, id: &str) -> Result<()> {
        loop {
            let v = self
                .json(reqwest::Method::GET, &format!("/api/v1/runs/{id}"), None)
                .await?;
            if v["state"]
                .as_str()
                .and_then(|s| s.parse::<errand_core::RunState>().ok())
                .is_some_and(|s| s.is_terminal())
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }

    /// Streams a run's events from `after`, rendering or printing each, until
    /// the stream ends; reconnects with `Last-Event-ID` when the connection drops.
    pub async fn follow(&self, id: &str, mut after: u64, json: bool, color: bool) -> Result<()> {
        let mut renderer = Renderer::new(color);
        let mut failures = 0;
        loop {
            let rb = self
                .req(
                    reqwest::Method::GET,
                    &format!("/api/v1/runs/{id}/events/stream"),
                )
                .header("last-event-id", after.to_string());
            let resp = match self.send(rb).await {
                Ok(r) => r,
                Err(e) if failures < 20 => {
                    failures += 1;
                    tracing::debug!("stream reconnect after: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            let mut data = String::new();
            let mut kind = String::from("message");
            let mut ended = false;
            'read: while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { break };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(nl) = buf.find('\n') {
                    let line: String = buf.drain(..=nl).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.is_empty() {
                        if kind == "end" {
                            ended = true;
                            break 'read;
                        }
                        if kind == "event" && !data.is_empty() {
                            if let Ok(ev) = serde_json::from_str::<Event>(&data) {
                                after = ev.seq;
                                let out = std::io::stdout();
                                let mut o = out.lock();
                                if json {
                                    writeln!(o, "{data}")?;
                                } else {
                                    for l in renderer.render(&ev) {
                                        writeln!(o, "{l}")?;
                                    }
                                }
                                o.flush()?;
                                if matches!(ev.kind, EventKind::State { state, .. } if state.is_terminal())
                                {
                                    ended = true;
                                }
                            }
                        }
                        data.clear();
                        kind = "message".into();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    } else if let Some(e) = line.strip_prefix("event:") {
                        kind = e.trim().to_string();
                    }
                }
            }
            if ended {
                return Ok(());
            }
            failures += 1;
            if failures > 20 {
                return Err(anyhow!("the event stream kept dropping"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
}
