//! The encoding of a span row: the columns a search or the index needs are plain SQL columns;
//! the rest is `detail`, a protobuf message of our own ([`SpanDetail`], fields 1–10:
//! attributes, events, links as OTLP messages; status message; trace state; flags; the three
//! dropped counts; collector warnings). Protobuf is compact, fast and extends without
//! migrations. Resources are stored once each, as the OTLP `Resource` message.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1 as pb;
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as PbEvent, Link as PbLink};
use prost::Message;
use rusqlite::Row;

use super::{backend, to_u64};
use crate::format::convert;
use crate::model::{
    KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};
use crate::store::StoreError;

/// The protobuf stored in `spans.detail`.
#[derive(Clone, PartialEq, prost::Message)]
struct SpanDetail {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<pb::KeyValue>,
    #[prost(message, repeated, tag = "2")]
    events: Vec<PbEvent>,
    #[prost(message, repeated, tag = "3")]
    links: Vec<PbLink>,
    #[prost(string, tag = "4")]
    status_message: String,
    #[prost(string, tag = "5")]
    trace_state: String,
    #[prost(fixed32, tag = "6")]
    flags: u32,
    #[prost(uint32, tag = "7")]
    dropped_attributes_count: u32,
    #[prost(uint32, tag = "8")]
    dropped_events_count: u32,
    #[prost(uint32, tag = "9")]
    dropped_links_count: u32,
    #[prost(string, repeated, tag = "10")]
    warnings: Vec<String>,
}

/// The bytes of `spans.detail` for `span`.
pub(super) fn encode_detail(span: &Span) -> Vec<u8> {
    SpanDetail {
        attributes: convert::attributes_to_pb(&span.attributes),
        events: span.events.iter().map(convert::event_to_pb).collect(),
        links: span.links.iter().map(convert::link_to_pb).collect(),
        status_message: span.status.message.clone(),
        trace_state: span.trace_state.clone(),
        flags: span.flags,
        dropped_attributes_count: span.dropped_attributes_count,
        dropped_events_count: span.dropped_events_count,
        dropped_links_count: span.dropped_links_count,
        warnings: span.warnings.clone(),
    }
    .encode_to_vec()
}

/// The attributes of an encoded [`SpanDetail`] (index maintenance reads only these).
pub(super) fn detail_attributes(bytes: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
    let detail = SpanDetail::decode(bytes).map_err(backend)?;
    Ok(convert::attributes_from_pb(detail.attributes))
}

/// The bytes of `resources.encoded`: the OTLP `Resource` message.
pub(super) fn encode_resource(resource: &Resource) -> Vec<u8> {
    convert::resource_to_pb(resource).encode_to_vec()
}

/// A stored id blob as a fixed-size array.
pub(super) fn blob_array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], StoreError> {
    bytes
        .try_into()
        .map_err(|_| backend(format!("stored id has {} bytes, expected {N}", bytes.len())))
}

/// A `spans` row joined to its resource (the columns of [`read_trace`](super::read::read_trace))
/// as a [`Span`]; `resources` and `scopes` share the decoded resources and scopes of a trace.
pub(super) fn row_to_span(
    row: &Row<'_>,
    trace_id: TraceId,
    resources: &mut HashMap<i64, Arc<Resource>>,
    scopes: &mut HashMap<(String, String), Arc<Scope>>,
) -> Result<Span, StoreError> {
    let span_id: Vec<u8> = row.get(0).map_err(backend)?;
    let parent: Option<Vec<u8>> = row.get(2).map_err(backend)?;
    let resource_id: i64 = row.get(8).map_err(backend)?;
    let resource = match resources.get(&resource_id) {
        Some(r) => Arc::clone(r),
        None => {
            let encoded: Option<Vec<u8>> = row.get(12).map_err(backend)?;
            let pb = match encoded {
                Some(bytes) => Some(PbResource::decode(&bytes[..]).map_err(backend)?),
                None => None,
            };
            let r = Arc::new(convert::resource_from_pb(pb));
            resources.insert(resource_id, Arc::clone(&r));
            r
        }
    };
    let scope_key: (String, String) = (row.get(9).map_err(backend)?, row.get(10).map_err(backend)?);
    let scope = Arc::clone(scopes.entry(scope_key.clone()).or_insert_with(|| {
        Arc::new(Scope {
            name: scope_key.0,
            version: scope_key.1,
        })
    }));
    let detail_bytes: Vec<u8> = row.get(11).map_err(backend)?;
    let detail = SpanDetail::decode(&detail_bytes[..]).map_err(backend)?;
    let start = to_u64(row.get(5).map_err(backend)?);
    let duration = to_u64(row.get(6).map_err(backend)?);
    let mut links = Vec::with_capacity(detail.links.len());
    for l in detail.links {
        links.push(convert::link_from_pb(l).map_err(backend)?);
    }
    Ok(Span {
        trace_id,
        span_id: SpanId(blob_array::<8>(&span_id)?),
        parent_span_id: match parent {
            Some(p) => Some(SpanId(blob_array::<8>(&p)?)),
            None => None,
        },
        trace_state: detail.trace_state,
        flags: detail.flags,
        name: row.get(4).map_err(backend)?,
        kind: SpanKind::from_i32(row.get(1).map_err(backend)?),
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(duration),
        status: Status {
            code: StatusCode::from_i32(row.get(7).map_err(backend)?),
            message: detail.status_message,
        },
        attributes: convert::attributes_from_pb(detail.attributes),
        events: detail
            .events
            .into_iter()
            .map(convert::event_from_pb)
            .collect(),
        links,
        dropped_attributes_count: detail.dropped_attributes_count,
        dropped_events_count: detail.dropped_events_count,
        dropped_links_count: detail.dropped_links_count,
        resource,
        scope,
        service_name: row.get(3).map_err(backend)?,
        warnings: detail.warnings,
    })
}
