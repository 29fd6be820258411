//! What `verify-alerts` checks and how hard it pushes: the alert names, the
//! traffic rates and, from the rules Prometheus actually loaded, each
//! alert's threshold, window and `for` — so deadlines follow the rules
//! instead of hard-coded guesses.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::Deserialize;

use crate::verify::prometheus::{parse_prom_duration, RuleGroup};

/// `--plan FILE` (TOML); every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertPlan {
    /// Alerts that a warning-level 5xx rate must fire.
    pub warning_alerts: Vec<String>,
    /// Alerts that only the escalated rate may fire.
    pub critical_alerts: Vec<String>,
    /// Normal requests per second (200, 201 and 404 responses).
    pub normal_rate: f64,
    /// 5xx per second of the warning step: above every warning threshold,
    /// below the critical one (SPEC: 0.1/s, 10 per minute, 0.5/s).
    pub warning_error_rate: f64,
    /// 5xx per second of the escalation: above the critical threshold.
    pub critical_error_rate: f64,
    /// Length of the quiet step (default: derived from the rule intervals).
    pub quiet: Option<String>,
    /// Status of the injected errors.
    pub fault_status: u16,
    /// 5xx per second of the below-threshold step (about half the lowest
    /// warning threshold): no warning alert may even go pending.
    pub below_error_rate: f64,
    /// What each alert must look like as loaded: labels and `for`.
    pub expect: BTreeMap<String, AlertExpectation>,
}

/// The labels (and optionally `for` and `keep_firing_for`) an alert rule
/// must carry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertExpectation {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Exact `for` of the loaded rule (`"1m"`); unchecked when absent.
    #[serde(rename = "for")]
    pub for_duration: Option<String>,
    /// Exact `keep_firing_for` (`"0s"` when it must have none); unchecked
    /// when absent.
    pub keep_firing_for: Option<String>,
    /// The threshold as 5xx per second (a count over a window divided by
    /// it), within 1 %; unchecked when absent. The steps only prove the
    /// threshold lies between two planned rates.
    pub threshold: Option<f64>,
    /// Exact window of the rate or count (`"1m"`); unchecked when absent.
    pub window: Option<String>,
}

fn expectation(
    labels: &[(&str, &str)],
    threshold: f64,
    for_duration: &str,
    keep_firing_for: &str,
) -> AlertExpectation {
    AlertExpectation {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        for_duration: Some(for_duration.to_owned()),
        keep_firing_for: Some(keep_firing_for.to_owned()),
        threshold: Some(threshold),
        // SPEC §6: "over 1m windows".
        window: Some("1m".to_owned()),
    }
}

impl Default for AlertPlan {
    fn default() -> Self {
        Self {
            warning_alerts: vec!["HighErrorRate".into(), "ErrorBurst".into()],
            critical_alerts: vec!["CriticalErrorRate".into()],
            normal_rate: 10.0,
            warning_error_rate: 1.0 / 3.0,
            critical_error_rate: 1.0,
            quiet: None,
            fault_status: 500,
            below_error_rate: 0.05,
            // SPEC §6, interfaces.md and rules-changes.md: ErrorBurst
            // fires at once (no `for`); CriticalErrorRate keeps firing 1m
            // so its warnings stay inhibited while they resolve.
            expect: BTreeMap::from([
                (
                    "HighErrorRate".into(),
                    expectation(
                        &[("severity", "warning"), ("family", "errors")],
                        0.1,
                        "1m",
                        "0s",
                    ),
                ),
                (
                    "ErrorBurst".into(),
                    expectation(
                        &[("severity", "warning"), ("family", "errors")],
                        10.0 / 60.0,
                        "0s",
                        "0s",
                    ),
                ),
                (
                    "CriticalErrorRate".into(),
                    expectation(
                        &[("severity", "critical"), ("family", "errors")],
                        0.5,
                        "30s",
                        "1m",
                    ),
                ),
            ]),
        }
    }
}

impl AlertPlan {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", path.display()))?;
        toml::from_str(&text).map_err(|err| {
            let position = err.span().map(|span| {
                let (line, col) = crate::scenario::diagnostic::line_col(&text, span.start);
                format!(":{line}:{col}")
            });
            anyhow::anyhow!(
                "{}{}: {}",
                path.display(),
                position.unwrap_or_default(),
                err.message()
            )
        })
    }

    pub fn all_alerts(&self) -> impl Iterator<Item = &String> {
        self.warning_alerts.iter().chain(&self.critical_alerts)
    }
}

/// An alert rule as loaded in Prometheus, reduced to what deadlines need.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    /// Threshold as a 5xx rate per second.
    pub threshold_rate: f64,
    /// Longest range selector the alert depends on (through recording rules).
    pub window: Duration,
    pub for_duration: Duration,
    /// `keep_firing_for`: how long it keeps firing after the condition ends.
    pub keep_firing_for: Duration,
    pub eval_interval: Duration,
    pub labels: BTreeMap<String, String>,
    /// `>=` instead of `>`: "more than 10" would fire at 10.
    pub inclusive: bool,
}

/// The number after the last `>` of an expression (`... > 0.1`).
fn threshold(query: &str) -> Option<f64> {
    let after = query.rsplit_once('>')?.1.trim_start_matches('=').trim();
    let number: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
        .collect();
    number.parse().ok()
}

/// The longest window of `query`: a `[range]`, or an `offset` (an exact
/// count `x - x offset 1m` spans its offset as `increase(x[1m])` its range).
/// A range that is itself offset (`x[1h] offset 1m`) looks at the past
/// before the window, a guard, not the window.
fn longest_window(query: &str) -> Option<Duration> {
    let ranges = query.split('[').skip(1).filter_map(|part| {
        let (range, after) = part.split_once(']')?;
        if after.trim_start().starts_with("offset") {
            return None;
        }
        parse_prom_duration(range.split(':').next()?)
    });
    let offsets = query
        .split(" offset ")
        .skip(1)
        .zip(query.split(" offset "))
        .filter(|(_, before)| !before.trim_end().ends_with(']'))
        .filter_map(|(rest, _)| {
            parse_prom_duration(rest.split(|c: char| !c.is_ascii_alphanumeric()).next()?)
        });
    ranges.chain(offsets).max()
}

/// Whether `query` counts events over its window (`increase()` or an
/// offset delta) rather than measuring a per-second rate.
fn counts_over_window(query: &str) -> bool {
    query.contains("increase(") || query.contains(" offset ")
}

/// Whether a recording rule's name declares a count: by the
/// `level:metric:operations` convention the last operation says it
/// (`job:http_requests_5xx:increase1m` counts, `...:rate1m` is a rate).
/// The window itself always comes from the expression: a name can lie.
fn named_count(record: &str) -> Option<bool> {
    let operation = record.rsplit(':').next()?.rsplit('_').next()?;
    [("increase", true), ("rate", false)]
        .iter()
        .find_map(|(prefix, counts)| operation.strip_prefix(prefix).map(|_| *counts))
}

/// Finds `names` among the loaded rules and derives their parameters.
pub fn resolve(groups: &[RuleGroup], names: &[&String]) -> Result<Vec<AlertRule>, String> {
    let records: BTreeMap<&str, &str> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.kind == "recording")
        .map(|r| (r.name.as_str(), r.query.as_str()))
        .collect();
    names
        .iter()
        .map(|name| {
            let (group, rule) = groups
                .iter()
                .flat_map(|g| g.rules.iter().map(move |r| (g, r)))
                .find(|(_, r)| r.kind == "alerting" && &r.name == *name)
                .ok_or_else(|| format!("alert rule {name} is not loaded in Prometheus"))?;
            // Expand recording rules the alert uses (two levels suffice here).
            let mut expanded = rule.query.clone();
            for _ in 0..2 {
                let uses: Vec<&str> = records
                    .iter()
                    .filter(|(r, _)| expanded.contains(**r))
                    .map(|(_, q)| *q)
                    .collect();
                for query in uses {
                    expanded.push('\n');
                    expanded.push_str(query);
                }
            }
            let window = longest_window(&expanded).unwrap_or(Duration::from_secs(60));
            let counts = records
                .keys()
                .filter(|record| rule.query.contains(*record))
                .find_map(|record| named_count(record))
                .unwrap_or_else(|| counts_over_window(&expanded));
            let mut threshold = threshold(&rule.query).ok_or_else(|| {
                format!(
                    "cannot find the threshold (`> N`) of {name}: {}",
                    rule.query
                )
            })?;
            // A count over the window becomes a rate.
            if counts {
                threshold /= window.as_secs_f64();
            }
            let inclusive = rule
                .query
                .rsplit_once('>')
                .is_some_and(|(_, after)| after.starts_with('='));
            Ok(AlertRule {
                name: (*name).clone(),
                threshold_rate: threshold,
                window,
                for_duration: Duration::from_secs_f64(rule.duration),
                keep_firing_for: Duration::from_secs_f64(rule.keep_firing_for),
                eval_interval: Duration::from_secs_f64(group.interval),
                labels: rule.labels.clone(),
                inclusive,
            })
        })
        .collect()
}

/// How long an alert may take to fire at `rate` 5xx/s: the 1m rate climbs
/// linearly from 0, crossing the threshold after `window × threshold/rate`;
/// then `for`; plus evaluation, two scrapes and a margin.
pub fn fire_deadline(rule: &AlertRule, rate: f64, scrape: Duration) -> Duration {
    let cross = rule.window.as_secs_f64() * (rule.threshold_rate / rate).min(1.0);
    // Rounded to the millisecond first, so 20.000000000000004 s is 20 s.
    Duration::from_secs(((cross * 1000.0).round() / 1000.0).ceil() as u64)
        + rule.for_duration
        + rule.eval_interval * 2
        + scrape * 2
        + Duration::from_secs(15)
}

/// How long an alert may take to resolve once errors stop: the window
/// empties, `keep_firing_for` passes, plus evaluation, two scrapes and a
/// margin.
pub fn resolve_deadline(rule: &AlertRule, scrape: Duration) -> Duration {
    rule.window
        + rule.keep_firing_for
        + rule.eval_interval * 2
        + scrape * 2
        + Duration::from_secs(15)
}

/// How long the below-threshold step must last to catch a threshold set
/// too low: the window fills at the below rate, the alert would then be
/// evaluated and go pending (plus two scrapes and a margin).
pub fn below_duration(rule: &AlertRule, scrape: Duration) -> Duration {
    rule.window + rule.eval_interval * 2 + scrape * 2 + Duration::from_secs(5)
}

/// Differences between the loaded rule and what the plan expects of it,
/// each naming the alert and the label or field.
pub fn expectation_problems(rule: &AlertRule, expected: &AlertExpectation) -> Vec<String> {
    let mut problems: Vec<String> = expected
        .labels
        .iter()
        .filter(|(name, value)| rule.labels.get(*name) != Some(*value))
        .map(|(name, value)| match rule.labels.get(name) {
            Some(actual) => format!(
                "{}: label {name}=\"{actual}\", expected {name}=\"{value}\"",
                rule.name
            ),
            None => format!(
                "{}: label {name} missing, expected {name}=\"{value}\"",
                rule.name
            ),
        })
        .collect();
    if let Some(wanted) = expected.threshold {
        if (rule.threshold_rate - wanted).abs() > wanted.abs() * 0.01 {
            problems.push(format!(
                "{}: threshold {:.3} 5xx/s, expected {wanted:.3} 5xx/s",
                rule.name, rule.threshold_rate
            ));
        }
        if rule.inclusive {
            problems.push(format!(
                "{}: compares with >=, expected > (more than the threshold)",
                rule.name
            ));
        }
    }
    for (field, planned, loaded) in [
        ("window", &expected.window, rule.window),
        ("for", &expected.for_duration, rule.for_duration),
        (
            "keep_firing_for",
            &expected.keep_firing_for,
            rule.keep_firing_for,
        ),
    ] {
        let Some(text) = planned else { continue };
        match crate::duration::parse(text) {
            Ok(wanted) if wanted != loaded => problems.push(format!(
                "{}: {field} {loaded:?}, expected {wanted:?}",
                rule.name
            )),
            Ok(_) => {}
            Err(err) => problems.push(format!("{}: plan `{field}` {text:?}: {err}", rule.name)),
        }
    }
    problems
}

/// Labels of a delivered or Alertmanager-held alert that differ from the
/// plan (the same labels must survive the whole path).
pub fn label_problems(
    name: &str,
    labels: &BTreeMap<String, String>,
    expected: &AlertExpectation,
) -> Vec<String> {
    expected
        .labels
        .iter()
        .filter(|(k, v)| labels.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{name}: {k}={:?}, expected {v:?}",
                labels.get(k).map_or("(missing)", String::as_str)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::prometheus::Rule;

    fn rule(name: &str, query: &str, kind: &str, duration: f64) -> Rule {
        Rule {
            name: name.into(),
            query: query.into(),
            kind: kind.into(),
            health: "ok".into(),
            last_error: None,
            duration,
            keep_firing_for: 0.0,
            labels: BTreeMap::new(),
        }
    }

    /// The repository's rules file as Prometheus would load it, with
    /// `edit` applied first.
    fn repo_rules(edit: impl Fn(String) -> String) -> Vec<RuleGroup> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../prometheus/rules/items-service.yml");
        let text = edit(std::fs::read_to_string(path).unwrap());
        let file: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let seconds = |v: &serde_yaml::Value| {
            v.as_str()
                .map_or(0.0, |d| parse_prom_duration(d).unwrap().as_secs_f64())
        };
        file["groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|group| RuleGroup {
                name: group["name"].as_str().unwrap().into(),
                file: String::new(),
                interval: seconds(&group["interval"]),
                rules: group["rules"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        let alert = r["alert"].as_str();
                        let mut rule = rule(
                            alert.or(r["record"].as_str()).unwrap(),
                            r["expr"].as_str().unwrap(),
                            if alert.is_some() {
                                "alerting"
                            } else {
                                "recording"
                            },
                            seconds(&r["for"]),
                        );
                        rule.keep_firing_for = seconds(&r["keep_firing_for"]);
                        if let Some(labels) = r["labels"].as_mapping() {
                            for (k, v) in labels {
                                rule.labels
                                    .insert(k.as_str().unwrap().into(), v.as_str().unwrap().into());
                            }
                        }
                        rule
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn the_repository_rules_are_as_planned_and_a_lying_name_is_caught() {
        let plan = AlertPlan::default();
        let names: Vec<&String> = plan.expect.keys().collect();
        for rule in resolve(&repo_rules(|text| text), &names).unwrap() {
            assert_eq!(
                expectation_problems(&rule, &plan.expect[&rule.name]),
                Vec::<String>::new(),
                "{rule:?}"
            );
        }
        // A burst counted over 2 minutes, still named increase1m.
        let stretched = repo_rules(|text| {
            let (head, rest) = text
                .split_once("      - record: job:http_requests_5xx:increase1m")
                .unwrap();
            let next = rest.find("      - record:").unwrap();
            format!(
                "{head}      - record: job:http_requests_5xx:increase1m\n        expr: sum by (job) (increase(http_requests_total{{status_code=~\"5..\"}}[2m]))\n{}",
                &rest[next..]
            )
        });
        let burst = "ErrorBurst".to_owned();
        let rule = resolve(&stretched, &[&burst]).unwrap().remove(0);
        assert!(
            expectation_problems(&rule, &plan.expect["ErrorBurst"])
                .contains(&"ErrorBurst: window 120s, expected 60s".to_owned()),
            "{rule:?}"
        );
    }

    #[test]
    fn derives_parameters_through_recording_rules() {
        let groups = vec![RuleGroup {
            name: "g".into(),
            file: String::new(),
            interval: 5.0,
            rules: vec![
                rule(
                    "job:http_requests_5xx:rate1m",
                    "sum by (job) (rate(http_requests_total{status_code=~\"5..\"}[1m]))",
                    "recording",
                    0.0,
                ),
                rule(
                    "job:http_requests_5xx:increase2m",
                    "sum by (job) (increase(http_requests_total{status_code=~\"5..\"}[2m]))",
                    "recording",
                    0.0,
                ),
                rule(
                    "HighErrorRate",
                    "job:http_requests_5xx:rate1m > 0.1",
                    "alerting",
                    60.0,
                ),
                rule(
                    "ErrorBurst",
                    "job:http_requests_5xx:increase2m > 12",
                    "alerting",
                    60.0,
                ),
                rule(
                    "job:http_requests_5xx:increase1m",
                    "sum by (job) (x - min_over_time(x[1m]) and count_over_time(x[1h] offset 1m) or x)",
                    "recording",
                    0.0,
                ),
                rule(
                    "GuardedBurst",
                    "job:http_requests_5xx:increase1m >= 10",
                    "alerting",
                    0.0,
                ),
                rule(
                    "job:http_requests_5xx:exact3m",
                    "sum by (job) ((x - x offset 3m) >= 0 unless resets(x[1m]) > 0 or x)",
                    "recording",
                    0.0,
                ),
                rule(
                    "ExactBurst",
                    "job:http_requests_5xx:exact3m > 18",
                    "alerting",
                    0.0,
                ),
            ],
        }];
        let high = "HighErrorRate".to_owned();
        let burst = "ErrorBurst".to_owned();
        let exact = "ExactBurst".to_owned();
        let guarded = "GuardedBurst".to_owned();
        let rules = resolve(&groups, &[&high, &burst, &exact, &guarded]).unwrap();
        assert_eq!(
            (rules[3].window, rules[3].threshold_rate, rules[3].inclusive),
            (Duration::from_secs(60), 10.0 / 60.0, true),
            "the name's increase1m, not the guard's [1h]"
        );
        assert!(!rules[0].inclusive);
        assert_eq!(rules[2].threshold_rate, 0.1, "18 in 3m (offset) is 0.1/s");
        assert_eq!(rules[2].window, Duration::from_secs(180));
        assert_eq!(rules[0].threshold_rate, 0.1);
        assert_eq!(rules[0].window, Duration::from_secs(60));
        assert_eq!(rules[0].for_duration, Duration::from_secs(60));
        assert_eq!(rules[1].threshold_rate, 0.1, "12 in 2m is 0.1/s");
        assert_eq!(rules[1].window, Duration::from_secs(120));
        let missing = "Nope".to_owned();
        assert!(resolve(&groups, &[&missing])
            .unwrap_err()
            .contains("not loaded"));
    }

    #[test]
    fn deadlines_follow_the_rule() {
        let rule = AlertRule {
            name: "x".into(),
            threshold_rate: 0.1,
            window: Duration::from_secs(60),
            for_duration: Duration::from_secs(60),
            keep_firing_for: Duration::from_secs(60),
            eval_interval: Duration::from_secs(5),
            labels: BTreeMap::new(),
            inclusive: false,
        };
        // 0.3/s crosses 0.1/s after 20 s; + 60 s for + 10 s eval + 10 s scrape + 15 s.
        assert_eq!(
            fire_deadline(&rule, 0.3, Duration::from_secs(5)),
            Duration::from_secs(115)
        );
        assert_eq!(
            resolve_deadline(&rule, Duration::from_secs(5)),
            Duration::from_secs(155),
            "60 s window + 60 s keep_firing_for + 10 s eval + 10 s scrape + 15 s"
        );
        assert_eq!(
            below_duration(&rule, Duration::from_secs(5)),
            Duration::from_secs(85)
        );
    }

    #[test]
    fn names_the_alert_and_label_that_differ() {
        let plan = AlertPlan::default();
        let mut rule = AlertRule {
            name: "CriticalErrorRate".into(),
            threshold_rate: 0.5,
            window: Duration::from_secs(60),
            for_duration: Duration::from_secs(30),
            keep_firing_for: Duration::from_secs(60),
            eval_interval: Duration::from_secs(5),
            labels: BTreeMap::from([
                ("severity".into(), "critical".into()),
                ("family".into(), "errors".into()),
            ]),
            inclusive: false,
        };
        let expected = &plan.expect["CriticalErrorRate"];
        assert!(expectation_problems(&rule, expected).is_empty());
        rule.labels.insert("severity".into(), "warning".into());
        rule.labels.remove("family");
        rule.for_duration = Duration::ZERO;
        assert_eq!(
            expectation_problems(&rule, expected),
            vec![
                "CriticalErrorRate: label family missing, expected family=\"errors\"",
                "CriticalErrorRate: label severity=\"warning\", expected severity=\"critical\"",
                "CriticalErrorRate: for 0ns, expected 30s",
            ]
        );
        // Without keep_firing_for its warnings would notify on the way down.
        rule = AlertRule {
            keep_firing_for: Duration::ZERO,
            ..rule
        };
        assert!(expectation_problems(&rule, expected)
            .contains(&"CriticalErrorRate: keep_firing_for 0ns, expected 60s".to_owned()));
        // SPEC §6: a burst fires at once.
        let burst = AlertRule {
            name: "ErrorBurst".into(),
            for_duration: Duration::from_secs(60),
            labels: BTreeMap::from([
                ("severity".into(), "warning".into()),
                ("family".into(), "errors".into()),
            ]),
            ..rule
        };
        assert_eq!(
            expectation_problems(&burst, &plan.expect["ErrorBurst"]),
            vec![
                "ErrorBurst: threshold 0.500 5xx/s, expected 0.167 5xx/s",
                "ErrorBurst: for 60s, expected 0ns"
            ]
        );
        // 1.5x too lax still lies between the warning and critical rates.
        let lax = AlertRule {
            threshold_rate: 0.75,
            keep_firing_for: Duration::from_secs(60),
            ..rule
        };
        assert!(expectation_problems(&lax, expected).contains(
            &"CriticalErrorRate: threshold 0.750 5xx/s, expected 0.500 5xx/s".to_owned()
        ));
        // "More than 10 in a minute": not 20 in 2 minutes, not 10 or more.
        let stretched = AlertRule {
            name: "ErrorBurst".into(),
            threshold_rate: 20.0 / 120.0,
            window: Duration::from_secs(120),
            for_duration: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            inclusive: true,
            labels: BTreeMap::from([
                ("severity".into(), "warning".into()),
                ("family".into(), "errors".into()),
            ]),
            ..lax
        };
        assert_eq!(
            expectation_problems(&stretched, &plan.expect["ErrorBurst"]),
            vec![
                "ErrorBurst: compares with >=, expected > (more than the threshold)",
                "ErrorBurst: window 120s, expected 60s",
            ]
        );
    }
}
