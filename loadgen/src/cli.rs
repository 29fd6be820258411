//! Command line (SPEC §8): subcommands, flags, environment variables.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::shard::Shard;

const EXAMPLES: &str = "\
Examples:
  loadgen run scenarios/baseline.toml
  loadgen run scenarios/smoke.toml --target http://127.0.0.1:9000 --out report.json
  loadgen run scenarios/baseline.toml --html report.html --metrics-listen off
  loadgen report report.json --html report.html
  loadgen check scenarios/*.toml
  loadgen run scenarios/smoke.toml --shard 2/3 --start-at +30s --out shard-2.json
  loadgen merge shard-*.json --prometheus http://127.0.0.1:9090 --out merged.json
  loadgen verify-alerts --prometheus http://127.0.0.1:9090
  loadgen verify-dashboard grafana/dashboards/items-service.json
  loadgen verify-dashboard --report report.json   # over that run's window

Exit codes: 0 all checks passed, 1 a check failed, 2 usage/scenario/connection
error, 130 interrupted (partial summary printed).";

#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about = "Replays TOML load scenarios against items-service and verifies what the server and Prometheus saw", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// Base URL of items-service.
    #[arg(long, env = "LOADGEN_TARGET", default_value = "http://127.0.0.1:9000")]
    pub target: String,
}

#[derive(Debug, Args, Clone)]
pub struct PrometheusArgs {
    /// Base URL of Prometheus.
    #[arg(
        long,
        env = "LOADGEN_PROMETHEUS",
        default_value = "http://127.0.0.1:9090"
    )]
    pub prometheus: String,
}

/// Watching a run (SPEC §10): loadgen's own metrics and the HTML report.
#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// Serve loadgen's own Prometheus metrics on this IP:PORT or HOST:PORT
    /// during the run (`off` disables).
    #[arg(
        long,
        env = "LOADGEN_METRICS_LISTEN",
        default_value = crate::telemetry::DEFAULT_LISTEN,
        value_name = "ADDR|off",
        value_parser = crate::telemetry::parse_listen,
    )]
    pub metrics_listen: crate::telemetry::Listen,
    /// Also write the report as a self-contained HTML page with charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario, then evaluate its expectations.
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        prometheus: PrometheusArgs,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Write a JSON report (schema: loadgen/report.schema.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress and no per-operation tables; checks and verdict only.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        watch: WatchArgs,
        /// Run only the I-th of N slices of the scenario (e.g. 2/4) and
        /// defer every check to `loadgen merge`; needs --out.
        #[arg(long, value_name = "I/N", requires = "out")]
        shard: Option<Shard>,
        /// Start the first phase at TIME: RFC 3339 (2026-05-01T12:00:00Z)
        /// or +DURATION from now (+30s); the same for every shard.
        #[arg(long, value_name = "TIME", requires = "shard")]
        start_at: Option<String>,
    },
    /// Render a JSON report (from `run --out`) as a self-contained HTML page.
    Report {
        /// JSON report written by `loadgen run --out`.
        report: PathBuf,
        /// HTML file to write.
        #[arg(long, required = true)]
        html: PathBuf,
    },
    /// Merge shard reports (`run --shard`) and run every check once over the union.
    Merge {
        /// Shard reports: one per shard 1..=N of one run.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Base URL of items-service (default: the one the shards used).
        #[arg(long, env = "LOADGEN_TARGET")]
        target: Option<String>,
        #[command(flatten)]
        prometheus: PrometheusArgs,
        /// Write the merged JSON report (the single-run schema plus `shards`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the merged report as HTML.
        #[arg(long)]
        html: Option<PathBuf>,
        /// No per-operation tables; checks and verdict only.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Validate scenario files without sending anything.
    Check {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Prove that the error alerts fire, reach Alertmanager and resolve.
    VerifyAlerts {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        prometheus: PrometheusArgs,
        /// Base URL of Alertmanager.
        #[arg(
            long,
            env = "LOADGEN_ALERTMANAGER",
            default_value = "http://127.0.0.1:9093"
        )]
        alertmanager: String,
        /// Address to receive Alertmanager's webhook on.
        #[arg(long, env = "LOADGEN_WEBHOOK_LISTEN", default_value = "127.0.0.1:9099")]
        webhook_listen: String,
        /// A TOML plan with your own alert names and rates.
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Run every panel query of the dashboards against Prometheus.
    VerifyDashboard {
        #[command(flatten)]
        prometheus: PrometheusArgs,
        /// Dashboard JSON files (default: grafana/dashboards/*.json).
        dashboards: Vec<PathBuf>,
        /// Evaluate over the window of this `loadgen run --out` report.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        report: Option<PathBuf>,
        /// Window start, Unix seconds (default: 15 minutes before --to).
        #[arg(long)]
        from: Option<f64>,
        /// Window end, Unix seconds (default: now).
        #[arg(long)]
        to: Option<f64>,
    },
}
