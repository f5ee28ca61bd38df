//! A span's `detail`: the protobuf message of our own in which every backend stores the fields
//! no query filters on (attributes, events and links as OTLP messages; status message; trace
//! state; flags; the three dropped counts; collector warnings; fields 1–10). ClickHouse also
//! keeps the resource and scope there (fields 11–13); SQLite stores those once each in tables
//! of their own and leaves the fields empty. Protobuf is compact, fast and extends without
//! migrations: a field added later reads as its default in rows written before.
//!
//! Attributes are written to field 14 ([`CompactAttribute`]: a semantic-convention key as a
//! small number from a static table, other keys as text; the value one message level
//! flatter), events to field 15 ([`CompactEvent`]: their attributes the same way). Rows
//! written before keep them in fields 1 and 2 (OTLP `KeyValue`s and `Event`s); a reader takes
//! field 1 then field 14, field 2 then field 15. A collector built before fields 14 and 15
//! skips them as unknown fields: after a downgrade, newer rows show no attributes or events.

mod attrs;
mod encode;
mod keys;
#[cfg(test)]
mod tests;

use opentelemetry_proto::tonic::common::v1 as pb;
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as PbEvent, Link as PbLink};
use prost::Message;

use crate::format::convert;
use crate::model::{KeyValue, Span};
use crate::store::StoreError;
use attrs::{CompactAttribute, CompactEvent};

/// The protobuf stored as a span's `detail` (SQLite `spans.detail`, ClickHouse
/// `spans_local.detail`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SpanDetail {
    /// The span's attributes as OTLP `KeyValue`s (rows written before field 14; never written
    /// now).
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<pb::KeyValue>,
    /// The span's events as OTLP `Event`s (rows written before field 15; never written now).
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
    /// The span's resource (ClickHouse only).
    #[prost(message, optional, tag = "11")]
    pub(crate) resource: Option<PbResource>,
    /// The span's instrumentation scope name (ClickHouse only).
    #[prost(string, tag = "12")]
    pub(crate) scope_name: String,
    /// The span's instrumentation scope version (ClickHouse only).
    #[prost(string, tag = "13")]
    pub(crate) scope_version: String,
    /// The span's attributes, in order (rows written since field 14 was added).
    #[prost(message, repeated, tag = "14")]
    compact_attributes: Vec<CompactAttribute>,
    /// The span's events, in order (rows written since field 15 was added).
    #[prost(message, repeated, tag = "15")]
    compact_events: Vec<CompactEvent>,
}

/// The `store` error for a stored span that does not decode.
pub(crate) fn undecodable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored span cannot be decoded: {e}"))
}

impl SpanDetail {
    /// The detail bytes of `span`; with `resource_and_scope`, fields 11–13 too. (The stores
    /// append with [`SpanDetail::encode_into`].)
    #[cfg(test)]
    pub(crate) fn encode(span: &Span, resource_and_scope: bool) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        Self::encode_into(span, &mut buf);
        if resource_and_scope {
            buf.extend_from_slice(&Self::encode_resource_and_scope(span));
        }
        buf
    }

    /// Appends the detail bytes of `span` without fields 11–13 to `buf`: the bytes of
    /// [`encode`](Self::encode)`(span, false)`, written from the span itself without building
    /// this message (`encode.rs`).
    pub(crate) fn encode_into(span: &Span, buf: &mut Vec<u8>) {
        encode::write_detail(span, buf);
    }

    /// The message prost's derived encoder writes for `span` (the test oracle of
    /// [`encode_into`](Self::encode_into), and the encoder before it).
    #[cfg(test)]
    pub(crate) fn encode_with_prost(span: &Span, resource_and_scope: bool) -> Vec<u8> {
        let (resource, scope_name, scope_version) = if resource_and_scope {
            (
                Some(convert::resource_to_pb(&span.resource)),
                span.scope.name.clone(),
                span.scope.version.clone(),
            )
        } else {
            (None, String::new(), String::new())
        };
        SpanDetail {
            attributes: Vec::new(),
            events: Vec::new(),
            links: span.links.iter().map(convert::link_to_pb).collect(),
            status_message: span.status.message.clone(),
            trace_state: span.trace_state.clone(),
            flags: span.flags,
            dropped_attributes_count: span.dropped_attributes_count,
            dropped_events_count: span.dropped_events_count,
            dropped_links_count: span.dropped_links_count,
            warnings: span.warnings.clone(),
            resource,
            scope_name,
            scope_version,
            compact_attributes: span
                .attributes
                .iter()
                .map(CompactAttribute::from_model)
                .collect(),
            compact_events: span.events.iter().map(CompactEvent::from_model).collect(),
        }
        .encode_to_vec()
    }

    /// Fields 11–13 alone (the resource, scope name and scope version): appended to
    /// [`encode`](Self::encode)`(span, false)`, the same message as `encode(span, true)` (a
    /// protobuf message is its fields one after the other, in any order), so the spans of a
    /// request, which share one resource and scope, encode them once (ClickHouse's writer).
    pub(crate) fn encode_resource_and_scope(span: &Span) -> Vec<u8> {
        SpanDetail {
            resource: Some(convert::resource_to_pb(&span.resource)),
            scope_name: span.scope.name.clone(),
            scope_version: span.scope.version.clone(),
            ..SpanDetail::default()
        }
        .encode_to_vec()
    }

    /// The detail bytes `span` had before fields 14 and 15: its attributes and events as OTLP
    /// `KeyValue`s and `Event`s in fields 1 and 2 (tests of rows written by older versions).
    #[cfg(test)]
    pub(crate) fn encode_as_older_versions(span: &Span) -> Vec<u8> {
        let mut detail = Self::decode(&Self::encode(span, false)[..]).expect("own bytes decode");
        detail.attributes = convert::attributes_to_pb(&span.attributes);
        detail.compact_attributes.clear();
        detail.events = span.events.iter().map(convert::event_to_pb).collect();
        detail.compact_events.clear();
        detail.encode_to_vec()
    }

    /// Decodes detail bytes.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the bytes are not a `SpanDetail` message.
    pub(crate) fn decode_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        Self::decode(bytes).map_err(undecodable)
    }

    /// Only the attributes of detail bytes (index maintenance reads nothing else).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the bytes are not a `SpanDetail` message.
    pub(crate) fn attributes_of(bytes: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        Ok(Self::decode_bytes(bytes)?.take_attributes())
    }

    /// The attributes, in order: field 1 (older rows), then field 14.
    fn take_attributes(&mut self) -> Vec<KeyValue> {
        let mut out = convert::attributes_from_pb(std::mem::take(&mut self.attributes));
        out.reserve(self.compact_attributes.len());
        out.extend(
            std::mem::take(&mut self.compact_attributes)
                .into_iter()
                .map(CompactAttribute::into_model),
        );
        out
    }

    /// Sets the detail fields of `span` (fields 1–10; the caller takes the resource and scope
    /// first where it stored them here).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when a stored link's ids are malformed.
    pub(crate) fn fill(mut self, span: &mut Span) -> Result<(), StoreError> {
        span.attributes = self.take_attributes();
        let mut links = Vec::with_capacity(self.links.len());
        for l in self.links {
            links.push(convert::link_from_pb(l).map_err(undecodable)?);
        }
        span.links = links;
        span.trace_state = self.trace_state;
        span.flags = self.flags;
        span.status.message = self.status_message;
        let mut events: Vec<_> = std::mem::take(&mut self.events)
            .into_iter()
            .map(convert::event_from_pb)
            .collect();
        events.extend(
            self.compact_events
                .into_iter()
                .map(CompactEvent::into_model),
        );
        span.events = events;
        span.dropped_attributes_count = self.dropped_attributes_count;
        span.dropped_events_count = self.dropped_events_count;
        span.dropped_links_count = self.dropped_links_count;
        span.warnings = self.warnings;
        Ok(())
    }
}
