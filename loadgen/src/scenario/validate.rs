//! Raw scenario → validated `Plan`. Every problem is collected (never just
//! the first), each with the span of the value or table it concerns.

use std::{ops::Range, time::Duration};

use toml::Spanned;

use super::{
    diagnostic::{suggest, Diagnostic},
    raw::*,
};
use crate::{duration, scenario::plan::*};

const EXECUTORS: &[&str] = &[
    "constant-arrival-rate",
    "ramping-arrival-rate",
    "constant-vus",
    "ramping-vus",
];
const DISTRIBUTIONS: &[&str] = &["uniform", "zipf", "hotset"];
const ALERT_STATES: &[&str] = &["firing", "inactive"];
/// Default open-loop concurrency bound.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

struct Validator {
    diagnostics: Vec<Diagnostic>,
}

impl Validator {
    fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(span, message));
    }

    fn error_hint(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diagnostics
            .push(Diagnostic::new(span, message).with_hint(hint));
    }

    fn required<'a, T>(
        &mut self,
        value: &'a S<T>,
        within: Option<Range<usize>>,
        what: &str,
    ) -> Option<&'a Spanned<T>> {
        if value.is_none() {
            self.error(within, format!("missing required field `{what}`"));
        }
        value.as_ref()
    }

    fn duration(
        &mut self,
        value: &Spanned<String>,
        field: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        match duration::parse(value.get_ref()) {
            Ok(parsed) if parsed < min || parsed > max => {
                self.error(
                    Some(value.span()),
                    format!(
                        "`{field}` must be between {min:?} and {max:?}, got {:?}",
                        value.get_ref()
                    ),
                );
                None
            }
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.error(Some(value.span()), format!("`{field}`: {message}"));
                None
            }
        }
    }

    fn optional_duration(
        &mut self,
        value: &S<String>,
        field: &str,
        default: Duration,
        max: Duration,
    ) -> Duration {
        value
            .as_ref()
            .and_then(|value| self.duration(value, field, Duration::ZERO, max))
            .unwrap_or(default)
    }

    fn ratio(&mut self, value: &S<f64>, field: &str) -> Option<f64> {
        let value = value.as_ref()?;
        let ratio = *value.get_ref();
        if (0.0..=1.0).contains(&ratio) {
            Some(ratio)
        } else {
            self.error(
                Some(value.span()),
                format!("`{field}` must be between 0 and 1, got {ratio}"),
            );
            None
        }
    }

    fn integer(
        &mut self,
        value: &Spanned<i64>,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let number = *value.get_ref();
        if range.contains(&number) {
            Some(number)
        } else {
            self.error(
                Some(value.span()),
                format!(
                    "`{field}` must be in {}..={}, got {number}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }

    fn positive(&mut self, value: &Spanned<f64>, field: &str, max: f64) -> Option<f64> {
        let number = *value.get_ref();
        if number > 0.0 && number <= max && number.is_finite() {
            Some(number)
        } else {
            self.error(
                Some(value.span()),
                format!("`{field}` must be > 0 and ≤ {max}, got {number}"),
            );
            None
        }
    }

    fn choice<'a>(
        &mut self,
        value: &Spanned<String>,
        what: &str,
        choices: &[&'a str],
    ) -> Option<&'a str> {
        let text = value.get_ref().as_str();
        if let Some(found) = choices.iter().find(|choice| **choice == text) {
            return Some(found);
        }
        let hint = match suggest(text, choices) {
            Some(candidate) => format!("did you mean `{candidate}`?"),
            None => format!("expected one of: {}", choices.join(", ")),
        };
        self.error_hint(Some(value.span()), format!("unknown {what} `{text}`"), hint);
        None
    }

    /// Reports fields that the chosen variant does not use.
    fn not_applicable(&mut self, fields: &[(&str, Option<Range<usize>>)], applies_to: &str) {
        for (field, span) in fields {
            if let Some(span) = span {
                self.error(
                    Some(span.clone()),
                    format!("`{field}` does not apply to {applies_to}"),
                );
            }
        }
    }
}

fn span_of<T>(value: &S<T>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

/// Validates a raw scenario; `default_name` is used when `name` is absent.
pub fn validate(
    raw: &RawScenario,
    default_name: &str,
    whole: Range<usize>,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut v = Validator {
        diagnostics: Vec::new(),
    };
    let name = raw
        .name
        .as_ref()
        .map_or_else(|| default_name.to_owned(), |name| name.get_ref().clone());
    if name.trim().is_empty() {
        v.error(span_of(&raw.name), "`name` must not be empty");
    }
    let seed = raw
        .seed
        .as_ref()
        .and_then(|seed| v.integer(seed, "seed", 0..=i64::MAX))
        .map_or(1, |seed| seed as u64);
    let request_timeout = raw
        .request_timeout
        .as_ref()
        .and_then(|timeout| {
            v.duration(
                timeout,
                "request_timeout",
                Duration::from_millis(1),
                Duration::from_secs(300),
            )
        })
        .unwrap_or(Duration::from_secs(10));

    let mix = validate_mix(&mut v, raw.mix.as_ref(), whole.clone());
    let keyspace = validate_keyspace(&mut v, raw.keyspace.as_ref(), &mix);
    let fault = validate_fault(&mut v, raw.fault.as_ref());
    let phases = validate_phases(&mut v, raw.phases.as_ref(), whole);
    let expect = raw
        .expect
        .as_ref()
        .map(|expect| validate_expect(&mut v, expect))
        .unwrap_or_default();

    // The achieved rate is completed over scheduled open-loop arrivals; a
    // closed-loop-only scenario has none, and the check would pass on 1/1.
    if expect.client.achieved_rate_min_ratio.is_some()
        && !phases.is_empty()
        && !phases.iter().any(|phase| {
            matches!(
                phase.executor,
                Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. }
            )
        })
    {
        let span = raw
            .expect
            .as_ref()
            .and_then(|e| e.get_ref().client.as_ref())
            .and_then(|c| span_of(&c.get_ref().achieved_rate_min_ratio));
        v.error(
            span,
            "`achieved_rate_min_ratio` needs an open-loop phase (constant-arrival-rate or ramping-arrival-rate); this scenario has only closed-loop phases",
        );
    }

    if !v.diagnostics.is_empty() {
        return Err(v.diagnostics);
    }
    Ok(Plan {
        name,
        description: raw
            .description
            .as_ref()
            .map(|d| d.get_ref().clone())
            .unwrap_or_default(),
        seed,
        request_timeout,
        keyspace,
        mix,
        fault,
        phases,
        expect,
    })
}

fn validate_mix(v: &mut Validator, mix: Option<&Spanned<RawMix>>, whole: Range<usize>) -> [u32; 7] {
    let mut weights = [0u32; 7];
    let Some(mix) = mix else {
        v.error_hint(
            Some(whole.start..whole.start),
            "missing required table `[mix]`",
            "e.g. [mix] get_hit = 80, get_miss = 20",
        );
        return weights;
    };
    let raw = mix.get_ref();
    let fields = [
        (OpKind::GetHit, &raw.get_hit),
        (OpKind::GetMiss, &raw.get_miss),
        (OpKind::Put, &raw.put),
        (OpKind::Delete, &raw.delete),
        (OpKind::List, &raw.list),
        (OpKind::Root, &raw.root),
        (OpKind::Fault, &raw.fault),
    ];
    for (op, value) in fields {
        if let Some(value) = value {
            if let Some(weight) = v.integer(value, op.name(), 0..=1_000_000) {
                weights[op.index()] = weight as u32;
            }
        }
    }
    if weights.iter().all(|weight| *weight == 0) {
        v.error(
            Some(mix.span()),
            "`[mix]` needs at least one operation with a weight above 0",
        );
    }
    weights
}

fn validate_keyspace(
    v: &mut Validator,
    keyspace: Option<&Spanned<RawKeyspace>>,
    mix: &[u32; 7],
) -> Keyspace {
    let mut result = Keyspace {
        preload: 1000,
        value_bytes: 128,
        distribution: Distribution::Uniform,
    };
    let Some(keyspace) = keyspace else {
        return result;
    };
    let raw = keyspace.get_ref();
    if let Some(preload) = raw
        .preload
        .as_ref()
        .and_then(|p| v.integer(p, "preload", 0..=10_000_000))
    {
        result.preload = preload as u64;
    }
    if let Some(bytes) = raw
        .value_bytes
        .as_ref()
        .and_then(|b| v.integer(b, "value_bytes", 1..=900_000))
    {
        result.value_bytes = bytes as usize;
    }
    let needs_keys = [OpKind::GetHit, OpKind::Put, OpKind::Fault]
        .iter()
        .any(|op| mix[op.index()] > 0);
    if result.preload == 0 && needs_keys {
        v.error_hint(
            span_of(&raw.preload),
            "`preload` is 0 but the mix has get_hit, put or fault operations, which need existing keys",
            "preload at least 1 key",
        );
    }
    let distribution = raw.distribution.as_ref().map_or(Some("uniform"), |d| {
        v.choice(d, "distribution", DISTRIBUTIONS)
    });
    match distribution {
        Some("zipf") => {
            let exponent = raw
                .zipf_exponent
                .as_ref()
                .map_or(Some(1.0), |e| v.positive(e, "zipf_exponent", 10.0));
            v.not_applicable(
                &[
                    ("hot_fraction", span_of(&raw.hot_fraction)),
                    ("hot_probability", span_of(&raw.hot_probability)),
                ],
                "distribution = \"zipf\"",
            );
            result.distribution = Distribution::Zipf {
                exponent: exponent.unwrap_or(1.0),
            };
        }
        Some("hotset") => {
            let hot_fraction = v.ratio(&raw.hot_fraction, "hot_fraction").unwrap_or(0.2);
            let hot_probability = v
                .ratio(&raw.hot_probability, "hot_probability")
                .unwrap_or(0.8);
            if hot_fraction == 0.0 || hot_fraction == 1.0 {
                v.error(
                    span_of(&raw.hot_fraction),
                    "`hot_fraction` must be strictly between 0 and 1",
                );
            }
            v.not_applicable(
                &[("zipf_exponent", span_of(&raw.zipf_exponent))],
                "distribution = \"hotset\"",
            );
            result.distribution = Distribution::Hotset {
                hot_fraction,
                hot_probability,
            };
        }
        Some(_) => v.not_applicable(
            &[
                ("zipf_exponent", span_of(&raw.zipf_exponent)),
                ("hot_fraction", span_of(&raw.hot_fraction)),
                ("hot_probability", span_of(&raw.hot_probability)),
            ],
            "distribution = \"uniform\"",
        ),
        None => {}
    }
    result
}

fn validate_fault(v: &mut Validator, fault: Option<&Spanned<RawFault>>) -> Fault {
    let mut result = Fault {
        status: 500,
        delay: Duration::ZERO,
    };
    if let Some(fault) = fault {
        let raw = fault.get_ref();
        if let Some(status) = raw
            .status
            .as_ref()
            .and_then(|s| v.integer(s, "status", 500..=599))
        {
            result.status = status as u16;
        }
        result.delay =
            v.optional_duration(&raw.delay, "delay", Duration::ZERO, Duration::from_secs(10));
    }
    result
}

fn validate_stages(v: &mut Validator, phase: &Spanned<RawPhase>, integral: bool) -> Vec<Stage> {
    let Some(stages) = v.required(&phase.get_ref().stages, Some(phase.span()), "stages") else {
        return Vec::new();
    };
    if stages.get_ref().is_empty() {
        v.error(Some(stages.span()), "`stages` must not be empty");
    }
    let mut result = Vec::new();
    for stage in stages.get_ref() {
        let raw = stage.get_ref();
        let target = v
            .required(&raw.target, Some(stage.span()), "target")
            .map(|target| {
                let value = *target.get_ref();
                let limit = if integral { 10_000.0 } else { 1_000_000.0 };
                if !(0.0..=limit).contains(&value) || (integral && value.fract() != 0.0) {
                    let kind = if integral {
                        "a whole number of VUs"
                    } else {
                        "a rate"
                    };
                    v.error(
                        Some(target.span()),
                        format!("`target` must be {kind} in 0..={limit}, got {value}"),
                    );
                }
                value
            });
        let duration = v
            .required(&raw.duration, Some(stage.span()), "duration")
            .and_then(|d| {
                v.duration(
                    d,
                    "duration",
                    Duration::from_millis(1),
                    Duration::from_secs(86_400),
                )
            });
        if let (Some(target), Some(duration)) = (target, duration) {
            result.push(Stage { target, duration });
        }
    }
    result
}

fn validate_phases(
    v: &mut Validator,
    phases: Option<&Spanned<Vec<Spanned<RawPhase>>>>,
    whole: Range<usize>,
) -> Vec<Phase> {
    let Some(phases) = phases else {
        v.error_hint(
            Some(whole.start..whole.start),
            "missing `[[phases]]`",
            "add at least one, e.g. [[phases]] executor = \"constant-arrival-rate\", rate = 100, duration = \"30s\"",
        );
        return Vec::new();
    };
    let mut result = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (index, phase) in phases.get_ref().iter().enumerate() {
        let raw = phase.get_ref();
        let name = raw
            .name
            .as_ref()
            .map_or_else(|| format!("phase-{}", index + 1), |n| n.get_ref().clone());
        // The phase label of loadgen's metrics and the report's regions:
        // two phases of one name would merge there.
        if let Some(first) = names.iter().position(|known| *known == name) {
            v.error_hint(
                span_of(&raw.name).or(Some(phase.span())),
                format!("duplicate phase name `{name}`"),
                format!(
                    "phase {} already has it; give every phase its own name",
                    first + 1
                ),
            );
        }
        names.push(name.clone());
        let Some(executor_name) = v
            .required(&raw.executor, Some(phase.span()), "executor")
            .and_then(|executor| v.choice(executor, "executor", EXECUTORS))
        else {
            continue;
        };
        let long = Duration::from_secs(86_400);
        let executor = match executor_name {
            "constant-arrival-rate" => {
                v.not_applicable(
                    &[
                        ("stages", span_of(&raw.stages)),
                        ("start_rate", span_of(&raw.start_rate)),
                        ("vus", span_of(&raw.vus)),
                        ("start_vus", span_of(&raw.start_vus)),
                        ("think_time", span_of(&raw.think_time)),
                    ],
                    "executor = \"constant-arrival-rate\"",
                );
                let rate = v
                    .required(&raw.rate, Some(phase.span()), "rate")
                    .and_then(|r| v.positive(r, "rate", 1_000_000.0));
                let duration = v
                    .required(&raw.duration, Some(phase.span()), "duration")
                    .and_then(|d| v.duration(d, "duration", Duration::from_millis(1), long));
                rate.zip(duration)
                    .map(|(rate, duration)| Executor::ConstantArrivalRate { rate, duration })
            }
            "ramping-arrival-rate" => {
                v.not_applicable(
                    &[
                        ("rate", span_of(&raw.rate)),
                        ("duration", span_of(&raw.duration)),
                        ("vus", span_of(&raw.vus)),
                        ("start_vus", span_of(&raw.start_vus)),
                        ("think_time", span_of(&raw.think_time)),
                    ],
                    "executor = \"ramping-arrival-rate\" (its length is the sum of its stages)",
                );
                let start_rate = raw.start_rate.as_ref().map_or(0.0, |r| {
                    let value = *r.get_ref();
                    if !(0.0..=1_000_000.0).contains(&value) {
                        v.error(
                            Some(r.span()),
                            format!("`start_rate` must be in 0..=1000000, got {value}"),
                        );
                    }
                    value
                });
                let stages = validate_stages(v, phase, false);
                Some(Executor::RampingArrivalRate { start_rate, stages })
            }
            "constant-vus" => {
                v.not_applicable(
                    &[
                        ("rate", span_of(&raw.rate)),
                        ("start_rate", span_of(&raw.start_rate)),
                        ("stages", span_of(&raw.stages)),
                        ("start_vus", span_of(&raw.start_vus)),
                        ("max_in_flight", span_of(&raw.max_in_flight)),
                    ],
                    "executor = \"constant-vus\" (closed loop: concurrency is `vus`)",
                );
                let vus = v
                    .required(&raw.vus, Some(phase.span()), "vus")
                    .and_then(|n| v.integer(n, "vus", 1..=10_000));
                let duration = v
                    .required(&raw.duration, Some(phase.span()), "duration")
                    .and_then(|d| v.duration(d, "duration", Duration::from_millis(1), long));
                let think_time = v.optional_duration(
                    &raw.think_time,
                    "think_time",
                    Duration::ZERO,
                    Duration::from_secs(60),
                );
                vus.zip(duration)
                    .map(|(vus, duration)| Executor::ConstantVus {
                        vus: vus as u32,
                        duration,
                        think_time,
                    })
            }
            _ => {
                v.not_applicable(
                    &[
                        ("rate", span_of(&raw.rate)),
                        ("start_rate", span_of(&raw.start_rate)),
                        ("duration", span_of(&raw.duration)),
                        ("vus", span_of(&raw.vus)),
                        ("max_in_flight", span_of(&raw.max_in_flight)),
                    ],
                    "executor = \"ramping-vus\" (its length is the sum of its stages)",
                );
                let start_vus = raw
                    .start_vus
                    .as_ref()
                    .and_then(|n| v.integer(n, "start_vus", 0..=10_000))
                    .unwrap_or(0);
                let stages = validate_stages(v, phase, true);
                let think_time = v.optional_duration(
                    &raw.think_time,
                    "think_time",
                    Duration::ZERO,
                    Duration::from_secs(60),
                );
                Some(Executor::RampingVus {
                    start_vus: start_vus as u32,
                    stages,
                    think_time,
                })
            }
        };
        let max_in_flight = raw
            .max_in_flight
            .as_ref()
            .and_then(|n| v.integer(n, "max_in_flight", 1..=100_000))
            .map_or(DEFAULT_MAX_IN_FLIGHT, |n| n as usize);
        if let Some(executor) = executor {
            result.push(Phase {
                name,
                executor,
                max_in_flight,
            });
        }
    }
    if phases.get_ref().is_empty() {
        v.error(Some(phases.span()), "`phases` must not be empty");
    }
    result
}

fn validate_expect(v: &mut Validator, expect: &Spanned<RawExpect>) -> Expectations {
    let raw = expect.get_ref();
    let mut result = Expectations::default();
    let latency_max = Duration::from_secs(600);
    if let Some(client) = &raw.client {
        let c = client.get_ref();
        result.client = ClientExpect {
            error_ratio_max: v.ratio(&c.error_ratio_max, "error_ratio_max"),
            p50_max: c
                .p50_max
                .as_ref()
                .and_then(|d| v.duration(d, "p50_max", Duration::ZERO, latency_max)),
            p99_max: c
                .p99_max
                .as_ref()
                .and_then(|d| v.duration(d, "p99_max", Duration::ZERO, latency_max)),
            achieved_rate_min_ratio: v.ratio(&c.achieved_rate_min_ratio, "achieved_rate_min_ratio"),
        };
    }
    if let Some(server) = &raw.server {
        let s = server.get_ref();
        result.server = ServerExpect {
            error_ratio_max: v.ratio(&s.error_ratio_max, "error_ratio_max"),
            p99_max: s
                .p99_max
                .as_ref()
                .and_then(|d| v.duration(d, "p99_max", Duration::ZERO, latency_max)),
            cache_hit_ratio_min: v.ratio(&s.cache_hit_ratio_min, "cache_hit_ratio_min"),
            cache_hit_ratio_matches_client: v.ratio(
                &s.cache_hit_ratio_matches_client,
                "cache_hit_ratio_matches_client",
            ),
        };
    }
    for promql in raw
        .promql
        .as_ref()
        .map(|p| p.get_ref().as_slice())
        .unwrap_or_default()
    {
        let p = promql.get_ref();
        let name = v
            .required(&p.name, Some(promql.span()), "name")
            .map(|n| n.get_ref().clone());
        let query = v
            .required(&p.query, Some(promql.span()), "query")
            .map(|q| q.get_ref().clone());
        let (min, max) = (
            p.min.as_ref().map(|m| *m.get_ref()),
            p.max.as_ref().map(|m| *m.get_ref()),
        );
        if min.is_none() && max.is_none() {
            v.error(
                Some(promql.span()),
                "a `[[expect.promql]]` needs `min`, `max` or both",
            );
        }
        if let (Some(low), Some(high)) = (min, max) {
            if low > high {
                v.error(
                    span_of(&p.min),
                    format!("`min` ({low}) is above `max` ({high})"),
                );
            }
        }
        if let (Some(name), Some(query)) = (name, query) {
            result.promql.push(PromqlExpect {
                name,
                query,
                min,
                max,
            });
        }
    }
    for alert in raw
        .alerts
        .as_ref()
        .map(|a| a.get_ref().as_slice())
        .unwrap_or_default()
    {
        let a = alert.get_ref();
        let name = v
            .required(&a.name, Some(alert.span()), "name")
            .map(|n| n.get_ref().clone());
        let state = v
            .required(&a.state, Some(alert.span()), "state")
            .and_then(|s| v.choice(s, "alert state", ALERT_STATES))
            .map(|s| {
                if s == "firing" {
                    AlertState::Firing
                } else {
                    AlertState::Inactive
                }
            });
        let within = v.optional_duration(
            &a.within,
            "within",
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        if let (Some(name), Some(state)) = (name, state) {
            result.alerts.push(AlertExpect {
                name,
                state,
                within,
            });
        }
    }
    result
}
