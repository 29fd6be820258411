//! Live counters of one running phase, published by its executor for
//! loadgen's own metrics (`telemetry`): how many arrivals the open-loop
//! timeline scheduled, how many requests were sent, how many VUs run.
//! Samples only tell the aggregator about *finished* requests; these
//! counters let it show what is in flight. Relaxed atomics, no locks:
//! the scheduler is their only writer except `sent` in closed loop (one
//! uncontended-in-practice add per request).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct PhaseLive {
    scheduled: AtomicU64,
    sent: AtomicU64,
    vus: AtomicU32,
}

impl PhaseLive {
    /// An open-loop arrival came due (sent or dropped).
    pub fn scheduled_one(&self) {
        self.scheduled.fetch_add(1, Ordering::Relaxed);
    }

    /// A request left (its sample follows when it finishes).
    pub fn sent_one(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The closed-loop controller's current VU target.
    pub fn set_vus(&self, vus: u32) {
        self.vus.store(vus, Ordering::Relaxed);
    }

    pub fn scheduled(&self) -> u64 {
        self.scheduled.load(Ordering::Relaxed)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn vus(&self) -> u32 {
        self.vus.load(Ordering::Relaxed)
    }
}
