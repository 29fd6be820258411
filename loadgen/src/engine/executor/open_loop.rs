//! The open-loop driver: request *i* is due at `timeline.offset(i)` after
//! the phase starts, whatever happened to earlier requests. Latency is
//! measured from that due time, so a slow server cannot hide its slowness
//! by slowing the client down (coordinated omission). When
//! `max_in_flight` requests are already outstanding, a due request is
//! counted as dropped — never queued and sent late. A shard sends only its
//! stripe of the arrivals (see [`crate::engine::shard`]).

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::Semaphore,
    time::{sleep_until, Instant},
};

use rand::rngs::StdRng;

use super::{stream_rng, PhaseContext};
use crate::{
    engine::client::{send_with, ConnectionPool},
    engine::request::{PlannedRequest, RequestGen},
    engine::sample::{Event, Sample},
};

/// When each request of an open-loop phase is due.
pub trait Timeline: Send {
    /// Offset of request `i` from the phase start; `None` past the end.
    fn offset(&self, i: u64) -> Option<Duration>;
}

/// One arrival of the timeline, with the request it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Index in the single-process timeline.
    pub index: u64,
    pub offset: Duration,
    pub request: PlannedRequest,
}

/// The arrivals of `timeline` that belong to the generator's shard, in
/// order. Requests are drawn before any drop decision and the other shards'
/// arrivals are drawn too (not built), so the sequence depends on the seed
/// only and every arrival carries the request a single process would send.
pub fn arrivals<'a>(
    timeline: impl Timeline + 'a,
    requests: &'a RequestGen,
    mut rng: StdRng,
) -> impl Iterator<Item = Arrival> + 'a {
    let shard = requests.shard();
    (0..)
        .map_while(move |index| timeline.offset(index).map(|offset| (index, offset)))
        .filter_map(move |(index, offset)| {
            if shard.owns(index) {
                let request = requests.next(&mut rng);
                Some(Arrival {
                    index,
                    offset,
                    request,
                })
            } else {
                requests.skip(&mut rng);
                None
            }
        })
}

/// Tokio's timer has millisecond resolution and rounds up, which alone
/// would make every send ~1 ms late; the last stretch is spent yielding.
const SPIN_WINDOW: Duration = Duration::from_micros(1500);

/// Waits until `due`; `false` when cancelled first.
async fn wait_until(due: Instant, cancel: &tokio_util::sync::CancellationToken) -> bool {
    if let Some(coarse) = due
        .checked_sub(SPIN_WINDOW)
        .filter(|at| *at > Instant::now())
    {
        tokio::select! {
            () = sleep_until(coarse) => {}
            () = cancel.cancelled() => return false,
        }
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
    !cancel.is_cancelled()
}

/// Runs this shard's arrivals of the timeline; returns how many it scheduled.
pub async fn run(ctx: &PhaseContext, timeline: impl Timeline) -> u64 {
    // A shard's part of `max_in_flight`, so the union drops like one process.
    let max_in_flight = ctx
        .requests
        .shard()
        .concurrency(ctx.phase.max_in_flight as u64) as usize;
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let pool = Arc::new(ConnectionPool::default());
    let start = Instant::now();
    let mut scheduled = 0;
    for Arrival {
        offset,
        request: planned,
        ..
    } in arrivals(timeline, &ctx.requests, stream_rng(ctx.seed, ctx.index, 0))
    {
        let due = start + offset;
        if !wait_until(due, &ctx.cancel).await {
            break;
        }
        scheduled += 1;
        ctx.live.scheduled_one();
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            let dropped = Event::Dropped {
                phase: ctx.index,
                op: planned.op,
            };
            let _ = ctx.events.send(dropped).await;
            continue;
        };
        ctx.live.sent_one();
        let (pool, target, events, cancel) = (
            Arc::clone(&pool),
            Arc::clone(&ctx.target),
            ctx.events.clone(),
            ctx.cancel.clone(),
        );
        let (phase, timeout) = (ctx.index, ctx.timeout);
        tokio::spawn(async move {
            let mut slot = pool.take();
            let sent = Instant::now();
            let outcome = tokio::select! {
                outcome = send_with(&mut slot, &target, &planned, timeout) => outcome,
                () = cancel.cancelled() => return,
            };
            let done = Instant::now();
            pool.give_back(slot);
            drop(permit);
            let sample = Sample {
                phase,
                op: planned.op,
                outcome,
                expected_status: planned.expected_status,
                latency: done - due,
                service_time: done - sent,
                send_lag: Some(sent.saturating_duration_since(due)),
            };
            let _ = events.send(Event::Sample(sample)).await;
        });
    }
    // Wait for the requests still in flight (each is bounded by the timeout).
    tokio::select! {
        _ = permits.acquire_many(max_in_flight as u32) => {}
        () = ctx.cancel.cancelled() => {}
    }
    scheduled
}
