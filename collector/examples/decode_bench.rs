//! The OTLP/protobuf decode alone, for instruction counts: `loadgen`'s request (500 spans of
//! 10 attributes, as `loadgen ingest` sends it) decoded N times (default 200) by
//! the collector's decoder (ids checked, strings converted, spans sanitized), one thread.
//!
//! ```sh
//! cargo build --release -p collector --example decode_bench
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out target/release/examples/decode_bench 200
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep otlp_proto::decode
//! ```
//!
//! Prints the spans decoded and the wall time per span (noisy on a shared machine: compare
//! instruction counts).

use prost::Message;

const SPANS_PER_REQUEST: usize = 500;

/// Request `n` (`loadgen::numbered_request`), encoded.
fn request(n: usize) -> Vec<u8> {
    loadgen::numbered_request(n, SPANS_PER_REQUEST).encode_to_vec()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let bodies: Vec<Vec<u8>> = (0..8).map(request).collect();
    let started = std::time::Instant::now();
    let mut spans = 0usize;
    for round in 0..rounds {
        spans += collector::format::fuzzing::otlp_proto(&bodies[round % bodies.len()])
            .unwrap_or_default();
    }
    let elapsed = started.elapsed();
    println!(
        "decoded {spans} spans in {rounds} requests: {:.3} µs/span (wall)",
        elapsed.as_secs_f64() * 1e6 / spans.max(1) as f64
    );
}
