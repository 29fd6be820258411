//! ErrorBurst on a live Prometheus (issue 14): "more than 10 errors in one
//! minute", counted exactly. Live scrapes are never aligned with the rule's
//! window, so `increase()` would extrapolate 10 errors to ~10.2 (1 s
//! scrapes) and fire one error early; promtool's aligned samples cannot
//! show that, a real Prometheus scraping a real service does.

use std::time::{Duration, Instant};

use loadgen::verify::prometheus::Prometheus;

use crate::common::{Monitoring, Service};

async fn send_errors(service: &Service, count: usize) {
    let client = reqwest::Client::new();
    for _ in 0..count {
        let response = client
            .get(format!("{}/", service.url()))
            .header("x-fault-status", "500")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    }
}

/// The largest value of `query` over the last `range`, if any.
async fn max_over(prometheus: &Prometheus, query: &str, range: &str) -> Option<f64> {
    prometheus
        .query(&format!("max_over_time(({query})[{range}:1s])"), None)
        .await
        .unwrap()
        .first()
        .map(|sample| sample.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_errors_in_a_minute_never_fire_error_burst_and_the_eleventh_does() {
    let service = Service::start().await;
    let monitoring = Monitoring::start(&service, |rules| rules).await;
    monitoring.until_scraped("items-service").await;
    let prometheus = Prometheus::new(&monitoring.prometheus);
    // A few scrapes of the idle service first, so the window starts at 0.
    tokio::time::sleep(Duration::from_secs(5)).await;

    send_errors(&service, 10).await;
    // Past the whole minute the ten errors spend in the window.
    tokio::time::sleep(Duration::from_secs(70)).await;
    let counted = max_over(&prometheus, "job:http_requests_5xx:increase1m", "75s").await;
    assert_eq!(counted, Some(10.0), "the 1m count of ten errors");
    let burst = max_over(&prometheus, r#"ALERTS{alertname="ErrorBurst"}"#, "75s").await;
    assert_eq!(burst, None, "ErrorBurst went pending or fired on 10 errors");

    send_errors(&service, 11).await;
    let started = Instant::now();
    while prometheus
        .query(
            r#"ALERTS{alertname="ErrorBurst", alertstate="firing"}"#,
            None,
        )
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ErrorBurst did not fire on 11 errors in a minute"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
