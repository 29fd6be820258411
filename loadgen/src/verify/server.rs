//! Server-side verification of a run: reconciliation with the service's own
//! counters, then (when the scenario asks) `[expect.server]`,
//! `[[expect.promql]]` and `[[expect.alerts]]` evaluated in Prometheus over
//! exactly the run window.
//!
//! The window runs from the last scrape before the first phase to the first
//! successful scrape after the last one, so `increase()` over it counts the
//! run's requests and nothing else (preload excluded), and other traffic
//! before or after does not count. Every query is scoped to the scrape
//! target whose address is `--target` ([`crate::verify::scope`]), and the
//! alert names of `[[expect.alerts]]` are checked against the loaded rules
//! before any traffic (exit 2 with the names Prometheus has).

use std::time::{Duration, Instant, SystemTime};

use crate::{
    engine::aggregate::Aggregator,
    engine::client::Target,
    report::Summary,
    runner::Verifier,
    scenario::diagnostic::suggest,
    scenario::plan::{AlertState, Expectations},
    verify::check::{percent, Check},
    verify::prometheus::{unix_seconds, Prometheus},
    verify::reconcile::{self, ClientCounts, Counts},
    verify::scope::{self, Scope, NOT_USER_ROUTES},
};

/// Longest wait for Prometheus to scrape the service after a point in time.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

pub struct ServerVerifier {
    http: reqwest::Client,
    target: String,
    prometheus: Option<Prometheus>,
    expect: Expectations,
    before: Option<Counts>,
    window_start: Option<f64>,
    scope: Option<Scope>,
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
            window_start: None,
            scope: None,
            notes: Vec::new(),
        }
    }
}

/// `timestamp()` of a selector is the scrape time; of `up == 1` it would
/// be the evaluation time, hence the `and`.
fn successful_scrape_query(scope: &Scope) -> String {
    let up = format!("up{{{}}}", scope.selector());
    format!("max(timestamp({up}) and ({up} == 1))")
}

fn no_scrape(prometheus: &Prometheus, scope: &Scope) -> anyhow::Error {
    anyhow::anyhow!(
        "Prometheus at {} has no successful scrape (up == 1) of {} (job {}) within {SCRAPE_DEADLINE:?} after the run",
        prometheus.base(),
        scope.instance,
        scope.job
    )
}

/// The last successful scrape (`up == 1`) of the service at or before
/// `at` (Unix seconds), if Prometheus has one.
pub async fn last_scrape_at(
    prometheus: &Prometheus,
    scope: &Scope,
    at: f64,
) -> anyhow::Result<Option<f64>> {
    Ok(prometheus
        .query(&successful_scrape_query(scope), Some(at))
        .await?
        .first()
        .map(|sample| sample.value)
        .filter(|t| t.is_finite()))
}

/// Waits until Prometheus has a *successful* scrape (`up == 1`) of the
/// service newer than `after`; returns its timestamp (the latest one).
pub async fn wait_for_scrape(
    prometheus: &Prometheus,
    scope: &Scope,
    after: f64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let query = successful_scrape_query(scope);
    loop {
        let latest = prometheus
            .query(&query, None)
            .await?
            .first()
            .map(|sample| sample.value)
            .filter(|t| t.is_finite());
        if let Some(at) = latest.filter(|at| *at > after) {
            return Ok(at);
        }
        if started.elapsed() > SCRAPE_DEADLINE {
            return Err(no_scrape(prometheus, scope));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The *first* successful scrape after `after`, however long ago `after`
/// was: the window of a run ends there, so traffic after the run (e.g.
/// before a late `loadgen merge`) never counts. Scrapes come every
/// `scrape_interval`, so the latest one at `after + k·interval` is the
/// first after `after` for the smallest `k` where it is newer.
pub async fn first_scrape_after(
    prometheus: &Prometheus,
    scope: &Scope,
    after: f64,
) -> anyhow::Result<f64> {
    let latest = wait_for_scrape(prometheus, scope, after).await?;
    let step = scope.scrape_interval.as_secs_f64().max(0.001);
    let give_up = after + SCRAPE_DEADLINE.as_secs_f64();
    let mut at = after + step;
    while at < latest {
        if let Some(scrape) = last_scrape_at(prometheus, scope, at)
            .await?
            .filter(|scrape| *scrape > after)
        {
            return Ok(scrape);
        }
        if at > give_up {
            return Err(no_scrape(prometheus, scope));
        }
        at += step;
    }
    Ok(latest)
}

/// Fails (exit 2) on an `[[expect.alerts]]` name Prometheus has not
/// loaded: a misspelled name would otherwise pass `inactive` for ever.
pub async fn check_alert_names(prometheus: &Prometheus, names: &[&str]) -> anyhow::Result<()> {
    let groups = prometheus.rules().await?;
    let loaded: Vec<&str> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.kind == "alerting")
        .map(|r| r.name.as_str())
        .collect();
    for name in names {
        if !loaded.contains(name) {
            let hint = suggest(name, &loaded)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            anyhow::bail!(
                "[[expect.alerts]] name `{name}` is not an alert rule loaded in Prometheus at {}: {hint}loaded alerts: {}",
                prometheus.base(),
                loaded.join(", ")
            );
        }
    }
    Ok(())
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

/// Where and over what the Prometheus expectations are evaluated.
pub struct ServerWindow<'a> {
    pub prometheus: &'a Prometheus,
    pub scope: &'a Scope,
    /// The scrape the window starts at (Unix seconds), if one was awaited.
    pub start_scrape: Option<f64>,
    /// Wall-clock start and end of the traffic.
    pub window: (SystemTime, SystemTime),
}

/// `[expect.server]`, `[[expect.promql]]` and `[[expect.alerts]]` over a
/// window, from plain client counts (one run or the union of shards).
pub async fn server_checks(
    at: ServerWindow<'_>,
    expect: &Expectations,
    client: &ClientCounts,
) -> anyhow::Result<Vec<Check>> {
    let ServerWindow {
        prometheus,
        scope,
        start_scrape,
        window,
    } = at;
    let end = first_scrape_after(prometheus, scope, unix_seconds(window.1)).await?;
    let start = start_scrape.unwrap_or_else(|| unix_seconds(window.0));
    // +1 ms so the scrape at the window start is inside the range.
    let range = format!("{}ms", ((end - start) * 1000.0).ceil() as u64 + 1);
    let job = scope.selector();
    let mut checks = Vec::new();
    let server = &expect.server;

    if let Some(max) = server.error_ratio_max {
        // User routes only: probes and scrapes would dilute the ratio.
        // A 499 (client gave up) is an error, as in the alert rules.
        let query = format!(
            "sum(increase(http_requests_total{{{job},{NOT_USER_ROUTES},status_code=~\"5..|499\"}}[{range}])) / sum(increase(http_requests_total{{{job},{NOT_USER_ROUTES}}}[{range}]))"
        );
        checks.push(match scalar(prometheus, &query, end).await? {
            Some(ratio) => Check::at_most("server error ratio (5xx, 499)", ratio, max, percent),
            None => missing(
                "server error ratio (5xx, 499)",
                format!("≤ {}", percent(max)),
            ),
        });
    }
    if let Some(max) = server.p99_max {
        let query = format!(
            "histogram_quantile(0.99, sum by (le) (increase(http_request_duration_seconds_bucket{{{job},{NOT_USER_ROUTES}}}[{range}])))"
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
        let observed = scalar(prometheus, &format!("{hits} / ({hits} + {misses})"), end).await?;
        if let Some(min) = server.cache_hit_ratio_min {
            checks.push(match observed {
                Some(ratio) => Check::at_least("server cache hit ratio", ratio, min, percent),
                None => missing("server cache hit ratio", format!("≥ {}", percent(min))),
            });
        }
        if let Some(tolerance) = server.cache_hit_ratio_matches_client {
            let counts = &client.responses;
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
    for expectation in &expect.promql {
        // `$__target`: the run's own job and instance (other instances of
        // the job must not decide this run's verdict).
        let query = expectation
            .query
            .replace("$__range", &range)
            .replace("$__target", &job);
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
    for alert in &expect.alerts {
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

/// `firing`: not firing at the run start, firing at some point from then
/// until `deadline` (a transition inside the window). `inactive`: neither
/// pending nor firing at any evaluation from the run start until
/// `deadline`.
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
    let firing = format!("ALERTS{{alertname=\"{name}\",alertstate=\"firing\"}}");
    if state == AlertState::Firing && !prometheus.query(&firing, Some(start)).await?.is_empty() {
        return Ok(Check::new(
            label,
            "not firing at the start, then firing",
            "already firing when the run started",
            false,
        ));
    }
    let selector = match state {
        AlertState::Firing => firing,
        AlertState::Inactive => format!("ALERTS{{alertname=\"{name}\"}}"),
    };
    // Over [start, deadline] only: checks run one after another, so a
    // later check may start past its own deadline, and what an alert did
    // after `within` must not count (either way).
    let deadline_s = unix_seconds(deadline);
    loop {
        let at = unix_seconds(SystemTime::now()).min(deadline_s);
        let lookback = format!("{}ms", ((at - start) * 1000.0).ceil().max(1.0) as u64);
        let seen = prometheus
            .query(
                &format!("max by (alertstate) (max_over_time({selector}[{lookback}]))"),
                Some(at),
            )
            .await?;
        let states: Vec<&str> = seen
            .iter()
            .filter_map(|s| s.labels.get("alertstate").map(String::as_str))
            .collect();
        let past_deadline = SystemTime::now() >= deadline;
        match state {
            AlertState::Firing if !states.is_empty() => {
                return Ok(Check::new(
                    label,
                    "not firing at the start, then firing",
                    "fired during the run",
                    true,
                ))
            }
            AlertState::Inactive if !states.is_empty() => {
                return Ok(Check::new(
                    label,
                    "never pending or firing",
                    format!("was {}", states.join(" and ")),
                    false,
                ))
            }
            AlertState::Firing if past_deadline => {
                return Ok(Check::new(
                    label,
                    "not firing at the start, then firing",
                    "never fired",
                    false,
                ))
            }
            AlertState::Inactive if past_deadline => {
                return Ok(Check::new(
                    label,
                    "never pending or firing",
                    "never pending or firing",
                    true,
                ))
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

impl Verifier for ServerVerifier {
    async fn preflight(&mut self) -> anyhow::Result<()> {
        if let Some(prometheus) = &self.prometheus {
            let target = Target::resolve(&self.target).await?;
            self.scope = Some(scope::resolve(prometheus, &target).await?);
            let names: Vec<&str> = self.expect.alerts.iter().map(|a| a.name.as_str()).collect();
            check_alert_names(prometheus, &names).await?;
        }
        Ok(())
    }

    async fn before(&mut self) -> anyhow::Result<()> {
        self.before = Some(reconcile::read(&self.http, &self.target).await?);
        if let (Some(prometheus), Some(scope)) = (&self.prometheus, &self.scope) {
            // A scrape after the preload: the window starts there.
            let now = unix_seconds(SystemTime::now());
            self.window_start = Some(wait_for_scrape(prometheus, scope, now).await?);
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
        // Plain counts from here on: `loadgen merge` has the same shape.
        let client = ClientCounts {
            responses: aggregator.route_counts(),
            uncertain: aggregator.unanswered_by_route(),
            uncertain_lookups: aggregator.unanswered_lookups(),
        };
        if let Some(before) = &self.before {
            let after = reconcile::read(&self.http, &self.target).await?;
            let result = reconcile::reconcile(&after.since(before), &client);
            if !result.rows.is_empty() {
                self.notes.push(format!(
                    "{} (server from {}/metrics):\n{}",
                    if result.problems.is_empty() {
                        "reconciliation details (a 499 matches a client timeout on its route; probes and scrapes are reported, never reconciled)"
                    } else {
                        "server and client counts differ"
                    },
                    self.target,
                    reconcile::mismatch_table(&result.rows)
                ));
            }
            checks.extend(result.checks);
        }
        if let Some(prometheus) = self.prometheus.clone() {
            checks.extend(
                server_checks(
                    ServerWindow {
                        prometheus: &prometheus,
                        scope: self.scope.as_ref().expect("resolved in preflight()"),
                        start_scrape: self.window_start,
                        window,
                    },
                    &self.expect,
                    &client,
                )
                .await?,
            );
        }
        Ok(checks)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
