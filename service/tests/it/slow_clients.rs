//! Slow and stalled clients are cut off: a request head or body that does
//! not arrive in time cannot hold a connection or an in-flight permit.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::{assert_error, sample, Stack};

const SHORT: Duration = Duration::from_millis(500);

/// Writes `bytes` on a new connection, then reads until the service closes
/// it; returns what was read and how long the close took after the write.
async fn write_then_read_until_closed(stack: &Stack, bytes: &[u8]) -> (String, Duration) {
    let mut stream = TcpStream::connect(stack.service.addr)
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let written = Instant::now();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the service kept the connection open 10 s past its timeout")
        .expect("read");
    (
        String::from_utf8_lossy(&received).into_owned(),
        written.elapsed(),
    )
}

async fn start_with_short_header_read() -> Stack {
    Stack::start_with_state(|_| {}, |state| state.client_timeouts.header_read = SHORT).await
}

/// The service waited for the timeout (less timer slack) before cutting off.
fn assert_waited_for_timeout(after: Duration) {
    assert!(
        after >= SHORT - Duration::from_millis(50),
        "cut off after {after:?}, before the {SHORT:?} timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_disconnected() {
    let stack = start_with_short_header_read().await;
    let (received, after) =
        write_then_read_until_closed(&stack, b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ").await;
    assert_waited_for_timeout(after);
    assert!(
        received.is_empty() || received.starts_with("HTTP/1.1 408"),
        "unexpected reply: {received:?}"
    );
    assert_eq!(stack.get("/").await.0, 200, "the service still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let stack = start_with_short_header_read().await;
    let (received, after) =
        write_then_read_until_closed(&stack, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert!(received.starts_with("HTTP/1.1 200"), "reply: {received:?}");
    assert_waited_for_timeout(after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_frees_its_permit() {
    let stack = Stack::start_with_state(
        |config| config.max_in_flight = 1,
        |state| state.client_timeouts.body_read = SHORT,
    )
    .await;
    let stalled = b"POST /items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
        Content-Length: 100\r\n\r\n{\"key\":";
    let (reply, other) = tokio::join!(write_then_read_until_closed(&stack, stalled), async {
        // While the body stalls it holds the only permit.
        tokio::time::sleep(SHORT / 4).await;
        stack
            .post_json("/items", &json!({"key": "k", "value": 1}))
            .await
    });
    assert_error(other.0, &other.1, 503, "overloaded");

    let (received, after) = reply;
    assert_waited_for_timeout(after);
    let (head, body) = received.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 408"), "head: {head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "head: {head}"
    );
    let body: Value = serde_json::from_str(body).expect("JSON error body");
    assert_error(408, &body, 408, "request_timeout");

    stack.put_item("k", json!(1)).await;
    let text = stack.metrics_text().await;
    let timed_out = r#"http_requests_total{endpoint="/items",method="POST",status_code="408"}"#;
    assert_eq!(sample(&text, timed_out), Some(1.0));
}
