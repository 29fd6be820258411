//! Expectations turned into verdicts. A check says what was expected, what
//! was observed and whether it passed; the checks table and the JSON report
//! show exactly that.

use serde::Serialize;

use crate::{duration::format_latency, report::Summary, scenario::plan::ClientExpect};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub expected: String,
    pub observed: String,
    pub passed: bool,
}

impl Check {
    pub fn new(
        name: impl Into<String>,
        expected: impl Into<String>,
        observed: impl Into<String>,
        passed: bool,
    ) -> Self {
        Self {
            name: name.into(),
            expected: expected.into(),
            observed: observed.into(),
            passed,
        }
    }

    /// `observed ≤ max`.
    pub fn at_most(name: &str, observed: f64, max: f64, show: impl Fn(f64) -> String) -> Self {
        Self::new(
            name,
            format!("≤ {}", show(max)),
            show(observed),
            observed <= max,
        )
    }

    /// `observed ≥ min`.
    pub fn at_least(name: &str, observed: f64, min: f64, show: impl Fn(f64) -> String) -> Self {
        Self::new(
            name,
            format!("≥ {}", show(min)),
            show(observed),
            observed >= min,
        )
    }
}

pub fn percent(value: f64) -> String {
    format!("{:.3}%", value * 100.0)
}

fn latency_ms(value: f64) -> String {
    format_latency(std::time::Duration::from_secs_f64(value.max(0.0) / 1000.0))
}

/// Client-side checks of `[expect.client]`.
pub fn client_checks(expect: &ClientExpect, summary: &Summary) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(max) = expect.error_ratio_max {
        // A dropped request is one the user never got: an error.
        let failed = summary.errors + summary.dropped;
        let attempted = summary.requests + summary.dropped;
        let ratio = if attempted > 0 {
            failed as f64 / attempted as f64
        } else {
            0.0
        };
        checks.push(if attempted == 0 {
            Check::new(
                "client error_ratio_max",
                format!("≤ {}", percent(max)),
                "no data: no request completed",
                false,
            )
        } else {
            Check::new(
                "client error_ratio_max",
                format!("≤ {}", percent(max)),
                format!(
                    "{} ({} errors + {} dropped of {attempted})",
                    percent(ratio),
                    summary.errors,
                    summary.dropped
                ),
                ratio <= max,
            )
        });
    }
    // Percentiles are over answered requests; percentiles of nothing read
    // 0, which must not pass a `≤` bound (all timed out, all refused...).
    let latency = |name: &str, observed_ms: f64, max: std::time::Duration| {
        if summary.answered == 0 {
            Check::new(
                name,
                format!("≤ {}", latency_ms(max.as_secs_f64() * 1000.0)),
                "no data: no request got an answer",
                false,
            )
        } else {
            Check::at_most(name, observed_ms, max.as_secs_f64() * 1000.0, latency_ms)
        }
    };
    if let Some(max) = expect.p50_max {
        checks.push(latency("client p50_max", summary.latency.p50_ms, max));
    }
    if let Some(max) = expect.p99_max {
        checks.push(latency("client p99_max", summary.latency.p99_ms, max));
    }
    if let Some(min) = expect.achieved_rate_min_ratio {
        // Open-loop phases only: completed requests over scheduled ones.
        let (completed, scheduled) = summary
            .phases
            .iter()
            .filter_map(|phase| {
                phase
                    .scheduled
                    .map(|scheduled| (phase.completed, scheduled))
            })
            .fold((0, 0), |(c, s), (pc, ps)| (c + pc, s + ps));
        let ratio = if scheduled > 0 {
            completed as f64 / scheduled as f64
        } else {
            1.0
        };
        checks.push(Check::at_least(
            "client achieved_rate_min_ratio",
            ratio,
            min,
            |v| format!("{v:.4}"),
        ));
    }
    checks
}
