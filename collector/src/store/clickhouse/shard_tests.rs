//! Tests of the per-shard writes (`shards.rs`, `cityhash.rs`) against real servers started
//! by `scripts/clickhouse.sh` (see `tests.rs`: they skip without ClickHouse unless `CI=true`).

use std::sync::Arc;

use super::cityhash::city_hash64;
use super::http::Node;
use super::rowbinary::Reader;
use super::sql::bytes_lit;
use super::tests::Servers;
use super::{ClickHouseOptions, ClickHouseStore};
use crate::model::{Span, SpanId, TraceId};
use crate::store::SpanStore;

/// `n` pseudo-random bytes from `seed` (a xorshift; the tests need variety, not quality).
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The `UInt64` rows of `sql` (ending in `FORMAT RowBinary`) on `node`.
async fn u64_rows(node: &Node, sql: &str) -> Vec<u64> {
    let answer = node.run(sql, &[], Vec::new()).await.expect("query");
    Reader::new(&answer).rows(Reader::u64).expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cityhash_agrees_with_the_server() {
    let Some(servers) = Servers::start(1).await else {
        return;
    };
    let node = Node::new(&servers.urls[0], None, None).unwrap();
    // Every length to 200 bytes (each of CityHash's length classes and several 64-byte
    // blocks), then 300 random 16-byte values (trace ids).
    let mut inputs: Vec<Vec<u8>> = (0..=200).map(|len| bytes(len as u64, len)).collect();
    inputs.extend((0..300).map(|i| bytes(1000 + i, 16)));
    let sql = inputs
        .iter()
        .enumerate()
        .map(|(i, b)| format!("SELECT {i} AS i, cityHash64({}) AS h", bytes_lit(b)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let answer = node
        .run(
            &format!("SELECT h FROM ({sql}) ORDER BY i FORMAT RowBinary"),
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    let server = Reader::new(&answer).rows(Reader::u64).unwrap();
    assert_eq!(server.len(), inputs.len());
    for (input, expected) in inputs.iter().zip(server) {
        assert_eq!(
            city_hash64(input),
            expected,
            "{} bytes: {input:02x?}",
            input.len()
        );
    }
}

/// A span of trace `t` (one per trace), linking to trace `link`.
fn span(t: &TraceId, link: TraceId) -> Span {
    let mut s = Span::new(*t, SpanId([1; 8]), "op");
    s.service_name = "svc".into();
    s.start_time_unix_nano = crate::time::now_unix_nano();
    s.end_time_unix_nano = s.start_time_unix_nano + 1_000;
    s.links.push(crate::model::Link {
        trace_id: link,
        span_id: SpanId([2; 8]),
        trace_state: String::new(),
        attributes: Vec::new(),
    });
    s
}

/// On 2 shards the store writes each shard's local tables itself; every span row and link
/// row lands on the shard `cityHash64(trace_id) % 2` picks, the same shard the
/// `Distributed` table picks for rows inserted through it, and reads find every trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_on_the_shard_the_distributed_table_picks() {
    let Some(servers) = Servers::start(2).await else {
        return;
    };
    let store = ClickHouseStore::open(servers.options()).await.unwrap();
    assert_eq!(store.shared.writes.shards.len(), 2, "writes go per shard");
    let ids: Vec<TraceId> = (0..200)
        .map(|i| TraceId(bytes(i, 16).try_into().unwrap()))
        .collect();
    let spans: Vec<Span> = ids
        .iter()
        .map(|t| span(t, TraceId(bytes(city_hash64(&t.0), 16).try_into().unwrap())))
        .collect();
    let outcome = store.write_spans(spans).await.unwrap();
    assert_eq!(outcome.stored, 200);
    // The same kind of rows through the `Distributed` table, for 200 other traces.
    let other: Vec<TraceId> = (500..700)
        .map(|i| TraceId(bytes(i, 16).try_into().unwrap()))
        .collect();
    let values: Vec<String> = other
        .iter()
        .map(|t| format!("('2026-12-03', {}, {})", bytes_lit(&t.0), bytes_lit(&t.0)))
        .collect();
    let main = Node::new(&servers.urls[0], None, None).unwrap();
    main.run(
        &format!(
            "INSERT INTO spanline_test.links_dist (received_day, trace_id, source_trace_id) \
             VALUES {}",
            values.join(", ")
        ),
        &[("insert_distributed_sync", "1")],
        Vec::new(),
    )
    .await
    .unwrap();
    let mut totals = [0u64; 2];
    for (i, url) in servers.urls.iter().enumerate() {
        let node = Node::new(url, None, None).unwrap();
        for table in ["spans_local", "links_local"] {
            let rows = u64_rows(
                &node,
                &format!(
                    "SELECT count(), toUInt64(countIf(cityHash64(trace_id) % 2 != {i})) \
                     FROM spanline_test.{table} FORMAT RowBinary"
                ),
            )
            .await;
            assert_eq!(rows[1], 0, "node {i} has {table} rows of the other shard");
            assert!(rows[0] > 0, "node {i} has no {table} rows");
            if table == "spans_local" {
                totals[i] = rows[0];
            }
        }
    }
    assert_eq!(totals[0] + totals[1], 200);
    for t in &ids {
        assert!(store.get_trace(*t).await.unwrap().is_some());
    }
    // A resent span is a duplicate (the check reads the shard it lives on).
    let again = store
        .write_spans(vec![span(&ids[7], ids[8]), span(&ids[9], ids[8])])
        .await
        .unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 2));
    store.shutdown().await;
}

/// With a URL that names only one node of the 2-shard cluster, the store writes through
/// the `Distributed` tables as before (it cannot reach the other shard itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_shard_not_listed_writes_through_distributed_tables() {
    let Some(servers) = Servers::start(2).await else {
        return;
    };
    // The schema on both nodes first (a store creates it on the nodes it is given).
    ClickHouseStore::open(servers.options())
        .await
        .unwrap()
        .shutdown()
        .await;
    let options = ClickHouseOptions {
        urls: vec![servers.urls[0].clone()],
        ..servers.options()
    };
    let store = Arc::new(ClickHouseStore::open(options).await.unwrap());
    assert_eq!(store.shared.writes.shards.len(), 1);
    let ids: Vec<TraceId> = (0..50)
        .map(|i| TraceId(bytes(i, 16).try_into().unwrap()))
        .collect();
    let spans = ids.iter().map(|t| span(t, *t)).collect();
    assert_eq!(store.write_spans(spans).await.unwrap().stored, 50);
    let node2 = Node::new(&servers.urls[1], None, None).unwrap();
    let on_2 = u64_rows(
        &node2,
        "SELECT count() FROM spanline_test.spans_local FORMAT RowBinary",
    )
    .await;
    assert!(on_2[0] > 0, "the Distributed table sent shard 2 its rows");
    store.shutdown().await;
}
