//! Zipkin v2 JSON (`POST /api/v2/spans`, interop.md §4) → [`Span`]s.
//!
//! The body must be a JSON **list** of v2 spans (an empty body or `[]` is fine). Anything else
//! is a 400 for the whole request; so is a Zipkin v1 payload (a span with `binaryAnnotations`,
//! reliability.md §7.3 Z5: "unsupported format").
//!
//! Each span is converted on its own; one with invalid ids is skipped and counted as rejected
//! (Z3), the others are stored; the answer is 202 when at least one span was valid (or the
//! list was empty), 400 otherwise.
//!
//! | Zipkin | internal span |
//! |---|---|
//! | `traceId`: 1–32 lowercase hex | left-padded with zeros to 32 hex (a 64-bit id becomes `0000000000000000<id>`, Z2); uppercase is invalid, as in Zipkin |
//! | `id`, `parentId`: 16 lowercase hex | span id, parent id (an all-zero parent means none) |
//! | `kind` | `CLIENT`/`SERVER`/`PRODUCER`/`CONSUMER`; absent → internal |
//! | `timestamp`, `duration` (µs) | start = timestamp × 1000 ns, end = start + duration × 1000 ns |
//! | `localEndpoint.serviceName` | resource `service.name` (absent → `unknown_service`); its addresses are not kept |
//! | `remoteEndpoint` | `peer.service` (unless a tag sets it), `network.peer.address`, `network.peer.port` |
//! | `tags` | string attributes (numbers and booleans turned into strings) |
//! | tag `error` | status ERROR with the tag value as message (kept as an attribute too) |
//! | tags `otel.status_code`, `otel.status_description` | status (removed from attributes) |
//! | tags `otel.scope.name`, `otel.scope.version` | instrumentation scope (removed) |
//! | `annotations` | events (`value` → name, `timestamp` µs → ns) |
//! | `shared: true` | attribute `zipkin.shared = true` |
//! | `debug: true` | attribute `zipkin.debug = true`, sampled flag |
//!
//! **Shared spans** (B3 / Zipkin RPC): the server half of an RPC may reuse the client's span
//! id with `shared: true`. Both are stored: the store key is `(trace_id, span_id, kind)`, so a
//! CLIENT and a SERVER span with the same id are two rows (Z4), and the server row carries
//! `zipkin.shared = true`. Its `parentId` is the client's parent, as Zipkin sends it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::Decoded;
use crate::error::Error;
use crate::model::{
    self, AttrValue, Event, KeyValue, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId,
};
use crate::sanitize::{self, SpanLimits};

/// Decodes a Zipkin v2 JSON list.
///
/// # Errors
/// [`Error::BadRequest`] when the body is not a JSON list of objects, looks like Zipkin v1, or
/// no span of a non-empty list is valid.
pub(crate) fn decode(body: &[u8], limits: &SpanLimits) -> Result<Decoded, Error> {
    if super::starts_with_bom(body) {
        return Err(super::bom_error());
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decoded::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let mut msg = e.to_string();
        sanitize::truncate_string(&mut msg, 256);
        Error::BadRequest(format!("invalid Zipkin v2 JSON: {msg}"))
    })?;
    let Value::Array(items) = value else {
        return Err(Error::BadRequest(
            "unsupported format: expected a JSON_V2 encoded list of spans".into(),
        ));
    };
    if items.iter().any(|i| i.get("binaryAnnotations").is_some()) {
        return Err(Error::BadRequest(
            "unsupported format: this is Zipkin v1 JSON (binaryAnnotations); \
             send JSON_V2 to /api/v2/spans"
                .into(),
        ));
    }
    let total = items.len();
    let mut out = Decoded::default();
    let mut resources: HashMap<String, Arc<Resource>> = HashMap::new();
    let mut scopes: HashMap<(String, String), Arc<Scope>> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        match convert_span(item, &mut resources, &mut scopes, limits) {
            Ok(mut span) => {
                sanitize::sanitize(&mut span, limits);
                out.accept(index, span);
            }
            Err(reason) => out.reject(index, reason),
        }
    }
    if total > 0 && out.spans.is_empty() {
        return Err(Error::BadRequest(format!(
            "no valid span in the list: {}",
            out.error_message().unwrap_or_default()
        )));
    }
    Ok(out)
}

fn lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// 1–32 lowercase hex digits, left-padded to 32.
fn trace_id(text: &str) -> Result<TraceId, String> {
    if text.is_empty() || text.len() > 32 || !lower_hex(text) {
        return Err(format!(
            "traceId must be 16 or 32 lowercase hex digits, got {}",
            crate::error::quote(text, 40)
        ));
    }
    let padded = format!("{text:0>32}");
    TraceId::from_hex(&padded).map_err(|e| format!("traceId {e}"))
}

/// Exactly 16 lowercase hex digits.
fn span_id(field: &str, text: &str) -> Result<SpanId, String> {
    if text.len() != 16 || !lower_hex(text) {
        return Err(format!(
            "{field} must be 16 lowercase hex digits, got {}",
            crate::error::quote(text, 40)
        ));
    }
    SpanId::from_hex(text).map_err(|e| format!("{field} {e}"))
}

fn get_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn get_u64(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| *f >= 0.0 && f.is_finite())
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{key} must be a non-negative integer")),
        Some(_) => Err(format!("{key} must be a number")),
    }
}

fn tag_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn convert_span(
    item: Value,
    resources: &mut HashMap<String, Arc<Resource>>,
    scopes: &mut HashMap<(String, String), Arc<Scope>>,
    limits: &SpanLimits,
) -> Result<Span, String> {
    let Value::Object(obj) = item else {
        return Err("expected a JSON object".into());
    };
    let trace_id = trace_id(get_str(&obj, "traceId")?.unwrap_or_default())?;
    let id = span_id("id", get_str(&obj, "id")?.unwrap_or_default())?;
    let parent_span_id = match get_str(&obj, "parentId")? {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b == b'0') && p.len() == 16 => None,
        Some(p) => Some(span_id("parentId", p)?),
    };
    let kind = match get_str(&obj, "kind")? {
        None => SpanKind::Internal,
        Some(k) => match k {
            "CLIENT" => SpanKind::Client,
            "SERVER" => SpanKind::Server,
            "PRODUCER" => SpanKind::Producer,
            "CONSUMER" => SpanKind::Consumer,
            other => SpanKind::parse(other)
                .ok_or_else(|| format!("unknown kind {}", crate::error::quote(other, 40)))?,
        },
    };
    let mut span = Span::new(trace_id, id, get_str(&obj, "name")?.unwrap_or_default());
    span.parent_span_id = parent_span_id;
    span.kind = kind;
    span.flags = 0x01; // Zipkin only reports sampled spans.
    let timestamp_us = get_u64(&obj, "timestamp")?;
    let duration_us = get_u64(&obj, "duration")?.unwrap_or(0);
    // Without `timestamp` the start stays 0, which `sanitize` flags.
    if let Some(ts) = timestamp_us {
        span.start_time_unix_nano = ts.saturating_mul(1000);
        span.end_time_unix_nano = span
            .start_time_unix_nano
            .saturating_add(duration_us.saturating_mul(1000));
    }

    // Tags → attributes, with the special cases of interop.md §4.2.
    let mut scope_name = String::new();
    let mut scope_version = String::new();
    let mut otel_status: Option<StatusCode> = None;
    let mut otel_description: Option<String> = None;
    let mut error_tag: Option<String> = None;
    match obj.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(tags)) => {
            for (key, v) in tags {
                let text = tag_text(v);
                match key.as_str() {
                    "otel.scope.name" | "otel.library.name" => scope_name = text,
                    "otel.scope.version" | "otel.library.version" => scope_version = text,
                    "otel.status_code" => otel_status = StatusCode::parse(&text),
                    "otel.status_description" => otel_description = Some(text),
                    _ => {
                        if key == "error" {
                            error_tag = Some(text.clone());
                        }
                        span.attributes
                            .push(KeyValue::new(key.clone(), AttrValue::String(text.into())));
                    }
                }
            }
        }
        Some(_) => return Err("tags must be an object".into()),
    }
    if let Some(code) = otel_status {
        span.status.code = code;
        span.status.message = otel_description.unwrap_or_default();
    } else if let Some(message) = error_tag {
        span.status.code = StatusCode::Error;
        span.status.message = message;
    }

    // Remote endpoint → peer attributes.
    if let Some(Value::Object(remote)) = obj.get("remoteEndpoint") {
        if let Some(Value::String(name)) = remote.get("serviceName")
            && !name.is_empty()
            && model::find_attribute(&span.attributes, "peer.service").is_none()
        {
            span.attributes.push(KeyValue::new(
                "peer.service",
                AttrValue::String(name.as_str().into()),
            ));
        }
        let address = remote
            .get("ipv4")
            .or_else(|| remote.get("ipv6"))
            .and_then(Value::as_str);
        if let Some(a) = address {
            span.attributes.push(KeyValue::new(
                "network.peer.address",
                AttrValue::String(a.into()),
            ));
        }
        if let Some(p) = remote.get("port").and_then(Value::as_i64) {
            span.attributes
                .push(KeyValue::new("network.peer.port", AttrValue::Int(p)));
        }
    }
    if obj.get("shared").and_then(Value::as_bool) == Some(true) {
        span.attributes
            .push(KeyValue::new("zipkin.shared", AttrValue::Bool(true)));
    }
    if obj.get("debug").and_then(Value::as_bool) == Some(true) {
        span.attributes
            .push(KeyValue::new("zipkin.debug", AttrValue::Bool(true)));
    }

    // Annotations → events.
    match obj.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for a in list {
                let Value::Object(a) = a else {
                    return Err("annotations must be objects".into());
                };
                span.events.push(Event {
                    time_unix_nano: get_u64(a, "timestamp")?.unwrap_or(0).saturating_mul(1000),
                    name: get_str(a, "value")?.unwrap_or_default().to_owned(),
                    attributes: Vec::new(),
                });
            }
        }
        Some(_) => return Err("annotations must be a list".into()),
    }

    // Local endpoint → resource (one shared `Arc` per service name).
    let service = match obj.get("localEndpoint") {
        Some(Value::Object(local)) => local
            .get("serviceName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    };
    let resource = resources
        .entry(service.clone())
        .or_insert_with(|| {
            let mut r = Resource::default();
            if !service.is_empty() {
                r.attributes.push(KeyValue::new(
                    "service.name",
                    AttrValue::String(service.into()),
                ));
            }
            sanitize::sanitize_resource(&mut r, limits);
            Arc::new(r)
        })
        .clone();
    span.service_name = resource.service_name().into();
    span.resource = resource;
    span.scope = scopes
        .entry((scope_name, scope_version))
        .or_insert_with_key(|(name, version)| {
            let mut s = Scope {
                name: name.clone(),
                version: version.clone(),
            };
            sanitize::sanitize_scope(&mut s, limits);
            Arc::new(s)
        })
        .clone();
    Ok(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> Result<Decoded, Error> {
        decode(v.to_string().as_bytes(), &SpanLimits::default())
    }

    #[test]
    fn interop_example_maps_every_field() {
        let out = run(json!([{"traceId":"5af7183fb1d4cf5f","parentId":"6b221d5bc9e6496c","id":"352bff9a74ca9ad2",
          "kind":"SERVER","name":"get /api","timestamp":1556604172355737u64,"duration":1431,
          "localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},
          "remoteEndpoint":{"serviceName":"frontend","ipv4":"172.19.0.2","port":58648},
          "annotations":[{"timestamp":1556604172355800u64,"value":"wr"}],
          "tags":{"http.method":"GET","http.path":"/api","http.status_code":500,"error":"boom"},
          "shared":true,"debug":false}]))
        .unwrap();
        let s = &out.spans[0];
        assert_eq!(s.trace_id.to_hex(), "00000000000000005af7183fb1d4cf5f");
        assert_eq!(s.span_id.to_hex(), "352bff9a74ca9ad2");
        assert_eq!(s.parent_span_id.unwrap().to_hex(), "6b221d5bc9e6496c");
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.service_name, "backend");
        assert_eq!(s.start_time_unix_nano, 1_556_604_172_355_737_000);
        assert_eq!(s.duration_ns(), 1_431_000);
        assert_eq!(s.status.code, StatusCode::Error);
        assert_eq!(s.status.message, "boom");
        assert_eq!(s.events[0].name, "wr");
        assert_eq!(s.events[0].time_unix_nano, 1_556_604_172_355_800_000);
        let attr = |k| model::find_attribute(&s.attributes, k).cloned();
        assert_eq!(
            attr("http.status_code"),
            Some(AttrValue::String("500".into()))
        );
        assert_eq!(
            attr("peer.service"),
            Some(AttrValue::String("frontend".into()))
        );
        assert_eq!(attr("network.peer.port"), Some(AttrValue::Int(58648)));
        assert_eq!(attr("zipkin.shared"), Some(AttrValue::Bool(true)));
        assert_eq!(attr("zipkin.debug"), None);
    }

    #[test]
    fn bad_ids_are_skipped_and_counted() {
        let out = run(json!([
            {"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2"},
            {"traceId":"5AF7183FB1D4CF5F","id":"352bff9a74ca9ad3"},
            {"traceId":"5af7183fb1d4cf5f","id":"352bff9a"},
            {"traceId":"0000000000000000","id":"352bff9a74ca9ad4"},
            {"traceId":"5af7183fb1d4cf5f5af7183fb1d4cf5f00","id":"352bff9a74ca9ad5"}
        ]))
        .unwrap();
        assert_eq!(out.spans.len(), 1);
        assert_eq!(out.rejected, 4);
        assert_eq!(out.spans[0].kind, SpanKind::Internal);
    }

    #[test]
    fn whole_request_errors() {
        assert!(matches!(
            run(json!({"traceId":"a"})),
            Err(Error::BadRequest(_))
        ));
        let v1 = run(
            json!([{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2",
            "binaryAnnotations":[{"key":"a","value":"b"}]}]),
        );
        assert!(v1.unwrap_err().to_string().contains("unsupported format"));
        assert!(run(json!([{"traceId":"x","id":"y"}])).is_err());
        assert!(run(json!([])).unwrap().spans.is_empty());
        assert!(
            decode(b"", &SpanLimits::default())
                .unwrap()
                .spans
                .is_empty()
        );
        assert!(decode(b"[", &SpanLimits::default()).is_err());
    }

    #[test]
    fn otel_tags_become_status_and_scope() {
        let out = run(
            json!([{"traceId":"5af7183fb1d4cf5f5af7183fb1d4cf5f","id":"352bff9a74ca9ad2",
            "kind":"CLIENT","tags":{"otel.status_code":"ERROR","otel.status_description":"bad",
            "otel.scope.name":"lib","otel.scope.version":"1"}}]),
        )
        .unwrap();
        let s = &out.spans[0];
        assert_eq!(s.status.code, StatusCode::Error);
        assert_eq!(s.status.message, "bad");
        assert_eq!(s.scope.name, "lib");
        assert!(s.attributes.is_empty());
        assert_eq!(s.service_name, model::UNKNOWN_SERVICE);
    }
}
