//! Tests of duration-sorted searches (`longest.rs`: the walk of `trace_duration_local`) and
//! of schema 7's fill, against real servers started by `scripts/clickhouse.sh` (see
//! `tests.rs`: they skip without ClickHouse unless `CI=true`). Answers must be the memory
//! store's.

use super::ClickHouseStore;
use super::tests::{Servers, back_to_schema, fill_again, store_on};
use crate::model::{SpanKind, StatusCode, TraceId};
use crate::store::{MemoryStore, SortOrder, SpanStore, TraceQuery, TraceSummary};
use crate::testing::{MS, span};

/// A trace id from `n` (a xorshift: ids in no relation to the write order).
fn id(n: u32) -> TraceId {
    let mut x = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut b = [0u8; 16];
    for chunk in b.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    TraceId(b)
}

/// Trace `n`: a root of 300 ms (every third: ties, all at the same length) or 100 + n ms,
/// and a child of service `a`, or `rare` for every 25th, that errs for every sixth.
fn trace(n: u32) -> Vec<crate::model::Span> {
    let t = id(n);
    let start = f64::from(n) * 1000.0;
    let length = if n.is_multiple_of(3) {
        300.0
    } else {
        100.0 + f64::from(n)
    };
    let service = if n.is_multiple_of(25) { "rare" } else { "a" };
    let mut child = span(
        t,
        2,
        Some(1),
        service,
        "work",
        SpanKind::Client,
        start + 1.0,
        f64::from(n % 40) + 5.0,
    );
    if n.is_multiple_of(6) {
        child.status.code = StatusCode::Error;
    }
    let root = span(
        t,
        1,
        None,
        "front",
        "GET /",
        SpanKind::Server,
        start,
        length,
    );
    vec![root, child]
}

/// Both stores answer every duration-sorted query alike, at several limits.
async fn agree(store: &ClickHouseStore, memory: &MemoryStore) {
    let ids = |v: Vec<TraceSummary>| v.iter().map(|s| s.trace_id).collect::<Vec<_>>();
    let sorted = |q: TraceQuery| TraceQuery {
        sort: SortOrder::Duration,
        ..q
    };
    let queries = [
        sorted(TraceQuery::default()),
        sorted(TraceQuery {
            service: Some("a".into()),
            ..TraceQuery::default()
        }),
        // One span of `a` lasting 30 ms or more: the span check.
        sorted(TraceQuery {
            service: Some("a".into()),
            min_duration_ns: Some(30 * MS),
            ..TraceQuery::default()
        }),
        // Matches too rare among the longest traces: the walk gives up.
        sorted(TraceQuery {
            service: Some("rare".into()),
            ..TraceQuery::default()
        }),
        sorted(TraceQuery {
            min_duration_ns: Some(200 * MS),
            ..TraceQuery::default()
        }),
        sorted(TraceQuery {
            errors_only: true,
            kind: Some(SpanKind::Client),
            ..TraceQuery::default()
        }),
        sorted(TraceQuery {
            service: Some("a".into()),
            start_time_min_unix_nano: Some(crate::testing::T0 + 100_000 * MS),
            start_time_max_unix_nano: Some(crate::testing::T0 + 150_000 * MS),
            ..TraceQuery::default()
        }),
        // A maximum: the full search answers.
        sorted(TraceQuery {
            max_duration_ns: Some(250 * MS),
            ..TraceQuery::default()
        }),
    ];
    for limit in [1, 3, 10, 50] {
        for q in &queries {
            let q = TraceQuery { limit, ..q.clone() };
            let want = ids(memory.find_traces(q.clone()).await.unwrap());
            assert!(!want.is_empty(), "{q:?}");
            // Twice: the second starts where the first walk ended.
            for _ in 0..2 {
                let got = ids(store.find_traces(q.clone()).await.unwrap());
                assert_eq!(got, want, "{q:?}");
            }
        }
    }
}

async fn duration_sorted_searches_agree_with_the_memory_store(nodes: usize) {
    let Some((store, _servers)) = store_on(nodes).await else {
        return;
    };
    let memory = MemoryStore::new();
    for n in 1..=200 {
        let spans = trace(n);
        store.write_spans(spans.clone()).await.unwrap();
        memory.write_spans(spans).await.unwrap();
    }
    agree(&store, &memory).await;
    // Later writes lengthen traces: every 7th gains a span starting before its root (a
    // shorter trace becomes one of the longest), every 11th one ending after it; and one
    // trace of 100 ms becomes the longest of all. The walks so far started after them.
    let mut late = Vec::new();
    for n in (7..=200).step_by(7) {
        late.push(span(
            id(n),
            3,
            Some(1),
            "a",
            "early",
            SpanKind::Internal,
            f64::from(n) * 1000.0 - 150.0,
            10.0,
        ));
    }
    for n in (11..=200).step_by(11) {
        late.push(span(
            id(n),
            4,
            Some(1),
            "a",
            "late",
            SpanKind::Internal,
            f64::from(n) * 1000.0 + 290.0,
            40.0,
        ));
    }
    late.push(span(
        id(1),
        5,
        Some(1),
        "a",
        "last",
        SpanKind::Internal,
        1000.0 + 900.0,
        1.0,
    ));
    for s in late {
        store.write_spans(vec![s.clone()]).await.unwrap();
        memory.write_spans(vec![s]).await.unwrap();
    }
    agree(&store, &memory).await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_sorted_searches_agree_with_the_memory_store_on_one_node() {
    duration_sorted_searches_agree_with_the_memory_store(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_sorted_searches_agree_with_the_memory_store_on_two_shards() {
    duration_sorted_searches_agree_with_the_memory_store(2).await;
}

/// A search whose matches begin deeper than where another search's answer ended is answered
/// by the walk inside the hint's range: no whole-table sort and no full search. (The hint
/// used to follow each answer: after a search for the 40 longest traces' service, a search
/// for the others found a range shorter than its walk and sorted the whole table.) Answers
/// agree with the memory store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_whose_matches_begin_deeper_walks_inside_the_hint() {
    let Some((store, _servers)) = store_on(2).await else {
        return;
    };
    let memory = MemoryStore::new();
    // Trace n lasts n ms: the 40 longest are service "top", the others "rest".
    let traces: Vec<u32> = (1..=600).collect();
    for chunk in traces.chunks(100) {
        let spans: Vec<_> = chunk
            .iter()
            .map(|&n| {
                let service = if n > 560 { "top" } else { "rest" };
                let start = f64::from(n) * 1000.0;
                span(
                    id(n),
                    1,
                    None,
                    service,
                    "GET /",
                    SpanKind::Server,
                    start,
                    f64::from(n),
                )
            })
            .collect();
        store.write_spans(spans.clone()).await.unwrap();
        memory.write_spans(spans).await.unwrap();
    }
    super::longest::read_hint_now(&store.shared, 200).await;
    let ids = |v: Vec<TraceSummary>| v.iter().map(|s| s.trace_id).collect::<Vec<_>>();
    for (service, limit) in [("top", 5), ("rest", 10), ("top", 20), ("rest", 50)] {
        let q = TraceQuery {
            service: Some(service.into()),
            sort: SortOrder::Duration,
            limit,
            ..TraceQuery::default()
        };
        let want = ids(memory.find_traces(q.clone()).await.unwrap());
        assert_eq!(want.len(), limit, "{q:?}");
        assert_eq!(
            ids(store.find_traces(q.clone()).await.unwrap()),
            want,
            "{q:?}"
        );
    }
    let counts = &store.shared.longest.counts;
    let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read(&counts.walks) >= 4);
    assert_eq!(
        read(&counts.whole_table),
        0,
        "a walk sorted the whole table"
    );
    assert_eq!(read(&counts.gave_up), 0, "the full search answered");

    // A time window holding none of the longest traces (traces 1-100 start in its first 100 s):
    // after one walk without a match, the full search answers (it reads the window only).
    let early = TraceQuery {
        service: Some("rest".into()),
        sort: SortOrder::Duration,
        limit: 10,
        start_time_max_unix_nano: Some(crate::testing::T0 + 100_000 * crate::testing::MS),
        ..TraceQuery::default()
    };
    let walks = read(&counts.walks);
    let want = ids(memory.find_traces(early.clone()).await.unwrap());
    assert_eq!(want.len(), 10);
    assert_eq!(ids(store.find_traces(early).await.unwrap()), want);
    assert_eq!(read(&counts.walks), walks + 1);
    assert_eq!(read(&counts.gave_up), 1);

    // 100 traces longer than all: the next read of the hint, over the range after it, moves
    // it up to where a read of the whole table puts it.
    let before = super::longest::hint_row(&store.shared).expect("a hint");
    let longer: Vec<_> = (601..=700u32)
        .map(|n| {
            let start = f64::from(n) * 1000.0;
            span(
                id(n),
                1,
                None,
                "top",
                "GET /",
                SpanKind::Server,
                start,
                1000.0 + f64::from(n),
            )
        })
        .collect();
    store.write_spans(longer).await.unwrap();
    super::longest::read_hint_now(&store.shared, 200).await;
    let after = super::longest::hint_row(&store.shared).expect("a hint");
    assert!(after > before, "{after:?} <= {before:?}");
    super::longest::forget_hint(&store.shared);
    super::longest::read_hint_now(&store.shared, 200).await;
    assert_eq!(super::longest::hint_row(&store.shared), Some(after));
    // More rows asked than a shard has: no hint.
    super::longest::read_hint_now(&store.shared, 1_000).await;
    assert_eq!(super::longest::hint_row(&store.shared), None);
    store.shutdown().await;
}

/// Schema 7 on a database written by an older collector (version 5, no
/// `trace_duration_local`): the table is filled from the summaries at start, one row per
/// trace holding its duration (a second fill adds none), so duration-sorted searches find
/// the traces stored before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_7_fills_trace_durations_from_an_older_database() {
    let Some(servers) = Servers::start(2).await else {
        return;
    };
    let options = servers.options();
    let store = ClickHouseStore::open(options.clone()).await.unwrap();
    let memory = MemoryStore::new();
    // Two writes per trace: the fill must fold them.
    for n in 1..=40 {
        let spans = trace(n);
        for s in spans {
            store.write_spans(vec![s.clone()]).await.unwrap();
            memory.write_spans(vec![s]).await.unwrap();
        }
    }
    store.shutdown().await;
    back_to_schema(
        &servers,
        &["trace_duration_dist", "trace_duration_local"],
        5,
    )
    .await;
    let store = ClickHouseStore::open(options).await.unwrap();
    // A second fill (a collector starting at the same time) adds no row.
    fill_again(&servers, super::sql::backfill_trace_durations).await;
    let node = super::http::Node::new(&servers.urls[0], None, None).unwrap();
    let answer = node
        .run(
            "SELECT trace_id, max(duration_ns), count() FROM spanline_test.trace_duration_dist \
             GROUP BY trace_id ORDER BY trace_id FORMAT RowBinary",
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    let got = super::rowbinary::Reader::new(&answer)
        .rows(|r| Ok((TraceId(r.fixed::<16>()?), r.u64()?, r.u64()?)))
        .unwrap();
    let mut want: Vec<(TraceId, u64, u64)> = (1..=40)
        .map(|n| {
            let spans = trace(n);
            let start = spans.iter().map(|s| s.start_time_unix_nano).min().unwrap();
            let end = spans.iter().map(|s| s.end_time_unix_nano).max().unwrap();
            (id(n), end - start, 1)
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    let q = TraceQuery {
        service: Some("a".into()),
        sort: SortOrder::Duration,
        limit: 7,
        ..TraceQuery::default()
    };
    let ids = |v: Vec<TraceSummary>| v.iter().map(|s| s.trace_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.find_traces(q.clone()).await.unwrap()),
        ids(memory.find_traces(q).await.unwrap())
    );
    store.shutdown().await;
}
