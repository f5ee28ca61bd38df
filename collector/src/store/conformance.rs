//! The ONE store test suite every [`SpanStore`] backend runs (style.md §5 practice 14).
//!
//! A backend's test module calls `conformance_tests!(make)` where `make` is a future giving
//! `(store, guard)`; the guard (e.g. a temp dir) lives as long as the test.

use std::sync::Arc;
use std::time::Duration;

use super::{SpanStore, StoreError, TraceQuery};
use crate::model::{SpanKind, StatusCode};
pub(crate) use crate::testing::sample_trace;
use crate::testing::{MS, T0, span, trace_id};

type Store = Arc<dyn SpanStore>;

/// Generates one `#[tokio::test]` per conformance case for a backend.
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::store::conformance::conformance_tests!(@cases $make;
            write_then_read_round_trips_every_field,
            rewrite_is_idempotent,
            kind_is_part_of_the_identity,
            summary_is_maintained_on_write,
            root_arriving_last_sets_root_fields,
            unknown_trace_is_none,
            find_filters_and_orders,
            services_and_operations_are_listed,
            commits_are_announced,
            concurrent_writers_all_land,
            writes_after_shutdown_fail_cleanly
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                let store: std::sync::Arc<dyn $crate::store::SpanStore> = std::sync::Arc::new(store);
                $crate::store::conformance::$case(store).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;

fn sorted(mut spans: Vec<crate::model::Span>) -> Vec<crate::model::Span> {
    spans.sort_by_key(|s| (s.start_time_unix_nano, s.span_id, s.kind));
    spans
}

pub(crate) async fn write_then_read_round_trips_every_field(store: Store) {
    let spans = sample_trace(1);
    let out = store.write_spans(spans.clone()).await.unwrap();
    assert_eq!(out.stored, spans.len());
    assert_eq!(out.duplicates, 0);
    let got = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
    assert_eq!(got.spans, sorted(spans));
}

pub(crate) async fn rewrite_is_idempotent(store: Store) {
    let spans = sample_trace(2);
    store.write_spans(spans.clone()).await.unwrap();
    let again = store.write_spans(spans.clone()).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (0, spans.len()));
    // A batch that half overlaps, with a duplicate inside itself.
    let extra = span(
        spans[0].trace_id,
        50,
        Some(1),
        "frontend",
        "extra",
        SpanKind::Internal,
        5.0,
        1.0,
    );
    let batch = vec![spans[0].clone(), extra.clone(), extra];
    let out = store.write_spans(batch).await.unwrap();
    assert_eq!((out.stored, out.duplicates), (1, 2));
    let got = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
    assert_eq!(got.spans.len(), spans.len() + 1);
    assert_eq!(got.summary.span_count, spans.len() as u64 + 1);
    assert_eq!(got.summary.error_count, 1, "duplicates are not counted");
}

pub(crate) async fn kind_is_part_of_the_identity(store: Store) {
    let t = trace_id(3);
    let client = span(t, 9, None, "a", "call", SpanKind::Client, 0.0, 5.0);
    let server = span(t, 9, None, "b", "call", SpanKind::Server, 1.0, 3.0);
    let out = store.write_spans(vec![client, server]).await.unwrap();
    assert_eq!(out.stored, 2);
    let got = store.get_trace(t).await.unwrap().unwrap();
    assert_eq!(got.spans.len(), 2);
}

pub(crate) async fn summary_is_maintained_on_write(store: Store) {
    let spans = sample_trace(4);
    // Two requests, the second carrying the error span.
    store.write_spans(spans[..4].to_vec()).await.unwrap();
    store.write_spans(spans[4..].to_vec()).await.unwrap();
    let got = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
    let s = got.summary;
    assert_eq!(s.trace_id, spans[0].trace_id);
    assert_eq!(s.span_count, 7);
    assert_eq!(s.error_count, 1);
    assert_eq!(s.root_service.as_deref(), Some("frontend"));
    assert_eq!(s.root_operation.as_deref(), Some("POST /orders"));
    assert_eq!(s.services, vec!["frontend", "order", "user"]);
    assert_eq!(
        s.operations,
        vec![
            "GET /users/{id}",
            "INSERT orders",
            "POST /orders",
            "SELECT users"
        ]
    );
    assert_eq!(s.start_time_unix_nano, T0);
    assert_eq!(s.end_time_unix_nano, T0 + 34 * MS + 1200 * MS);
    assert_eq!(s.duration_ns(), 1234 * MS);
}

pub(crate) async fn root_arriving_last_sets_root_fields(store: Store) {
    let spans = sample_trace(5);
    store.write_spans(spans[1..].to_vec()).await.unwrap();
    let before = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
    assert_eq!(before.summary.root_service, None);
    assert_eq!(before.summary.start_time_unix_nano, T0 + 1_100_000);
    store.write_spans(spans[..1].to_vec()).await.unwrap();
    let after = store.get_trace(spans[0].trace_id).await.unwrap().unwrap();
    assert_eq!(after.summary.root_service.as_deref(), Some("frontend"));
    assert_eq!(after.summary.start_time_unix_nano, T0);
    // The earlier start is visible to time-filtered search by service and operation too.
    let q = TraceQuery {
        service: Some("user".into()),
        start_time_max_unix_nano: Some(T0),
        ..TraceQuery::default()
    };
    assert_eq!(store.find_traces(q).await.unwrap().len(), 1);
    let q = TraceQuery {
        operation: Some("SELECT users".into()),
        start_time_max_unix_nano: Some(T0),
        ..TraceQuery::default()
    };
    assert_eq!(store.find_traces(q).await.unwrap().len(), 1);
}

pub(crate) async fn unknown_trace_is_none(store: Store) {
    assert!(store.get_trace(trace_id(200)).await.unwrap().is_none());
    assert!(
        store
            .find_traces(TraceQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.services().await.unwrap().is_empty());
}

pub(crate) async fn find_filters_and_orders(store: Store) {
    // Trace n starts at n seconds, lasts (n * 100) ms, service "svc-{n % 2}", errors when n == 3.
    for n in 1..=5u8 {
        let t = trace_id(10 + n);
        let service = format!("svc-{}", n % 2);
        let mut root = span(
            t,
            1,
            None,
            &service,
            &format!("op-{n}"),
            SpanKind::Server,
            f64::from(n) * 1000.0,
            f64::from(n) * 100.0,
        );
        if n == 3 {
            root.status.code = StatusCode::Error;
        }
        let child = span(
            t,
            2,
            Some(1),
            "shared",
            "common",
            SpanKind::Internal,
            f64::from(n) * 1000.0 + 1.0,
            1.0,
        );
        store.write_spans(vec![root, child]).await.unwrap();
    }
    let ids = |v: Vec<super::TraceSummary>| -> Vec<u8> {
        v.iter().map(|s| s.trace_id.0[15] - 10).collect()
    };
    let find = |q: TraceQuery| {
        let store = Arc::clone(&store);
        async move { ids(store.find_traces(q).await.unwrap()) }
    };
    assert_eq!(find(TraceQuery::default()).await, vec![5, 4, 3, 2, 1]);
    let q = TraceQuery {
        limit: 2,
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![5, 4]);
    let q = TraceQuery {
        service: Some("svc-1".into()),
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![5, 3, 1]);
    let q = TraceQuery {
        service: Some("shared".into()),
        limit: 3,
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![5, 4, 3]);
    let q = TraceQuery {
        operation: Some("common".into()),
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![5, 4, 3, 2, 1]);
    let q = TraceQuery {
        service: Some("svc-0".into()),
        operation: Some("op-4".into()),
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![4]);
    let q = TraceQuery {
        service: Some("svc-1".into()),
        operation: Some("op-4".into()),
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, Vec::<u8>::new());
    let q = TraceQuery {
        min_duration_ns: Some(200 * MS),
        max_duration_ns: Some(400 * MS),
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![4, 3, 2]);
    let q = TraceQuery {
        start_time_min_unix_nano: Some(T0 + 2000 * MS),
        start_time_max_unix_nano: Some(T0 + 4000 * MS),
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![4, 3, 2]);
    let q = TraceQuery {
        service: Some("shared".into()),
        start_time_max_unix_nano: Some(T0 + 2000 * MS),
        min_duration_ns: Some(150 * MS),
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![2]);
    let q = TraceQuery {
        errors_only: true,
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, vec![3]);
    let q = TraceQuery {
        service: Some("' OR 1=1 --".into()),
        ..TraceQuery::default()
    };
    assert_eq!(find(q).await, Vec::<u8>::new());
    let q = TraceQuery {
        limit: 1_000_000,
        ..TraceQuery::default()
    };
    assert_eq!(
        find(q).await.len(),
        5,
        "huge limits are clamped, not refused"
    );
}

pub(crate) async fn services_and_operations_are_listed(store: Store) {
    store.write_spans(sample_trace(6)).await.unwrap();
    assert_eq!(
        store.services().await.unwrap(),
        vec!["frontend", "order", "user"]
    );
    let ops = store.operations("frontend".into()).await.unwrap();
    let ops: Vec<(&str, SpanKind)> = ops.iter().map(|o| (o.name.as_str(), o.kind)).collect();
    assert_eq!(
        ops,
        vec![
            ("GET /users/{id}", SpanKind::Client),
            ("POST /orders", SpanKind::Server),
            ("POST /orders", SpanKind::Client),
        ]
    );
    assert!(store.operations("nobody".into()).await.unwrap().is_empty());
}

pub(crate) async fn commits_are_announced(store: Store) {
    let mut rx = store.subscribe_commits();
    rx.borrow_and_update();
    store.write_spans(sample_trace(7)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("a commit notification within 5 s")
        .expect("sender alive");
}

pub(crate) async fn concurrent_writers_all_land(store: Store) {
    let mut tasks = Vec::new();
    for n in 0..32u8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let spans = sample_trace(100 + n);
            store.write_spans(spans).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().stored, 7);
    }
    let all = store
        .find_traces(TraceQuery {
            limit: 1000,
            ..TraceQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 32);
    assert!(all.iter().all(|s| s.span_count == 7));
    store.check_writable().await.unwrap();
}

pub(crate) async fn writes_after_shutdown_fail_cleanly(store: Store) {
    let spans = sample_trace(9);
    store.write_spans(spans.clone()).await.unwrap();
    store.shutdown().await;
    store.shutdown().await;
    let err = store.write_spans(sample_trace(10)).await.unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    assert!(err.is_retryable());
    // Committed data is still readable.
    assert!(store.get_trace(spans[0].trace_id).await.unwrap().is_some());
}
