//! Real sockets: `serve` on 127.0.0.1:0, and the `collector` binary itself (config errors,
//! corrupt database, SIGTERM).

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use common::free_port;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http;

use collector::{AppState, IngestLimits, SpanStore, SqliteOptions, SqliteStore};
use tokio::net::TcpListener;

const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn simple_span_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!([{
        "trace_id": TRACE_HEX, "span_id": "00f067aa0ba902b7", "operation_name": "POST /orders",
        "start_time": 1763700000.0, "end_time": 1763700000.5, "kind": "server",
        "resource_attributes": {"service.name": "frontend"}
    }]))
    .unwrap()
}

#[tokio::test]
async fn serve_on_real_sockets_then_shut_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spanline.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let state = AppState::new(Arc::new(store), IngestLimits::default());
    let ingest = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let query = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ingest_addr, query_addr) = (ingest.local_addr().unwrap(), query.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(collector::serve(state, ingest, query, async move {
        let _ = stopped.await;
    }));

    collector::healthcheck::check(query_addr, Duration::from_secs(5))
        .await
        .unwrap();
    let (status, body) = http(
        ingest_addr,
        "POST",
        "/v1/traces",
        "application/json",
        &simple_span_body(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    let (status, body) = http(
        query_addr,
        "GET",
        &format!("/v1/traces/{TRACE_HEX}/tree?format=text"),
        "text/plain",
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("frontend POST /orders [server] 500.0 ms"),
        "{body}"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        collector::healthcheck::check(query_addr, Duration::from_secs(1))
            .await
            .is_err()
    );

    // The acknowledged span is in the file after a clean stop.
    let reopened = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let trace = reopened
        .get_trace(collector::model::TraceId::from_hex(TRACE_HEX).unwrap())
        .await
        .unwrap();
    assert_eq!(trace.unwrap().spans.len(), 1);
}

/// The binary on `data_dir` with its output kept ([`common::child::command`]).
fn collector_cmd(data_dir: &std::path::Path) -> Command {
    let mut cmd = common::child::command(data_dir);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

#[test]
fn bad_config_exits_64_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = collector_cmd(dir.path())
        .env("COLLECTOR_INGEST_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ingest-addr") || stderr.contains("INGEST"),
        "{stderr}"
    );
}

#[test]
fn corrupt_database_exits_74_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spanline.db");
    let garbage = vec![0x5au8; 16384];
    std::fs::write(&db, &garbage).unwrap();
    let out = collector_cmd(dir.path())
        .env(
            "COLLECTOR_INGEST_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("COLLECTOR_QUERY_ADDR", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(74));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupt") && stderr.contains("refusing to start"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
}

#[test]
fn sigterm_stops_the_binary_with_exit_0_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = format!("127.0.0.1:{}", free_port());
    let query = format!("127.0.0.1:{}", free_port());
    let mut child = collector_cmd(dir.path())
        .env("COLLECTOR_INGEST_ADDR", &ingest)
        .env("COLLECTOR_QUERY_ADDR", &query)
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ingest_addr: SocketAddr = ingest.parse().unwrap();
    let query_addr: SocketAddr = query.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Poll readiness with the binary's own healthcheck mode.
    loop {
        let probe = collector_cmd(dir.path())
            .env("COLLECTOR_QUERY_ADDR", &query)
            .arg("--healthcheck")
            .status()
            .unwrap();
        if probe.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "collector not healthy within 20 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "collector exited early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = runtime.block_on(http(
        ingest_addr,
        "POST",
        "/v1/traces",
        "application/json",
        &simple_span_body(),
    ));
    assert_eq!(status, 200);

    common::child::sigterm(&child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "collector did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
    let probe = collector_cmd(dir.path())
        .env("COLLECTOR_QUERY_ADDR", &query)
        .arg("--healthcheck")
        .output()
        .unwrap();
    assert_eq!(
        probe.status.code(),
        Some(1),
        "healthcheck fails once stopped"
    );
    let _ = query_addr;

    let store =
        SqliteStore::open(dir.path().join("spanline.db"), SqliteOptions::default()).unwrap();
    let trace = runtime
        .block_on(store.get_trace(collector::model::TraceId::from_hex(TRACE_HEX).unwrap()))
        .unwrap();
    assert_eq!(trace.unwrap().spans.len(), 1);
}
