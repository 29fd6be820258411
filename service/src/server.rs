//! The HTTP/1.1 accept loop. `axum::serve` cannot set hyper's header-read
//! timeout, so a client that opens connections and never finishes its
//! request head (slowloris) would hold a task and a socket forever. Here
//! every connection must deliver each request head within
//! [`ClientTimeouts::header_read`] — which also closes keep-alive
//! connections idle for that long — and shutdown drains in-flight requests
//! for at most [`DRAIN_TIMEOUT`].

use std::{
    future::Future,
    io,
    pin::{pin, Pin},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    time::Sleep,
};

use crate::{routes, AppState};

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send its request. Bounds what a slow or
/// stalled client can hold: a task, a socket, an in-flight permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// Until the request head is complete, counted from the end of the
    /// previous response on a keep-alive connection (so it is also the idle
    /// keep-alive timeout). Expiry closes the connection.
    pub header_read: Duration,
    /// Reading the whole request body; expiry answers 408 `request_timeout`.
    pub body_read: Duration,
    /// Longest time a response may make no write progress (a client that
    /// stopped reading); expiry closes the connection.
    pub write_stall: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(30),
            body_read: Duration::from_secs(10),
            write_stall: Duration::from_secs(30),
        }
    }
}

/// Serves on `listener` until `shutdown` completes, then stops accepting and
/// gives in-flight requests up to [`DRAIN_TIMEOUT`] to finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Writes the suppressed-log counts of bursts that ended; stopped with
    // the server.
    let _flusher = AbortOnDrop(tokio::spawn(
        Arc::clone(&state.log_limiter).flush_periodically(),
    ));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.client_timeouts.header_read);
    let service = TowerToHyperService::new(routes::router(state.clone()));
    let connections = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    back_off_after_accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {err}");
        }
        let stream = WriteStallTimeout::new(stream, state.client_timeouts.write_stall);
        let connection = http.serve_connection(TokioIo::new(stream), service.clone());
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection ended: {err}");
            }
        });
    }
    drop(listener);
    tracing::info!("shutdown signal received; draining in-flight requests");
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("drain deadline of {DRAIN_TIMEOUT:?} passed; abandoning remaining requests");
        }
    }
    Ok(())
}

/// Aborts a background task when the server stops (or its future is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Errors of one connection (the peer gave up before `accept`) are skipped;
/// others, such as running out of file descriptors, would spin the loop, so
/// they are logged and followed by a pause.
async fn back_off_after_accept_error(err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed: {err}; pausing for 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection whose writes fail with `TimedOut` once they have made no
/// progress for `limit`; hyper then closes the connection.
struct WriteStallTimeout<S> {
    inner: S,
    limit: Duration,
    /// Running while a write is blocked on a full socket buffer.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteStallTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Maps the inner poll result: progress disarms the timer, `Pending`
    /// arms it, and an expired timer turns `Pending` into an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("client read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
