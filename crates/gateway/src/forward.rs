//! The gateway's HTTP handler.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;

use crate::Gateway;

pub(crate) fn router(gateway: Arc<Gateway>) -> Router {
    let _ = &gateway;
    Router::new().fallback(|| async { StatusCode::NOT_IMPLEMENTED })
}
