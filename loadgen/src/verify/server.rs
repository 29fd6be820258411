//! Server-side verification of a run: reconciliation with the service's own
//! counters, then (when the scenario asks) `[expect.server]`,
//! `[[expect.promql]]` and `[[expect.alerts]]` evaluated in Prometheus over
//! exactly the run window.
//!
//! The window runs from the last scrape before the first phase to the first
//! scrape after the last one, so `increase()` over it counts the run's
//! requests and nothing else (preload excluded), and other traffic before or
//! after does not count.

use std::time::{Duration, Instant, SystemTime};

use crate::{
    engine::aggregate::Aggregator,
    report::Summary,
    runner::Verifier,
    scenario::plan::{AlertState, Expectations},
    verify::check::{percent, Check},
    verify::prometheus::{unix_seconds, Prometheus},
    verify::reconcile::{self, Counts},
};

const SERVICE_JOB: &str = "items-service";
/// Longest wait for Prometheus to scrape the service after a point in time.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

pub struct ServerVerifier {
    http: reqwest::Client,
    target: String,
    prometheus: Option<Prometheus>,
    expect: Expectations,
    before: Option<Counts>,
    /// Set by [`ServerVerifier::recorded`]: the "after" read already made.
    recorded_after: Option<Counts>,
    window_start: Option<f64>,
    notes: Vec<String>,
}

impl ServerVerifier {
    /// Reconciliation always; Prometheus checks when `expect` has any.
    pub fn new(target: &str, prometheus: &str, expect: Expectations) -> Self {
        let prometheus = expect
            .needs_prometheus()
            .then(|| Prometheus::new(prometheus));
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            target: target.trim_end_matches('/').to_owned(),
            prometheus,
            expect,
            before: None,
            recorded_after: None,
            window_start: None,
            notes: Vec::new(),
        }
    }
}

impl ServerVerifier {
    /// For `loadgen merge`: the run is over and its shards read the
    /// service's counters; reconcile those reads instead of reading
    /// `/metrics` now, and start the Prometheus window at `window_start`.
    pub fn recorded(mut self, before: Counts, after: Counts, window_start: Option<f64>) -> Self {
        self.before = Some(before);
        self.recorded_after = Some(after);
        self.window_start = window_start;
        self
    }
}

/// Waits until Prometheus has a scrape of the service newer than `after`.
pub async fn wait_for_scrape(prometheus: &Prometheus, after: f64) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        if let Some(at) = prometheus.last_scrape(SERVICE_JOB).await? {
            if at > after {
                return Ok(at);
            }
        }
        if started.elapsed() > SCRAPE_DEADLINE {
            anyhow::bail!(
                "Prometheus at {} has not scraped job \"{SERVICE_JOB}\" within {SCRAPE_DEADLINE:?}: is it scraping this target?",
                prometheus.base()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The single value of a query that must return one series.
async fn scalar(prometheus: &Prometheus, query: &str, at: f64) -> anyhow::Result<Option<f64>> {
    let samples = prometheus.query(query, Some(at)).await?;
    match samples.as_slice() {
        [] => Ok(None),
        [one] if one.value.is_finite() => Ok(Some(one.value)),
        [_] => Ok(None),
        many => anyhow::bail!(
            "query `{query}` returned {} series; aggregate it to one (e.g. sum(...))",
            many.len()
        ),
    }
}

fn missing(name: &str, expected: String) -> Check {
    Check::new(name, expected, "no data", false)
}

impl ServerVerifier {
    async fn prometheus_checks(
        &self,
        prometheus: &Prometheus,
        window: (SystemTime, SystemTime),
        aggregator: &Aggregator,
    ) -> anyhow::Result<Vec<Check>> {
        let end = wait_for_scrape(prometheus, unix_seconds(window.1)).await?;
        let start = self.window_start.unwrap_or_else(|| unix_seconds(window.0));
        // +1 ms so the scrape at the window start is inside the range.
        let range = format!("{}ms", ((end - start) * 1000.0).ceil() as u64 + 1);
        let job = format!("job=\"{SERVICE_JOB}\"");
        let mut checks = Vec::new();
        let server = &self.expect.server;

        if let Some(max) = server.error_ratio_max {
            let query = format!(
                "sum(increase(http_requests_total{{{job},status_code=~\"5..\"}}[{range}])) / sum(increase(http_requests_total{{{job}}}[{range}]))"
            );
            checks.push(match scalar(prometheus, &query, end).await? {
                Some(ratio) => Check::at_most("server 5xx ratio", ratio, max, percent),
                None => missing("server 5xx ratio", format!("≤ {}", percent(max))),
            });
        }
        if let Some(max) = server.p99_max {
            let query = format!(
                "histogram_quantile(0.99, sum by (le) (increase(http_request_duration_seconds_bucket{{{job},endpoint!=\"/metrics\"}}[{range}])))"
            );
            let show = |seconds: f64| {
                crate::duration::format_latency(Duration::from_secs_f64(seconds.max(0.0)))
            };
            checks.push(match scalar(prometheus, &query, end).await? {
                Some(p99) => Check::at_most("server p99", p99, max.as_secs_f64(), show),
                None => missing("server p99", format!("≤ {}", show(max.as_secs_f64()))),
            });
        }
        if server.cache_hit_ratio_min.is_some() || server.cache_hit_ratio_matches_client.is_some() {
            let hits = format!("sum(increase(redis_app_cache_hit_total{{{job}}}[{range}]))");
            let misses = format!("sum(increase(redis_app_cache_miss_total{{{job}}}[{range}]))");
            let observed =
                scalar(prometheus, &format!("{hits} / ({hits} + {misses})"), end).await?;
            if let Some(min) = server.cache_hit_ratio_min {
                checks.push(match observed {
                    Some(ratio) => Check::at_least("server cache hit ratio", ratio, min, percent),
                    None => missing("server cache hit ratio", format!("≥ {}", percent(min))),
                });
            }
            if let Some(tolerance) = server.cache_hit_ratio_matches_client {
                let counts = aggregator.route_counts();
                let count = |status: &str| {
                    counts
                        .get(&(
                            "GET".to_owned(),
                            "/items/{key}".to_owned(),
                            status.to_owned(),
                        ))
                        .copied()
                        .unwrap_or(0) as f64
                };
                let (client_hits, client_misses) = (count("200"), count("404"));
                let client = client_hits / (client_hits + client_misses).max(1.0);
                checks.push(match observed {
                    Some(ratio) => Check::new(
                        "server cache hit ratio matches client",
                        format!("|server − client| ≤ {tolerance}"),
                        format!(
                            "server {} vs client {} (Δ {:.4})",
                            percent(ratio),
                            percent(client),
                            (ratio - client).abs()
                        ),
                        (ratio - client).abs() <= tolerance,
                    ),
                    None => missing(
                        "server cache hit ratio matches client",
                        format!("|Δ| ≤ {tolerance}"),
                    ),
                });
            }
        }
        for expectation in &self.expect.promql {
            let query = expectation.query.replace("$__range", &range);
            let value = scalar(prometheus, &query, end).await?;
            let expected = match (expectation.min, expectation.max) {
                (Some(min), Some(max)) => format!("{min} ≤ v ≤ {max}"),
                (Some(min), None) => format!("≥ {min}"),
                (None, Some(max)) => format!("≤ {max}"),
                (None, None) => unreachable!("validated: min or max"),
            };
            checks.push(match value {
                Some(v) => Check::new(
                    &expectation.name,
                    expected,
                    format!("{v:.6}"),
                    expectation.min.is_none_or(|min| v >= min)
                        && expectation.max.is_none_or(|max| v <= max),
                ),
                None => missing(&expectation.name, expected),
            });
        }
        for alert in &self.expect.alerts {
            checks.push(
                alert_check(
                    prometheus,
                    &alert.name,
                    alert.state,
                    start,
                    window.1 + alert.within,
                )
                .await?,
            );
        }
        Ok(checks)
    }
}

/// `firing`: seen firing at some point from the run start until `deadline`.
/// `inactive`: never firing from the run start until `deadline`.
async fn alert_check(
    prometheus: &Prometheus,
    name: &str,
    state: AlertState,
    start: f64,
    deadline: SystemTime,
) -> anyhow::Result<Check> {
    let label = format!(
        "alert {name} {}",
        if state == AlertState::Firing {
            "fires"
        } else {
            "stays inactive"
        }
    );
    loop {
        let now = unix_seconds(SystemTime::now());
        let lookback = format!("{}ms", ((now - start) * 1000.0).ceil().max(1.0) as u64);
        let query = format!(
            "max_over_time(ALERTS{{alertname=\"{name}\",alertstate=\"firing\"}}[{lookback}])"
        );
        let fired = !prometheus.query(&query, Some(now)).await?.is_empty();
        let past_deadline = SystemTime::now() >= deadline;
        match state {
            AlertState::Firing if fired => return Ok(Check::new(label, "firing", "firing", true)),
            AlertState::Inactive if fired => {
                return Ok(Check::new(label, "never firing", "fired", false))
            }
            AlertState::Firing if past_deadline => {
                return Ok(Check::new(label, "firing", "never fired", false))
            }
            AlertState::Inactive if past_deadline => {
                return Ok(Check::new(label, "never firing", "never fired", true))
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

impl Verifier for ServerVerifier {
    async fn before(&mut self) -> anyhow::Result<()> {
        self.before = Some(reconcile::read(&self.http, &self.target).await?);
        if let Some(prometheus) = &self.prometheus {
            // A scrape after the preload: the window starts there.
            let now = unix_seconds(SystemTime::now());
            self.window_start = Some(wait_for_scrape(prometheus, now).await?);
        }
        Ok(())
    }

    async fn after(
        &mut self,
        window: (SystemTime, SystemTime),
        aggregator: &Aggregator,
        _summary: &Summary,
    ) -> anyhow::Result<Vec<Check>> {
        let mut checks = Vec::new();
        if let Some(before) = &self.before {
            let after = match self.recorded_after.take() {
                Some(after) => after,
                None => reconcile::read(&self.http, &self.target).await?,
            };
            let (check, mismatches) = reconcile::reconcile(
                &after.since(before),
                &aggregator.route_counts(),
                aggregator.timeouts(),
            );
            if !mismatches.is_empty() {
                self.notes.push(format!(
                    "server and client counts differ (server from {}/metrics):\n{}",
                    self.target,
                    reconcile::mismatch_table(&mismatches)
                ));
            }
            checks.push(check);
        }
        if let Some(prometheus) = self.prometheus.clone() {
            checks.extend(
                self.prometheus_checks(&prometheus, window, aggregator)
                    .await?,
            );
        }
        Ok(checks)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
