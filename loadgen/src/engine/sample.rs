//! What executors send to the aggregator: one event per completed or
//! dropped request, plus phase boundaries.

use std::{sync::Arc, time::Duration};

use crate::{engine::client::TransportError, engine::live::PhaseLive, scenario::plan::OpKind};

/// One finished request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub phase: usize,
    pub op: OpKind,
    pub outcome: Result<u16, TransportError>,
    pub expected_status: u16,
    /// From the scheduled send time (open loop) or the send (closed loop)
    /// to the end of the response: what a user waiting for it experienced.
    pub latency: Duration,
    /// From the actual send to the end of the response.
    pub service_time: Duration,
    /// Open loop only: how late the request was sent versus its schedule.
    pub send_lag: Option<Duration>,
}

impl Sample {
    /// An error is anything but the operation's expected status.
    pub fn is_error(&self) -> bool {
        self.outcome != Ok(self.expected_status)
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    PhaseStarted {
        phase: usize,
        /// The executor's live counters for this phase (telemetry).
        live: Arc<PhaseLive>,
    },
    Sample(Sample),
    /// An open-loop request that could not start on time (in-flight cap).
    Dropped {
        phase: usize,
        op: OpKind,
    },
    /// `scheduled` is the number of requests the open-loop timeline planned.
    PhaseEnded {
        phase: usize,
        scheduled: Option<u64>,
    },
}
