//! Conversions between the model and the OTLP protobuf message types
//! (`opentelemetry_proto::tonic::*`). Used by OTLP ingest (proto → model) and by the SQLite
//! encoding (model → proto → model).

use opentelemetry_proto::tonic::common::v1 as pb;
use opentelemetry_proto::tonic::common::v1::any_value::Value as PbValue;
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as PbEvent, Link as PbLink};

use crate::model::{AttrValue, Event, KeyValue, Link, Resource, SpanId, TraceId};

/// Proto `AnyValue` → model value. An absent value and the profiles-only
/// `string_value_strindex` become [`AttrValue::Empty`].
pub(crate) fn value_from_pb(value: Option<pb::AnyValue>) -> AttrValue {
    match value.and_then(|v| v.value) {
        None | Some(PbValue::StringValueStrindex(_)) => AttrValue::Empty,
        Some(PbValue::StringValue(s)) => AttrValue::String(s.into()),
        Some(PbValue::BoolValue(b)) => AttrValue::Bool(b),
        Some(PbValue::IntValue(i)) => AttrValue::Int(i),
        Some(PbValue::DoubleValue(d)) => AttrValue::Double(d),
        Some(PbValue::BytesValue(b)) => AttrValue::Bytes(b),
        Some(PbValue::ArrayValue(a)) => AttrValue::Array(
            a.values
                .into_iter()
                .map(|v| value_from_pb(Some(v)))
                .collect(),
        ),
        Some(PbValue::KvlistValue(kv)) => AttrValue::KvList(attributes_from_pb(kv.values)),
    }
}

/// Proto key/values → model key/values (order kept).
pub(crate) fn attributes_from_pb(kvs: Vec<pb::KeyValue>) -> Vec<KeyValue> {
    kvs.into_iter()
        .map(|kv| KeyValue {
            key: kv.key.into(),
            value: value_from_pb(kv.value),
        })
        .collect()
}

/// Model value → proto `AnyValue` (empty → an `AnyValue` with no value set).
pub(crate) fn value_to_pb(value: &AttrValue) -> pb::AnyValue {
    let v = match value {
        AttrValue::Empty => None,
        AttrValue::String(s) => Some(PbValue::StringValue(s.to_string())),
        AttrValue::Bool(b) => Some(PbValue::BoolValue(*b)),
        AttrValue::Int(i) => Some(PbValue::IntValue(*i)),
        AttrValue::Double(d) => Some(PbValue::DoubleValue(*d)),
        AttrValue::Bytes(b) => Some(PbValue::BytesValue(b.clone())),
        AttrValue::Array(items) => Some(PbValue::ArrayValue(pb::ArrayValue {
            values: items.iter().map(value_to_pb).collect(),
        })),
        AttrValue::KvList(kvs) => Some(PbValue::KvlistValue(pb::KeyValueList {
            values: attributes_to_pb(kvs),
        })),
    };
    pb::AnyValue { value: v }
}

/// Model key/values → proto key/values.
pub(crate) fn attributes_to_pb(kvs: &[KeyValue]) -> Vec<pb::KeyValue> {
    kvs.iter()
        .map(|kv| pb::KeyValue {
            key: kv.key.to_string(),
            value: Some(value_to_pb(&kv.value)),
            ..pb::KeyValue::default()
        })
        .collect()
}

/// Proto event → model event.
pub(crate) fn event_from_pb(e: PbEvent) -> Event {
    Event {
        time_unix_nano: e.time_unix_nano,
        name: e.name,
        attributes: attributes_from_pb(e.attributes),
    }
}

/// Model event → proto event.
pub(crate) fn event_to_pb(e: &Event) -> PbEvent {
    PbEvent {
        time_unix_nano: e.time_unix_nano,
        name: e.name.clone(),
        attributes: attributes_to_pb(&e.attributes),
        dropped_attributes_count: 0,
    }
}

/// Proto link → model link; `Err` with the reason when an id is invalid.
pub(crate) fn link_from_pb(l: PbLink) -> Result<Link, String> {
    let trace_id = TraceId::from_slice(&l.trace_id).map_err(|e| format!("link trace_id {e}"))?;
    let span_id = SpanId::from_slice(&l.span_id).map_err(|e| format!("link span_id {e}"))?;
    Ok(Link {
        trace_id,
        span_id,
        trace_state: l.trace_state,
        attributes: attributes_from_pb(l.attributes),
    })
}

/// Model link → proto link.
pub(crate) fn link_to_pb(l: &Link) -> PbLink {
    PbLink {
        trace_id: l.trace_id.0.to_vec(),
        span_id: l.span_id.0.to_vec(),
        trace_state: l.trace_state.clone(),
        attributes: attributes_to_pb(&l.attributes),
        dropped_attributes_count: 0,
        flags: 0,
    }
}

/// Model resource → proto resource.
pub(crate) fn resource_to_pb(r: &Resource) -> PbResource {
    PbResource {
        attributes: attributes_to_pb(&r.attributes),
        ..PbResource::default()
    }
}

/// Proto resource → model resource (absent → empty).
pub(crate) fn resource_from_pb(r: Option<PbResource>) -> Resource {
    Resource {
        attributes: r
            .map(|r| attributes_from_pb(r.attributes))
            .unwrap_or_default(),
    }
}
