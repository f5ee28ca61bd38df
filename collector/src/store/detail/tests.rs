//! Round trips of `SpanDetail`: every value kind, known and unknown keys, events, rows written
//! before fields 14 and 15.

use std::sync::Arc;

use prost::Message;

use super::SpanDetail;
use super::attrs::CompactAttribute;
use crate::format::convert;
use crate::model::{AttrValue, Event, KeyValue, Resource, Scope, Span, SpanId, TraceId};

fn kv(key: &str, value: AttrValue) -> KeyValue {
    KeyValue::new(key, value)
}

/// Every value kind, under known keys, unknown keys and the empty key, interleaved.
fn every_kind() -> Vec<KeyValue> {
    vec![
        kv("http.request.method", AttrValue::String("GET".into())),
        kv("app.item.id", AttrValue::Int(-7)),
        kv("http.response.status_code", AttrValue::Int(200)),
        kv("int.min", AttrValue::Int(i64::MIN)),
        kv("int.max", AttrValue::Int(i64::MAX)),
        kv("server.port", AttrValue::Int(0)),
        kv("app.cache.hit", AttrValue::Bool(false)),
        kv("exception.escaped", AttrValue::Bool(true)),
        kv("app.ratio", AttrValue::Double(-0.25)),
        kv("app.inf", AttrValue::Double(f64::INFINITY)),
        kv("app.zero", AttrValue::Double(0.0)),
        kv("url.path", AttrValue::String(String::new().into())),
        kv("app.blob", AttrValue::Bytes(vec![0, 1, 255])),
        kv("app.empty_bytes", AttrValue::Bytes(Vec::new())),
        kv("error.type", AttrValue::Empty),
        kv("app.nothing", AttrValue::Empty),
        kv("", AttrValue::String("empty key".into())),
        kv(
            "app.list",
            AttrValue::Array(vec![
                AttrValue::Int(1),
                AttrValue::String("two".into()),
                AttrValue::Array(vec![AttrValue::Bool(true)]),
                AttrValue::Empty,
            ]),
        ),
        kv(
            "db.query.text",
            AttrValue::KvList(vec![
                kv("http.route", AttrValue::String("/nested".into())),
                kv("app.inner", AttrValue::KvList(vec![])),
            ]),
        ),
        kv("app.empty_list", AttrValue::Array(Vec::new())),
        kv("app.ünïcode", AttrValue::String("väl".into())),
        // The same key twice keeps both, in order.
        kv("http.request.method", AttrValue::String("POST".into())),
    ]
}

fn span_with(attributes: Vec<KeyValue>) -> Span {
    let mut span = Span::new(TraceId([1; 16]), SpanId([2; 8]), "op");
    span.attributes = attributes;
    span.events = vec![
        Event {
            time_unix_nano: 5,
            name: "exception".into(),
            attributes: vec![
                kv("exception.type", AttrValue::String("E".into())),
                kv("app.retry", AttrValue::Int(2)),
            ],
        },
        Event {
            time_unix_nano: u64::MAX,
            name: String::new(),
            attributes: Vec::new(),
        },
    ];
    span.status.message = "boom".into();
    span.trace_state = "k=v".into();
    span.flags = 0x301;
    span.dropped_attributes_count = 3;
    span.warnings = vec!["w".into()];
    span
}

/// `span` with resource `service.name=svc` and scope `lib` 1.0.
fn with_resource_and_scope(mut span: Span) -> Span {
    span.resource = Arc::new(Resource {
        attributes: vec![kv("service.name", AttrValue::String("svc".into()))],
    });
    span.scope = Arc::new(Scope {
        name: "lib".into(),
        version: "1.0".into(),
    });
    span
}

/// `bytes` decoded into a fresh span with `original`'s ids.
fn decoded(bytes: &[u8], original: &Span) -> Span {
    let mut span = Span::new(original.trace_id, original.span_id, original.name.clone());
    SpanDetail::decode_bytes(bytes)
        .expect("decodes")
        .fill(&mut span)
        .expect("fills");
    span
}

#[test]
fn every_value_kind_round_trips_in_order() {
    let span = span_with(every_kind());
    let bytes = SpanDetail::encode(&span, false);
    let back = decoded(&bytes, &span);
    assert_eq!(back.attributes, span.attributes);
    assert_eq!(back.events, span.events);
    assert_eq!(
        (
            back.status.message.as_str(),
            back.trace_state.as_str(),
            back.flags
        ),
        ("boom", "k=v", 0x301)
    );
    assert_eq!(back.dropped_attributes_count, 3);
    assert_eq!(back.warnings, span.warnings);
    assert_eq!(
        SpanDetail::attributes_of(&bytes).expect("attributes"),
        span.attributes
    );
}

#[test]
fn nan_round_trips() {
    let span = span_with(vec![kv("app.nan", AttrValue::Double(f64::NAN))]);
    let back = decoded(&SpanDetail::encode(&span, false), &span);
    assert!(matches!(back.attributes[0].value, AttrValue::Double(d) if d.is_nan()));
}

#[test]
fn resource_and_scope_round_trip_with_compact_attributes() {
    let span = with_resource_and_scope(span_with(every_kind()));
    let mut detail = SpanDetail::decode_bytes(&SpanDetail::encode(&span, true)).expect("decodes");
    assert_eq!(
        convert::resource_from_pb(detail.resource.take()),
        *span.resource
    );
    assert_eq!(
        (detail.scope_name.as_str(), detail.scope_version.as_str()),
        ("lib", "1.0")
    );
    let mut back = Span::new(span.trace_id, span.span_id, "op");
    detail.fill(&mut back).expect("fills");
    assert_eq!(back.attributes, span.attributes);
}

#[test]
fn known_keys_are_stored_as_codes_and_unknown_keys_as_text() {
    let span = span_with(vec![
        kv("http.request.method", AttrValue::String("GET".into())),
        kv("app.item.id", AttrValue::Int(1)),
    ]);
    let bytes = SpanDetail::encode(&span, false);
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"http.request.method"));
    assert!(contains(b"app.item.id"));
    assert!(contains(b"GET"));
}

#[test]
fn compact_detail_is_smaller_than_the_otlp_form() {
    let attributes = vec![
        kv("http.request.method", AttrValue::String("GET".into())),
        kv("http.route", AttrValue::String("/api/v1/items/{id}".into())),
        kv("url.path", AttrValue::String("/api/v1/items/7".into())),
        kv("http.response.status_code", AttrValue::Int(200)),
        kv("server.address", AttrValue::String("items.internal".into())),
        kv("server.port", AttrValue::Int(8080)),
        kv("client.address", AttrValue::String("10.1.2.3".into())),
        kv("user_agent.original", AttrValue::String("bench/1.0".into())),
    ];
    let old = SpanDetail {
        attributes: convert::attributes_to_pb(&attributes),
        ..SpanDetail::default()
    }
    .encode_to_vec();
    let new = SpanDetail::encode(&span_with(attributes), false);
    let new_attrs_only = SpanDetail {
        compact_attributes: SpanDetail::decode_bytes(&new)
            .expect("decodes")
            .compact_attributes,
        ..SpanDetail::default()
    }
    .encode_to_vec();
    // 8 attributes: 253 bytes as OTLP `KeyValue`s; here 4 bytes each (field tag and length,
    // key code) plus the value with its tag: 32 + 85.
    assert_eq!((old.len(), new_attrs_only.len()), (253, 117));
}

/// A row written before field 14, as literal bytes: field 1 `KeyValue { "http.route",
/// AnyValue { string "/x" } }`, field 4 status message "ok", field 6 flags 0x101.
#[test]
fn rows_written_before_field_14_still_decode() {
    let mut bytes = vec![0x0a, 0x12, 0x0a, 0x0a];
    bytes.extend_from_slice(b"http.route");
    bytes.extend_from_slice(&[0x12, 0x04, 0x0a, 0x02, b'/', b'x']);
    bytes.extend_from_slice(&[0x22, 0x02, b'o', b'k']);
    bytes.extend_from_slice(&[0x35, 0x01, 0x01, 0x00, 0x00]);
    let expected = vec![kv("http.route", AttrValue::String("/x".into()))];
    assert_eq!(
        SpanDetail::attributes_of(&bytes).expect("decodes"),
        expected
    );
    let span = Span::new(TraceId([1; 16]), SpanId([2; 8]), "op");
    let back = decoded(&bytes, &span);
    assert_eq!(back.attributes, expected);
    assert_eq!((back.status.message.as_str(), back.flags), ("ok", 0x101));
}

/// Every kind written the old way (all attributes in field 1, as `main` wrote them) reads
/// back the same as the new way.
#[test]
fn old_form_of_every_kind_decodes_like_the_new_form() {
    let span = span_with(every_kind());
    let old = SpanDetail {
        attributes: convert::attributes_to_pb(&span.attributes),
        ..SpanDetail::default()
    }
    .encode_to_vec();
    assert_eq!(
        SpanDetail::attributes_of(&old).expect("decodes"),
        span.attributes
    );
}

/// A row holding both fields (not written by any version, but valid) lists field 1 first.
#[test]
fn field_1_comes_before_field_14() {
    let detail = SpanDetail {
        attributes: convert::attributes_to_pb(&[kv("a", AttrValue::Int(1))]),
        compact_attributes: vec![CompactAttribute::from_model(&kv(
            "http.route",
            AttrValue::String("/r".into()),
        ))],
        ..SpanDetail::default()
    };
    let keys: Vec<String> = SpanDetail::attributes_of(&detail.encode_to_vec())
        .expect("decodes")
        .into_iter()
        .map(|kv| kv.key.to_string())
        .collect();
    assert_eq!(keys, ["a", "http.route"]);
}

/// A code beyond this collector's table (a newer version wrote the row) reads as a placeholder
/// key instead of failing the trace.
#[test]
fn unknown_key_code_reads_as_a_placeholder() {
    // Field 14 { field 1 string "v", field 8 key_code 9999 }.
    let bytes = [0x72, 0x06, 0x0a, 0x01, b'v', 0x40, 0x8f, 0x4e];
    assert_eq!(
        SpanDetail::attributes_of(&bytes).expect("decodes"),
        vec![kv(
            "spanline.unknown_key_code.9999",
            AttrValue::String("v".into())
        )]
    );
}

/// A span written by older versions (attributes in field 1, events in field 2) reads back
/// with the same attributes and events, in order.
#[test]
fn older_attributes_and_events_read_back_the_same() {
    let span = span_with(every_kind());
    let old = SpanDetail::encode_as_older_versions(&span);
    let contains = |needle: &[u8]| old.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"exception.type") && contains(b"http.request.method"));
    let back = decoded(&old, &span);
    assert_eq!(back.attributes, span.attributes);
    assert_eq!(back.events, span.events);
}

#[test]
fn event_attribute_keys_are_stored_as_codes() {
    let span = span_with(Vec::new());
    let bytes = SpanDetail::encode(&span, false);
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"exception.type"));
    assert!(contains(b"app.retry"));
    assert_eq!(decoded(&bytes, &span).events, span.events);
}

#[test]
fn resource_and_scope_appended_decode_as_encoded_together() {
    let span = with_resource_and_scope(span_with(every_kind()));
    let mut appended = SpanDetail::encode(&span, false);
    appended.extend(SpanDetail::encode_resource_and_scope(&span));
    let together = SpanDetail::encode_with_prost(&span, true);
    assert_eq!(
        SpanDetail::decode_bytes(&appended).expect("decodes"),
        SpanDetail::decode_bytes(&together).expect("decodes")
    );
    let decoded = SpanDetail::decode_bytes(&appended).expect("decodes");
    assert_eq!(decoded.scope_name, "lib");
    assert!(decoded.resource.is_some());
}

/// The span of [`span_with`] with links (one with attributes and trace state), warnings, all
/// three dropped counts, and an event with no time.
fn span_with_everything() -> Span {
    let mut span = span_with(every_kind());
    span.links = vec![
        crate::model::Link {
            trace_id: TraceId([3; 16]),
            span_id: SpanId([4; 8]),
            trace_state: "a=b".into(),
            attributes: vec![kv("app.link", AttrValue::Int(1))],
        },
        crate::model::Link {
            trace_id: TraceId([5; 16]),
            span_id: SpanId([6; 8]),
            trace_state: String::new(),
            attributes: Vec::new(),
        },
    ];
    span.warnings = vec!["first".into(), String::new(), "third".into()];
    span.dropped_events_count = 300;
    span.dropped_links_count = 1;
    span.events.push(Event {
        time_unix_nano: 0,
        name: "no time".into(),
        attributes: every_kind(),
    });
    span
}

#[test]
fn written_from_the_span_byte_for_byte_as_prost_writes_the_message() {
    let long = "x".repeat(300);
    let mut long_values = span_with(vec![
        kv(&long, AttrValue::String(long.clone().into())),
        kv("app.big", AttrValue::Bytes(vec![7; 200])),
    ]);
    long_values.status.message = long.clone();
    for span in [
        Span::new(TraceId([1; 16]), SpanId([2; 8]), "bare"),
        span_with(Vec::new()),
        span_with(every_kind()),
        span_with_everything(),
        long_values,
    ] {
        let ours = SpanDetail::encode(&span, false);
        assert_eq!(ours, SpanDetail::encode_with_prost(&span, false));
        let mut appended = b"prefix".to_vec();
        SpanDetail::encode_into(&span, &mut appended);
        assert_eq!(&appended[6..], &ours[..]);
        assert_eq!(decoded(&ours, &span).attributes, span.attributes);
    }
}
