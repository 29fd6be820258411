//! `/metrics` reports exactly what happened, with bounded cardinality.

use serde_json::json;

use crate::common::{sample, send, series_count, Stack};

fn requests(method: &str, endpoint: &str, status: u16) -> String {
    format!(
        r#"http_requests_total{{endpoint="{endpoint}",method="{method}",status_code="{status}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_a_known_sequence() {
    let stack = Stack::start().await;
    for _ in 0..3 {
        assert_eq!(stack.get("/").await.0, 200);
    }
    stack.put_item("m1", json!(1)).await;
    stack.put_item("m2", json!(2)).await;
    assert_eq!(
        stack
            .post_json("/items", &json!({"key": "bad key", "value": 1}))
            .await
            .0,
        400
    );
    for key in ["m1", "m2", "m1", "m2"] {
        assert_eq!(stack.get(&format!("/items/{key}")).await.0, 200);
    }
    for key in ["x1", "x2"] {
        assert_eq!(stack.get(&format!("/items/{key}")).await.0, 404);
    }
    assert_eq!(stack.delete("/items/m1").await.0, 204);
    assert_eq!(stack.get("/nope").await.0, 404);
    assert_eq!(send(stack.http.put(stack.url("/items/m2"))).await.0, 405);
    let _ = stack.metrics_text().await; // counted in the next scrape only

    let text = stack.metrics_text().await;
    let expected = [
        (requests("GET", "/", 200), 3.0),
        (requests("POST", "/items", 201), 2.0),
        (requests("POST", "/items", 400), 1.0),
        (requests("GET", "/items/{key}", 200), 4.0),
        (requests("GET", "/items/{key}", 404), 2.0),
        (requests("DELETE", "/items/{key}", 204), 1.0),
        (requests("GET", "unmatched", 404), 1.0),
        (requests("PUT", "/items/{key}", 405), 1.0),
        (requests("GET", "/metrics", 200), 1.0),
        (requests("GET", "/items/{key}", 500), 0.0),
        (requests("GET", "/items/{key}", 503), 0.0),
        ("redis_app_cache_hit_total".to_owned(), 4.0),
        ("redis_app_cache_miss_total".to_owned(), 2.0),
        (
            r#"http_request_duration_seconds_count{endpoint="/items/{key}",method="GET"}"#
                .to_owned(),
            6.0,
        ),
        (
            r#"http_request_duration_seconds_count{endpoint="/",method="GET"}"#.to_owned(),
            3.0,
        ),
        (
            r#"redis_app_command_duration_seconds_count{command="SET"}"#.to_owned(),
            2.0,
        ),
        (
            r#"redis_app_command_duration_seconds_count{command="GET"}"#.to_owned(),
            6.0,
        ),
        (
            r#"redis_app_command_duration_seconds_count{command="DEL"}"#.to_owned(),
            1.0,
        ),
        (
            r#"redis_app_command_errors_total{command="GET",kind="io"}"#.to_owned(),
            0.0,
        ),
        (
            r#"redis_app_command_errors_total{command="GET",kind="timeout"}"#.to_owned(),
            0.0,
        ),
        (
            r#"redis_app_command_errors_total{command="GET",kind="data"}"#.to_owned(),
            0.0,
        ),
        (
            r#"redis_app_list_skipped_total{reason="invalid_key"}"#.to_owned(),
            0.0,
        ),
        ("http_requests_in_flight".to_owned(), 1.0),
        (
            format!(
                r#"app_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ];
    for (series, want) in expected {
        assert_eq!(sample(&text, &series), Some(want), "{series}\n{text}");
    }
    // Exactly these non-zero request series exist, nothing else.
    let nonzero: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("http_requests_total{") && !line.ends_with(" 0"))
        .collect();
    assert_eq!(nonzero.len(), 9, "{nonzero:#?}");
    // Buckets are those of the SPEC.
    for le in [
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ] {
        let bucket = format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/",method="GET",le="{le}"}}"#
        );
        assert!(sample(&text, &bucket).is_some(), "missing bucket {le}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cardinality_is_bounded_whatever_clients_send() {
    let stack = Stack::start().await;
    // One of each kind first, so every series they can create exists.
    let warmup = [
        ("GET", "/warm/up"),
        ("GET", "/items/warm"),
        ("BREW", "/warm"),
        ("GET", "/items/bad%20key"),
    ];
    for (method, path) in warmup {
        let _ = send(stack.http.request(method.parse().unwrap(), stack.url(path))).await;
    }
    let _ = stack.metrics_text().await; // creates the /metrics 200 series
    let before = stack.metrics_text().await;
    let before_count = series_count(&before, "");

    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let requests: Vec<(&str, String)> = (0..5000)
        .map(|i| {
            let n = next();
            match i % 4 {
                0 => ("GET", format!("/random/{n:x}/{}", n % 97)),
                1 => ("GET", format!("/items/missing-{n:x}")),
                2 => ("BREW", format!("/{n:x}")),
                _ => ("GET", format!("/items/bad%20{n:x}")),
            }
        })
        .collect();
    for chunk in requests.chunks(100) {
        futures::future::join_all(chunk.iter().map(|(method, path)| {
            send(stack.http.request(method.parse().unwrap(), stack.url(path)))
        }))
        .await;
    }
    let after = stack.metrics_text().await;
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_owned()))
            .collect()
    };
    let appeared: Vec<String> = names(&after).difference(&names(&before)).cloned().collect();
    assert!(appeared.is_empty(), "series appeared: {appeared:#?}");
    assert_eq!(series_count(&after, ""), before_count);
    assert_eq!(sample(&after, "redis_app_cache_miss_total"), Some(1251.0));
    assert!(!after.contains("missing-"), "a key leaked into a label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_and_abandoned_series_exist_for_every_route_from_the_start() {
    let stack = Stack::start().await;
    let text = stack.metrics_text().await;
    for (endpoint, methods) in items_service::metrics::ROUTES {
        for method in *methods {
            for status in [499, 500, 503] {
                let series = requests(method, endpoint, status);
                assert_eq!(sample(&text, &series), Some(0.0), "{series}");
            }
        }
    }
}
