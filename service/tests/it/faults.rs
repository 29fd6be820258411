//! Behaviour under faults: Redis dead or hung, overload, shutdown.

use std::time::{Duration, Instant};

use items_service::testing::RedisServer;
use serde_json::json;

use crate::common::{assert_error, send, Stack};

/// Sends SIGSTOP/SIGCONT to a PID we started (never by name).
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn assert_unavailable_within(stack: &Stack, path: &str, bound: Duration) {
    let started = Instant::now();
    let (status, body) = stack.get(path).await;
    let took = started.elapsed();
    assert_error(status, &body, 503, "redis_unavailable");
    assert!(took < bound, "{path} took {took:?}, bound {bound:?}");
}

#[tokio::test]
async fn redis_killed_then_restarted() {
    let mut stack = Stack::start().await;
    stack.put_item("k", json!(1)).await;
    let port = stack.redis.port;
    stack.redis.stop();

    for path in ["/items/k", "/items", "/readyz"] {
        assert_unavailable_within(&stack, path, Duration::from_millis(1000)).await;
    }
    let (status, body) = stack
        .post_json("/items", &json!({"key": "k", "value": 2}))
        .await;
    assert_error(status, &body, 503, "redis_unavailable");
    let response = stack.http.get(stack.url("/items/k")).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(stack.get("/healthz").await.0, 200);

    // Redis comes back (empty, no persistence): the service recovers by itself.
    stack.redis = RedisServer::start_on(port);
    let started = Instant::now();
    while stack.get("/readyz").await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.put_item("k", json!(3)).await;
    assert_eq!(stack.get("/items/k").await.1["value"], 3);
    let text = stack.metrics_text().await;
    let errors =
        crate::common::sample(&text, r#"redis_app_command_errors_total{command="GET"}"#).unwrap();
    assert!(errors >= 2.0, "GET errors not counted: {errors}");
}

#[tokio::test]
async fn hung_redis_answers_503_within_the_timeout() {
    let stack = Stack::start_with(|config| config.redis_timeout = Duration::from_millis(200)).await;
    stack.put_item("k", json!(1)).await;
    signal(stack.redis.pid(), "STOP");
    // The timeout bounds every command: 200 ms plus scheduling slack, not a hang.
    for path in ["/items/k", "/readyz", "/items"] {
        assert_unavailable_within(&stack, path, Duration::from_millis(900)).await;
    }
    signal(stack.redis.pid(), "CONT");
    let started = Instant::now();
    while stack.get("/items/k").await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not recover after SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = stack.metrics_text().await;
    assert!(
        crate::common::sample(&text, r#"redis_app_command_errors_total{command="GET"}"#).unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn excess_requests_are_shed_immediately() {
    let stack = Stack::start_with(|config| {
        config.max_in_flight = 4;
        config.fault_injection = true;
    })
    .await;
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let request = stack
                .http
                .get(stack.url("/"))
                .header("x-fault-delay-ms", "1500");
            tokio::spawn(send(request))
        })
        .collect();
    // Wait until the four slow requests hold every permit.
    let started = Instant::now();
    while stack.service.state.in_flight.available_permits() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slow requests never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..10 {
        let started = Instant::now();
        let response = stack.http.get(stack.url("/items/x")).send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(response.headers()["retry-after"], "1");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_error(status, &body, 503, "overloaded");
        assert!(took < Duration::from_millis(300), "shedding took {took:?}");
    }
    // Monitoring is never shed.
    assert_eq!(stack.get("/healthz").await.0, 200);
    assert!(stack.metrics_text().await.contains(
        r#"http_requests_total{endpoint="/items/{key}",method="GET",status_code="503"} 10"#
    ));
    for handle in slow {
        assert_eq!(handle.await.unwrap().0, 200);
    }
    assert_eq!(stack.get("/").await.0, 200, "permits were not returned");
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let mut stack = Stack::start_with(|config| config.fault_injection = true).await;
    let url = stack.url("/");
    let request = stack.http.get(&url).header("x-fault-delay-ms", "700");
    let slow = tokio::spawn(send(request));
    let started = Instant::now();
    while stack.service.state.metrics.in_flight.get() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slow request never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stack.service.signal_shutdown();
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "in-flight request was cut: {body}");
    assert!(started.elapsed() >= Duration::from_millis(700));
    let service = std::mem::replace(
        &mut stack.service,
        items_service::testing::TestService::start(&items_service::testing::test_config(
            &stack.redis.url(),
        ))
        .await,
    );
    service.stop().await.expect("clean exit");
    // The old listener is closed: new connections are refused.
    let fresh = reqwest::Client::new();
    assert!(
        fresh.get(&url).send().await.is_err(),
        "still accepting after shutdown"
    );
}
