//! `loadgen run`: preflight, preload, the phases in order, then the summary,
//! the checks and the report. Server-side verification plugs in through
//! [`crate::verify::server`].

use std::{
    io::Write,
    net::SocketAddr,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    engine::aggregate::{self, Aggregator},
    engine::client::{self, Target},
    engine::executor::{self, PhaseContext},
    engine::preload,
    engine::progress::Progress,
    engine::request::RequestGen,
    engine::shard::Shard,
    report::{self, Report, Summary},
    scenario::plan::{Executor, OpKind, Plan},
    telemetry::{self, scrape, RunLabels},
    verify::check::{self, Check},
    verify::prometheus::{unix_seconds, Prometheus},
    Exit,
};

/// Options of `loadgen run` beyond the scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub target: String,
    pub prometheus: String,
    pub seed: Option<u64>,
    /// `--out` and `--html`.
    pub files: report::ReportFiles,
    pub quiet: bool,
    /// Serve loadgen's own metrics there during the run (`None`: off).
    pub metrics_listen: Option<SocketAddr>,
    /// The slice of the run to send (`--shard I/N`); [`Shard::WHOLE`] by default.
    pub shard: Shard,
}

/// Everything a finished (or interrupted) run produced.
#[derive(Debug)]
pub struct RunResult {
    pub summary: Summary,
    pub checks: Vec<Check>,
    pub exit: Exit,
}

/// Upper bound of the delete pool for closed-loop phases, whose request
/// count is not known in advance (deletes past the pool expect 404).
const CLOSED_LOOP_DELETE_POOL: f64 = 20_000.0;

/// Size of the deletable-key pool: enough for every delete an open-loop
/// phase schedules (with margin), a fixed budget for closed-loop phases.
fn delete_pool_size(plan: &Plan) -> u64 {
    let total: u32 = plan.mix.iter().sum();
    let share = f64::from(plan.mix[OpKind::Delete.index()]) / f64::from(total.max(1));
    if share == 0.0 {
        return 0;
    }
    let expected: f64 = plan
        .phases
        .iter()
        .map(|phase| match &phase.executor {
            Executor::ConstantArrivalRate { rate, duration } => {
                rate * duration.as_secs_f64() * share
            }
            Executor::RampingArrivalRate { start_rate, stages } => {
                executor::RampingArrivalRate::new(*start_rate, stages).total() * share
            }
            _ => CLOSED_LOOP_DELETE_POOL,
        })
        .sum();
    (expected * 1.2 + 16.0).min(200_000.0).ceil() as u64
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Hooks for server-side verification around the measured window.
#[allow(async_fn_in_trait)]
pub trait Verifier {
    /// Called before anything is sent (preload included): configuration
    /// problems of the server side are exit 2 without traffic.
    async fn preflight(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Called right before the first phase.
    async fn before(&mut self) -> anyhow::Result<()>;
    /// Called after the last phase with the client's view of the run.
    async fn after(
        &mut self,
        window: (SystemTime, SystemTime),
        aggregator: &Aggregator,
        summary: &Summary,
    ) -> anyhow::Result<Vec<Check>>;
    /// Extra explanations to print under the checks (e.g. a diff table).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether `[expect.client]` is checked here; a shard defers it to the
    /// merge, since only the union has the scenario's percentiles and rates.
    fn checks_client(&self) -> bool {
        true
    }
    /// An extra top-level object of the JSON report, as `(key, value)`
    /// (a shard's `shard` section); called when the report is written.
    fn report_section(
        &self,
        _finished: &Finished<'_>,
    ) -> anyhow::Result<Option<(&'static str, serde_json::Value)>> {
        Ok(None)
    }
}

/// What a run left behind, for [`Verifier::report_section`].
pub struct Finished<'a> {
    pub plan: &'a Plan,
    pub aggregator: &'a Aggregator,
    pub summary: &'a Summary,
    /// Wall-clock time at which the aggregator started.
    pub started: SystemTime,
    /// Why the run stopped early, if it did.
    pub fatal: Option<&'a str>,
}

/// Runs `plan` and prints the summary and checks to `out`.
pub async fn run(
    mut plan: Plan,
    options: &RunOptions,
    verifier: &mut impl Verifier,
    cancel: CancellationToken,
    out: &mut impl Write,
) -> anyhow::Result<RunResult> {
    if let Some(seed) = options.seed {
        plan.seed = seed;
    }
    // An unwritable output is found now, not after the whole run.
    for path in options.files.paths() {
        check_writable(path)?;
    }
    let run_id = telemetry::run_id(SystemTime::now());
    // Bound first: a busy port fails the run before anything is sent.
    let metrics = telemetry::serve(
        options.metrics_listen,
        RunLabels {
            run_id: run_id.clone(),
            scenario: plan.name.clone(),
            seed: plan.seed,
            target: options.target.trim_end_matches('/').to_owned(),
        },
    )
    .await?;
    // Every series the run can know of exists (at 0) from here on.
    let recorder = metrics.as_ref().map(|m| m.telemetry().recorder(&plan));
    let series_created_at = unix_seconds(SystemTime::now());
    let target = Arc::new(Target::resolve(&options.target).await?);
    client::preflight(&target).await?;
    verifier.preflight().await?;
    let delete_pool = delete_pool_size(&plan);
    let requests = RequestGen::new(&plan, delete_pool).for_shard(options.shard);
    let mut progress = Progress::new(!options.quiet);
    preload::preload(
        Arc::clone(&target),
        &requests,
        plan.keyspace.preload,
        delete_pool,
        plan.request_timeout,
        &mut progress,
    )
    .await
    .context("preload")?;
    verifier.before().await?;
    let prometheus = Prometheus::new(&options.prometheus);
    if let Some(metrics) = &metrics {
        // Prometheus sees the series at 0 before the first request, so
        // rate() and increase() count the first requests too.
        let scraped =
            scrape::wait_for_scrape(&prometheus, metrics.addr(), series_created_at, &cancel).await;
        if let scrape::FinalScrape::Missed { instance, waited } = scraped {
            writeln!(
                out,
                "warning: Prometheus did not scrape loadgen's metrics (job \"{}\", instance {instance}) within {waited:.0?} before the run: rate() may miss the first requests",
                scrape::JOB
            )?;
        }
    }

    let (events, receiver) = mpsc::channel(64 * 1024);
    let names = plan.phases.iter().map(|phase| phase.name.clone()).collect();
    let aggregator_task = tokio::spawn(aggregate::run(
        Aggregator::new(&plan, progress).with_telemetry(recorder),
        receiver,
        names,
        cancel.clone(),
    ));
    let started = SystemTime::now();
    // Phase k starts at the run start plus the planned durations of the
    // phases before it (or when phase k−1 has drained, if later) — never
    // right after this process's own last arrival: a shard's last arrival
    // comes up to (N−1)/rate before the single process's, and shards must
    // start every phase together (SPEC §11).
    let timeline = tokio::time::Instant::now();
    let mut planned = std::time::Duration::ZERO;
    for (index, phase) in plan.phases.iter().enumerate() {
        tokio::select! {
            () = tokio::time::sleep_until(timeline + planned) => {}
            () = cancel.cancelled() => {}
        }
        if cancel.is_cancelled() {
            break;
        }
        planned += phase.executor.duration();
        executor::run_phase(PhaseContext {
            index,
            phase: phase.clone(),
            target: Arc::clone(&target),
            requests: requests.clone(),
            seed: plan.seed,
            timeout: plan.request_timeout,
            events: events.clone(),
            cancel: cancel.clone(),
            live: Arc::default(),
        })
        .await;
    }
    drop(events);
    let ended = SystemTime::now();
    let mut aggregator = aggregator_task.await.context("aggregator task")?;
    let metrics_final_at = unix_seconds(SystemTime::now());
    let fatal = aggregator.fatal();
    let mut notes = Vec::new();
    if let (Some(metrics), None) = (&metrics, &fatal) {
        // Ctrl-C here interrupts the run as well: exit 130, with a warning.
        let scraped = if cancel.is_cancelled() {
            scrape::FinalScrape::Cancelled
        } else {
            scrape::wait_for_scrape(&prometheus, metrics.addr(), metrics_final_at, &cancel).await
        };
        notes.extend(scraped.warning());
    }
    let interrupted = cancel.is_cancelled() && fatal.is_none();

    let summary = aggregator.summary(&plan, interrupted);
    let mut checks = Vec::new();
    if !interrupted && fatal.is_none() {
        if verifier.checks_client() {
            checks.extend(check::client_checks(&plan.expect.client, &summary));
        }
        checks.extend(
            verifier
                .after((started, ended), &aggregator, &summary)
                .await?,
        );
    }

    notes.extend(verifier.notes());

    writeln!(
        out,
        "scenario {} (seed {}) against {}",
        plan.name, plan.seed, target.base
    )?;
    let exit = write_results(
        out,
        (!options.quiet).then_some(&summary),
        &checks,
        &notes,
        match (fatal.as_deref(), interrupted) {
            (Some(message), _) => Ending::Fatal(message),
            (None, true) => Ending::Interrupted,
            (None, false) if !verifier.checks_client() => Ending::ChecksDeferred,
            (None, false) => Ending::Completed,
        },
    )?;
    if options.files.wanted() {
        let server = if plan.expect.needs_prometheus() && !interrupted && fatal.is_none() {
            report::server::fetch_or_note(&prometheus, started, ended, out).await
        } else {
            None
        };
        let section = verifier.report_section(&Finished {
            plan: &plan,
            aggregator: &aggregator,
            summary: &summary,
            started,
            fatal: fatal.as_deref(),
        })?;
        let report = Report {
            schema_version: report::SCHEMA_VERSION,
            run_id: &run_id,
            scenario: &plan.name,
            description: &plan.description,
            seed: plan.seed,
            target: &target.base,
            started_at_unix_ms: unix_ms(started),
            ended_at_unix_ms: unix_ms(ended),
            summary: &summary,
            checks: &checks,
            passed: exit == Exit::Pass,
            server: server.as_ref(),
        };
        options.files.write(&report, section)?;
    }
    Ok(RunResult {
        summary,
        checks,
        exit,
    })
}

/// Fails before any load when `--out` or `--html` cannot be written (a missing
/// directory, a volume the user may not write — e.g. a Kubernetes volume
/// that ignores `fsGroup`): finding out after the whole run wastes it.
/// Probes with a file next to it, so an existing report is left alone.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{}: not a file name", path.display()))?;
    let probe = path.with_file_name(format!(
        ".{}.probe-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "cannot write the report to {}: checked before the run",
                path.display()
            )
        })
}

/// How a run ended, for its verdict line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending<'a> {
    /// The checks decide.
    Completed,
    /// A shard: it ran its part, the merge checks the union.
    ChecksDeferred,
    Interrupted,
    Fatal(&'a str),
}

/// Prints the summary (when given), the checks, the notes and the verdict
/// line, and maps the verdict to the exit code: a fatal error wins, then an
/// interruption, then the checks.
pub fn write_results(
    out: &mut impl Write,
    summary: Option<&Summary>,
    checks: &[Check],
    notes: &[String],
    ending: Ending<'_>,
) -> std::io::Result<Exit> {
    let (fatal, interrupted) = match ending {
        Ending::Fatal(message) => (Some(message), false),
        Ending::Interrupted => (None, true),
        Ending::Completed | Ending::ChecksDeferred => (None, false),
    };
    if let Some(summary) = summary {
        report::write_summary(out, summary)?;
    }
    if !interrupted {
        // Interrupted: the final line says the checks were not evaluated.
        report::write_checks(out, checks)?;
    }
    for note in notes {
        writeln!(out, "{note}")?;
    }
    let passed = checks.iter().all(|check| check.passed);
    let exit = if let Some(message) = fatal {
        writeln!(out, "error: {message}")?;
        Exit::Error
    } else if interrupted {
        writeln!(
            out,
            "interrupted: partial results above, checks not evaluated"
        )?;
        Exit::Interrupted
    } else if ending == Ending::ChecksDeferred {
        writeln!(
            out,
            "DONE: checks deferred to `loadgen merge` (this shard checked nothing)"
        )?;
        Exit::Pass
    } else if passed {
        writeln!(out, "PASS: all {} checks passed", checks.len())?;
        Exit::Pass
    } else {
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        writeln!(
            out,
            "FAIL: {} of {} checks failed: {}",
            failed.len(),
            checks.len(),
            failed.join(", ")
        )?;
        Exit::CheckFailed
    };
    Ok(exit)
}
