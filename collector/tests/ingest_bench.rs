//! Ingest throughput: OTLP protobuf requests (500 spans × 10 attributes each) through the
//! ingest router into SQLite, 8 requests in flight, on a multi-threaded runtime.
//!
//! A measurement, not a timed test (DESIGN.md §6): ignored by default. Run in release:
//!
//! ```sh
//! cargo test --release -p collector --test ingest_bench -- --ignored --nocapture
//! BENCH_ATTRIBUTE_INDEX=none cargo test --release -p collector --test ingest_bench -- --ignored --nocapture
//! BENCH_LATE_ROOT=1 cargo test --release -p collector --test ingest_bench -- --ignored --nocapture
//! ```
//!
//! `BENCH_LATE_ROOT=1`: each trace's root (its earliest span) arrives [`ROOT_LAG`] requests
//! after its other 9 spans, in another group commit, so every trace's start moves earlier once
//! after it was indexed (as in the demo, where the frontend's root span ends, and is exported,
//! last). The default sends each trace whole, in one request.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use collector::{AppState, IngestLimits, SqliteOptions, SqliteStore};
use prost::Message;
use tower::ServiceExt;

const SPANS_PER_REQUEST: usize = 500;
const REQUESTS: usize = 400;
const IN_FLIGHT: usize = 8;
/// With `BENCH_LATE_ROOT=1`: how many requests later a trace's root span is sent.
const ROOT_LAG: usize = 16;

/// Request `n` as `loadgen ingest` sends it (`loadgen::request`), with ids and starts of its own.
fn request(n: usize, late_root: bool) -> Vec<u8> {
    let start_of = |n: usize| 1_763_700_000_000_000_000u64 + n as u64 * 1_000_000;
    let t0 = start_of(n);
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| {
            // 10 spans per trace; with `late_root`, span 0 of each trace (the earliest) is
            // the root of a trace of request `n - ROOT_LAG` instead.
            let (owner, start) = if late_root && i % 10 == 0 && n >= ROOT_LAG {
                (n - ROOT_LAG, start_of(n - ROOT_LAG) + i as u64 * 1000 - 500)
            } else {
                (n, t0 + i as u64 * 1000)
            };
            let trace = (owner * SPANS_PER_REQUEST + i) / 10 + 1;
            let mut trace_id = [0u8; 16];
            trace_id[8..].copy_from_slice(&(trace as u64).to_be_bytes());
            let span_id = ((n * SPANS_PER_REQUEST + i + 1) as u64).to_be_bytes();
            loadgen::span(i, trace_id, span_id, start)
        })
        .collect();
    loadgen::request(n, spans).encode_to_vec()
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn otlp_protobuf_ingest_throughput() {
    let rt = common::bench_runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // `BENCH_ATTRIBUTE_INDEX=none|all|k1,k2` (default: the collector's default, `all`).
        let mut options = SqliteOptions::default();
        if let Ok(which) = std::env::var("BENCH_ATTRIBUTE_INDEX") {
            options.index_attributes = which.parse().unwrap();
        }
        let late_root = std::env::var("BENCH_LATE_ROOT").is_ok_and(|v| v == "1");
        println!(
            "ingest_bench: attribute index {:?}, late root {late_root}",
            options.index_attributes
        );
        let store = SqliteStore::open(dir.path().join("spanline.db"), options).unwrap();
        let state = AppState::new(Arc::new(store), IngestLimits::default());
        let app = collector::ingest_app(state.clone());
        let bodies: Arc<Vec<bytes::Bytes>> =
            Arc::new((0..REQUESTS).map(|n| request(n, late_root).into()).collect());
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..IN_FLIGHT {
            let app = app.clone();
            let bodies = Arc::clone(&bodies);
            let next = Arc::clone(&next);
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= bodies.len() {
                        break;
                    }
                    let req = Request::post("/v1/traces")
                        .header(header::CONTENT_TYPE, "application/x-protobuf")
                        .body(Body::from(bodies[n].clone()))
                        .unwrap();
                    let resp = app.clone().oneshot(req).await.unwrap();
                    assert_eq!(resp.status(), StatusCode::OK);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed();
        let spans = (REQUESTS * SPANS_PER_REQUEST) as f64;
        let stored = state.metrics.snapshot()["spans_stored"].as_u64().unwrap();
        assert_eq!(stored as usize, REQUESTS * SPANS_PER_REQUEST);
        println!(
            "ingest_bench: {} spans ({} requests × {} spans, 10 attributes) in {:.2} s = {:.0} spans/s",
            spans,
            REQUESTS,
            SPANS_PER_REQUEST,
            elapsed.as_secs_f64(),
            spans / elapsed.as_secs_f64()
        );
        let (writer_s, process_s) = cpu_seconds();
        println!(
            "ingest_bench: CPU per span: writer thread {:.2} µs, whole process {:.2} µs \
             (an idle machine: about {:.0} spans/s if the writer thread is the bottleneck)",
            writer_s * 1e6 / spans,
            process_s * 1e6 / spans,
            spans / writer_s
        );
        state.store.shutdown().await;
    });
}

/// CPU seconds (user + system) of the SQLite writer thread and of the whole process, from
/// `/proc` (Linux; zeros elsewhere). Wall-clock figures on a shared machine are noisy; these
/// are not.
fn cpu_seconds() -> (f64, f64) {
    const TICKS_PER_S: f64 = 100.0; // USER_HZ on Linux
    fn ticks(stat: &str) -> f64 {
        // Fields after the `(comm)`: state is field 3; utime, stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        get(11) + get(12)
    }
    let process = std::fs::read_to_string("/proc/self/stat")
        .map(|s| ticks(&s))
        .unwrap_or(0.0);
    let mut writer = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() == "spanline-sqlite" {
                writer += std::fs::read_to_string(t.path().join("stat"))
                    .map(|s| ticks(&s))
                    .unwrap_or(0.0);
            }
        }
    }
    (writer / TICKS_PER_S, process / TICKS_PER_S)
}
