//! `loadgen verify-alerts`: drives the error alerts through their whole
//! life against the real stack and times every transition.
//!
//! Steps (SPEC §8): preflight (rules healthy, the target scraped and up,
//! alerts loaded with the planned labels and `for`, thresholds between the
//! planned rates, fault injection on; no traffic yet) → quiet (normal
//! 200/201/404 traffic fires nothing) → below threshold (5xx at about half
//! the warning threshold: no warning alert even goes pending) →
//! warning (5xx between the thresholds fire the warning alerts, not the
//! critical one) → escalation (the critical alert fires) → delivery (all in
//! Alertmanager and received by our webhook) → resolve (errors stop,
//! everything resolves). Each deadline comes from the rule's window, `for`
//! and `keep_firing_for` as loaded in Prometheus, and every alert must
//! have spent at least its `for` pending. Only the plan's alerts are
//! watched: Watchdog and other alerts never disturb a step.

use std::{
    collections::BTreeMap,
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    engine::client::{send_with, Target},
    engine::progress::Progress,
    engine::request::PlannedRequest,
    scenario::plan::OpKind,
    verify::alert_plan::{
        below_duration, expectation_problems, fire_deadline, label_problems, resolve,
        resolve_deadline, AlertPlan, AlertRule,
    },
    verify::check::Check,
    verify::prometheus::{Alertmanager, Prometheus},
    verify::webhook::{self, Inbox},
    Exit,
};

const POLL: Duration = Duration::from_secs(1);

/// Options of `verify-alerts`.
pub struct VerifyAlertsOptions {
    pub target: String,
    pub prometheus: String,
    pub alertmanager: String,
    pub webhook_listen: String,
    pub plan: AlertPlan,
    pub quiet_output: bool,
}

/// When each transition of one alert was first seen: `(step, seconds)`.
#[derive(Debug, Default, Clone)]
struct Times {
    pending: Option<(&'static str, f64)>,
    firing: Option<(&'static str, f64)>,
    in_alertmanager: Option<(&'static str, f64)>,
    delivered: Option<(&'static str, f64)>,
    resolved: Option<(&'static str, f64)>,
    delivered_resolved: Option<(&'static str, f64)>,
    pending_at: Option<Instant>,
    firing_at: Option<Instant>,
}

/// Current rates of the background traffic, per second.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    normal: f64,
    errors: f64,
}

/// Polls Prometheus, Alertmanager and the webhook inbox and keeps the timeline.
struct Observer {
    prometheus: Prometheus,
    alertmanager: Alertmanager,
    inbox: Inbox,
    names: Vec<String>,
    times: BTreeMap<String, Times>,
    step: &'static str,
    step_started: Instant,
    /// Prometheus state of each alert at the last poll.
    states: BTreeMap<String, String>,
    seen_deliveries: usize,
    /// Labels the plan expects, per alert.
    expected: BTreeMap<String, crate::verify::alert_plan::AlertExpectation>,
    /// Labels that reached Alertmanager or the webhook wrong.
    label_problems: std::collections::BTreeSet<String>,
}

impl Observer {
    fn begin(&mut self, step: &'static str) {
        self.step = step;
        self.step_started = Instant::now();
    }

    fn stamp(&self) -> (&'static str, f64) {
        (self.step, self.step_started.elapsed().as_secs_f64())
    }

    async fn poll(&mut self) -> anyhow::Result<()> {
        let stamp = self.stamp();
        let alerts = self.prometheus.alerts().await?;
        self.states.clear();
        for alert in alerts
            .iter()
            .filter(|a| self.names.iter().any(|n| n == a.name()))
        {
            let state = self.states.entry(alert.name().to_owned()).or_default();
            if state.as_str() != "firing" {
                *state = alert.state.clone();
            }
        }
        for name in &self.names {
            let times = self.times.entry(name.clone()).or_default();
            match self.states.get(name).map(String::as_str) {
                Some("pending") => {
                    times.pending.get_or_insert(stamp);
                    times.pending_at.get_or_insert_with(Instant::now);
                }
                Some("firing") => {
                    times.pending.get_or_insert(stamp);
                    times.pending_at.get_or_insert_with(Instant::now);
                    times.firing.get_or_insert(stamp);
                    times.firing_at.get_or_insert_with(Instant::now);
                }
                _ if times.firing.is_some() => {
                    times.resolved.get_or_insert(stamp);
                }
                _ => {}
            }
        }
        for alert in self.alertmanager.alerts().await? {
            if let Some(times) = self.times.get_mut(alert.name()) {
                times.in_alertmanager.get_or_insert(stamp);
                if let Some(expected) = self.expected.get(alert.name()) {
                    self.label_problems.extend(
                        label_problems(alert.name(), &alert.labels, expected)
                            .into_iter()
                            .map(|p| format!("in Alertmanager: {p}")),
                    );
                }
            }
        }
        let deliveries = self.inbox.deliveries();
        for delivery in &deliveries[self.seen_deliveries.min(deliveries.len())..] {
            if let Some(expected) = self.expected.get(&delivery.alertname) {
                self.label_problems.extend(
                    label_problems(&delivery.alertname, &delivery.labels, expected)
                        .into_iter()
                        .map(|p| format!("at the webhook: {p}")),
                );
            }
            if let Some(times) = self.times.get_mut(&delivery.alertname) {
                let at = (
                    self.step,
                    delivery
                        .at
                        .saturating_duration_since(self.step_started)
                        .as_secs_f64(),
                );
                if delivery.status == "firing" {
                    times.delivered.get_or_insert(at);
                } else if times.delivered.is_some() {
                    times.delivered_resolved.get_or_insert(at);
                }
            }
        }
        self.seen_deliveries = deliveries.len();
        Ok(())
    }

    fn state(&self, name: &str) -> &str {
        self.states.get(name).map_or("inactive", String::as_str)
    }

    fn active(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter(|n| self.state(n) != "inactive")
            .map(|n| format!("{n} ({})", self.state(n)))
            .collect()
    }
}

/// Sends normal traffic and injected errors at the rates on `rates`.
fn spawn_traffic(
    target: Arc<Target>,
    rates: watch::Receiver<Rates>,
    fault_status: u16,
    stop: CancellationToken,
) {
    let requests = |error: bool| -> Vec<PlannedRequest> {
        let get = |path: &str, expected| PlannedRequest {
            op: OpKind::GetHit,
            method: "GET",
            path: path.into(),
            body: None,
            fault: None,
            expected_status: expected,
        };
        if error {
            // Round-robin over user routes: rules that count one route
            // only miss two thirds of the errors and fire late or never.
            let fault = |request: PlannedRequest| PlannedRequest {
                fault: Some((fault_status, Duration::ZERO)),
                expected_status: fault_status,
                ..request
            };
            return vec![
                fault(get("/", 0)),
                fault(get("/items/verify-alerts:hit", 0)),
                fault(PlannedRequest {
                    op: OpKind::Put,
                    method: "POST",
                    path: "/items".into(),
                    body: Some(r#"{"key":"verify-alerts:fault","value":"v"}"#.into()),
                    fault: None,
                    expected_status: 0,
                }),
            ];
        }
        // Mostly hits (5 of 6 lookups): a drill of the error alerts must not
        // also fire LowCacheHitRate (hit ratio < 0.8) at whoever receives.
        let hit = || get("/items/verify-alerts:hit", 200);
        vec![
            hit(),
            hit(),
            get("/items/verify-alerts:missing", 404),
            hit(),
            PlannedRequest {
                op: OpKind::Put,
                method: "POST",
                path: "/items".into(),
                body: Some(r#"{"key":"verify-alerts:hit","value":"v"}"#.into()),
                fault: None,
                expected_status: 201,
            },
            hit(),
            get("/", 200),
            hit(),
        ]
    };
    for error in [false, true] {
        let (target, mut rates, stop, sequence) = (
            Arc::clone(&target),
            rates.clone(),
            stop.clone(),
            requests(error),
        );
        tokio::spawn(async move {
            let mut connection = None;
            let mut next = 0usize;
            loop {
                let rate = if error {
                    rates.borrow().errors
                } else {
                    rates.borrow().normal
                };
                if rate <= 0.0 {
                    tokio::select! {
                        changed = rates.changed() => if changed.is_err() { return },
                        () = stop.cancelled() => return,
                    }
                    continue;
                }
                let request = &sequence[next % sequence.len()];
                next += 1;
                let _ = send_with(&mut connection, &target, request, Duration::from_secs(5)).await;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs_f64(1.0 / rate)) => {}
                    _ = rates.changed() => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }
}

struct Run {
    observer: Observer,
    checks: Vec<Check>,
    progress: Progress,
    cancel: CancellationToken,
}

impl Run {
    /// Polls until `done` or the deadline; returns whether `done` happened.
    async fn wait(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&Observer) -> bool,
        mut violated: impl FnMut(&Observer) -> Option<String>,
    ) -> anyhow::Result<Result<f64, String>> {
        self.progress
            .start(self.observer.step, deadline.as_millis() as u64, true);
        loop {
            self.observer.poll().await?;
            let elapsed = self.observer.step_started.elapsed();
            self.progress.set_position(elapsed.as_millis() as u64);
            self.progress.set_message(format!(
                "{:.0}s  {}",
                deadline.as_secs_f64(),
                self.observer
                    .times
                    .keys()
                    .map(|n| format!("{n}: {}", self.observer.state(n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if let Some(violation) = violated(&self.observer) {
                self.progress.finish();
                return Ok(Err(violation));
            }
            if done(&self.observer) {
                self.progress.finish();
                return Ok(Ok(elapsed.as_secs_f64()));
            }
            if elapsed >= deadline {
                self.progress.finish();
                return Ok(Err(format!(
                    "deadline of {:.0}s passed",
                    deadline.as_secs_f64()
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.cancel.cancelled() => anyhow::bail!(Interrupted),
            }
        }
    }

    /// Holds for `duration` while none of `names` is pending or firing;
    /// `Ok(duration)` when that held, else which alert broke it.
    async fn stay_quiet(
        &mut self,
        duration: Duration,
        names: &[String],
        context: &str,
    ) -> anyhow::Result<Result<f64, String>> {
        let outcome = self
            .wait(
                duration,
                |_| false,
                |o| {
                    let active = o.active(names);
                    (!active.is_empty()).then(|| format!("{} {context}", active.join(", ")))
                },
            )
            .await?;
        Ok(match outcome {
            Err(why) if why.starts_with("deadline") => Ok(duration.as_secs_f64()),
            other => other,
        })
    }

    fn record(&mut self, name: String, expected: String, outcome: Result<f64, String>) -> bool {
        let passed = outcome.is_ok();
        let observed = match outcome {
            Ok(seconds) => format!("after {seconds:.1}s"),
            Err(why) => why,
        };
        self.checks
            .push(Check::new(name, expected, observed, passed));
        passed
    }
}

#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
struct Interrupted;

/// Prometheus reports rules and targets as `unknown` until it has evaluated
/// and scraped them once; right after a start, wait for that.
async fn wait_until_known(prometheus: &Prometheus) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let rules_known = prometheus
            .rules()
            .await?
            .iter()
            .flat_map(|g| &g.rules)
            .all(|r| r.health != "unknown");
        let targets = prometheus.targets().await?;
        let targets_known = !targets.is_empty() && targets.iter().all(|t| t.health != "unknown");
        if (rules_known && targets_known) || started.elapsed() > Duration::from_secs(30) {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn preflight(
    prometheus: &Prometheus,
    alertmanager: &Alertmanager,
    target: &Target,
    plan: &AlertPlan,
) -> anyhow::Result<(Vec<AlertRule>, Duration, Vec<Check>)> {
    let mut checks = Vec::new();
    wait_until_known(prometheus).await?;
    let groups = prometheus.rules().await?;
    let unhealthy: Vec<String> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.health != "ok" || r.last_error.as_deref().is_some_and(|e| !e.is_empty()))
        .map(|r| {
            format!(
                "{}: {} {}",
                r.name,
                r.health,
                r.last_error.clone().unwrap_or_default()
            )
        })
        .collect();
    checks.push(Check::new(
        "preflight: every rule healthy",
        "health ok, no lastError",
        if unhealthy.is_empty() {
            format!(
                "{} rules ok",
                groups.iter().map(|g| g.rules.len()).sum::<usize>()
            )
        } else {
            unhealthy.join("; ")
        },
        unhealthy.is_empty(),
    ));
    let targets = prometheus.targets().await?;
    // loadgen's own metrics target is down between runs by design.
    let down: Vec<String> = targets
        .iter()
        .filter(|t| t.health != "up" && t.job() != "loadgen")
        .map(|t| format!("{} {} ({})", t.job(), t.health, t.last_error))
        .collect();
    let scope = crate::verify::scope::resolve(prometheus, target).await?;
    checks.push(Check::new(
        "preflight: every target up",
        format!("all up, {} among them", target.base),
        if down.is_empty() {
            format!(
                "{} targets up; {} is {} {}",
                targets.len(),
                target.base,
                scope.job,
                scope.instance
            )
        } else {
            down.join("; ")
        },
        down.is_empty(),
    ));
    let names: Vec<&String> = plan.all_alerts().collect();
    let rules = match resolve(&groups, &names) {
        Ok(rules) => {
            checks.push(Check::new(
                "preflight: alert rules loaded",
                names
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                "all loaded",
                true,
            ));
            rules
        }
        Err(why) => {
            checks.push(Check::new(
                "preflight: alert rules loaded",
                "all loaded",
                why,
                false,
            ));
            Vec::new()
        }
    };
    let scrape = scope.scrape_interval;
    for rule in &rules {
        let problems = plan
            .expect
            .get(&rule.name)
            .map(|expected| expectation_problems(rule, expected))
            .unwrap_or_default();
        checks.push(Check::new(
            format!("preflight: {} labels and for as planned", rule.name),
            plan.expect.get(&rule.name).map_or_else(
                || "(nothing planned)".to_owned(),
                |e| {
                    let labels: Vec<String> =
                        e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    match &e.for_duration {
                        Some(f) => format!("{}, for {f}", labels.join(", ")),
                        None => labels.join(", "),
                    }
                },
            ),
            if problems.is_empty() {
                "as planned".to_owned()
            } else {
                problems.join("; ")
            },
            problems.is_empty(),
        ));
    }
    alertmanager.alerts().await?;
    // The service must honour fault injection, or nothing will fire.
    let probe = PlannedRequest {
        op: OpKind::Fault,
        method: "GET",
        path: "/healthz".into(),
        body: None,
        fault: Some((plan.fault_status, Duration::ZERO)),
        expected_status: plan.fault_status,
    };
    let status = send_with(&mut None, target, &probe, Duration::from_secs(3)).await;
    checks.push(Check::new(
        "preflight: fault injection enabled",
        format!("X-Fault-Status: {} answered", plan.fault_status),
        match status {
            Ok(code) => format!("HTTP {code}"),
            Err(err) => format!("no answer ({})", err.name()),
        },
        status == Ok(plan.fault_status),
    ));
    Ok((rules, scrape, checks))
}

/// Whether the plan's rates can exercise the loaded rules: every warning
/// alert must be reachable at the warning rate, the critical ones must stay
/// quiet at it and be reachable at the critical rate. A rule that fails this
/// is reported by name (exit 1) before any traffic is sent.
fn rate_checks(plan: &AlertPlan, rules: &[AlertRule]) -> Vec<Check> {
    let (below, warning, critical) = (
        plan.below_error_rate,
        plan.warning_error_rate,
        plan.critical_error_rate,
    );
    rules
        .iter()
        .map(|rule| {
            let is_warning = plan.warning_alerts.contains(&rule.name);
            let (expected, passed) = if is_warning {
                (
                    format!("threshold between {below:.3} and {warning:.3} 5xx/s"),
                    rule.threshold_rate > below && rule.threshold_rate < warning,
                )
            } else {
                (
                    format!("threshold between {warning:.3} and {critical:.3} 5xx/s"),
                    rule.threshold_rate > warning && rule.threshold_rate < critical,
                )
            };
            Check::new(
                format!("preflight: {} can fire as planned", rule.name),
                expected,
                format!(
                    "{:.3} 5xx/s over {:?}, for {:?}",
                    rule.threshold_rate, rule.window, rule.for_duration
                ),
                passed,
            )
        })
        .collect()
}

fn timeline(times: &BTreeMap<String, Times>) -> Table {
    let show =
        |at: Option<(&str, f64)>| at.map_or("-".to_owned(), |(step, s)| format!("{step} +{s:.1}s"));
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "alert",
        "pending",
        "firing",
        "in Alertmanager",
        "webhook firing",
        "resolved",
        "webhook resolved",
    ]);
    for (name, t) in times {
        table.add_row(vec![
            name.clone(),
            show(t.pending),
            show(t.firing),
            show(t.in_alertmanager),
            show(t.delivered),
            show(t.resolved),
            show(t.delivered_resolved),
        ]);
    }
    table
}

pub async fn run(
    options: VerifyAlertsOptions,
    cancel: CancellationToken,
    out: &mut impl Write,
) -> anyhow::Result<Exit> {
    let prometheus = Prometheus::new(&options.prometheus);
    let alertmanager = Alertmanager::new(&options.alertmanager);
    let target = Arc::new(Target::resolve(&options.target).await?);
    crate::engine::client::preflight(&target).await?;
    let plan = options.plan;
    let (rules, scrape, mut checks) = preflight(&prometheus, &alertmanager, &target, &plan).await?;
    checks.extend(rate_checks(&plan, &rules));
    if checks.iter().any(|c| !c.passed) {
        crate::report::write_checks(out, &checks)?;
        writeln!(out, "FAIL: preflight failed; nothing was sent")?;
        return Ok(Exit::CheckFailed);
    }
    let (warning_rate, critical_rate) = (plan.warning_error_rate, plan.critical_error_rate);
    let stop = CancellationToken::new();
    let (inbox, webhook_addr) = webhook::listen(&options.webhook_listen, stop.clone()).await?;
    let (rates_tx, rates_rx) = watch::channel(Rates {
        normal: 0.0,
        errors: 0.0,
    });
    spawn_traffic(
        Arc::clone(&target),
        rates_rx,
        plan.fault_status,
        stop.clone(),
    );
    let _stop_traffic = stop.clone().drop_guard();

    let names: Vec<String> = plan.all_alerts().cloned().collect();
    let rule = |name: &String| {
        rules
            .iter()
            .find(|r| &r.name == name)
            .expect("resolved in preflight")
    };
    let max_eval = rules
        .iter()
        .map(|r| r.eval_interval)
        .max()
        .unwrap_or(Duration::from_secs(5));
    let quiet = match &plan.quiet {
        Some(text) => {
            crate::duration::parse(text).map_err(|e| anyhow::anyhow!("--plan quiet: {e}"))?
        }
        None => (max_eval * 2 + scrape * 2 + Duration::from_secs(10)).max(Duration::from_secs(30)),
    };
    writeln!(
        out,
        "verify-alerts: normal {:.1} req/s; warning {warning_rate:.3} 5xx/s; critical {critical_rate:.3} 5xx/s; webhook on {webhook_addr}",
        plan.normal_rate
    )?;
    let mut run = Run {
        observer: Observer {
            prometheus,
            alertmanager,
            inbox,
            names: names.clone(),
            times: names
                .iter()
                .map(|n| (n.clone(), Times::default()))
                .collect(),
            step: "clear",
            step_started: Instant::now(),
            states: BTreeMap::new(),
            seen_deliveries: 0,
            expected: plan.expect.clone(),
            label_problems: Default::default(),
        },
        checks: Vec::new(),
        progress: Progress::new(!options.quiet_output),
        cancel: cancel.clone(),
    };
    let latest_fire = |alerts: &[String], rate: f64| {
        alerts
            .iter()
            .map(|n| fire_deadline(rule(n), rate, scrape))
            .max()
            .unwrap_or_default()
    };
    let resolve_all = names
        .iter()
        .map(|n| resolve_deadline(rule(n), scrape))
        .max()
        .unwrap_or_default();

    let outcome = async {
        // Leftovers of an earlier run would make every step lie.
        run.observer.begin("clear");
        let all = names.clone();
        let clear = run
            .wait(resolve_all, |o| o.active(&all).is_empty(), |_| None)
            .await?;
        if !run.record(
            "clear: no error alert active at the start".into(),
            "none pending or firing".into(),
            clear,
        ) {
            return anyhow::Ok(());
        }
        run.observer.times = names
            .iter()
            .map(|n| (n.clone(), Times::default()))
            .collect();

        run.observer.begin("quiet");
        rates_tx.send_replace(Rates {
            normal: plan.normal_rate,
            errors: 0.0,
        });
        let quiet_outcome = run
            .stay_quiet(quiet, &names, "under normal 200/201/404 traffic")
            .await?;
        if !run.record(
            "quiet: normal traffic fires nothing".into(),
            format!("no alert for {:.0}s", quiet.as_secs_f64()),
            quiet_outcome,
        ) {
            return Ok(());
        }

        run.observer.begin("below threshold");
        let below_rate = plan.below_error_rate;
        rates_tx.send_replace(Rates {
            normal: plan.normal_rate,
            errors: below_rate,
        });
        let below = plan
            .warning_alerts
            .iter()
            .map(|n| below_duration(rule(n), scrape))
            .max()
            .unwrap_or_default();
        let below_outcome = run
            .stay_quiet(below, &names, "below every threshold")
            .await?;
        if !run.record(
            format!("below threshold: {below_rate:.3} 5xx/s fires nothing"),
            format!("none pending or firing for {:.0}s", below.as_secs_f64()),
            below_outcome,
        ) {
            return Ok(());
        }

        run.observer.begin("warning");
        rates_tx.send_replace(Rates {
            normal: plan.normal_rate,
            errors: warning_rate,
        });
        let warning_deadline = latest_fire(&plan.warning_alerts, warning_rate);
        let (warnings, criticals) = (plan.warning_alerts.clone(), plan.critical_alerts.clone());
        let warned = run
            .wait(
                warning_deadline,
                |o| warnings.iter().all(|n| o.state(n) == "firing"),
                |o| {
                    let active = o.active(&criticals);
                    (!active.is_empty())
                        .then(|| format!("{} at a warning-level rate", active.join(", ")))
                },
            )
            .await?;
        let expected = format!(
            "{} firing within {:.0}s, {} not",
            plan.warning_alerts.join(" + "),
            warning_deadline.as_secs_f64(),
            plan.critical_alerts.join(", ")
        );
        if !run.record(
            format!("warning: {warning_rate:.3} 5xx/s"),
            expected,
            warned,
        ) {
            return Ok(());
        }

        run.observer.begin("escalation");
        rates_tx.send_replace(Rates {
            normal: plan.normal_rate,
            errors: critical_rate,
        });
        let critical_deadline = latest_fire(&plan.critical_alerts, critical_rate);
        let criticals = plan.critical_alerts.clone();
        let escalated = run
            .wait(
                critical_deadline,
                |o| criticals.iter().all(|n| o.state(n) == "firing"),
                |_| None,
            )
            .await?;
        let expected = format!(
            "{} firing within {:.0}s",
            plan.critical_alerts.join(" + "),
            critical_deadline.as_secs_f64()
        );
        if !run.record(
            format!("escalation: {critical_rate:.3} 5xx/s"),
            expected,
            escalated,
        ) {
            return Ok(());
        }

        // Each alert must have been pending for its `for` (less one
        // evaluation and one poll of ours) before it fired.
        let mut short = Vec::new();
        for name in &names {
            let times = &run.observer.times[name];
            let (Some(pending), Some(firing)) = (times.pending_at, times.firing_at) else {
                continue;
            };
            let r = rule(name);
            let planned = plan
                .expect
                .get(name)
                .and_then(|e| e.for_duration.as_deref())
                .and_then(|f| crate::duration::parse(f).ok())
                .unwrap_or(r.for_duration)
                .max(r.for_duration);
            let least = planned.saturating_sub(r.eval_interval + POLL);
            let held = firing.saturating_duration_since(pending);
            if held < least {
                short.push(format!(
                    "{name} pending {:.1}s < for {:?} − eval {:?}",
                    held.as_secs_f64(),
                    planned,
                    r.eval_interval
                ));
            }
        }
        run.checks.push(Check::new(
            "for honoured: firing − pending ≥ for − one evaluation",
            "every alert",
            if short.is_empty() {
                "every alert".to_owned()
            } else {
                short.join("; ")
            },
            short.is_empty(),
        ));
        if !short.is_empty() {
            return Ok(());
        }

        run.observer.begin("delivery");
        let delivery_deadline = Duration::from_secs(60);
        let all = names.clone();
        let delivered = run
            .wait(
                delivery_deadline,
                |o| {
                    all.iter().all(|n| {
                        o.times[n].in_alertmanager.is_some() && o.times[n].delivered.is_some()
                    })
                },
                |o| {
                    (!o.label_problems.is_empty()).then(|| {
                        let problems: Vec<&str> =
                            o.label_problems.iter().map(String::as_str).collect();
                        format!("wrong labels {}", problems.join("; "))
                    })
                },
            )
            .await?;
        if !run.record(
            "delivery: in Alertmanager and received by the webhook".into(),
            format!("every alert within {}s", delivery_deadline.as_secs()),
            delivered,
        ) {
            return Ok(());
        }

        run.observer.begin("resolve");
        rates_tx.send_replace(Rates {
            normal: plan.normal_rate,
            errors: 0.0,
        });
        let all = names.clone();
        let resolved = run
            .wait(
                resolve_all,
                |o| all.iter().all(|n| o.state(n) == "inactive"),
                |_| None,
            )
            .await?;
        let resolved_after = resolved
            .as_ref()
            .map_or(resolve_all, |secs| Duration::from_secs_f64(*secs));
        if !run.record(
            "resolve: every alert resolves".into(),
            format!("inactive within {:.0}s", resolve_all.as_secs_f64()),
            resolved,
        ) {
            return Ok(());
        }
        // The warnings resolve while the critical alert still fires
        // (keep_firing_for) and inhibits them, so Alertmanager never notifies
        // them on the way down: only the critical resolutions are delivered.
        // 90 s from the moment they resolved (the step's clock started with
        // the resolve step, and keep_firing_for may have taken most of it).
        let criticals = plan.critical_alerts.clone();
        let notified = run
            .wait(
                resolved_after + Duration::from_secs(90),
                |o| {
                    criticals
                        .iter()
                        .all(|n| o.times[n].delivered_resolved.is_some())
                },
                |_| None,
            )
            .await?
            // Reported from the resolution, as the expectation reads.
            .map(|secs| (secs - resolved_after.as_secs_f64()).max(0.0));
        run.record(
            "resolve: webhook receives the critical resolutions".into(),
            format!(
                "{} within 90s of resolving",
                plan.critical_alerts.join(", ")
            ),
            notified,
        );
        Ok(())
    }
    .await;
    rates_tx.send_replace(Rates {
        normal: 0.0,
        errors: 0.0,
    });
    stop.cancel();
    let interrupted = match outcome {
        Ok(()) => false,
        Err(err) if err.is::<Interrupted>() => true,
        Err(err) => return Err(err),
    };
    checks.append(&mut run.checks);
    crate::report::write_checks(out, &checks)?;
    writeln!(
        out,
        "timeline (seconds since the start of each step):\n{}",
        timeline(&run.observer.times)
    )?;
    if interrupted {
        writeln!(out, "interrupted: partial timeline above")?;
        return Ok(Exit::Interrupted);
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    if failed.is_empty() {
        writeln!(
            out,
            "PASS: {} fired, reached Alertmanager and the webhook, and resolved",
            names.join(", ")
        )?;
        Ok(Exit::Pass)
    } else {
        writeln!(out, "FAIL: {}", failed.join("; "))?;
        Ok(Exit::CheckFailed)
    }
}
