//! The simple JSON span format (DESIGN.md §4), both directions.
//!
//! ```text
//! { "trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex>" | null,
//!   "operation_name": "GET /users/{id}",
//!   "start_time": 1763700000.123456,    // unix seconds (float)
//!   "end_time": 1763700000.154656,      // unix seconds (float)
//!   "duration": 0.0312,                 // seconds (float); used when end_time is absent
//!   "kind": "server|client|internal|producer|consumer", "status": "unset|ok|error",
//!   "status_message": "", "attributes": {}, "resource_attributes": {"service.name": "user"},
//!   "events": [{"name", "timestamp" (unix seconds), "attributes"}],
//!   "links": [{"trace_id", "span_id", "attributes"}] }
//! ```
//!
//! Extensions, accepted on input and written on output so a span survives a round trip
//! exactly: `start_time_unix_nano`, `end_time_unix_nano` (integers or decimal strings; they win
//! over the float seconds), and `duration_ns` on output. Input is lenient: ids are
//! case-insensitive, `name` is accepted for `operation_name`, kinds and statuses may be
//! upper-case or OTLP enum names or numbers, `service_name` is used when the resource has no
//! `service.name`. A float second has ~0.24 µs resolution at today's dates.
//!
//! Each array element is converted on its own: a bad element is rejected through partial
//! success with its index and reason, and the others are stored.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Decoded;
use crate::error::Error;
use crate::model::{
    self, AttrValue, Event, KeyValue, Link, Resource, Span, SpanId, SpanKind, StatusCode, TraceId,
};
use crate::sanitize::{self, SpanLimits};

/// Most distinct resources remembered while decoding one request (identical resources share
/// one `Arc`).
const RESOURCE_CACHE: usize = 16;
const NANOS_PER_SECOND: f64 = 1e9;

/// Decodes a JSON array of simple spans.
///
/// # Errors
/// [`Error::BadRequest`] when the body is not a JSON array.
pub(crate) fn decode(body: &[u8], limits: &SpanLimits) -> Result<Decoded, Error> {
    let items: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("invalid JSON span array: {e}")))?;
    let mut out = Decoded::default();
    let mut resources: Vec<(Value, Arc<model::Resource>)> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match span_from_json(item, &mut resources, limits) {
            Ok(mut span) => {
                sanitize::sanitize(&mut span, limits);
                out.accept(index, span);
            }
            Err(reason) => out.reject(index, reason),
        }
    }
    Ok(out)
}

fn span_from_json(
    item: Value,
    resources: &mut Vec<(Value, Arc<Resource>)>,
    limits: &SpanLimits,
) -> Result<Span, String> {
    let Value::Object(mut obj) = item else {
        return Err("expected a JSON object".into());
    };
    let trace_id = TraceId::from_hex(str_field(&obj, "trace_id")?.unwrap_or_default())
        .map_err(|e| format!("trace_id {e}"))?;
    let span_id = SpanId::from_hex(str_field(&obj, "span_id")?.unwrap_or_default())
        .map_err(|e| format!("span_id {e}"))?;
    let parent_span_id = match str_field(&obj, "parent_span_id")? {
        None | Some("") => None,
        Some(text) => Some(SpanId::from_hex(text).map_err(|e| format!("parent_span_id {e}"))?),
    };
    let name = match str_field(&obj, "operation_name")? {
        Some(n) => n.to_owned(),
        None => str_field(&obj, "name")?.unwrap_or_default().to_owned(),
    };
    let start = time_field(&obj, "start_time_unix_nano", "start_time")?
        .ok_or("start_time is required (unix seconds)")?;
    let end = match time_field(&obj, "end_time_unix_nano", "end_time")? {
        Some(end) => end,
        None => match obj.get("duration") {
            None | Some(Value::Null) => start,
            Some(v) => start.saturating_add(seconds_to_ns(v, "duration")?),
        },
    };
    let mut warnings = Vec::new();
    let kind = match obj.get("kind") {
        None | Some(Value::Null) => SpanKind::Unspecified,
        Some(Value::Number(n)) => SpanKind::from_i32(n.as_i64().unwrap_or(0) as i32),
        Some(Value::String(s)) => SpanKind::parse(s).unwrap_or_else(|| {
            warnings.push("unknown kind; treated as unspecified".to_owned());
            SpanKind::Unspecified
        }),
        Some(_) => return Err("kind must be a string".into()),
    };
    let code = match obj.get("status") {
        None | Some(Value::Null) => StatusCode::Unset,
        Some(Value::Number(n)) => StatusCode::from_i32(n.as_i64().unwrap_or(0) as i32),
        Some(Value::String(s)) => StatusCode::parse(s).unwrap_or_else(|| {
            warnings.push("unknown status; treated as unset".to_owned());
            StatusCode::Unset
        }),
        Some(_) => return Err("status must be a string".into()),
    };
    let status_message = str_field(&obj, "status_message")?
        .unwrap_or_default()
        .to_owned();
    let attributes = attributes_field(&mut obj, "attributes")?;

    let resource_json = obj.remove("resource_attributes").unwrap_or(Value::Null);
    let resource = match resources.iter().find(|(v, _)| *v == resource_json) {
        Some((_, r)) => Arc::clone(r),
        None => {
            let mut r = Resource {
                attributes: attributes_value(&resource_json, "resource_attributes")?,
            };
            if model::find_attribute(&r.attributes, "service.name").is_none()
                && let Some(service) = str_field(&obj, "service_name")?
            {
                r.attributes.push(KeyValue::new(
                    "service.name",
                    AttrValue::String(service.into()),
                ));
            }
            sanitize::sanitize_resource(&mut r, limits);
            let r = Arc::new(r);
            if resources.len() < RESOURCE_CACHE {
                resources.push((resource_json, Arc::clone(&r)));
            }
            r
        }
    };

    let mut events = Vec::new();
    for (i, event) in array_field(&obj, "events")?.iter().enumerate() {
        let Value::Object(e) = event else {
            return Err(format!("events[{i}] must be an object"));
        };
        events.push(Event {
            time_unix_nano: time_field(e, "time_unix_nano", "timestamp")?.unwrap_or(start),
            name: str_field(e, "name")?.unwrap_or_default().to_owned(),
            attributes: attributes_value(
                e.get("attributes").unwrap_or(&Value::Null),
                "attributes",
            )?,
        });
    }
    let mut links = Vec::new();
    let mut dropped_links_count = 0u32;
    for (i, link) in array_field(&obj, "links")?.iter().enumerate() {
        let Value::Object(l) = link else {
            return Err(format!("links[{i}] must be an object"));
        };
        let ids = (
            TraceId::from_hex(str_field(l, "trace_id")?.unwrap_or_default()),
            SpanId::from_hex(str_field(l, "span_id")?.unwrap_or_default()),
        );
        match ids {
            (Ok(trace_id), Ok(span_id)) => links.push(Link {
                trace_id,
                span_id,
                trace_state: str_field(l, "trace_state")?.unwrap_or_default().to_owned(),
                attributes: attributes_value(
                    l.get("attributes").unwrap_or(&Value::Null),
                    "attributes",
                )?,
            }),
            _ => {
                warnings.push(format!("links[{i}] has invalid ids; link dropped"));
                dropped_links_count += 1;
            }
        }
    }

    let mut span = Span::new(trace_id, span_id, name);
    span.parent_span_id = parent_span_id;
    span.kind = kind;
    span.start_time_unix_nano = start;
    span.end_time_unix_nano = end;
    span.status.code = code;
    span.status.message = status_message;
    span.attributes = attributes;
    span.events = events;
    span.links = links;
    span.dropped_links_count = dropped_links_count;
    span.service_name = resource.service_name().into();
    span.resource = resource;
    span.warnings = warnings;
    Ok(span)
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn array_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{key} must be an array")),
    }
}

fn attributes_field(obj: &mut Map<String, Value>, key: &str) -> Result<Vec<KeyValue>, String> {
    let value = obj.remove(key).unwrap_or(Value::Null);
    attributes_value(&value, key)
}

fn attributes_value(value: &Value, key: &str) -> Result<Vec<KeyValue>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => Ok(map
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), AttrValue::from_json(v)))
            .collect()),
        _ => Err(format!("{key} must be an object")),
    }
}

/// Reads `nanos_key` (integer or decimal string, unix ns) or else `seconds_key` (float unix s).
fn time_field(
    obj: &Map<String, Value>,
    nanos_key: &str,
    seconds_key: &str,
) -> Result<Option<u64>, String> {
    match obj.get(nanos_key) {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => {
            return n
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{nanos_key} must be a non-negative integer"));
        }
        Some(Value::String(s)) => {
            return s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{nanos_key} must be a non-negative integer"));
        }
        Some(_) => return Err(format!("{nanos_key} must be an integer")),
    }
    match obj.get(seconds_key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => seconds_to_ns(v, seconds_key).map(Some),
    }
}

fn seconds_to_ns(value: &Value, key: &str) -> Result<u64, String> {
    let seconds = value
        .as_f64()
        .ok_or_else(|| format!("{key} must be a number of seconds"))?;
    if !seconds.is_finite() || seconds < 0.0 || seconds * NANOS_PER_SECOND >= u64::MAX as f64 {
        return Err(format!("{key} is out of range"));
    }
    // Whole and fractional seconds apart: multiplying the whole float by 1e9 would round to
    // a multiple of 256 ns at today's dates.
    let whole = seconds.trunc() as u64;
    let frac_ns = (seconds.fract() * NANOS_PER_SECOND).round() as u64;
    Ok(whole.saturating_mul(1_000_000_000).saturating_add(frac_ns))
}

fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / NANOS_PER_SECOND
}

/// Encodes one span in the simple format (plus the exact-time extensions), as served by
/// `GET /v1/traces/{trace_id}`.
pub fn encode_span(span: &Span) -> Value {
    json!({
        "trace_id": span.trace_id.to_hex(),
        "span_id": span.span_id.to_hex(),
        "parent_span_id": span.parent_span_id.map(|p| p.to_hex()),
        "operation_name": span.name,
        "start_time": ns_to_seconds(span.start_time_unix_nano),
        "end_time": ns_to_seconds(span.end_time_unix_nano),
        "duration": ns_to_seconds(span.duration_ns()),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "duration_ns": span.duration_ns(),
        "kind": span.kind.as_str(),
        "status": span.status.code.as_str(),
        "status_message": span.status.message,
        "attributes": model::attributes_to_json(&span.attributes),
        "resource_attributes": model::attributes_to_json(&span.resource.attributes),
        "events": span.events.iter().map(|e| json!({
            "name": e.name,
            "timestamp": ns_to_seconds(e.time_unix_nano),
            "time_unix_nano": e.time_unix_nano,
            "attributes": model::attributes_to_json(&e.attributes),
        })).collect::<Vec<_>>(),
        "links": span.links.iter().map(|l| json!({
            "trace_id": l.trace_id.to_hex(),
            "span_id": l.span_id.to_hex(),
            "attributes": model::attributes_to_json(&l.attributes),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: Value) -> Decoded {
        decode(
            serde_json::to_vec(&Value::Array(vec![v]))
                .unwrap()
                .as_slice(),
            &SpanLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn decodes_the_design_example() {
        let out = one(json!({
            "trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736", "span_id": "00f067aa0ba902b7",
            "parent_span_id": null, "operation_name": "POST /orders",
            "start_time": 1763700000.5, "duration": 0.25, "kind": "SERVER", "status": "error",
            "status_message": "boom", "attributes": {"http.response.status_code": 201},
            "resource_attributes": {"service.name": "frontend"},
            "events": [{"name": "exception", "timestamp": 1763700000.6, "attributes": {"x": 1}}],
            "links": [{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b8"},
                      {"trace_id": "zz", "span_id": "00f067aa0ba902b8"}]
        }));
        assert_eq!(out.rejected, 0);
        let s = &out.spans[0];
        assert_eq!(s.service_name, "frontend");
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.start_time_unix_nano, 1_763_700_000_500_000_000);
        assert_eq!(s.duration_ns(), 250_000_000);
        assert_eq!(s.status.code, StatusCode::Error);
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.links.len(), 1);
        assert_eq!(s.dropped_links_count, 1);
        assert!(out.error_message().unwrap().contains("links[1]"));
    }

    #[test]
    fn bad_elements_are_rejected_alone() {
        let body = br#"[42, {"trace_id": "abc", "span_id": "00f067aa0ba902b7", "start_time": 1},
            {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"},
            {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "start_time": 1}]"#;
        let out = decode(body, &SpanLimits::default()).unwrap();
        assert_eq!(out.rejected, 3);
        assert_eq!(out.spans.len(), 1);
        assert_eq!(out.spans[0].service_name, model::UNKNOWN_SERVICE);
        assert_eq!(out.spans[0].name, sanitize::EMPTY_SPAN_NAME);
        let msg = out.error_message().unwrap();
        assert!(msg.contains("span 0: expected a JSON object"), "{msg}");
        assert!(
            msg.contains("span 1: trace_id must be 32 hex digits, got 3"),
            "{msg}"
        );
        assert!(msg.contains("span 2: start_time is required"), "{msg}");
    }

    #[test]
    fn encode_then_decode_is_exact() {
        let spans = crate::testing::sample_trace(3);
        let encoded: Vec<Value> = spans.iter().map(encode_span).collect();
        let out = decode(
            &serde_json::to_vec(&encoded).unwrap(),
            &SpanLimits::default(),
        )
        .unwrap();
        assert_eq!(out.rejected, 0);
        for (a, b) in spans.iter().zip(&out.spans) {
            assert_eq!(a.start_time_unix_nano, b.start_time_unix_nano);
            assert_eq!(a.end_time_unix_nano, b.end_time_unix_nano);
            assert_eq!(a.parent_span_id, b.parent_span_id);
            assert_eq!(a.service_name, b.service_name);
            assert_eq!(a.status, b.status);
            assert_eq!(encode_span(a)["attributes"], encode_span(b)["attributes"]);
        }
    }

    #[test]
    fn not_an_array_is_a_bad_request() {
        assert!(decode(b"[1,", &SpanLimits::default()).is_err());
    }
}
