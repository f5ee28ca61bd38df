//! Hostile clients on real sockets (issue 16): what one client can do to everyone else.
//! Memory is measured from `/proc/self/status` (each test runs in its own process under
//! nextest); bounds are generous and never timings.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use collector::{AppState, IngestLimits, MemoryStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1024 * 1024;

/// A collector served on 127.0.0.1 ports; stops when dropped.
struct Running {
    ingest: SocketAddr,
    query: SocketAddr,
    state: AppState,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(state: AppState) -> Running {
    let ingest = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let query = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ingest_addr, query_addr) = (ingest.local_addr().unwrap(), query.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(collector::serve(state.clone(), ingest, query, async move {
        let _ = stopped.await;
    }));
    Running {
        ingest: ingest_addr,
        query: query_addr,
        state,
        _stop: stop,
    }
}

fn memory_state(limits: IngestLimits) -> AppState {
    AppState::new(Arc::new(MemoryStore::new()), limits)
}

/// Sends a raw request head (and `body`), returns the whole answer as text.
async fn raw_exchange(addr: SocketAddr, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the collector answers")
        .unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"))
}

/// `VmHWM` (peak resident set) or `VmRSS` of this process, bytes.
fn proc_status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Issue 16 item 3: twelve 60 KiB gzip bodies that each inflate to 60 MiB, at once. Past
/// the in-flight budget they get 503 with `Retry-After`, and the process stays far below the
/// ~750 MB they took without a budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inflating_bodies_stay_within_the_inflight_budget() {
    let limits = IngestLimits {
        max_body_bytes: 64 * MIB,
        max_inflight_bytes: 16 * MIB,
        ..IngestLimits::default()
    };
    let running = start(memory_state(limits)).await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; MIB];
    for _ in 0..60 {
        encoder.write_all(&zeros).unwrap();
    }
    let body = Arc::new(encoder.finish().unwrap());
    assert!(body.len() < 128 * 1024, "{}", body.len());
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let before = proc_status_bytes("VmRSS:");
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (head, body) = (head.clone(), Arc::clone(&body));
            tokio::spawn(async move { raw_exchange(running.ingest, &head, &body).await })
        })
        .collect();
    let mut busy = 0;
    for client in clients {
        let answer = client.await.unwrap();
        match status_of(&answer) {
            // Spaces only: "empty JSON body".
            400 => {}
            503 => {
                assert!(answer.contains("retry-after: 1"), "{answer}");
                busy += 1;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    let peak = proc_status_bytes("VmHWM:");
    eprintln!(
        "RSS before {} MiB, peak {} MiB, {busy} of 12 refused with 503",
        before / MIB,
        peak / MIB
    );
    assert!(busy > 0, "some requests found the budget spent");
    assert!(
        peak.saturating_sub(before) < 320 * MIB,
        "peak RSS grew by {} MiB",
        (peak - before) / MIB
    );
    assert_eq!(running.state.inflight.used_bytes(), 0, "budget given back");
    assert!(running.state.inflight.refused() >= busy);
}

/// Issue 16 item 3: a declared `Content-Length` over the body limit is refused with 413
/// before any of the body is sent.
#[tokio::test]
async fn declared_length_over_the_limit_is_refused_at_once() {
    let limits = IngestLimits {
        max_body_bytes: MIB,
        ..IngestLimits::default()
    };
    let running = start(memory_state(limits)).await;
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        1024 * MIB
    );
    let mut stream = TcpStream::connect(running.ingest).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert_eq!(status_of(&answer), 413, "{answer}");
    let _ = running.query;
}
