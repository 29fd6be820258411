//! Shared fixtures: a real Redis plus the service on free ports (optionally
//! with the fault proxy between them), and small HTTP helpers that return
//! status and parsed JSON body.
//!
//! Tests that are not about timing must pass on a slow, loaded machine:
//! every test runs on a multi-threaded runtime (the service shares it), the
//! Redis timeout is a generous [`GENEROUS_REDIS_TIMEOUT`] unless a test is
//! about the timeout, and bulk setup goes through [`SETUP_CONCURRENCY`].

use std::{
    future::Future,
    time::{Duration, Instant},
};

use futures::{stream, StreamExt};
use items_service::{
    config::Config,
    testing::{proxy::FaultProxy, test_config, RedisServer, TestService},
    AppState,
};
use serde_json::Value;

/// Redis timeout of tests that are not about it: far above any scheduling
/// delay of a loaded 2-core machine.
pub const GENEROUS_REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests in flight while a test writes its fixtures.
pub const SETUP_CONCURRENCY: usize = 16;

/// Redis and the service, stopped together when dropped.
pub struct Stack {
    pub service: TestService,
    pub redis: RedisServer,
    /// Between the service and Redis, when started with [`Stack::start_proxied`].
    pub proxy: Option<FaultProxy>,
    pub http: reqwest::Client,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with a configuration adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_state(adjust, |_| {}).await
    }

    /// Starts with the configuration and then the state built from it
    /// adjusted (for settings that are not flags, such as client timeouts).
    pub async fn start_with_state(
        adjust_config: impl FnOnce(&mut Config),
        adjust_state: impl FnOnce(&mut AppState),
    ) -> Self {
        Self::start_full(false, adjust_config, adjust_state).await
    }

    /// Starts with the fault proxy between the service and Redis.
    pub async fn start_proxied(adjust_config: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(true, adjust_config, |_| {}).await
    }

    async fn start_full(
        proxied: bool,
        adjust_config: impl FnOnce(&mut Config),
        adjust_state: impl FnOnce(&mut AppState),
    ) -> Self {
        let redis = RedisServer::start();
        let proxy = match proxied {
            true => {
                let upstream = format!("127.0.0.1:{}", redis.port)
                    .parse()
                    .expect("address");
                Some(FaultProxy::start(upstream).await)
            }
            false => None,
        };
        let url = proxy
            .as_ref()
            .map_or_else(|| redis.url(), FaultProxy::redis_url);
        let mut config = test_config(&url);
        config.redis_timeout = GENEROUS_REDIS_TIMEOUT;
        adjust_config(&mut config);
        let mut state = AppState::from_config(&config).expect("valid test configuration");
        adjust_state(&mut state);
        let service = TestService::start_with_state(state).await;
        Self {
            service,
            redis,
            proxy,
            http: client(),
        }
    }

    /// The fault proxy of a stack started with [`Stack::start_proxied`].
    pub fn proxy(&self) -> &FaultProxy {
        self.proxy
            .as_ref()
            .expect("stack started without the proxy")
    }

    /// Writes `items` with at most [`SETUP_CONCURRENCY`] requests in flight.
    pub async fn put_items(&self, items: impl IntoIterator<Item = (String, Value)>) {
        stream::iter(items)
            .for_each_concurrent(SETUP_CONCURRENCY, |(key, value)| async move {
                self.put_item(&key, value).await;
            })
            .await;
    }

    /// A direct connection to the Redis server (not through the proxy).
    pub fn redis_connection(&self) -> redis::Connection {
        redis::Client::open(self.redis.url())
            .and_then(|client| client.get_connection())
            .expect("connect to redis-server")
    }

    /// Polls `/readyz` until it answers 200; returns how long that took.
    pub async fn wait_until_ready(&self, what: &str, bound: Duration) -> Duration {
        wait_for(&format!("ready {what}"), bound, || async {
            self.get("/readyz").await.0 == 200
        })
        .await
    }

    /// One sample of `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics_text().await, series).unwrap_or(0.0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.service.url())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.http.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        send(self.http.delete(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn put_item(&self, key: &str, value: Value) {
        let (status, body) = self
            .post_json("/items", &serde_json::json!({ "key": key, "value": value }))
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client")
}

/// Sends a request; returns the status and the JSON body (`Null` when empty).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request failed");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            panic!(
                "status {status}: body is not JSON ({err}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}

/// Asserts the SPEC error shape and code.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "body: {body}");
    assert_eq!(body["error"], want_code, "body: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "missing message: {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "extra fields: {body}"
    );
}

/// Value of one sample in the exposition text, e.g.
/// `http_requests_total{endpoint="/",method="GET",status_code="200"}`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Number of sample lines, i.e. series, in the exposition text.
pub fn series_count(text: &str, metric_prefix: &str) -> usize {
    text.lines()
        .filter(|line| !line.starts_with('#') && line.starts_with(metric_prefix))
        .count()
}

/// Polls `condition` until it holds, failing after `bound`; returns how long
/// it took.
pub async fn wait_for<F, Fut>(what: &str, bound: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Sends SIGSTOP/SIGCONT to a PID we started (never by name).
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}
