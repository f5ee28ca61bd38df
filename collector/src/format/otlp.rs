//! # The OTLP trace data model, shared by both encodings (interop.md §1)
//!
//! OTLP/protobuf ([`super::otlp_proto`]) and OTLP/JSON ([`super::otlp_json`]) differ only in
//! how values are spelled: ids as bytes or hex, strings that may be invalid UTF-8 or not,
//! enums as numbers or names. Each decoder reads its encoding into the [`OtlpSpan`]s of this
//! module; from there one walk ([`walk`]) turns resource → scope → span into
//! [`Span`](crate::model::Span)s: ids validated (a bad span id rejects its span alone, through
//! partial success; a link with bad ids is dropped with a warning), the resource's warnings
//! passed on to its spans, every string bounded ([`sanitize`](crate::sanitize)).

use std::sync::Arc;

use super::Decoded;
use crate::model::{
    Event, IdError, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, TraceId,
};
use crate::sanitize::{self, SpanLimits};

/// A protobuf id field as read, without an allocation: its length in bytes, and its bytes
/// when there are at most 16 (a longer id is invalid for its length alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawId {
    len: usize,
    bytes: [u8; 16],
}

impl RawId {
    /// The id field's bytes, copied.
    pub(crate) fn new(bytes: &[u8]) -> Self {
        let mut id = Self {
            len: bytes.len(),
            bytes: [0; 16],
        };
        if let Some(head) = id.bytes.get_mut(..bytes.len()) {
            head.copy_from_slice(bytes);
        }
        id
    }

    /// The bytes, or `None` past 16.
    fn get(&self) -> Option<&[u8]> {
        self.bytes.get(..self.len)
    }

    /// What `from_slice` says of a slice of this id's length when it is too long to hold.
    fn too_long(&self, expected: usize) -> IdError {
        IdError::Length {
            expected,
            actual: self.len,
            unit: "bytes",
        }
    }
}

/// An id as the encoding carries it, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireId {
    /// Protobuf: raw bytes.
    Bytes(RawId),
    /// JSON: hex digits (any case).
    Hex(String),
}

impl WireId {
    fn trace_id(&self) -> Result<TraceId, IdError> {
        match self {
            Self::Bytes(b) => b
                .get()
                .map_or_else(|| Err(b.too_long(TraceId::LEN)), TraceId::from_slice),
            Self::Hex(h) => TraceId::from_hex(h),
        }
    }

    fn span_id(&self) -> Result<SpanId, IdError> {
        match self {
            Self::Bytes(b) => b
                .get()
                .map_or_else(|| Err(b.too_long(SpanId::LEN)), SpanId::from_slice),
            Self::Hex(h) => SpanId::from_hex(h),
        }
    }

    /// A parent id: empty, or the all-zero id of the right length, means none.
    fn parent_span_id(&self) -> Result<Option<SpanId>, IdError> {
        let none = match self {
            Self::Bytes(b) => {
                b.len == 0
                    || (b.len == SpanId::LEN && b.bytes[..SpanId::LEN].iter().all(|x| *x == 0))
            }
            Self::Hex(h) => {
                h.is_empty() || (h.len() == 2 * SpanId::LEN && h.bytes().all(|x| x == b'0'))
            }
        };
        if none {
            Ok(None)
        } else {
            self.span_id().map(Some)
        }
    }
}

/// How an encoding names the id fields in messages (`traceId` in JSON, `trace_id` in
/// protobuf).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdNames {
    /// The trace id field.
    pub(crate) trace_id: &'static str,
    /// The span id field.
    pub(crate) span_id: &'static str,
    /// The parent span id field.
    pub(crate) parent_span_id: &'static str,
}

/// A span link as decoded, ids not yet validated.
#[derive(Debug, Clone)]
pub(crate) struct OtlpLink {
    pub(crate) trace_id: WireId,
    pub(crate) span_id: WireId,
    pub(crate) trace_state: String,
    pub(crate) attributes: Vec<KeyValue>,
}

/// A span as decoded from either encoding: values converted, ids not yet validated.
#[derive(Debug, Clone)]
pub(crate) struct OtlpSpan {
    pub(crate) trace_id: WireId,
    pub(crate) span_id: WireId,
    pub(crate) parent_span_id: WireId,
    pub(crate) trace_state: String,
    pub(crate) flags: u32,
    pub(crate) name: crate::model::Text,
    pub(crate) kind: SpanKind,
    pub(crate) start_time_unix_nano: u64,
    pub(crate) end_time_unix_nano: u64,
    pub(crate) status: Status,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) events: Vec<Event>,
    pub(crate) links: Vec<OtlpLink>,
    pub(crate) dropped_attributes_count: u32,
    pub(crate) dropped_events_count: u32,
    pub(crate) dropped_links_count: u32,
    /// What the decoder changed (emptied values, replaced invalid UTF-8).
    pub(crate) warnings: Vec<String>,
}

/// One `ResourceSpans` as decoded: the resource, what its decoding warned about (passed on to
/// each of its spans), and its scopes with their spans.
pub(crate) struct OtlpResourceSpans<S> {
    pub(crate) resource: Resource,
    pub(crate) warnings: Vec<String>,
    pub(crate) scope_spans: S,
}

/// The one walk over resource → scope → span (see the module docs). Spans are numbered in
/// request order from 0 for the partial-success messages; `expected_spans` (how many the
/// request holds, when the decoder knows it, else 0) sizes the output before it fills.
pub(crate) fn walk<R, S, P>(
    resource_spans: R,
    names: IdNames,
    limits: &SpanLimits,
    expected_spans: usize,
) -> Decoded
where
    R: IntoIterator<Item = OtlpResourceSpans<S>>,
    S: IntoIterator<Item = (Scope, P)>,
    P: IntoIterator<Item = OtlpSpan>,
{
    let mut out = Decoded::default();
    out.spans.reserve(expected_spans);
    let mut index = 0usize;
    for rs in resource_spans {
        let mut resource = rs.resource;
        sanitize::sanitize_resource(&mut resource, limits);
        let service_name = resource.service_name().to_owned();
        let resource = Arc::new(resource);
        for (mut scope, spans) in rs.scope_spans {
            sanitize::sanitize_scope(&mut scope, limits);
            let scope = Arc::new(scope);
            for wire in spans {
                let i = index;
                index += 1;
                match convert_span(wire, names, &resource, &scope, &service_name) {
                    Ok(mut span) => {
                        span.warnings.extend(rs.warnings.iter().cloned());
                        sanitize::sanitize(&mut span, limits);
                        out.accept(i, span);
                    }
                    Err(reason) => out.reject(i, reason),
                }
            }
        }
    }
    out
}

/// Validates the ids and builds the span; `Err` is the reason it is rejected.
fn convert_span(
    s: OtlpSpan,
    names: IdNames,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    service_name: &str,
) -> Result<Span, String> {
    let trace_id = s
        .trace_id
        .trace_id()
        .map_err(|e| format!("{} {e}", names.trace_id))?;
    let span_id = s
        .span_id
        .span_id()
        .map_err(|e| format!("{} {e}", names.span_id))?;
    let parent_span_id = s
        .parent_span_id
        .parent_span_id()
        .map_err(|e| format!("{} {e}", names.parent_span_id))?;
    let mut warnings = s.warnings;
    let mut links = Vec::with_capacity(s.links.len());
    let mut dropped_links = s.dropped_links_count;
    for link in s.links {
        let ids = link
            .trace_id
            .trace_id()
            .map_err(|e| format!("link {} {e}", names.trace_id))
            .and_then(|t| {
                link.span_id
                    .span_id()
                    .map(|s| (t, s))
                    .map_err(|e| format!("link {} {e}", names.span_id))
            });
        match ids {
            Ok((trace_id, span_id)) => links.push(Link {
                trace_id,
                span_id,
                trace_state: link.trace_state,
                attributes: link.attributes,
            }),
            Err(reason) => {
                warnings.push(format!("{reason}; link dropped"));
                dropped_links = dropped_links.saturating_add(1);
            }
        }
    }
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: s.trace_state,
        flags: s.flags,
        name: s.name,
        kind: s.kind,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        status: s.status,
        attributes: s.attributes,
        events: s.events,
        links,
        dropped_attributes_count: s.dropped_attributes_count,
        dropped_events_count: s.dropped_events_count,
        dropped_links_count: dropped_links,
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        service_name: service_name.into(),
        warnings,
    })
}
