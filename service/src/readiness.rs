//! `/readyz` without a PING per probe. A flood of readiness probes (a
//! misconfigured load balancer, a retry storm) must not become a flood of
//! Redis commands: concurrent probes share one PING. A probe that arrives
//! while a PING is in flight waits for it and takes its outcome, so an
//! answer is never older than the probe that receives it.

use std::sync::Arc;

use tokio::{sync::Mutex, time::Instant};

use crate::store::Store;

/// The last PING's outcome and when it finished.
#[derive(Debug, Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Readiness {
    /// Whether Redis answered a PING that finished after this call began;
    /// at most one PING is in flight whatever the number of callers.
    pub async fn check(&self, store: &Arc<dyn Store>) -> Result<(), String> {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((finished, outcome)) = last.as_ref() {
            if *finished >= arrived {
                return outcome.clone();
            }
        }
        let outcome = store.ping().await.map_err(|err| format!("{err:#}"));
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}
