//! `POST /api/v1/groups/{group}/pick`: the run of a fan-out kept as its
//! result (`errand_runner::pick`): its pull request opened or marked, the
//! others' closed and their branches deleted when asked.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use errand_runner::{PickError, PickRequest};
use errand_store::TokenInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::views::ErrorBody;
use crate::AppState;

/// Which run to keep.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PickBody {
    /// The run kept (its id or a unique prefix).
    pub run: String,
    /// Also close the other runs' pull requests and delete their branches.
    #[serde(default)]
    pub close_others: bool,
}

/// What the pick did.
#[derive(Debug, Serialize, ToSchema)]
pub struct PickView {
    /// The fan-out group.
    pub group: String,
    /// The run kept.
    pub run: String,
    /// Its pull request, when it has one.
    pub pr_url: Option<String>,
    /// What was done, a line each.
    pub done: Vec<String>,
}

/// `POST /api/v1/groups/{group}/pick`.
#[utoipa::path(post, path = "/groups/{group}/pick", summary = "Keep one run of a fan-out: open (or mark) its pull request, and close the others' if asked", params(("group" = String, Path, description = "The fan-out group")), request_body = PickBody, responses(
    (status = 200, description = "What was done", body = PickView),
    (status = 404, description = "not_found: no such group", body = ErrorBody),
    (status = 409, description = "conflict: a run is still going, the run did not succeed, or another was picked", body = ErrorBody),
    (status = 422, description = "invalid_request: the run is not in the group", body = ErrorBody),
    (status = 502, description = "forge_failed: GitHub refused a step (the message says which)", body = ErrorBody),
))]
pub async fn pick(
    State(st): State<AppState>,
    Path(group): Path<String>,
    caller: Option<Extension<TokenInfo>>,
    body: Result<Json<PickBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PickView>, ApiError> {
    let Json(b) = body?;
    let rec = match st.store.find_run(&b.run).await {
        Ok(r) => r,
        Err(errand_store::StoreError::NotFound(m)) => {
            return Err(ApiError::invalid(m).on("run"));
        }
        Err(e) => return Err(e.into()),
    };
    let by = caller.map_or_else(|| "someone".to_string(), |Extension(t)| t.name);
    let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
    let req = PickRequest {
        group: &group,
        run: rec.id,
        close_others: b.close_others,
        by: &by,
    };
    let picked = errand_runner::pick(
        st.store.as_ref(),
        st.forge.as_deref(),
        &cwd,
        st.public_url.as_deref(),
        &req,
    )
    .await
    .map_err(|e| match e {
        PickError::NoGroup(_) => ApiError::not_found(e.to_string()),
        PickError::NotInGroup { .. } => ApiError::invalid(e.to_string()).on("run"),
        PickError::NotReady(m) => ApiError::conflict(m),
        PickError::Store(s) => s.into(),
        PickError::Forge(m) => ApiError::new(StatusCode::BAD_GATEWAY, "forge_failed", m),
    })?;
    Ok(Json(PickView {
        group: picked.group,
        run: picked.run,
        pr_url: picked.pr_url,
        done: picked.done,
    }))
}
