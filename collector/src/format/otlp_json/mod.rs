//! OTLP/JSON (`application/json` with an `ExportTraceServiceRequest` object, interop.md §1.4).
//!
//! Decoded with our own lenient serde structs (the `opentelemetry-proto` serde support rejects
//! valid input, interop.md §1.7), following every rule of §1.4:
//!
//! - `traceId`, `spanId`, `parentSpanId` (spans and links) are hex, case-insensitive; a span
//!   with a bad id (wrong length, not hex — e.g. base64, §7.2 O3 — or all zeros) is rejected
//!   alone through partial success; a link with bad ids is dropped with a warning;
//! - 64-bit integers (`startTimeUnixNano`, `intValue`, ...) and the 32-bit counts/flags may be
//!   strings or numbers;
//! - enums (`kind`, `status.code`) may be integers **or names** (`"SPAN_KIND_SERVER"`,
//!   `"STATUS_CODE_ERROR"`; decision for §7.2 O7: tolerant, like the OpenTelemetry Collector);
//!   unknown numbers or names become unspecified / unset;
//! - keys are lowerCamelCase, and the snake_case spelling is accepted too (one normalisation
//!   for every struct, [`keys`]);
//! - unknown fields are ignored; omitted fields and `null` take their default; `{}` (or a
//!   resource without spans) is a valid, empty request; an `AnyValue` with no known key (or
//!   `{}`) is the empty value; `"arrayValue": {}` is an empty array;
//! - `doubleValue` may be a number or `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! - `bytesValue` is base64 (standard or URL-safe alphabet, padding optional).
//!
//! Malformed JSON or a field of the wrong JSON type fails the whole request with 400 (O2).
//! Nesting is bounded by `serde_json`'s recursion limit (128 JSON levels, about 30 nested
//! `kvlistValue`s): deeper input is a 400 (O9).

mod encode;
mod keys;
mod wire;

pub(crate) use encode::{encode_attributes, encode_span};
use wire::{JAnyValue, JDouble, JKeyValue, JRequest, JSpan, Num};

use super::Decoded;
use super::otlp::{self, IdNames, OtlpLink, OtlpResourceSpans, OtlpSpan, WireId};
use crate::error::Error;
use crate::model::{AttrValue, Event, KeyValue, Resource, Scope, Status};
use crate::sanitize::{self, SpanLimits};

/// Decodes an OTLP/JSON request.
///
/// # Errors
/// [`Error::BadRequest`] when the body is not valid JSON or has a field of the wrong type.
pub(crate) fn decode(body: &[u8], limits: &SpanLimits) -> Result<Decoded, Error> {
    let request: JRequest = keys::from_slice(body).map_err(|e| {
        let mut msg = e.to_string();
        sanitize::truncate_string(&mut msg, 256);
        Error::BadRequest(format!(
            "failed to decode OTLP/JSON ExportTraceServiceRequest: {msg}"
        ))
    })?;
    let resource_spans = request.resource_spans.into_iter().map(|rs| {
        let mut warnings = Vec::new();
        let resource = Resource {
            attributes: rs
                .resource
                .map(|r| attributes_warn(r.attributes, &mut warnings))
                .unwrap_or_default(),
        };
        for w in &mut warnings {
            w.insert_str(0, "resource: ");
        }
        let scope_spans = rs.scope_spans.into_iter().map(|ss| {
            let scope = ss
                .scope
                .map(|s| Scope {
                    name: s.name,
                    version: s.version,
                })
                .unwrap_or_default();
            (scope, ss.spans.into_iter().map(otlp_span))
        });
        OtlpResourceSpans {
            resource,
            warnings,
            scope_spans,
        }
    });
    Ok(otlp::walk(resource_spans, JSON_ID_NAMES, limits, 0))
}

/// The id fields as OTLP/JSON spells them, for messages.
const JSON_ID_NAMES: IdNames = IdNames {
    trace_id: "traceId",
    span_id: "spanId",
    parent_span_id: "parentSpanId",
};

// ---------------------------------------------------------------------------------------------
// Conversion
// ---------------------------------------------------------------------------------------------

/// Converts attributes; on a bad `bytesValue` the value becomes empty and the error is
/// returned alongside the converted list.
fn attributes(kvs: Vec<JKeyValue>) -> Result<Vec<KeyValue>, (Vec<KeyValue>, String)> {
    let mut first_error = None;
    let out = kvs
        .into_iter()
        .map(|kv| {
            let value = value(kv.value, &mut first_error);
            KeyValue {
                key: kv.key.into(),
                value,
            }
        })
        .collect();
    match first_error {
        None => Ok(out),
        Some(e) => Err((out, e)),
    }
}

fn attributes_warn(kvs: Vec<JKeyValue>, warnings: &mut Vec<String>) -> Vec<KeyValue> {
    match attributes(kvs) {
        Ok(v) => v,
        Err((v, e)) => {
            warnings.push(format!("{e}; value emptied"));
            v
        }
    }
}

fn value(v: Option<JAnyValue>, error: &mut Option<String>) -> AttrValue {
    let Some(v) = v else {
        return AttrValue::Empty;
    };
    if let Some(s) = v.string_value {
        AttrValue::String(s.into())
    } else if let Some(b) = v.bool_value {
        AttrValue::Bool(b)
    } else if let Some(Num(i)) = v.int_value {
        AttrValue::Int(i)
    } else if let Some(JDouble(d)) = v.double_value {
        AttrValue::Double(d)
    } else if let Some(a) = v.array_value {
        AttrValue::Array(
            a.values
                .into_iter()
                .map(|v| value(Some(v), error))
                .collect(),
        )
    } else if let Some(kv) = v.kvlist_value {
        AttrValue::KvList(
            kv.values
                .into_iter()
                .map(|kv| KeyValue {
                    value: value(kv.value, error),
                    key: kv.key.into(),
                })
                .collect(),
        )
    } else if let Some(b) = v.bytes_value {
        match base64_decode(&b) {
            Some(bytes) => AttrValue::Bytes(bytes),
            None => {
                error.get_or_insert_with(|| "bytesValue is not base64".to_owned());
                AttrValue::Empty
            }
        }
    } else {
        AttrValue::Empty
    }
}

/// The span with its values converted (ids stay hex until [`otlp::walk`] validates them).
fn otlp_span(s: JSpan) -> OtlpSpan {
    let mut warnings = Vec::new();
    let links = s
        .links
        .into_iter()
        .map(|link| OtlpLink {
            trace_id: WireId::Hex(link.trace_id),
            span_id: WireId::Hex(link.span_id),
            trace_state: link.trace_state,
            attributes: attributes_warn(link.attributes, &mut warnings),
        })
        .collect();
    let events = s
        .events
        .into_iter()
        .map(|e| Event {
            time_unix_nano: e.time_unix_nano.0,
            name: e.name,
            attributes: attributes_warn(e.attributes, &mut warnings),
        })
        .collect();
    let attributes = attributes_warn(s.attributes, &mut warnings);
    let status = s.status.unwrap_or_default();
    OtlpSpan {
        trace_id: WireId::Hex(s.trace_id),
        span_id: WireId::Hex(s.span_id),
        parent_span_id: WireId::Hex(s.parent_span_id),
        trace_state: s.trace_state,
        flags: s.flags.0,
        name: s.name.into(),
        kind: s.kind.kind(),
        start_time_unix_nano: s.start_time_unix_nano.0,
        end_time_unix_nano: s.end_time_unix_nano.0,
        status: Status {
            code: status.code.status(),
            message: status.message,
        },
        attributes,
        events,
        links,
        dropped_attributes_count: s.dropped_attributes_count.0,
        dropped_events_count: s.dropped_events_count.0,
        dropped_links_count: s.dropped_links_count.0,
        warnings,
    }
}

/// Decodes base64 (standard or URL-safe alphabet, padding optional, ASCII whitespace ignored).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    /// The standard alphabet, no padding (stripped below), any trailing bits.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let mut normal: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| match c {
            b'-' => b'+',
            b'_' => b'/',
            c => c,
        })
        .collect();
    while normal.last() == Some(&b'=') {
        normal.pop();
    }
    LENIENT.decode(normal).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanKind, StatusCode};
    use serde_json::json;

    fn run(v: serde_json::Value) -> Decoded {
        decode(v.to_string().as_bytes(), &SpanLimits::default()).unwrap()
    }

    const T: &str = "5b8efff798038103d269b633813fc60c";

    #[test]
    fn spec_example_decodes() {
        let out = run(
            json!({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
          "scopeSpans":[{"scope":{"name":"my.lib","version":"1.0.0"},
            "spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
              "parentSpanId":"eee19b7ec3c1b173","name":"GET /cart","kind":2,
              "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000u64,
              "attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}},
                            {"key":"n","value":{"intValue":7}},
                            {"key":"d","value":{"doubleValue":"NaN"}},
                            {"key":"b","value":{"bytesValue":"aGk="}},
                            {"key":"e","value":{}},
                            {"key":"a","value":{"arrayValue":{}}},
                            {"key":"k","value":{"kvlistValue":{"values":[{"key":"x","value":{"boolValue":true}}]}}}],
              "status":{"code":2,"message":"boom"}}]}]}]}),
        );
        assert_eq!(out.rejected, 0);
        let s = &out.spans[0];
        assert_eq!(s.trace_id.to_hex(), T);
        assert_eq!(s.service_name, "checkout");
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.duration_ns(), 1_000_000_000);
        assert_eq!(s.status.code, StatusCode::Error);
        assert_eq!(s.scope.name, "my.lib");
        let a = &s.attributes;
        assert_eq!(a[0].value, AttrValue::Int(200));
        assert_eq!(a[1].value, AttrValue::Int(7));
        assert!(matches!(a[2].value, AttrValue::Double(d) if d.is_nan()));
        assert_eq!(a[3].value, AttrValue::Bytes(b"hi".to_vec()));
        assert_eq!(a[4].value, AttrValue::Empty);
        assert_eq!(a[5].value, AttrValue::Array(vec![]));
        assert!(
            matches!(&a[6].value, AttrValue::KvList(kv) if kv[0].value == AttrValue::Bool(true))
        );
    }

    #[test]
    fn empty_requests_are_valid() {
        assert!(run(json!({})).spans.is_empty());
        assert!(run(json!({"resourceSpans":null})).spans.is_empty());
        assert!(
            run(json!({"resourceSpans":[{"scopeSpans":[{}]}]}))
                .spans
                .is_empty()
        );
    }

    #[test]
    fn snake_case_enum_names_and_unknown_fields() {
        let out = run(json!({"resource_spans":[{"scope_spans":[{"spans":[
            {"trace_id":T,"span_id":"0102030405060708","kind":"SPAN_KIND_CLIENT",
             "start_time_unix_nano":5,"end_time_unix_nano":"9","future":{"x":1},
             "status":{"code":"STATUS_CODE_OK"},
             "events":[{"time_unix_nano":"7","name":"e"}],
             "links":[{"trace_id":T,"span_id":"0807060504030201"},{"traceId":"zz","spanId":"00"}]}]}]}]}));
        let s = &out.spans[0];
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.status.code, StatusCode::Ok);
        assert_eq!(s.service_name, crate::model::UNKNOWN_SERVICE);
        assert_eq!(s.events[0].time_unix_nano, 7);
        assert_eq!(s.links.len(), 1);
        assert_eq!(s.dropped_links_count, 1);
        assert!(out.error_message().is_some());
        assert_eq!(out.rejected, 0);
    }

    /// Every key of `v` in its snake_case spelling (`traceId` → `trace_id`).
    fn snake_keys(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Object(members) => Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| {
                        let mut snake = String::new();
                        for c in k.chars() {
                            if c.is_ascii_uppercase() {
                                snake.push('_');
                            }
                            snake.push(c.to_ascii_lowercase());
                        }
                        (snake, snake_keys(v))
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(snake_keys).collect()),
            v => v,
        }
    }

    #[test]
    fn every_key_reads_alike_in_camel_and_snake_case() {
        let camel = json!({"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
          "scopeSpans":[{"scope":{"name":"lib","version":"1"},"spans":[{
            "traceId":T,"spanId":"0102030405060708","parentSpanId":"0102030405060709",
            "traceState":"k=v","flags":1,"name":"op","kind":"SPAN_KIND_SERVER",
            "startTimeUnixNano":"5","endTimeUnixNano":"9","droppedAttributesCount":1,
            "droppedEventsCount":2,"droppedLinksCount":3,"status":{"code":2,"message":"m"},
            "attributes":[{"key":"s","value":{"stringValue":"x"}},{"key":"b","value":{"boolValue":true}},
                          {"key":"i","value":{"intValue":"7"}},{"key":"d","value":{"doubleValue":1.5}},
                          {"key":"y","value":{"bytesValue":"aGk="}},
                          {"key":"a","value":{"arrayValue":{"values":[{"intValue":1}]}}},
                          {"key":"k","value":{"kvlistValue":{"values":[{"key":"x","value":{"boolValue":false}}]}}}],
            "events":[{"timeUnixNano":"6","name":"e","attributes":[{"key":"n","value":{"intValue":1}}]}],
            "links":[{"traceId":T,"spanId":"0807060504030201","traceState":"a=b",
                      "attributes":[{"key":"l","value":{"stringValue":"z"}}]}]}]}]}]});
        let snake = snake_keys(camel.clone());
        assert!(
            snake.to_string().contains("\"start_time_unix_nano\""),
            "{snake}"
        );
        let (a, b) = (run(camel), run(snake));
        assert_eq!((a.rejected, b.rejected), (0, 0));
        let s = &a.spans[0];
        assert_eq!(
            (
                s.trace_state.as_str(),
                s.flags,
                s.start_time_unix_nano,
                s.end_time_unix_nano
            ),
            ("k=v", 1, 5, 9)
        );
        assert_eq!(
            (
                s.dropped_attributes_count,
                s.dropped_events_count,
                s.dropped_links_count
            ),
            (1, 2, 3)
        );
        assert_eq!(
            (s.attributes.len(), s.events.len(), s.links.len()),
            (7, 1, 1)
        );
        assert_eq!(format!("{:?}", a.spans), format!("{:?}", b.spans));
    }

    #[test]
    fn null_members_read_as_omitted_ones() {
        let with_nulls = run(
            json!({"resourceSpans":[{"resource":null,"scopeSpans":[{"scope":{"name":null},"spans":[
            {"traceId":T,"spanId":"0102030405060708","parentSpanId":null,"traceState":null,"flags":null,
             "name":null,"kind":null,"startTimeUnixNano":null,"endTimeUnixNano":null,"attributes":null,
             "events":[{"timeUnixNano":null,"name":"e","attributes":null}],"links":null,"status":null,
             "droppedAttributesCount":null,"droppedEventsCount":null,"droppedLinksCount":null}]}]}]}),
        );
        let omitted = run(json!({"resourceSpans":[{"scopeSpans":[{"scope":{},"spans":[
            {"traceId":T,"spanId":"0102030405060708","events":[{"name":"e"}]}]}]}]}));
        assert_eq!(with_nulls.rejected, 0);
        assert_eq!(with_nulls.spans.len(), 1);
        assert_eq!(
            format!("{:?}", with_nulls.spans),
            format!("{:?}", omitted.spans)
        );
        // A null array element is not a member: still the wrong type.
        let body = br#"{"resourceSpans":[null]}"#;
        assert!(decode(body, &SpanLimits::default()).is_err());
    }

    #[test]
    fn fuzz_seed_decodes() {
        let seed = include_bytes!("../../../../fuzz/seeds/otlp_json/one_span");
        let out = decode(seed, &SpanLimits::default()).unwrap();
        assert_eq!((out.spans.len(), out.rejected), (1, 0));
        assert_eq!(out.spans[0].name, "GET /orders");
    }

    #[test]
    fn bad_ids_reject_one_span() {
        let out = run(json!({"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":T,"spanId":"0102030405060708"},
            {"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"0102030405060708"},
            {"traceId":T,"spanId":"0000000000000000"},
            {"traceId":T,"spanId":"0102030405060709","parentSpanId":"abc"}]}]}]}));
        assert_eq!(out.spans.len(), 1);
        assert_eq!(out.rejected, 3);
        let msg = out.error_message().unwrap();
        assert!(
            msg.contains("span 1: traceId must be 32 hex digits, got 24"),
            "{msg}"
        );
        assert!(
            msg.contains("span 2: spanId must not be all zeros"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_types_and_garbage_are_400() {
        for body in [
            &b"{"[..],
            br#"{"resourceSpans":{}}"#,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"soon"}]}]}]}"#,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":5}]}]}]}"#,
        ] {
            let err = decode(body, &SpanLimits::default()).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{err}");
        }
    }

    #[test]
    fn deep_nesting_is_400() {
        let mut v = json!({"stringValue":"x"});
        for _ in 0..120 {
            v = json!({"kvlistValue":{"values":[{"key":"k","value":v}]}});
        }
        let body =
            json!({"resourceSpans":[{"resource":{"attributes":[{"key":"deep","value":v}]}}]});
        assert!(decode(body.to_string().as_bytes(), &SpanLimits::default()).is_err());
    }

    #[test]
    fn base64_variants() {
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm8").unwrap(), b"fo");
        assert_eq!(base64_decode("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("a!b").is_none());
        assert!(base64_decode("Zg==Zg").is_none(), "data after padding");
        assert_eq!(base64_decode(" Zg =\n=").unwrap(), b"f");
    }
}
