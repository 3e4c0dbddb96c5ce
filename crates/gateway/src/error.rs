//! Provider-shaped error answers: why the gateway refused a request, and
//! the answer in the shape the harness's SDK expects from that provider, so
//! the harness shows the message and handles the status as it would the
//! provider's own.
//!
//! Status choices (harness SDKs retry 408, 409, 429 and 5xx; not 400/401/403):
//! - Budget: **400** everywhere, never 429 or 5xx, which the harness would
//!   retry until its own retry budget ran out. Anthropic answers an
//!   exhausted credit balance with exactly this (400
//!   `invalid_request_error`); OpenAI as `invalid_request_error` with code
//!   `budget_exceeded` (Codex retries only 429 and 5xx); Gemini as
//!   `FAILED_PRECONDITION`, Google's status for "the account is not in a
//!   state to serve this" (billing), which Gemini CLI does not retry.
//! - Model not allowed: **403** (`permission_error` / `PERMISSION_DENIED`):
//!   the key is valid but may not use that model; not retried.
//! - Rate limit: **429** with `retry-after`, so the harness waits and
//!   retries, which is the point of a rate limit.
//! - Unknown or revoked key: **401**, before any upstream request.
//! - Upstream unreachable: **502**.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Protocol;

/// Why the gateway answered instead of the provider.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No live run key in the request, or its grant lacks this upstream.
    #[error("errand gateway: invalid or expired run key")]
    Unauthorized,
    /// The run key was revoked while the request was in flight.
    #[error("errand gateway: the run key was revoked")]
    Revoked,
    /// The model is not on the run's allowlist.
    #[error("{0}")]
    ModelNotAllowed(String),
    /// The run's budget is used up (`budget exceeded (...)`).
    #[error("errand: {0}")]
    Budget(String),
    /// Over the run's requests per minute.
    #[error("errand: rate limit of {limit} requests per minute reached; retry after {retry_after_secs} s")]
    RateLimited {
        /// The run's limit.
        limit: u32,
        /// Seconds until a request would be admitted.
        retry_after_secs: u64,
    },
    /// The request body is over the gateway's bound.
    #[error("errand gateway: request body larger than {0} bytes")]
    TooLarge(usize),
    /// The request could not be read or is not acceptable.
    #[error("errand gateway: {0}")]
    BadRequest(String),
    /// The provider could not be reached.
    #[error("errand gateway: upstream request failed: {0}")]
    Upstream(String),
}

impl Refusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized | Refusal::Revoked => StatusCode::UNAUTHORIZED,
            Refusal::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            Refusal::Budget(_) | Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Anthropic's `error.type` for this refusal.
    fn anthropic_type(&self) -> &'static str {
        match self {
            Refusal::Unauthorized | Refusal::Revoked => "authentication_error",
            Refusal::ModelNotAllowed(_) => "permission_error",
            Refusal::Budget(_) | Refusal::BadRequest(_) => "invalid_request_error",
            Refusal::RateLimited { .. } => "rate_limit_error",
            Refusal::TooLarge(_) => "request_too_large",
            Refusal::Upstream(_) => "api_error",
        }
    }

    /// OpenAI's `error.type` and `error.code` for this refusal.
    fn openai_type_code(&self) -> (&'static str, &'static str) {
        match self {
            Refusal::Unauthorized | Refusal::Revoked => {
                ("invalid_request_error", "invalid_api_key")
            }
            Refusal::ModelNotAllowed(_) => ("invalid_request_error", "model_not_allowed"),
            Refusal::Budget(_) => ("invalid_request_error", "budget_exceeded"),
            Refusal::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            Refusal::RateLimited { .. } => ("requests", "rate_limit_exceeded"),
            Refusal::TooLarge(_) => ("invalid_request_error", "request_too_large"),
            Refusal::Upstream(_) => ("server_error", "upstream_unreachable"),
        }
    }

    /// Google's RPC status name for this refusal.
    fn gemini_status(&self) -> &'static str {
        match self {
            Refusal::Unauthorized | Refusal::Revoked => "UNAUTHENTICATED",
            Refusal::ModelNotAllowed(_) => "PERMISSION_DENIED",
            Refusal::Budget(_) => "FAILED_PRECONDITION",
            Refusal::BadRequest(_) | Refusal::TooLarge(_) => "INVALID_ARGUMENT",
            Refusal::RateLimited { .. } => "RESOURCE_EXHAUSTED",
            Refusal::Upstream(_) => "UNAVAILABLE",
        }
    }

    /// The JSON error body as `protocol`'s provider shapes it.
    pub fn body(&self, protocol: Protocol) -> serde_json::Value {
        let message = self.to_string();
        match protocol {
            Protocol::Anthropic => json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": message},
            }),
            Protocol::OpenAi => {
                let (kind, code) = self.openai_type_code();
                json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            }
            Protocol::Gemini => json!({
                "error": {
                    "code": self.status().as_u16(),
                    "message": message,
                    "status": self.gemini_status(),
                },
            }),
        }
    }

    /// The whole answer (with `retry-after` for a rate limit).
    pub fn response(&self, protocol: Protocol) -> Response {
        let mut response = (self.status(), axum::Json(self.body(protocol))).into_response();
        if let Refusal::RateLimited {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }
}

/// The protocol to shape an error in when the request matched no grant:
/// guessed from the path and the auth header used.
pub fn guess_protocol(path: &str, headers: &axum::http::HeaderMap) -> Protocol {
    if path.contains("/messages") || headers.contains_key("anthropic-version") {
        Protocol::Anthropic
    } else if path.contains("/models/") && path.contains(':')
        || headers.contains_key("x-goog-api-key")
    {
        Protocol::Gemini
    } else if headers.contains_key("x-api-key") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_never_a_status_harnesses_retry() {
        let r = Refusal::Budget("budget exceeded ($1.00 of $1.00)".into());
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let a = r.body(Protocol::Anthropic);
        assert_eq!(a["error"]["type"], "invalid_request_error");
        assert_eq!(
            a["error"]["message"],
            "errand: budget exceeded ($1.00 of $1.00)"
        );
        assert_eq!(r.body(Protocol::Gemini)["error"]["code"], 400);
        assert_eq!(r.body(Protocol::OpenAi)["error"]["code"], "budget_exceeded");
    }

    #[test]
    fn rate_limit_answer_carries_retry_after() {
        let r = Refusal::RateLimited {
            limit: 2,
            retry_after_secs: 17,
        };
        let resp = r.response(Protocol::OpenAi);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "17");
    }

    #[test]
    fn guesses_the_protocol_from_path_and_headers() {
        let h = axum::http::HeaderMap::new();
        assert_eq!(guess_protocol("/a/v1/messages", &h), Protocol::Anthropic);
        let g = "/g/v1beta/models/gemini-2.5-pro:generateContent";
        assert_eq!(guess_protocol(g, &h), Protocol::Gemini);
        assert_eq!(guess_protocol("/o/v1/responses", &h), Protocol::OpenAi);
    }
}
