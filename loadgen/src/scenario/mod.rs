//! Scenario files: TOML → validated [`Plan`](crate::scenario::plan::Plan). Problems
//! are reported all at once, each as `file:line:column` with a hint.

pub mod diagnostic;
pub mod plan;
mod raw;
mod schema;
mod validate;

use std::path::Path;

pub use diagnostic::{Diagnostic, ScenarioErrors};

use crate::scenario::plan::Plan;

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Plan, ScenarioErrors> {
    let label = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|err| ScenarioErrors {
        path: label.clone(),
        source: String::new(),
        diagnostics: vec![Diagnostic::new(
            None,
            format!("cannot read the file: {err}"),
        )],
    })?;
    let default_name = path.file_stem().map_or_else(
        || "scenario".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    parse(&label, &source, &default_name)
}

/// Validates scenario text; `label` names it in messages.
pub fn parse(label: &str, source: &str, default_name: &str) -> Result<Plan, ScenarioErrors> {
    let fail = |diagnostics: Vec<Diagnostic>| ScenarioErrors {
        path: label.to_owned(),
        source: source.to_owned(),
        diagnostics,
    };
    let document = toml::de::DeTable::parse(source)
        .map_err(|err| fail(vec![Diagnostic::new(err.span(), err.message().to_owned())]))?;
    let mut diagnostics = schema::unknown_keys(document.get_ref());
    let raw: raw::RawScenario = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(err) => {
            diagnostics.push(Diagnostic::new(err.span(), err.message().to_owned()));
            diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
            return Err(fail(diagnostics));
        }
    };
    match validate::validate(&raw, default_name, 0..source.len()) {
        Ok(plan) if diagnostics.is_empty() => Ok(plan),
        Ok(_) => Err(fail(diagnostics)),
        Err(mut more) => {
            diagnostics.append(&mut more);
            diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
            Err(fail(diagnostics))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scenario::plan::{Distribution, Executor, OpKind};

    const GOOD: &str = r#"
name = "t"
seed = 7
[keyspace]
preload = 50
distribution = "zipf"
zipf_exponent = 1.2
[mix]
get_hit = 8
get_miss = 2
[[phases]]
executor = "constant-arrival-rate"
rate = 100
duration = "2s"
[[phases]]
name = "ramp"
executor = "ramping-vus"
stages = [{ target = 4, duration = "1s" }, { target = 0, duration = "500ms" }]
[expect.client]
p99_max = "50ms"
"#;

    #[test]
    fn parses_a_valid_scenario() {
        let plan = parse("t.toml", GOOD, "t").unwrap();
        assert_eq!(plan.seed, 7);
        assert_eq!(
            plan.keyspace.distribution,
            Distribution::Zipf { exponent: 1.2 }
        );
        assert_eq!(plan.mix[OpKind::GetHit.index()], 8);
        assert_eq!(plan.phases[0].name, "phase-1");
        assert_eq!(
            plan.phases[0].executor,
            Executor::ConstantArrivalRate {
                rate: 100.0,
                duration: Duration::from_secs(2)
            }
        );
        assert_eq!(
            plan.phases[1].executor.duration(),
            Duration::from_millis(1500)
        );
        assert_eq!(plan.expect.client.p99_max, Some(Duration::from_millis(50)));
        assert_eq!(plan.total_duration(), Duration::from_millis(3500));
    }

    #[test]
    fn reports_every_problem_with_its_position() {
        let source = "name = \"x\"\n[mix]\nget_hitt = 1\n[[phases]]\nexecutor = \"constant-rate\"\nrate = 5\nduration = \"5s\"\n[[phases]]\nexecutor = \"constant-vus\"\nvus = 0\nduration = \"10\"\n";
        let err = parse("x.toml", source, "x").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("x.toml:3:1: error: unknown field `get_hitt` in [mix]"),
            "{text}"
        );
        assert!(text.contains("did you mean `get_hit`?"), "{text}");
        assert!(
            text.contains("x.toml:5:12: error: unknown executor `constant-rate`"),
            "{text}"
        );
        assert!(
            text.contains("did you mean `constant-arrival-rate`?"),
            "{text}"
        );
        assert!(
            text.contains("x.toml:10:7: error: `vus` must be in 1..=10000, got 0"),
            "{text}"
        );
        assert!(
            text.contains("x.toml:11:12: error: `duration`: \"10\" has no unit"),
            "{text}"
        );
        assert!(
            text.contains("`[mix]` needs at least one operation"),
            "{text}"
        );
        assert!(text.ends_with("5 problems found"), "{text}");
    }
}
