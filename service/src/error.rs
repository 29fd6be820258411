//! One error type for every failure a handler can report. Each variant maps
//! to the status and stable `error` code of SPEC §4; internal causes are
//! logged here and never sent to the client.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

use crate::{
    log_limit::ErrorReport,
    store::{ErrorKind, StoreError},
};

/// Every error response the service can produce.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    InvalidKey(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidHeader(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body not received within {0:?}")]
    RequestTimeout(std::time::Duration),
    /// The client closed the connection in the middle of its request body.
    /// Nobody reads this response; its status makes the request count as
    /// `499`, like any other request the client abandoned.
    #[error("client closed the connection before sending the whole body")]
    ClientClosed,
    #[error("redis is unavailable")]
    RedisUnavailable(#[source] StoreError),
    /// The readiness PING failed (the cause, shared by coalesced probes).
    #[error("redis is unavailable")]
    NotReady(String),
    #[error("too many requests in flight; retry shortly")]
    Overloaded,
    #[error("fault injected by X-Fault-Status")]
    InjectedFault(StatusCode),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// A handler panicked (reported by the panic hook).
    #[error("internal error")]
    Panicked,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

impl AppError {
    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidKey(_)
            | Self::InvalidJson(_)
            | Self::InvalidBody(_)
            | Self::InvalidQuery(_)
            | Self::InvalidHeader(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::ClientClosed => client_closed_status(),
            Self::RedisUnavailable(_) | Self::NotReady(_) | Self::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::InjectedFault(status) => *status,
            Self::Internal(_) | Self::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code for the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::InvalidQuery(_) => "invalid_query",
            Self::InvalidHeader(_) => "invalid_header",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RequestTimeout(_) => "request_timeout",
            Self::ClientClosed => "client_closed",
            Self::RedisUnavailable(_) | Self::NotReady(_) => "redis_unavailable",
            Self::Overloaded => "overloaded",
            Self::InjectedFault(_) => "injected_fault",
            Self::Internal(_) | Self::Panicked => "internal",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        // Logged (rate-limited) by `log_limit::log_errors`.
        let report = match &self {
            Self::RedisUnavailable(cause) => Some(ErrorReport {
                kind: "redis_unavailable",
                cause: one_line(cause),
                is_error: false,
            }),
            Self::NotReady(cause) => Some(ErrorReport {
                kind: "redis_unavailable",
                cause: cause.clone(),
                is_error: false,
            }),
            Self::Internal(cause) => Some(ErrorReport {
                kind: "internal",
                cause: one_line(cause.as_ref()),
                is_error: true,
            }),
            _ => None,
        };
        let status = self.status();
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The rest of a stalled body may never come: do not wait for it
            // to reuse the connection.
            StatusCode::REQUEST_TIMEOUT => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        if let Some(report) = report {
            response.extensions_mut().insert(report);
        }
        response
    }
}

/// nginx's 499 "client closed request".
fn client_closed_status() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The cause chain on one line, without the repeats of messages that
/// already quote their source (and never a backtrace).
fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        // Data errors are not an outage: retrying will not help, and the
        // Redis panels must not be blamed for them.
        match err.kind() {
            ErrorKind::Data => Self::Internal(err.into()),
            ErrorKind::Timeout | ErrorKind::Io => Self::RedisUnavailable(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_sent() {
        let err = AppError::Internal(anyhow::anyhow!("secret detail"));
        assert_eq!(err.to_string(), "internal error");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_body_cut_off_by_the_client_is_a_499() {
        assert_eq!(AppError::ClientClosed.status().as_u16(), 499);
        assert_eq!(
            AppError::ClientClosed.status().as_str(),
            crate::metrics::CLIENT_CLOSED
        );
    }

    #[test]
    fn unavailable_errors_carry_retry_after() {
        let response = AppError::Overloaded.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
