//! Issue 16 item 2: reading a trace at the per-trace span limit costs memory bounded
//! independently of the trace's size. The `collector` binary runs as a child process (its
//! own `/proc/<pid>/status`), stores a 10,000-span trace with realistic attributes, and each
//! read endpoint is measured in a fresh process on that database by the child's peak
//! resident set (`VmHWM`). The bound is a stated memory figure, never a timing; the figures
//! are printed (`cargo nextest run -p collector --test read_memory --no-capture`).

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use common::child::Collector;

const MIB: u64 = 1024 * 1024;
const TRACE_HEX: &str = "7bf92f3577b34da6a3ce929d0e0e4736";
/// Spans stored (the default per-trace limit).
const SPANS: u64 = 10_000;
/// The compose file gives the collector 128 MiB; a read of the largest trace must leave
/// room for ingest next to it. Measured: about 60 MiB for each endpoint (before streaming:
/// 134 MiB for the tree, 225 MiB for the spans, 583 MiB for the Jaeger v1 trace).
const READ_BOUND_MIB: u64 = 80;

/// Starts the binary on `data_dir` (its stderr discarded, so the figures stand alone).
async fn start(data_dir: &std::path::Path) -> Collector {
    Collector::start(data_dir, |cmd| {
        cmd.stderr(Stdio::null());
    })
    .await
}

/// A field of `/proc/<pid>/status` of the collector in bytes (`VmHWM:`, `VmRSS:`).
fn status_bytes(collector: &Collector, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", collector.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// One HTTP/1.1 exchange with a JSON body: (status, body bytes, chunked or not).
async fn exchange(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>, bool) {
    common::exchange(addr, method, path, "application/json", body).await
}

/// A span as an instrumented HTTP service reports it: a dozen attributes, one event; the
/// spans form a tree eight children wide.
fn realistic_span(n: u64) -> serde_json::Value {
    let parent = if n == 1 { 0 } else { (n - 2) / 8 + 1 };
    let start = 1_763_700_000.0 + n as f64 * 1e-5;
    serde_json::json!({
        "trace_id": TRACE_HEX,
        "span_id": format!("{n:016x}"),
        "parent_span_id": (parent > 0).then(|| format!("{parent:016x}")),
        "operation_name": format!("GET /api/items/{{id}} {}", n % 17),
        "start_time": start,
        "end_time": start + 0.002,
        "kind": if n.is_multiple_of(2) { "client" } else { "server" },
        "status": if n.is_multiple_of(97) { "error" } else { "ok" },
        "attributes": {
            "http.request.method": "GET",
            "url.path": format!("/api/items/{n}"),
            "url.scheme": "http",
            "server.address": format!("item-service-{}.internal", n % 5),
            "server.port": 8080,
            "http.response.status_code": 200,
            "network.protocol.version": "1.1",
            "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
                (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "db.system": "postgresql",
            "db.statement": format!("SELECT id, name, price, stock, updated_at FROM items \
                WHERE id = {n} AND tenant_id = $1 ORDER BY updated_at DESC LIMIT 50"),
            "thread.name": format!("tokio-runtime-worker-{}", n % 8),
            "code.function": "items::handlers::get_item"
        },
        "resource_attributes": {
            "service.name": format!("service-{}", n % 6),
            "service.version": "1.4.2",
            "host.name": format!("node-{}", n % 3),
            "telemetry.sdk.language": "rust"
        },
        "events": [{"name": "cache.lookup", "timestamp": start + 0.001,
                    "attributes": {"cache.hit": n.is_multiple_of(3), "cache.key": format!("item:{n}")}}]
    })
}

#[test]
fn reading_a_trace_at_the_span_limit_stays_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let collector = start(dir.path()).await;
        for batch in (1..=SPANS).collect::<Vec<_>>().chunks(1000) {
            let spans: Vec<_> = batch.iter().map(|&n| realistic_span(n)).collect();
            let body = serde_json::to_vec(&spans).unwrap();
            let (status, answer, _) = exchange(collector.ingest, "POST", "/v1/traces", &body).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        }
        eprintln!(
            "after storing {SPANS} spans: RSS {} MiB",
            status_bytes(&collector, "VmRSS:") / MIB
        );
        drop(collector);
        // Each read in a fresh process on the same database, so memory one read freed but
        // kept resident does not hide the next one's.
        let mut worst = 0;
        for path in [
            format!("/v1/traces/{TRACE_HEX}"),
            format!("/v1/traces/{TRACE_HEX}/tree"),
            format!("/v1/traces/{TRACE_HEX}/tree?format=text"),
            format!("/api/traces/{TRACE_HEX}"),
            format!("/api/v3/traces/{TRACE_HEX}"),
        ] {
            let collector = start(dir.path()).await;
            let before = status_bytes(&collector, "VmRSS:");
            let (status, body, chunked) = exchange(collector.query, "GET", &path, b"").await;
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
            let peak = status_bytes(&collector, "VmHWM:");
            if !path.ends_with("format=text") {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(v.is_object(), "{path}: a whole JSON answer");
            }
            eprintln!(
                "{path}: answer {:.1} MiB{}, RSS before {:.1} MiB, peak {:.1} MiB",
                body.len() as f64 / MIB as f64,
                if chunked { " (chunked)" } else { "" },
                before as f64 / MIB as f64,
                peak as f64 / MIB as f64
            );
            worst = worst.max(peak);
        }
        assert!(
            worst < READ_BOUND_MIB * MIB,
            "peak RSS {} MiB while reading a {SPANS}-span trace (bound {READ_BOUND_MIB} MiB)",
            worst / MIB
        );
    });
}
