//! Load shedding: at most `--max-in-flight` requests are served at once;
//! the rest get 503 `overloaded` immediately instead of queueing without
//! bound. Health and metrics routes are exempt so that monitoring keeps
//! working while the service sheds load.

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::AppError, AppState};

const EXEMPT: &[&str] = &["/metrics", "/healthz", "/readyz"];

/// Route layer that takes a permit for the duration of the request.
pub async fn limit_in_flight(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let exempt = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|path| EXEMPT.contains(&path.as_str()));
    if exempt {
        return next.run(request).await;
    }
    match state.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => AppError::Overloaded.into_response(),
    }
}
