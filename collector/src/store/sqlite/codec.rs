//! The encoding of a span row: the columns a search or the index needs are plain SQL columns;
//! the rest is `detail` ([`SpanDetail`](crate::store::detail::SpanDetail), fields 1–10, shared
//! with the ClickHouse backend). Resources are stored once each, as the OTLP `Resource` message,
//! and scopes as columns.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use prost::Message;
use rusqlite::Row;

use super::{backend, to_u64};
use crate::format::convert;
use crate::model::{KeyValue, Resource, Scope, Span, SpanId, SpanKind, StatusCode, TraceId};
use crate::store::StoreError;
use crate::store::detail::SpanDetail;

/// The bytes of `spans.detail` for `span` (resource and scope live in their own tables).
pub(super) fn encode_detail(span: &Span) -> Vec<u8> {
    SpanDetail::encode(span, false)
}

/// The attributes of encoded detail bytes (index maintenance reads only these).
pub(super) fn detail_attributes(bytes: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
    SpanDetail::attributes_of(bytes)
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
    let detail = SpanDetail::decode_bytes(&detail_bytes)?;
    let start = to_u64(row.get(5).map_err(backend)?);
    let duration = to_u64(row.get(6).map_err(backend)?);
    let mut span = Span::new(
        trace_id,
        SpanId(blob_array::<8>(&span_id)?),
        row.get::<_, String>(4).map_err(backend)?,
    );
    span.parent_span_id = match parent {
        Some(p) => Some(SpanId(blob_array::<8>(&p)?)),
        None => None,
    };
    span.kind = SpanKind::from_i32(row.get(1).map_err(backend)?);
    span.start_time_unix_nano = start;
    span.end_time_unix_nano = start.saturating_add(duration);
    span.status.code = StatusCode::from_i32(row.get(7).map_err(backend)?);
    span.resource = resource;
    span.scope = scope;
    span.service_name = row.get(3).map_err(backend)?;
    detail.fill(&mut span)?;
    Ok(span)
}
