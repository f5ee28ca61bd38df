//! Tests of the completeness rule, the expected consumer groups and traceresponse parsing.

use super::*;
use crate::model::KeyValue;
use crate::testing::{span, span_id, trace_id};
use SpanKind::*;

fn answered(mut s: Span, child: u64, flags: &str) -> Span {
    let header = format!("00-{}-{}-{flags}", s.trace_id, span_id(child));
    s.attributes.push(KeyValue::new(
        TRACERESPONSE_ATTRIBUTE,
        AttrValue::Array(vec![AttrValue::String(header.into())]),
    ));
    s.attributes.push(KeyValue::new(
        "peer.service",
        AttrValue::String("order".into()),
    ));
    s
}

fn shapes(spans: &[Span]) -> Vec<Shape> {
    spans.iter().map(Shape::of).collect()
}

#[test]
fn a_client_span_waits_for_the_server_span_its_callee_announced() {
    let t = trace_id(1);
    let root = span(t, 1, None, "frontend", "POST /orders", Server, 0.0, 10.0);
    let client = answered(
        span(t, 2, Some(1), "frontend", "POST /orders", Client, 1.0, 8.0),
        3,
        "01",
    );
    let mut spans = vec![root, client];
    let verdict = check(&shapes(&spans));
    assert!(!verdict.is_complete());
    let (missing, words) = describe(&spans, &verdict);
    assert_eq!(
        missing,
        vec![Missing {
            parent_span_id: Some(span_id(2).to_hex()),
            span_id: span_id(3).to_hex(),
            service: Some("order".into()),
        }]
    );
    assert_eq!(
        words,
        vec![format!(
            "frontend POST /orders [client] is waiting for its server span {} (order)",
            span_id(3)
        )]
    );
    spans.push(span(
        t,
        3,
        Some(2),
        "order",
        "POST /orders",
        Server,
        2.0,
        6.0,
    ));
    assert!(check(&shapes(&spans)).is_complete());
}

#[test]
fn untraced_callees_unsampled_answers_and_other_traces_expect_nothing() {
    let t = trace_id(1);
    let root = span(t, 1, None, "frontend", "GET /", Server, 0.0, 10.0);
    let plain = span(t, 2, Some(1), "frontend", "GET /plain", Client, 1.0, 2.0);
    let unsampled = answered(
        span(t, 4, Some(1), "frontend", "GET /u", Client, 3.0, 2.0),
        5,
        "00",
    );
    let mut other = span(t, 6, Some(1), "frontend", "GET /o", Client, 5.0, 2.0);
    other.attributes.push(KeyValue::new(
        TRACERESPONSE_ATTRIBUTE,
        AttrValue::String(format!("00-{}-{}-01", trace_id(2), span_id(7)).into()),
    ));
    assert!(check(&shapes(&[root, plain, unsampled, other])).is_complete());
}

#[test]
fn orphans_wait_for_their_parent_and_two_roots_are_never_complete() {
    let t = trace_id(1);
    let orphan = span(t, 3, Some(2), "order", "POST /orders", Server, 2.0, 6.0);
    let verdict = check(&shapes(std::slice::from_ref(&orphan)));
    assert_eq!(verdict.roots, 0);
    let (missing, words) = describe(std::slice::from_ref(&orphan), &verdict);
    assert_eq!(missing[0].span_id, span_id(2).to_hex());
    assert!(
        words[0].contains("waiting for its parent span"),
        "{words:?}"
    );
    let a = span(t, 1, None, "a", "x", Server, 0.0, 1.0);
    let b = span(t, 9, None, "b", "y", Server, 0.0, 1.0);
    let verdict = check(&shapes(&[a, b]));
    assert_eq!(verdict.roots, 2);
    assert!(!verdict.is_complete());
}

#[test]
fn shared_zipkin_ids_need_the_server_side() {
    let t = trace_id(1);
    let root = span(t, 1, None, "frontend", "GET /", Server, 0.0, 10.0);
    let client = answered(
        span(t, 2, Some(1), "frontend", "GET /x", Client, 1.0, 8.0),
        2,
        "01",
    );
    let mut spans = vec![root, client];
    assert!(!check(&shapes(&spans)).is_complete());
    spans.push(span(t, 2, Some(1), "order", "GET /x", Server, 2.0, 6.0));
    assert!(check(&shapes(&spans)).is_complete());
}

fn messaging(mut s: Span, destination: &str, group: Option<&str>) -> Span {
    s.attributes.push(KeyValue::new(
        DESTINATION_ATTRIBUTE,
        AttrValue::String(destination.into()),
    ));
    if let Some(g) = group {
        s.attributes
            .push(KeyValue::new(GROUP_ATTRIBUTE, AttrValue::String(g.into())));
    }
    s
}

#[test]
fn a_producer_waits_for_every_consumer_group_its_destination_had_recently() {
    let t = trace_id(1);
    let groups = ConsumerGroups::default();
    let now = Instant::now();
    let root = span(t, 1, None, "payment", "POST /payments", Server, 0.0, 10.0);
    let publish = messaging(
        span(
            t,
            2,
            Some(1),
            "payment",
            "publish p.done",
            Producer,
            1.0,
            1.0,
        ),
        "p.done",
        None,
    );
    let process = |id, group| {
        messaging(
            span(t, id, Some(2), group, "process p.done", Consumer, 3.0, 1.0),
            "p.done",
            Some(group),
        )
    };
    let mut spans = vec![root, publish];
    // No consumer seen yet: nothing expected.
    assert!(check_with(&shapes(&spans), &groups, now).is_complete());
    groups.record(
        ConsumerGroups::seen_in(&[process(8, "mail"), process(9, "order")]),
        now,
    );
    let verdict = check_with(&shapes(&spans), &groups, now);
    assert_eq!(verdict.awaited.len(), 2);
    assert!(matches!(
        verdict.awaited[0],
        Awaited::Consumer { waiter: 1, .. }
    ));
    spans.push(process(3, "mail"));
    assert_eq!(check_with(&shapes(&spans), &groups, now).awaited.len(), 1);
    spans.push(process(4, "order"));
    assert!(check_with(&shapes(&spans), &groups, now).is_complete());
    // A group not seen for RECENT_CONSUMERS is no longer expected.
    spans.pop();
    let later = now + RECENT_CONSUMERS;
    assert!(check_with(&shapes(&spans), &groups, later).is_complete());
}

#[test]
fn traceresponse_parsing_follows_the_version_rules() {
    let t = trace_id(1);
    let ok = format!("00-{t}-{}-01", span_id(3));
    assert_eq!(parse_traceresponse(&ok, t), Some(span_id(3)));
    let later = format!("01-{t}-{}-01-extra", span_id(3));
    assert_eq!(parse_traceresponse(&later, t), Some(span_id(3)));
    for bad in [
        format!("00-{t}-{}-01-extra", span_id(3)),
        format!("ff-{t}-{}-01", span_id(3)),
        format!("00-{t}-0000000000000000-01"),
        format!("00-{t}-{}-zz", span_id(3)),
        format!("00-{t}-{}", span_id(3)),
        String::new(),
        "garbage".into(),
    ] {
        assert_eq!(parse_traceresponse(&bad, t), None, "{bad}");
    }
}
