//! Failures stay contained: a panicking handler answers 500 and is counted
//! instead of resetting the connection, and a burst of identical failures
//! logs a line per second (with a suppressed count), never a backtrace.

use std::{
    io::Read,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use items_service::{
    log_limit::WINDOW,
    metrics::Metrics,
    store::{ListCursor, Page, Store, StoreError},
    testing::{free_port, RedisServer, TestService},
    AppState, VERSION,
};
use serde_json::value::RawValue;

use crate::common::{assert_error, client, sample, send, wait_for};

/// Panics on every lookup; everything else works.
struct PanickingStore;

#[async_trait]
impl Store for PanickingStore {
    async fn get(&self, key: &str) -> Result<Option<Box<RawValue>>, StoreError> {
        panic!("a bug while fetching {key}");
    }
    async fn put(&self, _: &str, _: &RawValue, _: Option<u64>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn list(&self, _: Option<ListCursor>, _: usize) -> Result<Page, StoreError> {
        Ok(Page::default())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_and_is_counted() {
    let metrics = Arc::new(Metrics::new(VERSION).unwrap());
    let state = AppState::new(Arc::new(PanickingStore), metrics, 16, false);
    let service = TestService::start_with_state(state).await;
    let http = client();
    for _ in 0..3 {
        let (status, body) = send(http.get(format!("{}/items/k", service.url()))).await;
        assert_error(status, &body, 500, "internal");
    }
    let (status, _) = send(http.get(format!("{}/", service.url()))).await;
    assert_eq!(status, 200, "the service survives");
    let text = http
        .get(format!("{}/metrics", service.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = r#"http_requests_total{endpoint="/items/{key}",method="GET",status_code="500"}"#;
    assert_eq!(sample(&text, series), Some(3.0));
    assert_eq!(service.state.metrics.in_flight.get(), 0);
}

/// `(lines, sum of the suppressed counts)` of the JSON log lines of failed
/// requests of `kind`: the counts of "request failed" lines and of the
/// flushes written once failures stop.
fn logged(stderr: &str, kind: &str) -> (u64, u64) {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            (line["message"] == "request failed"
                || line["message"] == "repeated failures suppressed")
                && line["kind"] == kind
        })
        .collect();
    let failed = lines
        .iter()
        .filter(|line| line["message"] == "request failed")
        .count();
    let suppressed = lines
        .iter()
        .map(|line| {
            line["suppressed"]
                .as_u64()
                .unwrap_or_else(|| panic!("no suppressed count in {line}"))
        })
        .sum();
    (failed as u64, suppressed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_errors_are_rate_limited_and_never_log_backtraces() {
    let mut redis = RedisServer::start();
    redis::cmd("HSET")
        .arg("items:hash")
        .arg("f")
        .arg("v")
        .exec(
            &mut redis::Client::open(redis.url())
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_items-service"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis-url",
            &redis.url(),
            "--log-format",
            "json",
        ])
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start items-service");
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    wait_for("items-service ready", Duration::from_secs(20), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // A data error per request (WRONGTYPE: 500), then an outage (503).
    // The first burst is followed, after the rate-limit window, by one more
    // request whose line reports how many were suppressed; after the
    // second, failures just stop: the count is flushed by itself.
    let burst = |path: &'static str, follow_up: bool| {
        let (http, base) = (&http, &base);
        async move {
            for _ in 0..50 {
                let _ = http.get(format!("{base}{path}")).send().await;
            }
            // Waiting out the rate-limit window is the behaviour under test.
            tokio::time::sleep(WINDOW * 2 + Duration::from_millis(100)).await;
            if follow_up {
                let _ = http.get(format!("{base}{path}")).send().await;
            }
        }
    };
    burst("/items/hash", true).await;
    redis.stop();
    burst("/items/k", false).await;

    child.kill().expect("stop items-service");
    let _ = child.wait();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let (internal_lines, internal_suppressed) = logged(&stderr, "internal");
    let (outage_lines, outage_suppressed) = logged(&stderr, "redis_unavailable");
    assert_eq!(internal_lines + internal_suppressed, 51, "{stderr}");
    assert_eq!(outage_lines + outage_suppressed, 50, "{stderr}");
    assert!(internal_lines <= 5 && outage_lines <= 5, "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("backtrace") && stderr.lines().count() < 30,
        "{stderr}"
    );
}
