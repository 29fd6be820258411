//! The metrics contract of SPEC §5 in one place: names, labels, buckets, the
//! pre-initialised error series, and the `track_metrics` middleware.
//!
//! Cardinality is bounded by construction: `endpoint` is one of the route
//! templates in [`ENDPOINTS`] or `unmatched`, `method` one of the standard
//! verbs or `OTHER`, `status_code` a status the service itself produced.

use std::{sync::Arc, time::Instant};

use crate::store::{redis::SKIP_REASONS, ErrorKind};
use axum::{
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Histogram buckets, in seconds, shared by HTTP and Redis latencies.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Every route template with the methods it serves; also drives
/// pre-initialisation of the 5xx series.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/items", &["GET", "POST"]),
    ("/items/{key}", &["GET", "DELETE"]),
    ("/metrics", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
];

/// The `endpoint` label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Redis commands the store issues; their error series start at 0.
pub const REDIS_COMMANDS: &[&str] = &["GET", "SET", "DEL", "SCAN", "STRLEN", "MGET", "PING"];

/// The `status_code` of a request the client abandoned before the response
/// (nginx's "client closed request").
pub const CLIENT_CLOSED: &str = "499";

/// Error statuses whose series exist from start-up so that the first burst
/// shows up in `increase()`.
const PREINITIALISED_STATUSES: &[&str] = &["499", "500", "503"];

/// All metrics of the service, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub in_flight: IntGauge,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub redis_command_duration: HistogramVec,
    pub redis_command_errors: IntCounterVec,
    pub list_skipped: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric, including process metrics.
    pub fn new(version: &str) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP responses sent, by method, route template and status.",
            ),
            &["method", "endpoint", "status_code"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request received to response produced, by method and route template.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method", "endpoint"],
        )?;
        let in_flight = IntGauge::new(
            "http_requests_in_flight",
            "Requests being served right now.",
        )?;
        let cache_hits = IntCounter::new(
            "redis_app_cache_hit_total",
            "GET /items/{key} lookups that found the key.",
        )?;
        let cache_misses = IntCounter::new(
            "redis_app_cache_miss_total",
            "GET /items/{key} lookups that did not find the key.",
        )?;
        let redis_command_duration = HistogramVec::new(
            HistogramOpts::new(
                "redis_app_command_duration_seconds",
                "Redis command latency as seen by the service.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["command"],
        )?;
        let redis_command_errors = IntCounterVec::new(
            Opts::new(
                "redis_app_command_errors_total",
                "Redis commands that failed, by command and kind (timeout, io, data).",
            ),
            &["command", "kind"],
        )?;
        let list_skipped = IntCounterVec::new(
            Opts::new(
                "redis_app_list_skipped_total",
                "Entries under the key prefix that GET /items skipped, by reason.",
            ),
            &["reason"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "app_build_info",
                "Always 1; the version label says which build runs.",
            ),
            &["version"],
        )?;
        build_info.with_label_values(&[version]).set(1);

        for (endpoint, methods) in ROUTES {
            for method in *methods {
                request_duration.with_label_values(&[method, endpoint]);
                for status in PREINITIALISED_STATUSES {
                    requests.with_label_values(&[method, endpoint, status]);
                }
            }
        }
        for command in REDIS_COMMANDS {
            for kind in ErrorKind::ALL {
                redis_command_errors.with_label_values(&[command, kind.label()]);
            }
            redis_command_duration.with_label_values(&[command]);
        }
        for reason in SKIP_REASONS {
            list_skipped.with_label_values(&[reason]);
        }

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(cache_hits.clone()))?;
        registry.register(Box::new(cache_misses.clone()))?;
        registry.register(Box::new(redis_command_duration.clone()))?;
        registry.register(Box::new(redis_command_errors.clone()))?;
        registry.register(Box::new(list_skipped.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Self {
            registry,
            requests,
            request_duration,
            in_flight,
            cache_hits,
            cache_misses,
            redis_command_duration,
            redis_command_errors,
            list_skipped,
        })
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> Result<(String, String), prometheus::Error> {
        let encoder = TextEncoder::new();
        let mut buffer = Vec::with_capacity(16 * 1024);
        encoder.encode(&self.registry.gather(), &mut buffer)?;
        let text =
            String::from_utf8(buffer).map_err(|err| prometheus::Error::Msg(err.to_string()))?;
        Ok((encoder.format_type().to_owned(), text))
    }
}

/// The `method` label: a standard verb, or `OTHER` for anything a client invents.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The `endpoint` label: the matched route template, or `unmatched`.
pub fn endpoint_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|path| {
            ROUTES
                .iter()
                .find(|(template, _)| *template == path.as_str())
        })
        .map_or(UNMATCHED, |(template, _)| template)
}

/// Records one request exactly once: with its status when the response is
/// produced, or as `499` with its duration when the request future is
/// dropped first (the client closed the connection). Also decrements the
/// in-flight gauge on either path, so it never drifts upwards.
struct RequestRecord {
    metrics: Arc<Metrics>,
    method: &'static str,
    endpoint: &'static str,
    started: Instant,
    recorded: bool,
}

impl RequestRecord {
    fn record(&mut self, status: &str) {
        self.recorded = true;
        self.metrics
            .request_duration
            .with_label_values(&[self.method, self.endpoint])
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .requests
            .with_label_values(&[self.method, self.endpoint, status])
            .inc();
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(CLIENT_CLOSED);
        }
        self.metrics.in_flight.dec();
    }
}

/// Outermost middleware: counts and times every request, shed, unmatched
/// and abandoned ones included.
pub async fn track_metrics(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    metrics.in_flight.inc();
    let mut record = RequestRecord {
        method: method_label(request.method()),
        endpoint: endpoint_label(request.extensions().get::<MatchedPath>()),
        metrics,
        started: Instant::now(),
        recorded: false,
    };
    let response = next.run(request).await;
    record.record(response.status().as_str());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_series_exist_before_any_request() {
        let metrics = Metrics::new("test").unwrap();
        let (_, text) = metrics.render().unwrap();
        assert!(text.contains(
            r#"http_requests_total{endpoint="/items/{key}",method="GET",status_code="500"} 0"#
        ));
        assert!(text.contains(
            r#"http_requests_total{endpoint="/items",method="POST",status_code="503"} 0"#
        ));
        assert!(text.contains(
            r#"http_requests_total{endpoint="/items",method="GET",status_code="499"} 0"#
        ));
        assert!(text.contains(r#"redis_app_command_errors_total{command="GET",kind="data"} 0"#));
        assert!(text.contains(r#"redis_app_list_skipped_total{reason="invalid_value"} 0"#));
        assert!(text.contains(r#"app_build_info{version="test"} 1"#));
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn unknown_methods_are_folded() {
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&custom), "OTHER");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
