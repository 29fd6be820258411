//! The server's side of the run over time, from Prometheus, for the HTML
//! report: request rate, 5xx rate and p99 of items-service (user routes)
//! over the run window, next to the client's per-second series. Only for
//! runs that used Prometheus; at most [`MAX_POINTS`] points whatever the
//! run length.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::verify::prometheus::{parse_prom_duration, unix_seconds, Prometheus};

const JOB: &str = "items-service";
/// User routes only, as the rules count them (SPEC §6).
const USER_ROUTES: &str = "endpoint!~\"/metrics|/healthz|/readyz\"";
const MAX_POINTS: f64 = 600.0;

#[derive(Debug, Clone, Serialize)]
pub struct ServerPoint {
    /// Seconds since the run started (the client series' origin).
    pub t: f64,
    pub rate: Option<f64>,
    pub errors_5xx: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Server-side series of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSeries {
    pub job: String,
    pub step_seconds: f64,
    /// The `rate()` window: four scrape intervals.
    pub window_seconds: f64,
    pub points: Vec<ServerPoint>,
}

/// [`fetch`] for a report being written: a failure becomes a note on `out`
/// (the report is written without the server series), not an error.
pub async fn fetch_or_note(
    prometheus: &Prometheus,
    started: SystemTime,
    ended: SystemTime,
    out: &mut impl std::io::Write,
) -> Option<ServerSeries> {
    fetch(prometheus, started, ended)
        .await
        .map_err(|err| writeln!(out, "note: no server series in the report: {err:#}"))
        .ok()
}

/// Queries the series over `[started, ended]`.
pub async fn fetch(
    prometheus: &Prometheus,
    started: SystemTime,
    ended: SystemTime,
) -> anyhow::Result<ServerSeries> {
    let interval = prometheus
        .targets()
        .await?
        .iter()
        .find(|target| target.job() == JOB)
        .and_then(|target| parse_prom_duration(&target.scrape_interval))
        .unwrap_or(Duration::from_secs(5));
    // One scrape interval past the end: the run waited for that scrape,
    // and without it the last seconds (often a burst) would be missing.
    let start = unix_seconds(started);
    let end = (unix_seconds(ended) + interval.as_secs_f64()).min(unix_seconds(SystemTime::now()));
    let window = (interval.as_secs_f64() * 4.0).max(1.0);
    let step = ((end - start) / MAX_POINTS).max(1.0);
    let selector = format!("job=\"{JOB}\",{USER_ROUTES}");
    let range = format!("{}ms", (window * 1000.0).round() as u64);
    let queries = [
        format!("sum(rate(http_requests_total{{{selector}}}[{range}]))"),
        format!("sum(rate(http_requests_total{{{selector},status_code=~\"5..\"}}[{range}]))"),
        format!(
            "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{selector}}}[{range}]))) * 1000"
        ),
    ];
    let mut columns = Vec::new();
    for query in &queries {
        let series = prometheus
            .query_range(query, start, end, Duration::from_secs_f64(step))
            .await?;
        columns.push(
            series
                .into_iter()
                .next()
                .map(|s| s.points)
                .unwrap_or_default(),
        );
    }
    let count = ((end - start) / step).floor() as usize + 1;
    let at = |column: &[(f64, f64)], t: f64| {
        column
            .iter()
            .find(|(when, _)| (when - t).abs() < step / 2.0)
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
    };
    let points = (0..count)
        .map(|i| {
            let when = start + i as f64 * step;
            ServerPoint {
                t: when - start,
                rate: at(&columns[0], when),
                errors_5xx: at(&columns[1], when),
                p99_ms: at(&columns[2], when),
            }
        })
        .collect();
    Ok(ServerSeries {
        job: JOB.to_owned(),
        step_seconds: step,
        window_seconds: window,
        points,
    })
}
