//! `loadgen run`: preflight, preload, the phases in order, then the summary,
//! the checks and the report. Server-side verification plugs in through
//! [`crate::verify::server`].

use std::{
    io::Write,
    path::PathBuf,
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
    verify::check::{self, Check},
    Exit,
};

/// Options of `loadgen run` beyond the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub target: String,
    pub prometheus: String,
    pub seed: Option<u64>,
    pub out: Option<PathBuf>,
    pub quiet: bool,
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
    if let Some(path) = &options.out {
        check_writable(path)?;
    }
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

    let (events, receiver) = mpsc::channel(64 * 1024);
    let names = plan.phases.iter().map(|phase| phase.name.clone()).collect();
    let aggregator_task = tokio::spawn(aggregate::run(
        Aggregator::new(&plan, progress),
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
        })
        .await;
    }
    drop(events);
    let ended = SystemTime::now();
    let mut aggregator = aggregator_task.await.context("aggregator task")?;
    let fatal = aggregator.fatal();
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

    writeln!(
        out,
        "scenario {} (seed {}) against {}",
        plan.name, plan.seed, target.base
    )?;
    let exit = write_results(
        out,
        (!options.quiet).then_some(&summary),
        &checks,
        &verifier.notes(),
        match (fatal.as_deref(), interrupted) {
            (Some(message), _) => Ending::Fatal(message),
            (None, true) => Ending::Interrupted,
            (None, false) if !verifier.checks_client() => Ending::ChecksDeferred,
            (None, false) => Ending::Completed,
        },
    )?;
    if let Some(path) = &options.out {
        let section = verifier.report_section(&Finished {
            plan: &plan,
            aggregator: &aggregator,
            summary: &summary,
            started,
            fatal: fatal.as_deref(),
        })?;
        let report = Report {
            schema_version: report::SCHEMA_VERSION,
            scenario: &plan.name,
            description: &plan.description,
            seed: plan.seed,
            target: &target.base,
            started_at_unix_ms: unix_ms(started),
            ended_at_unix_ms: unix_ms(ended),
            summary: &summary,
            checks: &checks,
            passed: exit == Exit::Pass,
        };
        write_report(path, &report, section)?;
    }
    Ok(RunResult {
        summary,
        checks,
        exit,
    })
}

/// Fails before any load when `--out` cannot be written (a missing
/// directory, a volume the user may not write — e.g. a Kubernetes volume
/// that ignores `fsGroup`): finding out after the whole run wastes it.
/// Probes with a file next to it, so an existing report is left alone.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("--out {}: not a file name", path.display()))?;
    let probe = path.with_file_name(format!(
        ".{}.probe-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "--out {}: cannot write there (checked before the run)",
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
    report::write_checks(out, checks)?;
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

/// Writes the JSON report, with an extra top-level section if given.
pub fn write_report(
    path: &std::path::Path,
    report: &Report<'_>,
    section: Option<(&str, serde_json::Value)>,
) -> anyhow::Result<()> {
    let mut json = serde_json::to_value(report)?;
    if let (Some((key, value)), Some(object)) = (section, json.as_object_mut()) {
        object.insert(key.to_owned(), value);
    }
    std::fs::write(path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing the report to {}", path.display()))
}
