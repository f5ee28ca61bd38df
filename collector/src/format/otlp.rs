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

/// An id as the encoding carries it, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireId {
    /// Protobuf: raw bytes.
    Bytes(Vec<u8>),
    /// JSON: hex digits (any case).
    Hex(String),
}

impl WireId {
    fn trace_id(&self) -> Result<TraceId, IdError> {
        match self {
            Self::Bytes(b) => TraceId::from_slice(b),
            Self::Hex(h) => TraceId::from_hex(h),
        }
    }

    fn span_id(&self) -> Result<SpanId, IdError> {
        match self {
            Self::Bytes(b) => SpanId::from_slice(b),
            Self::Hex(h) => SpanId::from_hex(h),
        }
    }

    /// A parent id: empty, or the all-zero id of the right length, means none.
    fn parent_span_id(&self) -> Result<Option<SpanId>, IdError> {
        let none = match self {
            Self::Bytes(b) => b.is_empty() || (b.len() == SpanId::LEN && b.iter().all(|x| *x == 0)),
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
    pub(crate) name: String,
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
/// request order from 0 for the partial-success messages.
pub(crate) fn walk<R, S, P>(resource_spans: R, names: IdNames, limits: &SpanLimits) -> Decoded
where
    R: IntoIterator<Item = OtlpResourceSpans<S>>,
    S: IntoIterator<Item = (Scope, P)>,
    P: IntoIterator<Item = OtlpSpan>,
{
    let mut out = Decoded::default();
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
        service_name: service_name.to_owned(),
        warnings,
    })
}
