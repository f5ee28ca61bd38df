//! One span as a row of `spans_local` ([`SPAN_COLUMNS`](super::sql::SPAN_COLUMNS), in that
//! order) and back. The columns searches read are plain columns (ids as `FixedString`, times
//! in unix nanoseconds, kind and status as their OTLP numbers, indexed attributes as the
//! parallel arrays `attr_keys` / `attr_values`); everything else is `detail`, a protobuf
//! message of our own ([`SpanDetail`]) that round-trips every field of [`Span`].

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1 as pb;
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as PbEvent, Link as PbLink};
use prost::Message;

use super::rowbinary::{Reader, Writer};
use crate::format::convert;
use crate::model::{Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId};
use crate::store::{StoreError, attr_index_text};

/// Nanoseconds in a day (the `received_day` partition).
pub(super) const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// The protobuf stored in `spans_local.detail`: the fields no query filters on.
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
    #[prost(message, optional, tag = "11")]
    resource: Option<PbResource>,
    #[prost(string, tag = "12")]
    scope_name: String,
    #[prost(string, tag = "13")]
    scope_version: String,
}

/// The `Date` (days since 1970-01-01) of a unix-nanosecond instant.
pub(super) fn day_of(unix_nano: u64) -> u16 {
    u16::try_from(unix_nano / DAY_NS).unwrap_or(u16::MAX)
}

/// Appends `span`'s row, received at `received_ns`, to `w`.
pub(super) fn write_span(w: &mut Writer, span: &Span, received_ns: u64) {
    w.u16(day_of(received_ns));
    w.u64(received_ns);
    w.fixed(&span.trace_id.0);
    w.fixed(&span.span_id.0);
    w.fixed(&span.parent_span_id.map_or([0; 8], |p| p.0));
    w.u8(u8::from(span.parent_span_id.is_some()));
    w.u8(u8::try_from(span.kind.as_i32()).unwrap_or(0));
    w.u8(u8::try_from(span.status.code.as_i32()).unwrap_or(0));
    w.bytes(span.service_name.as_bytes());
    w.bytes(span.name.as_bytes());
    w.u64(span.start_time_unix_nano);
    w.u64(span.end_time_unix_nano);
    w.u64(span.duration_ns());
    let http = span.http_status();
    w.i64(http.unwrap_or(0));
    w.u8(u8::from(http.is_some()));
    let indexed: Vec<(&str, std::borrow::Cow<'_, str>)> = span
        .attributes
        .iter()
        .filter_map(|kv| attr_index_text(&kv.value).map(|v| (kv.key.as_str(), v)))
        .collect();
    w.strings(indexed.iter().map(|(k, _)| *k));
    w.strings(indexed.iter().map(|(_, v)| v.as_ref()));
    let detail = SpanDetail {
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
        resource: Some(convert::resource_to_pb(&span.resource)),
        scope_name: span.scope.name.clone(),
        scope_version: span.scope.version.clone(),
    };
    w.bytes(&detail.encode_to_vec());
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored span cannot be decoded: {e}"))
}

/// Reads one row of [`FULL_SPAN_COLUMNS`](super::sql::FULL_SPAN_COLUMNS) as a [`Span`].
///
/// # Errors
/// [`StoreError::Backend`] when the row is short or `detail` does not decode.
pub(super) fn read_span(r: &mut Reader<'_>) -> Result<Span, StoreError> {
    let trace_id = TraceId(r.fixed::<16>()?);
    let span_id = SpanId(r.fixed::<8>()?);
    let parent = r.fixed::<8>()?;
    let has_parent = r.u8()? != 0;
    let kind = SpanKind::from_i32(i32::from(r.u8()?));
    let status = StatusCode::from_i32(i32::from(r.u8()?));
    let service_name = r.string()?;
    let name = r.string()?;
    let start = r.u64()?;
    let end = r.u64()?;
    let detail = SpanDetail::decode(r.bytes()?).map_err(backend)?;
    let mut links = Vec::with_capacity(detail.links.len());
    for l in detail.links {
        links.push(convert::link_from_pb(l).map_err(backend)?);
    }
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id: has_parent.then_some(SpanId(parent)),
        trace_state: detail.trace_state,
        flags: detail.flags,
        name,
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        status: Status {
            code: status,
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
        resource: Arc::new(convert::resource_from_pb(detail.resource)),
        scope: Arc::new(Scope {
            name: detail.scope_name,
            version: detail.scope_version,
        }),
        service_name,
        warnings: detail.warnings,
    })
}

/// What a summary needs of a span (a row of [`SUMMARY_COLUMNS`](super::sql::SUMMARY_COLUMNS)),
/// as a [`Span`] carrying only those fields (the HTTP status as its one attribute).
///
/// # Errors
/// [`StoreError::Backend`] when the row is short.
pub(super) fn read_summary_span(r: &mut Reader<'_>) -> Result<Span, StoreError> {
    let trace_id = TraceId(r.fixed::<16>()?);
    let span_id = SpanId(r.fixed::<8>()?);
    let has_parent = r.u8()? != 0;
    let kind = SpanKind::from_i32(i32::from(r.u8()?));
    let status = StatusCode::from_i32(i32::from(r.u8()?));
    let service_name = r.string()?;
    let name = r.string()?;
    let start = r.u64()?;
    let end = r.u64()?;
    let http = r.i64()?;
    let has_http = r.u8()? != 0;
    let mut span = Span::new(trace_id, span_id, name);
    // Only `is_some` matters to a summary; the value is never read back from here.
    span.parent_span_id = has_parent.then_some(span_id);
    span.kind = kind;
    span.status.code = status;
    span.service_name = service_name;
    span.start_time_unix_nano = start;
    span.end_time_unix_nano = end;
    if has_http {
        span.attributes.push(crate::model::KeyValue::new(
            "http.response.status_code",
            crate::model::AttrValue::Int(http),
        ));
    }
    Ok(span)
}
