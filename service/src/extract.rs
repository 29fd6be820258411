//! Extractors whose rejections use the service's JSON error shape instead of
//! axum's plain-text ones.

use axum::body::HttpBody as _;
use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, FromRequestParts, Path, Request, State},
    http::{header, request::Parts, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use std::sync::Arc;

use crate::{error::AppError, key::validate_key, AppState, MAX_BODY_BYTES};

/// A JSON request body: 415 without a JSON content type, 413 above the body
/// limit, 408 when it does not arrive within the body-read timeout,
/// `invalid_json` for malformed JSON and `invalid_body` for JSON of the wrong
/// shape (missing fields, wrong types, unknown fields).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        match content_type {
            Some(value) if is_json_content_type(value) => {}
            Some(value) => {
                return Err(AppError::UnsupportedMediaType(format!(
                    "content type {value:?} is not supported; send application/json"
                )))
            }
            None => {
                return Err(AppError::UnsupportedMediaType(
                    "missing content type; send application/json".into(),
                ))
            }
        }
        let body = read_body(request, state).await?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|err| match err.classify() {
                serde_json::error::Category::Data => AppError::InvalidBody(err.to_string()),
                _ => AppError::InvalidJson(err.to_string()),
            })
    }
}

/// Reads the whole body within the body-read timeout and the body limit.
async fn read_body(request: Request, state: &AppState) -> Result<Bytes, AppError> {
    let limit = state.client_timeouts.body_read;
    tokio::time::timeout(limit, Bytes::from_request(request, state))
        .await
        .map_err(|_elapsed| AppError::RequestTimeout(limit))?
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(MAX_BODY_BYTES),
            _ if client_went_away(&rejection) => AppError::ClientClosed,
            _ => AppError::InvalidBody(rejection.body_text()),
        })
}

/// Whether reading the body failed because the client closed or reset the
/// connection (not because what it sent was malformed).
fn client_went_away(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(err) = err.downcast_ref::<hyper::Error>() {
            if err.is_incomplete_message() || err.is_body_write_aborted() {
                return true;
            }
        }
        if let Some(err) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                err.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            ) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// Route layer, outside load shedding: buffers the (bounded) body before
/// the request takes an in-flight permit, so clients trickling uploads
/// cannot hold the permits that GETs need. Body reading has its own bound
/// (`--max-in-flight` bodies at once, so at most that many MiB buffered);
/// requests beyond it are shed with 503 `overloaded`. Requests without a
/// body skip it.
pub async fn buffer_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.size_hint().exact() == Some(0) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let Ok(_reading) = Arc::clone(&state.body_readers).try_acquire_owned() else {
        return AppError::Overloaded.into_response();
    };
    match read_body(Request::from_parts(parts.clone(), body), &state).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(err) => err.into_response(),
    }
}

/// The `{key}` path segment, percent-decoded and validated.
#[derive(Debug)]
pub struct ItemKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ItemKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(key) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| AppError::InvalidKey(rejection.body_text()))?;
        validate_key(&key).map_err(AppError::InvalidKey)?;
        Ok(Self(key))
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/jsonx"));
        assert!(!is_json_content_type(""));
    }
}
