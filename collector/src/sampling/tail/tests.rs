//! Tail sampling end to end inside the collector: committed spans, the settler, the
//! publisher's decisions, deletions, `/metrics` and the decision endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::assemble::completeness::Shape;
use crate::store::{TraceQuery, conformance::demo_trace};
use crate::testing::trace_id;
use crate::{AppState, IngestLimits, MemoryStore};

const POLICIES: &str = "
decision_wait: 30s
num_traces: 1000
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow
    type: latency
    latency: {threshold_ms: 1000}
  - name: baseline
    type: probabilistic
    probabilistic: {sampling_percentage: 10}
";

async fn get(state: &AppState, path: &str) -> (StatusCode, String) {
    let response = crate::query_app(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn every_failed_and_slow_trace_is_kept_whole_and_most_others_are_deleted() {
    let sampler = TailSampler::parse(POLICIES).unwrap();
    let state = AppState::new(Arc::new(MemoryStore::new()), IngestLimits::default())
        .with_tail_sampling(sampler);
    let publisher = tokio::spawn(crate::query::tail::publish(state.clone()));
    // 200 demo traces: every 10th fails, every 25th is slow (2 s in payment).
    let total = 200u8;
    let fails = |n: u8| n.is_multiple_of(10);
    let slow = |n: u8| n % 25 == 3;
    for n in 1..=total {
        let spans = demo_trace(n, fails(n), if slow(n) { 2000.0 } else { 5.0 });
        let shapes: Vec<_> = spans.iter().map(|s| (s.trace_id, Shape::of(s))).collect();
        state.store.write_spans(spans).await.unwrap();
        state.settler.observe(shapes, Instant::now());
    }
    // Complete traces are decided at once: wait for all of them, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let decided = |s: &AppState| {
        let t = s.tail_sampler.as_ref().unwrap();
        t.counters.kept.load(Ordering::Relaxed) + t.counters.dropped.load(Ordering::Relaxed)
    };
    while decided(&state) < u64::from(total) {
        assert!(
            Instant::now() < deadline,
            "only {} decided",
            decided(&state)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 1..=total {
        let stored = state.store.get_trace(trace_id(n)).await.unwrap();
        if fails(n) || slow(n) {
            let trace = stored.unwrap_or_else(|| panic!("trace {n} was dropped"));
            assert_eq!(trace.spans.len(), 10, "trace {n} kept whole");
        }
    }
    let stored = state
        .store
        .find_traces(TraceQuery {
            limit: 1000,
            ..TraceQuery::default()
        })
        .await
        .unwrap()
        .len() as u64;
    let (status, metrics) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let kept = metric(&metrics, "spanline_tail_sampling_traces_kept_total");
    let dropped = metric(&metrics, "spanline_tail_sampling_traces_dropped_total");
    assert_eq!(kept, stored, "{metrics}");
    assert_eq!(kept + dropped, u64::from(total));
    assert_eq!(
        metric(&metrics, "spanline_tail_sampling_spans_dropped_total"),
        dropped * 10
    );
    // 20 failed + 8 slow are kept; of the other 172, about 10%.
    assert!((28..=28 + 60).contains(&kept), "kept {kept}");
    assert!(metrics.contains(
        "spanline_tail_sampling_decisions_total{policy=\"errors\",decision=\"sampled\"} 20"
    ));
    assert_eq!(
        metric(&metrics, "spanline_tail_sampling_traces_awaiting_decision"),
        0
    );
    // The decision on one trace, and the policy that kept it.
    let (status, body) = get(
        &state,
        &format!("/v1/traces/{}/sampling", trace_id(10).to_hex()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["decision"], "kept");
    assert_eq!(v["policy"], "errors");
    assert_eq!(v["finish"], "complete");
    let (status, _) = get(
        &state,
        &format!("/v1/traces/{}/sampling", trace_id(250).to_hex()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    state.begin_shutdown();
    let _ = publisher.await;
}

/// Kept decisions are written to the store: a new sampler over the same store (a restarted
/// collector, or another collector sharing the store) answers for them; dropped traces have
/// none stored.
#[tokio::test]
async fn kept_decisions_are_stored_and_served_after_a_restart() {
    let store: Arc<dyn crate::store::SpanStore> = Arc::new(MemoryStore::new());
    let state = AppState::new(Arc::clone(&store), IngestLimits::default())
        .with_tail_sampling(TailSampler::parse(POLICIES).unwrap());
    let publisher = tokio::spawn(crate::query::tail::publish(state.clone()));
    // Trace 10 fails (kept by `errors`); trace 11 is fast and succeeds (dropped unless the
    // 10% baseline keeps it).
    for n in [10u8, 11] {
        let spans = demo_trace(n, n == 10, 5.0);
        let shapes: Vec<_> = spans.iter().map(|s| (s.trace_id, Shape::of(s))).collect();
        state.store.write_spans(spans).await.unwrap();
        state.settler.observe(shapes, Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        if let Some(d) = store.sampling_decision(trace_id(10)).await.unwrap() {
            break d;
        }
        assert!(Instant::now() < deadline, "decision on trace 10 not stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(stored.kept);
    assert_eq!(stored.policies, vec!["errors".to_owned()]);
    assert_eq!(stored.finish, "complete");
    state.begin_shutdown();
    let _ = publisher.await;
    let fresh = AppState::new(Arc::clone(&store), IngestLimits::default())
        .with_tail_sampling(TailSampler::parse(POLICIES).unwrap());
    let (status, body) = get(
        &fresh,
        &format!("/v1/traces/{}/sampling", trace_id(10).to_hex()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["decision"], "kept");
    assert_eq!(v["policy"], "errors");
    assert_eq!(v["finish"], "complete");
    assert_eq!(v["decided_unix_nano"], stored.decided_unix_nano);
    let eleven = state
        .tail_sampler
        .as_ref()
        .unwrap()
        .decision(trace_id(11))
        .unwrap();
    let in_store = store.sampling_decision(trace_id(11)).await.unwrap();
    assert_eq!(in_store.is_some(), eleven.decision == "kept", "{eleven:?}");
}

#[test]
fn policy_files_are_yaml_or_json_and_bad_ones_say_why() {
    let json = r#"{"decision_wait": "5s", "policies": [{"name": "all", "type": "always_sample"}]}"#;
    let s = TailSampler::parse(json).unwrap();
    assert_eq!(s.settle_limits().settle, Duration::from_secs(5));
    assert_eq!(s.settle_limits().max_traces, DEFAULT_NUM_TRACES);
    let s = TailSampler::parse(POLICIES).unwrap();
    assert_eq!(s.settle_limits().max_traces, 1000);
    for bad in [
        "policies: []",
        "decision_wait: never\npolicies: [{name: a, type: always_sample}]",
        "policies: [{name: a, type: span_magic}]",
        "not: [a policy file",
    ] {
        assert!(TailSampler::parse(bad).is_err(), "{bad}");
    }
    assert!(TailSampler::load(Path::new("/nonexistent/policies.yaml")).is_err());
}
