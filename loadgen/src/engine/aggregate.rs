//! The one owner of all measurements. Executors send [`Event`]s; this task
//! folds them into HDR histograms (per operation, per phase, overall), a
//! per-second series, and the live progress. Memory does not grow with the
//! run length: histograms are fixed-size and the series is decimated once
//! it reaches [`MAX_SERIES_POINTS`].

mod snapshot;

pub use snapshot::{unix_ms, Hist, Measurements, Merging, SeriesSample};

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use crate::{
    engine::progress::Progress,
    engine::sample::{Event, Sample},
    report::{OpSummary, Percentiles, PhaseSummary, SeriesPoint, Summary},
    scenario::plan::{OpKind, Plan},
    telemetry::Recorder,
};

/// Longest series kept; beyond it, neighbouring points are merged.
pub const MAX_SERIES_POINTS: usize = 3600;
/// Latencies are recorded in microseconds up to one hour.
const HIGHEST_MICROS: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, HIGHEST_MICROS)
}

pub fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    let ms = |micros: u64| micros as f64 / 1000.0;
    if histogram.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p90_ms: ms(histogram.value_at_quantile(0.90)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
        mean_ms: histogram.mean() / 1000.0,
    }
}

/// Latency (and service time) histograms hold answered requests only: a
/// timeout's or a closed connection's "latency" is when loadgen gave up,
/// not how fast the target answered, and a run where nothing was answered
/// must have no percentiles at all (its latency checks FAIL "no data").
struct OpStats {
    /// Every sample, answered or not.
    count: u64,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: BTreeMap<&'static str, u64>,
    errors: u64,
}

impl OpStats {
    fn new() -> Self {
        Self {
            count: 0,
            latency: histogram(),
            service: histogram(),
            statuses: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
            errors: 0,
        }
    }
}

struct PhaseStats {
    latency: Histogram<u64>,
    completed: u64,
    errors: u64,
    dropped: u64,
    scheduled: Option<u64>,
    started: Option<Instant>,
    ended: Option<Instant>,
}

/// One second (or, after decimation, a few) of the run.
struct Bucket {
    requests: u64,
    errors: u64,
    /// Open-loop arrivals due in this second (sent or dropped).
    offered: u64,
    dropped: u64,
    statuses: BTreeMap<u16, u64>,
    transport_errors: BTreeMap<&'static str, u64>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
}

impl Bucket {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            offered: 0,
            dropped: 0,
            statuses: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
            latency: histogram(),
            service: histogram(),
        }
    }

    /// The finished point; the bucket is emptied for the next second
    /// (histograms reset in place, not reallocated).
    fn close(&mut self, t: u64, seconds: u64) -> SeriesPoint {
        let latency = percentiles(&self.latency);
        let service = percentiles(&self.service);
        let mut statuses: BTreeMap<String, u64> = std::mem::take(&mut self.statuses)
            .into_iter()
            .map(|(code, n)| (code.to_string(), n))
            .collect();
        statuses.extend(
            std::mem::take(&mut self.transport_errors)
                .into_iter()
                .map(|(kind, n)| (kind.to_owned(), n)),
        );
        let point = SeriesPoint {
            t,
            seconds,
            requests: self.requests,
            errors: self.errors,
            offered: self.offered,
            dropped: self.dropped,
            p50_ms: latency.p50_ms,
            p90_ms: latency.p90_ms,
            p99_ms: latency.p99_ms,
            service_p50_ms: service.p50_ms,
            service_p90_ms: service.p90_ms,
            service_p99_ms: service.p99_ms,
            statuses,
        };
        (self.requests, self.errors, self.offered, self.dropped) = (0, 0, 0, 0);
        self.latency.reset();
        self.service.reset();
        point
    }
}

pub struct Aggregator {
    started: Instant,
    ops: Vec<OpStats>,
    phases: Vec<PhaseStats>,
    /// Every sample, answered or not (`all_latency` holds answered ones).
    requests: u64,
    all_latency: Histogram<u64>,
    all_service: Histogram<u64>,
    send_lag: Histogram<u64>,
    series: Vec<SeriesPoint>,
    series_step: u64,
    current: Bucket,
    current_index: u64,
    current_phase: Option<usize>,
    progress: Progress,
    phase_durations: Vec<Duration>,
    /// Connect failures since the last response, and when they began.
    connect_failures_in_a_row: u64,
    failing_since: Option<Instant>,
    /// loadgen's own metrics, when they are served.
    telemetry: Option<Recorder>,
}

/// A target that refuses every connection for this long ends the run.
pub const REFUSED_GIVE_UP: Duration = Duration::from_secs(2);

impl Aggregator {
    pub fn new(plan: &Plan, progress: Progress) -> Self {
        Self {
            started: Instant::now(),
            ops: OpKind::ALL.iter().map(|_| OpStats::new()).collect(),
            phases: plan
                .phases
                .iter()
                .map(|_| PhaseStats {
                    latency: histogram(),
                    completed: 0,
                    errors: 0,
                    dropped: 0,
                    scheduled: None,
                    started: None,
                    ended: None,
                })
                .collect(),
            requests: 0,
            all_latency: histogram(),
            all_service: histogram(),
            send_lag: histogram(),
            series: Vec::new(),
            series_step: 1,
            current: Bucket::new(),
            current_index: 0,
            current_phase: None,
            progress,
            phase_durations: plan
                .phases
                .iter()
                .map(|phase| phase.executor.duration())
                .collect(),
            connect_failures_in_a_row: 0,
            failing_since: None,
            telemetry: None,
        }
    }

    /// Also feeds loadgen's own metrics from every event.
    pub fn with_telemetry(mut self, recorder: Option<Recorder>) -> Self {
        self.telemetry = recorder;
        self
    }

    pub fn record(&mut self, event: Event, names: &[String]) {
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.observe(&event);
        }
        match event {
            Event::PhaseStarted { phase, .. } => {
                self.phases[phase].started = Some(Instant::now());
                self.current_phase = Some(phase);
                let total = self.phase_durations[phase];
                self.progress
                    .start(&names[phase], total.as_millis() as u64, true);
                self.progress.update(total, 0.0, 0, Duration::ZERO);
            }
            Event::Sample(sample) => self.record_sample(&sample),
            Event::Dropped { phase, .. } => {
                self.roll_to(Instant::now());
                self.phases[phase].dropped += 1;
                self.current.dropped += 1;
                self.current.offered += 1;
            }
            Event::PhaseEnded { phase, scheduled } => {
                let stats = &mut self.phases[phase];
                stats.ended = Some(Instant::now());
                stats.scheduled = scheduled;
                self.tick();
                self.progress.finish();
                self.current_phase = None;
            }
        }
    }

    fn record_sample(&mut self, sample: &Sample) {
        self.roll_to(Instant::now());
        let latency = micros(sample.latency);
        let error = sample.is_error();
        let answered = sample.outcome.is_ok();
        let service_time = micros(sample.service_time);
        let op = &mut self.ops[sample.op.index()];
        op.count += 1;
        if answered {
            let _ = op.latency.record(latency);
            let _ = op.service.record(service_time);
        }
        match sample.outcome {
            Ok(status) => {
                *op.statuses.entry(status).or_default() += 1;
                *self.current.statuses.entry(status).or_default() += 1;
                self.connect_failures_in_a_row = 0;
                self.failing_since = None;
            }
            Err(kind) => {
                *op.transport_errors.entry(kind.name()).or_default() += 1;
                *self
                    .current
                    .transport_errors
                    .entry(kind.name())
                    .or_default() += 1;
                if kind == crate::engine::client::TransportError::Connect {
                    self.connect_failures_in_a_row += 1;
                    self.failing_since.get_or_insert_with(Instant::now);
                }
            }
        }
        op.errors += u64::from(error);
        self.requests += 1;
        if answered {
            let _ = self.all_latency.record(latency);
            let _ = self.all_service.record(service_time);
        }
        if let Some(lag) = sample.send_lag {
            let _ = self.send_lag.record(micros(lag));
            // Open loop: the arrival counts as offered when it was due.
            self.add_offered(Instant::now().checked_sub(sample.latency));
        }
        let phase = &mut self.phases[sample.phase];
        phase.completed += 1;
        phase.errors += u64::from(error);
        self.current.requests += 1;
        self.current.errors += u64::from(error);
        if answered {
            let _ = phase.latency.record(latency);
            let _ = self.current.latency.record(latency);
            let _ = self.current.service.record(service_time);
        }
    }

    /// Counts one open-loop arrival in the second it was due: usually a
    /// point already closed (the response came later), found by index.
    fn add_offered(&mut self, due: Option<Instant>) {
        let at = due.map_or(0, |due| {
            due.saturating_duration_since(self.started).as_secs()
        });
        let index = at / self.series_step;
        if index >= self.current_index {
            self.current.offered += 1;
        } else if let Some(point) = self
            .series
            .get_mut(index as usize)
            .filter(|point| point.t <= at && at < point.t + point.seconds)
        {
            point.offered += 1;
        }
    }

    /// Closes every series bucket that ended before `now`.
    fn roll_to(&mut self, now: Instant) {
        let index = now.duration_since(self.started).as_secs() / self.series_step;
        while self.current_index < index {
            let point = self
                .current
                .close(self.current_index * self.series_step, self.series_step);
            self.series.push(point);
            self.current_index += 1;
            if self.series.len() >= MAX_SERIES_POINTS {
                self.decimate();
                self.current_index /= 2;
            }
        }
    }

    /// Halves the series: neighbours merge, percentiles keep the worse of
    /// the two (they cannot be merged exactly; the conservative choice).
    fn decimate(&mut self) {
        self.series = self.series.chunks(2).map(SeriesPoint::merge).collect();
        self.series_step *= 2;
    }

    /// Periodic update of the progress display.
    pub fn tick(&mut self) {
        self.roll_to(Instant::now());
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.tick();
        }
        let Some(phase) = self.current_phase else {
            return;
        };
        let stats = &self.phases[phase];
        if let Some(started) = stats.started {
            let elapsed = started.elapsed().min(self.phase_durations[phase]);
            self.progress.set_position(elapsed.as_millis() as u64);
        }
        let (rate, p99) = match self.series.last() {
            Some(last) => (
                last.requests as f64 / last.seconds as f64,
                Duration::from_secs_f64(last.p99_ms / 1000.0),
            ),
            None => (0.0, Duration::ZERO),
        };
        self.progress
            .update(self.phase_durations[phase], rate, stats.errors, p99);
    }

    /// Why the run cannot go on: the target has refused every connection
    /// for [`REFUSED_GIVE_UP`] (no endless retries against a dead target).
    pub fn fatal(&self) -> Option<String> {
        let since = self.failing_since?;
        (self.connect_failures_in_a_row >= 10 && since.elapsed() >= REFUSED_GIVE_UP).then(|| {
            format!(
                "the target refused {} connections in a row for {:.1} s; giving up",
                self.connect_failures_in_a_row,
                since.elapsed().as_secs_f64()
            )
        })
    }

    /// Client-side count per (method, endpoint, status) for reconciliation.
    pub fn route_counts(&self) -> BTreeMap<(String, String, String), u64> {
        let mut counts = BTreeMap::new();
        for op in OpKind::ALL {
            let (method, endpoint) = op.route();
            for (status, count) in &self.ops[op.index()].statuses {
                *counts
                    .entry((method.to_owned(), endpoint.to_owned(), status.to_string()))
                    .or_default() += count;
            }
        }
        counts
    }

    /// Requests without an answer that the server may still have counted
    /// (timeouts and connections broken mid-request, not refused
    /// connections), per (method, endpoint).
    pub fn unanswered_by_route(&self) -> BTreeMap<(String, String), u64> {
        let mut counts = BTreeMap::new();
        for op in OpKind::ALL {
            let (method, endpoint) = op.route();
            let n = self.unanswered(op);
            if n > 0 {
                *counts
                    .entry((method.to_owned(), endpoint.to_owned()))
                    .or_default() += n;
            }
        }
        counts
    }

    /// Unanswered cache lookups (`get_hit`, `get_miss`): the only requests
    /// of `GET /items/{key}` that may have moved the cache counters
    /// (`fault` shares the route but never reads Redis).
    pub fn unanswered_lookups(&self) -> u64 {
        self.unanswered(OpKind::GetHit) + self.unanswered(OpKind::GetMiss)
    }

    /// Timeouts and broken connections of one operation.
    fn unanswered(&self, op: OpKind) -> u64 {
        let errors = &self.ops[op.index()].transport_errors;
        errors.get("timeout").copied().unwrap_or(0) + errors.get("io").copied().unwrap_or(0)
    }

    /// Requests that timed out client-side.
    pub fn timeouts(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| op.transport_errors.get("timeout").copied().unwrap_or(0))
            .sum()
    }

    /// The summary of everything recorded so far.
    pub fn summary(&mut self, plan: &Plan, interrupted: bool) -> Summary {
        self.roll_to(Instant::now() + Duration::from_secs(1));
        self.progress.finish();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let operations = OpKind::ALL
            .iter()
            .filter(|op| plan.mix[op.index()] > 0)
            .map(|op| {
                let stats = &self.ops[op.index()];
                let count = stats.count;
                OpSummary {
                    name: op.name().to_owned(),
                    count,
                    errors: stats.errors,
                    rate: count as f64 / elapsed,
                    latency: percentiles(&stats.latency),
                    service_time: percentiles(&stats.service),
                    statuses: stats
                        .statuses
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                    transport_errors: stats
                        .transport_errors
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), *v))
                        .collect(),
                }
            })
            .collect();
        let phases = plan
            .phases
            .iter()
            .zip(&self.phases)
            .map(|(phase, stats)| {
                let ran = match (stats.started, stats.ended) {
                    (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
                    (Some(start), None) => start.elapsed().as_secs_f64(),
                    _ => 0.0,
                };
                PhaseSummary {
                    name: phase.name.clone(),
                    offset_seconds: stats
                        .started
                        .map(|start| start.duration_since(self.started).as_secs_f64()),
                    executor: phase.executor.name().to_owned(),
                    planned_seconds: phase.executor.duration().as_secs_f64(),
                    seconds: ran,
                    scheduled: stats.scheduled,
                    completed: stats.completed,
                    errors: stats.errors,
                    dropped: stats.dropped,
                    achieved_rate: if ran > 0.0 {
                        stats.completed as f64 / ran
                    } else {
                        0.0
                    },
                    latency: percentiles(&stats.latency),
                }
            })
            .collect();
        let requests = self.requests;
        let errors: u64 = self.ops.iter().map(|op| op.errors).sum();
        Summary {
            requests,
            answered: self.all_latency.len(),
            errors,
            dropped: self.phases.iter().map(|phase| phase.dropped).sum(),
            error_ratio: if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            },
            seconds: elapsed,
            rate: requests as f64 / elapsed,
            latency: percentiles(&self.all_latency),
            service_time: percentiles(&self.all_service),
            send_lag: (!self.send_lag.is_empty()).then(|| percentiles(&self.send_lag)),
            operations,
            phases,
            series: self.series.clone(),
            interrupted,
        }
    }
}

/// Runs the aggregator until every sender is gone, updating progress
/// several times a second; cancels the run when [`Aggregator::fatal`].
pub async fn run(
    mut aggregator: Aggregator,
    mut events: mpsc::Receiver<Event>,
    names: Vec<String>,
    cancel: tokio_util::sync::CancellationToken,
) -> Aggregator {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => aggregator.record(event, &names),
                None => break,
            },
            _ = ticker.tick() => {
                aggregator.tick();
                if aggregator.fatal().is_some() {
                    cancel.cancel();
                }
            }
        }
    }
    // The last samples may follow their phase's end event: one more tick
    // publishes them to loadgen's metrics before the final scrape.
    aggregator.tick();
    aggregator
}
