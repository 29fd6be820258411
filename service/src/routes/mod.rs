//! The router: routes of SPEC §4, JSON fallbacks for unknown routes and
//! wrong methods, and the middleware stack: metrics outermost (so every
//! request is counted, abandoned and panicking ones included), then error
//! logging, panic containment, body buffering (a slow upload holds no
//! in-flight permit), load shedding, fault injection, and the handler.

mod items;
mod meta;

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    middleware::{from_fn, from_fn_with_state},
    routing::{get, post},
    Router,
};

use crate::{
    catch_panic, error::AppError, extract, fault, log_limit, metrics, shed, AppState,
    MAX_BODY_BYTES,
};

/// Builds the complete application.
pub fn router(state: AppState) -> Router {
    let metrics = Arc::clone(&state.metrics);
    Router::new()
        .route("/", get(meta::root))
        .route("/items", post(items::create).get(items::list))
        .route("/items/{key}", get(items::fetch).delete(items::remove))
        .route("/metrics", get(meta::metrics))
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(from_fn_with_state(state.clone(), fault::inject))
        .route_layer(from_fn_with_state(state.clone(), shed::limit_in_flight))
        .route_layer(from_fn_with_state(state.clone(), extract::buffer_body))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(catch_panic::catch_panic))
        .layer(from_fn_with_state(
            Arc::clone(&state.log_limiter),
            log_limit::log_errors,
        ))
        .layer(from_fn_with_state(metrics, metrics::track_metrics))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
