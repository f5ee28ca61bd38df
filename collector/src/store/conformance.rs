//! The ONE store test suite every [`SpanStore`] backend runs (style.md §5 practice 14).
//!
//! A backend's test module calls `conformance_tests!(make)` where `make` is a future giving
//! `(store, guard)`; the guard (e.g. a temp dir) lives as long as the test.

use std::sync::Arc;
use std::time::Duration;

use super::{
    DEFAULT_MAX_SPANS_PER_TRACE, RetentionPolicy, SortOrder, SpanStore, StoreError, TimeWindow,
    TraceQuery,
};
use crate::model::{AttrValue, KeyValue, SpanKind, StatusCode};
pub(crate) use crate::testing::sample_trace;
use crate::testing::{MS, T0, span, trace_id};

type Store = Arc<dyn SpanStore>;

mod durable;
pub(crate) use durable::{
    consumer_groups_keep_the_latest_time_per_pair,
    sampling_decisions_are_deleted_with_their_traces,
    sampling_decisions_round_trip_and_the_latest_wins,
};

/// Generates one `#[tokio::test]` per conformance case for a backend.
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::store::conformance::conformance_tests!(@list cases $make);
    };
    // `make` gives `Option<(store, guard)>`; `None` skips the case (a server that is not
    // installed outside CI; the maker says why).
    (optional: $make:expr) => {
        $crate::store::conformance::conformance_tests!(@list optional $make);
    };
    // One test running every case in turn on one set of servers (for backends whose servers
    // are slow to start): `start` gives `Option<guard>` (`None` skips), `open(&guard, case)`
    // a fresh store for the case named `case` (e.g. its own database).
    (shared: $start:expr, $open:expr) => {
        $crate::store::conformance::conformance_tests!(@list shared $start, $open);
    };
    (@list $arm:ident $($make:tt)*) => {
        $crate::store::conformance::conformance_tests!(@ $arm $($make)*;
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
            search_by_kind_status_attributes_and_duration_order,
            search_conditions_given_together_hold_for_one_span,
            dependencies_count_calls_between_services,
            queue_hops_are_edges_through_their_destination,
            operation_samples_cover_entry_spans_in_window,
            retention_deletes_old_traces_in_batches,
            delete_traces_removes_exactly_those_traces,
            traces_linking_to_finds_inbound_links,
            retention_ages_by_receipt_not_by_a_claimed_start,
            a_trace_holds_at_most_the_span_limit,
            writes_after_shutdown_fail_cleanly,
            sampling_decisions_round_trip_and_the_latest_wins,
            sampling_decisions_are_deleted_with_their_traces,
            consumer_groups_keep_the_latest_time_per_pair
        );
    };
    (@optional $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, _guard)) = $make.await else { return };
                let store: std::sync::Arc<dyn $crate::store::SpanStore> = std::sync::Arc::new(store);
                $crate::store::conformance::$case(store).await;
            }
        )*
    };
    (@shared $start:expr, $open:expr; $($case:ident),* $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_case_in_turn_on_shared_servers() {
            let Some(guard) = $start.await else { return };
            $(
                eprintln!("conformance case {}", stringify!($case));
                let store = $open(&guard, stringify!($case)).await;
                let store: std::sync::Arc<dyn $crate::store::SpanStore> = std::sync::Arc::new(store);
                $crate::store::conformance::$case(store).await;
            )*
        }
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
    assert_eq!(s.root_http_status, Some(201));
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
        service: Some("svc-0".into()),
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

/// The demo's shape: frontend -> user, frontend -> order -> payment; `fail` makes payment
/// (and the calls above it) fail. `n` seeds ids; the trace starts `n` seconds after T0 and
/// the payment call takes `payment_ms`.
pub(crate) fn demo_trace(n: u8, fail: bool, payment_ms: f64) -> Vec<crate::model::Span> {
    use SpanKind::*;
    let t = trace_id(n);
    let at = f64::from(n) * 1000.0;
    let mut spans = vec![
        span(
            t,
            1,
            None,
            "frontend",
            "POST /orders",
            Server,
            at,
            100.0 + payment_ms,
        ),
        span(
            t,
            2,
            Some(1),
            "frontend",
            "GET /users/{id}",
            Client,
            at + 1.0,
            10.0,
        ),
        span(
            t,
            3,
            Some(2),
            "user",
            "GET /users/{id}",
            Server,
            at + 2.0,
            8.0,
        ),
        span(t, 4, Some(3), "user", "SELECT users", Client, at + 3.0, 5.0),
        span(
            t,
            5,
            Some(1),
            "frontend",
            "POST /orders",
            Client,
            at + 12.0,
            80.0 + payment_ms,
        ),
        span(
            t,
            6,
            Some(5),
            "order",
            "POST /orders",
            Server,
            at + 13.0,
            78.0 + payment_ms,
        ),
        span(
            t,
            7,
            Some(6),
            "order",
            "INSERT orders",
            Client,
            at + 14.0,
            5.0,
        ),
        span(
            t,
            8,
            Some(6),
            "order",
            "POST /payments",
            Client,
            at + 20.0,
            60.0 + payment_ms,
        ),
        span(
            t,
            9,
            Some(8),
            "payment",
            "POST /payments",
            Server,
            at + 21.0,
            58.0 + payment_ms,
        ),
        span(
            t,
            10,
            Some(9),
            "payment",
            "charge card",
            Internal,
            at + 22.0,
            50.0 + payment_ms,
        ),
    ];
    for s in &mut spans {
        s.attributes.push(KeyValue::new(
            "http.response.status_code",
            AttrValue::Int(if fail && s.span_id.0[7] >= 5 {
                503
            } else {
                201
            }),
        ));
    }
    spans[0].attributes.push(KeyValue::new(
        "app.user.id",
        AttrValue::String(format!("u{n}").into()),
    ));
    if fail {
        for i in [0, 4, 5, 7, 8] {
            spans[i].status.code = StatusCode::Error;
        }
    }
    spans
}

fn window_all() -> TimeWindow {
    TimeWindow {
        start_unix_nano: T0,
        end_unix_nano: T0 + 3_600_000 * MS,
    }
}

pub(crate) async fn search_by_kind_status_attributes_and_duration_order(store: Store) {
    store.write_spans(demo_trace(1, false, 10.0)).await.unwrap();
    store.write_spans(demo_trace(2, true, 500.0)).await.unwrap();
    store
        .write_spans(demo_trace(3, false, 900.0))
        .await
        .unwrap();
    // A trace with only internal spans.
    let t = trace_id(4);
    let mut lone = span(
        t,
        1,
        None,
        "batch",
        "nightly",
        SpanKind::Internal,
        4000.0,
        5.0,
    );
    lone.status.code = StatusCode::Ok;
    store.write_spans(vec![lone]).await.unwrap();
    let ids =
        |v: Vec<super::TraceSummary>| -> Vec<u8> { v.iter().map(|s| s.trace_id.0[15]).collect() };
    let find = |q: TraceQuery| {
        let store = Arc::clone(&store);
        async move { ids(store.find_traces(q).await.unwrap()) }
    };
    assert_eq!(find(TraceQuery::default()).await, vec![4, 3, 2, 1]);
    let by = |f: &dyn Fn(&mut TraceQuery)| {
        let mut q = TraceQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(
        find(by(&|q| q.kind = Some(SpanKind::Server))).await,
        vec![3, 2, 1]
    );
    assert_eq!(
        find(by(&|q| q.kind = Some(SpanKind::Internal))).await,
        vec![4, 3, 2, 1]
    );
    assert_eq!(
        find(by(&|q| q.kind = Some(SpanKind::Producer))).await,
        Vec::<u8>::new()
    );
    assert_eq!(
        find(by(&|q| q.status = Some(StatusCode::Error))).await,
        vec![2]
    );
    assert_eq!(
        find(by(&|q| q.status = Some(StatusCode::Ok))).await,
        vec![4]
    );
    let attr = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        find(by(
            &|q| q.attributes = vec![attr("http.response.status_code", "503")]
        ))
        .await,
        vec![2]
    );
    assert_eq!(
        find(by(
            &|q| q.attributes = vec![attr("http.response.status_code", "201")]
        ))
        .await,
        vec![3, 2, 1]
    );
    assert_eq!(
        find(by(&|q| {
            q.attributes = vec![
                attr("http.response.status_code", "201"),
                attr("app.user.id", "u3"),
            ]
        }))
        .await,
        vec![3]
    );
    assert_eq!(
        find(by(&|q| {
            q.service = Some("frontend".into());
            q.attributes = vec![attr("app.user.id", "u1")];
        }))
        .await,
        vec![1]
    );
    // Given together, the conditions hold for one span: the user id is on the frontend's.
    assert_eq!(
        find(by(&|q| {
            q.service = Some("payment".into());
            q.attributes = vec![attr("app.user.id", "u1")];
        }))
        .await,
        Vec::<u8>::new()
    );
    assert_eq!(
        find(by(&|q| q.attributes = vec![attr("' OR 1=1 --", "x")])).await,
        Vec::<u8>::new()
    );
    // Slowest first; with filters.
    assert_eq!(
        find(by(&|q| q.sort = SortOrder::Duration)).await,
        vec![3, 2, 1, 4]
    );
    assert_eq!(
        find(by(&|q| {
            q.sort = SortOrder::Duration;
            q.min_duration_ns = Some(500 * MS);
            q.service = Some("payment".into());
        }))
        .await,
        vec![3, 2]
    );
    assert_eq!(
        find(by(&|q| {
            q.sort = SortOrder::Duration;
            q.errors_only = true;
            q.operation = Some("POST /payments".into());
        }))
        .await,
        vec![2]
    );
}

/// `service=user&status=error` finds traces whose **user** span failed, not traces where
/// user is fine and payment failed; likewise for attributes, kinds and durations.
pub(crate) async fn search_conditions_given_together_hold_for_one_span(store: Store) {
    let trace = |seed: u8, failing: &str| {
        let t = trace_id(seed);
        let start = f64::from(seed) * 1000.0;
        let mut root = span(
            t,
            1,
            None,
            "frontend",
            "GET /",
            SpanKind::Server,
            start,
            100.0,
        );
        root.attributes
            .push(KeyValue::new("app.tier", AttrValue::String("web".into())));
        let mut user = span(
            t,
            2,
            Some(1),
            "user",
            "GET /u",
            SpanKind::Server,
            start + 1.0,
            10.0,
        );
        let mut payment = span(
            t,
            3,
            Some(1),
            "payment",
            "POST /p",
            SpanKind::Server,
            start + 20.0,
            70.0,
        );
        payment.attributes.push(KeyValue::new(
            "app.tier",
            AttrValue::String("backend".into()),
        ));
        for s in [&mut user, &mut payment] {
            if s.service_name == failing {
                s.status.code = StatusCode::Error;
            }
        }
        vec![root, user, payment]
    };
    store.write_spans(trace(1, "payment")).await.unwrap();
    store.write_spans(trace(2, "user")).await.unwrap();
    let find = |f: &dyn Fn(&mut TraceQuery)| {
        let mut q = TraceQuery::default();
        f(&mut q);
        let store = Arc::clone(&store);
        async move {
            let found = store.find_traces(q).await.unwrap();
            found.iter().map(|s| s.trace_id.0[15]).collect::<Vec<u8>>()
        }
    };
    let user_errors = find(&|q| {
        q.service = Some("user".into());
        q.status = Some(StatusCode::Error);
    });
    assert_eq!(user_errors.await, vec![2]);
    let payment_errors = find(&|q| {
        q.service = Some("payment".into());
        q.errors_only = true;
    });
    assert_eq!(payment_errors.await, vec![1]);
    // The attribute is on the payment span; the frontend span has another value.
    let backend_payment = find(&|q| {
        q.service = Some("payment".into());
        q.attributes = vec![("app.tier".into(), "backend".into())];
    });
    assert_eq!(backend_payment.await, vec![2, 1]);
    let web_payment = find(&|q| {
        q.service = Some("payment".into());
        q.attributes = vec![("app.tier".into(), "web".into())];
    });
    assert_eq!(web_payment.await, Vec::<u8>::new());
    // Durations given with a service apply to that service's span.
    let slow_user = find(&|q| {
        q.service = Some("user".into());
        q.min_duration_ns = Some(50 * MS);
    });
    assert_eq!(slow_user.await, Vec::<u8>::new());
    let slow_payment = find(&|q| {
        q.service = Some("payment".into());
        q.min_duration_ns = Some(50 * MS);
        q.max_duration_ns = Some(80 * MS);
    });
    assert_eq!(slow_payment.await, vec![2, 1]);
}

pub(crate) async fn dependencies_count_calls_between_services(store: Store) {
    store.write_spans(demo_trace(1, false, 10.0)).await.unwrap();
    // The second trace arrives child spans first, in two requests.
    let second = demo_trace(2, true, 10.0);
    store.write_spans(second[5..].to_vec()).await.unwrap();
    store.write_spans(second[..5].to_vec()).await.unwrap();
    let edges = store.dependencies(window_all()).await.unwrap();
    assert_eq!(
        edge_counts(&edges),
        vec![
            ("frontend", "order", 2, 1),
            ("frontend", "user", 2, 0),
            ("order", "payment", 2, 1),
        ]
    );
    // The window counts by child span start: only trace 2 (starts at T0 + 2 s).
    let late = TimeWindow {
        start_unix_nano: T0 + 1500 * MS,
        end_unix_nano: T0 + 3_600_000 * MS,
    };
    let edges = store.dependencies(late).await.unwrap();
    assert!(edges.iter().all(|e| e.call_count == 1), "{edges:?}");
    let empty = TimeWindow {
        start_unix_nano: 0,
        end_unix_nano: T0,
    };
    assert!(store.dependencies(empty).await.unwrap().is_empty());
}

pub(crate) async fn queue_hops_are_edges_through_their_destination(store: Store) {
    let t = trace_id(40);
    let mut failed = span(
        t,
        5,
        Some(2),
        "notification",
        "process payments.completed",
        SpanKind::Consumer,
        5.0,
        1.0,
    );
    failed.status.code = StatusCode::Error;
    let spans = vec![
        span(
            t,
            1,
            None,
            "payment",
            "POST /payments",
            SpanKind::Server,
            0.0,
            10.0,
        ),
        span(
            t,
            2,
            Some(1),
            "payment",
            "publish payments.completed",
            SpanKind::Producer,
            1.0,
            1.0,
        ),
        span(
            t,
            3,
            Some(2),
            "notification",
            "process payments.completed",
            SpanKind::Consumer,
            3.0,
            1.0,
        ),
        failed,
        span(
            t,
            4,
            Some(2),
            "order",
            "process payments.completed",
            SpanKind::Consumer,
            3.0,
            1.0,
        ),
    ];
    store.write_spans(spans).await.unwrap();
    let edges = store.dependencies(window_all()).await.unwrap();
    assert_eq!(
        edge_counts(&edges),
        vec![
            ("payment", "notification", 2, 1),
            ("payment", "order", 1, 0)
        ]
    );
    assert!(
        edges
            .iter()
            .all(|e| e.via.as_deref() == Some("payments.completed")),
        "{edges:?}"
    );
}

/// `(parent, child, call_count, error_count)` of each edge.
fn edge_counts(edges: &[super::DependencyEdge]) -> Vec<(&str, &str, u64, u64)> {
    edges
        .iter()
        .map(|e| {
            (
                e.parent.as_str(),
                e.child.as_str(),
                e.call_count,
                e.error_count,
            )
        })
        .collect()
}

pub(crate) async fn operation_samples_cover_entry_spans_in_window(store: Store) {
    for n in 1..=4u8 {
        store
            .write_spans(demo_trace(n, n == 4, f64::from(n) * 100.0))
            .await
            .unwrap();
    }
    let all = store.operation_samples(window_all(), None).await.unwrap();
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|s| (s.service.as_str(), s.operation.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("frontend", "POST /orders"),
            ("order", "POST /orders"),
            ("payment", "POST /payments"),
            ("user", "GET /users/{id}"),
        ],
        "SERVER spans only"
    );
    let pay = &all[2];
    assert_eq!(
        pay.durations_ns,
        vec![158 * MS, 258 * MS, 358 * MS, 458 * MS]
    );
    assert_eq!(pay.error_count, 1);
    let only = store
        .operation_samples(window_all(), Some("user".into()))
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].error_count, 0);
    let w = TimeWindow {
        start_unix_nano: T0 + 2000 * MS,
        end_unix_nano: T0 + 3500 * MS,
    };
    let some = store
        .operation_samples(w, Some("payment".into()))
        .await
        .unwrap();
    assert_eq!(some[0].durations_ns, vec![258 * MS, 358 * MS]);
}

pub(crate) async fn delete_traces_removes_exactly_those_traces(store: Store) {
    for n in 1..=4u8 {
        store
            .write_spans(demo_trace(n, n == 2, 10.0))
            .await
            .unwrap();
    }
    let out = store
        .delete_traces(vec![trace_id(2), trace_id(3), trace_id(99)])
        .await
        .unwrap();
    assert_eq!(
        (out.traces_deleted, out.spans_deleted, out.more),
        (2, 20, false)
    );
    for (n, kept) in [(1, true), (2, false), (3, false), (4, true)] {
        let found = store.get_trace(trace_id(n)).await.unwrap();
        assert_eq!(found.is_some(), kept, "trace {n}");
    }
    let left = store.find_traces(TraceQuery::default()).await.unwrap();
    assert_eq!(left.len(), 2);
    let errors = TraceQuery {
        errors_only: true,
        ..TraceQuery::default()
    };
    assert!(store.find_traces(errors).await.unwrap().is_empty());
    let samples = store.operation_samples(window_all(), None).await.unwrap();
    assert!(
        samples.iter().all(|s| s.durations_ns.len() == 2),
        "{samples:?}"
    );
    // Deleting again changes nothing; a deleted trace can be written anew.
    let again = store.delete_traces(vec![trace_id(2)]).await.unwrap();
    assert_eq!(again.traces_deleted, 0);
    store.write_spans(demo_trace(2, true, 10.0)).await.unwrap();
    assert!(store.get_trace(trace_id(2)).await.unwrap().is_some());
}

/// A span of `trace` (seed) linking to span 1 of each trace in `to` (seeds).
fn linking_span(trace: u8, id: u64, to: &[u8]) -> crate::model::Span {
    let mut s = span(
        trace_id(trace),
        id,
        None,
        "worker",
        "process jobs",
        SpanKind::Consumer,
        f64::from(trace),
        1.0,
    );
    s.links = to
        .iter()
        .map(|&t| crate::model::Link {
            trace_id: trace_id(t),
            span_id: crate::testing::span_id(1),
            trace_state: String::new(),
            attributes: Vec::new(),
        })
        .collect();
    s
}

pub(crate) async fn traces_linking_to_finds_inbound_links(store: Store) {
    // 1 links to 2; 2 links to 1 from two spans; 3 links to 1 and to itself; 4 links to 5
    // only; 6 has no links.
    let spans = vec![
        linking_span(1, 1, &[2]),
        linking_span(2, 1, &[1]),
        linking_span(2, 2, &[1, 5]),
        linking_span(3, 1, &[1, 3]),
        linking_span(4, 1, &[5]),
        span(
            trace_id(6),
            1,
            None,
            "api",
            "GET /",
            SpanKind::Server,
            0.0,
            1.0,
        ),
    ];
    store.write_spans(spans.clone()).await.unwrap();
    let linking = |t: u8, limit: usize| {
        let store = Arc::clone(&store);
        async move { store.traces_linking_to(trace_id(t), limit).await.unwrap() }
    };
    assert_eq!(linking(1, 10).await, [trace_id(2), trace_id(3)]);
    assert_eq!(linking(1, 1).await, [trace_id(2)], "at most the limit");
    assert_eq!(linking(2, 10).await, [trace_id(1)]);
    assert_eq!(linking(3, 10).await, [], "links to itself do not count");
    assert_eq!(
        linking(5, 10).await,
        [trace_id(2), trace_id(4)],
        "target not stored"
    );
    assert_eq!(linking(6, 10).await, []);
    assert_eq!(linking(99, 10).await, []);
    // Written again (duplicates), nothing changes.
    store.write_spans(spans).await.unwrap();
    assert_eq!(linking(1, 10).await, [trace_id(2), trace_id(3)]);
    // A deleted trace no longer links.
    store.delete_traces(vec![trace_id(2)]).await.unwrap();
    assert_eq!(linking(1, 10).await, [trace_id(3)]);
    assert_eq!(linking(5, 10).await, [trace_id(4)]);
}

/// A unix-ns instant after every receipt so far and before every later one.
fn receipt_cutoff() -> u64 {
    let cutoff = crate::time::now_unix_nano() + 1;
    while crate::time::now_unix_nano() <= cutoff {
        std::hint::spin_loop();
    }
    cutoff
}

pub(crate) async fn retention_deletes_old_traces_in_batches(store: Store) {
    for n in 1..=3u8 {
        store.write_spans(demo_trace(n, false, 10.0)).await.unwrap();
    }
    let cutoff = receipt_cutoff();
    for n in 4..=5u8 {
        store.write_spans(demo_trace(n, false, 10.0)).await.unwrap();
    }
    let policy = RetentionPolicy {
        // Traces 1..=3 were received before the cutoff.
        delete_before_unix_nano: Some(cutoff),
        max_bytes: None,
        batch_traces: 2,
    };
    let first = store.enforce_retention(policy).await.unwrap();
    assert_eq!((first.traces_deleted, first.spans_deleted), (2, 20));
    assert!(first.more);
    let second = store.enforce_retention(policy).await.unwrap();
    assert_eq!(second.traces_deleted, 1);
    assert!(!second.more);
    let third = store.enforce_retention(policy).await.unwrap();
    assert_eq!(third.traces_deleted, 0);
    for n in 1..=3u8 {
        assert!(store.get_trace(trace_id(n)).await.unwrap().is_none());
    }
    assert!(store.get_trace(trace_id(4)).await.unwrap().is_some());
    let left = store.find_traces(TraceQuery::default()).await.unwrap();
    assert_eq!(left.len(), 2);
    let q = TraceQuery {
        service: Some("payment".into()),
        ..TraceQuery::default()
    };
    assert_eq!(store.find_traces(q).await.unwrap().len(), 2);
    let edges = store.dependencies(window_all()).await.unwrap();
    assert!(edges.iter().all(|e| e.call_count == 2), "{edges:?}");
    let samples = store.operation_samples(window_all(), None).await.unwrap();
    assert!(samples.iter().all(|s| s.durations_ns.len() == 2));
    // Writes still work after retention.
    store.write_spans(demo_trace(9, false, 1.0)).await.unwrap();
}

/// Issue 16 item 1: one span carrying a victim's trace id and `startTimeUnixNano = 1` must
/// not get the victim's trace deleted by the next retention pass: traces age by receipt.
pub(crate) async fn retention_ages_by_receipt_not_by_a_claimed_start(store: Store) {
    let now = crate::time::now_unix_nano();
    let mut victim = demo_trace(7, false, 10.0);
    let shift = now - victim[0].start_time_unix_nano;
    for s in &mut victim {
        s.start_time_unix_nano += shift;
        s.end_time_unix_nano += shift;
    }
    store.write_spans(victim.clone()).await.unwrap();
    let mut poison = span(
        trace_id(7),
        99,
        None,
        "attacker",
        "poison",
        SpanKind::Server,
        0.0,
        1.0,
    );
    poison.start_time_unix_nano = 1;
    poison.end_time_unix_nano = 2;
    store.write_spans(vec![poison]).await.unwrap();
    // A one-hour retention, as a pass would compute it now.
    let policy = RetentionPolicy {
        delete_before_unix_nano: Some(now - 3600 * 1000 * MS),
        max_bytes: None,
        batch_traces: 10,
    };
    let outcome = store.enforce_retention(policy).await.unwrap();
    assert_eq!(outcome.traces_deleted, 0, "{outcome:?}");
    let kept = store
        .get_trace(trace_id(7))
        .await
        .unwrap()
        .expect("victim kept");
    assert_eq!(
        kept.spans.len(),
        victim.len() + 1,
        "every span of the victim kept"
    );
    // A start claimed in the future does not keep a trace past its age either.
    let everything = RetentionPolicy {
        delete_before_unix_nano: Some(receipt_cutoff()),
        ..policy
    };
    assert_eq!(
        store
            .enforce_retention(everything)
            .await
            .unwrap()
            .traces_deleted,
        1
    );
}

/// Issue 16 item 2: a trace holds at most the per-trace span limit (the backends' default);
/// later new spans are refused and counted, the trace is marked truncated, and rewriting a
/// stored span is still a duplicate, not a refusal.
pub(crate) async fn a_trace_holds_at_most_the_span_limit(store: Store) {
    let limit = DEFAULT_MAX_SPANS_PER_TRACE as u64;
    let t = trace_id(42);
    let many = |from: u64, to: u64| -> Vec<crate::model::Span> {
        (from..to)
            .map(|n| span(t, n + 1, None, "flood", "op", SpanKind::Internal, 0.0, 1.0))
            .collect()
    };
    let out = store.write_spans(many(0, limit + 5)).await.unwrap();
    assert_eq!((out.stored, out.over_limit), (limit as usize, 5));
    let out = store.write_spans(many(limit - 1, limit + 2)).await.unwrap();
    assert_eq!((out.stored, out.duplicates, out.over_limit), (0, 1, 2));
    let trace = store.get_trace(t).await.unwrap().unwrap();
    assert_eq!(trace.summary.span_count, limit);
    assert_eq!(trace.summary.spans_refused, 7);
    assert!(trace.spans.len() <= limit as usize);
    let found = store.find_traces(TraceQuery::default()).await.unwrap();
    assert_eq!(found[0].spans_refused, 7);
    // Newest first by service too (on ClickHouse with the shards apart, the summary comes
    // from the spans the window step returned, and the count from a shard that has any).
    let by_service = TraceQuery {
        service: Some("flood".into()),
        ..TraceQuery::default()
    };
    let found = store.find_traces(by_service).await.unwrap();
    assert_eq!((found.len(), found[0].span_count), (1, limit));
    assert_eq!(found[0].spans_refused, 7);
    // Other traces are not affected.
    let out = store.write_spans(sample_trace(1)).await.unwrap();
    assert_eq!(out.over_limit, 0);
}
