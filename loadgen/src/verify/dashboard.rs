//! `loadgen verify-dashboard`: every query of every panel, with template
//! variables substituted as Grafana would, is run against Prometheus over
//! the dashboard's default time range. A query error, a panel without data
//! or a panel without a unit fails the check.

use std::{
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

/// Range the queries cover: the dashboards' default `now-15m`.
const RANGE: Duration = Duration::from_secs(15 * 60);

/// One panel query, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    pub has_unit: bool,
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
fn variables(dashboard: &Value, scrape: Duration) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        (
            "__rate_interval".into(),
            format!("{}s", (scrape * 4).as_secs().max(1)),
        ),
        ("__interval".into(), format!("{}s", scrape.as_secs().max(1))),
        ("__range".into(), format!("{}s", RANGE.as_secs())),
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

/// The queries of one dashboard with variables substituted.
pub fn queries(dashboard: &Value, scrape: Duration) -> Vec<PanelQuery> {
    let vars = variables(dashboard, scrape);
    let mut result = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)").to_owned();
        let has_unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_some_and(|u| !u.is_empty());
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                result.push(PanelQuery {
                    panel: title.clone(),
                    ref_id: target["refId"].as_str().unwrap_or("?").to_owned(),
                    expr: substitute(expr, &vars),
                    has_unit,
                });
            }
        }
    }
    result
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

pub async fn run(
    prometheus: &Prometheus,
    paths: &[PathBuf],
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
    let end = unix_seconds(SystemTime::now());
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
        for query in queries(&dashboard, scrape) {
            total += 1;
            let outcome = match prometheus
                .query_range(&query.expr, end - RANGE.as_secs_f64(), end, scrape)
                .await
            {
                Ok(series) => {
                    let with_data = series
                        .iter()
                        .filter(|s| s.points.iter().any(|(_, v)| v.is_finite()))
                        .count();
                    match (with_data, query.has_unit) {
                        (_, false) => {
                            Err((with_data.to_string(), "FAIL: panel has no unit".to_owned()))
                        }
                        (0, _) => Err(("0".to_owned(), "FAIL: no data".to_owned())),
                        (n, _) => Ok(n.to_string()),
                    }
                }
                Err(err @ ApiError::BadQuery { .. }) => {
                    Err(("-".to_owned(), format!("FAIL: {err}")))
                }
                Err(err) => return Err(err.into()),
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
        let queries = queries(&dashboard, Duration::from_secs(5));
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].expr, "rate(x{endpoint=~\".*\", e=\"/\"}[20s])");
        assert!(queries[0].has_unit);
        assert!(!queries[1].has_unit);
    }

    #[test]
    fn the_shipped_dashboard_has_units_and_queries_everywhere() {
        let text = include_str!("../../../grafana/dashboards/items-service.json");
        let dashboard: Value = serde_json::from_str(text).unwrap();
        let queries = queries(&dashboard, Duration::from_secs(5));
        assert!(queries.len() >= 20, "{}", queries.len());
        for query in &queries {
            assert!(query.has_unit, "{} has no unit", query.panel);
            assert!(
                !query.expr.contains('$'),
                "unsubstituted variable in {}",
                query.expr
            );
        }
    }
}
