//! Nothing is lost under concurrency.

use serde_json::json;

use crate::common::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_posts_are_all_stored() {
    // Above the default --max-in-flight, so nothing is shed; and a Redis
    // timeout that tolerates a debug build queueing 2,000 requests on two
    // shared cores: this test is about losing nothing, not about latency.
    let stack = Stack::start_with(|config| {
        config.max_in_flight = 4096;
        config.redis_timeout = std::time::Duration::from_secs(5);
    })
    .await;
    let posts = (0..2000).map(|i| {
        let request = stack
            .http
            .post(stack.url("/items"))
            .json(&json!({"key": format!("c:{i}"), "value": {"i": i}}));
        tokio::spawn(crate::common::send(request))
    });
    let results = futures::future::join_all(posts).await;
    let mut statuses = std::collections::BTreeMap::new();
    for result in results {
        *statuses.entry(result.unwrap().0).or_insert(0) += 1;
    }
    assert_eq!(statuses, std::collections::BTreeMap::from([(201, 2000)]));
    for i in 0..2000 {
        let (status, body) = stack.get(&format!("/items/c:{i}")).await;
        assert_eq!(status, 200, "c:{i}");
        assert_eq!(body["value"]["i"], i);
    }
}
