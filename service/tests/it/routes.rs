//! The success path of every route.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_health_and_readiness() {
    let stack = Stack::start().await;
    let (status, body) = stack.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(body["service"], "items-service");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stack.get("/healthz").await.0, 200);
    assert_eq!(stack.get("/readyz").await.0, 200);
    let text = stack.metrics_text().await;
    assert!(
        text.contains("# TYPE http_requests_total counter"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_fetch_replace_delete() {
    let stack = Stack::start().await;
    let value = json!({"name": "widget", "tags": ["a", "b"], "price": 9.5, "nested": {"ok": true}});
    let (status, body) = stack
        .post_json("/items", &json!({"key": "w:1", "value": value}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(body, json!({"key": "w:1", "value": value}));

    let (status, body) = stack.get("/items/w:1").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"key": "w:1", "value": value}));

    // Upsert replaces; any JSON value is accepted, including null.
    for replacement in [json!(null), json!(42), json!("text"), json!([1, 2, 3])] {
        stack.put_item("w:1", replacement.clone()).await;
        assert_eq!(stack.get("/items/w:1").await.1["value"], replacement);
    }

    let (status, body) = stack.delete("/items/w:1").await;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    assert_eq!(stack.get("/items/w:1").await.0, 404);
    assert_eq!(stack.delete("/items/w:1").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_use_the_whole_alphabet_and_length() {
    let stack = Stack::start().await;
    let long = "k".repeat(256);
    for key in ["Az09._:-", long.as_str()] {
        stack.put_item(key, json!(key)).await;
        let (status, body) = stack.get(&format!("/items/{key}")).await;
        assert_eq!(status, 200, "{key}");
        assert_eq!(body["value"], key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_expire_after_their_ttl() {
    let stack = Stack::start().await;
    let (status, _) = stack
        .post_json(
            "/items",
            &json!({"key": "short", "value": 1, "ttl_seconds": 1}),
        )
        .await;
    assert_eq!(status, 201);
    stack.put_item("forever", json!(2)).await;
    assert_eq!(stack.get("/items/short").await.0, 200);

    let started = Instant::now();
    while stack.get("/items/short").await.0 == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "item with ttl 1 s still there after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "expired too early: {:?}",
        started.elapsed()
    );
    assert_eq!(stack.get("/items/forever").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis_at_startup() {
    // Redis is down when the service starts: it still starts and reports
    // not ready, then becomes ready by itself once Redis comes up.
    let port = items_service::testing::free_port();
    let config = items_service::testing::test_config(&format!("redis://127.0.0.1:{port}"));
    let service = items_service::testing::TestService::start(&config).await;
    let http = crate::common::client();
    let url = service.url();
    let (status, body) = crate::common::send(http.get(format!("{url}/readyz"))).await;
    crate::common::assert_error(status, &body, 503, "redis_unavailable");
    assert_eq!(
        crate::common::send(http.get(format!("{url}/healthz")))
            .await
            .0,
        200
    );

    let _redis = items_service::testing::RedisServer::start_on(port);
    let started = Instant::now();
    while crate::common::send(http.get(format!("{url}/readyz")))
        .await
        .0
        != 200
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
