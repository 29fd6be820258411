//! What `loadgen run --shard I/N` does around the load instead of
//! verifying: wait for the common start instant (exit 2 if its preload
//! finished too late), read the service's `/metrics` right before the start
//! and after the end, and write the `shard` section of the report. Every
//! check — client expectations included, since only the union has the
//! scenario's percentiles — is deferred to `loadgen merge`.

use std::time::{Duration, SystemTime};

use anyhow::Context;

use tokio_util::sync::CancellationToken;

use super::{scenario_hash, MetricsSnapshot, ShardSection};
use crate::{
    engine::aggregate::{unix_ms, Aggregator},
    engine::shard::Shard,
    report::Summary,
    runner::{Finished, Verifier},
    verify::check::Check,
    verify::reconcile::{self, Counts},
};

/// A shard must have finished its preload this long before `--start-at`,
/// so that every shard's preload is over when the "before" snapshots are
/// read (at [`SNAPSHOT_LEAD`] before the start).
pub const READY_MARGIN: Duration = Duration::from_secs(1);
/// The "before" `/metrics` read happens this long before the start: after
/// every shard's preload, before any shard's first request.
pub const SNAPSHOT_LEAD: Duration = Duration::from_millis(500);

/// The scenario a shard runs, as the merge must see it.
pub struct ShardScenario {
    pub path: String,
    pub toml: String,
}

pub struct ShardVerifier {
    http: reqwest::Client,
    target: String,
    shard: Shard,
    start_at: Option<SystemTime>,
    scenario: ShardScenario,
    cancel: CancellationToken,
    ready_at: Option<SystemTime>,
    before: Option<MetricsSnapshot>,
    after: Option<MetricsSnapshot>,
}

/// A shard whose preload ended after the latest moment it could start on time.
#[derive(Debug, thiserror::Error)]
#[error(
    "shard {shard} was ready at {ready} (preload done), {late:.1} s after its deadline {deadline} \
     (--start-at {start} minus {margin:?}): the shards would not start together; \
     give --start-at more lead time"
)]
pub struct TooLate {
    shard: Shard,
    ready: String,
    deadline: String,
    start: String,
    late: f64,
    margin: Duration,
}

impl ShardVerifier {
    pub fn new(
        target: &str,
        shard: Shard,
        start_at: Option<SystemTime>,
        scenario: ShardScenario,
        cancel: CancellationToken,
    ) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10));
        Self {
            http: http.build().expect("http client"),
            target: target.trim_end_matches('/').to_owned(),
            shard,
            start_at,
            scenario,
            cancel,
            ready_at: None,
            before: None,
            after: None,
        }
    }

    async fn snapshot(&self) -> anyhow::Result<MetricsSnapshot> {
        let at = SystemTime::now();
        let text = reconcile::read_text(&self.http, &self.target).await?;
        // The merge reconciles with these: fail now if they are unusable.
        Counts::parse(&text)?;
        Ok(MetricsSnapshot {
            at_unix_ms: unix_ms(at),
            text,
        })
    }

    /// Sleeps until the wall-clock time `at` (or until cancelled).
    async fn sleep_until(&self, at: SystemTime) {
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.cancel.cancelled() => {}
        }
    }
}

/// The verifier of `run --shard`: reads the scenario file again (the merge
/// needs its exact text) and resolves `--start-at`. More than one shard
/// needs a start time: without it a shard could read keys another has not
/// preloaded yet.
pub fn shard_verifier(
    scenario: &std::path::Path,
    options: &crate::runner::RunOptions,
    shard: Shard,
    start_at: Option<String>,
    cancel: &CancellationToken,
) -> anyhow::Result<ShardVerifier> {
    let start_at = start_at
        .map(|text| super::start_at::parse(&text, SystemTime::now()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if start_at.is_none() && shard.count() > 1 {
        anyhow::bail!(
            "--shard {shard} needs --start-at: all {} shards must finish their preload before any starts",
            shard.count()
        );
    }
    let toml = std::fs::read_to_string(scenario)
        .with_context(|| format!("reading {}", scenario.display()))?;
    Ok(ShardVerifier::new(
        &options.target,
        shard,
        start_at,
        ShardScenario {
            path: scenario.display().to_string(),
            toml,
        },
        cancel.clone(),
    ))
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl Verifier for ShardVerifier {
    async fn before(&mut self) -> anyhow::Result<()> {
        let ready = SystemTime::now();
        self.ready_at = Some(ready);
        if let Some(start) = self.start_at {
            let deadline = start - READY_MARGIN;
            if let Ok(late) = ready.duration_since(deadline) {
                return Err(TooLate {
                    shard: self.shard,
                    ready: rfc3339(ready),
                    deadline: rfc3339(deadline),
                    start: rfc3339(start),
                    late: late.as_secs_f64(),
                    margin: READY_MARGIN,
                }
                .into());
            }
            self.sleep_until(start - SNAPSHOT_LEAD).await;
        }
        self.before = Some(self.snapshot().await?);
        if let Some(start) = self.start_at {
            self.sleep_until(start).await;
        }
        Ok(())
    }

    async fn after(
        &mut self,
        _window: (SystemTime, SystemTime),
        _aggregator: &Aggregator,
        _summary: &Summary,
    ) -> anyhow::Result<Vec<Check>> {
        self.after = Some(self.snapshot().await?);
        Ok(Vec::new())
    }

    fn checks_client(&self) -> bool {
        false
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "shard {}: client-side measurement only; every check (client expectations over the union, \
             reconciliation, [expect.server], promql, alerts) is deferred to `loadgen merge`",
            self.shard
        )]
    }

    fn report_section(
        &self,
        finished: &Finished<'_>,
    ) -> anyhow::Result<Option<(&'static str, serde_json::Value)>> {
        let section = ShardSection {
            shard: self.shard.number(),
            shards: self.shard.count(),
            loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
            scenario: finished.plan.name.clone(),
            scenario_hash: scenario_hash(self.scenario.toml.as_bytes()),
            scenario_toml: self.scenario.toml.clone(),
            scenario_path: self.scenario.path.clone(),
            seed: finished.plan.seed,
            target: self.target.clone(),
            start_at_unix_ms: self.start_at.map(unix_ms),
            ready_at_unix_ms: self.ready_at.map_or(0, unix_ms),
            checks_deferred: true,
            metrics_before: self.before.clone(),
            metrics_after: self.after.clone(),
            interrupted: finished.summary.interrupted,
            error: finished.fatal.map(str::to_owned),
            measurements: finished
                .aggregator
                .measurements(finished.plan, finished.started),
        };
        Ok(Some(("shard", serde_json::to_value(section)?)))
    }
}
