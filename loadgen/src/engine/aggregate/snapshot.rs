//! The aggregator's state in a portable, mergeable form: what a shard
//! writes into its report (`--shard I/N --out`) and what `loadgen merge`
//! reads back. Histograms travel as exact HDR histograms (V2 + deflate,
//! base64), times as absolute Unix milliseconds, so N shards' measurements
//! add up to exactly what one process measuring all their requests would
//! hold — percentiles of the pooled samples, not averages of percentiles.
//!
//! A child of `aggregate` because exporting and importing touch the
//! aggregator's private state and nothing else should.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hdrhistogram::{
    serialization::{Deserializer, Serializer, V2DeflateSerializer},
    Histogram,
};
use serde::{Deserialize, Serialize};

use super::{histogram, Aggregator, Bucket, OpStats, PhaseStats};
use crate::{
    engine::client::TransportError,
    engine::progress::Progress,
    report::SeriesPoint,
    scenario::plan::{OpKind, Plan},
};

/// An exact HDR histogram, serialized.
#[derive(Debug, Clone)]
pub struct Hist(pub Histogram<u64>);

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut bytes)
            .map_err(|err| serde::ser::Error::custom(format!("histogram: {err:?}")))?;
        serializer.serialize_str(&STANDARD.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD
            .decode(text)
            .map_err(|err| serde::de::Error::custom(format!("histogram is not base64: {err}")))?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|err| serde::de::Error::custom(format!("corrupt histogram: {err:?}")))?;
        // Same bounds as ours, so merging never loses a sample.
        let mut histogram = histogram();
        histogram
            .add(&decoded)
            .map_err(|err| serde::de::Error::custom(format!("histogram out of range: {err:?}")))?;
        Ok(Hist(histogram))
    }
}

impl Hist {
    fn add(&mut self, other: &Hist) -> anyhow::Result<()> {
        self.0
            .add(&other.0)
            .map_err(|err| anyhow::anyhow!("cannot merge histograms: {err:?}"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpMeasurements {
    pub name: String,
    /// Every sample, answered or not (the histograms hold answered ones).
    pub count: u64,
    pub latency: Hist,
    pub service_time: Hist,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: BTreeMap<String, u64>,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseMeasurements {
    pub name: String,
    pub latency: Hist,
    pub completed: u64,
    pub errors: u64,
    pub dropped: u64,
    /// Open loop: arrivals this process scheduled.
    pub scheduled: Option<u64>,
    pub started_at_unix_ms: Option<u64>,
    pub ended_at_unix_ms: Option<u64>,
}

/// One point of the per-second series, at an absolute time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeriesSample {
    pub at_unix_ms: u64,
    /// The point as the single-run report has it (`t` relative to the
    /// shard's own start; the merge places it by `at_unix_ms`).
    #[serde(flatten)]
    pub point: SeriesPoint,
}

/// Everything the aggregator measured, per operation (in
/// [`OpKind::ALL`] order), per phase and overall.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurements {
    pub started_at_unix_ms: u64,
    pub ended_at_unix_ms: u64,
    pub operations: Vec<OpMeasurements>,
    pub phases: Vec<PhaseMeasurements>,
    pub latency: Hist,
    pub service_time: Hist,
    pub send_lag: Hist,
    pub series: Vec<SeriesSample>,
}

pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn transport_error_name(name: &str) -> anyhow::Result<&'static str> {
    [
        TransportError::Connect,
        TransportError::Timeout,
        TransportError::Io,
    ]
    .into_iter()
    .map(TransportError::name)
    .find(|known| *known == name)
    .ok_or_else(|| anyhow::anyhow!("unknown transport error {name:?} in a shard report"))
}

impl Aggregator {
    /// The measurements so far; `started_at` is the wall-clock time at which
    /// this aggregator was created. Call after [`Aggregator::summary`], which
    /// closes the last second of the series.
    pub fn measurements(&self, plan: &Plan, started_at: SystemTime) -> Measurements {
        let at = |instant: Instant| unix_ms(started_at + instant.duration_since(self.started));
        Measurements {
            started_at_unix_ms: unix_ms(started_at),
            ended_at_unix_ms: at(Instant::now()),
            operations: OpKind::ALL
                .iter()
                .zip(&self.ops)
                .map(|(op, stats)| OpMeasurements {
                    name: op.name().to_owned(),
                    count: stats.count,
                    latency: Hist(stats.latency.clone()),
                    service_time: Hist(stats.service.clone()),
                    statuses: stats.statuses.clone(),
                    transport_errors: stats
                        .transport_errors
                        .iter()
                        .map(|(name, count)| ((*name).to_owned(), *count))
                        .collect(),
                    errors: stats.errors,
                })
                .collect(),
            phases: plan
                .phases
                .iter()
                .zip(&self.phases)
                .map(|(phase, stats)| PhaseMeasurements {
                    name: phase.name.clone(),
                    latency: Hist(stats.latency.clone()),
                    completed: stats.completed,
                    errors: stats.errors,
                    dropped: stats.dropped,
                    scheduled: stats.scheduled,
                    started_at_unix_ms: stats.started.map(at),
                    ended_at_unix_ms: stats.ended.map(at),
                })
                .collect(),
            latency: Hist(self.all_latency.clone()),
            service_time: Hist(self.all_service.clone()),
            send_lag: Hist(self.send_lag.clone()),
            series: self
                .series
                .iter()
                .map(|point| SeriesSample {
                    at_unix_ms: unix_ms(started_at) + point.t * 1000,
                    point: point.clone(),
                })
                .collect(),
        }
    }

    /// An aggregator holding `measurements`, as if its run had just ended:
    /// [`Aggregator::summary`], the reconciliation counts and every check
    /// then see exactly what one process would have measured.
    pub fn from_measurements(plan: &Plan, measurements: &Measurements) -> anyhow::Result<Self> {
        if measurements.operations.len() != OpKind::ALL.len()
            || measurements.phases.len() != plan.phases.len()
        {
            anyhow::bail!(
                "the measurements have {} operations and {} phases; the scenario has {} and {}",
                measurements.operations.len(),
                measurements.phases.len(),
                OpKind::ALL.len(),
                plan.phases.len()
            );
        }
        let ops = OpKind::ALL.iter().map(|op| op.name());
        let phases = plan.phases.iter().map(|phase| phase.name.as_str());
        for (expected, found) in ops.chain(phases).zip(measurements.names()) {
            if expected != found {
                anyhow::bail!(
                    "the measurements have {found:?} where the scenario has {expected:?}"
                );
            }
        }
        let mut aggregator = Aggregator::new(plan, Progress::new(false));
        // Instants are relative to "now", which stands for the run's end.
        let (now, end) = (Instant::now(), measurements.ended_at_unix_ms);
        let instant = move |unix_ms: u64| {
            now.checked_sub(Duration::from_millis(end.saturating_sub(unix_ms)))
                .unwrap_or(now)
        };
        aggregator.started = now
            .checked_sub(Duration::from_millis(
                end.saturating_sub(measurements.started_at_unix_ms),
            ))
            .unwrap_or(now);
        for (stats, op) in aggregator.ops.iter_mut().zip(&measurements.operations) {
            *stats = OpStats {
                count: op.count,
                latency: op.latency.0.clone(),
                service: op.service_time.0.clone(),
                statuses: op.statuses.clone(),
                transport_errors: op
                    .transport_errors
                    .iter()
                    .map(|(name, count)| Ok((transport_error_name(name)?, *count)))
                    .collect::<anyhow::Result<_>>()?,
                errors: op.errors,
            };
        }
        for (stats, phase) in aggregator.phases.iter_mut().zip(&measurements.phases) {
            *stats = PhaseStats {
                latency: phase.latency.0.clone(),
                completed: phase.completed,
                errors: phase.errors,
                dropped: phase.dropped,
                scheduled: phase.scheduled,
                started: phase.started_at_unix_ms.map(instant),
                ended: phase.ended_at_unix_ms.map(instant),
            };
        }
        aggregator.requests = measurements.operations.iter().map(|op| op.count).sum();
        aggregator.all_latency = measurements.latency.0.clone();
        aggregator.all_service = measurements.service_time.0.clone();
        aggregator.send_lag = measurements.send_lag.0.clone();
        let start = measurements.started_at_unix_ms;
        aggregator.series = measurements
            .series
            .iter()
            .map(|sample| SeriesPoint {
                t: sample.at_unix_ms.saturating_sub(start) / 1000,
                ..sample.point.clone()
            })
            .collect();
        // The series is complete: no further (empty) second may be appended.
        aggregator.current = Bucket::new();
        aggregator.current_index = u64::MAX / 2;
        Ok(aggregator)
    }
}

impl Measurements {
    /// Operation names then phase names, in order: parts merge by position
    /// only when these agree.
    fn names(&self) -> impl Iterator<Item = &str> {
        let ops = self.operations.iter().map(|op| op.name.as_str());
        ops.chain(self.phases.iter().map(|phase| phase.name.as_str()))
    }

    /// The exact union of several processes' measurements of one plan.
    /// Histograms and counts add up; a phase runs from its earliest start to
    /// its latest end; series points of the same second (relative to the
    /// earliest start) add up, their p50/p99 being the worst of the parts
    /// (per-second percentiles are not kept exactly, as in decimation).
    pub fn merge(parts: &[Measurements]) -> anyhow::Result<Measurements> {
        let (first, rest) = parts
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("nothing to merge"))?;
        let mut merged = Merging::new(first.clone());
        for part in rest {
            merged.add(part.clone())?;
        }
        Ok(merged.finish())
    }
}

/// A merge in progress, fed one part at a time so that only one part's
/// histograms need to be decoded at once (64 shards × 18 histograms of
/// ~190 KiB each would otherwise all be in memory together).
#[derive(Debug)]
pub struct Merging(Measurements);

impl Merging {
    pub fn new(first: Measurements) -> Self {
        Self(first)
    }

    pub fn add(&mut self, part: Measurements) -> anyhow::Result<()> {
        let merged = &mut self.0;
        if part.operations.len() != merged.operations.len()
            || part.phases.len() != merged.phases.len()
            || !part.names().eq(merged.names())
        {
            anyhow::bail!(
                "the parts measured different operations or phases: {:?} vs {:?}",
                merged.names().collect::<Vec<_>>(),
                part.names().collect::<Vec<_>>()
            );
        }
        merged.started_at_unix_ms = merged.started_at_unix_ms.min(part.started_at_unix_ms);
        merged.ended_at_unix_ms = merged.ended_at_unix_ms.max(part.ended_at_unix_ms);
        for (into, op) in merged.operations.iter_mut().zip(&part.operations) {
            into.latency.add(&op.latency)?;
            into.service_time.add(&op.service_time)?;
            add_counts(&mut into.statuses, &op.statuses);
            add_counts(&mut into.transport_errors, &op.transport_errors);
            into.errors += op.errors;
            into.count += op.count;
        }
        for (into, phase) in merged.phases.iter_mut().zip(&part.phases) {
            into.latency.add(&phase.latency)?;
            into.completed += phase.completed;
            into.errors += phase.errors;
            into.dropped += phase.dropped;
            into.scheduled = match (into.scheduled, phase.scheduled) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            into.started_at_unix_ms = min_some(into.started_at_unix_ms, phase.started_at_unix_ms);
            into.ended_at_unix_ms = into.ended_at_unix_ms.max(phase.ended_at_unix_ms);
        }
        merged.latency.add(&part.latency)?;
        merged.service_time.add(&part.service_time)?;
        merged.send_lag.add(&part.send_lag)?;
        // Bucketed by second in `finish`, once the earliest start is known.
        merged.series.extend(part.series);
        Ok(())
    }

    pub fn finish(mut self) -> Measurements {
        self.0.series = merge_series(&self.0.series, self.0.started_at_unix_ms);
        self.0
    }
}

fn add_counts<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (key, count) in from {
        *into.entry(key.clone()).or_default() += count;
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sums series points by second since `start` (the parts start within
/// milliseconds of each other under `--start-at`, so a second is a second).
fn merge_series(samples: &[SeriesSample], start: u64) -> Vec<SeriesSample> {
    let mut seconds: BTreeMap<u64, Vec<SeriesPoint>> = BTreeMap::new();
    for sample in samples {
        let second = (sample.at_unix_ms.saturating_sub(start) + 500) / 1000;
        seconds
            .entry(second)
            .or_default()
            .push(sample.point.clone());
    }
    seconds
        .into_iter()
        .map(|(second, points)| {
            // Counts add up, percentiles keep the worst part; the parts
            // cover the same second, so its width is theirs, not their sum.
            let width = points.iter().map(|p| p.seconds).max().unwrap_or(1);
            SeriesSample {
                at_unix_ms: start + second * 1000,
                point: SeriesPoint {
                    t: second,
                    seconds: width,
                    ..SeriesPoint::merge(&points)
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(samples: impl IntoIterator<Item = u64>, at: u64) -> Measurements {
        let plan = crate::scenario::parse(
            "t",
            "[mix]\nroot = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 1\nduration = \"1s\"\n",
            "t",
        )
        .unwrap();
        let mut aggregator = Aggregator::new(&plan, Progress::new(false));
        for micros in samples {
            let _ = aggregator.all_latency.record(micros);
            let _ = aggregator.ops[OpKind::Root.index()].latency.record(micros);
            aggregator.ops[OpKind::Root.index()].count += 1;
            let _ = aggregator.phases[0].latency.record(micros);
        }
        let mut measurements =
            aggregator.measurements(&plan, UNIX_EPOCH + Duration::from_millis(at));
        measurements.series = vec![SeriesSample {
            at_unix_ms: at,
            point: SeriesPoint {
                t: 0,
                seconds: 1,
                requests: 10,
                errors: 1,
                offered: 10,
                dropped: 0,
                p50_ms: 1.0,
                p90_ms: 1.0,
                p99_ms: at as f64,
                service_p50_ms: 1.0,
                service_p90_ms: 1.0,
                service_p99_ms: 1.0,
                statuses: BTreeMap::from([("200".to_owned(), 10)]),
            },
        }];
        // Through JSON, as between a shard and the merge.
        serde_json::from_str(&serde_json::to_string(&measurements).unwrap()).unwrap()
    }

    #[test]
    fn merged_histograms_give_the_pooled_percentiles() {
        // A fast shard (1..=1000 µs) and a slow one (9_001..=10_000 µs):
        // the pooled p99 is in the slow tail, p50 at the boundary, and
        // nothing like the mean of the two shards' percentiles.
        let fast = part(1..=1000, 1_000_000);
        let slow = part(9_001..=10_000, 1_000_003);
        let merged = Measurements::merge(&[fast.clone(), slow.clone()]).unwrap();
        let mut pooled = histogram();
        for micros in (1..=1000).chain(9_001..=10_000) {
            pooled.record(micros).unwrap();
        }
        for histogram in [
            &merged.latency.0,
            &merged.operations[OpKind::Root.index()].latency.0,
            &merged.phases[0].latency.0,
        ] {
            assert_eq!(histogram.len(), 2000);
            for quantile in [0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(
                    histogram.value_at_quantile(quantile),
                    pooled.value_at_quantile(quantile),
                    "q{quantile}"
                );
            }
        }
        let p99 = merged.latency.0.value_at_quantile(0.99);
        assert!((9_970..=9_990).contains(&p99), "{p99}");
        let mean_of_p99s =
            (fast.latency.0.value_at_quantile(0.99) + slow.latency.0.value_at_quantile(0.99)) / 2;
        assert!(p99.abs_diff(mean_of_p99s) > 4000);
        // Series points of the same second add up; the merge starts at the earliest part.
        assert_eq!(merged.started_at_unix_ms, 1_000_000);
        assert_eq!(merged.series.len(), 1);
        assert_eq!(
            (
                merged.series[0].point.requests,
                merged.series[0].point.errors
            ),
            (20, 2)
        );
    }

    #[test]
    fn a_merged_aggregator_summarises_like_one_process() {
        let merged = Measurements::merge(&[part(1..=1000, 5_000), part(1..=1000, 5_002)]).unwrap();
        let plan = crate::scenario::parse(
            "t",
            "[mix]\nroot = 1\n[[phases]]\nexecutor = \"constant-arrival-rate\"\nrate = 1\nduration = \"1s\"\n",
            "t",
        )
        .unwrap();
        let mut aggregator = Aggregator::from_measurements(&plan, &merged).unwrap();
        let summary = aggregator.summary(&plan, false);
        assert_eq!(summary.operations[0].count, 2000);
        assert_eq!(summary.latency.p50_ms, 0.5);
        assert_eq!(summary.series.len(), 1, "no invented seconds");
    }

    #[test]
    fn a_shard_without_samples_merges_as_nothing() {
        // More shards than arrivals: some measure nothing at all.
        let merged = Measurements::merge(&[part(1..=10, 0), part(std::iter::empty(), 0)]).unwrap();
        assert_eq!(merged.latency.0.len(), 10);
        assert_eq!(merged.latency.0.max(), 10);
    }

    #[test]
    fn corrupt_histograms_are_refused() {
        let mut json = serde_json::to_value(part(1..=10, 0)).unwrap();
        json["latency"] = serde_json::Value::String("AAAA".into());
        let error = serde_json::from_value::<Measurements>(json).unwrap_err();
        assert!(error.to_string().contains("corrupt histogram"), "{error}");
    }
}
