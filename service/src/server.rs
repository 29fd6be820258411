//! The HTTP/1.1 accept loop. `axum::serve` cannot set hyper's header-read
//! timeout, so a client that opens connections and never finishes its
//! request head (slowloris) would hold a task and a socket forever. Here
//! every connection must deliver each request head within
//! [`ClientTimeouts::header_read`] — which also closes keep-alive
//! connections idle for that long — and shutdown drains in-flight requests
//! for at most [`DRAIN_TIMEOUT`].

use std::{future::Future, io, pin::pin, time::Duration};

use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

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
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(30),
            body_read: Duration::from_secs(10),
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
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.client_timeouts.header_read);
    let service = TowerToHyperService::new(routes::router(state));
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
