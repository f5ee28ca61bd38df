//! The request threads' work on OTLP/protobuf ingest without HTTP and without the SQLite
//! writer, for instruction counts: `loadgen`'s requests (500 spans of 10 attributes) decoded,
//! their completeness shapes and consumer groups taken, the SQLite batch prepared (detail and
//! origin blobs, the attribute plan), the shapes given to a [`Settler`] swept every 200 ms
//! (the tail publisher's period) on a simulated clock, then the spans dropped (the work of
//! the `spanline-free` thread). One thread.
//!
//! ```sh
//! cargo build --release -p collector --example request_bench
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!   target/release/examples/request_bench 400 8000
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep -E 'request_bench::(request|drop_spans)'
//! ```
//!
//! Arguments: requests (default 400) and the simulated rate in spans per second (default
//! 8,000: the settler's sweep then reads as many pending traces per span as at any rate,
//! `settle` x sweeps per second / spans per trace, once the first 10 s have passed).

use std::time::{Duration, Instant};

use collector::assemble::completeness::{ConsumerGroups, Shape};
use collector::assemble::settle::{SettleLimits, Settler};
use collector::model::Span;
use collector::store::SqliteOptions;
use prost::Message;

const SPANS_PER_REQUEST: usize = 500;
/// The tail publisher's sweep period (`query/tail.rs`).
const SWEEP_EVERY: Duration = Duration::from_millis(200);

/// Request `n` (`loadgen::numbered_request`), encoded.
fn body(n: usize) -> Vec<u8> {
    loadgen::numbered_request(n, SPANS_PER_REQUEST).encode_to_vec()
}

/// One request's work before the writer, as `ingest::commit` and the store's write do it.
#[inline(never)]
fn request(body: &[u8], options: &SqliteOptions, settler: &Settler, now: Instant) -> Vec<Span> {
    let spans = collector::format::fuzzing::otlp_proto_spans(body);
    let shapes: Vec<_> = spans.iter().map(|s| (s.trace_id, Shape::of(s))).collect();
    let consumers = ConsumerGroups::seen_in(&spans);
    let spans = collector::store::prepare_for_bench(spans, options);
    ConsumerGroups::global().record(consumers, now);
    settler.observe(shapes, now);
    spans
}

#[inline(never)]
fn drop_spans(spans: Vec<Span>) {
    drop(spans);
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let requests = args.next().flatten().unwrap_or(400) as usize;
    let rate = args.next().flatten().unwrap_or(8_000).max(1);
    // Distinct trace ids per request (the settler follows each trace), 8 bodies' worth of
    // templates would repeat them: one body per request.
    let bodies: Vec<Vec<u8>> = (0..requests).map(body).collect();
    let options = SqliteOptions::default();
    let settler = Settler::new(SettleLimits::default());
    let start = Instant::now();
    let per_request = Duration::from_secs_f64(SPANS_PER_REQUEST as f64 / rate as f64);
    let mut next_sweep = start + SWEEP_EVERY;
    let (mut spans, mut finished) = (0usize, 0usize);
    let wall = Instant::now();
    for (n, body) in bodies.iter().enumerate() {
        let now = start + per_request * n as u32;
        while next_sweep <= now {
            finished += settler.take_finished(next_sweep).len();
            next_sweep += SWEEP_EVERY;
        }
        let out = request(body, &options, &settler, now);
        spans += out.len();
        drop_spans(out);
    }
    let (traces, shapes) = settler.pending();
    println!(
        "{spans} spans in {requests} requests: {:.3} µs/span (wall); {finished} traces \
         finished, {traces} pending ({shapes} shapes)",
        wall.elapsed().as_secs_f64() * 1e6 / spans.max(1) as f64
    );
}
