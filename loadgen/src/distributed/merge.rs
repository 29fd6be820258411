//! `loadgen merge shard-*.json`: turns N shard reports into the report of
//! one run. It refuses (exit 2) an incomplete or inconsistent set, merges
//! the exact histograms and counts (percentiles of the pooled samples, not
//! averages), and then runs every check once over the union, with the same
//! code as a single run: `[expect.client]` on the merged summary,
//! reconciliation between the earliest "before" and the latest "after"
//! `/metrics` read of all shards against the summed client counts, and the
//! Prometheus expectations over the union window.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ShardSection;
use crate::{
    engine::aggregate::{Aggregator, Measurements, Merging},
    engine::client::Target,
    engine::shard::MAX_SHARDS,
    report::{self, Report},
    runner, scenario,
    verify::{
        check,
        prometheus::{unix_seconds, Prometheus},
        reconcile::{self, ClientCounts, Counts},
        scope::{self, Scope},
        server::{self, ServerWindow},
    },
    Exit,
};

/// Shards keep exact histograms per operation and phase, not per second.
const SERIES_NOTE: &str = "note: the per-second p50/p99 of the merged series (report `summary.series`) are the worst \
shard's in each second, an upper bound; every other percentile is pooled exactly over all shards' requests";

/// Options of `loadgen merge`.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub reports: Vec<PathBuf>,
    /// Overrides the target the shards recorded (it scopes server queries).
    pub target: Option<String>,
    pub prometheus: String,
    /// `--out` and `--html`.
    pub files: report::ReportFiles,
    pub quiet: bool,
}

/// A set of shard reports that cannot be merged (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("cannot merge these shard reports:\n{}", .0.join("\n"))]
pub struct InvalidShardSet(pub Vec<String>);

/// One shard report as read from disk, its measurements still encoded.
pub struct ShardReport {
    pub path: PathBuf,
    pub section: ShardSection<Box<RawValue>>,
}

/// A report file: only its `shard` section matters here.
#[derive(Deserialize)]
struct ReportFile {
    shard: Option<ShardSection<Box<RawValue>>>,
}

/// Reads the `shard` section of a report written by `run --shard`.
pub fn read(path: &Path) -> anyhow::Result<ShardReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read shard report {}", path.display()))?;
    let file: ReportFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a loadgen report", path.display()))?;
    let section = file.shard.ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no \"shard\" section: it was not written by `loadgen run --shard I/N --out`",
            path.display()
        )
    })?;
    Ok(ShardReport {
        path: path.to_owned(),
        section,
    })
}

/// Decodes one shard's measurements after the other into the union.
fn merge_measurements(
    reports: &[ShardReport],
) -> anyhow::Result<(Measurements, Vec<ShardEntry<'_>>)> {
    let mut merging: Option<Merging> = None;
    let mut entries = Vec::new();
    for report in reports {
        let part: Measurements = serde_json::from_str(report.section.measurements.get())
            .with_context(|| format!("{}: malformed measurements", report.path.display()))?;
        entries.push(ShardEntry {
            shard: report.section.shard,
            report: report.path.display().to_string(),
            target: &report.section.target,
            started_at_unix_ms: part.started_at_unix_ms,
            ended_at_unix_ms: part.ended_at_unix_ms,
            requests: part.latency.0.len(),
        });
        match merging.as_mut() {
            Some(merging) => merging.add(part)?,
            None => merging = Some(Merging::new(part)),
        }
    }
    let merged = merging.ok_or_else(|| anyhow::anyhow!("no shard reports"))?;
    Ok((merged.finish(), entries))
}

/// Everything wrong with the set, at once: the count, scenario, seed and
/// target must agree; every shard 1..=N must be there exactly once, and
/// each must have completed its run.
pub fn validate(reports: &[ShardReport]) -> Result<(), InvalidShardSet> {
    let mut problems = Vec::new();
    let Some(first) = reports.first() else {
        return Err(InvalidShardSet(vec!["no reports given".into()]));
    };
    let first_path = first.path.display();
    let first = &first.section;
    for report in &reports[1..] {
        let (path, shard) = (report.path.display(), &report.section);
        let mut differs = |what: &str, theirs: String, ours: String| {
            if theirs != ours {
                problems.push(format!(
                    "  {path}: {what} {theirs} differs from {first_path}'s {ours}"
                ));
            }
        };
        differs(
            "shard count",
            shard.shards.to_string(),
            first.shards.to_string(),
        );
        differs(
            "scenario",
            shard.scenario_hash.clone(),
            first.scenario_hash.clone(),
        );
        differs("seed", shard.seed.to_string(), first.seed.to_string());
        differs(
            "loadgen version",
            shard.loadgen_version.clone(),
            first.loadgen_version.clone(),
        );
        differs("target", shard.target.clone(), first.target.clone());
        differs(
            "--start-at",
            start_at(shard.start_at_unix_ms),
            start_at(first.start_at_unix_ms),
        );
    }
    for report in reports {
        let (path, shard) = (report.path.display(), &report.section);
        if super::scenario_hash(shard.scenario_toml.as_bytes()) != shard.scenario_hash {
            problems.push(format!(
                "  {path}: the embedded scenario_toml does not match its scenario_hash {} (edited report?)",
                shard.scenario_hash
            ));
        }
        if let Some(start) = shard.start_at_unix_ms {
            if shard.ready_at_unix_ms > start {
                problems.push(format!(
                    "  {path}: shard {} was ready at {}, after --start-at {}",
                    shard.shard,
                    start_at(Some(shard.ready_at_unix_ms)),
                    start_at(Some(start))
                ));
            }
        }
    }
    // Before anything is sized by it: the count comes from a file.
    if !(1..=MAX_SHARDS).contains(&first.shards) {
        problems.push(format!(
            "  {first_path}: shard count {} is outside 1..={MAX_SHARDS}",
            first.shards
        ));
        return Err(InvalidShardSet(problems));
    }
    let mut seen: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for report in reports {
        seen.entry(report.section.shard)
            .or_default()
            .push(report.path.display().to_string());
    }
    for (number, paths) in &seen {
        if paths.len() > 1 {
            problems.push(format!(
                "  shard {number} appears {} times: {}",
                paths.len(),
                paths.join(", ")
            ));
        }
        if *number == 0 || *number > first.shards {
            problems.push(format!("  shard {number} is outside 1..={}", first.shards));
        }
    }
    let missing: Vec<String> = (1..=first.shards)
        .filter(|number| !seen.contains_key(number))
        .map(|number| number.to_string())
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "  missing shard{} {} of {}",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            first.shards
        ));
    }
    for report in reports {
        let (path, shard) = (report.path.display(), &report.section);
        if let Some(error) = &shard.error {
            problems.push(format!("  {path}: shard {} failed: {error}", shard.shard));
        } else if shard.interrupted || shard.metrics_after.is_none() {
            problems.push(format!(
                "  {path}: shard {} did not finish its run",
                shard.shard
            ));
        }
        if shard.metrics_before.is_none() {
            problems.push(format!(
                "  {path}: shard {} has no \"before\" /metrics read",
                shard.shard
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(InvalidShardSet(problems))
    }
}

/// The earliest and the latest of all shards' reads. Counters only grow,
/// so the order of the totals is the order in which the service answered
/// — no trust in the shards' clocks needed.
fn outer_snapshots(reports: &[ShardReport]) -> anyhow::Result<(Counts, Counts)> {
    let mut reads = Vec::new();
    for report in reports {
        let shard = &report.section;
        for snapshot in [&shard.metrics_before, &shard.metrics_after]
            .into_iter()
            .flatten()
        {
            let counts = Counts::parse(&snapshot.text)
                .with_context(|| format!("{}: /metrics read", report.path.display()))?;
            reads.push((counts.requests.values().sum::<u64>(), counts));
        }
    }
    reads.sort_by_key(|(total, _)| *total);
    let before = reads.first().map(|(_, counts)| counts.clone());
    let after = reads.last().map(|(_, counts)| counts.clone());
    before
        .zip(after)
        .ok_or_else(|| anyhow::anyhow!("no /metrics reads in the shard reports"))
}

/// Where the Prometheus window starts: the last successful scrape at or
/// before `--start-at` — before any shard's first request — that is also
/// after every shard's preload, so `increase()` over the window counts the
/// run's requests and no preload. Without such a scrape (the shards became
/// ready less than a scrape interval before the start) the window cannot
/// exclude the preload: exit 2 rather than a diluted verdict.
async fn window_start(
    prometheus: &Prometheus,
    scope: &Scope,
    start_ms: u64,
    ready_ms: u64,
) -> anyhow::Result<f64> {
    let start = unix_seconds(system_time(start_ms));
    let ready = unix_seconds(system_time(ready_ms));
    let scrape = server::last_scrape_at(prometheus, scope, start).await?;
    match scrape {
        Some(at) if at >= ready => Ok(at),
        _ => Err(InvalidShardSet(vec![format!(
            "  Prometheus at {} has no successful scrape of {} between the end of the last shard's preload ({}) \
             and --start-at ({}); the window would include the preload. Give --start-at a lead of at least \
             the preload time plus the scrape interval ({:?}).",
            prometheus.base(),
            scope.instance,
            start_at(Some(ready_ms)),
            start_at(Some(start_ms)),
            scope.scrape_interval
        )])
        .into()),
    }
}

fn start_at(unix_ms: Option<u64>) -> String {
    unix_ms.map_or("(none)".into(), |ms| {
        humantime::format_rfc3339_millis(system_time(ms)).to_string()
    })
}

fn system_time(unix_ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms)
}

/// One entry of the merged report's `shards` list.
#[derive(Debug, Serialize)]
struct ShardEntry<'a> {
    shard: u64,
    report: String,
    target: &'a str,
    started_at_unix_ms: u64,
    ended_at_unix_ms: u64,
    requests: u64,
}

/// Runs `loadgen merge`.
pub async fn run(options: &MergeOptions, out: &mut impl Write) -> anyhow::Result<Exit> {
    let mut reports = options
        .reports
        .iter()
        .map(|path| read(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    validate(&reports)?;
    reports.sort_by_key(|report| report.section.shard);
    let first = &reports[0].section;
    let mut plan = scenario::parse(&first.scenario_path, &first.scenario_toml, &first.scenario)?;
    plan.seed = first.seed;
    let (merged, shards) = merge_measurements(&reports)?;
    let mut aggregator = Aggregator::from_measurements(&plan, &merged)?;
    let summary = aggregator.summary(&plan, false);
    let window = (
        system_time(merged.started_at_unix_ms),
        system_time(merged.ended_at_unix_ms),
    );

    let target = options
        .target
        .clone()
        .unwrap_or_else(|| first.target.clone());
    let (before, after) = outer_snapshots(&reports)?;
    let client = ClientCounts {
        responses: aggregator.route_counts(),
        uncertain: aggregator.unanswered_by_route(),
        uncertain_lookups: aggregator.unanswered_lookups(),
    };
    let mut notes = vec![SERIES_NOTE.to_owned()];
    let reconciliation = reconcile::reconcile(&after.since(&before), &client);
    if !reconciliation.rows.is_empty() {
        notes.push(format!(
            "{} (server from the shards' /metrics reads of {target}):\n{}",
            if reconciliation.problems.is_empty() {
                "reconciliation details (a 499 matches a client timeout on its route; probes and scrapes are reported, never reconciled)"
            } else {
                "server and client counts differ"
            },
            reconcile::mismatch_table(&reconciliation.rows)
        ));
    }
    let mut checks = check::client_checks(&plan.expect.client, &summary);
    checks.extend(reconciliation.checks);
    if plan.expect.needs_prometheus() {
        let prometheus = Prometheus::new(&options.prometheus);
        let scope = scope::resolve(&prometheus, &Target::resolve(&target).await?).await?;
        let names: Vec<&str> = plan.expect.alerts.iter().map(|a| a.name.as_str()).collect();
        server::check_alert_names(&prometheus, &names).await?;
        let start = first.start_at_unix_ms.unwrap_or(merged.started_at_unix_ms);
        let ready = reports
            .iter()
            .map(|report| report.section.ready_at_unix_ms)
            .max()
            .unwrap_or(0);
        let start_scrape = window_start(&prometheus, &scope, start, ready).await?;
        checks.extend(
            server::server_checks(
                ServerWindow {
                    prometheus: &prometheus,
                    scope: &scope,
                    start_scrape: Some(start_scrape),
                    window,
                },
                &plan.expect,
                &client,
            )
            .await?,
        );
    }

    writeln!(
        out,
        "scenario {} (seed {}) against {}: {} shards merged",
        plan.name,
        plan.seed,
        target,
        reports.len()
    )?;
    let exit = runner::write_results(
        out,
        (!options.quiet).then_some(&summary),
        &checks,
        &notes,
        runner::Ending::Completed,
    )?;

    if options.files.wanted() {
        let server = if plan.expect.needs_prometheus() {
            let prometheus = Prometheus::new(&options.prometheus);
            report::server::fetch_or_note(&prometheus, window.0, window.1, out).await
        } else {
            None
        };
        // One id for the union, from its start (each shard had its own).
        let run_id = crate::telemetry::run_id(window.0);
        let report = Report {
            schema_version: report::SCHEMA_VERSION,
            run_id: &run_id,
            scenario: &plan.name,
            description: &plan.description,
            seed: plan.seed,
            target: &target,
            started_at_unix_ms: merged.started_at_unix_ms,
            ended_at_unix_ms: merged.ended_at_unix_ms,
            summary: &summary,
            checks: &checks,
            passed: exit == Exit::Pass,
            server: server.as_ref(),
        };
        options
            .files
            .write(&report, Some(("shards", serde_json::to_value(shards)?)))?;
    }
    Ok(exit)
}
