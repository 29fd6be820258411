//! Rate-limited warnings. During an outage every request fails the same
//! way; logging each one would turn a Redis blip into megabytes of
//! identical lines (and, with backtraces, hundreds of lines per request).
//! Errors are therefore logged at most once per kind per [`WINDOW`], and the
//! next line says how many were suppressed. Handlers do not log: an
//! [`AppError`](crate::error::AppError) response carries an [`ErrorReport`]
//! that the [`log_errors`] middleware logs through the limiter.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};

/// At most one line per kind per window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// What a failed response wants logged, attached to its extensions.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    /// Groups repeats, e.g. `redis_unavailable`.
    pub kind: &'static str,
    /// The internal cause, one line, never sent to the client.
    pub cause: String,
    /// `error` level (a bug or bad data) rather than `warn` (an outage).
    pub is_error: bool,
}

#[derive(Debug)]
struct Slot {
    logged_at: Instant,
    suppressed: u64,
}

/// Decides which repeated lines to write.
#[derive(Debug, Default)]
pub struct LogLimiter {
    slots: Mutex<HashMap<&'static str, Slot>>,
}

impl LogLimiter {
    /// `Some(n)` when a line of `kind` may be written at `now`, `n` being
    /// how many were suppressed since the last one; `None` to suppress it.
    pub fn admit(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get_mut(kind) {
            Some(slot) if now.duration_since(slot.logged_at) < WINDOW => {
                slot.suppressed += 1;
                None
            }
            Some(slot) => {
                let suppressed = std::mem::take(&mut slot.suppressed);
                slot.logged_at = now;
                Some(suppressed)
            }
            None => {
                slots.insert(
                    kind,
                    Slot {
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }

    /// Logs `report` unless a line of its kind was written within the window.
    pub fn log(&self, report: &ErrorReport) {
        let Some(suppressed) = self.admit(report.kind, Instant::now()) else {
            return;
        };
        if report.is_error {
            tracing::error!(kind = report.kind, suppressed, cause = %report.cause, "request failed");
        } else {
            tracing::warn!(kind = report.kind, suppressed, cause = %report.cause, "request failed");
        }
    }
}

/// Middleware logging the [`ErrorReport`] of each failed response.
pub async fn log_errors(
    State(limiter): State<Arc<LogLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(report) = response.extensions().get::<ErrorReport>() {
        limiter.log(report);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_window_with_the_suppressed_count() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.admit("a", start), Some(0));
        for ms in [1, 10, 999] {
            assert_eq!(limiter.admit("a", start + Duration::from_millis(ms)), None);
        }
        // Another kind has its own window.
        assert_eq!(limiter.admit("b", start), Some(0));
        assert_eq!(limiter.admit("a", start + WINDOW), Some(3));
        assert_eq!(limiter.admit("a", start + WINDOW * 2), Some(0));
    }
}
