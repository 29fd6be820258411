//! Behaviour under faults: Redis dead, hung, blackholed or slow (through the
//! fault proxy), clients that give up, overload, shutdown. The tests that
//! measure recovery print their timings (`--nocapture` shows them).

use std::time::{Duration, Instant};

use items_service::testing::RedisServer;
use serde_json::json;

use crate::common::{assert_error, sample, send, signal, wait_for, Stack};

async fn assert_unavailable_within(stack: &Stack, path: &str, bound: Duration) {
    let started = Instant::now();
    let (status, body) = stack.get(path).await;
    let took = started.elapsed();
    assert_error(status, &body, 503, "redis_unavailable");
    assert!(took < bound, "{path} took {took:?}, bound {bound:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_then_restarted() {
    let mut stack =
        Stack::start_with(|config| config.redis_timeout = Duration::from_millis(250)).await;
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
    let took = stack
        .wait_until_ready("after redis restart", Duration::from_secs(10))
        .await;
    println!("redis restart: /readyz 200 again {took:?} after redis answered PING");
    stack.put_item("k", json!(3)).await;
    assert_eq!(stack.get("/items/k").await.1["value"], 3);
    let text = stack.metrics_text().await;
    let errors = crate::common::sample(
        &text,
        r#"redis_app_command_errors_total{command="GET",kind="io"}"#,
    )
    .unwrap();
    assert!(errors >= 2.0, "GET errors not counted: {errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        sample(
            &text,
            r#"redis_app_command_errors_total{command="GET",kind="timeout"}"#
        )
        .unwrap()
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_connection_is_replaced_within_two_seconds() {
    let stack =
        Stack::start_proxied(|config| config.redis_timeout = Duration::from_millis(250)).await;
    stack.put_item("k", json!(1)).await;
    assert_eq!(stack.get("/readyz").await.0, 200);
    // The open connection goes silent; a new one would work.
    stack.proxy().freeze_existing();
    let took = stack
        .wait_until_ready("after a blackhole", Duration::from_secs(5))
        .await;
    println!("blackhole: /readyz 200 again {took:?} after the freeze");
    assert!(took < Duration::from_secs(2), "recovery took {took:?}");
    assert!(
        stack.proxy().connections() >= 2,
        "served without a fresh connection"
    );
    assert_eq!(stack.get("/items/k").await.1["value"], 1);
    let timeouts = stack
        .metric(r#"redis_app_command_errors_total{command="PING",kind="timeout"}"#)
        .await;
    assert!(
        timeouts >= 1.0,
        "the blackhole was not counted as a timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_heals_while_every_client_gives_up_first() {
    let stack =
        Stack::start_proxied(|config| config.redis_timeout = Duration::from_millis(250)).await;
    stack.put_item("k", json!(1)).await;
    stack.proxy().freeze_existing();
    // Every client gives up at 100 ms, before the 250 ms Redis timeout,
    // readiness probes included: no request ever waits for the timeout.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let answers = |path: &'static str| {
        let request = impatient.get(stack.url(path)).send();
        async move { request.await.is_ok_and(|response| response.status() == 200) }
    };
    let took = wait_for(
        "ready after a blackhole, with impatient clients only",
        Duration::from_secs(5),
        || async {
            answers("/items/k").await;
            answers("/readyz").await
        },
    )
    .await;
    println!("blackhole, 100 ms clients only: /readyz 200 again {took:?} after the freeze");
    assert!(took < Duration::from_secs(2), "recovery took {took:?}");
    let text = stack.metrics_text().await;
    let abandoned_timeouts = sample(
        &text,
        r#"redis_app_command_errors_total{command="GET",kind="timeout"}"#,
    )
    .unwrap();
    assert!(
        abandoned_timeouts >= 1.0,
        "the command its client abandoned was not counted"
    );
    let abandoned = sample(
        &text,
        r#"http_requests_total{endpoint="/items/{key}",method="GET",status_code="499"}"#,
    )
    .unwrap();
    assert!(
        abandoned >= 1.0,
        "no client gave up: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_refused_connections_heal() {
    let stack = Stack::start_proxied(|_| {}).await;
    stack.put_item("k", json!(1)).await;
    stack.proxy().refuse_new(true);
    stack.proxy().reset_existing();
    let (status, body) = stack.get("/items/k").await;
    assert_error(status, &body, 503, "redis_unavailable");
    stack.proxy().refuse_new(false);
    wait_for(
        "reconnect after resets",
        Duration::from_secs(10),
        || async { stack.get("/items/k").await.0 == 200 },
    )
    .await;
    assert!(
        stack
            .metric(r#"redis_app_command_errors_total{command="GET",kind="io"}"#)
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_read_after_a_connection_reset_succeeds() {
    let stack = Stack::start_proxied(|_| {}).await;
    stack.put_item("k", json!(1)).await;
    for round in 0..5 {
        stack.proxy().reset_existing();
        wait_for(
            "the reset connection gone",
            Duration::from_secs(5),
            || async { stack.proxy().connections() == 0 },
        )
        .await;
        // Redis is fine, only the old socket is dead: a read retries once
        // on a fresh connection instead of failing.
        let (status, body) = stack.get("/items/k").await;
        assert_eq!(status, 200, "round {round}: {body}");
        let (status, body) = stack.get("/readyz").await;
        assert_eq!(status, 200, "round {round}: {body}");
    }
}

/// `(499 count, duration count)` of `GET /items/{key}`.
async fn abandoned_and_observed(stack: &Stack) -> (f64, f64) {
    let text = stack.metrics_text().await;
    let abandoned = sample(
        &text,
        r#"http_requests_total{endpoint="/items/{key}",method="GET",status_code="499"}"#,
    )
    .unwrap_or(0.0);
    let observed = sample(
        &text,
        r#"http_request_duration_seconds_count{endpoint="/items/{key}",method="GET"}"#,
    )
    .unwrap_or(0.0);
    (abandoned, observed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_abandoned_during_a_stall_are_counted_as_499() {
    // The Redis timeout outlasts the clients' patience: they give up first.
    let stack = Stack::start_with(|config| config.redis_timeout = Duration::from_secs(10)).await;
    stack.put_item("k", json!(1)).await;
    let before = abandoned_and_observed(&stack).await;
    signal(stack.redis.pid(), "STOP");
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let attempts = (0..20).map(|_| impatient.get(stack.url("/items/k")).send());
    for outcome in futures::future::join_all(attempts).await {
        assert!(outcome.is_err(), "a request was answered during the stall");
    }
    let took = wait_for(
        "20 abandoned requests counted",
        Duration::from_secs(5),
        || async {
            let (abandoned, observed) = abandoned_and_observed(&stack).await;
            abandoned - before.0 >= 20.0 && observed - before.1 >= 20.0
        },
    )
    .await;
    println!("stall: 20 abandoned requests counted as 499 {took:?} after the clients gave up");
    signal(stack.redis.pid(), "CONT");
    let (abandoned, observed) = abandoned_and_observed(&stack).await;
    assert_eq!(
        abandoned - before.0,
        20.0,
        "each abandoned request counted once"
    );
    assert_eq!(observed - before.1, 20.0);
    assert_eq!(
        stack.service.state.metrics.in_flight.get(),
        0,
        "in-flight gauge drifted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deadline_bounds_all_redis_work_of_a_listing() {
    // A sparse keyspace: no item under the prefix, so a page walks the
    // maximum of 16 SCANs, each slowed by the proxy to ≥ 200 ms.
    let stack =
        Stack::start_proxied(|config| config.redis_timeout = Duration::from_millis(400)).await;
    let mut redis = stack.redis_connection();
    let mut fill = redis::pipe();
    for i in 0..3000 {
        fill.cmd("SET").arg(format!("other:{i}")).arg(i).ignore();
    }
    fill.exec(&mut redis).unwrap();
    // Connect (and handshake) before the latency, so each SCAN costs one
    // slowed round trip, well within the timeout on its own.
    assert_eq!(stack.get("/readyz").await.0, 200);
    stack.proxy().set_latency(Duration::from_millis(100));
    let started = Instant::now();
    let (status, body) = stack.get("/items?limit=1").await;
    let took = started.elapsed();
    assert_error(status, &body, 503, "redis_unavailable");
    assert!(took < Duration::from_millis(1500), "listing took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_share_one_ping() {
    let stack = Stack::start_proxied(|_| {}).await;
    let pings = r#"redis_app_command_duration_seconds_count{command="PING"}"#;
    let before = stack.metric(pings).await;
    stack.proxy().set_latency(Duration::from_millis(50));
    let probes = (0..100).map(|_| stack.get("/readyz"));
    for (status, body) in futures::future::join_all(probes).await {
        assert_eq!(status, 200, "{body}");
    }
    let sent = stack.metric(pings).await - before;
    assert!(sent <= 10.0, "100 probes sent {sent} PINGs");
}
