//! Whatever else lives under the key prefix (keys outside the key alphabet,
//! non-UTF-8 keys, keys holding the cursor separator, non-JSON values, other
//! Redis types) never breaks the API: listing skips and counts it, a direct
//! read of bad data is a 500 `internal` (not an outage), and pages stay
//! within their byte budget.

use std::collections::HashMap;

use items_service::store::redis::{MAX_VALUE_BYTES, PAGE_BUDGET_BYTES};
use serde_json::json;

use crate::{
    common::{assert_error, sample, Stack},
    pagination::{listed_keys, walk, walk_checking},
};

fn skipped(text: &str, reason: &str) -> f64 {
    sample(
        text,
        &format!(r#"redis_app_list_skipped_total{{reason="{reason}"}}"#),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_skips_and_counts_foreign_entries() {
    let stack = Stack::start().await;
    stack
        .put_items((0..40).map(|i| (format!("ok:{i}"), json!({"n": format!("ok:{i}")}))))
        .await;
    let mut redis = stack.redis_connection();
    let mut foreign = redis::pipe();
    foreign
        .cmd("SET")
        .arg("items:bad key")
        .arg("1")
        .cmd("SET")
        .arg(b"items:\xff\xfe".as_slice())
        .arg("1")
        .cmd("SET")
        .arg("items:a~b")
        .arg("1")
        .cmd("SET")
        .arg("items:notjson")
        .arg("{oops")
        .cmd("SET")
        .arg("items:binary")
        .arg(b"\xff\x00".as_slice())
        .cmd("HSET")
        .arg("items:hash")
        .arg("f")
        .arg("v");
    foreign.exec(&mut redis).unwrap();

    for limit in [1, 7, 100] {
        let seen = walk(&stack, limit).await;
        let want: HashMap<String, usize> = (0..40).map(|i| (format!("ok:{i}"), 1)).collect();
        assert_eq!(seen, want, "limit {limit}");
    }
    let text = stack.metrics_text().await;
    // Three walks, each meeting every foreign entry once.
    assert_eq!(
        skipped(&text, "invalid_key"),
        9.0,
        "bad key, non-UTF-8, separator"
    );
    assert_eq!(
        skipped(&text, "invalid_value"),
        6.0,
        "non-JSON and non-UTF-8 values"
    );
    assert_eq!(skipped(&text, "wrong_type"), 3.0, "the hash");
}

/// `redis_app_command_errors_total{command="GET",kind}`.
fn get_errors(text: &str, kind: &str) -> f64 {
    sample(
        text,
        &format!(r#"redis_app_command_errors_total{{command="GET",kind="{kind}"}}"#),
    )
    .unwrap()
}

/// Each of `paths` answers 500 `internal` without `Retry-After`.
async fn assert_internal(stack: &Stack, paths: &[&str]) {
    for path in paths {
        let response = stack.http.get(stack.url(path)).send().await.unwrap();
        assert!(
            response.headers().get("retry-after").is_none(),
            "{path}: data errors are not worth a retry"
        );
        let status = response.status().as_u16();
        let body = response.json().await.unwrap();
        assert_error(status, &body, 500, "internal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_errors_are_internal_not_an_outage() {
    let stack = Stack::start().await;
    let mut redis = stack.redis_connection();
    redis::pipe()
        .cmd("HSET")
        .arg("items:hash")
        .arg("f")
        .arg("v")
        .cmd("SET")
        .arg("items:notjson")
        .arg("{oops")
        .cmd("SET")
        .arg("items:binary")
        .arg(b"\xff\x00".as_slice())
        .cmd("SET")
        .arg("items:empty")
        .arg("")
        .exec(&mut redis)
        .unwrap();
    let paths = [
        "/items/hash",
        "/items/notjson",
        "/items/binary",
        "/items/empty",
    ];
    assert_internal(&stack, &paths).await;
    let text = stack.metrics_text().await;
    assert_eq!(
        get_errors(&text, "data"),
        paths.len() as f64,
        "WRONGTYPE and unreadable values are data errors"
    );
    assert_eq!(get_errors(&text, "io") + get_errors(&text, "timeout"), 0.0);
    assert_eq!(stack.get("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_value_above_the_size_limit_is_never_read() {
    // Through the proxy, to see that the connection is kept.
    let stack = Stack::start_proxied(|_| {}).await;
    stack.put_item("small", json!(1)).await;
    // Valid JSON, one byte above what the API could ever have written.
    let huge = format!("\"{}\"", "x".repeat(MAX_VALUE_BYTES - 1));
    let mut redis = stack.redis_connection();
    redis::cmd("SET")
        .arg("items:huge")
        .arg(&huge)
        .exec(&mut redis)
        .unwrap();
    assert_internal(&stack, &["/items/huge"]).await;
    let text = stack.metrics_text().await;
    assert_eq!(get_errors(&text, "data"), 1.0);
    assert_eq!(get_errors(&text, "io") + get_errors(&text, "timeout"), 0.0);
    assert_eq!(
        stack.proxy().connections(),
        1,
        "the connection was replaced"
    );
    assert_eq!(stack.get("/items/small").await.1["value"], 1);
    // The value at the limit is served whole.
    let largest = format!("\"{}\"", "x".repeat(MAX_VALUE_BYTES - 2));
    redis::cmd("SET")
        .arg("items:largest")
        .arg(&largest)
        .exec(&mut redis)
        .unwrap();
    let (status, body) = stack.get("/items/largest").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["value"].as_str().map(str::len),
        Some(MAX_VALUE_BYTES - 2)
    );
    // Listing agrees with GET: the huge value is skipped, the largest listed.
    let (status, body) = stack.get("/items?limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(listed_keys(&body), ["largest", "small"]);
    assert_eq!(skipped(&stack.metrics_text().await, "too_large"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_bounded_by_bytes() {
    let stack = Stack::start().await;
    // Seven items just under the 1 MiB body limit: 7 MiB in all.
    let big = "x".repeat(1000 * 1024);
    stack
        .put_items((0..7).map(|i| (format!("big:{i}"), json!(big))))
        .await;
    let response = stack
        .http
        .get(stack.url("/items?limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert!(
        bytes.len() as u64 <= PAGE_BUDGET_BYTES + 64 * 1024,
        "a page of {} bytes",
        bytes.len()
    );
    let page: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        page["next_cursor"].is_string(),
        "the page ended early without a cursor"
    );
    // Every item still comes exactly once, at any limit.
    let (seen, _) = walk_checking(&stack, 1000, |_, value| {
        assert_eq!(value.as_str().map(str::len), Some(big.len()))
    })
    .await;
    assert_eq!(seen.len(), 7);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_cut_by_bytes_carries_long_keys_in_its_cursor() {
    // 1000 keys of the maximum length with 20 KB values: the first page
    // holds ~200 of them, and the cursor carries the other ~800 keys.
    let stack = Stack::start().await;
    let value = "v".repeat(20 * 1000);
    let keys: Vec<String> = (0..1000).map(|i| format!("{i:0>256}")).collect();
    stack
        .put_items(keys.iter().map(|key| (key.clone(), json!(value))))
        .await;
    let (seen, pages) = walk_checking(&stack, 1000, |_, _| {}).await;
    assert!(pages >= 5, "{pages} pages for 20 MB");
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|n| *n == 1));
}
