//! The HTML report: one self-contained page (no network access, works from
//! `file://`) with the verdict on top, charts over time (uPlot, vendored
//! under `vendor/` with its licence and embedded in the page) and the
//! operation, phase and checks tables.
//!
//! The page is rendered in the browser from the JSON report embedded in
//! it, so `loadgen run --html` and `loadgen report REPORT.json --html`
//! produce the same page, and reports of older schema versions render
//! with what they carry (charts they lack say so).

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use super::SCHEMA_VERSION;

const TEMPLATE: &str = include_str!("html/template.html");
const STYLE: &str = include_str!("html/report.css");
const SCRIPT: &str = include_str!("html/report.js");
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");

/// The fields every report version has; enough to tell a loadgen report
/// from any other JSON before rendering it.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Shape {
    schema_version: u32,
    scenario: String,
    passed: bool,
    checks: Vec<Value>,
    summary: SummaryShape,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct SummaryShape {
    requests: u64,
    operations: Vec<Value>,
    phases: Vec<Value>,
    series: Vec<Value>,
}

/// A report this version cannot render.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path} is not a loadgen JSON report: {message}")]
    NotAReport { path: String, message: String },
    #[error("{path} has schema_version {found}; this loadgen reads 1 to {SCHEMA_VERSION} (upgrade loadgen)")]
    TooNew { path: String, found: u32 },
}

/// Checks that `report` is a loadgen report this version can render.
pub fn validate(report: &Value, path: &str) -> Result<(), ReportError> {
    // serde reads a struct from an array too: insist on objects.
    let not_an_object = |what: &str| ReportError::NotAReport {
        path: path.to_owned(),
        message: format!("{what} must be a JSON object"),
    };
    if !report.is_object() {
        return Err(not_an_object("the report"));
    }
    let shape = Shape::deserialize(report).map_err(|err| ReportError::NotAReport {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    if !report["summary"].is_object() {
        return Err(not_an_object("`summary`"));
    }
    match shape.schema_version {
        0 => Err(ReportError::NotAReport {
            path: path.to_owned(),
            message: "schema_version 0".into(),
        }),
        found if found > SCHEMA_VERSION => Err(ReportError::TooNew {
            path: path.to_owned(),
            found,
        }),
        _ => Ok(()),
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for `report` (a JSON report value).
pub fn render(report: &Value) -> String {
    let title = format!(
        "loadgen report: {}",
        report["scenario"].as_str().unwrap_or("?")
    );
    // Inside <script>, `</script` ends the element and `<!--` changes how
    // the rest is parsed: no `<` at all. It only occurs inside JSON
    // strings, where `\u003c` is the same character.
    let data = serde_json::to_string(report)
        .expect("a JSON value serialises")
        .replace('<', "\\u003c");
    fill(
        TEMPLATE,
        &[
            ("title", &escape_html(&title)),
            ("uplot_css", UPLOT_CSS),
            ("style", STYLE),
            ("uplot_js", UPLOT_JS),
            ("script", SCRIPT),
            ("report", &data),
        ],
    )
}

/// Replaces each `{{name}}` of `template` in one pass: the inserted texts
/// (report text among them) are never searched for placeholders.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut page =
        String::with_capacity(template.len() + values.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .map(|end| start + end)
            .expect("template placeholders are closed");
        let name = &rest[start + 2..end];
        let value = values
            .iter()
            .find(|(known, _)| *known == name)
            .unwrap_or_else(|| panic!("template placeholder {{{{{name}}}}} has no value"));
        page.push_str(&rest[..start]);
        page.push_str(value.1);
        rest = &rest[end + 2..];
    }
    page.push_str(rest);
    page
}

/// Writes the page for `report` to `path`.
pub fn write(report: &Value, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(report))
        .with_context(|| format!("writing the HTML report to {}", path.display()))
}

/// `loadgen report REPORT.json --html FILE`.
pub fn render_file(json: &Path, html: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("reading the report {}", json.display()))?;
    let shown = json.display().to_string();
    let report: Value = serde_json::from_str(&text).map_err(|err| ReportError::NotAReport {
        path: shown.clone(),
        message: err.to_string(),
    })?;
    validate(&report, &shown)?;
    write(&report, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_cannot_end_the_data_element() {
        let report = serde_json::json!({
            "schema_version": 2,
            "scenario": "<b>x</b>",
            "description": "</script><script>alert(1)</script><!--",
        });
        let page = render(&report);
        // Only the template's own four scripts close.
        assert_eq!(page.matches("</script>").count(), 4);
        assert!(page.contains("<title>loadgen report: &lt;b&gt;x&lt;/b&gt;</title>"));
        assert!(page.contains(
            r#""description":"\u003c/script>\u003cscript>alert(1)\u003c/script>\u003c!--""#
        ));
    }

    #[test]
    fn report_text_is_not_searched_for_placeholders() {
        let report = serde_json::json!({
            "schema_version": 2,
            "scenario": "{{uplot_js}}{{report}}",
            "description": "{{script}}",
        });
        let page = render(&report);
        assert!(page.contains("<title>loadgen report: {{uplot_js}}{{report}}</title>"));
        assert_eq!(page.matches(UPLOT_JS).count(), 1, "uPlot once");
        assert_eq!(page.matches(SCRIPT).count(), 1, "the script once");
    }

    #[test]
    fn validation_names_the_problem() {
        let report: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/reports/v1.json")).unwrap();
        assert!(validate(&report, "v1.json").is_ok());
        let mut newer = report.clone();
        newer["schema_version"] = Value::from(SCHEMA_VERSION + 1);
        assert!(matches!(
            validate(&newer, "n.json"),
            Err(ReportError::TooNew { .. })
        ));
        let mut broken = report;
        broken["summary"]["series"] = Value::from("nope");
        let error = validate(&broken, "b.json").unwrap_err().to_string();
        assert!(
            error.starts_with("b.json is not a loadgen JSON report: "),
            "{error}"
        );
        // serde would read the five fields from an array.
        let array = serde_json::json!([2, "x", true, [], [0, [], [], []]]);
        let error = validate(&array, "a.json").unwrap_err().to_string();
        assert_eq!(
            error,
            "a.json is not a loadgen JSON report: the report must be a JSON object"
        );
    }
}
