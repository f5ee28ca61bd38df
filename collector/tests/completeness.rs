//! Whole traces, known to be whole, over real sockets: `?wait=` waits for the span a callee
//! announced through `traceresponse`, says what is missing when it gives up, and
//! `GET /v1/tail` streams each finished trace once, without letting a stuck reader slow
//! ingest.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use collector::{AppState, IngestLimits, MemoryStore};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ROOT: &str = "00f067aa0ba902b7";
const CLIENT: &str = "00f067aa0ba902b8";
const SERVER: &str = "00f067aa0ba902b9";

use common::Running as Collector;

/// A memory-backed collector settling traces after `settle`, serving once healthy.
async fn start(settle: Duration) -> Collector {
    let state = AppState::new(Arc::new(MemoryStore::new()), IngestLimits::default())
        .with_settle(settle, false);
    let c = common::serve_on_loopback(state).await;
    collector::healthcheck::check(c.query, Duration::from_secs(5))
        .await
        .unwrap();
    c
}

/// `GET path` on `addr`: the status and the body text.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path, b"").await
}

/// [`common::http`] with a JSON content type.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    common::http(addr, method, path, "application/json", body).await
}

/// The frontend's half of the trace: its SERVER root and its CLIENT span, answered with a
/// `traceresponse` that announces the order's SERVER span (not yet sent).
async fn post_frontend_half(c: &Collector) {
    post(
        c,
        json!([
            span(TRACE, ROOT, None, "frontend", "server"),
            answered_client(TRACE, SERVER)
        ]),
    )
    .await;
}

/// The order's SERVER span the frontend's CLIENT span announced: the trace is whole.
async fn post_order_server(c: &Collector) {
    post(
        c,
        json!([span(TRACE, SERVER, Some(CLIENT), "order", "server")]),
    )
    .await;
}

fn span(trace: &str, id: &str, parent: Option<&str>, service: &str, kind: &str) -> Value {
    json!({
        "trace_id": trace, "span_id": id, "parent_span_id": parent,
        "operation_name": "POST /orders", "start_time": 1763700000.0, "end_time": 1763700000.5,
        "kind": kind, "resource_attributes": {"service.name": service},
        "attributes": {"peer.service": "order"}
    })
}

/// The frontend's CLIENT span, answered with `traceresponse` naming the order's span.
fn answered_client(trace: &str, callee: &str) -> Value {
    let mut s = span(trace, CLIENT, Some(ROOT), "frontend", "client");
    s["attributes"]["http.response.header.traceresponse"] =
        json!([format!("00-{trace}-{callee}-01")]);
    s
}

async fn post(c: &Collector, spans: Value) {
    let (status, body) = http(
        c.ingest,
        "POST",
        "/v1/traces",
        &serde_json::to_vec(&spans).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn tree(c: &Collector, query: &str) -> Value {
    let (status, body) = get(c.query, &format!("/v1/traces/{TRACE}/tree?{query}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn wait_holds_until_the_announced_server_span_arrives() {
    let c = start(Duration::from_secs(10)).await;
    post_frontend_half(&c).await;

    let t = tree(&c, "wait=0").await;
    assert_eq!(t["complete"], false, "{t}");
    assert_eq!(
        t["missing"],
        json!([{"parent_span_id": CLIENT, "span_id": SERVER, "service": "order"}])
    );
    let warnings = t["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "frontend POST /orders [client] is waiting for its server span {SERVER} (order)"
        )),
        "{warnings}"
    );
    let (_, text) = get(
        c.query,
        &format!("/v1/traces/{TRACE}/tree?format=text&wait=0.2"),
    )
    .await;
    assert!(text.contains("(incomplete)"), "{text}");
    assert!(text.contains("is waiting for its server span"), "{text}");

    let query = c.query;
    let waiting =
        tokio::spawn(async move { get(query, &format!("/v1/traces/{TRACE}/tree?wait=15")).await });
    post_order_server(&c).await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200);
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["complete"], true, "{t}");
    assert_eq!(t["span_count"], 3);
    assert_eq!(t["missing"], json!([]));
}

#[tokio::test]
async fn an_untraced_callee_expects_nothing_and_a_missing_trace_answers_text() {
    let c = start(Duration::from_secs(10)).await;
    let plain_client = span(TRACE, CLIENT, Some(ROOT), "frontend", "client");
    post(
        &c,
        json!([span(TRACE, ROOT, None, "frontend", "server"), plain_client]),
    )
    .await;
    let t = tree(&c, "wait=5").await;
    assert_eq!(t["complete"], true, "{t}");

    let (status, text) = get(
        c.query,
        "/v1/traces/0123456789abcdef0123456789abcdef/tree?format=text",
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        text.starts_with("trace 0123456789abcdef0123456789abcdef not found"),
        "{text}"
    );

    let (status, latest) = get(c.query, "/v1/traces/latest/tree?format=text").await;
    assert_eq!(status, 200);
    assert!(latest.starts_with(&format!("trace {TRACE}")), "{latest}");
}

/// Opens `GET /v1/tail?<query>` and returns the socket, past the response head.
async fn subscribe(c: &Collector, query: &str) -> TcpStream {
    let mut stream = TcpStream::connect(c.query).await.unwrap();
    let head = format!(
        "GET /v1/tail?{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        c.query
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads from `stream` until `needle` has been seen (or fails at the deadline).
async fn read_until(stream: &mut TcpStream, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 64 * 1024];
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {needle:?} in the stream: {seen}");
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .unwrap_or(Ok(0))
            .unwrap();
        assert!(n > 0 || !left.is_zero(), "stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// Waits until the publisher has a subscriber (the request is served asynchronously).
async fn until_subscribed(c: &Collector, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.state.tail.subscribers() < count {
        assert!(
            Instant::now() < deadline,
            "the tail subscriber never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn tail_streams_each_finished_trace_once_in_text_and_ndjson() {
    let c = start(Duration::from_millis(500)).await;
    let mut text = subscribe(&c, "format=text").await;
    let mut ndjson = subscribe(&c, "service=order").await;
    until_subscribed(&c, 2).await;

    // Complete in two posts: published once, when the server span arrives.
    post_frontend_half(&c).await;
    post_order_server(&c).await;
    // A trace without the order service: filtered out of the NDJSON stream; and an orphan
    // that never completes: published after the settle time, incomplete.
    let other = "0af7651916cd43dd8448eb211c80319c";
    post(&c, json!([span(other, ROOT, None, "frontend", "server")])).await;
    let orphan = "1af7651916cd43dd8448eb211c80319c";
    post(
        &c,
        json!([span(orphan, SERVER, Some(CLIENT), "order", "server")]),
    )
    .await;

    let mut seen = String::new();
    read_until(&mut text, &mut seen, &format!("trace {orphan}")).await;
    assert_eq!(
        seen.matches(&format!("trace {TRACE}  3 spans")).count(),
        1,
        "{seen}"
    );
    assert!(seen.contains(&format!("trace {other}")), "{seen}");
    let orphan_tree = &seen[seen.find(&format!("trace {orphan}")).unwrap()..];
    assert!(orphan_tree.contains("(incomplete)"), "{orphan_tree}");

    let mut lines = String::new();
    read_until(
        &mut ndjson,
        &mut lines,
        &format!("\"trace_id\":\"{orphan}\""),
    )
    .await;
    let body = &lines[lines.find("\r\n\r\n").unwrap() + 4..];
    let trees: Vec<Value> = body
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = trees
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![TRACE, orphan], "{body}");
    assert_eq!(trees[0]["complete"], true);
    assert_eq!(trees[1]["complete"], false);
    assert_eq!(trees[1]["missing"][0]["span_id"], CLIENT);
}

#[tokio::test]
async fn a_reader_that_never_reads_loses_traces_and_ingest_goes_on() {
    let c = start(Duration::from_secs(10)).await;
    let mut stuck = subscribe(&c, "").await;
    until_subscribed(&c, 1).await;
    // Trees of ~8 KiB each: far more than the socket buffers and the ring hold.
    let padding = "x".repeat(8 * 1024);
    for batch in 0..40u32 {
        let spans: Vec<Value> = (0..50u32)
            .map(|i| {
                let mut s = span(
                    &format!("{:08x}{:024x}", batch + 1, i + 1),
                    ROOT,
                    None,
                    "frontend",
                    "server",
                );
                s["attributes"]["app.padding"] = json!(padding);
                s
            })
            .collect();
        post(&c, Value::Array(spans)).await;
    }
    // The loss is noticed when the reader reads again: it is told, and it is counted.
    let mut seen = String::new();
    read_until(&mut stuck, &mut seen, "{\"lost\": ").await;
    assert!(
        c.state
            .metrics
            .tail_traces_lost
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}
