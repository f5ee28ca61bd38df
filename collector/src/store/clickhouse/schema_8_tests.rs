//! Schema 8 against real servers (`tests.rs`: they skip without ClickHouse unless
//! `CI=true`): the span writer writes the per-trace summary rows and the newest starts
//! itself, and a database of schema 7 loses the views that wrote them before.

use super::ClickHouseStore;
use super::http::Node;
use super::rowbinary::Reader;
use super::sql::bytes_lit;
use super::tests::Servers;
use crate::model::Span;
use crate::store::{SortOrder, SpanStore, TraceQuery};

/// The views a schema 5 to 7 collector created on each node (its DDL, word for word).
pub(super) const SCHEMA_7_VIEWS: [&str; 2] = [
    "CREATE MATERIALIZED VIEW spanline_test.newest_mv TO spanline_test.newest_local AS \
     SELECT service, max(start_ns) AS start_ns FROM spanline_test.spans_local GROUP BY service",
    "CREATE MATERIALIZED VIEW spanline_test.trace_summary_mv TO \
     spanline_test.trace_summary_local AS SELECT received_day, trace_id, \
     minState(start_ns) AS start_state, maxState(end_ns) AS end_state FROM \
     spanline_test.spans_local GROUP BY received_day, trace_id",
];

/// One `UInt64` answer of `sql` (ending in `FORMAT RowBinary`) on `node`.
async fn one_u64(node: &Node, sql: &str) -> u64 {
    let answer = node.run(sql, &[], Vec::new()).await.expect("query");
    Reader::new(&answer).u64().expect("a UInt64")
}

/// `(rows, first start, last end)` of `trace`'s summary rows over the cluster.
async fn summary(node: &Node, trace: &[Span]) -> (u64, u64, u64) {
    let sql = format!(
        "SELECT count(), minMerge(start_state), maxMerge(end_state) FROM \
         spanline_test.trace_summary_dist WHERE trace_id = {} FORMAT RowBinary",
        bytes_lit(&trace[0].trace_id.0)
    );
    let answer = node.run(&sql, &[], Vec::new()).await.expect("query");
    let mut r = Reader::new(&answer);
    (r.u64().unwrap(), r.u64().unwrap(), r.u64().unwrap())
}

fn bounds(trace: &[Span]) -> (u64, u64) {
    let start = trace.iter().map(|s| s.start_time_unix_nano).min().unwrap();
    let end = trace.iter().map(|s| s.end_time_unix_nano).max().unwrap();
    (start, end)
}

/// A database of schema 7 (its views on both shards) opened by this build: the views are
/// gone on every node and version 8 is recorded; then a new trace gets exactly one summary
/// row (a view left would add a second) with its bounds, its services their newest starts,
/// a duration-sorted search finds the traces of both schemas, and a resent trace is all
/// duplicates (the check finds its summary row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_8_drops_the_summary_views_and_the_writer_writes_their_rows() {
    let Some(servers) = Servers::start(2).await else {
        return;
    };
    let options = servers.options();
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    let old = crate::testing::sample_trace(1);
    store.write_spans(old.clone()).await.unwrap();
    store.shutdown().await;
    let nodes: Vec<Node> = servers
        .urls
        .iter()
        .map(|u| Node::new(u, None, None).unwrap())
        .collect();
    for node in &nodes {
        for statement in SCHEMA_7_VIEWS.iter().copied().chain([
            "DROP TABLE spanline_test.schema_version",
            "CREATE TABLE spanline_test.schema_version (version UInt32, \
             applied_unix_ns UInt64) ENGINE = TinyLog",
            "INSERT INTO spanline_test.schema_version VALUES (7, 0)",
        ]) {
            node.run(statement, &[], Vec::new()).await.unwrap();
        }
    }
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    for node in &nodes {
        let views = one_u64(
            node,
            "SELECT count() FROM system.tables WHERE database = 'spanline_test' \
             AND name IN ('newest_mv', 'trace_summary_mv') FORMAT RowBinary",
        )
        .await;
        assert_eq!(views, 0);
        let version = one_u64(
            node,
            "SELECT toUInt64(max(version)) FROM spanline_test.schema_version FORMAT RowBinary",
        )
        .await;
        assert_eq!(version, 8);
    }
    let new = crate::testing::sample_trace(2);
    let outcome = store.write_spans(new.clone()).await.unwrap();
    assert_eq!(outcome.stored, new.len());
    let (start, end) = bounds(&new);
    assert_eq!(summary(&nodes[0], &new).await, (1, start, end));
    // The trace the views summarized folds as before.
    let (_, start, end) = summary(&nodes[0], &old).await;
    assert_eq!((start, end), bounds(&old));
    // Each service's newest start, over both traces (the first writer's rows stay).
    let mut services: Vec<&str> = new.iter().map(|s| s.service_name.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    for service in services {
        let want = old
            .iter()
            .chain(&new)
            .filter(|s| s.service_name == service)
            .map(|s| s.start_time_unix_nano)
            .max()
            .unwrap();
        let got = one_u64(
            &nodes[0],
            &format!(
                "SELECT max(start_ns) FROM spanline_test.newest_dist WHERE service = {} \
                 FORMAT RowBinary",
                super::sql::quote(service)
            ),
        )
        .await;
        assert_eq!(got, want, "{service}");
    }
    let longest = store
        .find_traces(TraceQuery {
            min_duration_ns: Some(1),
            sort: SortOrder::Duration,
            ..TraceQuery::default()
        })
        .await
        .unwrap();
    let mut found: Vec<_> = longest.iter().map(|s| s.trace_id).collect();
    found.sort();
    let mut want = vec![old[0].trace_id, new[0].trace_id];
    want.sort();
    assert_eq!(found, want);
    let again = store.write_spans(new.clone()).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (0, new.len()));
    store.shutdown().await;
}
