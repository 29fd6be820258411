//! Slow and stalled clients are cut off: a request head or body that does
//! not arrive in time cannot hold a connection or an in-flight permit.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::{assert_error, sample, wait_for, Stack};

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
async fn stalled_bodies_get_408_and_hold_no_permit() {
    const UPLOADS: usize = 4;
    let stack = Stack::start_with_state(
        |config| config.max_in_flight = UPLOADS,
        |state| state.client_timeouts.body_read = SHORT,
    )
    .await;
    let stalled = b"POST /items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
        Content-Length: 100\r\n\r\n{\"key\":";
    let uploads = futures::future::join_all(
        (0..UPLOADS).map(|_| write_then_read_until_closed(&stack, stalled)),
    );
    let (replies, ()) = tokio::join!(uploads, async {
        let in_flight = || stack.service.state.metrics.in_flight.get();
        wait_for("stalled uploads in flight", SHORT, || async {
            in_flight() >= UPLOADS as i64
        })
        .await;
        // As many trickling uploads as permits: data routes are still
        // served, and body reading has its own bound.
        assert_eq!(stack.get("/items/x").await.0, 404);
        assert_eq!(stack.delete("/items/x").await.0, 404);
        let (status, body) = stack
            .post_json("/items", &json!({"key": "k", "value": 1}))
            .await;
        assert_error(status, &body, 503, "overloaded");
    });

    for (received, after) in replies {
        assert_waited_for_timeout(after);
        let (head, body) = received.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 408"), "head: {head}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "head: {head}"
        );
        let body: Value = serde_json::from_str(body).expect("JSON error body");
        assert_error(408, &body, 408, "request_timeout");
    }
    stack.put_item("k", json!(1)).await;
    let text = stack.metrics_text().await;
    let timed_out = r#"http_requests_total{endpoint="/items",method="POST",status_code="408"}"#;
    assert_eq!(sample(&text, timed_out), Some(UPLOADS as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected() {
    let stack =
        Stack::start_with_state(|_| {}, |state| state.client_timeouts.write_stall = SHORT).await;
    let big = "x".repeat(1000 * 1024);
    stack
        .put_items((0..4).map(|i| (format!("big:{i}"), json!(big))))
        .await;
    // Ten pipelined 4 MB pages into a 4 KiB receive buffer, never read:
    // far more than the kernel buffers can absorb.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(stack.service.addr).await.expect("connect");
    let request = "GET /items?limit=1000 HTTP/1.1\r\nHost: test\r\n\r\n".repeat(10);
    stream.write_all(request.as_bytes()).await.expect("write");
    // Not reading is the behaviour under test, so this wait is deliberate.
    tokio::time::sleep(SHORT * 4).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection stayed open");
    let answered = received
        .windows(12)
        .filter(|w| w == b"HTTP/1.1 200")
        .count();
    assert!(answered < 10, "all {answered} responses were delivered");
    assert_eq!(stack.get("/").await.0, 200, "the service still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_abandoned_mid_body_counts_as_499() {
    const UPLOADS: usize = 5;
    let stack = Stack::start().await;
    let posts = |status: &str| {
        format!(r#"http_requests_total{{endpoint="/items",method="POST",status_code="{status}"}}"#)
    };
    for _ in 0..UPLOADS {
        let mut stream = TcpStream::connect(stack.service.addr)
            .await
            .expect("connect");
        stream
            .write_all(
                b"POST /items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                  Content-Length: 100\r\n\r\n{\"key\":",
            )
            .await
            .expect("write");
        // Closed with 93 body bytes still owed.
    }
    wait_for(
        "abandoned uploads counted as 499",
        Duration::from_secs(5),
        || async { stack.metric(&posts("499")).await >= UPLOADS as f64 },
    )
    .await;
    assert_eq!(stack.metric(&posts("499")).await, UPLOADS as f64);
    assert_eq!(
        stack.metric(&posts("400")).await,
        0.0,
        "a client that left is not a bad request"
    );
}
