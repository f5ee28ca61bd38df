//! [`SpanData`] to OTLP protobuf (`opentelemetry.proto.trace.v1`), field by field.
//!
//! The request is written straight from the [`SpanData`] into one buffer: field lengths are
//! computed first (protobuf prefixes every message with its length), then the bytes are
//! written, with no intermediate `prost` message. Building the generated structs first
//! copied every string of every span (name, attribute keys and values, ids) into a fresh
//! allocation only to encode and free it, which made encoding the largest per-span cost of
//! the export thread. The output decodes to exactly what the generated structs would
//! have encoded (tested against them), and it skips proto3 default values the same way.

#[cfg(test)]
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue as PbKeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::status;
#[cfg(test)]
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as PbSpan, Status as PbStatus, span,
};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::id::{SpanId, TraceFlags};
#[cfg(test)]
use crate::propagation::TraceState;
use crate::resource::Resource;
use crate::span::{Event, KeyValue, Link, SpanData, Status, Value};

/// `Span.flags` bit 8: whether the parent is remote is known.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `Span.flags` bit 9: the parent is remote.
const FLAG_IS_REMOTE: u32 = 0x200;

/// The instrumentation scope every span is reported under.
pub(super) const SCOPE_NAME: &str = "tracekit";

/// The parts of every request that do not change, the resource and the scope, encoded
/// once.
#[derive(Debug)]
pub(super) struct RequestTemplate {
    /// The encoded `Resource` message.
    resource: Vec<u8>,
    /// The encoded `InstrumentationScope` message.
    scope: Vec<u8>,
    /// Scratch: the encoded length of each span of the batch being encoded.
    span_lens: Vec<usize>,
}

impl RequestTemplate {
    pub(super) fn new(resource: &Resource) -> RequestTemplate {
        RequestTemplate {
            resource: PbResource {
                attributes: key_values(resource.attributes()),
                ..Default::default()
            }
            .encode_to_vec(),
            scope: scope().encode_to_vec(),
            span_lens: Vec::new(),
        }
    }

    /// One `ExportTraceServiceRequest` with one `ResourceSpans` and one `ScopeSpans`
    /// holding the whole batch, encoded.
    pub(super) fn encode(&mut self, batch: &[Box<SpanData>]) -> Vec<u8> {
        self.span_lens.clear();
        self.span_lens.extend(batch.iter().map(|s| span_len(s)));
        // ScopeSpans { scope = 1, spans = 2 }; ResourceSpans { resource = 1, scope_spans = 2 };
        // ExportTraceServiceRequest { resource_spans = 1 }. Empty schema URLs are omitted.
        let scope_spans = ld_len(1, self.scope.len())
            + self.span_lens.iter().map(|&l| ld_len(2, l)).sum::<usize>();
        let resource_spans = ld_len(1, self.resource.len()) + ld_len(2, scope_spans);
        let total = ld_len(1, resource_spans);
        let mut buf = Vec::with_capacity(total);
        put_ld(&mut buf, 1, resource_spans);
        put_ld(&mut buf, 1, self.resource.len());
        buf.extend_from_slice(&self.resource);
        put_ld(&mut buf, 2, scope_spans);
        put_ld(&mut buf, 1, self.scope.len());
        buf.extend_from_slice(&self.scope);
        for (span, &len) in batch.iter().zip(&self.span_lens) {
            put_ld(&mut buf, 2, len);
            put_span(&mut buf, span);
        }
        debug_assert_eq!(buf.len(), total);
        buf
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// Direct encoding. Each `*_len` function returns the encoded length of a message's body;
// each `put_*` writes it; the two must agree field for field (the debug assertion above
// and the tests check it). Proto3 rules as prost applies them: scalar fields equal to
// their default (0, empty) are omitted; a set oneof member and a present sub-message are
// always written.

/// Key and length prefix of a length-delimited field plus `len` bytes of body.
fn ld_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_ld(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn bytes_len(tag: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        ld_len(tag, b.len())
    }
}

fn put_bytes(buf: &mut Vec<u8>, tag: u32, b: &[u8]) {
    if !b.is_empty() {
        put_ld(buf, tag, b.len());
        buf.extend_from_slice(b);
    }
}

fn varint_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

fn put_varint(buf: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

fn fixed64_len(tag: u32, v: u64) -> usize {
    if v == 0 { 0 } else { key_len(tag) + 8 }
}

fn put_fixed64(buf: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        encode_key(tag, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32_len(tag: u32, v: u32) -> usize {
    if v == 0 { 0 } else { key_len(tag) + 4 }
}

fn put_fixed32(buf: &mut Vec<u8>, tag: u32, v: u32) {
    if v != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, buf);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn parent_bytes(s: &SpanData) -> [u8; 8] {
    s.parent_span_id.to_bytes()
}

fn span_flags(s: &SpanData) -> u32 {
    let remote = if s.parent_is_remote {
        FLAG_IS_REMOTE
    } else {
        0
    };
    w3c_flags(s.trace_flags) | FLAG_HAS_IS_REMOTE | remote
}

/// `Span`: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6, start 7 and end 8 (fixed64), attributes 9, dropped_attributes_count 10,
/// events 11, dropped_events_count 12, links 13, dropped_links_count 14, status 15,
/// flags 16 (fixed32).
fn span_len(s: &SpanData) -> usize {
    let parent = if s.parent_span_id == SpanId::INVALID {
        0
    } else {
        ld_len(4, 8)
    };
    ld_len(1, 16)
        + ld_len(2, 8)
        + bytes_len(3, s.trace_state.as_str().as_bytes())
        + parent
        + fixed32_len(16, span_flags(s))
        + bytes_len(5, s.name.as_bytes())
        + varint_len(6, s.kind.otlp_code() as u64)
        + fixed64_len(7, s.start_time_unix_nano)
        + fixed64_len(8, s.end_time_unix_nano)
        + s.attributes
            .iter()
            .map(|kv| ld_len(9, kv_len(kv)))
            .sum::<usize>()
        + varint_len(10, u64::from(s.dropped_attributes_count))
        + s.events
            .iter()
            .map(|e| ld_len(11, event_len(e)))
            .sum::<usize>()
        + varint_len(12, u64::from(s.dropped_events_count))
        + s.links
            .iter()
            .map(|l| ld_len(13, link_len(l)))
            .sum::<usize>()
        + status_len(&s.status).map_or(0, |l| ld_len(15, l))
}

fn put_span(buf: &mut Vec<u8>, s: &SpanData) {
    put_bytes(buf, 1, &s.trace_id.to_bytes());
    put_bytes(buf, 2, &s.span_id.to_bytes());
    put_bytes(buf, 3, s.trace_state.as_str().as_bytes());
    if s.parent_span_id != SpanId::INVALID {
        put_bytes(buf, 4, &parent_bytes(s));
    }
    put_bytes(buf, 5, s.name.as_bytes());
    put_varint(buf, 6, s.kind.otlp_code() as u64);
    put_fixed64(buf, 7, s.start_time_unix_nano);
    put_fixed64(buf, 8, s.end_time_unix_nano);
    for kv in &s.attributes {
        put_kv(buf, 9, kv);
    }
    put_varint(buf, 10, u64::from(s.dropped_attributes_count));
    for e in &s.events {
        put_ld(buf, 11, event_len(e));
        put_fixed64(buf, 1, e.time_unix_nano);
        put_bytes(buf, 2, e.name.as_bytes());
        for kv in &e.attributes {
            put_kv(buf, 3, kv);
        }
    }
    put_varint(buf, 12, u64::from(s.dropped_events_count));
    for l in &s.links {
        put_ld(buf, 13, link_len(l));
        put_bytes(buf, 1, &l.trace_id.to_bytes());
        put_bytes(buf, 2, &l.span_id.to_bytes());
        put_bytes(buf, 3, l.trace_state.as_str().as_bytes());
        for kv in &l.attributes {
            put_kv(buf, 4, kv);
        }
        put_fixed32(buf, 6, w3c_flags(l.trace_flags));
    }
    if let Some(len) = status_len(&s.status) {
        put_ld(buf, 15, len);
        let (message, code) = status_parts(&s.status);
        put_bytes(buf, 2, message.as_bytes());
        put_varint(buf, 3, code as u64);
    }
    // Fields go out in tag order, as prost writes them: `flags` (16) last.
    put_fixed32(buf, 16, span_flags(s));
}

/// `Event`: time_unix_nano 1 (fixed64), name 2, attributes 3.
fn event_len(e: &Event) -> usize {
    fixed64_len(1, e.time_unix_nano)
        + bytes_len(2, e.name.as_bytes())
        + e.attributes
            .iter()
            .map(|kv| ld_len(3, kv_len(kv)))
            .sum::<usize>()
}

/// `Link`: trace_id 1, span_id 2, trace_state 3, attributes 4, flags 6 (fixed32).
fn link_len(l: &Link) -> usize {
    ld_len(1, 16)
        + ld_len(2, 8)
        + bytes_len(3, l.trace_state.as_str().as_bytes())
        + l.attributes
            .iter()
            .map(|kv| ld_len(4, kv_len(kv)))
            .sum::<usize>()
        + fixed32_len(6, w3c_flags(l.trace_flags))
}

/// `Status`: message 2, code 3; `None` for an absent status (`Unset`).
fn status_len(s: &Status) -> Option<usize> {
    match s {
        Status::Unset => None,
        _ => {
            let (message, code) = status_parts(s);
            Some(bytes_len(2, message.as_bytes()) + varint_len(3, code as u64))
        }
    }
}

fn status_parts(s: &Status) -> (&str, i32) {
    match s {
        Status::Unset => ("", status::StatusCode::Unset as i32),
        Status::Ok => ("", status::StatusCode::Ok as i32),
        Status::Error { message } => (message, status::StatusCode::Error as i32),
    }
}

/// `KeyValue`: key 1, value 2 (an `AnyValue`, always present).
fn kv_len(kv: &KeyValue) -> usize {
    bytes_len(1, kv.key.as_bytes()) + ld_len(2, value_len(&kv.value))
}

fn put_kv(buf: &mut Vec<u8>, tag: u32, kv: &KeyValue) {
    put_ld(buf, tag, kv_len(kv));
    put_bytes(buf, 1, kv.key.as_bytes());
    put_ld(buf, 2, value_len(&kv.value));
    put_value(buf, &kv.value);
}

/// `AnyValue` (a oneof: the set member is always written): string 1, bool 2, int 3,
/// double 4, array 5 (`ArrayValue { values = 1 }` of string `AnyValue`s).
fn value_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => ld_len(1, s.len()),
        Value::Bool(_) => key_len(2) + 1,
        Value::I64(i) => key_len(3) + encoded_len_varint(*i as u64),
        Value::F64(_) => key_len(4) + 8,
        Value::StrArray(items) => ld_len(5, array_len(items)),
    }
}

fn array_len(items: &[std::borrow::Cow<'static, str>]) -> usize {
    items.iter().map(|s| ld_len(1, ld_len(1, s.len()))).sum()
}

fn put_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            put_ld(buf, 1, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => {
            encode_key(2, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        Value::I64(i) => {
            encode_key(3, WireType::Varint, buf);
            // int64 is a two's-complement varint: negative values take 10 bytes.
            encode_varint(*i as u64, buf);
        }
        Value::F64(f) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&f.to_le_bytes());
        }
        Value::StrArray(items) => {
            put_ld(buf, 5, array_len(items));
            for s in items {
                put_ld(buf, 1, ld_len(1, s.len()));
                put_ld(buf, 1, s.len());
                buf.extend_from_slice(s.as_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The same through the generated structs: the resource (once per exporter) and, in tests,
// the reference the direct encoding is checked against.

#[cfg(test)]
impl RequestTemplate {
    /// The batch encoded through the generated `prost` structs, for comparison.
    pub(super) fn encode_with_structs(&self, batch: &[SpanData]) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(PbResource::decode(self.resource.as_slice()).unwrap_or_default()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: batch.iter().map(encode_span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
/// One span. Ids are big-endian bytes; a root span has an empty `parent_span_id`.
pub(super) fn encode_span(s: &SpanData) -> PbSpan {
    let parent_span_id = if s.parent_span_id == SpanId::INVALID {
        Vec::new()
    } else {
        s.parent_span_id.to_bytes().to_vec()
    };
    let remote = if s.parent_is_remote {
        FLAG_IS_REMOTE
    } else {
        0
    };
    PbSpan {
        trace_id: s.trace_id.to_bytes().to_vec(),
        span_id: s.span_id.to_bytes().to_vec(),
        trace_state: trace_state_string(&s.trace_state),
        parent_span_id,
        flags: w3c_flags(s.trace_flags) | FLAG_HAS_IS_REMOTE | remote,
        name: s.name.to_string(),
        kind: s.kind.otlp_code(),
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: key_values(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s.events.iter().map(encode_event).collect(),
        dropped_events_count: s.dropped_events_count,
        links: s.links.iter().map(encode_link).collect(),
        dropped_links_count: 0,
        status: encode_status(&s.status),
    }
}

/// Bits 0-7 of `flags`: the W3C trace flags this library understands (sampled, random);
/// unknown bits are not propagated (see [`TraceFlags::known`]).
fn w3c_flags(f: TraceFlags) -> u32 {
    u32::from(f.known().to_u8())
}

#[cfg(test)]
fn encode_event(e: &Event) -> span::Event {
    span::Event {
        time_unix_nano: e.time_unix_nano,
        name: e.name.to_string(),
        attributes: key_values(&e.attributes),
        dropped_attributes_count: 0,
    }
}

#[cfg(test)]
/// A link: whether the linked span is remote is not recorded, so bits 8-9 stay clear.
fn encode_link(l: &Link) -> span::Link {
    span::Link {
        trace_id: l.trace_id.to_bytes().to_vec(),
        span_id: l.span_id.to_bytes().to_vec(),
        trace_state: trace_state_string(&l.trace_state),
        attributes: key_values(&l.attributes),
        dropped_attributes_count: 0,
        flags: w3c_flags(l.trace_flags),
    }
}

#[cfg(test)]
/// `Unset` is sent as an absent status (code 0 either way); only errors carry a message.
fn encode_status(s: &Status) -> Option<PbStatus> {
    match s {
        Status::Unset => None,
        Status::Ok => Some(PbStatus {
            message: String::new(),
            code: status::StatusCode::Ok as i32,
        }),
        Status::Error { message } => Some(PbStatus {
            message: message.to_string(),
            code: status::StatusCode::Error as i32,
        }),
    }
}

pub(super) fn key_values(attrs: &[KeyValue]) -> Vec<PbKeyValue> {
    attrs
        .iter()
        .map(|kv| PbKeyValue {
            key: kv.key.to_string(),
            value: Some(any_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

fn any_value(v: &Value) -> AnyValue {
    let value = match v {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::I64(i) => any_value::Value::IntValue(*i),
        Value::F64(f) => any_value::Value::DoubleValue(*f),
        Value::Str(s) => any_value::Value::StringValue(s.to_string()),
        Value::StrArray(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s.to_string())),
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

#[cfg(test)]
/// The W3C `tracestate` text of a span or link.
fn trace_state_string(trace_state: &TraceState) -> String {
    trace_state.as_str().to_owned()
}
