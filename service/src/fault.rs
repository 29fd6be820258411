//! Fault injection for alert drills (only with `--fault-injection`):
//! `X-Fault-Delay-Ms: N` (≤ 10000) delays the response and
//! `X-Fault-Status: 5xx` makes the matched route answer that status.
//! Without the flag the headers are ignored.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::AppError, AppState};

pub const STATUS_HEADER: &str = "x-fault-status";
pub const DELAY_HEADER: &str = "x-fault-delay-ms";
/// Longest delay a client may ask for.
pub const MAX_DELAY_MS: u64 = 10_000;

/// The faults one request asks for.
#[derive(Debug, Default, PartialEq)]
struct Fault {
    status: Option<StatusCode>,
    delay: Option<Duration>,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AppError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| AppError::InvalidHeader(format!("{name} is not ASCII")))
        })
        .transpose()
}

fn parse_fault(headers: &HeaderMap) -> Result<Fault, AppError> {
    let status = header_str(headers, STATUS_HEADER)?
        .map(|text| {
            text.trim()
                .parse::<u16>()
                .ok()
                .filter(|code| (500..=599).contains(code))
                .and_then(|code| StatusCode::from_u16(code).ok())
                .ok_or_else(|| {
                    AppError::InvalidHeader(format!(
                        "{STATUS_HEADER} must be 500..=599, got {text:?}"
                    ))
                })
        })
        .transpose()?;
    let delay = header_str(headers, DELAY_HEADER)?
        .map(|text| {
            text.trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms <= MAX_DELAY_MS)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    AppError::InvalidHeader(format!(
                        "{DELAY_HEADER} must be 0..={MAX_DELAY_MS}, got {text:?}"
                    ))
                })
        })
        .transpose()?;
    Ok(Fault { status, delay })
}

/// Route layer applying the requested delay, then the requested status.
pub async fn inject(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.fault_injection {
        return next.run(request).await;
    }
    let fault = match parse_fault(request.headers()) {
        Ok(fault) => fault,
        Err(err) => return err.into_response(),
    };
    if let Some(delay) = fault.delay {
        tokio::time::sleep(delay).await;
    }
    match fault.status {
        Some(status) => AppError::InjectedFault(status).into_response(),
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn parses_valid_faults() {
        let fault =
            parse_fault(&headers(&[(STATUS_HEADER, "503"), (DELAY_HEADER, "250")])).unwrap();
        assert_eq!(fault.status, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(fault.delay, Some(Duration::from_millis(250)));
        assert_eq!(parse_fault(&HeaderMap::new()).unwrap(), Fault::default());
    }

    #[test]
    fn rejects_out_of_range_faults() {
        for (name, value) in [
            (STATUS_HEADER, "404"),
            (STATUS_HEADER, "600"),
            (STATUS_HEADER, "abc"),
            (DELAY_HEADER, "10001"),
            (DELAY_HEADER, "-1"),
        ] {
            let err = parse_fault(&headers(&[(name, value)])).unwrap_err();
            assert_eq!(err.code(), "invalid_header", "{name}: {value}");
        }
    }
}
