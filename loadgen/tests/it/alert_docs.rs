//! Issue 14: annotations that help at 3 a.m. Every alert of the rules file
//! carries severity and family labels, a summary, a description, a
//! `runbook_url` whose anchor is a section of RUNBOOK.md, and a dashboard
//! link; README's alert table lists every alert. Checked on the files, so a
//! new alert without its runbook section fails here, not at night.

use std::collections::BTreeSet;

use serde_yaml::Value;

use crate::common::repo;

const RUNBOOK_URL: &str = "https://github.com/items-stack/items-stack/blob/main/RUNBOOK.md#";

fn alerts() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("prometheus/rules/items-service.yml")).unwrap();
    let rules: Value = serde_yaml::from_str(&text).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap().clone())
        .filter(|rule| rule["alert"].is_string())
        .collect()
}

/// The GitHub anchors of RUNBOOK.md's `## ` sections.
fn runbook_anchors() -> BTreeSet<String> {
    std::fs::read_to_string(repo().join("RUNBOOK.md"))
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(|heading| heading.trim().to_lowercase().replace(' ', "-"))
        .collect()
}

/// What is wrong with one alert's labels and annotations.
fn problems(alert: &Value, anchors: &BTreeSet<String>, readme: &str) -> Vec<String> {
    let name = alert["alert"].as_str().unwrap();
    let mut problems = Vec::new();
    for label in ["severity", "family"] {
        if !alert["labels"][label].is_string() {
            problems.push(format!("{name}: no {label} label"));
        }
    }
    for annotation in ["summary", "description", "dashboard"] {
        if alert["annotations"][annotation]
            .as_str()
            .is_none_or(|text| text.trim().len() < 10)
        {
            problems.push(format!("{name}: no {annotation} annotation"));
        }
    }
    match alert["annotations"]["runbook_url"]
        .as_str()
        .and_then(|url| url.strip_prefix(RUNBOOK_URL))
    {
        Some(anchor) if anchors.contains(anchor) => {}
        other => problems.push(format!(
            "{name}: runbook_url anchor {other:?} is not a RUNBOOK.md section"
        )),
    }
    if !readme.contains(&format!("| `{name}` |")) {
        problems.push(format!("{name}: not in README's alert table"));
    }
    problems
}

#[test]
fn every_alert_has_labels_a_runbook_section_a_dashboard_link_and_a_readme_row() {
    let anchors = runbook_anchors();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let alerts = alerts();
    assert!(alerts.len() >= 13, "only {} alerts found", alerts.len());
    let problems: Vec<String> = alerts
        .iter()
        .flat_map(|alert| problems(alert, &anchors, &readme))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_catches_a_missing_section_label_and_row() {
    let anchors = runbook_anchors();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut alert = alerts()
        .into_iter()
        .find(|a| a["alert"] == "ErrorBurst")
        .unwrap();
    assert!(problems(&alert, &anchors, &readme).is_empty());
    alert["alert"] = Value::from("NewAlert");
    alert["labels"].as_mapping_mut().unwrap().remove("family");
    alert["annotations"]["runbook_url"] = Value::from(format!("{RUNBOOK_URL}newalert"));
    let found = problems(&alert, &anchors, &readme).join("\n");
    for expected in [
        "NewAlert: no family label",
        "NewAlert: runbook_url anchor Some(\"newalert\") is not a RUNBOOK.md section",
        "NewAlert: not in README's alert table",
    ] {
        assert!(found.contains(expected), "{expected:?} not in:\n{found}");
    }
}
