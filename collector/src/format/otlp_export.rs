//! Model → OTLP protobuf: [`export_request`] turns stored-form [`Span`]s back into one
//! `ExportTraceServiceRequest` (OTLP trace proto, `opentelemetry/proto/trace/v1/trace.proto`).
//!
//! Used where the collector itself sends spans on over OTLP/HTTP (forwarding to the peer that
//! owns a trace, [`crate::ingest::peers`]). Spans that share a resource (the same [`Arc`]) and
//! scope stay in one `ResourceSpans` / `ScopeSpans`, as they arrived. What the model does not
//! keep is not sent: schema URLs, scope attributes, per-event and per-link dropped counts, and
//! the collector's own sanitizer warnings (the receiver sanitizes again).

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PbSpan, Status};

use super::convert;
use crate::model::{Resource, Scope, Span};

/// The spans of one resource, by scope.
type ScopeGroups = Vec<(Arc<Scope>, Vec<PbSpan>)>;

/// One model span → OTLP `Span` (ids as raw bytes, times in unix nanoseconds).
pub(crate) fn span_to_pb(span: &Span) -> PbSpan {
    PbSpan {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        trace_state: span.trace_state.clone(),
        parent_span_id: span
            .parent_span_id
            .map(|p| p.0.to_vec())
            .unwrap_or_default(),
        flags: span.flags,
        name: span.name.to_string(),
        kind: span.kind.as_i32(),
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes: convert::attributes_to_pb(&span.attributes),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span.events.iter().map(convert::event_to_pb).collect(),
        dropped_events_count: span.dropped_events_count,
        links: span.links.iter().map(convert::link_to_pb).collect(),
        dropped_links_count: span.dropped_links_count,
        status: Some(Status {
            message: span.status.message.clone(),
            code: span.status.code.as_i32(),
        }),
    }
}

/// The spans as one OTLP export request, grouped by resource and scope in first-seen order
/// (consecutive spans of one resource and scope, the usual case, cost one comparison each).
pub(crate) fn export_request<'a>(
    spans: impl IntoIterator<Item = &'a Span>,
) -> ExportTraceServiceRequest {
    let mut out: Vec<(Arc<Resource>, ScopeGroups)> = Vec::new();
    for span in spans {
        let group = match out
            .iter()
            .rposition(|(r, _)| Arc::ptr_eq(r, &span.resource) || **r == *span.resource)
        {
            Some(i) => &mut out[i].1,
            None => {
                out.push((Arc::clone(&span.resource), Vec::new()));
                &mut out.last_mut().expect("just pushed").1
            }
        };
        let scoped = match group
            .iter()
            .rposition(|(s, _)| Arc::ptr_eq(s, &span.scope) || **s == *span.scope)
        {
            Some(i) => &mut group[i].1,
            None => {
                group.push((Arc::clone(&span.scope), Vec::new()));
                &mut group.last_mut().expect("just pushed").1
            }
        };
        scoped.push(span_to_pb(span));
    }
    ExportTraceServiceRequest {
        resource_spans: out
            .into_iter()
            .map(|(resource, scopes)| ResourceSpans {
                resource: Some(convert::resource_to_pb(&resource)),
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans)| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: scope.name.clone(),
                            version: scope.version.clone(),
                            ..InstrumentationScope::default()
                        }),
                        spans,
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttrValue, KeyValue, SpanId, SpanKind, StatusCode, TraceId};
    use prost::Message;

    fn span(trace: u8, id: u8, resource: &Arc<Resource>) -> Span {
        let mut s = Span::new(TraceId([trace; 16]), SpanId([id; 8]), format!("op{id}"));
        s.resource = Arc::clone(resource);
        s.kind = SpanKind::Server;
        s.start_time_unix_nano = 1_000;
        s.end_time_unix_nano = 5_000;
        s.parent_span_id = (id > 1).then_some(SpanId([1; 8]));
        s.status.code = StatusCode::Error;
        s.status.message = "boom".into();
        s.attributes = vec![KeyValue {
            key: "http.route".into(),
            value: AttrValue::String("/orders".into()),
        }];
        s
    }

    #[test]
    fn round_trips_through_the_ingest_decoder() {
        let svc = |name: &str| {
            Arc::new(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: AttrValue::String(name.into()),
                }],
            })
        };
        let (a, b) = (svc("frontend"), svc("order"));
        let spans = vec![span(1, 1, &a), span(1, 2, &b), span(2, 3, &a)];
        let request = export_request(&spans);
        assert_eq!(request.resource_spans.len(), 2, "grouped by resource");
        let bytes = request.encode_to_vec();
        let decoded = super::super::otlp_proto::decode(&bytes, &Default::default()).unwrap();
        assert_eq!(decoded.rejected, 0);
        let mut back = decoded.spans;
        back.sort_by_key(|s| s.span_id);
        for (got, want) in back.iter().zip(&spans) {
            assert_eq!(got.trace_id, want.trace_id);
            assert_eq!(got.parent_span_id, want.parent_span_id);
            assert_eq!(got.name, want.name);
            assert_eq!(got.kind, want.kind);
            assert_eq!(got.status, want.status);
            assert_eq!(got.attributes, want.attributes);
            assert_eq!(got.service_name, want.resource.service_name());
            assert_eq!(
                (got.start_time_unix_nano, got.end_time_unix_nano),
                (1_000, 5_000)
            );
        }
    }
}
