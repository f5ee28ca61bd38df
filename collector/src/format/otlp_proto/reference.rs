//! The OTLP/protobuf decoder as it was before the hand-written reader (prost decoding into
//! the bytes-typed mirrors [`wire`], then converted): kept, for tests only, as the reference
//! the new decoder is compared with (`super::differential`). Only the ids' representation
//! ([`RawId`], no `Vec`) and `walk`'s size hint changed.

use prost::Message;

use super::PROTO_ID_NAMES;
use crate::error::Error;
use crate::format::Decoded;
use crate::format::otlp::{self, OtlpLink, OtlpResourceSpans, OtlpSpan, RawId, WireId};
use crate::model::{AttrValue, Event, KeyValue, Resource, Scope, SpanKind, Status, StatusCode};
use crate::sanitize::{self, SpanLimits};

/// Bytes-typed mirrors of the OTLP trace messages (same field numbers as
/// `opentelemetry-proto`; every `string` is `bytes` so that invalid UTF-8 can be repaired per
/// field instead of failing the whole request). Fields we do not read (`schema_url`, scope
/// attributes, ...) are left out: prost skips unknown fields.
pub(crate) mod wire {
    /// `ExportTraceServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Request {
        #[prost(message, repeated, tag = "1")]
        pub(crate) resource_spans: Vec<ResourceSpans>,
    }
    /// `ResourceSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub(crate) resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub(crate) scope_spans: Vec<ScopeSpans>,
    }
    /// `Resource`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub(crate) attributes: Vec<KeyValue>,
    }
    /// `ScopeSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ScopeSpans {
        #[prost(message, optional, tag = "1")]
        pub(crate) scope: Option<Scope>,
        #[prost(message, repeated, tag = "2")]
        pub(crate) spans: Vec<Span>,
    }
    /// `InstrumentationScope`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Scope {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) name: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) version: Vec<u8>,
    }
    /// `Span`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub(crate) trace_state: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub(crate) parent_span_id: Vec<u8>,
        #[prost(fixed32, tag = "16")]
        pub(crate) flags: u32,
        #[prost(bytes = "vec", tag = "5")]
        pub(crate) name: Vec<u8>,
        #[prost(int32, tag = "6")]
        pub(crate) kind: i32,
        #[prost(fixed64, tag = "7")]
        pub(crate) start_time_unix_nano: u64,
        #[prost(fixed64, tag = "8")]
        pub(crate) end_time_unix_nano: u64,
        #[prost(message, repeated, tag = "9")]
        pub(crate) attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "10")]
        pub(crate) dropped_attributes_count: u32,
        #[prost(message, repeated, tag = "11")]
        pub(crate) events: Vec<Event>,
        #[prost(uint32, tag = "12")]
        pub(crate) dropped_events_count: u32,
        #[prost(message, repeated, tag = "13")]
        pub(crate) links: Vec<Link>,
        #[prost(uint32, tag = "14")]
        pub(crate) dropped_links_count: u32,
        #[prost(message, optional, tag = "15")]
        pub(crate) status: Option<Status>,
    }
    /// `Span.Event`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Event {
        #[prost(fixed64, tag = "1")]
        pub(crate) time_unix_nano: u64,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) name: Vec<u8>,
        #[prost(message, repeated, tag = "3")]
        pub(crate) attributes: Vec<KeyValue>,
    }
    /// `Span.Link`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Link {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub(crate) trace_state: Vec<u8>,
        #[prost(message, repeated, tag = "4")]
        pub(crate) attributes: Vec<KeyValue>,
    }
    /// `Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Status {
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) message: Vec<u8>,
        #[prost(int32, tag = "3")]
        pub(crate) code: i32,
    }
    /// `KeyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct KeyValue {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) key: Vec<u8>,
        #[prost(message, optional, tag = "2")]
        pub(crate) value: Option<AnyValue>,
    }
    /// `AnyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
        pub(crate) value: Option<Value>,
    }
    /// `AnyValue.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(crate) enum Value {
        #[prost(bytes = "vec", tag = "1")]
        String(Vec<u8>),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
        #[prost(message, tag = "5")]
        Array(ArrayValue),
        #[prost(message, tag = "6")]
        KvList(KeyValueList),
        #[prost(bytes = "vec", tag = "7")]
        Bytes(Vec<u8>),
    }
    /// `ArrayValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ArrayValue {
        #[prost(message, repeated, tag = "1")]
        pub(crate) values: Vec<AnyValue>,
    }
    /// `KeyValueList`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct KeyValueList {
        #[prost(message, repeated, tag = "1")]
        pub(crate) values: Vec<KeyValue>,
    }
}

/// Decodes a protobuf `ExportTraceServiceRequest`.
///
/// # Errors
/// [`Error::BadRequest`] when the bytes are not a valid message.
pub(super) fn decode(body: &[u8], limits: &SpanLimits) -> Result<Decoded, Error> {
    let request = wire::Request::decode(body).map_err(|e| {
        let mut msg = e.to_string();
        sanitize::truncate_string(&mut msg, 256);
        Error::BadRequest(format!("failed to decode ExportTraceServiceRequest: {msg}"))
    })?;
    let resource_spans = request.resource_spans.into_iter().map(|rs| {
        let mut resource_bad = 0usize;
        let resource = Resource {
            attributes: rs
                .resource
                .map(|r| attributes(r.attributes, &mut resource_bad))
                .unwrap_or_default(),
        };
        let scope_spans = rs.scope_spans.into_iter().map(move |ss| {
            let mut bad = resource_bad;
            let scope = ss
                .scope
                .map(|s| Scope {
                    name: text(s.name, &mut bad),
                    version: text(s.version, &mut bad),
                })
                .unwrap_or_default();
            (scope, ss.spans.into_iter().map(move |s| otlp_span(s, bad)))
        });
        OtlpResourceSpans {
            resource,
            warnings: Vec::new(),
            scope_spans,
        }
    });
    Ok(otlp::walk(resource_spans, PROTO_ID_NAMES, limits, 0))
}

/// UTF-8 text from a bytes field; invalid sequences become U+FFFD and bump `bad`.
fn text(bytes: Vec<u8>, bad: &mut usize) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            *bad += 1;
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    }
}

fn value(v: Option<wire::AnyValue>, bad: &mut usize) -> AttrValue {
    match v.and_then(|v| v.value) {
        None => AttrValue::Empty,
        Some(wire::Value::String(s)) => AttrValue::String(text(s, bad).into()),
        Some(wire::Value::Bool(b)) => AttrValue::Bool(b),
        Some(wire::Value::Int(i)) => AttrValue::Int(i),
        Some(wire::Value::Double(d)) => AttrValue::Double(d),
        Some(wire::Value::Bytes(b)) => AttrValue::Bytes(b),
        Some(wire::Value::Array(a)) => {
            AttrValue::Array(a.values.into_iter().map(|v| value(Some(v), bad)).collect())
        }
        Some(wire::Value::KvList(kv)) => AttrValue::KvList(attributes(kv.values, bad)),
    }
}

fn attributes(kvs: Vec<wire::KeyValue>, bad: &mut usize) -> Vec<KeyValue> {
    kvs.into_iter()
        .map(|kv| KeyValue {
            key: text(kv.key, bad).into(),
            value: value(kv.value, bad),
        })
        .collect()
}

/// The span with its strings converted; `inherited_bad` counts invalid UTF-8 already met in
/// its resource and scope.
fn otlp_span(s: wire::Span, inherited_bad: usize) -> OtlpSpan {
    let mut bad = inherited_bad;
    let links = s
        .links
        .into_iter()
        .map(|link| OtlpLink {
            trace_id: WireId::Bytes(RawId::new(&link.trace_id)),
            span_id: WireId::Bytes(RawId::new(&link.span_id)),
            trace_state: text(link.trace_state, &mut bad),
            attributes: attributes(link.attributes, &mut bad),
        })
        .collect();
    let status = s.status.unwrap_or_default();
    let events = s
        .events
        .into_iter()
        .map(|e| Event {
            time_unix_nano: e.time_unix_nano,
            name: text(e.name, &mut bad),
            attributes: attributes(e.attributes, &mut bad),
        })
        .collect();
    let mut span = OtlpSpan {
        trace_id: WireId::Bytes(RawId::new(&s.trace_id)),
        span_id: WireId::Bytes(RawId::new(&s.span_id)),
        parent_span_id: WireId::Bytes(RawId::new(&s.parent_span_id)),
        trace_state: text(s.trace_state, &mut bad),
        flags: s.flags,
        name: text(s.name, &mut bad).into(),
        kind: SpanKind::from_i32(s.kind),
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        status: Status {
            code: StatusCode::from_i32(status.code),
            message: text(status.message, &mut bad),
        },
        attributes: attributes(s.attributes, &mut bad),
        events,
        links,
        dropped_attributes_count: s.dropped_attributes_count,
        dropped_events_count: s.dropped_events_count,
        dropped_links_count: s.dropped_links_count,
        warnings: Vec::new(),
    };
    if bad > 0 {
        span.warnings.push(format!(
            "invalid UTF-8 in {bad} string(s) replaced with U+FFFD"
        ));
    }
    span
}
