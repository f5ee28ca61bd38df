//! OTLP/HTTP binary protobuf: `ExportTraceServiceRequest` → [`Span`]s (interop.md §1.3).
//!
//! - A span whose trace id is not 16 non-zero bytes, whose span id is not 8 non-zero bytes, or
//!   whose parent id is neither empty nor 8 bytes, is rejected alone (partial success, §7.2 O5).
//!   An all-zero 8-byte parent id is read as "no parent".
//! - A link with invalid ids is dropped from its span with a warning; the span is kept.
//! - Unknown kind or status numbers become unspecified / unset.
//! - Strings must be valid UTF-8: prost rejects the whole request otherwise (400, §7.2 O8 strict).
//! - Nesting deeper than prost's recursion limit (100) fails the request with 400 (O9).

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span as PbSpan;
use prost::Message;

use super::Decoded;
use crate::convert;
use crate::error::Error;
use crate::model::{
    self, Resource, Scope, Span, SpanId, SpanKind, SpanLimits, Status, StatusCode, TraceId,
};

/// Decodes a protobuf `ExportTraceServiceRequest`.
///
/// # Errors
/// [`Error::BadRequest`] when the bytes are not a valid message.
pub(crate) fn decode(body: &[u8], limits: &SpanLimits) -> Result<Decoded, Error> {
    let request = ExportTraceServiceRequest::decode(body).map_err(|e| {
        let mut msg = e.to_string();
        model::truncate_string(&mut msg, 256);
        Error::BadRequest(format!("failed to decode ExportTraceServiceRequest: {msg}"))
    })?;
    let mut out = Decoded::default();
    let mut index = 0usize;
    for resource_spans in request.resource_spans {
        let mut resource: Resource = convert::resource_from_pb(resource_spans.resource);
        model::sanitize_resource(&mut resource, limits);
        let service_name = resource.service_name().to_owned();
        let resource = Arc::new(resource);
        for scope_spans in resource_spans.scope_spans {
            let mut scope = scope_spans
                .scope
                .map(|s| Scope {
                    name: s.name,
                    version: s.version,
                })
                .unwrap_or_default();
            model::sanitize_scope(&mut scope, limits);
            let scope = Arc::new(scope);
            for pb_span in scope_spans.spans {
                let i = index;
                index += 1;
                match convert_span(pb_span, &resource, &scope, &service_name) {
                    Ok(mut span) => {
                        model::sanitize(&mut span, limits);
                        out.accept(i, span);
                    }
                    Err(reason) => out.reject(i, reason),
                }
            }
        }
    }
    Ok(out)
}

fn convert_span(
    s: PbSpan,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    service_name: &str,
) -> Result<Span, String> {
    let trace_id = TraceId::from_slice(&s.trace_id).map_err(|e| format!("trace_id {e}"))?;
    let span_id = SpanId::from_slice(&s.span_id).map_err(|e| format!("span_id {e}"))?;
    let parent_span_id = match s.parent_span_id.len() {
        0 => None,
        _ if s.parent_span_id.iter().all(|b| *b == 0) && s.parent_span_id.len() == 8 => None,
        _ => {
            Some(SpanId::from_slice(&s.parent_span_id).map_err(|e| format!("parent_span_id {e}"))?)
        }
    };
    let mut warnings = Vec::new();
    let mut links = Vec::with_capacity(s.links.len());
    let mut dropped_links = s.dropped_links_count;
    for link in s.links {
        match convert::link_from_pb(link) {
            Ok(l) => links.push(l),
            Err(reason) => {
                warnings.push(format!("{reason}; link dropped"));
                dropped_links = dropped_links.saturating_add(1);
            }
        }
    }
    let status = s.status.unwrap_or_default();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: s.trace_state,
        flags: s.flags,
        name: s.name,
        kind: SpanKind::from_i32(s.kind),
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        status: Status {
            code: StatusCode::from_i32(status.code),
            message: status.message,
        },
        attributes: convert::attributes_from_pb(s.attributes),
        events: s.events.into_iter().map(convert::event_from_pb).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn pb_span(trace: Vec<u8>, span: Vec<u8>) -> PbSpan {
        PbSpan {
            trace_id: trace,
            span_id: span,
            name: "op".into(),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            ..Default::default()
        }
    }

    #[test]
    fn invalid_ids_are_rejected_one_by_one() {
        let good = pb_span(vec![1; 16], vec![2; 8]);
        let short = pb_span(vec![1; 15], vec![3; 8]);
        let zero = pb_span(vec![1; 16], vec![0; 8]);
        let mut bad_parent = pb_span(vec![1; 16], vec![4; 8]);
        bad_parent.parent_span_id = vec![5; 3];
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(PbResource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("svc".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![good, short, zero, bad_parent],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = decode(&req.encode_to_vec(), &SpanLimits::default()).unwrap();
        assert_eq!(out.spans.len(), 1);
        assert_eq!(out.spans[0].service_name, "svc");
        assert_eq!(out.spans[0].kind, SpanKind::Server);
        assert_eq!(out.rejected, 3);
        let msg = out.error_message().unwrap();
        assert!(
            msg.contains("span 1: trace_id must be 16 bytes, got 15"),
            "{msg}"
        );
        assert!(
            msg.contains("span 2: span_id must not be all zeros"),
            "{msg}"
        );
        assert!(msg.contains("span 3: parent_span_id"), "{msg}");
    }

    #[test]
    fn missing_resource_means_unknown_service() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![pb_span(vec![1; 16], vec![2; 8])],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = decode(&req.encode_to_vec(), &SpanLimits::default()).unwrap();
        assert_eq!(out.spans[0].service_name, model::UNKNOWN_SERVICE);
        assert!(out.error_message().is_none());
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let err = decode(&[0xff, 0xff, 0xff, 0x01], &SpanLimits::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("failed to decode ExportTraceServiceRequest")
        );
        assert!(
            decode(&[], &SpanLimits::default())
                .unwrap()
                .spans
                .is_empty()
        );
    }
}
