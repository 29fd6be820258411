//! Lints the provisioned Grafana dashboard without Grafana: the rules of
//! grafana/dashboard-linter we follow (the linter itself is a Go tool that
//! is not packaged here), read with the same `.lint` exclusion file, plus
//! the project's own (issues 12 and 14): no `spanNulls: true` drawing over
//! scrape gaps, the error panel showing what the alerts use, links to the
//! alerting UIs and the runbook, the Load generator row and the loadgen
//! phase annotations.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::repo;

fn dashboard() -> Value {
    let path = repo().join("grafana/dashboards/items-service.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn panels(dashboard: &Value) -> Vec<&Value> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or_default()
}

/// Targets a `.lint` rule excludes, as (panel title, target index or all).
struct Exclusions(Vec<(String, Option<u64>)>);

impl Exclusions {
    fn load(rule: &str, titles: &BTreeSet<&str>) -> Self {
        let text = std::fs::read_to_string(repo().join("grafana/dashboards/.lint")).unwrap();
        let lint: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let entry = &lint["exclusions"][rule];
        let reason = entry["reason"].as_str().unwrap_or_default();
        assert!(reason.len() > 20, ".lint: {rule} needs a reason");
        let entries = entry["entries"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|e| {
                let panel = e["panel"].as_str().expect("entry names a panel");
                assert!(
                    titles.contains(panel),
                    ".lint: {rule} excludes {panel:?}, which is not a panel"
                );
                (panel.to_owned(), e["targetIdx"].as_u64())
            })
            .collect();
        Self(entries)
    }

    fn covers(&self, panel: &str, index: usize) -> bool {
        self.0
            .iter()
            .any(|(p, i)| p == panel && i.is_none_or(|i| i == index as u64))
    }
}

/// The matcher that leaves the probes and the scrape out.
const USER_ROUTES: &str = r#"endpoint!~"/metrics|/healthz|/readyz""#;

/// Whether `expr` reads the service's raw request series.
fn counts_requests(expr: &str) -> bool {
    [
        "http_requests_total{",
        "http_request_duration_seconds_bucket{",
    ]
    .iter()
    .any(|metric| expr.contains(metric))
}

/// Every problem found by `check`, so one run shows them all.
fn lint(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let panels = panels(dashboard);
    let titles: BTreeSet<&str> = panels.iter().map(|p| title(p)).collect();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);

    // template-datasource-rule, template-job-rule, template-instance-rule.
    match variable("datasource") {
        Some(v) if v["label"] == "Data source" && v["query"] == "prometheus" => {}
        other => problems.push(format!(
            "datasource variable must be labelled \"Data source\": {other:?}"
        )),
    }
    for name in ["job", "instance"] {
        match variable(name) {
            Some(v)
                if v["type"] == "query"
                    && v["datasource"]["uid"] == "${datasource}"
                    && v["label"] == name
                    && v["multi"] == true
                    && v["includeAll"] == true => {}
            other => problems.push(format!(
                "${name}: a multi-value query variable with All on ${{datasource}} is required: {other:?}"
            )),
        }
    }

    if variable("endpoint").is_none_or(|v| {
        !v["definition"]
            .as_str()
            .unwrap_or_default()
            .contains(USER_ROUTES)
    }) {
        problems.push("$endpoint: must list user routes only".into());
    }

    let job = Exclusions::load("target-job-rule", &titles);
    let instance = Exclusions::load("target-instance-rule", &titles);
    for panel in &panels {
        let name = title(panel);
        // panel-title-description-rule, panel-units-rule, datasource.
        if panel["description"].as_str().unwrap_or_default().len() < 10 {
            problems.push(format!("{name}: no description"));
        }
        if panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            problems.push(format!("{name}: no unit"));
        }
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{name}: datasource is not ${{datasource}}"));
        }
        // Outages must show as gaps: at most a few scrape intervals bridged.
        let span = &panel["fieldConfig"]["defaults"]["custom"]["spanNulls"];
        if span == true || span.as_f64().is_some_and(|ms| ms > 30_000.0) {
            problems.push(format!("{name}: spanNulls {span} draws over outages"));
        }
        for (index, target) in panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let expr = target["expr"].as_str().unwrap_or_default();
            // target-job-rule, target-instance-rule.
            if !expr.contains(r#"job=~"$job""#) && !job.covers(name, index) {
                problems.push(format!("{name} #{index}: does not use $job: {expr}"));
            }
            if !expr.contains(r#"instance=~"$instance""#) && !instance.covers(name, index) {
                problems.push(format!("{name} #{index}: does not use $instance: {expr}"));
            }
            // Issue 14: traffic, error and latency panels count user routes
            // only, as the alerts do.
            if counts_requests(expr) && !expr.contains(USER_ROUTES) {
                problems.push(format!("{name} #{index}: counts the probes too: {expr}"));
            }
            // target-rate-interval-rule.
            if expr.contains("rate(") && !expr.contains("[$__rate_interval]") {
                problems.push(format!("{name} #{index}: rate() without $__rate_interval"));
            }
            if target["datasource"]["uid"] != "${datasource}" {
                problems.push(format!(
                    "{name} #{index}: datasource is not ${{datasource}}"
                ));
            }
        }
    }
    problems.extend(error_panel(&panels));
    problems.extend(links(dashboard));
    problems.extend(loadgen_row(dashboard));
    problems.extend(phase_annotations(dashboard));
    problems
}

fn exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["expr"].as_str())
        .collect()
}

/// The error panel shows the series and thresholds the alerts use.
fn error_panel(panels: &[&Value]) -> Vec<String> {
    let Some(panel) = panels.iter().find(|p| {
        exprs(p)
            .iter()
            .any(|e| e.starts_with("job:http_requests_5xx:rate1m"))
    }) else {
        return vec!["no panel shows job:http_requests_5xx:rate1m".into()];
    };
    let mut problems = Vec::new();
    let all = exprs(panel).join("\n");
    for series in [
        "job:http_requests_5xx:ratio_rate1m",
        "job:slo_error_budget:burnrate",
    ] {
        if !all.contains(series) {
            problems.push(format!("error panel: no {series}"));
        }
    }
    let defaults = &panel["fieldConfig"]["defaults"];
    let steps: Vec<f64> = defaults["thresholds"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["value"].as_f64())
        .collect();
    if steps != [0.1, 0.5] {
        problems.push(format!(
            "error panel: thresholds {steps:?}, not the alerts' 0.1 and 0.5"
        ));
    }
    if defaults["custom"]["thresholdsStyle"]["mode"] != "line" {
        problems.push("error panel: thresholds are not drawn as lines".into());
    }
    problems
}

fn links(dashboard: &Value) -> Vec<String> {
    let urls: Vec<&str> = dashboard["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["url"].as_str())
        .collect();
    [
        ("Prometheus alerts", "${prometheus_url}/alerts"),
        ("Alertmanager", "${alertmanager_url}/"),
        ("runbook", "RUNBOOK.md"),
    ]
    .into_iter()
    .filter(|(_, needle)| !urls.iter().any(|u| u.contains(needle)))
    .map(|(what, _)| format!("no dashboard link to {what}: {urls:?}"))
    .collect()
}

/// Issue 12: offered vs achieved vs server rate on one panel, client vs
/// server p99, dropped and errors by status, in-flight and VUs.
fn loadgen_row(dashboard: &Value) -> Vec<String> {
    let all = dashboard["panels"].as_array().unwrap();
    let Some(start) = all
        .iter()
        .position(|p| p["type"] == "row" && p["title"] == "Load generator")
    else {
        return vec!["no Load generator row".into()];
    };
    let row: Vec<&Value> = all[start + 1..]
        .iter()
        .take_while(|p| p["type"] != "row")
        .collect();
    let has = |needles: &[&str]| {
        row.iter().any(|p| {
            let text = exprs(p).join("\n");
            needles.iter().all(|n| text.contains(n))
        })
    };
    [
        (
            "offered vs achieved vs server rate",
            &[
                "loadgen_target_rate",
                "loadgen_requests_total",
                "http_requests_total",
            ][..],
        ),
        (
            "client p99 vs server p99",
            &[
                "loadgen_request_duration_seconds_bucket",
                "http_request_duration_seconds_bucket",
            ],
        ),
        (
            "dropped and errors by status",
            &["loadgen_requests_total", "by (status)"],
        ),
        ("in-flight and VUs", &["loadgen_in_flight", "loadgen_vus"]),
    ]
    .into_iter()
    .filter(|(_, needles)| !has(needles))
    .map(|(what, _)| format!("Load generator row: no panel with {what}"))
    .collect()
}

/// One region per loadgen phase, with the fields Grafana's Prometheus
/// datasource reads for annotations.
fn phase_annotations(dashboard: &Value) -> Vec<String> {
    let list = dashboard["annotations"]["list"].as_array().unwrap();
    let Some(phases) = list.iter().find(|a| {
        a["expr"]
            .as_str()
            .is_some_and(|e| e.contains("loadgen_phase_active"))
    }) else {
        return vec!["no annotation from loadgen_phase_active".into()];
    };
    let mut problems = Vec::new();
    for (field, expected) in [
        ("titleFormat", Value::from("{{phase}}")),
        ("tagKeys", Value::from("scenario,run_id")),
        ("useValueForTime", Value::from(false)),
        ("enable", Value::from(true)),
    ] {
        if phases[field] != expected {
            problems.push(format!(
                "phase annotation: {field} is {}, not {expected}",
                phases[field]
            ));
        }
    }
    if phases["step"].as_str().unwrap_or_default().is_empty() {
        problems.push("phase annotation: no step".into());
    }
    if phases["datasource"]["uid"] != "${datasource}" {
        problems.push("phase annotation: datasource is not ${datasource}".into());
    }
    problems
}

#[test]
fn the_dashboard_passes_the_lint_rules() {
    let problems = lint(&dashboard());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_lint_catches_what_issue_14_reported() {
    // The seed's faults, put back one at a time into the real dashboard.
    let mut broken = dashboard();
    let panels = broken["panels"].as_array_mut().unwrap();
    let error = panels
        .iter_mut()
        .find(|p| p["title"] == "Errors: what the alerts use")
        .unwrap();
    error["fieldConfig"]["defaults"]["custom"]["spanNulls"] = Value::from(true);
    error["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] = Value::from(0.01);
    error["description"] = Value::from("");
    let rate = panels
        .iter_mut()
        .find(|p| p["title"] == "Request rate (user routes)")
        .unwrap();
    rate["targets"][0]["expr"] =
        Value::from(r#"sum(rate(http_requests_total{job="items-service"}[1m]))"#);
    let by_endpoint = panels
        .iter_mut()
        .find(|p| p["title"] == "Errors by endpoint")
        .unwrap();
    let unfiltered = by_endpoint["targets"][0]["expr"]
        .as_str()
        .unwrap()
        .replace(r#", endpoint!~"/metrics|/healthz|/readyz""#, "");
    by_endpoint["targets"][0]["expr"] = Value::from(unfiltered);
    broken["templating"]["list"][0]["label"] = Value::from("Datasource");
    broken["annotations"]["list"]
        .as_array_mut()
        .unwrap()
        .retain(|a| !a["expr"].as_str().unwrap().contains("loadgen"));
    broken["links"] = Value::Array(Vec::new());
    let problems = lint(&broken).join("\n");
    for expected in [
        "Errors: what the alerts use: spanNulls true",
        "error panel: thresholds [0.01, 0.5]",
        "Errors: what the alerts use: no description",
        "Request rate (user routes) #0: does not use $job",
        "Request rate (user routes) #0: does not use $instance",
        "Request rate (user routes) #0: rate() without $__rate_interval",
        "datasource variable must be labelled",
        "Errors by endpoint #0: counts the probes too",
        "no annotation from loadgen_phase_active",
        "no dashboard link to runbook",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }
}
