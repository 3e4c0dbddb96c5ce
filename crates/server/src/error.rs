//! The one error type of the API: a stable machine-readable code, a message a
//! person can act on, and the HTTP status. Internal details are logged, not sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use errand_store::StoreError;

/// An API error: its HTTP status and the JSON body `{"error":{"code":…,"message":…}}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`not_found`, `invalid_request`, …).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The request's field the error is about, when it is about one (a
    /// form shows the message next to it).
    pub field: Option<&'static str>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    /// The same error, about the request's `field`.
    pub fn on(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }
    /// 401: no valid token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 404: what was asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 422: the request is not valid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }
    /// 409: the request conflicts with the run's state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// The token is valid but lacks the scope this route needs.
    pub fn insufficient_scope(needed: errand_store::Scope) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "this token lacks the '{needed}' scope this request needs (see `errand token create NAME --scope`)"
            ),
        )
    }
    /// A repository on (or resolving to) the server's own filesystem that
    /// `server.local_repos` does not allow.
    pub fn local_repo_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "local_repo_not_allowed", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::views::ErrorBody {
            error: crate::views::ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Each kind of store error has its status: a missing run 404, an ambiguous
/// prefix or data the database refuses 422, a move the run's state does not
/// allow or a duplicate 409, a database that cannot be reached 503, anything
/// else 500. The database's own words are logged, not sent.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ApiError::not_found(format!("no run matches '{id}'")),
            StoreError::Ambiguous(id) => {
                ApiError::invalid(format!("'{id}' matches more than one run"))
            }
            StoreError::InvalidTransition(t) => ApiError::conflict(t.to_string()),
            StoreError::Conflict(detail) => {
                tracing::info!("store conflict: {detail}");
                ApiError::conflict(
                    "this conflicts with what the server has stored (a duplicate, or a change made at the same time): reload and try again",
                )
            }
            StoreError::Invalid(detail) => {
                tracing::info!("store refused data: {detail}");
                ApiError::invalid(
                    "the server's database refused this request's data (it refers to something that does not exist or breaks a rule)",
                )
            }
            StoreError::Unavailable(detail) => {
                tracing::error!("store unavailable: {detail}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the server could not reach its database: try again shortly",
                )
            }
            other => {
                tracing::error!("store error: {other}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server's database failed on this request (the server's log has the details)",
                )
            }
        }
    }
}

/// axum's `Query`, refused as the API refuses everything else: a JSON error
/// (422 `invalid_request`) naming what is wrong, not axum's plain-text 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(ApiQuery(q)),
            Err(e) => Err(ApiError::invalid(format!(
                "the query string is not valid: {}",
                e.body_text()
            ))),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::invalid(format!("the request body is not valid: {}", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(e: StoreError) -> ApiError {
        ApiError::from(e)
    }

    #[test]
    fn each_kind_of_store_error_has_its_status_and_code() {
        let cases = [
            (
                StoreError::NotFound("abc".into()),
                404,
                "not_found",
                "no run matches 'abc'",
            ),
            (
                StoreError::Ambiguous("ab".into()),
                422,
                "invalid_request",
                "more than one run",
            ),
            (
                StoreError::InvalidTransition(errand_core::InvalidTransition {
                    from: errand_core::RunState::Succeeded,
                    to: errand_core::RunState::Running,
                }),
                409,
                "conflict",
                "succeeded",
            ),
            (
                StoreError::Conflict("duplicate key".into()),
                409,
                "conflict",
                "already|stored",
            ),
            (
                StoreError::Invalid("foreign key".into()),
                422,
                "invalid_request",
                "refused",
            ),
            (
                StoreError::Unavailable("connection refused".into()),
                503,
                "unavailable",
                "could not reach its database",
            ),
            (
                StoreError::Corrupt("bad timestamp".into()),
                500,
                "internal",
                "database failed",
            ),
        ];
        for (e, status, code, says) in cases {
            let shown = e.to_string();
            let api = from(e);
            assert_eq!(api.status.as_u16(), status, "{shown}");
            assert_eq!(api.code, code, "{shown}");
            assert!(
                says.split('|').any(|w| api.message.contains(w)),
                "{shown}: {}",
                api.message
            );
        }
    }

    #[test]
    fn database_details_are_not_sent() {
        for e in [
            StoreError::Conflict(
                "duplicate key value violates unique constraint \"api_tokens_pkey\"".into(),
            ),
            StoreError::Invalid("FOREIGN KEY constraint failed".into()),
            StoreError::Unavailable("connection to 10.0.0.5:5432 refused".into()),
        ] {
            let api = from(e);
            for secret in ["api_tokens_pkey", "FOREIGN KEY", "10.0.0.5"] {
                assert!(!api.message.contains(secret), "{}", api.message);
            }
        }
    }
}
