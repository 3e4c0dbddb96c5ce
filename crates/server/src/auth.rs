//! Bearer tokens for the API and share links for one run's trace.
//!
//! Secrets are random (two v4 UUIDs, 244 bits), shown once, and stored only as
//! their SHA-256, so a copy of the database grants nothing.
//!
//! Each token carries scopes ([`Scope`]): [`require_token`] authenticates,
//! then every route asks for the one scope it needs ([`scoped`]): `read` to
//! read runs, their events and streams; `run` to start, cancel, continue and
//! share runs; `admin` to manage tokens. Without it: 403 `insufficient_scope`.

use crate::error::ApiQuery;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Json;
use errand_store::{Scope, TokenInfo};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::{events_of, EventsQuery};
use crate::views::{
    ErrorBody, NewToken, RevokedShares, RevokedToken, RunView, ShareLink, TokenList, TokenView,
};
use crate::{ApiError, AppState};

/// A new random secret with a recognisable prefix (`errand_…`, `share_…`).
pub fn new_secret(prefix: &str) -> String {
    format!(
        "{prefix}_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The SHA-256 of a secret, hex-encoded: the only form that is stored.
pub fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Middleware: the request must carry a valid, unrevoked API token.
pub async fn require_token(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = bearer(req.headers()) else {
        return Err(ApiError::unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>` (create one with `errand token create NAME`)",
        ));
    };
    match st.store.token_by_hash(&hash(token)).await? {
        Some(t) if !t.revoked => {
            // Handlers learn who is asking (runs record it).
            req.extensions_mut().insert(t);
            Ok(next.run(req).await)
        }
        Some(_) => Err(ApiError::unauthorized("this token has been revoked")),
        None => Err(ApiError::unauthorized("unknown token")),
    }
}

/// `route` answered only for tokens holding `scope` (after [`require_token`]).
pub fn scoped(scope: Scope, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.route_layer(axum::middleware::from_fn(
        move |req: Request, next: Next| async move { require_scope(scope, req, next).await },
    ))
}

async fn require_scope(scope: Scope, req: Request, next: Next) -> Result<Response, ApiError> {
    match req.extensions().get::<TokenInfo>() {
        Some(t) if t.has(scope) => Ok(next.run(req).await),
        Some(_) => Err(ApiError::insufficient_scope(scope)),
        // Only reachable if a route were mounted without `require_token`.
        None => Err(ApiError::unauthorized("missing bearer token")),
    }
}

/// `GET /api/v1/tokens` (admin): every token, never a secret.
#[utoipa::path(get, path = "/tokens", summary = "List API tokens (never their secrets)", responses(
    (status = 200, description = "Every token", body = TokenList),
))]
pub async fn list_tokens(State(st): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = st.store.list_tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(TokenView::from).collect(),
    }))
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The token's name (shown in listings).
    pub name: String,
    /// Default: read and run (what `errand token create` gives).
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::views::ScopeName>>)]
    pub scopes: Option<Vec<Scope>>,
}

/// `POST /api/v1/tokens` (admin): a new token, its secret shown only in this answer.
#[utoipa::path(post, path = "/tokens", summary = "Create an API token; its secret is shown only in this answer", request_body = CreateToken, responses(
    (status = 201, description = "The token, with its secret", body = NewToken),
    (status = 422, description = "invalid_request", body = ErrorBody),
))]
pub async fn create_token(
    State(st): State<AppState>,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    if b.name.trim().is_empty() || b.name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name is empty or has control characters"));
    }
    let scopes = b.scopes.unwrap_or_else(|| vec![Scope::Read, Scope::Run]);
    if scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes is empty: a token needs at least one",
        ));
    }
    let secret = new_secret("errand");
    let t = st
        .store
        .create_token(&b.name, &hash(&secret), &scopes)
        .await?;
    let v = NewToken {
        info: TokenView::from(&t),
        token: secret,
    };
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `DELETE /api/v1/tokens/{id}` (admin).
#[utoipa::path(delete, path = "/tokens/{id}", summary = "Revoke an API token", params(("id" = String, Path, description = "The token's id")), responses(
    (status = 200, description = "The token is revoked", body = RevokedToken),
    (status = 404, description = "not_found", body = ErrorBody),
))]
pub async fn revoke_token(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RevokedToken>, ApiError> {
    if !st.store.revoke_token(&id).await? {
        return Err(ApiError::not_found(format!("no token with id '{id}'")));
    }
    Ok(Json(RevokedToken { revoked: id }))
}

/// `POST /api/v1/runs/{id}/share`: a new read-only link to the run's trace.
#[utoipa::path(post, path = "/runs/{id}/share", summary = "Create a read-only share link to the run", params(("id" = String, Path, description = "The run's id or a unique prefix of it")), responses(
    (status = 201, description = "The link (shown once)", body = ShareLink),
    (status = 404, description = "not_found", body = ErrorBody),
))]
pub async fn create_share(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rec = st.store.find_run(&id).await?;
    let secret = new_secret("share");
    st.store.create_share(rec.id, &hash(&secret)).await?;
    let body = ShareLink {
        run: rec.id.to_string(),
        path: format!("/share/{secret}"),
        token: secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/v1/runs/{id}/share`: revokes every link to the run.
#[utoipa::path(delete, path = "/runs/{id}/share", summary = "Revoke every share link of the run", params(("id" = String, Path, description = "The run's id or a unique prefix of it")), responses(
    (status = 200, description = "How many were revoked", body = RevokedShares),
    (status = 404, description = "not_found", body = ErrorBody),
))]
pub async fn revoke_share(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RevokedShares>, ApiError> {
    let rec = st.store.find_run(&id).await?;
    let n = st.store.revoke_shares(rec.id).await?;
    Ok(Json(RevokedShares { revoked: n }))
}

async fn shared(st: &AppState, token: &str) -> Result<errand_core::RunRecord, ApiError> {
    match st.store.share_by_hash(&hash(token)).await? {
        Some(id) => Ok(st.store.get_run(id).await?),
        None => Err(ApiError::not_found(
            "this share link does not exist or was revoked",
        )),
    }
}

/// `GET /share/{token}`: the run page in share mode for a browser (`Accept:
/// text/html`; the page checks the link itself), the run as JSON otherwise.
#[utoipa::path(get, path = "/share/{token}", summary = "The shared run: its page for a browser, JSON otherwise",
    description = "A request whose Accept header prefers text/html (a browser opening the link) gets the viewer's run page in share mode, which reads /share/{token}/events and /share/{token}/events/stream; any other request gets the run as JSON.",
    params(("token" = String, Path, description = "The share link's secret")), responses(
    (status = 200, description = "The run", body = RunView),
    (status = 404, description = "not_found: no such link, or it was revoked", body = ErrorBody),
))]
pub async fn shared_run(
    State(st): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if crate::viewer::wants_html(&headers) {
        return Ok(crate::viewer::page(crate::viewer::Mode::Serve));
    }
    Ok(Json(RunView::from(&shared(&st, &token).await?)).into_response())
}

/// `GET /share/{token}/events`: a shared run's events, as `GET /api/v1/runs/{id}/events`.
#[utoipa::path(get, path = "/share/{token}/events", summary = "The shared run's events as JSON lines", params(("token" = String, Path, description = "The share link's secret"), EventsQuery), responses(
    (status = 200, description = "One event per line", content_type = "application/x-ndjson", body = String),
    (status = 404, description = "not_found", body = ErrorBody),
))]
pub async fn shared_events(
    State(st): State<AppState>,
    Path(token): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let rec = shared(&st, &token).await?;
    events_of(&st, rec.id, &q).await
}

/// `GET /share/{token}/events/stream`: a shared run's live event stream.
#[utoipa::path(get, path = "/share/{token}/events/stream", summary = "The shared run's events, live", params(("token" = String, Path, description = "The share link's secret"), crate::sse::StreamQuery, crate::sse::LastEventId), responses(
    (status = 200, description = "Server-Sent Events, as /api/v1/runs/{id}/events/stream", content_type = "text/event-stream", body = String),
    (status = 404, description = "not_found", body = ErrorBody),
))]
pub async fn shared_stream(
    State(st): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<crate::sse::StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let rec = shared(&st, &token).await?;
    Ok(crate::sse::stream_of(
        st,
        rec.id,
        crate::sse::resume_point(&headers, &q),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret("errand");
        assert!(a.starts_with("errand_") && a.len() == 7 + 64);
        assert_ne!(a, new_secret("errand"));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "bearer  tok ".parse().unwrap());
        assert_eq!(bearer(&h), Some("tok"));
        h.insert("authorization", "Basic x".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
