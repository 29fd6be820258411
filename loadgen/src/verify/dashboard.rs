//! `loadgen verify-dashboard`: every query of every panel and every
//! annotation query, with template variables substituted as Grafana would,
//! is run against Prometheus over the window of the traffic being verified
//! (`--report run.json`, `--from/--to`, or the last 15 minutes). A query
//! error, no data, a `legendFormat` label missing from the result, a panel
//! without targets or without a unit, an expression that can never be
//! empty (`or vector(0)`, `or (x * 0)`, unless a documented stat), a
//! panel whose targets are all hidden, a datasource that is not the
//! dashboard's Prometheus variable, a legend with a stray brace, or a
//! template variable without values (after its `regex`) fails: each is a
//! panel Grafana would show empty or broken.

use std::{
    collections::BTreeSet,
    io::Write,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, Table};
use serde_json::Value;

use crate::{
    verify::prometheus::{parse_prom_duration, unix_seconds, ApiError, Prometheus},
    Exit,
};

/// Default range: the dashboards' default `now-15m`.
const RANGE: Duration = Duration::from_secs(15 * 60);

/// The time range the queries cover, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub from: f64,
    pub to: f64,
}

impl Window {
    /// The last 15 minutes.
    pub fn recent() -> Self {
        let to = unix_seconds(SystemTime::now());
        Self {
            from: to - RANGE.as_secs_f64(),
            to,
        }
    }

    /// The run window of a `loadgen run --out` report.
    pub fn from_report(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the report {}", path.display()))?;
        let report: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let ms = |field: &str| {
            report[field].as_u64().ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no `{field}` (is it a loadgen run report?)",
                    path.display()
                )
            })
        };
        let (from, to) = (ms("started_at_unix_ms")?, ms("ended_at_unix_ms")?);
        Self::new(from as f64 / 1000.0, to as f64 / 1000.0)
    }

    pub fn new(from: f64, to: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            from.is_finite() && to.is_finite() && from < to,
            "the window must have from < to (got {from} .. {to})"
        );
        Ok(Self { from, to })
    }
}

/// Where a query comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Panel,
    Annotation,
    Variable,
}

/// One query, ready to run, with what its result must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    pub has_unit: bool,
    pub kind: QueryKind,
    /// Labels the legend (or annotation title) shows: each result series
    /// must carry them.
    pub legend_labels: Vec<String>,
    /// Why the panel or query is wrong before running it.
    pub static_problem: Option<String>,
    /// A variable's `regex`: the values Grafana keeps must match it.
    pub value_regex: Option<String>,
}

/// `{{label}}` names in a Grafana legend format.
pub fn legend_labels(format: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = format;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && !labels.iter().any(|l| l == name) {
            labels.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    labels
}

/// An `or` whose right side is a constant (`vector(...)`) or a series
/// multiplied by zero: never empty by construction, so "has data" proves
/// nothing about the left side.
pub fn never_empty(expr: &str) -> bool {
    let compact: String = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut from = 0;
    while let Some(found) = compact[from..].find("or") {
        let at = from + found;
        from = at + 2;
        let before = compact[..at].chars().next_back();
        let mut after = &compact[at + 2..];
        if before.is_some_and(word) || after.chars().next().is_some_and(word) {
            continue; // part of a name (`errors`, `ignoring`)
        }
        after = after.trim_start();
        for modifier in ["on", "ignoring"] {
            if let Some(m) = after.strip_prefix(modifier) {
                if let Some(close) = m
                    .trim_start()
                    .strip_prefix('(')
                    .and_then(|m| m.find(')').map(|i| &m[i + 1..]))
                {
                    after = close.trim_start();
                }
            }
        }
        let after = after.trim_start_matches(['(', ' ']);
        if after.starts_with("vector(") || after.starts_with("vector (") {
            return true;
        }
        let right = balanced_prefix(after);
        let zeroed = right.replace(' ', "");
        if zeroed.contains("*0)") || zeroed.ends_with("*0") || zeroed.contains("*0.0") {
            return true;
        }
    }
    false
}

/// `text` up to the parenthesis that closes before it (the operand of a
/// binary operator), or all of it.
fn balanced_prefix(text: &str) -> &str {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return &text[..i],
            ')' => depth -= 1,
            _ => {}
        }
    }
    text
}

/// A legend or annotation format with a brace outside `{{label}}`: Grafana
/// prints it literally (`{status_code}}` is a typo, not a label).
pub fn legend_problem(format: &str) -> Option<String> {
    let mut rest = format.to_owned();
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        rest.replace_range(start..start + end + 2, "");
    }
    rest.contains(['{', '}'])
        .then(|| format!("legend format {format:?} has a stray brace"))
}

/// Why a panel's or target's datasource is not the dashboard's Prometheus
/// datasource variable (`${datasource}`), if it is not; `None` when unset
/// (Grafana uses the panel's or the default datasource).
fn datasource_problem(datasource: &Value, prometheus_variables: &[&str]) -> Option<String> {
    let uid = match datasource {
        Value::Null => return None,
        Value::String(uid) => uid.as_str(),
        other => other["uid"].as_str().unwrap_or_default(),
    };
    let name = uid
        .strip_prefix("${")
        .and_then(|u| u.strip_suffix('}'))
        .or_else(|| uid.strip_prefix('$'))
        .unwrap_or_default();
    (!prometheus_variables.contains(&name)).then(|| {
        format!("datasource {uid:?} is not a Prometheus datasource variable of the dashboard")
    })
}

/// A Grafana variable regex (`/pattern/flags` or a bare pattern) as Rust regex.
fn variable_regex(text: &str) -> Result<Option<regex::Regex>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (pattern, flags) = match text.strip_prefix('/').and_then(|t| t.rsplit_once('/')) {
        Some((pattern, flags)) => (pattern, flags),
        None => (text, ""),
    };
    let pattern = if flags.contains('i') {
        format!("(?i){pattern}")
    } else {
        pattern.to_owned()
    };
    regex::Regex::new(&pattern)
        .map(Some)
        .map_err(|err| format!("variable regex {text:?} is invalid: {err}"))
}

/// All panels, rows included, in display order.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            found.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            found.push(panel);
        }
    }
    found
}

/// `(name, value)` for each template variable: the all-value for multi
/// selections, else the current value.
fn variables(dashboard: &Value, scrape: Duration, range: Duration) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        (
            "__rate_interval".into(),
            format!("{}s", (scrape * 4).as_secs().max(1)),
        ),
        ("__interval".into(), format!("{}s", scrape.as_secs().max(1))),
        ("__range".into(), format!("{}s", range.as_secs().max(1))),
    ];
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        let value = match var["type"].as_str() {
            Some("datasource") => var["current"]["value"]
                .as_str()
                .unwrap_or("prometheus")
                .to_owned(),
            _ if var["includeAll"].as_bool() == Some(true) => {
                var["allValue"].as_str().unwrap_or(".*").to_owned()
            }
            _ => var["current"]["value"].as_str().unwrap_or(".*").to_owned(),
        };
        vars.push((name.to_owned(), value));
    }
    // Longest names first, so `$endpoint_x` is not replaced as `$endpoint`.
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    vars
}

/// Substitutes `${name}`, `$name` and `[[name]]` forms.
pub fn substitute(expr: &str, vars: &[(String, String)]) -> String {
    let mut result = expr.to_owned();
    for (name, value) in vars {
        result = result
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("[[{name}]]"), value)
            .replace(&format!("${name}"), value);
    }
    result
}

/// The query a template variable runs, as a PromQL expression whose
/// result series carry the variable's values in `label` (if any).
fn variable_query(text: &str) -> (String, Option<String>) {
    let text = text.trim();
    if let Some(args) = text
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return match args.rsplit_once(',') {
            Some((metric, label)) => {
                let label = label.trim().to_owned();
                (
                    format!("count by ({label}) ({})", metric.trim()),
                    Some(label),
                )
            }
            None => {
                let label = args.trim().to_owned();
                (
                    format!("count by ({label}) ({{{label}!=\"\"}})"),
                    Some(label),
                )
            }
        };
    }
    if let Some(expr) = text
        .strip_prefix("query_result(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return (expr.to_owned(), None);
    }
    (text.to_owned(), None)
}

/// Every query of one dashboard (panels, annotations, template variables)
/// with variables substituted, and the panels' static problems.
pub fn queries(dashboard: &Value, scrape: Duration, range: Duration) -> Vec<PanelQuery> {
    let vars = variables(dashboard, scrape, range);
    let template: Vec<&Value> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let prometheus_variables: Vec<&str> = template
        .iter()
        .filter(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut result = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)").to_owned();
        let kind = panel["type"].as_str().unwrap_or("");
        let has_unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_some_and(|u| !u.is_empty());
        let documented_stat = kind == "stat"
            && panel["description"]
                .as_str()
                .is_some_and(|d| !d.trim().is_empty());
        let with_expr: Vec<&Value> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()))
            .collect();
        // A hidden target is not drawn: it proves nothing about the panel.
        let targets: Vec<&Value> = with_expr
            .iter()
            .copied()
            .filter(|t| t["hide"] != true)
            .collect();
        if targets.is_empty() && kind != "text" {
            let why = if with_expr.is_empty() {
                "panel has no targets"
            } else {
                "every target of the panel is hidden"
            };
            result.push(PanelQuery {
                panel: title.clone(),
                ref_id: "-".into(),
                expr: String::new(),
                has_unit,
                kind: QueryKind::Panel,
                legend_labels: Vec::new(),
                static_problem: Some(why.into()),
                value_regex: None,
            });
        }
        let panel_datasource = datasource_problem(&panel["datasource"], &prometheus_variables);
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            let legend = target["legendFormat"].as_str().unwrap_or("");
            let static_problem = panel_datasource
                .clone()
                .or_else(|| datasource_problem(&target["datasource"], &prometheus_variables))
                .or_else(|| legend_problem(legend))
                .or_else(|| (never_empty(expr) && !documented_stat).then(|| {
                    "never empty by construction (`or vector(…)`, `or (x * 0)`); only a stat with a description may do that".into()
                }));
            result.push(PanelQuery {
                panel: title.clone(),
                ref_id: target["refId"].as_str().unwrap_or("?").to_owned(),
                expr: substitute(expr, &vars),
                has_unit,
                kind: QueryKind::Panel,
                legend_labels: legend_labels(legend),
                static_problem,
                value_regex: None,
            });
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(expr) = annotation["expr"].as_str() else {
            continue;
        };
        let format = format!(
            "{} {}",
            annotation["titleFormat"].as_str().unwrap_or(""),
            annotation["textFormat"].as_str().unwrap_or("")
        );
        result.push(PanelQuery {
            panel: format!(
                "annotation: {}",
                annotation["name"].as_str().unwrap_or("(unnamed)")
            ),
            ref_id: "-".into(),
            expr: substitute(expr, &vars),
            has_unit: true,
            kind: QueryKind::Annotation,
            legend_labels: legend_labels(&format),
            static_problem: datasource_problem(&annotation["datasource"], &prometheus_variables)
                .or_else(|| legend_problem(&format))
                .or_else(|| {
                    never_empty(expr).then(|| "never empty by construction (`or vector(…)`)".into())
                }),
            value_regex: None,
        });
    }
    for var in template.iter().filter(|v| v["type"] == "query") {
        let text = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .or_else(|| var["definition"].as_str())
            .unwrap_or("");
        let (expr, label) = variable_query(&substitute(text, &vars));
        let regex = var["regex"].as_str().unwrap_or_default();
        result.push(PanelQuery {
            panel: format!("variable: ${}", var["name"].as_str().unwrap_or("?")),
            ref_id: "-".into(),
            expr,
            has_unit: true,
            kind: QueryKind::Variable,
            legend_labels: label.into_iter().collect(),
            static_problem: if text.trim().is_empty() {
                Some("template variable has no query".into())
            } else {
                datasource_problem(&var["datasource"], &prometheus_variables)
                    .or_else(|| variable_regex(regex).err())
            },
            value_regex: (!regex.trim().is_empty()).then(|| regex.to_owned()),
        });
    }
    result
}

/// The verdict on one query's result: `Ok(series)` or `Err((series, why))`.
fn judge(
    query: &PanelQuery,
    series: &[crate::verify::prometheus::RangeSeries],
) -> Result<String, (String, String)> {
    let with_data: Vec<_> = series
        .iter()
        .filter(|s| s.points.iter().any(|(_, v)| v.is_finite()))
        .collect();
    let count = with_data.len().to_string();
    if !query.has_unit {
        return Err((count, "FAIL: panel has no unit".into()));
    }
    if with_data.is_empty() {
        let what = match query.kind {
            QueryKind::Variable => "FAIL: no values",
            _ => "FAIL: no data",
        };
        return Err((count, what.into()));
    }
    // Grafana keeps only the values the variable's regex matches.
    if let (Some(regex), Some(label)) = (
        query
            .value_regex
            .as_deref()
            .and_then(|r| variable_regex(r).ok().flatten()),
        query.legend_labels.first(),
    ) {
        let kept = with_data
            .iter()
            .filter(|s| s.labels.get(label).is_some_and(|v| regex.is_match(v)))
            .count();
        if kept == 0 {
            return Err((count, "FAIL: no value matches the variable's regex".into()));
        }
    }
    let missing: BTreeSet<&str> = query
        .legend_labels
        .iter()
        .filter(|label| with_data.iter().any(|s| !s.labels.contains_key(*label)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let missing: Vec<&str> = missing.into_iter().collect();
        return Err((
            count,
            format!(
                "FAIL: legend label {} not in the result",
                missing.join(", ")
            ),
        ));
    }
    Ok(count)
}

/// The service's scrape interval: the provisioned datasource's
/// `timeInterval`, so Grafana's `$__interval` and step, and four times it
/// is `$__rate_interval`.
async fn scrape_interval(prometheus: &Prometheus) -> Result<Duration, ApiError> {
    let targets = prometheus.targets().await?;
    let scrape = targets
        .iter()
        .filter(|t| t.job() == "items-service")
        .chain(&targets)
        .find_map(|t| parse_prom_duration(&t.scrape_interval))
        .unwrap_or(Duration::from_secs(15));
    Ok(scrape.max(Duration::from_secs(1)))
}

/// Prometheus refuses a range query of more than 11,000 points per
/// series: long windows (a soak run's report) get a coarser step, as
/// Grafana's `maxDataPoints` does; at least the scrape interval.
pub const MAX_POINTS: f64 = 10_000.0; // below 11,000: margin for rounding

pub fn step(scrape: Duration, range: Duration) -> Duration {
    let needed = (range.as_secs_f64() / MAX_POINTS).ceil();
    scrape.max(Duration::from_secs_f64(needed))
}

pub async fn run(
    prometheus: &Prometheus,
    paths: &[PathBuf],
    window: Window,
    out: &mut impl Write,
) -> anyhow::Result<Exit> {
    let paths = if paths.is_empty() {
        let mut found: Vec<PathBuf> = std::fs::read_dir("grafana/dashboards")
            .context("no dashboards given and grafana/dashboards/ is not readable (run from the repository root)")?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        found.sort();
        found
    } else {
        paths.to_vec()
    };
    anyhow::ensure!(!paths.is_empty(), "no dashboard JSON files found");
    let scrape = scrape_interval(prometheus).await?;
    let range = Duration::from_secs_f64(window.to - window.from);
    let step = step(scrape, range);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "dashboard",
        "panel",
        "ref",
        "series",
        "result",
    ]);
    let (mut total, mut failed) = (0, 0);
    for path in &paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let dashboard: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for query in queries(&dashboard, scrape, range) {
            total += 1;
            let outcome = if let Some(problem) = &query.static_problem {
                Err(("-".to_owned(), format!("FAIL: {problem}")))
            } else {
                match prometheus
                    .query_range(&query.expr, window.from, window.to, step)
                    .await
                {
                    Ok(series) => judge(&query, &series),
                    Err(err @ ApiError::BadQuery { .. }) => {
                        Err(("-".to_owned(), format!("FAIL: {err}")))
                    }
                    Err(err) => return Err(err.into()),
                }
            };
            let (series, verdict) = match outcome {
                Ok(series) => (series, Cell::new("PASS").fg(Color::Green)),
                Err((series, message)) => {
                    failed += 1;
                    (series, Cell::new(message).fg(Color::Red))
                }
            };
            table.add_row(vec![
                Cell::new(&name),
                Cell::new(&query.panel),
                Cell::new(&query.ref_id),
                Cell::new(series),
                verdict,
            ]);
        }
    }
    writeln!(out, "{table}")?;
    writeln!(
        out,
        "window: {:.0} .. {:.0} ({:.0}s)",
        window.from,
        window.to,
        window.to - window.from
    )?;
    if failed == 0 {
        writeln!(
            out,
            "PASS: all {total} panel queries return data ($__rate_interval = {}s)",
            (scrape * 4).as_secs()
        )?;
        Ok(Exit::Pass)
    } else {
        writeln!(out, "FAIL: {failed} of {total} panel queries failed")?;
        Ok(Exit::CheckFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_variables_like_grafana() {
        let dashboard = serde_json::json!({
            "templating": {"list": [
                {"name": "datasource", "type": "datasource", "current": {"value": "prometheus"}},
                {"name": "endpoint", "type": "query", "includeAll": true, "allValue": ".*"},
                {"name": "endpoint_x", "type": "custom", "current": {"value": "/"}}
            ]},
            "panels": [
                {"type": "row", "title": "r", "panels": [
                    {"title": "inner", "fieldConfig": {"defaults": {"unit": "s"}},
                     "targets": [{"refId": "A", "expr": "rate(x{endpoint=~\"$endpoint\", e=\"${endpoint_x}\"}[$__rate_interval])"}]}
                ]},
                {"title": "no unit", "targets": [{"refId": "B", "expr": "up"}]}
            ]
        });
        let queries: Vec<PanelQuery> = queries(&dashboard, Duration::from_secs(5), RANGE)
            .into_iter()
            .filter(|q| q.kind == QueryKind::Panel)
            .collect();
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].expr, "rate(x{endpoint=~\".*\", e=\"/\"}[20s])");
        assert!(queries[0].has_unit);
        assert!(!queries[1].has_unit);
    }

    #[test]
    fn the_shipped_dashboard_has_units_and_queries_everywhere() {
        let text = include_str!("../../../grafana/dashboards/items-service.json");
        let dashboard: Value = serde_json::from_str(text).unwrap();
        let queries = queries(&dashboard, Duration::from_secs(5), RANGE);
        assert!(queries.len() >= 20, "{}", queries.len());
        for query in &queries {
            assert!(query.has_unit, "{} has no unit", query.panel);
            assert_eq!(query.static_problem, None, "{}", query.panel);
            assert!(
                !query.expr.contains('$'),
                "unsubstituted variable in {}",
                query.expr
            );
        }
    }

    #[test]
    fn legend_labels_and_never_empty_expressions() {
        assert_eq!(
            legend_labels("{{method}} {{ endpoint }}"),
            ["method", "endpoint"]
        );
        assert!(legend_labels("p99").is_empty());
        assert!(never_empty("sum(ALERTS) or vector(0)"));
        assert!(never_empty("sum by (a) (x)\n  or on () vector(0)"));
        assert!(never_empty("x or ignoring(a) vector(1)"));
        assert!(!never_empty("x or y"));
        assert!(!never_empty("vector(1)"));
        // The masks break-10 found passing: no space, parentheses, `* 0`.
        assert!(never_empty("sum(x)or vector(0)"));
        assert!(never_empty("sum(x) or (vector(0))"));
        assert!(never_empty(r#"sum(x) or on() (up{job="prometheus"} * 0)"#));
        assert!(never_empty("min(x) or on () min(up * 0)"));
        assert!(!never_empty("sum(errors_total) / sum(x)"));
        assert!(!never_empty("x or ignoring(a) (y * 10)"));
        assert!(legend_problem("{{method}} {{endpoint}}").is_none());
        assert!(legend_problem("{status_code}}").is_some());
        assert!(legend_problem("{{status_code}").is_some());
    }

    fn panel_mut<'a>(panels: &'a mut [Value], title: &str) -> Option<&'a mut Value> {
        for panel in panels.iter_mut() {
            if panel["title"] == title {
                return Some(panel);
            }
            if let Some(found) = panel["panels"]
                .as_array_mut()
                .and_then(|inner| panel_mut(inner, title))
            {
                return Some(found);
            }
        }
        None
    }

    /// Static problems of the shipped dashboard after `break_it`.
    fn problems_after(break_it: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut dashboard: Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../grafana/dashboards/items-service.json"),
            )
            .unwrap(),
        )
        .unwrap();
        break_it(&mut dashboard);
        queries(&dashboard, Duration::from_secs(5), Duration::from_secs(900))
            .into_iter()
            .filter_map(|q| q.static_problem.map(|p| format!("{}: {p}", q.panel)))
            .collect()
    }

    fn panel<'a>(dashboard: &'a mut Value, title: &str) -> &'a mut Value {
        panel_mut(dashboard["panels"].as_array_mut().unwrap(), title).unwrap()
    }

    #[test]
    fn hidden_targets_foreign_datasources_and_stray_braces_are_caught() {
        assert_eq!(problems_after(|_| {}), Vec::<String>::new());
        type Breakage = Box<dyn FnOnce(&mut Value)>;
        let cases: [(&str, Breakage); 5] = [
            (
                "Requests in flight: every target of the panel is hidden",
                Box::new(|d| panel(d, "Requests in flight")["targets"][0]["hide"] = true.into()),
            ),
            (
                "Request rate (user routes): datasource \"${datsource}\" is not",
                Box::new(|d| {
                    panel(d, "Request rate (user routes)")["datasource"]["uid"] =
                        "${datsource}".into()
                }),
            ),
            (
                "Status codes: legend format \"{status_code}}\" has a stray brace",
                Box::new(|d| {
                    panel(d, "Status codes")["targets"][0]["legendFormat"] = "{status_code}}".into()
                }),
            ),
            (
                "Request rate (user routes): datasource \"${datasource}\" is not",
                Box::new(|d| d["templating"]["list"][0]["query"] = "loki".into()),
            ),
            (
                "variable: $endpoint: variable regex \"/([/\" is invalid",
                Box::new(|d| d["templating"]["list"][3]["regex"] = "/([/".into()),
            ),
        ];
        for (expected, break_it) in cases {
            let found = problems_after(break_it);
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{expected:?} not in {found:#?}"
            );
        }
    }

    #[test]
    fn a_variable_regex_that_keeps_no_value_fails() {
        let query = |regex: &str| PanelQuery {
            panel: "variable: $endpoint".into(),
            ref_id: "-".into(),
            expr: String::new(),
            has_unit: true,
            kind: QueryKind::Variable,
            legend_labels: vec!["endpoint".into()],
            static_problem: None,
            value_regex: Some(regex.into()),
        };
        let series = [crate::verify::prometheus::RangeSeries {
            labels: [("endpoint".to_owned(), "/items".to_owned())].into(),
            points: vec![(0.0, 1.0)],
        }];
        assert!(judge(&query("/^/items$/"), &series).is_ok());
        assert!(judge(&query("/ITEMS/i"), &series).is_ok());
        let (_, why) = judge(&query("/^nomatch$/"), &series).unwrap_err();
        assert_eq!(why, "FAIL: no value matches the variable's regex");
    }

    #[test]
    fn panels_without_targets_and_variables_are_queries_too() {
        let dashboard = serde_json::json!({
            "templating": {"list": [
                {"name": "endpoint", "type": "query",
                 "query": {"query": "label_values(http_requests_total{job=\"a\"}, endpoint)"}}
            ]},
            "annotations": {"list": [{"name": "phases", "expr": "loadgen_phase_active == 1", "titleFormat": "{{phase}}"}]},
            "panels": [
                {"type": "timeseries", "title": "empty", "targets": []},
                {"type": "stat", "title": "documented", "description": "0 when no alert fires",
                 "fieldConfig": {"defaults": {"unit": "none"}},
                 "targets": [{"refId": "A", "expr": "count(ALERTS) or vector(0)"}]},
                {"type": "text", "title": "notes"}
            ]
        });
        let queries = queries(&dashboard, Duration::from_secs(5), RANGE);
        let find = |panel: &str| queries.iter().find(|q| q.panel == panel).unwrap();
        assert_eq!(
            find("empty").static_problem.as_deref(),
            Some("panel has no targets")
        );
        assert_eq!(find("documented").static_problem, None);
        assert!(!queries.iter().any(|q| q.panel == "notes"));
        let annotation = find("annotation: phases");
        assert_eq!(annotation.legend_labels, ["phase"]);
        let variable = find("variable: $endpoint");
        assert_eq!(
            variable.expr,
            "count by (endpoint) (http_requests_total{job=\"a\"})"
        );
        assert_eq!(variable.legend_labels, ["endpoint"]);
    }

    #[test]
    fn long_windows_get_a_step_prometheus_accepts() {
        let scrape = Duration::from_secs(5);
        assert_eq!(step(scrape, Duration::from_secs(3600)), scrape);
        let soak = Duration::from_secs(16 * 3600);
        let long = step(scrape, soak);
        assert!(long > scrape, "{long:?}");
        assert!(soak.as_secs_f64() / long.as_secs_f64() <= MAX_POINTS);
    }
}
