//! A tiny Alertmanager webhook receiver, so `verify-alerts` can prove that
//! notifications are really delivered, not just present in Alertmanager.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Most notifications kept; older ones are dropped (bounded memory).
const MAX_DELIVERIES: usize = 10_000;

/// One alert of one notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub alertname: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Every label the notification carried (severity, family, ...).
    pub labels: std::collections::BTreeMap<String, String>,
    pub at: Instant,
}

#[derive(Deserialize)]
struct Notification {
    alerts: Vec<NotifiedAlert>,
}

#[derive(Deserialize)]
struct NotifiedAlert {
    status: String,
    labels: std::collections::BTreeMap<String, String>,
}

/// Notifications received so far.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<Delivery>>>);

impl Inbox {
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.0.lock().expect("inbox lock").clone()
    }
}

async fn receive(State(inbox): State<Inbox>, Json(notification): Json<Notification>) -> StatusCode {
    let now = Instant::now();
    let mut deliveries = inbox.0.lock().expect("inbox lock");
    for alert in notification.alerts {
        deliveries.push(Delivery {
            alertname: alert.labels.get("alertname").cloned().unwrap_or_default(),
            status: alert.status,
            labels: alert.labels,
            at: now,
        });
    }
    let excess = deliveries.len().saturating_sub(MAX_DELIVERIES);
    deliveries.drain(..excess);
    StatusCode::OK
}

/// Listens on `addr` (any path) until `stop` is cancelled.
pub async fn listen(addr: &str, stop: CancellationToken) -> anyhow::Result<(Inbox, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        anyhow::anyhow!("cannot listen for Alertmanager's webhook on {addr}: {err}")
    })?;
    let local = listener.local_addr()?;
    let inbox = Inbox::default();
    let app = Router::new()
        .fallback(post(receive))
        .with_state(inbox.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok((inbox, local))
}
