//! Every client error of SPEC §4 gets its status and the JSON error shape,
//! never a 5xx.

use serde_json::json;

use items_service::store::MAX_CURSOR_KEYS;

use crate::common::{assert_error, send, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_are_rejected() {
    let stack = Stack::start().await;
    let too_long = "k".repeat(257);
    let bad_keys = [
        "",
        too_long.as_str(),
        "a/b",
        "a b",
        "ключ",
        "tab\tkey",
        "star*",
        "~tilde",
    ];
    for key in bad_keys {
        let (status, body) = stack
            .post_json("/items", &json!({"key": key, "value": 1}))
            .await;
        assert_error(status, &body, 400, "invalid_key");
    }
    // The same keys in the path, percent-encoded, for GET and DELETE.
    for key in bad_keys.iter().filter(|key| !key.is_empty()) {
        let encoded: String = key
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (status, body) = stack.get(&format!("/items/{encoded}")).await;
        assert_error(status, &body, 400, "invalid_key");
        let (status, body) = stack.delete(&format!("/items/{encoded}")).await;
        assert_error(status, &body, 400, "invalid_key");
    }
    // Invalid UTF-8 after percent-decoding.
    let (status, body) = stack.get("/items/%FF%FE").await;
    assert_error(status, &body, 400, "invalid_key");
    // An empty path segment and a raw slash do not match the route at all.
    for path in ["/items/", "/items/a/b"] {
        let (status, body) = stack.get(path).await;
        assert_error(status, &body, 404, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_rejected() {
    let stack = Stack::start().await;
    let url = stack.url("/items");
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        (
            "malformed json",
            Some("application/json"),
            "{\"key\":".into(),
            400,
            "invalid_json",
        ),
        (
            "not json at all",
            Some("application/json"),
            "hello".into(),
            400,
            "invalid_json",
        ),
        (
            "empty body",
            Some("application/json"),
            String::new(),
            400,
            "invalid_json",
        ),
        (
            "trailing garbage",
            Some("application/json"),
            r#"{"key":"a","value":1} x"#.into(),
            400,
            "invalid_json",
        ),
        (
            "wrong content type",
            Some("text/plain"),
            r#"{"key":"a","value":1}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "form content type",
            Some("application/x-www-form-urlencoded"),
            "key=a".into(),
            415,
            "unsupported_media_type",
        ),
        (
            "missing content type",
            None,
            r#"{"key":"a","value":1}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "missing key",
            Some("application/json"),
            r#"{"value":1}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "missing value",
            Some("application/json"),
            r#"{"key":"a"}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "key is a number",
            Some("application/json"),
            r#"{"key":1,"value":1}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "body is an array",
            Some("application/json"),
            "[1,2]".into(),
            400,
            "invalid_body",
        ),
        (
            "ttl is a string",
            Some("application/json"),
            r#"{"key":"a","value":1,"ttl_seconds":"5"}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "ttl is negative",
            Some("application/json"),
            r#"{"key":"a","value":1,"ttl_seconds":-1}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "ttl is fractional",
            Some("application/json"),
            r#"{"key":"a","value":1,"ttl_seconds":1.5}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "ttl is zero",
            Some("application/json"),
            r#"{"key":"a","value":1,"ttl_seconds":0}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "ttl above 30 days",
            Some("application/json"),
            r#"{"key":"a","value":1,"ttl_seconds":2592001}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "unknown field",
            Some("application/json"),
            r#"{"key":"a","value":1,"colour":"red"}"#.into(),
            400,
            "invalid_body",
        ),
    ];
    for (name, content_type, body, want_status, want_code) in cases {
        let mut request = stack.http.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, response) = send(request).await;
        assert_eq!(
            (status, response["error"].as_str()),
            (want_status, Some(want_code)),
            "{name}: {response}"
        );
        assert_error(status, &response, want_status, want_code);
    }
    // Nothing was stored by any of them.
    assert_eq!(stack.get("/items").await.1["items"], json!([]));
}

/// A JSON body of exactly `size` bytes storing a string value.
fn body_of_size(size: usize) -> String {
    let frame = r#"{"key":"big","value":""}"#;
    let mut body = String::with_capacity(size);
    body.push_str(&frame[..frame.len() - 2]);
    body.push_str(&"x".repeat(size - frame.len()));
    body.push_str(r#""}"#);
    assert_eq!(body.len(), size);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_is_one_mebibyte() {
    let stack = Stack::start().await;
    let url = stack.url("/items");
    let limit = 1024 * 1024;
    let at_limit = send(
        stack
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body_of_size(limit)),
    )
    .await;
    assert_eq!(at_limit.0, 201, "exactly 1 MiB must be accepted");
    let (status, body) = send(
        stack
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body_of_size(limit + 1)),
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");
    // Without Content-Length (chunked), the limit still applies.
    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(body_of_size(limit + 1))];
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, body) = send(
        stack
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(stream),
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_queries_are_rejected() {
    let stack = Stack::start().await;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "cursor=abc",
        "cursor=12~a%20b",
        "cursor=-3",
        "page=2",
    ] {
        let (status, body) = stack.get(&format!("/items?{query}")).await;
        assert_error(status, &body, 400, "invalid_query");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cursor_cannot_multiply_redis_work() {
    let stack = Stack::start().await;
    let strlens = r#"redis_app_command_duration_seconds_count{command="STRLEN"}"#;
    let before = stack.metric(strlens).await;
    // The service never emits more than about one SCAN batch of keys;
    // 32 000 carried keys would cost 32 000 STRLENs.
    let forged = format!("end{}", "~x".repeat(32_000));
    let (status, body) = stack
        .get(&format!("/items?limit=1000&cursor={forged}"))
        .await;
    assert_error(status, &body, 400, "invalid_query");
    let most = format!("end{}", "~x".repeat(MAX_CURSOR_KEYS));
    let (status, body) = stack.get(&format!("/items?limit=1&cursor={most}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stack.metric(strlens).await - before,
        1.0,
        "one pipelined STRLEN exchange, for the accepted cursor only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods() {
    let stack = Stack::start().await;
    for path in ["/nope", "/items/a/b/c", "/ITEMS", "/metrics/x"] {
        let (status, body) = stack.get(path).await;
        assert_error(status, &body, 404, "not_found");
    }
    for (method, path, allow) in [
        ("PUT", "/items/x", "GET,HEAD,DELETE"),
        ("DELETE", "/items", "POST,GET,HEAD"),
        ("POST", "/", "GET,HEAD"),
        ("PATCH", "/metrics", "GET,HEAD"),
        ("BREW", "/healthz", "GET,HEAD"),
    ] {
        let request = stack.http.request(method.parse().unwrap(), stack.url(path));
        let response = request.send().await.unwrap();
        let allow_header = response.headers()["allow"].to_str().unwrap().to_owned();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_error(status, &body, 405, "method_not_allowed");
        let mut got: Vec<&str> = allow_header.split(',').collect();
        let mut want: Vec<&str> = allow.split(',').collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_headers_are_ignored_without_the_flag() {
    let stack = Stack::start().await;
    let (status, _) = send(
        stack
            .http
            .get(stack.url("/"))
            .header("x-fault-status", "500")
            .header("x-fault-delay-ms", "5000"),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_answers_the_requested_status() {
    let stack = Stack::start_with(|config| config.fault_injection = true).await;
    for code in [500, 502, 503, 504] {
        let (status, body) = send(
            stack
                .http
                .get(stack.url("/items/x"))
                .header("x-fault-status", code.to_string()),
        )
        .await;
        assert_error(status, &body, code, "injected_fault");
    }
    let started = std::time::Instant::now();
    let (status, _) = send(
        stack
            .http
            .get(stack.url("/"))
            .header("x-fault-delay-ms", "300"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    for (name, value) in [
        ("x-fault-status", "404"),
        ("x-fault-status", "oops"),
        ("x-fault-delay-ms", "10001"),
    ] {
        let (status, body) = send(stack.http.get(stack.url("/")).header(name, value)).await;
        assert_error(status, &body, 400, "invalid_header");
    }
}
