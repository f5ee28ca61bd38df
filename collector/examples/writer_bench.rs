//! The SQLite writer's work on `loadgen`'s requests, for instruction counts: `requests`
//! requests of 500 spans (`loadgen::numbered_request`, 10 spans a trace) decoded and written
//! through [`SqliteStore`] into a new database, 8 at a time (so that the writer commits them
//! in groups, as under load), then the store shut down. With `random`, every trace id is
//! replaced by a random-looking one (a fixed mix of the original), as
//! `loadgen ingest --random-trace-ids` sends.
//!
//! ```sh
//! cargo build --release -p collector --example writer_bench
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out --toggle-collect='*process_group*' \
//!   target/release/examples/writer_bench 400 random
//! callgrind_annotate /tmp/cg.out | head -20
//! ```

use std::sync::Arc;

use collector::store::{SpanStore, SqliteOptions, SqliteStore};
use prost::Message;

const SPANS_PER_REQUEST: usize = 500;
const CONCURRENT: usize = 8;

/// A random-looking trace id made of `id` (splitmix64 of each half).
fn mixed(id: [u8; 16]) -> [u8; 16] {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hi = u64::from_be_bytes(id[..8].try_into().unwrap_or_default());
    let lo = u64::from_be_bytes(id[8..].try_into().unwrap_or_default());
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&mix(hi ^ mix(lo)).to_be_bytes());
    out[8..].copy_from_slice(&mix(lo).to_be_bytes());
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(400);
    let random = args.next().is_some_and(|a| a == "random");
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(
        SqliteStore::open(dir.path().join("spanline.db"), SqliteOptions::default())
            .expect("open the store"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for first in (0..requests).step_by(CONCURRENT) {
            let mut writes = tokio::task::JoinSet::new();
            for n in first..(first + CONCURRENT).min(requests) {
                let body = loadgen::numbered_request(n, SPANS_PER_REQUEST).encode_to_vec();
                let mut spans = collector::format::fuzzing::otlp_proto_spans(&body);
                if random {
                    for span in &mut spans {
                        span.trace_id.0 = mixed(span.trace_id.0);
                    }
                }
                let store = Arc::clone(&store);
                writes.spawn(async move { store.write_spans(spans).await.expect("write") });
            }
            while let Some(done) = writes.join_next().await {
                done.expect("write task");
            }
        }
        store.shutdown().await;
    });
}
