//! `GET /items` walks the keyspace with SCAN + MGET: every key exactly once
//! over a quiet keyspace, never twice on one page,
//! pages never longer than `limit`.

use std::collections::HashMap;

use serde_json::{json, Value};

use items_service::store::MAX_CURSOR_KEYS;

use crate::common::Stack;

/// Walks the whole listing `limit` items a page; every value must be
/// `{"n": key}`. Returns how often each key was seen.
pub async fn walk(stack: &Stack, limit: usize) -> HashMap<String, usize> {
    walk_checking(stack, limit, |key, value| {
        assert_eq!(value, &json!({"n": key}))
    })
    .await
    .0
}

/// Walks the whole listing, asserting page bounds and `check(key, value)`
/// on every item. Returns how often each key was seen and the page count.
pub async fn walk_checking(
    stack: &Stack,
    limit: usize,
    check: impl Fn(&str, &Value),
) -> (HashMap<String, usize>, usize) {
    let mut seen = HashMap::new();
    let mut cursor = String::new();
    for pages in 1..10_000 {
        let (status, body) = stack
            .get(&format!("/items?limit={limit}&cursor={cursor}"))
            .await;
        assert_eq!(status, 200, "page {pages}: {body}");
        let items = body["items"].as_array().expect("items array");
        assert!(
            items.len() <= limit,
            "page of {} with limit {limit}",
            items.len()
        );
        for item in items {
            let key = item["key"].as_str().expect("key").to_owned();
            check(&key, &item["value"]);
            *seen.entry(key).or_insert(0) += 1;
        }
        match body["next_cursor"].as_str() {
            Some(next) => {
                let carried = next.matches('~').count();
                assert!(
                    carried <= MAX_CURSOR_KEYS / 2,
                    "a cursor carrying {carried} keys is near the parse bound"
                );
                cursor = next.to_owned();
            }
            None => return (seen, pages),
        }
    }
    panic!("listing did not finish");
}

/// The keys of one listing page, sorted.
pub fn listed_keys(page: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = page["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|item| item["key"].as_str().expect("key"))
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_exactly_once_over_2500_keys() {
    let stack = Stack::start().await;
    let keys: Vec<String> = (0..2500).map(|i| format!("page:{i}")).collect();
    stack
        .put_items(keys.iter().map(|key| (key.clone(), json!({"n": key}))))
        .await;

    for limit in [1000, 100, 7] {
        let seen = walk(&stack, limit).await;
        assert_eq!(
            seen.len(),
            2500,
            "limit {limit}: {} distinct keys",
            seen.len()
        );
        let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
        assert!(repeated.is_empty(), "limit {limit}: repeated {repeated:?}");
        assert!(keys.iter().all(|key| seen.contains_key(key)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limit_and_empty_listing() {
    let stack = Stack::start().await;
    let (status, body) = stack.get("/items").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"items": [], "next_cursor": null}));

    stack
        .put_items((0..150).map(|i| (format!("d{i}"), json!({"n": format!("d{i}")}))))
        .await;
    let (_, body) = stack.get("/items").await;
    assert_eq!(body["items"].as_array().unwrap().len(), 100);
    assert!(body["next_cursor"].is_string());
    assert_eq!(walk(&stack, 100).await.len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_prefix_are_not_listed() {
    let stack = Stack::start().await;
    stack.put_item("mine", json!({"n": "mine"})).await;
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg("other:thing")
        .arg("1")
        .query::<()>(&mut connection)
        .unwrap();
    let (_, body) = stack.get("/items").await;
    assert_eq!(
        body,
        json!({"items": [{"key": "mine", "value": {"n": "mine"}}], "next_cursor": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_never_repeats_a_key() {
    // A cursor carrying a key that the scan then meets again: what a walk
    // sees when Redis resizes its table between two pages (SCAN repeats
    // keys then).
    let stack = Stack::start().await;
    stack
        .put_items(["a", "b", "c"].map(|key| (key.to_owned(), json!({"n": key}))))
        .await;
    let (status, body) = stack.get("/items?limit=1000&cursor=0~a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed_keys(&body), ["a", "b", "c"]);
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
}
