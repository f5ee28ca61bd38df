//! Query latency at scale (DESIGN.md §6): fills a SQLite store with demo-shaped traces
//! (10 spans, 4 services, the demo's attributes) straight through [`SqliteStore`], then times
//! queries through the query router: trace by id, search by service, by minimum duration and
//! by attribute, the stats and the dependency graph of the newest 10 s; prints p50 / p99 / max
//! per query.
//!
//! A measurement, not a timed test: ignored by default. `scripts/bench-query.sh` runs it:
//!
//! ```sh
//! BENCH_SPANS=1000000 BENCH_DB=/tmp/q1m.db \
//!   cargo test --release -p collector --test query_bench -- --ignored --nocapture
//! ```
//!
//! The database is kept and reused: a second run with the same `BENCH_DB` only tops it up to
//! `BENCH_SPANS`.

// Test helpers panic on failure by design (clippy only exempts `#[test]` bodies).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use collector::model::{
    AttrValue, KeyValue, Resource, Scope, Span, SpanId, SpanKind, StatusCode as SpanStatus, TraceId,
};
use collector::{AppState, IngestLimits, SpanStore, SqliteOptions, SqliteStore};
use tower::ServiceExt;

const SPANS_PER_TRACE: u64 = 10;
/// Traces per `write_spans` call: 50,000 spans, one full writer group
/// (`collector::store::sqlite::MAX_GROUP_SPANS`).
const TRACES_PER_WRITE: u64 = 5_000;
/// Trace starts are 10 ms apart, ending now.
const TRACE_GAP_NS: u64 = 10_000_000;
const USERS: u64 = 10_000;

fn s(v: &str) -> AttrValue {
    AttrValue::String(v.to_owned().into())
}

/// Trace `n`'s id: time-ordered like AWS X-Ray or UUIDv7 ids (the first 8 bytes grow with
/// the trace's start), the last 8 bytes random-looking. Ids in start order turn the inserts
/// into every B-tree keyed by trace id into appends, which is what makes generating 10M
/// spans feasible here; with fully random W3C ids those inserts land all over the trees and
/// generation through `SqliteStore` ran at ~5.6k spans/s at 1M spans.
///
/// `BENCH_ID_ORDER=random`: W3C-style ids that look random from the first byte (the last 8
/// bytes are `n`), for measuring that case.
fn ids(n: u64) -> TraceId {
    static RANDOM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let random =
        *RANDOM.get_or_init(|| std::env::var("BENCH_ID_ORDER").is_ok_and(|v| v == "random"));
    let hash = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
    let mut t = [0u8; 16];
    if random {
        t[..8].copy_from_slice(&hash);
        t[8..].copy_from_slice(&n.to_be_bytes());
    } else {
        t[..8].copy_from_slice(&n.to_be_bytes());
        t[8..].copy_from_slice(&hash);
    }
    TraceId(t)
}

/// Trace `n` of the demo's shape (frontend -> user, frontend -> order -> payment), 2% failing.
fn demo_trace(n: u64, t0: u64, resources: &[Arc<Resource>; 4], scope: &Arc<Scope>) -> Vec<Span> {
    use SpanKind::{Client, Internal, Server};
    let trace_id = ids(n);
    let start = t0 + n * TRACE_GAP_NS;
    let mut rng = fastrand::Rng::with_seed(n);
    let fail = rng.u32(..100) < 2;
    // Payment time: mostly 20-80 ms, a long tail up to 2 s.
    let pay_ms = if rng.u32(..100) < 3 {
        rng.f64() * 2000.0
    } else {
        20.0 + rng.f64() * 60.0
    };
    let user = format!("u{}", rng.u64(..USERS));
    let order = format!("ord-{n:x}");
    let ms = |v: f64| (v * 1e6) as u64;
    // (span no, parent, service index, name, kind, offset ms, duration ms)
    let shape: [(u8, u8, usize, &str, SpanKind, f64, f64); 10] = [
        (1, 0, 0, "POST /orders", Server, 0.0, 100.0 + pay_ms),
        (2, 1, 0, "GET /users/{id}", Client, 1.0, 10.0),
        (3, 2, 1, "GET /users/{id}", Server, 2.0, 8.0),
        (4, 3, 1, "SELECT users", Client, 3.0, 5.0),
        (5, 1, 0, "POST /orders", Client, 12.0, 80.0 + pay_ms),
        (6, 5, 2, "POST /orders", Server, 13.0, 78.0 + pay_ms),
        (7, 6, 2, "INSERT orders", Client, 14.0, 5.0),
        (8, 6, 2, "POST /payments", Client, 20.0, 60.0 + pay_ms),
        (9, 8, 3, "POST /payments", Server, 21.0, 58.0 + pay_ms),
        (10, 9, 3, "charge card", Internal, 22.0, 50.0 + pay_ms),
    ];
    let services = ["frontend", "user", "order", "payment"];
    shape
        .iter()
        .map(|&(no, parent, svc, name, kind, off, dur)| {
            let mut span_id = [0u8; 8];
            // 7 bytes that differ between traces in both id orders.
            span_id[..7].copy_from_slice(&trace_id.0[9..]);
            span_id[7] = no;
            let mut span = Span::new(trace_id, SpanId(span_id), name);
            if parent > 0 {
                let mut p = span_id;
                p[7] = parent;
                span.parent_span_id = Some(SpanId(p));
            }
            span.kind = kind;
            span.start_time_unix_nano = start + ms(off);
            span.end_time_unix_nano = start + ms(off + dur);
            span.service_name = services[svc].into();
            span.resource = Arc::clone(&resources[svc]);
            span.scope = Arc::clone(scope);
            span.flags = 1;
            let failing = fail && matches!(no, 1 | 5 | 6 | 8 | 9 | 10);
            let mut attrs = Vec::new();
            match kind {
                Server | Client if name.starts_with(['G', 'P']) => {
                    let (method, route) = name.split_once(' ').unwrap_or((name, ""));
                    attrs.push(KeyValue::new("http.request.method", s(method)));
                    attrs.push(KeyValue::new("http.route", s(route)));
                    attrs.push(KeyValue::new("url.path", s(&route.replace("{id}", &user))));
                    let code = if failing { 402 } else { 200 };
                    attrs.push(KeyValue::new(
                        "http.response.status_code",
                        AttrValue::Int(code),
                    ));
                    attrs.push(KeyValue::new("server.address", s(services[svc])));
                    attrs.push(KeyValue::new("server.port", AttrValue::Int(8080)));
                }
                Client => {
                    attrs.push(KeyValue::new("db.system.name", s("postgresql")));
                    let (op, table) = name.split_once(' ').unwrap_or((name, ""));
                    attrs.push(KeyValue::new("db.operation.name", s(op)));
                    attrs.push(KeyValue::new("db.collection.name", s(table)));
                    attrs.push(KeyValue::new("server.address", s("db")));
                }
                _ => {
                    attrs.push(KeyValue::new("peer.service", s("card-network")));
                }
            }
            match services[svc] {
                "frontend" if no == 1 => {
                    attrs.push(KeyValue::new("app.user.id", s(&user)));
                    attrs.push(KeyValue::new("app.order.product", s("Laptop")));
                    attrs.push(KeyValue::new("app.order.quantity", AttrValue::Int(1)));
                }
                "user" if no == 3 => attrs.push(KeyValue::new("app.user.id", s(&user))),
                "order" if no == 6 => {
                    attrs.push(KeyValue::new("app.order.id", s(&order)));
                    attrs.push(KeyValue::new("app.user.id", s(&user)));
                }
                "payment" => {
                    attrs.push(KeyValue::new("app.order.id", s(&order)));
                    attrs.push(KeyValue::new(
                        "app.payment.amount",
                        AttrValue::Double(1299.0),
                    ));
                    if failing {
                        attrs.push(KeyValue::new("app.payment.declined", AttrValue::Bool(true)));
                    }
                }
                _ => {}
            }
            span.attributes = attrs;
            if failing {
                span.status.code = SpanStatus::Error;
                span.status.message = "payment declined".to_owned();
            }
            span
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn query_latency_at_scale() {
    let rt = common::bench_runtime();
    rt.block_on(async {
        let target_spans: u64 = std::env::var("BENCH_SPANS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let samples: usize = std::env::var("BENCH_SAMPLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let dir = tempfile::tempdir().unwrap();
        let path = std::env::var("BENCH_DB")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| dir.path().join("spanline.db"));
        let target_traces = target_spans / SPANS_PER_TRACE;
        // Traces are numbered 0..target_traces; the newest starts about now.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        // Fixed per database: read back from a side file so a top-up continues the series.
        let t0_file = path.with_extension("t0");
        let t0: u64 = std::fs::read_to_string(&t0_file)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| {
                let t0 = now - target_traces * TRACE_GAP_NS;
                std::fs::write(&t0_file, t0.to_string()).unwrap();
                t0
            });
        let options = SqliteOptions {
            quick_check_max_bytes: 0,
            ..Default::default()
        };
        let store = Arc::new(SqliteStore::open(&path, options).unwrap());
        let have = {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.query_row("SELECT count(*) FROM traces", [], |r| r.get::<_, i64>(0))
                .unwrap() as u64
        };
        let resources: [Arc<Resource>; 4] = ["frontend", "user", "order", "payment"].map(|svc| {
            Arc::new(Resource {
                attributes: vec![
                    KeyValue::new("service.name", s(svc)),
                    KeyValue::new("service.version", s("0.1.0")),
                    KeyValue::new("host.name", s("bench-host")),
                ],
            })
        });
        let scope = Arc::new(Scope {
            name: "tracekit".to_owned(),
            version: "0.1.0".to_owned(),
        });
        if have < target_traces {
            let started = Instant::now();
            let mut next = have;
            let mut inflight = Vec::new();
            while next < target_traces {
                let end = (next + TRACES_PER_WRITE).min(target_traces);
                let spans: Vec<Span> = (next..end)
                    .flat_map(|n| demo_trace(n, t0, &resources, &scope))
                    .collect();
                let store = Arc::clone(&store);
                inflight.push(tokio::spawn(async move {
                    store.write_spans(spans).await.unwrap()
                }));
                if inflight.len() >= 2 {
                    inflight.remove(0).await.unwrap();
                }
                next = end;
                if next.is_multiple_of(100_000) {
                    eprintln!(
                        "query_bench: {} / {} traces ({:.0} spans/s)",
                        next,
                        target_traces,
                        ((next - have) * SPANS_PER_TRACE) as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
            for t in inflight {
                t.await.unwrap();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "query_bench: generated {} spans in {:.1} s ({:.0} spans/s through SqliteStore)",
                (target_traces - have) * SPANS_PER_TRACE,
                secs,
                ((target_traces - have) * SPANS_PER_TRACE) as f64 / secs
            );
        }
        let db_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "query_bench: {} spans, {} traces, database {:.0} MiB",
            target_traces * SPANS_PER_TRACE,
            target_traces,
            db_bytes as f64 / 1048576.0
        );
        let state = AppState::new(store.clone(), IngestLimits::default());
        let app = collector::query_app(state);
        let mut rng = fastrand::Rng::with_seed(42);
        type Gen<'a> = Box<dyn FnMut(&mut fastrand::Rng) -> String + 'a>;
        // The newest trace's start, unix seconds: the end of the stats windows.
        let newest_s = (t0 + target_traces * TRACE_GAP_NS) / 1_000_000_000;
        let queries: Vec<(&str, Gen<'_>)> = vec![
            (
                "trace by id (GET /v1/traces/{id})",
                Box::new(|r: &mut fastrand::Rng| {
                    let id = ids(r.u64(..target_traces));
                    let hex: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
                    format!("/v1/traces/{hex}")
                }),
            ),
            (
                "search by service (limit 20)",
                Box::new(|r: &mut fastrand::Rng| {
                    let svc = ["frontend", "user", "order", "payment"][r.usize(..4)];
                    format!("/v1/traces?service={svc}&limit=20")
                }),
            ),
            (
                "search by service + operation (limit 20)",
                Box::new(|_r: &mut fastrand::Rng| {
                    "/v1/traces?service=payment&operation=charge%20card&limit=20".to_owned()
                }),
            ),
            (
                "search by operation alone (2 services, limit 20)",
                Box::new(|_r: &mut fastrand::Rng| {
                    "/v1/traces?operation=POST%20%2Forders&limit=20".to_owned()
                }),
            ),
            (
                "search by service + operation never stored together (reads every bucket)",
                Box::new(|_r: &mut fastrand::Rng| {
                    "/v1/traces?service=user&operation=charge%20card&limit=20".to_owned()
                }),
            ),
            (
                "search by min duration 1s (slowest first, limit 20)",
                Box::new(|_r: &mut fastrand::Rng| "/v1/traces?min_duration=1s&limit=20".to_owned()),
            ),
            (
                "search by service + min duration 1s (newest first, limit 20)",
                Box::new(|r: &mut fastrand::Rng| {
                    let svc = ["frontend", "user", "order", "payment"][r.usize(..4)];
                    format!("/v1/traces?service={svc}&min_duration=1s&sort=newest&limit=20")
                }),
            ),
            (
                "search by attribute app.user.id (selective, limit 20)",
                Box::new(|r: &mut fastrand::Rng| {
                    format!("/v1/traces?attr.app.user.id=u{}&limit=20", r.u64(..USERS))
                }),
            ),
            (
                "search by attribute http.response.status_code=402 (2%, limit 20)",
                Box::new(|_r: &mut fastrand::Rng| {
                    "/v1/traces?attr.http.response.status_code=402&limit=20".to_owned()
                }),
            ),
            (
                "search by service + attribute app.order.id (one trace)",
                Box::new(|r: &mut fastrand::Rng| {
                    format!(
                        "/v1/traces?service=payment&attr.app.order.id=ord-{:x}&limit=20",
                        r.u64(..target_traces)
                    )
                }),
            ),
            (
                "stats, the newest 10 s (~1,000 traces)",
                Box::new(move |_r: &mut fastrand::Rng| {
                    format!("/v1/stats?window=10s&end_time={newest_s}")
                }),
            ),
            (
                "stats of one service, the newest 10 s",
                Box::new(move |_r: &mut fastrand::Rng| {
                    format!("/v1/stats?window=10s&end_time={newest_s}&service=payment")
                }),
            ),
            (
                "dependencies, the newest 10 s",
                Box::new(move |_r: &mut fastrand::Rng| {
                    format!("/v1/dependencies?lookback=10s&end_time={newest_s}")
                }),
            ),
        ];
        println!("| query | p50 ms | p99 ms | max ms | results (last) |");
        println!("|---|---|---|---|---|");
        for (name, mut make) in queries {
            let mut times = Vec::with_capacity(samples);
            let mut last_len = 0;
            for i in 0..samples + 5 {
                let uri = make(&mut rng);
                let t = Instant::now();
                let resp = app
                    .clone()
                    .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                let status = resp.status();
                let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let elapsed = t.elapsed().as_secs_f64() * 1e3;
                assert_eq!(status, StatusCode::OK, "{uri}: {body:?}");
                if i >= 5 {
                    times.push(elapsed);
                }
                last_len = body.len();
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {name} | {:.2} | {:.2} | {:.2} | {} bytes |",
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                times[times.len() - 1],
                last_len
            );
        }
        store.shutdown().await;
    });
}
