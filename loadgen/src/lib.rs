//! loadgen: replays TOML scenarios against items-service with open- and
//! closed-loop executors, measures exact latencies, and (with Prometheus)
//! verifies that the server saw what the client sent.
//!
//! The tree follows the path of a scenario, top to bottom; a layer uses
//! the ones beside or below it, never above:
//! - [`scenario`]: TOML file → validated [`scenario::plan::Plan`], with
//!   `file:line:column` diagnostics;
//! - [`engine`]: executors, the HTTP client, requests and keys, samples and
//!   the one aggregator that owns every histogram and the live progress;
//! - [`verify`]: the Prometheus/Alertmanager client, reconciliation with the
//!   service's counters, expectations, `verify-alerts`, `verify-dashboard`;
//! - [`report`]: the summary model and its renderings (terminal tables,
//!   JSON, the self-contained HTML page);
//! - [`telemetry`]: loadgen's own Prometheus metrics, fed by the
//!   aggregator and served during a run;
//! - [`runner`] ties them together for `loadgen run`, [`distributed`] for
//!   `run --shard` and `loadgen merge`; [`cli`] is the
//!   command line and [`duration`] the one duration syntax everywhere.
//!
//! `main.rs` only parses arguments and calls [`main_with`]; tests call the
//! same function with their own output buffer and cancellation token.

pub mod cli;
pub mod distributed;
pub mod duration;
pub mod engine;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod telemetry;
pub mod verify;

use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::cli::Command;

/// Process exit codes of SPEC §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Pass = 0,
    CheckFailed = 1,
    Error = 2,
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Runs one command; errors are printed to `err` and mapped to exit 2.
pub async fn main_with(
    command: Command,
    cancel: CancellationToken,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Exit {
    match dispatch(command, cancel, out).await {
        Ok(exit) => exit,
        // Scenario diagnostics carry their own `file:line:col: error:` prefix.
        Err(error) if error.is::<scenario::ScenarioErrors>() || error.is::<InvalidScenarios>() => {
            let _ = writeln!(err, "{error}");
            Exit::Error
        }
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            Exit::Error
        }
    }
}

/// Every problem of every file given to `loadgen check`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InvalidScenarios(String);

async fn dispatch(
    command: Command,
    cancel: CancellationToken,
    out: &mut impl Write,
) -> anyhow::Result<Exit> {
    match command {
        Command::Run {
            scenario,
            target,
            prometheus,
            seed,
            out: report,
            quiet,
            watch,
            shard,
            start_at,
        } => {
            let plan = scenario::load(&scenario)?;
            let options = runner::RunOptions {
                target: target.target,
                prometheus: prometheus.prometheus,
                seed,
                files: report::ReportFiles {
                    json: report,
                    html: watch.html,
                },
                quiet,
                metrics_listen: watch.metrics_listen.0,
                shard: shard.unwrap_or(engine::shard::Shard::WHOLE),
            };
            if let Some(shard) = shard {
                let mut verifier = distributed::shard_run::shard_verifier(
                    &scenario, &options, shard, start_at, &cancel,
                )?;
                let result = runner::run(plan, &options, &mut verifier, cancel, out).await?;
                return Ok(result.exit);
            }
            let mut verifier = verify::server::ServerVerifier::new(
                &options.target,
                &options.prometheus,
                plan.expect.clone(),
            );
            let result = runner::run(plan, &options, &mut verifier, cancel, out).await?;
            Ok(result.exit)
        }
        Command::Report { report, html } => {
            report::html::render_file(&report, &html)?;
            writeln!(out, "wrote {}", html.display())?;
            Ok(Exit::Pass)
        }
        Command::Merge {
            reports,
            target,
            prometheus,
            out: report,
            html,
            quiet,
        } => {
            let options = distributed::merge::MergeOptions {
                reports,
                target,
                prometheus: prometheus.prometheus,
                files: report::ReportFiles { json: report, html },
                quiet,
            };
            distributed::merge::run(&options, out).await
        }
        Command::Check { scenarios } => {
            let mut failed = Vec::new();
            for path in &scenarios {
                match scenario::load(path) {
                    Ok(plan) => writeln!(
                        out,
                        "{}: ok ({} phase{}, {:.0?})",
                        path.display(),
                        plan.phases.len(),
                        if plan.phases.len() == 1 { "" } else { "s" },
                        plan.total_duration()
                    )?,
                    Err(errors) => failed.push(errors.to_string()),
                }
            }
            if failed.is_empty() {
                Ok(Exit::Pass)
            } else {
                Err(InvalidScenarios(failed.join("\n\n")).into())
            }
        }
        Command::VerifyAlerts {
            target,
            prometheus,
            alertmanager,
            webhook_listen,
            plan,
        } => {
            let plan = match plan {
                Some(path) => verify::alert_plan::AlertPlan::load(&path)?,
                None => verify::alert_plan::AlertPlan::default(),
            };
            let options = verify::alerts::VerifyAlertsOptions {
                target: target.target,
                prometheus: prometheus.prometheus,
                alertmanager,
                webhook_listen,
                plan,
                quiet_output: false,
            };
            verify::alerts::run(options, cancel, out).await
        }
        Command::VerifyDashboard {
            prometheus,
            dashboards,
            report,
            from,
            to,
        } => {
            use verify::dashboard::Window;
            let window = match (report, from, to) {
                (Some(path), _, _) => Window::from_report(&path)?,
                (None, None, None) => Window::recent(),
                (None, from, to) => {
                    let to = to.unwrap_or(Window::recent().to);
                    Window::new(from.unwrap_or(to - 15.0 * 60.0), to)?
                }
            };
            let prometheus = verify::prometheus::Prometheus::new(&prometheus.prometheus);
            verify::dashboard::run(&prometheus, &dashboards, window, out).await
        }
    }
}
