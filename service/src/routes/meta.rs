//! Service identity, health, readiness and the metrics endpoint.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use crate::{error::AppError, AppState, VERSION};

/// `GET /`: who is answering.
pub async fn root() -> Json<Value> {
    Json(json!({ "service": "items-service", "version": VERSION }))
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: Redis answers `PING` within the timeout (one PING shared
/// by concurrent probes).
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    state
        .readiness
        .check(&state.store)
        .await
        .map_err(AppError::NotReady)?;
    Ok(Json(json!({ "status": "ready" })))
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let (content_type, text) = state
        .metrics
        .render()
        .map_err(|err| AppError::Internal(err.into()))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response())
}
