//! The gateway's HTTP handler: every request to `/<upstream id>/<rest…>`.
//!
//! 1. Authenticate: the run key from `x-api-key`, `Authorization: Bearer`,
//!    `x-goog-api-key` or `?key=`, looked up by hash; the grant must name
//!    the path's upstream id. Otherwise 401 and no upstream request.
//! 2. Read the body (at most [`MAX_BODY_BYTES`], else 413), find the model
//!    (body `model`, or Gemini's `models/{model}:…` path) and apply the
//!    run's policy (allowlist, budget, rate; see [`crate::policy`]).
//! 3. Forward to `<base_url>/<rest>?<query without key>` with every incoming
//!    credential, hop-by-hop header, `host`, `content-length` and
//!    `accept-encoding` removed (answers come back identity-encoded, so
//!    usage can be read) and the real credential added the provider's way.
//!    A streaming Chat Completions request without
//!    `stream_options.include_usage` gets `"stream_options":
//!    {"include_usage": true}` added, so the provider reports exact usage in
//!    a last chunk (with `choices: []`, which OpenAI-compatible clients
//!    accept); every other body is forwarded byte for byte.
//! 4. Stream the answer back chunk by chunk as it arrives, teeing it into a
//!    [`UsageParser`]; record the [`ModelCall`] when the answer ends, fails,
//!    the client goes away, or the run is revoked (which ends the stream).
//!
//! Refusals after authentication are recorded as calls with their status
//! and error, so a run's log shows them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Router;
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::error::{guess_protocol, Refusal};
use crate::key::RunState;
use crate::policy::{budget_reason, model_allowed, not_allowed};
use crate::usage::{Extracted, UsageParser};
use crate::{Credential, Gateway, GatewayEvent, ModelCall, Protocol, Upstream};

/// Largest request body forwarded; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The `anthropic-beta` flag that Anthropic requires with OAuth tokens.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// Headers never forwarded in either direction (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
];

/// Request headers dropped besides hop-by-hop ones: the run key's carriers,
/// and those the client library sets itself.
const DROPPED_REQUEST: &[&str] = &[
    "host",
    "content-length",
    "accept-encoding",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
];

pub(crate) fn router(gateway: Arc<Gateway>) -> Router {
    Router::new().fallback(handle).with_state(gateway)
}

async fn handle(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let Some((run, upstream, rest)) = authenticate(&gw, &parts) else {
        let protocol = guess_protocol(parts.uri.path(), &parts.headers);
        return Refusal::Unauthorized.response(protocol);
    };
    let mut rec = Recorder {
        gw: Arc::clone(&gw),
        run: Arc::clone(&run),
        protocol: upstream.protocol,
        model: None,
        started,
    };
    let request = match prepare(&gw, &run, &upstream, &rest, &parts, body, &mut rec).await {
        Ok(request) => request,
        Err(refusal) => return rec.refuse(refusal),
    };
    let sent = tokio::select! {
        sent = gw.client.execute(request) => sent,
        () = run.revoked.cancelled() => return rec.refuse(Refusal::Revoked),
    };
    match sent {
        Ok(answer) => respond(answer, rec),
        Err(e) => rec.refuse(Refusal::Upstream(without_url(e))),
    }
}

/// The live run, its upstream for the path's first segment, and the rest
/// of the path (without its leading `/`).
fn authenticate(gw: &Gateway, parts: &Parts) -> Option<(Arc<RunState>, Upstream, String)> {
    let path = parts.uri.path().strip_prefix('/')?;
    let (id, rest) = path.split_once('/').unwrap_or((path, ""));
    let run = presented_keys(parts).find_map(|key| gw.registry.lookup(key))?;
    let upstream = run.grant.upstreams.iter().find(|u| u.id == id)?.clone();
    Some((run, upstream, rest.to_owned()))
}

/// Every value that may carry the run key, in the order tried.
fn presented_keys(parts: &Parts) -> impl Iterator<Item = &str> {
    let h = &parts.headers;
    let api_keys = h.get_all("x-api-key").iter();
    let goog = h.get_all("x-goog-api-key").iter();
    let bearer = h.get_all(header::AUTHORIZATION).iter().filter_map(|v| {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    });
    let headers = api_keys.chain(goog).filter_map(|v| v.to_str().ok());
    let query = parts.uri.query().unwrap_or_default().split('&');
    let query = query.filter_map(|pair| pair.strip_prefix("key="));
    headers.chain(bearer).chain(query)
}

/// Read and check the request; build the upstream request.
async fn prepare(
    gw: &Gateway,
    run: &RunState,
    upstream: &Upstream,
    rest: &str,
    parts: &Parts,
    body: Body,
    rec: &mut Recorder,
) -> Result<reqwest::Request, Refusal> {
    if rest.split('/').any(|seg| {
        matches!(
            seg.to_ascii_lowercase().replace("%2e", ".").as_str(),
            "." | ".."
        )
    }) {
        return Err(Refusal::BadRequest("dot segments in the path".into()));
    }
    let body = read_body(&parts.headers, body).await?;
    let (model, body) = inspect(upstream.protocol, rest, body);
    rec.model = model;
    admit(run, rec.model.as_deref())?;
    let url = upstream_url(&upstream.base_url, rest, parts.uri.query());
    let mut request = gw
        .client
        .request(parts.method.clone(), url)
        .body(body)
        .build()
        .map_err(|e| Refusal::Upstream(without_url(e)))?;
    *request.headers_mut() = forwarded_headers(&parts.headers, upstream)?;
    Ok(request)
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Refusal::TooLarge(MAX_BODY_BYTES));
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Refusal::TooLarge(MAX_BODY_BYTES);
                }
                source = err.source();
            }
            Refusal::BadRequest(format!("cannot read the request body: {e}"))
        })
}

/// The fields of a request body the gateway looks at.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(default)]
    model: Value,
    #[serde(default)]
    stream: Value,
    #[serde(default)]
    stream_options: Value,
}

/// The request's model, and the body to forward.
fn inspect(protocol: Protocol, rest: &str, body: Bytes) -> (Option<String>, Bytes) {
    if protocol == Protocol::Gemini {
        return (gemini_model(rest), body);
    }
    let Ok(probe) = serde_json::from_slice::<Probe>(&body) else {
        return (None, body); // not JSON: forwarded as is, the provider judges it
    };
    let model = probe.model.as_str().map(str::to_owned);
    let wants_usage = probe.stream_options.get("include_usage") == Some(&Value::Bool(true));
    let chat =
        protocol == Protocol::OpenAi && rest.trim_end_matches('/').ends_with("chat/completions");
    if !(chat && probe.stream == Value::Bool(true) && !wants_usage) {
        return (model, body);
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&body) else {
        return (model, body);
    };
    let options = object
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Default::default()));
    if !options.is_object() {
        *options = Value::Object(Default::default());
    }
    if let Some(options) = options.as_object_mut() {
        options.insert("include_usage".into(), Value::Bool(true));
    }
    match serde_json::to_vec(&object) {
        Ok(rewritten) => (model, Bytes::from(rewritten)),
        Err(_) => (model, body),
    }
}

/// `gemini-2.5-pro` from `v1beta/models/gemini-2.5-pro:streamGenerateContent`.
fn gemini_model(rest: &str) -> Option<String> {
    let (_, after) = rest.split_once("models/")?;
    let model = after.split([':', '/']).next()?;
    (!model.is_empty()).then(|| model.to_owned())
}

/// Allowlist, budget, then rate (a refused request takes no rate slot).
fn admit(run: &RunState, model: Option<&str>) -> Result<(), Refusal> {
    let limits = &run.grant.limits;
    if let (Some(allow), Some(model)) = (limits.models.as_deref(), model) {
        if !model_allowed(Some(allow), model) {
            return Err(not_allowed(allow, model));
        }
    }
    let mut book = run.book();
    if let Some(reason) = budget_reason(limits, &book.totals) {
        let first = !std::mem::replace(&mut book.budget_reported, true);
        drop(book);
        if first {
            let event = GatewayEvent::BudgetExceeded {
                reason: reason.clone(),
            };
            let _ = run.grant.events.send(event);
        }
        return Err(Refusal::Budget(reason));
    }
    book.admit(limits.requests_per_minute, Instant::now())
}

fn upstream_url(base: &str, rest: &str, query: Option<&str>) -> String {
    let mut url = base.trim_end_matches('/').to_owned();
    if !rest.is_empty() {
        url.push('/');
        url.push_str(rest);
    }
    let kept: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("key"))
        .collect();
    if !kept.is_empty() {
        url.push('?');
        url.push_str(&kept.join("&"));
    }
    url
}

/// Names listed in `Connection` are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect()
}

fn forwarded_headers(incoming: &HeaderMap, upstream: &Upstream) -> Result<HeaderMap, Refusal> {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 2);
    for (name, value) in incoming {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || DROPPED_REQUEST.contains(&n) || listed.iter().any(|l| l == n)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let bad = |_| Refusal::Upstream("the configured credential is not a valid header value".into());
    let (name, value) = match (&upstream.credential, upstream.protocol) {
        (Credential::ApiKey(k), Protocol::Anthropic) => ("x-api-key", HeaderValue::from_str(k)),
        (Credential::ApiKey(k), Protocol::Gemini) => ("x-goog-api-key", HeaderValue::from_str(k)),
        (Credential::ApiKey(t), Protocol::OpenAi) | (Credential::Bearer(t), _) => (
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")),
        ),
    };
    let mut value = value.map_err(bad)?;
    value.set_sensitive(true);
    out.insert(HeaderName::from_static(name), value);
    if let (Credential::Bearer(_), Protocol::Anthropic) = (&upstream.credential, upstream.protocol)
    {
        add_oauth_beta(&mut out);
    }
    Ok(out)
}

fn add_oauth_beta(headers: &mut HeaderMap) {
    let mut flags: Vec<String> = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    if !flags.iter().any(|f| f == OAUTH_BETA) {
        flags.push(OAUTH_BETA.to_owned());
    }
    if let Ok(value) = HeaderValue::from_str(&flags.join(",")) {
        headers.insert("anthropic-beta", value);
    }
}

/// A reqwest error's text without the URL (which names the provider's
/// host; never a secret, but the harness has no use for it).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

/// The answer to the client: the provider's status and headers, and its
/// body streamed through the usage parser.
fn respond(answer: reqwest::Response, rec: Recorder) -> Response {
    let status = answer.status();
    let headers_ms = elapsed_ms(rec.started);
    let listed = connection_listed(answer.headers());
    let mut headers = HeaderMap::with_capacity(answer.headers().len());
    for (name, value) in answer.headers() {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && !listed.iter().any(|l| l == n) {
            headers.append(name.clone(), value.clone());
        }
    }
    let sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let parser = UsageParser::new(rec.protocol, sse);
    // hyper stops polling a body once its declared length is written, and
    // never polls one that cannot have content: such answers are recorded
    // when their last byte passes, or now.
    let remaining = answer.content_length();
    if remaining == Some(0) || matches!(status.as_u16(), 204 | 304) {
        rec.record(
            status.as_u16(),
            parser.finish(),
            Some(headers_ms),
            false,
            None,
        );
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return response;
    }
    let tee = Tee {
        remaining,
        parser: Some(parser),
        revoked: Box::pin(rec.run.revoked.clone().cancelled_owned()),
        inner: Box::pin(answer.bytes_stream()),
        status: status.as_u16(),
        headers_ms,
        ttfb_ms: None,
        streamed: sse,
        rec: Some(rec),
    };
    let mut response = Response::new(Body::from_stream(tee));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The answer's body on its way to the client, teed into the usage parser.
struct Tee {
    inner: ByteStream,
    /// Bytes still to come when the answer declared its length.
    remaining: Option<u64>,
    revoked: Pin<Box<WaitForCancellationFutureOwned>>,
    parser: Option<UsageParser>,
    rec: Option<Recorder>,
    status: u16,
    headers_ms: u64,
    ttfb_ms: Option<u64>,
    streamed: bool,
}

impl Tee {
    fn end(&mut self, error: Option<String>) {
        let (Some(rec), Some(parser)) = (self.rec.take(), self.parser.take()) else {
            return;
        };
        let ttfb = self.ttfb_ms.unwrap_or(self.headers_ms);
        rec.record(
            self.status,
            parser.finish(),
            Some(ttfb),
            self.streamed,
            error,
        );
    }
}

impl Stream for Tee {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.rec.is_none() {
            return Poll::Ready(None);
        }
        if this.revoked.as_mut().poll(cx).is_ready() {
            this.end(Some(Refusal::Revoked.to_string()));
            return Poll::Ready(Some(Err(std::io::Error::other("run key revoked"))));
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if this.ttfb_ms.is_none() {
                    if let Some(rec) = &this.rec {
                        this.ttfb_ms = Some(elapsed_ms(rec.started));
                    }
                }
                if let Some(parser) = &mut this.parser {
                    parser.feed(&bytes);
                }
                if let Some(remaining) = &mut this.remaining {
                    *remaining = remaining.saturating_sub(bytes.len() as u64);
                    if *remaining == 0 {
                        this.end(None);
                    }
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                let message = format!("upstream stream failed: {}", e.without_url());
                this.end(Some(message.clone()));
                Poll::Ready(Some(Err(std::io::Error::other(message))))
            }
            Poll::Ready(None) => {
                this.end(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.end(Some("client closed the stream".into()));
    }
}

/// Records one call of a run when it ends.
struct Recorder {
    gw: Arc<Gateway>,
    run: Arc<RunState>,
    protocol: Protocol,
    model: Option<String>,
    started: Instant,
}

impl Recorder {
    /// Answer with `refusal` and record it.
    fn refuse(self, refusal: Refusal) -> Response {
        let response = refusal.response(self.protocol);
        let status = refusal.status().as_u16();
        self.record(
            status,
            Extracted::default(),
            None,
            false,
            Some(refusal.to_string()),
        );
        response
    }

    fn record(
        self,
        status: u16,
        found: Extracted,
        ttfb_ms: Option<u64>,
        streamed: bool,
        error: Option<String>,
    ) {
        let model = self.model.or(found.model).unwrap_or_default();
        let mut usage = found.usage;
        usage.cost_usd = errand_trace::pricing::estimate_cost_usd(&model, &usage);
        let error = error.or_else(|| {
            (status >= 400).then(|| {
                found
                    .error
                    .unwrap_or_else(|| format!("the provider answered {status}"))
            })
        });
        let grant = &self.run.grant;
        let crossed = {
            let mut book = self.run.book();
            book.add(&usage);
            match budget_reason(&grant.limits, &book.totals) {
                Some(reason) if !book.budget_reported => {
                    book.budget_reported = true;
                    Some(reason)
                }
                _ => None,
            }
        };
        self.gw.metrics.record(&model, &grant.harness, &usage);
        let call = ModelCall {
            provider: self.protocol.to_string(),
            model,
            status,
            usage,
            ttfb_ms,
            duration_ms: elapsed_ms(self.started),
            streamed,
            error,
        };
        tracing::debug!(run = %grant.run, provider = %call.provider, model = %call.model,
            status, duration_ms = call.duration_ms, "gateway recorded a model call");
        let _ = grant.events.send(GatewayEvent::Call(call));
        if let Some(reason) = crossed {
            let _ = grant.events.send(GatewayEvent::BudgetExceeded { reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_url_keeps_the_query_without_the_key() {
        let u = upstream_url("http://h:1/v1/", "chat/completions", Some("a=1&key=s&b=2"));
        assert_eq!(u, "http://h:1/v1/chat/completions?a=1&b=2");
        assert_eq!(upstream_url("http://h", "", Some("key=s")), "http://h");
        let g = upstream_url(
            "https://g",
            "v1beta/models/m:streamGenerateContent",
            Some("alt=sse"),
        );
        assert_eq!(g, "https://g/v1beta/models/m:streamGenerateContent?alt=sse");
    }

    #[test]
    fn gemini_model_from_the_path() {
        let m = gemini_model("v1beta/models/gemini-2.5-pro:streamGenerateContent");
        assert_eq!(m.as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(gemini_model("v1beta/files"), None);
    }

    #[test]
    fn streaming_chat_requests_get_include_usage_and_others_stay_byte_exact() {
        let body = Bytes::from_static(br#"{"model":"m","stream":true,"messages":[]}"#);
        let (model, out) = inspect(Protocol::OpenAi, "chat/completions", body);
        assert_eq!(model.as_deref(), Some("m"));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"], serde_json::json!([]));

        let body = Bytes::from_static(br#"{"model":"m",  "stream":true}"#);
        let (_, out) = inspect(Protocol::OpenAi, "responses", body.clone());
        assert_eq!(out, body);
        let asked = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        );
        let (_, out) = inspect(Protocol::OpenAi, "chat/completions", asked.clone());
        assert_eq!(out, asked);
    }

    #[test]
    fn credentials_replace_every_incoming_auth_header() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("errand-run-x"));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer errand-run-x"),
        );
        h.insert("x-goog-api-key", HeaderValue::from_static("errand-run-x"));
        h.insert("anthropic-beta", HeaderValue::from_static("a,b"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("accept-encoding", HeaderValue::from_static("gzip"));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        let up = |protocol, credential| Upstream {
            id: "u".into(),
            protocol,
            base_url: "http://h".into(),
            credential,
        };
        let out = forwarded_headers(
            &h,
            &up(Protocol::Anthropic, Credential::Bearer("tok".into())),
        )
        .unwrap();
        assert_eq!(out["authorization"], "Bearer tok");
        assert_eq!(out["anthropic-beta"], "a,b,oauth-2025-04-20");
        assert_eq!(out["anthropic-version"], "2023-06-01");
        for gone in [
            "x-api-key",
            "x-goog-api-key",
            "connection",
            "x-hop",
            "accept-encoding",
        ] {
            assert!(!out.contains_key(gone), "{gone} forwarded");
        }
        let out =
            forwarded_headers(&h, &up(Protocol::Gemini, Credential::ApiKey("g".into()))).unwrap();
        assert_eq!(out["x-goog-api-key"], "g");
        assert!(!out.contains_key("authorization"));
        let out =
            forwarded_headers(&h, &up(Protocol::OpenAi, Credential::ApiKey("o".into()))).unwrap();
        assert_eq!(out["authorization"], "Bearer o");
        let out = forwarded_headers(&h, &up(Protocol::Anthropic, Credential::ApiKey("a".into())))
            .unwrap();
        assert_eq!(out["x-api-key"], "a");
        assert_eq!(out["anthropic-beta"], "a,b");
    }
}
