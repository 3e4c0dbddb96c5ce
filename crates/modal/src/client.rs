//! The connection to Modal's API: the headers every call carries, the
//! auth-token JWT and its refresh, retries and throttling, as the official
//! Go SDK v0.9.0 does them (`client.go` `injectRequiredHeaders`,
//! `authTokenInterceptor`, `retryInterceptor`; `auth_token_manager.go`).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use prost::Message;
use tokio::sync::Mutex;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::Code;

use crate::config::{Endpoint, Profile};
use crate::proto::client::modal_client_client::ModalClientClient;
use crate::ModalError;

/// `x-modal-client-type`: `CLIENT_TYPE_LIBMODAL_GO`, the SDK whose behaviour errand copies.
pub const CLIENT_TYPE: &str = "9";
/// `x-modal-client-version`: hard-coded by the Go and JS SDKs ("behaves like this Python SDK version").
pub const CLIENT_VERSION: &str = "1.0.0";
/// `x-modal-libmodal-version`: the Go SDK release whose protocol use errand follows.
pub const LIBMODAL_VERSION: &str = "modal-go/0.9.0";
/// The largest message either way (the SDK's 100 MiB).
pub const MAX_MESSAGE: usize = 100 << 20;

/// Retries of a unary call on a transient code.
pub const MAX_RETRIES: u32 = 3;
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(1);
const MIN_THROTTLE: Duration = Duration::from_millis(100);
/// A token without `exp` lives this long.
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(20 * 60);
const TOKEN_DEADLINE: Duration = Duration::from_secs(5);

/// The codes a unary call is retried on.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::DeadlineExceeded
            | Code::Unavailable
            | Code::Cancelled
            | Code::Internal
            | Code::Unknown
    )
}

/// `google.rpc.Status`, which carries a status's details (not in Modal's protos).
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// The code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// The details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// The type URL of Modal's throttling detail.
pub const RETRY_POLICY_TYPE: &str = "type.modal.com/modal.client.RPCRetryPolicy";

/// How long the server asks the client to wait, when `status` holds a
/// `modal.client.RPCRetryPolicy` detail.
pub fn throttle_delay(status: &tonic::Status) -> Option<Duration> {
    if status.details().is_empty() {
        return None;
    }
    let st = RpcStatus::decode(status.details()).ok()?;
    st.details.iter().find_map(|any| {
        if any.type_url.rsplit('/').next() != Some("modal.client.RPCRetryPolicy") {
            return None;
        }
        let p = crate::proto::client::RpcRetryPolicy::decode(any.value.as_slice()).ok()?;
        let secs = if p.retry_after_secs.is_finite() {
            p.retry_after_secs.clamp(0.0, 3600.0)
        } else {
            0.0
        };
        Some(Duration::from_secs_f32(secs).max(MIN_THROTTLE))
    })
}

/// The `exp` claim of a JWT, when it has three parts and a JSON payload.
pub fn jwt_exp(token: &str) -> Result<Option<u64>, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err("not a JWT of three parts".into());
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .map_err(|e| format!("its payload is not base64url: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| format!("its payload is not JSON: {e}"))?;
    Ok(v.get("exp").and_then(serde_json::Value::as_u64))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A number in [0, 1) from a fresh UUID (jitter without another dependency).
fn unit_random() -> f64 {
    let b = uuid::Uuid::new_v4().as_u128();
    (b >> 75) as f64 / (1u64 << 53) as f64
}

#[derive(Default)]
struct AuthState {
    token: Option<String>,
    /// When it expires (unix seconds).
    exp: f64,
    /// When to fetch a new one (unix seconds): 50-60 % of its lifetime.
    refresh_at: f64,
    /// No refresh before this, after a failed one.
    next_try: f64,
    backoff: f64,
}

/// A client of Modal's API (see the module).
pub struct Client {
    profile: Profile,
    endpoint: Endpoint,
    channel: Channel,
    auth: Mutex<AuthState>,
    /// `MODAL_MAX_THROTTLE_WAIT`: the most time spent waiting on throttling
    /// for one call (`None` or zero: no cap).
    pub max_throttle_wait: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("profile", &self.profile)
            .finish()
    }
}

/// A channel to `uri` with the SDK's settings (64 MiB windows, 30 s keepalive).
pub(crate) fn channel(uri: &str, tls: bool) -> Result<Channel, ModalError> {
    let mut ep = tonic::transport::Endpoint::from_shared(uri.to_string())
        .map_err(|e| ModalError::Config(format!("'{uri}' is not a usable URL: {e}")))?
        .initial_stream_window_size(64 << 20)
        .initial_connection_window_size(64 << 20)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_timeout(Duration::from_secs(30));
    if tls {
        ep = ep
            .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
            .map_err(|e| ModalError::Config(format!("TLS for {uri}: {e}")))?;
    }
    Ok(ep.connect_lazy())
}

impl Client {
    /// A client for `profile`; nothing is contacted until the first call.
    pub fn new(profile: Profile) -> Result<Client, ModalError> {
        if let Some(problem) = profile.missing().into_iter().next() {
            return Err(ModalError::Config(problem));
        }
        let endpoint = Endpoint::parse(&profile.server_url)?;
        let channel = channel(&endpoint.uri(), endpoint.tls)?;
        let max_throttle_wait = std::env::var("MODAL_MAX_THROTTLE_WAIT")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64);
        Ok(Client {
            profile,
            endpoint,
            channel,
            auth: Mutex::new(AuthState::default()),
            max_throttle_wait,
        })
    }

    /// The profile it uses.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The server it talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The generated stub over the shared channel.
    pub fn stub(&self) -> ModalClientClient<Channel> {
        ModalClientClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// The headers every call carries.
    fn base_headers(&self, md: &mut MetadataMap) -> Result<(), ModalError> {
        md.insert(
            "x-modal-client-type",
            MetadataValue::from_static(CLIENT_TYPE),
        );
        md.insert(
            "x-modal-client-version",
            MetadataValue::from_static(CLIENT_VERSION),
        );
        md.insert(
            "x-modal-libmodal-version",
            MetadataValue::from_static(LIBMODAL_VERSION),
        );
        let bad = |what: &str| {
            ModalError::Config(format!("the Modal {what} is not a valid header value"))
        };
        md.insert(
            "x-modal-token-id",
            self.profile.token_id.parse().map_err(|_| bad("token id"))?,
        );
        md.insert(
            "x-modal-token-secret",
            self.profile
                .token_secret
                .parse()
                .map_err(|_| bad("token secret"))?,
        );
        Ok(())
    }

    /// The headers of one attempt of a unary call.
    fn call_headers(
        &self,
        md: &mut MetadataMap,
        key: &str,
        attempt: u32,
        throttled: u32,
    ) -> Result<(), ModalError> {
        self.base_headers(md)?;
        md.insert(
            "x-idempotency-key",
            key.parse().map_err(|_| ModalError::Config("uuid".into()))?,
        );
        md.insert("x-retry-attempt", MetadataValue::from(attempt));
        md.insert("x-throttle-retry-attempt", MetadataValue::from(throttled));
        Ok(())
    }

    /// A request for a streaming call: the base headers and the auth token
    /// (the JS SDK sends it on streams too; the Go SDK does not).
    pub async fn stream_request<T>(&self, msg: T) -> Result<tonic::Request<T>, ModalError> {
        let mut r = tonic::Request::new(msg);
        self.base_headers(r.metadata_mut())?;
        let token = self.auth_token().await?;
        r.metadata_mut().insert(
            "x-modal-auth-token",
            token.parse().map_err(|_| ModalError::Protocol {
                rpc: "AuthTokenGet",
                why: "the token is not a header value".into(),
            })?,
        );
        Ok(r)
    }

    /// A unary call with the SDK's headers, auth token, retries and throttling.
    pub async fn unary<Q, R, F, Fut>(
        &self,
        rpc: &'static str,
        req: Q,
        call: F,
    ) -> Result<R, ModalError>
    where
        Q: Clone,
        F: Fn(ModalClientClient<Channel>, tonic::Request<Q>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        self.unary_with(rpc, req, true, None, call).await
    }

    async fn unary_with<Q, R, F, Fut>(
        &self,
        rpc: &'static str,
        req: Q,
        auth: bool,
        deadline: Option<Duration>,
        call: F,
    ) -> Result<R, ModalError>
    where
        Q: Clone,
        F: Fn(ModalClientClient<Channel>, tonic::Request<Q>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let key = uuid::Uuid::new_v4().to_string();
        let (mut attempt, mut throttled) = (0u32, 0u32);
        let mut backoff = RETRY_BASE;
        let mut waited = Duration::ZERO;
        loop {
            let mut r = tonic::Request::new(req.clone());
            if let Some(d) = deadline {
                r.set_timeout(d);
            }
            self.call_headers(r.metadata_mut(), &key, attempt, throttled)?;
            if auth {
                let token = self.auth_token().await?;
                r.metadata_mut().insert(
                    "x-modal-auth-token",
                    token.parse().map_err(|_| ModalError::Protocol {
                        rpc: "AuthTokenGet",
                        why: "the token is not a header value".into(),
                    })?,
                );
            }
            let status = match call(self.stub(), r).await {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(s) => s,
            };
            match self.retry(
                rpc,
                &status,
                &mut attempt,
                &mut throttled,
                &mut backoff,
                &mut waited,
            ) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(ModalError::rpc(rpc, &status)),
            }
        }
    }

    /// Whether to retry after `status`, and after how long: throttling
    /// (uncounted, up to `max_throttle_wait` in all) or a transient code.
    fn retry(
        &self,
        rpc: &str,
        status: &tonic::Status,
        attempt: &mut u32,
        throttled: &mut u32,
        backoff: &mut Duration,
        waited: &mut Duration,
    ) -> Option<Duration> {
        if let Some(delay) = throttle_delay(status) {
            if self
                .max_throttle_wait
                .is_some_and(|cap| *waited + delay > cap)
            {
                return None;
            }
            tracing::debug!("Modal throttled {rpc}: retrying in {delay:?}");
            *waited += delay;
            *throttled += 1;
            return Some(delay);
        }
        if is_transient(status.code()) && *attempt < MAX_RETRIES {
            tracing::debug!(
                "Modal {rpc}: {} ({}), retry {}",
                status.code(),
                status.message(),
                *attempt + 1
            );
            let delay = *backoff;
            *backoff = (*backoff * 2).min(RETRY_CAP);
            *attempt += 1;
            return Some(delay);
        }
        None
    }

    /// A valid auth token: the cached one, or a new one when it is past
    /// 50-60 % of its life (one refresh at a time; a failed refresh keeps
    /// the old token while it lasts and backs off 0.5-60 s).
    pub async fn auth_token(&self) -> Result<String, ModalError> {
        let mut st = self.auth.lock().await;
        let now = now_secs();
        if let Some(t) = &st.token {
            if now < st.exp && (now < st.refresh_at || now < st.next_try) {
                return Ok(t.clone());
            }
        }
        match self.fetch_token().await {
            Ok((token, exp)) => {
                let life = (exp - now).max(0.0);
                st.refresh_at = now + life * (0.5 + 0.1 * unit_random());
                st.exp = exp;
                st.token = Some(token.clone());
                st.backoff = 0.0;
                st.next_try = 0.0;
                Ok(token)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    Some(crate::ErrorKind::Auth | crate::ErrorKind::PermissionDenied)
                ) =>
            {
                Err(e)
            }
            Err(e) => match st.token.clone() {
                Some(t) if now < st.exp => {
                    st.backoff = (st.backoff * 2.0).clamp(0.5, 60.0);
                    st.next_try = now + st.backoff;
                    tracing::warn!(
                        "refreshing the Modal auth token failed ({e}); the current one is kept"
                    );
                    Ok(t)
                }
                _ => Err(e),
            },
        }
    }

    /// `AuthTokenGet`: a JWT and when it expires.
    async fn fetch_token(&self) -> Result<(String, f64), ModalError> {
        // The same retries as every unary call, without a token of course.
        let key = uuid::Uuid::new_v4().to_string();
        let (mut attempt, mut throttled) = (0u32, 0u32);
        let (mut backoff, mut waited) = (RETRY_BASE, Duration::ZERO);
        let resp = loop {
            let mut r = tonic::Request::new(crate::proto::client::AuthTokenGetRequest {});
            r.set_timeout(TOKEN_DEADLINE);
            self.call_headers(r.metadata_mut(), &key, attempt, throttled)?;
            let status = match self.stub().auth_token_get(r).await {
                Ok(resp) => break resp.into_inner(),
                Err(s) => s,
            };
            match self.retry(
                "AuthTokenGet",
                &status,
                &mut attempt,
                &mut throttled,
                &mut backoff,
                &mut waited,
            ) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(ModalError::rpc("AuthTokenGet", &status)),
            }
        };
        if resp.token.is_empty() {
            return Err(ModalError::Protocol {
                rpc: "AuthTokenGet",
                why: "an empty token".into(),
            });
        }
        let exp = match jwt_exp(&resp.token) {
            Ok(Some(exp)) => exp as f64,
            Ok(None) => now_secs() + DEFAULT_TOKEN_LIFE.as_secs_f64(),
            Err(why) => {
                return Err(ModalError::Protocol {
                    rpc: "AuthTokenGet",
                    why,
                })
            }
        };
        Ok((resp.token, exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", e.encode("{}"), e.encode(payload))
    }

    #[test]
    fn jwt_expiry() {
        assert_eq!(
            jwt_exp(&jwt(r#"{"exp":1700000000}"#)),
            Ok(Some(1_700_000_000))
        );
        assert_eq!(jwt_exp(&jwt(r#"{"sub":"x"}"#)), Ok(None));
        assert!(jwt_exp("a.b").is_err());
        assert!(jwt_exp("a..c").is_err());
        assert!(jwt_exp("a.!!!.c").is_err());
    }

    #[test]
    fn throttling_is_read_from_the_status_details() {
        let policy = crate::proto::client::RpcRetryPolicy {
            retry_after_secs: 0.25,
        };
        let details = RpcStatus {
            code: Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![prost_types::Any {
                type_url: RETRY_POLICY_TYPE.into(),
                value: policy.encode_to_vec(),
            }],
        };
        let s = tonic::Status::with_details(
            Code::ResourceExhausted,
            "slow down",
            details.encode_to_vec().into(),
        );
        assert_eq!(throttle_delay(&s), Some(Duration::from_millis(250)));
        assert_eq!(
            throttle_delay(&tonic::Status::resource_exhausted("x")),
            None
        );
        let tiny = crate::proto::client::RpcRetryPolicy {
            retry_after_secs: 0.0,
        };
        let d = RpcStatus {
            details: vec![prost_types::Any {
                type_url: RETRY_POLICY_TYPE.into(),
                value: tiny.encode_to_vec(),
            }],
            ..details
        };
        let s = tonic::Status::with_details(Code::ResourceExhausted, "x", d.encode_to_vec().into());
        assert_eq!(throttle_delay(&s), Some(MIN_THROTTLE));
    }
}
