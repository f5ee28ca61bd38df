//! Conformance cases for what the collector keeps besides spans (`store/durable.rs`): tail
//! sampling decisions and consumer groups.

use super::{Store, demo_trace, receipt_cutoff};
use crate::store::{ConsumerGroupSeen, RetentionPolicy, SamplingDecision};
use crate::testing::trace_id;

fn decision(n: u8, kept: bool, policies: &[&str], at: u64) -> SamplingDecision {
    SamplingDecision {
        trace_id: trace_id(n),
        kept,
        policies: policies.iter().map(|p| (*p).to_owned()).collect(),
        finish: if kept { "complete" } else { "settled" }.to_owned(),
        decided_unix_nano: at,
    }
}

/// A decision reads back as recorded; a later one on the same trace replaces it, an
/// earlier one does not; an unknown trace has none.
pub(crate) async fn sampling_decisions_round_trip_and_the_latest_wins(store: Store) {
    let now = crate::time::now_unix_nano();
    let kept = decision(1, true, &["errors", "it's \"quoted\"\n"], now);
    let dropped = decision(2, false, &[], now + 1);
    store
        .record_sampling_decisions(vec![kept.clone(), dropped.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.sampling_decision(trace_id(1)).await.unwrap(),
        Some(kept)
    );
    assert_eq!(
        store.sampling_decision(trace_id(2)).await.unwrap(),
        Some(dropped)
    );
    assert_eq!(store.sampling_decision(trace_id(3)).await.unwrap(), None);
    let later = decision(1, true, &["slow"], now + 10);
    store
        .record_sampling_decisions(vec![later.clone()])
        .await
        .unwrap();
    store
        .record_sampling_decisions(vec![decision(1, false, &[], now + 5)])
        .await
        .unwrap();
    assert_eq!(
        store.sampling_decision(trace_id(1)).await.unwrap(),
        Some(later)
    );
    store.record_sampling_decisions(Vec::new()).await.unwrap();
}

/// A trace's decision is deleted with the trace, by `delete_traces` and by retention; the
/// decisions of other traces stay.
pub(crate) async fn sampling_decisions_are_deleted_with_their_traces(store: Store) {
    let now = crate::time::now_unix_nano();
    for n in 1..=3u8 {
        store.write_spans(demo_trace(n, false, 10.0)).await.unwrap();
    }
    store
        .record_sampling_decisions((1..=3).map(|n| decision(n, true, &["all"], now)).collect())
        .await
        .unwrap();
    let out = store.delete_traces(vec![trace_id(2)]).await.unwrap();
    assert_eq!(out.traces_deleted, 1);
    assert!(
        store
            .sampling_decision(trace_id(2))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .sampling_decision(trace_id(1))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .sampling_decision(trace_id(3))
            .await
            .unwrap()
            .is_some()
    );
    let cutoff = receipt_cutoff();
    store.write_spans(demo_trace(4, false, 10.0)).await.unwrap();
    store
        .record_sampling_decisions(vec![decision(4, true, &["all"], now)])
        .await
        .unwrap();
    let policy = RetentionPolicy {
        delete_before_unix_nano: Some(cutoff),
        max_bytes: None,
        batch_traces: 10,
    };
    let out = store.enforce_retention(policy).await.unwrap();
    assert_eq!(out.traces_deleted, 2, "{out:?}");
    for n in [1, 3] {
        assert!(
            store
                .sampling_decision(trace_id(n))
                .await
                .unwrap()
                .is_none(),
            "decision {n} deleted with its trace"
        );
    }
    assert!(
        store
            .sampling_decision(trace_id(4))
            .await
            .unwrap()
            .is_some()
    );
}

fn seen(destination: &str, group: &str, at: u64) -> ConsumerGroupSeen {
    ConsumerGroupSeen {
        destination: destination.to_owned(),
        group: group.to_owned(),
        last_seen_unix_nano: at,
    }
}

/// Consumer groups are upserted (a pair keeps its latest time, an older record does not move
/// it back) and listed from a time on, sorted.
pub(crate) async fn consumer_groups_keep_the_latest_time_per_pair(store: Store) {
    let t = 1_764_000_000_000_000_000u64;
    assert!(store.consumer_groups(0).await.unwrap().is_empty());
    store
        .record_consumer_groups(vec![
            seen("payments.completed", "notification", t + 100),
            seen("payments.completed", "order", t + 200),
            seen("it's\n\"odd\"", "g", t + 50),
        ])
        .await
        .unwrap();
    store
        .record_consumer_groups(vec![seen("payments.completed", "notification", t + 300)])
        .await
        .unwrap();
    store
        .record_consumer_groups(vec![seen("payments.completed", "notification", t + 10)])
        .await
        .unwrap();
    assert_eq!(
        store.consumer_groups(t).await.unwrap(),
        vec![
            seen("it's\n\"odd\"", "g", t + 50),
            seen("payments.completed", "notification", t + 300),
            seen("payments.completed", "order", t + 200),
        ]
    );
    assert_eq!(
        store.consumer_groups(t + 250).await.unwrap(),
        vec![seen("payments.completed", "notification", t + 300)]
    );
    store.record_consumer_groups(Vec::new()).await.unwrap();
}
