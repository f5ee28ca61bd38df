//! Unit tests of the OTLP/protobuf decoder (the differential ones are in `differential`).

use super::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PbSpan};
use prost::Message;

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
    assert_eq!(out.spans[0].service_name, crate::model::UNKNOWN_SERVICE);
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
