//! [`SpanData`] to OTLP protobuf (`opentelemetry.proto.trace.v1`), field by field.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue as PbKeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as PbSpan, Status as PbStatus, span, status,
};
use prost::Message;

use crate::id::{SpanId, TraceFlags};
use crate::propagation::TraceState;
use crate::resource::Resource;
use crate::span::{Event, KeyValue, Link, SpanData, Status, Value};

/// `Span.flags` bit 8: whether the parent is remote is known.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `Span.flags` bit 9: the parent is remote.
const FLAG_IS_REMOTE: u32 = 0x200;

/// The instrumentation scope every span is reported under.
pub(super) const SCOPE_NAME: &str = "tracekit";

/// The parts of every request that do not change: the resource and the scope, converted
/// once and moved in and out of each request instead of being cloned.
#[derive(Debug)]
pub(super) struct RequestTemplate {
    resource: Option<PbResource>,
    scope: Option<InstrumentationScope>,
}

impl RequestTemplate {
    pub(super) fn new(resource: &Resource) -> RequestTemplate {
        RequestTemplate {
            resource: Some(PbResource {
                attributes: key_values(resource.attributes()),
                ..Default::default()
            }),
            scope: Some(InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            }),
        }
    }

    /// One `ExportTraceServiceRequest` with one `ResourceSpans` and one `ScopeSpans`
    /// holding the whole batch, encoded.
    pub(super) fn encode(&mut self, batch: &[SpanData]) -> Vec<u8> {
        let mut request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: self.resource.take(),
                scope_spans: vec![ScopeSpans {
                    scope: self.scope.take(),
                    spans: batch.iter().map(encode_span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let bytes = request.encode_to_vec();
        if let Some(mut rs) = request.resource_spans.pop() {
            self.resource = rs.resource.take();
            if let Some(mut ss) = rs.scope_spans.pop() {
                self.scope = ss.scope.take();
            }
        }
        bytes
    }
}

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

fn encode_event(e: &Event) -> span::Event {
    span::Event {
        time_unix_nano: e.time_unix_nano,
        name: e.name.to_string(),
        attributes: key_values(&e.attributes),
        dropped_attributes_count: 0,
    }
}

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

/// The W3C `tracestate` text of a span or link.
fn trace_state_string(trace_state: &TraceState) -> String {
    trace_state.as_str().to_owned()
}
