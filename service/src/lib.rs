//! items-service: an HTTP cache of JSON items in Redis, instrumented with
//! Prometheus metrics. `main.rs` only parses flags and calls [`serve`];
//! tests build an [`AppState`] and call [`run`] with their own listener and
//! shutdown signal.

pub mod catch_panic;
pub mod config;
pub mod error;
pub mod extract;
pub mod fault;
pub mod key;
pub mod log_limit;
pub mod metrics;
pub mod readiness;
pub mod routes;
pub mod server;
pub mod shed;
pub mod store;
pub mod telemetry;
pub mod testing;

pub use server::{run, ClientTimeouts, DRAIN_TIMEOUT};

use std::{future::Future, sync::Arc};

use anyhow::Context;
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{config::Config, metrics::Metrics, store::Store};

/// Version reported by `GET /` and `app_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Request body limit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared, cheaply cloned state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub in_flight: Arc<Semaphore>,
    /// Request bodies being read (before `in_flight`), bounded alike.
    pub body_readers: Arc<Semaphore>,
    pub fault_injection: bool,
    pub client_timeouts: ClientTimeouts,
    pub log_limiter: Arc<log_limit::LogLimiter>,
    pub readiness: Arc<readiness::Readiness>,
}

impl AppState {
    /// State around `store`, with fresh metrics.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        max_in_flight: usize,
        fault_injection: bool,
    ) -> Self {
        Self {
            store,
            metrics,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            body_readers: Arc::new(Semaphore::new(max_in_flight)),
            fault_injection,
            client_timeouts: ClientTimeouts::default(),
            log_limiter: Arc::default(),
            readiness: Arc::default(),
        }
    }

    /// State backed by Redis as configured.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new(VERSION).context("registering metrics")?);
        let store = store::redis::RedisStore::new(
            &config.redis_url,
            config.key_prefix.clone(),
            config.redis_timeout,
            &metrics,
        )
        .context("creating the redis client")?;
        Ok(Self::new(
            Arc::new(store),
            metrics,
            config.max_in_flight,
            config.fault_injection,
        ))
    }
}

/// Binds the configured address and serves until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::from_config(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        redis = %config::redact_url(&config.redis_url),
        prefix = %config.key_prefix,
        max_in_flight = config.max_in_flight,
        fault_injection = config.fault_injection,
        "items-service started"
    );
    run(listener, state, shutdown).await?;
    tracing::info!("items-service stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
