//! Spans out as OTLP/JSON (the Jaeger `api_v3` answers): hex ids, integer enums, 64-bit
//! integers as decimal strings, empty optional fields left out.

use serde_json::{Value, json};

use crate::model::{AttrValue, KeyValue, Span, StatusCode};

/// A span as an OTLP JSON `Span` (hex ids, integer enums, decimal-string 64-bit integers;
/// empty optional fields left out), as the Jaeger v3 API answers.
pub(crate) fn encode_span(s: &Span) -> Value {
    let mut v = json!({
        "traceId": s.trace_id.to_hex(),
        "spanId": s.span_id.to_hex(),
        "name": s.name,
        "kind": s.kind.as_i32(),
        "startTimeUnixNano": s.start_time_unix_nano.to_string(),
        "endTimeUnixNano": s.end_time_unix_nano.to_string(),
        "attributes": encode_attributes(&s.attributes),
        "events": s.events.iter().map(|e| json!({
            "timeUnixNano": e.time_unix_nano.to_string(),
            "name": e.name,
            "attributes": encode_attributes(&e.attributes),
        })).collect::<Vec<_>>(),
        "links": s.links.iter().map(|l| json!({
            "traceId": l.trace_id.to_hex(),
            "spanId": l.span_id.to_hex(),
            "traceState": l.trace_state,
            "attributes": encode_attributes(&l.attributes),
        })).collect::<Vec<_>>(),
        "status": {"code": s.status.code.as_i32(), "message": s.status.message},
    });
    if let Some(p) = s.parent_span_id {
        v["parentSpanId"] = json!(p.to_hex());
    }
    if !s.trace_state.is_empty() {
        v["traceState"] = json!(s.trace_state);
    }
    if s.flags != 0 {
        v["flags"] = json!(s.flags);
    }
    for (key, n) in [
        ("droppedAttributesCount", s.dropped_attributes_count),
        ("droppedEventsCount", s.dropped_events_count),
        ("droppedLinksCount", s.dropped_links_count),
    ] {
        if n > 0 {
            v[key] = json!(n);
        }
    }
    if s.status.code == StatusCode::Unset && s.status.message.is_empty() {
        v["status"] = json!({});
    }
    v
}

/// Attributes as OTLP JSON `KeyValue`s.
pub(crate) fn encode_attributes(kvs: &[KeyValue]) -> Vec<Value> {
    kvs.iter()
        .map(|kv| json!({"key": kv.key, "value": encode_any_value(&kv.value)}))
        .collect()
}

/// A value as an OTLP JSON `AnyValue` (bytes as base64; non-finite doubles as `"NaN"`,
/// `"Infinity"`, `"-Infinity"`).
pub(crate) fn encode_any_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Empty => json!({}),
        AttrValue::String(s) => json!({"stringValue": s}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        AttrValue::Double(_) => json!({"doubleValue": v.to_json()}),
        AttrValue::Bytes(b) => json!({"bytesValue": crate::model::base64_encode(b)}),
        AttrValue::Array(items) => {
            json!({"arrayValue": {"values": items.iter().map(encode_any_value).collect::<Vec<_>>()}})
        }
        AttrValue::KvList(kvs) => json!({"kvlistValue": {"values": encode_attributes(kvs)}}),
    }
}
