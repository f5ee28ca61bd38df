//! Span behaviour: parents, sampling, status, attributes, record reuse.

use std::time::Duration;

use super::*;
use crate::export::InMemoryExporter;
use crate::propagation::TraceState;
use crate::{Resource, Sampler, SpanId, TraceFlags, TraceId, current_span};

fn tracer(sampler: Sampler) -> (Tracer, InMemoryExporter) {
    let exporter = InMemoryExporter::default();
    let t = Tracer::builder(Resource::new("svc", None, []))
        .with_sampler(sampler)
        .with_processor(exporter.clone())
        .build();
    (t, exporter)
}

#[test]
fn a_root_span_starts_a_trace_with_the_random_flag() {
    let (t, exp) = tracer(Sampler::default());
    let s = t.span("root").start();
    let cx = s.context().clone();
    assert!(cx.trace_flags.is_sampled() && cx.trace_flags.is_random());
    s.end();
    let spans = exp.finished_spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, cx.trace_id);
    assert_eq!(spans[0].span_id, cx.span_id);
    assert!(!spans[0].parent_span_id.is_valid());
    assert!(spans[0].end_time_unix_nano >= spans[0].start_time_unix_nano);
}

#[tokio::test]
async fn children_follow_the_current_span_or_an_explicit_parent() {
    let (t, exp) = tracer(Sampler::default());
    let parent = t.span("parent").start();
    let pcx = parent.context().clone();
    let child_cx = parent
        .scope(async { t.span("child").start().context().clone() })
        .await;
    assert_eq!(child_cx.trace_id, pcx.trace_id);
    let explicit_root = t.span("other").parent(None).start();
    assert_ne!(explicit_root.context().trace_id, pcx.trace_id);
    drop(explicit_root);
    let spans = exp.finished_spans();
    let child = spans.iter().find(|s| s.name == "child").unwrap();
    assert_eq!(child.parent_span_id, pcx.span_id);
    assert!(!child.parent_is_remote);
    assert!(
        spans.iter().any(|s| s.name == "parent"),
        "scope ends the span"
    );
}

#[tokio::test]
async fn inside_a_child_spans_scope_current_span_is_that_child() {
    let (t, exp) = tracer(Sampler::default());
    let id = |s: &SharedSpan| s.with(|s| s.context().span_id);
    assert!(current_span().is_none());
    let parent = SharedSpan::new(t.span("parent").start());
    let parent_id = id(&parent);
    parent
        .scope(async {
            assert_eq!(current_span().as_ref().and_then(id), parent_id);
            let child = t.span("child").start();
            let child_id = child.context().span_id;
            child
                .scope(async {
                    let current = current_span().expect("the child is current in its scope");
                    assert_eq!(id(&current), Some(child_id));
                    current.set_attribute("app.seen", true);
                    t.span("grandchild").start().end();
                })
                .await;
            // Back in the parent's scope, the parent is current again.
            assert_eq!(current_span().as_ref().and_then(id), parent_id);
        })
        .await;
    parent.end();
    let spans = exp.finished_spans();
    let named = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    let (p, c, g) = (named("parent"), named("child"), named("grandchild"));
    assert_eq!(Some(p.span_id), parent_id);
    assert_eq!(c.parent_span_id, p.span_id);
    assert_eq!(g.parent_span_id, c.span_id);
    assert_eq!(c.attribute("app.seen"), Some(&Value::Bool(true)));
    assert!(c.end_time_unix_nano <= p.end_time_unix_nano);
}

#[test]
fn unsampled_spans_record_nothing() {
    let (t, exp) = tracer(Sampler::AlwaysOff);
    let mut s = t.span("x").attribute("a", 1i64).start();
    assert!(!s.is_recording());
    assert!(!s.context().is_sampled());
    s.set_attribute("b", 2i64);
    s.record_exception("E", "boom");
    s.end();
    assert!(exp.finished_spans().is_empty());
}

#[test]
fn status_ok_is_final_and_errors_record_an_exception_event() {
    let (t, exp) = tracer(Sampler::AlwaysOn);
    let mut a = t.span("a").start();
    a.set_status(Status::Ok);
    a.set_status(Status::error("late"));
    a.end();
    let mut b = t.span("b").start();
    let err = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    b.record_error(&err);
    b.set_status(Status::Unset);
    b.end();
    let spans = exp.finished_spans();
    assert_eq!(spans[0].status, Status::Ok);
    assert_eq!(spans[1].status, Status::error("refused"));
    let ev = &spans[1].events[0];
    assert_eq!(ev.name, "exception");
    assert_eq!(ev.attributes[0].key, "exception.type");
    assert_eq!(ev.attributes[0].value, Value::from("std::io::error::Error"));
    assert_eq!(ev.attributes[1].value, Value::from("refused".to_owned()));
}

#[test]
fn attributes_replace_by_key_and_are_capped() {
    let (t, exp) = tracer(Sampler::AlwaysOn);
    let mut s = t.span("a").start();
    s.set_attribute("k", 1i64);
    s.set_attribute("k", 2i64);
    for i in 0..200 {
        s.set_attribute(format!("k{i}"), i64::from(i));
    }
    s.end();
    let span = &exp.finished_spans()[0];
    assert_eq!(span.attribute("k"), Some(&Value::I64(2)));
    assert_eq!(span.attributes.len(), MAX_ATTRIBUTES);
    assert_eq!(span.dropped_attributes_count, 201 - MAX_ATTRIBUTES as u32);
}

#[test]
fn recycled_records_carry_nothing_over_from_earlier_spans() {
    use crate::export::{BatchConfig, BatchSpanProcessor};
    let exporter = InMemoryExporter::default();
    let t = Tracer::builder(Resource::new("svc", None, []))
        .with_sampler(Sampler::AlwaysOn)
        .with_processor(BatchSpanProcessor::new(
            exporter.clone(),
            BatchConfig::default(),
        ))
        .build();
    let state = TraceState::parse("k=v");
    let linked = SpanContext {
        trace_id: TraceId::random(),
        span_id: SpanId::random(),
        trace_flags: TraceFlags::SAMPLED,
        trace_state: state.clone(),
        is_remote: true,
    };
    // Enough rich spans to fill every pool stack, so plain spans reuse their records.
    for i in 0..600 {
        let mut s = t
            .span(format!("rich {i}"))
            .kind(SpanKind::Server)
            .parent(Some(linked.clone()))
            .link(Link {
                trace_id: linked.trace_id,
                span_id: linked.span_id,
                trace_state: state.clone(),
                trace_flags: TraceFlags::SAMPLED,
                attributes: vec![],
            })
            .start();
        for k in 0..10 {
            s.set_attribute(format!("k{k}"), format!("v{k}"));
        }
        s.record_exception("E", "boom");
    }
    t.force_flush(Duration::from_secs(10)).unwrap();
    exporter.reset();
    for _ in 0..600 {
        t.span("plain").start().end();
    }
    t.force_flush(Duration::from_secs(10)).unwrap();
    let spans = exporter.finished_spans();
    assert_eq!(spans.len(), 600);
    for s in &spans {
        assert_eq!(s.name, "plain");
        assert_eq!(s.kind, SpanKind::Internal);
        assert!(!s.parent_span_id.is_valid() && !s.parent_is_remote);
        assert!(s.trace_state.is_empty());
        assert!(s.attributes.is_empty() && s.events.is_empty() && s.links.is_empty());
        assert_eq!(s.dropped_attributes_count + s.dropped_events_count, 0);
        assert_eq!(s.status, Status::Unset);
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
    t.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_remote_parent_decides_for_parent_based_samplers() {
    let (t, exp) = tracer(Sampler::default());
    let remote = SpanContext {
        trace_id: TraceId::random(),
        span_id: SpanId::random(),
        trace_flags: TraceFlags::default(),
        trace_state: Default::default(),
        is_remote: true,
    };
    let s = t.span("x").parent(Some(remote.clone())).start();
    assert!(!s.is_recording());
    assert_eq!(s.context().trace_id, remote.trace_id);
    assert_ne!(s.context().span_id, remote.span_id);
    drop(s);
    let sampled = SpanContext {
        trace_flags: TraceFlags::SAMPLED,
        ..remote
    };
    t.span("y").parent(Some(sampled)).start().end();
    let spans = exp.finished_spans();
    assert_eq!(spans.len(), 1);
    assert!(spans[0].parent_is_remote);
}
