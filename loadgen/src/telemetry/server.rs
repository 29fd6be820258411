//! Serves `GET /metrics` for the length of a run. Bound before anything
//! is sent, so a busy port is an error (exit 2) before the load starts,
//! not a silent run without metrics.

use std::{io, net::SocketAddr};

use axum::{http::header, routing::get, Router};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::Telemetry;

/// The port could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve loadgen metrics on {addr}: {error}{hint}")]
pub struct BindError {
    addr: SocketAddr,
    /// Not `source`: the message already says it, once.
    error: io::Error,
    hint: &'static str,
}

/// The running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    telemetry: Telemetry,
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `telemetry` until dropped.
    pub async fn start(telemetry: Telemetry, addr: SocketAddr) -> Result<Self, BindError> {
        let listener = TcpListener::bind(addr).await.map_err(|error| BindError {
            addr,
            hint: if error.kind() == io::ErrorKind::AddrInUse {
                " (another loadgen run? pass --metrics-listen with a free address, or --metrics-listen off)"
            } else {
                ""
            },
            error,
        })?;
        let addr = listener.local_addr().map_err(|error| BindError {
            addr,
            error,
            hint: "",
        })?;
        let stop = CancellationToken::new();
        let served = telemetry.clone();
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let telemetry = served.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                        telemetry.render(),
                    )
                }
            }),
        );
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        Ok(Self {
            telemetry,
            addr,
            stop,
            task,
        })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}
