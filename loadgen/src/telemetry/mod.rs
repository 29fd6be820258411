//! loadgen's own metrics (SPEC §10), served for Prometheus while a run
//! goes on so Grafana can show the client's side next to the server's:
//! what was offered, what completed with which status, how long it took
//! (from the scheduled time in open loop), what was dropped, what is in
//! flight, and when each phase ran (`loadgen_phase_active` drives the
//! dashboard's phase annotations).
//!
//! Every update happens in the aggregator task, which already receives
//! every sample: workers never touch these metrics, so the hot path gains
//! no shared state beyond the relaxed counters of
//! [`crate::engine::live::PhaseLive`]. [`Recorder`] keeps pre-resolved
//! *local* (unsynchronised) counters and histograms, so a sample costs no
//! label hashing and no atomic operation; they are flushed into the
//! registry on every aggregator tick (250 ms) and when a phase ends, before
//! the final scrape.
//!
//! Cardinality is bounded by the scenario: phases × operations ×
//! statuses (HTTP codes the target produced, `timeout`, `io`, `dropped`),
//! never by keys.
//!
//! [`server`] serves the registry over HTTP; [`scrape`] waits after the
//! run until Prometheus has scraped the final values.

pub mod scrape;
pub mod server;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use prometheus::{
    local::{LocalHistogram, LocalIntCounter},
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use crate::{
    engine::client::TransportError,
    engine::live::PhaseLive,
    engine::sample::{Event, Sample},
    scenario::plan::{Executor, OpKind, Plan},
};

/// Latency buckets in seconds: the same as the service's
/// `http_request_duration_seconds`, so client and server percentiles are
/// computed over the same bounds (a test compares the two lists).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Default of `--metrics-listen` (SPEC §10).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9465";

/// `--metrics-listen`: where to serve, or `None` for `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Listen(pub Option<SocketAddr>);

/// Parses `--metrics-listen`: `off`, or an `IP:PORT` or `HOST:PORT` to
/// listen on (a host name resolves now, IPv4 first: `localhost:9465`).
pub fn parse_listen(text: &str) -> Result<Listen, String> {
    use std::net::ToSocketAddrs;
    if text.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    if let Ok(addr) = text.parse() {
        return Ok(Listen(Some(addr)));
    }
    let usage = || {
        format!("`{text}` is neither `off` nor an IP:PORT or HOST:PORT address such as {DEFAULT_LISTEN}")
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(usage)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(usage());
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve `{host}` for --metrics-listen: {err}"))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(addrs.first())
        .map(|addr| Listen(Some(*addr)))
        .ok_or_else(|| format!("`{host}` has no address for --metrics-listen"))
}

/// An id that sorts by time and reads well as a Grafana tag: the UTC
/// start time plus four hex digits against runs started the same second.
pub fn run_id(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let salt = (since.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z-{salt:04x}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Serves a fresh registry for the run on `listen`; `None` when off.
pub async fn serve(
    listen: Option<SocketAddr>,
    labels: RunLabels,
) -> anyhow::Result<Option<server::MetricsServer>> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    let telemetry = Telemetry::new(labels)?;
    Ok(Some(server::MetricsServer::start(telemetry, addr).await?))
}

/// Labels every series carries (but `loadgen_run_info`).
const COMMON: [&str; 3] = ["run_id", "scenario", "phase"];

/// What identifies the run in every series.
#[derive(Debug, Clone)]
pub struct RunLabels {
    pub run_id: String,
    pub scenario: String,
    pub seed: u64,
    pub target: String,
}

/// The registry and metric families of one run.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    labels: RunLabels,
    requests: IntCounterVec,
    duration: HistogramVec,
    scheduled: IntCounterVec,
    target_rate: GaugeVec,
    vus: IntGaugeVec,
    in_flight: IntGaugeVec,
    phase_active: IntGaugeVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn with_common<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    COMMON
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

impl Telemetry {
    /// Creates and registers every metric; `loadgen_run_info` is set at once.
    pub fn new(labels: RunLabels) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            opts(
                "loadgen_requests_total",
                "Requests finished by the client, by operation and status (HTTP code, timeout, io or dropped).",
            ),
            &with_common(&["operation", "status"]),
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "loadgen_request_duration_seconds",
                "Client-side latency; open loop: from the scheduled send time (coordinated omission corrected).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &with_common(&["operation"]),
        )?;
        let scheduled = IntCounterVec::new(
            opts(
                "loadgen_scheduled_requests_total",
                "Open-loop arrivals that came due (sent or dropped).",
            ),
            &COMMON,
        )?;
        let target_rate = GaugeVec::new(
            opts(
                "loadgen_target_rate",
                "Offered request rate now, per second (0 in closed-loop phases).",
            ),
            &COMMON,
        )?;
        let vus = IntGaugeVec::new(
            opts("loadgen_vus", "Virtual users now (closed-loop phases)."),
            &COMMON,
        )?;
        let in_flight = IntGaugeVec::new(
            opts("loadgen_in_flight", "Requests sent and not finished yet."),
            &COMMON,
        )?;
        let phase_active = IntGaugeVec::new(
            opts(
                "loadgen_phase_active",
                "1 while the phase runs, 0 before and after.",
            ),
            &COMMON,
        )?;
        let run_info = IntGaugeVec::new(
            opts("loadgen_run_info", "Always 1; identifies the run."),
            &["run_id", "scenario", "seed", "version", "target"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(scheduled.clone()))?;
        registry.register(Box::new(target_rate.clone()))?;
        registry.register(Box::new(vus.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(phase_active.clone()))?;
        registry.register(Box::new(run_info.clone()))?;
        run_info
            .with_label_values(&[
                labels.run_id.as_str(),
                &labels.scenario,
                &labels.seed.to_string(),
                env!("CARGO_PKG_VERSION"),
                &labels.target,
            ])
            .set(1);
        Ok(Self {
            registry,
            labels,
            requests,
            duration,
            scheduled,
            target_rate,
            vus,
            in_flight,
            phase_active,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn labels(&self) -> &RunLabels {
        &self.labels
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buffer = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    /// The aggregator-side updater; its series exist from now on (at 0),
    /// so the first increments show in `increase()`.
    pub fn recorder(&self, plan: &Plan) -> Recorder {
        let phases = plan
            .phases
            .iter()
            .map(|phase| {
                let common = [
                    self.labels.run_id.as_str(),
                    &self.labels.scenario,
                    &phase.name,
                ];
                let open_loop = matches!(
                    phase.executor,
                    Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. }
                );
                let ops = OpKind::ALL
                    .iter()
                    .map(|op| {
                        let labels = [common[0], common[1], common[2], op.name()];
                        (plan.mix[op.index()] > 0).then(|| {
                            let mut metrics = OpMetrics {
                                labels: labels.map(str::to_owned),
                                duration: self.duration.with_label_values(&labels).local(),
                                statuses: Vec::new(),
                            };
                            // Every status known in advance exists at 0, so
                            // rate() and increase() see its first requests
                            // (a burst shorter than a scrape interval too).
                            let expected = Status::Http(expected_status(*op, plan));
                            let dropped = open_loop.then_some(Status::Dropped);
                            for status in [expected, Status::Timeout, Status::Io]
                                .into_iter()
                                .chain(dropped)
                            {
                                metrics.counter(&self.requests, status);
                            }
                            metrics
                        })
                    })
                    .collect();
                PhaseMetrics {
                    executor: phase.executor.clone(),
                    ops,
                    scheduled: self.scheduled.with_label_values(&common),
                    target_rate: self.target_rate.with_label_values(&common),
                    vus: self.vus.with_label_values(&common),
                    in_flight: self.in_flight.with_label_values(&common),
                    active: self.phase_active.with_label_values(&common),
                    live: None,
                    started: None,
                    finished: 0,
                }
            })
            .collect();
        Recorder {
            requests: self.requests.clone(),
            phases,
        }
    }
}

/// A status label: an HTTP code or a transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Http(u16),
    Timeout,
    Io,
    Dropped,
}

impl Status {
    fn of(outcome: Result<u16, TransportError>) -> Self {
        match outcome {
            Ok(code) => Status::Http(code),
            Err(TransportError::Timeout) => Status::Timeout,
            // SPEC §10 names `timeout`, `io` and `dropped`: a refused
            // connection is an I/O failure.
            Err(TransportError::Connect | TransportError::Io) => Status::Io,
        }
    }

    fn label(self) -> String {
        match self {
            Status::Http(code) => code.to_string(),
            Status::Timeout => "timeout".into(),
            Status::Io => "io".into(),
            Status::Dropped => "dropped".into(),
        }
    }
}

struct OpMetrics {
    /// run_id, scenario, phase, operation.
    labels: [String; 4],
    duration: LocalHistogram,
    /// Few entries (the statuses this operation met): a linear scan beats
    /// hashing.
    statuses: Vec<(Status, LocalIntCounter)>,
}

impl OpMetrics {
    /// The counter of `status`, created (at 0) on first use.
    fn counter(&mut self, requests: &IntCounterVec, status: Status) -> &LocalIntCounter {
        let index = match self.statuses.iter().position(|(known, _)| *known == status) {
            Some(index) => index,
            None => {
                let [run_id, scenario, phase, operation] = &self.labels;
                let counter = requests
                    .with_label_values(&[
                        run_id.as_str(),
                        scenario,
                        phase,
                        operation,
                        &status.label(),
                    ])
                    .local();
                self.statuses.push((status, counter));
                self.statuses.len() - 1
            }
        };
        &self.statuses[index].1
    }

    fn flush(&self) {
        self.duration.flush();
        for (_, counter) in &self.statuses {
            counter.flush();
        }
    }
}

struct PhaseMetrics {
    executor: Executor,
    /// Indexed by `OpKind::index`; `None` for operations not in the mix.
    ops: Vec<Option<OpMetrics>>,
    scheduled: IntCounter,
    target_rate: Gauge,
    vus: IntGauge,
    in_flight: IntGauge,
    active: IntGauge,
    live: Option<Arc<PhaseLive>>,
    started: Option<Instant>,
    /// Samples seen: in flight = sent − samples.
    finished: u64,
}

/// Folds the aggregator's events into the metrics. Owned by the aggregator
/// task; the HTTP server only reads the atomics behind the handles.
pub struct Recorder {
    requests: IntCounterVec,
    phases: Vec<PhaseMetrics>,
}

impl Recorder {
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::PhaseStarted { phase, live } => {
                let metrics = &mut self.phases[*phase];
                metrics.live = Some(Arc::clone(live));
                metrics.started = Some(Instant::now());
                metrics.active.set(1);
                self.refresh(*phase);
            }
            Event::Sample(sample) => self.sample(sample),
            Event::Dropped { phase, op } => {
                self.count(*phase, *op, Status::Dropped);
            }
            Event::PhaseEnded { phase, .. } => {
                self.flush();
                self.refresh(*phase);
                let metrics = &mut self.phases[*phase];
                metrics.active.set(0);
                metrics.target_rate.set(0.0);
                metrics.vus.set(0);
                metrics.in_flight.set(0);
                metrics.live = None;
            }
        }
    }

    fn sample(&mut self, sample: &Sample) {
        self.count(sample.phase, sample.op, Status::of(sample.outcome));
        self.phases[sample.phase].finished += 1;
        if let Some(op) = &self.phases[sample.phase].ops[sample.op.index()] {
            op.duration.observe(sample.latency.as_secs_f64());
        }
    }

    fn count(&mut self, phase: usize, op: OpKind, status: Status) {
        let requests = &self.requests;
        let Some(op) = &mut self.phases[phase].ops[op.index()] else {
            return;
        };
        op.counter(requests, status).inc();
    }

    /// Publishes the local counts to the registry (what a scrape sees).
    fn flush(&self) {
        for op in self
            .phases
            .iter()
            .flat_map(|phase| phase.ops.iter().flatten())
        {
            op.flush();
        }
    }

    /// Periodic flush, and update of the gauges of the running phases.
    pub fn tick(&mut self) {
        self.flush();
        for phase in 0..self.phases.len() {
            if self.phases[phase].live.is_some() {
                self.refresh(phase);
            }
        }
    }

    fn refresh(&mut self, phase: usize) {
        let metrics = &mut self.phases[phase];
        let Some(live) = &metrics.live else {
            return;
        };
        let scheduled = live.scheduled();
        let already = metrics.scheduled.get();
        if scheduled > already {
            metrics.scheduled.inc_by(scheduled - already);
        }
        // Drops were never sent: in flight = sent − samples.
        let sent = live.sent();
        let finished = metrics.finished;
        metrics.in_flight.set(sent.saturating_sub(finished) as i64);
        metrics.vus.set(i64::from(live.vus()));
        let elapsed = metrics.started.map_or(0.0, |at| at.elapsed().as_secs_f64());
        metrics
            .target_rate
            .set(offered_rate(&metrics.executor, elapsed));
    }
}

/// The status a request of `op` expects (deletes: the first ones' 204;
/// a delete past the pool expects 404, which appears when seen).
fn expected_status(op: OpKind, plan: &Plan) -> u16 {
    match op {
        OpKind::GetHit | OpKind::List | OpKind::Root => 200,
        OpKind::GetMiss => 404,
        OpKind::Put => 201,
        OpKind::Delete => 204,
        OpKind::Fault => plan.fault.status,
    }
}

/// The rate the executor offers `elapsed` seconds into the phase: the
/// constant rate, or the ramp interpolated between its stages; 0 for
/// closed-loop executors (their load is `loadgen_vus`).
pub fn offered_rate(executor: &Executor, elapsed: f64) -> f64 {
    match executor {
        Executor::ConstantArrivalRate { rate, duration } => {
            if elapsed < duration.as_secs_f64() {
                *rate
            } else {
                0.0
            }
        }
        Executor::RampingArrivalRate { start_rate, stages } => {
            let (mut from, mut t) = (*start_rate, elapsed);
            for stage in stages {
                let length = stage.duration.as_secs_f64();
                if t < length {
                    return from + (stage.target - from) * t / length;
                }
                t -= length;
                from = stage.target;
            }
            0.0
        }
        Executor::ConstantVus { .. } | Executor::RampingVus { .. } => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scenario::plan::Stage;

    #[test]
    fn run_ids_carry_the_utc_start_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_692_269); // 2026-11-26 11:24:29
        let id = run_id(at);
        assert!(id.starts_with("20261126T112429Z-"), "{id}");
        assert_eq!(id.len(), "20261126T112429Z-".len() + 4);
        assert!(run_id(UNIX_EPOCH + Duration::from_secs(951_782_400)).starts_with("20000229T"));
    }

    #[test]
    fn listen_is_off_or_an_address() {
        assert_eq!(parse_listen("off"), Ok(Listen(None)));
        assert_eq!(
            parse_listen("127.0.0.1:0"),
            Ok(Listen(Some("127.0.0.1:0".parse().unwrap())))
        );
        assert!(parse_listen("9465").unwrap_err().contains("neither `off`"));
        assert!(parse_listen(":9465").unwrap_err().contains("neither `off`"));
        assert!(parse_listen("localhost:99999")
            .unwrap_err()
            .contains("neither `off`"));
        assert_eq!(
            parse_listen("localhost:0"),
            Ok(Listen(Some("127.0.0.1:0".parse().unwrap())))
        );
    }

    #[test]
    fn buckets_are_the_services() {
        // The service is a dev-dependency; its list is the reference.
        assert_eq!(DURATION_BUCKETS, items_service::metrics::DURATION_BUCKETS);
    }

    #[test]
    fn ramps_interpolate_and_end_at_zero() {
        let ramp = Executor::RampingArrivalRate {
            start_rate: 10.0,
            stages: vec![
                Stage {
                    target: 30.0,
                    duration: Duration::from_secs(10),
                },
                Stage {
                    target: 30.0,
                    duration: Duration::from_secs(5),
                },
            ],
        };
        assert_eq!(offered_rate(&ramp, 0.0), 10.0);
        assert_eq!(offered_rate(&ramp, 5.0), 20.0);
        assert_eq!(offered_rate(&ramp, 12.0), 30.0);
        assert_eq!(offered_rate(&ramp, 15.0), 0.0);
        let constant = Executor::ConstantArrivalRate {
            rate: 7.5,
            duration: Duration::from_secs(2),
        };
        assert_eq!(offered_rate(&constant, 1.9), 7.5);
        assert_eq!(offered_rate(&constant, 2.0), 0.0);
    }
}
