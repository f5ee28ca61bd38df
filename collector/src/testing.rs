//! Span builders shared by the unit tests.

use std::sync::Arc;

use crate::model::{
    AttrValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode,
    TraceId,
};

/// Base time of the fixtures: 2025-11-21T04:40:00Z in unix nanoseconds.
pub(crate) const T0: u64 = 1_763_700_000_000_000_000;
pub(crate) const MS: u64 = 1_000_000;

pub(crate) fn trace_id(seed: u8) -> TraceId {
    let mut b = [0u8; 16];
    b[0] = 0x4b;
    b[15] = seed;
    b[7] = seed.wrapping_mul(31);
    TraceId(b)
}

pub(crate) fn span_id(n: u64) -> SpanId {
    SpanId((n | 0x0100_0000_0000_0000).to_be_bytes())
}

pub(crate) fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", AttrValue::String(service.into())),
            KeyValue::new("host.name", AttrValue::String("node-1".into())),
        ],
    })
}

/// A span with the given shape; start and duration in milliseconds after [`T0`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn span(
    trace: TraceId,
    id: u64,
    parent: Option<u64>,
    service: &str,
    name: &str,
    kind: SpanKind,
    start_ms: f64,
    duration_ms: f64,
) -> Span {
    let mut s = Span::new(trace, span_id(id), name);
    s.parent_span_id = parent.map(span_id);
    s.kind = kind;
    s.start_time_unix_nano = T0 + (start_ms * MS as f64) as u64;
    s.end_time_unix_nano = s.start_time_unix_nano + (duration_ms * MS as f64) as u64;
    s.resource = resource(service);
    s.service_name = service.into();
    s.scope = Arc::new(Scope {
        name: "tracekit".into(),
        version: "0.1.0".into(),
    });
    s
}

/// The DESIGN.md §3 demo flow (trimmed to 3 services): 7 spans, one error, every attribute type.
pub(crate) fn sample_trace(seed: u8) -> Vec<Span> {
    use SpanKind::*;
    let t = trace_id(seed);
    let mut root = span(t, 1, None, "frontend", "POST /orders", Server, 0.0, 412.3);
    root.attributes = vec![
        KeyValue::new("http.request.method", AttrValue::String("POST".into())),
        KeyValue::new("http.response.status_code", AttrValue::Int(201)),
        KeyValue::new("app.flag", AttrValue::Bool(true)),
        KeyValue::new("app.ratio", AttrValue::Double(0.25)),
        KeyValue::new("app.raw", AttrValue::Bytes(vec![0, 1, 2, 255])),
        KeyValue::new(
            "app.list",
            AttrValue::Array(vec![AttrValue::Int(1), AttrValue::String("two".into())]),
        ),
        KeyValue::new(
            "app.map",
            AttrValue::KvList(vec![KeyValue::new("k", AttrValue::Empty)]),
        ),
    ];
    root.trace_state = "vendor=1".into();
    root.flags = 0x301;
    let mut get_user = span(
        t,
        2,
        Some(1),
        "frontend",
        "GET /users/{id}",
        Client,
        1.1,
        31.2,
    );
    get_user.attributes = vec![KeyValue::new(
        "http.response.status_code",
        AttrValue::Int(200),
    )];
    let mut user = span(t, 3, Some(2), "user", "GET /users/{id}", Server, 1.6, 29.8);
    user.attributes = vec![KeyValue::new(
        "http.response.status_code",
        AttrValue::Int(200),
    )];
    let db = span(t, 4, Some(3), "user", "SELECT users", Client, 2.0, 0.85);
    let mut post = span(
        t,
        5,
        Some(1),
        "frontend",
        "POST /orders",
        Client,
        33.0,
        370.0,
    );
    post.attributes = vec![KeyValue::new(
        "http.response.status_code",
        AttrValue::Int(201),
    )];
    let mut order = span(t, 6, Some(5), "order", "POST /orders", Server, 34.0, 1200.0);
    order.status = Status {
        code: StatusCode::Error,
        message: "payment declined".into(),
    };
    order.events = vec![Event {
        time_unix_nano: T0 + 40 * MS,
        name: "exception".into(),
        attributes: vec![KeyValue::new(
            "exception.message",
            AttrValue::String("declined".into()),
        )],
    }];
    order.links = vec![Link {
        trace_id: trace_id(seed.wrapping_add(100)),
        span_id: span_id(99),
        trace_state: String::new(),
        attributes: vec![KeyValue::new(
            "link.kind",
            AttrValue::String("follows".into()),
        )],
    }];
    order.warnings = vec!["clamped".into()];
    order.dropped_attributes_count = 3;
    let insert = span(t, 7, Some(6), "order", "INSERT orders", Client, 35.0, 2.5);
    vec![root, get_user, user, db, post, order, insert]
}
