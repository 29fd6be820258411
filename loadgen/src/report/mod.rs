//! The run's results: the summary model (also the JSON report, see
//! `report.schema.json`), and the human tables. Renderers write to
//! `impl Write` so tests can compare output as a whole; [`html`] renders
//! a JSON report as one self-contained page with charts.

pub mod html;
pub mod server;

use std::{collections::BTreeMap, io::Write};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Color, Table};
use serde::Serialize;

use crate::verify::check::Check;

/// Version of the JSON report layout; bump on incompatible changes.
/// 2: `run_id`; per-second offered, dropped, p90, service time and
/// statuses; phase start offsets; the server's series from Prometheus
/// (what the HTML report charts).
pub const SCHEMA_VERSION: u32 = 2;
/// The JSON Schema of the report, kept in the repository.
pub const SCHEMA: &str = include_str!("../../report.schema.json");

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub rate: f64,
    pub latency: Percentiles,
    pub service_time: Percentiles,
    pub statuses: BTreeMap<String, u64>,
    pub transport_errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummary {
    pub name: String,
    /// When the phase started, in seconds since the run started (the
    /// origin of the series' `t`); `None` when it never started.
    pub offset_seconds: Option<f64>,
    pub executor: String,
    pub planned_seconds: f64,
    pub seconds: f64,
    /// Open loop: requests the timeline scheduled.
    pub scheduled: Option<u64>,
    pub completed: u64,
    pub errors: u64,
    pub dropped: u64,
    pub achieved_rate: f64,
    pub latency: Percentiles,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SeriesPoint {
    /// Seconds since the start of the run.
    pub t: u64,
    /// Width of this point in seconds (1 unless the series was decimated).
    pub seconds: u64,
    /// Requests that finished in this second.
    pub requests: u64,
    pub errors: u64,
    /// Open-loop arrivals due in this second (sent or dropped).
    pub offered: u64,
    pub dropped: u64,
    /// Latency of the requests that finished (from the scheduled time in
    /// open loop), and their service time (from the actual send).
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub service_p50_ms: f64,
    pub service_p90_ms: f64,
    pub service_p99_ms: f64,
    /// Finished requests by HTTP status or transport error.
    pub statuses: BTreeMap<String, u64>,
}

impl SeriesPoint {
    /// One point out of neighbours (decimation): counts add up,
    /// percentiles keep the worst (they cannot be merged exactly).
    pub fn merge(points: &[SeriesPoint]) -> SeriesPoint {
        let sum = |f: fn(&SeriesPoint) -> u64| points.iter().map(f).sum();
        let worst = |f: fn(&SeriesPoint) -> f64| points.iter().map(f).fold(0.0, f64::max);
        let mut statuses = BTreeMap::new();
        for (status, n) in points.iter().flat_map(|p| &p.statuses) {
            *statuses.entry(status.clone()).or_default() += n;
        }
        SeriesPoint {
            t: points.first().map_or(0, |p| p.t),
            seconds: sum(|p| p.seconds),
            requests: sum(|p| p.requests),
            errors: sum(|p| p.errors),
            offered: sum(|p| p.offered),
            dropped: sum(|p| p.dropped),
            p50_ms: worst(|p| p.p50_ms),
            p90_ms: worst(|p| p.p90_ms),
            p99_ms: worst(|p| p.p99_ms),
            service_p50_ms: worst(|p| p.service_p50_ms),
            service_p90_ms: worst(|p| p.service_p90_ms),
            service_p99_ms: worst(|p| p.service_p99_ms),
            statuses,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Every finished request, answered or not (timeouts, transport errors).
    pub requests: u64,
    /// Requests that got an HTTP status: the latency percentiles are theirs.
    pub answered: u64,
    pub errors: u64,
    pub dropped: u64,
    pub error_ratio: f64,
    pub seconds: f64,
    pub rate: f64,
    /// Latency from the scheduled send time (coordinated omission corrected).
    pub latency: Percentiles,
    pub service_time: Percentiles,
    pub send_lag: Option<Percentiles>,
    pub operations: Vec<OpSummary>,
    pub phases: Vec<PhaseSummary>,
    pub series: Vec<SeriesPoint>,
    pub interrupted: bool,
}

/// The JSON report written by `--out`.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub schema_version: u32,
    /// Also the `run_id` label of loadgen's own metrics.
    pub run_id: &'a str,
    pub scenario: &'a str,
    pub description: &'a str,
    pub seed: u64,
    pub target: &'a str,
    pub started_at_unix_ms: u64,
    pub ended_at_unix_ms: u64,
    pub summary: &'a Summary,
    pub checks: &'a [Check],
    pub passed: bool,
    /// The service's side over time, from Prometheus (runs that used it).
    pub server: Option<&'a server::ServerSeries>,
}

/// Writes the report as JSON and/or HTML.
/// Where a finished run's report goes: `--out` (JSON) and `--html`.
#[derive(Debug, Clone, Default)]
pub struct ReportFiles {
    pub json: Option<std::path::PathBuf>,
    pub html: Option<std::path::PathBuf>,
}

impl ReportFiles {
    /// Whether any report file was asked for.
    pub fn wanted(&self) -> bool {
        self.json.is_some() || self.html.is_some()
    }

    pub fn paths(&self) -> impl Iterator<Item = &std::path::Path> {
        self.json
            .iter()
            .chain(&self.html)
            .map(|path| path.as_path())
    }

    /// Writes `report` (plus an optional top-level `section`) to every file asked for.
    pub fn write(
        &self,
        report: &Report,
        section: Option<(&str, serde_json::Value)>,
    ) -> anyhow::Result<()> {
        write_files(report, section, self.json.as_deref(), self.html.as_deref())
    }
}

fn write_files(
    report: &Report,
    section: Option<(&str, serde_json::Value)>,
    json: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut value = serde_json::to_value(report)?;
    // An extra top-level object: a shard's `shard`, a merge's `shards`.
    if let (Some((key, extra)), Some(object)) = (section, value.as_object_mut()) {
        object.insert(key.to_owned(), extra);
    }
    let text = serde_json::to_vec_pretty(&value)?;
    if let Some(path) = json {
        std::fs::write(path, &text)
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if let Some(path) = html {
        // From the JSON text, as `loadgen report` reads it: the same page
        // byte for byte (numbers parse back identically).
        html::write(&serde_json::from_slice(&text)?, path)?;
    }
    Ok(())
}

fn ms(value: f64) -> String {
    crate::duration::format_latency(std::time::Duration::from_secs_f64(value / 1000.0))
}

fn right(text: impl ToString) -> Cell {
    Cell::new(text).set_alignment(CellAlignment::Right)
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.iter().copied());
    table
}

/// One row of the per-operation table.
fn latency_row(
    name: &str,
    count: u64,
    rate: f64,
    latency: &Percentiles,
    service: &Percentiles,
    statuses: String,
    errors: u64,
) -> Vec<Cell> {
    vec![
        Cell::new(name),
        right(count),
        right(format!("{rate:.1}")),
        right(ms(latency.p50_ms)),
        right(ms(latency.p90_ms)),
        right(ms(latency.p99_ms)),
        right(ms(latency.p999_ms)),
        right(ms(latency.max_ms)),
        right(ms(service.p99_ms)),
        Cell::new(statuses),
        right(errors),
    ]
}

/// Per-operation and per-phase tables.
pub fn write_summary(out: &mut impl Write, summary: &Summary) -> std::io::Result<()> {
    let mut ops = table(&[
        "operation",
        "count",
        "rate/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "service p99",
        "statuses",
        "errors",
    ]);
    for op in &summary.operations {
        let mut statuses: Vec<String> = op
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}×{n}"))
            .collect();
        statuses.extend(
            op.transport_errors
                .iter()
                .map(|(kind, n)| format!("{kind}×{n}")),
        );
        ops.add_row(latency_row(
            &op.name,
            op.count,
            op.rate,
            &op.latency,
            &op.service_time,
            statuses.join(" "),
            op.errors,
        ));
    }
    ops.add_row(latency_row(
        "all",
        summary.requests,
        summary.rate,
        &summary.latency,
        &summary.service_time,
        format!("dropped×{}", summary.dropped),
        summary.errors,
    ));
    writeln!(out, "{ops}")?;

    let mut phases = table(&[
        "phase",
        "executor",
        "duration",
        "scheduled",
        "completed",
        "dropped",
        "errors",
        "rate/s",
        "p99",
    ]);
    for phase in &summary.phases {
        phases.add_row(vec![
            Cell::new(&phase.name),
            Cell::new(&phase.executor),
            right(format!("{:.1}s", phase.seconds)),
            right(phase.scheduled.map_or("-".to_owned(), |n| n.to_string())),
            right(phase.completed),
            right(phase.dropped),
            right(phase.errors),
            right(format!("{:.1}", phase.achieved_rate)),
            right(ms(phase.latency.p99_ms)),
        ]);
    }
    writeln!(out, "{phases}")?;
    if let Some(lag) = &summary.send_lag {
        writeln!(
            out,
            "open-loop send lag: p50 {} p99 {} max {} (latency is measured from the scheduled time)",
            ms(lag.p50_ms),
            ms(lag.p99_ms),
            ms(lag.max_ms)
        )?;
    }
    Ok(())
}

/// The checks table: name, expected, observed, PASS/FAIL.
pub fn write_checks(out: &mut impl Write, checks: &[Check]) -> std::io::Result<()> {
    if checks.is_empty() {
        return writeln!(out, "no checks in this scenario");
    }
    let mut table = table(&["check", "expected", "observed", "result"]);
    for check in checks {
        let verdict = if check.passed {
            Cell::new("PASS").fg(Color::Green)
        } else {
            Cell::new("FAIL").fg(Color::Red)
        };
        table.add_row(vec![
            Cell::new(&check.name),
            Cell::new(&check.expected),
            Cell::new(&check.observed),
            verdict,
        ]);
    }
    writeln!(out, "{table}")
}
