//! The closed-loop driver: virtual users, each with its own connection and
//! RNG, send a request, wait for the response, think, repeat. A controller
//! adds or retires VUs every 50 ms to follow the executor's profile; a
//! retired VU finishes its current request first. A shard runs only its
//! share of the VUs (see [`crate::engine::shard`]); with none it keeps time.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};

use super::{stream_rng, PhaseContext};
use crate::{
    engine::client::send_with,
    engine::sample::{Event, Sample},
};

/// How many VUs should be active at a point of the phase.
pub trait VuProfile {
    fn vus_at(&self, elapsed: Duration) -> u32;
}

const CONTROL_INTERVAL: Duration = Duration::from_millis(50);

pub async fn run(
    ctx: &PhaseContext,
    profile: impl VuProfile,
    duration: Duration,
    think_time: Duration,
) {
    let start = Instant::now();
    let end = start + duration;
    let shard = ctx.requests.shard();
    let wanted = Arc::new(AtomicU32::new(0));
    let mut vus: Vec<Option<JoinHandle<()>>> = Vec::new();
    loop {
        let now = Instant::now();
        if now >= end || ctx.cancel.is_cancelled() {
            break;
        }
        // This shard's VUs of the profile's (global VU g is shard g mod N's).
        let target = shard.share(u64::from(profile.vus_at(now - start))) as u32;
        wanted.store(target, Ordering::Relaxed);
        ctx.live.set_vus(target);
        for index in 0..target as usize {
            if vus.len() <= index {
                vus.push(None);
            }
            if vus[index].as_ref().is_none_or(JoinHandle::is_finished) {
                vus[index] = Some(tokio::spawn(virtual_user(
                    ctx.clone(),
                    index,
                    Arc::clone(&wanted),
                    end,
                    think_time,
                )));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(CONTROL_INTERVAL.min(end - now)) => {}
            () = ctx.cancel.cancelled() => break,
        }
    }
    for handle in vus.into_iter().flatten() {
        let _ = handle.await;
    }
    ctx.live.set_vus(0);
}

async fn virtual_user(
    ctx: PhaseContext,
    index: usize,
    wanted: Arc<AtomicU32>,
    end: Instant,
    think_time: Duration,
) {
    // The global VU's stream: a VU sends what it would in a single process.
    let global = ctx.requests.shard().global(index as u64);
    let mut rng = stream_rng(ctx.seed, ctx.index, global + 1);
    let mut connection = None;
    while Instant::now() < end && (index as u32) < wanted.load(Ordering::Relaxed) {
        let planned = ctx.requests.next(&mut rng);
        let sent = Instant::now();
        ctx.live.sent_one();
        let outcome = tokio::select! {
            outcome = send_with(&mut connection, &ctx.target, &planned, ctx.timeout) => outcome,
            () = ctx.cancel.cancelled() => return,
        };
        let elapsed = sent.elapsed();
        let sample = Sample {
            phase: ctx.index,
            op: planned.op,
            outcome,
            expected_status: planned.expected_status,
            latency: elapsed,
            service_time: elapsed,
            send_lag: None,
        };
        if ctx.events.send(Event::Sample(sample)).await.is_err() {
            return;
        }
        if !think_time.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(think_time) => {}
                () = ctx.cancel.cancelled() => return,
            }
        }
    }
}
