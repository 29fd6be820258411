//! Contains handler panics. Without this layer a panic unwinds through
//! hyper, which resets the connection: the client sees no status and the
//! metrics count nothing. Here the panic becomes a 500 `internal` JSON
//! response that `track_metrics` counts like any other. The panic itself is
//! reported by the process's panic hook (one line, see `main.rs`), so it is
//! not logged a second time here.

use std::{
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
};

use axum::{extract::Request, middleware::Next, response::IntoResponse, response::Response};

use crate::error::AppError;

/// Polls `inner`, turning a panic into `Err(())`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // The future is dropped right after a panic, never polled again, so
        // no broken invariant of it can be observed.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_payload) => Poll::Ready(Err(())),
        }
    }
}

/// Middleware answering 500 `internal` when the handler panics.
pub async fn catch_panic(request: Request, next: Next) -> Response {
    match CatchUnwind(Box::pin(next.run(request))).await {
        Ok(response) => response,
        Err(()) => AppError::Panicked.into_response(),
    }
}
