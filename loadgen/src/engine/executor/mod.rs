//! Executors turn a phase into requests. Open-loop executors
//! (`constant-arrival-rate`, `ramping-arrival-rate`) send on a timeline that
//! ignores responses; closed-loop executors (`constant-vus`, `ramping-vus`)
//! run virtual users that wait for each response. Each executor module only
//! describes its timeline or VU profile; `open_loop` and `closed_loop` drive
//! them.

mod closed_loop;
mod constant_arrival_rate;
mod constant_vus;
mod open_loop;
mod ramping_arrival_rate;
mod ramping_vus;

use std::{sync::Arc, time::Duration};

use rand::{rngs::StdRng, SeedableRng};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use constant_arrival_rate::ConstantArrivalRate;
pub use open_loop::{arrivals, Arrival, Timeline};
pub use ramping_arrival_rate::RampingArrivalRate;

use crate::{
    engine::client::Target,
    engine::live::PhaseLive,
    engine::request::RequestGen,
    engine::sample::Event,
    scenario::plan::{Executor, Phase},
};

/// Everything a phase needs to run.
#[derive(Clone)]
pub struct PhaseContext {
    pub index: usize,
    pub phase: Phase,
    pub target: Arc<Target>,
    pub requests: RequestGen,
    pub seed: u64,
    pub timeout: Duration,
    pub events: mpsc::Sender<Event>,
    pub cancel: CancellationToken,
    /// Counters for loadgen's own metrics; a fresh one per phase.
    pub live: Arc<PhaseLive>,
}

/// A deterministic RNG for one stream (the open-loop scheduler, or one VU)
/// of one phase: same seed → same requests.
pub fn stream_rng(seed: u64, phase: usize, stream: u64) -> StdRng {
    // SplitMix64 finaliser over the three inputs, so nearby seeds diverge.
    let mut z = seed
        ^ (phase as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Runs one phase to its end (or until cancelled), reporting to the aggregator.
pub async fn run_phase(ctx: PhaseContext) {
    let _ = ctx
        .events
        .send(Event::PhaseStarted {
            phase: ctx.index,
            live: Arc::clone(&ctx.live),
        })
        .await;
    let scheduled = match ctx.phase.executor.clone() {
        Executor::ConstantArrivalRate { rate, duration } => {
            Some(open_loop::run(&ctx, ConstantArrivalRate { rate, duration }).await)
        }
        Executor::RampingArrivalRate { start_rate, stages } => {
            Some(open_loop::run(&ctx, RampingArrivalRate::new(start_rate, &stages)).await)
        }
        Executor::ConstantVus {
            vus,
            duration,
            think_time,
        } => {
            closed_loop::run(
                &ctx,
                constant_vus::ConstantVus { vus },
                duration,
                think_time,
            )
            .await;
            None
        }
        Executor::RampingVus {
            start_vus,
            stages,
            think_time,
        } => {
            let profile = ramping_vus::RampingVus::new(start_vus, &stages);
            let duration = ctx.phase.executor.duration();
            closed_loop::run(&ctx, profile, duration, think_time).await;
            None
        }
    };
    let _ = ctx
        .events
        .send(Event::PhaseEnded {
            phase: ctx.index,
            scheduled,
        })
        .await;
}
