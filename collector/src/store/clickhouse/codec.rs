//! One span as a row of `spans_local` ([`SPAN_COLUMNS`](super::sql::SPAN_COLUMNS), in that
//! order) and back, and as a row of `search_local`
//! ([`SEARCH_COLUMNS`](super::sql::SEARCH_COLUMNS)). The columns reads filter on are plain
//! columns (ids as `FixedString`, times in unix nanoseconds, kind and status as their OTLP
//! numbers); everything else is `detail` ([`SpanDetail`], shared with the SQLite backend,
//! with the resource and scope in it too). The indexed attributes, as the parallel arrays
//! `attr_key_hashes` (the keys' `cityHash64`, schema 8) / `attr_values`, are in the search
//! row only (schema 6): attribute searches read them there, and a whole span's come from
//! `detail`.

use std::sync::Arc;

use super::cityhash::city_hash64;
use super::rowbinary::{Reader, Writer};
use crate::format::convert;
use crate::model::{Scope, Span, SpanId, SpanKind, StatusCode, TraceId};
use crate::store::detail::SpanDetail;
use crate::store::{StoreError, attr_index_text};

/// Nanoseconds in a day (the `received_day` partition).
pub(super) const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// The `Date` (days since 1970-01-01) of a unix-nanosecond instant.
pub(super) fn day_of(unix_nano: u64) -> u16 {
    u16::try_from(unix_nano / DAY_NS).unwrap_or(u16::MAX)
}

/// Appends `span`'s `spans_local` row, received at `received_ns`, to `w`; `resource_and_scope`
/// is [`SpanDetail::encode_resource_and_scope`] of `span` (shared by the spans of a request);
/// `scratch` is a buffer the detail is written to first (its length precedes it), reused from
/// span to span.
pub(super) fn write_span(
    w: &mut Writer,
    span: &Span,
    received_ns: u64,
    resource_and_scope: &[u8],
    scratch: &mut Vec<u8>,
) {
    w.u16(day_of(received_ns));
    w.u64(received_ns);
    w.fixed(&span.trace_id.0);
    w.fixed(&span.span_id.0);
    w.fixed(&span.parent_span_id.map_or([0; 8], |p| p.0));
    w.u8(u8::from(span.parent_span_id.is_some()));
    w.u8(kind_code(span));
    w.u8(status_code(span));
    w.bytes(span.service_name.as_bytes());
    w.bytes(span.name.as_bytes());
    w.u64(span.start_time_unix_nano);
    w.u64(span.end_time_unix_nano);
    w.u64(span.duration_ns());
    let http = span.http_status();
    w.i64(http.unwrap_or(0));
    w.u8(u8::from(http.is_some()));
    scratch.clear();
    SpanDetail::encode_into(span, scratch);
    w.len(scratch.len() + resource_and_scope.len());
    w.fixed(scratch);
    w.fixed(resource_and_scope);
}

/// Appends `span`'s `search_local` row ([`SEARCH_COLUMNS`](super::sql::SEARCH_COLUMNS)),
/// received at `received_ns`, to `w`: the indexed attributes (those
/// [`attr_index_text`] gives a text for) as the parallel arrays `attr_key_hashes` (each key's
/// `cityHash64`, schema 8) / `attr_values`.
pub(super) fn write_search(w: &mut Writer, span: &Span, received_ns: u64) {
    w.u16(day_of(received_ns));
    w.bytes(span.service_name.as_bytes());
    w.u64(span.start_time_unix_nano);
    w.fixed(&span.trace_id.0);
    w.bytes(span.name.as_bytes());
    w.u8(kind_code(span));
    w.u8(status_code(span));
    w.u64(span.duration_ns());
    let indexed: Vec<(&str, std::borrow::Cow<'_, str>)> = span
        .attributes
        .iter()
        .filter_map(|kv| attr_index_text(&kv.value).map(|v| (kv.key.as_str(), v)))
        .collect();
    w.len(indexed.len());
    for (key, _) in &indexed {
        w.u64(city_hash64(key.as_bytes()));
    }
    w.len(indexed.len());
    for (_, value) in &indexed {
        w.bytes(value.as_bytes());
    }
}

fn kind_code(span: &Span) -> u8 {
    u8::try_from(span.kind.as_i32()).unwrap_or(0)
}

fn status_code(span: &Span) -> u8 {
    u8::try_from(span.status.code.as_i32()).unwrap_or(0)
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
    let mut detail = SpanDetail::decode_bytes(r.bytes()?)?;
    let mut span = Span::new(trace_id, span_id, name);
    span.parent_span_id = has_parent.then_some(SpanId(parent));
    span.kind = kind;
    span.start_time_unix_nano = start;
    span.end_time_unix_nano = end;
    span.status.code = status;
    span.service_name = service_name.into();
    span.resource = Arc::new(convert::resource_from_pb(detail.resource.take()));
    span.scope = Arc::new(Scope {
        name: std::mem::take(&mut detail.scope_name),
        version: std::mem::take(&mut detail.scope_version),
    });
    detail.fill(&mut span)?;
    Ok(span)
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
    span.service_name = service_name.into();
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
