//! Rate-limited warnings. During an outage every request fails the same
//! way; logging each one would turn a Redis blip into megabytes of
//! identical lines (and, with backtraces, hundreds of lines per request).
//! Errors are therefore logged at most once per kind per [`WINDOW`], and the
//! next line says how many were suppressed; when failures stop, a periodic
//! [`LogLimiter::flush_periodically`] writes the last window's count (so the
//! end of a burst is never lost). Handlers do not log: an
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
    /// The last suppressed report, for the line that flushes the count.
    last: Option<ErrorReport>,
}

/// A suppressed count due to be written: no line of its kind was admitted
/// for a whole window since they were suppressed.
#[derive(Debug, PartialEq, Eq)]
pub struct Flush {
    pub kind: &'static str,
    pub suppressed: u64,
    pub cause: String,
    pub is_error: bool,
}

/// Decides which repeated lines to write.
#[derive(Debug, Default)]
pub struct LogLimiter {
    slots: Mutex<HashMap<&'static str, Slot>>,
}

impl LogLimiter {
    /// `Some(n)` when a line of `kind` may be written at `now`, `n` being
    /// how many were suppressed since the last one; `None` to suppress it.
    pub fn admit(&self, report: &ErrorReport, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get_mut(report.kind) {
            Some(slot) if now.duration_since(slot.logged_at) < WINDOW => {
                slot.suppressed += 1;
                slot.last = Some(report.clone());
                None
            }
            Some(slot) => {
                let suppressed = std::mem::take(&mut slot.suppressed);
                slot.last = None;
                slot.logged_at = now;
                Some(suppressed)
            }
            None => {
                slots.insert(
                    report.kind,
                    Slot {
                        logged_at: now,
                        suppressed: 0,
                        last: None,
                    },
                );
                Some(0)
            }
        }
    }

    /// Takes the suppressed counts whose window has passed at `now`; each
    /// flush counts as that kind's line of the window.
    pub fn flush_due(&self, now: Instant) -> Vec<Flush> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        for (kind, slot) in slots.iter_mut() {
            if slot.suppressed == 0 || now.duration_since(slot.logged_at) < WINDOW {
                continue;
            }
            let last = slot.last.take();
            due.push(Flush {
                kind,
                suppressed: std::mem::take(&mut slot.suppressed),
                cause: last.as_ref().map(|r| r.cause.clone()).unwrap_or_default(),
                is_error: last.is_some_and(|r| r.is_error),
            });
            slot.logged_at = now;
        }
        due
    }

    /// Writes the suppressed counts of quiet kinds, forever (a few times
    /// per window); spawned beside the server, dropped with it.
    pub async fn flush_periodically(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(WINDOW / 4);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for flush in self.flush_due(Instant::now()) {
                let Flush {
                    kind,
                    suppressed,
                    cause,
                    is_error,
                } = flush;
                if is_error {
                    tracing::error!(kind, suppressed, %cause, "repeated failures suppressed");
                } else {
                    tracing::warn!(kind, suppressed, %cause, "repeated failures suppressed");
                }
            }
        }
    }

    /// Logs `report` unless a line of its kind was written within the window.
    pub fn log(&self, report: &ErrorReport) {
        let Some(suppressed) = self.admit(report, Instant::now()) else {
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

    fn report(kind: &'static str, cause: &str) -> ErrorReport {
        ErrorReport {
            kind,
            cause: cause.into(),
            is_error: false,
        }
    }

    #[test]
    fn one_line_per_kind_per_window_with_the_suppressed_count() {
        let limiter = LogLimiter::default();
        let (a, b) = (report("a", "x"), report("b", "y"));
        let start = Instant::now();
        assert_eq!(limiter.admit(&a, start), Some(0));
        for ms in [1, 10, 999] {
            assert_eq!(limiter.admit(&a, start + Duration::from_millis(ms)), None);
        }
        // Another kind has its own window.
        assert_eq!(limiter.admit(&b, start), Some(0));
        assert_eq!(limiter.admit(&a, start + WINDOW), Some(3));
        assert_eq!(limiter.admit(&a, start + WINDOW * 2), Some(0));
    }

    #[test]
    fn the_last_count_is_flushed_once_failures_stop() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.admit(&report("a", "first"), start), Some(0));
        for ms in [1, 2] {
            let at = start + Duration::from_millis(ms);
            assert_eq!(limiter.admit(&report("a", "later"), at), None);
        }
        assert!(
            limiter.flush_due(start + WINDOW / 2).is_empty(),
            "too early"
        );
        assert_eq!(
            limiter.flush_due(start + WINDOW),
            [Flush {
                kind: "a",
                suppressed: 2,
                cause: "later".into(),
                is_error: false,
            }]
        );
        assert!(
            limiter.flush_due(start + WINDOW * 3).is_empty(),
            "flushed twice"
        );
        // The flush was the window's line: the next failure waits its turn.
        let soon = start + WINDOW + Duration::from_millis(1);
        assert_eq!(limiter.admit(&report("a", "again"), soon), None);
        assert_eq!(
            limiter.admit(&report("a", "again"), start + WINDOW * 2),
            Some(1)
        );
    }
}
